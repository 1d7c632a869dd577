//! Schedules: next and last fires, local and UTC, and the catch-up policy.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Json};
use maud::html;
use serde_json::json;

use crate::cli::schedule::{Row, schedule_rows};
use crate::config::AppConfig;
use crate::queue::beat::Beat;

async fn read(config: &AppConfig) -> Result<(Vec<Row>, Option<String>), String> {
    let registry = crate::tasks::lookup_registry(config).map_err(|e| e.to_string())?;
    let beat =
        Beat::new(Arc::new(config.queue.clone()), Arc::new(registry)).map_err(|e| e.to_string())?;
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        schedule_rows(&beat, chrono::Utc::now(), 3),
    )
    .await
    .map_err(|_| "Redis did not answer within 5 s".to_string())
}

pub async fn json(State(config): State<Arc<AppConfig>>) -> impl IntoResponse {
    Json(match read(&config).await {
        Ok((rows, error)) => json!({"schedules": rows, "error": error}),
        Err(e) => json!({"schedules": [], "error": e}),
    })
}

pub async fn page(State(config): State<Arc<AppConfig>>) -> impl IntoResponse {
    let (rows, error) = match read(&config).await {
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
    Html(crate::web::layout(&config.namespace, "Schedules", None, body).into_string())
}
