//! A Lark/Slack-compatible HTTP sandbox: the tenant-token and list-messages
//! endpoints of the Lark Open API over a synthetic, deterministic chat
//! history, a Lark custom-bot webhook and a Slack incoming webhook, with the
//! real services' error codes and rate limits (`docs/lark-api.md` §7).
//!
//! It serves the project's tests, demo and benchmarks, and lets people try
//! alertflow without Lark credentials. It owns no alert logic: the rows a
//! card must parse to come from the generator (`generator.rs`), which knows
//! what it generated. It must never talk to the real services.
//!
//! The crate does not depend on `alertflow`: the expected rows
//! ([`ExpectedRow`]), their severity ranking and the bot signature check are
//! written here from the contracts (`docs/cards.md`, `docs/lark-api.md`), so
//! they test alertflow's code instead of repeating it. The `alertflow-worker`
//! and `alertflow-beat` binaries do not link this crate.
//!
//! Choices where the real API is undocumented:
//! - `start_time` and `end_time` are both inclusive, compared in whole
//!   seconds: a message is listed when `start_time <= create_time / 1000 <= end_time`.
//! - `page_token` is URL-safe base64 of a small JSON cursor binding the chat,
//!   the sort, the requested window (as sent) and the position (day + index);
//!   reusing it with a different chat, sort or window gives 400 / 230001.
//! - The last page omits `page_token` unless `page_token_on_last_page` is set.
//! - With `hide_future` (default), messages whose `create_time` is after the
//!   sandbox clock are not listed yet, so "today" fills up as time passes.

mod generator;
pub mod influx_v2;
mod lark;
mod quota;
pub mod stream_load;
mod webhooks;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use generator::{
    Expected, ExpectedRow, RECALLED_CONTENT, SKIP_NO_ALERT_FIELDS, SKIP_NO_ALERT_NAME,
    SKIP_NOT_A_CARD, SKIP_RECALLED, SKIP_UNREADABLE, UPGRADE_PLACEHOLDER, day_messages,
    expected_day, expected_range, pacific_date_of_ms, pacific_day_bounds_ms,
};
pub use webhooks::lark_bot_sign;

/// Days of history when `history_from` is not set: the last 400 days up to today.
pub const DEFAULT_HISTORY_DAYS: u64 = 400;

/// How the sandbox behaves. Every field has a default, so `{}` (or
/// `SandboxConfig::default()`) is a working sandbox.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxConfig {
    /// Seed of the synthetic history: same seed, same messages.
    pub seed: u64,
    /// The one app whose credentials the token endpoint accepts.
    pub app_id: String,
    pub app_secret: String,
    /// Chats the bot is a member of; any other chat id gives 230002.
    pub chats: Vec<String>,
    /// Messages per chat per Pacific day.
    pub per_day: u32,
    /// First day of history (Pacific date); default: today − 399 days.
    pub history_from: Option<NaiveDate>,
    /// Last day of history (Pacific date); default: today.
    pub history_to: Option<NaiveDate>,
    /// Lifetime of a tenant access token.
    pub token_ttl_secs: u64,
    pub quotas: QuotaConfig,
    /// Custom-bot hook tokens → optional signing secret (`None` or `""`: unsigned).
    pub bot_hooks: BTreeMap<String, Option<String>>,
    /// Accepted Slack hook paths (`/services/T…/B…/…`); empty: any such path.
    pub slack_hooks: Vec<String>,
    /// Do not list messages created after the sandbox clock's now.
    pub hide_future: bool,
    /// Return `page_token: ""` on the last page instead of omitting it.
    pub page_token_on_last_page: bool,
    /// Generated days kept in memory.
    pub day_cache_days: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            app_id: "cli_sandbox".to_owned(),
            app_secret: "sandbox-secret".to_owned(),
            chats: vec!["oc_sandbox_alerts".to_owned()],
            per_day: 200,
            history_from: None,
            history_to: None,
            token_ttl_secs: 7200,
            quotas: QuotaConfig::default(),
            bot_hooks: BTreeMap::from([
                ("sandbox".to_owned(), None),
                (
                    "sandbox-signed".to_owned(),
                    Some("sandbox-sign-secret".to_owned()),
                ),
            ]),
            slack_hooks: Vec::new(),
            hide_future: true,
            page_token_on_last_page: false,
            day_cache_days: 64,
        }
    }
}

// Secrets (app secret, hook tokens and signing secrets) never reach Debug output.
impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("seed", &self.seed)
            .field("app_id", &self.app_id)
            .field("app_secret", &"***")
            .field("chats", &self.chats)
            .field("per_day", &self.per_day)
            .field("history_from", &self.history_from)
            .field("history_to", &self.history_to)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("quotas", &self.quotas)
            .field(
                "bot_hooks",
                &format_args!("<{} hooks>", self.bot_hooks.len()),
            )
            .field(
                "slack_hooks",
                &format_args!("<{} hooks>", self.slack_hooks.len()),
            )
            .field("hide_future", &self.hide_future)
            .field("page_token_on_last_page", &self.page_token_on_last_page)
            .field("day_cache_days", &self.day_cache_days)
            .finish()
    }
}

impl SandboxConfig {
    /// The history's first and last Pacific dates, with defaults resolved
    /// against today's Pacific date.
    pub fn history_range(&self) -> (NaiveDate, NaiveDate) {
        self.history_range_on(pacific_date_of_ms(unix_ms(SystemTime::now())))
    }

    /// [`Self::history_range`] with "today" given.
    pub fn history_range_on(&self, today: NaiveDate) -> (NaiveDate, NaiveDate) {
        let to = self.history_to.unwrap_or(today);
        let from = self
            .history_from
            .unwrap_or_else(|| to - chrono::Days::new(DEFAULT_HISTORY_DAYS - 1));
        (from, to)
    }
}

/// Request quotas (defaults are the real services' published limits).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaConfig {
    /// List messages: per app, per path.
    pub messages_per_sec: u32,
    pub messages_per_min: u32,
    /// Custom bot: per hook token.
    pub bot_per_sec: u32,
    pub bot_per_min: u32,
    /// Slack: per hook path, a token bucket.
    pub slack_per_sec: u32,
    pub slack_burst: u32,
    /// Answer OpenAPI rate limiting with HTTP 400 instead of 429 (older APIs).
    pub legacy_rate_limit_400: bool,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            messages_per_sec: 50,
            messages_per_min: 1000,
            bot_per_sec: 5,
            bot_per_min: 100,
            slack_per_sec: 1,
            slack_burst: 3,
            legacy_rate_limit_400: false,
        }
    }
}

/// An endpoint, for statistics and fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /open-apis/auth/v3/tenant_access_token/internal`
    TenantToken,
    /// `GET /open-apis/im/v1/messages`
    ListMessages,
    /// `POST /open-apis/bot/v2/hook/{token}`
    LarkBot,
    /// `POST /services/{T}/{B}/{X}`
    Slack,
}

/// A failure to inject into the next requests of an endpoint (before any
/// other check, without using quota).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 (`{"code":1500,"msg":"internal error"}`; Slack: `rollup_error`).
    Http500,
    /// HTTP 429: OpenAPI 99991400 with `x-ogw-*` headers; bot 11232; Slack `Retry-After: 1`.
    RateLimit429,
    /// HTTP 200 `{"code":11232,...}` (the custom bot's frequency limit).
    BotFrequency11232,
    /// A business error code: OpenAPI HTTP 400 with the code (token endpoint
    /// and bot: HTTP 200); for Slack the number is the HTTP status.
    Code(i64),
    /// Answer normally, but only after this long.
    Delay(Duration),
}

/// Counters of one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    pub requests: u64,
    /// Succeeded (2xx and code 0 / Slack `ok`).
    pub ok: u64,
    /// Refused by a quota (HTTP 429, 99991400 or 11232), injected ones included.
    pub rate_limited: u64,
    /// Any other failure.
    pub errors: u64,
}

/// A snapshot of the sandbox's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    pub tenant_token: EndpointStats,
    pub list_messages: EndpointStats,
    pub lark_bot: EndpointStats,
    pub slack: EndpointStats,
    /// New tenant tokens (a re-issued still-valid token is not counted).
    pub tokens_issued: u64,
    /// Message items returned by the list endpoint.
    pub items_served: u64,
    /// Requests answered `404 page not found`.
    pub not_found: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    ok: AtomicU64,
    rate_limited: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> EndpointStats {
        EndpointStats {
            requests: self.requests.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// How a request ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    RateLimited,
    Error,
}

/// The sandbox's clock: real time plus an offset that tests advance instead
/// of sleeping (token expiry, quota windows, signature age, hidden future).
#[derive(Default)]
struct Clock {
    offset_ms: AtomicU64,
}

impl Clock {
    fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::Relaxed))
    }

    fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    fn unix_ms(&self) -> i64 {
        unix_ms(SystemTime::now() + self.offset())
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Generated days, bounded; least recently used days are dropped first.
struct DayCache {
    capacity: usize,
    inner: Mutex<DayLru>,
}

type DayKey = (String, NaiveDate);

#[derive(Default)]
struct DayLru {
    days: HashMap<DayKey, Arc<CachedDay>>,
    /// Keys from least to most recently used.
    order: VecDeque<DayKey>,
}

/// A day as the list endpoint needs it: create times and pre-serialised items.
pub(crate) struct CachedDay {
    pub create_ms: Vec<i64>,
    pub json: Vec<String>,
}

impl DayCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(DayLru::default()),
        }
    }

    fn get(
        &self,
        cfg: &SandboxConfig,
        range: (NaiveDate, NaiveDate),
        chat: &str,
        date: NaiveDate,
    ) -> Arc<CachedDay> {
        let key = (chat.to_owned(), date);
        {
            let mut lru = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(day) = lru.days.get(&key).cloned() {
                if let Some(pos) = lru.order.iter().position(|k| *k == key) {
                    lru.order.remove(pos);
                }
                lru.order.push_back(key);
                return day;
            }
        }
        // Generate outside the lock; two racing requests may both generate.
        let generated = generator::generate_day(cfg, chat, date, range);
        let day = Arc::new(CachedDay {
            json: generated
                .items
                .iter()
                .map(|v| serde_json::to_string(v).unwrap_or_default())
                .collect(),
            create_ms: generated.create_ms,
        });
        let mut lru = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if lru.days.insert(key.clone(), day.clone()).is_none() {
            lru.order.push_back(key);
        }
        while lru.order.len() > self.capacity {
            if let Some(old) = lru.order.pop_front() {
                lru.days.remove(&old);
            }
        }
        day
    }
}

/// Recorded webhook bodies per hook are capped so a long demo cannot grow
/// memory without bound.
const MAX_RECORDED: usize = 10_000;

pub(crate) struct SandboxState {
    cfg: SandboxConfig,
    clock: Clock,
    tokens: Mutex<lark::TokenStore>,
    days: DayCache,
    api_quota: quota::SlidingWindows,
    bot_quota: quota::SlidingWindows,
    slack_quota: quota::TokenBucket,
    counters: HashMap<Endpoint, Counters>,
    tokens_issued: AtomicU64,
    items_served: AtomicU64,
    not_found: AtomicU64,
    faults: Mutex<HashMap<Endpoint, VecDeque<Fault>>>,
    received_bot: Mutex<HashMap<String, Vec<Value>>>,
    received_slack: Mutex<HashMap<String, Vec<Value>>>,
}

impl SandboxState {
    fn new(cfg: SandboxConfig) -> Self {
        let q = &cfg.quotas;
        let api_quota = quota::SlidingWindows::new(vec![
            quota::Window::per_second(q.messages_per_sec),
            quota::Window::per_minute(q.messages_per_min),
        ]);
        let bot_quota = quota::SlidingWindows::new(vec![
            quota::Window::per_second(q.bot_per_sec),
            quota::Window::per_minute(q.bot_per_min),
        ]);
        let slack_quota = quota::TokenBucket::new(f64::from(q.slack_per_sec), q.slack_burst);
        let counters = [
            Endpoint::TenantToken,
            Endpoint::ListMessages,
            Endpoint::LarkBot,
            Endpoint::Slack,
        ]
        .into_iter()
        .map(|e| (e, Counters::default()))
        .collect();
        Self {
            days: DayCache::new(cfg.day_cache_days),
            cfg,
            clock: Clock::default(),
            tokens: Mutex::new(lark::TokenStore::default()),
            api_quota,
            bot_quota,
            slack_quota,
            counters,
            tokens_issued: AtomicU64::new(0),
            items_served: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
            faults: Mutex::new(HashMap::new()),
            received_bot: Mutex::new(HashMap::new()),
            received_slack: Mutex::new(HashMap::new()),
        }
    }

    /// History range against the sandbox clock's today.
    fn history_range(&self) -> (NaiveDate, NaiveDate) {
        self.cfg
            .history_range_on(pacific_date_of_ms(self.clock.unix_ms()))
    }

    fn counters(&self, ep: Endpoint) -> &Counters {
        // Every endpoint is inserted in `new`.
        &self.counters[&ep]
    }

    fn begin(&self, ep: Endpoint) {
        self.counters(ep).requests.fetch_add(1, Ordering::Relaxed);
    }

    fn finish(&self, ep: Endpoint, outcome: Outcome, response: Response) -> Response {
        let c = self.counters(ep);
        let counter = match outcome {
            Outcome::Ok => &c.ok,
            Outcome::RateLimited => &c.rate_limited,
            Outcome::Error => &c.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        response
    }

    /// The next injected fault for `ep`, if any.
    fn take_fault(&self, ep: Endpoint) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        faults.get_mut(&ep).and_then(VecDeque::pop_front)
    }

    fn stats(&self) -> SandboxStats {
        SandboxStats {
            tenant_token: self.counters(Endpoint::TenantToken).snapshot(),
            list_messages: self.counters(Endpoint::ListMessages).snapshot(),
            lark_bot: self.counters(Endpoint::LarkBot).snapshot(),
            slack: self.counters(Endpoint::Slack).snapshot(),
            tokens_issued: self.tokens_issued.load(Ordering::Relaxed),
            items_served: self.items_served.load(Ordering::Relaxed),
            not_found: self.not_found.load(Ordering::Relaxed),
        }
    }

    fn record(map: &Mutex<HashMap<String, Vec<Value>>>, key: &str, body: Value) {
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(key.to_owned()).or_default();
        if list.len() >= MAX_RECORDED {
            list.remove(0);
        }
        list.push(body);
    }

    fn recorded(map: &Mutex<HashMap<String, Vec<Value>>>, key: &str) -> Vec<Value> {
        let map = map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned().unwrap_or_default()
    }
}

/// `/services/T…/B…/X…` for either that form or `T…/B…/X…`.
fn slack_key(path: &str) -> String {
    let trimmed = path.trim_start_matches('/');
    let rest = trimmed.strip_prefix("services/").unwrap_or(trimmed);
    format!("/services/{rest}")
}

// ---------------------------------------------------------------------------
// Response helpers

/// A Lark-style log id: `YYYYMMDDHHMMSS` + 20 uppercase hex digits.
pub(crate) fn new_log_id(now_ms: i64) -> String {
    let ts = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_default();
    format!(
        "{}{:016X}{:04X}",
        ts.format("%Y%m%d%H%M%S"),
        fastrand::u64(..),
        fastrand::u16(..)
    )
}

fn with_log_id(mut response: Response, log_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(log_id) {
        response.headers_mut().insert("x-tt-logid", v.clone());
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

pub(crate) fn json_response(status: StatusCode, body: String, log_id: &str) -> Response {
    let response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body,
    )
        .into_response();
    with_log_id(response, log_id)
}

pub(crate) fn json_value(status: StatusCode, body: &Value, log_id: &str) -> Response {
    json_response(status, body.to_string(), log_id)
}

pub(crate) fn text_response(status: StatusCode, body: &'static str, log_id: &str) -> Response {
    let response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response();
    with_log_id(response, log_id)
}

/// The message Lark uses for a code, where we know it.
pub(crate) fn code_message(code: i64) -> &'static str {
    match code {
        1500 => "internal error",
        9499 => "Bad Request",
        10003 => "invalid param",
        10014 => "app secret invalid",
        11232 => "frequency limited psm[lark.oapi.app_platform_runtime]appID[1500]",
        19001 => "param invalid: incoming webhook access token invalid",
        19002 => "param invalid: msg_type",
        19021 => "sign match fail or timestamp is not within one hour from current time",
        19022 => "Ip Not Allowed",
        19024 => "Key Words Not Found",
        230001 => "Your request contains an invalid request parameter.",
        230002 => "Bot/User can NOT be out of the chat.",
        230006 => "Bot ability is not activated.",
        230027 => "Lack of necessary permissions, ext=need scope: im:message.group_msg",
        230073 => "The thread is invisible to the operator.",
        230110 => "Action unavailable as the message has been deleted.",
        99991400 => "request trigger frequency limit",
        99991661 => {
            "Missing access token for authorization. Please make a request with token attached."
        }
        99991663 => {
            "Invalid access token for authorization. Please make a request with token attached."
        }
        99991668 => {
            "Invalid access token for authorization. Please make a request with token attached."
        }
        99991671 => "Invalid token: must start with t-/u-",
        99992402 => "field validation failed",
        _ => "sandbox injected failure",
    }
}

/// An OpenAPI error body with `error.log_id` / `error.troubleshooter`.
pub(crate) fn open_api_error(status: StatusCode, code: i64, log_id: &str) -> Response {
    let body = json!({
        "code": code,
        "msg": code_message(code),
        "error": {
            "log_id": log_id,
            "troubleshooter": format!(
                "排查建议查看(Troubleshooting suggestions): https://open.feishu.cn/search?from=openapi&log_id={log_id}&code={code}"
            ),
        },
    });
    json_value(status, &body, log_id)
}

/// The OpenAPI rate-limit answer (lark-api.md §3).
pub(crate) fn rate_limited(
    limit: u32,
    reset_secs: u64,
    legacy_400: bool,
    log_id: &str,
) -> Response {
    let status = if legacy_400 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    let mut response = json_value(
        status,
        &json!({"code": 99991400, "msg": code_message(99991400)}),
        log_id,
    );
    let headers = response.headers_mut();
    headers.insert("x-ogw-ratelimit-limit", HeaderValue::from(limit));
    headers.insert("x-ogw-ratelimit-reset", HeaderValue::from(reset_secs));
    response
}

// ---------------------------------------------------------------------------
// Router and server

fn router(state: Arc<SandboxState>) -> Router {
    Router::new()
        .route(
            "/open-apis/auth/v3/tenant_access_token/internal",
            post(lark::tenant_token),
        )
        .route(
            "/open-apis/auth/v3/tenant_access_token/internal/",
            post(lark::tenant_token),
        )
        .route("/open-apis/im/v1/messages", get(lark::list_messages))
        .route("/open-apis/bot/v2/hook/{token}", post(webhooks::lark_bot))
        .route("/services/{team}/{bot}/{key}", post(webhooks::slack))
        .route("/sandbox/expected", get(expected_handler))
        .route("/sandbox/stats", get(stats_handler))
        .route("/sandbox/received/bot/{token}", get(received_bot_handler))
        .route("/sandbox/received/slack", get(received_slack_handler))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::map_response(ensure_log_id))
        .with_state(state)
}

/// Responses axum builds itself (rejections) get a log id too.
async fn ensure_log_id(response: Response) -> Response {
    if response.headers().contains_key("x-tt-logid") {
        return response;
    }
    let id = new_log_id(unix_ms(SystemTime::now()));
    with_log_id(response, &id)
}

async fn not_found(State(st): State<Arc<SandboxState>>) -> Response {
    st.not_found.fetch_add(1, Ordering::Relaxed);
    text_response(
        StatusCode::NOT_FOUND,
        "404 page not found",
        &new_log_id(st.clock.unix_ms()),
    )
}

#[derive(Deserialize)]
struct ExpectedQuery {
    chat_id: Option<String>,
    date: Option<String>,
    to: Option<String>,
}

async fn expected_handler(
    State(st): State<Arc<SandboxState>>,
    query: Result<Query<ExpectedQuery>, QueryRejection>,
) -> Response {
    let log_id = new_log_id(st.clock.unix_ms());
    let bad = |msg: &str| {
        json_value(
            StatusCode::BAD_REQUEST,
            &json!({"code": 99992402, "msg": msg}),
            &log_id,
        )
    };
    let Ok(Query(q)) = query else {
        return bad("chat_id and date are required");
    };
    let chat = q
        .chat_id
        .unwrap_or_else(|| st.cfg.chats.first().cloned().unwrap_or_default());
    let parse = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let Some(from) = q.date.as_deref().and_then(parse) else {
        return bad("date must be YYYY-MM-DD");
    };
    let to = match q.to.as_deref() {
        None => from,
        Some(s) => match parse(s) {
            Some(d) => d,
            None => return bad("to must be YYYY-MM-DD"),
        },
    };
    if to < from || (to - from).num_days() > 3660 {
        return bad("to must be on or after date, within 10 years");
    }
    let range = st.history_range();
    let mut all = Expected::default();
    let mut day = from;
    while day <= to {
        let e = generator::generate_day(&st.cfg, &chat, day, range).expected;
        all.rows.extend(e.rows);
        for (k, v) in e.skips {
            *all.skips.entry(k).or_default() += v;
        }
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    json_response(
        StatusCode::OK,
        serde_json::to_string(&all).unwrap_or_default(),
        &log_id,
    )
}

async fn stats_handler(State(st): State<Arc<SandboxState>>) -> Response {
    let log_id = new_log_id(st.clock.unix_ms());
    json_response(
        StatusCode::OK,
        serde_json::to_string(&st.stats()).unwrap_or_default(),
        &log_id,
    )
}

async fn received_bot_handler(
    State(st): State<Arc<SandboxState>>,
    Path(token): Path<String>,
) -> Response {
    let log_id = new_log_id(st.clock.unix_ms());
    let list = SandboxState::recorded(&st.received_bot, &token);
    json_value(StatusCode::OK, &Value::Array(list), &log_id)
}

#[derive(Deserialize)]
struct SlackQuery {
    path: String,
}

async fn received_slack_handler(
    State(st): State<Arc<SandboxState>>,
    query: Result<Query<SlackQuery>, QueryRejection>,
) -> Response {
    let log_id = new_log_id(st.clock.unix_ms());
    let Ok(Query(q)) = query else {
        return json_value(
            StatusCode::BAD_REQUEST,
            &json!({"code": 99992402, "msg": "path is required"}),
            &log_id,
        );
    };
    let list = SandboxState::recorded(&st.received_slack, &slack_key(&q.path));
    json_value(StatusCode::OK, &Value::Array(list), &log_id)
}

/// Serve the sandbox on `listener` until `shutdown` completes, then let
/// in-flight requests finish and return.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: SandboxConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_state(listener, Arc::new(SandboxState::new(cfg)), shutdown).await
}

async fn serve_state(
    listener: tokio::net::TcpListener,
    state: Arc<SandboxState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), seed = state.cfg.seed, "sandbox listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Start a sandbox on `127.0.0.1:0` in a background task.
pub async fn spawn(cfg: SandboxConfig) -> std::io::Result<SandboxHandle> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(SandboxState::new(cfg));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_state(listener, state.clone(), async {
        let _ = rx.await;
    }));
    Ok(SandboxHandle {
        addr,
        base_url: format!("http://{addr}"),
        state,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// A running sandbox started by [`spawn`]. Dropping it stops the server
/// (without waiting); [`SandboxHandle::shutdown`] stops it and waits.
pub struct SandboxHandle {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    state: Arc<SandboxState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SandboxHandle {
    pub fn config(&self) -> &SandboxConfig {
        &self.state.cfg
    }

    pub fn stats(&self) -> SandboxStats {
        self.state.stats()
    }

    /// Bodies accepted by the custom-bot hook `token`, oldest first.
    pub fn received_bot(&self, token: &str) -> Vec<Value> {
        SandboxState::recorded(&self.state.received_bot, token)
    }

    /// Bodies accepted by a Slack hook (`/services/T/B/X` or `T/B/X`), oldest first.
    pub fn received_slack(&self, path: &str) -> Vec<Value> {
        SandboxState::recorded(&self.state.received_slack, &slack_key(path))
    }

    /// Invalidate every tenant token now (the next call with one gets 99991663).
    pub fn revoke_tokens(&self) {
        self.state
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .revoke();
    }

    /// Make the next `n` requests to `endpoint` fail with `fault`.
    pub fn fail_next(&self, endpoint: Endpoint, n: u32, fault: Fault) {
        let mut faults = self.state.faults.lock().unwrap_or_else(|e| e.into_inner());
        let queue = faults.entry(endpoint).or_default();
        queue.extend(std::iter::repeat_n(fault, n as usize));
    }

    /// Move the sandbox clock forward (token expiry, quota windows, signature
    /// age, which messages are "already sent") without sleeping.
    pub fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.state.clock.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Stop accepting, let in-flight requests finish, and wait for the server.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
