//! The one execution path of a task envelope, shared by the worker and by
//! `alertflow run --local`: expiry and `eta`, the registry lookup, the
//! rate-limit gate, the hard time limit and the task call end in a
//! [`Verdict`] (ack, retry, defer, dead-letter). The caller's [`Outlet`]
//! carries the verdict out, and only then are its task state, metrics and
//! observer notification recorded, the same way for both callers.
//!
//! The decisions are pure functions of the envelope, the time and the
//! task's result ([`check_due`], [`lookup`], [`gate_verdict`],
//! [`task_verdict`]). This module knows nothing of AMQP or of the
//! in-process queue: acks, confirms, delay tiers and re-enqueueing belong to
//! the callers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{Instrument, debug, error, info_span, warn};

use crate::config::{QueueConfig, WorkerConfig};
use crate::context::{Outcome, Services};
use crate::message::{DeadReason, Envelope};
use crate::ratelimit::AcquireError;
use crate::state::{TaskState, TaskStatus};
use crate::task::{DynTask, Outbox, Registry, TaskContext, TaskError};

/// What happens to a delivery once it has been through the execution path.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The task succeeded.
    Ack,
    /// The task failed transiently: `next`, its next attempt, runs after
    /// `delay`.
    Retry {
        next: Box<Envelope>,
        delay: Duration,
        error: String,
    },
    /// The task did not run and the attempt does not count: `next` runs
    /// after `delay`.
    Defer {
        next: Box<Envelope>,
        delay: Duration,
        cause: DeferCause,
    },
    /// The task will not run (again).
    DeadLetter { reason: DeadReason, error: String },
}

/// Why a task was deferred.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeferCause {
    /// Its `eta` is further away than the shortest delay tier.
    NotDue,
    /// Rate-limit `key` would keep it waiting longer than
    /// `worker.max_rate_limit_wait`, or the limiter could not be asked.
    RateLimited { key: String },
}

fn dead(reason: DeadReason, error: impl Into<String>) -> Verdict {
    Verdict::DeadLetter {
        reason,
        error: error.into(),
    }
}

fn later(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(delay).unwrap_or_default()
}

/// Whether `env` may run at `now`. `Err` holds the verdict when it expired,
/// or when its `eta` is more than `inline_max` away (the shortest delay
/// tier: a shorter wait costs less in place than a trip through the
/// broker). `Ok` is how long to wait in place first, zero when due.
pub fn check_due(
    env: &Envelope,
    now: DateTime<Utc>,
    inline_max: Duration,
) -> Result<Duration, Verdict> {
    if env.expires_at.is_some_and(|x| x < now) {
        return Err(dead(DeadReason::Expired, "expired before it could run"));
    }
    let remaining = env
        .eta
        .and_then(|eta| (eta - now).to_std().ok())
        .unwrap_or_default();
    if remaining > inline_max {
        return Err(Verdict::Defer {
            next: Box::new(env.clone()),
            delay: remaining,
            cause: DeferCause::NotDue,
        });
    }
    Ok(remaining)
}

/// The registered task of `env` and the rate-limit keys it must pass
/// ([`Registry::start_keys`]). An unknown task and arguments the task
/// cannot decode are dead at once.
pub fn lookup(
    registry: &Registry,
    env: &Envelope,
    config: &QueueConfig,
) -> Result<(Arc<dyn DynTask>, Vec<String>), Verdict> {
    let Some(task) = registry.get(&env.task).cloned() else {
        return Err(dead(
            DeadReason::UnknownTask,
            format!("no task named {:?} is registered in this worker", env.task),
        ));
    };
    let keys = Registry::start_keys(task.as_ref(), env, config)
        .map_err(|e| dead(DeadReason::Fatal, e.to_string()))?;
    Ok((task, keys))
}

/// What it means that rate-limit `key` did not admit `env` within the wait
/// budget: wait without holding a slot, or, for a key `[rate_limits]` does
/// not name, never run.
pub fn gate_verdict(
    env: &Envelope,
    key: &str,
    refused: AcquireError,
    now: DateTime<Utc>,
    shortest_tier: Duration,
) -> Verdict {
    let delay = match refused {
        AcquireError::TooLong(wait) => wait,
        // Redis is down (and not fail_open): ask again after the shortest tier.
        AcquireError::Unavailable(_) => shortest_tier,
        AcquireError::UnknownKey(k) => {
            return dead(
                DeadReason::Fatal,
                format!("task uses rate-limit key {k:?} but [rate_limits] has no such key"),
            );
        }
    };
    let mut next = Box::new(env.clone());
    next.eta = Some(later(now, delay));
    Verdict::Defer {
        next,
        delay,
        cause: DeferCause::RateLimited {
            key: key.to_string(),
        },
    }
}

/// What a finished task call means: a fatal error is dead at once, any
/// other error (a time-limit overrun included) is retried until
/// `max_retries` retries are used up.
pub fn task_verdict(
    env: &Envelope,
    result: Result<(), TaskError>,
    worker: &WorkerConfig,
    now: DateTime<Utc>,
) -> Verdict {
    match result {
        Ok(()) => Verdict::Ack,
        Err(TaskError::Fatal(msg)) => dead(DeadReason::Fatal, msg),
        Err(e) if env.attempt >= env.max_retries => dead(
            DeadReason::RetriesExhausted,
            format!("gave up after {} attempts: {e}", env.attempt + 1),
        ),
        Err(e) => {
            let (next, delay) = next_attempt(env, &e, worker, now);
            Verdict::Retry {
                next: Box::new(next),
                delay,
                error: e.to_string(),
            }
        }
    }
}

/// The delay to wait before attempt `attempt + 1`: exponential from `base`,
/// capped at `max`, with equal jitter (half fixed, half random).
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.min(30)));
    let d = exp.min(max);
    d / 2 + d.mul_f64(fastrand::f64() / 2.0)
}

/// The envelope of the next attempt after a retryable failure at `now`,
/// and how long it waits: the task's `retry_after`, else [`backoff`].
pub fn next_attempt(
    env: &Envelope,
    e: &TaskError,
    worker: &WorkerConfig,
    now: DateTime<Utc>,
) -> (Envelope, Duration) {
    let delay = match e {
        TaskError::Retry {
            retry_after: Some(after),
            ..
        } => *after,
        _ => backoff(
            env.attempt,
            worker.retry_backoff_base.0,
            worker.retry_backoff_max.0,
        ),
    };
    let mut next = env.clone();
    next.attempt += 1;
    next.eta = Some(later(now, delay));
    (next, delay)
}

/// Run a task call under its hard time limit.
pub async fn within_time_limit(
    limit: Duration,
    call: impl Future<Output = Result<(), TaskError>>,
) -> Result<(), TaskError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(TaskError::TimedOut(limit)))
}

/// Carries out a verdict for the caller of [`Executor::execute`]: the
/// worker publishes to a delay tier or to the dead-letter queue and awaits
/// the confirm; the local runner has nothing to make durable. An error
/// means the verdict is not durable: nothing about it is recorded, and the
/// caller must see the delivery again.
pub trait Outlet: Sync {
    type Error;
    fn carry_out(
        &self,
        env: &Envelope,
        verdict: &Verdict,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The wall clock `eta` and `expires_at` are read against.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// How busy an executor is (worker heartbeats).
#[derive(Debug, Default)]
pub struct Activity {
    active: AtomicUsize,
    processed: AtomicU64,
    /// The broker node (redacted URL) of the worker's current session.
    broker_node: std::sync::RwLock<Option<String>>,
}

impl Activity {
    /// The broker node of the worker's current session.
    pub fn broker_node(&self) -> Option<String> {
        self.broker_node.read().ok().and_then(|n| n.clone())
    }

    pub fn set_broker_node(&self, node: Option<String>) {
        if let Ok(mut n) = self.broker_node.write() {
            *n = node;
        }
    }

    /// Task calls running now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
    /// Task calls finished.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }
}

/// Runs envelopes through the execution path for one caller.
pub struct Executor {
    services: Arc<Services>,
    registry: Arc<Registry>,
    /// Where the tasks' children go.
    outbox: Outbox,
    /// The process as task states name it.
    worker: String,
    activity: Arc<Activity>,
    clock: Clock,
}

impl Executor {
    pub fn new(services: Arc<Services>, registry: Arc<Registry>, outbox: Outbox) -> Executor {
        Executor {
            worker: services.worker_id.clone(),
            services,
            registry,
            outbox,
            activity: Arc::default(),
            clock: system_clock(),
        }
    }

    /// Name the process in task states (default: the worker id).
    pub fn worker_name(mut self, name: impl Into<String>) -> Executor {
        self.worker = name.into();
        self
    }

    /// Count into `activity` (shared by a worker's sessions).
    pub fn with_activity(mut self, activity: Arc<Activity>) -> Executor {
        self.activity = activity;
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Executor {
        self.clock = clock;
        self
    }

    /// Run `env` to its verdict, have `outlet` carry the verdict out, then
    /// record it: task state, metrics, log line, observers. The outlet's
    /// error is returned with nothing recorded.
    pub async fn execute<O: Outlet>(
        &self,
        env: &Envelope,
        outlet: &O,
    ) -> Result<Verdict, O::Error> {
        let span = info_span!(
            "task",
            task.id = %env.id,
            task.name = %env.task,
            attempt = env.attempt,
            run_id = env.run_id.as_deref().unwrap_or(""),
            queue = env.queue.as_str(),
        );
        async {
            let verdict = self.decide(env).await;
            outlet.carry_out(env, &verdict).await?;
            self.record(env, &verdict);
            Ok(verdict)
        }
        .instrument(span)
        .await
    }

    async fn decide(&self, env: &Envelope) -> Verdict {
        let s = &self.services;
        s.metrics
            .received
            .with_label_values(&self.labels(env))
            .inc();
        // The worker's copy may be a refresh behind an un-revoke (a replay):
        // Redis has the last word, when it answers.
        if s.revoked.contains(&env.id)
            && crate::revoke::is_revoked(&s.redis, &s.config.namespace, &env.id)
                .await
                .unwrap_or(true)
        {
            return Verdict::DeadLetter {
                reason: DeadReason::Revoked,
                error: "revoked by an operator before it ran".into(),
            };
        }
        let shortest_tier = s.topology.tiers[0];
        match check_due(env, (self.clock)(), shortest_tier) {
            Ok(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
            Ok(_) => {}
            Err(verdict) => return verdict,
        }
        let (task, keys) = match lookup(&self.registry, env, &s.config) {
            Ok(found) => found,
            Err(verdict) => return verdict,
        };
        for key in &keys {
            let max_wait = s.config.worker.max_rate_limit_wait.0;
            if let Err(refused) = s.limiter.acquire(key, max_wait).await {
                if let AcquireError::Unavailable(e) = &refused {
                    warn!(key, error = %e, "rate limiter unavailable; deferring task");
                }
                return gate_verdict(env, key, refused, (self.clock)(), shortest_tier);
            }
        }
        let result = self.call(task.as_ref(), env).await;
        task_verdict(env, result, &s.config.worker, (self.clock)())
    }

    /// The task call itself, with its state, gauges and run-time metrics.
    async fn call(&self, task: &dyn DynTask, env: &Envelope) -> Result<(), TaskError> {
        let s = &self.services;
        let m = &s.metrics;
        let labels = self.labels(env);
        self.state(env, TaskStatus::Started, None);
        self.activity.active.fetch_add(1, Ordering::Relaxed);
        m.in_flight.inc();
        let ctx = TaskContext {
            envelope: env.clone(),
            services: s.clone(),
            publisher: self.outbox.clone(),
            registry: self.registry.clone(),
        };
        let limit = self.registry.time_limit(&env.task, &s.config);
        let started = tokio::time::Instant::now();
        let result = within_time_limit(limit, task.call(&ctx, env.args.clone())).await;
        let elapsed = started.elapsed();
        m.in_flight.dec();
        self.activity.active.fetch_sub(1, Ordering::Relaxed);
        self.activity.processed.fetch_add(1, Ordering::Relaxed);
        m.runtime
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
        match &result {
            Ok(()) => m.succeeded.with_label_values(&labels).inc(),
            Err(_) => m.failed.with_label_values(&labels).inc(),
        }
        debug!(?elapsed, ok = result.is_ok(), "task call returned");
        result
    }

    /// What a verdict that has been carried out leaves behind.
    fn record(&self, env: &Envelope, verdict: &Verdict) {
        let s = &self.services;
        let m = &s.metrics;
        let labels = self.labels(env);
        match verdict {
            Verdict::Ack => {
                self.state(env, TaskStatus::Succeeded, None);
                debug!("task succeeded");
                s.notify(env, Outcome::Succeeded);
            }
            Verdict::Retry { next, delay, error } => {
                m.retried.with_label_values(&labels).inc();
                self.state(next, TaskStatus::Retrying, Some(error.clone()));
                warn!(error = %error, ?delay, next_attempt = next.attempt, "task failed; will retry");
                s.notify(env, Outcome::Retrying { error });
            }
            Verdict::Defer {
                next,
                delay,
                cause: DeferCause::RateLimited { key },
            } => {
                m.rate_limited.with_label_values(&labels).inc();
                self.state(next, TaskStatus::Queued, None);
                debug!(key, ?delay, "rate limited; deferred without holding a slot");
            }
            Verdict::Defer {
                delay,
                cause: DeferCause::NotDue,
                ..
            } => debug!(remaining = ?delay, "not due yet; deferred"),
            Verdict::DeadLetter { reason, error } => {
                m.dead_lettered.with_label_values(&labels).inc();
                // One status for "will not run", whatever the reason; the
                // reason leads the error text.
                self.state(
                    env,
                    TaskStatus::Dead,
                    Some(format!("{}: {error}", reason.as_str())),
                );
                error!(
                    reason = reason.as_str(),
                    error = error.as_str(),
                    "task dead-lettered"
                );
                s.notify(
                    env,
                    Outcome::DeadLettered {
                        reason: *reason,
                        error,
                    },
                );
            }
        }
    }

    fn labels<'a>(&'a self, env: &'a Envelope) -> [&'a str; 3] {
        [
            env.task.as_str(),
            env.queue.as_str(),
            self.services.metrics.hostname.as_str(),
        ]
    }

    fn state(&self, env: &Envelope, status: TaskStatus, error: Option<String>) {
        let mut st = TaskState::of(env, status);
        st.worker = Some(self.worker.clone());
        st.error = error;
        self.services.state_writer.record(st);
    }
}

#[cfg(test)]
mod tests;
