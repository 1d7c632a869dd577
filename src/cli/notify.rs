//! `alertflow notify test RECEIVER` and `alertflow health [TASK]`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::{
    CliError, CliResult, EXIT_OK, GlobalOpts, connect_broker, connect_redis, print_table,
};
use crate::config::AppConfig;
use crate::notify::health::{HealthStore, Record, Status};
use crate::notify::{Colour, Notification, Receiver, Section};
use crate::queue::connect::close;
use crate::queue::ratelimit::RateLimiter;
use crate::queue::topology::Topology;

/// Nagios plugin exit codes.
pub const NAGIOS_OK: u8 = 0;
pub const NAGIOS_CRITICAL: u8 = 2;
pub const NAGIOS_UNKNOWN: u8 = 3;

#[derive(clap::Subcommand, Debug)]
pub enum NotifyCommand {
    /// Send a test message to a `[receivers.NAME]` (rate limited like the worker).
    #[command(
        after_help = "Examples:\n  alertflow notify test ops-lark\n  alertflow notify test ops-slack --json\n\nExit codes: 0 delivered, 1 not delivered (transient), 2 unknown receiver or rejected (fix the config)."
    )]
    Test {
        /// A `[receivers.NAME]` of the config.
        receiver: String,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the configured receivers (type, host, rate-limit key; never the URL).
    #[command(
        after_help = "Examples:\n  alertflow notify receivers\n  alertflow notify receivers --json"
    )]
    Receivers {
        /// Print a JSON array of receivers (never their URLs).
        #[arg(long)]
        json: bool,
    },
}

/// `alertflow health [TASK]`.
#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    /// Only this task's status (default: every task's, and the dead-letter count).
    pub task: Option<String>,
    /// One JSON object: result, exit_code, summary, dead_letters, tasks.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ReceiverRow<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    host: String,
    signed: bool,
    rate_limit: &'a str,
}

pub async fn run(g: &GlobalOpts, cmd: NotifyCommand) -> CliResult {
    let config = g.load_config()?;
    match cmd {
        NotifyCommand::Receivers { json } => {
            let rows: Vec<ReceiverRow> = config
                .receivers
                .iter()
                .map(|(name, r)| ReceiverRow {
                    name,
                    kind: r.kind.as_str(),
                    host: crate::notify::url_host(r.url.expose()),
                    signed: r.secret.is_some(),
                    rate_limit: r.rate_key(),
                })
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                );
            } else if rows.is_empty() {
                println!(
                    "no receivers configured (add [receivers.NAME] to {})",
                    config.source
                );
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.to_string(),
                            r.kind.to_string(),
                            r.host.clone(),
                            if r.signed { "yes" } else { "no" }.to_string(),
                            r.rate_limit.to_string(),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "TYPE", "HOST", "SIGNED", "RATE LIMIT"], &table);
            }
            Ok(EXIT_OK)
        }
        NotifyCommand::Test { receiver, json } => {
            let rc = config.receivers.get(&receiver).ok_or_else(|| {
                let known: Vec<&str> = config.receivers.keys().map(String::as_str).collect();
                CliError::usage(format!(
                    "no receiver named {receiver:?} (receivers: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ))
            })?;
            let pool = connect_redis(&config).await?;
            let limiter = RateLimiter::new(
                pool,
                &config.namespace,
                config.rate_limits.clone(),
                config.redis.fail_open,
            );
            let r = Receiver::new(&receiver, rc, Some(limiter)).map_err(CliError::usage)?;
            let host = gethostname::gethostname().to_string_lossy().into_owned();
            let now = Utc::now();
            let n = Notification {
                title: format!("alertflow test message ({receiver})"),
                colour: Colour::Blue,
                text: format!(
                    "alertflow test message to receiver {receiver} from {host} at {}",
                    now.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                sections: vec![Section {
                    heading: "This is a test".into(),
                    text: "If you can read this, alertflow can reach this receiver.".into(),
                    fields: vec![
                        ("Receiver".into(), receiver.clone()),
                        ("Host".into(), host.clone()),
                        (
                            "Time".into(),
                            now.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                        ),
                    ],
                }],
                note: Some(format!(
                    "alertflow notify test · namespace {}",
                    config.namespace
                )),
            };
            let started = std::time::Instant::now();
            let (result, attempts) = r.deliver(&n).await;
            let ms = started.elapsed().as_millis();
            let sink = crate::sink::starrocks::SqlSink::new(&config);
            let record = crate::sink::notifications::NotificationRecord {
                id: uuid::Uuid::now_v7().to_string(),
                at: crate::sink::ledger::now(),
                source: "test".into(),
                subject: "notify test".into(),
                event: "test".into(),
                labels: serde_json::json!({}),
                receiver: receiver.clone(),
                outcome: result
                    .as_ref()
                    .err()
                    .map_or("sent", crate::notify::NotifyError::outcome)
                    .into(),
                attempts,
                error: result
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                title: n.title.clone(),
            };
            crate::notify::record_notifications(&sink, std::slice::from_ref(&record)).await;
            sink.close().await;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "receiver": receiver,
                        "type": rc.kind.as_str(),
                        "host": r.host(),
                        "delivered": result.is_ok(),
                        "error": result.as_ref().err().map(|e| e.to_string()),
                        "elapsed_ms": ms,
                    })
                );
            }
            match result {
                Ok(()) => {
                    if !json {
                        println!(
                            "delivered a test message to {receiver} ({} at {}) in {ms} ms",
                            rc.kind.as_str(),
                            r.host()
                        );
                    }
                    Ok(EXIT_OK)
                }
                Err(e) if e.is_retryable() => Err(CliError::failure(e)),
                Err(e) => Err(CliError::usage(e)),
            }
        }
    }
}

/// One task's line of `alertflow health --json`.
#[derive(Serialize)]
struct HealthRow {
    task: String,
    /// `null` when the stored status cannot be read.
    status: Option<Status>,
    at: Option<DateTime<Utc>>,
    age_secs: Option<i64>,
    queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
}

impl HealthRow {
    fn new(task: String, record: Option<Record>, now: DateTime<Utc>) -> HealthRow {
        match record {
            Some(r) => HealthRow {
                task,
                status: Some(r.status),
                at: Some(r.at),
                age_secs: Some((now - r.at).num_seconds()),
                queue: Some(r.queue),
                error: r.error,
                attempts: r.attempts,
            },
            None => HealthRow {
                task,
                status: None,
                at: None,
                age_secs: None,
                queue: None,
                error: None,
                attempts: None,
            },
        }
    }
}

/// `alertflow health --json`.
#[derive(Serialize)]
struct HealthReport {
    /// `OK`, `CRITICAL` or `UNKNOWN`, as the exit code says.
    result: &'static str,
    exit_code: u8,
    /// The text of the first line after `HEALTH <result> - `.
    summary: String,
    dead_letter_queue: String,
    /// Messages in the dead-letter queue; `null` when not counted (a single
    /// task was asked for, or the broker could not be asked: see `summary`).
    dead_letters: Option<u64>,
    tasks: Vec<HealthRow>,
    /// Watchdogs firing as of their last evaluation (not with TASK).
    watchdogs: Vec<crate::watchdog::FiringWatchdog>,
}

/// The firing watchdogs (what their last evaluation sent).
async fn read_watchdogs(
    config: &AppConfig,
) -> Result<Vec<crate::watchdog::FiringWatchdog>, String> {
    if config.watchdogs.is_empty() {
        return Ok(Vec::new());
    }
    let pool = connect_redis(config)
        .await
        .map_err(|e| e.message.lines().next().unwrap_or("").to_string())?;
    crate::watchdog::firing(config, &pool).await
}

fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Every recorded status, or why they cannot be read.
async fn read_statuses(config: &AppConfig) -> Result<BTreeMap<String, Option<Record>>, String> {
    let pool = connect_redis(config)
        .await
        .map_err(|e| e.message.lines().next().unwrap_or("").to_string())?;
    HealthStore::new(pool, &config.namespace)
        .all()
        .await
        .map_err(|e| format!("cannot read statuses from Redis: {e}"))
}

/// The number of messages in the dead-letter queue (a passive declare);
/// `None` when the queue does not exist (no process has declared the
/// namespace's topology yet, so nothing was dead-lettered). Messages that an
/// `alertflow dead list` holds at this moment are not counted.
async fn count_dead_letters(config: &AppConfig, queue: &str) -> Result<Option<u64>, String> {
    let conn = connect_broker(config, "cli")
        .await
        .map_err(|e| e.message.lines().next().unwrap_or("").to_string())?;
    let count = async {
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel to RabbitMQ: {e}"))?;
        match crate::queue::topology::queue_counts(&ch, queue).await {
            Ok(Some(c)) => {
                let _ = ch.close(200, "done".into()).await;
                Ok(Some(c.ready))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(format!("cannot count the messages of {queue}: {e}")),
        }
    };
    // The connection is bounded by broker.connect_timeout; the declare too.
    let timeout = config.broker.connect_timeout.0;
    let result = tokio::time::timeout(timeout, count)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "RabbitMQ did not answer a declare of {queue} within {timeout:?}"
            ))
        });
    close(conn).await;
    result
}

/// Print the statuses and the dead-letter count (Nagios plugin semantics):
/// exit 2 when a task is ERROR or the dead-letter queue holds messages, else
/// 3 when something is unknown (Redis or RabbitMQ unreachable, a status
/// unreadable, no status for the task asked for), else 0. With a TASK, only
/// that task's status counts: dead letters are the whole pipeline's.
pub async fn health(g: &GlobalOpts, a: HealthArgs) -> CliResult {
    let config = g.load_config()?;
    let dead_queue = Topology::from_config(&config).dead_queue();
    let count_dead = a.task.is_none();
    let (statuses, dead, watchdogs) = tokio::join!(
        read_statuses(&config),
        async {
            if count_dead {
                Some(count_dead_letters(&config, &dead_queue).await)
            } else {
                None
            }
        },
        async {
            if count_dead {
                read_watchdogs(&config).await
            } else {
                Ok(Vec::new())
            }
        }
    );
    let now = Utc::now();
    let mut critical: Vec<String> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let dead_letters = match &dead {
        Some(Ok(n)) => Some(n.unwrap_or(0)),
        Some(Err(e)) => {
            unknown.push(format!("dead letters not counted: {e}"));
            None
        }
        None => None,
    };
    if let Some(n) = dead_letters.filter(|n| *n > 0) {
        critical.push(format!(
            "{} in {dead_queue} (see them: alertflow dead list)",
            plural(n as usize, "dead letter", "dead letters")
        ));
    }
    let watchdogs = match watchdogs {
        Ok(w) => w,
        Err(e) => {
            unknown.push(e);
            Vec::new()
        }
    };
    for w in &watchdogs {
        critical.push(format!("watchdog {}: {}", w.watchdog, w.summary));
    }
    let rows: Vec<HealthRow> = match statuses {
        Ok(all) => all
            .into_iter()
            .filter(|(t, _)| a.task.as_ref().is_none_or(|want| want == t))
            .map(|(task, record)| HealthRow::new(task, record, now))
            .collect(),
        Err(e) => {
            unknown.push(e);
            Vec::new()
        }
    };
    let errors: Vec<&str> = rows
        .iter()
        .filter(|r| r.status == Some(Status::Error))
        .map(|r| r.task.as_str())
        .collect();
    if !errors.is_empty() {
        critical.push(format!(
            "{} of {} ERROR: {}",
            errors.len(),
            plural(rows.len(), "task", "tasks"),
            errors.join(", ")
        ));
    }
    let unreadable = rows.iter().filter(|r| r.status.is_none()).count();
    if unreadable > 0 {
        unknown.push(plural(
            unreadable,
            "unreadable status",
            "unreadable statuses",
        ));
    }
    if let Some(t) = &a.task
        && rows.is_empty()
        && unknown.is_empty()
    {
        unknown.push(format!("no status recorded for task {t:?}"));
    }
    let (code, result) = if !critical.is_empty() {
        (NAGIOS_CRITICAL, "CRITICAL")
    } else if !unknown.is_empty() {
        (NAGIOS_UNKNOWN, "UNKNOWN")
    } else {
        (NAGIOS_OK, "OK")
    };
    let summary = if code == NAGIOS_OK {
        let tasks = match &a.task {
            Some(t) => format!("task {t} OK"),
            None if rows.is_empty() => "no task statuses recorded yet".to_string(),
            None => format!("{} OK", plural(rows.len(), "task", "tasks")),
        };
        match dead {
            Some(Ok(Some(_))) => format!("{tasks}; no dead letters in {dead_queue}"),
            Some(Ok(None)) => format!("{tasks}; no dead letters ({dead_queue} not declared yet)"),
            _ => tasks,
        }
    } else {
        critical
            .iter()
            .chain(&unknown)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    };
    if a.json {
        let report = HealthReport {
            result,
            exit_code: code,
            summary,
            dead_letter_queue: dead_queue,
            dead_letters,
            tasks: rows,
            watchdogs,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return Ok(code);
    }
    println!("HEALTH {result} - {summary}");
    if !rows.is_empty() {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| match (r.status, r.at) {
                (Some(status), Some(at)) => vec![
                    r.task.clone(),
                    status.as_str().to_string(),
                    at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    r.age_secs.map(age).unwrap_or_default(),
                    r.queue.clone().unwrap_or_default(),
                    r.error
                        .as_deref()
                        .map(|e| crate::notify::truncate(e.lines().next().unwrap_or(""), 120))
                        .unwrap_or_default(),
                ],
                _ => vec![
                    r.task.clone(),
                    "?".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    "unreadable status".into(),
                ],
            })
            .collect();
        print_table(&["TASK", "STATUS", "LAST", "AGE", "QUEUE", "ERROR"], &table);
    }
    Ok(code)
}
