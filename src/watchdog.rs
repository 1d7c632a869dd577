//! Watchdogs: the pipeline watching itself (`[[watchdogs]]`).
//!
//! Each watchdog turns what it looks at into a measured value per label
//! set, compared with a threshold, exactly like an InfluxDB check; its
//! findings then go through the same notification layer
//! ([`crate::tasks::influx_check::CheckRunner::process`]): dedup, repeat
//! interval, resolved messages, silences (`--check NAME`), flapping and
//! the notification ledger.
//!
//! - `schedule-missed`: a schedule's due fire not published within `grace`
//!   (every beat down or partitioned); value: fires missed; label
//!   `schedule`.
//! - `run-late`: the daily run of a date not complete (every page written
//!   and the recommendations computed after them) by a local `deadline`;
//!   value: minutes late; label `date`.
//! - `source-silent`: no alert card from a chat for more than `hours`;
//!   value: hours since the newest card; label `chat`.
//! - `dead-letters`: the dead-letter queue holds more than `max` messages;
//!   value: messages; label `queue`.
//!
//! Workers evaluate them without beat (the thing watched): every
//! `[watch] interval` one worker wins a Redis claim for the tick and
//! publishes a `watchdog` task (id derived from the tick), which any worker
//! runs with the usual retries.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::queue::redis_pool::Pool;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use deadpool_redis::redis;
use serde::Deserialize;

use crate::config::{AppConfig, HumanDuration};
use crate::notify::check::{Alarm, CheckConfig, Evaluation, Severity, Threshold, label_key};
use crate::queue::schedule::Schedule;
use crate::sink::starrocks::SqlSink;

/// `[watch]`: how often workers evaluate the watchdogs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    pub interval: HumanDuration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            interval: HumanDuration(Duration::from_secs(60)),
        }
    }
}

/// What a watchdog watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchdogKind {
    ScheduleMissed,
    RunLate,
    SourceSilent,
    DeadLetters,
}

impl WatchdogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchdogKind::ScheduleMissed => "schedule-missed",
            WatchdogKind::RunLate => "run-late",
            WatchdogKind::SourceSilent => "source-silent",
            WatchdogKind::DeadLetters => "dead-letters",
        }
    }
}

/// `[[watchdogs]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogConfig {
    /// Distinct from every `[[checks]]` name (they share alarm keys and
    /// `silence add --check`).
    pub name: String,
    pub kind: WatchdogKind,
    /// `[receivers.NAME]`.
    pub receiver: String,
    #[serde(default)]
    pub severity: Severity,
    /// A watchdog still firing is sent again after this long.
    #[serde(default = "default_repeat")]
    pub repeat_interval: HumanDuration,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// schedule-missed: the schedules watched (default: all enabled).
    #[serde(default)]
    pub schedules: Vec<String>,
    /// schedule-missed: how late a fire may be published (default 2m).
    pub grace: Option<HumanDuration>,
    /// run-late: local time `HH:MM` by which the run must be complete.
    pub deadline: Option<String>,
    /// run-late: the deadline's time zone (default America/Los_Angeles).
    pub timezone: Option<String>,
    /// run-late: which date's run, in days before the deadline's (default
    /// 1: yesterday's run by today's deadline).
    pub days_ago: Option<u32>,
    /// source-silent: the chat (default `lark.chat_id`).
    pub chat: Option<String>,
    /// source-silent: hours without a card.
    pub hours: Option<f64>,
    /// dead-letters: messages tolerated (default 0).
    pub max: Option<u64>,
}

fn default_repeat() -> HumanDuration {
    HumanDuration(Duration::from_secs(4 * 3600))
}
fn yes() -> bool {
    true
}

/// One thing a watchdog found wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub summary: String,
}

impl WatchdogConfig {
    fn grace(&self) -> Duration {
        self.grace.map_or(Duration::from_secs(120), |g| g.0)
    }

    fn tz(&self) -> Tz {
        self.timezone
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(chrono_tz::America::Los_Angeles)
    }

    /// Field checks against the rest of the config; `(key, message)`.
    pub fn validate(&self, config: &AppConfig) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        crate::notify::check::valid_name(&self.name)?;
        if config.checks.iter().any(|c| c.name == self.name) {
            return err("name", format!("{:?} is also a [[checks]] name", self.name));
        }
        if !config.receivers.contains_key(&self.receiver) {
            return err(
                "receiver",
                format!("no [receivers.{}] is configured", self.receiver),
            );
        }
        if self.repeat_interval.0 < Duration::from_secs(1) {
            return err("repeat_interval", "must be at least 1s".into());
        }
        // A key of another kind would be silently ignored: refuse it.
        use WatchdogKind::*;
        for (key, set, kind) in [
            ("schedules", !self.schedules.is_empty(), ScheduleMissed),
            ("grace", self.grace.is_some(), ScheduleMissed),
            ("deadline", self.deadline.is_some(), RunLate),
            ("timezone", self.timezone.is_some(), RunLate),
            ("days_ago", self.days_ago.is_some(), RunLate),
            ("chat", self.chat.is_some(), SourceSilent),
            ("hours", self.hours.is_some(), SourceSilent),
            ("max", self.max.is_some(), DeadLetters),
        ] {
            if set && kind != self.kind {
                return err(
                    key,
                    format!(
                        "applies to kind = {:?} only (this is {:?})",
                        kind.as_str(),
                        self.kind.as_str()
                    ),
                );
            }
        }
        match self.kind {
            WatchdogKind::ScheduleMissed => {
                for s in &self.schedules {
                    if !config.queue.schedules.iter().any(|c| &c.name == s) {
                        return err("schedules", format!("no [[schedules]] named {s:?}"));
                    }
                }
            }
            WatchdogKind::RunLate => {
                let Some(d) = &self.deadline else {
                    return err(
                        "deadline",
                        "is required for run-late (e.g. \"02:00\")".into(),
                    );
                };
                if NaiveTime::parse_from_str(d, "%H:%M").is_err() {
                    return err("deadline", format!("{d:?} is not HH:MM"));
                }
                if let Some(t) = &self.timezone
                    && t.parse::<Tz>().is_err()
                {
                    return err("timezone", format!("{t:?} is not an IANA time zone"));
                }
            }
            WatchdogKind::SourceSilent => match self.hours {
                Some(h) if h.is_finite() && h > 0.0 => {}
                _ => {
                    return err(
                        "hours",
                        "is required for source-silent: a number > 0".into(),
                    );
                }
            },
            WatchdogKind::DeadLetters => {}
        }
        Ok(())
    }

    /// The check the notification layer sees: what is measured, against
    /// what.
    pub fn as_check(&self) -> CheckConfig {
        let (value, threshold, label) = match self.kind {
            WatchdogKind::ScheduleMissed => ("missed_fires", "> 0".to_string(), "schedule"),
            WatchdogKind::RunLate => ("minutes_late", "> 0".to_string(), "date"),
            WatchdogKind::SourceSilent => (
                "hours_silent",
                format!("> {}", self.hours.unwrap_or(0.0)),
                "chat",
            ),
            WatchdogKind::DeadLetters => (
                "dead_letters",
                format!("> {}", self.max.unwrap_or(0)),
                "queue",
            ),
        };
        CheckConfig {
            name: self.name.clone(),
            source: format!("watchdog {}", self.kind.as_str()),
            query: String::new(),
            value: value.into(),
            threshold: Threshold::parse(&threshold).expect("a valid threshold"),
            labels: vec![label.into()],
            severity: self.severity,
            summary: String::new(),
            repeat_interval: self.repeat_interval,
            send_resolved: self.send_resolved,
            receiver: self.receiver.clone(),
            for_: None,
            no_data: Default::default(),
            flap_threshold: None,
            flap_window: None,
        }
    }

    /// The findings as an evaluation of [`WatchdogConfig::as_check`].
    pub fn evaluation(&self, findings: Vec<Finding>) -> Evaluation {
        let rows = findings.len();
        let firing = findings
            .into_iter()
            .map(|f| {
                let alarm = Alarm {
                    check: self.name.clone(),
                    labels: f.labels,
                    value: f.value,
                    summary: f.summary,
                    severity: self.severity,
                };
                (label_key(&alarm.labels), alarm)
            })
            .collect();
        Evaluation {
            rows,
            firing,
            skipped: 0,
        }
    }
}

/// What the watchdogs look at.
pub struct Watched<'a> {
    pub config: &'a AppConfig,
    pub redis: &'a Pool,
    pub sink: &'a SqlSink,
}

/// Why a watchdog could not be evaluated.
#[derive(Debug, thiserror::Error)]
#[error("watchdog {name}: {message}")]
pub struct WatchError {
    pub name: String,
    pub message: String,
}

impl Watched<'_> {
    /// What watchdog `w` finds wrong at `now`.
    pub async fn findings(
        &self,
        w: &WatchdogConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<Finding>, WatchError> {
        let fail = |m: String| WatchError {
            name: w.name.clone(),
            message: m,
        };
        match w.kind {
            WatchdogKind::ScheduleMissed => self.missed(w, now).await.map_err(fail),
            WatchdogKind::RunLate => self.late(w, now).await.map_err(fail),
            WatchdogKind::SourceSilent => self.silent(w, now).await.map_err(fail),
            WatchdogKind::DeadLetters => self.dead(w).await.map_err(fail),
        }
    }

    async fn missed(&self, w: &WatchdogConfig, now: DateTime<Utc>) -> Result<Vec<Finding>, String> {
        let ns = &self.config.namespace;
        let mut c = self.redis.get().await.map_err(|e| e.to_string())?;
        let paused: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{ns}:beat:paused"))
            .query_async(&mut c)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let grace = chrono::Duration::from_std(w.grace()).unwrap_or_default();
        let mut out = Vec::new();
        for sc in &self.config.queue.schedules {
            if !w.schedules.is_empty() && !w.schedules.contains(&sc.name) {
                continue;
            }
            let Ok(s) = Schedule::from_config(sc) else {
                continue;
            };
            if !s.enabled() || paused.contains_key(s.name()) {
                continue;
            }
            let last: Option<i64> = redis::cmd("GET")
                .arg(format!("{ns}:beat:last:{}", s.name()))
                .query_async(&mut c)
                .await
                .map_err(|e| format!("redis: {e}"))?;
            // Never fired: nothing to compare with yet.
            let Some(last) = last.and_then(|ms| Utc.timestamp_millis_opt(ms).single()) else {
                continue;
            };
            let missed: Vec<DateTime<Utc>> =
                s.fires_between(last, now - grace).take(10_000).collect();
            if missed.is_empty() {
                continue;
            }
            let shown: Vec<String> = missed
                .iter()
                .rev()
                .take(3)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .collect();
            out.push(Finding {
                labels: [("schedule".to_string(), s.name().to_string())].into(),
                value: missed.len() as f64,
                summary: format!(
                    "schedule {} missed {} fire(s) (not published within {}); latest due {}; last published {}",
                    s.name(),
                    missed.len(),
                    humantime::format_duration(w.grace()),
                    shown.join(", "),
                    last.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            });
        }
        Ok(out)
    }

    async fn late(&self, w: &WatchdogConfig, now: DateTime<Utc>) -> Result<Vec<Finding>, String> {
        let tz = w.tz();
        let deadline = w
            .deadline
            .as_deref()
            .and_then(|d| NaiveTime::parse_from_str(d, "%H:%M").ok())
            .unwrap_or(NaiveTime::MIN);
        let days = chrono::Days::new(u64::from(w.days_ago.unwrap_or(1)));
        let today = now.with_timezone(&tz).date_naive();
        // The deadline of the date whose deadline is today, and of the one
        // before (still late if it never completed).
        let mut out = Vec::new();
        for deadline_day in [today - chrono::Days::new(1), today] {
            let due = tz
                .from_local_datetime(&deadline_day.and_time(deadline))
                .earliest()
                .map(|t| t.with_timezone(&Utc));
            let Some(due) = due.filter(|d| *d <= now) else {
                continue;
            };
            let date = deadline_day - days;
            if let Some(state) = self.incomplete(date).await? {
                let minutes = (now - due).num_minutes().max(1);
                out.push(Finding {
                    labels: [("date".to_string(), date.to_string())].into(),
                    value: minutes as f64,
                    summary: format!(
                        "the run of {date} is not complete {minutes} min after its deadline ({} {}): {state}",
                        deadline.format("%H:%M"),
                        tz.name()
                    ),
                });
            }
        }
        Ok(out)
    }

    /// `None` when a run of `date` wrote every page and the date's
    /// recommendations were computed after its last page; else what is
    /// missing.
    async fn incomplete(&self, date: NaiveDate) -> Result<Option<String>, String> {
        let runs = self.sink.runs_on(date).await.map_err(|e| e.to_string())?;
        if runs.is_empty() {
            return Ok(Some("no run started".into()));
        }
        let Some(done) = runs
            .iter()
            .filter(|r| r.complete())
            .max_by_key(|r| r.last_written_at)
        else {
            let r = runs.iter().max_by_key(|r| r.run.started_at).expect("a run");
            return Ok(Some(match r.run.total_pages {
                Some(t) => format!(
                    "run {}: {} of {t} pages written",
                    r.run.run_id, r.pages_written
                ),
                None => format!(
                    "run {}: still fetching ({} pages written)",
                    r.run.run_id, r.pages_written
                ),
            }));
        };
        let recommends = self
            .sink
            .recommends_since(date)
            .await
            .map_err(|e| e.to_string())?;
        let written = done.last_written_at.unwrap_or(done.run.started_at);
        if recommends
            .iter()
            .any(|r| r.date == date && r.generated_at >= written)
        {
            Ok(None)
        } else {
            Ok(Some(format!(
                "run {}: rows written, recommendations not computed",
                done.run.run_id
            )))
        }
    }

    async fn silent(&self, w: &WatchdogConfig, now: DateTime<Utc>) -> Result<Vec<Finding>, String> {
        let chat = w
            .chat
            .clone()
            .unwrap_or_else(|| self.config.lark.chat_id.clone());
        let hours = w.hours.unwrap_or(24.0);
        // Look back a little further than the window, by alert date.
        let back = chrono::Days::new((hours / 24.0).ceil() as u64 + 2);
        let since = now.date_naive() - back;
        let newest = self
            .sink
            .newest_card(&chat, since)
            .await
            .map_err(|e| e.to_string())?;
        let (silent_h, from) = match newest {
            Some(t) => (
                (now.naive_utc() - t).num_seconds() as f64 / 3600.0,
                format!("the newest card is from {} UTC", t.format("%Y-%m-%d %H:%M")),
            ),
            None => (
                (now.naive_utc() - since.and_time(NaiveTime::MIN)).num_seconds() as f64 / 3600.0,
                format!("no card since {since}"),
            ),
        };
        if silent_h <= hours {
            return Ok(Vec::new());
        }
        let silent_h = (silent_h * 10.0).round() / 10.0;
        Ok(vec![Finding {
            labels: [("chat".to_string(), chat.clone())].into(),
            value: silent_h,
            summary: format!(
                "no alert card from chat {chat} for {silent_h} h (more than {hours} h): {from}; is the bot still in the chat, the app secret valid?"
            ),
        }])
    }

    async fn dead(&self, w: &WatchdogConfig) -> Result<Vec<Finding>, String> {
        let topology = crate::queue::topology::Topology::from_config(&self.config.queue);
        let queue = topology.dead_queue();
        let conn = crate::queue::publisher::connect(self.config, "watchdog")
            .await
            .map_err(|e| e.to_string())?;
        let counted = async {
            let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
            crate::queue::topology::queue_counts(&ch, &queue)
                .await
                .map_err(|e| e.to_string())
        };
        let counted = tokio::time::timeout(self.config.broker.connect_timeout.0, counted)
            .await
            .unwrap_or_else(|_| Err(format!("RabbitMQ did not answer a declare of {queue}")));
        crate::queue::connect::close(conn).await;
        let n = counted?.map_or(0, |c| c.ready);
        let max = w.max.unwrap_or(0);
        if n <= max {
            return Ok(Vec::new());
        }
        Ok(vec![Finding {
            labels: [("queue".to_string(), queue.clone())].into(),
            value: n as f64,
            summary: format!(
                "{n} message(s) in {queue} (more than {max}): see them with `alertflow dead list`"
            ),
        }])
    }
}

/// The `watchdog` task of tick `tick` (its id derived from the namespace
/// and the tick, so a tick is one task whoever publishes it).
pub fn tick_envelope(config: &AppConfig, tick: i64) -> crate::queue::message::Envelope {
    let mut env = crate::queue::message::Envelope::new("watchdog", serde_json::json!({}));
    env.id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("alertflow:{}:watchdog:{tick}", config.namespace).as_bytes(),
    );
    env.root_id = env.id;
    env.queue = "default".into();
    env
}

/// Every `[watch] interval`, one worker of the namespace (the winner of a
/// Redis claim for the tick) publishes the `watchdog` task. Does nothing
/// without `[[watchdogs]]`. Failures are logged; the next tick tries again.
pub fn spawn_ticker(
    config: std::sync::Arc<AppConfig>,
    redis: Pool,
    worker_id: String,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if config.watchdogs.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let every = config.watch.interval.0;
        let ms = every.as_millis().max(1) as i64;
        loop {
            let now = Utc::now().timestamp_millis();
            let next = (now / ms + 1) * ms;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis((next - now) as u64)) => {}
            }
            let tick = next / ms;
            if let Err(e) = publish_tick(&config, &redis, &worker_id, tick, every).await {
                tracing::warn!(tick, error = %e, "watchdog tick not published; the next tick tries again");
            }
        }
    });
}

async fn publish_tick(
    config: &AppConfig,
    redis: &Pool,
    worker_id: &str,
    tick: i64,
    every: Duration,
) -> Result<(), String> {
    let mut c = redis.get().await.map_err(|e| e.to_string())?;
    let won: Option<String> = redis::cmd("SET")
        .arg(format!("{}:watchdog:tick:{tick}", config.namespace))
        .arg(worker_id)
        .arg("NX")
        .arg("PX")
        .arg((every.as_millis() as u64 * 3).max(1000))
        .query_async(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    drop(c);
    if won.is_none() {
        return Ok(());
    }
    let conn = crate::queue::publisher::connect(config, "watchdog")
        .await
        .map_err(|e| e.to_string())?;
    let topology = std::sync::Arc::new(crate::queue::topology::Topology::from_config(config));
    let published = async {
        let p = crate::queue::publisher::Publisher::open(&conn, topology, 1)
            .await
            .map_err(|e| e.to_string())?;
        p.publish(&tick_envelope(config, tick))
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    crate::queue::connect::close(conn).await;
    published
}

/// A watchdog alarm firing now.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FiringWatchdog {
    pub watchdog: String,
    pub kind: &'static str,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    /// When it was first sent.
    pub since: DateTime<Utc>,
}

/// The firing watchdogs, as their last evaluation sent them (for `health`
/// and the dashboard).
pub async fn firing(config: &AppConfig, redis: &Pool) -> Result<Vec<FiringWatchdog>, String> {
    let store = crate::notify::alarm::AlarmStore::new(redis.clone(), &config.namespace);
    let mut out = Vec::new();
    for w in &config.watchdogs {
        let active = store
            .active(&w.name)
            .await
            .map_err(|e| format!("watchdogs not read: {e}"))?;
        out.extend(active.into_values().map(|a| FiringWatchdog {
            watchdog: w.name.clone(),
            kind: w.kind.as_str(),
            labels: a.alarm.labels,
            summary: a.alarm.summary,
            since: a.since,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AppConfig {
        let mut c = AppConfig::default();
        c.receivers.insert(
            "ops".into(),
            crate::notify::ReceiverConfig::new(
                crate::notify::ReceiverKind::Lark,
                "https://open.larksuite.com/open-apis/bot/v2/hook/x",
            ),
        );
        c
    }

    fn watchdog(extra: &str) -> WatchdogConfig {
        toml::from_str(&format!("name = \"w\"\nreceiver = \"ops\"\n{extra}")).unwrap()
    }

    #[test]
    fn each_kind_takes_its_own_keys_and_names_what_is_wrong() {
        let c = config();
        let key = |w: WatchdogConfig| w.validate(&c).err().map(|(k, _)| k);
        assert_eq!(key(watchdog("kind = \"dead-letters\"\nmax = 3")), None);
        assert_eq!(
            key(watchdog("kind = \"dead-letters\"\nhours = 3")).as_deref(),
            Some("hours"),
            "a source-silent key on a dead-letters watchdog"
        );
        assert_eq!(
            key(watchdog("kind = \"run-late\"")).as_deref(),
            Some("deadline")
        );
        assert_eq!(
            key(watchdog("kind = \"run-late\"\ndeadline = \"25:00\"")).as_deref(),
            Some("deadline")
        );
        assert_eq!(
            key(watchdog("kind = \"source-silent\"\nhours = 0")).as_deref(),
            Some("hours")
        );
        let w = watchdog("kind = \"run-late\"\ndeadline = \"02:00\"\ntimezone = \"UTC\"");
        assert_eq!(key(w.clone()), None);
        let check = w.as_check();
        assert_eq!(
            (check.value.as_str(), check.labels[0].as_str()),
            ("minutes_late", "date")
        );
    }
}
