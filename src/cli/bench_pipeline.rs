//! `alertflow bench pipeline`: a backfill of synthetic days from the sandbox
//! (50 requests/s quota, like Lark) through RabbitMQ and the real workers
//! into MariaDB. It prints the wall time beside the floor the quota allows
//! (pages / 50 per second), and the rows/s the `insert` path writes beside a
//! bare multi-row INSERT measured in the same run. Everything runs in its
//! own namespace and database, removed afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Duration as Days, Utc};
use mysql_async::prelude::Queryable;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::bench::delete_namespace;
use crate::cli::run::{DayPlan, publish_days, wait_days};
use crate::cli::{
    CliError, CliResult, EXIT_OK, GlobalOpts, connect_broker, connect_redis, print_table,
};
use crate::config::{HumanDuration, LimitSpec, Secret};
use crate::lark::card::AlertRow;
use crate::lark::window::pacific_date;
use crate::queue::context::Services;
use crate::queue::message::Envelope;
use crate::queue::publisher::Publisher;
use crate::queue::worker::{Worker, WorkerOptions};
use crate::sandbox::{QuotaConfig, SandboxConfig, expected_range};
use crate::sink::starrocks::{SqlSink, StoredAlert};
use crate::tasks::insert::InsertArgs;

/// The sandbox's quota, as Lark's list-messages quota per second.
const QUOTA_PER_SEC: u32 = 50;

#[derive(clap::Args, Debug, Clone)]
pub struct PipelineArgs {
    /// Days to backfill.
    #[arg(long, default_value_t = 3)]
    pub days: u32,
    /// Sandbox messages per day.
    #[arg(long, default_value_t = 2000)]
    pub per_day: u32,
    /// Worker concurrency.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
pub struct PipelineReport {
    pub days: u32,
    pub per_day: u32,
    pub pages: u64,
    pub messages: u64,
    pub rows: u64,
    pub wall_s: f64,
    pub quota_floor_s: f64,
    pub floor_ratio: f64,
    pub rejected_by_quota: u64,
    pub pipeline_rows_per_s: f64,
    pub insert_rows_per_s: f64,
    pub bare_insert_rows_per_s: f64,
    pub insert_ratio: f64,
}

pub async fn run(g: &GlobalOpts, a: PipelineArgs) -> CliResult {
    let base = g.load_config()?;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut c = (*base).clone();
    c.namespace = format!("{}-benchpipe-{tag}", base.namespace);
    c.mysql.database = format!("bench_pipeline_{tag}");
    c.worker.queues = vec!["default".into(), "lark".into(), "db".into()];
    c.worker.concurrency = a.concurrency.max(1);
    c.worker.metrics_listen = "off".into();
    c.sink.batch_interval = HumanDuration(Duration::from_secs(1));
    // Just under the quota: GCRA admits at most 1 + 48 in any second.
    c.rate_limits.insert(
        crate::tasks::fetch_day::LARK_RATE_KEY.into(),
        vec![LimitSpec {
            limit: QUOTA_PER_SEC - 2,
            per: HumanDuration(Duration::from_secs(1)),
            burst: 1,
        }],
    );
    let sandbox_cfg = SandboxConfig {
        seed: 7,
        per_day: a.per_day,
        quotas: QuotaConfig {
            messages_per_sec: QUOTA_PER_SEC,
            messages_per_min: QUOTA_PER_SEC * 60,
            ..QuotaConfig::default()
        },
        ..SandboxConfig::default()
    };
    let sandbox = crate::sandbox::spawn(sandbox_cfg.clone())
        .await
        .map_err(CliError::failure)?;
    c.lark.base_url = sandbox.base_url.clone();
    c.lark.app_id = sandbox_cfg.app_id.clone();
    c.lark.app_secret = Secret::new(sandbox_cfg.app_secret.clone());
    c.lark.chat_id = sandbox_cfg.chats[0].clone();
    let config = Arc::new(c);
    connect_redis(&config).await?;
    let sink = SqlSink::new(&config);
    sink.migrate()
        .await
        .map_err(|e| CliError::failure(format!("MariaDB: {e}")))?;

    let result = measure(&config, &a, &sandbox_cfg, &sandbox, &sink).await;

    // Clean up whatever happened.
    let _ = sink.drop_database().await;
    sink.close().await;
    delete_namespace(&config, &config.worker.queues).await;
    let report = result?;
    if a.json {
        println!("{}", serde_json::to_string(&report).expect("serializes"));
    } else {
        println!(
            "pipeline benchmark: {} days × {} messages ({} pages, {} rows), sandbox quota {QUOTA_PER_SEC} requests/s",
            report.days, report.per_day, report.pages, report.rows
        );
        print_table(
            &["", "measured", "reference", "ratio"],
            &[
                vec![
                    "backfill wall time (s)".into(),
                    format!("{:.1}", report.wall_s),
                    format!("{:.1} (quota floor)", report.quota_floor_s),
                    format!("{:.2}", report.floor_ratio),
                ],
                vec![
                    "insert path rows/s".into(),
                    format!("{:.0}", report.insert_rows_per_s),
                    format!(
                        "{:.0} (bare multi-row INSERT)",
                        report.bare_insert_rows_per_s
                    ),
                    format!("{:.2}", report.insert_ratio),
                ],
                vec![
                    "end-to-end rows/s".into(),
                    format!("{:.0}", report.pipeline_rows_per_s),
                    "-".into(),
                    "-".into(),
                ],
                vec![
                    "requests rejected by the quota".into(),
                    report.rejected_by_quota.to_string(),
                    "0".into(),
                    "-".into(),
                ],
            ],
        );
    }
    Ok(EXIT_OK)
}

async fn measure(
    config: &Arc<crate::config::AppConfig>,
    a: &PipelineArgs,
    sandbox_cfg: &SandboxConfig,
    sandbox: &crate::sandbox::SandboxHandle,
    sink: &SqlSink,
) -> Result<PipelineReport, CliError> {
    let today = pacific_date(Utc::now());
    let plans: Vec<DayPlan> = (1..=a.days.clamp(1, 366) as i64)
        .rev()
        .map(|k| DayPlan {
            date: today - Days::days(k),
            until_now: false,
        })
        .collect();
    let (services, writer) =
        Services::new(Arc::new(config.queue.clone())).map_err(CliError::usage)?;
    let shutdown = CancellationToken::new();
    let registry = crate::tasks::registry(config, &crate::tasks::Shared::of(&services))?;
    let worker = Worker::new(
        services.clone(),
        Arc::new(registry),
        WorkerOptions::from_config(config),
    );
    let stop = shutdown.clone();
    let worker_task = tokio::spawn(async move { worker.run(stop).await });

    // 1. The backfill, end to end.
    let t0 = Instant::now();
    let published = publish_days(config, &plans).await?;
    let (outcomes, finished) =
        wait_days(config, &published, Some(Duration::from_secs(3600)), a.json).await?;
    let wall = t0.elapsed().as_secs_f64();
    if !finished || outcomes.iter().any(|o| o.status != "done") {
        shutdown.cancel();
        return Err(CliError::failure(format!(
            "the backfill did not complete: {outcomes:?}"
        )));
    }
    let pages: u64 = outcomes
        .iter()
        .map(|o| o.summary.total_pages.unwrap_or(0))
        .sum();
    let messages: u64 = outcomes.iter().map(|o| o.summary.messages).sum();
    let rows: u64 = outcomes.iter().map(|o| o.summary.rows_written).sum();

    // 2. The insert path alone: the same rows as `insert` messages, once more.
    let first = plans.first().expect("a day").date;
    let last = plans.last().expect("a day").date;
    let expected: Vec<AlertRow> = expected_range(sandbox_cfg, &sandbox_cfg.chats[0], first, last)
        .rows
        .into_iter()
        .map(AlertRow::from)
        .collect();
    let conn = connect_broker(config, "bench").await?;
    let publisher = Publisher::open(
        &conn,
        services.topology.clone(),
        config.broker.publish_window,
    )
    .await
    .map_err(CliError::failure)?;
    let registry = crate::tasks::lookup_registry(config)?;
    let run_id = format!("bench-insert-{}", uuid::Uuid::new_v4().simple());
    let envs: Vec<Envelope> = expected
        .chunks(100)
        .enumerate()
        .map(|(i, chunk)| {
            let mut e = Envelope::new(
                "insert",
                json!(InsertArgs {
                    run_id: run_id.clone(),
                    date: first.to_string(),
                    page: i as u32 + 1,
                    rows: chunk.to_vec(),
                    raw: Default::default(),
                    skips: Default::default(),
                }),
            );
            registry.apply_policy(&mut e, config, None);
            e
        })
        .collect();
    let batches = envs.len() as u64;
    let m = services.metrics.clone();
    let before = m
        .succeeded
        .with_label_values(&["insert", "db", m.hostname.as_str()])
        .get();
    let t1 = Instant::now();
    publisher
        .publish_many(envs, |_| {})
        .await
        .map_err(CliError::failure)?;
    while m
        .succeeded
        .with_label_values(&["insert", "db", m.hostname.as_str()])
        .get()
        < before + batches
    {
        if t1.elapsed() > Duration::from_secs(600) {
            return Err(CliError::failure("the insert path stalled"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let insert_rows_per_s = expected.len() as f64 / t1.elapsed().as_secs_f64();
    let _ = conn.close(200, "done".into()).await;
    shutdown.cancel();
    let _ = worker_task.await;
    drop(services);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;

    // 3. A bare multi-row INSERT of the same rows into an empty copy of the table.
    let bare = bare_insert_rows_per_s(config, sink, &expected).await?;
    let floor = pages as f64 / f64::from(QUOTA_PER_SEC);
    Ok(PipelineReport {
        days: a.days,
        per_day: a.per_day,
        pages,
        messages,
        rows,
        wall_s: wall,
        quota_floor_s: floor,
        floor_ratio: wall / floor,
        rejected_by_quota: sandbox.stats().list_messages.rate_limited,
        pipeline_rows_per_s: rows as f64 / wall,
        insert_rows_per_s,
        bare_insert_rows_per_s: bare,
        insert_ratio: insert_rows_per_s / bare,
    })
}

async fn bare_insert_rows_per_s(
    config: &crate::config::AppConfig,
    sink: &SqlSink,
    rows: &[AlertRow],
) -> Result<f64, CliError> {
    let db = &config.mysql.database;
    let opts = crate::sink::starrocks::server_opts(config);
    let mut c = mysql_async::Conn::new(opts)
        .await
        .map_err(CliError::failure)?;
    c.query_drop(format!("CREATE TABLE `{db}`.bare LIKE `{db}`.lark_alerts"))
        .await
        .map_err(CliError::failure)?;
    let now = Utc::now();
    let stored: Vec<StoredAlert> = rows
        .iter()
        .map(|r| StoredAlert {
            row: r.clone(),
            raw_content: String::new(),
            ingested_at: now,
        })
        .collect();
    let stmts: Vec<String> = sink
        .alert_statements(&stored)
        .map_err(CliError::failure)?
        .into_iter()
        .map(|s| s.replacen("`.`lark_alerts`", "`.`bare`", 1))
        .collect();
    let t = Instant::now();
    for s in stmts {
        c.query_drop(s).await.map_err(CliError::failure)?;
    }
    let rate = rows.len() as f64 / t.elapsed().as_secs_f64();
    c.disconnect().await.map_err(CliError::failure)?;
    Ok(rate)
}
