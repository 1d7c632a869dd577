//! Alarms and notifications end to end: `influx-check` through real workers
//! (RabbitMQ, Redis), InfluxDB 1.x or the local v2 fake, and the sandbox's
//! Lark bot and Slack webhooks (which verify signatures, enforce the real
//! quotas and record what they received). Each test has its own namespace,
//! sandbox and Influx database.

mod common;

use std::time::{Duration, Instant};

use alertflow::config::{AppConfig, HumanDuration, Secret};
use alertflow::influx::{InfluxClient, InfluxSource, InfluxVersion};
use alertflow::notify::alarm::{AlarmStore, FiringState};
use alertflow::notify::check::{CheckConfig, NoData};
use alertflow::notify::health::{HealthNotifier, HealthStore, Record, Status};
use alertflow::notify::silence::{Matcher, Silence};
use alertflow::notify::{ReceiverConfig, ReceiverKind};
use alertflow::queue::message::{DeadLetter, DeadReason, Envelope};
use alertflow::queue::state::TaskStatus;
use alertflow::queue::task::{Registry, Task, TaskContext, TaskError};
use alertflow::sandbox::influx_v2::{self, FluxAnswer, FluxColumn, FluxTable, InfluxV2Config};
use alertflow::sandbox::{Endpoint, Fault, SandboxConfig, SandboxHandle};
use common::{Child, TestEnv};
use serde_json::{Value, json};

const SLACK_PATH: &str = "/services/T0TEST/B0TEST/alertflowtesthook";
const FLUX_Q: &str = "from(bucket: \"m\") |> range(start: -5m) |> last()";

fn influx_url() -> String {
    std::env::var("INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:8086".into())
}

async fn sandbox() -> SandboxHandle {
    alertflow::sandbox::spawn(SandboxConfig::default())
        .await
        .expect("sandbox")
}

fn lark(sb: &SandboxHandle, token: &str, secret: Option<&str>) -> ReceiverConfig {
    let mut r = ReceiverConfig::new(
        ReceiverKind::Lark,
        format!("{}/open-apis/bot/v2/hook/{token}", sb.base_url),
    );
    r.secret = secret.map(Secret::new);
    r
}

fn slack(sb: &SandboxHandle) -> ReceiverConfig {
    ReceiverConfig::new(ReceiverKind::Slack, format!("{}{SLACK_PATH}", sb.base_url))
}

fn check(name: &str, source: &str, query: &str, value: &str, repeat: &str) -> CheckConfig {
    toml::from_str(&format!(
        "name = {name:?}\nsource = {source:?}\nquery = {query:?}\nvalue = {value:?}\n\
         threshold = \"> 90\"\nlabels = [\"cluster\"]\nseverity = \"critical\"\n\
         summary = \"CPU on {{cluster}} is {{value}}%\"\nrepeat_interval = {repeat:?}\nreceiver = \"ops\"\n"
    ))
    .expect("check config")
}

fn v1_source(c: &AppConfig) -> InfluxSource {
    InfluxSource {
        url: influx_url(),
        db: Some(format!("t_{}", c.namespace.replace('-', "_"))),
        ..InfluxSource::default()
    }
}

fn v2_source(fake: &influx_v2::InfluxV2Handle) -> InfluxSource {
    InfluxSource {
        version: InfluxVersion::V2,
        url: fake.base_url.clone(),
        org: Some("ops".into()),
        token: Some(Secret::new("tok")),
        ..InfluxSource::default()
    }
}

/// The test's own InfluxDB 1.x database, dropped on drop.
struct TestDb(InfluxSource);

impl TestDb {
    async fn create(source: InfluxSource) -> (TestDb, InfluxClient) {
        let c = InfluxClient::new(&source).unwrap();
        c.execute(&format!(
            "CREATE DATABASE \"{}\"",
            source.db.as_deref().unwrap()
        ))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "InfluxDB 1.x must run at {} (./scripts/services starts it): {e}",
                influx_url()
            )
        });
        (TestDb(source), c)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let source = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(c) = InfluxClient::new(&source) {
                    let db = source.db.clone().unwrap_or_default();
                    let _ = c.execute(&format!("DROP DATABASE \"{db}\"")).await;
                }
            });
        })
        .join();
    }
}

/// A v2 fake answering [`FLUX_Q`] with one row per (cluster, value).
async fn flux_fake(rows: &[(&str, f64)]) -> influx_v2::InfluxV2Handle {
    influx_v2::spawn(InfluxV2Config {
        org: "ops".into(),
        token: "tok".into(),
        answers: [(
            FLUX_Q.to_string(),
            FluxAnswer::Tables(vec![flux_table(rows)]),
        )]
        .into_iter()
        .collect(),
    })
    .await
    .unwrap()
}

fn flux_table(rows: &[(&str, f64)]) -> FluxTable {
    FluxTable {
        columns: vec![
            FluxColumn::new("_value", "double", false),
            FluxColumn::new("cluster", "string", true),
        ],
        rows: rows
            .iter()
            .map(|(c, v)| vec![v.to_string(), c.to_string()])
            .collect(),
    }
}

/// Poll until `get` returns at least `n` items (or the timeout passes).
async fn wait_for(get: impl Fn() -> Vec<Value>, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = get();
        if v.len() >= n || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn title(card: &Value) -> String {
    card["card"]["header"]["title"]["content"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn divs(card: &Value) -> Vec<String> {
    card["card"]["elements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["tag"] == "div")
        .map(|e| e["text"]["content"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A test env with the `cpu-high` check (clusters over 90) on the real
/// InfluxDB 1.x, sending to the sandbox bot as receiver `ops`.
fn cpu_env(
    sb: &SandboxHandle,
    ns: &str,
    repeat: &str,
    tweak: impl FnOnce(&mut CheckConfig),
) -> TestEnv {
    let ops = lark(sb, "sandbox", None);
    TestEnv::with(ns, move |c| {
        queues(c);
        c.influx.sources.insert("metrics".into(), v1_source(c));
        c.receivers.insert("ops".into(), ops);
        let mut k = check(
            "cpu-high",
            "metrics",
            "SELECT last(usage) AS usage FROM cpu GROUP BY cluster",
            "usage",
            repeat,
        );
        tweak(&mut k);
        c.checks.push(k);
    })
}

/// Publish one `influx-check` and wait until it succeeded.
async fn run_check(
    env: &TestEnv,
    publisher: &alertflow::queue::publisher::Publisher,
    reg: &Registry,
    name: &str,
) {
    let e = env.envelope(reg, "influx-check", json!({"check": name}));
    publisher.publish(&e).await.unwrap();
    env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
}

fn queues(c: &mut AppConfig) {
    c.worker.queues = vec!["default".into(), "influx".into()];
}

#[tokio::test]
async fn three_clusters_one_grouped_message_then_repeat_interval_then_resolved() {
    let sb = sandbox().await;
    let env = cpu_env(&sb, "notify-group", "2s", |_| {});
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let (db, influx) = TestDb::create(v1_source(&env.config)).await;
    influx
        .write_lines("cpu,cluster=a usage=95\ncpu,cluster=b usage=93.5\ncpu,cluster=c usage=97\ncpu,cluster=d usage=10\n")
        .await
        .unwrap();
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    let received = || sb.received_bot("sandbox");

    // Three clusters over the threshold: one grouped card.
    run_check(&env, &publisher, &reg, "cpu-high").await;
    let first_sent = Instant::now();
    let got = wait_for(received, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(title(&got[0]), "[FIRING:3] cpu-high");
    assert_eq!(got[0]["card"]["header"]["template"], "red");
    let d = divs(&got[0]);
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(
        d[0].contains("CPU on a is 95%") && d[0].contains("cluster=a"),
        "{}",
        d[0]
    );
    assert!(d.iter().all(|s| !s.contains("cluster=d")));

    // Within repeat_interval: nothing.
    run_check(&env, &publisher, &reg, "cpu-high").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received().len(), 1, "deduplicated within repeat_interval");

    // After it: the still-firing alarms once more, again as one message.
    let wait = Duration::from_millis(2100).saturating_sub(first_sent.elapsed());
    tokio::time::sleep(wait).await;
    run_check(&env, &publisher, &reg, "cpu-high").await;
    let got = wait_for(received, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(title(&got[1]), "[FIRING:3] cpu-high");

    // Cluster b recovers: one resolved message, green, naming b only.
    influx
        .write_lines("cpu,cluster=b usage=40\n")
        .await
        .unwrap();
    run_check(&env, &publisher, &reg, "cpu-high").await;
    let got = wait_for(received, 3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3);
    assert_eq!(title(&got[2]), "[RESOLVED:1] cpu-high");
    assert_eq!(got[2]["card"]["header"]["template"], "green");
    let d = divs(&got[2]);
    assert_eq!(d.len(), 1);
    assert!(
        d[0].contains("cluster=b") && d[0].contains("RESOLVED"),
        "{}",
        d[0]
    );
    // ...and only once.
    run_check(&env, &publisher, &reg, "cpu-high").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received().len(), 3, "resolved is sent once");

    // b fires again: a new alarm, notified at once (not held by the old key).
    influx
        .write_lines("cpu,cluster=b usage=99\n")
        .await
        .unwrap();
    run_check(&env, &publisher, &reg, "cpu-high").await;
    let got = wait_for(received, 4, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 4);
    assert!(title(&got[3]).starts_with("[FIRING:"), "{}", title(&got[3]));
    assert!(divs(&got[3]).iter().any(|s| s.contains("cluster=b")));
    assert_eq!(sb.stats().lark_bot.rate_limited, 0);

    // The notification ledger: an entry per alarm and outcome.
    let ledger = ledger_entries(&env, &["--check", "cpu-high"], 11).await;
    let of = |event: &str, outcome: &str| -> Vec<String> {
        let mut v: Vec<String> = ledger
            .iter()
            .filter(|e| e["event"] == event && e["outcome"] == outcome)
            .map(|e| {
                e["labels"]["labels"]["cluster"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    // a, b, c fired; b fired again after it resolved.
    assert_eq!(of("firing", "sent"), ["a", "b", "b", "c"], "{ledger:?}");
    assert_eq!(of("resolved", "sent"), ["b"], "{ledger:?}");
    let repeats = of("repeat", "sent");
    assert!(
        repeats.len() >= 3
            && repeats
                .iter()
                .all(|c| ["a", "b", "c"].contains(&c.as_str())),
        "{ledger:?}"
    );
    // The second run, within repeat_interval, deduplicated all three.
    let dedup = of("firing", "deduplicated");
    assert!(
        ["a", "b", "c"].iter().all(|c| dedup.iter().any(|d| d == c)),
        "{ledger:?}"
    );
    assert!(
        ledger
            .iter()
            .all(|e| e["receiver"] == "ops" && e["source"] == "alarm")
    );
    assert!(
        ledger
            .iter()
            .filter(|e| e["outcome"] == "sent")
            .all(|e| e["attempts"] == 1 && e["labels"]["value"].as_f64().is_some()),
        "{ledger:?}"
    );
    w.stop().await;
    drop(db);
    sink.close().await;
}

#[tokio::test]
async fn two_workers_running_the_same_check_at_once_send_one_message() {
    let sb = sandbox().await;
    let fake = flux_fake(&[("a", 95.0), ("b", 99.0), ("c", 3.0)]).await;
    let env = TestEnv::with("notify-race", |c| {
        queues(c);
        c.influx.sources.insert("flux".into(), v2_source(&fake));
        c.receivers.insert("ops".into(), lark(&sb, "sandbox", None));
        c.checks.push(check("disk", "flux", FLUX_Q, "_value", "1h"));
    });
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w1 = env.start_worker(reg.clone());
    let w2 = env.start_worker(reg.clone());
    let envelopes: Vec<_> = (0..6)
        .map(|_| env.envelope(&reg, "influx-check", json!({"check": "disk"})))
        .collect();
    for e in &envelopes {
        publisher.publish(e).await.unwrap();
    }
    for e in &envelopes {
        env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(15))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = sb.received_bot("sandbox");
    assert_eq!(got.len(), 1, "six evaluations on two workers, one message");
    assert_eq!(title(&got[0]), "[FIRING:2] disk");
    assert_eq!(fake.requests().len(), 6, "every task evaluated the check");
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test]
async fn bot_frequency_limit_then_success_is_delivered_once_and_signed() {
    let sb = sandbox().await;
    let fake = flux_fake(&[("a", 95.0)]).await;
    let env = TestEnv::with("notify-11232", |c| {
        queues(c);
        c.influx.sources.insert("flux".into(), v2_source(&fake));
        c.receivers.insert(
            "ops".into(),
            lark(&sb, "sandbox-signed", Some("sandbox-sign-secret")),
        );
        c.checks.push(check("cpu", "flux", FLUX_Q, "_value", "1h"));
    });
    sb.fail_next(Endpoint::LarkBot, 1, Fault::BotFrequency11232);
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    run_check(&env, &publisher, &reg, "cpu").await;
    let got = sb.received_bot("sandbox-signed");
    assert_eq!(got.len(), 1, "delivered once after the 11232");
    assert!(got[0]["sign"].is_string() && got[0]["timestamp"].is_string());
    let stats = sb.stats().lark_bot;
    assert_eq!((stats.rate_limited, stats.ok), (1, 1), "{stats:?}");
    // The alarm is recorded once: the next run sends nothing.
    run_check(&env, &publisher, &reg, "cpu").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sb.received_bot("sandbox-signed").len(), 1);
    w.stop().await;
}

#[tokio::test]
async fn wrong_signing_secret_is_fatal_and_leaves_no_dedup_key() {
    let sb = sandbox().await;
    let fake = flux_fake(&[("a", 95.0)]).await;
    let env = TestEnv::with("notify-19021", |c| {
        queues(c);
        c.influx.sources.insert("flux".into(), v2_source(&fake));
        c.receivers.insert(
            "ops".into(),
            lark(&sb, "sandbox-signed", Some("not-the-secret")),
        );
        c.checks.push(check("cpu", "flux", FLUX_Q, "_value", "1h"));
    });
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    let e = env.envelope(&reg, "influx-check", json!({"check": "cpu"}));
    publisher.publish(&e).await.unwrap();
    let st = env
        .wait_status(&e.id, TaskStatus::Dead, Duration::from_secs(10))
        .await;
    let err = st.error.unwrap_or_default();
    assert!(
        err.contains("19021") && err.contains("signing secret"),
        "{err}"
    );
    let dead = env.wait_dead(1, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadReason::Fatal);
    assert_eq!(dead[0].attempts, 1, "not retried");
    assert!(
        dead[0].last_error.contains("signing secret"),
        "{}",
        dead[0].last_error
    );
    assert!(
        !dead[0].last_error.contains("not-the-secret"),
        "the secret is never shown"
    );
    assert!(sb.received_bot("sandbox-signed").is_empty());
    // The claim was released: the alarm is still due.
    let pool = alertflow::queue::context::redis_pool(&env.config).unwrap();
    let store = AlarmStore::new(pool, env.ns());
    assert_eq!(
        store.peek("cpu", &["cluster=a"]).await.unwrap(),
        vec![FiringState::Due]
    );
    assert!(store.active("cpu").await.unwrap().is_empty());
    w.stop().await;
}

#[tokio::test]
async fn fifty_alarms_at_once_never_exceed_the_bots_quota() {
    let sb = sandbox().await;
    let fake = flux_fake(&[("a", 95.0)]).await;
    let env = TestEnv::with("notify-50", |c| {
        queues(c);
        c.worker.concurrency = 16;
        c.influx.sources.insert("flux".into(), v2_source(&fake));
        c.receivers.insert("ops".into(), lark(&sb, "sandbox", None));
        for i in 0..50 {
            c.checks
                .push(check(&format!("c{i:02}"), "flux", FLUX_Q, "_value", "1h"));
        }
    });
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w1 = env.start_worker(reg.clone());
    let w2 = env.start_worker(reg.clone());
    let started = Instant::now();
    let envelopes: Vec<_> = (0..50)
        .map(|i| env.envelope(&reg, "influx-check", json!({"check": format!("c{i:02}")})))
        .collect();
    for e in &envelopes {
        publisher.publish(e).await.unwrap();
    }
    // Record (approximately, by polling) when each message arrived.
    let mut arrivals: Vec<Duration> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while arrivals.len() < 50 && Instant::now() < deadline {
        let n = sb.received_bot("sandbox").len();
        while arrivals.len() < n {
            arrivals.push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    for e in &envelopes {
        env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(10))
            .await;
    }
    let stats = sb.stats().lark_bot;
    assert_eq!(arrivals.len(), 50, "{stats:?}");
    assert_eq!(stats.rate_limited, 0, "the bot never throttled: {stats:?}");
    assert_eq!(stats.requests, 50, "{stats:?}");
    let max_in_1s = arrivals
        .iter()
        .map(|t| {
            arrivals
                .iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let spread = arrivals[49] - arrivals[0];
    println!(
        "50 alarms: {:.1} s from publish to the last message, {:.2} msg/s over {:.1} s of sending, at most {max_in_1s} in any 1 s (polled), 0 throttled",
        elapsed.as_secs_f64(),
        49.0 / spread.as_secs_f64(),
        spread.as_secs_f64()
    );
    assert!(
        max_in_1s <= 6,
        "{max_in_1s} in one second (polling jitter allows 1)"
    );
    w1.stop().await;
    w2.stop().await;
}

/// A task that fails fatally when asked to.
struct Flaky;

#[derive(serde::Deserialize)]
struct FlakyArgs {
    fail: bool,
}

impl Task for Flaky {
    const NAME: &'static str = "flaky";
    type Args = FlakyArgs;
    async fn run(&self, _ctx: &TaskContext, a: FlakyArgs) -> Result<(), TaskError> {
        if a.fail {
            Err(TaskError::fatal("flaky failed on purpose"))
        } else {
            Ok(())
        }
    }
}

async fn run_flaky(
    env: &TestEnv,
    publisher: &alertflow::queue::publisher::Publisher,
    reg: &Registry,
    fail: bool,
) -> Duration {
    let e = env.envelope(reg, "flaky", json!({"fail": fail}));
    let t = Instant::now();
    publisher.publish(&e).await.unwrap();
    let want = if fail {
        TaskStatus::Dead
    } else {
        TaskStatus::Succeeded
    };
    env.wait_status(&e.id, want, Duration::from_secs(10)).await;
    t.elapsed()
}

fn health_cli(env: &TestEnv, args: &[&str]) -> (i32, String) {
    health_cli_env(env, args, &[])
}

/// `alertflow health ARGS` on the test's namespace (no `[notify]` in its
/// config), with extra environment variables.
fn health_cli_env(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> (i32, String) {
    let cfg = env.config_file("");
    let out = std::process::Command::new(common::bin("alertflow"))
        .arg("health")
        .args(args)
        .env("ALERTFLOW_CONFIG", &cfg)
        .env_remove("ALERTFLOW_NAMESPACE")
        .env_remove("ALERTFLOW_BROKER_URL")
        .env_remove("ALERTFLOW_REDIS_URL")
        .envs(vars.iter().copied())
        .output()
        .expect("run alertflow health");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Parse `alertflow health --json`, failing on a repeated key anywhere
/// (`serde_json::Value` would keep the last one silently).
fn health_json(text: &str) -> Value {
    struct NoDupes;
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = NoDupes;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<NoDupes, E> {
            Ok(NoDupes)
        }
        fn visit_i64<E>(self, _: i64) -> Result<NoDupes, E> {
            Ok(NoDupes)
        }
        fn visit_u64<E>(self, _: u64) -> Result<NoDupes, E> {
            Ok(NoDupes)
        }
        fn visit_f64<E>(self, _: f64) -> Result<NoDupes, E> {
            Ok(NoDupes)
        }
        fn visit_str<E>(self, _: &str) -> Result<NoDupes, E> {
            Ok(NoDupes)
        }
        fn visit_unit<E>(self) -> Result<NoDupes, E> {
            Ok(NoDupes)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<NoDupes, A::Error> {
            while s.next_element::<NoDupes>()?.is_some() {}
            Ok(NoDupes)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<NoDupes, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = m.next_key::<String>()? {
                if !seen.insert(k.clone()) {
                    return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
                }
                m.next_value::<NoDupes>()?;
            }
            Ok(NoDupes)
        }
    }
    impl<'de> serde::Deserialize<'de> for NoDupes {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NoDupes, D::Error> {
            d.deserialize_any(V)
        }
    }
    if let Err(e) = serde_json::from_str::<NoDupes>(text) {
        panic!("health --json: {e}\n{text}");
    }
    serde_json::from_str(text).unwrap()
}

/// Poll the recorded statuses until `want` (task → status) are all there.
async fn wait_health(env: &TestEnv, want: &[(&str, Status)]) -> Vec<(String, Option<Status>)> {
    let pool = alertflow::queue::context::redis_pool(&env.config).unwrap();
    let store = HealthStore::new(pool, env.ns());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all: Vec<(String, Option<Status>)> = store
            .all()
            .await
            .unwrap()
            .into_iter()
            .map(|(t, r)| (t, r.map(|r| r.status)))
            .collect();
        let done = want
            .iter()
            .all(|(t, s)| all.iter().any(|(u, v)| u == t && *v == Some(*s)));
        if done || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dead_letter_notifies_error_once_and_the_next_success_ok_once() {
    let sb = sandbox().await;
    let status_dir = tempfile::tempdir().unwrap();
    let dir = status_dir.path().to_path_buf();
    let env = TestEnv::with("notify-health", |c| {
        c.receivers.insert("slack".into(), slack(&sb));
        c.notify.receivers = vec!["slack".into()];
        c.notify.status_dir = Some(dir.clone());
    });
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let reg = Registry::new().with(Flaky);
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    HealthNotifier::attach(&env.config, &w.services).unwrap();
    let received = || sb.received_slack(SLACK_PATH);

    run_flaky(&env, &publisher, &reg, true).await;
    let got = wait_for(received, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    let text = got[0]["text"].as_str().unwrap();
    assert!(text.starts_with("--- ERROR ---\n"), "{text}");
    assert!(
        text.contains(&format!("{}.default :: flaky", env.ns())),
        "{text}"
    );
    assert!(
        text.contains("flaky failed on purpose") && text.contains("attempts: 1"),
        "{text}"
    );
    assert!(got[0]["blocks"].as_array().is_some_and(|b| b.len() >= 2));
    let (code, out) = health_cli(&env, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("HEALTH CRITICAL"), "{out}");

    run_flaky(&env, &publisher, &reg, false).await;
    let got = wait_for(received, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    assert!(got[1]["text"].as_str().unwrap().starts_with("--- OK ---\n"));
    // OK again within ok_silent_hours: no message.
    run_flaky(&env, &publisher, &reg, false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(received().len(), 2, "OK again is not notified");

    // The seed's status file, and the Nagios-style exit codes.
    let file = std::fs::read_to_string(dir.join(format!("{}.flaky", env.ns()))).unwrap();
    assert!(
        file.starts_with("OK\n") && file.contains(" UTC\n"),
        "{file}"
    );
    let (code, out) = health_cli(&env, &["flaky"]);
    assert_eq!(code, 0, "{out}");
    let (code, _) = health_cli(&env, &["no-such-task"]);
    assert_eq!(code, 3);

    // The notification ledger has both, in order, as sent, one attempt each.
    let ledger = ledger_entries(&env, &["--check", "flaky"], 2).await;
    let got: Vec<(&str, &str, &str, &str, u64)> = ledger
        .iter()
        .rev()
        .map(|e| {
            (
                e["source"].as_str().unwrap(),
                e["event"].as_str().unwrap(),
                e["receiver"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("health", "error", "slack", "sent", 1),
            ("health", "ok", "slack", "sent", 1)
        ],
        "{ledger:?}"
    );
    assert!(
        ledger_entries(&env, &["--check", "other-task"], 0)
            .await
            .is_empty()
    );
    w.stop().await;
    sink.close().await;
}

/// `alertflow notifications list --json ARGS`, polled until it lists `n`
/// entries (the ledger is written after the delivery).
async fn ledger_entries(env: &TestEnv, args: &[&str], n: usize) -> Vec<Value> {
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n",
        env.config.mysql.database
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::process::Command::new(common::bin("alertflow"))
            .args(["notifications", "list", "--json"])
            .args(args)
            .env("ALERTFLOW_CONFIG", &file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        if v.len() >= n || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_failing_slack_endpoint_never_fails_or_slows_the_task_and_is_tried_again() {
    let sb = sandbox().await;
    let env = TestEnv::with("notify-slackdown", |c| {
        c.receivers.insert("slack".into(), slack(&sb));
        c.notify.receivers = vec!["slack".into()];
        c.notify.redeliver_after = HumanDuration(Duration::from_secs(1));
    });
    // Down for the three attempts of the first delivery.
    sb.fail_next(Endpoint::Slack, 3, Fault::Http500);
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let reg = Registry::new().with(Flaky);
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    HealthNotifier::attach(&env.config, &w.services).unwrap();
    let took = run_flaky(&env, &publisher, &reg, true).await;
    assert!(
        took < Duration::from_secs(2),
        "the task waited for the notification: {took:?}"
    );
    // The notifier retried in the background (3 attempts) and gave up ...
    let deadline = Instant::now() + Duration::from_secs(10);
    while sb.stats().slack.errors < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sb.stats().slack.errors, 3);
    assert!(env.dead_letters().await.len() == 1, "the flaky task only");
    // ... and a second later delivered it, then the next change after it.
    run_flaky(&env, &publisher, &reg, false).await;
    let got = wait_for(|| sb.received_slack(SLACK_PATH), 2, Duration::from_secs(10)).await;
    let texts: Vec<&str> = got.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(texts[0].starts_with("--- ERROR ---"), "{texts:?}");
    assert!(texts[1].starts_with("--- OK ---"), "{texts:?}");
    assert_eq!(texts.len(), 2);
    // The ledger says so: failed after 3 attempts, with the error; then
    // sent, in order.
    let ledger = ledger_entries(&env, &[], 3).await;
    let got: Vec<(&str, &str, u64)> = ledger
        .iter()
        .rev()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("error", "failed", 3),
            ("error", "sent", 1),
            ("ok", "sent", 1)
        ]
    );
    assert!(
        ledger[2]["error"].as_str().unwrap().contains("500"),
        "{ledger:?}"
    );
    w.stop().await;
    sink.close().await;
}

/// Issue 15.3 for health: a task whose status flips more than
/// `flap_threshold` times within `flap_window` sends one FLAPPING message,
/// nothing while it flaps, and one STABLE message with the first outcome
/// after a window without change.
#[tokio::test]
async fn a_flapping_task_says_so_once_then_nothing_until_stable() {
    let sb = sandbox().await;
    let env = TestEnv::with("notify-hflap", |c| {
        c.receivers.insert("slack".into(), slack(&sb));
        c.notify.receivers = vec!["slack".into()];
        c.notify.flap_threshold = Some(3);
        c.notify.flap_window = Some(HumanDuration(Duration::from_secs(6)));
    });
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let reg = Registry::new().with(Flaky);
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    HealthNotifier::attach(&env.config, &w.services).unwrap();
    let received = || sb.received_slack(SLACK_PATH);
    let first_line = |m: &Value| {
        m["text"]
            .as_str()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    // ERROR, OK, ERROR: sent as usual; the fourth change (OK) flaps.
    for (i, fail) in [true, false, true, false].into_iter().enumerate() {
        run_flaky(&env, &publisher, &reg, fail).await;
        wait_for(received, i + 1, Duration::from_secs(5)).await;
    }
    // Two more changes: nothing.
    run_flaky(&env, &publisher, &reg, true).await;
    run_flaky(&env, &publisher, &reg, false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received();
    let lines: Vec<String> = got.iter().map(first_line).collect();
    assert_eq!(
        lines,
        [
            "--- ERROR ---",
            "--- OK ---",
            "--- ERROR ---",
            "--- FLAPPING ---"
        ]
    );
    let text = got[3]["text"].as_str().unwrap();
    assert!(
        text.contains("Changed status 4 times within 6s; now OK"),
        "{text}"
    );
    // A window without change, then an outcome: STABLE, OK.
    tokio::time::sleep(Duration::from_millis(6100)).await;
    run_flaky(&env, &publisher, &reg, false).await;
    let got = wait_for(received, 5, Duration::from_secs(5)).await;
    let text = got[4]["text"].as_str().unwrap();
    assert!(
        text.starts_with("--- STABLE ---\nNo change for 6s: it is OK."),
        "{text}"
    );
    run_flaky(&env, &publisher, &reg, false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received().len(), 5, "no more messages");
    let ledger = ledger_entries(&env, &["--check", "flaky"], 7).await;
    let got: Vec<(&str, &str)> = ledger
        .iter()
        .rev()
        .map(|e| (e["event"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("error", "sent"),
            ("ok", "sent"),
            ("error", "sent"),
            ("flapping", "sent"),
            ("error", "flapping"),
            ("ok", "flapping"),
            ("stable", "sent"),
        ]
    );
    w.stop().await;
    sink.close().await;
}

/// Issue 11.3: the default config (no `[notify]`), tasks dead-lettered:
/// the worker still records the statuses and `alertflow health` is
/// CRITICAL, naming the dead letters.
#[tokio::test]
async fn without_receivers_statuses_are_recorded_and_health_counts_dead_letters() {
    let env = TestEnv::new("health-dlq");
    let cfg = env.config_file("");
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let _worker = Child::spawn("alertflow-worker", &[], &cfg);
    let ok = env.envelope(&reg, "noop", json!({}));
    publisher.publish(&ok).await.unwrap();
    env.wait_status(&ok.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
    for _ in 0..5 {
        let mut unknown = Envelope::new("no-such-task", json!({}));
        unknown.queue = "default".into();
        publisher.publish(&unknown).await.unwrap();
    }
    assert_eq!(env.wait_dead(5, Duration::from_secs(10)).await.len(), 5);

    let statuses = wait_health(
        &env,
        &[("noop", Status::Ok), ("no-such-task", Status::Error)],
    )
    .await;
    assert_eq!(
        statuses,
        vec![
            ("no-such-task".to_string(), Some(Status::Error)),
            ("noop".to_string(), Some(Status::Ok)),
        ],
        "statuses are recorded without [notify] receivers"
    );

    let dead_queue = format!("{}.dead", env.ns());
    let (code, out) = health_cli(&env, &[]);
    assert_eq!(code, 2, "{out}");
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("HEALTH CRITICAL - "), "{out}");
    assert!(
        first.contains(&format!("5 dead letters in {dead_queue}"))
            && first.contains("alertflow dead list"),
        "{out}"
    );
    assert!(first.contains("1 of 2 tasks ERROR: no-such-task"), "{out}");

    let (code, out) = health_cli(&env, &["--json"]);
    assert_eq!(code, 2, "{out}");
    let v = health_json(&out);
    assert_eq!(v["result"], "CRITICAL");
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["dead_letters"], 5);
    assert_eq!(v["dead_letter_queue"], dead_queue.as_str());
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{out}");
    assert_eq!(tasks[0]["task"], "no-such-task");
    assert_eq!(tasks[0]["status"], "ERROR");
    assert!(
        tasks[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("unknown-task: "),
        "{out}"
    );
    assert_eq!(tasks[0]["queue"], format!("{}.default", env.ns()));
    assert_eq!(tasks[1]["task"], "noop");
    assert_eq!(tasks[1]["status"], "OK");

    // One task: its own status.
    assert_eq!(health_cli(&env, &["no-such-task"]).0, 2);
    let (code, out) = health_cli(&env, &["noop"]);
    assert_eq!(code, 0, "{out}");
}

/// Dead letters that no status shows (here one the worker could not even
/// decode, which is never a task's outcome) still make the check CRITICAL;
/// a TASK check judges that task's status only.
#[tokio::test]
async fn dead_letters_make_health_critical_even_when_every_status_is_ok() {
    let env = TestEnv::new("health-dlq-ok");
    let (_conn, publisher) = env.publisher().await;
    let (code, out) = health_cli(&env, &[]);
    assert_eq!(code, 0, "an empty pipeline is OK: {out}");
    assert!(
        out.starts_with("HEALTH OK - no task statuses recorded yet; no dead letters"),
        "{out}"
    );

    record_noop_ok(&env).await;
    let (code, out) = health_cli(&env, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("HEALTH OK - 1 task OK; no dead letters"),
        "{out}"
    );

    publisher
        .publish_dead(&DeadLetter {
            envelope: None,
            raw_body: Some("{not json".into()),
            reason: DeadReason::Undecodable,
            attempts: 1,
            last_error: "not a task".into(),
            worker: "test".into(),
            queue: "default".into(),
            dead_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let (code, out) = health_cli(&env, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with(&format!(
            "HEALTH CRITICAL - 1 dead letter in {}.dead (see them: alertflow dead list)\n",
            env.ns()
        )),
        "{out}"
    );
    let v = health_json(&health_cli(&env, &["--json"]).1);
    assert_eq!(v["dead_letters"], 1);
    assert_eq!(v["tasks"][0]["status"], "OK");
    let (code, out) = health_cli(&env, &["noop", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v = health_json(&out);
    assert_eq!(v["dead_letters"], Value::Null, "not counted for one task");
}

/// A broker that cannot be asked about dead letters is never OK.
#[tokio::test]
async fn health_is_unknown_when_the_broker_is_unreachable() {
    let env = TestEnv::new("health-nobroker");
    record_noop_ok(&env).await;
    // Nothing listens on port 1.
    let down = [(
        "ALERTFLOW_BROKER_URL",
        "amqp://guest:not-this-pw@127.0.0.1:1/%2f",
    )];
    let (code, out) = health_cli_env(&env, &[], &down);
    assert_eq!(code, 3, "{out}");
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("HEALTH UNKNOWN - dead letters not counted: ")
            && first.contains("RabbitMQ at amqp://guest:***@127.0.0.1:1"),
        "{out}"
    );
    assert!(!out.contains("not-this-pw"), "the password is not printed");
    let (code, out) = health_cli_env(&env, &["--json"], &down);
    assert_eq!(code, 3, "{out}");
    let v = health_json(&out);
    assert_eq!(v["result"], "UNKNOWN");
    assert_eq!(v["dead_letters"], Value::Null);
    assert_eq!(v["tasks"][0]["status"], "OK");
    // One task's check does not need the broker.
    assert_eq!(health_cli_env(&env, &["noop"], &down).0, 0);
}

#[test]
fn example_config_parses_and_validates() {
    let text = r#"
[influx.sources.metrics]
version = 1
url = "http://127.0.0.1:8086"
db = "telegraf"
username = "reader"
password = "change-me"

[[checks]]
name = "cpu-high"
source = "metrics"
query = "SELECT last(usage_user) AS usage FROM cpu WHERE time > now() - 5m GROUP BY cluster"
value = "usage"
threshold = "> 90"
labels = ["cluster"]
severity = "critical"
summary = "CPU on {cluster} is {value}% ({threshold})"
repeat_interval = "4h"
send_resolved = true
receiver = "ops-lark"

[receivers.ops-lark]
type = "lark"
url = "https://open.larksuite.com/open-apis/bot/v2/hook/xxxxxxxx"
secret = "bot-signing-secret"

[receivers.ops-slack]
type = "slack"
url = "https://hooks.slack.com/services/T000/B000/XXXX"

[notify]
receivers = ["ops-slack", "ops-lark"]
silent_seconds = 1
ok_silent_hours = 0.99
error_reasons = ["fatal", "retries-exhausted"]
status_dir = "/var/lib/alertflow/status"

[notify.tasks.influx-check]
silent_seconds = 300
"#;
    let c = AppConfig::from_toml(text, "README.toml").unwrap();
    c.validate().unwrap();
    assert_eq!(c.checks[0].threshold.to_string(), "> 90");
    assert_eq!(
        c.checks[0].repeat_interval,
        HumanDuration(Duration::from_secs(4 * 3600))
    );
    assert!(c.rate_limits.contains_key("notify.lark"));
    let dbg = format!("{c:?}");
    assert!(
        !dbg.contains("xxxxxxxx")
            && !dbg.contains("bot-signing-secret")
            && !dbg.contains("change-me")
    );
    // A check naming a missing receiver is refused with the key.
    let bad = AppConfig::from_toml(
        &text.replace("receiver = \"ops-lark\"", "receiver = \"nope\""),
        "f.toml",
    )
    .unwrap()
    .validate()
    .unwrap_err()
    .to_string();
    assert!(bad.contains("checks.cpu-high.receiver"), "{bad}");
}

/// Record an OK status of `noop`, as a worker would.
async fn record_noop_ok(env: &TestEnv) {
    let pool = alertflow::queue::context::redis_pool(&env.config).unwrap();
    HealthStore::new(pool, env.ns())
        .swap(&Record {
            task: "noop".into(),
            queue: format!("{}.default", env.ns()),
            status: Status::Ok,
            at: chrono::Utc::now(),
            error: None,
            attempts: None,
        })
        .await
        .unwrap();
}

fn silence(check: Option<&str>, matchers: &[&str], until_resolved: bool) -> Silence {
    let now = alertflow::sink::ledger::now();
    Silence {
        id: uuid::Uuid::new_v4().to_string(),
        check: check.map(str::to_string),
        matchers: matchers
            .iter()
            .map(|m| Matcher::parse(m).unwrap())
            .collect(),
        starts_at: now - chrono::Duration::seconds(1),
        ends_at: if until_resolved {
            alertflow::notify::silence::far_future()
        } else {
            now + chrono::Duration::hours(1)
        },
        until_resolved,
        comment: "test".into(),
        author: "test".into(),
        expired_at: None,
        expired_by: String::new(),
    }
}

/// Issue 15.1: a silence suppresses exactly what it matches; expiring it
/// releases a firing alarm at once; `until_resolved` ends by itself when
/// its alarm resolves; the ledger records each outcome.
#[tokio::test]
async fn silences_suppress_what_they_match_release_on_expiry_and_end_on_resolve() {
    let sb = sandbox().await;
    let env = cpu_env(&sb, "notify-silence", "1h", |_| {});
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let (db, influx) = TestDb::create(v1_source(&env.config)).await;
    influx
        .write_lines("cpu,cluster=a usage=95\ncpu,cluster=b usage=96\ncpu,cluster=c usage=97\n")
        .await
        .unwrap();
    let on_a = silence(Some("cpu-high"), &["cluster=a"], false);
    let on_c = silence(Some("cpu-high"), &["cluster=~c|z"], true);
    // Another check's silence and a health silence do not touch it.
    let other = silence(Some("disk-full"), &["cluster=b"], false);
    let health = silence(None, &["cluster=b"], false);
    for s in [&on_a, &on_c, &other, &health] {
        sink.record_silence(s).await.unwrap();
    }
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    let received = || sb.received_bot("sandbox");

    // Only b is sent.
    run_check(&env, &publisher, &reg, "cpu-high").await;
    let got = wait_for(received, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(title(&got[0]), "[FIRING:1] cpu-high");
    assert!(divs(&got[0])[0].contains("cluster=b"));

    // Expiring the silence on a sends a at the next evaluation, though the
    // repeat interval (1 h) has not passed.
    let mut expired = on_a.clone();
    expired.expired_at = Some(alertflow::sink::ledger::now());
    expired.expired_by = "test".into();
    sink.record_silence(&expired).await.unwrap();
    run_check(&env, &publisher, &reg, "cpu-high").await;
    let got = wait_for(received, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(title(&got[1]), "[FIRING:1] cpu-high");
    assert!(
        divs(&got[1])[0].contains("cluster=a"),
        "{:?}",
        divs(&got[1])
    );

    // c resolves while silenced: the until-resolved silence ends by itself,
    // and c is never sent (neither firing nor resolved).
    influx
        .write_lines("cpu,cluster=c usage=10\n")
        .await
        .unwrap();
    run_check(&env, &publisher, &reg, "cpu-high").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received().len(), 2);
    let c = sink.silence(&on_c.id).await.unwrap().unwrap();
    assert_eq!(c.expired_by, "resolved", "{c:?}");
    assert!(c.expired_at.is_some());
    assert!(
        sink.silence(&other.id)
            .await
            .unwrap()
            .unwrap()
            .expired_at
            .is_none()
    );

    // The ledger: a and c silenced on the first run, then a sent.
    let ledger = ledger_entries(&env, &["--check", "cpu-high"], 4).await;
    let outcomes: Vec<(String, String)> = ledger
        .iter()
        .rev()
        .map(|e| {
            (
                e["labels"]["labels"]["cluster"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let count = |cluster: &str, outcome: &str| {
        outcomes
            .iter()
            .filter(|(c, o)| c == cluster && o == outcome)
            .count()
    };
    assert_eq!(count("a", "silenced"), 1, "{outcomes:?}");
    assert_eq!(count("a", "sent"), 1, "{outcomes:?}");
    assert_eq!(count("b", "sent"), 1, "{outcomes:?}");
    assert!(count("b", "deduplicated") >= 1, "{outcomes:?}");
    assert_eq!(count("c", "silenced"), 2, "{outcomes:?}");
    assert_eq!(count("c", "sent"), 0, "{outcomes:?}");
    let silenced_a = ledger
        .iter()
        .find(|e| e["outcome"] == "silenced" && e["labels"]["labels"]["cluster"] == "a")
        .unwrap();
    assert_eq!(silenced_a["labels"]["silence"], on_a.id.as_str());
    w.stop().await;
    drop(db);
    sink.close().await;
}

/// Health notifications are silenced on their task; the ledger says so.
#[tokio::test]
async fn a_health_silence_on_a_task_holds_its_notifications() {
    let sb = sandbox().await;
    let env = TestEnv::with("notify-hsilence", |c| {
        c.receivers.insert("slack".into(), slack(&sb));
        c.notify.receivers = vec!["slack".into()];
    });
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n",
        env.config.mysql.database
    ));
    // Through the CLI, as an operator would.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(common::bin("alertflow"))
            .args(args)
            .env("ALERTFLOW_CONFIG", &file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, _, err) = cli(&[
        "silence",
        "add",
        "--check",
        "nope",
        "--for",
        "1h",
        "--comment",
        "x",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--check nope"), "{err}");
    let (code, _, err) = cli(&["silence", "add", "--match", "task=flaky", "--comment", "x"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, id, err) = cli(&[
        "silence",
        "add",
        "--match",
        "task=flaky",
        "--for",
        "1h",
        "--comment",
        "known flaky",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (_, list, _) = cli(&["silence", "list", "--json"]);
    let v: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(v.len(), 1, "{list}");
    assert_eq!(
        (v[0]["id"].as_str(), v[0]["state"].as_str()),
        (Some(id.as_str()), Some("active"))
    );

    let reg = Registry::new().with(Flaky);
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    HealthNotifier::attach(&env.config, &w.services).unwrap();
    run_flaky(&env, &publisher, &reg, true).await;
    let ledger = ledger_entries(&env, &["--check", "flaky"], 1).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["outcome"], "silenced");
    assert_eq!(ledger[0]["event"], "error");
    assert_eq!(ledger[0]["labels"]["silence"], id.as_str());
    assert!(sb.received_slack(SLACK_PATH).is_empty(), "nothing sent");

    // Expired: the next change (OK) is sent.
    let (code, out, _) = cli(&["silence", "expire", &id]);
    assert_eq!((code, out), (Some(0), format!("{id} expired")));
    run_flaky(&env, &publisher, &reg, false).await;
    let got = wait_for(|| sb.received_slack(SLACK_PATH), 1, Duration::from_secs(5)).await;
    assert!(got[0]["text"].as_str().unwrap().starts_with("--- OK ---"));
    let (_, list, _) = cli(&["silence", "list", "--json"]);
    let v: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["state"], "expired", "{list}");
    w.stop().await;
    sink.close().await;
}

/// Issue 15.4: with `for`, an alarm fires only once its condition has held
/// that long without a break, and the pending state survives a worker
/// restart (it is in Redis).
#[tokio::test]
async fn for_holds_an_alarm_pending_across_a_worker_restart_and_resets_on_a_break() {
    let sb = sandbox().await;
    let env = cpu_env(&sb, "notify-for", "1h", |k| {
        k.for_ = Some(HumanDuration(Duration::from_secs(2)));
    });
    let (db, influx) = TestDb::create(v1_source(&env.config)).await;
    influx
        .write_lines("cpu,cluster=a usage=95\ncpu,cluster=b usage=96\n")
        .await
        .unwrap();
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let received = || sb.received_bot("sandbox");
    let w = env.start_worker(reg.clone());
    run_check(&env, &publisher, &reg, "cpu-high").await;
    // The evaluation happened before its task succeeded: a's wait started
    // no later than this.
    let first = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(received().is_empty(), "pending, not sent");
    // The worker restarts; b breaks its streak in between.
    w.stop().await;
    influx
        .write_lines("cpu,cluster=b usage=50\n")
        .await
        .unwrap();
    let w = env.start_worker(reg.clone());
    run_check(&env, &publisher, &reg, "cpu-high").await;
    influx
        .write_lines("cpu,cluster=b usage=97\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(first.elapsed())).await;
    // a has held for 2 s across the restart: sent; b started over: pending.
    run_check(&env, &publisher, &reg, "cpu-high").await;
    let got = wait_for(received, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(title(&got[0]), "[FIRING:1] cpu-high");
    assert!(
        divs(&got[0])[0].contains("cluster=a"),
        "{:?}",
        divs(&got[0])
    );
    // b, 2 s after it came back.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    run_check(&env, &publisher, &reg, "cpu-high").await;
    let got = wait_for(received, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    assert!(
        divs(&got[1])[0].contains("cluster=b"),
        "{:?}",
        divs(&got[1])
    );
    w.stop().await;
    drop(db);
}

/// Issue 15.4: `no_data = "alert"` raises a distinct no-data alarm for a
/// label set that stopped reporting and resolves it when it reports again;
/// `no_data = "keep"` keeps a firing alarm firing while its series is
/// silent (the default would resolve it).
#[tokio::test]
async fn no_data_alerts_and_resolves_and_keep_holds_a_firing_alarm() {
    let sb = sandbox().await;
    let query = "SELECT last(usage) AS usage FROM cpu WHERE time > now() - 3s GROUP BY cluster";
    let env = TestEnv::with("notify-nodata", |c| {
        queues(c);
        c.influx.sources.insert("metrics".into(), v1_source(c));
        c.receivers.insert("ops".into(), lark(&sb, "sandbox", None));
        let mut a = check("silent-hosts", "metrics", query, "usage", "1h");
        a.no_data = NoData::Alert;
        let mut k = check("cpu-keep", "metrics", query, "usage", "1h");
        k.no_data = NoData::Keep;
        c.checks.push(a);
        c.checks.push(k);
    });
    let (db, influx) = TestDb::create(v1_source(&env.config)).await;
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    let of = |check: &str| {
        sb.received_bot("sandbox")
            .into_iter()
            .filter(|c| title(c).ends_with(&format!(" {check}")))
            .collect::<Vec<_>>()
    };
    let alerts = || of("silent-hosts");
    let kept = || of("cpu-keep");

    // a and b report; b is over the threshold.
    influx
        .write_lines("cpu,cluster=a usage=50\ncpu,cluster=b usage=95\n")
        .await
        .unwrap();
    run_check(&env, &publisher, &reg, "silent-hosts").await;
    run_check(&env, &publisher, &reg, "cpu-keep").await;
    assert_eq!(wait_for(alerts, 1, Duration::from_secs(5)).await.len(), 1);
    assert_eq!(wait_for(kept, 1, Duration::from_secs(5)).await.len(), 1);

    // Both stop reporting (the query looks back 3 s).
    tokio::time::sleep(Duration::from_millis(3300)).await;
    run_check(&env, &publisher, &reg, "silent-hosts").await;
    run_check(&env, &publisher, &reg, "cpu-keep").await;
    let got = wait_for(alerts, 2, Duration::from_secs(5)).await;
    // One message: b resolved (its value is gone), and a no-data alarm
    // each for a and b.
    assert_eq!(got.len(), 2);
    assert_eq!(title(&got[1]), "[FIRING:2, RESOLVED:1] silent-hosts");
    let d = divs(&got[1]);
    let no_data: Vec<&String> = d.iter().filter(|s| s.contains("no_data=true")).collect();
    assert_eq!(no_data.len(), 2, "{d:?}");
    assert!(
        no_data.iter().all(|s| s.contains("no data from cluster=")),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|s| s.contains("RESOLVED") && s.contains("cluster=b") && !s.contains("no_data")),
        "{d:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kept().len(), 1, "keep: b stays firing, no resolved message");

    // a reports again: its no-data alarm resolves.
    influx
        .write_lines("cpu,cluster=a usage=50\n")
        .await
        .unwrap();
    run_check(&env, &publisher, &reg, "silent-hosts").await;
    let got = wait_for(alerts, 3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3);
    let last = got.last().unwrap();
    assert_eq!(title(last), "[RESOLVED:1] silent-hosts");
    assert!(
        divs(last)[0].contains("cluster=a") && divs(last)[0].contains("no_data=true"),
        "{:?}",
        divs(last)
    );
    w.stop().await;
    drop(db);
}

/// Issue 15.3: an alarm that changes state more than `flap_threshold` times
/// within `flap_window` sends one FLAPPING message, nothing while it flaps,
/// and one STABLE message with its state once it held still for the window;
/// a steady alarm of the same check is untouched; the ledger lists it all.
#[tokio::test]
async fn a_flapping_alarm_says_so_once_then_nothing_until_stable() {
    let sb = sandbox().await;
    let env = cpu_env(&sb, "notify-flap", "1h", |k| {
        k.flap_threshold = Some(3);
        k.flap_window = Some(HumanDuration(Duration::from_secs(8)));
    });
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let (db, influx) = TestDb::create(v1_source(&env.config)).await;
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    let received = || sb.received_bot("sandbox");
    let a_is = |usage: u32| format!("cpu,cluster=a usage={usage}\n");
    influx
        .write_lines("cpu,cluster=a usage=95\ncpu,cluster=b usage=96\n")
        .await
        .unwrap();
    let start = Instant::now();
    run_check(&env, &publisher, &reg, "cpu-high").await;
    // Three changes (fire, resolve, fire) are sent as usual.
    influx.write_lines(&a_is(10)).await.unwrap();
    run_check(&env, &publisher, &reg, "cpu-high").await;
    influx.write_lines(&a_is(95)).await.unwrap();
    run_check(&env, &publisher, &reg, "cpu-high").await;
    // The fourth: flapping.
    influx.write_lines(&a_is(10)).await.unwrap();
    run_check(&env, &publisher, &reg, "cpu-high").await;
    let got = wait_for(received, 4, Duration::from_secs(5)).await;
    let titles: Vec<String> = got.iter().map(title).collect();
    assert_eq!(
        titles,
        [
            "[FIRING:2] cpu-high",
            "[RESOLVED:1] cpu-high",
            "[FIRING:1] cpu-high",
            "[FLAPPING:1] cpu-high"
        ],
        "(the four changes took {:?}; the window is 8 s)",
        start.elapsed()
    );
    let d = divs(&got[3]).join("\n");
    assert!(
        d.contains("cluster=a") && d.contains("Changed state 4 times within 8s; now OK"),
        "{d}"
    );
    // Three more changes while it flaps: nothing is sent.
    for usage in [95, 10, 95] {
        influx.write_lines(&a_is(usage)).await.unwrap();
        run_check(&env, &publisher, &reg, "cpu-high").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received().len(), 4, "nothing while flapping");
    // Firing and unchanged for the whole window: one STABLE message.
    tokio::time::sleep(Duration::from_millis(8100)).await;
    run_check(&env, &publisher, &reg, "cpu-high").await;
    let got = wait_for(received, 5, Duration::from_secs(5)).await;
    assert_eq!(title(&got[4]), "[STABLE:1] cpu-high");
    let d = divs(&got[4]).join("\n");
    assert!(d.contains("No change for 8s: it is firing."), "{d}");
    // ... and then it is an ordinary firing alarm, inside its repeat interval.
    run_check(&env, &publisher, &reg, "cpu-high").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received().len(), 5, "no more messages");

    // The ledger: per event and outcome, for cluster a.
    let ledger = ledger_entries(&env, &["--check", "cpu-high", "--limit", "100"], 18).await;
    let a: Vec<(String, String)> = ledger
        .iter()
        .rev()
        .filter(|e| e["labels"]["labels"]["cluster"] == "a")
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = a.iter().map(|(e, o)| (e.as_str(), o.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("firing", "sent"),
            ("resolved", "sent"),
            ("firing", "sent"),
            ("resolved", "flapping"),
            ("flapping", "sent"),
            ("firing", "flapping"),
            ("resolved", "flapping"),
            ("firing", "flapping"),
            ("stable", "sent"),
            ("firing", "deduplicated"),
        ]
    );
    w.stop().await;
    drop(db);
    sink.close().await;
}

/// Issue 15.2: a message the receiver's shared rate limit has no slot for
/// is recorded as `rate-limited`, not sent.
#[tokio::test]
async fn a_message_without_a_rate_limit_slot_is_recorded_as_rate_limited() {
    let sb = sandbox().await;
    let env = TestEnv::new("notify-ratelimited");
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n\
         [rate_limits]\ntight = [{{ limit = 1, per = \"1h\" }}]\n\
         [receivers.ops]\ntype = \"slack\"\nurl = \"{}{SLACK_PATH}\"\n\
         rate_limit = \"tight\"\nmax_attempts = 1\nmax_rate_limit_wait = \"100ms\"\n",
        env.config.mysql.database, sb.base_url
    ));
    // Off the test's thread: the sandbox serves on this runtime.
    let test = || {
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(common::bin("alertflow"))
                .args(["notify", "test", "ops"])
                .env("ALERTFLOW_CONFIG", &file)
                .output()
                .unwrap()
        })
    };
    let first = test().await.unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = test().await.unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("rate limit tight has no slot"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(sb.received_slack(SLACK_PATH).len(), 1);
    let ledger = ledger_entries(&env, &[], 2).await;
    let outcomes: Vec<&str> = ledger
        .iter()
        .rev()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["sent", "rate-limited"]);
    sink.close().await;
}
