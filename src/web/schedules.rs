//! Schedules: next and last fires, local and UTC, the catch-up policy and
//! whether each is paused; admins pause, resume and run them now.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Json};
use maud::html;
use serde_json::json;

use crate::cli::schedule::{Row, schedule_rows};
use crate::queue::beat::Beat;
use crate::web::auth::Actor;
use crate::web::{Notice, WebState, csrf_field};

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

pub async fn page(
    State(state): State<Arc<WebState>>,
    Extension(actor): Extension<Actor>,
    Query(notice): Query<Notice>,
) -> impl IntoResponse {
    let (rows, error) = match read(&state.beat).await {
        Ok(r) => r,
        Err(e) => (Vec::new(), Some(e)),
    };
    let admin = actor.is_admin();
    let body = html! {
        (notice.render())
        p.muted { "Fired by every running beat, once each (claimed in Redis); a paused schedule is skipped by every beat and its passed fires are not caught up on resume · " a href="/api/schedules" { "JSON" } }
        @if let Some(e) = &error { div.problems { "last fires unknown: " (e) } }
        @if rows.is_empty() {
            p.muted { "No enabled schedule in the configuration." }
        } @else {
            table #schedules {
                tr { th { "name" } th { "schedule" } th { "task" } th { "queue" } th { "catch-up" } th { "next fires (local / UTC)" } th { "last fire" } th { "state" } }
                @for r in &rows {
                    tr id={ "schedule-" (r.name) } {
                        td { (r.name) }
                        td { (r.schedule) " " span.muted { (r.timezone) } }
                        td { (r.task) " " span.muted { (r.args.to_string()) } }
                        td { (r.queue) }
                        td { (r.catch_up) }
                        td { @for f in &r.next { (f.local) " / " span.muted { (f.utc) } br; } }
                        td { @if let Some(l) = &r.last { (l.local) } @else { "never" } }
                        td {
                            @if let Some(p) = &r.paused {
                                span.bad { "paused" } " by " (p.by) " at " (p.at.format("%Y-%m-%d %H:%M UTC"))
                                @if !p.comment.is_empty() { ": " (p.comment) }
                                @if admin {
                                    form.inline method="post" action="/actions/schedule/resume" {
                                        (csrf_field(&state, &actor))
                                        input type="hidden" name="name" value=(r.name);
                                        " " button.resume { "Resume" }
                                    }
                                }
                            } @else {
                                span.good { "active" }
                                @if admin {
                                    form.inline method="post" action="/actions/schedule/pause" {
                                        (csrf_field(&state, &actor))
                                        input type="hidden" name="name" value=(r.name);
                                        " " input name="comment" placeholder="why" size="12" aria-label="why pause";
                                        " " button.pause { "Pause" }
                                    }
                                }
                            }
                            @if admin {
                                form.inline method="post" action="/actions/schedule/run" {
                                    (csrf_field(&state, &actor))
                                    input type="hidden" name="name" value=(r.name);
                                    " " button.run { "Run now" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Html(crate::web::layout(&state.config.namespace, "Schedules", None, body).into_string())
}
