//! `influx-check` (queue `influx`, args `{"check": NAME}`, usually published
//! by beat every minute): query the check's InfluxDB source, evaluate the
//! rows into firing alarms, and send what the Redis dedup lets through
//! (new or repeat-due firing alarms, and resolved ones) as ONE grouped
//! message to the check's receiver. See `notify::alarm` for the dedup.
//!
//! Errors: an unknown check, a failing statement, a rejected signature or
//! token are fatal (dead-lettered, and the health notifier says ERROR);
//! network trouble, 5xx, the bot's 11232 and Redis trouble are retried, with
//! every claim released first so nothing is lost or left behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::queue::redis_pool::Pool;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::{AppConfig, ConfigError};
use crate::influx::InfluxClient;
use crate::influx::Row;
use crate::notify::alarm::{AlarmStore, FiringState};
use crate::notify::check::{
    ActiveAlarm, Alarm, CheckConfig, Evaluation, FlapNote, NoData, evaluate, grouped_notification,
};
use crate::notify::flap::{Claimed, FlapStore, Owed};
use crate::notify::{Receivers, truncate};
use crate::queue::ratelimit::RateLimiter;
use crate::queue::task::{InvalidArgs, Task, TaskContext, TaskError};

/// Holds the worker's one [`CheckRunner`] (HTTP pools, receivers).
pub struct InfluxCheck {
    runner: Arc<CheckRunner>,
}

impl InfluxCheck {
    /// With the process's one runner (shared with `watchdog`).
    pub fn new(runner: Arc<CheckRunner>) -> InfluxCheck {
        InfluxCheck { runner }
    }
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct InfluxCheckArgs {
    /// `[[checks]].name`.
    pub check: String,
}

impl Task for InfluxCheck {
    const NAME: &'static str = "influx-check";
    type Args = InfluxCheckArgs;

    fn queue(&self) -> &'static str {
        "influx"
    }

    fn validate(&self, a: &InfluxCheckArgs) -> Result<(), InvalidArgs> {
        let config = &self.runner.config;
        if config.checks.iter().any(|c| c.name == a.check) {
            return Ok(());
        }
        let known: Vec<&str> = config.checks.iter().map(|c| c.name.as_str()).collect();
        Err(InvalidArgs::field(
            "check",
            format!(
                "{:?} is not a [[checks]] name in the config (known: {})",
                a.check,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ))
    }

    async fn run(&self, _ctx: &TaskContext, a: InfluxCheckArgs) -> Result<(), TaskError> {
        let report = self.runner.run(&a.check, false).await?;
        info!(
            check = %a.check,
            rows = report.rows,
            firing = report.firing.len(),
            sent_firing = report.sent_firing.len(),
            sent_resolved = report.sent_resolved.len(),
            deduplicated = report.deduplicated.len(),
            "check evaluated"
        );
        Ok(())
    }
}

/// What one evaluation found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    pub check: String,
    pub rows: usize,
    /// Rows without a numeric value.
    pub skipped: usize,
    pub firing: Vec<Alarm>,
    /// Firing alarm keys sent now (new, or repeat interval passed).
    pub sent_firing: Vec<String>,
    /// Firing alarm keys not sent: notified within the repeat interval, or
    /// being sent by another worker.
    pub deduplicated: Vec<String>,
    /// Alarm keys resolved and notified now.
    pub sent_resolved: Vec<String>,
    /// Alarm keys resolved silently (`send_resolved = false`).
    pub cleared: Vec<String>,
    /// Firing alarm keys matched by a silence: recorded, not sent.
    #[serde(default)]
    pub silenced: Vec<String>,
    /// Firing alarm keys whose condition has not held for the check's
    /// `for` yet.
    #[serde(default)]
    pub pending: Vec<String>,
    /// Alarm keys held back because they flap (or a flapping announcement
    /// is owed for them).
    #[serde(default)]
    pub flapping: Vec<String>,
    /// Flapping announcements sent now: `FLAPPING key` or `STABLE key`.
    #[serde(default)]
    pub announced: Vec<String>,
    /// The title of the message sent, if one was.
    pub message: Option<String>,
    /// Dry run: what the dedup state says of each firing alarm, and which
    /// active alarms would resolve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRun>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DryRun {
    pub firing: BTreeMap<String, FiringState>,
    pub would_resolve: Vec<String>,
}

/// A label set that has not reported for this long is no longer expected
/// (no no-data alarm for a host gone for good).
const NO_DATA_FORGET: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What the notification ledger keeps of an alarm.
fn ledger_labels(a: &Alarm) -> serde_json::Value {
    serde_json::json!({"labels": a.labels, "value": a.value, "severity": a.severity})
}

/// Evaluates checks and sends their alarms; one per worker (or CLI run).
pub struct CheckRunner {
    config: Arc<AppConfig>,
    store: AlarmStore,
    flaps: FlapStore,
    receivers: Receivers,
    sources: BTreeMap<String, InfluxClient>,
    /// Where the notification ledger is written.
    ledger: crate::sink::starrocks::SqlSink,
}

impl CheckRunner {
    pub fn new(
        config: Arc<AppConfig>,
        redis: Pool,
        limiter: Option<RateLimiter>,
    ) -> Result<CheckRunner, ConfigError> {
        let mut sources = BTreeMap::new();
        for (name, src) in &config.influx.sources {
            let client = InfluxClient::new(src)
                .map_err(|e| config.invalid(&format!("influx.sources.{name}"), &e.to_string()))?;
            sources.insert(name.clone(), client);
        }
        Ok(CheckRunner {
            store: AlarmStore::new(redis.clone(), &config.namespace),
            flaps: FlapStore::new(redis, &config.namespace),
            receivers: Receivers::from_config(&config, limiter)
                .map_err(|m| config.invalid("receivers", &m.to_string()))?,
            sources,
            ledger: crate::sink::starrocks::SqlSink::new(&config),
            config,
        })
    }

    /// The silences in force for check `name`; `until_resolved` ones that
    /// match none of the `firing` alarms are expired first (their alarm
    /// resolved).
    async fn silences(
        &self,
        name: &str,
        firing: &BTreeMap<String, Alarm>,
    ) -> Vec<crate::notify::silence::Silence> {
        let now = crate::sink::ledger::now();
        let all = crate::notify::silence::in_force(&self.ledger, now, name).await;
        let mut out = Vec::new();
        for mut s in all.into_iter().filter(|s| s.check.as_deref() == Some(name)) {
            if s.until_resolved && !firing.values().any(|a| s.matches(Some(name), &a.labels)) {
                s.expired_at = Some(now);
                s.expired_by = "resolved".into();
                match self.ledger.record_silence(&s).await {
                    Ok(()) => {
                        tracing::info!(check = name, silence = %s.id, "silence expired: what it matched resolved")
                    }
                    Err(e) => {
                        tracing::warn!(check = name, silence = %s.id, error = %e, "cannot expire the silence")
                    }
                }
                continue;
            }
            out.push(s);
        }
        out
    }

    /// Record what became of `alarms` (event, labels) sent to `receiver`
    /// in a message titled `title`: `outcome`, after `attempts`, `error`.
    async fn record(
        &self,
        check: &str,
        receiver: &str,
        title: &str,
        alarms: Vec<(&'static str, serde_json::Value)>,
        (outcome, attempts, error): (&str, u32, &str),
    ) {
        let at = crate::sink::ledger::now();
        let records: Vec<_> = alarms
            .into_iter()
            .map(
                |(event, labels)| crate::sink::notifications::NotificationRecord {
                    id: uuid::Uuid::now_v7().to_string(),
                    at,
                    source: "alarm".into(),
                    subject: check.to_string(),
                    event: event.into(),
                    labels,
                    receiver: receiver.to_string(),
                    outcome: outcome.into(),
                    attempts,
                    error: error.to_string(),
                    title: title.to_string(),
                },
            )
            .collect();
        crate::notify::record_notifications(&self.ledger, &records).await;
    }

    pub fn check(&self, name: &str) -> Result<&CheckConfig, TaskError> {
        self.config
            .checks
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.config.checks.iter().map(|c| c.name.as_str()).collect();
                TaskError::fatal(format!(
                    "no check named {name:?} in the config (checks: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }

    /// Query, evaluate, dedup and (unless `dry_run`) send.
    pub async fn run(&self, name: &str, dry_run: bool) -> Result<CheckReport, TaskError> {
        let check = self.check(name)?;
        let client = self.sources.get(&check.source).ok_or_else(|| {
            TaskError::fatal(format!(
                "check {name}: no [influx.sources.{}] is configured",
                check.source
            ))
        })?;
        let rows = client
            .query(&check.query)
            .await
            .map_err(|e| with_prefix(&format!("check {name}: "), e.into()))?;
        let ev = evaluate(check, &rows);
        self.process(check, ev, &rows, dry_run).await
    }

    /// The notification layer of an evaluation, whatever produced it (an
    /// InfluxDB check, a watchdog): `for`, no data, flapping, silences,
    /// dedup, one grouped message, the ledger.
    pub async fn process(
        &self,
        check: &CheckConfig,
        mut ev: Evaluation,
        rows: &[Row],
        dry_run: bool,
    ) -> Result<CheckReport, TaskError> {
        let name = check.name.as_str();
        let receiver = self.receivers.get(&check.receiver).ok_or_else(|| {
            TaskError::fatal(format!(
                "check {name}: no [receivers.{}] is configured",
                check.receiver
            ))
        })?;
        let redis_err = |e: crate::notify::alarm::StoreError| TaskError::retry(e);
        let active = self.store.active(name).await.map_err(redis_err)?;
        // No data: label sets that reported before and are missing now.
        let mut kept: Vec<String> = Vec::new();
        if check.no_data != NoData::Ok {
            let now_ms = Utc::now().timestamp_millis();
            let reported = crate::notify::check::reported(check, rows);
            let seen = self
                .store
                .seen(name, &reported, now_ms, NO_DATA_FORGET)
                .await
                .map_err(redis_err)?;
            for (id, (labels, at)) in seen.iter().filter(|(id, _)| !reported.contains_key(*id)) {
                match check.no_data {
                    NoData::Alert => {
                        let last = chrono::DateTime::from_timestamp_millis(*at).unwrap_or_default();
                        let a = crate::notify::check::no_data_alarm(check, labels, last);
                        ev.firing.insert(a.key(), a);
                    }
                    NoData::Keep => kept.push(id.clone()),
                    NoData::Ok => {}
                }
            }
        }
        let mut resolved_ids: Vec<&str> = active
            .keys()
            .filter(|k| !ev.firing.contains_key(*k) && !kept.contains(k))
            .map(String::as_str)
            .collect();
        let firing_ids: Vec<&str> = ev.firing.keys().map(String::as_str).collect();
        let mut report = CheckReport {
            check: name.to_string(),
            rows: ev.rows,
            skipped: ev.skipped,
            firing: ev.firing.values().cloned().collect(),
            ..CheckReport::default()
        };
        if dry_run {
            if check.flap().is_some() {
                let records = self
                    .flaps
                    .records(&format!("alarm:{name}"))
                    .await
                    .map_err(redis_err)?;
                report.flapping = records
                    .into_iter()
                    .filter(|(_, r)| r.suppressed())
                    .map(|(id, _)| id)
                    .collect();
            }
            let states = self
                .store
                .peek(name, &firing_ids)
                .await
                .map_err(redis_err)?;
            report.dry_run = Some(DryRun {
                firing: firing_ids
                    .iter()
                    .map(|s| s.to_string())
                    .zip(states)
                    .collect(),
                would_resolve: resolved_ids.iter().map(|s| s.to_string()).collect(),
            });
            return Ok(report);
        }

        // `for`: an alarm fires once its condition has held that long
        // without a break (kept in Redis: across workers and restarts).
        let mut firing_ids: Vec<&str> = match check.for_ {
            Some(hold) if !hold.0.is_zero() => {
                let now_ms = Utc::now().timestamp_millis();
                let keep = (hold.0 * 4).max(std::time::Duration::from_secs(3600));
                let since = self
                    .store
                    .pending(name, &firing_ids, now_ms, keep)
                    .await
                    .map_err(redis_err)?;
                let held = hold.0.as_millis() as i64;
                firing_ids
                    .into_iter()
                    .filter(|id| {
                        let ok = since.get(*id).is_some_and(|t| now_ms - t >= held)
                            || active.contains_key(*id);
                        if !ok {
                            report.pending.push(id.to_string());
                        }
                        ok
                    })
                    .collect()
            }
            _ => firing_ids,
        };
        // Flapping alarms are held back; their announcements are owed.
        let flap_group = format!("alarm:{name}");
        let flap_records = match check.flap() {
            Some(p) => {
                let observed: BTreeMap<String, serde_json::Value> = firing_ids
                    .iter()
                    .map(|id| {
                        let alarm = serde_json::to_value(&ev.firing[*id]).unwrap_or_default();
                        (id.to_string(), alarm)
                    })
                    .collect();
                let now_ms = Utc::now().timestamp_millis();
                let records = self
                    .flaps
                    .observe(&flap_group, &observed, &kept, now_ms, &p)
                    .await
                    .map_err(redis_err)?;
                let held = |id: &str| records.get(id).is_some_and(|r| r.suppressed());
                firing_ids.retain(|id| !held(id));
                resolved_ids.retain(|id| !held(id));
                // The changes they make while held back, in the ledger.
                let changes: Vec<(&'static str, serde_json::Value)> = records
                    .iter()
                    .filter(|(_, r)| r.suppressed() && r.changes.last() == Some(&now_ms))
                    .map(|(id, r)| {
                        report.flapping.push(id.clone());
                        let event = if r.firing { "firing" } else { "resolved" };
                        (event, flap_labels(r))
                    })
                    .collect();
                report.flapping.extend(
                    records
                        .iter()
                        .filter(|(id, r)| r.suppressed() && !report.flapping.contains(*id))
                        .map(|(id, _)| id.clone())
                        .collect::<Vec<_>>(),
                );
                self.record(name, receiver.name(), "", changes, ("flapping", 0, ""))
                    .await;
                records
            }
            None => BTreeMap::new(),
        };
        // Silenced alarms are recorded and left out: never claimed nor
        // marked sent, so the first evaluation after the silence ends sends
        // them at once.
        let silences = self.silences(name, &ev.firing).await;
        let now_l = crate::sink::ledger::now();
        // Owed flapping announcements, unless silenced.
        let mut announce: Vec<&str> = Vec::new();
        let mut silenced_flaps = Vec::new();
        for (id, r) in flap_records.iter().filter(|(_, r)| r.owed.is_some()) {
            let Some(alarm) = flap_alarm(r) else { continue };
            match crate::notify::silence::silenced_by(&silences, now_l, Some(name), &alarm.labels) {
                Some(s) => {
                    let mut labels = flap_labels(r);
                    labels["silence"] = serde_json::json!(s.id);
                    silenced_flaps.push((owed_event(r.owed), labels));
                }
                None => announce.push(id),
            }
        }
        self.record(
            name,
            receiver.name(),
            "",
            silenced_flaps,
            ("silenced", 0, ""),
        )
        .await;
        let mut silenced = Vec::new();
        let firing_ids: Vec<&str> = firing_ids
            .into_iter()
            .filter(|id| {
                let a = &ev.firing[*id];
                match crate::notify::silence::silenced_by(&silences, now_l, Some(name), &a.labels) {
                    Some(s) => {
                        let event = if active.contains_key(*id) {
                            "repeat"
                        } else {
                            "firing"
                        };
                        let mut labels = ledger_labels(a);
                        labels["silence"] = serde_json::json!(s.id);
                        silenced.push((event, labels));
                        report.silenced.push(id.to_string());
                        false
                    }
                    None => true,
                }
            })
            .collect();
        self.record(name, receiver.name(), "", silenced, ("silenced", 0, ""))
            .await;
        let token = format!("claim:{}", uuid::Uuid::new_v4().simple());
        let claim_ttl = receiver.config().max_send_time();
        let flap_claims = self
            .flaps
            .claim(&flap_group, &flap_records, &announce, &token, claim_ttl)
            .await
            .map_err(redis_err)?;
        let flap_keys: Vec<String> = flap_claims.iter().map(|c| c.key.clone()).collect();
        let got = self
            .store
            .claim_firing(name, &firing_ids, &token, claim_ttl)
            .await;
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                let _ = self.store.release(&flap_keys, &token).await;
                return Err(redis_err(e));
            }
        };
        let mut send_firing: Vec<&str> = Vec::new();
        for (id, ok) in firing_ids.iter().zip(&got) {
            if *ok {
                send_firing.push(id);
            } else {
                report.deduplicated.push(id.to_string());
            }
        }
        let dedup: Vec<(&'static str, serde_json::Value)> = report
            .deduplicated
            .iter()
            .map(|id| {
                let a = &ev.firing[id.as_str()];
                ("firing", ledger_labels(a))
            })
            .collect();
        self.record(name, receiver.name(), "", dedup, ("deduplicated", 0, ""))
            .await;
        let mut claimed_firing_keys: Vec<String> = send_firing
            .iter()
            .map(|id| self.store.firing_key(name, id))
            .collect();
        claimed_firing_keys.extend(flap_keys);
        let got = match self
            .store
            .claim_resolving(name, &resolved_ids, &token, claim_ttl)
            .await
        {
            Ok(g) => g,
            Err(e) => {
                let _ = self.store.release(&claimed_firing_keys, &token).await;
                return Err(redis_err(e));
            }
        };
        let resolving: Vec<&str> = resolved_ids
            .iter()
            .zip(&got)
            .filter(|(_, ok)| **ok)
            .map(|(id, _)| *id)
            .collect();
        let mut claimed_keys = claimed_firing_keys;
        claimed_keys.extend(
            resolving
                .iter()
                .map(|id| self.store.resolving_key(name, id)),
        );

        let send_resolved: Vec<&str> = if check.send_resolved {
            resolving.clone()
        } else {
            if let Err(e) = self.store.finish_resolved(name, &resolving).await {
                let _ = self.store.release(&claimed_keys, &token).await;
                return Err(redis_err(e));
            }
            report.cleared = resolving.iter().map(|s| s.to_string()).collect();
            Vec::new()
        };
        if send_firing.is_empty() && send_resolved.is_empty() && flap_claims.is_empty() {
            return Ok(report);
        }

        let now = Utc::now();
        let firing_alarms: Vec<&Alarm> = send_firing.iter().map(|id| &ev.firing[*id]).collect();
        let resolved_alarms: Vec<&ActiveAlarm> =
            send_resolved.iter().map(|id| &active[*id]).collect();
        let window = check.flap().map_or(std::time::Duration::ZERO, |p| p.window);
        let notes: Vec<FlapNote> = flap_claims
            .iter()
            .filter_map(|c| {
                Some(FlapNote {
                    owed: c.owed.0,
                    alarm: flap_alarm(&c.record)?,
                    firing: c.record.firing,
                    changes: c.record.changes.len(),
                    window,
                })
            })
            .collect();
        let n = grouped_notification(check, &firing_alarms, &resolved_alarms, &notes, now);
        let ledger_alarms: Vec<(&'static str, serde_json::Value)> = send_firing
            .iter()
            .map(|id| {
                let event = if active.contains_key(*id) {
                    "repeat"
                } else {
                    "firing"
                };
                (event, ledger_labels(&ev.firing[*id]))
            })
            .chain(
                send_resolved
                    .iter()
                    .map(|id| ("resolved", ledger_labels(&active[*id].alarm))),
            )
            .chain(
                flap_claims
                    .iter()
                    .map(|c| (owed_event(c.record.owed), flap_labels(&c.record))),
            )
            .collect();
        let (delivered, attempts) = receiver.deliver(&n).await;
        if let Err(e) = delivered {
            let error = e.to_string();
            self.record(
                name,
                receiver.name(),
                &n.title,
                ledger_alarms,
                (e.outcome(), attempts, &error),
            )
            .await;
            if let Err(re) = self.store.release(&claimed_keys, &token).await {
                tracing::warn!(check = name, error = %re, "claims not released; they expire on their own");
            }
            return Err(with_prefix(&format!("check {name}: "), e.into()));
        }
        let confirmed: Vec<(&str, ActiveAlarm)> = send_firing
            .iter()
            .map(|id| {
                let since = active.get(*id).map_or(now, |a| a.since);
                (
                    *id,
                    ActiveAlarm {
                        alarm: ev.firing[*id].clone(),
                        since,
                    },
                )
            })
            .collect();
        // Delivered: from here on a Redis failure must not make the task
        // retry (that would send again); the claims expire on their own.
        if let Err(e) = self
            .store
            .confirm_firing(
                name,
                &confirmed,
                check.repeat_interval.0,
                now.timestamp_millis(),
            )
            .await
        {
            tracing::warn!(check = name, error = %e, "alarms sent but not recorded; they may repeat once the claims expire");
        }
        if let Err(e) = self.store.finish_resolved(name, &send_resolved).await {
            tracing::warn!(check = name, error = %e, "resolved alarms sent but not recorded");
        }
        if let Err(e) = self
            .settle_flaps(check, &flap_group, &flap_claims, &active, now)
            .await
        {
            tracing::warn!(check = name, error = %e, "flapping announcements sent but not recorded; they may be sent again");
        }
        report.announced = flap_claims
            .iter()
            .map(|c| format!("{} {}", c.owed.0.as_str(), c.id))
            .collect();
        self.record(
            name,
            receiver.name(),
            &n.title,
            ledger_alarms,
            ("sent", attempts, ""),
        )
        .await;
        report.sent_firing = send_firing.iter().map(|s| s.to_string()).collect();
        report.sent_resolved = send_resolved.iter().map(|s| s.to_string()).collect();
        report.message = Some(truncate(&n.title, 200));
        Ok(report)
    }
}

impl CheckRunner {
    /// After flapping announcements were delivered: a STABLE one leaves its
    /// alarm active (firing) or resolved (OK), as it said; then the owed
    /// announcements are cleared.
    async fn settle_flaps(
        &self,
        check: &CheckConfig,
        group: &str,
        claims: &[Claimed],
        active: &BTreeMap<String, ActiveAlarm>,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), crate::notify::alarm::StoreError> {
        let stable = claims.iter().filter(|c| c.owed.0 == Owed::Stable);
        let (firing, ok): (Vec<&Claimed>, Vec<&Claimed>) = stable.partition(|c| c.record.firing);
        let confirmed: Vec<(&str, ActiveAlarm)> = firing
            .iter()
            .filter_map(|c| {
                let alarm = flap_alarm(&c.record)?;
                let since = active.get(&c.id).map_or(now, |a| a.since);
                Some((c.id.as_str(), ActiveAlarm { alarm, since }))
            })
            .collect();
        self.store
            .confirm_firing(
                &check.name,
                &confirmed,
                check.repeat_interval.0,
                now.timestamp_millis(),
            )
            .await?;
        let ok: Vec<&str> = ok.iter().map(|c| c.id.as_str()).collect();
        self.store.finish_resolved(&check.name, &ok).await?;
        self.flaps.settle(group, claims).await
    }
}

/// The alarm a flapping record is about, as it last fired.
fn flap_alarm(r: &crate::notify::flap::FlapRecord) -> Option<Alarm> {
    serde_json::from_value(r.detail.clone()).ok()
}

/// What the notification ledger keeps of a flapping alarm.
fn flap_labels(r: &crate::notify::flap::FlapRecord) -> serde_json::Value {
    let mut v = flap_alarm(r).map_or(serde_json::json!({}), |a| ledger_labels(&a));
    v["state"] = serde_json::json!(if r.firing { "firing" } else { "ok" });
    v["changes"] = serde_json::json!(r.changes.len());
    v
}

/// The ledger event of an owed announcement.
fn owed_event(owed: Option<(Owed, i64)>) -> &'static str {
    match owed {
        Some((Owed::Flapping, _)) => "flapping",
        _ => "stable",
    }
}

fn with_prefix(prefix: &str, e: TaskError) -> TaskError {
    match e {
        TaskError::Retry {
            message,
            retry_after,
        } => TaskError::Retry {
            message: format!("{prefix}{message}"),
            retry_after,
        },
        TaskError::Fatal(m) => TaskError::Fatal(format!("{prefix}{m}")),
        other => other,
    }
}
