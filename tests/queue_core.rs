//! The task-queue core against the real local RabbitMQ and Redis.

mod common;

use alertflow::queue::message::DeadReason;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alertflow::queue::message::Envelope;
use alertflow::queue::state::TaskStatus;
use alertflow::queue::task::{Registry, Task, TaskContext, TaskError};
use common::{Child, TestEnv, ms};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use serde::Deserialize;
use serde_json::json;

/// Records each attempt's time; fails `fail_times` times with `mode`.
#[derive(Clone, Default)]
struct Scripted {
    attempts: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
}

#[derive(Deserialize)]
struct ScriptedArgs {
    key: String,
    #[serde(default)]
    fail_times: usize,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    sleep_ms: u64,
}

impl Task for Scripted {
    const NAME: &'static str = "scripted";
    type Args = ScriptedArgs;

    async fn run(&self, _ctx: &TaskContext, a: ScriptedArgs) -> Result<(), TaskError> {
        let n = {
            let mut m = self.attempts.lock().expect("lock");
            let v = m.entry(a.key.clone()).or_default();
            v.push(Instant::now());
            v.len()
        };
        if a.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(a.sleep_ms)).await;
        }
        if n <= a.fail_times {
            return Err(match a.mode.as_str() {
                "fatal" => TaskError::fatal("scripted fatal failure"),
                _ => TaskError::retry(format!("scripted transient failure {n}")),
            });
        }
        Ok(())
    }
}

impl Scripted {
    fn times(&self, key: &str) -> Vec<Instant> {
        self.attempts
            .lock()
            .expect("lock")
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
}

fn registry(s: &Scripted) -> Registry {
    Registry::new()
        .with(alertflow::tasks::noop::Noop)
        .with(alertflow::tasks::sleep::Sleep)
        .with(s.clone())
}

#[tokio::test]
async fn task_is_consumed_acked_and_states_progress() {
    let env = TestEnv::new("states");
    let s = Scripted::default();
    let reg = registry(&s);
    let (_conn, publisher) = env.publisher().await;
    let e = env.envelope(&reg, "scripted", json!({"key": "a", "sleep_ms": 400}));
    let states = env.states();
    states
        .put(&alertflow::queue::state::TaskState::of(
            &e,
            TaskStatus::Queued,
        ))
        .await
        .unwrap();
    publisher.publish(&e).await.unwrap();
    assert_eq!(
        states.get(&e.id).await.unwrap().unwrap().status,
        TaskStatus::Queued
    );
    let w = env.start_worker(reg);
    let started = env
        .wait_status(&e.id, TaskStatus::Started, Duration::from_secs(10))
        .await;
    assert!(started.worker.is_some());
    let done = env
        .wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(10))
        .await;
    assert_eq!(done.attempt, 0);
    assert_eq!(s.times("a").len(), 1);
    w.stop().await;
    // Acked: nothing came back to the queue when the worker's channel closed.
    assert_eq!(env.ready(&env.topology().queue("default")).await, 0);
    assert!(env.dead_letters().await.is_empty());
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff() {
    let env = TestEnv::new("retry");
    let s = Scripted::default();
    let reg = registry(&s);
    let (_conn, publisher) = env.publisher().await;
    let e = env.envelope(&reg, "scripted", json!({"key": "r", "fail_times": 2}));
    assert_eq!(e.max_retries, 5);
    publisher.publish(&e).await.unwrap();
    let w = env.start_worker(reg);
    let done = env
        .wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
    assert_eq!(done.attempt, 2, "third attempt succeeded");
    let t = s.times("r");
    assert_eq!(t.len(), 3, "exactly three attempts");
    // base 200ms: attempt 0 waits >= 100ms, attempt 1 waits >= 200ms (equal jitter).
    assert!(
        t[1] - t[0] >= Duration::from_millis(100),
        "{:?}",
        t[1] - t[0]
    );
    assert!(
        t[2] - t[1] >= Duration::from_millis(200),
        "{:?}",
        t[2] - t[1]
    );
    w.stop().await;
    assert!(env.dead_letters().await.is_empty());
}

#[tokio::test]
async fn exhausted_retries_are_dead_lettered_and_replay_brings_them_back() {
    let env = TestEnv::with("exhaust", |c| c.worker.max_retries = 2);
    let s = Scripted::default();
    let reg = registry(&s);
    let (_conn, publisher) = env.publisher().await;
    // Fails 3 times: with max_retries 2 it is dead after attempt 3.
    let e = env.envelope(&reg, "scripted", json!({"key": "x", "fail_times": 3}));
    publisher.publish(&e).await.unwrap();
    let w = env.start_worker(reg);
    let st = env
        .wait_status(&e.id, TaskStatus::Dead, Duration::from_secs(15))
        .await;
    assert!(st.error.unwrap().contains("gave up after 3 attempts"));
    let dead = env.wait_dead(1, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, e.id.to_string());
    assert_eq!(dead[0].reason, DeadReason::RetriesExhausted);
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].last_error.contains("scripted transient failure 3"));
    assert!(!dead[0].worker.is_empty());
    assert_eq!(s.times("x").len(), 3);

    // The operator replays it (real CLI); the 4th attempt succeeds.
    let cfg = env.config_file("");
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["dead", "replay", &e.id.to_string()])
        .env("ALERTFLOW_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 replayed"));
    env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(10))
        .await;
    assert_eq!(s.times("x").len(), 4);
    assert!(env.dead_letters().await.is_empty());
    w.stop().await;
}

#[tokio::test]
async fn poison_is_dead_lettered_at_once_and_the_worker_keeps_going() {
    let env = TestEnv::new("poison");
    let s = Scripted::default();
    let reg = registry(&s);
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());

    let fatal = env.envelope(
        &reg,
        "scripted",
        json!({"key": "f", "fail_times": 9, "mode": "fatal"}),
    );
    publisher.publish(&fatal).await.unwrap();
    let mut unknown = Envelope::new("no-such-task", json!({}));
    unknown.queue = "default".into();
    publisher.publish(&unknown).await.unwrap();
    let bad_args = env.envelope(&reg, "sleep", json!({"ms": "soon"}));
    publisher.publish(&bad_args).await.unwrap();
    // A body that is not even JSON, straight onto the work queue.
    publisher
        .channel()
        .basic_publish(
            env.ns().into(),
            "default".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"{not json",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let good = env.envelope(&reg, "scripted", json!({"key": "g"}));
    publisher.publish(&good).await.unwrap();

    env.wait_status(&good.id, TaskStatus::Succeeded, Duration::from_secs(10))
        .await;
    let dead = env.wait_dead(4, Duration::from_secs(10)).await;
    let mut reasons: Vec<(String, String)> = dead
        .iter()
        .map(|d| (d.reason.to_string(), d.task.clone()))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            ("fatal".into(), "scripted".into()),
            ("fatal".into(), "sleep".into()),
            ("undecodable".into(), "(undecodable)".into()),
            ("unknown-task".into(), "no-such-task".into()),
        ]
    );
    let undecodable = dead
        .iter()
        .find(|d| d.reason == DeadReason::Undecodable)
        .unwrap();
    assert_eq!(undecodable.raw_body.as_deref(), Some("{not json"));
    assert_eq!(s.times("f").len(), 1, "a fatal error is not retried");
    assert_eq!(
        env.wait_status(&fatal.id, TaskStatus::Dead, Duration::from_secs(1))
            .await
            .error
            .as_deref(),
        Some("fatal: scripted fatal failure")
    );
    w.stop().await;
}

#[tokio::test]
async fn time_limit_is_retried_then_dead_lettered() {
    let env = TestEnv::with("timelimit", |c| {
        c.worker.max_retries = 1;
        c.tasks.insert(
            "scripted".into(),
            alertflow::config::TaskOverride {
                time_limit: Some(ms(200)),
                ..Default::default()
            },
        );
    });
    let s = Scripted::default();
    let reg = registry(&s);
    let (_conn, publisher) = env.publisher().await;
    let e = env.envelope(&reg, "scripted", json!({"key": "t", "sleep_ms": 3000}));
    publisher.publish(&e).await.unwrap();
    let w = env.start_worker(reg);
    let st = env
        .wait_status(&e.id, TaskStatus::Dead, Duration::from_secs(15))
        .await;
    assert!(
        st.error.as_deref().unwrap().contains("time limit"),
        "{st:?}"
    );
    assert_eq!(s.times("t").len(), 2, "first attempt and one retry");
    let dead = env.wait_dead(1, Duration::from_secs(5)).await;
    assert_eq!(dead[0].reason, DeadReason::RetriesExhausted);
    w.stop().await;
}

#[tokio::test]
async fn kill_9_mid_task_is_redelivered_to_another_worker() {
    let env = TestEnv::new("kill9");
    let cfg = env.config_file("");
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let mut a = Child::spawn("alertflow-worker", &[], &cfg);
    let e = env.envelope(&reg, "sleep", json!({"ms": 1500}));
    publisher.publish(&e).await.unwrap();
    let started = env
        .wait_status(&e.id, TaskStatus::Started, Duration::from_secs(15))
        .await;
    let first_worker = started.worker.unwrap();
    assert!(first_worker.contains(&format!(":{}:", a.pid())));
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(5)).expect("killed");
    let _b = Child::spawn("alertflow-worker", &[], &cfg);
    let done = env
        .wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(30))
        .await;
    assert_ne!(
        done.worker.unwrap(),
        first_worker,
        "completed by the other worker"
    );
    assert_eq!(env.ready(&env.topology().queue("default")).await, 0);
    assert!(env.dead_letters().await.is_empty());
}

#[tokio::test]
async fn sigterm_lets_the_running_task_finish_and_exits_zero() {
    let env = TestEnv::new("sigterm");
    let cfg = env.config_file("");
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let mut w = Child::spawn("alertflow-worker", &[], &cfg);
    let e = env.envelope(&reg, "sleep", json!({"ms": 2000}));
    publisher.publish(&e).await.unwrap();
    env.wait_status(&e.id, TaskStatus::Started, Duration::from_secs(15))
        .await;
    let t0 = Instant::now();
    w.signal("TERM");
    let status = w.wait_exit(Duration::from_secs(15)).expect("worker exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "it waited for the task"
    );
    env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(5))
        .await;
    // Acked before exit: the message did not come back.
    assert_eq!(env.ready(&env.topology().queue("default")).await, 0);
}

fn close_connections_of(namespace: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "-q",
            "--no-table-headers",
        ])
        .output()
        .expect("rabbitmqctl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut closed = 0;
    for line in text.lines() {
        if line.contains("alertflow-worker@") && line.contains(&format!("/{namespace}\"")) {
            let pid = line.split('\t').next().unwrap().trim();
            let status = std::process::Command::new("rabbitmqctl")
                .args([
                    "close_connection",
                    pid,
                    "test: broker closes the connection",
                ])
                .output()
                .expect("rabbitmqctl");
            assert!(
                status.status.success(),
                "{}",
                String::from_utf8_lossy(&status.stderr)
            );
            closed += 1;
        }
    }
    closed
}

#[tokio::test]
async fn worker_recovers_after_the_broker_closes_its_connection() {
    let env = TestEnv::new("reconnect");
    let cfg = env.config_file("");
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let _w = Child::spawn("alertflow-worker", &[], &cfg);
    let first = env.envelope(&reg, "noop", json!({}));
    publisher.publish(&first).await.unwrap();
    env.wait_status(&first.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
    let closed = tokio::task::spawn_blocking({
        let ns = env.ns().to_string();
        move || close_connections_of(&ns)
    })
    .await
    .unwrap();
    assert_eq!(closed, 1, "the worker's connection was found and closed");
    let mut later = Vec::new();
    for _ in 0..5 {
        let e = env.envelope(&reg, "noop", json!({}));
        publisher.publish(&e).await.unwrap();
        later.push(e);
    }
    for e in &later {
        env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(30))
            .await;
    }
}

#[tokio::test]
async fn quorum_queues_work_with_retries_and_dead_letters() {
    let env = TestEnv::with("quorum", |c| {
        c.broker.queue_type = alertflow::config::QueueType::Quorum;
        c.worker.max_retries = 1;
    });
    let s = Scripted::default();
    let reg = registry(&s);
    let (_conn, publisher) = env.publisher().await;
    let ok = env.envelope(&reg, "scripted", json!({"key": "q", "fail_times": 1}));
    let bad = env.envelope(&reg, "scripted", json!({"key": "d", "fail_times": 5}));
    publisher.publish(&ok).await.unwrap();
    publisher.publish(&bad).await.unwrap();
    let w = env.start_worker(reg);
    env.wait_status(&ok.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
    assert_eq!(
        s.times("q").len(),
        2,
        "retried once through a quorum delay tier"
    );
    env.wait_status(&bad.id, TaskStatus::Dead, Duration::from_secs(15))
        .await;
    let dead = env.wait_dead(1, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadReason::RetriesExhausted);
    w.stop().await;
    // The queues really are quorum queues: redeclaring one as classic fails.
    let conn = alertflow::queue::publisher::connect(&env.config, "test")
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let classic = ch
        .queue_declare(
            env.topology().queue("default").into(),
            lapin::options::QueueDeclareOptions::durable(),
            lapin::types::FieldTable::default(),
        )
        .await;
    assert!(
        classic.is_err(),
        "alertflow.default was declared as a quorum queue"
    );
}
