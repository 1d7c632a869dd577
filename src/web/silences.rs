//! `/silences`: the silences (create, expire) and the notification ledger,
//! filterable by check or task. No auto-refresh: it holds a form.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use axum::{Extension, Router};
use maud::html;
use serde::{Deserialize, Serialize};

use crate::notify::silence::Silence;
use crate::sink::notifications::NotificationRecord;
use crate::web::auth::Actor;
use crate::web::{Notice, WebState, csrf_field};

pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/silences", get(page))
        .route("/api/silences", get(silences_json))
        .route("/api/notifications", get(notifications_json))
}

/// `?check=` narrows the ledger to one check or task; `?since=` (default
/// `1d`) how far back it goes.
#[derive(Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    pub check: String,
    #[serde(default)]
    pub since: String,
}

/// Entries of the ledger shown at most.
const LIMIT: u32 = 200;

#[derive(Serialize, Default)]
pub struct View {
    pub silences: Vec<Silence>,
    pub notifications: Vec<NotificationRecord>,
    pub errors: Vec<String>,
}

async fn gather(state: &WebState, f: &Filter) -> View {
    let now = crate::sink::ledger::now();
    let mut v = View::default();
    let back = match f.since.trim() {
        "" => Duration::from_secs(86_400),
        s => match crate::config::parse_duration(s) {
            Ok(d) => d,
            Err(e) => {
                v.errors.push(format!("since: {e}"));
                Duration::from_secs(86_400)
            }
        },
    };
    let since =
        now - chrono::Duration::from_std(back).unwrap_or_else(|_| chrono::Duration::days(1));
    let bound = Duration::from_secs(5);
    let subject = Some(f.check.trim()).filter(|s| !s.is_empty());
    let (silences, notifications) = tokio::join!(
        tokio::time::timeout(
            bound,
            state.sink.silences(now - chrono::Duration::days(1), None)
        ),
        tokio::time::timeout(bound, state.sink.notifications_since(since, subject, LIMIT)),
    );
    match silences {
        Ok(Ok(s)) => v.silences = s,
        Ok(Err(e)) => v.errors.push(format!("silences: {e}")),
        Err(_) => v
            .errors
            .push("silences: the database did not answer within 5 s".into()),
    }
    match notifications {
        Ok(Ok(n)) => v.notifications = n,
        Ok(Err(e)) => v.errors.push(format!("notifications: {e}")),
        Err(_) => v
            .errors
            .push("notifications: the database did not answer within 5 s".into()),
    }
    v
}

async fn silences_json(State(state): State<Arc<WebState>>) -> impl IntoResponse {
    let v = gather(&state, &Filter::default()).await;
    Json(serde_json::json!({"silences": v.silences, "errors": v.errors}))
}

async fn notifications_json(
    State(state): State<Arc<WebState>>,
    Query(f): Query<Filter>,
) -> impl IntoResponse {
    let v = gather(&state, &f).await;
    Json(serde_json::json!({"notifications": v.notifications, "errors": v.errors}))
}

async fn page(
    State(state): State<Arc<WebState>>,
    Extension(actor): Extension<Actor>,
    Query(f): Query<Filter>,
    Query(notice): Query<Notice>,
) -> impl IntoResponse {
    let v = gather(&state, &f).await;
    let now = crate::sink::ledger::now();
    let admin = actor.is_admin();
    let checks: Vec<&str> = state
        .config
        .checks
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let body = html! {
        (notice.render())
        p.muted { "Kept in the database · " a href="/alarms" { "alarms and health" } " · " a href="/api/silences" { "JSON" } }
        @if !v.errors.is_empty() { div.problems { ul { @for e in &v.errors { li { (e) } } } } }
        h2 { "Silences" }
        @if v.silences.is_empty() {
            p.muted { "No silence in force or ended in the last day." }
        } @else {
            table #silences {
                tr { th { "state" } th { "check" } th { "matchers" } th { "from (UTC)" } th { "until (UTC)" } th { "by" } th { "comment" } th { "" } }
                @for s in &v.silences {
                    tr id={ "silence-" (s.id) } {
                        td class=(if s.active(now) { "bad" } else { "muted" }) { (s.state(now)) @if !s.expired_by.is_empty() { " (" (s.expired_by) ")" } }
                        td { (s.check.as_deref().unwrap_or("(health)")) }
                        td { @for m in &s.matchers { code { (m.to_string()) } " " } }
                        td { (s.starts_at.format("%Y-%m-%d %H:%M")) }
                        td { @if s.until_resolved { "until resolved" } @else { (s.ends_at.format("%Y-%m-%d %H:%M")) } }
                        td { (s.author) }
                        td { (s.comment) }
                        td {
                            @if admin && s.active(now) {
                                form.inline method="post" action="/actions/silence/expire" {
                                    (csrf_field(&state, &actor))
                                    input type="hidden" name="id" value=(s.id);
                                    input type="hidden" name="back" value="/silences";
                                    button.expire { "Expire" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if admin {
            h3 { "New silence" }
            form #new-silence method="post" action="/actions/silence/add" {
                (csrf_field(&state, &actor))
                input type="hidden" name="back" value="/silences";
                label { "check " select name="check" {
                    option value="" { "(health: match on task)" }
                    @for c in &checks { option value=(c) { (c) } }
                } }
                " " label { "matchers " input name="match" placeholder="cluster=prod-a host=~be[0-9]+" size="32"; }
                " " label { "for " input name="for" placeholder="2h" size="6"; }
                " " label { "or until resolved " input type="checkbox" name="until_resolved" value="1"; }
                " " label { "comment " input name="comment" required size="24"; }
                " " button { "Silence" }
            }
        }
        h2 { "Notifications" }
        form.inline method="get" action="/silences" {
            label { "check or task " input name="check" value=(f.check) size="16"; }
            " " label { "since " input name="since" value=(f.since) placeholder="1d" size="5"; }
            " " button { "Filter" }
        }
        " " a href={ "/api/notifications?check=" (f.check) "&since=" (f.since) } { "JSON" }
        @if v.notifications.is_empty() {
            p.muted { "No notification recorded in that span." }
        } @else {
            table #notifications {
                tr { th { "at (UTC)" } th { "source" } th { "subject" } th { "event" } th { "labels" } th { "receiver" } th { "outcome" } th { "attempts" } th { "error" } }
                @for n in &v.notifications {
                    tr {
                        td { (n.at.format("%Y-%m-%d %H:%M:%S")) }
                        td { (n.source) }
                        td { (n.subject) }
                        td { (n.event) }
                        td { code { (n.labels.to_string()) } }
                        td { (n.receiver) }
                        td class=(match n.outcome.as_str() { "sent" => "good", "failed" => "bad", _ => "muted" }) { (n.outcome) }
                        td.num { (n.attempts) }
                        td { (n.error) }
                    }
                }
            }
        }
    };
    Html(
        crate::web::layout(
            &state.config.namespace,
            "Silences and notifications",
            None,
            body,
        )
        .into_string(),
    )
}
