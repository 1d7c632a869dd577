//! `alertflow dead list|show|replay|purge`: the dead-letter queue.
//!
//! Listing reads messages with `basic.get` without acking and then closes the
//! channel, so the broker puts them back where they were. Replay publishes a
//! fresh attempt (attempt 0, same task id) with confirms and only then acks
//! the dead letter: a crash in between leaves a duplicate, never a loss.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueuePurgeOptions};
use serde::Serialize;

use crate::cli::{
    CliError, CliResult, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, GlobalOpts, confirm, connect_broker,
    connect_redis, print_table,
};
use crate::queue::message::{DeadLetter, DeadReason, Envelope};
use crate::queue::publisher::Publisher;
use crate::queue::state::{StateStore, TaskState, TaskStatus};
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

/// One message of the dead-letter queue, whatever put it there.
#[derive(Serialize, Debug, Clone)]
pub struct DeadEntry {
    pub id: String,
    pub task: String,
    pub reason: String,
    pub attempts: u32,
    pub last_error: String,
    pub worker: String,
    pub queue: String,
    pub dead_at: Option<DateTime<Utc>>,
    pub envelope: Option<Envelope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_body: Option<String>,
}

impl DeadEntry {
    /// Decode a dead-letter body: our own record, or a task the broker
    /// dead-lettered itself (quorum delivery limit), or anything else.
    pub fn decode(body: &[u8], message_id: Option<&str>) -> DeadEntry {
        if let Ok(d) = serde_json::from_slice::<DeadLetter>(body) {
            return DeadEntry {
                id: d
                    .task_id()
                    .map(|u| u.to_string())
                    .or_else(|| message_id.map(str::to_string))
                    .unwrap_or_default(),
                task: d
                    .envelope
                    .as_ref()
                    .map(|e| e.task.clone())
                    .unwrap_or_else(|| "(undecodable)".into()),
                reason: d.reason.as_str().into(),
                attempts: d.attempts,
                last_error: d.last_error,
                worker: d.worker,
                queue: d.queue,
                dead_at: Some(d.dead_at),
                envelope: d.envelope,
                raw_body: d.raw_body,
            };
        }
        if let Ok(e) = Envelope::from_json(body) {
            return DeadEntry {
                id: e.id.to_string(),
                task: e.task.clone(),
                reason: DeadReason::Broker.as_str().into(),
                attempts: e.attempt + 1,
                last_error: "dead-lettered by the broker (delivery limit or rejection)".into(),
                worker: String::new(),
                queue: e.queue.clone(),
                dead_at: None,
                envelope: Some(e),
                raw_body: None,
            };
        }
        DeadEntry {
            id: message_id.unwrap_or_default().to_string(),
            task: "(undecodable)".into(),
            reason: DeadReason::Undecodable.as_str().into(),
            attempts: 0,
            last_error: "not a dead-letter record".into(),
            worker: String::new(),
            queue: String::new(),
            dead_at: None,
            envelope: None,
            raw_body: Some(String::from_utf8_lossy(body).into_owned()),
        }
    }
}

/// Read up to `limit` dead letters on `ch` without acking them; closing the
/// channel puts them back.
pub async fn peek(
    ch: &lapin::Channel,
    queue: &str,
    limit: usize,
) -> Result<Vec<(u64, DeadEntry)>, CliError> {
    let mut out = Vec::new();
    while out.len() < limit {
        let got = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(CliError::failure)?;
        let Some(msg) = got else { break };
        let d = &msg.delivery;
        let mid = d.properties.message_id().as_ref().map(|s| s.to_string());
        out.push((d.delivery_tag, DeadEntry::decode(&d.data, mid.as_deref())));
    }
    Ok(out)
}

async fn dead_count(ch: &lapin::Channel, queue: &str) -> Result<usize, CliError> {
    match crate::queue::topology::queue_counts(ch, queue).await {
        Ok(Some(c)) => Ok(c.ready as usize),
        Ok(None) => Err(CliError::failure(format!(
            "{queue} does not exist yet (no process has declared this namespace)"
        ))),
        Err(e) => Err(CliError::failure(format!("{queue}: {e}"))),
    }
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
            let entries = peek(&ch, &queue, limit).await?;
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
                            e.reason.clone(),
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
            let entries = peek(&ch, &queue, n).await?;
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
            // Only what is there now: a replay that dies again must not loop.
            let n = dead_count(&ch, &queue).await?;
            let entries = peek(&ch, &queue, n).await?;
            let mut replayed = 0usize;
            let mut skipped = 0usize;
            for (tag, e) in entries {
                if id.as_deref().is_some_and(|want| want != e.id) {
                    continue;
                }
                let Some(mut env) = e.envelope.clone() else {
                    eprintln!(
                        "skipping {}: its body is not a task, nothing to replay",
                        e.id
                    );
                    skipped += 1;
                    continue;
                };
                env.attempt = 0;
                env.eta = None;
                env.expires_at = None;
                topology
                    .declare_family(publisher.channel(), &env.queue)
                    .await
                    .map_err(CliError::failure)?;
                publisher.publish(&env).await.map_err(CliError::failure)?;
                states
                    .put(&TaskState::of(&env, TaskStatus::Queued))
                    .await
                    .map_err(CliError::failure)?;
                ch.basic_ack(tag, BasicAckOptions::default())
                    .await
                    .map_err(CliError::failure)?;
                println!(
                    "replayed {} ({}) to {}",
                    env.id,
                    env.task,
                    topology.queue(&env.queue)
                );
                replayed += 1;
            }
            let _ = publisher.channel().close(200, "done".into()).await;
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
            let n = ch
                .queue_purge(queue.clone().into(), QueuePurgeOptions::default())
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
