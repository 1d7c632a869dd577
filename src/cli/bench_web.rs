//! `alertflow bench web`: overview latency of `alertflow web` over a
//! realistic amount of data. It seeds a namespace and a database of its own
//! (100,000 task states spread over the last 3 hours, which also fill the
//! activity counters; live worker and beat registrations; 30 days of runs
//! in the run ledger), serves the dashboard in-process on `127.0.0.1:0`,
//! requests the overview N times one after the other and prints the
//! latency percentiles. It also counts the `SCAN`/`KEYS` commands Redis ran
//! meanwhile (server-wide: other clients of the same Redis are included).
//! Everything it created is removed afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cli::bench::delete_namespace;
use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, connect_broker, connect_redis};
use crate::queue::state::{
    BeatInfo, BeatRegistry, StateStore, TaskState, TaskStatus, WorkerInfo, WorkerRegistry,
};
use crate::queue::topology::Topology;
use crate::sink::ledger::{PageRecord, RecommendRecord, RunRecord};
use crate::sink::starrocks::SqlSink;

#[derive(clap::Args, Debug, Clone)]
pub struct WebArgs {
    /// Overview requests to time (after 10 untimed ones).
    #[arg(long, default_value_t = 300)]
    pub requests: usize,
    /// Task states to seed.
    #[arg(long, default_value_t = 100_000)]
    pub states: usize,
    /// Live worker registrations to seed.
    #[arg(long, default_value_t = 20)]
    pub workers: usize,
    /// Days of runs to seed in the run ledger.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
pub struct WebReport {
    pub requests: usize,
    pub states: usize,
    pub workers: usize,
    pub days: u32,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub page_bytes: usize,
    /// `SCAN` + `KEYS` calls Redis counted during the timed requests, by
    /// every client of that Redis.
    pub redis_scans: u64,
}

pub async fn run(g: &GlobalOpts, a: WebArgs) -> CliResult {
    let base = g.load_config()?;
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let mut c = (*base).clone();
    c.namespace = format!("{}-benchweb-{tag}", base.namespace);
    c.mysql.database = format!("bench_web_{tag}");
    let config = Arc::new(c);
    let pool = connect_redis(&config).await?;
    let sink = SqlSink::new(&config);
    sink.migrate()
        .await
        .map_err(|e| CliError::failure(format!("MariaDB: {e}")))?;
    let registry = crate::tasks::lookup_registry(&config).map_err(CliError::usage)?;
    let families: Vec<String> = registry.families(&config.queue).into_iter().collect();

    let result = async {
        seed(&config, &pool, &sink, &registry, &families, &a).await?;
        measure(&config, &pool, &a).await
    }
    .await;

    let _ = sink.drop_database().await;
    sink.close().await;
    delete_namespace(&config, &families).await;
    let report = result?;
    if a.json {
        println!("{}", serde_json::to_string(&report).expect("serializes"));
    } else {
        println!(
            "web overview: {} requests over {} task states, {} workers, {} days of runs",
            report.requests, report.states, report.workers, report.days
        );
        crate::cli::print_table(
            &[
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "page bytes",
                "SCAN/KEYS",
            ],
            &[vec![
                format!("{:.1}", report.p50_ms),
                format!("{:.1}", report.p95_ms),
                format!("{:.1}", report.p99_ms),
                format!("{:.1}", report.max_ms),
                report.page_bytes.to_string(),
                report.redis_scans.to_string(),
            ]],
        );
    }
    Ok(EXIT_OK)
}

async fn seed(
    config: &Arc<crate::config::AppConfig>,
    pool: &crate::queue::redis_pool::Pool,
    sink: &SqlSink,
    registry: &crate::queue::task::Registry,
    families: &[String],
    a: &WebArgs,
) -> Result<(), CliError> {
    // Queues, as workers would have declared them.
    let conn = connect_broker(config, "bench").await?;
    let ch = conn.create_channel().await.map_err(CliError::failure)?;
    Topology::from_config(config)
        .declare(&ch, families)
        .await
        .map_err(CliError::failure)?;
    crate::queue::connect::close(conn).await;

    // Task states over the last 3 hours, each task on its own family: a
    // publish, a delivery, then mostly successes, some retries and a few
    // dead letters. Writing them fills the activity counters as workers do.
    let tasks: Vec<(&str, String)> = registry
        .names()
        .filter_map(|n| registry.get(n).map(|t| (n, t.queue().to_string())))
        .collect();
    let store = StateStore::new(pool.clone(), &config.namespace, config.state.ttl.0);
    let now = Utc::now();
    let span_ms = 3 * 3600 * 1000;
    let mut batch = Vec::with_capacity(5000);
    for i in 0..a.states {
        let (task, queue) = &tasks[i % tasks.len()];
        let status = match i % 50 {
            0 => TaskStatus::Dead,
            1..=3 => TaskStatus::Retrying,
            4..=9 => TaskStatus::Queued,
            10..=19 => TaskStatus::Started,
            _ => TaskStatus::Succeeded,
        };
        batch.push(TaskState {
            id: Uuid::new_v4(),
            task: task.to_string(),
            status,
            attempt: u32::from(status == TaskStatus::Retrying),
            queue: queue.clone(),
            updated_at: now - chrono::Duration::milliseconds(fastrand::i64(0..span_ms)),
            worker: Some(format!("bench-worker-{}", i % a.workers.max(1))),
            error: (status == TaskStatus::Dead).then(|| "fatal: bench".to_string()),
            root_id: None,
            run_id: None,
            eta: None,
            parent_id: None,
            args: crate::queue::state::args_summary(
                &serde_json::json!({"date": "2026-03-08", "page": i % 40}),
            ),
        });
        if batch.len() == 5000 {
            store.put_many(&batch).await.map_err(CliError::failure)?;
            batch.clear();
        }
    }
    store.put_many(&batch).await.map_err(CliError::failure)?;

    let workers = WorkerRegistry::new(pool.clone(), &config.namespace);
    for i in 0..a.workers {
        let info = WorkerInfo {
            id: format!("bench-worker-{i}"),
            host: "bench".into(),
            pid: 1000 + i as u32,
            queues: families.to_vec(),
            concurrency: 32,
            active: i % 32,
            processed: 1000 * i as u64,
            started_at: now,
            heartbeat_at: now,
            version: env!("CARGO_PKG_VERSION").into(),
            broker_node: None,
        };
        workers
            .heartbeat(&info, Duration::from_secs(600))
            .await
            .map_err(CliError::failure)?;
    }
    let beats = BeatRegistry::new(pool.clone(), &config.namespace);
    for i in 0..2 {
        let info = BeatInfo {
            id: format!("bench-beat-{i}"),
            host: "bench".into(),
            pid: 900 + i,
            schedules: config.schedules.len(),
            connected: true,
            started_at: now,
            heartbeat_at: now,
            version: env!("CARGO_PKG_VERSION").into(),
        };
        beats
            .heartbeat(&info, Duration::from_secs(600))
            .await
            .map_err(CliError::failure)?;
    }

    // A run per day with its pages and a recommendation, as `run` records them.
    let today = crate::lark::window::pacific_date(now);
    for d in 0..i64::from(a.days) {
        let date: NaiveDate = today - chrono::Duration::days(d);
        let start = date.and_hms_opt(8, 0, 0).expect("valid time");
        let run_id = format!("bench-{date}");
        let pages: u32 = 20;
        sink.record_run(&RunRecord {
            run_id: run_id.clone(),
            date,
            chat_id: "oc_bench".into(),
            window_start: start - chrono::Duration::days(1),
            window_end: start,
            started_at: start,
            total_pages: Some(pages),
            messages: 2000,
            fetched_at: Some(start + chrono::Duration::seconds(5)),
        })
        .await
        .map_err(CliError::failure)?;
        let records: Vec<PageRecord> = (0..pages)
            .map(|p| PageRecord {
                run_id: run_id.clone(),
                page: p,
                date,
                rows: 100,
                skips: BTreeMap::from([("not-an-alert".to_string(), u64::from(p % 3))]),
                written_at: start + chrono::Duration::seconds(10 + i64::from(p)),
            })
            .collect();
        sink.record_pages(&records)
            .await
            .map_err(CliError::failure)?;
        sink.record_recommend(&RecommendRecord {
            date,
            run_id,
            generated_at: start + chrono::Duration::seconds(60),
            rows_read: 2000,
            alerts: 40,
            max_ingested_at: Some(start + chrono::Duration::seconds(30)),
        })
        .await
        .map_err(CliError::failure)?;
    }
    Ok(())
}

async fn measure(
    config: &Arc<crate::config::AppConfig>,
    pool: &crate::queue::redis_pool::Pool,
    a: &WebArgs,
) -> Result<WebReport, CliError> {
    let state = crate::web::WebState::new(config.clone()).map_err(CliError::failure)?;
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(crate::web::serve(
        Arc::new(state),
        "127.0.0.1:0".parse().expect("an address"),
        shutdown.clone(),
        move |addr| {
            let _ = tx.send(addr);
        },
    ));
    let addr = rx
        .await
        .map_err(|_| CliError::failure("the web server did not start"))?;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/");

    let result = async {
        // Untimed: the first request connects to the broker; the JSON
        // shows whether every source answered.
        let overview: serde_json::Value = client
            .get(format!("http://{addr}/api/overview"))
            .send()
            .await
            .map_err(CliError::failure)?
            .json()
            .await
            .map_err(CliError::failure)?;
        check_overview(&overview, a)?;
        let mut page_bytes = 0;
        for _ in 0..10 {
            page_bytes = get(&client, &url).await?;
        }
        let scans_before = scan_calls(pool).await?;
        let mut ms = Vec::with_capacity(a.requests);
        for _ in 0..a.requests.max(1) {
            let t = Instant::now();
            get(&client, &url).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let redis_scans = scan_calls(pool).await? - scans_before;
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
        Ok(WebReport {
            requests: ms.len(),
            states: a.states,
            workers: a.workers,
            days: a.days,
            p50_ms: pct(0.50),
            p95_ms: pct(0.95),
            p99_ms: pct(0.99),
            max_ms: ms[ms.len() - 1],
            page_bytes,
            redis_scans,
        })
    }
    .await;
    shutdown.cancel();
    let _ = server.await;
    result
}

/// The overview must show what was seeded, not an unreachable source.
fn check_overview(o: &serde_json::Value, a: &WebArgs) -> Result<(), CliError> {
    let len = |k: &str| o[k].as_array().map_or(0, Vec::len);
    let unreachable: Vec<&str> = o["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .filter(|p| {
            p.starts_with("RabbitMQ:") || p.contains("(Redis):") || p.contains("(database):")
        })
        .collect();
    if !unreachable.is_empty()
        || len("workers") != a.workers
        || len("queues") == 0
        || (a.days > 0 && len("runs") == 0)
        || o["per_minute"].as_object().is_none_or(|m| m.is_empty())
    {
        return Err(CliError::failure(format!(
            "the overview does not show the seeded data: {} workers, {} queues, {} runs, problems {:?}",
            len("workers"),
            len("queues"),
            len("runs"),
            o["problems"]
        )));
    }
    Ok(())
}

async fn get(client: &reqwest::Client, url: &str) -> Result<usize, CliError> {
    let r = client.get(url).send().await.map_err(CliError::failure)?;
    if !r.status().is_success() {
        return Err(CliError::failure(format!("GET {url}: {}", r.status())));
    }
    Ok(r.bytes().await.map_err(CliError::failure)?.len())
}

/// `SCAN` and `KEYS` calls Redis has run since its statistics were reset.
async fn scan_calls(pool: &crate::queue::redis_pool::Pool) -> Result<u64, CliError> {
    let mut conn = pool.get().await.map_err(CliError::failure)?;
    let info: String = deadpool_redis::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .map_err(CliError::failure)?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_scan:") || l.starts_with("cmdstat_keys:"))
        .filter_map(|l| {
            l.split([':', ','])
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum())
}
