//! Issue 16.1: watchdogs against the real RabbitMQ, Redis and MariaDB, with
//! the sandbox's Lark bot as receiver. Each fires once, is deduplicated
//! while it holds, and resolves with a message when its condition clears.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alertflow::config::{AppConfig, HumanDuration};
use alertflow::notify::{ReceiverConfig, ReceiverKind};
use alertflow::queue::beat::Beat;
use alertflow::queue::schedule::{CatchUp, ScheduleConfig};
use alertflow::queue::state::TaskStatus;
use alertflow::queue::task::Registry;
use alertflow::sandbox::{SandboxConfig, SandboxHandle};
use alertflow::watchdog::WatchdogConfig;
use common::TestEnv;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn sandbox() -> SandboxHandle {
    alertflow::sandbox::spawn(SandboxConfig::default())
        .await
        .expect("sandbox")
}

fn watchdog(toml_text: &str) -> WatchdogConfig {
    toml::from_str(&format!(
        "receiver = \"ops\"\nrepeat_interval = \"1h\"\n{toml_text}"
    ))
    .expect("watchdog config")
}

fn with_ops(c: &mut AppConfig, sb: &SandboxHandle) {
    c.receivers.insert(
        "ops".into(),
        ReceiverConfig::new(
            ReceiverKind::Lark,
            format!("{}/open-apis/bot/v2/hook/sandbox", sb.base_url),
        ),
    );
}

fn title(card: &Value) -> String {
    card["card"]["header"]["title"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn text(card: &Value) -> String {
    card["card"]["elements"].to_string()
}

async fn wait_cards(sb: &SandboxHandle, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = sb.received_bot("sandbox");
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publish `watchdog {"watchdog": name}` and wait until it succeeded.
async fn evaluate(
    env: &TestEnv,
    publisher: &alertflow::queue::publisher::Publisher,
    reg: &Registry,
    name: &str,
) {
    let e = env.envelope(reg, "watchdog", json!({"watchdog": name}));
    publisher.publish(&e).await.unwrap();
    env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
}

/// Every beat stops across a fire: the workers (no beat publishes the
/// watchdog) raise *schedule missed* within its grace, and resolve it when
/// a beat is back and catches up.
#[tokio::test]
async fn stopping_every_beat_raises_schedule_missed_and_a_beat_back_resolves_it() {
    let sb = sandbox().await;
    let env = TestEnv::with("wd-beat", |c| {
        with_ops(c, &sb);
        c.queue.schedules = vec![ScheduleConfig {
            name: "tick".into(),
            cron: None,
            every: Some("1s".into()),
            timezone: None,
            task: "noop".into(),
            args: json!({}),
            queue: Some("default".into()),
            enabled: true,
            catch_up: Some(CatchUp::Once),
            catch_up_window: Some("1h".into()),
        }];
        c.beat.metrics_listen = "off".into();
        c.watch.interval = HumanDuration(Duration::from_secs(1));
        c.watchdogs = vec![watchdog(
            "name = \"beat-fires\"\nkind = \"schedule-missed\"\ngrace = \"2s\"\n",
        )];
    });
    let reg = env.registry();
    let w = env.start_worker(reg.clone());
    let stop = CancellationToken::new();
    // The worker's own ticker publishes the watchdog task every second.
    alertflow::watchdog::spawn_ticker(
        env.config.clone(),
        w.services.redis.clone(),
        w.services.worker_id.clone(),
        stop.clone(),
    );
    let beat = || Beat::new(Arc::new(env.config.queue.clone()), Arc::new(env.registry())).unwrap();
    let beat_stop = CancellationToken::new();
    let b = beat();
    let running = tokio::spawn({
        let s = beat_stop.clone();
        async move { b.run(s).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        sb.received_bot("sandbox").is_empty(),
        "all well while beat runs"
    );
    beat_stop.cancel();
    running.await.unwrap().unwrap();
    let stopped = Instant::now();
    let got = wait_cards(&sb, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "schedule missed within grace + a tick");
    let took = stopped.elapsed();
    assert_eq!(title(&got[0]), "[FIRING:1] beat-fires");
    assert!(
        text(&got[0]).contains("schedule tick missed"),
        "{}",
        text(&got[0])
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    // Deduplicated while beat stays down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sb.received_bot("sandbox").len(), 1);
    // A beat comes back: it catches up, and the watchdog resolves.
    let beat_stop = CancellationToken::new();
    let b = beat();
    let running = tokio::spawn({
        let s = beat_stop.clone();
        async move { b.run(s).await }
    });
    let got = wait_cards(&sb, 2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(title(&got[1]), "[RESOLVED:1] beat-fires");
    beat_stop.cancel();
    running.await.unwrap().unwrap();
    stop.cancel();
    w.stop().await;
}

/// *run late*, *source silent* and *dead letters*, each raised, kept quiet
/// while it holds, and resolved; `alertflow health` is CRITICAL while they
/// fire and names them.
#[tokio::test]
async fn run_late_source_silent_and_dead_letters_fire_and_resolve() {
    let sb = sandbox().await;
    let env = TestEnv::with("wd-kinds", |c| {
        with_ops(c, &sb);
        c.lark.chat_id = "oc_watched".into();
        c.watchdogs = vec![
            watchdog(
                "name = \"daily-run\"\nkind = \"run-late\"\ndeadline = \"00:00\"\ntimezone = \"UTC\"\n",
            ),
            watchdog("name = \"chat-silent\"\nkind = \"source-silent\"\nhours = 6\n"),
            watchdog("name = \"dlq\"\nkind = \"dead-letters\"\nmax = 0\n"),
        ];
    });
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    let cards = || sb.received_bot("sandbox");
    let of = |name: &str| -> Vec<String> {
        cards()
            .iter()
            .map(title)
            .filter(|t| t.ends_with(&format!(" {name}")))
            .collect()
    };

    // run late: nothing ran for yesterday (nor the day before).
    evaluate(&env, &publisher, &reg, "daily-run").await;
    let got = wait_cards(&sb, 1, Duration::from_secs(5)).await;
    assert_eq!(title(&got[0]), "[FIRING:2] daily-run");
    assert!(
        text(&got[0]).contains("no run started"),
        "{}",
        text(&got[0])
    );
    evaluate(&env, &publisher, &reg, "daily-run").await;
    // Both dates complete: rows and recommendations written.
    let today = chrono::Utc::now().date_naive();
    for days in [1, 2] {
        let date = today - chrono::Days::new(days);
        let at = alertflow::sink::ledger::now();
        let run_id = format!("run-{days}");
        sink.record_run(&alertflow::sink::ledger::RunRecord {
            run_id: run_id.clone(),
            date,
            chat_id: "oc_watched".into(),
            window_start: at,
            window_end: at,
            started_at: at,
            total_pages: Some(1),
            messages: 1,
            fetched_at: Some(at),
        })
        .await
        .unwrap();
        sink.record_pages(&[alertflow::sink::ledger::PageRecord {
            run_id: run_id.clone(),
            page: 1,
            date,
            rows: 1,
            skips: Default::default(),
            written_at: at,
        }])
        .await
        .unwrap();
        if days == 1 {
            sink.record_recommend(&alertflow::sink::ledger::RecommendRecord {
                date,
                run_id,
                generated_at: at,
                rows_read: 1,
                alerts: 1,
                max_ingested_at: Some(at),
            })
            .await
            .unwrap();
        }
    }
    // Yesterday is complete; the day before lacks its recommendations.
    evaluate(&env, &publisher, &reg, "daily-run").await;
    let got = wait_cards(&sb, 2, Duration::from_secs(5)).await;
    assert_eq!(title(&got[1]), "[RESOLVED:1] daily-run");
    let now_firing = alertflow::notify::alarm::AlarmStore::new(
        alertflow::queue::context::redis_pool(&env.config).unwrap(),
        env.ns(),
    )
    .active("daily-run")
    .await
    .unwrap();
    let dates: Vec<&str> = now_firing
        .values()
        .map(|a| a.alarm.labels["date"].as_str())
        .collect();
    let day_before = (today - chrono::Days::new(2)).to_string();
    assert_eq!(dates, [day_before.as_str()], "the day before still fires");

    // source silent: the chat's newest card is 10 h old.
    let db = &env.config.mysql.database;
    let card = |id: &str, hours_ago: i64| {
        let at = chrono::Utc::now().naive_utc() - chrono::Duration::hours(hours_ago);
        format!(
            "INSERT INTO `{db}`.lark_alerts (message_id, lark_message_id, chat_id, status, alert_name, severity, clusters, regions, alert_count, created_at, alert_date, title, summary, raw_content, ingested_at) \
             VALUES ('{id}-f', '{id}', 'oc_watched', 'firing', 'x', 'warning', 'c1', 'r1', 1, '{}', '{}', 't', 's', '{{}}', '{}')",
            at.format("%Y-%m-%d %H:%M:%S"),
            at.date(),
            at.format("%Y-%m-%d %H:%M:%S")
        )
    };
    common::sql(&env.config, &[&card("om_old", 10)]).await;
    evaluate(&env, &publisher, &reg, "chat-silent").await;
    wait_cards(&sb, 3, Duration::from_secs(5)).await;
    assert_eq!(of("chat-silent"), ["[FIRING:1] chat-silent"]);
    let last = cards().pop().unwrap();
    assert!(
        text(&last).contains("no alert card from chat oc_watched for 10"),
        "{}",
        text(&last)
    );
    common::sql(&env.config, &[&card("om_new", 0)]).await;
    evaluate(&env, &publisher, &reg, "chat-silent").await;
    wait_cards(&sb, 4, Duration::from_secs(5)).await;
    assert_eq!(
        of("chat-silent"),
        ["[FIRING:1] chat-silent", "[RESOLVED:1] chat-silent"]
    );

    // dead letters: one message dead-lettered.
    let mut unknown = alertflow::queue::message::Envelope::new("no-such-task", json!({}));
    unknown.queue = "default".into();
    publisher.publish(&unknown).await.unwrap();
    env.wait_dead(1, Duration::from_secs(10)).await;
    evaluate(&env, &publisher, &reg, "dlq").await;
    wait_cards(&sb, 5, Duration::from_secs(5)).await;
    assert_eq!(of("dlq"), ["[FIRING:1] dlq"]);
    // `alertflow health` names the firing watchdogs (CRITICAL, exit 2).
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n[receivers.ops]\ntype = \"lark\"\nurl = \"{}/open-apis/bot/v2/hook/sandbox\"\n\
         [[watchdogs]]\nname = \"daily-run\"\nkind = \"run-late\"\ndeadline = \"00:00\"\ntimezone = \"UTC\"\nreceiver = \"ops\"\n\
         [[watchdogs]]\nname = \"dlq\"\nkind = \"dead-letters\"\nreceiver = \"ops\"\n",
        env.config.mysql.database, sb.base_url
    ));
    // The dashboard's overview names them too.
    let (_web, url) = common::start_web(&file);
    let overview: Value = reqwest::get(format!("{url}/api/overview"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let watchdogs: Vec<&str> = overview["watchdogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["watchdog"].as_str().unwrap())
        .collect();
    assert_eq!(watchdogs, ["daily-run", "dlq"], "{overview}");
    assert!(
        overview["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap()
            .starts_with("watchdog dlq (dead-letters) since")),
        "{overview}"
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::bin("alertflow"))
            .args(["health", "--json"])
            .env("ALERTFLOW_CONFIG", &file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["watchdogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["watchdog"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["daily-run", "dlq"], "{v}");
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .contains("watchdog dlq: 1 message(s) in"),
        "{v}"
    );
    // Purged: resolved.
    {
        let conn = alertflow::queue::publisher::connect(&env.config, "test")
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        alertflow::queue::admin::purge(&ch, &env.topology().dead_queue())
            .await
            .unwrap();
        let _ = conn.close(200, "".into()).await;
    }
    evaluate(&env, &publisher, &reg, "dlq").await;
    wait_cards(&sb, 6, Duration::from_secs(5)).await;
    assert_eq!(of("dlq"), ["[FIRING:1] dlq", "[RESOLVED:1] dlq"]);
    w.stop().await;
    sink.close().await;
}

/// *source silent* from the pipeline itself: the sandbox's chat stopped
/// delivering cards two days ago; the days since are fetched (their runs
/// complete with no messages) and the watchdog names the chat and its
/// newest card.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sandbox_chat_without_messages_for_the_window_raises_source_silent() {
    use alertflow::cli::run::{DayPlan, publish_days, wait_days};
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::America::Los_Angeles)
        .date_naive();
    let last_day = today - chrono::Days::new(2);
    let cfg = SandboxConfig {
        per_day: 40,
        history_to: Some(last_day),
        ..SandboxConfig::default()
    };
    let sb = alertflow::sandbox::spawn(cfg).await.unwrap();
    let base = sb.base_url.clone();
    let env = TestEnv::with("wd-silent", |c| {
        common::use_sandbox(c, &base);
        with_ops(c, &sb);
        c.sink.batch_interval = common::ms(200);
        c.watchdogs = vec![watchdog(
            "name = \"chat-silent\"\nkind = \"source-silent\"\nhours = 24\n",
        )];
    });
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let reg = env.registry();
    let w = env.start_worker(reg.clone());
    let plans: Vec<DayPlan> = [last_day, today - chrono::Days::new(1)]
        .into_iter()
        .map(|date| DayPlan {
            date,
            until_now: false,
        })
        .collect();
    let published = publish_days(&env.config, &plans).await.unwrap();
    let (outcomes, finished) = wait_days(
        &env.config,
        &published,
        Some(Duration::from_secs(120)),
        true,
    )
    .await
    .unwrap();
    assert!(
        finished && outcomes.iter().all(|o| o.status == "done"),
        "{outcomes:#?}"
    );
    let (_conn, publisher) = env.publisher().await;
    evaluate(&env, &publisher, &reg, "chat-silent").await;
    let got = wait_cards(&sb, 1, Duration::from_secs(5)).await;
    let silent: Vec<&Value> = got
        .iter()
        .filter(|c| title(c) == "[FIRING:1] chat-silent")
        .collect();
    assert_eq!(silent.len(), 1, "{got:?}");
    let t = text(silent[0]);
    assert!(
        t.contains("no alert card from chat oc_sandbox_alerts for")
            && (t.contains(&format!("the newest card is from {last_day}"))
                || t.contains(&format!(
                    "the newest card is from {}",
                    last_day + chrono::Days::new(1)
                ))),
        "{t}"
    );
    w.stop().await;
    sink.close().await;
}
