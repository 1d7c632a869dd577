//! The overview: anything unhealthy on top, then queues (with publish and
//! delivery rates), activity per task and per minute, workers, beats, task
//! statuses and the runs of the last days. Each source is read with a
//! bound; one that fails is named on the page instead of failing it. No
//! source lists Redis keys: every read names its keys.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Serialize;

use crate::cli::inspect::{QueueRow, queue_rows};
use crate::cli::runs::{RunStatus, RunView, read_views};
use crate::notify::health::{HealthStore, Record, Status};
use crate::queue::activity::{Activity, Counts, minute_of};
use crate::queue::state::{BeatInfo, BeatRegistry, WorkerInfo, WorkerRegistry};
use crate::web::{WebState, chart};

/// How long one source may take before the page goes on without it.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(3);
/// Runs shown: dates from this many days back.
const RUN_DAYS: i64 = 7;
/// Minutes of activity charted per queue.
const CHART_MINUTES: i64 = 180;
/// Minutes the publish and delivery rates are averaged over.
const RATE_MINUTES: i64 = 5;
/// Minutes of the per-task table.
const TASK_MINUTES: i64 = 60;

/// Everything the overview shows (also `/api/overview`).
#[derive(Serialize, Debug, Default)]
pub struct Overview {
    pub generated_at: DateTime<Utc>,
    /// What needs a look, most urgent first; empty when all is well.
    pub problems: Vec<String>,
    pub queues: Vec<QueueRow>,
    /// Per queue family, over the last [`RATE_MINUTES`] minutes.
    pub rates: BTreeMap<String, Rates>,
    /// Per task, what happened in the last [`TASK_MINUTES`] minutes.
    pub last_hour: BTreeMap<String, Counts>,
    /// Per queue family, the counts of each of the last [`CHART_MINUTES`]
    /// minutes, oldest first; the first is unix minute `per_minute_from`.
    pub per_minute: BTreeMap<String, Vec<Counts>>,
    pub per_minute_from: i64,
    pub workers: Vec<WorkerInfo>,
    pub beats: Vec<BeatInfo>,
    pub tasks: Vec<Record>,
    pub runs: Vec<RunView>,
    /// Watchdogs firing now (`[[watchdogs]]`), with since when.
    pub watchdogs: Vec<crate::watchdog::FiringWatchdog>,
}

/// Publishes and deliveries per minute.
#[derive(Serialize, Debug, Default, Clone, Copy, PartialEq)]
pub struct Rates {
    pub published_per_min: f64,
    pub delivered_per_min: f64,
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
        let now = o.generated_at;
        let minute = minute_of(now);
        let (queues, workers, beats, activity, tasks, runs) = tokio::join!(
            bounded(
                "RabbitMQ",
                state.broker.with(SOURCE_TIMEOUT, async |conn| {
                    queue_rows(config, &state.registry, conn, &families)
                        .await
                        .map_err(|e| e.message)
                })
            ),
            bounded("Redis", async {
                registry.list().await.map_err(|e| e.to_string())
            }),
            bounded("Redis", async {
                BeatRegistry::new(state.redis.clone(), &config.namespace)
                    .list()
                    .await
                    .map_err(|e| e.to_string())
            }),
            bounded("Redis", async {
                Activity::read(
                    &state.redis,
                    &config.namespace,
                    minute - CHART_MINUTES + 1,
                    minute,
                )
                .await
                .map_err(|e| e.to_string())
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
        match beats {
            Ok(b) => o.beats = b,
            Err(e) => unreachable.push(format!("beats (Redis): {e}")),
        }
        match activity {
            Ok(a) => {
                // The current minute is partly over: rates divide by the
                // seconds the window really covers.
                let seconds = (RATE_MINUTES - 1) * 60 + now.timestamp().rem_euclid(60) + 1;
                let per_min = |n: u64| n as f64 * 60.0 / seconds as f64;
                o.rates = a
                    .per_queue(minute - RATE_MINUTES + 1, minute)
                    .into_iter()
                    .map(|(q, c)| {
                        let r = Rates {
                            published_per_min: per_min(c.published),
                            delivered_per_min: per_min(c.delivered),
                        };
                        (q, r)
                    })
                    .collect();
                o.last_hour = a.per_task(minute - TASK_MINUTES + 1, minute);
                o.per_minute = a.series_per_queue();
                o.per_minute_from = a.from;
            }
            Err(e) => unreachable.push(format!("activity (Redis): {e}")),
        }
        match tasks {
            Ok(t) => o.tasks = t.into_values().flatten().collect(),
            Err(e) => unreachable.push(format!("task statuses (Redis): {e}")),
        }
        match runs {
            Ok(r) => o.runs = r,
            Err(e) => unreachable.push(format!("runs (database): {e}")),
        }
        if !state.config.watchdogs.is_empty() {
            match bounded(
                "watchdogs (Redis)",
                crate::watchdog::firing(&state.config, &state.redis),
            )
            .await
            {
                Ok(w) => o.watchdogs = w,
                Err(e) => unreachable.push(e),
            }
        }
        o.problems = problems(&o, unreachable);
        o
    }
}

/// What needs a look: unreachable sources, dead letters, stranded queues,
/// no workers, tasks in ERROR, stalled runs.
fn problems(o: &Overview, unreachable: Vec<String>) -> Vec<String> {
    let mut out = unreachable;
    for w in &o.watchdogs {
        out.push(format!(
            "watchdog {} ({}) since {}: {}",
            w.watchdog,
            w.kind,
            w.since.format("%Y-%m-%d %H:%M:%S UTC"),
            w.summary
        ));
    }
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

/// A queue's per-minute counts as the chart's series: deliveries, retries
/// and dead letters, the first minute being unix minute `from`.
fn activity_series(from: i64, counts: &[Counts]) -> Vec<chart::TimeSeries> {
    let at = |i: usize| {
        DateTime::from_timestamp((from + i as i64) * 60, 0).unwrap_or(DateTime::UNIX_EPOCH)
    };
    let line = |name: &str, get: fn(&Counts) -> u64| {
        (
            name.to_string(),
            counts
                .iter()
                .enumerate()
                .map(|(i, c)| (at(i), get(c) as f64))
                .collect(),
        )
    };
    vec![
        line("deliveries", |c| c.delivered),
        line("retries", |c| c.retried),
        line("dead letters", |c| c.dead),
    ]
}

fn opt(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

fn rate(v: Option<f64>) -> String {
    match v {
        Some(r) if r > 0.0 && r < 10.0 => format!("{r:.1}"),
        Some(r) => format!("{r:.0}"),
        None => "-".into(),
    }
}

/// The overview page; it refreshes itself every 5 s (no JavaScript).
pub fn render(o: &Overview, namespace: &str) -> Markup {
    let family_of = |queue: &str| {
        queue
            .strip_prefix(namespace)
            .and_then(|q| q.strip_prefix('.'))
            .map(str::to_string)
    };
    let rates_of = |q: &QueueRow| {
        (q.kind == "work")
            .then(|| family_of(&q.queue))
            .flatten()
            .map(|f| o.rates.get(&f).copied().unwrap_or_default())
    };
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
                                td { a href={ "/day?date=" (l.run.date) } { (l.run.date) } }
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
                    tr { th { "queue" } th { "kind" } th { "ready" } th { "unacked" } th { "consumers" } th { "published/min" } th { "delivered/min" } }
                    @for q in &o.queues {
                        @let r = rates_of(q);
                        tr {
                            td class=(if q.stranded { "bad" } else { "" }) { (q.queue) }
                            td { (q.kind) }
                            td.num { (opt(q.ready)) }
                            td.num { (opt(q.unacked)) }
                            td.num { (opt(q.consumers)) }
                            td.num { (rate(r.map(|r| r.published_per_min))) }
                            td.num { (rate(r.map(|r| r.delivered_per_min))) }
                        }
                    }
                }
                p.muted { "Rates: average over the last " (RATE_MINUTES) " minutes." }
                h2 { "Tasks in the last hour" }
                @if o.last_hour.is_empty() {
                    p.muted { "No task published or run in the last hour." }
                } @else {
                    table #last-hour {
                        tr { th { "task" } th { "published" } th { "delivered" } th { "succeeded" } th { "retried" } th { "dead-lettered" } }
                        @for (task, c) in &o.last_hour {
                            tr {
                                td { (task) }
                                td.num { (c.published) }
                                td.num { (c.delivered) }
                                td.num.good[c.succeeded > 0] { (c.succeeded) }
                                td.num { (c.retried) }
                                td.num.bad[c.dead > 0] { (c.dead) }
                            }
                        }
                    }
                }
                h2 { "Deliveries, retries and dead letters per minute, last " (CHART_MINUTES / 60) " hours" }
                @if o.per_minute.is_empty() {
                    p.muted { "Nothing delivered in the last " (CHART_MINUTES / 60) " hours." }
                } @else {
                    div #activity {
                        @for (family, series) in &o.per_minute {
                            h3 { (namespace) "." (family) }
                            (chart::per_bucket(
                                &format!("{namespace}.{family}: deliveries, retries and dead letters per minute"),
                                &activity_series(o.per_minute_from, series),
                                chart::Shape::Lines,
                                "per minute",
                            ))
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
                h2 { "Beats" }
                @if o.beats.is_empty() {
                    p.muted { "No live beat." }
                } @else {
                    table #beats {
                        tr { th { "beat" } th { "host" } th { "pid" } th { "schedules" } th { "broker" } th { "heartbeat" } th { "up since (UTC)" } th { "version" } }
                        @for b in &o.beats {
                            tr {
                                td { (b.id) }
                                td { (b.host) }
                                td.num { (b.pid) }
                                td.num { (b.schedules) }
                                td class=(if b.connected { "good" } else { "bad" }) { (if b.connected { "connected" } else { "not connected" }) }
                                td { ((o.generated_at - b.heartbeat_at).num_seconds().max(0)) " s ago" }
                                td { (b.started_at.format("%Y-%m-%d %H:%M:%S")) }
                                td { (b.version) }
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
