//! Alarm dedup in Redis, shared by every worker (`reliability-perf.md` §3.4, §4).
//!
//! Keys (all under the namespace, so tests and `bench` clean them up):
//! - `{ns}:alarm:{check}:{labels}` — the alarm was notified; lives
//!   `repeat_interval`. While a worker is sending it, it holds a claim token
//!   instead, with a short TTL (the longest a send can take).
//! - `{ns}:alarm-active:{check}` — hash `labels` → the firing alarm as last
//!   notified, with when it started: what a later evaluation resolves.
//! - `{ns}:alarm-resolving:{check}:{labels}` — claim of a resolved message.
//!
//! A firing alarm is sent only by the worker whose `SET NX PX` claim
//! succeeds; after the send the key is set to `sent` for the full
//! `repeat_interval`, and on failure the claim is released (compare-and-
//! delete), so a failed send never leaves a key behind and never loses the
//! alarm. A resolved alarm is claimed the same way, and the claim counts
//! only if the alarm is still in the active hash after it is taken; the
//! successful sender removes it from the hash before dropping its claim, so
//! two workers never both send it. Like Alertmanager this is at-least-once:
//! a crash between a send and its confirmation repeats the alarm once the
//! claim expires.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use crate::queue::redis_pool::Pool;
use deadpool_redis::redis::{self, Script};

use super::check::ActiveAlarm;

/// A Redis failure, as text.
#[derive(Debug, Clone, thiserror::Error)]
#[error("alarm dedup (redis): {0}")]
pub struct StoreError(pub String);

fn re(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Delete each `KEYS[i]` whose value is `ARGV[1]` (our claim).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k); n = n + 1 end
end
return n
"#,
    )
});

/// Take resolved claims: for each id `ARGV[i+2]` (key `KEYS[i+1]`), `SET NX PX`
/// and keep it only if the id is still in the active hash `KEYS[1]`.
/// Returns 1/0 per id.
static CLAIM_RESOLVING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
for i = 2, #KEYS do
  local id = ARGV[i + 1]
  local got = 0
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then got = 1 end
  end
  out[#out + 1] = got
end
return out
"#,
    )
});

/// After a resolved message: remove from the active hash, drop the firing
/// key, then the claim. KEYS[1] active hash; then pairs (firing, resolving);
/// ARGV ids.
static FINISH_RESOLVED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i, id in ipairs(ARGV) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('DEL', KEYS[2 * i])
  redis.call('DEL', KEYS[2 * i + 1])
end
return #ARGV
"#,
    )
});

/// What the firing key of an alarm says now.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FiringState {
    /// Not notified (or its repeat interval passed): would be sent.
    Due,
    /// Notified; sent again after `remaining`.
    Sent {
        #[serde(with = "ms")]
        remaining: Duration,
    },
    /// A worker is sending it now.
    Claimed,
}

mod ms {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// The Redis side of alarm dedup for one namespace.
#[derive(Clone)]
pub struct AlarmStore {
    pool: Pool,
    ns: String,
}

impl AlarmStore {
    pub fn new(pool: Pool, namespace: &str) -> AlarmStore {
        AlarmStore {
            pool,
            ns: namespace.to_string(),
        }
    }

    pub fn firing_key(&self, check: &str, id: &str) -> String {
        format!("{}:alarm:{check}:{id}", self.ns)
    }
    pub fn active_key(&self, check: &str) -> String {
        format!("{}:alarm-active:{check}", self.ns)
    }
    pub fn resolving_key(&self, check: &str, id: &str) -> String {
        format!("{}:alarm-resolving:{check}:{id}", self.ns)
    }

    pub fn pending_key(&self, check: &str) -> String {
        format!("{}:alarm-pending:{check}", self.ns)
    }

    /// Note that `firing` hold now (`now_ms`) and forget the pending alarms
    /// of `check` that no longer do; returns, for each of `firing`, since
    /// when (ms) it has held without a break. One pipeline; the hash
    /// expires after `keep` without an evaluation.
    pub async fn pending(
        &self,
        check: &str,
        firing: &[&str],
        now_ms: i64,
        keep: Duration,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let key = self.pending_key(check);
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        for id in firing {
            pipe.cmd("HSETNX").arg(&key).arg(*id).arg(now_ms).ignore();
        }
        pipe.cmd("HGETALL").arg(&key);
        let (all,): (BTreeMap<String, i64>,) = pipe.query_async(&mut c).await.map_err(re)?;
        let gone: Vec<&String> = all
            .keys()
            .filter(|k| !firing.contains(&k.as_str()))
            .collect();
        let mut pipe = redis::pipe();
        if !gone.is_empty() {
            pipe.cmd("HDEL").arg(&key).arg(gone).ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(keep.as_millis() as u64)
            .ignore();
        pipe.query_async::<()>(&mut c).await.map_err(re)?;
        Ok(all
            .into_iter()
            .filter(|(k, _)| firing.contains(&k.as_str()))
            .collect())
    }

    pub fn seen_key(&self, check: &str) -> String {
        format!("{}:alarm-seen:{check}", self.ns)
    }

    /// Note the label sets that `reported` now (`now_ms`) and return every
    /// label set of `check` seen within `forget`, with when it last
    /// reported (older ones are dropped: a host gone for good stops being
    /// expected).
    pub async fn seen(
        &self,
        check: &str,
        reported: &BTreeMap<String, BTreeMap<String, String>>,
        now_ms: i64,
        forget: Duration,
    ) -> Result<BTreeMap<String, (BTreeMap<String, String>, i64)>, StoreError> {
        let key = self.seen_key(check);
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        for (id, labels) in reported {
            let v = serde_json::json!({"labels": labels, "at": now_ms}).to_string();
            pipe.cmd("HSET").arg(&key).arg(id).arg(v).ignore();
        }
        pipe.cmd("HGETALL").arg(&key);
        let (all,): (BTreeMap<String, String>,) = pipe.query_async(&mut c).await.map_err(re)?;
        let oldest = now_ms - forget.as_millis() as i64;
        let mut out = BTreeMap::new();
        let mut stale = Vec::new();
        for (id, raw) in all {
            let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
            let at = v["at"].as_i64().unwrap_or(0);
            let labels: BTreeMap<String, String> =
                serde_json::from_value(v["labels"].clone()).unwrap_or_default();
            if at < oldest {
                stale.push(id);
            } else {
                out.insert(id, (labels, at));
            }
        }
        if !stale.is_empty() {
            let _: () = redis::cmd("HDEL")
                .arg(&key)
                .arg(stale)
                .query_async(&mut c)
                .await
                .map_err(re)?;
        }
        Ok(out)
    }

    async fn conn(&self) -> Result<crate::queue::redis_pool::Connection, StoreError> {
        self.pool.get().await.map_err(re)
    }

    /// Alarms notified as firing and not resolved yet, by id.
    pub async fn active(&self, check: &str) -> Result<BTreeMap<String, ActiveAlarm>, StoreError> {
        let mut c = self.conn().await?;
        let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.active_key(check))
            .query_async(&mut c)
            .await
            .map_err(re)?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, json)| match serde_json::from_str(&json) {
                Ok(a) => Some((id, a)),
                Err(e) => {
                    tracing::warn!(check, id, error = %e, "unreadable active alarm ignored");
                    None
                }
            })
            .collect())
    }

    /// `SET NX PX` a claim on each firing alarm; true where this call got it.
    pub async fn claim_firing(
        &self,
        check: &str,
        ids: &[&str],
        token: &str,
        ttl: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for id in ids {
            p.cmd("SET")
                .arg(self.firing_key(check, id))
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64);
        }
        let mut c = self.conn().await?;
        let got: Vec<Option<String>> = p.query_async(&mut c).await.map_err(re)?;
        Ok(got.into_iter().map(|g| g.is_some()).collect())
    }

    /// Claim resolved messages (only ids still active count).
    pub async fn claim_resolving(
        &self,
        check: &str,
        ids: &[&str],
        token: &str,
        ttl: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = CLAIM_RESOLVING.prepare_invoke();
        inv.key(self.active_key(check));
        for id in ids {
            inv.key(self.resolving_key(check, id));
        }
        inv.arg(token).arg(ttl.as_millis().max(1) as u64);
        for id in ids {
            inv.arg(*id);
        }
        let mut c = self.conn().await?;
        let got: Vec<i64> = inv.invoke_async(&mut c).await.map_err(re)?;
        Ok(got.into_iter().map(|g| g == 1).collect())
    }

    /// Release claims this worker holds (firing and resolving).
    pub async fn release(&self, keys: &[String], token: &str) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut inv = RELEASE.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        inv.arg(token);
        let mut c = self.conn().await?;
        let _: i64 = inv.invoke_async(&mut c).await.map_err(re)?;
        Ok(())
    }

    /// After a firing send: each key becomes `sent` for `repeat`, and the
    /// alarm is recorded as active.
    pub async fn confirm_firing(
        &self,
        check: &str,
        alarms: &[(&str, ActiveAlarm)],
        repeat: Duration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if alarms.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        for (id, a) in alarms {
            p.cmd("SET")
                .arg(self.firing_key(check, id))
                .arg(format!("sent:{now_ms}"))
                .arg("PX")
                .arg(repeat.as_millis().max(1) as u64)
                .ignore();
            let json = serde_json::to_string(a).map_err(re)?;
            p.cmd("HSET")
                .arg(self.active_key(check))
                .arg(*id)
                .arg(json)
                .ignore();
        }
        let mut c = self.conn().await?;
        p.query_async::<()>(&mut c).await.map_err(re)
    }

    /// After a resolved send (or, without `send_resolved`, at once): forget
    /// the alarms, so the next time they fire they are new.
    pub async fn finish_resolved(&self, check: &str, ids: &[&str]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut inv = FINISH_RESOLVED.prepare_invoke();
        inv.key(self.active_key(check));
        for id in ids {
            inv.key(self.firing_key(check, id));
            inv.key(self.resolving_key(check, id));
            inv.arg(*id);
        }
        let mut c = self.conn().await?;
        let _: i64 = inv.invoke_async(&mut c).await.map_err(re)?;
        Ok(())
    }

    /// Read-only: when each alarm was last notified as firing, as its firing
    /// key says (`None`: its repeat interval passed, or a send is under way).
    pub async fn last_sent(
        &self,
        check: &str,
        ids: &[&str],
    ) -> Result<Vec<Option<chrono::DateTime<chrono::Utc>>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for id in ids {
            cmd.arg(self.firing_key(check, id));
        }
        let mut c = self.conn().await?;
        let values: Vec<Option<String>> = cmd.query_async(&mut c).await.map_err(re)?;
        Ok(values
            .into_iter()
            .map(|v| {
                v.and_then(|v| v.strip_prefix("sent:")?.parse::<i64>().ok())
                    .and_then(chrono::DateTime::from_timestamp_millis)
            })
            .collect())
    }

    /// Read-only: the state of each firing key (for `checks run --dry-run`).
    pub async fn peek(&self, check: &str, ids: &[&str]) -> Result<Vec<FiringState>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for id in ids {
            let k = self.firing_key(check, id);
            p.cmd("GET").arg(&k).cmd("PTTL").arg(&k);
        }
        let mut c = self.conn().await?;
        let raw: Vec<redis::Value> = p.query_async(&mut c).await.map_err(re)?;
        let mut out = Vec::new();
        for pair in raw.chunks(2) {
            let value: Option<String> = redis::from_redis_value(pair[0].clone()).unwrap_or(None);
            let pttl: i64 = redis::from_redis_value(pair[1].clone()).unwrap_or(-2);
            out.push(match value {
                None => FiringState::Due,
                Some(v) if v.starts_with("sent:") => FiringState::Sent {
                    remaining: Duration::from_millis(pttl.max(0) as u64),
                },
                Some(_) => FiringState::Claimed,
            });
        }
        Ok(out)
    }
}
