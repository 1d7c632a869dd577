//! Per-minute activity counters in Redis: how many tasks were published,
//! delivered, retried, dead-lettered and succeeded, per queue family and
//! task, minute by minute.
//!
//! A minute is one hash, `<ns>:activity:<unix minute>`, with a field per
//! `<queue>|<task>|<status>` (queue family and task names never contain
//! `|`). The counts come from the task states themselves: every write of
//! states through [`crate::state::StateStore`] (the workers' batching
//! [`crate::state::StateWriter`], and the single writes of the beat and the
//! CLI) adds an `HINCRBY` per distinct field and an `EXPIRE` per minute to
//! the pipeline that writes the states, so counting costs no round trip.
//! What each status counts:
//!
//! - `queued`: a publish (enqueue, beat fire, `alertflow run`, dead-letter
//!   replay, a rate-limited task put back in a delay tier, and a child task
//!   a worker published: counted through [`crate::state::StateWriter::count`]
//!   without a state write);
//! - `started`: a delivery to a worker;
//! - `retrying`: a retry scheduled after a transient failure;
//! - `succeeded`, `dead` (and the older `failed`): an outcome.
//!
//! [`Activity::read`] reads a range of minutes with one pipelined `HGETALL`
//! per minute in one round trip; nothing here ever lists keys.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::redis_pool::Pool;
use chrono::{DateTime, Utc};
use deadpool_redis::redis::Pipeline;
use serde::Serialize;

use crate::state::{StateError, TaskState, TaskStatus};

/// How long a minute is kept: a day, and room for the day before's last hours.
pub const TTL: Duration = Duration::from_secs(26 * 3600);

/// The most minutes one read may ask for (the TTL's worth).
pub const MAX_MINUTES: i64 = (TTL.as_secs() / 60) as i64;

/// The unix minute of an instant.
pub fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// The hash of one minute.
pub fn key(namespace: &str, minute: i64) -> String {
    format!("{namespace}:activity:{minute}")
}

/// The counts of a batch of states, per minute and field, ready to be added
/// to a pipeline.
#[derive(Debug, Default)]
pub struct Tally {
    counts: HashMap<i64, HashMap<String, i64>>,
}

impl Tally {
    /// Count every state of `states`, including ones a later state of the
    /// same task supersedes within the batch (each was a real event).
    pub fn of<'a>(states: impl IntoIterator<Item = &'a TaskState>) -> Tally {
        // Group before formatting: a batch has thousands of states and a
        // handful of distinct fields.
        let mut by: HashMap<(i64, &str, &str, TaskStatus), i64> = HashMap::new();
        for s in states {
            *by.entry((minute_of(s.updated_at), &s.queue, &s.task, s.status))
                .or_default() += 1;
        }
        let mut t = Tally::default();
        for ((minute, queue, task, status), n) in by {
            t.add(minute, queue, task, status, n);
        }
        t
    }

    /// Count `n` events of `status` at `minute`.
    pub fn add(&mut self, minute: i64, queue: &str, task: &str, status: TaskStatus, n: i64) {
        *self
            .counts
            .entry(minute)
            .or_default()
            .entry(format!("{queue}|{task}|{}", status.as_str()))
            .or_default() += n;
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Add the increments (and one `EXPIRE` per minute) to `pipe`.
    pub fn add_to(&self, pipe: &mut Pipeline, namespace: &str) {
        for (minute, fields) in &self.counts {
            let k = key(namespace, *minute);
            for (field, n) in fields {
                pipe.hincr(&k, field, *n).ignore();
            }
            pipe.expire(&k, TTL.as_secs() as i64).ignore();
        }
    }
}

/// What happened in some span, by kind of event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// `queued` states: publishes.
    pub published: u64,
    /// `started` states: deliveries to a worker.
    pub delivered: u64,
    pub retried: u64,
    pub succeeded: u64,
    /// `dead` and the older `failed`.
    pub dead: u64,
}

impl Counts {
    fn add(&mut self, status: TaskStatus, n: u64) {
        let slot = match status {
            TaskStatus::Queued => &mut self.published,
            TaskStatus::Started => &mut self.delivered,
            TaskStatus::Retrying => &mut self.retried,
            TaskStatus::Succeeded => &mut self.succeeded,
            TaskStatus::Failed | TaskStatus::Dead => &mut self.dead,
        };
        *slot += n;
    }

    fn merge(&mut self, o: &Counts) {
        self.published += o.published;
        self.delivered += o.delivered;
        self.retried += o.retried;
        self.succeeded += o.succeeded;
        self.dead += o.dead;
    }
}

/// One minute of one task on one queue family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub minute: i64,
    pub queue: String,
    pub task: String,
    pub counts: Counts,
}

/// The counters of minutes `from..=to`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Activity {
    pub from: i64,
    pub to: i64,
    pub cells: Vec<Cell>,
}

impl Activity {
    /// Read minutes `from..=to` (at most [`MAX_MINUTES`], the latest kept)
    /// in one round trip. Fields that do not parse are skipped.
    pub async fn read(
        pool: &Pool,
        namespace: &str,
        from: i64,
        to: i64,
    ) -> Result<Activity, StateError> {
        let from = from.max(to - MAX_MINUTES + 1);
        let mut out = Activity {
            from,
            to,
            cells: Vec::new(),
        };
        if to < from {
            return Ok(out);
        }
        let mut conn = pool.get().await?;
        let mut pipe = deadpool_redis::redis::pipe();
        for m in from..=to {
            pipe.hgetall(key(namespace, m));
        }
        let minutes: Vec<HashMap<String, u64>> = pipe.query_async(&mut conn).await?;
        for (minute, fields) in (from..=to).zip(minutes) {
            let mut by_pair: BTreeMap<(String, String), Counts> = BTreeMap::new();
            for (field, n) in fields {
                let mut parts = field.splitn(3, '|');
                let (Some(queue), Some(task), Some(status)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Some(status) = TaskStatus::parse(status) else {
                    continue;
                };
                by_pair
                    .entry((queue.to_string(), task.to_string()))
                    .or_default()
                    .add(status, n);
            }
            out.cells
                .extend(by_pair.into_iter().map(|((queue, task), counts)| Cell {
                    minute,
                    queue,
                    task,
                    counts,
                }));
        }
        Ok(out)
    }

    /// Totals per queue family over minutes `from..=to`.
    pub fn per_queue(&self, from: i64, to: i64) -> BTreeMap<String, Counts> {
        self.sum_by(from, to, |c| &c.queue)
    }

    /// Totals per task over minutes `from..=to`.
    pub fn per_task(&self, from: i64, to: i64) -> BTreeMap<String, Counts> {
        self.sum_by(from, to, |c| &c.task)
    }

    /// Per queue family, the counts of every minute of the read range
    /// (zeros included), oldest first.
    pub fn series_per_queue(&self) -> BTreeMap<String, Vec<Counts>> {
        let len = (self.to - self.from + 1).max(0) as usize;
        let mut out: BTreeMap<String, Vec<Counts>> = BTreeMap::new();
        for c in &self.cells {
            let series = out
                .entry(c.queue.clone())
                .or_insert_with(|| vec![Counts::default(); len]);
            series[(c.minute - self.from) as usize].merge(&c.counts);
        }
        out
    }

    fn sum_by(
        &self,
        from: i64,
        to: i64,
        by: impl Fn(&Cell) -> &String,
    ) -> BTreeMap<String, Counts> {
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        for c in self
            .cells
            .iter()
            .filter(|c| (from..=to).contains(&c.minute))
        {
            out.entry(by(c).clone()).or_default().merge(&c.counts);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn state(task: &str, queue: &str, status: TaskStatus, at: DateTime<Utc>) -> TaskState {
        TaskState {
            id: Uuid::new_v4(),
            task: task.into(),
            status,
            attempt: 0,
            queue: queue.into(),
            updated_at: at,
            worker: None,
            error: None,
            root_id: None,
            run_id: None,
            eta: None,
            parent_id: None,
            args: None,
        }
    }

    fn pool() -> Pool {
        let url = std::env::var("ALERTFLOW_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_string());
        deadpool_redis::Config::from_url(url)
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .expect("redis pool")
            .into()
    }

    #[test]
    fn a_batch_is_counted_per_minute_and_field() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let t1 = t0 + chrono::Duration::minutes(1);
        let mut started = state("a", "lark", TaskStatus::Started, t0);
        let mut done = started.clone();
        done.status = TaskStatus::Succeeded;
        done.updated_at = t1;
        started.updated_at = t0;
        let tally = Tally::of(&[
            started.clone(),
            done,
            state("a", "lark", TaskStatus::Started, t0),
        ]);
        let m0 = minute_of(t0);
        assert_eq!(tally.counts[&m0]["lark|a|started"], 2);
        assert_eq!(tally.counts[&(m0 + 1)]["lark|a|succeeded"], 1);
        assert_eq!(tally.counts.len(), 2);
    }

    #[tokio::test]
    async fn counters_written_with_states_read_back_in_one_range() {
        let ns = format!("t-activity-{}", Uuid::new_v4().simple());
        let pool = pool();
        let store = crate::state::StateStore::new(pool.clone(), &ns, Duration::from_secs(60));
        let now = Utc::now();
        let m = minute_of(now);
        let earlier = now - chrono::Duration::minutes(2);
        let states = [
            state("fetch-day", "lark", TaskStatus::Queued, earlier),
            state("fetch-day", "lark", TaskStatus::Started, earlier),
            state("fetch-day", "lark", TaskStatus::Retrying, now),
            state("write", "db", TaskStatus::Started, now),
            state("write", "db", TaskStatus::Dead, now),
            state("write", "db", TaskStatus::Failed, now),
        ];
        store.put_many(&states).await.unwrap();
        // A writer batch counts superseded states too.
        let (writer, handle) = crate::state::StateWriter::spawn(store.clone());
        let s = state("write", "db", TaskStatus::Started, now);
        let mut done = s.clone();
        done.status = TaskStatus::Succeeded;
        writer.record(s);
        writer.record(done.clone());
        // A child's publish is counted, not written.
        let child = state("write", "db", TaskStatus::Queued, now);
        writer.count(child.clone());
        drop(writer);
        handle.await.unwrap();
        assert_eq!(store.get(&done.id).await.unwrap(), Some(done.clone()));
        assert_eq!(store.get(&child.id).await.unwrap(), None);

        let a = Activity::read(&pool, &ns, m - 10, m).await.unwrap();
        let per_queue = a.per_queue(m - 4, m);
        assert_eq!(
            per_queue["lark"],
            Counts {
                published: 1,
                delivered: 1,
                retried: 1,
                ..Counts::default()
            }
        );
        assert_eq!(
            per_queue["db"],
            Counts {
                published: 1,
                delivered: 2,
                succeeded: 1,
                dead: 2,
                ..Counts::default()
            }
        );
        // Only the current minute: the earlier states are left out.
        assert_eq!(a.per_task(m, m)["fetch-day"].published, 0);
        let series = a.series_per_queue();
        assert_eq!(series["lark"].len(), 11);
        assert_eq!(series["lark"][10].retried, 1);
        assert_eq!(series["lark"][8].delivered, 1);

        let mut conn = pool.get().await.unwrap();
        let ttl: i64 = deadpool_redis::redis::cmd("TTL")
            .arg(key(&ns, m))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 25 * 3600 && ttl <= TTL.as_secs() as i64, "{ttl}");
        let mut keys: Vec<String> = (m - 10..=m).map(|m| key(&ns, m)).collect();
        keys.extend(states.iter().chain([&done]).map(|s| store.key(&s.id)));
        let mut del = deadpool_redis::redis::cmd("DEL");
        del.arg(&keys);
        let _: () = del.query_async(&mut conn).await.unwrap();
    }
}
