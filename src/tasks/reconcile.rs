//! `reconcile`: the safety net of the run barrier (see [`crate::reconcile`]).
//! Beat publishes it every few minutes (the example config ships the
//! schedule enabled); `alertflow reconcile` does the same by hand.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::{AppConfig, parse_duration};
use crate::queue::task::{InvalidArgs, Task, TaskContext, TaskError};
use crate::reconcile::{DEFAULT_SINCE, DEFAULT_STALL_AFTER, gather, plan, since_date};
use crate::run_state::RunState;
use crate::sink::ledger;
use crate::sink::starrocks::SqlSink;

/// Holds the ledger's database pool.
pub struct Reconcile {
    sink: SqlSink,
}

impl Reconcile {
    pub fn new(config: &AppConfig) -> Reconcile {
        Reconcile {
            sink: SqlSink::new(config),
        }
    }
}

#[derive(Deserialize, Serialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct ReconcileArgs {
    /// How far back to look (`"7d"`, the default).
    #[serde(default)]
    pub since: Option<String>,
    /// A run that wrote nothing for this long has stopped (`"15m"`).
    #[serde(default)]
    pub stall_after: Option<String>,
    /// Decide and log, publish nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl ReconcileArgs {
    /// The look-back and the stall bound, defaults filled in.
    pub fn bounds(&self) -> Result<(Duration, Duration), InvalidArgs> {
        let parse = |field: &'static str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => parse_duration(s).map_err(|e| InvalidArgs::field(field, e)),
        };
        Ok((
            parse("since", &self.since, DEFAULT_SINCE)?,
            parse("stall_after", &self.stall_after, DEFAULT_STALL_AFTER)?,
        ))
    }
}

impl Task for Reconcile {
    const NAME: &'static str = "reconcile";
    type Args = ReconcileArgs;

    fn queue(&self) -> &'static str {
        "db"
    }

    fn validate(&self, a: &ReconcileArgs) -> Result<(), InvalidArgs> {
        a.bounds().map(|_| ())
    }

    async fn run(&self, ctx: &TaskContext, a: ReconcileArgs) -> Result<(), TaskError> {
        let (since, stall_after) = a.bounds().map_err(|e| TaskError::fatal(e.to_string()))?;
        let config = &ctx.services.config;
        let runs = RunState::new(
            ctx.services.redis.clone(),
            &config.namespace,
            config.state.ttl.0,
        );
        let from = since_date(chrono::Utc::now(), since);
        let facts = gather(&self.sink, &runs, from).await?;
        let p = plan(&facts, ledger::now(), stall_after);
        for s in &p.redrive {
            warn!(run_id = %s.run_id, date = %s.date, pages_written = s.pages_written, total_pages = ?s.total_pages, idle_s = s.idle_s, dry_run = a.dry_run, "run stalled and its progress is gone from Redis: re-driving it");
        }
        for s in &p.stalled {
            warn!(run_id = %s.run_id, date = %s.date, pages_written = s.pages_written, total_pages = ?s.total_pages, idle_s = s.idle_s, "run stalled with its progress in Redis: its tasks are queued, retrying or dead-lettered (alertflow dead list)");
        }
        for r in &p.recompute {
            warn!(date = %r.date, why = %r.stale, dry_run = a.dry_run, "recommendations missing or stale: recomputing");
        }
        if !a.dry_run && !p.is_empty() {
            let children = p
                .tasks()
                .into_iter()
                .map(|t| {
                    let mut env = ctx.child(t.task, t.args, Some(&t.key));
                    if t.run_id.is_some() {
                        env.run_id = t.run_id;
                    }
                    env
                })
                .collect();
            ctx.publish_children(children).await?;
        }
        info!(
            since = %from,
            recompute = p.recompute.len(),
            redrive = p.redrive.len(),
            stalled = p.stalled.len(),
            waiting = p.waiting.len(),
            fresh = p.fresh,
            dry_run = a.dry_run,
            "reconciled"
        );
        Ok(())
    }
}
