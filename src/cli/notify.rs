//! `alertflow notify test RECEIVER` and `alertflow health [TASK]`.

use chrono::Utc;
use serde::Serialize;

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, connect_redis, print_table};
use crate::notify::health::{HealthStore, Record, Status};
use crate::notify::{Colour, Notification, Receiver, Section};
use crate::queue::ratelimit::RateLimiter;

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
        receiver: String,
        #[arg(long)]
        json: bool,
    },
    /// List the configured receivers (type, host, rate-limit key; never the URL).
    #[command(
        after_help = "Examples:\n  alertflow notify receivers\n  alertflow notify receivers --json"
    )]
    Receivers {
        #[arg(long)]
        json: bool,
    },
}

/// `alertflow health [TASK]`.
#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    /// Only this task (default: every task that has a status).
    pub task: Option<String>,
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
            let result = r.send(&n).await;
            let ms = started.elapsed().as_millis();
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

#[derive(Serialize)]
struct HealthRow {
    task: String,
    #[serde(skip)]
    status: Option<Status>,
    #[serde(flatten)]
    record: Option<Record>,
    age_secs: Option<i64>,
}

fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Print the statuses; exit 0 when all are OK, 2 when one is ERROR, 3 when
/// the status is unknown (no such task, or Redis unreachable).
pub async fn health(g: &GlobalOpts, a: HealthArgs) -> CliResult {
    let config = g.load_config()?;
    let pool = match connect_redis(&config).await {
        Ok(p) => p,
        Err(e) => {
            println!(
                "HEALTH UNKNOWN - {}",
                e.message.lines().next().unwrap_or("")
            );
            return Ok(NAGIOS_UNKNOWN);
        }
    };
    let store = HealthStore::new(pool, &config.namespace);
    let all = match store.all().await {
        Ok(a) => a,
        Err(e) => {
            println!("HEALTH UNKNOWN - cannot read statuses from Redis: {e}");
            return Ok(NAGIOS_UNKNOWN);
        }
    };
    let now = Utc::now();
    let mut rows: Vec<HealthRow> = all
        .into_iter()
        .filter(|(t, _)| a.task.as_ref().is_none_or(|want| want == t))
        .map(|(task, record)| HealthRow {
            status: record.as_ref().map(|r| r.status),
            age_secs: record.as_ref().map(|r| (now - r.at).num_seconds()),
            record,
            task,
        })
        .collect();
    rows.sort_by(|x, y| x.task.cmp(&y.task));
    if let Some(t) = &a.task
        && rows.is_empty()
    {
        if a.json {
            println!("[]");
        } else {
            println!("HEALTH UNKNOWN - no status recorded for task {t:?}");
        }
        return Ok(NAGIOS_UNKNOWN);
    }
    let errors: Vec<&str> = rows
        .iter()
        .filter(|r| r.status == Some(Status::Error))
        .map(|r| r.task.as_str())
        .collect();
    let unknown = rows.iter().filter(|r| r.status.is_none()).count();
    let code = if !errors.is_empty() {
        NAGIOS_CRITICAL
    } else if unknown > 0 {
        NAGIOS_UNKNOWN
    } else {
        NAGIOS_OK
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(code);
    }
    match code {
        NAGIOS_CRITICAL => println!(
            "HEALTH CRITICAL - {} of {} tasks ERROR: {}",
            errors.len(),
            rows.len(),
            errors.join(", ")
        ),
        NAGIOS_UNKNOWN => println!("HEALTH UNKNOWN - {unknown} unreadable statuses"),
        _ if rows.is_empty() => println!("HEALTH OK - no task statuses recorded yet"),
        _ => println!("HEALTH OK - {} tasks OK", rows.len()),
    }
    if !rows.is_empty() {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| match &r.record {
                Some(rec) => vec![
                    r.task.clone(),
                    rec.status.as_str().to_string(),
                    rec.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    r.age_secs.map(age).unwrap_or_default(),
                    rec.queue.clone(),
                    rec.error
                        .as_deref()
                        .map(|e| crate::notify::truncate(e.lines().next().unwrap_or(""), 120))
                        .unwrap_or_default(),
                ],
                None => vec![
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
