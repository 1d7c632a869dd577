//! `alertflow check-config`: validate the configuration and, with
//! `--connect`, reach every service it names, for deploy pipelines and for the
//! operator who just edited `/etc/alertflow/alertflow.toml`.
//!
//! Exit codes: 0 the file is valid (and every service answered); 2 the file
//! (or an environment override) is invalid; 1 a service did not answer.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::cli::{CliResult, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, GlobalOpts, print_table};
use crate::config::{AppConfig, HumanDuration};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Also connect to RabbitMQ, Redis, the database, InfluxDB sources and
    /// the Lark token endpoint, and report which answer.
    #[arg(long)]
    pub connect: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Give up on a service after this long (each service is tried at once).
    #[arg(long, default_value = "5s", value_parser = parse_timeout, value_name = "DURATION")]
    pub timeout: HumanDuration,
}

fn parse_timeout(s: &str) -> Result<HumanDuration, crate::config::DurationError> {
    crate::config::parse_duration(s).map(HumanDuration)
}

/// How one service check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Answered, but configured in a way that can lose data (see the detail).
    Warn,
    Fail,
    /// Not configured, so not checked.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub service: String,
    pub status: Status,
    /// Where (passwords masked).
    pub address: String,
    pub detail: String,
    pub ms: u64,
}

#[derive(Serialize)]
struct ConfigReport<'a> {
    ok: bool,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    config: ConfigReport<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checks: Vec<Check>,
}

pub async fn check_config(g: &GlobalOpts, a: CheckArgs) -> CliResult {
    let loaded = AppConfig::load(g.config.as_deref())
        .map_err(crate::tasks::SetupError::from)
        .and_then(|c| crate::tasks::validate_config(&c).map(|()| c));
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            let source = g
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .or_else(|| std::env::var("ALERTFLOW_CONFIG").ok())
                .unwrap_or_else(|| crate::config::DEFAULT_CONFIG_PATH.to_string());
            if a.json {
                print_json(&Report {
                    config: ConfigReport {
                        ok: false,
                        source: &source,
                        error: Some(e.to_string()),
                    },
                    checks: Vec::new(),
                });
            } else {
                println!("ERROR  config {source}");
                println!("       {e}");
            }
            return Ok(EXIT_USAGE);
        }
    };
    let checks = if a.connect {
        run_checks(&config, a.timeout.0).await
    } else {
        Vec::new()
    };
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if a.json {
        print_json(&Report {
            config: ConfigReport {
                ok: true,
                source: &config.source,
                error: None,
            },
            checks: checks.clone(),
        });
    } else {
        println!("OK     config {}", describe(&config));
        if a.connect {
            println!();
            let rows: Vec<Vec<String>> = checks
                .iter()
                .map(|c| {
                    vec![
                        c.service.clone(),
                        c.status.label().to_string(),
                        format!("{} ms", c.ms),
                        c.address.clone(),
                        c.detail.clone(),
                    ]
                })
                .collect();
            print_table(&["SERVICE", "STATUS", "TIME", "ADDRESS", "DETAIL"], &rows);
            println!();
            let warned: Vec<&str> = checks
                .iter()
                .filter(|c| c.status == Status::Warn)
                .map(|c| c.service.as_str())
                .collect();
            if !warned.is_empty() {
                println!("warnings: {} (see DETAIL)", warned.join(", "));
            }
            if failed == 0 {
                println!("all services answered");
            } else {
                let names: Vec<&str> = checks
                    .iter()
                    .filter(|c| c.status == Status::Fail)
                    .map(|c| c.service.as_str())
                    .collect();
                println!("unreachable: {}", names.join(", "));
            }
        }
    }
    Ok(if failed > 0 { EXIT_FAILURE } else { EXIT_OK })
}

fn print_json(r: &Report<'_>) {
    println!(
        "{}",
        serde_json::to_string_pretty(r).expect("the report serializes")
    );
}

/// One line about a valid configuration.
fn describe(c: &AppConfig) -> String {
    let enabled = c.schedules.iter().filter(|s| s.enabled).count();
    format!(
        "{} (namespace {}, queues {}, concurrency {}, {} schedule(s) enabled)",
        c.source,
        c.namespace,
        if c.worker.queues.is_empty() {
            "all of its tasks'".to_string()
        } else {
            c.worker.queues.join(",")
        },
        c.worker.concurrency,
        enabled
    )
}

/// Check every service at once, each within `timeout`; rows in a fixed order.
pub async fn run_checks(config: &AppConfig, timeout: Duration) -> Vec<Check> {
    let influx = influx_sources(config);
    let (broker, redis, db, lark, influx) = tokio::join!(
        timed(
            "broker",
            config.broker.url.redacted(),
            timeout,
            check_broker(config)
        ),
        timed(
            "redis",
            config.redis.url.redacted(),
            timeout,
            check_redis(config)
        ),
        timed(
            "database",
            format!(
                "{}@{}:{}/{}",
                config.mysql.user, config.mysql.host, config.mysql.port, config.mysql.database
            ),
            timeout,
            check_database(config)
        ),
        check_lark(config, timeout),
        futures_util::future::join_all(influx.into_iter().map(|(name, url)| {
            let address = url.clone();
            timed(
                format!("influx.{name}"),
                address,
                timeout,
                check_influx(url, timeout),
            )
        })),
    );
    let mut out = vec![broker, redis, db];
    if influx.is_empty() {
        out.push(Check {
            service: "influx".into(),
            status: Status::Skip,
            address: String::new(),
            detail: "no [influx.sources] configured".into(),
            ms: 0,
        });
    } else {
        out.extend(influx);
    }
    out.push(lark);
    out
}

async fn timed(
    service: impl Into<String>,
    address: String,
    timeout: Duration,
    f: impl Future<Output = Result<impl Into<Answer>, String>>,
) -> Check {
    let started = Instant::now();
    let (status, detail) = match tokio::time::timeout(timeout, f).await {
        Ok(Ok(a)) => {
            let a: Answer = a.into();
            (a.status, a.detail)
        }
        Ok(Err(e)) => (Status::Fail, e),
        Err(_) => (Status::Fail, format!("no answer within {timeout:?}")),
    };
    Check {
        service: service.into(),
        status,
        address,
        detail: one_line(&detail),
        ms: started.elapsed().as_millis() as u64,
    }
}

/// A service that answered: OK, or WARN with what is wrong.
struct Answer {
    status: Status,
    detail: String,
}

impl From<String> for Answer {
    fn from(detail: String) -> Answer {
        Answer {
            status: Status::Ok,
            detail,
        }
    }
}

/// `PING`, then, on the same connection, whether the server keeps what
/// alertflow stores in it: a Redis that evicts keys or keeps nothing across
/// a restart is a warning (docs/operations.md, "What lives in Redis"). A
/// server that hides `CONFIG` (some managed services) is not judged.
async fn check_redis(config: &AppConfig) -> Result<Answer, String> {
    let pool = crate::queue::context::redis_pool(config).map_err(|e| e.to_string())?;
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let pong: String = deadpool_redis::redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let tls = if crate::queue::tls::redis_uses_tls(config) {
        ", TLS"
    } else {
        ""
    };
    let detail = format!("PING -> {pong}{tls}");
    let mut settings = std::collections::BTreeMap::new();
    for key in ["maxmemory", "maxmemory-policy", "appendonly", "save"] {
        let got: Result<Vec<String>, _> = deadpool_redis::redis::cmd("CONFIG")
            .arg("GET")
            .arg(key)
            .query_async(&mut conn)
            .await;
        match got {
            Ok(pair) if pair.len() == 2 => {
                settings.insert(key, pair[1].clone());
            }
            _ => {
                return Ok(Answer::from(format!(
                    "{detail}; persistence not checked (CONFIG GET refused)"
                )));
            }
        }
    }
    let warnings = redis_durability_warnings(&settings);
    Ok(if warnings.is_empty() {
        Answer::from(detail)
    } else {
        Answer {
            status: Status::Warn,
            detail: format!("{detail}; {}", warnings.join("; ")),
        }
    })
}

/// What is wrong with Redis settings for alertflow (empty: nothing).
fn redis_durability_warnings(s: &std::collections::BTreeMap<&str, String>) -> Vec<String> {
    let get = |k: &str| s.get(k).map(String::as_str).unwrap_or("");
    let mut out = Vec::new();
    let limited = get("maxmemory").parse::<u64>().is_ok_and(|m| m > 0);
    if limited && get("maxmemory-policy") != "noeviction" {
        out.push(format!(
            "evicts keys at maxmemory (maxmemory-policy {}): set noeviction",
            get("maxmemory-policy")
        ));
    }
    if get("appendonly") != "yes" {
        if get("save").trim().is_empty() {
            out.push(
                "no persistence (appendonly no, no save points): a restart loses every key; \
                 set appendonly yes, appendfsync everysec"
                    .to_string(),
            );
        } else {
            out.push(format!(
                "snapshots only (save {}): a restart loses what was written since the last one; \
                 set appendonly yes, appendfsync everysec",
                get("save")
            ));
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn check_broker(config: &AppConfig) -> Result<String, String> {
    let conn = crate::queue::publisher::connect(config, "check")
        .await
        .map_err(|e| e.to_string())?;
    let heartbeat = conn.configuration().heartbeat();
    let _ = conn.close(200, "check-config".into()).await;
    let tls = if crate::queue::tls::amqp_uses_tls(config) {
        ", TLS"
    } else {
        ""
    };
    Ok(format!("connected{tls} (heartbeat {heartbeat} s)"))
}

async fn check_database(config: &AppConfig) -> Result<String, String> {
    let m = &config.mysql;
    let opts = crate::sink::starrocks::server_opts(config);
    let mut conn = tokio::time::timeout(m.connect_timeout.0, mysql_async::Conn::new(opts))
        .await
        .map_err(|_| {
            format!(
                "no answer within {:?} (mysql.connect_timeout)",
                m.connect_timeout.0
            )
        })?
        .map_err(|e| e.to_string())?;
    let one: Option<u8> = conn
        .query_first("SELECT 1")
        .await
        .map_err(|e| e.to_string())?;
    if one != Some(1) {
        return Err(format!("SELECT 1 returned {one:?}"));
    }
    let (major, minor, patch) = conn.server_version();
    let exists: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (m.database.clone(),),
        )
        .await
        .unwrap_or(None);
    // The tables this build writes; a database from before the run ledger
    // lacks its tables, and every insert would then be refused.
    let present: Vec<String> = if exists.is_some() {
        conn.exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (m.database.clone(),),
        )
        .await
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    let _ = conn.disconnect().await;
    let tls = if m.tls { ", TLS" } else { "" };
    let missing: Vec<&str> = crate::sink::schema::TABLES
        .iter()
        .map(|t| t.name)
        .filter(|t| !present.iter().any(|p| p == t))
        .collect();
    let db = if exists.is_none() {
        format!("database {} missing: run `alertflow migrate`", m.database)
    } else if missing.is_empty() {
        format!("database {} has every table", m.database)
    } else {
        return Err(format!(
            "database {} lacks table(s) {}: run `alertflow migrate` (it only creates what is missing) before starting workers of this version",
            m.database,
            missing.join(", ")
        ));
    };
    Ok(format!(
        "SELECT 1 ok (server {major}.{minor}.{patch}{tls}); {db}"
    ))
}

/// The configured InfluxDB sources: (name, base URL).
pub fn influx_sources(config: &AppConfig) -> Vec<(String, String)> {
    config
        .influx
        .sources
        .iter()
        .map(|(name, src)| (name.clone(), src.url.trim_end_matches('/').to_string()))
        .collect()
}

async fn check_influx(url: String, timeout: Duration) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let resp = http
        .get(format!("{url}/ping"))
        .send()
        .await
        .map_err(|e| without_url(&e))?;
    let status = resp.status();
    let version = resp
        .headers()
        .get("x-influxdb-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if status.is_success() {
        Ok(if version.is_empty() {
            format!("/ping -> {status}")
        } else {
            format!("/ping -> {status}, InfluxDB {version}")
        })
    } else {
        Err(format!("/ping -> {status}"))
    }
}

/// A reqwest error without its URL (which may carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "(url)");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Fetch a tenant access token (proves the app id, the secret and the way
/// to the endpoint); skipped without `lark.app_id`.
async fn check_lark(config: &AppConfig, timeout: Duration) -> Check {
    let base = config
        .lark
        .base_url
        .trim()
        .trim_end_matches('/')
        .to_string();
    let address = format!("{base}{}", crate::lark::client::TOKEN_PATH);
    if config.lark.app_id.trim().is_empty() {
        return Check {
            service: "lark".into(),
            status: Status::Skip,
            address,
            detail: "lark.app_id not set".into(),
            ms: 0,
        };
    }
    let c = config.clone();
    timed("lark", address.clone(), timeout, async move {
        if c.lark.app_secret.is_empty() {
            return Err("lark.app_secret is empty (set LARK_APP_SECRET)".to_string());
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let resp = http
            .post(&address)
            .json(&serde_json::json!({
                "app_id": c.lark.app_id.trim(),
                "app_secret": c.lark.app_secret.expose(),
            }))
            .send()
            .await
            .map_err(|e| without_url(&e))?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("HTTP {status}, not JSON: {}", without_url(&e)))?;
        let code = body.get("code").and_then(|v| v.as_i64()).unwrap_or(-1);
        let token = body
            .get("tenant_access_token")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if status.is_success() && code == 0 && !token.is_empty() {
            let expire = body.get("expire").and_then(|v| v.as_u64()).unwrap_or(0);
            Ok(format!(
                "tenant token for {} obtained (expires in {expire} s)",
                c.lark.app_id.trim()
            ))
        } else {
            let msg = body.get("msg").and_then(|v| v.as_str()).unwrap_or("");
            Err(format!("HTTP {status}, code {code}: {msg}"))
        }
    })
    .await
}

#[cfg(test)]
mod tests {

    #[test]
    fn redis_that_evicts_or_forgets_is_a_warning() {
        let settings = |pairs: &[(&'static str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (*k, v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let good = settings(&[
            ("maxmemory", "0"),
            ("maxmemory-policy", "allkeys-lru"),
            ("appendonly", "yes"),
            ("save", ""),
        ]);
        assert!(
            redis_durability_warnings(&good).is_empty(),
            "no limit: nothing is evicted"
        );
        let w = redis_durability_warnings(&settings(&[
            ("maxmemory", "1073741824"),
            ("maxmemory-policy", "allkeys-lru"),
            ("appendonly", "no"),
            ("save", ""),
        ]));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("allkeys-lru") && w[0].contains("noeviction"),
            "{w:?}"
        );
        assert!(w[1].contains("no persistence"), "{w:?}");
        let w = redis_durability_warnings(&settings(&[
            ("maxmemory", "1073741824"),
            ("maxmemory-policy", "noeviction"),
            ("appendonly", "no"),
            ("save", "3600 1 300 100"),
        ]));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("snapshots only (save 3600 1 300 100)"),
            "{w:?}"
        );
    }

    use super::*;

    #[test]
    fn influx_sources_come_from_the_typed_config() {
        let c = AppConfig::from_toml(
            "[influx.sources.main]\nurl = \"http://influx:8086/\"\ndb = \"telegraf\"\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(
            influx_sources(&c),
            vec![("main".to_string(), "http://influx:8086".to_string())]
        );
        assert!(influx_sources(&AppConfig::default()).is_empty());
    }
}
