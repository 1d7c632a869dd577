//! Finding tasks without scanning Redis: sorted sets of task ids, written
//! with the states (in the same pipeline) the first time an id is seen
//! (`queued`, or `started` on its first attempt), scored by that time:
//!
//! - `<ns>:tasks:recent`: every task, the newest [`RECENT_MAX`] kept;
//! - `<ns>:tasks:name:<task>`: by task name, trimmed to `state.ttl`;
//! - `<ns>:tasks:run:<run_id>`: by run, expiring with `state.ttl`;
//! - `<ns>:tasks:names`: the task names seen.
//!
//! A search reads one index newest first, fetches the records in chunks
//! (`MGET`) and filters them, reading at most [`SCAN_MAX`] records: the
//! answer says how many it read and whether it stopped early.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::redis_pool::Pool;
use chrono::Utc;
use deadpool_redis::redis::Pipeline;
use serde::Serialize;
use uuid::Uuid;

use crate::state::{StateError, StateStore, TaskState, TaskStatus};

/// Tasks kept in the `recent` index.
pub const RECENT_MAX: i64 = 200_000;
/// Records a search reads at most.
pub const SCAN_MAX: usize = 50_000;
const CHUNK: usize = 1_000;

fn recent_key(ns: &str) -> String {
    format!("{ns}:tasks:recent")
}
fn name_key(ns: &str, task: &str) -> String {
    format!("{ns}:tasks:name:{task}")
}
fn run_key(ns: &str, run: &str) -> String {
    format!("{ns}:tasks:run:{run}")
}
fn names_key(ns: &str) -> String {
    format!("{ns}:tasks:names")
}

fn first_sight(s: &TaskState) -> bool {
    s.status == TaskStatus::Queued || (s.status == TaskStatus::Started && s.attempt == 0)
}

/// Add the index writes for `states` to `pipe`.
pub fn add(pipe: &mut Pipeline, ns: &str, ttl: Duration, states: &[TaskState]) {
    let mut names = BTreeSet::new();
    let mut runs = BTreeSet::new();
    for s in states.iter().filter(|s| first_sight(s)) {
        let score = s.updated_at.timestamp_millis();
        let id = s.id.to_string();
        pipe.zadd(recent_key(ns), &id, score).ignore();
        pipe.zadd(name_key(ns, &s.task), &id, score).ignore();
        names.insert(s.task.as_str());
        if let Some(run) = &s.run_id {
            pipe.zadd(run_key(ns, run), &id, score).ignore();
            runs.insert(run.as_str());
        }
    }
    if names.is_empty() {
        return;
    }
    let oldest =
        (Utc::now() - chrono::Duration::from_std(ttl).unwrap_or_default()).timestamp_millis();
    pipe.cmd("ZREMRANGEBYRANK")
        .arg(recent_key(ns))
        .arg(0)
        .arg(-RECENT_MAX - 1)
        .ignore();
    for name in &names {
        pipe.sadd(names_key(ns), *name).ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(name_key(ns, name))
            .arg("-inf")
            .arg(oldest)
            .ignore();
    }
    let secs = ttl.as_secs().max(1) as i64;
    for run in runs {
        pipe.expire(run_key(ns, run), secs).ignore();
    }
}

/// What to look for; every given field must match.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TaskQuery {
    pub task: Option<String>,
    pub status: Option<TaskStatus>,
    pub run: Option<String>,
    /// Argument fields, `name = value` (compared as text).
    pub args: Vec<(String, String)>,
    /// Children of this task.
    pub parent: Option<Uuid>,
    pub limit: usize,
}

impl TaskQuery {
    fn matches(&self, s: &TaskState) -> bool {
        self.task.as_ref().is_none_or(|t| &s.task == t)
            && self.status.is_none_or(|st| s.status == st)
            && self
                .run
                .as_ref()
                .is_none_or(|r| s.run_id.as_ref() == Some(r))
            && self.parent.is_none_or(|p| s.parent_id == Some(p))
            && self.args.iter().all(|(k, v)| {
                s.args
                    .as_ref()
                    .and_then(|a| a.get(k))
                    .is_some_and(|x| match x {
                        serde_json::Value::String(t) => t == v,
                        other => {
                            serde_json::from_str::<serde_json::Value>(v).ok().as_ref()
                                == Some(other)
                        }
                    })
            })
    }
}

/// A search's answer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Found {
    pub tasks: Vec<TaskState>,
    /// Records read.
    pub scanned: usize,
    /// Ids in the index searched.
    pub indexed: u64,
    /// The search stopped at [`SCAN_MAX`] records before the index ended.
    pub partial: bool,
}

/// The task names seen (for the search form).
pub async fn names(pool: &Pool, ns: &str) -> Result<Vec<String>, StateError> {
    let mut conn = pool.get().await?;
    let mut v: Vec<String> = deadpool_redis::redis::cmd("SMEMBERS")
        .arg(names_key(ns))
        .query_async(&mut conn)
        .await?;
    v.sort();
    Ok(v)
}

/// Search, newest first.
pub async fn search(
    pool: &Pool,
    store: &StateStore,
    ns: &str,
    q: &TaskQuery,
) -> Result<Found, StateError> {
    let key = match (&q.run, &q.task) {
        (Some(run), _) => run_key(ns, run),
        (None, Some(task)) => name_key(ns, task),
        (None, None) => recent_key(ns),
    };
    let mut conn = pool.get().await?;
    let indexed: u64 = deadpool_redis::redis::cmd("ZCARD")
        .arg(&key)
        .query_async(&mut conn)
        .await?;
    let mut found = Found {
        indexed,
        ..Found::default()
    };
    let limit = q.limit.max(1);
    let mut start = 0usize;
    while found.tasks.len() < limit && found.scanned < SCAN_MAX {
        let ids: Vec<String> = deadpool_redis::redis::cmd("ZREVRANGE")
            .arg(&key)
            .arg(start)
            .arg(start + CHUNK - 1)
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            break;
        }
        start += ids.len();
        let ids: Vec<Uuid> = ids.iter().filter_map(|i| i.parse().ok()).collect();
        found.scanned += ids.len();
        for s in store.get_many(&ids).await? {
            if q.matches(&s) && found.tasks.len() < limit {
                found.tasks.push(s);
            }
        }
    }
    found.partial = found.scanned >= SCAN_MAX && (found.scanned as u64) < indexed;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Envelope;

    #[test]
    fn queries_match_every_given_field() {
        let mut env = Envelope::new(
            "fetch-day",
            serde_json::json!({"date": "2026-03-08", "page": 3, "items": [1, 2]}),
        );
        env.run_id = Some("r1".into());
        let s = TaskState::of(&env, TaskStatus::Dead);
        let q = |f: &dyn Fn(&mut TaskQuery)| {
            let mut q = TaskQuery::default();
            f(&mut q);
            q.matches(&s)
        };
        assert!(q(&|_| {}));
        assert!(q(&|q| q.task = Some("fetch-day".into())));
        assert!(!q(&|q| q.task = Some("insert".into())));
        assert!(q(&|q| q.status = Some(TaskStatus::Dead)));
        assert!(!q(&|q| q.status = Some(TaskStatus::Succeeded)));
        assert!(q(&|q| q.run = Some("r1".into())));
        assert!(!q(&|q| q.run = Some("r2".into())));
        assert!(q(&|q| q.args = vec![("date".into(), "2026-03-08".into())]));
        assert!(q(&|q| q.args = vec![("page".into(), "3".into())]));
        assert!(!q(&|q| q.args = vec![("date".into(), "2026-03-09".into())]));
        assert!(!q(&|q| q.args = vec![("nope".into(), "1".into())]));
        // Arrays are kept as their size only.
        assert!(q(&|q| q.args = vec![("items".into(), "[2 items]".into())]));
    }
}
