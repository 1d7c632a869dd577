//! Configuration: one TOML file plus environment overrides.
//!
//! The file is found at `--config`, else `$ALERTFLOW_CONFIG`, else
//! `/etc/alertflow/alertflow.toml` if it exists; with none of them every
//! default points at the local services. Unknown keys are errors that name the
//! key, the line and the file. Secrets (passwords in URLs, the Lark app secret)
//! are wrapped so that `Debug` never prints them.
//!
//! [`AppConfig`] is the queue's [`QueueConfig`] (namespace, broker, redis,
//! worker, state, tasks, rate_limits, beat, tls, schedules) plus the
//! application's sections (lark, mysql, sink, parser, recommend, influx,
//! checks, receivers, notify). The file keeps one flat shape: it is read into
//! [`AppConfigFile`] (every section, unknown keys refused) and split.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::queue::config::{
    BeatConfig, BrokerConfig, ConfigError, DurationError, EnvOverride, HumanDuration, LimitSpec,
    QueueConfig, QueueType, RedisConfig, Secret, SecretUrl, StateConfig, TaskOverride, TlsConfig,
    WorkerConfig, parse_duration, redact_url, split_list, task_rate_key,
};
use crate::queue::schedule::ScheduleConfig;

/// Where the config file is looked for when none is named.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/alertflow/alertflow.toml";

/// The time zone of a schedule that names none. The pipeline's days are
/// Pacific days (see `docs/lark-api.md`), so its schedules default to them;
/// the queue on its own defaults to UTC.
pub const DEFAULT_SCHEDULE_TIMEZONE: &str = "America/Los_Angeles";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub database: String,
    /// Require TLS (certificate verified against the system roots plus
    /// `tls.ca_file`; the server's name must match `host`).
    pub tls: bool,
    /// Bound on getting a connection (TCP, TLS, handshake, login).
    pub connect_timeout: HumanDuration,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        MysqlConfig {
            host: "127.0.0.1".into(),
            port: 3306,
            user: "root".into(),
            password: Secret::default(),
            database: "alerts".into(),
            tls: false,
            connect_timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LarkConfig {
    pub base_url: String,
    pub app_id: String,
    pub app_secret: Secret,
    pub chat_id: String,
}

impl Default for LarkConfig {
    fn default() -> Self {
        LarkConfig {
            base_url: "https://open.larksuite.com".into(),
            app_id: String::new(),
            app_secret: Secret::default(),
            chat_id: "oc_392593bb5ace3f00ee10ab53bfe7681f".into(),
        }
    }
}

/// How `insert` writes rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkMode {
    /// Multi-row INSERT over the MySQL protocol (upsert on the key).
    #[default]
    Sql,
    /// StarRocks Stream Load over HTTP with deterministic labels.
    StreamLoad,
}

/// `[sink]`: where and how alert rows are written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    pub dialect: crate::sink::schema::Dialect,
    pub mode: SinkMode,
    /// `insert` coalesces messages up to this many rows per load...
    pub batch_rows: usize,
    /// ...or until the first of them waited this long.
    pub batch_interval: HumanDuration,
    /// StarRocks FE HTTP address for Stream Load.
    pub stream_load_url: String,
    /// StarRocks tables: buckets and replicas (`alertflow migrate`).
    pub buckets: u32,
    pub replication_num: u32,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            dialect: crate::sink::schema::Dialect::Mysql,
            mode: SinkMode::Sql,
            batch_rows: 5000,
            batch_interval: HumanDuration(Duration::from_secs(5)),
            stream_load_url: "http://127.0.0.1:8030".into(),
            buckets: 8,
            replication_num: 3,
        }
    }
}

/// `[recommend]`: noisy thresholds and the catalogue override file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecommendConfig {
    /// Noisy when fired at least this often in a day...
    pub noisy_fired: u32,
    /// ...or on at least this many clusters.
    pub noisy_clusters: u32,
    /// A TOML file whose `[alerts.NAME]` entries override and extend the
    /// built-in catalogue.
    pub catalogue: Option<std::path::PathBuf>,
}

impl Default for RecommendConfig {
    fn default() -> Self {
        RecommendConfig {
            noisy_fired: 10,
            noisy_clusters: 3,
            catalogue: None,
        }
    }
}

/// `[parser]`: extra card-key aliases per field (`alert_name`, `severity`,
/// `status`, `level_status`, `cluster`, `region`, `start`, `end`, `summary`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParserConfig {
    pub aliases: BTreeMap<String, Vec<String>>,
}

impl ParserConfig {
    /// The built-in alias tables extended by `[parser.aliases]`.
    pub fn aliases(&self) -> Result<crate::lark::card::Aliases, crate::lark::card::UnknownField> {
        let mut a = crate::lark::card::Aliases::default();
        for (field, extra) in &self.aliases {
            a.extend(field, extra.iter().cloned())?;
        }
        Ok(a)
    }
}

/// The config file as written: every section, flat, unknown keys refused.
/// (serde's `flatten` cannot be combined with `deny_unknown_fields`, so the
/// queue's sections are listed here and moved into a [`QueueConfig`].)
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfigFile {
    /// Prefix of every exchange, queue and Redis key.
    pub namespace: String,
    pub broker: BrokerConfig,
    pub redis: RedisConfig,
    pub mysql: MysqlConfig,
    pub lark: LarkConfig,
    pub worker: WorkerConfig,
    pub state: StateConfig,
    pub tasks: BTreeMap<String, TaskOverride>,
    pub rate_limits: BTreeMap<String, Vec<LimitSpec>>,
    pub beat: BeatConfig,
    pub tls: TlsConfig,
    pub parser: ParserConfig,
    pub sink: SinkConfig,
    pub recommend: RecommendConfig,
    /// `[[schedules]]`: what beat publishes, and when.
    pub schedules: Vec<ScheduleConfig>,
    /// `[influx.sources.NAME]`: InfluxDB sources of the checks.
    pub influx: crate::influx::InfluxConfig,
    /// `[[checks]]`: InfluxDB threshold checks (`influx-check`).
    pub checks: Vec<crate::notify::check::CheckConfig>,
    /// `[receivers.NAME]`: Lark bots and Slack webhooks.
    pub receivers: BTreeMap<String, crate::notify::ReceiverConfig>,
    /// `[notify]`: pipeline health notifications.
    pub notify: crate::notify::NotifyConfig,
    /// `[digest]`: the daily alert digest.
    pub digest: crate::notify::digest::DigestConfig,
    /// `[web]`: the dashboard (`alertflow web`) and who may use it.
    pub web: crate::web::auth::WebConfig,
    /// `[watch]`: how often workers evaluate the watchdogs.
    pub watch: crate::watchdog::WatchConfig,
    /// `[[watchdogs]]`: the pipeline watching itself.
    pub watchdogs: Vec<crate::watchdog::WatchdogConfig>,
}

impl Default for AppConfigFile {
    fn default() -> Self {
        AppConfig::default().into_file()
    }
}

/// The whole configuration: the queue's part and the application's.
///
/// It dereferences to its [`QueueConfig`], so `config.worker` reads the
/// queue's section and `&AppConfig` is accepted wherever the queue asks for
/// `&QueueConfig`.
#[derive(Clone, Debug)]
pub struct AppConfig {
    pub queue: QueueConfig,
    pub mysql: MysqlConfig,
    pub lark: LarkConfig,
    pub parser: ParserConfig,
    pub sink: SinkConfig,
    pub recommend: RecommendConfig,
    pub influx: crate::influx::InfluxConfig,
    pub checks: Vec<crate::notify::check::CheckConfig>,
    pub receivers: BTreeMap<String, crate::notify::ReceiverConfig>,
    pub notify: crate::notify::NotifyConfig,
    pub digest: crate::notify::digest::DigestConfig,
    pub web: crate::web::auth::WebConfig,
    pub watch: crate::watchdog::WatchConfig,
    pub watchdogs: Vec<crate::watchdog::WatchdogConfig>,
}

impl Deref for AppConfig {
    type Target = QueueConfig;
    fn deref(&self) -> &QueueConfig {
        &self.queue
    }
}

impl DerefMut for AppConfig {
    fn deref_mut(&mut self) -> &mut QueueConfig {
        &mut self.queue
    }
}

impl Default for AppConfig {
    fn default() -> Self {
        let mut rate_limits = BTreeMap::new();
        rate_limits.insert(
            "lark.api".to_string(),
            vec![
                // Lark allows 50/s and 1000/min per app. GCRA admits at most
                // burst + rate × window in any window, and requests reach Lark
                // with some jitter, so the defaults keep headroom: at most 46
                // in any second and 950 in any minute.
                LimitSpec {
                    limit: 45,
                    per: HumanDuration(Duration::from_secs(1)),
                    burst: 1,
                },
                LimitSpec {
                    limit: 900,
                    per: HumanDuration(Duration::from_secs(60)),
                    burst: 50,
                },
            ],
        );
        rate_limits.extend(crate::notify::default_rate_limits());
        AppConfig {
            queue: QueueConfig {
                rate_limits,
                ..QueueConfig::default()
            },
            mysql: MysqlConfig::default(),
            lark: LarkConfig::default(),
            parser: ParserConfig::default(),
            sink: SinkConfig::default(),
            recommend: RecommendConfig::default(),
            influx: Default::default(),
            checks: Vec::new(),
            receivers: BTreeMap::new(),
            notify: Default::default(),
            digest: Default::default(),
            web: Default::default(),
            watch: Default::default(),
            watchdogs: Vec::new(),
        }
    }
}

impl From<AppConfigFile> for AppConfig {
    fn from(f: AppConfigFile) -> AppConfig {
        let mut schedules = f.schedules;
        for s in &mut schedules {
            s.timezone
                .get_or_insert_with(|| DEFAULT_SCHEDULE_TIMEZONE.to_string());
        }
        AppConfig {
            queue: QueueConfig {
                namespace: f.namespace,
                broker: f.broker,
                redis: f.redis,
                worker: f.worker,
                state: f.state,
                tasks: f.tasks,
                rate_limits: f.rate_limits,
                beat: f.beat,
                tls: f.tls,
                schedules,
                source: String::new(),
                from_env: BTreeMap::new(),
            },
            mysql: f.mysql,
            lark: f.lark,
            parser: f.parser,
            sink: f.sink,
            recommend: f.recommend,
            influx: f.influx,
            checks: f.checks,
            receivers: f.receivers,
            notify: f.notify,
            digest: f.digest,
            web: f.web,
            watch: f.watch,
            watchdogs: f.watchdogs,
        }
    }
}

impl AppConfig {
    fn into_file(self) -> AppConfigFile {
        let q = self.queue;
        AppConfigFile {
            namespace: q.namespace,
            broker: q.broker,
            redis: q.redis,
            mysql: self.mysql,
            lark: self.lark,
            worker: q.worker,
            state: q.state,
            tasks: q.tasks,
            rate_limits: q.rate_limits,
            beat: q.beat,
            tls: q.tls,
            parser: self.parser,
            sink: self.sink,
            recommend: self.recommend,
            schedules: q.schedules,
            influx: self.influx,
            checks: self.checks,
            receivers: self.receivers,
            notify: self.notify,
            digest: self.digest,
            web: self.web,
            watch: self.watch,
            watchdogs: self.watchdogs,
        }
    }
}

/// The application's environment overrides (the queue's are in
/// [`crate::queue::config::queue_env_overrides`]).
pub fn app_env_overrides() -> Vec<EnvOverride<AppConfig>> {
    vec![
        EnvOverride {
            var: "LARK_BASE_URL",
            key: "lark.base_url",
            set: |c, v| {
                c.lark.base_url = v.to_string();
                Ok(())
            },
        },
        EnvOverride {
            var: "LARK_APP_ID",
            key: "lark.app_id",
            set: |c, v| {
                c.lark.app_id = v.to_string();
                Ok(())
            },
        },
        EnvOverride {
            var: "LARK_APP_SECRET",
            key: "lark.app_secret",
            set: |c, v| {
                c.lark.app_secret = Secret::new(v);
                Ok(())
            },
        },
        EnvOverride {
            var: "LARK_CHAT_ID",
            key: "lark.chat_id",
            set: |c, v| {
                c.lark.chat_id = v.to_string();
                Ok(())
            },
        },
        EnvOverride {
            var: "STARROCKS_HOST",
            key: "mysql.host",
            set: |c, v| {
                c.mysql.host = v.to_string();
                Ok(())
            },
        },
        EnvOverride {
            var: "STARROCKS_PORT",
            key: "mysql.port",
            set: |c, v| {
                c.mysql.port = v.parse().map_err(|e| format!("{e}"))?;
                Ok(())
            },
        },
        EnvOverride {
            var: "STARROCKS_USER",
            key: "mysql.user",
            set: |c, v| {
                c.mysql.user = v.to_string();
                Ok(())
            },
        },
        EnvOverride {
            var: "STARROCKS_PASSWORD",
            key: "mysql.password",
            set: |c, v| {
                c.mysql.password = Secret::new(v);
                Ok(())
            },
        },
        EnvOverride {
            var: "STARROCKS_DATABASE",
            key: "mysql.database",
            set: |c, v| {
                c.mysql.database = v.to_string();
                Ok(())
            },
        },
        EnvOverride {
            var: "ALERTFLOW_SINK_DIALECT",
            key: "sink.dialect (starrocks or mysql)",
            set: |c, v| {
                c.sink.dialect = match v {
                    "starrocks" => crate::sink::schema::Dialect::StarRocks,
                    "mysql" => crate::sink::schema::Dialect::Mysql,
                    _ => return Err("expected `starrocks` or `mysql`".into()),
                };
                Ok(())
            },
        },
    ]
}

/// Every environment variable that overrides the file, with the key it sets.
pub fn env_overrides() -> Vec<(&'static str, &'static str)> {
    crate::queue::config::queue_env_overrides()
        .iter()
        .map(|o| (o.var, o.key))
        .chain(app_env_overrides().iter().map(|o| (o.var, o.key)))
        .collect()
}

impl AppConfig {
    /// Load from an explicit path, `$ALERTFLOW_CONFIG`, or the default path,
    /// then apply environment overrides and validate.
    pub fn load(explicit: Option<&Path>) -> Result<AppConfig, ConfigError> {
        let path: Option<PathBuf> = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => match std::env::var_os("ALERTFLOW_CONFIG") {
                Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
                _ => {
                    let p = PathBuf::from(DEFAULT_CONFIG_PATH);
                    p.exists().then_some(p)
                }
            },
        };
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                AppConfig::from_toml(&text, &p.display().to_string())?
            }
            None => AppConfig::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Parse TOML text; `source` names the file in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<AppConfig, ConfigError> {
        let file: AppConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: source.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut config = AppConfig::from(file);
        config.queue.source = source.to_string();
        Ok(config)
    }

    /// Apply environment overrides (the queue's, then the application's),
    /// reading variables through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        self.queue.apply_env(&get)?;
        for o in app_env_overrides() {
            if let Some(value) = get(o.var) {
                self.queue.record_env(o.key, o.var);
                (o.set)(self, &value).map_err(|message| ConfigError::Env {
                    var: o.var.to_string(),
                    message,
                })?;
            }
        }
        Ok(())
    }

    /// Check values that parse but make no sense: the queue's sections,
    /// then the application's.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.queue.validate()?;
        let invalid = |key: &str, message: &str| self.invalid(key, message);
        if self.mysql.connect_timeout.0.is_zero() {
            return Err(invalid("mysql.connect_timeout", "must be positive"));
        }
        if self.sink.batch_rows == 0 {
            return Err(invalid("sink.batch_rows", "must be at least 1"));
        }
        self.parser
            .aliases()
            .map_err(|m| invalid("parser.aliases", &m.to_string()))?;
        crate::notify::validate(self).map_err(|(key, m)| invalid(&key, &m))?;
        self.digest
            .validate(self)
            .map_err(|(key, m)| invalid(&key, &m))?;
        crate::web::auth::validate(&self.web).map_err(|(key, m)| invalid(&key, &m))?;
        if self.watch.interval.0 < std::time::Duration::from_secs(1) {
            return Err(invalid("watch.interval", "must be at least 1s"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, w) in self.watchdogs.iter().enumerate() {
            if !names.insert(&w.name) {
                return Err(invalid(
                    &format!("watchdogs[{i}].name"),
                    &format!("{:?} is used twice", w.name),
                ));
            }
            w.validate(self)
                .map_err(|(k, m)| invalid(&format!("watchdogs[{i}].{k}"), &m))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let mut c = AppConfig::default();
        c.lark.app_secret = Secret::new("s3cr3t-value");
        c.mysql.password = Secret::new("dbpass-value");
        c.broker.url = SecretUrl::new("amqp://u:brokerpass@h/%2f");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t-value"), "{dbg}");
        assert!(!dbg.contains("dbpass-value"));
        assert!(!dbg.contains("brokerpass"));
    }

    #[test]
    fn unknown_key_names_key_line_and_file() {
        let err = AppConfig::from_toml(
            "namespace = \"x\"\n[worker]\nconcurency = 4\n",
            "/etc/a.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/etc/a.toml"), "{err}");
        assert!(err.contains("concurency"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn env_overrides_and_seed_names() {
        let mut c = AppConfig::default();
        let env: BTreeMap<&str, &str> = [
            ("LARK_APP_ID", "cli_x"),
            ("LARK_APP_SECRET", "sec"),
            ("STARROCKS_PORT", "9030"),
            ("STARROCKS_HOST", "fe.example"),
            ("ALERTFLOW_WORKER_QUEUES", "lark, db"),
        ]
        .into_iter()
        .collect();
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.lark.app_id, "cli_x");
        assert_eq!(c.lark.app_secret.expose(), "sec");
        assert_eq!(c.mysql.port, 9030);
        assert_eq!(c.mysql.host, "fe.example");
        assert_eq!(c.worker.queues, vec!["lark", "db"]);
        let bad = c.apply_env(|k| (k == "STARROCKS_PORT").then(|| "x".to_string()));
        assert!(bad.unwrap_err().to_string().contains("STARROCKS_PORT"));
    }

    #[test]
    fn validation_names_the_key() {
        let c = AppConfig::from_toml("[worker]\nconcurrency = 0\n", "f.toml").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("worker.concurrency") && err.contains("f.toml"),
            "{err}"
        );
        let c = AppConfig::from_toml("[broker]\nurl = \"http://x\"\n", "f.toml").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("broker.url"));
    }

    #[test]
    fn schedules_are_validated_by_name() {
        let c = AppConfig::from_toml(
            "[[schedules]]\nname = \"nightly\"\ncron = \"30 0 * * *\"\ntask = \"fetch-day\"\n\
             [[schedules]]\nname = \"broken\"\ncron = \"61 * * * *\"\ntask = \"noop\"\n",
            "f.toml",
        )
        .unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("schedules.broken"), "{err}");
        let unknown = AppConfig::from_toml(
            "[[schedules]]\nname = \"a\"\nevery = \"1m\"\ntask = \"noop\"\ncolour = 1\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            unknown.contains("colour") && unknown.contains("line 5"),
            "{unknown}"
        );
    }
}
