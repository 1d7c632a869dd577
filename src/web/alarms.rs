//! "Alarms and health": each task's health status ([`HealthStore`]: since
//! when, the latest outcome, the error) and the InfluxDB alarms each
//! configured check has notified as firing and not resolved yet
//! ([`AlarmStore`]), with when they were last sent. Also `/api/alarms`.
//!
//! Everything is read by name, never by scanning Redis: the health store
//! keeps a set of task names, and the alarm store one hash of active alarms
//! per check, read for each check in the config. A check removed from the
//! config is therefore not shown, even if alarms of it are still stored.
//!
//! Receivers are shown by name only: their webhook URLs and signing
//! secrets (and any other configured secret) are cut out of every text the
//! page shows, task errors included.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Serialize;

use crate::config::AppConfig;
use crate::notify::alarm::AlarmStore;
use crate::notify::health::{HealthStore, Status};
use crate::web::WebState;

/// How long one Redis read may take before the page goes on without it.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(3);

pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/alarms", get(page))
        .route("/api/alarms", get(json))
}

/// A task's health status.
#[derive(Serialize, Debug, Clone)]
pub struct TaskHealth {
    pub task: String,
    /// `None`: the stored status could not be read.
    pub status: Option<Status>,
    pub queue: String,
    /// When the status last changed (`None`: before the store kept it).
    pub status_since: Option<DateTime<Utc>>,
    /// When the task's latest outcome was recorded.
    pub last_outcome_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub attempts: Option<u32>,
}

/// An alarm notified as firing and not resolved yet.
#[derive(Serialize, Debug, Clone)]
pub struct ActiveAlarmView {
    /// The alarm's identity within its check (`k=v,...`).
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// The value when it was last notified (`None` if it was not a number).
    pub value: Option<f64>,
    pub summary: String,
    pub severity: String,
    /// When it was first notified as firing.
    pub since: DateTime<Utc>,
    /// When it was last notified as firing (`None`: its repeat interval
    /// passed, so the next evaluation sends it again, or a send is under
    /// way).
    pub last_sent: Option<DateTime<Utc>>,
}

/// A configured check and its active alarms.
#[derive(Serialize, Debug, Clone)]
pub struct CheckAlarms {
    pub check: String,
    pub source: String,
    pub threshold: String,
    pub severity: String,
    /// The receiver's name (never its URL).
    pub receiver: String,
    pub repeat_interval: String,
    pub active: Vec<ActiveAlarmView>,
    /// Alarms flapping now, or owing their FLAPPING / STABLE message.
    pub flapping: Vec<FlappingView>,
    /// Why the active alarms could not be read.
    pub error: Option<String>,
}

/// A flapping alarm.
#[derive(Serialize, Debug, Clone)]
pub struct FlappingView {
    pub id: String,
    /// Its state now.
    pub firing: bool,
    /// State changes within the flap window.
    pub changes: usize,
    pub since: Option<DateTime<Utc>>,
    /// `flapping` or `stable` while that message is not delivered yet.
    pub owed: Option<String>,
}

/// Everything the page shows (also `/api/alarms`).
#[derive(Serialize, Debug, Default)]
pub struct Alarms {
    pub generated_at: DateTime<Utc>,
    pub tasks: Vec<TaskHealth>,
    pub checks: Vec<CheckAlarms>,
    /// Sources that could not be read.
    pub errors: Vec<String>,
}

/// Every configured secret, longest first (so a URL is cut before a token
/// it contains).
fn secrets(config: &AppConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in config.receivers.values() {
        out.push(r.url.expose().to_string());
        if let Some(s) = &r.secret {
            out.push(s.expose().to_string());
        }
    }
    for s in config.influx.sources.values() {
        out.extend(s.password.iter().map(|p| p.expose().to_string()));
        out.extend(s.token.iter().map(|t| t.expose().to_string()));
    }
    out.push(config.lark.app_secret.expose().to_string());
    out.push(config.mysql.password.expose().to_string());
    out.retain(|s| s.len() >= 4);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with every configured secret replaced by `***`.
fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

async fn bounded<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(SOURCE_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(format!("{what} did not answer within {SOURCE_TIMEOUT:?}")))
}

impl Alarms {
    pub async fn gather(state: &WebState) -> Alarms {
        let config = &state.config;
        let hidden = secrets(config);
        let mut out = Alarms {
            generated_at: Utc::now(),
            ..Alarms::default()
        };
        let health = HealthStore::new(state.redis.clone(), &config.namespace);
        let read = bounded("Redis", async {
            Ok((health.all().await?, health.changed_at().await?))
        });
        match read.await {
            Ok((all, mut changed)) => {
                out.tasks = all
                    .into_iter()
                    .map(|(task, r)| match r {
                        Some(r) => TaskHealth {
                            status_since: changed.remove(&task),
                            task,
                            status: Some(r.status),
                            queue: r.queue,
                            last_outcome_at: Some(r.at),
                            error: r.error.map(|e| redact(&e, &hidden)),
                            attempts: r.attempts,
                        },
                        None => TaskHealth {
                            task,
                            status: None,
                            queue: String::new(),
                            status_since: None,
                            last_outcome_at: None,
                            error: None,
                            attempts: None,
                        },
                    })
                    .collect();
            }
            Err(e) => out.errors.push(format!("task health (Redis): {e}")),
        }
        let store = AlarmStore::new(state.redis.clone(), &config.namespace);
        for c in &config.checks {
            let read = bounded("Redis", async {
                let active = store.active(&c.name).await.map_err(|e| e.to_string())?;
                let ids: Vec<&str> = active.keys().map(String::as_str).collect();
                let sent = store
                    .last_sent(&c.name, &ids)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(active
                    .iter()
                    .zip(sent)
                    .map(|((id, a), last_sent)| ActiveAlarmView {
                        id: id.clone(),
                        labels: a.alarm.labels.clone(),
                        value: a.alarm.value.is_finite().then_some(a.alarm.value),
                        summary: redact(&a.alarm.summary, &hidden),
                        severity: a.alarm.severity.as_str().to_string(),
                        since: a.since,
                        last_sent,
                    })
                    .collect::<Vec<_>>())
            })
            .await;
            let (active, mut error) = match read {
                Ok(a) => (a, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            let mut flapping = Vec::new();
            if c.flap().is_some() {
                let flaps =
                    crate::notify::flap::FlapStore::new(state.redis.clone(), &config.namespace);
                let group = format!("alarm:{}", c.name);
                match bounded("Redis", async {
                    flaps.records(&group).await.map_err(|e| e.to_string())
                })
                .await
                {
                    Ok(records) => {
                        flapping = records
                            .into_iter()
                            .filter(|(_, r)| r.suppressed())
                            .map(|(id, r)| FlappingView {
                                id,
                                firing: r.firing,
                                changes: r.changes.len(),
                                since: r.flapping_since.and_then(DateTime::from_timestamp_millis),
                                owed: r.owed.map(|(o, _)| o.as_str().to_lowercase()),
                            })
                            .collect()
                    }
                    Err(e) => error = Some(e),
                }
            }
            out.checks.push(CheckAlarms {
                check: c.name.clone(),
                source: c.source.clone(),
                threshold: c.threshold.to_string(),
                severity: c.severity.as_str().to_string(),
                receiver: c.receiver.clone(),
                repeat_interval: humantime::format_duration(c.repeat_interval.0).to_string(),
                active,
                flapping,
                error,
            });
        }
        out
    }
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds().max(0) as u64;
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(s))
            .to_string()
            .split(' ')
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

pub fn render(a: &Alarms, namespace: &str) -> Markup {
    let firing: usize = a.checks.iter().map(|c| c.active.len()).sum();
    let errors = a
        .tasks
        .iter()
        .filter(|t| t.status == Some(Status::Error))
        .count();
    let body = html! {
        p.muted { "as of " (a.generated_at.format("%Y-%m-%d %H:%M:%S UTC")) " · refreshes every 10 s · " a href="/silences" { "silences and the notification ledger" } " · " a href="/api/alarms" { "JSON" } }
        @if !a.errors.is_empty() {
            div.problems { ul { @for e in &a.errors { li { (e) } } } }
        }
        @if firing == 0 && errors == 0 && a.errors.is_empty() {
            div.ok #summary { "No alarm firing and no task in ERROR." }
        } @else {
            div.problems #summary { (firing) " alarm(s) firing · " (errors) " task(s) in ERROR" }
        }
        h2 { "Task health" }
        @if a.tasks.is_empty() {
            p.muted { "No task status recorded yet (workers record one per task outcome)." }
        } @else {
            table #health {
                tr { th { "task" } th { "status" } th { "queue" } th { "since (UTC)" } th { "last outcome (UTC)" } th { "attempts" } th { "error" } }
                @for t in &a.tasks {
                    tr {
                        td { (t.task) }
                        @match t.status {
                            Some(Status::Error) => td.bad { "ERROR" },
                            Some(Status::Ok) => td.good { "OK" },
                            None => td.muted { "unreadable" },
                        }
                        td { (t.queue) }
                        td { (when(t.status_since)) @if let Some(at) = t.status_since { span.muted { " (" (ago(a.generated_at, at)) ")" } } }
                        td { (when(t.last_outcome_at)) @if let Some(at) = t.last_outcome_at { span.muted { " (" (ago(a.generated_at, at)) ")" } } }
                        td.num { (t.attempts.map(|n| n.to_string()).unwrap_or_default()) }
                        td { (t.error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        h2 { "InfluxDB alarms" }
        @if a.checks.is_empty() {
            p.muted { "No " code { "[[checks]]" } " configured." }
        }
        @for c in &a.checks {
            h3 id={ "check-" (c.check) } {
                (c.check) " "
                span.muted { "(" (c.source) ", " (c.threshold) ", " (c.severity) ", to " (c.receiver) ", repeated every " (c.repeat_interval) ")" }
            }
            @if let Some(e) = &c.error {
                div.problems { (e) }
            } @else if c.active.is_empty() {
                p.good { "Nothing firing." }
            } @else {
                table.alarms {
                    tr { th { "labels" } th { "value" } th { "severity" } th { "summary" } th { "firing since (UTC)" } th { "last sent (UTC)" } }
                    @for al in &c.active {
                        tr {
                            td { @for (k, v) in &al.labels { code { (k) "=" (v) } " " } }
                            td.num { (al.value.map(|v| v.to_string()).unwrap_or_else(|| "-".into())) }
                            td class=(if al.severity == "critical" { "bad" } else { "" }) { (al.severity) }
                            td { (al.summary) }
                            td { (al.since.format("%Y-%m-%d %H:%M:%S")) span.muted { " (" (ago(a.generated_at, al.since)) ")" } }
                            td { @match al.last_sent {
                                Some(t) => { (t.format("%Y-%m-%d %H:%M:%S")) span.muted { " (" (ago(a.generated_at, t)) ")" } }
                                None => { span.muted { "due again at the next evaluation" } }
                            } }
                        }
                    }
                }
            }
            @if !c.flapping.is_empty() {
                p { "Flapping (held back until stable):" }
                table.flapping {
                    tr { th { "alarm" } th { "now" } th { "changes in the window" } th { "flapping since (UTC)" } th { "message owed" } }
                    @for f in &c.flapping {
                        tr {
                            td { code { (f.id) } }
                            td class=(if f.firing { "bad" } else { "good" }) { (if f.firing { "firing" } else { "OK" }) }
                            td.num { (f.changes) }
                            td { (when(f.since)) }
                            td { (f.owed.as_deref().unwrap_or("-")) }
                        }
                    }
                }
            }
        }
    };
    crate::web::layout(namespace, "Alarms and health", Some(10), body)
}

async fn page(State(state): State<Arc<WebState>>) -> impl IntoResponse {
    let a = Alarms::gather(&state).await;
    Html(render(&a, &state.config.namespace).into_string())
}

async fn json(State(state): State<Arc<WebState>>) -> impl IntoResponse {
    Json(Alarms::gather(&state).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_secrets_are_cut_out_of_texts() {
        let mut c = AppConfig::default();
        let url = "https://open.larksuite.com/open-apis/bot/v2/hook/abcd-1234";
        c.receivers.insert(
            "ops".into(),
            crate::notify::ReceiverConfig::new(crate::notify::ReceiverKind::Lark, url),
        );
        c.lark.app_secret = crate::config::Secret::new("s3cret-app");
        let hidden = secrets(&c);
        let e = format!("error sending request for url ({url}): timed out; secret s3cret-app");
        let shown = redact(&e, &hidden);
        assert!(
            !shown.contains("abcd-1234") && !shown.contains("s3cret-app"),
            "{shown}"
        );
        assert_eq!(
            shown,
            "error sending request for url (***): timed out; secret ***"
        );
    }

    #[test]
    fn flapping_alarms_are_listed_with_their_state_and_owed_message() {
        let a = Alarms {
            checks: vec![CheckAlarms {
                check: "cpu-high".into(),
                source: "metrics".into(),
                threshold: "> 90".into(),
                severity: "critical".into(),
                receiver: "ops".into(),
                repeat_interval: "1h".into(),
                active: Vec::new(),
                flapping: vec![FlappingView {
                    id: "cluster=a".into(),
                    firing: false,
                    changes: 5,
                    since: DateTime::from_timestamp(1_764_400_000, 0),
                    owed: Some("stable".into()),
                }],
                error: None,
            }],
            ..Alarms::default()
        };
        let html = render(&a, "ns").into_string();
        assert!(html.contains("Flapping (held back until stable)"), "{html}");
        assert!(
            html.contains(
                r#"<td><code>cluster=a</code></td><td class="good">OK</td><td class="num">5</td><td>2025-11-29 07:06:40</td><td>stable</td>"#
            ),
            "{html}"
        );
    }
}
