//! The audit page: the newest dashboard actions (and refusals), from the
//! `web_audit` table.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Json};
use maud::html;
use serde_json::json;

use crate::sink::audit::AuditEntry;
use crate::web::WebState;

/// Entries shown.
const LIMIT: u32 = 200;

async fn read(state: &WebState) -> Result<Vec<AuditEntry>, String> {
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state.sink.audit_entries(LIMIT),
    )
    .await
    .map_err(|_| "the database did not answer within 5 s".to_string())?
    .map_err(|e| e.to_string())
}

pub async fn json(State(state): State<Arc<WebState>>) -> impl IntoResponse {
    Json(match read(&state).await {
        Ok(entries) => json!({"entries": entries, "error": null}),
        Err(e) => json!({"entries": [], "error": e}),
    })
}

pub async fn page(State(state): State<Arc<WebState>>) -> impl IntoResponse {
    let (entries, error) = match read(&state).await {
        Ok(e) => (e, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let body = html! {
        p.muted { "Every dashboard action and refusal, newest first (the last " (LIMIT) ") · " a href="/api/audit" { "JSON" } }
        @if let Some(e) = &error { div.problems { "audit log unreadable: " (e) } }
        @if entries.is_empty() && error.is_none() {
            p.muted { "No action taken yet." }
        } @else {
            table #audit {
                tr { th { "when (UTC)" } th { "who" } th { "from" } th { "action" } th { "target" } th { "result" } th { "detail" } }
                @for e in &entries {
                    tr {
                        td { (e.at.format("%Y-%m-%d %H:%M:%S")) }
                        td { (e.actor) " " span.muted { (e.role) } }
                        td { (e.remote) }
                        td { (e.action) }
                        td { (e.target) }
                        td class=(if e.result == "ok" { "good" } else { "bad" }) { (e.result) }
                        td { (e.detail) }
                    }
                }
            }
        }
    };
    Html(crate::web::layout(&state.config.namespace, "Audit log", None, body).into_string())
}
