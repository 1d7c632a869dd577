//! The overview: anything unhealthy on top, then queues, workers, task
//! statuses and the runs of the last days. Each source is read with a
//! bound; one that fails is named on the page instead of failing it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Serialize;

use crate::cli::inspect::{QueueRow, queue_rows};
use crate::cli::runs::{RunStatus, RunView, read_views};
use crate::notify::health::{HealthStore, Record, Status};
use crate::queue::state::{WorkerInfo, WorkerRegistry};
use crate::web::WebState;

/// How long one source may take before the page goes on without it.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(3);
/// Runs shown: dates from this many days back.
const RUN_DAYS: i64 = 7;

/// Everything the overview shows (also `/api/overview`).
#[derive(Serialize, Debug, Default)]
pub struct Overview {
    pub generated_at: DateTime<Utc>,
    /// What needs a look, most urgent first; empty when all is well.
    pub problems: Vec<String>,
    pub queues: Vec<QueueRow>,
    pub workers: Vec<WorkerInfo>,
    pub tasks: Vec<Record>,
    pub runs: Vec<RunView>,
}

async fn bounded<T, F>(what: &str, f: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    tokio::time::timeout(SOURCE_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(format!("{what} did not answer within {SOURCE_TIMEOUT:?}")))
}

impl Overview {
    pub async fn gather(state: &WebState) -> Overview {
        let config = &state.config;
        let mut o = Overview {
            generated_at: Utc::now(),
            ..Overview::default()
        };
        let mut unreachable = Vec::new();
        let registry = WorkerRegistry::new(state.redis.clone(), &config.namespace);
        let families: std::collections::BTreeSet<String> = bounded("Redis", async {
            registry.families().await.map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
        let (queues, workers, tasks, runs) = tokio::join!(
            bounded("RabbitMQ", async {
                let conn = crate::cli::connect_broker(config, "web")
                    .await
                    .map_err(|e| e.message)?;
                let rows = queue_rows(config, &state.registry, &conn, &families)
                    .await
                    .map_err(|e| e.message);
                crate::queue::connect::close(conn).await;
                rows
            }),
            bounded("Redis", async {
                registry.list().await.map_err(|e| e.to_string())
            }),
            bounded("Redis", async {
                HealthStore::new(state.redis.clone(), &config.namespace)
                    .all()
                    .await
            }),
            bounded("the database", async {
                let since = crate::lark::window::pacific_date(Utc::now())
                    - chrono::Duration::days(RUN_DAYS);
                read_views(&state.sink, since).await.map_err(|e| e.message)
            }),
        );
        match queues {
            Ok(q) => o.queues = q,
            Err(e) => unreachable.push(format!("RabbitMQ: {e}")),
        }
        match workers {
            Ok(w) => o.workers = w,
            Err(e) => unreachable.push(format!("workers (Redis): {e}")),
        }
        match tasks {
            Ok(t) => o.tasks = t.into_values().flatten().collect(),
            Err(e) => unreachable.push(format!("task statuses (Redis): {e}")),
        }
        match runs {
            Ok(r) => o.runs = r,
            Err(e) => unreachable.push(format!("runs (database): {e}")),
        }
        o.problems = problems(&o, unreachable);
        o
    }
}

/// What needs a look: unreachable sources, dead letters, stranded queues,
/// no workers, tasks in ERROR, stalled runs.
fn problems(o: &Overview, unreachable: Vec<String>) -> Vec<String> {
    let mut out = unreachable;
    for q in &o.queues {
        if q.kind == "dead" && q.ready.unwrap_or(0) > 0 {
            out.push(format!(
                "{} dead letters in {} (alertflow dead list)",
                q.ready.unwrap_or(0),
                q.queue
            ));
        }
        if q.stranded {
            out.push(format!(
                "{} holds {} messages and no worker consumes it",
                q.queue,
                q.ready.unwrap_or(0)
            ));
        }
    }
    if o.workers.is_empty() && !o.queues.is_empty() {
        out.push("no live worker".to_string());
    }
    for t in o.tasks.iter().filter(|t| t.status == Status::Error) {
        out.push(format!(
            "task {} is ERROR since {}: {}",
            t.task,
            t.at.format("%Y-%m-%d %H:%M:%S UTC"),
            t.error.as_deref().unwrap_or("")
        ));
    }
    for r in o.runs.iter().filter(|r| r.status == RunStatus::Stalled) {
        out.push(format!(
            "run {} of {} stalled at {} pages written",
            r.ledger.run.run_id, r.ledger.run.date, r.ledger.pages_written
        ));
    }
    out
}

fn opt(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// The overview page; it refreshes itself every 5 s (no JavaScript).
pub fn render(o: &Overview, namespace: &str) -> Markup {
    let body = html! {
                p.muted { "as of " (o.generated_at.format("%Y-%m-%d %H:%M:%S UTC")) " · refreshes every 5 s · " a href="/api/overview" { "JSON" } }
                @if o.problems.is_empty() {
                    div.ok #problems { "Nothing needs a look." }
                } @else {
                    div.problems #problems {
                        strong { "Needs a look" }
                        ul { @for p in &o.problems { li { (p) } } }
                    }
                }
                h2 { "Runs of the last " (RUN_DAYS) " days" }
                @if o.runs.is_empty() {
                    p.muted { "No run recorded in the run ledger." }
                } @else {
                    table #runs {
                        tr { th { "date" } th { "run" } th { "pages" } th { "messages" } th { "rows" } th { "skipped" } th { "recommended (UTC)" } th { "status" } }
                        @for r in o.runs.iter().rev() {
                            @let l = &r.ledger;
                            tr {
                                td { (l.run.date) }
                                td.muted { (l.run.run_id) }
                                td.num { (l.pages_written) "/" (l.run.total_pages.map(|t| t.to_string()).unwrap_or_else(|| "?".into())) }
                                td.num { (l.run.messages) }
                                td.num { (l.rows_written) }
                                td { @for (k, n) in &l.skips { (k) "=" (n) " " } }
                                td { @if let (Some(at), Some(n)) = (r.recommended_at, r.recommended_from_rows) { (at.format("%m-%d %H:%M:%S")) " from " (n) " rows" } @else { "-" } }
                                td class=(if r.status == RunStatus::Stalled { "bad" } else if r.status == RunStatus::Done { "good" } else { "" }) { (r.status.as_str()) }
                            }
                        }
                    }
                }
                h2 { "Queues" }
                table #queues {
                    tr { th { "queue" } th { "kind" } th { "ready" } th { "unacked" } th { "consumers" } }
                    @for q in &o.queues {
                        tr {
                            td class=(if q.stranded { "bad" } else { "" }) { (q.queue) }
                            td { (q.kind) }
                            td.num { (opt(q.ready)) }
                            td.num { (opt(q.unacked)) }
                            td.num { (opt(q.consumers)) }
                        }
                    }
                }
                h2 { "Workers" }
                @if o.workers.is_empty() {
                    p.muted { "No live worker." }
                } @else {
                    table #workers {
                        tr { th { "worker" } th { "host" } th { "pid" } th { "queues" } th { "running" } th { "processed" } th { "heartbeat" } th { "version" } }
                        @for w in &o.workers {
                            tr {
                                td { (w.id) }
                                td { (w.host) }
                                td.num { (w.pid) }
                                td { (w.queues.join(", ")) }
                                td.num { (w.active) "/" (w.concurrency) }
                                td.num { (w.processed) }
                                td { ((o.generated_at - w.heartbeat_at).num_seconds().max(0)) " s ago" }
                                td { (w.version) }
                            }
                        }
                    }
                }
                h2 { "Task statuses" }
                @if o.tasks.is_empty() {
                    p.muted { "No task status recorded yet." }
                } @else {
                    table #tasks {
                        tr { th { "task" } th { "status" } th { "since (UTC)" } th { "error" } }
                        @for t in &o.tasks {
                            tr {
                                td { (t.task) }
                                td class=(if t.status == Status::Error { "bad" } else { "good" }) { (t.status.as_str()) }
                                td { (t.at.format("%Y-%m-%d %H:%M:%S")) }
                                td { (t.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
    };
    crate::web::layout(namespace, "Overview", Some(5), body)
}
