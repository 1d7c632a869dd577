//! `alertflow queues`, `alertflow workers`, `alertflow purge`.

use std::collections::BTreeSet;

use chrono::Utc;
use lapin::options::{QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use serde::Serialize;

use crate::cli::{
    CliError, CliResult, EXIT_OK, EXIT_USAGE, GlobalOpts, confirm, connect_broker, connect_redis,
    print_table, resolve_queue,
};
use crate::config::Config;
use crate::queue::state::WorkerRegistry;
use crate::queue::topology::{FAMILIES, Topology};

#[derive(clap::Args, Debug)]
pub struct QueuesArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct WorkersArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct PurgeArgs {
    /// Queue family (`lark`) or full name (`alertflow.lark`).
    pub queue: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Serialize, Debug)]
pub struct QueueRow {
    pub queue: String,
    pub kind: &'static str,
    pub ready: Option<u64>,
    /// Only known when `broker.management_url` is set.
    pub unacked: Option<u64>,
    pub consumers: Option<u64>,
}

/// Every queue of the topology: families (standard and configured), delay
/// tiers and the dead-letter queue.
pub fn all_queues(config: &Config) -> Vec<(String, &'static str)> {
    let t = Topology::from_config(config);
    let mut families: BTreeSet<String> = FAMILIES.iter().map(|s| s.to_string()).collect();
    families.extend(config.worker.queues.iter().cloned());
    let mut out: Vec<(String, &'static str)> =
        families.iter().map(|f| (t.queue(f), "work")).collect();
    out.extend(t.tiers.iter().map(|d| (t.tier_queue(*d), "delay")));
    out.push((t.dead_queue(), "dead"));
    out
}

async fn management_counts(config: &Config, queue: &str) -> Option<(u64, u64, u64)> {
    let base = config.broker.management_url.as_ref()?;
    let url = format!(
        "{}/api/queues/%2f/{queue}",
        base.expose().trim_end_matches('/')
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .ok()?;
    let v: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
    Some((
        v.get("messages_ready")?.as_u64()?,
        v.get("messages_unacknowledged")?.as_u64()?,
        v.get("consumers")?.as_u64()?,
    ))
}

pub async fn queue_rows(
    config: &Config,
    conn: &lapin::Connection,
) -> Result<Vec<QueueRow>, CliError> {
    let mut rows = Vec::new();
    for (name, kind) in all_queues(config) {
        if let Some((ready, unacked, consumers)) = management_counts(config, &name).await {
            rows.push(QueueRow {
                queue: name,
                kind,
                ready: Some(ready),
                unacked: Some(unacked),
                consumers: Some(consumers),
            });
            continue;
        }
        // A passive declare of a missing queue closes the channel: one each.
        let ch = conn.create_channel().await.map_err(CliError::failure)?;
        let declared = ch
            .queue_declare(
                name.clone().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(q) => {
                rows.push(QueueRow {
                    queue: name,
                    kind,
                    ready: Some(u64::from(q.message_count())),
                    unacked: None,
                    consumers: Some(u64::from(q.consumer_count())),
                });
                let _ = ch.close(200, "ok".into()).await;
            }
            Err(_) => rows.push(QueueRow {
                queue: name,
                kind,
                ready: None,
                unacked: None,
                consumers: None,
            }),
        }
    }
    Ok(rows)
}

fn opt(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

pub async fn queues(g: &GlobalOpts, a: QueuesArgs) -> CliResult {
    let config = g.load_config()?;
    let conn = connect_broker(&config, "cli").await?;
    let rows = queue_rows(&config, &conn).await?;
    let _ = conn.close(200, "done".into()).await;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.queue.clone(),
                    r.kind.to_string(),
                    if r.ready.is_none() {
                        "missing".into()
                    } else {
                        opt(r.ready)
                    },
                    opt(r.unacked),
                    opt(r.consumers),
                ]
            })
            .collect();
        print_table(&["QUEUE", "KIND", "READY", "UNACKED", "CONSUMERS"], &table);
        if config.broker.management_url.is_none() {
            println!("(unacked counts need broker.management_url, the RabbitMQ management API)");
        }
    }
    Ok(EXIT_OK)
}

pub async fn workers(g: &GlobalOpts, a: WorkersArgs) -> CliResult {
    let config = g.load_config()?;
    let pool = connect_redis(&config).await?;
    let list = WorkerRegistry::new(pool, &config.namespace)
        .list()
        .await
        .map_err(CliError::failure)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("workers serialize")
        );
        return Ok(EXIT_OK);
    }
    let now = Utc::now();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.host.clone(),
                w.pid.to_string(),
                w.queues.join(","),
                format!("{}/{}", w.active, w.concurrency),
                w.processed.to_string(),
                format!("{}s ago", (now - w.heartbeat_at).num_seconds().max(0)),
            ]
        })
        .collect();
    print_table(
        &[
            "WORKER",
            "HOST",
            "PID",
            "QUEUES",
            "ACTIVE",
            "PROCESSED",
            "HEARTBEAT",
        ],
        &rows,
    );
    if rows.is_empty() {
        println!("(no live workers)");
    }
    Ok(EXIT_OK)
}

pub async fn purge(g: &GlobalOpts, a: PurgeArgs) -> CliResult {
    let config = g.load_config()?;
    let name = resolve_queue(&config, &a.queue);
    if !a.yes && !confirm(&format!("Purge every ready message of {name}?"), &name) {
        eprintln!("not purged (confirm interactively, or pass --yes)");
        return Ok(EXIT_USAGE);
    }
    let conn = connect_broker(&config, "cli").await?;
    let ch = conn.create_channel().await.map_err(CliError::failure)?;
    let n = ch
        .queue_purge(name.clone().into(), QueuePurgeOptions::default())
        .await
        .map_err(|e| CliError::failure(format!("purging {name}: {e}")))?;
    let _ = conn.close(200, "done".into()).await;
    println!("purged {n} messages from {name}");
    Ok(EXIT_OK)
}
