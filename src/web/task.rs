//! Find a task by id: its state in Redis, else a run of that id in the run
//! ledger.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use maud::html;
use serde::Deserialize;

use crate::queue::state::StateStore;
use crate::web::WebState;

#[derive(Deserialize)]
pub struct Find {
    #[serde(default)]
    pub id: String,
}

pub async fn page(State(state): State<Arc<WebState>>, Query(f): Query<Find>) -> impl IntoResponse {
    let config = &state.config;
    let id = f.id.trim().to_string();
    let ns = config.namespace.clone();
    let Ok(uuid) = id.parse::<uuid::Uuid>() else {
        let body = html! { div.problems { "Not a task or run id (a UUID): " code { (id) } } };
        return (
            StatusCode::BAD_REQUEST,
            Html(crate::web::layout(&ns, "Find a task", None, body).into_string()),
        );
    };
    let task = StateStore::new(state.redis.clone(), &ns, config.state.ttl.0)
        .get(&uuid)
        .await
        .map_err(|e| e.to_string());
    let run = if matches!(task, Ok(None)) {
        state
            .sink
            .run_ledgers(std::slice::from_ref(&id))
            .await
            .ok()
            .and_then(|v| v.into_iter().next())
    } else {
        None
    };
    let found = matches!(task, Ok(Some(_))) || run.is_some();
    let body = html! {
        @match &task {
            Err(e) => { div.problems { "Redis: " (e) } }
            Ok(Some(st)) => {
                table #task {
                    tr { th { "id" } td { (st.id) } }
                    tr { th { "task" } td { (st.task) } }
                    tr { th { "status" } td class=(if st.status.is_final() && st.status != crate::queue::state::TaskStatus::Succeeded { "bad" } else { "" }) { (st.status.as_str()) } }
                    tr { th { "attempt" } td { (st.attempt) " (0 is the first run)" } }
                    tr { th { "queue" } td { (st.queue) } }
                    tr { th { "updated (UTC)" } td { (st.updated_at.format("%Y-%m-%d %H:%M:%S%.3f")) } }
                    @if let Some(w) = &st.worker { tr { th { "worker" } td { (w) } } }
                    @if let Some(r) = &st.run_id { tr { th { "run" } td { a href={ "/task?id=" (r) } { (r) } } } }
                    @if let Some(e) = &st.error { tr { th { "error" } td.bad { (e) } } }
                }
            }
            Ok(None) => {
                @if let Some(l) = &run {
                    p.muted { "A run (from the database run ledger)." }
                    table #run {
                        tr { th { "run" } td { (l.run.run_id) } }
                        tr { th { "date" } td { (l.run.date) } }
                        tr { th { "pages written" } td { (l.pages_written) "/" (l.run.total_pages.map(|t| t.to_string()).unwrap_or_else(|| "?".into())) } }
                        tr { th { "rows" } td { (l.rows_written) } }
                        tr { th { "started (UTC)" } td { (l.run.started_at) } }
                    }
                } @else {
                    div.problems { "No task or run " code { (id) } " in Redis (unknown, older than state.ttl, or lost) nor in the run ledger." }
                }
            }
        }
    };
    let status = if found || task.is_err() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    (
        status,
        Html(crate::web::layout(&ns, "Find a task", None, body).into_string()),
    )
}
