//! Dead letters: what is in `<ns>.dead` and why (read-only; replay and
//! purge stay with `alertflow dead` until actions with auth arrive).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Json};
use maud::html;
use serde::Serialize;

use crate::queue::admin::{DeadEntry, peek, ready_count};
use crate::queue::topology::Topology;
use crate::web::WebState;

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
    let result = tokio::time::timeout(TIMEOUT, async {
        let conn = state.broker.connection(TIMEOUT).await?;
        let r = async {
            let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
            let total = ready_count(&ch, &queue).await.map_err(|e| e.to_string())?;
            let entries = peek(&ch, &queue, LIMIT).await.map_err(|e| e.to_string())?;
            let _ = ch.close(200, "peeked".into()).await;
            Ok::<_, String>((total, entries.into_iter().map(|(_, e)| e).collect()))
        }
        .await;
        if r.is_err() {
            state.broker.discard(&conn).await;
        }
        r
    })
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

pub async fn json(State(state): State<Arc<WebState>>) -> impl IntoResponse {
    Json(read(&state).await)
}

pub async fn page(State(state): State<Arc<WebState>>) -> impl IntoResponse {
    let config = &state.config;
    let d = read(&state).await;
    let body = html! {
        p.muted {
            (d.queue) ": " (d.total.map(|n| n.to_string()).unwrap_or_else(|| "?".into())) " message(s)"
            @if d.total.unwrap_or(0) > LIMIT { " (the first " (LIMIT) " shown)" }
            " · replay or purge with " code { "alertflow dead replay ID|--all" } " · " a href="/api/dead" { "JSON" }
        }
        @if let Some(e) = &d.error { div.problems { (e) } }
        @if d.entries.is_empty() && d.error.is_none() {
            div.ok { "No dead letters." }
        } @else {
            table #dead {
                tr { th { "task id" } th { "task" } th { "reason" } th { "attempts" } th { "dead at (UTC)" } th { "last error" } }
                @for e in &d.entries {
                    tr {
                        td { a href={ "/task?id=" (e.id) } { (e.id) } }
                        td { (e.task) }
                        td.bad { (e.reason.to_string()) }
                        td.num { (e.attempts) }
                        td { (e.dead_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()) }
                        td { (e.last_error) }
                    }
                }
            }
        }
    };
    Html(crate::web::layout(&config.namespace, "Dead letters", None, body).into_string())
}
