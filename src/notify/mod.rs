//! Notifications: receivers (a Lark custom bot, a Slack incoming webhook),
//! the alarms of InfluxDB checks with their Redis dedup, and pipeline health
//! notifications.
//!
//! - [`Notification`] is what is said; each receiver renders it in its own
//!   format and limits (`lark_bot.rs`: a JSON 1.0 interactive card under
//!   20 KB; `slack.rs`: `text` + `blocks`).
//! - [`Receiver::send`] takes a slot of the receiver's shared Redis rate
//!   limit (`notify.lark`, `notify.slack` by default) before every attempt,
//!   retries what the service says is transient (Lark 11232, 5xx, Slack 429
//!   after `Retry-After`) and fails at once, with a message saying what to
//!   fix, on what is not.
//! - Webhook URLs and signing secrets are [`Secret`]s: no log line, error or
//!   `Debug` output contains them (errors name the receiver and the host).
//!
//! Config: `[receivers.NAME]` (this module), `[[checks]]` ([`check`]),
//! `[notify]` ([`health`]).

pub mod alarm;
pub mod check;
pub mod digest;
pub mod flap;
pub mod health;
pub mod lark_bot;
pub mod silence;
pub mod slack;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::config::{AppConfig, HumanDuration, LimitSpec, Secret};
use crate::queue::ratelimit::{AcquireError, RateLimiter};
use crate::queue::task::TaskError;

pub use health::NotifyConfig;

/// Default rate-limit key of Lark bot receivers.
pub const LARK_RATE_KEY: &str = "notify.lark";
/// Default rate-limit key of Slack receivers.
pub const SLACK_RATE_KEY: &str = "notify.slack";

/// The default limits of the receivers' keys, added to `rate_limits`.
///
/// A Lark custom bot takes 5/s and 100/min; GCRA admits at most
/// `burst + rate × window` in any window and requests reach the bot with some
/// jitter, so these keep headroom: at most 5 in any second (4/s, burst 1) and
/// 95 in any minute (50/min, burst 45 — a burst of 45 at 4/s, then 50/min).
/// Slack incoming webhooks take 1/s with short bursts: 1/s, burst 1.
pub fn default_rate_limits() -> Vec<(String, Vec<LimitSpec>)> {
    let d = |s: u64| HumanDuration(Duration::from_secs(s));
    vec![
        (
            LARK_RATE_KEY.to_string(),
            vec![
                LimitSpec {
                    limit: 4,
                    per: d(1),
                    burst: 1,
                },
                LimitSpec {
                    limit: 50,
                    per: d(60),
                    burst: 45,
                },
            ],
        ),
        (
            SLACK_RATE_KEY.to_string(),
            vec![LimitSpec {
                limit: 1,
                per: d(1),
                burst: 1,
            }],
        ),
    ]
}

/// The kind of a receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverKind {
    /// A Lark / Feishu custom bot (`…/open-apis/bot/v2/hook/<token>`).
    #[serde(alias = "lark_bot", alias = "feishu")]
    Lark,
    /// A Slack incoming webhook (`https://hooks.slack.com/services/T…/B…/…`).
    Slack,
}

impl ReceiverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Lark => "lark",
            ReceiverKind::Slack => "slack",
        }
    }
}

/// `[receivers.NAME]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    #[serde(rename = "type")]
    pub kind: ReceiverKind,
    /// The webhook URL (a secret: whoever has it can post).
    pub url: Secret,
    /// Lark only: the bot's signing secret (`timestamp` + `sign` are added).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Rate-limit key (default `notify.lark` / `notify.slack`); receivers
    /// posting to the same bot must share a key.
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// Timeout of one HTTP request.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Attempts per message, the first included, for transient failures.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Longest wait for a rate-limit slot per attempt.
    #[serde(default = "default_limiter_wait")]
    pub max_rate_limit_wait: HumanDuration,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_attempts() -> u32 {
    3
}
fn default_limiter_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl ReceiverConfig {
    /// A receiver of `kind` posting to `url`, defaults elsewhere.
    pub fn new(kind: ReceiverKind, url: impl Into<String>) -> ReceiverConfig {
        ReceiverConfig {
            kind,
            url: Secret::new(url),
            secret: None,
            rate_limit: None,
            timeout: default_timeout(),
            max_attempts: default_attempts(),
            max_rate_limit_wait: default_limiter_wait(),
        }
    }

    pub fn rate_key(&self) -> &str {
        self.rate_limit.as_deref().unwrap_or(match self.kind {
            ReceiverKind::Lark => LARK_RATE_KEY,
            ReceiverKind::Slack => SLACK_RATE_KEY,
        })
    }

    /// The longest one message can take to send, every attempt included
    /// (claims of alarms being sent must outlive it).
    pub fn max_send_time(&self) -> Duration {
        let per_attempt = self.timeout.0 + self.max_rate_limit_wait.0;
        let backoff: Duration = (1..self.max_attempts.max(1))
            .map(|a| retry_backoff(a, None))
            .sum();
        per_attempt * self.max_attempts.max(1) + backoff + Duration::from_secs(5)
    }
}

/// `scheme://host[:port]` of a secret URL, safe to print.
pub fn url_host(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => "(no host)".into(),
        },
        Err(_) => "(invalid URL)".into(),
    }
}

/// Check `[receivers]`, `[[checks]]`, `[notify]` and `[influx]`; the error
/// is `(key, message)` with the key spelled as in the file.
pub fn validate(config: &AppConfig) -> Result<(), (String, String)> {
    for (name, src) in &config.influx.sources {
        src.validate()
            .map_err(|(k, m)| (format!("influx.sources.{name}.{k}"), m))?;
    }
    for (name, r) in &config.receivers {
        let key = |k: &str| format!("receivers.{name}.{k}");
        let url = Url::parse(r.url.expose()).ok();
        if url
            .as_ref()
            .is_none_or(|u| !matches!(u.scheme(), "http" | "https") || u.host_str().is_none())
        {
            return Err((key("url"), "must be an http:// or https:// URL".into()));
        }
        match r.kind {
            ReceiverKind::Lark => {
                let path = url
                    .as_ref()
                    .map(|u| u.path().to_string())
                    .unwrap_or_default();
                if path.contains("/open-apis/bot/hook/") {
                    return Err((
                        key("url"),
                        "is a legacy v1 hook (/open-apis/bot/hook/…), which takes no cards: use the v2 URL /open-apis/bot/v2/hook/<token>".into(),
                    ));
                }
                if !path.contains("/bot/v2/hook/") {
                    return Err((
                        key("url"),
                        "must be a custom-bot webhook URL ending in /open-apis/bot/v2/hook/<token>"
                            .into(),
                    ));
                }
            }
            ReceiverKind::Slack => {
                if r.secret.is_some() {
                    return Err((
                        key("secret"),
                        "Slack incoming webhooks are not signed; remove `secret`".into(),
                    ));
                }
            }
        }
        if r.secret.as_ref().is_some_and(Secret::is_empty) {
            return Err((
                key("secret"),
                "is empty; remove it for an unsigned bot".into(),
            ));
        }
        if !config.rate_limits.contains_key(r.rate_key()) {
            return Err((
                key("rate_limit"),
                format!("no [rate_limits] entry named {:?}", r.rate_key()),
            ));
        }
        if r.max_attempts == 0 {
            return Err((key("max_attempts"), "must be at least 1".into()));
        }
        if r.timeout.0.is_zero() {
            return Err((key("timeout"), "must be positive".into()));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for c in &config.checks {
        let key = |k: &str| format!("checks.{}.{k}", c.name);
        if !names.insert(c.name.as_str()) {
            return Err((key("name"), "two checks have this name".into()));
        }
        c.validate().map_err(|(k, m)| (key(&k), m))?;
        if !config.influx.sources.contains_key(&c.source) {
            return Err((
                key("source"),
                format!("no [influx.sources.{}] is configured", c.source),
            ));
        }
        if !config.receivers.contains_key(&c.receiver) {
            return Err((
                key("receiver"),
                format!("no [receivers.{}] is configured", c.receiver),
            ));
        }
    }
    config.notify.validate(config)?;
    Ok(())
}

/// Header colours (Lark card `template` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    Red,
    Orange,
    Yellow,
    Blue,
    Green,
    Grey,
}

impl Colour {
    pub fn lark_template(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Orange => "orange",
            Colour::Yellow => "yellow",
            Colour::Blue => "blue",
            Colour::Green => "green",
            Colour::Grey => "grey",
        }
    }
    /// An emoji for Slack, which has no header colours in blocks.
    pub fn slack_emoji(self) -> &'static str {
        match self {
            Colour::Red => ":red_circle:",
            Colour::Orange => ":large_orange_circle:",
            Colour::Yellow => ":large_yellow_circle:",
            Colour::Blue => ":large_blue_circle:",
            Colour::Green => ":large_green_circle:",
            Colour::Grey => ":white_circle:",
        }
    }
}

/// One block of a message (one alarm, or the body of a health message).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Section {
    pub heading: String,
    pub text: String,
    /// `key: value` lines.
    pub fields: Vec<(String, String)>,
}

/// What a receiver is asked to say.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub title: String,
    pub colour: Colour,
    /// Plain text of the whole message (Slack's `text` / notification fallback).
    pub text: String,
    pub sections: Vec<Section>,
    /// A footer line.
    pub note: Option<String>,
}

/// Write notification ledger entries; a database that does not take them
/// within 5 s is logged with the whole entries (the notification itself is
/// not held up or failed by its ledger).
pub async fn record_notifications(
    sink: &crate::sink::starrocks::SqlSink,
    records: &[crate::sink::notifications::NotificationRecord],
) {
    if records.is_empty() {
        return;
    }
    let write = sink.record_notifications(records);
    match tokio::time::timeout(Duration::from_secs(5), write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, entries = ?records, "cannot write the notification ledger")
        }
        Err(_) => {
            tracing::error!(entries = ?records, "the database did not take the notification ledger entries within 5 s")
        }
    }
}

/// Cut `s` to at most `max` bytes on a char boundary, adding `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotifyError {
    /// Transient; worth sending again (after `retry_after` when known).
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Permanent: configuration (token, secret, URL) or message must change.
    #[error("{0}")]
    Fatal(String),
    /// The receiver's shared rate limit had no slot within
    /// `max_rate_limit_wait`: transient, like `Retryable`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
}

impl NotifyError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NotifyError::Retryable { .. } | NotifyError::RateLimited { .. }
        )
    }

    /// The notification ledger's outcome of a delivery that ended so.
    pub fn outcome(&self) -> &'static str {
        match self {
            NotifyError::RateLimited { .. } => "rate-limited",
            _ => "failed",
        }
    }
}

impl From<NotifyError> for TaskError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Retryable {
                message,
                retry_after: Some(after),
            } => TaskError::retry_after(message, after),
            NotifyError::Retryable { message, .. } => TaskError::retry(message),
            NotifyError::RateLimited {
                message,
                retry_after,
            } => TaskError::retry_after(message, retry_after),
            NotifyError::Fatal(m) => TaskError::fatal(m),
        }
    }
}

/// Backoff before attempt `attempt + 1`: `retry_after` if given, else 1 s, 2 s, 4 s…
fn retry_backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or_else(|| Duration::from_secs(1 << attempt.saturating_sub(1).min(5)))
}

/// A configured receiver, ready to send. Cheap to clone.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<ReceiverInner>,
}

struct ReceiverInner {
    name: String,
    config: ReceiverConfig,
    http: reqwest::Client,
    limiter: Option<RateLimiter>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.inner.name)
            .field("kind", &self.inner.config.kind)
            .field("host", &url_host(self.inner.config.url.expose()))
            .finish_non_exhaustive()
    }
}

/// A receiver whose HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("receiver {name}: cannot build an HTTP client: {source}")]
pub struct ReceiverError {
    pub name: String,
    #[source]
    pub source: reqwest::Error,
}

impl Receiver {
    /// Without a limiter, sends are not rate limited (tools and tests only).
    pub fn new(
        name: &str,
        config: &ReceiverConfig,
        limiter: Option<RateLimiter>,
    ) -> Result<Receiver, ReceiverError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(config.timeout.0))
            .timeout(config.timeout.0)
            .build()
            .map_err(|source| ReceiverError {
                name: name.to_string(),
                source,
            })?;
        Ok(Receiver {
            inner: Arc::new(ReceiverInner {
                name: name.to_string(),
                config: config.clone(),
                http,
                limiter,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }
    pub fn kind(&self) -> ReceiverKind {
        self.inner.config.kind
    }
    pub fn config(&self) -> &ReceiverConfig {
        &self.inner.config
    }
    /// `scheme://host:port` of the webhook, safe to print.
    pub fn host(&self) -> String {
        url_host(self.inner.config.url.expose())
    }

    /// Send, retrying transient failures up to `max_attempts` in all.
    pub async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        self.deliver(n).await.0
    }

    /// [`Receiver::send`], also saying how many attempts it made (for the
    /// notification ledger).
    pub async fn deliver(&self, n: &Notification) -> (Result<(), NotifyError>, u32) {
        let attempts = self.inner.config.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.send_once(n).await {
                Ok(()) => return (Ok(()), attempt),
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let after = match &e {
                        NotifyError::Retryable { retry_after, .. } => *retry_after,
                        NotifyError::RateLimited { retry_after, .. } => Some(*retry_after),
                        NotifyError::Fatal(_) => None,
                    };
                    let wait = retry_backoff(attempt, after).min(Duration::from_secs(60));
                    tracing::warn!(receiver = %self.inner.name, error = %e, ?wait, attempt, "notification not delivered; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return (Err(e), attempt),
            }
        }
    }

    /// One attempt: a rate-limit slot, then one HTTP request.
    pub async fn send_once(&self, n: &Notification) -> Result<(), NotifyError> {
        let c = &self.inner.config;
        if let Some(l) = &self.inner.limiter {
            let key = c.rate_key();
            l.acquire(key, c.max_rate_limit_wait.0)
                .await
                .map_err(|e| match e {
                    AcquireError::TooLong(w) => NotifyError::RateLimited {
                        message: format!(
                            "receiver {}: rate limit {key} has no slot within {:?}",
                            self.inner.name, c.max_rate_limit_wait.0
                        ),
                        retry_after: w,
                    },
                    AcquireError::UnknownKey(k) => NotifyError::Fatal(format!(
                        "receiver {}: no [rate_limits] entry named {k:?}",
                        self.inner.name
                    )),
                    AcquireError::Unavailable(m) => NotifyError::Retryable {
                        message: format!(
                            "receiver {}: rate limiter unavailable: {m}",
                            self.inner.name
                        ),
                        retry_after: None,
                    },
                })?;
        }
        match c.kind {
            ReceiverKind::Lark => lark_bot::send(self, n).await,
            ReceiverKind::Slack => slack::send(self, n).await,
        }
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// A transport error, without the URL.
    pub(crate) fn transport_error(&self, e: reqwest::Error) -> NotifyError {
        NotifyError::Retryable {
            message: format!(
                "receiver {} ({}): {}",
                self.inner.name,
                self.host(),
                e.without_url()
            ),
            retry_after: None,
        }
    }
}

/// The configured receivers by name.
#[derive(Clone, Debug, Default)]
pub struct Receivers {
    map: BTreeMap<String, Receiver>,
}

impl Receivers {
    /// Every `[receivers.NAME]`, sharing `limiter`.
    pub fn from_config(
        config: &AppConfig,
        limiter: Option<RateLimiter>,
    ) -> Result<Receivers, ReceiverError> {
        let mut map = BTreeMap::new();
        for (name, rc) in &config.receivers {
            map.insert(name.clone(), Receiver::new(name, rc, limiter.clone())?);
        }
        Ok(Receivers { map })
    }

    pub fn get(&self, name: &str) -> Option<&Receiver> {
        self.map.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_config_hides_the_url_and_secret() {
        let c: ReceiverConfig = toml::from_str(
            "type = \"lark\"\nurl = \"https://open.larksuite.com/open-apis/bot/v2/hook/tok-123\"\nsecret = \"sss-999\"\n",
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("tok-123") && !dbg.contains("sss-999"),
            "{dbg}"
        );
        let r = Receiver::new("ops", &c, None).unwrap();
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("tok-123"), "{dbg}");
        assert!(dbg.contains("open.larksuite.com"));
        assert!(
            toml::from_str::<ReceiverConfig>("type = \"slack\"\nurl = \"x\"\ncolour = 1\n")
                .is_err()
        );
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = AppConfig::default();
        c.receivers.insert(
            "ops".into(),
            ReceiverConfig::new(
                ReceiverKind::Lark,
                "https://open.feishu.cn/open-apis/bot/hook/x",
            ),
        );
        let (k, m) = validate(&c).unwrap_err();
        assert_eq!(k, "receivers.ops.url");
        assert!(m.contains("legacy"), "{m}");
        c.receivers.insert(
            "ops".into(),
            ReceiverConfig::new(
                ReceiverKind::Lark,
                "https://open.feishu.cn/open-apis/bot/v2/hook/x",
            ),
        );
        assert!(validate(&c).is_ok());
        let mut s = ReceiverConfig::new(
            ReceiverKind::Slack,
            "https://hooks.slack.com/services/T/B/X",
        );
        s.rate_limit = Some("nope".into());
        c.receivers.insert("s".into(), s);
        assert_eq!(validate(&c).unwrap_err().0, "receivers.s.rate_limit");
    }

    #[test]
    fn truncation_is_on_char_boundaries() {
        assert_eq!(truncate("hello", 10), "hello");
        let t = truncate("ééééé", 6);
        assert!(t.len() <= 6 && t.ends_with('…'), "{t}");
    }

    #[test]
    fn default_limits_keep_within_the_bot_quota() {
        for (key, limits) in default_rate_limits() {
            for l in limits {
                let per_s = l.per.0.as_secs_f64();
                // GCRA admits at most burst + rate × window in any window.
                let one_s = f64::from(l.burst) + f64::from(l.limit) / per_s;
                let one_min = f64::from(l.burst) + f64::from(l.limit) * 60.0 / per_s;
                if key == LARK_RATE_KEY && per_s <= 1.0 {
                    assert!(one_s <= 5.0);
                }
                if key == LARK_RATE_KEY && per_s >= 60.0 {
                    assert!(one_min <= 100.0);
                }
            }
        }
    }
}
