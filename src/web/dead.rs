//! Dead letters: what is in `<ns>.dead` and why, filtered by task, reason
//! and text; admins replay one, a selection or all that match, and purge
//! with a typed confirmation (see [`crate::web::actions`]).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Json};
use maud::html;
use serde::Serialize;

use crate::queue::admin::{DeadEntry, peek, ready_count};
use crate::queue::message::DeadReason;
use crate::queue::topology::Topology;
use crate::web::actions::DeadFilter;
use crate::web::auth::Actor;
use crate::web::{Notice, WebState, csrf_field};

/// Dead letters shown at most.
const LIMIT: usize = 100;
/// How long reading the dead letters may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Serialize, Default)]
pub struct DeadLetters {
    pub queue: String,
    /// Messages in the queue (`None`: could not count).
    pub total: Option<usize>,
    pub entries: Vec<DeadEntry>,
    pub error: Option<String>,
}

/// Peek at the dead-letter queue: its messages are read without an ack on
/// a channel of the server's broker connection that is then closed, which
/// puts them back.
pub async fn read(state: &WebState) -> DeadLetters {
    let queue = Topology::from_config(&state.config).dead_queue();
    let mut out = DeadLetters {
        queue: queue.clone(),
        ..DeadLetters::default()
    };
    let result = tokio::time::timeout(
        TIMEOUT,
        state.broker.with(TIMEOUT, async |conn| {
            let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
            let total = ready_count(&ch, &queue).await.map_err(|e| e.to_string())?;
            let entries = peek(&ch, &queue, LIMIT).await.map_err(|e| e.to_string())?;
            let _ = ch.close(200, "peeked".into()).await;
            Ok::<_, String>((total, entries.into_iter().map(|(_, e)| e).collect()))
        }),
    )
    .await
    .unwrap_or_else(|_| Err(format!("RabbitMQ did not answer within {TIMEOUT:?}")));
    match result {
        Ok((total, entries)) => {
            out.total = Some(total);
            out.entries = entries;
        }
        Err(e) => out.error = Some(e),
    }
    out
}

pub async fn json(
    State(state): State<Arc<WebState>>,
    Query(filter): Query<DeadFilter>,
) -> impl IntoResponse {
    let mut d = read(&state).await;
    d.entries.retain(|e| filter.matches(e));
    Json(d)
}

pub async fn page(
    State(state): State<Arc<WebState>>,
    Extension(actor): Extension<Actor>,
    Query(filter): Query<DeadFilter>,
    Query(notice): Query<Notice>,
) -> impl IntoResponse {
    let config = &state.config;
    let mut d = read(&state).await;
    let peeked = d.entries.len();
    let tasks: std::collections::BTreeSet<String> =
        d.entries.iter().map(|e| e.task.clone()).collect();
    d.entries.retain(|e| filter.matches(e));
    let here = match filter.query() {
        q if q.is_empty() => "/dead".to_string(),
        q => format!("/dead?{q}"),
    };
    let admin = actor.is_admin();
    let body = html! {
        (notice.render())
        p.muted #count {
            (d.queue) ": " (d.total.map(|n| n.to_string()).unwrap_or_else(|| "?".into())) " message(s)"
            @if d.total.unwrap_or(0) > LIMIT { " (the first " (LIMIT) " read)" }
            @if !filter.is_empty() { " · " (d.entries.len()) " of " (peeked) " read match " (filter.describe()) }
            " · " a href={ "/api/dead?" (filter.query()) } { "JSON" }
        }
        form #filter method="get" action="/dead" {
            label { "task " select name="task" {
                option value="" { "any" }
                @for t in &tasks { option value=(t) selected[*t == filter.task] { (t) } }
            } }
            " " label { "reason " select name="reason" {
                option value="" { "any" }
                @for r in DeadReason::ALL { option value=(r.as_str()) selected[r.as_str() == filter.reason] { (r.as_str()) } }
            } }
            " " label { "text " input name="q" value=(filter.q) placeholder="in the id or the error"; }
            " " button { "Filter" }
        }
        @if let Some(e) = &d.error { div.problems { (e) } }
        @if d.entries.is_empty() && d.error.is_none() {
            div.ok { "No dead letters" @if !filter.is_empty() { " match" } "." }
        } @else {
            form #replay method="post" action="/actions/dead/replay" {
                (csrf_field(&state, &actor))
                input type="hidden" name="back" value=(here);
                table #dead {
                    tr { @if admin { th { "" } } th { "task id" } th { "task" } th { "reason" } th { "attempts" } th { "dead at (UTC)" } th { "last error" } }
                    @for e in &d.entries {
                        tr {
                            @if admin { td { input type="checkbox" name="id" value=(e.id) aria-label={ "select " (e.id) }; } }
                            td { a href={ "/task?id=" (e.id) } { (e.id) } }
                            td { (e.task) }
                            td.bad { (e.reason.to_string()) }
                            td.num { (e.attempts) }
                            td { (e.dead_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()) }
                            td { (e.last_error) }
                        }
                    }
                }
                @if admin {
                    p {
                        button #replay-selected { "Replay selected" }
                    }
                }
            }
            @if admin {
                form.inline #replay-all method="post" action="/actions/dead/replay" {
                    (csrf_field(&state, &actor))
                    input type="hidden" name="back" value=(here);
                    input type="hidden" name="all_matching" value="1";
                    input type="hidden" name="task" value=(filter.task);
                    input type="hidden" name="reason" value=(filter.reason);
                    input type="hidden" name="q" value=(filter.q);
                    button { "Replay all that match (" (filter.describe()) ")" }
                }
                h2 { "Purge" }
                form #purge method="post" action="/actions/dead/purge" {
                    (csrf_field(&state, &actor))
                    input type="hidden" name="back" value="/dead";
                    "Delete every dead letter in " code { (d.queue) } " (cannot be undone). Type the queue name to confirm: "
                    input name="confirm" autocomplete="off" aria-label="queue name";
                    " " button.danger { "Purge" }
                }
            }
        }
    };
    Html(crate::web::layout(&config.namespace, "Dead letters", None, body).into_string())
}
