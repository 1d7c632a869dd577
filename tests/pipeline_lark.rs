//! The Lark side of the pipeline on the real queue: `fetch-day` against the
//! sandbox publishes the right pages, and `parse-batch` produces exactly the
//! sandbox's expected rows.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alertflow::lark::card::AlertRow;
use alertflow::queue::task::{Task, TaskContext, TaskError};
use alertflow::run_state::{RunState, RunSummary};
use alertflow::sandbox::{SandboxConfig, day_messages, expected_day};
use alertflow::tasks::insert::InsertArgs;
use chrono::NaiveDate;
use common::TestEnv;
use serde_json::json;

/// Rows handed on, by (date, page).
type Captured = Arc<Mutex<BTreeMap<(String, u32), Vec<AlertRow>>>>;

/// Stands in for the database writer: records what `parse-batch` hands on.
#[derive(Clone, Default)]
struct CaptureInsert {
    pages: Captured,
}

impl Task for CaptureInsert {
    const NAME: &'static str = "insert";
    type Args = InsertArgs;

    fn queue(&self) -> &'static str {
        "db"
    }

    async fn run(&self, _ctx: &TaskContext, a: InsertArgs) -> Result<(), TaskError> {
        self.pages.lock().unwrap().insert((a.date, a.page), a.rows);
        Ok(())
    }
}

fn lark_env(name: &str, sandbox: &alertflow::sandbox::SandboxHandle) -> TestEnv {
    let base = sandbox.base_url.clone();
    TestEnv::with(name, move |c| {
        common::use_sandbox(c, &base);
    })
}

async fn wait_run(
    env: &TestEnv,
    run_id: &str,
    capture: &CaptureInsert,
    date: &str,
    timeout: Duration,
) -> RunSummary {
    let pool = alertflow::queue::context::redis_pool(&env.config).unwrap();
    let runs = RunState::new(pool, env.ns(), Duration::from_secs(600));
    let deadline = Instant::now() + timeout;
    loop {
        // A poll that times out (a loaded machine) is polled again.
        let Ok(s) = runs.summary(run_id).await else {
            assert!(
                Instant::now() < deadline,
                "run state unreadable until the deadline"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if let Some(s) = &s {
            let captured = capture
                .pages
                .lock()
                .unwrap()
                .keys()
                .filter(|(d, _)| d == date)
                .count() as u64;
            if s.fetched_all()
                && Some(s.pages_parsed) == s.total_pages
                && Some(captured) == s.total_pages
            {
                return s.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not finish: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn fetch_day_pages_and_parse_batch_rows_match_the_sandbox() {
    let cfg = SandboxConfig {
        seed: 42,
        per_day: 2000,
        ..SandboxConfig::default()
    };
    let sandbox = alertflow::sandbox::spawn(cfg.clone()).await.unwrap();
    let env = lark_env("lark-e2e", &sandbox);
    // fetch-day records its run in the ledger of the test's database.
    alertflow::sink::starrocks::SqlSink::new(&env.config)
        .migrate()
        .await
        .expect("migrate the test database");
    let capture = CaptureInsert::default();
    let registry = env.registry().with(capture.clone());
    // The spring-forward day: a 23-hour window.
    let date = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
    let (_conn, publisher) = env.publisher().await;
    let fetch = env.envelope(&registry, "fetch-day", json!({"date": "2026-03-08"}));
    assert_eq!(fetch.queue, "lark");
    publisher.publish(&fetch).await.unwrap();
    let w = env.start_worker(registry);
    let summary = wait_run(
        &env,
        &fetch.id.to_string(),
        &capture,
        "2026-03-08",
        Duration::from_secs(60),
    )
    .await;

    let messages = day_messages(&cfg, "oc_sandbox_alerts", date);
    let expected = expected_day(&cfg, "oc_sandbox_alerts", date);
    assert_eq!(summary.messages as usize, messages.len());
    assert_eq!(
        summary.total_pages,
        Some(messages.len().div_ceil(50) as u64)
    );
    let pages = capture.pages.lock().unwrap().clone();
    let rows: Vec<AlertRow> = pages.into_values().flatten().collect();
    let expected_rows: Vec<AlertRow> = expected.rows.into_iter().map(AlertRow::from).collect();
    assert_eq!(rows.len(), expected_rows.len());
    assert_eq!(
        rows, expected_rows,
        "rows equal the sandbox's expected rows, in order"
    );
    let expected_skips: BTreeMap<String, u64> =
        expected.skips.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(summary.skips, expected_skips);
    assert_eq!(summary.rows as usize, rows.len());
    assert!(rows.iter().all(|r| r.alert_date == "2026-03-08"));
    w.stop().await;
    assert_eq!(sandbox.stats().list_messages.rate_limited, 0);
}

#[tokio::test]
async fn two_workers_fetching_two_days_stay_under_the_lark_quota() {
    let cfg = SandboxConfig {
        seed: 7,
        per_day: 2000,
        ..SandboxConfig::default()
    };
    let sandbox = alertflow::sandbox::spawn(cfg.clone()).await.unwrap();
    let env = lark_env("lark-quota", &sandbox);
    // fetch-day records its run in the ledger of the test's database.
    alertflow::sink::starrocks::SqlSink::new(&env.config)
        .migrate()
        .await
        .expect("migrate the test database");
    let capture = CaptureInsert::default();
    let registry = env.registry().with(capture.clone());
    let (_conn, publisher) = env.publisher().await;
    let days = ["2026-03-10", "2026-03-11"];
    let mut ids = Vec::new();
    for d in days {
        let e = env.envelope(&registry, "fetch-day", json!({"date": d}));
        publisher.publish(&e).await.unwrap();
        ids.push(e.id.to_string());
    }
    let w1 = env.start_worker(registry.clone());
    let w2 = env.start_worker(registry);
    let t0 = Instant::now();
    for (id, d) in ids.iter().zip(days) {
        wait_run(&env, id, &capture, d, Duration::from_secs(60)).await;
    }
    let elapsed = t0.elapsed();
    let stats = sandbox.stats();
    println!(
        "two days, {} list requests in {elapsed:?}: {:.1} pages/s, {} rejected",
        stats.list_messages.requests,
        stats.list_messages.requests as f64 / elapsed.as_secs_f64(),
        stats.list_messages.rate_limited
    );
    assert_eq!(
        stats.list_messages.rate_limited, 0,
        "the sandbox rejected requests: {stats:?}"
    );
    assert!(
        stats.list_messages.requests >= 80,
        "two days of 2000 messages = 80 pages"
    );
    assert!(
        stats.tenant_token.requests <= 2,
        "at most one token request per worker, shared by its tasks: {stats:?}"
    );
    w1.stop().await;
    w2.stop().await;
}
