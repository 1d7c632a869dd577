//! Tasks: find one by id (its state, attempts, errors, timings, parent and
//! children; else a run of that id in the run ledger), and search by task
//! name, status, run and argument fields through the indexes of
//! [`crate::queue::task_index`] (never a scan of Redis).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::queue::state::{HistoryEntry, StateStore, TaskState, TaskStatus};
use crate::queue::task_index::{self, Found, TaskQuery};
use crate::web::auth::Actor;
use crate::web::{Notice, WebState, csrf_field};

#[derive(Deserialize)]
pub struct Find {
    #[serde(default)]
    pub id: String,
}

/// One task as its page shows it.
#[derive(Serialize)]
pub struct TaskView {
    pub state: TaskState,
    pub history: Vec<HistoryEntry>,
    pub children: Vec<TaskState>,
    /// In the revoked set (workers dead-letter it when delivered).
    pub revoked: bool,
}

fn store(state: &WebState) -> StateStore {
    let c = &state.config;
    StateStore::new(state.redis.clone(), &c.namespace, c.state.ttl.0)
}

async fn view(state: &WebState, id: &uuid::Uuid) -> Result<Option<TaskView>, String> {
    let states = store(state);
    let ns = &state.config.namespace;
    let Some(st) = states.get(id).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let history = states.history(id).await.map_err(|e| e.to_string())?;
    let children = match &st.run_id {
        Some(run) => {
            let q = TaskQuery {
                run: Some(run.clone()),
                parent: Some(*id),
                limit: 500,
                ..TaskQuery::default()
            };
            task_index::search(&state.redis, &states, ns, &q)
                .await
                .map_err(|e| e.to_string())?
                .tasks
        }
        None => Vec::new(),
    };
    let revoked = crate::queue::revoke::is_revoked(&state.redis, ns, id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(TaskView {
        state: st,
        history,
        children,
        revoked,
    }))
}

fn bounded_secs() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}

/// `/api/task?id=`: the task's view, 404 when unknown.
pub async fn json(State(state): State<Arc<WebState>>, Query(f): Query<Find>) -> Response {
    let Ok(uuid) = f.id.trim().parse::<uuid::Uuid>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "id must be a task id (a UUID)"})),
        )
            .into_response();
    };
    match tokio::time::timeout(bounded_secs(), view(&state, &uuid)).await {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => (
            StatusCode::NOT_FOUND,
            Json(
                json!({"error": "no such task in Redis (unknown, older than state.ttl, or lost)"}),
            ),
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::BAD_GATEWAY, Json(json!({"error": e}))).into_response(),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            Json(json!({"error": "Redis did not answer within 5 s"})),
        )
            .into_response(),
    }
}

fn status_class(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Succeeded => "good",
        TaskStatus::Dead | TaskStatus::Failed => "bad",
        _ => "",
    }
}

fn args_text(st: &TaskState) -> String {
    st.args
        .as_ref()
        .map(|a| {
            a.iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn task_rows(tasks: &[TaskState]) -> Markup {
    html! {
        tr { th { "id" } th { "task" } th { "status" } th { "attempt" } th { "args" } th { "updated (UTC)" } th { "error" } }
        @for t in tasks {
            tr {
                td { a href={ "/task?id=" (t.id) } { (t.id) } }
                td { (t.task) }
                td class=(status_class(t.status)) { (t.status.as_str()) }
                td.num { (t.attempt) }
                td { (args_text(t)) }
                td { (t.updated_at.format("%Y-%m-%d %H:%M:%S")) }
                td { (t.error.as_deref().unwrap_or("")) }
            }
        }
    }
}

fn render_view(state: &WebState, actor: &Actor, v: &TaskView) -> Markup {
    let st = &v.state;
    let back = format!("/task?id={}", st.id);
    html! {
        table #task {
            tr { th { "id" } td { (st.id) } }
            tr { th { "task" } td { (st.task) } }
            tr { th { "status" } td class=(status_class(st.status)) #status { (st.status.as_str()) @if v.revoked { " (revoked)" } } }
            tr { th { "attempt" } td { (st.attempt) " (0 is the first run)" } }
            tr { th { "queue" } td { (st.queue) } }
            tr { th { "arguments" } td { code { (args_text(st)) } } }
            tr { th { "updated (UTC)" } td { (st.updated_at.format("%Y-%m-%d %H:%M:%S%.3f")) } }
            @if let Some(w) = &st.worker { tr { th { "worker" } td { (w) } } }
            @if let Some(r) = &st.run_id { tr { th { "run" } td { a href={ "/tasks?run=" (r) } { (r) } } } }
            @if let Some(p) = &st.parent_id { tr { th { "parent" } td { a href={ "/task?id=" (p) } { (p) } } } }
            @if let Some(r) = st.root_id.filter(|r| *r != st.id) { tr { th { "root" } td { a href={ "/task?id=" (r) } { (r) } } } }
            @if let Some(e) = &st.eta { tr { th { "not before" } td { (e.format("%Y-%m-%d %H:%M:%S")) } } }
            @if let Some(e) = &st.error { tr { th { "error" } td.bad { (e) } } }
        }
        @if actor.is_admin() {
            @if matches!(st.status, TaskStatus::Dead | TaskStatus::Failed) {
                form.inline method="post" action="/actions/task/retry" {
                    (csrf_field(state, actor))
                    input type="hidden" name="id" value=(st.id);
                    input type="hidden" name="back" value=(back);
                    button #retry { "Retry" }
                }
            }
            @if matches!(st.status, TaskStatus::Queued | TaskStatus::Retrying) && !v.revoked {
                form.inline method="post" action="/actions/task/revoke" {
                    (csrf_field(state, actor))
                    input type="hidden" name="id" value=(st.id);
                    input type="hidden" name="back" value=(back);
                    button #revoke { "Revoke" }
                }
            }
        }
        h2 { "Attempts" }
        @if v.history.is_empty() {
            p.muted { "No history recorded (written by an older version?)." }
        } @else {
            table #history {
                tr { th { "attempt" } th { "status" } th { "at (UTC)" } th { "after" } th { "error" } }
                @let first = v.history[0].at;
                @for h in &v.history {
                    tr {
                        td.num { (h.attempt) }
                        td class=(status_class(h.status)) { (h.status.as_str()) }
                        td { (h.at.format("%Y-%m-%d %H:%M:%S%.3f")) }
                        td.num { (format!("{:.3} s", (h.at - first).num_milliseconds() as f64 / 1000.0)) }
                        td { (h.error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        h2 { "Children" }
        @if v.children.is_empty() {
            p.muted { "None found." }
        } @else {
            table #children { (task_rows(&v.children)) }
        }
    }
}

pub async fn page(
    State(state): State<Arc<WebState>>,
    Extension(actor): Extension<Actor>,
    Query(f): Query<Find>,
    Query(notice): Query<Notice>,
) -> impl IntoResponse {
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
    let task = tokio::time::timeout(bounded_secs(), view(&state, &uuid))
        .await
        .unwrap_or_else(|_| Err("Redis did not answer within 5 s".into()));
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
        (notice.render())
        @match &task {
            Err(e) => { div.problems { "Redis: " (e) } }
            Ok(Some(v)) => { (render_view(&state, &actor, v)) }
            Ok(None) => {
                @if let Some(l) = &run {
                    p.muted { "A run (from the database run ledger) · " a href={ "/tasks?run=" (l.run.run_id) } { "its tasks" } " · " a href={ "/day?date=" (l.run.date) } { "its day" } }
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
    let title = match &task {
        Ok(Some(v)) => format!("Task {}", v.state.task),
        _ => "Find a task".to_string(),
    };
    (
        status,
        Html(crate::web::layout(&ns, &title, None, body).into_string()),
    )
}

/// The search form's fields (`/tasks?task=fetch-day&status=dead&run=…&arg=date=2026-03-08`).
#[derive(Deserialize, Default, Debug)]
pub struct Search {
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub run: String,
    /// `name=value`, or several separated by spaces.
    #[serde(default)]
    pub arg: String,
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Search {
    fn query(&self) -> Result<TaskQuery, String> {
        let status = match self.status.trim() {
            "" => None,
            s => Some(serde_json::from_value::<TaskStatus>(json!(s)).map_err(|_| {
                format!("unknown status {s:?} (queued, started, retrying, succeeded, failed, dead)")
            })?),
        };
        let mut args = Vec::new();
        for pair in self.arg.split_whitespace() {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("argument filter {pair:?} is not name=value"))?;
            args.push((k.to_string(), v.to_string()));
        }
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        Ok(TaskQuery {
            task: opt(&self.task),
            status,
            run: opt(&self.run),
            args,
            parent: None,
            limit: self.limit.unwrap_or(100).clamp(1, 1000),
        })
    }
}

async fn search(
    state: &WebState,
    s: &Search,
) -> Result<(Found, Vec<String>), (StatusCode, String)> {
    let q = s.query().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let ns = &state.config.namespace;
    let states = store(state);
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let names = task_index::names(&state.redis, ns).await?;
        let found = task_index::search(&state.redis, &states, ns, &q).await?;
        Ok::<_, crate::queue::state::StateError>((found, names))
    })
    .await
    .map_err(|_| {
        (
            StatusCode::GATEWAY_TIMEOUT,
            "Redis did not answer within 10 s".to_string(),
        )
    })?
    .map_err(|e| (StatusCode::BAD_GATEWAY, format!("Redis: {e}")))
}

/// `/api/tasks?...`: the search as JSON.
pub async fn search_json(State(state): State<Arc<WebState>>, Query(s): Query<Search>) -> Response {
    match search(&state, &s).await {
        Ok((found, _)) => Json(found).into_response(),
        Err((code, e)) => (code, Json(json!({"error": e}))).into_response(),
    }
}

/// `/tasks`: the search form and its results.
pub async fn search_page(State(state): State<Arc<WebState>>, Query(s): Query<Search>) -> Response {
    let result = search(&state, &s).await;
    let names = result.as_ref().map(|(_, n)| n.clone()).unwrap_or_default();
    let statuses = [
        "queued",
        "started",
        "retrying",
        "succeeded",
        "failed",
        "dead",
    ];
    let body = html! {
        form #search method="get" action="/tasks" {
            label { "task " select name="task" {
                option value="" { "any" }
                @for n in &names { option value=(n) selected[*n == s.task] { (n) } }
            } }
            " " label { "status " select name="status" {
                option value="" { "any" }
                @for st in statuses { option value=(st) selected[st == s.status] { (st) } }
            } }
            " " label { "run " input name="run" value=(s.run) size="38"; }
            " " label { "arguments " input name="arg" value=(s.arg) placeholder="date=2026-03-08" size="24"; }
            " " button { "Search" }
        }
        @match &result {
            Err((_, e)) => { div.problems { (e) } }
            Ok((found, _)) => {
                p.muted #summary {
                    (found.tasks.len()) " found, newest first; " (found.scanned) " of " (found.indexed) " indexed tasks read"
                    @if found.partial { " — stopped early: narrow the search (a task name or a run)" }
                    " · kept for state.ttl · " a href={ "/api/tasks?" (search_query(&s)) } { "JSON" }
                }
                @if !found.tasks.is_empty() { table #tasks { (task_rows(&found.tasks)) } }
            }
        }
    };
    let code = match &result {
        Err((c, _)) => *c,
        Ok(_) => StatusCode::OK,
    };
    (
        code,
        Html(crate::web::layout(&state.config.namespace, "Tasks", None, body).into_string()),
    )
        .into_response()
}

fn search_query(s: &Search) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("task", &s.task),
        ("status", &s.status),
        ("run", &s.run),
        ("arg", &s.arg),
    ] {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    q.finish()
}
