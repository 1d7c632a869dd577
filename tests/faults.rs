//! The fault suite: Jepsen-style accounting of a multi-day backfill through
//! RabbitMQ, two worker processes and MariaDB while something breaks.
//!
//! Every row has an identity (its `message_id`), every run must end with a
//! recommendation computed from every row of its day. After each scenario
//! the suite counts lost rows (expected, never stored), unexpected rows
//! (stored, never expected), duplicated rows (stored more than once), the
//! days recommended (done, and the ledger records a computation that read
//! every stored row of the day), the days whose stored recommendations equal
//! those recomputed from the stored rows, the days `wait_days` followed from
//! the database ledger because Redis lost their run state, and the time to
//! recover (from the end of the fault to the last run finishing); it prints
//! a table, and asserts lost = unexpected = duplicated = 0 and every day
//! recommended, with recommendations that match its rows.
//!
//! Scenarios run one after another in one test (this file is its own test
//! binary and cargo runs binaries one at a time), so restarting RabbitMQ,
//! Redis or MariaDB never disturbs another suite. Every service touched is
//! restored by a guard, even when an assertion fails.
//!
//! Size: `ALERTFLOW_FAULT_DAYS` (default 3) days of `ALERTFLOW_FAULT_PER_DAY`
//! (default 1500) messages per scenario. `ALERTFLOW_FAULT_ONLY` (scenario
//! names, comma-separated) runs only those scenarios.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use alertflow::cli::run::{DayOutcome, DayPlan, PublishedRun, Source, publish_days, wait_days};
use alertflow::lark::card::AlertRow;
use alertflow::recommendation::catalogue::Catalogue;
use alertflow::recommendation::{NoisyThresholds, Recommendation, compute};
use alertflow::sandbox::{Endpoint, Fault, SandboxConfig, SandboxHandle, expected_range};
use alertflow::sink::starrocks::SqlSink;
use chrono::NaiveDate;
use common::{Child, TestEnv};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use mysql_async::prelude::Queryable;

const CHAT: &str = "oc_sandbox_alerts";

fn env_num(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sh(cmd: &str, args: &[&str]) -> bool {
    std::process::Command::new(cmd)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

fn wait_port(port: u16, open: bool, limit: Duration) {
    let t0 = Instant::now();
    while port_open(port) != open && t0.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// RabbitMQ's application stopped; started again on drop.
struct RabbitDown;
impl RabbitDown {
    fn begin() -> RabbitDown {
        assert!(sh("rabbitmqctl", &["stop_app"]), "rabbitmqctl stop_app");
        RabbitDown
    }
}
impl Drop for RabbitDown {
    fn drop(&mut self) {
        sh("rabbitmqctl", &["start_app"]);
        sh("rabbitmqctl", &["await_startup", "--timeout", "60"]);
        wait_port(5672, true, Duration::from_secs(60));
    }
}

/// `redis-cli` with `args`: its stdout, trimmed.
fn redis_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A config value of the running Redis (`dir`, `dbfilename`, ...).
fn redis_config(key: &str) -> String {
    redis_cli(&["config", "get", key])
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// Start Redis as the machine runs it (no persistence), with the snapshot
/// file name it had (loaded if present), and wait until it answers PING
/// (a snapshot is loaded by then).
fn start_redis(dir: &str, file: &str) {
    sh(
        "redis-server",
        &[
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir,
            "--dbfilename",
            file,
        ],
    );
    wait_port(6379, true, Duration::from_secs(30));
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if redis_cli(&["ping"]).contains("PONG") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Redis's `dir` and `dbfilename` (protected configs in Redis 7: read, not set).
fn redis_files() -> (String, String) {
    let dir = redis_config("dir");
    let file = redis_config("dbfilename");
    assert!(
        !dir.is_empty() && !file.is_empty(),
        "redis dir and dbfilename"
    );
    (dir, file)
}

/// Redis shut down (after saving its data, as a persistent production
/// Redis would keep it); started again with the same data on drop.
struct RedisDown {
    dir: String,
    file: String,
}
impl RedisDown {
    fn begin() -> RedisDown {
        let (dir, file) = redis_files();
        assert!(
            sh("redis-cli", &["shutdown", "save"]),
            "redis shutdown save"
        );
        wait_port(6379, false, Duration::from_secs(20));
        RedisDown { dir, file }
    }
}
impl Drop for RedisDown {
    fn drop(&mut self) {
        start_redis(&self.dir, &self.file);
        // The snapshot is loaded: remove it.
        let _ = std::fs::remove_file(std::path::Path::new(&self.dir).join(&self.file));
    }
}

/// A key set before Redis loses its data, to show that it did.
const LOST_MARKER: &str = "alertflow-fault-suite:redis-lost-marker";

/// Redis shut down without saving, as a Redis without persistence dies;
/// started again EMPTY on drop (same flags as the machine runs it, no
/// snapshot loaded), as such a Redis comes back from a restart: every key
/// of every run is gone.
struct RedisLost {
    dir: String,
    file: String,
}
impl RedisLost {
    fn begin() -> RedisLost {
        let (dir, file) = redis_files();
        assert_eq!(redis_cli(&["set", LOST_MARKER, "1"]), "OK", "set marker");
        assert!(
            sh("redis-cli", &["shutdown", "nosave"]),
            "redis shutdown nosave"
        );
        wait_port(6379, false, Duration::from_secs(20));
        RedisLost { dir, file }
    }
}
impl Drop for RedisLost {
    fn drop(&mut self) {
        // No snapshot may be loaded: a dump file left by anything else is
        // moved aside while Redis starts, and put back once it runs.
        let dump = std::path::Path::new(&self.dir).join(&self.file);
        let aside =
            std::path::Path::new(&self.dir).join(format!("{}.fault-suite-aside", self.file));
        let moved = std::fs::rename(&dump, &aside).is_ok();
        start_redis(&self.dir, &self.file);
        if moved {
            let _ = std::fs::rename(&aside, &dump);
        }
    }
}

/// MariaDB stopped; started again on drop.
struct MariaDbDown;
impl MariaDbDown {
    fn begin() -> MariaDbDown {
        assert!(
            sh(
                "mysqladmin",
                &["-uroot", "--protocol=tcp", "-h127.0.0.1", "shutdown"]
            ),
            "mysqladmin shutdown"
        );
        wait_port(3306, false, Duration::from_secs(30));
        MariaDbDown
    }
}
impl Drop for MariaDbDown {
    fn drop(&mut self) {
        sh(
            "start-stop-daemon",
            &[
                "--start",
                "--oknodo",
                "--background",
                "--exec",
                "/usr/sbin/mariadbd",
            ],
        );
        wait_port(3306, true, Duration::from_secs(60));
    }
}

/// What a scenario can reach while the backfill runs.
/// Fields drop in order: the workers are killed before the namespace is
/// cleaned up, so no late heartbeat re-creates its Redis keys.
struct Ctx {
    workers: Vec<Child>,
    env: TestEnv,
    sandbox: SandboxHandle,
    file: PathBuf,
    /// The days published (set before the fault begins).
    runs: Vec<PublishedRun>,
}

impl Ctx {
    fn spawn_worker(&mut self) {
        let w = Child::spawn(
            "alertflow-worker",
            &["--concurrency", "8", "--queues", "default,lark,db"],
            &self.file,
        );
        self.workers.push(w);
    }

    /// The last lines of every worker log of the scenario (for a failure).
    fn worker_logs(&self) -> String {
        let mut out = String::new();
        let Ok(dir) = std::fs::read_dir(self.env.dir.path()) else {
            return out;
        };
        let mut logs: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for p in logs {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last 40 lines)\n", p.display()));
            for l in &lines[lines.len().saturating_sub(40)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

#[derive(Debug)]
struct Accounting {
    scenario: &'static str,
    expected: usize,
    stored: usize,
    lost: usize,
    unexpected: usize,
    duplicated: usize,
    runs: usize,
    /// Days recommended, see [`recommended_days`].
    recommends: usize,
    /// Days whose stored recommendations equal those recomputed from the
    /// stored rows.
    rec_ok: usize,
    /// Days `wait_days` followed from the database ledger (Redis lost their
    /// run state).
    ledger_days: usize,
    /// From the end of the fault to every day done (the time to converge).
    recover_s: f64,
    note: String,
}

async fn stored_rows(
    config: &alertflow::config::AppConfig,
    dates: &[NaiveDate],
) -> (Vec<AlertRow>, usize) {
    let sink = SqlSink::new(config);
    let mut rows = Vec::new();
    for d in dates {
        rows.extend(
            sink.alerts_for_date(&d.to_string())
                .await
                .expect("read rows"),
        );
    }
    sink.close().await;
    let opts = alertflow::sink::starrocks::server_opts(config);
    let mut c = mysql_async::Conn::new(opts).await.unwrap();
    let dup: Option<i64> = c
        .query_first(format!(
            "SELECT COUNT(*) - COUNT(DISTINCT message_id) FROM `{}`.lark_alerts",
            config.mysql.database
        ))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    (rows, dup.unwrap_or(0) as usize)
}

/// Per date: whether the stored recommendations equal those computed from
/// the stored rows (default catalogue, the config's noisy thresholds, as the
/// workers of the suite run `recommend`); the differences, for a failure.
async fn recommendations_match(
    config: &alertflow::config::AppConfig,
    dates: &[NaiveDate],
) -> Vec<(NaiveDate, Result<usize, String>)> {
    let sink = SqlSink::new(config);
    let catalogue = Catalogue::load(None).expect("the built-in catalogue");
    let noisy = NoisyThresholds {
        fired: config.recommend.noisy_fired,
        clusters: config.recommend.noisy_clusters,
    };
    let by_name = |v: &mut Vec<Recommendation>| v.sort_by(|a, b| a.alert_name.cmp(&b.alert_name));
    let mut out = Vec::new();
    for d in dates {
        let date = d.to_string();
        let rows = sink.alerts_for_date(&date).await.expect("read rows");
        let mut stored = sink
            .recommendations(&date)
            .await
            .expect("read recommendations");
        let mut want = compute(&date, &rows, &catalogue, &noisy);
        by_name(&mut stored);
        by_name(&mut want);
        let verdict = if stored == want {
            Ok(stored.len())
        } else {
            let differ: Vec<String> = want
                .iter()
                .map(Some)
                .chain(std::iter::repeat(None))
                .zip(stored.iter().map(Some).chain(std::iter::repeat(None)))
                .take(want.len().max(stored.len()))
                .filter(|(w, s)| w != s)
                .take(3)
                .map(|(w, s)| format!("want {w:?}\n  stored {s:?}"))
                .collect();
            Err(format!(
                "{} rows: {} recommendations computed, {} stored; first differences:\n{}",
                rows.len(),
                want.len(),
                stored.len(),
                differ.join("\n")
            ))
        };
        out.push((*d, verdict));
    }
    sink.close().await;
    out
}

/// Days recommended: done, and the ledger records a `recommend` of the
/// date that read every row stored for it (rows only grow during a run, so
/// that computation came after the last row was written).
async fn recommended_days(
    config: &alertflow::config::AppConfig,
    outcomes: &[DayOutcome],
    rows: &[AlertRow],
    first: NaiveDate,
) -> (usize, BTreeMap<NaiveDate, usize>) {
    let sink = SqlSink::new(config);
    let recs = sink
        .recommends_since(first)
        .await
        .expect("read pipeline_recommends");
    sink.close().await;
    let mut per_date: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    for r in &recs {
        *per_date.entry(r.date).or_default() += 1;
    }
    let recommended = outcomes
        .iter()
        .filter(|o| o.status == "done")
        .filter(|o| {
            let stored = rows.iter().filter(|r| r.alert_date == o.date).count() as u64;
            recs.iter()
                .any(|r| r.date.to_string() == o.date && r.rows_read == stored)
        })
        .count();
    (recommended, per_date)
}

/// Whether `ALERTFLOW_FAULT_ONLY` (if set) names the scenario.
fn selected(name: &str) -> bool {
    match std::env::var("ALERTFLOW_FAULT_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|s| s.trim() == name),
        _ => true,
    }
}

/// Run one scenario: a backfill with two workers while `fault` happens
/// (`None`: not selected by `ALERTFLOW_FAULT_ONLY`).
async fn scenario<F, Fut>(name: &'static str, seed: u64, fault: F) -> Option<Accounting>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = (Ctx, String)>,
{
    if !selected(name) {
        return None;
    }
    let days = env_num("ALERTFLOW_FAULT_DAYS", 3);
    let per_day = env_num("ALERTFLOW_FAULT_PER_DAY", 1500);
    let sandbox_cfg = SandboxConfig {
        seed,
        per_day,
        ..SandboxConfig::default()
    };
    let sandbox = alertflow::sandbox::spawn(sandbox_cfg.clone())
        .await
        .unwrap();
    let base = sandbox.base_url.clone();
    let env = TestEnv::with(name, move |c| {
        common::use_sandbox(c, &base);
        // The envelopes this process publishes carry the same retry budget
        // as the workers' config file below.
        for task in ["fetch-day", "parse-batch", "insert", "recommend"] {
            c.tasks.insert(
                task.into(),
                alertflow::config::TaskOverride {
                    max_retries: Some(30),
                    ..Default::default()
                },
            );
        }
    });
    SqlSink::new(&env.config).migrate().await.unwrap();
    let extra = format!(
        "[lark]\nbase_url = {:?}\napp_id = \"cli_sandbox\"\napp_secret = \"sandbox-secret\"\nchat_id = \"{CHAT}\"\n\
         [mysql]\ndatabase = {:?}\n[sink]\nbatch_interval = \"300ms\"\n\
         [tasks.insert]\nmax_retries = 30\n[tasks.recommend]\nmax_retries = 30\n\
         [tasks.fetch-day]\nmax_retries = 30\n[tasks.parse-batch]\nmax_retries = 30\n",
        sandbox.base_url, env.config.mysql.database
    );
    let file = env.config_file(&extra);
    let mut ctx = Ctx {
        env,
        sandbox,
        file,
        workers: Vec::new(),
        runs: Vec::new(),
    };
    ctx.spawn_worker();
    ctx.spawn_worker();
    let dates: Vec<NaiveDate> = (1..=days)
        .map(|k| NaiveDate::from_ymd_opt(2026, 2, k).unwrap())
        .collect();
    let plans: Vec<DayPlan> = dates
        .iter()
        .map(|d| DayPlan {
            date: *d,
            until_now: false,
        })
        .collect();
    let published = publish_days(&ctx.env.config, &plans)
        .await
        .expect("publish the backfill");
    ctx.runs = published.clone();
    // The fault owns the context while the run goes on, then hands it back.
    let (ctx, mut note) = fault(ctx).await;
    let fault_end = Instant::now();
    let (outcomes, finished): (Vec<DayOutcome>, bool) = wait_days(
        &ctx.env.config,
        &published,
        Some(Duration::from_secs(300)),
        true,
    )
    .await
    .expect("follow the runs");
    let recover_s = fault_end.elapsed().as_secs_f64();
    if !finished {
        let dead = ctx.env.dead_letters().await;
        panic!(
            "{name}: the backfill did not finish: {outcomes:#?}\ndead letters: {dead:#?}\n{}",
            ctx.worker_logs()
        );
    }
    let (rows, duplicated) = stored_rows(&ctx.env.config, &dates).await;
    let expected: Vec<AlertRow> =
        expected_range(&sandbox_cfg, CHAT, dates[0], *dates.last().unwrap())
            .rows
            .into_iter()
            .map(AlertRow::from)
            .collect();
    let want: BTreeMap<&str, &AlertRow> = expected
        .iter()
        .map(|r| (r.message_id.as_str(), r))
        .collect();
    let got: BTreeMap<&str, &AlertRow> = rows.iter().map(|r| (r.message_id.as_str(), r)).collect();
    let lost = want.keys().filter(|k| !got.contains_key(*k)).count();
    let unexpected = got.keys().filter(|k| !want.contains_key(*k)).count()
        + got
            .iter()
            .filter(|(k, r)| want.get(*k).is_some_and(|w| w != *r))
            .count();
    let done = outcomes.iter().filter(|o| o.status == "done").count();
    if done != outcomes.len() {
        let dead = ctx.env.dead_letters().await;
        panic!(
            "{name}: every day done: {outcomes:#?}\ndead letters: {dead:#?}\n{}",
            ctx.worker_logs()
        );
    }
    let ledger_days = outcomes
        .iter()
        .filter(|o| o.source == Source::Ledger)
        .count();
    let (recommends, computations) =
        recommended_days(&ctx.env.config, &outcomes, &rows, dates[0]).await;
    let checks = recommendations_match(&ctx.env.config, &dates).await;
    let rec_ok = checks.iter().filter(|(_, v)| v.is_ok()).count();
    for (d, v) in &checks {
        if let Err(e) = v {
            eprintln!("{name}: {d}: stored recommendations differ from the rows': {e}");
        }
    }
    note.push_str(&format!(
        "; recommend computations per day {:?}",
        computations.values().collect::<Vec<_>>()
    ));
    Some(Accounting {
        scenario: name,
        expected: expected.len(),
        stored: rows.len(),
        lost,
        unexpected,
        duplicated,
        runs: outcomes.len(),
        recommends,
        rec_ok,
        ledger_days,
        recover_s,
        note,
    })
}

/// Let the backfill get going before breaking something.
async fn running(ctx: &Ctx, secs: f64) {
    let _ = ctx;
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_suite_loses_nothing() {
    let mut table = Vec::new();

    table.extend(
        scenario("kill9", 1, |mut ctx| async move {
            running(&ctx, 0.8).await;
            let mut kills = 0;
            for _ in 0..4 {
                let mut victim = ctx.workers.remove(0);
                victim.signal("KILL");
                victim.wait_exit(Duration::from_secs(5));
                kills += 1;
                ctx.spawn_worker();
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            let note = format!("{kills} workers killed with SIGKILL, 1.5 s apart");
            (ctx, note)
        })
        .await,
    );

    table.extend(
        scenario("rabbitmq-restart", 2, |ctx| async move {
            running(&ctx, 0.8).await;
            {
                let _down = tokio::task::spawn_blocking(RabbitDown::begin)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_secs(3)).await;
                tokio::task::spawn_blocking(move || drop(_down))
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let closed = sh("rabbitmqctl", &["close_all_connections", "fault suite"]);
            let note = format!("stop_app 3 s, start_app, then close_all_connections ({closed})");
            (ctx, note)
        })
        .await,
    );

    table.extend(
        scenario("redis-restart", 3, |ctx| async move {
            running(&ctx, 0.8).await;
            let down = tokio::task::spawn_blocking(RedisDown::begin).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            tokio::task::spawn_blocking(move || drop(down))
                .await
                .unwrap();
            (ctx, "redis shut down (state saved) for 3 s".to_string())
        })
        .await,
    );

    table.extend(
        scenario("redis-data-lost", 8, |ctx| async move {
            // Mid-run: once the ledger shows pages written, before every
            // run has all of its pages.
            let ids: Vec<String> = ctx.runs.iter().map(|r| r.run_id.clone()).collect();
            let sink = SqlSink::new(&ctx.env.config);
            let t0 = Instant::now();
            let (written, complete) = loop {
                let written: u64 = sink
                    .pages_written(&ids)
                    .await
                    .expect("read pipeline_pages")
                    .values()
                    .sum();
                let complete = sink.complete_runs(&ids).await.expect("read the ledger");
                if written >= 10 || !complete.is_empty() || t0.elapsed() > Duration::from_secs(60) {
                    break (written, complete.len());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert!(
                written > 0 && complete < ids.len(),
                "redis-data-lost: the loss must come mid-run: {written} pages written, \
                 {complete} of {} runs complete",
                ids.len()
            );
            let lost = tokio::task::spawn_blocking(RedisLost::begin).await.unwrap();
            let at_loss: u64 = sink
                .pages_written(&ids)
                .await
                .expect("read pipeline_pages")
                .values()
                .sum();
            let complete_at_loss = sink
                .complete_runs(&ids)
                .await
                .expect("read the ledger")
                .len();
            sink.close().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            tokio::task::spawn_blocking(move || drop(lost))
                .await
                .unwrap();
            let marker = redis_cli(&["exists", LOST_MARKER]);
            redis_cli(&["del", LOST_MARKER]);
            assert_eq!(
                marker, "0",
                "Redis came back empty (the marker key is gone)"
            );
            let note = format!(
                "redis shutdown nosave, down 2 s, restarted empty (marker key gone); \
                 {written} pages written when triggered, {at_loss} at the loss, \
                 {complete_at_loss}/{} runs complete then",
                ids.len()
            );
            (ctx, note)
        })
        .await,
    );

    table.extend(
        scenario("mariadb-20s", 4, |ctx| async move {
            running(&ctx, 0.5).await;
            let down = tokio::task::spawn_blocking(MariaDbDown::begin)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(20)).await;
            tokio::task::spawn_blocking(move || drop(down))
                .await
                .unwrap();
            (ctx, "mariadb stopped for 20 s".to_string())
        })
        .await,
    );

    table.extend(
        scenario("lark-429-5xx-token", 5, |ctx| async move {
            for round in 0..4 {
                ctx.sandbox
                    .fail_next(Endpoint::ListMessages, 6, Fault::RateLimit429);
                tokio::time::sleep(Duration::from_millis(300)).await;
                ctx.sandbox
                    .fail_next(Endpoint::ListMessages, 6, Fault::Http500);
                tokio::time::sleep(Duration::from_millis(300)).await;
                if round % 2 == 1 {
                    ctx.sandbox.revoke_tokens();
                }
            }
            let s = ctx.sandbox.stats();
            let note = format!(
                "bursts of 429 and 500, tokens revoked twice ({} list requests, {} rejected)",
                s.list_messages.requests, s.list_messages.rate_limited
            );
            (ctx, note)
        })
        .await,
    );

    table.extend(
        scenario("poison-1000", 6, |mut ctx| async move {
            let pids: Vec<u32> = ctx.workers.iter().map(|w| w.0.id()).collect();
            let (_conn, publisher) = ctx.env.publisher().await;
            let ns = ctx.env.ns().to_string();
            let mut sent = 0;
            for i in 0..1000 {
                let (rk, body): (&str, Vec<u8>) = match i % 4 {
                    0 => ("default", b"{not json".to_vec()),
                    1 => (
                        "lark",
                        serde_json::to_vec(&alertflow::queue::message::Envelope::new(
                            "no-such-task",
                            serde_json::json!({}),
                        ))
                        .unwrap(),
                    ),
                    2 => {
                        let mut e = alertflow::queue::message::Envelope::new(
                            "fetch-day",
                            serde_json::json!({"date": "not-a-date"}),
                        );
                        e.queue = "lark".into();
                        ("lark", serde_json::to_vec(&e).unwrap())
                    }
                    _ => ("db", vec![b'x'; 256 * 1024]),
                };
                publisher
                    .channel()
                    .basic_publish(
                        ns.as_str().into(),
                        rk.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &body,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                sent += 1;
            }
            let dead = ctx.env.wait_dead(1000, Duration::from_secs(60)).await;
            let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
            for d in &dead {
                *reasons.entry(d.reason.to_string()).or_default() += 1;
            }
            assert_eq!(
                dead.len(),
                1000,
                "every poison message dead-lettered: {reasons:?}"
            );
            assert_eq!(reasons.get("undecodable"), Some(&500), "{reasons:?}");
            assert_eq!(reasons.get("unknown-task"), Some(&250), "{reasons:?}");
            assert_eq!(reasons.get("fatal"), Some(&250), "{reasons:?}");
            for (w, pid) in ctx.workers.iter_mut().zip(&pids) {
                assert!(
                    w.0.try_wait().unwrap().is_none(),
                    "worker {pid} still running, never restarted"
                );
            }
            let note = format!("{sent} poison messages: {reasons:?}, no worker restart");
            (ctx, note)
        })
        .await,
    );

    table.extend(
        scenario("sigterm-all", 7, |mut ctx| async move {
            running(&ctx, 1.0).await;
            for w in &ctx.workers {
                w.signal("TERM");
            }
            let mut codes = Vec::new();
            for mut w in ctx.workers.drain(..) {
                codes.push(w.wait_exit(Duration::from_secs(30)).map(|s| s.code()));
            }
            assert!(
                codes.iter().all(|c| *c == Some(Some(0))),
                "clean exits: {codes:?}"
            );
            ctx.spawn_worker();
            ctx.spawn_worker();
            (
                ctx,
                "SIGTERM to both workers mid-run (exit 0), then two new workers".to_string(),
            )
        })
        .await,
    );

    assert!(
        !table.is_empty(),
        "ALERTFLOW_FAULT_ONLY names no scenario of the suite"
    );
    println!(
        "\n{:<20} {:>8} {:>8} {:>5} {:>10} {:>10} {:>5} {:>10} {:>6} {:>6} {:>9}  note",
        "scenario",
        "expected",
        "stored",
        "lost",
        "unexpected",
        "duplicated",
        "runs",
        "recommends",
        "rec_ok",
        "ledger",
        "recover_s"
    );
    for a in &table {
        println!(
            "{:<20} {:>8} {:>8} {:>5} {:>10} {:>10} {:>5} {:>10} {:>6} {:>6} {:>9.1}  {}",
            a.scenario,
            a.expected,
            a.stored,
            a.lost,
            a.unexpected,
            a.duplicated,
            a.runs,
            a.recommends,
            format!("{}/{}", a.rec_ok, a.runs),
            a.ledger_days,
            a.recover_s,
            a.note
        );
    }
    for a in &table {
        assert_eq!(a.lost, 0, "{a:?}");
        assert_eq!(a.unexpected, 0, "{a:?}");
        assert_eq!(a.duplicated, 0, "{a:?}");
        assert_eq!(
            a.recommends, a.runs,
            "every run recommended from all of its day's rows: {a:?}"
        );
        assert_eq!(
            a.rec_ok, a.runs,
            "every day's stored recommendations match its rows: {a:?}"
        );
    }
}
