//! Issue 17.2/17.5: Redis master + replica + three Sentinels on ports of
//! their own, started by the test; workers reach Redis through the
//! Sentinels (`redis.sentinels`, `redis.master_name`). The master is killed
//! -9 mid-way through a backlog whose tasks record themselves in MariaDB:
//! the Sentinels promote the replica, every worker follows, every task is
//! recorded, nothing is dead-lettered, and task states are written to the
//! new master. Every process the test started is killed at the end.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alertflow::config::SecretUrl;
use alertflow::queue::state::TaskStatus;
use alertflow::queue::task::{Task, TaskContext, TaskError};
use common::{Group, TestEnv, free_port};
use mysql_async::prelude::Queryable;
use serde_json::json;

fn redis(dir: &std::path::Path, args: &[String]) -> Group {
    let log = std::fs::File::create(dir.join(format!("{}.log", args.join("_").replace('/', "_"))))
        .unwrap();
    Group(
        Command::new("redis-server")
            .args(args)
            .current_dir(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    )
}

async fn ping(port: u16) -> bool {
    let Ok(c) = deadpool_redis::redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    match c.get_multiplexed_async_connection().await {
        Ok(mut c) => deadpool_redis::redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// Records its id in MariaDB (`<db>.done`), the truth the test counts.
struct Recorded {
    opts: mysql_async::Opts,
    db: String,
}

#[derive(serde::Deserialize)]
struct RecordedArgs {
    ms: u64,
}

impl Task for Recorded {
    const NAME: &'static str = "recorded";
    type Args = RecordedArgs;
    async fn run(&self, ctx: &TaskContext, a: RecordedArgs) -> Result<(), TaskError> {
        tokio::time::sleep(Duration::from_millis(a.ms)).await;
        let mut c = mysql_async::Conn::new(self.opts.clone())
            .await
            .map_err(|e| TaskError::retry(e.to_string()))?;
        c.query_drop(format!(
            "INSERT IGNORE INTO `{}`.done (id) VALUES ('{}')",
            self.db,
            ctx.id()
        ))
        .await
        .map_err(|e| TaskError::retry(e.to_string()))?;
        let _ = c.disconnect().await;
        Ok(())
    }
}

/// A Redis master, its replica and three Sentinels, each in a process
/// group of its own (all killed when this is dropped), the Sentinels
/// agreeing on the master (`m`) and its replica.
struct Replicated {
    master: Option<Group>,
    replica_port: u16,
    sentinel_ports: Vec<u16>,
    _replica: Group,
    _sentinels: Vec<Group>,
    _dir: tempfile::TempDir,
}

impl Replicated {
    fn sentinel_urls(&self) -> Vec<SecretUrl> {
        self.sentinel_ports
            .iter()
            .map(|p| SecretUrl::new(format!("redis://127.0.0.1:{p}")))
            .collect()
    }
}

async fn replicated() -> Replicated {
    let dir = tempfile::tempdir().unwrap();
    let (mp, rp) = (free_port(), free_port());
    let no_disk = ["--save", "", "--appendonly", "no"].map(String::from);
    let base = |port: u16| {
        let mut a = vec![
            "--port".to_string(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
        ];
        a.extend(no_disk.iter().cloned());
        a
    };
    let master = Some(redis(dir.path(), &base(mp)));
    let mut replica_args = base(rp);
    replica_args.extend([
        "--replicaof".to_string(),
        "127.0.0.1".into(),
        mp.to_string(),
    ]);
    let _replica = redis(dir.path(), &replica_args);
    let mut sentinels = Vec::new();
    let mut sentinel_ports = Vec::new();
    for i in 0..3 {
        let port = free_port();
        let conf = dir.path().join(format!("sentinel{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor m 127.0.0.1 {mp} 2\n\
                 sentinel down-after-milliseconds m 1000\nsentinel failover-timeout m 5000\n\
                 sentinel parallel-syncs m 1\n"
            ),
        )
        .unwrap();
        sentinels.push(redis(
            dir.path(),
            &[conf.display().to_string(), "--sentinel".into()],
        ));
        sentinel_ports.push(port);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for p in [mp, rp].iter().chain(&sentinel_ports) {
        while !ping(*p).await {
            assert!(Instant::now() < deadline, "redis on {p} did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The replica is in sync (its first sync is diskless and delayed by
    // a few seconds: before it, a failover would promote an empty replica).
    let c = deadpool_redis::redis::Client::open(format!("redis://127.0.0.1:{rp}")).unwrap();
    let mut c = c.get_multiplexed_async_connection().await.unwrap();
    loop {
        let info: String = deadpool_redis::redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(20),
            "replica not in sync: {info}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each Sentinel knows the master (flags exactly "master") and its replica.
    for p in &sentinel_ports {
        let c = deadpool_redis::redis::Client::open(format!("redis://127.0.0.1:{p}")).unwrap();
        let mut c = c.get_multiplexed_async_connection().await.unwrap();
        loop {
            let info: std::collections::HashMap<String, String> =
                deadpool_redis::redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg("m")
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default();
            if info.get("flags").map(String::as_str) == Some("master")
                && info.get("num-slaves").map(String::as_str) == Some("1")
            {
                break;
            }
            assert!(
                Instant::now() < deadline + Duration::from_secs(20),
                "sentinel {p}: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Replicated {
        master,
        replica_port: rp,
        sentinel_ports,
        _replica,
        _sentinels: sentinels,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_redis_master_fails_over_to_the_replica_and_loses_no_task() {
    let r = replicated().await;
    let (urls, rp) = (r.sentinel_urls(), r.replica_port);
    let mut master = r.master;
    let env = TestEnv::with("sentinel", |c| {
        c.redis.sentinels = urls.clone();
        c.redis.master_name = "m".into();
        c.worker.concurrency = 4;
    });
    let db = env.config.mysql.database.clone();
    common::sql(
        &env.config,
        &[
            &format!("CREATE DATABASE IF NOT EXISTS `{db}`"),
            &format!("CREATE TABLE `{db}`.done (id VARCHAR(36) PRIMARY KEY)"),
        ],
    )
    .await;
    let opts: mysql_async::Opts = alertflow::sink::starrocks::server_opts(&env.config).into();
    let reg = env.registry().with(Recorded {
        opts: opts.clone(),
        db: db.clone(),
    });
    let w1 = env.start_worker(reg.clone());
    let w2 = env.start_worker(reg.clone());
    let (_conn, publisher) = env.publisher().await;
    let n = 300;
    let mut ids = Vec::new();
    for _ in 0..n {
        let e = env.envelope(&reg, "recorded", json!({"ms": 100}));
        ids.push(e.id.to_string());
        publisher.publish(&e).await.unwrap();
    }
    let recorded = || {
        let (opts, db) = (opts.clone(), db.clone());
        async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            let n: Option<u64> = c
                .query_first(format!("SELECT COUNT(*) FROM `{db}`.done"))
                .await
                .unwrap();
            let _ = c.disconnect().await;
            n.unwrap_or(0) as usize
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorded().await < n / 4 {
        assert!(Instant::now() < deadline, "a quarter recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Kill the master.
    drop(master.take());
    let killed_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = recorded().await;
        if done == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {n} tasks recorded after the master was killed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_done = killed_at.elapsed();
    assert!(env.dead_letters().await.is_empty(), "nothing dead-lettered");
    // The replica is the master now, and states are written there.
    let e = env.envelope(&reg, "noop", json!({}));
    publisher.publish(&e).await.unwrap();
    env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(30))
        .await;
    let c = deadpool_redis::redis::Client::open(format!("redis://127.0.0.1:{rp}")).unwrap();
    let mut c = c.get_multiplexed_async_connection().await.unwrap();
    let role: Vec<deadpool_redis::redis::Value> = deadpool_redis::redis::cmd("ROLE")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        role.first(),
        Some(&deadpool_redis::redis::Value::BulkString(
            b"master".to_vec()
        )),
        "the replica was promoted"
    );
    eprintln!(
        "sentinel: {n} tasks, master killed a quarter through; all recorded {all_done:?} after the kill; 0 lost, 0 dead-lettered"
    );
    w1.stop().await;
    w2.stop().await;
}

/// Issue 17.5: the Redis master killed mid-backfill (three sandboxed days
/// through two workers): the run completes, every row is written once and
/// every day's recommendations equal a recomputation from its rows. Writes
/// the replica had not received are what a failover can lose; the run
/// ledger in the database carries the run across it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backfill_through_a_redis_failover_gets_every_day_right() {
    use alertflow::cli::run::{DayPlan, publish_days, wait_days};
    let r = replicated().await;
    let urls = r.sentinel_urls();
    let mut master = r.master;
    let cfg = alertflow::sandbox::SandboxConfig {
        seed: 17,
        per_day: 800,
        ..Default::default()
    };
    let sb = alertflow::sandbox::spawn(cfg.clone()).await.unwrap();
    let base = sb.base_url.clone();
    let env = TestEnv::with("sentinel-run", |c| {
        common::use_sandbox(c, &base);
        // The retry budget of production backoff (the test's backoff is
        // short: the default budget would run out within a failover).
        for task in ["fetch-day", "parse-batch", "insert", "recommend"] {
            c.tasks.insert(
                task.into(),
                alertflow::config::TaskOverride {
                    max_retries: Some(30),
                    ..Default::default()
                },
            );
        }
        c.redis.sentinels = urls.clone();
        c.redis.master_name = "m".into();
        c.worker.concurrency = 8;
        c.sink.batch_interval = common::ms(300);
    });
    let sink = alertflow::sink::starrocks::SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let w1 = env.start_worker(env.registry());
    let w2 = env.start_worker(env.registry());
    let dates = ["2026-03-08", "2026-03-09", "2026-03-10"];
    let plans: Vec<DayPlan> = dates
        .iter()
        .map(|d| DayPlan {
            date: d.parse().unwrap(),
            until_now: false,
        })
        .collect();
    let published = publish_days(&env.config, &plans).await.unwrap();
    let ids: Vec<String> = published.iter().map(|p| p.run_id.clone()).collect();
    // Mid-run: some pages written, not every run complete.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written: u64 = sink.pages_written(&ids).await.unwrap().values().sum();
        if written >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "pages written before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let complete_at_kill = sink.complete_runs(&ids).await.unwrap().len();
    drop(master.take());
    // As an operator would: `run --wait` refuses while the Sentinels still
    // name the dead master (a few seconds), and follows once they agree.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (outcomes, finished) = loop {
        match wait_days(
            &env.config,
            &published,
            Some(Duration::from_secs(180)),
            true,
        )
        .await
        {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                assert!(
                    e.message.contains("named by the Sentinels"),
                    "{}",
                    e.message
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{}", e.message),
        }
    };
    assert!(
        finished && outcomes.iter().all(|o| o.status == "done"),
        "{outcomes:#?}"
    );
    let expected: Vec<alertflow::lark::card::AlertRow> = alertflow::sandbox::expected_range(
        &cfg,
        "oc_sandbox_alerts",
        dates[0].parse().unwrap(),
        dates[2].parse().unwrap(),
    )
    .rows
    .into_iter()
    .map(alertflow::lark::card::AlertRow::from)
    .collect();
    let mut rows = Vec::new();
    for d in dates {
        rows.extend(sink.alerts_for_date(d).await.unwrap());
    }
    assert_eq!(rows.len(), expected.len(), "every row written once");
    for d in dates {
        common::check_recommendations(&env.config, &sink, d, &expected).await;
    }
    let dead = env.dead_letters().await;
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:#?}");
    eprintln!(
        "sentinel-run: {} days, master killed with {complete_at_kill} of {} runs complete; {} rows, every day right",
        dates.len(),
        ids.len(),
        rows.len()
    );
    w1.stop().await;
    w2.stop().await;
    sink.close().await;
}
