//! Faults during a multi-day run through RabbitMQ into MariaDB: a worker
//! killed with SIGKILL mid-run, and MariaDB stopped for 20 s. Rows are never
//! lost or doubled and every run gets exactly one recommendation.
//!
//! This file is its own test binary (cargo runs binaries one at a time), so
//! stopping MariaDB here never disturbs the other suites.

mod common;

use std::time::{Duration, Instant};

use alertflow::cli::run::{DayPlan, publish_days, wait_days};
use alertflow::lark::card::AlertRow;
use alertflow::sandbox::{SandboxConfig, expected_range};
use alertflow::sink::starrocks::SqlSink;
use chrono::NaiveDate;
use common::{Child, TestEnv};

const CHAT: &str = "oc_sandbox_alerts";

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

/// Stops MariaDB; starting it again is guaranteed, even if the test fails.
struct MariaDbOutage;

impl MariaDbOutage {
    fn begin() -> MariaDbOutage {
        let ok = std::process::Command::new("mysqladmin")
            .args(["-uroot", "--protocol=tcp", "-h127.0.0.1", "shutdown"])
            .status()
            .expect("mysqladmin")
            .success();
        assert!(ok, "could not stop MariaDB");
        let t0 = Instant::now();
        while port_open(3306) && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(100));
        }
        MariaDbOutage
    }
}

impl Drop for MariaDbOutage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("start-stop-daemon")
            .args([
                "--start",
                "--oknodo",
                "--background",
                "--exec",
                "/usr/sbin/mariadbd",
            ])
            .status();
        let t0 = Instant::now();
        while !port_open(3306) && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn lark_toml(env: &TestEnv, base_url: &str) -> String {
    format!(
        "[lark]\nbase_url = {base_url:?}\napp_id = \"cli_sandbox\"\napp_secret = \"sandbox-secret\"\nchat_id = \"{CHAT}\"\n\
         [mysql]\ndatabase = {:?}\n[sink]\nbatch_interval = \"300ms\"\n\
         [tasks.insert]\nmax_retries = 20\n[tasks.recommend]\nmax_retries = 20\n",
        env.config.mysql.database
    )
}

async fn check_exact(sink: &SqlSink, dates: &[NaiveDate], expected: Vec<AlertRow>) {
    let mut rows = Vec::new();
    for d in dates {
        rows.extend(sink.alerts_for_date(&d.to_string()).await.unwrap());
    }
    rows.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    let mut want = expected;
    want.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    let lost = want
        .iter()
        .filter(|w| {
            rows.binary_search_by(|r| r.message_id.cmp(&w.message_id))
                .is_err()
        })
        .count();
    println!(
        "rows: {} expected, {} stored, {lost} lost",
        want.len(),
        rows.len()
    );
    assert_eq!(lost, 0, "rows lost");
    assert_eq!(
        rows, want,
        "rows exact (none doubled: the key is message_id)"
    );
}

fn env_with_sandbox(name: &str, base: String) -> TestEnv {
    TestEnv::with(name, move |c| {
        c.worker.queues = vec!["default".into(), "lark".into(), "db".into()];
        c.lark.base_url = base;
        c.lark.app_id = "cli_sandbox".into();
        c.lark.app_secret = alertflow::config::Secret::new("sandbox-secret");
        c.lark.chat_id = CHAT.into();
    })
}

#[tokio::test]
async fn worker_killed_mid_run_then_mariadb_down_for_20s_loses_and_doubles_nothing() {
    let cfg = SandboxConfig {
        seed: 99,
        per_day: 2000,
        ..SandboxConfig::default()
    };
    let sandbox = alertflow::sandbox::spawn(cfg.clone()).await.unwrap();
    let env = env_with_sandbox("faults", sandbox.base_url.clone());
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = env.config_file(&lark_toml(&env, &sandbox.base_url));

    // Part 1: SIGKILL a worker in the middle of a three-day run.
    let dates: Vec<NaiveDate> = ["2026-03-01", "2026-03-02", "2026-03-03"]
        .iter()
        .map(|d| d.parse().unwrap())
        .collect();
    let plans: Vec<DayPlan> = dates
        .iter()
        .map(|d| DayPlan {
            date: *d,
            until_now: false,
        })
        .collect();
    let mut a = Child::spawn(
        "alertflow-worker",
        &["--concurrency", "8", "--queues", "default,lark,db"],
        &file,
    );
    let _b = Child::spawn(
        "alertflow-worker",
        &["--concurrency", "8", "--queues", "default,lark,db"],
        &file,
    );
    let published = publish_days(&env.config, &plans).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(5)).expect("killed");
    let t0 = Instant::now();
    let (outcomes, finished) = wait_days(&env.config, &published, Duration::from_secs(180), true)
        .await
        .unwrap();
    assert!(
        finished && outcomes.iter().all(|o| o.status == "done"),
        "{outcomes:#?}"
    );
    println!("kill -9: run finished {:?} after the kill", t0.elapsed());
    for o in &outcomes {
        assert!(o.summary.recommend.is_some(), "one recommend per run");
    }
    check_exact(
        &sink,
        &dates,
        expected_range(&cfg, CHAT, dates[0], dates[2]).rows,
    )
    .await;

    // Part 2: MariaDB stopped for 20 s while two more days run.
    let dates2: Vec<NaiveDate> = ["2026-03-04", "2026-03-05"]
        .iter()
        .map(|d| d.parse().unwrap())
        .collect();
    let plans2: Vec<DayPlan> = dates2
        .iter()
        .map(|d| DayPlan {
            date: *d,
            until_now: false,
        })
        .collect();
    let outage = MariaDbOutage::begin();
    let published2 = publish_days(&env.config, &plans2).await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    drop(outage);
    let t1 = Instant::now();
    let (outcomes2, finished2) =
        wait_days(&env.config, &published2, Duration::from_secs(240), true)
            .await
            .unwrap();
    assert!(
        finished2 && outcomes2.iter().all(|o| o.status == "done"),
        "{outcomes2:#?}"
    );
    println!(
        "mariadb 20 s outage: run finished {:?} after it came back",
        t1.elapsed()
    );
    let sink = SqlSink::new(&env.config);
    check_exact(
        &sink,
        &dates2,
        expected_range(&cfg, CHAT, dates2[0], dates2[1]).rows,
    )
    .await;
    assert!(
        env.dead_letters().await.is_empty(),
        "nothing was dead-lettered"
    );
    sink.close().await;
}
