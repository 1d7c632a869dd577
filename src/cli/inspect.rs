//! `alertflow queues`, `alertflow workers`, `alertflow purge`.

use std::collections::BTreeSet;

use chrono::Utc;
use lapin::options::QueuePurgeOptions;
use serde::Serialize;

use crate::cli::{
    CliError, CliResult, EXIT_OK, EXIT_USAGE, GlobalOpts, confirm, connect_broker, connect_redis,
    print_table, resolve_queue,
};
use crate::config::AppConfig;
use crate::queue::state::WorkerRegistry;
use crate::queue::task::Registry;
use crate::queue::topology::Topology;

#[derive(clap::Args, Debug)]
pub struct QueuesArgs {
    /// Print a JSON array of queues.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct WorkersArgs {
    /// Print a JSON array of workers.
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
    /// True for a work queue that holds messages nobody consumes: they
    /// wait until a worker with `-Q <family>` starts.
    pub stranded: bool,
}

/// Every queue of the namespace: the families tasks and config route to,
/// the families any process declared (`extra`: remembered in Redis, listed
/// by the management API), delay tiers and the dead-letter queue.
pub fn all_queues(
    config: &AppConfig,
    registry: &Registry,
    extra: &BTreeSet<String>,
) -> Vec<(String, &'static str)> {
    let t = Topology::from_config(config);
    let mut families = registry.families(config);
    families.extend(extra.iter().cloned());
    let mut out: Vec<(String, &'static str)> =
        families.iter().map(|f| (t.queue(f), "work")).collect();
    out.extend(t.tiers.iter().map(|d| (t.tier_queue(*d), "delay")));
    out.push((t.dead_queue(), "dead"));
    out
}

fn management_client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .ok()
}

async fn management_counts(config: &AppConfig, queue: &str) -> Option<(u64, u64, u64)> {
    let base = config.broker.management_url.as_ref()?;
    let url = format!(
        "{}/api/queues/%2f/{queue}",
        base.expose().trim_end_matches('/')
    );
    let v: serde_json::Value = management_client()?
        .get(url)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some((
        v.get("messages_ready")?.as_u64()?,
        v.get("messages_unacknowledged")?.as_u64()?,
        v.get("consumers")?.as_u64()?,
    ))
}

/// Work-queue families of the namespace that the management API lists
/// (when `broker.management_url` is set): queues no process remembers.
async fn management_families(config: &AppConfig) -> Vec<String> {
    let Some(base) = config.broker.management_url.as_ref() else {
        return Vec::new();
    };
    let url = format!(
        "{}/api/queues/%2f?columns=name",
        base.expose().trim_end_matches('/')
    );
    let Some(client) = management_client() else {
        return Vec::new();
    };
    let Ok(resp) = client.get(url).send().await else {
        return Vec::new();
    };
    let list: Vec<serde_json::Value> = resp.json().await.unwrap_or_default();
    let prefix = format!("{}.", config.namespace);
    list.iter()
        .filter_map(|q| q.get("name")?.as_str())
        .filter_map(|n| n.strip_prefix(&prefix))
        .filter(|f| *f != "dead" && !f.starts_with("delay."))
        .map(str::to_string)
        .collect()
}

/// Families declared in the namespace by any process: remembered in Redis
/// and listed by the management API. Redis being down only narrows the
/// list (said on stderr); it does not fail `alertflow queues`.
pub async fn declared_families(config: &AppConfig) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = management_families(config).await.into_iter().collect();
    match connect_redis(config).await {
        Ok(pool) => match WorkerRegistry::new(pool, &config.namespace)
            .families()
            .await
        {
            Ok(f) => out.extend(f),
            Err(e) => eprintln!("warning: cannot read declared queue families from Redis: {e}"),
        },
        Err(e) => eprintln!(
            "warning: {}; queues declared elsewhere may be missing",
            e.message
        ),
    }
    out
}

pub async fn queue_rows(
    config: &AppConfig,
    registry: &Registry,
    conn: &lapin::Connection,
    extra: &BTreeSet<String>,
) -> Result<Vec<QueueRow>, CliError> {
    let mut rows = Vec::new();
    for (name, kind) in all_queues(config, registry, extra) {
        let counts = match management_counts(config, &name).await {
            Some((ready, unacked, consumers)) => Some((ready, Some(unacked), consumers)),
            None => passive_counts(conn, &name).await?,
        };
        rows.push(match counts {
            Some((ready, unacked, consumers)) => QueueRow {
                stranded: kind == "work" && consumers == 0 && ready > 0,
                queue: name,
                kind,
                ready: Some(ready),
                unacked,
                consumers: Some(consumers),
            },
            None => QueueRow {
                queue: name,
                kind,
                ready: None,
                unacked: None,
                consumers: None,
                stranded: false,
            },
        });
    }
    Ok(rows)
}

/// Ready count and consumers of a queue; `None` when it does not exist.
async fn passive_counts(
    conn: &lapin::Connection,
    name: &str,
) -> Result<Option<(u64, Option<u64>, u64)>, CliError> {
    let ch = conn.create_channel().await.map_err(CliError::failure)?;
    let counts = crate::queue::topology::queue_counts(&ch, name)
        .await
        .map_err(|e| CliError::failure(format!("{name}: {e}")))?;
    if counts.is_some() {
        let _ = ch.close(200, "ok".into()).await;
    }
    Ok(counts.map(|c| (c.ready, None, c.consumers)))
}

fn opt(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

pub async fn queues(g: &GlobalOpts, a: QueuesArgs) -> CliResult {
    let (config, registry) = g.load_with_registry()?;
    let conn = connect_broker(&config, "cli").await?;
    let extra = declared_families(&config).await;
    let rows = queue_rows(&config, &registry, &conn, &extra).await?;
    crate::queue::connect::close(conn).await;
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
                    if r.stranded {
                        "NO CONSUMER: messages wait for a worker on this queue".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        print_table(
            &["QUEUE", "KIND", "READY", "UNACKED", "CONSUMERS", "NOTE"],
            &table,
        );
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
                w.broker_node
                    .as_deref()
                    .map(crate::queue::config::node_host)
                    .unwrap_or_else(|| "-".into()),
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
            "BROKER",
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
    crate::queue::connect::close(conn).await;
    println!("purged {n} messages from {name}");
    Ok(EXIT_OK)
}
