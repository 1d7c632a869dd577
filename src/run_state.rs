//! A pipeline run's progress in Redis: one hash `<ns>:run:<run_id>` with a
//! field per page and stage, so that retried and redelivered tasks record
//! the same page twice without counting it twice. Runs are indexed by date
//! in `<ns>:runs:<date>`.
//!
//! This is the fast path for progress only: the truth of what a run did is
//! the run ledger in the database ([`crate::sink::ledger`]), and the run
//! barrier is decided there, so a run whose hash Redis lost still finishes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::queue::redis_pool::Pool;
use deadpool_redis::redis::{self, AsyncCommands};
use serde::Serialize;

use crate::queue::task::TaskError;

/// Progress of a run, summed over pages.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub date: String,
    pub chat_id: String,
    pub pages_fetched: u64,
    /// Known once the last page was published.
    pub total_pages: Option<u64>,
    pub messages: u64,
    pub pages_parsed: u64,
    pub rows: u64,
    pub skips: BTreeMap<String, u64>,
    pub pages_written: u64,
    pub rows_written: u64,
    /// The id of the run's `recommend` task, once published.
    pub recommend: Option<String>,
}

impl RunSummary {
    pub fn fetched_all(&self) -> bool {
        self.total_pages == Some(self.pages_fetched)
    }
    pub fn written_all(&self) -> bool {
        self.total_pages == Some(self.pages_written)
    }
}

/// Reads and writes run state.
#[derive(Clone)]
pub struct RunState {
    pool: Pool,
    namespace: String,
    ttl: Duration,
}

fn redis_err(e: impl std::fmt::Display) -> TaskError {
    TaskError::retry(format!("run state in redis: {e}"))
}

impl RunState {
    pub fn new(pool: Pool, namespace: &str, ttl: Duration) -> RunState {
        RunState {
            pool,
            namespace: namespace.to_string(),
            ttl,
        }
    }

    fn key(&self, run_id: &str) -> String {
        format!("{}:run:{run_id}", self.namespace)
    }

    async fn conn(&self) -> Result<crate::queue::redis_pool::Connection, TaskError> {
        self.pool.get().await.map_err(redis_err)
    }

    async fn hset(&self, run_id: &str, fields: &[(String, String)]) -> Result<(), TaskError> {
        let mut c = self.conn().await?;
        let key = self.key(run_id);
        let mut pipe = redis::pipe();
        pipe.hset_multiple(&key, fields)
            .ignore()
            .expire(&key, self.ttl.as_secs() as i64)
            .ignore();
        pipe.query_async::<()>(&mut c).await.map_err(redis_err)
    }

    /// Start (or resume) a run's progress: its date and chat, and its place
    /// in the date's index. (The window is fixed in the run ledger.)
    pub async fn begin(&self, run_id: &str, date: &str, chat_id: &str) -> Result<(), TaskError> {
        let mut c = self.conn().await?;
        let key = self.key(run_id);
        let runs = format!("{}:runs:{date}", self.namespace);
        let ttl = self.ttl.as_secs() as i64;
        let mut pipe = redis::pipe();
        pipe.hset_nx(&key, "date", date)
            .ignore()
            .hset_nx(&key, "chat_id", chat_id)
            .ignore()
            .expire(&key, ttl)
            .ignore()
            .zadd(&runs, run_id, chrono::Utc::now().timestamp())
            .ignore()
            .expire(&runs, ttl)
            .ignore();
        pipe.query_async::<()>(&mut c).await.map_err(redis_err)
    }

    pub async fn page_fetched(
        &self,
        run_id: &str,
        page: u32,
        items: usize,
    ) -> Result<(), TaskError> {
        self.hset(run_id, &[(format!("fetched:{page}"), items.to_string())])
            .await
    }

    pub async fn fetch_done(&self, run_id: &str, total_pages: u32) -> Result<(), TaskError> {
        self.hset(run_id, &[("total_pages".into(), total_pages.to_string())])
            .await
    }

    pub async fn page_parsed(
        &self,
        run_id: &str,
        page: u32,
        rows: usize,
        skips: &BTreeMap<String, u64>,
    ) -> Result<(), TaskError> {
        self.hset(
            run_id,
            &[
                (format!("parsed:{page}"), rows.to_string()),
                (
                    format!("skips:{page}"),
                    serde_json::to_string(skips).expect("skip counts serialize"),
                ),
            ],
        )
        .await
    }

    pub async fn page_written(
        &self,
        run_id: &str,
        page: u32,
        rows: usize,
    ) -> Result<(), TaskError> {
        self.hset(run_id, &[(format!("written:{page}"), rows.to_string())])
            .await
    }

    /// Record the run's `recommend` task id unless one is recorded already;
    /// true for the single caller that recorded it.
    pub async fn claim_recommend(&self, run_id: &str, task_id: &str) -> Result<bool, TaskError> {
        let mut c = self.conn().await?;
        let key = self.key(run_id);
        let mut pipe = redis::pipe();
        pipe.hset_nx(&key, "recommend", task_id)
            .expire(&key, self.ttl.as_secs() as i64)
            .ignore();
        let (claimed,): (bool,) = pipe.query_async(&mut c).await.map_err(redis_err)?;
        Ok(claimed)
    }

    /// Undo [`claim_recommend`] when publishing the task failed.
    pub async fn release_recommend(&self, run_id: &str) -> Result<(), TaskError> {
        let mut c = self.conn().await?;
        c.hdel::<_, _, ()>(self.key(run_id), "recommend")
            .await
            .map_err(redis_err)
    }

    /// Whether the run's hash still holds what `begin` wrote: false when
    /// Redis lost it (a hash that later writes recreated lacks `date`).
    pub async fn intact(&self, run_id: &str) -> Result<bool, TaskError> {
        let mut c = self.conn().await?;
        c.hexists(self.key(run_id), "date").await.map_err(redis_err)
    }

    /// Run ids started for a date, oldest first.
    pub async fn runs_for(&self, date: &str) -> Result<Vec<String>, TaskError> {
        let mut c = self.conn().await?;
        c.zrange(format!("{}:runs:{date}", self.namespace), 0, -1)
            .await
            .map_err(redis_err)
    }

    pub async fn summary(&self, run_id: &str) -> Result<Option<RunSummary>, TaskError> {
        let mut c = self.conn().await?;
        let h: BTreeMap<String, String> = c.hgetall(self.key(run_id)).await.map_err(redis_err)?;
        if h.is_empty() {
            return Ok(None);
        }
        let mut s = RunSummary {
            run_id: run_id.to_string(),
            date: h.get("date").cloned().unwrap_or_default(),
            chat_id: h.get("chat_id").cloned().unwrap_or_default(),
            total_pages: h.get("total_pages").and_then(|v| v.parse().ok()),
            recommend: h.get("recommend").cloned(),
            ..Default::default()
        };
        for (k, v) in &h {
            let n: u64 = v.parse().unwrap_or(0);
            if k.starts_with("fetched:") {
                s.pages_fetched += 1;
                s.messages += n;
            } else if k.starts_with("parsed:") {
                s.pages_parsed += 1;
                s.rows += n;
            } else if k.starts_with("written:") {
                s.pages_written += 1;
                s.rows_written += n;
            } else if k.starts_with("skips:") {
                let m: BTreeMap<String, u64> = serde_json::from_str(v).unwrap_or_default();
                for (reason, count) in m {
                    *s.skips.entry(reason).or_default() += count;
                }
            }
        }
        Ok(Some(s))
    }
}

/// If the ledger says every page of the run is written, publish the run's
/// `recommend` (see [`publish_recommend`]). Called by `fetch-day` once it
/// recorded the page total; `insert` learns the same from its coalescer.
pub async fn complete_if_done(
    ctx: &crate::queue::task::TaskContext,
    runs: &RunState,
    sink: &crate::sink::starrocks::SqlSink,
    run_id: &str,
    date: &str,
) -> Result<Option<uuid::Uuid>, TaskError> {
    if sink.complete_runs(&[run_id.to_string()]).await?.is_empty() {
        return Ok(None);
    }
    publish_recommend(ctx, runs, run_id, date).await
}

/// Publish the run's one `recommend` (for its date) once the run barrier,
/// decided on the database ledger, says every page is written; whichever
/// of the run's tasks finishes last calls it. The claim in the run's Redis
/// hash makes it one across redeliveries and workers while Redis keeps its
/// data; if Redis lost it, a second `recommend` may go out, which is
/// harmless (it recomputes the same table), where a missing one is not.
pub async fn publish_recommend(
    ctx: &crate::queue::task::TaskContext,
    runs: &RunState,
    run_id: &str,
    date: &str,
) -> Result<Option<uuid::Uuid>, TaskError> {
    let mut rec = ctx.child_task::<crate::tasks::recommend::Recommend>(
        &crate::tasks::recommend::RecommendArgs {
            date: date.to_string(),
            run_id: Some(run_id.to_string()),
        },
        Some(&format!("recommend:{run_id}")),
    )?;
    rec.run_id = Some(run_id.to_string());
    if !runs.claim_recommend(run_id, &rec.id.to_string()).await? {
        return Ok(None);
    }
    if let Err(e) = ctx.publish_children(vec![rec.clone()]).await {
        runs.release_recommend(run_id).await?;
        return Err(e);
    }
    tracing::info!(run_id, date, "run written; recommend published");
    Ok(Some(rec.id))
}
