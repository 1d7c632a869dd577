//! The beat against the real RabbitMQ and Redis: several processes publish
//! each fire exactly once; catch-up policies; a claimer that dies.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alertflow::config::HumanDuration;
use alertflow::queue::beat::{Beat, FireOutcome};
use alertflow::queue::message::Envelope;
use alertflow::queue::schedule::{CatchUp, ScheduleConfig};
use chrono::{DateTime, TimeZone, Utc};
use common::{Child, TestEnv};
use lapin::options::BasicGetOptions;
use serde_json::json;

fn every(name: &str, period: &str, catch_up: CatchUp) -> ScheduleConfig {
    ScheduleConfig {
        name: name.into(),
        cron: None,
        every: Some(period.into()),
        timezone: None,
        task: "noop".into(),
        args: json!({"schedule": name, "fire": "{now}"}),
        queue: Some("default".into()),
        enabled: true,
        catch_up: Some(catch_up),
        catch_up_window: Some("1h".into()),
    }
}

/// Drain the default queue: every envelope in it, with its fire instant.
async fn drain_fires(env: &TestEnv) -> Vec<(Envelope, DateTime<Utc>)> {
    let conn = alertflow::queue::publisher::connect(&env.config, "test")
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(
            env.topology().queue("default").into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let e = Envelope::from_json(&m.delivery.data).unwrap();
        let fire = DateTime::parse_from_rfc3339(e.args["fire"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        out.push((e, fire));
    }
    let _ = conn.close(200, "".into()).await;
    out
}

/// Drain the default queue; returns (schedule, fire instant, task id) per message.
async fn drain(env: &TestEnv) -> Vec<(String, DateTime<Utc>, uuid::Uuid)> {
    drain_fires(env)
        .await
        .into_iter()
        .map(|(e, fire)| (e.args["schedule"].as_str().unwrap().to_string(), fire, e.id))
        .collect()
}

#[tokio::test]
async fn three_beat_processes_publish_every_fire_exactly_once() {
    let env = TestEnv::new("beat3");
    let cfg = env.config_file(
        "[beat]\nmetrics_listen = \"off\"\n\
         [[schedules]]\nname = \"tick\"\nevery = \"1s\"\ntask = \"noop\"\nqueue = \"default\"\n\
         args = { schedule = \"tick\", fire = \"{now}\" }\n",
    );
    let (_c, _p) = env.publisher().await; // declare the queue before the beats start
    let beats: Vec<Child> = (0..3)
        .map(|_| Child::spawn("alertflow-beat", &[], &cfg))
        .collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    for mut b in beats {
        b.signal("TERM");
        let status = b
            .wait_exit(Duration::from_secs(10))
            .expect("beat exits on SIGTERM");
        assert!(status.success(), "{status:?}");
    }
    let fires = drain(&env).await;
    let mut by_instant: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    let mut by_id: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
    for (_, t, id) in &fires {
        *by_instant.entry(*t).or_default() += 1;
        *by_id.entry(*id).or_default() += 1;
    }
    let first = *by_instant.keys().next().expect("fires were published");
    let last = *by_instant.keys().last().unwrap();
    let span = (last - first).num_seconds() + 1;
    let duplicates: usize = by_instant.values().map(|n| n - 1).sum();
    let missed = span as usize - by_instant.len();
    println!(
        "three beats: {span} fire instants, {} messages, {duplicates} duplicates, {missed} missed",
        fires.len()
    );
    assert!(span >= 8, "about 10 s of fires, got {span}");
    assert_eq!(duplicates, 0, "a fire was published twice");
    assert!(
        by_id.values().all(|n| *n == 1),
        "a task id was published twice"
    );
    assert_eq!(
        missed, 0,
        "a fire instant between the first and the last was missed"
    );
}

fn beat(env: &TestEnv, schedules: Vec<ScheduleConfig>, claim_timeout_ms: u64) -> Beat {
    let mut c = (*env.config).clone();
    c.schedules = schedules;
    c.beat.metrics_listen = "off".into();
    c.beat.claim_timeout = HumanDuration(Duration::from_millis(claim_timeout_ms));
    c.validate().unwrap();
    Beat::new(Arc::new(c.queue), Arc::new(env.registry())).unwrap()
}

#[tokio::test]
async fn catch_up_after_downtime_follows_each_policy() {
    let env = TestEnv::new("catchup");
    let b = beat(
        &env,
        vec![
            every("skip", "1s", CatchUp::Skip),
            every("once", "1s", CatchUp::Once),
            every("all", "1s", CatchUp::All),
        ],
        15_000,
    );
    let (_c, publisher) = env.publisher().await;
    // The beat last published at t0, then was down until t0 + 5.5 s.
    let t0 = Utc.timestamp_opt(Utc::now().timestamp() - 30, 0).unwrap();
    for name in ["skip", "once", "all"] {
        b.record_last_fire(name, t0).await.unwrap();
    }
    let now = t0 + chrono::Duration::milliseconds(5500);
    let published = b.catch_up(&publisher, now).await.unwrap();
    assert_eq!(published, 6, "once: 1, all: 5, skip: 0");
    let fires = drain(&env).await;
    let of = |name: &str| -> Vec<DateTime<Utc>> {
        let mut v: Vec<_> = fires.iter().filter(|f| f.0 == name).map(|f| f.1).collect();
        v.sort();
        v
    };
    assert!(of("skip").is_empty());
    assert_eq!(
        of("once"),
        vec![t0 + chrono::Duration::seconds(5)],
        "the most recent missed fire"
    );
    assert_eq!(
        of("all"),
        (1..=5)
            .map(|s| t0 + chrono::Duration::seconds(s))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        b.last_fire("all").await.unwrap(),
        Some(t0 + chrono::Duration::seconds(5))
    );
    // A second beat starting at the same moment publishes nothing more.
    let again = beat(
        &env,
        vec![
            every("skip", "1s", CatchUp::Skip),
            every("once", "1s", CatchUp::Once),
            every("all", "1s", CatchUp::All),
        ],
        15_000,
    );
    assert_eq!(again.catch_up(&publisher, now).await.unwrap(), 0);
    // Fires older than the window are not caught up.
    b.record_last_fire("all", now - chrono::Duration::hours(3))
        .await
        .unwrap();
    let window_start = now - chrono::Duration::hours(1);
    let missed = Beat::missed_fires(&b.schedules()[2], b.last_fire("all").await.unwrap(), now);
    assert!(missed.iter().all(|t| *t > window_start));
    assert_eq!(missed.len(), 3600);
}

/// With `beat.state_file`, a beat whose Redis lost its data (every key of
/// the namespace, `last` fires and claims) still knows each schedule's last
/// fire and catches up what was missed; without the file it cannot.
#[tokio::test]
async fn the_state_file_keeps_catch_up_across_redis_data_loss() {
    let env = TestEnv::new("beatstate");
    let file = env.dir.path().join("beat-last.json");
    let with_file = |state: Option<std::path::PathBuf>| {
        let mut c = (*env.config).clone();
        c.schedules = vec![every("once", "1s", CatchUp::Once)];
        c.beat.metrics_listen = "off".into();
        c.beat.state_file = state;
        c.validate().unwrap();
        Beat::new(Arc::new(c.queue), Arc::new(env.registry())).unwrap()
    };
    let (_c, publisher) = env.publisher().await;
    let t0 = Utc.timestamp_opt(Utc::now().timestamp() - 30, 0).unwrap();
    let b = with_file(Some(file.clone()));
    assert!(matches!(
        b.fire(&publisher, 0, t0, alertflow::queue::beat::FireKind::OnTime)
            .await
            .unwrap(),
        FireOutcome::Published(_)
    ));
    assert_eq!(drain(&env).await.len(), 1);
    // Redis loses its data.
    let pool = alertflow::queue::context::redis_pool(&env.config).unwrap();
    let mut conn = pool.get().await.unwrap();
    let keys: Vec<String> = deadpool_redis::redis::cmd("KEYS")
        .arg(format!("{}:beat:*", env.ns()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = deadpool_redis::redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    let now = t0 + chrono::Duration::milliseconds(5500);
    // Without the file: no last fire, nothing caught up.
    let plain = with_file(None);
    assert_eq!(plain.last_fire("once").await.unwrap(), None);
    assert_eq!(plain.catch_up(&publisher, now).await.unwrap(), 0);
    // With it: the most recent missed fire, once.
    let kept = with_file(Some(file));
    assert_eq!(kept.last_fire("once").await.unwrap(), Some(t0));
    assert_eq!(kept.catch_up(&publisher, now).await.unwrap(), 1);
    let fires = drain(&env).await;
    assert_eq!(fires.len(), 1, "{fires:?}");
    assert_eq!(fires[0].1, t0 + chrono::Duration::seconds(5));
}

#[tokio::test]
async fn a_fire_whose_claimer_died_is_published_by_another_beat() {
    let env = TestEnv::new("claimdied");
    let b = beat(&env, vec![every("tick", "1s", CatchUp::Skip)], 800);
    let (_c, publisher) = env.publisher().await;
    // Another beat claimed the next fire and died before publishing.
    let fire = Utc.timestamp_opt(Utc::now().timestamp() + 2, 0).unwrap();
    let pool = alertflow::queue::context::redis_pool(&env.config).unwrap();
    let mut conn = pool.get().await.unwrap();
    let key = format!("{}:beat:claim:tick:{}", env.ns(), fire.timestamp_millis());
    let _: () = deadpool_redis::redis::cmd("SET")
        .arg(&key)
        .arg("pending:ghost")
        .arg("PX")
        .arg(2600)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        b.fire(
            &publisher,
            0,
            fire,
            alertflow::queue::beat::FireKind::OnTime
        )
        .await
        .unwrap(),
        FireOutcome::ClaimedElsewhere
    );
    // The running beat verifies lost claims after claim_timeout.
    let token = tokio_util::sync::CancellationToken::new();
    let stop = token.clone();
    let runner = tokio::spawn(async move { b.run(stop).await });
    tokio::time::sleep(Duration::from_millis(5500)).await;
    token.cancel();
    runner.await.unwrap().unwrap();
    let fires = drain(&env).await;
    let n = fires.iter().filter(|f| f.1 == fire).count();
    assert_eq!(
        n, 1,
        "the orphaned fire was published exactly once: {fires:?}"
    );
}

#[tokio::test]
async fn a_paused_schedule_is_skipped_by_every_beat_and_not_caught_up() {
    use alertflow::queue::beat::{FireKind, Pause};
    let env = TestEnv::new("beatpause");
    let schedules = vec![every("tick", "1s", CatchUp::All)];
    let (a, b) = (
        beat(&env, schedules.clone(), 800),
        beat(&env, schedules, 800),
    );
    let (_c, publisher) = env.publisher().await;
    let t0 = Utc.timestamp_opt(Utc::now().timestamp(), 0).unwrap();
    let pause = Pause {
        by: "ann".into(),
        at: Utc::now(),
        comment: "db upgrade".into(),
    };
    assert!(a.pause("nope", &pause).await.is_err(), "unknown schedule");
    a.pause("tick", &pause).await.unwrap();
    // The other beat sees it too.
    assert_eq!(b.paused().await.unwrap().get("tick"), Some(&pause));
    for (i, instant) in [t0, t0 + chrono::Duration::seconds(1)]
        .into_iter()
        .enumerate()
    {
        let who = if i == 0 { &a } else { &b };
        assert_eq!(
            who.fire(&publisher, 0, instant, FireKind::OnTime)
                .await
                .unwrap(),
            FireOutcome::Paused
        );
    }
    // Resumed: the fires passed while paused are not caught up, the next
    // fire is published.
    assert!(b.resume("tick").await.unwrap());
    assert!(!b.resume("tick").await.unwrap(), "not paused any more");
    let now = t0 + chrono::Duration::seconds(1) + chrono::Duration::milliseconds(500);
    assert_eq!(a.catch_up(&publisher, now).await.unwrap(), 0);
    let next = t0 + chrono::Duration::seconds(2);
    assert!(matches!(
        a.fire(&publisher, 0, next, FireKind::OnTime).await.unwrap(),
        FireOutcome::Published(_)
    ));
    let fires = drain(&env).await;
    let instants: Vec<DateTime<Utc>> = fires.iter().map(|f| f.1).collect();
    assert_eq!(instants, vec![next], "{fires:?}");
}

#[tokio::test]
async fn a_running_beat_is_registered_and_deregistered_on_stop() {
    let env = TestEnv::new("beatreg");
    let b = beat(&env, vec![every("tick", "1h", CatchUp::Skip)], 800);
    let pool = alertflow::queue::context::redis_pool(&env.config).unwrap();
    let beats = alertflow::queue::state::BeatRegistry::new(pool, env.ns());
    let token = tokio_util::sync::CancellationToken::new();
    let stop = token.clone();
    let runner = tokio::spawn(async move { b.run(stop).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let l = beats.list().await.unwrap();
        if !l.is_empty() {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the beat never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].schedules, 1);
    assert_eq!(listed[0].pid, std::process::id());
    token.cancel();
    runner.await.unwrap().unwrap();
    assert!(beats.list().await.unwrap().is_empty(), "deregistered");
}

#[test]
fn schedule_pause_and_resume_from_the_cli() {
    let env = TestEnv::new("beatpausecli");
    let file = env
        .config_file("[[schedules]]\nname = \"nightly\"\ncron = \"30 0 * * *\"\ntask = \"noop\"\n");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(common::bin("alertflow"))
            .args(args)
            .env("ALERTFLOW_CONFIG", &file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let listed = || {
        let (code, out, err) = cli(&["schedule", "list", "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["paused"].clone()
    };
    assert!(listed().is_null());
    let (code, out, _) = cli(&[
        "schedule",
        "pause",
        "nightly",
        "--comment",
        "upgrade",
        "--by",
        "ann",
    ]);
    assert_eq!((code, out.trim()), (Some(0), "nightly paused"));
    let paused = listed();
    assert_eq!(
        (paused["by"].as_str(), paused["comment"].as_str()),
        (Some("ann"), Some("upgrade"))
    );
    let (_, table, _) = cli(&["schedule", "list"]);
    assert!(table.contains("PAUSED by ann upgrade"), "{table}");
    let (code, _, err) = cli(&["schedule", "pause", "nope"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no enabled schedule named \"nope\""), "{err}");
    let (code, out, _) = cli(&["schedule", "resume", "nightly"]);
    assert_eq!((code, out.trim()), (Some(0), "nightly resumed"));
    assert!(listed().is_null());
}

/// Issue 17.3: a beat whose host clock is 20 s fast fires on the Redis
/// server's clock: no fire is published before its instant, and the skew
/// is measured and exported.
#[tokio::test]
async fn a_beat_with_a_fast_clock_fires_on_the_redis_clock() {
    let env = TestEnv::new("beat-clock");
    let fast: alertflow::queue::beat::LocalClock =
        Arc::new(|| Utc::now() + chrono::Duration::seconds(20));
    let b = beat(&env, vec![every("tick", "1s", CatchUp::Skip)], 15_000).with_local_clock(fast);
    let skew = b.sync_clock().await.unwrap();
    assert!(
        (skew.num_milliseconds() - 20_000).abs() < 500,
        "measured skew {skew:?}"
    );
    assert!(
        b.metrics()
            .registry
            .gather()
            .iter()
            .any(|f| f.name() == "alertflow_beat_clock_skew_seconds"),
        "the skew is exported"
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let b = Arc::new(b);
    let running = tokio::spawn({
        let (b, stop) = (b.clone(), stop.clone());
        async move { b.run(stop).await }
    });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    stop.cancel();
    running.await.unwrap().unwrap();
    // Each message says which instant it fires and when it was made.
    let fires: Vec<(DateTime<Utc>, DateTime<Utc>)> = drain_fires(&env)
        .await
        .into_iter()
        .map(|(e, fire)| (fire, e.created_at))
        .collect();
    assert!(fires.len() >= 2, "{fires:?}");
    for (fire, made) in &fires {
        assert!(
            *fire <= *made + chrono::Duration::milliseconds(500),
            "fire {fire} published at {made}, early by {}",
            *fire - *made
        );
    }
}
