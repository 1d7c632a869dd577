//! `alertflow reconcile`: what the `reconcile` task does, by hand, with the
//! plan printed (see [`crate::reconcile`]).

use std::sync::Arc;

use serde_json::json;

use crate::cli::run::publish_envelopes;
use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, connect_redis, print_table};
use crate::queue::message::Envelope;
use crate::reconcile::{Plan, gather, plan, since_date};
use crate::run_state::RunState;
use crate::sink::ledger;
use crate::sink::starrocks::SqlSink;
use crate::tasks::reconcile::ReconcileArgs;

#[derive(clap::Args, Debug)]
pub struct ReconcileCliArgs {
    /// How far back to look: `7d`, `36h`, ... (Pacific dates from then on).
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub since: String,
    /// A run that wrote no page for this long has stopped.
    #[arg(long, default_value = "15m", value_name = "DURATION")]
    pub stall_after: String,
    /// Print what would be done; publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan (and the published task ids) as JSON.
    #[arg(long)]
    pub json: bool,
}

fn print_plan(p: &Plan) {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in &p.recompute {
        rows.push(vec![
            "recompute".into(),
            r.date.to_string(),
            String::new(),
            r.stale.to_string(),
        ]);
    }
    let stalled = [
        ("re-drive", &p.redrive, "progress gone from Redis"),
        (
            "stalled",
            &p.stalled,
            "progress still in Redis, left to its tasks (alertflow dead list)",
        ),
    ];
    for (action, runs, why) in stalled {
        for s in runs {
            let pages = match s.total_pages {
                Some(t) => format!("{}/{t} pages written", s.pages_written),
                None => format!("{} pages written, last page unknown", s.pages_written),
            };
            rows.push(vec![
                action.into(),
                s.date.to_string(),
                s.run_id.clone(),
                format!("{pages}, idle {} s; {why}", s.idle_s),
            ]);
        }
    }
    for w in &p.waiting {
        rows.push(vec![
            "waiting".into(),
            w.date.to_string(),
            w.run_id.clone(),
            "a run of the day is in progress".into(),
        ]);
    }
    if !rows.is_empty() {
        print_table(&["ACTION", "DATE", "RUN", "WHY"], &rows);
    }
}

pub async fn reconcile(g: &GlobalOpts, a: ReconcileCliArgs) -> CliResult {
    let (config, registry) = g.load_with_registry()?;
    let args = ReconcileArgs {
        since: Some(a.since.clone()),
        stall_after: Some(a.stall_after.clone()),
        dry_run: a.dry_run,
    };
    let (since, stall_after) = args
        .bounds()
        .map_err(|e| CliError::usage(format!("--{}", e.to_string().replace('_', "-"))))?;
    let from = since_date(chrono::Utc::now(), since);
    let pool = connect_redis(&config).await?;
    let runs = RunState::new(pool, &config.namespace, config.state.ttl.0);
    let sink = SqlSink::new(&config);
    let facts = gather(&sink, &runs, from)
        .await
        .map_err(crate::cli::runs::ledger_error)?;
    sink.close().await;
    let p = plan(&facts, ledger::now(), stall_after);
    let envs: Vec<Envelope> = if a.dry_run {
        Vec::new()
    } else {
        p.tasks()
            .into_iter()
            .map(|t| {
                let mut env = Envelope::new(t.task, t.args);
                env.run_id = t.run_id;
                registry.apply_policy(&mut env, &config, None);
                env
            })
            .collect()
    };
    let ids: Vec<String> = envs.iter().map(|e| e.id.to_string()).collect();
    if !envs.is_empty() {
        publish_envelopes(&Arc::clone(&config), envs).await?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "since": from.to_string(),
                "dry_run": a.dry_run,
                "plan": p,
                "published": ids,
            }))
            .expect("plan serializes")
        );
        return Ok(EXIT_OK);
    }
    println!("reconcile from {from} (stall after {})", a.stall_after);
    print_plan(&p);
    let days = p.fresh + p.recompute.len() + p.waiting.len();
    if a.dry_run {
        println!(
            "{} of {days} days with rows up to date; dry run: {} task(s) would be published",
            p.fresh,
            p.tasks().len()
        );
    } else {
        println!(
            "{} of {days} days with rows up to date; published {} task(s)",
            p.fresh,
            ids.len()
        );
        for id in &ids {
            println!("  {id}");
        }
    }
    Ok(EXIT_OK)
}
