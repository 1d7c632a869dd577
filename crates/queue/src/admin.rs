//! Queue administration: what operators do to a namespace from outside the
//! workers (the CLI today, a dashboard tomorrow): read, replay and purge the
//! dead-letter queue, purge a queue, and delete a whole namespace (tests and
//! benchmarks clean up with it).
//!
//! Reading dead letters uses `basic.get` without acking: closing the channel
//! puts them back where they were. A replay publishes a fresh attempt
//! (attempt 0, same task id) with confirms and only then acks the dead
//! letter: a crash in between leaves a duplicate, never a loss.

use crate::redis_pool::Pool;
use chrono::{DateTime, Utc};
use deadpool_redis::redis::{self, RedisError};
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueuePurgeOptions};
use serde::Serialize;

use crate::config::QueueConfig;
use crate::message::{DeadLetter, DeadReason, Envelope};
use crate::publisher::{PublishError, Publisher};
use crate::state::{StateError, StateStore, TaskState, TaskStatus, WorkerRegistry};
use crate::topology::Topology;

/// Why an administrative action failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("{queue} does not exist yet (no process has declared this namespace)")]
    NoQueue { queue: String },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// One message of the dead-letter queue, whatever put it there.
#[derive(Serialize, Debug, Clone)]
pub struct DeadEntry {
    pub id: String,
    pub task: String,
    /// Serialized as its name (`retries-exhausted`, `broker`, ...).
    pub reason: DeadReason,
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
                reason: d.reason,
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
                reason: DeadReason::Broker,
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
            reason: DeadReason::Undecodable,
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

/// Read up to `limit` messages of `queue` on `ch` without acking them, with
/// their delivery tags; closing the channel puts them back.
pub async fn peek(
    ch: &Channel,
    queue: &str,
    limit: usize,
) -> Result<Vec<(u64, DeadEntry)>, lapin::Error> {
    let mut out = Vec::new();
    while out.len() < limit {
        let got = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?;
        let Some(msg) = got else { break };
        let d = &msg.delivery;
        let mid = d.properties.message_id().as_ref().map(|s| s.to_string());
        out.push((d.delivery_tag, DeadEntry::decode(&d.data, mid.as_deref())));
    }
    Ok(out)
}

/// Messages ready in `queue` (peeked ones are unacked and not counted, so
/// count before peeking).
pub async fn ready_count(ch: &Channel, queue: &str) -> Result<usize, AdminError> {
    match crate::topology::queue_counts(ch, queue).await? {
        Some(c) => Ok(c.ready as usize),
        None => Err(AdminError::NoQueue {
            queue: queue.to_string(),
        }),
    }
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Envelopes published again (attempt 0), in order.
    pub replayed: Vec<Envelope>,
    /// Ids of dead letters whose body is not a task: nothing to replay.
    pub skipped: Vec<String>,
}

/// Replay the dead letters there now that `select` picks, each recorded
/// `queued`, published with a confirm, and only then acked; the others are
/// put back untouched. What dies again is not replayed again in the same
/// call: no loops.
pub async fn replay_dead(
    ch: &Channel,
    publisher: &Publisher,
    topology: &Topology,
    states: &StateStore,
    select: &(dyn Fn(&DeadEntry) -> bool + Sync),
) -> Result<ReplayReport, AdminError> {
    let queue = topology.dead_queue();
    let n = ready_count(ch, &queue).await?;
    let mut report = ReplayReport::default();
    for (tag, e) in peek(ch, &queue, n).await? {
        if !select(&e) {
            continue;
        }
        let Some(mut env) = e.envelope else {
            report.skipped.push(e.id);
            continue;
        };
        env.attempt = 0;
        env.eta = None;
        env.expires_at = None;
        topology
            .declare_family(publisher.channel(), &env.queue)
            .await?;
        // Revoked perhaps: it is wanted after all (before it can be delivered).
        crate::revoke::unrevoke(states.pool(), &topology.namespace, &[env.id]).await?;
        // Recorded before it is published: a fast worker's outcome must not
        // be overwritten by `queued`.
        states.put(&TaskState::of(&env, TaskStatus::Queued)).await?;
        publisher.publish(&env).await?;
        ch.basic_ack(tag, BasicAckOptions::default()).await?;
        report.replayed.push(env);
    }
    Ok(report)
}

/// Delete every ready message of `queue`; returns how many.
pub async fn purge(ch: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    ch.queue_purge(queue.into(), QueuePurgeOptions::default())
        .await
}

/// Delete a namespace: its queues and exchanges (for `families` and every
/// family a process remembered declaring), and its Redis keys. Best effort:
/// used after failures too.
pub async fn delete_namespace(config: &QueueConfig, families: &[String]) {
    let pool = crate::context::redis_pool(config).ok();
    let mut families = families.to_vec();
    if let Some(pool) = &pool
        && let Ok(more) = WorkerRegistry::new(pool.clone(), &config.namespace)
            .families()
            .await
    {
        families.extend(more);
        families.sort();
        families.dedup();
    }
    if let Ok(conn) = crate::connect::connect(config, "cleanup").await {
        if let Ok(ch) = conn.create_channel().await {
            let _ = Topology::from_config(config).delete(&ch, &families).await;
            let _ = ch.close(200, "cleanup".into()).await;
        }
        let _ = conn.close(200, "cleanup".into()).await;
    }
    if let Some(pool) = pool {
        let _ = delete_namespace_keys(&pool, &config.namespace).await;
    }
}

/// Delete every Redis key of a namespace; returns how many.
pub async fn delete_namespace_keys(pool: &Pool, namespace: &str) -> Result<u64, RedisError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| RedisError::from((redis::ErrorKind::Io, "pool", e.to_string())))?;
    let mut cursor: u64 = 0;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            deleted += keys.len() as u64;
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
