//! Revoking queued tasks. An operator (the dashboard) adds task ids to the
//! sorted set `<ns>:revoked` (scored by when); every worker keeps a copy
//! refreshed each [`REFRESH`] and dead-letters a revoked task with reason
//! `revoked` when it is delivered, instead of running it. So a revoke is
//! never lost work: replaying the dead letter runs the task after all.
//! A task delivered within one refresh of its revoke may still run.
//! Entries older than `state.ttl` are dropped.

use std::collections::HashSet;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use crate::redis_pool::Pool;
use chrono::Utc;
use uuid::Uuid;

use crate::state::StateError;

/// How often workers read the revoked set.
pub const REFRESH: Duration = Duration::from_secs(1);

fn key(ns: &str) -> String {
    format!("{ns}:revoked")
}

/// Revoke `id`; true when it was not revoked already.
pub async fn revoke(pool: &Pool, ns: &str, id: &Uuid, ttl: Duration) -> Result<bool, StateError> {
    let mut conn = pool.get().await?;
    let now = Utc::now().timestamp_millis();
    let oldest = now - ttl.as_millis() as i64;
    let (added, _): (i64, i64) = deadpool_redis::redis::pipe()
        .cmd("ZADD")
        .arg(key(ns))
        .arg("NX")
        .arg(now)
        .arg(id.to_string())
        .cmd("ZREMRANGEBYSCORE")
        .arg(key(ns))
        .arg("-inf")
        .arg(oldest)
        .query_async(&mut conn)
        .await?;
    Ok(added == 1)
}

/// Take `ids` out of the revoked set (they were replayed: an operator
/// wants them to run after all).
pub async fn unrevoke(pool: &Pool, ns: &str, ids: &[Uuid]) -> Result<(), StateError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut conn = pool.get().await?;
    let _: i64 = deadpool_redis::redis::cmd("ZREM")
        .arg(key(ns))
        .arg(ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// Whether `id` is revoked (read from Redis).
pub async fn is_revoked(pool: &Pool, ns: &str, id: &Uuid) -> Result<bool, StateError> {
    let mut conn = pool.get().await?;
    let score: Option<f64> = deadpool_redis::redis::cmd("ZSCORE")
        .arg(key(ns))
        .arg(id.to_string())
        .query_async(&mut conn)
        .await?;
    Ok(score.is_some())
}

/// A worker's copy of the revoked set.
#[derive(Default)]
pub struct Revoked {
    ids: RwLock<HashSet<Uuid>>,
}

impl Revoked {
    /// Start refreshing from Redis every [`REFRESH`], until dropped.
    pub fn spawn(pool: Pool, ns: &str) -> Arc<Revoked> {
        let me = Arc::new(Revoked::default());
        let weak: Weak<Revoked> = Arc::downgrade(&me);
        let key = key(ns);
        tokio::spawn(async move {
            while let Some(me) = weak.upgrade() {
                let read = async {
                    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                    deadpool_redis::redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query_async::<Vec<String>>(&mut conn)
                        .await
                        .map_err(|e| e.to_string())
                };
                match tokio::time::timeout(Duration::from_secs(5), read).await {
                    Ok(Ok(ids)) => {
                        let set: HashSet<Uuid> =
                            ids.iter().filter_map(|i| i.parse().ok()).collect();
                        *me.ids.write().expect("not poisoned") = set;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "cannot read revoked tasks; keeping the last copy")
                    }
                    Err(_) => {
                        tracing::debug!("reading revoked tasks timed out; keeping the last copy")
                    }
                }
                drop(me);
                tokio::time::sleep(REFRESH).await;
            }
        });
        me
    }

    pub fn contains(&self, id: &Uuid) -> bool {
        self.ids.read().expect("not poisoned").contains(id)
    }
}
