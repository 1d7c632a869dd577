//! `alertflow silence add|list|expire` (see [`crate::notify::silence`]).

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, print_table};
use crate::notify::silence::{Request, Silence, Span};
use crate::sink::starrocks::SqlSink;

#[derive(clap::Subcommand, Debug)]
pub enum SilenceCommand {
    /// Silence a check's alarms (or, without --check, pipeline health
    /// notifications matched on task, queue, status): they are evaluated and
    /// recorded in the notification ledger as `silenced`, not sent. When
    /// the silence ends while an alarm still fires, it is sent at the next
    /// evaluation.
    #[command(
        after_help = "Examples:\n  alertflow silence add --check be-cpu --match cluster=prod-a --for 2h --comment \"upgrade\"\n  alertflow silence add --check be-cpu --match 'host=~be[0-9]+' --until-resolved --comment \"known\"\n  alertflow silence add --match task=fetch-day --until 2026-03-10T08:00:00Z --comment \"Lark outage\""
    )]
    Add {
        /// The check; omit it to silence pipeline health notifications.
        #[arg(long)]
        check: Option<String>,
        /// Label matchers, all of which must hold: `k=v`, `k!=v`, `k=~regex`.
        #[arg(long = "match", value_name = "MATCHER")]
        matchers: Vec<String>,
        /// For how long from now, e.g. `2h`.
        #[arg(long = "for", value_name = "DURATION", conflicts_with_all = ["until", "until_resolved"])]
        for_: Option<String>,
        /// Until this time (RFC 3339, or `YYYY-MM-DD HH:MM` in UTC).
        #[arg(long, value_name = "TIME", conflicts_with = "until_resolved")]
        until: Option<String>,
        /// Until nothing it matches fires any more (checks only).
        #[arg(long)]
        until_resolved: bool,
        /// Why (required: the next person reads it).
        #[arg(long)]
        comment: String,
        /// Who (default: $USER).
        #[arg(long)]
        author: Option<String>,
    },
    /// Silences in force, pending, and ended within the last day (--all:
    /// every one kept).
    #[command(
        after_help = "Examples:\n  alertflow silence list\n  alertflow silence list --all --json"
    )]
    List {
        /// Every silence, however old.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    #[command(
        after_help = "Example:\n  alertflow silence expire 0b9c6f1e-8a3e-4a55-9d1f-2f1f0b2d3c4e"
    )]
    Expire {
        /// The silence's id (from `silence list`).
        id: String,
    },
}

pub async fn run(g: &GlobalOpts, cmd: SilenceCommand) -> CliResult {
    let config = g.load_config()?;
    let sink = SqlSink::new(&config);
    let result = act(&config, &sink, cmd).await;
    sink.close().await;
    result
}

fn db_error(e: impl std::fmt::Display) -> CliError {
    CliError::failure(format!(
        "silences: {e} (`alertflow migrate` creates the table)"
    ))
}

async fn act(config: &crate::config::AppConfig, sink: &SqlSink, cmd: SilenceCommand) -> CliResult {
    let now = crate::sink::ledger::now();
    match cmd {
        SilenceCommand::Add {
            check,
            matchers,
            for_,
            until,
            until_resolved,
            comment,
            author,
        } => {
            let span = match (for_, until, until_resolved) {
                (Some(d), _, _) => Some(Span::For(d)),
                (None, Some(t), _) => Some(Span::Until(t)),
                (None, None, true) => Some(Span::UntilResolved),
                (None, None, false) => None,
            };
            let s = Request {
                check,
                matchers,
                span,
                comment,
                author: author
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "cli".into()),
            }
            .build(config, now)
            .map_err(CliError::usage)?;
            sink.record_silence(&s).await.map_err(db_error)?;
            println!("{}", s.id);
            Ok(EXIT_OK)
        }
        SilenceCommand::List { all, json } => {
            let since = if all {
                crate::sink::ledger::epoch()
            } else {
                now - chrono::Duration::days(1)
            };
            let list: Vec<Silence> = sink
                .silences(since, None)
                .await
                .map_err(db_error)?
                .into_iter()
                .filter(|s| all || s.expired_at.is_none_or(|t| t >= since))
                .collect();
            if json {
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|s| {
                        let mut v = serde_json::to_value(s).expect("serializes");
                        v["state"] = serde_json::json!(s.state(now));
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
                return Ok(EXIT_OK);
            }
            if list.is_empty() {
                println!("no silences");
                return Ok(EXIT_OK);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.state(now).to_string(),
                        s.check.clone().unwrap_or_else(|| "(health)".into()),
                        s.matchers
                            .iter()
                            .map(|m| m.to_string())
                            .collect::<Vec<_>>()
                            .join(" "),
                        if s.until_resolved {
                            "until resolved".into()
                        } else {
                            s.ends_at.format("%Y-%m-%d %H:%M").to_string()
                        },
                        s.author.clone(),
                        crate::notify::truncate(&s.comment, 40),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "STATE",
                    "CHECK",
                    "MATCHERS",
                    "ENDS (UTC)",
                    "AUTHOR",
                    "COMMENT",
                ],
                &rows,
            );
            Ok(EXIT_OK)
        }
        SilenceCommand::Expire { id } => {
            let who = std::env::var("USER").unwrap_or_else(|_| "cli".into());
            match sink.expire_silence(&id, &who).await.map_err(db_error)? {
                None => Err(CliError::failure(format!("no silence {id}"))),
                Some(false) => {
                    println!("{id} had already expired");
                    Ok(EXIT_OK)
                }
                Some(true) => {
                    println!("{id} expired");
                    Ok(EXIT_OK)
                }
            }
        }
    }
}
