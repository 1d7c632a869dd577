//! The fault suite: Jepsen-style accounting of a multi-day backfill through
//! RabbitMQ, two worker processes and MariaDB while something breaks.
//!
//! Every row has an identity (its `message_id`), every run must end with
//! exactly one recommendation. After each scenario the suite counts lost
//! rows (expected, never stored), unexpected rows (stored, never expected),
//! duplicated rows (stored more than once) and the time to recover (from the
//! end of the fault to the last run finishing), prints a table, and asserts
//! lost = unexpected = duplicated = 0.
//!
//! Scenarios run one after another in one test (this file is its own test
//! binary and cargo runs binaries one at a time), so restarting RabbitMQ,
//! Redis or MariaDB never disturbs another suite. Every service touched is
//! restored by a guard, even when an assertion fails.
//!
//! Size: `ALERTFLOW_FAULT_DAYS` (default 3) days of `ALERTFLOW_FAULT_PER_DAY`
//! (default 1500) messages per scenario.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use alertflow::cli::run::{DayOutcome, DayPlan, publish_days, wait_days};
use alertflow::lark::card::AlertRow;
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

/// Redis shut down (after saving its data, as a persistent production
/// Redis would keep it); started again with the same data on drop.
/// (`dir` and `dbfilename` are protected configs in Redis 7: read, not set.)
struct RedisDown {
    dir: String,
    file: String,
}
impl RedisDown {
    fn begin() -> RedisDown {
        let get = |key: &str| {
            let out = std::process::Command::new("redis-cli")
                .args(["config", "get", key])
                .output()
                .expect("redis-cli");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .unwrap_or_default()
                .to_string()
        };
        let dir = get("dir");
        let file = get("dbfilename");
        assert!(
            !dir.is_empty() && !file.is_empty(),
            "redis dir and dbfilename"
        );
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
                &self.dir,
                "--dbfilename",
                &self.file,
            ],
        );
        wait_port(6379, true, Duration::from_secs(30));
        // Wait for the snapshot to be loaded before removing it.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            let out = std::process::Command::new("redis-cli")
                .args(["ping"])
                .output();
            if out
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
                .unwrap_or(false)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_file(std::path::Path::new(&self.dir).join(&self.file));
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
    recommends: usize,
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
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(config.mysql.host.clone())
        .tcp_port(config.mysql.port)
        .user(Some(config.mysql.user.clone()))
        .prefer_socket(false);
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

/// Run one scenario: a backfill with two workers while `fault` happens.
async fn scenario<F, Fut>(name: &'static str, seed: u64, fault: F) -> Accounting
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = (Ctx, String)>,
{
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
        c.worker.queues = vec!["default".into(), "lark".into(), "db".into()];
        c.lark.base_url = base;
        c.lark.app_id = "cli_sandbox".into();
        c.lark.app_secret = alertflow::config::Secret::new("sandbox-secret");
        c.lark.chat_id = CHAT.into();
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
    // The fault owns the context while the run goes on, then hands it back.
    let (ctx, note) = fault(ctx).await;
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
    assert!(
        finished,
        "{name}: the backfill did not finish: {outcomes:#?}"
    );
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
    let recommends = outcomes
        .iter()
        .filter(|o| o.summary.recommend.is_some())
        .count();
    let done = outcomes.iter().filter(|o| o.status == "done").count();
    if done != outcomes.len() {
        let dead = ctx.env.dead_letters().await;
        panic!("{name}: every day done: {outcomes:#?}\ndead letters: {dead:#?}");
    }
    Accounting {
        scenario: name,
        expected: expected.len(),
        stored: rows.len(),
        lost,
        unexpected,
        duplicated,
        runs: outcomes.len(),
        recommends,
        recover_s,
        note,
    }
}

/// Let the backfill get going before breaking something.
async fn running(ctx: &Ctx, secs: f64) {
    let _ = ctx;
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_suite_loses_nothing() {
    let mut table = Vec::new();

    table.push(
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

    table.push(
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

    table.push(
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

    table.push(
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

    table.push(
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

    table.push(
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

    table.push(
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

    println!(
        "\n{:<20} {:>8} {:>8} {:>5} {:>10} {:>10} {:>5} {:>10} {:>9}  note",
        "scenario",
        "expected",
        "stored",
        "lost",
        "unexpected",
        "duplicated",
        "runs",
        "recommends",
        "recover_s"
    );
    for a in &table {
        println!(
            "{:<20} {:>8} {:>8} {:>5} {:>10} {:>10} {:>5} {:>10} {:>9.1}  {}",
            a.scenario,
            a.expected,
            a.stored,
            a.lost,
            a.unexpected,
            a.duplicated,
            a.runs,
            a.recommends,
            a.recover_s,
            a.note
        );
    }
    for a in &table {
        assert_eq!(a.lost, 0, "{a:?}");
        assert_eq!(a.unexpected, 0, "{a:?}");
        assert_eq!(a.duplicated, 0, "{a:?}");
        assert_eq!(a.recommends, a.runs, "one recommend per run: {a:?}");
    }
}
