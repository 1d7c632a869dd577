//! `watchdog` (queue `default`, args `{}` or `{"watchdog": NAME}`): evaluate
//! the `[[watchdogs]]` and send what they find through the notification
//! layer of the InfluxDB checks (dedup, repeat, resolved, silences, the
//! ledger). Workers publish it every `[watch] interval` by themselves (see
//! [`crate::watchdog::spawn_ticker`]): beat is one of the things watched.

use std::sync::Arc;

use chrono::Utc;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::AppConfig;
use crate::queue::task::{InvalidArgs, Task, TaskContext, TaskError};
use crate::sink::starrocks::SqlSink;
use crate::tasks::Shared;
use crate::tasks::influx_check::CheckRunner;
use crate::watchdog::Watched;

/// The worker's `watchdog` task.
pub struct Watchdog {
    config: Arc<AppConfig>,
    runner: Arc<CheckRunner>,
    sink: SqlSink,
    redis: crate::queue::redis_pool::Pool,
    metrics: WatchdogMetrics,
}

/// `alertflow_watchdog_*`, registered in the worker's metrics registry.
#[derive(Clone)]
struct WatchdogMetrics {
    firing: IntGaugeVec,
    evaluations: IntCounterVec,
}

impl WatchdogMetrics {
    fn new() -> WatchdogMetrics {
        WatchdogMetrics {
            firing: IntGaugeVec::new(
                Opts::new(
                    "alertflow_watchdog_firing",
                    "What each watchdog found wrong at its last evaluation (0: all well)",
                ),
                &["watchdog", "kind"],
            )
            .expect("valid metric"),
            evaluations: IntCounterVec::new(
                Opts::new(
                    "alertflow_watchdog_evaluations_total",
                    "Watchdog evaluations, by result (ok, error)",
                ),
                &["watchdog", "result"],
            )
            .expect("valid metric"),
        }
    }

    /// Add them to a worker's registry (once per registry).
    fn register(&self, registry: &prometheus::Registry) {
        let _ = registry.register(Box::new(self.firing.clone()));
        let _ = registry.register(Box::new(self.evaluations.clone()));
    }
}

impl Watchdog {
    /// With the process's one notification runner (shared with
    /// `influx-check`).
    pub fn new(config: &AppConfig, shared: &Shared, runner: Arc<CheckRunner>) -> Watchdog {
        Watchdog {
            runner,
            sink: SqlSink::new(config),
            redis: shared.redis.clone(),
            metrics: WatchdogMetrics::new(),
            config: Arc::new(config.clone()),
        }
    }
}

#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct WatchdogArgs {
    /// One `[[watchdogs]].name`; all when absent.
    #[serde(default)]
    pub watchdog: Option<String>,
}

impl Task for Watchdog {
    const NAME: &'static str = "watchdog";
    type Args = WatchdogArgs;

    fn validate(&self, a: &WatchdogArgs) -> Result<(), InvalidArgs> {
        match &a.watchdog {
            Some(n) if !self.config.watchdogs.iter().any(|w| &w.name == n) => Err(
                InvalidArgs::field("watchdog", format!("{n:?} is not a [[watchdogs]] name")),
            ),
            _ => Ok(()),
        }
    }

    async fn run(&self, ctx: &TaskContext, a: WatchdogArgs) -> Result<(), TaskError> {
        self.metrics.register(&ctx.services.metrics.registry);
        let watched = Watched {
            config: &self.config,
            redis: &self.redis,
            sink: &self.sink,
        };
        let now = Utc::now();
        let mut failed = None;
        for w in &self.config.watchdogs {
            if a.watchdog.as_ref().is_some_and(|n| n != &w.name) {
                continue;
            }
            let result = match watched.findings(w, now).await {
                Ok(f) => {
                    self.metrics
                        .firing
                        .with_label_values(&[w.name.as_str(), w.kind.as_str()])
                        .set(f.len() as i64);
                    let check = w.as_check();
                    self.runner
                        .process(&check, w.evaluation(f), &[], false)
                        .await
                        .map(|r| {
                            info!(watchdog = %w.name, kind = w.kind.as_str(), firing = r.firing.len(), sent = r.sent_firing.len(), resolved = r.sent_resolved.len(), "watchdog evaluated");
                        })
                }
                Err(e) => Err(TaskError::retry(e)),
            };
            let label = if result.is_ok() { "ok" } else { "error" };
            self.metrics
                .evaluations
                .with_label_values(&[w.name.as_str(), label])
                .inc();
            if let Err(e) = result {
                // The others still run; the task fails (retried) at the end.
                warn!(watchdog = %w.name, error = %e, "watchdog not evaluated");
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
