//! The run ledger: nothing the pipeline produces depends on Redis keeping
//! its data. Each test loses only its own namespace's Redis keys (`<ns>:*`),
//! which is what a Redis restart without persistence, a failover to an
//! empty replica or an eviction does to a deployment, so these tests run in
//! parallel with the rest; the fault suite restarts the real Redis empty.

mod common;

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alertflow::config::{AppConfig, HumanDuration, LimitSpec};
use alertflow::recommendation::catalogue::Catalogue;
use alertflow::recommendation::{NoisyThresholds, Recommendation, compute};
use alertflow::sandbox::{SandboxConfig, SandboxHandle};
use alertflow::sink::starrocks::SqlSink;
use common::TestEnv;
use deadpool_redis::redis::AsyncCommands;
use serde_json::Value;

const CHAT: &str = "oc_sandbox_alerts";

fn ledger_env(name: &str, sandbox: &SandboxHandle, lark_per_s: u32) -> TestEnv {
    let base = sandbox.base_url.clone();
    TestEnv::with(name, move |c| {
        common::use_sandbox(c, &base);
        c.worker.concurrency = 8;
        c.sink.batch_interval = common::ms(200);
        // Slow enough that a day takes a few seconds: Redis can lose its
        // data while the days are under way.
        c.rate_limits.insert(
            "lark.api".into(),
            vec![LimitSpec {
                limit: lark_per_s,
                per: HumanDuration(Duration::from_secs(1)),
                burst: 1,
            }],
        );
    })
}

/// The config file the CLI children read: this test's namespace and
/// database.
fn cli_config(env: &TestEnv) -> std::path::PathBuf {
    env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n",
        env.config.mysql.database
    ))
}

/// What Redis losing its data does to this namespace: every key gone.
async fn lose_redis_state(config: &AppConfig) -> usize {
    let pool = alertflow::queue::context::redis_pool(config).unwrap();
    let mut c = pool.get().await.unwrap();
    let keys: Vec<String> = c.keys(format!("{}:*", config.namespace)).await.unwrap();
    if !keys.is_empty() {
        let _: () = c.del(&keys).await.unwrap();
    }
    keys.len()
}

fn sorted(mut r: Vec<Recommendation>) -> Vec<Recommendation> {
    r.sort_by(|a, b| a.alert_name.cmp(&b.alert_name));
    r
}

/// The date's stored recommendations equal a recomputation from its rows.
async fn assert_recommendations_match_rows(config: &AppConfig, sink: &SqlSink, date: &str) {
    let rows = sink.alerts_for_date(date).await.unwrap();
    assert!(!rows.is_empty(), "{date} has rows");
    let want = compute(
        date,
        &rows,
        &Catalogue::load(None).unwrap(),
        &NoisyThresholds {
            fired: config.recommend.noisy_fired,
            clusters: config.recommend.noisy_clusters,
        },
    );
    let got = sink.recommendations(date).await.unwrap();
    assert_eq!(
        sorted(got),
        sorted(want),
        "{date}: recommendations = recomputation"
    );
}

/// Spawn the CLI with stdout and stderr collected.
struct Cli {
    child: common::Child,
    err: Arc<Mutex<String>>,
    out: std::thread::JoinHandle<String>,
}

impl Cli {
    fn spawn(args: &[&str], config: &std::path::Path) -> Cli {
        let mut child = std::process::Command::new(common::bin("alertflow"))
            .args(args)
            .env("ALERTFLOW_CONFIG", config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (stderr, stdout) = (child.stderr.take().unwrap(), child.stdout.take().unwrap());
        let err = Arc::new(Mutex::new(String::new()));
        let e = err.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                e.lock().unwrap().push_str(&format!("{}\n", line.unwrap()));
            }
        });
        let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
        Cli {
            child: common::Child(child),
            err,
            out,
        }
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Wait for the exit: (code, stdout, stderr).
    async fn finish(mut self, limit: Duration) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the command did not end: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let out = self.out.join().unwrap();
        // Let the stderr reader drain.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let err = self.err.lock().unwrap().clone();
        (status.code(), out, err)
    }
}

/// Run a CLI command to its end: (code, stdout, stderr).
async fn cli(args: &[&str], config: &std::path::Path) -> (Option<i32>, String, String) {
    Cli::spawn(args, config)
        .finish(Duration::from_secs(60))
        .await
}

/// Redis loses every key of the deployment while a three-day backfill is
/// under way, with workers alone (no beat, no reconcile): every day still
/// gets all its rows and recommendations equal to a recomputation, and
/// `run --wait` says in one line per day what happened, follows the days
/// from the ledger and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_losing_its_data_mid_backfill_still_finishes_every_day() {
    let sandbox = alertflow::sandbox::spawn(SandboxConfig {
        seed: 21,
        per_day: 600,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let env = ledger_env("ledgerlost", &sandbox, 6);
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = cli_config(&env);
    let dates = ["2026-03-02", "2026-03-03", "2026-03-04"];
    let mut args = vec!["run"];
    args.extend(dates);
    args.extend(["--wait", "--timeout", "150"]);
    let wait = Cli::spawn(&args, &file);
    let w = env.start_worker(env.registry());
    // Wait until pages are being written, with days still to finish.
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let runs = sink
            .runs_since("2026-03-01".parse().unwrap())
            .await
            .unwrap();
        if runs.iter().any(|r| r.pages_written > 0) {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "no page written: {}",
            wait.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lost = lose_redis_state(&env.config).await;
    let unfinished = dates.len() - runs.iter().filter(|r| r.complete()).count();
    assert!(
        lost > 0 && unfinished > 0,
        "lost {lost} keys mid-run ({runs:?})"
    );
    let (code, stdout, stderr) = wait.finish(Duration::from_secs(170)).await;
    w.stop().await;
    assert_eq!(code, Some(0), "run --wait exits 0\n{stderr}\n{stdout}");
    // Shown with --nocapture: what an operator saw.
    println!("run --wait printed:\n{stderr}{stdout}");
    for d in dates {
        let said: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{d}: run ")) && l.contains("progress in Redis is gone")
            })
            .collect();
        assert_eq!(said.len(), 1, "{d}: said once\n{stderr}");
        assert!(
            said[0].contains("alertflow reconcile"),
            "what to run by hand: {}",
            said[0]
        );
        assert_recommendations_match_rows(&env.config, &sink, d).await;
    }
    // Every run is complete in the ledger and every day's rows are there.
    let ledger = sink
        .runs_since("2026-03-01".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(ledger.len(), dates.len(), "{ledger:?}");
    for l in &ledger {
        assert!(l.complete(), "{l:?}");
        let rows = sink.alerts_for_date(&l.run.date.to_string()).await.unwrap();
        assert_eq!(rows.len() as u64, l.rows_written, "{l:?}");
    }
    let expected = alertflow::sandbox::expected_range(
        &SandboxConfig {
            seed: 21,
            per_day: 600,
            ..SandboxConfig::default()
        },
        CHAT,
        "2026-03-02".parse().unwrap(),
        "2026-03-04".parse().unwrap(),
    );
    let stored: u64 = ledger.iter().map(|l| l.rows_written).sum();
    assert_eq!(stored as usize, expected.rows.len(), "no row lost");
    // `alertflow runs` tells the same story from the ledger.
    let (code, out, err) = cli(&["runs", "--since", "3650d", "--json"], &file).await;
    assert_eq!(code, Some(0), "{err}");
    let views: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(views.len(), 3, "{out}");
    assert!(views.iter().all(|v| v["status"] == "done"), "{out}");
    sink.close().await;
}

/// `reconcile` finds a day whose recommendations were lost and a run that
/// stopped with its Redis progress gone; `--dry-run` publishes nothing,
/// without it the day is recomputed and the run re-driven to completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconcile_recomputes_lost_recommendations_and_redrives_a_stalled_run() {
    let sandbox = alertflow::sandbox::spawn(SandboxConfig {
        seed: 22,
        per_day: 300,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let env = ledger_env("reconcile", &sandbox, 40);
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = cli_config(&env);
    let w = env.start_worker(env.registry());
    let (code, _, err) = cli(&["run", "2026-03-05", "--wait", "--timeout", "60"], &file).await;
    assert_eq!(code, Some(0), "{err}");
    // Nothing to do on a complete day.
    let (code, out, err) = cli(&["reconcile", "--since", "3650d", "--json"], &file).await;
    assert_eq!(code, Some(0), "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["plan"]["fresh"], 1, "{out}");
    assert_eq!(plan["published"].as_array().unwrap().len(), 0, "{out}");

    // The day's recommendations are lost (and what recorded them).
    let db = &env.config.mysql.database;
    common::sql(
        &env.config,
        &[
            &format!("DELETE FROM `{db}`.alert_recommendations WHERE report_date = '2026-03-05'"),
            &format!("DELETE FROM `{db}`.pipeline_recommends WHERE report_date = '2026-03-05'"),
        ],
    )
    .await;
    // A run of another day that stopped after one of its pages, an hour
    // ago, and whose Redis progress is gone.
    let stalled = "stalled-run-1";
    common::sql(
        &env.config,
        &[
            &format!(
                "INSERT INTO `{db}`.pipeline_runs VALUES ('{stalled}', '2026-03-06', '{CHAT}', \
                 '2026-03-06 08:00:00', '2026-03-07 07:59:59', UTC_TIMESTAMP() - INTERVAL 1 HOUR, 0, 0, \
                 UTC_TIMESTAMP() - INTERVAL 1 HOUR)"
            ),
            &format!(
                "INSERT INTO `{db}`.pipeline_pages VALUES ('{stalled}', 1, '2026-03-06', 0, '{{}}', \
                 UTC_TIMESTAMP() - INTERVAL 1 HOUR)"
            ),
        ],
    )
    .await;
    let (code, out, err) = cli(
        &["reconcile", "--since", "3650d", "--dry-run", "--json"],
        &file,
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let p = &plan["plan"];
    assert_eq!(p["recompute"][0]["date"], "2026-03-05", "{out}");
    assert_eq!(p["recompute"][0]["why"], "no-recommendation", "{out}");
    assert_eq!(p["redrive"][0]["run_id"], stalled, "{out}");
    assert_eq!(plan["published"].as_array().unwrap().len(), 0, "{out}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        sink.recommendations("2026-03-05").await.unwrap().is_empty(),
        "a dry run publishes nothing"
    );
    // The text form names both.
    let (code, out, _) = cli(&["reconcile", "--since", "3650d", "--dry-run"], &file).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("recompute") && out.contains("no recommendation"),
        "{out}"
    );
    assert!(out.contains("re-drive") && out.contains(stalled), "{out}");

    let (code, out, err) = cli(&["reconcile", "--since", "3650d", "--json"], &file).await;
    assert_eq!(code, Some(0), "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["published"].as_array().unwrap().len(), 2, "{out}");
    // The day is recomputed, the stalled run re-driven to the end.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = sink.run_ledgers(&[stalled.to_string()]).await.unwrap();
        let day5 = sink.recommendations("2026-03-05").await.unwrap();
        let day6 = sink.recommendations("2026-03-06").await.unwrap();
        if l.first().is_some_and(|l| l.complete()) && !day5.is_empty() && !day6.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "not reconciled: {l:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    w.stop().await;
    assert_recommendations_match_rows(&env.config, &sink, "2026-03-05").await;
    assert_recommendations_match_rows(&env.config, &sink, "2026-03-06").await;
    // The re-drive paged over the window the ledger kept, under its run id.
    let l = &sink.run_ledgers(&[stalled.to_string()]).await.unwrap()[0];
    assert_eq!(l.run.window_end.to_string(), "2026-03-07 07:59:59");
    assert_eq!(
        l.rows_written as usize,
        sink.alerts_for_date("2026-03-06").await.unwrap().len()
    );
    // And the next reconcile has nothing to do.
    let (_, out, _) = cli(&["reconcile", "--since", "3650d", "--json"], &file).await;
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["plan"]["fresh"], 2, "{out}");
    assert_eq!(plan["published"].as_array().unwrap().len(), 0, "{out}");
    sink.close().await;
}

/// `enqueue --wait` and `status` when Redis lost a task's state: one line
/// saying so, then the wait goes on until the state comes back (a generic
/// task) and `status` of a run answers from the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_wait_and_status_say_when_redis_lost_the_state() {
    let sandbox = alertflow::sandbox::spawn(SandboxConfig {
        seed: 23,
        per_day: 100,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let env = ledger_env("ledgerwait", &sandbox, 40);
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = cli_config(&env);
    let w = env.start_worker(env.registry());
    let wait = Cli::spawn(
        &[
            "enqueue",
            "sleep",
            "--args",
            r#"{"ms":2500}"#,
            "--wait",
            "--timeout",
            "60",
        ],
        &file,
    );
    // Once the task runs, Redis loses its data.
    let deadline = Instant::now() + Duration::from_secs(20);
    let pool = alertflow::queue::context::redis_pool(&env.config).unwrap();
    loop {
        let mut c = pool.get().await.unwrap();
        let keys: Vec<String> = c.keys(format!("{}:task:*", env.ns())).await.unwrap();
        let mut started = false;
        // Task records (not their `:history` hashes).
        for k in keys.iter().filter(|k| !k.ends_with(":history")) {
            let v: Option<String> = c.get(k).await.unwrap();
            started |= v.is_some_and(|v| v.contains("\"started\""));
        }
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "no task state recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(lose_redis_state(&env.config).await > 0);
    let (code, out, err) = wait.finish(Duration::from_secs(60)).await;
    assert_eq!(code, Some(0), "the task finished and said so\n{err}\n{out}");
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("state in Redis is gone"))
        .collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(out.contains("succeeded"), "{out}");

    // A run whose Redis state is gone: `status RUN` answers from the ledger.
    let (code, out, err) = cli(&["run", "2026-03-09", "--wait", "--timeout", "60"], &file).await;
    assert_eq!(code, Some(0), "{err}");
    let run_id = out.split_whitespace().nth(2).unwrap().to_string();
    lose_redis_state(&env.config).await;
    let (code, out, err) = cli(&["status", &run_id], &file).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("from the database run ledger"), "{out}");
    assert!(out.contains("2026-03-09"), "{out}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let (code, _, err) = cli(&["status", &unknown], &file).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("no run {unknown} in the database run ledger")),
        "{err}"
    );
    w.stop().await;
    sink.close().await;
}
