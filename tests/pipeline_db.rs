//! The whole pipeline through RabbitMQ into MariaDB: rows equal the
//! sandbox's expected rows, recommendations equal an independent
//! computation, `--local` gives the same tables, a day run twice changes
//! nothing, and every completed run gets exactly one `recommend`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alertflow::cli::run::{DayPlan, publish_days, wait_days};
use alertflow::config::AppConfig;
use alertflow::lark::card::AlertRow;
use alertflow::queue::context::Services;
use alertflow::queue::local::LocalRunner;
use alertflow::queue::message::Envelope;
use alertflow::run_state::RunState;
use alertflow::sandbox::{SandboxConfig, SandboxHandle, expected_range};
use alertflow::sink::starrocks::SqlSink;
use chrono::NaiveDate;
use common::TestEnv;
use serde_json::json;

const CHAT: &str = "oc_sandbox_alerts";

fn db_env(name: &str, sandbox: &SandboxHandle) -> TestEnv {
    let base = sandbox.base_url.clone();
    TestEnv::with(name, move |c| {
        common::use_sandbox(c, &base);
        c.worker.concurrency = 16;
        c.sink.batch_interval = common::ms(300);
    })
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

async fn migrate(config: &AppConfig) -> SqlSink {
    let sink = SqlSink::new(config);
    sink.migrate().await.expect("migrate the test database");
    sink
}

async fn all_rows(sink: &SqlSink, dates: &[&str]) -> Vec<AlertRow> {
    let mut rows = Vec::new();
    for d in dates {
        rows.extend(sink.alerts_for_date(d).await.unwrap());
    }
    rows.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    rows
}

fn sorted(mut rows: Vec<AlertRow>) -> Vec<AlertRow> {
    rows.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    rows
}

#[tokio::test]
async fn pipeline_rows_and_recommendations_are_exact_and_local_mode_matches() {
    let cfg = SandboxConfig {
        seed: 11,
        per_day: 600,
        ..SandboxConfig::default()
    };
    let sandbox = alertflow::sandbox::spawn(cfg.clone()).await.unwrap();
    let env = db_env("pipe", &sandbox);
    let sink = migrate(&env.config).await;
    let dates = ["2026-03-08", "2026-03-09"];
    let expected: Vec<AlertRow> = expected_range(&cfg, CHAT, day(dates[0]), day(dates[1]))
        .rows
        .into_iter()
        .map(AlertRow::from)
        .collect();

    let w = env.start_worker(env.registry());
    let plans: Vec<DayPlan> = dates
        .iter()
        .map(|d| DayPlan {
            date: day(d),
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
    let m = &w.services.metrics;
    let recommends: u64 = ["db"]
        .iter()
        .map(|q| {
            m.received
                .with_label_values(&["recommend", q, m.hostname.as_str()])
                .get()
        })
        .sum();
    assert_eq!(recommends, 2, "exactly one recommend per run");

    let rows = all_rows(&sink, &dates).await;
    assert_eq!(rows.len(), expected.len());
    assert_eq!(
        rows,
        sorted(expected.clone()),
        "rows in MariaDB equal the sandbox's expected rows"
    );
    for d in dates {
        common::check_recommendations(&env.config, &sink, d, &expected).await;
    }

    // The same day again (a new run): nothing doubles, the tables stay the same.
    let before = common::recs(&sink, dates[1]).await;
    let again = publish_days(&env.config, &plans[1..]).await.unwrap();
    let (o, finished) = wait_days(&env.config, &again, Some(Duration::from_secs(120)), true)
        .await
        .unwrap();
    assert!(finished && o[0].status == "done", "{o:#?}");
    assert_eq!(
        all_rows(&sink, &dates).await,
        rows,
        "a replayed day leaves one copy of each row"
    );
    let after = common::recs(&sink, dates[1]).await;
    assert_eq!(before, after);
    w.stop().await;

    // --local: the same tasks in this process, into a second database.
    let mut local_cfg = (*env.config).clone();
    local_cfg.mysql.database = format!("{}_local", env.config.mysql.database);
    let local_cfg = Arc::new(local_cfg);
    let local_sink = migrate(&local_cfg).await;
    let (services, _writer) = Services::new(Arc::new(local_cfg.queue.clone())).unwrap();
    let registry = Arc::new(alertflow::tasks::lookup_registry(&local_cfg).unwrap());
    let envs: Vec<Envelope> = dates
        .iter()
        .map(|d| {
            let mut e = Envelope::new("fetch-day", json!({"date": d}));
            e.run_id = Some(format!("local-{d}"));
            registry.apply_policy(&mut e, &local_cfg, None);
            e
        })
        .collect();
    let report = LocalRunner::new(services, registry, 16).run(envs).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(
        all_rows(&local_sink, &dates).await,
        rows,
        "--local gives the same lark_alerts"
    );
    for d in dates {
        assert_eq!(
            common::recs(&local_sink, d).await,
            common::recs(&sink, d).await,
            "--local gives the same recommendations"
        );
    }
    let pool = alertflow::queue::context::redis_pool(&local_cfg).unwrap();
    let runs = RunState::new(pool, &local_cfg.namespace, Duration::from_secs(60));
    assert!(
        runs.summary(&format!("local-{}", dates[0]))
            .await
            .unwrap()
            .unwrap()
            .recommend
            .is_some()
    );
    local_sink.drop_database().await.unwrap();
}

#[tokio::test]
async fn run_command_refuses_bad_arguments_and_publishes_nothing() {
    let env = TestEnv::new("runargs");
    let cfg = env.config_file("");
    let (_c, _p) = env.publisher().await;
    let lark_queue = env.topology().queue("lark");
    env.topology()
        .declare_family(_p.channel(), "lark")
        .await
        .unwrap();
    for args in [
        vec!["run", "2099-01-01"],
        vec!["run", "2026-02-30"],
        vec!["run", "yesterday"],
        vec!["run", "2024-01-01", "2026-03-01"],
        vec!["run", "--backfill", "400"],
        vec!["run", "--backfill", "3", "2026-03-01"],
    ] {
        let out = std::process::Command::new(common::bin("alertflow"))
            .args(&args)
            .env("ALERTFLOW_CONFIG", &cfg)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
    assert_eq!(env.ready(&lark_queue).await, 0, "nothing was published");
}

#[tokio::test]
async fn insert_in_stream_load_mode_loads_once_per_batch_label() {
    use alertflow::sandbox::stream_load::{
        FakeFailure, FakeStreamLoadOptions, spawn_fake_stream_load,
    };
    use alertflow::tasks::insert::InsertArgs;
    // As on StarRocks, the FE's HTTP loads and its MySQL protocol (which
    // the run ledger is written over) take the same user: one of this
    // test's own on MariaDB.
    let user = format!("af_sl_{}", std::process::id());
    let fake = spawn_fake_stream_load(FakeStreamLoadOptions {
        user: user.clone(),
        ..FakeStreamLoadOptions::default()
    })
    .await
    .unwrap();
    let password = FakeStreamLoadOptions::default().password;
    let fe = fake.fe_url();
    let (u, pw) = (user.clone(), password.clone());
    let env = TestEnv::with("streamload", move |c| {
        c.worker.queues = vec!["db".into()];
        c.worker.concurrency = 1; // one message per load, so labels are per page
        c.sink.mode = alertflow::config::SinkMode::StreamLoad;
        c.sink.stream_load_url = fe;
        c.mysql.user = u;
        c.mysql.password = alertflow::config::Secret::new(&pw);
        c.sink.batch_interval = common::ms(100);
    });
    let root = {
        let mut c = (*env.config).clone();
        c.mysql.user = "root".into();
        c.mysql.password = alertflow::config::Secret::new("");
        c
    };
    let admin = SqlSink::new(&root);
    admin.migrate().await.unwrap();
    common::sql(
        &root,
        &[
            &format!("CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'"),
            &format!("CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY '{password}'"),
            &format!("GRANT ALL ON `{}`.* TO '{user}'@'%'", root.mysql.database),
            &format!(
                "GRANT ALL ON `{}`.* TO '{user}'@'localhost'",
                root.mysql.database
            ),
        ],
    )
    .await;
    let cfg = SandboxConfig {
        seed: 3,
        per_day: 100,
        ..SandboxConfig::default()
    };
    let rows: Vec<AlertRow> = expected_range(&cfg, CHAT, day("2026-03-02"), day("2026-03-02"))
        .rows
        .into_iter()
        .map(AlertRow::from)
        .collect();
    let registry = env.registry();
    let (_c, publisher) = env.publisher().await;
    let env_page = |page: u32, rows: Vec<AlertRow>| {
        env.envelope(
            &registry,
            "insert",
            json!(InsertArgs {
                run_id: "r1".into(),
                date: "2026-03-02".into(),
                page,
                rows,
                raw: Default::default(),
                skips: Default::default(),
            }),
        )
    };
    let half = rows.len() / 2;
    let p1 = env_page(1, rows[..half].to_vec());
    let p2 = env_page(2, rows[half..].to_vec());
    // The first load of page 2 fails once: retried with the same label.
    fake.fail_next(1, FakeFailure::Fail);
    publisher.publish(&p1).await.unwrap();
    let w = env.start_worker(env.registry());
    env.wait_status(
        &p1.id,
        alertflow::queue::state::TaskStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    publisher.publish(&p2).await.unwrap();
    env.wait_status(
        &p2.id,
        alertflow::queue::state::TaskStatus::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    let db = env.config.mysql.database.clone();
    assert_eq!(fake.rows(&db, "lark_alerts").len(), rows.len());
    // A redelivered page (same run and page → same label) loads nothing twice.
    let mut again = p1.clone();
    again.id = uuid::Uuid::new_v4();
    publisher.publish(&again).await.unwrap();
    env.wait_status(
        &again.id,
        alertflow::queue::state::TaskStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        fake.rows(&db, "lark_alerts").len(),
        rows.len(),
        "label reuse: no doubled rows"
    );
    assert_eq!(fake.labels().len(), 2, "one label per page");
    let (fe_requests, be_requests) = fake.requests();
    assert!(
        fe_requests >= 4 && be_requests >= 4,
        "every load went FE → BE: {fe_requests}/{be_requests}"
    );
    // The run ledger (over SQL) has both pages, once each.
    let ledger = admin.run_ledgers(&["r1".to_string()]).await.unwrap();
    assert!(
        ledger.is_empty(),
        "no fetch-day recorded run r1: {ledger:?}"
    );
    let written = admin.pages_written(&["r1".to_string()]).await.unwrap();
    assert_eq!(written.get("r1"), Some(&2), "{written:?}");
    w.stop().await;
    common::sql(
        &root,
        &[
            &format!("DROP USER IF EXISTS '{user}'@'%'"),
            &format!("DROP USER IF EXISTS '{user}'@'localhost'"),
        ],
    )
    .await;
    admin.drop_database().await.unwrap();
}

/// `run --wait` piped, started before any worker: it warns that nothing
/// consumes the day's queues, says when a consumer appears, prints a line
/// per change of the day (never a total before the last page is known) and
/// ends with the day done (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_wait_piped_follows_a_day_from_no_worker_to_done() {
    use std::io::BufRead;
    use std::sync::Mutex;
    let cfg = SandboxConfig {
        seed: 11,
        per_day: 160,
        ..SandboxConfig::default()
    };
    let sandbox = alertflow::sandbox::spawn(cfg).await.unwrap();
    let env = db_env("runwaitpiped", &sandbox);
    let _sink = migrate(&env.config).await;
    let file = env.config_file("");
    let mut child = std::process::Command::new(common::bin("alertflow"))
        .args(["run", "2026-03-08", "--wait", "--timeout", "120"])
        .env("ALERTFLOW_CONFIG", &file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (stderr, stdout) = (child.stderr.take().unwrap(), child.stdout.take().unwrap());
    let mut child = common::Child(child);
    let err = Arc::new(Mutex::new(String::new()));
    let sink_err = err.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            sink_err.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let warning = format!("warning: nothing consumes {}.lark", env.ns());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !err.lock().unwrap().contains(&warning) {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning: {}",
            err.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let w = env.start_worker(env.registry());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run --wait did not end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stdout = out.join().unwrap();
    w.stop().await;
    let stderr = err.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{stderr}\n{stdout}");
    let back: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("a worker consumes ") && l.ends_with(" now; the run goes on"))
        .collect();
    for family in ["lark", "default", "db"] {
        let queue = format!("{}.{family}", env.ns());
        assert_eq!(
            back.iter().filter(|l| l.contains(&queue)).count(),
            1,
            "{queue} said consumed once: {stderr}"
        );
    }
    let day: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("2026-03-08  "))
        .collect();
    assert_eq!(
        day.first(),
        Some(&"waiting  no page fetched yet"),
        "{stderr}"
    );
    assert!(
        day.last().unwrap().starts_with("done  written 4/4 pages"),
        "{stderr}"
    );
    for l in &day {
        if l.starts_with("fetching") {
            assert!(l.contains("(more to come)") && !l.contains('/'), "{l}");
        }
    }
    let mut deduped = day.clone();
    deduped.dedup();
    assert_eq!(deduped, day, "a line only when something changed");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("2026-03-08  4 ") && l.ends_with("done")),
        "{stdout}"
    );
}
