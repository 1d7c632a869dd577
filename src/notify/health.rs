//! Pipeline health notifications (seed `001`): every task name has a status,
//! OK or ERROR, kept in Redis so all workers share it, and a transition is
//! notified by the seed's `should_send_alert` rules, exactly:
//!
//! 1. no previous status → notify;
//! 2. status changed → notify;
//! 3. same status, previous written less than `silent_seconds` ago → no;
//! 4. ERROR again (after `silent_seconds`) → notify;
//! 5. OK again, previous written more than `ok_silent_hours` ago → notify;
//! 6. otherwise → no.
//!
//! As in the seed, the status is rewritten on every execution, so "age" is
//! the time since the task's previous outcome. An execution is OK when it
//! succeeds and ERROR when it is dead-lettered for one of `error_reasons`
//! (like the seed's `exception_classes`; other dead letters count as OK, as
//! the seed's bare `except:` does); a retry changes nothing unless
//! `retries_count`.
//!
//! [`HealthNotifier`] is the worker's [`OutcomeObserver`], attached by every
//! worker whatever `[notify]` says: the statuses are what `alertflow health`
//! reads, so they are recorded even when nobody is notified. `on_outcome`
//! only queues an event (never blocks, never fails the task); a background
//! task coalesces a burst per task, swaps the status in Redis, applies the
//! rules, writes the optional status file (`notify.status_dir` or
//! `$NOTIFYDIR`, the seed's format) and, when the task has receivers, hands
//! messages to one sender per receiver, whose failures are logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use crate::queue::redis_pool::Pool;
use chrono::{DateTime, NaiveDateTime, Utc};
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Colour, Notification, NotifyError, Receiver, Receivers, Section};
use crate::config::AppConfig;
use crate::queue::context::{Outcome, OutcomeObserver, Services};
use crate::queue::message::{DeadReason, Envelope};

/// `[notify]`: pipeline health notifications.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// `[receivers.NAME]`s told about health transitions (none: off).
    pub receivers: Vec<String>,
    /// Same status again within this many seconds: not notified.
    pub silent_seconds: f64,
    /// OK again: notified only if the previous OK is older than this many hours.
    pub ok_silent_hours: f64,
    /// Dead-letter reasons that make a task ERROR (default: all).
    pub error_reasons: Vec<DeadReason>,
    /// A failed attempt that will be retried makes the task ERROR too.
    pub retries_count: bool,
    /// Write a status file per task here (else `$NOTIFYDIR` if set).
    pub status_dir: Option<PathBuf>,
    /// Per-task overrides (`[notify.tasks.NAME]`).
    pub tasks: BTreeMap<String, TaskHealthOverride>,
    /// A task whose status changes more than this many times within
    /// `flap_window` is flapping: one FLAPPING message, then nothing until
    /// a whole window passes without a change, then one STABLE message
    /// (with the first outcome after it). Off unless both are set.
    pub flap_threshold: Option<u32>,
    pub flap_window: Option<crate::config::HumanDuration>,
    /// A health message a receiver did not take (after its own retries) is
    /// tried again after this long, doubling up to 5 minutes, for a day,
    /// in order, while the worker runs.
    pub redeliver_after: crate::config::HumanDuration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            receivers: Vec::new(),
            silent_seconds: 1.0,
            ok_silent_hours: 0.99,
            // A revoked task is what an operator asked for, not an error.
            error_reasons: DeadReason::ALL
                .into_iter()
                .filter(|r| *r != DeadReason::Revoked)
                .collect(),
            retries_count: false,
            status_dir: None,
            tasks: BTreeMap::new(),
            flap_threshold: None,
            flap_window: None,
            redeliver_after: crate::config::HumanDuration(std::time::Duration::from_secs(10)),
        }
    }
}

/// `[notify.tasks.NAME]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskHealthOverride {
    /// `false`: no status and no notifications for this task.
    pub enabled: Option<bool>,
    pub silent_seconds: Option<f64>,
    pub ok_silent_hours: Option<f64>,
    pub receivers: Option<Vec<String>>,
    pub error_reasons: Option<Vec<DeadReason>>,
    pub retries_count: Option<bool>,
    pub flap_threshold: Option<u32>,
    pub flap_window: Option<crate::config::HumanDuration>,
}

/// The effective policy of one task.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskPolicy {
    pub enabled: bool,
    pub silent_seconds: f64,
    pub ok_silent_hours: f64,
    pub receivers: Vec<String>,
    pub error_reasons: Vec<DeadReason>,
    pub retries_count: bool,
    pub flap: Option<super::flap::FlapPolicy>,
}

impl NotifyConfig {
    pub fn policy(&self, task: &str) -> TaskPolicy {
        self.with_override(self.tasks.get(task).cloned().unwrap_or_default())
    }

    /// The policy of a task without a `[notify.tasks.NAME]`.
    pub fn default_policy(&self) -> TaskPolicy {
        self.with_override(TaskHealthOverride::default())
    }

    fn with_override(&self, o: TaskHealthOverride) -> TaskPolicy {
        TaskPolicy {
            enabled: o.enabled.unwrap_or(true),
            silent_seconds: o.silent_seconds.unwrap_or(self.silent_seconds),
            ok_silent_hours: o.ok_silent_hours.unwrap_or(self.ok_silent_hours),
            receivers: o.receivers.unwrap_or_else(|| self.receivers.clone()),
            error_reasons: o
                .error_reasons
                .unwrap_or_else(|| self.error_reasons.clone()),
            retries_count: o.retries_count.unwrap_or(self.retries_count),
            flap: super::flap::FlapPolicy::from_config(
                o.flap_threshold.or(self.flap_threshold),
                o.flap_window.or(self.flap_window),
            )
            .ok()
            .flatten(),
        }
    }

    /// The status directory: `status_dir`, else `$NOTIFYDIR`.
    pub fn status_dir(&self) -> Option<PathBuf> {
        self.status_dir.clone().or_else(|| {
            std::env::var_os("NOTIFYDIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// Whether any task is notified (`receivers` here or in a
    /// `[notify.tasks.NAME]`). Statuses are recorded either way.
    pub fn sends(&self) -> bool {
        !self.receivers.is_empty()
            || self
                .tasks
                .values()
                .any(|t| t.receivers.as_ref().is_some_and(|r| !r.is_empty()))
    }

    pub(super) fn validate(&self, config: &AppConfig) -> Result<(), (String, String)> {
        let check = |prefix: &str,
                     receivers: Option<&Vec<String>>,
                     silent: Option<f64>,
                     ok_hours: Option<f64>|
         -> Result<(), (String, String)> {
            for r in receivers.into_iter().flatten() {
                if !config.receivers.contains_key(r) {
                    return Err((
                        format!("{prefix}receivers"),
                        format!("no [receivers.{r}] is configured"),
                    ));
                }
            }
            if silent.is_some_and(|s| !s.is_finite() || s < 0.0) {
                return Err((
                    format!("{prefix}silent_seconds"),
                    "must be a number ≥ 0".into(),
                ));
            }
            if ok_hours.is_some_and(|s| !s.is_finite() || s < 0.0) {
                return Err((
                    format!("{prefix}ok_silent_hours"),
                    "must be a number ≥ 0".into(),
                ));
            }
            Ok(())
        };
        let flap = |prefix: &str, t: Option<u32>, w| {
            super::flap::FlapPolicy::from_config(t, w).map_err(|(k, m)| (format!("{prefix}{k}"), m))
        };
        check(
            "notify.",
            Some(&self.receivers),
            Some(self.silent_seconds),
            Some(self.ok_silent_hours),
        )?;
        flap("notify.", self.flap_threshold, self.flap_window)?;
        if self.redeliver_after.0 < std::time::Duration::from_secs(1) {
            return Err((
                "notify.redeliver_after".into(),
                "must be at least 1s".into(),
            ));
        }
        for (task, o) in &self.tasks {
            let prefix = format!("notify.tasks.{task}.");
            check(
                &prefix,
                o.receivers.as_ref(),
                o.silent_seconds,
                o.ok_silent_hours,
            )?;
            flap(
                &prefix,
                o.flap_threshold.or(self.flap_threshold),
                o.flap_window.or(self.flap_window),
            )?;
        }
        Ok(())
    }
}

/// A task's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ERROR")]
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Error => "ERROR",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s.trim() {
            "OK" => Some(Status::Ok),
            "ERROR" => Some(Status::Error),
            _ => None,
        }
    }
}

/// The previous status and when it was written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Previous {
    pub status: Status,
    pub at: DateTime<Utc>,
}

/// The seed's `should_send_alert`, as a pure function of the previous
/// status, the new one and the (injected) time.
pub fn should_send_alert(
    status: Status,
    previous: Option<Previous>,
    now: DateTime<Utc>,
    silent_seconds: f64,
    ok_silent_hours: f64,
) -> bool {
    let Some(prev) = previous else {
        return true;
    };
    if prev.status != status {
        return true;
    }
    let lapse = (now - prev.at)
        .num_microseconds()
        .map_or(f64::MAX, |us| us as f64 / 1e6);
    if lapse < silent_seconds {
        return false;
    }
    if status != Status::Ok {
        return true;
    }
    if lapse > ok_silent_hours * 3600.0 {
        return true;
    }
    false
}

/// The seed's timestamp: `2026-03-10 12:00:00:123456`.
const TS_FORMAT: &str = "%Y-%m-%d %H:%M:%S:%6f";

/// One recorded outcome, in the seed's status-file format:
/// `STATUS\n<UTC time> UTC\n<queue> :: <task>\n` and, for ERROR,
/// `\n<error>\nattempts: N\n`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    pub task: String,
    pub queue: String,
    pub status: Status,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl Record {
    /// The text after the status line (the seed's `msg`).
    pub fn message(&self) -> String {
        let mut m = format!(
            "{} UTC\n{} :: {}\n",
            self.at.format(TS_FORMAT),
            self.queue,
            self.task
        );
        if self.status == Status::Error {
            m.push_str(&format!(
                "\n{}\nattempts: {}\n",
                self.error.as_deref().unwrap_or("(no error message)"),
                self.attempts.unwrap_or(1)
            ));
        }
        m
    }

    /// The whole status file.
    pub fn to_file(&self) -> String {
        format!("{}\n{}", self.status.as_str(), self.message())
    }

    /// Parse a status file (tolerant: missing parts become empty).
    pub fn parse(task: &str, text: &str) -> Option<Record> {
        let mut lines = text.split('\n');
        let status = Status::parse(lines.next()?)?;
        let ts = lines.next()?.trim().trim_end_matches("UTC").trim();
        let at = NaiveDateTime::parse_from_str(ts, TS_FORMAT).ok()?.and_utc();
        let loc = lines.next().unwrap_or("");
        let queue = loc.split(" :: ").next().unwrap_or("").to_string();
        let rest: Vec<&str> = lines.collect();
        let (error, attempts) = if status == Status::Error {
            let body: Vec<&str> = rest.iter().copied().filter(|l| !l.is_empty()).collect();
            let attempts = body
                .last()
                .and_then(|l| l.strip_prefix("attempts: "))
                .and_then(|n| n.trim().parse().ok());
            let err_lines = if attempts.is_some() {
                &body[..body.len() - 1]
            } else {
                &body[..]
            };
            (Some(err_lines.join("\n")), attempts)
        } else {
            (None, None)
        };
        Some(Record {
            task: task.to_string(),
            queue,
            status,
            at,
            error,
            attempts,
        })
    }

    pub fn previous(&self) -> Previous {
        Previous {
            status: self.status,
            at: self.at,
        }
    }

    /// The notification: `--- STATUS ---` + the message as text (the seed's
    /// Slack text), and the same as fields.
    pub fn notification(&self) -> Notification {
        let mut fields = vec![
            ("Status".to_string(), self.status.as_str().to_string()),
            (
                "Time".to_string(),
                self.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ),
            ("Task".to_string(), self.task.clone()),
            ("Queue".to_string(), self.queue.clone()),
        ];
        if self.status == Status::Error {
            fields.push((
                "Error".to_string(),
                super::truncate(self.error.as_deref().unwrap_or(""), 1500),
            ));
            fields.push((
                "Attempts".to_string(),
                self.attempts.unwrap_or(1).to_string(),
            ));
        }
        Notification {
            title: format!("{}: {}", self.status.as_str(), self.task),
            colour: match self.status {
                Status::Ok => Colour::Green,
                Status::Error => Colour::Red,
            },
            text: format!("--- {} ---\n{}", self.status.as_str(), self.message()),
            sections: vec![Section {
                heading: String::new(),
                text: String::new(),
                fields,
            }],
            note: Some("alertflow pipeline health".into()),
        }
    }
}

/// Task statuses in Redis: `{ns}:health:{task}` holds the status file's
/// text; `{ns}:health:tasks` the set of task names; `{ns}:health-changed`
/// a hash task → when its status last changed (the text is rewritten on
/// every outcome, so it only tells the latest one).
#[derive(Clone)]
pub struct HealthStore {
    pool: Pool,
    ns: String,
}

impl HealthStore {
    pub fn new(pool: Pool, namespace: &str) -> HealthStore {
        HealthStore {
            pool,
            ns: namespace.to_string(),
        }
    }

    fn key(&self, task: &str) -> String {
        format!("{}:health:{task}", self.ns)
    }
    fn set_key(&self) -> String {
        format!("{}:health:tasks", self.ns)
    }
    /// Not under `{ns}:health:`, where a task could share its name.
    fn changed_key(&self) -> String {
        format!("{}:health-changed", self.ns)
    }

    /// Write `record`, returning the previous text, and note when the
    /// status changed (one script: atomic).
    pub async fn swap(&self, record: &Record) -> Result<Option<String>, String> {
        let mut c = self.pool.get().await.map_err(|e| e.to_string())?;
        SWAP.key(self.key(&record.task))
            .key(self.set_key())
            .key(self.changed_key())
            .arg(record.to_file())
            .arg(&record.task)
            .arg(format!("{}\n", record.status.as_str()))
            .arg(record.at.to_rfc3339())
            .invoke_async(&mut c)
            .await
            .map_err(|e| e.to_string())
    }

    /// When each task's status last changed (tasks whose status has not
    /// changed since this was first kept are absent).
    pub async fn changed_at(&self) -> Result<BTreeMap<String, DateTime<Utc>>, String> {
        let mut c = self.pool.get().await.map_err(|e| e.to_string())?;
        let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.changed_key())
            .query_async(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        Ok(raw
            .into_iter()
            .filter_map(|(t, at)| Some((t, DateTime::parse_from_rfc3339(&at).ok()?.to_utc())))
            .collect())
    }

    /// Every recorded task, by name.
    pub async fn all(&self) -> Result<BTreeMap<String, Option<Record>>, String> {
        let mut c = self.pool.get().await.map_err(|e| e.to_string())?;
        let mut tasks: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.set_key())
            .query_async(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        tasks.sort();
        if tasks.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut cmd = redis::cmd("MGET");
        for t in &tasks {
            cmd.arg(self.key(t));
        }
        let texts: Vec<Option<String>> =
            cmd.query_async(&mut c).await.map_err(|e| e.to_string())?;
        Ok(tasks
            .into_iter()
            .zip(texts)
            .map(|(t, text)| {
                let r = text.and_then(|s| Record::parse(&t, &s));
                (t, r)
            })
            .collect())
    }
}

/// `SET` the status text (`KEYS[1]`), add the task (`ARGV[2]`) to the set
/// `KEYS[2]`, and when the previous text does not start with the new
/// status line `ARGV[3]`, record `ARGV[4]` as its change time in the hash
/// `KEYS[3]`. Returns the previous text.
static SWAP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
if (not old) or string.sub(old, 1, string.len(ARGV[3])) ~= ARGV[3] then
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
end
return old
"#,
    )
});

/// The clock the notifier reads (injected by tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

struct Event {
    record: Record,
    policy: Arc<TaskPolicy>,
}

/// The worker's health observer. See the module docs.
pub struct HealthNotifier {
    namespace: String,
    /// The policy of every task without a `[notify.tasks.NAME]`.
    default_policy: Arc<TaskPolicy>,
    /// The policies of the tasks with one (resolved once, not per outcome).
    task_policies: BTreeMap<String, Arc<TaskPolicy>>,
    clock: Clock,
    tx: mpsc::Sender<Event>,
    /// Set while events are being dropped (the queue is full), so a backlog
    /// logs once instead of once per task.
    dropping: AtomicBool,
}

/// Events waiting for the background task; beyond this they are dropped
/// (and logged) rather than slow the worker.
const EVENT_QUEUE: usize = 10_000;
const SEND_QUEUE: usize = 1_000;

impl HealthNotifier {
    /// Start the background tasks (needs a Tokio runtime).
    pub fn start(
        config: Arc<AppConfig>,
        redis: Pool,
        receivers: &Receivers,
        clock: Clock,
    ) -> Result<Arc<HealthNotifier>, String> {
        let ledger = Some(crate::sink::starrocks::SqlSink::new(&config));
        let mut senders: BTreeMap<String, mpsc::Sender<Outgoing>> = BTreeMap::new();
        let mut names: Vec<&String> = config.notify.receivers.iter().collect();
        for o in config.notify.tasks.values() {
            names.extend(o.receivers.iter().flatten());
        }
        for name in names {
            if senders.contains_key(name) {
                continue;
            }
            let r = receivers
                .get(name)
                .ok_or_else(|| format!("notify: no [receivers.{name}] is configured"))?
                .clone();
            senders.insert(
                name.clone(),
                spawn_sender(r, ledger.clone(), config.notify.redeliver_after.0),
            );
        }
        let store = HealthStore::new(redis.clone(), &config.namespace);
        let flaps = super::flap::FlapStore::new(redis, &config.namespace);
        let dir = config.notify.status_dir();
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(run_events(
            rx,
            (store, flaps),
            senders,
            dir,
            config.namespace.clone(),
        ));
        let notify = &config.notify;
        Ok(Arc::new(HealthNotifier {
            namespace: config.namespace.clone(),
            default_policy: Arc::new(notify.default_policy()),
            task_policies: notify
                .tasks
                .keys()
                .map(|t| (t.clone(), Arc::new(notify.policy(t))))
                .collect(),
            clock,
            tx,
            dropping: AtomicBool::new(false),
        }))
    }

    /// Build one from the services and add it as an observer. Every worker
    /// does: the statuses are recorded whether or not `[notify]` names
    /// receivers (which only decide who is told about a change).
    pub fn attach(
        config: &Arc<AppConfig>,
        services: &Arc<Services>,
    ) -> Result<Arc<HealthNotifier>, String> {
        Self::attach_with_clock(config, services, Arc::new(Utc::now))
    }

    pub fn attach_with_clock(
        config: &Arc<AppConfig>,
        services: &Arc<Services>,
        clock: Clock,
    ) -> Result<Arc<HealthNotifier>, String> {
        let receivers = if config.notify.sends() {
            Receivers::from_config(config, Some(services.limiter.clone()))
                .map_err(|e| e.to_string())?
        } else {
            Receivers::default()
        };
        let n = HealthNotifier::start(config.clone(), services.redis.clone(), &receivers, clock)?;
        services.observe(n.clone());
        Ok(n)
    }

    fn policy(&self, task: &str) -> &Arc<TaskPolicy> {
        self.task_policies.get(task).unwrap_or(&self.default_policy)
    }
}

impl OutcomeObserver for HealthNotifier {
    fn on_outcome(&self, envelope: &Envelope, outcome: Outcome<'_>) {
        let policy = self.policy(&envelope.task);
        if !policy.enabled {
            return;
        }
        let (status, error) = match outcome {
            Outcome::Succeeded => (Status::Ok, None),
            Outcome::Retrying { error } => {
                if !policy.retries_count {
                    return;
                }
                (Status::Error, Some(error.to_string()))
            }
            Outcome::DeadLettered { reason, error } => {
                if policy.error_reasons.contains(&reason) {
                    (Status::Error, Some(format!("{reason}: {error}")))
                } else {
                    (Status::Ok, None)
                }
            }
        };
        let queue = if envelope.queue.is_empty() {
            self.namespace.clone()
        } else {
            format!("{}.{}", self.namespace, envelope.queue)
        };
        let record = Record {
            task: envelope.task.clone(),
            queue,
            status,
            at: (self.clock)(),
            attempts: error.as_ref().map(|_| envelope.attempt + 1),
            error,
        };
        let event = Event {
            record,
            policy: policy.clone(),
        };
        match self.tx.try_send(event) {
            Ok(()) => {
                if self.dropping.load(Ordering::Relaxed) {
                    self.dropping.store(false, Ordering::Relaxed);
                    tracing::info!("health events are recorded again");
                }
            }
            Err(e) => {
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    tracing::warn!(task = %envelope.task, error = %e, "health events dropped until the recorder catches up (is Redis slow or down?)");
                }
            }
        }
    }
}

/// A health notification on its way to a receiver, with what the ledger
/// records of it.
struct Outgoing {
    notification: Notification,
    task: String,
    queue: String,
    /// The ledger's event: `ok`, `error`, `flapping` or `stable`.
    event: &'static str,
    error: Option<String>,
    /// Held back because the task flaps: recorded (outcome `flapping`), not
    /// sent.
    held: bool,
    /// When it was first tried (redelivery gives up after a day).
    first: tokio::time::Instant,
}

impl Outgoing {
    /// Its notification ledger entry.
    fn record(
        &self,
        receiver: &str,
        outcome: &str,
        attempts: u32,
        error: String,
    ) -> crate::sink::notifications::NotificationRecord {
        crate::sink::notifications::NotificationRecord {
            id: uuid::Uuid::now_v7().to_string(),
            at: crate::sink::ledger::now(),
            source: "health".into(),
            subject: self.task.clone(),
            event: self.event.into(),
            labels: serde_json::json!({"queue": self.queue, "error": self.error}),
            receiver: receiver.to_string(),
            outcome: outcome.into(),
            attempts,
            error,
            title: self.notification.title.clone(),
        }
    }
}

/// The active silence (no check; matched on `task`, `queue` and `status`)
/// that silences `o`, if any.
async fn health_silence(sink: &crate::sink::starrocks::SqlSink, o: &Outgoing) -> Option<String> {
    let now = crate::sink::ledger::now();
    let silences = crate::notify::silence::in_force(sink, now, &o.task).await;
    let labels: BTreeMap<String, String> = [
        ("task", o.task.clone()),
        ("queue", o.queue.clone()),
        (
            "status",
            if o.event == "error" { "ERROR" } else { "OK" }.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    crate::notify::silence::silenced_by(&silences, now, None, &labels).map(|s| s.id.clone())
}

/// A receiver's health sender: messages in order; one the receiver did not
/// take after its own retries (and might take later) waits in a backlog,
/// tried again after `redeliver_after`, doubling up to 5 minutes, for a day;
/// later messages wait behind it so the order holds. Every try is recorded.
fn spawn_sender(
    r: Receiver,
    ledger: Option<crate::sink::starrocks::SqlSink>,
    redeliver_after: std::time::Duration,
) -> mpsc::Sender<Outgoing> {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(SEND_QUEUE);
    tokio::spawn(async move {
        let mut backlog: std::collections::VecDeque<Outgoing> = Default::default();
        let mut wait = redeliver_after;
        let mut next_try = tokio::time::Instant::now();
        let mut open = true;
        while open || !backlog.is_empty() {
            let sleep = tokio::time::sleep_until(next_try);
            tokio::select! {
                m = rx.recv(), if open => match m {
                    Some(o) if backlog.is_empty() && !o.held => {
                        if !deliver_health(&r, ledger.as_ref(), &o).await {
                            wait = redeliver_after;
                            next_try = tokio::time::Instant::now() + wait;
                            backlog.push_back(o);
                        }
                    }
                    Some(o) if o.held => record_held(&r, ledger.as_ref(), &o).await,
                    Some(o) => {
                        if backlog.len() >= SEND_QUEUE {
                            let dropped = backlog.pop_front();
                            tracing::error!(receiver = r.name(), title = ?dropped.map(|d| d.notification.title), "health notification dropped: the redelivery backlog is full");
                        }
                        backlog.push_back(o);
                    }
                    None => open = false,
                },
                _ = sleep, if !backlog.is_empty() => {
                    while let Some(o) = backlog.front() {
                        if o.first.elapsed() > std::time::Duration::from_secs(86_400) {
                            tracing::error!(receiver = r.name(), title = %o.notification.title, "health notification given up after a day of failed deliveries");
                            backlog.pop_front();
                            continue;
                        }
                        if !deliver_health(&r, ledger.as_ref(), o).await {
                            wait = (wait * 2).min(std::time::Duration::from_secs(300)).max(redeliver_after);
                            next_try = tokio::time::Instant::now() + wait;
                            break;
                        }
                        backlog.pop_front();
                        wait = redeliver_after;
                    }
                }
            }
        }
    });
    tx
}

/// Record a message held back because its task flaps.
async fn record_held(r: &Receiver, ledger: Option<&crate::sink::starrocks::SqlSink>, o: &Outgoing) {
    if let Some(sink) = ledger {
        let record = o.record(r.name(), "flapping", 0, String::new());
        crate::notify::record_notifications(sink, std::slice::from_ref(&record)).await;
    }
}

/// Silence check, delivery and ledger entry of one message. False when it
/// failed and is worth trying again later.
async fn deliver_health(
    r: &Receiver,
    ledger: Option<&crate::sink::starrocks::SqlSink>,
    o: &Outgoing,
) -> bool {
    let n = &o.notification;
    let silence = match ledger {
        Some(sink) => health_silence(sink, o).await,
        None => None,
    };
    if let (Some(id), Some(sink)) = (&silence, ledger) {
        tracing::info!(receiver = r.name(), title = %n.title, silence = %id, "health notification silenced");
        let mut record = o.record(r.name(), "silenced", 0, String::new());
        record.labels["silence"] = serde_json::json!(id);
        crate::notify::record_notifications(sink, std::slice::from_ref(&record)).await;
        return true;
    }
    let (result, attempts) = r.deliver(n).await;
    let again = match &result {
        Ok(()) => {
            tracing::info!(receiver = r.name(), title = %n.title, "health notification sent");
            false
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(receiver = r.name(), error = %e, title = %n.title, "health notification not delivered; it will be tried again");
            true
        }
        Err(e) => {
            tracing::error!(receiver = r.name(), error = %e, title = %n.title, "health notification not delivered (fix the receiver's config)");
            false
        }
    };
    if let Some(sink) = ledger {
        let outcome = result.as_ref().err().map_or("sent", NotifyError::outcome);
        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
        let record = o.record(r.name(), outcome, attempts, error);
        crate::notify::record_notifications(sink, std::slice::from_ref(&record)).await;
    }
    !again
}

/// Write the status file atomically (temp file + rename).
async fn write_status_file(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    tokio::fs::write(&tmp, text).await?;
    tokio::fs::rename(&tmp, &path).await
}

/// File name of a task's status file: `{namespace}.{task}`.
pub fn status_file_name(namespace: &str, task: &str) -> String {
    let safe: String = task
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    format!("{namespace}.{safe}")
}

async fn run_events(
    mut rx: mpsc::Receiver<Event>,
    stores: (HealthStore, super::flap::FlapStore),
    senders: BTreeMap<String, mpsc::Sender<Outgoing>>,
    dir: Option<PathBuf>,
    namespace: String,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let events = coalesce(batch);
        let total = events.len();
        for (i, event) in events.into_iter().enumerate() {
            let task = event.record.task.clone();
            if let Err(e) = handle_event(event, &stores, &senders, dir.as_deref(), &namespace).await
            {
                // The rest of the burst would wait for the same Redis: skip it
                // (the next outcome of each task records its status again).
                tracing::warn!(task = %task, error = %e, skipped = total - i - 1, "health status not recorded (redis); not notified");
                break;
            }
        }
    }
}

/// Collapse a burst of outcomes: per task, every status change is kept in
/// order, and a run of equal statuses keeps its first (which the rules
/// judge) and its last (which refreshes the stored time). The outcomes in
/// between would only rewrite the status with the same value, so a busy
/// task costs a few Redis round trips per burst instead of one per run.
fn coalesce(batch: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::with_capacity(batch.len().min(64));
    // task → (status of its last kept event, the newest equal one not yet kept)
    let mut open: BTreeMap<String, (Status, Option<Event>)> = BTreeMap::new();
    for e in batch {
        match open.get_mut(&e.record.task) {
            Some((status, tail)) if *status == e.record.status => *tail = Some(e),
            _ => {
                let task = e.record.task.clone();
                let status = e.record.status;
                if let Some((_, Some(tail))) = open.remove(&task) {
                    out.push(tail);
                }
                out.push(e);
                open.insert(task, (status, None));
            }
        }
    }
    out.extend(open.into_values().filter_map(|(_, tail)| tail));
    out
}

/// Record one outcome, write its status file and notify; `Err` (a Redis
/// error) when the status could not be recorded.
async fn handle_event(
    Event { record, policy }: Event,
    (store, flaps): &(HealthStore, super::flap::FlapStore),
    senders: &BTreeMap<String, mpsc::Sender<Outgoing>>,
    dir: Option<&std::path::Path>,
    namespace: &str,
) -> Result<(), String> {
    let previous = store
        .swap(&record)
        .await?
        .and_then(|t| Record::parse(&record.task, &t))
        .map(|r| r.previous());
    let notify = should_send_alert(
        record.status,
        previous,
        record.at,
        policy.silent_seconds,
        policy.ok_silent_hours,
    );
    if let Some(dir) = dir
        && let Err(e) = write_status_file(
            dir,
            &status_file_name(namespace, &record.task),
            &record.to_file(),
        )
        .await
    {
        tracing::warn!(dir = %dir.display(), error = %e, "status file not written");
    }
    if policy.receivers.is_empty() {
        return Ok(());
    }
    let flap = match policy.flap {
        Some(p) => health_flap(flaps, &record, &p).await,
        None => Flap::No,
    };
    let (n, event, held) = match flap {
        Flap::No if notify => (record.notification(), status_event(record.status), false),
        Flap::Held if notify => (record.notification(), status_event(record.status), true),
        Flap::Announce(owed, changes, window) => (
            flap_notification(&record, owed, changes, window),
            match owed {
                super::flap::Owed::Flapping => "flapping",
                super::flap::Owed::Stable => "stable",
            },
            false,
        ),
        _ => return Ok(()),
    };
    let first = tokio::time::Instant::now();
    for name in &policy.receivers {
        if let Some(tx) = senders.get(name)
            && tx
                .try_send(Outgoing {
                    notification: n.clone(),
                    task: record.task.clone(),
                    queue: record.queue.clone(),
                    event,
                    error: record.error.clone(),
                    held,
                    first,
                })
                .is_err()
        {
            tracing::warn!(receiver = %name, task = %record.task, "health notification dropped: the receiver's queue is full");
        }
    }
    Ok(())
}

fn status_event(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Error => "error",
    }
}

/// What flapping says of a task's outcome.
enum Flap {
    /// Not flapping: the seed's rules decide.
    No,
    /// Flapping: nothing is sent.
    Held,
    /// This outcome carries the FLAPPING or STABLE announcement (claimed:
    /// no other worker sends it).
    Announce(super::flap::Owed, usize, std::time::Duration),
}

/// Observe a task's status in its flap record (`{ns}:flap:health:TASK`).
/// On a Redis failure the seed's rules decide alone (logged).
async fn health_flap(
    flaps: &super::flap::FlapStore,
    record: &Record,
    p: &super::flap::FlapPolicy,
) -> Flap {
    let group = format!("health:{}", record.task);
    let observed: BTreeMap<String, serde_json::Value> = match record.status {
        Status::Error => [(
            record.task.clone(),
            serde_json::json!({"queue": record.queue}),
        )]
        .into(),
        Status::Ok => BTreeMap::new(),
    };
    let now = record.at.timestamp_millis();
    let records = match flaps.observe(&group, &observed, &[], now, p).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(task = %record.task, error = %e, "flapping state not read; notified as if not flapping");
            return Flap::No;
        }
    };
    let Some(r) = records.get(&record.task).filter(|r| r.suppressed()) else {
        return Flap::No;
    };
    if r.owed.is_none() {
        return Flap::Held;
    }
    let token = format!("claim:{}", uuid::Uuid::new_v4().simple());
    let ids = [record.task.as_str()];
    let claimed = async {
        let c = flaps
            .claim(
                &group,
                &records,
                &ids,
                &token,
                std::time::Duration::from_secs(60),
            )
            .await?;
        flaps.settle(&group, &c).await?;
        Ok::<_, super::alarm::StoreError>(c)
    }
    .await;
    match claimed {
        Ok(c) if !c.is_empty() => Flap::Announce(c[0].owed.0, c[0].record.changes.len(), p.window),
        Ok(_) => Flap::Held,
        Err(e) => {
            tracing::warn!(task = %record.task, error = %e, "flapping announcement not claimed; held back");
            Flap::Held
        }
    }
}

/// The FLAPPING / STABLE message of a task.
fn flap_notification(
    record: &Record,
    owed: super::flap::Owed,
    changes: usize,
    window: std::time::Duration,
) -> Notification {
    let window = humantime::format_duration(window);
    let status = record.status.as_str();
    let text = match owed {
        super::flap::Owed::Flapping => format!(
            "Changed status {changes} times within {window}; now {status}. No more messages for it until it is stable for {window}."
        ),
        super::flap::Owed::Stable => format!("No change for {window}: it is {status}."),
    };
    let mut n = record.notification();
    n.title = format!("{}: {}", owed.as_str(), record.task);
    n.colour = match (owed, record.status) {
        (super::flap::Owed::Stable, Status::Ok) => Colour::Green,
        (super::flap::Owed::Stable, Status::Error) => Colour::Red,
        (super::flap::Owed::Flapping, _) => Colour::Orange,
    };
    n.text = format!("--- {} ---\n{text}\n{}", owed.as_str(), record.message());
    n.sections[0].text = text;
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
    }

    #[test]
    fn a_burst_keeps_every_change_and_the_ends_of_each_run() {
        use Status::{Error as E, Ok as O};
        let policy = Arc::new(NotifyConfig::default().policy("t"));
        let ev = |task: &str, status: Status, sec: i64| Event {
            record: Record {
                task: task.into(),
                queue: "q".into(),
                status,
                at: t0() + chrono::Duration::seconds(sec),
                error: None,
                attempts: None,
            },
            policy: policy.clone(),
        };
        let batch = vec![
            ev("a", O, 0),
            ev("a", O, 1),
            ev("b", E, 1),
            ev("a", O, 2),
            ev("a", E, 3),
            ev("a", E, 4),
            ev("b", E, 5),
            ev("a", O, 6),
        ];
        let kept: Vec<(String, Status, i64)> = coalesce(batch)
            .into_iter()
            .map(|e| {
                (
                    e.record.task,
                    e.record.status,
                    (e.record.at - t0()).num_seconds(),
                )
            })
            .collect();
        assert_eq!(
            kept,
            vec![
                ("a".into(), O, 0),
                ("b".into(), E, 1),
                ("a".into(), O, 2),
                ("a".into(), E, 3),
                ("a".into(), E, 4),
                ("a".into(), O, 6),
                ("b".into(), E, 5),
            ]
        );
    }

    /// (previous status, age of the previous status in seconds, new status) → notify?
    #[test]
    fn rules_table_with_injected_clock() {
        use Status::{Error as E, Ok as O};
        let table: &[(Option<Status>, f64, Status, bool, &str)] = &[
            (None, 0.0, O, true, "no previous status, OK"),
            (None, 0.0, E, true, "no previous status, ERROR"),
            (Some(O), 0.1, E, true, "OK → ERROR at once"),
            (Some(E), 0.1, O, true, "ERROR → OK at once"),
            (Some(O), 3600.0 * 5.0, E, true, "OK → ERROR after long"),
            (Some(E), 0.0, E, false, "ERROR again, same instant"),
            (Some(E), 0.5, E, false, "ERROR again within silent_seconds"),
            (
                Some(E),
                0.999,
                E,
                false,
                "ERROR again just within silent_seconds",
            ),
            (
                Some(E),
                1.0,
                E,
                true,
                "ERROR again at silent_seconds (lapse < 1 is false)",
            ),
            (Some(E), 30.0, E, true, "ERROR again after silent_seconds"),
            (Some(O), 0.5, O, false, "OK again within silent_seconds"),
            (Some(O), 60.0, O, false, "OK again within ok_silent_hours"),
            (
                Some(O),
                3563.0,
                O,
                false,
                "OK again just within ok_silent_hours (3564 s)",
            ),
            (Some(O), 3565.0, O, true, "OK again after ok_silent_hours"),
            (Some(O), 86400.0, O, true, "OK again a day later"),
            (
                Some(E),
                -5.0,
                E,
                false,
                "previous in the future (clock skew): silent",
            ),
        ];
        for (prev, age, new, want, why) in table {
            let now = t0();
            let previous = prev.map(|s| Previous {
                status: s,
                at: now - chrono::Duration::microseconds((age * 1e6) as i64),
            });
            let got = should_send_alert(*new, previous, now, 1.0, 0.99);
            assert_eq!(got, *want, "{why}: prev {prev:?} age {age}s new {new:?}");
        }
        // Per-task values are honoured.
        let prev = Some(Previous {
            status: E,
            at: t0() - chrono::Duration::seconds(30),
        });
        assert!(!should_send_alert(E, prev, t0(), 60.0, 0.99));
        let prev_ok = Some(Previous {
            status: O,
            at: t0() - chrono::Duration::seconds(120),
        });
        assert!(should_send_alert(O, prev_ok, t0(), 1.0, 0.01));
    }

    #[test]
    fn records_round_trip_in_the_seed_format() {
        let r = Record {
            task: "influx-check".into(),
            queue: "alertflow.influx".into(),
            status: Status::Error,
            at: t0() + chrono::Duration::microseconds(123_456),
            error: Some("fatal: boom\nline 2".into()),
            attempts: Some(3),
        };
        let text = r.to_file();
        assert_eq!(
            text,
            "ERROR\n2026-03-10 12:00:00:123456 UTC\nalertflow.influx :: influx-check\n\nfatal: boom\nline 2\nattempts: 3\n"
        );
        assert_eq!(Record::parse("influx-check", &text).unwrap(), r);
        let ok = Record {
            status: Status::Ok,
            error: None,
            attempts: None,
            ..r.clone()
        };
        assert_eq!(
            ok.to_file(),
            "OK\n2026-03-10 12:00:00:123456 UTC\nalertflow.influx :: influx-check\n"
        );
        assert_eq!(Record::parse("influx-check", &ok.to_file()).unwrap(), ok);
        assert!(Record::parse("x", "garbage").is_none());
        let n = r.notification();
        assert!(
            n.text
                .starts_with("--- ERROR ---\n2026-03-10 12:00:00:123456 UTC\n")
        );
        assert_eq!(n.colour, Colour::Red);
        let fields: Vec<&str> = n.sections[0]
            .fields
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            fields,
            ["Status", "Time", "Task", "Queue", "Error", "Attempts"]
        );
    }

    #[test]
    fn policies_and_validation() {
        let c = AppConfig::from_toml(
            "[receivers.s]\ntype = \"slack\"\nurl = \"http://127.0.0.1:1/services/T1/B1/x\"\n\
             [notify]\nreceivers = [\"s\"]\nerror_reasons = [\"fatal\"]\n\
             [notify.tasks.noop]\nenabled = false\n[notify.tasks.influx-check]\nsilent_seconds = 60\n",
            "f.toml",
        )
        .unwrap();
        assert!(super::super::validate(&c).is_ok());
        assert!(!c.notify.policy("noop").enabled);
        assert_eq!(c.notify.policy("influx-check").silent_seconds, 60.0);
        assert_eq!(c.notify.policy("influx-check").ok_silent_hours, 0.99);
        assert_eq!(c.notify.policy("x").error_reasons, vec![DeadReason::Fatal]);
        let bad = AppConfig::from_toml("[notify]\nreceivers = [\"nope\"]\n", "f.toml").unwrap();
        assert_eq!(
            super::super::validate(&bad).unwrap_err().0,
            "notify.receivers"
        );
        let bad = AppConfig::from_toml("[notify]\nerror_reasons = [\"oops\"]\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("oops") && bad.contains("retries-exhausted") && bad.contains("line 2"),
            "{bad}"
        );
        let bad =
            AppConfig::from_toml("[notify.tasks.x]\nsilent_seconds = -1\n", "f.toml").unwrap();
        assert_eq!(
            super::super::validate(&bad).unwrap_err().0,
            "notify.tasks.x.silent_seconds"
        );
        assert!(AppConfig::from_toml("[notify]\nsilent_secs = 1\n", "f.toml").is_err());
    }
}
