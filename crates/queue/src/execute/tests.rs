//! The execution path without a broker: the decisions directly, the timing
//! (time limit, deferral, retry backoff) under paused tokio time, and the
//! bookkeeping of a local run against the real Redis.

use std::sync::Mutex;

use chrono::TimeZone;
use deadpool_redis::redis;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::*;
use crate::config::{HumanDuration, LimitSpec, SecretUrl, TaskOverride};
use crate::context::OutcomeObserver;
use crate::local::LocalRunner;
use crate::task::Task;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
}

/// What the test task does, attempt by attempt.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PlanArgs {
    sleep_ms: u64,
    /// Attempts below this fail with a retryable error.
    fail_attempts: u32,
    retry_after_ms: Option<u64>,
    fatal: bool,
    /// Passes rate-limit key `k` first.
    limited: bool,
}

/// A task that does what its arguments say and notes when each attempt
/// started (tokio time).
#[derive(Clone, Default)]
struct Plan {
    starts: Arc<Mutex<Vec<(Uuid, u32, Instant)>>>,
}

impl Plan {
    /// When attempt `attempt` of `id` started, from `origin`.
    fn started(&self, id: Uuid, attempt: u32, origin: Instant) -> Option<Duration> {
        let starts = self.starts.lock().unwrap();
        starts
            .iter()
            .find(|(i, a, _)| *i == id && *a == attempt)
            .map(|(_, _, at)| *at - origin)
    }

    fn runs(&self) -> usize {
        self.starts.lock().unwrap().len()
    }
}

impl Task for Plan {
    const NAME: &'static str = "plan";
    type Args = PlanArgs;

    fn rate_limit_keys(&self, a: &PlanArgs) -> Vec<String> {
        if a.limited {
            vec!["k".to_string()]
        } else {
            Vec::new()
        }
    }

    async fn run(&self, ctx: &TaskContext, a: PlanArgs) -> Result<(), TaskError> {
        self.starts
            .lock()
            .unwrap()
            .push((ctx.id(), ctx.attempt(), Instant::now()));
        if a.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(a.sleep_ms)).await;
        }
        if a.fatal {
            return Err(TaskError::fatal("bad input"));
        }
        if ctx.attempt() < a.fail_attempts {
            return Err(match a.retry_after_ms {
                Some(ms) => TaskError::retry_after("flaky", Duration::from_millis(ms)),
                None => TaskError::retry("flaky"),
            });
        }
        Ok(())
    }
}

fn env(args: serde_json::Value) -> Envelope {
    let mut e = Envelope::new("plan", args);
    e.queue = "default".into();
    e.max_retries = 2;
    e
}

/// Every outcome observers were told, as `(id, attempt, what)`.
#[derive(Default)]
struct Seen(Mutex<Vec<(Uuid, u32, String)>>);

impl Seen {
    fn all(&self) -> Vec<(Uuid, u32, String)> {
        self.0.lock().unwrap().clone()
    }
}

impl OutcomeObserver for Seen {
    fn on_outcome(&self, env: &Envelope, outcome: Outcome<'_>) {
        let what = match outcome {
            Outcome::Succeeded => "succeeded".to_string(),
            Outcome::Retrying { error } => format!("retrying: {error}"),
            Outcome::DeadLettered { reason, error } => format!("dead {reason}: {error}"),
        };
        self.0.lock().unwrap().push((env.id, env.attempt, what));
    }
}

/// An outlet that notes each verdict with how many outcomes observers had
/// been told when it was carried out, and refuses it when `refuse` (a
/// broker that did not confirm).
struct Noted {
    seen: Arc<Seen>,
    refuse: bool,
    carried: Mutex<Vec<(Verdict, usize)>>,
}

impl Noted {
    fn new(seen: &Arc<Seen>, refuse: bool) -> Noted {
        Noted {
            seen: seen.clone(),
            refuse,
            carried: Mutex::new(Vec::new()),
        }
    }
}

impl Outlet for Noted {
    type Error = &'static str;

    async fn carry_out(&self, _: &Envelope, verdict: &Verdict) -> Result<(), &'static str> {
        let told = self.seen.all().len();
        self.carried.lock().unwrap().push((verdict.clone(), told));
        if self.refuse {
            Err("not confirmed")
        } else {
            Ok(())
        }
    }
}

fn test_config(name: &str) -> QueueConfig {
    let mut c = QueueConfig {
        namespace: format!(
            "t-exec-{name}-{}",
            &Uuid::new_v4().simple().to_string()[..8]
        ),
        ..QueueConfig::default()
    };
    // A test that fails before its clean-up leaves nothing for long.
    c.state.ttl = HumanDuration(secs(60));
    c
}

/// Services whose Redis is a closed port. The paused-time tests run tasks
/// without rate limits, which must not wait on Redis: state writes go to
/// the background writer, which only fails here.
fn offline_services(tweak: impl FnOnce(&mut QueueConfig)) -> (Arc<Services>, Arc<Seen>) {
    let mut c = test_config("offline");
    c.redis.url = SecretUrl::new("redis://127.0.0.1:1");
    tweak(&mut c);
    let (s, _writer) = Services::new(Arc::new(c)).unwrap();
    let seen = Arc::new(Seen::default());
    s.observe(seen.clone());
    (s, seen)
}

/// Wall time that moves with tokio's paused clock.
fn paused_clock() -> Clock {
    let (wall, start) = (Utc::now(), Instant::now());
    Arc::new(move || later(wall, start.elapsed()))
}

fn count(c: &prometheus::IntCounterVec, s: &Services, task: &str) -> u64 {
    c.with_label_values(&[task, "default", s.metrics.hostname.as_str()])
        .get()
}

/// Delete every Redis key of the test's namespace.
async fn forget(config: &QueueConfig) {
    let pool = crate::context::redis_pool(config).unwrap();
    let mut conn = pool.get().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", config.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

// --- the decisions ---

#[test]
fn an_expired_task_is_dead_whatever_its_eta() {
    let mut e = env(json!({}));
    e.expires_at = Some(t0() - chrono::Duration::seconds(1));
    e.eta = Some(t0() + chrono::Duration::hours(1));
    assert_eq!(
        check_due(&e, t0(), secs(1)),
        Err(dead(DeadReason::Expired, "expired before it could run"))
    );
    e.expires_at = Some(t0() + chrono::Duration::seconds(1));
    assert!(matches!(
        check_due(&e, t0(), secs(1)),
        Err(Verdict::Defer {
            cause: DeferCause::NotDue,
            ..
        })
    ));
}

#[test]
fn an_eta_past_the_shortest_tier_is_deferred_and_a_nearer_one_waited_in_place() {
    let mut e = env(json!({}));
    assert_eq!(check_due(&e, t0(), secs(1)), Ok(Duration::ZERO));
    e.eta = Some(t0() - chrono::Duration::seconds(5));
    assert_eq!(check_due(&e, t0(), secs(1)), Ok(Duration::ZERO));
    e.eta = Some(t0() + chrono::Duration::milliseconds(400));
    assert_eq!(check_due(&e, t0(), secs(1)), Ok(Duration::from_millis(400)));
    e.eta = Some(t0() + chrono::Duration::seconds(90));
    assert_eq!(
        check_due(&e, t0(), secs(1)),
        Err(Verdict::Defer {
            next: Box::new(e.clone()),
            delay: secs(90),
            cause: DeferCause::NotDue,
        })
    );
}

#[test]
fn lookup_kills_unknown_tasks_and_bad_arguments_and_gathers_the_keys() {
    let registry = Registry::new().with(Plan::default());
    let mut config = QueueConfig::default();
    let mut unknown = env(json!({}));
    unknown.task = "nope".into();
    assert_eq!(
        lookup(&registry, &unknown, &config).err(),
        Some(dead(
            DeadReason::UnknownTask,
            "no task named \"nope\" is registered in this worker"
        ))
    );
    let bad = env(json!({"sleep_ms": "soon"}));
    match lookup(&registry, &bad, &config).err() {
        Some(Verdict::DeadLetter {
            reason: DeadReason::Fatal,
            error,
        }) => assert!(error.contains("sleep_ms"), "{error}"),
        other => panic!("{other:?}"),
    }
    let limited = env(json!({"limited": true}));
    let keys = |config: &QueueConfig| lookup(&registry, &limited, config).ok().unwrap().1;
    assert_eq!(keys(&config), ["k"]);
    config.tasks.insert(
        "plan".into(),
        TaskOverride {
            rate_limits: Some(vec![LimitSpec {
                limit: 1,
                per: HumanDuration(secs(1)),
                burst: 1,
            }]),
            ..TaskOverride::default()
        },
    );
    assert_eq!(keys(&config), ["k", "task.plan"]);
}

#[test]
fn a_refused_rate_limit_defers_the_same_attempt_and_an_unknown_key_is_fatal() {
    let e = env(json!({}));
    let mut next = e.clone();
    next.eta = Some(t0() + chrono::Duration::seconds(42));
    assert_eq!(
        gate_verdict(&e, "k", AcquireError::TooLong(secs(42)), t0(), secs(1)),
        Verdict::Defer {
            next: Box::new(next),
            delay: secs(42),
            cause: DeferCause::RateLimited { key: "k".into() },
        }
    );
    // Redis down: ask again after the shortest tier.
    let mut next = e.clone();
    next.eta = Some(t0() + chrono::Duration::seconds(5));
    assert_eq!(
        gate_verdict(
            &e,
            "k",
            AcquireError::Unavailable("down".into()),
            t0(),
            secs(5)
        ),
        Verdict::Defer {
            next: Box::new(next),
            delay: secs(5),
            cause: DeferCause::RateLimited { key: "k".into() },
        }
    );
    assert_eq!(
        gate_verdict(&e, "k", AcquireError::UnknownKey("k".into()), t0(), secs(1)),
        dead(
            DeadReason::Fatal,
            "task uses rate-limit key \"k\" but [rate_limits] has no such key"
        )
    );
}

#[test]
fn a_task_result_becomes_ack_retry_or_dead() {
    let worker = WorkerConfig {
        retry_backoff_base: HumanDuration(secs(1)),
        retry_backoff_max: HumanDuration(secs(60)),
        ..WorkerConfig::default()
    };
    let first = env(json!({}));
    assert_eq!(task_verdict(&first, Ok(()), &worker, t0()), Verdict::Ack);
    assert_eq!(
        task_verdict(&first, Err(TaskError::fatal("bad input")), &worker, t0()),
        dead(DeadReason::Fatal, "bad input")
    );
    // The task said how long to wait.
    let mut next = first.clone();
    next.attempt = 1;
    next.eta = Some(t0() + chrono::Duration::seconds(30));
    assert_eq!(
        task_verdict(
            &first,
            Err(TaskError::retry_after("flaky", secs(30))),
            &worker,
            t0()
        ),
        Verdict::Retry {
            next: Box::new(next),
            delay: secs(30),
            error: "flaky".into(),
        }
    );
    // Otherwise backoff: attempt 1 waits within [1s, 2s]; an overrun is retried too.
    let mut second = first.clone();
    second.attempt = 1;
    for e in [TaskError::retry("flaky"), TaskError::TimedOut(secs(5))] {
        let Verdict::Retry { next, delay, .. } = task_verdict(&second, Err(e), &worker, t0())
        else {
            panic!("not a retry");
        };
        assert!(delay >= secs(1) && delay <= secs(2), "{delay:?}");
        assert_eq!(next.attempt, 2);
        assert_eq!(next.eta, Some(later(t0(), delay)));
    }
    let mut last = first.clone();
    last.attempt = 2;
    assert_eq!(
        task_verdict(&last, Err(TaskError::TimedOut(secs(5))), &worker, t0()),
        dead(
            DeadReason::RetriesExhausted,
            "gave up after 3 attempts: time limit of 5s exceeded"
        )
    );
}

#[test]
fn backoff_grows_and_is_capped() {
    let base = secs(1);
    let max = secs(60);
    for attempt in 0..10 {
        let d = backoff(attempt, base, max);
        let full = (base * 2u32.pow(attempt)).min(max);
        assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
    }
    assert!(backoff(100, base, max) <= max);
}

// --- timing, under paused tokio time ---

#[tokio::test(start_paused = true)]
async fn the_time_limit_ends_a_call_exactly_at_the_limit() {
    let start = Instant::now();
    let r = within_time_limit(secs(2), async {
        tokio::time::sleep(secs(3600)).await;
        Ok(())
    })
    .await;
    assert!(
        matches!(r, Err(TaskError::TimedOut(d)) if d == secs(2)),
        "{r:?}"
    );
    assert_eq!(start.elapsed(), secs(2));

    let start = Instant::now();
    let r = within_time_limit(secs(2), async {
        tokio::time::sleep(secs(1)).await;
        Err(TaskError::fatal("no"))
    })
    .await;
    assert!(matches!(r, Err(TaskError::Fatal(_))), "{r:?}");
    assert_eq!(start.elapsed(), secs(1));
}

#[tokio::test(start_paused = true)]
async fn an_overrun_is_cut_at_the_time_limit_counted_and_retried() {
    let (s, seen) = offline_services(|c| {
        c.tasks.insert(
            "plan".into(),
            TaskOverride {
                time_limit: Some(HumanDuration(secs(2))),
                ..TaskOverride::default()
            },
        );
    });
    let (tx, _rx) = mpsc::unbounded_channel();
    let activity = Arc::new(Activity::default());
    let exec = Executor::new(
        s.clone(),
        Arc::new(Registry::new().with(Plan::default())),
        Outbox::Local(tx),
    )
    .with_activity(activity.clone())
    .with_clock(paused_clock());
    let e = env(json!({"sleep_ms": 3_600_000}));
    let outlet = Noted::new(&seen, false);
    let start = Instant::now();
    let verdict = exec.execute(&e, &outlet).await.unwrap();
    assert_eq!(start.elapsed(), secs(2));
    let Verdict::Retry { next, delay, error } = verdict else {
        panic!("{verdict:?}");
    };
    assert_eq!(error, "time limit of 2s exceeded");
    assert_eq!(next.attempt, 1);
    assert!(delay <= s.config.worker.retry_backoff_base.0, "{delay:?}");
    assert_eq!(
        seen.all(),
        [(e.id, 0, "retrying: time limit of 2s exceeded".to_string())]
    );
    let m = &s.metrics;
    assert_eq!(count(&m.received, &s, "plan"), 1);
    assert_eq!(count(&m.failed, &s, "plan"), 1);
    assert_eq!(count(&m.retried, &s, "plan"), 1);
    assert_eq!(count(&m.succeeded, &s, "plan"), 0);
    assert_eq!(m.in_flight.get(), 0);
    assert_eq!((activity.active(), activity.processed()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_verdict_is_recorded_only_once_carried_out() {
    let (s, seen) = offline_services(|_| {});
    let (tx, _rx) = mpsc::unbounded_channel();
    let exec = Executor::new(
        s.clone(),
        Arc::new(Registry::new().with(Plan::default())),
        Outbox::Local(tx),
    )
    .with_clock(paused_clock());
    let e = env(json!({"fatal": true}));
    let fatal = dead(DeadReason::Fatal, "bad input");

    // Not confirmed: nothing is recorded, the caller gets the error back.
    let refusing = Noted::new(&seen, true);
    assert_eq!(exec.execute(&e, &refusing).await, Err("not confirmed"));
    assert_eq!(*refusing.carried.lock().unwrap(), [(fatal.clone(), 0)]);
    assert!(seen.all().is_empty());
    assert_eq!(count(&s.metrics.dead_lettered, &s, "plan"), 0);

    // Confirmed: observers are told after the outlet acted.
    let accepting = Noted::new(&seen, false);
    assert_eq!(exec.execute(&e, &accepting).await, Ok(fatal.clone()));
    assert_eq!(*accepting.carried.lock().unwrap(), [(fatal, 0)]);
    assert_eq!(seen.all(), [(e.id, 0, "dead fatal: bad input".to_string())]);
    assert_eq!(count(&s.metrics.dead_lettered, &s, "plan"), 1);
}

#[tokio::test(start_paused = true)]
async fn local_retries_wait_their_delay_without_holding_a_slot() {
    let (s, seen) = offline_services(|c| {
        c.worker.retry_backoff_base = HumanDuration(secs(10));
    });
    let plan = Plan::default();
    let registry = Arc::new(Registry::new().with(plan.clone()));
    let told = env(json!({"fail_attempts": 1, "retry_after_ms": 30_000}));
    let backed_off = env(json!({"fail_attempts": 1}));
    let busy = env(json!({"sleep_ms": 1000}));
    let origin = Instant::now();
    let report = LocalRunner::new(s.clone(), registry, 1)
        .with_clock(paused_clock())
        .run(vec![told.clone(), backed_off.clone(), busy.clone()])
        .await;
    assert_eq!((report.succeeded, report.retried), (3, 2));
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let at = |e: &Envelope, attempt| plan.started(e.id, attempt, origin).unwrap();
    // One slot: the busy task ran while both retries were waiting.
    assert_eq!(at(&told, 0), Duration::ZERO);
    assert_eq!(at(&backed_off, 0), Duration::ZERO);
    assert_eq!(at(&busy, 0), Duration::ZERO);
    // The task's retry_after, to the millisecond; else backoff (base 10s, equal jitter).
    assert_eq!(at(&told, 1), secs(30));
    let b = at(&backed_off, 1);
    assert!(b >= secs(5) && b <= secs(10), "{b:?}");
    let mut outcomes = seen.all();
    outcomes.sort();
    let mut expected = vec![
        (told.id, 0, "retrying: flaky".to_string()),
        (told.id, 1, "succeeded".to_string()),
        (backed_off.id, 0, "retrying: flaky".to_string()),
        (backed_off.id, 1, "succeeded".to_string()),
        (busy.id, 0, "succeeded".to_string()),
    ];
    expected.sort();
    assert_eq!(outcomes, expected);
}

#[tokio::test(start_paused = true)]
async fn local_runs_a_future_task_when_due_without_holding_a_slot() {
    let (s, _seen) = offline_services(|c| {
        c.broker.retry_tiers = vec![HumanDuration(secs(1)), HumanDuration(secs(60))];
    });
    let plan = Plan::default();
    let registry = Arc::new(Registry::new().with(plan.clone()));
    let clock = paused_clock();
    let mut far = env(json!({}));
    far.eta = Some(later(clock(), secs(600)));
    let mut near = env(json!({}));
    near.eta = Some(later(clock(), Duration::from_millis(500)));
    let busy = env(json!({"sleep_ms": 2000}));
    let origin = Instant::now();
    let report = LocalRunner::new(s.clone(), registry, 1)
        .with_clock(clock)
        .run(vec![far.clone(), near.clone(), busy.clone()])
        .await;
    assert_eq!(
        (report.succeeded, report.retried),
        (3, 0),
        "a deferral is no retry"
    );
    let at = |e: &Envelope| plan.started(e.id, 0, origin).unwrap();
    // `far` waits outside the slot; `near` (under the shortest tier) waits
    // in place and holds it, as in a worker.
    assert_eq!(at(&near), Duration::from_millis(500));
    assert_eq!(at(&busy), Duration::from_millis(500));
    assert_eq!(at(&far), secs(600));
    assert_eq!(plan.runs(), 3);
    assert_eq!(count(&s.metrics.rate_limited, &s, "plan"), 0);
}

// --- bookkeeping, against the real Redis ---

#[tokio::test]
async fn a_local_run_records_states_metrics_and_outcomes_as_a_worker_does() {
    let config = test_config("local");
    let (s, writer) = Services::new(Arc::new(config.clone())).unwrap();
    let seen = Arc::new(Seen::default());
    s.observe(seen.clone());
    let ok = env(json!({}));
    let flaky = env(json!({"fail_attempts": 1, "retry_after_ms": 0}));
    let fatal = env(json!({"fatal": true}));
    let mut expired = env(json!({}));
    expired.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
    let mut unknown = env(json!({}));
    unknown.task = "nope".into();
    let registry = Arc::new(Registry::new().with(Plan::default()));
    let all = vec![
        ok.clone(),
        flaky.clone(),
        fatal.clone(),
        expired.clone(),
        unknown.clone(),
    ];
    let report = LocalRunner::new(s.clone(), registry, 4).run(all).await;

    assert_eq!((report.succeeded, report.retried), (2, 1));
    let mut failed: Vec<(Uuid, String)> = report
        .failed
        .iter()
        .map(|(e, w)| (e.id, w.clone()))
        .collect();
    failed.sort();
    let mut expected = vec![
        (fatal.id, "fatal: bad input".to_string()),
        (
            expired.id,
            "expired: expired before it could run".to_string(),
        ),
        (
            unknown.id,
            "unknown-task: no task named \"nope\" is registered in this worker".to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(failed, expected);

    let m = &s.metrics;
    assert_eq!(count(&m.received, &s, "plan"), 5);
    assert_eq!(count(&m.received, &s, "nope"), 1);
    assert_eq!(count(&m.succeeded, &s, "plan"), 2);
    assert_eq!(count(&m.failed, &s, "plan"), 2);
    assert_eq!(count(&m.retried, &s, "plan"), 1);
    assert_eq!(count(&m.dead_lettered, &s, "plan"), 2);
    assert_eq!(count(&m.dead_lettered, &s, "nope"), 1);

    let mut outcomes = seen.all();
    outcomes.sort();
    let mut expected = vec![
        (ok.id, 0, "succeeded".to_string()),
        (flaky.id, 0, "retrying: flaky".to_string()),
        (flaky.id, 1, "succeeded".to_string()),
        (fatal.id, 0, "dead fatal: bad input".to_string()),
        (
            expired.id,
            0,
            "dead expired: expired before it could run".to_string(),
        ),
        (
            unknown.id,
            0,
            "dead unknown-task: no task named \"nope\" is registered in this worker".to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(outcomes, expected);

    // The states, once the writer has flushed them.
    let states = s.states.clone();
    let worker = format!("{} (local)", s.worker_id);
    drop(s);
    writer.await.unwrap();
    let state = async |e: &Envelope| states.get(&e.id).await.unwrap().unwrap();
    for (e, status, attempt) in [
        (&ok, TaskStatus::Succeeded, 0),
        (&flaky, TaskStatus::Succeeded, 1),
        (&fatal, TaskStatus::Dead, 0),
        (&expired, TaskStatus::Dead, 0),
        (&unknown, TaskStatus::Dead, 0),
    ] {
        let st = state(e).await;
        assert_eq!((st.status, st.attempt), (status, attempt), "{st:?}");
        assert_eq!(st.worker.as_deref(), Some(worker.as_str()));
    }
    assert_eq!(
        state(&fatal).await.error.as_deref(),
        Some("fatal: bad input")
    );
    assert_eq!(
        state(&expired).await.error.as_deref(),
        Some("expired: expired before it could run")
    );
    forget(&config).await;
}

#[tokio::test]
async fn a_rate_limit_past_the_wait_budget_defers_without_counting_a_retry() {
    let mut config = test_config("limit");
    config.rate_limits.insert(
        "k".into(),
        vec![LimitSpec {
            limit: 1,
            per: HumanDuration(secs(60)),
            burst: 1,
        }],
    );
    let (s, writer) = Services::new(Arc::new(config.clone())).unwrap();
    let seen = Arc::new(Seen::default());
    s.observe(seen.clone());
    let plan = Plan::default();
    let (tx, _rx) = mpsc::unbounded_channel();
    let exec = Executor::new(
        s.clone(),
        Arc::new(Registry::new().with(plan.clone())),
        Outbox::Local(tx),
    );
    let outlet = Noted::new(&seen, false);
    let first = env(json!({"limited": true}));
    let second = env(json!({"limited": true}));
    assert_eq!(exec.execute(&first, &outlet).await, Ok(Verdict::Ack));
    let before = Utc::now();
    let verdict = exec.execute(&second, &outlet).await.unwrap();
    let after = Utc::now();
    let Verdict::Defer {
        next,
        delay,
        cause: DeferCause::RateLimited { key },
    } = verdict
    else {
        panic!("{verdict:?}");
    };
    // One a minute: the next slot is about a minute away, far past the
    // 500 ms budget, so the task does not wait for it in a slot.
    assert_eq!(key, "k");
    assert!(delay > secs(55) && delay <= secs(60), "{delay:?}");
    let eta = next.eta.unwrap();
    assert!(eta >= later(before, delay) && eta <= later(after, delay));
    assert_eq!(Envelope { eta: None, ..*next }, second, "the same attempt");
    assert_eq!(plan.runs(), 1);
    let m = &s.metrics;
    assert_eq!(count(&m.rate_limited, &s, "plan"), 1);
    assert_eq!(count(&m.retried, &s, "plan"), 0);
    assert_eq!(seen.all(), [(first.id, 0, "succeeded".to_string())]);

    let states = s.states.clone();
    drop((exec, s));
    writer.await.unwrap();
    let st = states.get(&second.id).await.unwrap().unwrap();
    assert_eq!((st.status, st.eta), (TaskStatus::Queued, Some(eta)));
    forget(&config).await;
}
