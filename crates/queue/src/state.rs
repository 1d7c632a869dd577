//! Task states and worker registrations in Redis.
//!
//! A task's state is one JSON string at `<ns>:task:<id>` with a TTL. Workers
//! write states through a [`StateWriter`], which batches them into pipelines
//! (a state superseded within one batch is written once), so state tracking
//! costs a fraction of a Redis round trip per task. Workers register at
//! `<ns>:worker:<id>` (with a TTL refreshed by heartbeats) and in the sorted
//! set `<ns>:workers`; beats likewise at `<ns>:beat-instance:<id>` and in
//! `<ns>:beats`. Every write of states also counts them per minute
//! ([`crate::activity`]) in the same pipeline.

use std::collections::HashMap;
use std::time::Duration;

use crate::redis_pool::Pool;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::activity::Tally;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("redis: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("corrupt state record: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Started,
    /// Failed transiently; waiting in a delay tier for the next attempt.
    Retrying,
    Succeeded,
    /// A fatal error, in records written by older versions (`alertflow run
    /// --local` now records `Dead`, as a worker does).
    Failed,
    /// In the dead-letter queue, whatever the reason (fatal error, retries
    /// exhausted, unknown task, bad arguments, expired); the record's error
    /// starts with the reason.
    Dead,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Started => "started",
            TaskStatus::Retrying => "retrying",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Dead => "dead",
        }
    }
    /// The status [`TaskStatus::as_str`] names.
    pub fn parse(s: &str) -> Option<TaskStatus> {
        Some(match s {
            "queued" => TaskStatus::Queued,
            "started" => TaskStatus::Started,
            "retrying" => TaskStatus::Retrying,
            "succeeded" => TaskStatus::Succeeded,
            "failed" => TaskStatus::Failed,
            "dead" => TaskStatus::Dead,
            _ => return None,
        })
    }
    /// No further change is expected without an operator.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Dead
        )
    }
}

/// One task's state record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub id: Uuid,
    pub task: String,
    pub status: TaskStatus,
    pub attempt: u32,
    pub queue: String,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    /// The arguments' top-level fields (see [`args_summary`]): what search
    /// by an argument matches and the task page shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Arguments kept in a state record: top-level strings, numbers and
/// booleans as they are; arrays and objects (a page of messages, rows) as
/// a note of their size, so a state stays small whatever the task carries.
pub fn args_summary(
    args: &serde_json::Value,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    use serde_json::Value;
    let obj = args.as_object()?;
    Some(
        obj.iter()
            .map(|(k, v)| {
                let kept = match v {
                    Value::Array(a) => Value::String(format!("[{} items]", a.len())),
                    Value::Object(o) => Value::String(format!("{{{} fields}}", o.len())),
                    Value::String(t) if t.len() > 200 => {
                        let mut end = 200;
                        while !t.is_char_boundary(end) {
                            end -= 1;
                        }
                        Value::String(format!("{}… ({} bytes)", &t[..end], t.len()))
                    }
                    other => other.clone(),
                };
                (k.clone(), kept)
            })
            .collect(),
    )
}

/// Whether [`args_summary`] kept `args` whole (a task can be published
/// again from its state alone).
pub fn args_kept_whole(args: &serde_json::Value) -> bool {
    args_summary(args).is_some_and(|m| serde_json::Value::Object(m) == *args)
}

impl TaskState {
    pub fn of(env: &crate::message::Envelope, status: TaskStatus) -> TaskState {
        TaskState {
            id: env.id,
            task: env.task.clone(),
            status,
            attempt: env.attempt,
            queue: env.queue.clone(),
            updated_at: Utc::now(),
            worker: None,
            error: None,
            root_id: Some(env.root_id),
            run_id: env.run_id.clone(),
            eta: env.eta,
            parent_id: env.parent_id,
            args: args_summary(&env.args),
        }
    }
}

/// Reads and writes task states.
#[derive(Clone)]
pub struct StateStore {
    pool: Pool,
    namespace: String,
    ttl: Duration,
}

impl StateStore {
    pub fn new(pool: Pool, namespace: &str, ttl: Duration) -> StateStore {
        StateStore {
            pool,
            namespace: namespace.to_string(),
            ttl,
        }
    }

    /// The Redis pool it writes with.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn key(&self, id: &Uuid) -> String {
        format!("{}:task:{id}", self.namespace)
    }

    /// Write states in one pipeline: each id's last state (the record),
    /// every state into the id's history (when each attempt reached each
    /// status, and its error), the search indexes of ids seen for the first
    /// time (see [`crate::task_index`]), and count them
    /// ([`crate::activity`]).
    pub async fn put_many(&self, states: &[TaskState]) -> Result<(), StateError> {
        self.write(states, &Tally::of(states)).await
    }

    /// Write `latest` (states in order; the last of an id is its record)
    /// and add `tally` to the activity counters, in one pipeline (the
    /// writer also counts events it writes no state for).
    async fn write(&self, latest: &[TaskState], tally: &Tally) -> Result<(), StateError> {
        if latest.is_empty() && tally.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get().await?;
        let mut pipe = deadpool_redis::redis::pipe();
        let ttl = self.ttl.as_secs().max(1);
        // The last state of an id in a batch is the one that counts.
        let mut last: HashMap<Uuid, usize> = HashMap::with_capacity(latest.len());
        for (i, s) in latest.iter().enumerate() {
            last.insert(s.id, i);
        }
        for (i, s) in latest.iter().enumerate() {
            let history = self.history_key(&s.id);
            let field = format!("{}:{}", s.attempt, s.status.as_str());
            pipe.hset(
                &history,
                format!("t:{field}"),
                s.updated_at.timestamp_millis(),
            )
            .ignore();
            if let Some(e) = &s.error {
                pipe.hset(&history, format!("e:{field}"), e).ignore();
            }
            if last.get(&s.id) == Some(&i) {
                pipe.set_ex(self.key(&s.id), serde_json::to_string(s)?, ttl)
                    .ignore();
                pipe.expire(&history, ttl as i64).ignore();
            }
        }
        crate::task_index::add(&mut pipe, &self.namespace, self.ttl, latest);
        tally.add_to(&mut pipe, &self.namespace);
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    fn history_key(&self, id: &Uuid) -> String {
        format!("{}:task:{id}:history", self.namespace)
    }

    /// When each attempt of `id` reached each status, and its errors,
    /// oldest first.
    pub async fn history(&self, id: &Uuid) -> Result<Vec<HistoryEntry>, StateError> {
        let mut conn = self.pool.get().await?;
        let raw: HashMap<String, String> = deadpool_redis::redis::cmd("HGETALL")
            .arg(self.history_key(id))
            .query_async(&mut conn)
            .await?;
        let mut out: Vec<HistoryEntry> = raw
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("t:")?;
                let (attempt, status) = rest.split_once(':')?;
                let status: TaskStatus =
                    serde_json::from_value(serde_json::Value::String(status.to_string())).ok()?;
                Some(HistoryEntry {
                    attempt: attempt.parse().ok()?,
                    status,
                    at: DateTime::from_timestamp_millis(v.parse().ok()?)?,
                    error: raw.get(&format!("e:{rest}")).cloned(),
                })
            })
            .collect();
        // Steps within one millisecond keep their life-cycle order.
        let rank = |s: TaskStatus| match s {
            TaskStatus::Queued => 0,
            TaskStatus::Started => 1,
            _ => 2,
        };
        out.sort_by_key(|h| (h.at, h.attempt, rank(h.status)));
        Ok(out)
    }

    /// The records of `ids` (missing ones left out), in one round trip.
    pub async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<TaskState>, StateError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        let raw: Vec<Option<String>> = deadpool_redis::redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut conn)
            .await?;
        raw.into_iter()
            .flatten()
            .map(|s| serde_json::from_str(&s).map_err(StateError::from))
            .collect()
    }

    pub async fn put(&self, state: &TaskState) -> Result<(), StateError> {
        self.put_many(std::slice::from_ref(state)).await
    }

    pub async fn get(&self, id: &Uuid) -> Result<Option<TaskState>, StateError> {
        let mut conn = self.pool.get().await?;
        let raw: Option<String> = deadpool_redis::redis::cmd("GET")
            .arg(self.key(id))
            .query_async(&mut conn)
            .await?;
        Ok(match raw {
            Some(s) => Some(serde_json::from_str(&s)?),
            None => None,
        })
    }
}

/// One step of a task's history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub attempt: u32,
    pub status: TaskStatus,
    pub at: DateTime<Utc>,
    pub error: Option<String>,
}

/// Batches state writes in the background; never blocks a task.
#[derive(Clone)]
pub struct StateWriter {
    tx: mpsc::UnboundedSender<Recorded>,
}

/// A state to count in the activity counters, and to write unless `count_only`.
struct Recorded {
    state: TaskState,
    count_only: bool,
}

/// States kept while Redis is unreachable; older ones are dropped beyond it.
const MAX_BUFFERED: usize = 200_000;

impl StateWriter {
    /// Start the writer; it ends when every `StateWriter` clone is dropped
    /// and its buffer is flushed (or Redis stays down past a few tries).
    pub fn spawn(store: StateStore) -> (StateWriter, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Recorded>();
        let handle = tokio::spawn(async move {
            let mut batch: Vec<Recorded> = Vec::new();
            let mut closed = false;
            let mut failures = 0u32;
            loop {
                if batch.is_empty() {
                    match rx.recv().await {
                        Some(s) => batch.push(s),
                        None => break,
                    }
                }
                while batch.len() < 4096 {
                    match rx.try_recv() {
                        Ok(s) => batch.push(s),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                // Every state is written (the last of an id is the record,
                // all of them go into the history) and counted; a count-only
                // record (a child's publish) is counted only.
                // A failed pipeline is retried whole; if it had partly
                // applied, those counts are added twice (counts are for
                // dashboards, not accounting).
                let to_write: Vec<TaskState> = batch
                    .iter()
                    .filter(|r| !r.count_only)
                    .map(|r| r.state.clone())
                    .collect();
                let tally = Tally::of(batch.iter().map(|r| &r.state));
                match store.write(&to_write, &tally).await {
                    Ok(()) => {
                        failures = 0;
                        batch.clear();
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, buffered = batch.len(), "task state write failed; will retry");
                        if batch.len() > MAX_BUFFERED {
                            let drop_n = batch.len() - MAX_BUFFERED;
                            batch.drain(..drop_n);
                        }
                        if closed && failures >= 5 {
                            tracing::error!(
                                lost = batch.len(),
                                "giving up on task state writes at shutdown"
                            );
                            break;
                        }
                        let wait = Duration::from_millis(100 * u64::from(failures.min(20)));
                        tokio::time::sleep(wait).await;
                    }
                }
                if closed && batch.is_empty() {
                    // Drain whatever is left after the last sender went away.
                    while let Ok(s) = rx.try_recv() {
                        batch.push(s);
                    }
                    if batch.is_empty() {
                        break;
                    }
                }
            }
        });
        (StateWriter { tx }, handle)
    }

    pub fn record(&self, state: TaskState) {
        // The receiver lives as long as any writer; a send error means shutdown.
        let _ = self.tx.send(Recorded {
            state,
            count_only: false,
        });
    }

    /// Count `state` in the activity counters without writing it: a child
    /// task's publish, whose `queued` state could otherwise land after the
    /// `started` state another worker wrote for it.
    pub fn count(&self, state: TaskState) {
        let _ = self.tx.send(Recorded {
            state,
            count_only: true,
        });
    }
}

/// A worker's registration, refreshed by heartbeats.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub queues: Vec<String>,
    pub concurrency: usize,
    pub active: usize,
    pub processed: u64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub version: String,
    /// The broker node it is connected to (password redacted).
    #[serde(default)]
    pub broker_node: Option<String>,
}

/// Registrations of live processes: `<ns>:<kind>:<id>` holds a JSON
/// record with a TTL refreshed by heartbeats, and the sorted set
/// `<ns>:<set>` lists the ids (scored by the last heartbeat). Workers and
/// beats register this way.
#[derive(Clone)]
struct Registrations {
    pool: Pool,
    set: String,
    prefix: String,
}

impl Registrations {
    fn new(pool: Pool, namespace: &str, set: &str, kind: &str) -> Registrations {
        Registrations {
            pool,
            set: format!("{namespace}:{set}"),
            prefix: format!("{namespace}:{kind}:"),
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// Write the record and its set entry, plus whatever `extra` adds to
    /// the same pipeline.
    async fn heartbeat<T: Serialize>(
        &self,
        id: &str,
        record: &T,
        at: DateTime<Utc>,
        ttl: Duration,
        extra: impl FnOnce(&mut deadpool_redis::redis::Pipeline),
    ) -> Result<(), StateError> {
        let mut conn = self.pool.get().await?;
        let mut pipe = deadpool_redis::redis::pipe();
        pipe.set_ex(
            self.key(id),
            serde_json::to_string(record)?,
            ttl.as_secs().max(1),
        )
        .ignore()
        .zadd(&self.set, id, at.timestamp())
        .ignore();
        extra(&mut pipe);
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn deregister(&self, id: &str) -> Result<(), StateError> {
        let mut conn = self.pool.get().await?;
        let mut pipe = deadpool_redis::redis::pipe();
        pipe.del(self.key(id)).ignore().zrem(&self.set, id).ignore();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// The live records (one `MGET`); set members whose record expired are
    /// removed from the set.
    async fn list<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<T>, StateError> {
        let mut conn = self.pool.get().await?;
        let ids: Vec<String> = deadpool_redis::redis::cmd("ZRANGE")
            .arg(&self.set)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        let raws: Vec<Option<String>> = deadpool_redis::redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for (id, raw) in ids.iter().zip(raws) {
            match raw {
                Some(s) => out.push(serde_json::from_str(&s)?),
                None => stale.push(id),
            }
        }
        if !stale.is_empty() {
            let _: () = deadpool_redis::redis::cmd("ZREM")
                .arg(&self.set)
                .arg(stale)
                .query_async(&mut conn)
                .await?;
        }
        Ok(out)
    }
}

/// Worker registrations in Redis (`<ns>:worker:<id>`, `<ns>:workers`).
#[derive(Clone)]
pub struct WorkerRegistry {
    regs: Registrations,
    families_key: String,
}

impl WorkerRegistry {
    pub fn new(pool: Pool, namespace: &str) -> WorkerRegistry {
        WorkerRegistry {
            regs: Registrations::new(pool, namespace, "workers", "worker"),
            families_key: format!("{namespace}:families"),
        }
    }

    /// Remember queue families declared in this namespace (workers in each
    /// heartbeat, publishers when they declare), so `alertflow queues` lists
    /// a queue even when nobody consumes it any more.
    pub async fn remember_families(&self, families: &[String]) -> Result<(), StateError> {
        if families.is_empty() {
            return Ok(());
        }
        let mut conn = self.regs.pool.get().await?;
        deadpool_redis::redis::cmd("SADD")
            .arg(&self.families_key)
            .arg(families)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Every family remembered by [`WorkerRegistry::remember_families`].
    pub async fn families(&self) -> Result<Vec<String>, StateError> {
        let mut conn = self.regs.pool.get().await?;
        let mut v: Vec<String> = deadpool_redis::redis::cmd("SMEMBERS")
            .arg(&self.families_key)
            .query_async(&mut conn)
            .await?;
        v.sort();
        Ok(v)
    }

    pub async fn heartbeat(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), StateError> {
        self.regs
            .heartbeat(&info.id, info, info.heartbeat_at, ttl, |pipe| {
                if !info.queues.is_empty() {
                    pipe.sadd(&self.families_key, &info.queues).ignore();
                }
            })
            .await
    }

    pub async fn deregister(&self, id: &str) -> Result<(), StateError> {
        self.regs.deregister(id).await
    }

    /// Live workers (registrations whose TTL has not run out); stale entries
    /// of the sorted set are removed.
    pub async fn list(&self) -> Result<Vec<WorkerInfo>, StateError> {
        self.regs.list().await
    }
}

/// A beat's registration, refreshed by heartbeats.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BeatInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// Enabled schedules.
    pub schedules: usize,
    /// Connected to the broker and firing.
    pub connected: bool,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub version: String,
}

/// Beat registrations in Redis: `<ns>:beat-instance:<id>` with a TTL and the
/// sorted set `<ns>:beats` (scored by the last heartbeat).
#[derive(Clone)]
pub struct BeatRegistry {
    regs: Registrations,
}

impl BeatRegistry {
    pub fn new(pool: Pool, namespace: &str) -> BeatRegistry {
        BeatRegistry {
            regs: Registrations::new(pool, namespace, "beats", "beat-instance"),
        }
    }

    pub async fn heartbeat(&self, info: &BeatInfo, ttl: Duration) -> Result<(), StateError> {
        self.regs
            .heartbeat(&info.id, info, info.heartbeat_at, ttl, |_| {})
            .await
    }

    pub async fn deregister(&self, id: &str) -> Result<(), StateError> {
        self.regs.deregister(id).await
    }

    /// Live beats; stale entries of the sorted set are removed.
    pub async fn list(&self) -> Result<Vec<BeatInfo>, StateError> {
        self.regs.list().await
    }
}
