//! `alertflow web`: server-rendered pages over what alertflow already keeps
//! (RabbitMQ, Redis, the run ledger), and the same data as JSON under
//! `/api/`. Pages work without JavaScript and refresh themselves.
//!
//! The clients the pages read with are built once ([`WebState`]). Without
//! `[web.auth]` the server binds loopback only; with it, any address, and
//! every request is signed in (see [`auth`]). Actions (see [`actions`]) are
//! POSTs with a CSRF token, admin only, and audited.

pub mod actions;
pub mod alarms;
pub mod audit;
pub mod auth;
pub mod broker;
pub mod chart;
pub mod dead;
pub mod overview;
pub mod runs;
pub mod schedules;
pub mod silences;
pub mod task;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;

use maud::{DOCTYPE, Markup, html};

use crate::queue::redis_pool::Pool;

use crate::config::AppConfig;
use crate::queue::beat::Beat;
use crate::queue::task::Registry;
use crate::sink::starrocks::SqlSink;

/// Why the server will not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("--listen {0:?} is not an address (e.g. 127.0.0.1:9800)")]
    BadAddress(String),
    #[error(
        "refusing to serve on {0} without [web.auth]: pages show queues, runs and task errors and let admins act. Either listen on 127.0.0.1 and reach it through an SSH tunnel (ssh -L 9800:127.0.0.1:9800 host), or add users to the config: [[web.auth.users]] name = \"ann\", role = \"admin\" (or \"viewer\"), password_hash = the output of `alertflow web hash-password` (or token_sha256 from `alertflow web new-token`)"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot set up the web server: {0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The address to serve on: loopback only unless `auth` (`[web.auth]` is
/// configured).
pub fn bind_address(listen: &str, auth: bool) -> Result<SocketAddr, WebError> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| WebError::BadAddress(listen.to_string()))?;
    if !auth && !addr.ip().is_loopback() {
        return Err(WebError::NotLoopback(addr));
    }
    Ok(addr)
}

/// What every request reads from, built once when the server starts: the
/// config, the task registry (queue families), a Redis pool, the database
/// pool, the schedules and one broker connection.
pub struct WebState {
    pub config: Arc<AppConfig>,
    pub registry: Arc<Registry>,
    pub redis: Pool,
    pub sink: SqlSink,
    pub beat: Beat,
    pub gate: auth::Gate,
    pub broker: broker::BrokerLink,
}

impl WebState {
    pub fn new(config: Arc<AppConfig>) -> Result<WebState, WebError> {
        let setup = |e: &dyn std::fmt::Display| WebError::Setup(e.to_string());
        let registry = Arc::new(crate::tasks::lookup_registry(&config).map_err(|e| setup(&e))?);
        let redis = crate::queue::context::redis_pool(&config).map_err(|e| setup(&e))?;
        let beat =
            Beat::new(Arc::new(config.queue.clone()), registry.clone()).map_err(|e| setup(&e))?;
        Ok(WebState {
            gate: auth::Gate::new(&config.web),
            sink: SqlSink::new(&config),
            broker: broker::BrokerLink::new(config.clone()),
            registry,
            redis,
            beat,
            config,
        })
    }
}

type Shared = Arc<WebState>;

/// A page: the head, the navigation and `body`; `refresh` reloads it every
/// so many seconds (no JavaScript).
pub fn layout(namespace: &str, title: &str, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
                title { (title) " — alertflow " (namespace) }
                link rel="stylesheet" href="/style.css";
            }
            body {
                nav {
                    strong { "alertflow " span.muted { (namespace) } }
                    " · " a href="/" { "Overview" }
                    " · " a href="/runs" { "Runs" }
                    " · " a href="/tasks" { "Tasks" }
                    " · " a href="/dead" { "Dead letters" }
                    " · " a href="/schedules" { "Schedules" }
                    " · " a href="/alarms" { "Alarms" }
                    " · " a href="/silences" { "Silences" }
                    " · " a href="/audit" { "Audit" }
                    " · " form.inline action="/task" method="get" {
                        input name="id" placeholder="task or run id" size="38" aria-label="task or run id";
                        " " button { "Find" }
                    }
                }
                h1 { (title) }
                (body)
            }
        }
    }
}

/// A notice left by an action (`?notice=` after a redirect, `?failure=`
/// when it failed).
#[derive(serde::Deserialize, Default)]
pub struct Notice {
    #[serde(default)]
    pub notice: Option<String>,
    #[serde(default)]
    pub failure: Option<String>,
}

impl Notice {
    pub fn render(&self) -> Markup {
        html! {
            @if let Some(n) = &self.notice { div.ok #notice { (n) } }
            @if let Some(f) = &self.failure { div.problems #notice { "Failed: " (f) } }
        }
    }
}

/// The hidden CSRF field of `actor`'s forms.
pub fn csrf_field(state: &WebState, actor: &auth::Actor) -> Markup {
    html! { input type="hidden" name="csrf" value=(state.gate.csrf_token(actor)); }
}

/// The routes, behind sign-in.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .merge(actions::routes())
        .route("/audit", get(audit::page))
        .route("/api/audit", get(audit::json))
        .route("/tasks", get(task::search_page))
        .route("/api/tasks", get(task::search_json))
        .route("/api/task", get(task::json))
        .route("/api/session", get(session))
        .route("/", get(overview_page))
        .route("/api/overview", get(overview_json))
        .route("/dead", get(dead::page))
        .route("/api/dead", get(dead::json))
        .route("/schedules", get(schedules::page))
        .route("/api/schedules", get(schedules::json))
        .route("/task", get(task::page))
        .route("/style.css", get(style))
        .merge(runs::routes())
        .merge(alarms::routes())
        .merge(silences::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .with_state(state)
}

/// Who is signed in, their role, and the CSRF token scripts post with.
async fn session(
    State(state): State<Shared>,
    axum::Extension(actor): axum::Extension<auth::Actor>,
) -> impl IntoResponse {
    Json(serde_json::json!({
        "user": actor.name,
        "role": actor.role,
        "csrf": state.gate.csrf_token(&actor),
    }))
}

async fn overview_page(State(state): State<Shared>) -> impl IntoResponse {
    let o = overview::Overview::gather(&state).await;
    Html(overview::render(&o, &state.config.namespace).into_string())
}

async fn overview_json(State(state): State<Shared>) -> impl IntoResponse {
    Json(overview::Overview::gather(&state).await)
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("style.css"),
    )
}

/// Serve until `shutdown`; `ready` hears the bound address.
pub async fn serve(
    state: Arc<WebState>,
    addr: SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), WebError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| WebError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| WebError::Listen { addr, source })?;
    ready(bound);
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
    .map_err(|source| WebError::Listen { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_served_without_auth() {
        assert!(bind_address("127.0.0.1:9800", false).is_ok());
        assert!(bind_address("[::1]:9800", false).is_ok());
        let e = bind_address("0.0.0.0:9800", false).unwrap_err().to_string();
        assert!(
            e.contains("[web.auth]") && e.contains("SSH tunnel") && e.contains("hash-password"),
            "{e}"
        );
        assert!(matches!(
            bind_address("10.0.0.5:80", false),
            Err(WebError::NotLoopback(_))
        ));
        assert!(bind_address("0.0.0.0:9800", true).is_ok());
        assert!(matches!(
            bind_address("localhost", false),
            Err(WebError::BadAddress(_))
        ));
    }
}
