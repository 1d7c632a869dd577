//! `alertflow checks list|run`: the configured InfluxDB checks, and one
//! evaluation of a check in this process (sending, or `--dry-run`).

use serde::Serialize;

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, connect_redis, print_table};
use crate::notify::alarm::FiringState;
use crate::notify::check::format_number;
use crate::queue::ratelimit::RateLimiter;
use crate::tasks::influx_check::CheckRunner;

#[derive(clap::Subcommand, Debug)]
pub enum ChecksCommand {
    /// The `[[checks]]` of the config: source, threshold, labels, receiver.
    #[command(after_help = "Examples:\n  alertflow checks list\n  alertflow checks list --json")]
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate one check now, in this process: query, threshold, dedup, and
    /// send its grouped message (as the `influx-check` task does).
    #[command(
        after_help = "Examples:\n  alertflow checks run cpu-high --dry-run     print the alarms and what dedup would do; send nothing\n  alertflow checks run cpu-high               evaluate and send (deduplicated like the task)\n  alertflow enqueue influx-check --args '{\"check\":\"cpu-high\"}'   the same through a worker\n\nExit codes: 0 evaluated (firing or not), 1 query/send failed (retryable), 2 bad config or fatal error."
    )]
    Run {
        /// The check's `name`.
        name: String,
        /// Evaluate and print the alarms; send nothing and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct ListRow<'a> {
    name: &'a str,
    source: &'a str,
    value: &'a str,
    threshold: String,
    labels: &'a [String],
    severity: &'a str,
    receiver: &'a str,
    repeat_interval_secs: u64,
    send_resolved: bool,
}

fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

pub async fn run(g: &GlobalOpts, cmd: ChecksCommand) -> CliResult {
    let config = g.load_config()?;
    match cmd {
        ChecksCommand::List { json } => {
            let rows: Vec<ListRow> = config
                .checks
                .iter()
                .map(|c| ListRow {
                    name: &c.name,
                    source: &c.source,
                    value: &c.value,
                    threshold: c.threshold.to_string(),
                    labels: &c.labels,
                    severity: c.severity.as_str(),
                    receiver: &c.receiver,
                    repeat_interval_secs: c.repeat_interval.0.as_secs(),
                    send_resolved: c.send_resolved,
                })
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                );
            } else if rows.is_empty() {
                println!("no checks configured (add [[checks]] to {})", config.source);
            } else {
                let table: Vec<Vec<String>> = config
                    .checks
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.source.clone(),
                            format!("{} {}", c.value, c.threshold),
                            c.labels.join(","),
                            c.severity.as_str().to_string(),
                            c.receiver.clone(),
                            human(c.repeat_interval.0),
                            if c.send_resolved { "yes" } else { "no" }.to_string(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "NAME",
                        "SOURCE",
                        "CONDITION",
                        "LABELS",
                        "SEVERITY",
                        "RECEIVER",
                        "REPEAT",
                        "RESOLVED",
                    ],
                    &table,
                );
            }
            Ok(EXIT_OK)
        }
        ChecksCommand::Run {
            name,
            dry_run,
            json,
        } => {
            let pool = connect_redis(&config).await?;
            let limiter = RateLimiter::new(
                pool.clone(),
                &config.namespace,
                config.rate_limits.clone(),
                config.redis.fail_open,
            );
            let runner =
                CheckRunner::new(config.clone(), pool, Some(limiter)).map_err(CliError::usage)?;
            let report = runner.run(&name, dry_run).await.map_err(|e| match e {
                crate::queue::task::TaskError::Fatal(m) => CliError::usage(m),
                other => CliError::failure(other),
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
                return Ok(EXIT_OK);
            }
            println!(
                "check {}: {} rows{}, {} firing",
                report.check,
                report.rows,
                if report.skipped > 0 {
                    format!(" ({} without a numeric value)", report.skipped)
                } else {
                    String::new()
                },
                report.firing.len()
            );
            let dry = report.dry_run.as_ref();
            let rows: Vec<Vec<String>> = report
                .firing
                .iter()
                .map(|a| {
                    let key = a.key();
                    let what = match dry.and_then(|d| d.firing.get(&key)) {
                        Some(_) if report.flapping.contains(&key) => {
                            "held back: flapping".to_string()
                        }
                        Some(FiringState::Due) => "would send".to_string(),
                        Some(FiringState::Sent { remaining }) => {
                            format!("deduplicated (repeat in {})", human(*remaining))
                        }
                        Some(FiringState::Claimed) => "being sent by a worker".to_string(),
                        None if report.sent_firing.contains(&key) => "sent".to_string(),
                        None if report.pending.contains(&key) => "pending (for)".to_string(),
                        None if report
                            .announced
                            .iter()
                            .any(|a| a.ends_with(&format!(" {key}"))) =>
                        {
                            "in the flapping announcement".to_string()
                        }
                        None if report.flapping.contains(&key) => "held back: flapping".to_string(),
                        None if report.silenced.contains(&key) => "silenced".to_string(),
                        None => "deduplicated".to_string(),
                    };
                    vec![
                        a.labels_text(),
                        format_number(a.value),
                        what,
                        a.summary.clone(),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                print_table(&["LABELS", "VALUE", "NOTIFICATION", "SUMMARY"], &rows);
            }
            let resolved: Vec<&String> = match dry {
                Some(d) => d.would_resolve.iter().collect(),
                None => report.sent_resolved.iter().chain(&report.cleared).collect(),
            };
            for r in resolved {
                let verb = if dry.is_some() {
                    "would resolve"
                } else {
                    "resolved"
                };
                println!("{verb}: {r}");
            }
            for a in &report.announced {
                println!("announced: {a}");
            }
            match (&report.message, dry_run) {
                (_, true) => println!("dry run: nothing sent, nothing recorded"),
                (Some(title), false) => {
                    println!(
                        "sent to receiver {}: {title}",
                        runner
                            .check(&name)
                            .map(|c| c.receiver.as_str())
                            .unwrap_or("?")
                    )
                }
                (None, false) => println!("nothing to send"),
            }
            Ok(EXIT_OK)
        }
    }
}
