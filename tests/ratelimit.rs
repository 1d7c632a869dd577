//! The Redis GCRA limiter against the real local Redis.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alertflow::config::{HumanDuration, LimitSpec};
use alertflow::queue::ratelimit::{Decision, RateLimiter};
use common::TestEnv;

fn limit(n: u32, per_ms: u64, burst: u32) -> LimitSpec {
    LimitSpec {
        limit: n,
        per: HumanDuration(Duration::from_millis(per_ms)),
        burst,
    }
}

fn limiter(env: &TestEnv, limits: Vec<(&str, Vec<LimitSpec>)>) -> RateLimiter {
    let pool = alertflow::queue::context::redis_pool(&env.config).unwrap();
    let map: BTreeMap<String, Vec<LimitSpec>> = limits
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    RateLimiter::new(pool, env.ns(), map, false)
}

#[tokio::test]
async fn eight_concurrent_clients_never_exceed_rate_plus_burst() {
    let env = TestEnv::new("rl-conc");
    // 40/s with a burst of 5.
    let rl = Arc::new(limiter(&env, vec![("k", vec![limit(40, 1000, 5)])]));
    let admitted = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_millis(1500);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (rl, admitted, denied) = (rl.clone(), admitted.clone(), denied.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < run_for {
                match rl.check("k").await.unwrap() {
                    Decision::Allowed => admitted.fetch_add(1, Ordering::SeqCst),
                    Decision::Wait(_) => denied.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let got = admitted.load(Ordering::SeqCst) as f64;
    let ceiling = 5.0 + 40.0 * elapsed;
    assert!(
        got <= ceiling + 1.0,
        "admitted {got} > burst + rate*t = {ceiling}"
    );
    // Hammering clients get close to the allowance: the limiter is not just saying no.
    assert!(
        got >= 40.0 * elapsed * 0.8,
        "admitted only {got} in {elapsed}s"
    );
    assert!(
        denied.load(Ordering::SeqCst) > 100,
        "the clients were really throttled"
    );
}

#[tokio::test]
async fn wait_estimate_is_right_and_all_limits_must_admit() {
    let env = TestEnv::new("rl-wait");
    let rl = limiter(
        &env,
        vec![
            ("single", vec![limit(10, 1000, 1)]),
            ("double", vec![limit(100, 1000, 1), limit(5, 1000, 1)]),
        ],
    );
    assert_eq!(rl.check("single").await.unwrap(), Decision::Allowed);
    let Decision::Wait(w) = rl.check("single").await.unwrap() else {
        panic!("second request within 100ms must wait");
    };
    assert!(
        w > Duration::from_millis(80) && w <= Duration::from_millis(100),
        "{w:?}"
    );
    // Just before the estimate: still denied; after it: admitted.
    tokio::time::sleep(w.saturating_sub(Duration::from_millis(30))).await;
    assert!(matches!(
        rl.check("single").await.unwrap(),
        Decision::Wait(_)
    ));
    tokio::time::sleep(Duration::from_millis(35)).await;
    assert_eq!(rl.check("single").await.unwrap(), Decision::Allowed);

    // Two limits: the stricter (5/s → 200ms) decides the wait.
    assert_eq!(rl.check("double").await.unwrap(), Decision::Allowed);
    let Decision::Wait(w) = rl.check("double").await.unwrap() else {
        panic!("must wait for the 5/s limit");
    };
    assert!(
        w > Duration::from_millis(170) && w <= Duration::from_millis(200),
        "{w:?}"
    );
    // A denied request charges nothing: after the wait, one is admitted.
    tokio::time::sleep(w + Duration::from_millis(5)).await;
    assert_eq!(rl.check("double").await.unwrap(), Decision::Allowed);

    assert!(rl.check("unknown").await.is_err());
    // acquire() sleeps for short waits and gives up on long ones.
    let t0 = Instant::now();
    rl.acquire("single", Duration::from_secs(1)).await.unwrap();
    rl.acquire("single", Duration::from_secs(1)).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(80));
    assert!(
        rl.acquire("double", Duration::from_millis(10))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn redis_down_is_a_choice_fail_open_or_wait() {
    let env = TestEnv::new("rl-down");
    let mut c = (*env.config).clone();
    c.redis.url = alertflow::config::SecretUrl::new("redis://127.0.0.1:1");
    c.redis.timeout = HumanDuration(Duration::from_millis(200));
    let pool = alertflow::queue::context::redis_pool(&c).unwrap();
    let mut limits = BTreeMap::new();
    limits.insert("k".to_string(), vec![limit(1, 1000, 1)]);
    let closed = RateLimiter::new(pool.clone(), env.ns(), limits.clone(), false);
    assert!(
        closed.check("k").await.is_err(),
        "fail_open=false reports the outage"
    );
    assert!(
        closed
            .acquire("k", Duration::from_millis(300))
            .await
            .is_err()
    );
    let open = RateLimiter::new(pool, env.ns(), limits, true);
    assert_eq!(open.check("k").await.unwrap(), Decision::Allowed);
}

/// `[tasks.NAME] rate_limits`: a limit on starting a task, held by the
/// worker's gate across every worker (two here), without holding slots.
#[tokio::test]
async fn a_task_rate_limit_holds_across_workers() {
    let env = TestEnv::with("task-limit", |c| {
        c.worker.concurrency = 8;
        c.tasks.insert(
            "noop".into(),
            alertflow::config::TaskOverride {
                rate_limits: Some(vec![limit(4, 1000, 1)]),
                ..Default::default()
            },
        );
    });
    let registry = || env.registry();
    let (_conn, publisher) = env.publisher().await;
    let a = env.start_worker(registry());
    let b = env.start_worker(registry());
    let mut ids = Vec::new();
    for _ in 0..9 {
        let e = env.envelope(&registry(), "noop", serde_json::json!({}));
        publisher.publish(&e).await.unwrap();
        ids.push(e.id);
    }
    let mut done = Vec::new();
    for id in &ids {
        let st = env
            .wait_status(
                id,
                alertflow::queue::state::TaskStatus::Succeeded,
                Duration::from_secs(30),
            )
            .await;
        done.push(st.updated_at);
    }
    // 4/s with a burst of 1: nine starts need at least two seconds, however
    // many workers and slots there are (16 here).
    done.sort();
    let spread = (*done.last().unwrap() - done[0]).num_milliseconds();
    assert!(
        spread >= 1500,
        "nine noops within {spread} ms: the limit did not hold"
    );
    let deferred: u64 = [&a, &b]
        .iter()
        .map(|w| {
            w.services
                .metrics
                .rate_limited
                .with_label_values(&["noop", "default", &w.services.metrics.hostname])
                .get()
        })
        .sum();
    assert!(deferred >= 1, "tasks over the limit were deferred");
    a.stop().await;
    b.stop().await;
}
