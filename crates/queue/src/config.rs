//! Configuration of the queue core: namespace, broker, Redis, TLS, worker,
//! task state, beat, per-task overrides, rate limits and schedules.
//!
//! An application embeds these sections in its own file (alertflow's
//! `AppConfig` does) and hands the queue a [`QueueConfig`]. Unknown keys are
//! errors that name the key, the line and the file. Secrets (passwords in
//! URLs) are wrapped so that `Debug` never prints them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Where the config file is looked for when none is named.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/alertflow/alertflow.toml";

/// Errors loading or validating configuration. Each names the file and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path}: key `{key}`: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// A secret string: `Debug` and `Display` print `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("***")
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A URL that may carry a password: `Debug`/`Display` mask the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(s: impl Into<String>) -> Self {
        SecretUrl(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The URL with any password replaced by `***`, safe to log.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretUrl)
    }
}

/// `host:port` of a broker or Redis URL: no scheme, credentials or path.
pub fn node_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

/// Replace the password of `scheme://user:password@host...` with `***`.
pub fn redact_url(url: &str) -> String {
    // A list (`ALERTFLOW_BROKER_URL` may hold several, comma separated):
    // every URL of it, not only the first.
    if url.contains(',') {
        return url.split(',').map(redact_one).collect::<Vec<_>>().join(",");
    }
    redact_one(url)
}

/// The password of one URL replaced by `***` (the `url` crate finds it).
/// Text that does not parse as a URL but has userinfo loses all of it.
fn redact_one(text: &str) -> String {
    match url::Url::parse(text.trim()) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
                u.to_string()
            } else {
                text.to_string()
            }
        }
        Err(_) => match (text.find("://"), text.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &text[..scheme + 3], &text[at..])
            }
            _ => text.to_string(),
        },
    }
}

/// A duration written as `"30s"`, `"5m"`, `"1h30m"`, `"2d"` or `"250ms"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

pub use crate::schedule::{DurationError, parse_duration};

/// Classic (default) or quorum work queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// AMQP URL (`amqps://` for TLS); several nodes of a cluster may be
    /// given comma-separated (as `ALERTFLOW_BROKER_URL` does) or in `urls`.
    pub url: SecretUrl,
    /// The nodes of a RabbitMQ cluster; when set, `url` is not used. Each
    /// process starts at a random node (spreading consumers) and, when a
    /// connection is lost or refused, goes on to the next.
    pub urls: Vec<SecretUrl>,
    pub queue_type: QueueType,
    /// `x-delivery-limit` for quorum queues.
    pub delivery_limit: u32,
    /// AMQP heartbeat in seconds (added to the URL unless it sets one).
    pub heartbeat_secs: u16,
    /// Unconfirmed publishes kept in flight by bulk publishing.
    pub publish_window: usize,
    /// Delay tiers used for retries and countdowns.
    pub retry_tiers: Vec<HumanDuration>,
    /// RabbitMQ management API, used by `alertflow queues` for unacked counts.
    pub management_url: Option<SecretUrl>,
    /// Bound on one connection attempt: TCP connect, TLS and the AMQP
    /// handshake. A broker that accepts TCP and never answers is an error
    /// after this long, not a hang.
    pub connect_timeout: HumanDuration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: SecretUrl::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            urls: Vec::new(),
            queue_type: QueueType::Classic,
            delivery_limit: 20,
            heartbeat_secs: 15,
            publish_window: 1024,
            retry_tiers: ["1s", "5s", "30s", "2m", "10m", "1h"]
                .iter()
                .map(|s| HumanDuration(parse_duration(s).expect("static duration")))
                .collect(),
            management_url: None,
            connect_timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Redis URL (`rediss://` for TLS).
    pub url: SecretUrl,
    pub pool_size: usize,
    /// Timeout for getting a connection and for each command.
    pub timeout: HumanDuration,
    /// When Redis is unreachable, rate limits admit (`true`) or wait (`false`).
    pub fail_open: bool,
    /// Redis Sentinels (`redis://host:26379`) watching the master named
    /// `master_name`: when set, every process asks them for the master and
    /// follows a failover; `url` then only gives the password and database
    /// used on the master.
    pub sentinels: Vec<SecretUrl>,
    pub master_name: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: SecretUrl::new("redis://127.0.0.1:6379"),
            pool_size: 16,
            timeout: HumanDuration(Duration::from_secs(2)),
            fail_open: false,
            sentinels: Vec::new(),
            master_name: "mymaster".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Queue families consumed. Empty (the default): every family of the
    /// registry's tasks, `[tasks.NAME] queue` and `default` (see
    /// [`crate::task::Registry::consumed_families`]).
    pub queues: Vec<String>,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Prefetch per consumer = concurrency × this.
    pub prefetch_multiplier: usize,
    /// How long SIGTERM waits for in-flight tasks.
    pub shutdown_timeout: HumanDuration,
    /// Hard time limit of a task unless the task or `[tasks.NAME]` says otherwise.
    pub time_limit: HumanDuration,
    pub max_retries: u32,
    pub retry_backoff_base: HumanDuration,
    pub retry_backoff_max: HumanDuration,
    /// A rate-limit wait longer than this sends the task to a delay tier.
    pub max_rate_limit_wait: HumanDuration,
    /// `/metrics` and `/healthz`; `"off"` disables.
    pub metrics_listen: String,
    pub heartbeat_interval: HumanDuration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            queues: Vec::new(),
            concurrency: 8,
            prefetch_multiplier: 1,
            shutdown_timeout: HumanDuration(Duration::from_secs(30)),
            time_limit: HumanDuration(Duration::from_secs(300)),
            max_retries: 5,
            retry_backoff_base: HumanDuration(Duration::from_secs(1)),
            retry_backoff_max: HumanDuration(Duration::from_secs(600)),
            max_rate_limit_wait: HumanDuration(Duration::from_millis(500)),
            metrics_listen: "127.0.0.1:9808".into(),
            heartbeat_interval: HumanDuration(Duration::from_secs(5)),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// How long task states stay in Redis.
    pub ttl: HumanDuration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            ttl: HumanDuration(Duration::from_secs(7 * 86400)),
        }
    }
}

/// `[tls]`: trust for `amqps://`, `rediss://` and `mysql.tls`. Certificates
/// are always verified; `ca_file` adds a private CA (PEM).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BeatConfig {
    /// `/metrics` and `/healthz` of the beat; `"off"` disables.
    pub metrics_listen: String,
    /// A beat that lost a fire's claim checks after this long that the
    /// winner published it, and publishes it itself if the winner died.
    pub claim_timeout: HumanDuration,
    /// A local file where this beat also keeps each schedule's last fire
    /// (JSON), so that catch-up still knows where to start when Redis lost
    /// its data (`<ns>:beat:last:*`): without it, fires missed while every
    /// beat was down and Redis lost its data are not caught up.
    pub state_file: Option<PathBuf>,
}

impl Default for BeatConfig {
    fn default() -> Self {
        BeatConfig {
            metrics_listen: "127.0.0.1:9810".into(),
            claim_timeout: HumanDuration(Duration::from_secs(15)),
            state_file: None,
        }
    }
}

/// Per-task overrides (`[tasks.NAME]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskOverride {
    pub queue: Option<String>,
    pub max_retries: Option<u32>,
    pub time_limit: Option<HumanDuration>,
    /// Limits on starting this task, shared by every worker on every host
    /// (rate-limit key `task.NAME`). A task over its limit waits in a delay
    /// tier without holding a worker slot.
    pub rate_limits: Option<Vec<LimitSpec>>,
}

/// The rate-limit key of `[tasks.NAME] rate_limits`.
pub fn task_rate_key(task: &str) -> String {
    format!("task.{task}")
}

/// One limit of a rate-limit key: `limit` per `per`, admitting `burst` at once.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub limit: u32,
    pub per: HumanDuration,
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

/// The queue's configuration: the sections of the file the queue reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Prefix of every exchange, queue and Redis key.
    pub namespace: String,
    pub broker: BrokerConfig,
    pub redis: RedisConfig,
    pub worker: WorkerConfig,
    pub state: StateConfig,
    pub tasks: BTreeMap<String, TaskOverride>,
    pub rate_limits: BTreeMap<String, Vec<LimitSpec>>,
    pub beat: BeatConfig,
    pub tls: TlsConfig,
    /// `[[schedules]]`: what beat publishes, and when.
    pub schedules: Vec<crate::schedule::ScheduleConfig>,
    /// Where this configuration came from (for error messages).
    #[serde(skip)]
    pub source: String,
    /// Keys set by environment variables, with the variable: a bad value
    /// is blamed on the variable, not on the file.
    #[serde(skip)]
    pub from_env: BTreeMap<String, String>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            namespace: "alertflow".into(),
            broker: BrokerConfig::default(),
            redis: RedisConfig::default(),
            worker: WorkerConfig::default(),
            state: StateConfig::default(),
            tasks: BTreeMap::new(),
            rate_limits: BTreeMap::new(),
            beat: BeatConfig::default(),
            tls: TlsConfig::default(),
            schedules: Vec::new(),
            source: "(none: built-in defaults)".into(),
            from_env: BTreeMap::new(),
        }
    }
}

/// Sets one key from an environment variable's value.
pub type EnvSetter<C> = fn(&mut C, &str) -> Result<(), String>;

/// One environment override: the variable, the key it sets (as shown in
/// `--help`), and how.
pub struct EnvOverride<C> {
    pub var: &'static str,
    pub key: &'static str,
    pub set: EnvSetter<C>,
}

/// The queue's environment overrides.
pub fn queue_env_overrides() -> Vec<EnvOverride<QueueConfig>> {
    vec![
        EnvOverride {
            var: "ALERTFLOW_NAMESPACE",
            key: "namespace",
            set: |c, v| {
                c.namespace = v.to_string();
                Ok(())
            },
        },
        EnvOverride {
            var: "ALERTFLOW_BROKER_URL",
            key: "broker.url",
            set: |c, v| {
                c.broker.url = SecretUrl::new(v);
                Ok(())
            },
        },
        EnvOverride {
            var: "ALERTFLOW_QUEUE_TYPE",
            key: "broker.queue_type",
            set: |c, v| {
                c.broker.queue_type = match v {
                    "classic" => QueueType::Classic,
                    "quorum" => QueueType::Quorum,
                    _ => return Err("expected `classic` or `quorum`".into()),
                };
                Ok(())
            },
        },
        EnvOverride {
            var: "ALERTFLOW_REDIS_URL",
            key: "redis.url",
            set: |c, v| {
                c.redis.url = SecretUrl::new(v);
                Ok(())
            },
        },
        EnvOverride {
            var: "ALERTFLOW_TLS_CA_FILE",
            key: "tls.ca_file",
            set: |c, v| {
                c.tls.ca_file = (!v.is_empty()).then(|| PathBuf::from(v));
                Ok(())
            },
        },
        EnvOverride {
            var: "ALERTFLOW_WORKER_QUEUES",
            key: "worker.queues (comma separated)",
            set: |c, v| {
                c.worker.queues = split_list(v);
                Ok(())
            },
        },
        EnvOverride {
            var: "ALERTFLOW_WORKER_CONCURRENCY",
            key: "worker.concurrency",
            set: |c, v| {
                c.worker.concurrency = v.parse().map_err(|e| format!("{e}"))?;
                Ok(())
            },
        },
        EnvOverride {
            var: "ALERTFLOW_METRICS_LISTEN",
            key: "worker.metrics_listen",
            set: |c, v| {
                c.worker.metrics_listen = v.to_string();
                Ok(())
            },
        },
    ]
}

/// Split `"a, b,c"` into `["a","b","c"]`, dropping empty items.
pub fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl QueueConfig {
    /// Apply the queue's environment overrides, reading variables through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for o in queue_env_overrides() {
            if let Some(value) = get(o.var) {
                self.record_env(o.key, o.var);
                (o.set)(self, &value).map_err(|message| ConfigError::Env {
                    var: o.var.to_string(),
                    message,
                })?;
            }
        }
        Ok(())
    }

    /// Remember that `key` (as listed, e.g. `"worker.queues (comma
    /// separated)"`) was set by `var`.
    pub fn record_env(&mut self, key: &str, var: &str) {
        let key = key.split_whitespace().next().unwrap_or(key);
        self.from_env.insert(key.to_string(), var.to_string());
    }

    /// The error for a bad value of `key`: blamed on the environment
    /// variable that set it, else on the config file.
    pub fn invalid(&self, key: &str, message: &str) -> ConfigError {
        match self.from_env.get(key) {
            Some(var) => ConfigError::Env {
                var: var.clone(),
                message: format!("sets `{key}`: {message}"),
            },
            None => ConfigError::Invalid {
                path: self.source.clone(),
                key: key.to_string(),
                message: message.to_string(),
            },
        }
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| self.invalid(key, message);
        if self.namespace.is_empty()
            || !self
                .namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "namespace",
                "must be non-empty letters, digits, '-' or '_'",
            ));
        }
        let nodes = self.broker_nodes();
        let key = if self.broker.urls.is_empty() {
            "broker.url"
        } else {
            "broker.urls"
        };
        if nodes.is_empty() {
            return Err(invalid(key, "names no broker"));
        }
        let tls = nodes[0].starts_with("amqps://");
        for broker in &nodes {
            if !(broker.starts_with("amqp://") || broker.starts_with("amqps://")) {
                return Err(invalid(key, "must start with amqp:// or amqps://"));
            }
            if broker.starts_with("amqps://") != tls {
                return Err(invalid(key, "mixes amqp:// and amqps:// nodes"));
            }
        }
        for u in &self.redis.sentinels {
            if !(u.expose().starts_with("redis://") || u.expose().starts_with("rediss://")) {
                return Err(invalid(
                    "redis.sentinels",
                    "each must start with redis:// or rediss://",
                ));
            }
        }
        if !self.redis.sentinels.is_empty() && self.redis.master_name.trim().is_empty() {
            return Err(invalid("redis.master_name", "names no master"));
        }
        if !(self.redis.url.expose().starts_with("redis://")
            || self.redis.url.expose().starts_with("rediss://")
            || self.redis.url.expose().starts_with("unix://"))
        {
            return Err(invalid(
                "redis.url",
                "must start with redis://, rediss:// or unix://",
            ));
        }
        if let Some(ca) = &self.tls.ca_file
            && !ca.is_file()
        {
            return Err(invalid(
                "tls.ca_file",
                &format!("{} is not a readable file", ca.display()),
            ));
        }
        if self.broker.retry_tiers.is_empty() {
            return Err(invalid("broker.retry_tiers", "needs at least one tier"));
        }
        if self.broker.retry_tiers.iter().any(|t| t.0.as_millis() < 1) {
            return Err(invalid("broker.retry_tiers", "tiers must be at least 1ms"));
        }
        if self.broker.connect_timeout.0.is_zero() {
            return Err(invalid("broker.connect_timeout", "must be positive"));
        }
        if self.broker.publish_window == 0 {
            return Err(invalid("broker.publish_window", "must be at least 1"));
        }
        if self.worker.concurrency == 0 || self.worker.concurrency > 10_000 {
            return Err(invalid("worker.concurrency", "must be between 1 and 10000"));
        }
        if self.worker.prefetch_multiplier == 0 {
            return Err(invalid("worker.prefetch_multiplier", "must be at least 1"));
        }
        for q in &self.worker.queues {
            crate::topology::validate_queue_name(q)
                .map_err(|e| invalid("worker.queues", &e.to_string()))?;
        }
        for (name, o) in &self.tasks {
            if let Some(q) = &o.queue {
                crate::topology::validate_queue_name(q)
                    .map_err(|e| invalid(&format!("tasks.{name}.queue"), &e.to_string()))?;
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for sc in &self.schedules {
            let key = format!("schedules.{}", sc.name);
            crate::schedule::Schedule::from_config(sc)
                .map_err(|e| invalid(&key, &e.to_string()))?;
            if !names.insert(sc.name.clone()) {
                return Err(invalid(&key, "two schedules have this name"));
            }
            if let Some(q) = &sc.queue {
                crate::topology::validate_queue_name(q)
                    .map_err(|e| invalid(&key, &e.to_string()))?;
            }
        }
        let named = self
            .rate_limits
            .iter()
            .map(|(k, l)| (format!("rate_limits.{k}"), l))
            .chain(self.tasks.iter().filter_map(|(name, o)| {
                o.rate_limits
                    .as_ref()
                    .map(|l| (format!("tasks.{name}.rate_limits"), l))
            }));
        for (key, limits) in named {
            if limits.is_empty() {
                return Err(invalid(&key, "needs a limit"));
            }
            for l in limits {
                if l.limit == 0 || l.per.0.is_zero() || l.burst == 0 {
                    return Err(invalid(&key, "limit, per and burst must be positive"));
                }
            }
        }
        Ok(())
    }

    /// The AMQP URL with a heartbeat set, unless the URL sets one.
    pub fn amqp_url(&self) -> String {
        self.amqp_urls().into_iter().next().unwrap_or_default()
    }

    /// The broker nodes as configured (`broker.urls`, else `broker.url`
    /// split at commas), without the heartbeat parameter.
    pub fn broker_nodes(&self) -> Vec<String> {
        if !self.broker.urls.is_empty() {
            return self
                .broker
                .urls
                .iter()
                .map(|u| u.expose().trim().to_string())
                .collect();
        }
        self.broker
            .url
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Every node's AMQP URL, with the heartbeat added unless it sets one.
    pub fn amqp_urls(&self) -> Vec<String> {
        self.broker_nodes()
            .into_iter()
            .map(|url| {
                if url.contains("heartbeat=") || self.broker.heartbeat_secs == 0 {
                    return url;
                }
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}heartbeat={}", self.broker.heartbeat_secs)
            })
            .collect()
    }

    /// Every rate-limit key the limiter knows: `[rate_limits]` plus
    /// `task.NAME` for each `[tasks.NAME] rate_limits`.
    pub fn limiter_limits(&self) -> BTreeMap<String, Vec<LimitSpec>> {
        let mut all = self.rate_limits.clone();
        for (name, o) in &self.tasks {
            if let Some(limits) = &o.rate_limits {
                all.insert(task_rate_key(name), limits.clone());
            }
        }
        all
    }

    /// The effective queue of a task: `[tasks.NAME].queue`, else its default.
    pub fn task_queue(&self, task: &str, default: &str) -> String {
        self.tasks
            .get(task)
            .and_then(|o| o.queue.clone())
            .unwrap_or_else(|| default.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("5").is_err(), "a unit is required");
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("amqp://guest:hunter2@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("redis://:pw@h/0"), "redis://:***@h/0");
        assert_eq!(
            redact_url("amqp://u:p1@a:5672/%2f,amqp://u:p2@b:5672/%2f"),
            "amqp://u:***@a:5672/%2f,amqp://u:***@b:5672/%2f"
        );
        assert_eq!(redact_url("amqp://u:p w@[bad/%2f"), "amqp://***@[bad/%2f");
        let mut c = QueueConfig::default();
        c.broker.url = SecretUrl::new("amqp://u:brokerpass@h/%2f");
        c.redis.url = SecretUrl::new("redis://:redispass@h/0");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("brokerpass"), "{dbg}");
        assert!(!dbg.contains("redispass"), "{dbg}");
    }

    #[test]
    fn node_lists_from_urls_or_a_comma_separated_url_are_checked_per_node() {
        let mut c = QueueConfig::default();
        c.broker.url = SecretUrl::new("amqp://u:p@a:5672/%2f, amqp://u:q@b:5672/%2f?heartbeat=5");
        assert_eq!(
            c.amqp_urls(),
            [
                "amqp://u:p@a:5672/%2f?heartbeat=15",
                "amqp://u:q@b:5672/%2f?heartbeat=5"
            ]
        );
        c.validate().unwrap();
        c.broker.urls = vec![
            SecretUrl::new("amqp://u:p@a/%2f"),
            SecretUrl::new("amqps://u:p@b/%2f"),
        ];
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("broker.urls") && e.contains("mixes"), "{e}");
        c.broker.urls = vec![SecretUrl::new("http://u:secretpw@a/")];
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("broker.urls") && !e.contains("secretpw"), "{e}");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("secretpw"), "{dbg}");
        assert_eq!(
            node_host("amqps://u:p@rabbit-2:5671/%2f?x=1"),
            "rabbit-2:5671"
        );
    }

    #[test]
    fn heartbeat_is_added() {
        let c = QueueConfig::default();
        assert!(c.amqp_url().ends_with("%2f?heartbeat=15"));
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = QueueConfig {
            source: "f.toml".into(),
            ..QueueConfig::default()
        };
        c.worker.concurrency = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("worker.concurrency") && err.contains("f.toml"),
            "{err}"
        );
        c.apply_env(|k| (k == "ALERTFLOW_WORKER_CONCURRENCY").then(|| "0".into()))
            .unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("ALERTFLOW_WORKER_CONCURRENCY"), "{err}");
    }
}
