//! Flapping: a subject (an alarm's label set, a task's health) that changes
//! state more than `threshold` times within `window` is *flapping*. One
//! message says so; then nothing is sent for it until it has been stable
//! (no change) for `window`; then one message gives its state. The alarm
//! task and the health notifier both use this module.
//!
//! State lives in Redis, one hash per subject group (`{ns}:flap:{group}`,
//! field = subject id, value = JSON [`FlapRecord`]), updated under
//! `WATCH`/`MULTI` so concurrent evaluations on several workers agree. An
//! announcement is *owed* in the record until its message is delivered:
//! [`FlapStore::claim`] takes it (`SET NX PX`, like alarm claims), and
//! [`FlapStore::settle`] clears it after the send; a failed send releases
//! the claim and the message is owed still. Losing the hash (Redis restart
//! without persistence) forgets flapping: the next changes count afresh.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::queue::redis_pool::Pool;
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};

use super::alarm::StoreError;
use crate::config::HumanDuration;

/// `flap_threshold` + `flap_window` of a check or a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlapPolicy {
    /// More than this many state changes within `window`: flapping.
    pub threshold: u32,
    pub window: Duration,
}

impl FlapPolicy {
    /// From the two optional config keys: both or neither. The error is
    /// `(key, message)`.
    pub fn from_config(
        threshold: Option<u32>,
        window: Option<HumanDuration>,
    ) -> Result<Option<FlapPolicy>, (String, String)> {
        match (threshold, window) {
            (None, None) => Ok(None),
            (Some(t), Some(w)) => {
                if t < 2 {
                    return Err((
                        "flap_threshold".into(),
                        format!("must be at least 2 (got {t}); try 4"),
                    ));
                }
                if w.0 < Duration::from_secs(1) {
                    return Err(("flap_window".into(), "must be at least 1s".into()));
                }
                Ok(Some(FlapPolicy {
                    threshold: t,
                    window: w.0,
                }))
            }
            (Some(_), None) => Err((
                "flap_window".into(),
                "is required with flap_threshold (e.g. \"30m\")".into(),
            )),
            (None, Some(_)) => Err((
                "flap_threshold".into(),
                "is required with flap_window (e.g. 4)".into(),
            )),
        }
    }
}

/// The message a record owes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owed {
    /// "It is flapping": sent once when flapping starts.
    Flapping,
    /// "Stable again, and this is its state": sent once when it ends.
    Stable,
}

impl Owed {
    pub fn as_str(self) -> &'static str {
        match self {
            Owed::Flapping => "FLAPPING",
            Owed::Stable => "STABLE",
        }
    }
}

/// What is known of one subject.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlapRecord {
    /// The state last observed (firing / ERROR = true).
    pub firing: bool,
    /// When the state changed, ms, within the window.
    pub changes: Vec<i64>,
    /// Flapping since (ms), while flapping.
    pub flapping_since: Option<i64>,
    /// An announcement not delivered yet, and when it became owed (ms).
    pub owed: Option<(Owed, i64)>,
    /// What the subject looked like when last firing (the alarm), so an
    /// announcement can name it while it is OK.
    #[serde(default)]
    pub detail: serde_json::Value,
}

impl FlapRecord {
    /// Observe `firing` at `now` (ms). Returns the state changes counted
    /// within the window.
    pub fn observe(&mut self, firing: bool, now: i64, p: &FlapPolicy) {
        if firing != self.firing {
            self.changes.push(now);
            self.firing = firing;
        }
        let oldest = now - p.window.as_millis() as i64;
        self.changes.retain(|t| *t > oldest);
        match self.flapping_since {
            None if self.changes.len() > p.threshold as usize => {
                self.flapping_since = Some(now);
                self.owed = Some((Owed::Flapping, now));
            }
            Some(_) if self.changes.is_empty() => {
                // No change for a whole window: stable.
                self.flapping_since = None;
                self.owed = Some((Owed::Stable, now));
            }
            _ => {}
        }
    }

    /// Whether the normal messages of this subject are held back: while it
    /// flaps, and while an announcement (which carries its state) is owed.
    pub fn suppressed(&self) -> bool {
        self.flapping_since.is_some() || self.owed.is_some()
    }

    /// Nothing worth keeping: OK, no recent change, nothing owed.
    fn idle(&self) -> bool {
        !self.firing && self.changes.is_empty() && !self.suppressed()
    }
}

/// A record whose announcement this caller claimed.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: String,
    pub record: FlapRecord,
    pub owed: (Owed, i64),
    /// The claim key (released on failure).
    pub key: String,
}

/// The Redis side of flapping for one namespace.
#[derive(Clone)]
pub struct FlapStore {
    pool: Pool,
    ns: String,
}

impl FlapStore {
    pub fn new(pool: Pool, namespace: &str) -> FlapStore {
        FlapStore {
            pool,
            ns: namespace.to_string(),
        }
    }

    /// The hash of a group (`alarm:CHECK`, `health`).
    pub fn key(&self, group: &str) -> String {
        format!("{}:flap:{group}", self.ns)
    }

    fn claim_key(&self, group: &str, id: &str) -> String {
        format!("{}:flap-claim:{group}:{id}", self.ns)
    }

    async fn conn(&self) -> Result<crate::queue::redis_pool::Connection, StoreError> {
        self.pool.get().await.map_err(|e| StoreError(e.to_string()))
    }

    /// Observe the states of `observed` (id → firing, detail) at `now`;
    /// every other subject of the group that is tracked is observed as OK,
    /// except the ids in `unknown` (no data, state kept). Returns every
    /// record of the group after the update. Atomic across workers.
    pub async fn observe(
        &self,
        group: &str,
        observed: &BTreeMap<String, serde_json::Value>,
        unknown: &[String],
        now: i64,
        p: &FlapPolicy,
    ) -> Result<BTreeMap<String, FlapRecord>, StoreError> {
        let key = self.key(group);
        let mut c = self.conn().await?;
        let re = |e: redis::RedisError| StoreError(e.to_string());
        for _ in 0..16 {
            let _: () = redis::cmd("WATCH")
                .arg(&key)
                .query_async(&mut c)
                .await
                .map_err(re)?;
            let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut c)
                .await
                .map_err(re)?;
            let mut records: BTreeMap<String, FlapRecord> = raw
                .iter()
                .filter_map(|(id, v)| Some((id.clone(), serde_json::from_str(v).ok()?)))
                .collect();
            for id in observed.keys() {
                records.entry(id.clone()).or_default();
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            let mut gone = Vec::new();
            for (id, r) in records.iter_mut() {
                if unknown.contains(id) {
                    continue;
                }
                let firing = observed.get(id);
                r.observe(firing.is_some(), now, p);
                if let Some(d) = firing {
                    r.detail = d.clone();
                }
                if r.idle() {
                    gone.push(id.clone());
                } else {
                    let json = serde_json::to_string(r).map_err(|e| StoreError(e.to_string()))?;
                    pipe.cmd("HSET").arg(&key).arg(id).arg(json).ignore();
                }
            }
            if !gone.is_empty() {
                pipe.cmd("HDEL").arg(&key).arg(&gone).ignore();
            }
            // Forgotten after a day without evaluations.
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg((p.window.as_millis() as u64 * 2).max(86_400_000))
                .ignore();
            let done: Option<()> = pipe.query_async(&mut c).await.map_err(re)?;
            if done.is_some() {
                for id in gone {
                    records.remove(&id);
                }
                return Ok(records);
            }
        }
        Err(StoreError(format!(
            "flap state of {group}: too many concurrent updates"
        )))
    }

    /// Claim the owed announcements among `ids` (`SET NX PX ttl`): the ones
    /// this caller must send.
    pub async fn claim(
        &self,
        group: &str,
        records: &BTreeMap<String, FlapRecord>,
        ids: &[&str],
        token: &str,
        ttl: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let owed: Vec<(&str, &FlapRecord, (Owed, i64))> = ids
            .iter()
            .filter_map(|id| {
                let r = records.get(*id)?;
                Some((*id, r, r.owed?))
            })
            .collect();
        if owed.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, _, _) in &owed {
            pipe.cmd("SET")
                .arg(self.claim_key(group, id))
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64);
        }
        let mut c = self.conn().await?;
        let got: Vec<Option<String>> = pipe
            .query_async(&mut c)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(owed
            .into_iter()
            .zip(got)
            .filter(|(_, g)| g.is_some())
            .map(|((id, r, owed), _)| Claimed {
                id: id.to_string(),
                record: r.clone(),
                owed,
                key: self.claim_key(group, id),
            })
            .collect())
    }

    /// After the announcements of `claimed` were delivered: clear what they
    /// owed (unless a newer announcement replaced it meanwhile) and drop
    /// the claims.
    pub async fn settle(&self, group: &str, claimed: &[Claimed]) -> Result<(), StoreError> {
        if claimed.is_empty() {
            return Ok(());
        }
        let key = self.key(group);
        let mut c = self.conn().await?;
        let re = |e: redis::RedisError| StoreError(e.to_string());
        for _ in 0..16 {
            let _: () = redis::cmd("WATCH")
                .arg(&key)
                .query_async(&mut c)
                .await
                .map_err(re)?;
            let ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
            let raw: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&key)
                .arg(&ids)
                .query_async(&mut c)
                .await
                .map_err(re)?;
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (cl, v) in claimed.iter().zip(raw) {
                let Some(mut r) = v.and_then(|v| serde_json::from_str::<FlapRecord>(&v).ok())
                else {
                    continue;
                };
                if r.owed == Some(cl.owed) {
                    r.owed = None;
                    if r.idle() {
                        pipe.cmd("HDEL").arg(&key).arg(&cl.id).ignore();
                    } else {
                        let json =
                            serde_json::to_string(&r).map_err(|e| StoreError(e.to_string()))?;
                        pipe.cmd("HSET").arg(&key).arg(&cl.id).arg(json).ignore();
                    }
                }
            }
            for cl in claimed {
                pipe.cmd("DEL").arg(&cl.key).ignore();
            }
            let done: Option<()> = pipe.query_async(&mut c).await.map_err(re)?;
            if done.is_some() {
                return Ok(());
            }
        }
        Err(StoreError(format!(
            "flap state of {group}: too many concurrent updates"
        )))
    }

    /// Every record of a group (read-only, for pages and `--dry-run`).
    pub async fn records(&self, group: &str) -> Result<BTreeMap<String, FlapRecord>, StoreError> {
        let mut c = self.conn().await?;
        let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key(group))
            .query_async(&mut c)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, v)| Some((id, serde_json::from_str(&v).ok()?)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> FlapPolicy {
        FlapPolicy {
            threshold: 3,
            window: Duration::from_secs(600),
        }
    }

    #[test]
    fn flapping_starts_past_the_threshold_and_ends_after_a_stable_window() {
        let mut r = FlapRecord::default();
        let min = 60_000;
        // fire, resolve, fire: three changes, not more than 3.
        for (i, s) in [true, false, true].into_iter().enumerate() {
            r.observe(s, i as i64 * min, &p());
            assert!(!r.suppressed(), "change {i}");
        }
        // The fourth change within 10 minutes: flapping, announced once.
        r.observe(false, 3 * min, &p());
        assert_eq!(r.flapping_since, Some(3 * min));
        assert_eq!(r.owed, Some((Owed::Flapping, 3 * min)));
        r.owed = None; // delivered
        r.observe(true, 4 * min, &p());
        r.observe(false, 5 * min, &p());
        assert!(r.suppressed());
        assert_eq!(r.owed, None, "no second flapping message");
        // Stable (OK) from minute 5: still flapping at minute 14 ...
        r.observe(false, 14 * min, &p());
        assert!(r.flapping_since.is_some());
        // ... stable for the whole window at minute 15: one stable message.
        r.observe(false, 15 * min, &p());
        assert_eq!(r.flapping_since, None);
        assert_eq!(r.owed, Some((Owed::Stable, 15 * min)));
        assert!(!r.firing);
        r.owed = None;
        assert!(r.idle());
    }

    #[test]
    fn slow_changes_never_flap() {
        let mut r = FlapRecord::default();
        for i in 0..20 {
            r.observe(i % 2 == 0, i * 300_000, &p()); // every 5 minutes
            assert!(!r.suppressed(), "change {i}");
        }
    }

    #[test]
    fn config_takes_both_keys_or_neither() {
        let w = Some(HumanDuration(Duration::from_secs(1800)));
        assert_eq!(FlapPolicy::from_config(None, None), Ok(None));
        assert!(FlapPolicy::from_config(Some(4), w).unwrap().is_some());
        assert_eq!(
            FlapPolicy::from_config(Some(4), None).unwrap_err().0,
            "flap_window"
        );
        assert_eq!(
            FlapPolicy::from_config(None, w).unwrap_err().0,
            "flap_threshold"
        );
        assert_eq!(
            FlapPolicy::from_config(Some(1), w).unwrap_err().0,
            "flap_threshold"
        );
    }
}
