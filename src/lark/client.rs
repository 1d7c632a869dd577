//! The Lark / Feishu Open API client: tenant access tokens
//! (`lark-api.md` §1) and listing chat history (§2), behind the shared Redis
//! rate limiter (§3).
//!
//! - One [`LarkClient`] per worker process: it is an `Arc` inside, so every
//!   clone (every task) shares one token cache and one HTTP connection pool.
//! - The tenant token is cached and refreshed `min(3 min, expire / 2)` before
//!   it expires; concurrent callers wait for the one refresh in flight. When
//!   an API call answers that the token is invalid (99991661, 99991663,
//!   99991664, 99991668, 99991671, 99991677), the cache is dropped, a new
//!   token fetched once and the request retried once.
//! - Every Open API request first takes a slot from the shared
//!   [`RateLimiter`] key (`lark.api`). The token endpoint is not charged to
//!   that key: Lark limits per API, and the token endpoint has its own quota.
//! - Every failure is a [`LarkError`], which says whether it is worth
//!   retrying (and after how long) and converts into a [`TaskError`].
//! - The app secret and the tenant token never reach logs, `Debug` output or
//!   error messages.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{LarkConfig, Secret};
use crate::queue::ratelimit::{AcquireError, RateLimiter};
use crate::queue::task::TaskError;

/// Lark (international) Open API base URL; Feishu is `https://open.feishu.cn`.
pub const LARK_BASE_URL: &str = "https://open.larksuite.com";
/// Feishu (China) Open API base URL.
pub const FEISHU_BASE_URL: &str = "https://open.feishu.cn";
/// `POST`: self-built app tenant access token.
pub const TOKEN_PATH: &str = "/open-apis/auth/v3/tenant_access_token/internal";
/// `GET`: chat history.
pub const MESSAGES_PATH: &str = "/open-apis/im/v1/messages";
/// The largest page the list endpoint accepts.
pub const MAX_PAGE_SIZE: u32 = 50;
/// The rate-limit key of the Open API in the default configuration.
pub const DEFAULT_RATE_KEY: &str = "lark.api";

/// The SDKs refresh a token this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(180);
/// Error bodies quoted in messages are cut to this many characters.
const SNIPPET_CHARS: usize = 200;

/// Codes that mean "the access token is missing, malformed, invalid or
/// expired": drop the cache, fetch a new token, retry once.
const TOKEN_CODES: [i64; 6] = [99991661, 99991663, 99991664, 99991668, 99991671, 99991677];

/// Tunables of a [`LarkClient`]; the defaults suit workers and the CLI.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP + TLS connect timeout of every request.
    pub connect_timeout: Duration,
    /// Total timeout of every request (connect, send, and read the body).
    pub request_timeout: Duration,
    /// How long a call may wait for the shared rate limiter before it gives
    /// up with a retryable [`LarkError::Throttled`].
    pub limiter_max_wait: Duration,
    /// `page_size` of list requests (1..=50).
    pub page_size: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            limiter_max_wait: Duration::from_secs(30),
            page_size: MAX_PAGE_SIZE,
        }
    }
}

/// In-call retries of [`LarkClient::list_messages_retrying`] and
/// [`LarkClient::fetch_window`] (queue tasks usually pass
/// [`RetryPolicy::none`] and let the worker retry the task instead).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff of a retryable error without `retry_after`: base × 2ⁿ, capped,
    /// with up to 25 % random jitter added.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A `retry_after` longer than this is not waited for: the error is returned.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// One attempt: every error is returned as is.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// How long to wait before attempt `attempt + 1` after `err`, or `None`
    /// to give up.
    fn delay(&self, attempt: u32, err: &LarkError) -> Option<Duration> {
        if attempt >= self.max_attempts || !err.is_retryable() {
            return None;
        }
        if let Some(after) = err.retry_after() {
            return (after <= self.max_retry_after).then_some(after);
        }
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        Some(exp + exp.mul_f64(fastrand::f64() * 0.25))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// One page of `GET /open-apis/im/v1/messages`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessagePage {
    /// The messages as Lark returned them (unknown fields kept).
    pub items: Vec<Value>,
    pub has_more: bool,
    /// The next page's token (`None` when absent or empty).
    pub page_token: Option<String>,
}

/// Why a Lark call failed. [`LarkError::is_retryable`] and
/// [`LarkError::retry_after`] say what to do about it; messages of fatal
/// errors tell the operator what to fix, and never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum LarkError {
    /// Lark refused the request for frequency (HTTP 429, or code 99991400
    /// on any status); `retry_after` is its `x-ogw-ratelimit-reset`.
    #[error("Lark rate limit hit (99991400){}{}", fmt_after(.retry_after), fmt_log_id(.log_id))]
    RateLimited {
        retry_after: Option<Duration>,
        log_id: Option<String>,
    },
    /// The shared rate limiter had no slot within the client's max wait.
    #[error("rate limiter key {key:?} has no free slot for {retry_after:?}")]
    Throttled { key: String, retry_after: Duration },
    /// The shared rate limiter (Redis) could not be reached.
    #[error("rate limiter unavailable: {0}")]
    LimiterUnavailable(String),
    /// Lark failed on its side (5xx, or codes 1500 / 5000 / 2200).
    #[error("Lark server error (HTTP {status}{}): {msg}{}", fmt_code(.code), fmt_log_id(.log_id))]
    Server {
        status: u16,
        code: Option<i64>,
        msg: String,
        log_id: Option<String>,
    },
    /// Connecting, sending or reading failed.
    #[error("network error talking to Lark: {0}")]
    Network(String),
    /// The request took longer than the client's timeout.
    #[error("Lark request timed out: {0}")]
    Timeout(String),
    /// A freshly fetched token was rejected again (after one refresh).
    #[error(
        "Lark rejected a freshly fetched tenant access token ({code}: {msg}){}",
        fmt_log_id(.log_id)
    )]
    TokenRejected {
        code: i64,
        msg: String,
        log_id: Option<String>,
    },
    /// The app's credentials are wrong or the app is unusable
    /// (10003, 10014, 10015, 99991543, 99991662, 99991665, ...).
    #[error("{message}")]
    Credentials { code: i64, message: String },
    /// The app may not do this: bot not in the chat (230002), bot ability
    /// off (230006), missing scope (230027, 99991672), ...
    #[error("{message}")]
    Permission { code: i64, message: String },
    /// Lark rejected the request's parameters (230001, 99992402).
    #[error("{message}")]
    BadRequest { code: i64, message: String },
    /// A code this client does not know, on a non-5xx response.
    #[error("Lark API error {code} (HTTP {status}): {msg}{}", fmt_log_id(.log_id))]
    Api {
        status: u16,
        code: i64,
        msg: String,
        log_id: Option<String>,
    },
    /// Not the JSON envelope Lark answers with (e.g. a plain-text 404 from a
    /// wrong base URL, or a proxy's HTML page).
    #[error("{0}")]
    UnexpectedResponse(String),
    /// The client's configuration is unusable.
    #[error("Lark client configuration: {0}")]
    Config(String),
}

fn fmt_after(d: &Option<Duration>) -> String {
    d.map(|d| format!("; retry after {d:?}"))
        .unwrap_or_default()
}

fn fmt_code(code: &Option<i64>) -> String {
    code.map(|c| format!(", code {c}")).unwrap_or_default()
}

fn fmt_log_id(log_id: &Option<String>) -> String {
    log_id
        .as_deref()
        .map(|l| format!(" (log_id {l})"))
        .unwrap_or_default()
}

impl LarkError {
    /// Worth retrying later (transient), as opposed to needing an operator.
    pub fn is_retryable(&self) -> bool {
        match self {
            LarkError::RateLimited { .. }
            | LarkError::Throttled { .. }
            | LarkError::LimiterUnavailable(_)
            | LarkError::Server { .. }
            | LarkError::Network(_)
            | LarkError::Timeout(_)
            | LarkError::TokenRejected { .. } => true,
            LarkError::Credentials { .. }
            | LarkError::Permission { .. }
            | LarkError::BadRequest { .. }
            | LarkError::Api { .. }
            | LarkError::UnexpectedResponse(_)
            | LarkError::Config(_) => false,
        }
    }

    /// How long the cause said to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LarkError::RateLimited { retry_after, .. } => *retry_after,
            LarkError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The Lark business code behind the error, if there was one.
    pub fn code(&self) -> Option<i64> {
        match self {
            LarkError::RateLimited { .. } => Some(99991400),
            LarkError::Server { code, .. } => *code,
            LarkError::TokenRejected { code, .. }
            | LarkError::Credentials { code, .. }
            | LarkError::Permission { code, .. }
            | LarkError::BadRequest { code, .. }
            | LarkError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<LarkError> for TaskError {
    fn from(e: LarkError) -> TaskError {
        if e.is_retryable() {
            TaskError::Retry {
                message: e.to_string(),
                retry_after: e.retry_after(),
            }
        } else {
            TaskError::Fatal(e.to_string())
        }
    }
}

/// A cached tenant access token.
struct CachedToken {
    token: Secret,
    /// Fetch a new one from here on.
    refresh_at: Instant,
    /// Lark stops accepting it here.
    expires_at: Instant,
}

struct Inner {
    http: reqwest::Client,
    /// No trailing slash.
    base_url: String,
    app_id: String,
    app_secret: Secret,
    limiter: Option<RateLimiter>,
    rate_key: String,
    options: ClientOptions,
    /// The lock is held while a token is fetched, so concurrent callers
    /// share that one refresh.
    token: Mutex<Option<CachedToken>>,
}

/// The Lark Open API client. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct LarkClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for LarkClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("LarkClient")
            .field("base_url", &i.base_url)
            .field("app_id", &i.app_id)
            .field("app_secret", &i.app_secret)
            .field("rate_key", &i.rate_key)
            .field("limiter", &i.limiter.is_some())
            .field("options", &i.options)
            .finish_non_exhaustive()
    }
}

/// What one request's response amounted to.
enum Answer {
    Ok(Value),
    /// A token code: refresh the token and retry once.
    TokenInvalid {
        code: i64,
        msg: String,
        log_id: Option<String>,
    },
    Err(LarkError),
}

/// What a request was for, to word errors.
struct Ctx<'a> {
    app_id: &'a str,
    chat_id: Option<&'a str>,
    base_url: &'a str,
}

impl LarkClient {
    /// A client for `config` (base URL, app id and secret). With `limiter`,
    /// every Open API request first takes a slot of `rate_key`.
    pub fn new(
        config: &LarkConfig,
        limiter: Option<RateLimiter>,
        rate_key: &str,
    ) -> Result<LarkClient, LarkError> {
        Self::with_options(config, limiter, rate_key, ClientOptions::default())
    }

    /// [`LarkClient::new`] with non-default timeouts, limiter wait or page size.
    pub fn with_options(
        config: &LarkConfig,
        limiter: Option<RateLimiter>,
        rate_key: &str,
        options: ClientOptions,
    ) -> Result<LarkClient, LarkError> {
        let base_url = config.base_url.trim().trim_end_matches('/').to_string();
        let parsed = Url::parse(&base_url).map_err(|e| {
            LarkError::Config(format!(
                "lark.base_url {base_url:?} is not a URL ({e}): set LARK_BASE_URL / lark.base_url \
                 to {LARK_BASE_URL} or {FEISHU_BASE_URL}"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(LarkError::Config(format!(
                "lark.base_url {base_url:?} must be http(s): set LARK_BASE_URL / lark.base_url"
            )));
        }
        if config.app_id.trim().is_empty() {
            return Err(LarkError::Config(
                "lark.app_id is empty: set LARK_APP_ID / lark.app_id to the app's cli_... id"
                    .into(),
            ));
        }
        if config.app_secret.is_empty() {
            return Err(LarkError::Config(
                "lark.app_secret is empty: set LARK_APP_SECRET / lark.app_secret".into(),
            ));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&options.page_size) {
            return Err(LarkError::Config(format!(
                "page_size {} is outside 1..={MAX_PAGE_SIZE}",
                options.page_size
            )));
        }
        if let Some(l) = &limiter
            && l.limits(rate_key).is_none()
        {
            return Err(LarkError::Config(format!(
                "no rate limit is configured for key {rate_key:?}: add [rate_limits] \"{rate_key}\""
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .user_agent(concat!("alertflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LarkError::Config(format!("building the HTTP client: {e}")))?;
        Ok(LarkClient {
            inner: Arc::new(Inner {
                http,
                base_url,
                app_id: config.app_id.trim().to_string(),
                app_secret: config.app_secret.clone(),
                limiter,
                rate_key: rate_key.to_string(),
                options,
                token: Mutex::new(None),
            }),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    fn ctx<'a>(&'a self, chat_id: Option<&'a str>) -> Ctx<'a> {
        Ctx {
            app_id: &self.inner.app_id,
            chat_id,
            base_url: &self.inner.base_url,
        }
    }

    /// A valid tenant access token: the cached one, or a new one when the
    /// cache is empty or due for refresh.
    async fn token(&self) -> Result<Secret, LarkError> {
        let mut cache = self.inner.token.lock().await;
        let now = Instant::now();
        if let Some(c) = cache.as_ref()
            && now < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        match self.fetch_token().await {
            Ok((token, expire)) => {
                let margin = REFRESH_MARGIN.min(expire / 2);
                *cache = Some(CachedToken {
                    token: token.clone(),
                    refresh_at: now + expire.saturating_sub(margin),
                    expires_at: now + expire,
                });
                Ok(token)
            }
            // A transient failure to refresh: keep using the old token while it lasts.
            Err(e) if e.is_retryable() => match cache.as_ref() {
                Some(c) if now + Duration::from_secs(5) < c.expires_at => {
                    tracing::warn!(error = %e, "refreshing the Lark tenant token failed; using the cached one");
                    Ok(c.token.clone())
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Drop the cached token if it is still `used` (another caller may
    /// already have replaced it).
    async fn invalidate(&self, used: &Secret) {
        let mut cache = self.inner.token.lock().await;
        if cache.as_ref().is_some_and(|c| c.token == *used) {
            *cache = None;
        }
    }

    /// `POST /open-apis/auth/v3/tenant_access_token/internal`.
    async fn fetch_token(&self) -> Result<(Secret, Duration), LarkError> {
        let i = &self.inner;
        let url = format!("{}{TOKEN_PATH}", i.base_url);
        let body = json!({"app_id": i.app_id, "app_secret": i.app_secret.expose()});
        let resp = i
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| request_error(&e, "fetching a tenant access token"))?;
        let ctx = self.ctx(None);
        let v = match read_answer(resp, &ctx, "the token endpoint").await {
            Answer::Ok(v) => v,
            // The token endpoint does not speak of token codes; if it does, it is an error.
            Answer::TokenInvalid { code, msg, log_id } => {
                return Err(LarkError::Api {
                    status: 200,
                    code,
                    msg,
                    log_id,
                });
            }
            Answer::Err(e) => return Err(e),
        };
        let token = v
            .get("tenant_access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                LarkError::UnexpectedResponse(
                    "the token endpoint answered code 0 without a tenant_access_token".into(),
                )
            })?;
        let expire = v
            .get("expire")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                LarkError::UnexpectedResponse(
                    "the token endpoint answered code 0 without a numeric expire".into(),
                )
            })?;
        tracing::debug!(
            app_id = %i.app_id,
            expire_secs = expire.as_secs(),
            "fetched a Lark tenant access token"
        );
        Ok((Secret::new(token), expire))
    }

    /// Take a slot of the shared rate limiter, if there is one.
    async fn acquire(&self) -> Result<(), LarkError> {
        let i = &self.inner;
        let Some(limiter) = &i.limiter else {
            return Ok(());
        };
        match limiter
            .acquire(&i.rate_key, i.options.limiter_max_wait)
            .await
        {
            Ok(()) => Ok(()),
            Err(AcquireError::TooLong(wait)) => Err(LarkError::Throttled {
                key: i.rate_key.clone(),
                retry_after: wait,
            }),
            Err(AcquireError::UnknownKey(k)) => Err(LarkError::Config(format!(
                "no rate limit is configured for key {k:?}"
            ))),
            Err(AcquireError::Unavailable(e)) => Err(LarkError::LimiterUnavailable(e)),
        }
    }

    /// `GET url` with the tenant token, rate limited; on a token code the
    /// token is refreshed and the request retried once.
    async fn get_authorized(&self, url: &Url, ctx: &Ctx<'_>) -> Result<Value, LarkError> {
        let mut refreshed = false;
        loop {
            self.acquire().await?;
            let token = self.token().await?;
            let resp = self
                .inner
                .http
                .get(url.clone())
                .bearer_auth(token.expose())
                .send()
                .await
                .map_err(|e| request_error(&e, "listing messages"))?;
            match read_answer(resp, ctx, "the list-messages endpoint").await {
                Answer::Ok(v) => return Ok(v),
                Answer::Err(e) => return Err(e),
                Answer::TokenInvalid { code, msg, log_id } => {
                    if refreshed {
                        return Err(LarkError::TokenRejected { code, msg, log_id });
                    }
                    tracing::info!(
                        code,
                        "Lark rejected the cached tenant token; fetching a new one"
                    );
                    self.invalidate(&token).await;
                    refreshed = true;
                }
            }
        }
    }

    /// One page of a chat's history between `start_secs` and `end_secs`
    /// (Unix seconds, both sent as is), oldest first, `page_size` 50.
    pub async fn list_messages(
        &self,
        chat_id: &str,
        start_secs: i64,
        end_secs: i64,
        page_token: Option<&str>,
    ) -> Result<MessagePage, LarkError> {
        let mut url = Url::parse(&format!("{}{MESSAGES_PATH}", self.inner.base_url))
            .map_err(|e| LarkError::Config(format!("lark.base_url: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("container_id_type", "chat")
                .append_pair("container_id", chat_id)
                .append_pair("start_time", &start_secs.to_string())
                .append_pair("end_time", &end_secs.to_string())
                .append_pair("sort_type", "ByCreateTimeAsc")
                .append_pair("page_size", &self.inner.options.page_size.to_string());
            if let Some(t) = page_token.filter(|t| !t.is_empty()) {
                q.append_pair("page_token", t);
            }
        }
        let ctx = self.ctx(Some(chat_id));
        let v = self.get_authorized(&url, &ctx).await?;
        let page = parse_page(&v)?;
        tracing::debug!(
            chat_id,
            start_secs,
            end_secs,
            items = page.items.len(),
            has_more = page.has_more,
            "listed a page of Lark messages"
        );
        Ok(page)
    }

    /// [`LarkClient::list_messages`], retrying retryable errors per `policy`
    /// (waiting `retry_after` when the error gives one).
    pub async fn list_messages_retrying(
        &self,
        chat_id: &str,
        start_secs: i64,
        end_secs: i64,
        page_token: Option<&str>,
        policy: &RetryPolicy,
    ) -> Result<MessagePage, LarkError> {
        let mut attempt = 1;
        loop {
            match self
                .list_messages(chat_id, start_secs, end_secs, page_token)
                .await
            {
                Ok(page) => return Ok(page),
                Err(e) => {
                    let Some(wait) = policy.delay(attempt, &e) else {
                        return Err(e);
                    };
                    tracing::warn!(
                        chat_id,
                        attempt,
                        error = %e,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "Lark list failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Every message of `chat_id` between `start_secs` and `end_secs`, oldest
    /// first, following page tokens. `on_page(n, page)` sees each page
    /// (numbered from 1) as it arrives; each page is retried per `policy`.
    pub async fn fetch_window(
        &self,
        chat_id: &str,
        start_secs: i64,
        end_secs: i64,
        policy: &RetryPolicy,
        mut on_page: impl FnMut(usize, &MessagePage),
    ) -> Result<Vec<Value>, LarkError> {
        let mut items = Vec::new();
        let mut page_token: Option<String> = None;
        let mut page_no = 0usize;
        loop {
            page_no += 1;
            let page = self
                .list_messages_retrying(
                    chat_id,
                    start_secs,
                    end_secs,
                    page_token.as_deref(),
                    policy,
                )
                .await?;
            tracing::debug!(
                chat_id,
                page = page_no,
                items = page.items.len(),
                has_more = page.has_more,
                "fetched a page"
            );
            on_page(page_no, &page);
            let MessagePage {
                items: page_items,
                has_more,
                page_token: next,
            } = page;
            items.extend(page_items);
            if !has_more {
                return Ok(items);
            }
            match next {
                Some(t) if page_token.as_deref() != Some(t.as_str()) => page_token = Some(t),
                Some(_) => {
                    return Err(LarkError::UnexpectedResponse(format!(
                        "Lark returned the same page_token twice for chat {chat_id} (page {page_no})"
                    )));
                }
                None => {
                    return Err(LarkError::UnexpectedResponse(format!(
                        "Lark said has_more without a page_token for chat {chat_id} (page {page_no})"
                    )));
                }
            }
        }
    }
}

/// A `reqwest` failure as a retryable error (a builder error is a bug, i.e. fatal).
fn request_error(e: &reqwest::Error, what: &str) -> LarkError {
    let detail = error_chain(e);
    if e.is_builder() {
        LarkError::Config(format!("{what}: {detail}"))
    } else if e.is_timeout() {
        LarkError::Timeout(format!("{what}: {detail}"))
    } else {
        LarkError::Network(format!("{what}: {detail}"))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(SNIPPET_CHARS).collect();
    if text.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    out
}

/// Read a response and classify it (`lark-api.md` §0–§3).
async fn read_answer(resp: reqwest::Response, ctx: &Ctx<'_>, what: &str) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let log_id = header_str(&headers, "x-tt-logid")
        .or_else(|| header_str(&headers, "x-request-id"))
        .map(str::to_string);
    let reset = header_str(&headers, "x-ogw-ratelimit-reset")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let is_json = header_str(&headers, CONTENT_TYPE.as_str())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("application/json"));
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Answer::Err(request_error(&e, &format!("reading {what}'s response"))),
    };

    let json: Option<Value> = if is_json {
        serde_json::from_slice(&body).ok()
    } else {
        None
    };
    let code = json
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_i64);

    if status == StatusCode::TOO_MANY_REQUESTS || code == Some(99991400) {
        return Answer::Err(LarkError::RateLimited {
            retry_after: reset,
            log_id,
        });
    }
    let (Some(v), Some(code)) = (json.as_ref(), code) else {
        // Not the JSON envelope.
        let err = if status.is_server_error() {
            LarkError::Server {
                status: status.as_u16(),
                code: None,
                msg: snippet(&body),
                log_id,
            }
        } else if status == StatusCode::NOT_FOUND {
            LarkError::UnexpectedResponse(format!(
                "{what} answered HTTP 404 {:?} at {}: check LARK_BASE_URL / lark.base_url \
                 (expected {LARK_BASE_URL} or {FEISHU_BASE_URL})",
                snippet(&body),
                ctx.base_url
            ))
        } else {
            LarkError::UnexpectedResponse(format!(
                "{what} answered HTTP {} with a body that is not Lark's JSON envelope \
                 (content-type {:?}): {:?}; check LARK_BASE_URL / lark.base_url",
                status.as_u16(),
                header_str(&headers, CONTENT_TYPE.as_str()).unwrap_or(""),
                snippet(&body)
            ))
        };
        return Answer::Err(err);
    };
    let msg = v
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if code == 0 {
        if status.is_success() {
            return Answer::Ok(json.unwrap_or_default());
        }
        return Answer::Err(if status.is_server_error() {
            LarkError::Server {
                status: status.as_u16(),
                code: Some(0),
                msg,
                log_id,
            }
        } else {
            LarkError::UnexpectedResponse(format!(
                "{what} answered HTTP {} with code 0",
                status.as_u16()
            ))
        });
    }
    if TOKEN_CODES.contains(&code) {
        return Answer::TokenInvalid { code, msg, log_id };
    }
    Answer::Err(classify(status, code, msg, log_id, ctx))
}

/// A non-zero, non-token, non-rate-limit code as an error.
fn classify(
    status: StatusCode,
    code: i64,
    msg: String,
    log_id: Option<String>,
    ctx: &Ctx<'_>,
) -> LarkError {
    let app = ctx.app_id;
    let chat = ctx.chat_id.unwrap_or("?");
    let lid = fmt_log_id(&log_id);
    let credentials = |message: String| LarkError::Credentials { code, message };
    let permission = |message: String| LarkError::Permission { code, message };
    match code {
        1500 | 5000 | 2200 => LarkError::Server {
            status: status.as_u16(),
            code: Some(code),
            msg,
            log_id,
        },
        10003 => credentials(format!(
            "Lark rejected app_id {app:?} (10003 {msg}): check LARK_APP_ID / lark.app_id \
             (the App ID from the developer console, cli_...){lid}"
        )),
        10014 | 10015 => credentials(format!(
            "app secret rejected for app {app} ({code} {msg}): check LARK_APP_SECRET / \
             lark.app_secret (and that the app is enabled){lid}"
        )),
        99991543 => credentials(format!(
            "Lark does not know app_id {app} with this app secret (99991543 {msg}): check \
             LARK_APP_ID / lark.app_id and LARK_APP_SECRET / lark.app_secret{lid}"
        )),
        99991662 => credentials(format!(
            "app {app} is not in use (99991662 {msg}): enable or publish the app in the \
             developer console{lid}"
        )),
        99991665 => credentials(format!(
            "Lark rejected the tenant (99991665 {msg}): check the app {app} is installed in \
             this tenant and LARK_BASE_URL / lark.base_url points at the right brand \
             ({LARK_BASE_URL} or {FEISHU_BASE_URL}){lid}"
        )),
        230002 => permission(format!(
            "the bot is not a member of chat {chat} (230002 {msg}): add the app's bot \
             (app {app}) to the group, or fix LARK_CHAT_ID / lark.chat_id{lid}"
        )),
        230006 => permission(format!(
            "the bot ability of app {app} is not activated (230006 {msg}): enable Bot under \
             Features in the developer console and publish a new version{lid}"
        )),
        230027 => permission(format!(
            "missing permission reading chat {chat} (230027 {msg}): grant app {app} the scopes \
             im:message.group_msg and im:message (or im:message:readonly / \
             im:message.history:readonly), publish a new app version, and check the bot is in \
             the group{lid}"
        )),
        99991672 => permission(format!(
            "app {app} lacks a required scope (99991672 {msg}): add the scope named above in \
             the developer console (for chat history: im:message.group_msg and \
             im:message:readonly) and publish a new version{lid}"
        )),
        230073 => permission(format!(
            "the thread is not visible to app {app} (230073 {msg}){lid}"
        )),
        230001 | 99992402 => LarkError::BadRequest {
            code,
            message: format!(
                "Lark rejected the request's parameters ({code} {msg}) for chat {chat}: this \
                 is a client bug or a stale page_token{lid}"
            ),
        },
        _ if status.is_server_error() => LarkError::Server {
            status: status.as_u16(),
            code: Some(code),
            msg,
            log_id,
        },
        _ => LarkError::Api {
            status: status.as_u16(),
            code,
            msg,
            log_id,
        },
    }
}

/// `data` of a list response as a page.
fn parse_page(v: &Value) -> Result<MessagePage, LarkError> {
    let Some(data) = v.get("data").filter(|d| d.is_object()) else {
        return Err(LarkError::UnexpectedResponse(
            "the list-messages endpoint answered code 0 without a data object".into(),
        ));
    };
    let items = match data.get("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(LarkError::UnexpectedResponse(
                "the list-messages endpoint answered data.items that is not an array".into(),
            ));
        }
    };
    let has_more = data
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let page_token = data
        .get("page_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok(MessagePage {
        items,
        has_more,
        page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx<'static> {
        Ctx {
            app_id: "cli_x",
            chat_id: Some("oc_x"),
            base_url: "http://x",
        }
    }

    #[test]
    fn classification() {
        let c = |status: u16, code: i64| {
            classify(
                StatusCode::from_u16(status).unwrap(),
                code,
                "m".into(),
                None,
                &ctx(),
            )
        };
        for (status, code) in [(500, 1500), (400, 5000), (400, 2200), (503, 42)] {
            let e = c(status, code);
            assert!(e.is_retryable() && e.retry_after().is_none(), "{e}");
        }
        for code in [
            10003, 10014, 10015, 99991543, 99991662, 230002, 230006, 230027, 99991672, 230001,
            99992402, 42,
        ] {
            assert!(!c(400, code).is_retryable(), "{code}");
        }
        assert!(c(400, 230002).to_string().contains("add the app's bot"));
        assert!(c(200, 10014).to_string().contains("LARK_APP_SECRET"));
        assert!(c(400, 230027).to_string().contains("im:message.group_msg"));
    }

    #[test]
    fn task_error_conversion() {
        let e = LarkError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            log_id: None,
        };
        match TaskError::from(e) {
            TaskError::Retry { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)))
            }
            other => panic!("{other:?}"),
        }
        let e = LarkError::Config("x".into());
        assert!(matches!(TaskError::from(e), TaskError::Fatal(_)));
    }

    #[test]
    fn retry_policy_delays() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(150),
            max_retry_after: Duration::from_secs(2),
        };
        let server = LarkError::Network("x".into());
        let d1 = p.delay(1, &server).unwrap();
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(125));
        let d2 = p.delay(2, &server).unwrap();
        assert!(d2 >= Duration::from_millis(150) && d2 <= Duration::from_millis(188));
        assert!(p.delay(3, &server).is_none());
        let limited = |s| LarkError::RateLimited {
            retry_after: Some(Duration::from_secs(s)),
            log_id: None,
        };
        assert_eq!(p.delay(1, &limited(1)), Some(Duration::from_secs(1)));
        assert_eq!(p.delay(1, &limited(5)), None);
        assert_eq!(p.delay(1, &LarkError::Config("x".into())), None);
        assert!(RetryPolicy::none().delay(1, &server).is_none());
    }

    #[test]
    fn page_parsing() {
        let p = parse_page(
            &json!({"code":0,"data":{"has_more":true,"page_token":"abc","items":[{"a":1}]}}),
        )
        .unwrap();
        assert_eq!(p.items.len(), 1);
        assert!(p.has_more);
        assert_eq!(p.page_token.as_deref(), Some("abc"));
        let p = parse_page(&json!({"code":0,"data":{"has_more":false,"page_token":""}})).unwrap();
        assert_eq!(p, MessagePage::default());
        assert!(parse_page(&json!({"code":0})).is_err());
    }
}
