//! `alertflow notifications list`: the notification ledger (see
//! [`crate::sink::notifications`]).

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, print_table};
use crate::sink::starrocks::SqlSink;

#[derive(clap::Subcommand, Debug)]
pub enum NotificationsCommand {
    /// Notifications of the last while, newest first: when, about what
    /// (check or task), the event, the receiver, the outcome (sent or
    /// failed, with the error) and the attempts made.
    #[command(
        after_help = "Examples:\n  alertflow notifications list\n  alertflow notifications list --since 7d --check fetch-day --json"
    )]
    List {
        /// How far back, e.g. `1d`, `12h`.
        #[arg(long, default_value = "1d", value_name = "DURATION")]
        since: String,
        /// Only this check or task.
        #[arg(long, value_name = "NAME")]
        check: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 200)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(g: &GlobalOpts, cmd: NotificationsCommand) -> CliResult {
    let NotificationsCommand::List {
        since,
        check,
        limit,
        json,
    } = cmd;
    let config = g.load_config()?;
    let back = crate::config::parse_duration(&since)
        .map_err(|e| CliError::usage(format!("--since: {e}")))?;
    let from = crate::sink::ledger::now()
        - chrono::Duration::from_std(back)
            .map_err(|_| CliError::usage(format!("--since {since}: too long")))?;
    let sink = SqlSink::new(&config);
    let entries = sink
        .notifications_since(from, check.as_deref(), limit.max(1))
        .await;
    sink.close().await;
    let entries = entries.map_err(|e| {
        CliError::failure(format!(
            "reading the notification ledger: {e} (`alertflow migrate` creates the table)"
        ))
    })?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).expect("entries serialize")
        );
        return Ok(EXIT_OK);
    }
    if entries.is_empty() {
        println!("no notification since {from} UTC");
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.source.clone(),
                e.subject.clone(),
                e.event.clone(),
                e.receiver.clone(),
                e.outcome.clone(),
                e.attempts.to_string(),
                crate::notify::truncate(&e.error, 60),
            ]
        })
        .collect();
    print_table(
        &[
            "AT (UTC)", "SOURCE", "SUBJECT", "EVENT", "RECEIVER", "OUTCOME", "ATTEMPTS", "ERROR",
        ],
        &rows,
    );
    Ok(EXIT_OK)
}
