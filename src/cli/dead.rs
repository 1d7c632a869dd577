//! `alertflow dead list|show|replay|purge`: the dead-letter queue, over
//! [`crate::queue::admin`] (which says how reading and replaying stay safe).

use std::sync::Arc;

use crate::cli::{
    CliError, CliResult, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, GlobalOpts, confirm, connect_broker,
    connect_redis, print_table,
};
use crate::queue::admin::replay_dead;
use crate::queue::publisher::Publisher;
use crate::queue::state::StateStore;
use crate::queue::topology::Topology;

#[derive(clap::Subcommand, Debug)]
pub enum DeadCommand {
    /// List dead letters (oldest first) without removing them.
    #[command(after_help = "Example:\n  alertflow dead list --limit 20 --json")]
    List {
        /// Show at most this many (the total is counted either way).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print a JSON array of dead letters.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter in full.
    #[command(after_help = "Example:\n  alertflow dead show 0b9c6f1e-8a3e-4a55-9d1f-2f1f0b2d3c4e")]
    Show {
        /// The dead letter's task id (as `dead list` shows it).
        id: String,
    },
    /// Send dead letters back to their queues as a fresh attempt.
    #[command(
        after_help = "Examples:\n  alertflow dead replay 0b9c6f1e-8a3e-4a55-9d1f-2f1f0b2d3c4e\n  alertflow dead replay --all"
    )]
    Replay {
        /// Task id to replay.
        id: Option<String>,
        /// Replay every dead letter present now.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Delete every dead letter.
    #[command(after_help = "Example:\n  alertflow dead purge --yes")]
    Purge {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

pub use crate::queue::admin::{DeadEntry, peek};

async fn dead_count(ch: &lapin::Channel, queue: &str) -> Result<usize, CliError> {
    crate::queue::admin::ready_count(ch, queue)
        .await
        .map_err(CliError::failure)
}

pub async fn run(g: &GlobalOpts, cmd: DeadCommand) -> CliResult {
    let config = g.load_config()?;
    let topology = Arc::new(Topology::from_config(&config));
    let queue = topology.dead_queue();
    let conn = connect_broker(&config, "cli").await?;
    let ch = conn.create_channel().await.map_err(CliError::failure)?;
    let result = match cmd {
        DeadCommand::List { limit, json } => {
            // Count before peeking: peeked messages are unacked, and the
            // broker counts only ready ones.
            let total = dead_count(&ch, &queue).await?;
            let entries = peek(&ch, &queue, limit).await.map_err(CliError::failure)?;
            if json {
                let list: Vec<&DeadEntry> = entries.iter().map(|(_, e)| e).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).expect("serializes")
                );
            } else {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|(_, e)| {
                        vec![
                            e.id.clone(),
                            e.task.clone(),
                            e.reason.to_string(),
                            e.attempts.to_string(),
                            e.dead_at
                                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                                .unwrap_or_default(),
                            truncate(&e.last_error, 60),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID",
                        "TASK",
                        "REASON",
                        "ATTEMPTS",
                        "DEAD AT (UTC)",
                        "LAST ERROR",
                    ],
                    &rows,
                );
                let shown = entries.len();
                println!("({shown} shown; {total} in {queue})");
            }
            Ok(EXIT_OK)
        }
        DeadCommand::Show { id } => {
            let n = dead_count(&ch, &queue).await?;
            let entries = peek(&ch, &queue, n).await.map_err(CliError::failure)?;
            match entries.into_iter().find(|(_, e)| e.id == id) {
                Some((_, e)) => {
                    println!("{}", serde_json::to_string_pretty(&e).expect("serializes"));
                    Ok(EXIT_OK)
                }
                None => Err(CliError::failure(format!("no dead letter with id {id}"))),
            }
        }
        DeadCommand::Replay { id, all } => {
            if id.is_none() && !all {
                return Err(CliError::usage("name a task id, or pass --all"));
            }
            let pool = connect_redis(&config).await?;
            let states = StateStore::new(pool, &config.namespace, config.state.ttl.0);
            let publisher = Publisher::open(&conn, topology.clone(), config.broker.publish_window)
                .await
                .map_err(CliError::failure)?;
            let want = id.clone();
            let select = move |e: &DeadEntry| want.as_ref().is_none_or(|w| *w == e.id);
            let report = replay_dead(&ch, &publisher, &topology, &states, &select)
                .await
                .map_err(CliError::failure);
            let _ = publisher.channel().close(200, "done".into()).await;
            let report = report?;
            for env in &report.replayed {
                println!(
                    "replayed {} ({}) to {}",
                    env.id,
                    env.task,
                    topology.queue(&env.queue)
                );
            }
            for skipped in &report.skipped {
                eprintln!("skipping {skipped}: its body is not a task, nothing to replay");
            }
            let (replayed, skipped) = (report.replayed.len(), report.skipped.len());
            if replayed == 0 && id.is_some() && skipped == 0 {
                Err(CliError::failure(format!(
                    "no dead letter with id {}",
                    id.unwrap_or_default()
                )))
            } else {
                println!("{replayed} replayed, {skipped} skipped");
                Ok(if skipped > 0 { EXIT_FAILURE } else { EXIT_OK })
            }
        }
        DeadCommand::Purge { yes } => {
            if !yes && !confirm(&format!("Delete every dead letter in {queue}?"), &queue) {
                eprintln!("not purged (confirm interactively, or pass --yes)");
                return Ok(EXIT_USAGE);
            }
            let n = crate::queue::admin::purge(&ch, &queue)
                .await
                .map_err(CliError::failure)?;
            println!("purged {n} dead letters");
            Ok(EXIT_OK)
        }
    };
    // Closing the channel returns every unacked (peeked) message to the queue.
    let _ = ch.close(200, "done".into()).await;
    crate::queue::connect::close(conn).await;
    result
}

fn truncate(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        let cut: String = one_line.chars().take(n - 1).collect();
        format!("{cut}…")
    }
}
