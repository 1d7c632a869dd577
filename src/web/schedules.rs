//! Schedules: next and last fires, local and UTC, and the catch-up policy.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Json};
use maud::html;
use serde_json::json;

use crate::cli::schedule::{Row, schedule_rows};
use crate::queue::beat::Beat;
use crate::web::WebState;

async fn read(beat: &Beat) -> Result<(Vec<Row>, Option<String>), String> {
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        schedule_rows(beat, chrono::Utc::now(), 3),
    )
    .await
    .map_err(|_| "Redis did not answer within 5 s".to_string())
}

pub async fn json(State(state): State<Arc<WebState>>) -> impl IntoResponse {
    Json(match read(&state.beat).await {
        Ok((rows, error)) => json!({"schedules": rows, "error": error}),
        Err(e) => json!({"schedules": [], "error": e}),
    })
}

pub async fn page(State(state): State<Arc<WebState>>) -> impl IntoResponse {
    let (rows, error) = match read(&state.beat).await {
        Ok(r) => r,
        Err(e) => (Vec::new(), Some(e)),
    };
    let body = html! {
        p.muted { "Fired by every running beat, once each (claimed in Redis) · " a href="/api/schedules" { "JSON" } }
        @if let Some(e) = &error { div.problems { "last fires unknown: " (e) } }
        @if rows.is_empty() {
            p.muted { "No enabled schedule in the configuration." }
        } @else {
            table #schedules {
                tr { th { "name" } th { "schedule" } th { "task" } th { "queue" } th { "catch-up" } th { "next fires (local / UTC)" } th { "last fire" } }
                @for r in &rows {
                    tr {
                        td { (r.name) }
                        td { (r.schedule) " " span.muted { (r.timezone) } }
                        td { (r.task) " " span.muted { (r.args.to_string()) } }
                        td { (r.queue) }
                        td { (r.catch_up) }
                        td { @for f in &r.next { (f.local) " / " span.muted { (f.utc) } br; } }
                        td { @if let Some(l) = &r.last { (l.local) } @else { "never" } }
                    }
                }
            }
        }
    };
    Html(crate::web::layout(&state.config.namespace, "Schedules", None, body).into_string())
}
