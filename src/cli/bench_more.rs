//! `alertflow bench latency | memory | parser | ratelimit`: the figures of
//! `bench/run` beyond no-op throughput and the pipeline backfill.
//!
//! - `latency`: a paced publisher (confirms) offers R tasks/s to a worker
//!   running in this process; each `bench-latency` task computes
//!   `now - sent` (the wall-clock time stamped into its args just before
//!   publishing) when it starts. p50 / p99 / max per rate.
//! - `memory`: RSS of a real `alertflow-worker` process (the binary beside
//!   this one), idle and while it drains N `noop` tasks (a task the
//!   production worker runs; `bench-incr` is registered only in this
//!   process). The drain ends when every task's `succeeded` state is in Redis.
//! - `parser`: synthetic sandbox days through `parse_items` on one thread.
//! - `ratelimit`: decisions per second of the GCRA limiter under many
//!   concurrent clients, Redis CPU per decision, and the admitted count under
//!   16 concurrent clients beside the exact GCRA allowance.
//!
//! Every run uses its own namespace (queues and Redis keys) and removes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::bench::delete_namespace;
use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, connect_broker, print_table};
use crate::config::{AppConfig, HumanDuration, LimitSpec};
use crate::queue::context::Services;
use crate::queue::message::Envelope;
use crate::queue::publisher::Publisher;
use crate::queue::ratelimit::{Decision, RateLimiter};
use crate::queue::state::{StateStore, TaskState, TaskStatus};
use crate::queue::task::{Registry, Task, TaskContext, TaskError};
use crate::queue::topology::Topology;
use crate::queue::worker::{Worker, WorkerOptions};

/// The queue family every benchmark here publishes to.
const FAMILY: &str = "bench";

/// The body of a throughput task: `noop` does nothing, `incr` runs
/// `bench-incr` (one Redis INCR, the body the Celery side runs).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchTask {
    Noop,
    Incr,
}

impl BenchTask {
    pub fn name(self) -> &'static str {
        match self {
            BenchTask::Noop => crate::tasks::noop::Noop::NAME,
            BenchTask::Incr => crate::cli::bench_incr::BenchIncr::NAME,
        }
    }

    /// A new envelope of this task; `incr` counts in `<namespace>:bench:incr`.
    pub fn envelope(self, namespace: &str) -> Envelope {
        match self {
            BenchTask::Noop => Envelope::new(self.name(), json!({})),
            BenchTask::Incr => Envelope::new(self.name(), json!({ "key": incr_key(namespace) })),
        }
    }
}

/// The Redis key `bench-incr` tasks of a benchmark increment.
pub fn incr_key(namespace: &str) -> String {
    format!("{namespace}:bench:incr")
}

/// A copy of `base` in a namespace of its own (`<ns>-<what>-<8 hex>`).
fn bench_config(base: &AppConfig, what: &str, concurrency: usize) -> AppConfig {
    let mut c = base.clone();
    c.namespace = format!(
        "{}-{what}-{}",
        base.namespace,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    c.worker.queues = vec![FAMILY.into()];
    c.worker.concurrency = concurrency.clamp(1, 10_000);
    c.worker.metrics_listen = "off".into();
    c
}

fn emit<T: Serialize>(report: &T) {
    println!(
        "{}",
        serde_json::to_string(report).expect("report serializes")
    );
}

fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

/// The value at quantile `q` (nearest rank) of sorted `v`.
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

// ---------------------------------------------------------------- latency

#[derive(clap::Args, Debug, Clone)]
pub struct LatencyArgs {
    /// Offered load in tasks/s; several rates (comma separated) run one after another.
    #[arg(long, value_delimiter = ',', default_values_t = [100u32, 1000])]
    pub rate: Vec<u32>,
    /// Seconds of offered load per rate.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Worker concurrency.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct LatencyRun {
    pub rate: u32,
    pub seconds: f64,
    pub sent: usize,
    pub started: usize,
    /// Tasks/s the publisher actually achieved.
    pub offered_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct LatencyReport {
    pub concurrency: usize,
    pub runs: Vec<LatencyRun>,
}

/// `bench-latency`: records `now - sent_us` when it starts. Registered only
/// in the latency benchmark's own registry (it writes to this process's memory).
struct LatencyProbe {
    samples: Arc<Mutex<Vec<u64>>>,
}

#[derive(Deserialize)]
struct LatencyProbeArgs {
    sent_us: i64,
}

impl Task for LatencyProbe {
    const NAME: &'static str = "bench-latency";
    type Args = LatencyProbeArgs;

    async fn run(&self, _ctx: &TaskContext, args: LatencyProbeArgs) -> Result<(), TaskError> {
        let waited = (wall_us() - args.sent_us).max(0) as u64;
        self.samples
            .lock()
            .expect("samples lock is never poisoned")
            .push(waited);
        Ok(())
    }
}

pub async fn latency(g: &GlobalOpts, a: LatencyArgs) -> CliResult {
    let base = g.load_config()?;
    let config = Arc::new(bench_config(&base, "benchlat", a.concurrency));
    let result = measure_latency(&config, &a).await;
    delete_namespace(&config, &config.worker.queues).await;
    let report = result?;
    if a.json {
        emit(&report);
        return Ok(EXIT_OK);
    }
    println!(
        "latency: enqueue (publish with confirm) → task start, worker concurrency {}",
        report.concurrency
    );
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .map(|r| {
            vec![
                format!("{}/s", r.rate),
                format!("{:.0}/s", r.offered_per_s),
                format!("{}/{}", r.started, r.sent),
                format!("{:.2}", r.p50_ms),
                format!("{:.2}", r.p99_ms),
                format!("{:.2}", r.max_ms),
            ]
        })
        .collect();
    print_table(
        &[
            "target rate",
            "achieved",
            "started/sent",
            "p50 ms",
            "p99 ms",
            "max ms",
        ],
        &rows,
    );
    Ok(EXIT_OK)
}

async fn measure_latency(
    config: &Arc<AppConfig>,
    a: &LatencyArgs,
) -> Result<LatencyReport, CliError> {
    let samples = Arc::new(Mutex::new(Vec::<u64>::new()));
    let registry = Arc::new(Registry::new().with(LatencyProbe {
        samples: samples.clone(),
    }));
    let (services, writer) =
        Services::new(Arc::new(config.queue.clone())).map_err(CliError::usage)?;
    let conn = connect_broker(config, "bench").await?;
    let publisher = Publisher::open(
        &conn,
        services.topology.clone(),
        config.broker.publish_window,
    )
    .await
    .map_err(CliError::failure)?;
    services
        .topology
        .declare(publisher.channel(), &config.worker.queues)
        .await
        .map_err(CliError::failure)?;
    let shutdown = CancellationToken::new();
    let worker = Worker::new(
        services.clone(),
        registry.clone(),
        WorkerOptions::from_config(config),
    );
    let stop = shutdown.clone();
    let worker_task = tokio::spawn(async move { worker.run(stop).await });

    let outcome = async {
        // Warm up: the worker is consuming once these come back.
        offer(&services, &registry, &publisher, 50, 20.0).await?;
        wait_samples(&samples, 50, Duration::from_secs(30)).await;
        let mut runs = Vec::new();
        for &rate in &a.rate {
            samples.lock().expect("not poisoned").clear();
            let n = ((f64::from(rate.max(1)) * a.seconds).round() as usize).max(1);
            let achieved = offer(&services, &registry, &publisher, n, f64::from(rate)).await?;
            wait_samples(&samples, n, Duration::from_secs(30)).await;
            let mut v = std::mem::take(&mut *samples.lock().expect("not poisoned"));
            v.sort_unstable();
            let ms = |us: u64| us as f64 / 1000.0;
            let mean = if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<u64>() as f64 / v.len() as f64 / 1000.0
            };
            runs.push(LatencyRun {
                rate,
                seconds: a.seconds,
                sent: n,
                started: v.len(),
                offered_per_s: achieved,
                p50_ms: ms(quantile(&v, 0.50)),
                p99_ms: ms(quantile(&v, 0.99)),
                max_ms: ms(v.last().copied().unwrap_or(0)),
                mean_ms: mean,
            });
        }
        Ok::<_, CliError>(runs)
    }
    .await;
    shutdown.cancel();
    let _ = worker_task.await;
    let _ = publisher.channel().close(200, "bench done".into()).await;
    let _ = conn.close(200, "bench done".into()).await;
    drop(services);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    Ok(LatencyReport {
        concurrency: config.worker.concurrency,
        runs: outcome?,
    })
}

async fn wait_samples(samples: &Mutex<Vec<u64>>, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while samples.lock().expect("not poisoned").len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Publish `n` `bench-latency` tasks at `rate`/s on an absolute schedule
/// (a late publisher does not skip), each confirmed, up to the publish
/// window in flight. Returns the rate actually achieved.
async fn offer(
    services: &Arc<Services>,
    registry: &Registry,
    publisher: &Publisher,
    n: usize,
    rate: f64,
) -> Result<f64, CliError> {
    let config = &services.config;
    let window = Arc::new(tokio::sync::Semaphore::new(
        config.broker.publish_window.max(1),
    ));
    let mut inflight = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut last_send = Instant::now();
    let first_send = Instant::now();
    for i in 0..n {
        tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
        let permit = window
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let mut env = Envelope::new(LatencyProbe::NAME, json!({ "sent_us": wall_us() }));
        registry.apply_policy(&mut env, config, Some(FAMILY));
        services
            .state_writer
            .record(TaskState::of(&env, TaskStatus::Queued));
        let p = publisher.clone();
        last_send = Instant::now();
        inflight.spawn(async move {
            let r = p.publish(&env).await;
            drop(permit);
            r
        });
        while let Some(done) = inflight.try_join_next() {
            done.map_err(CliError::failure)?
                .map_err(CliError::failure)?;
        }
    }
    while let Some(done) = inflight.join_next().await {
        done.map_err(CliError::failure)?
            .map_err(CliError::failure)?;
    }
    let span = last_send.duration_since(first_send).as_secs_f64();
    Ok(if n > 1 && span > 0.0 {
        (n - 1) as f64 / span
    } else {
        n as f64
    })
}

// ---------------------------------------------------------------- memory

#[derive(clap::Args, Debug, Clone)]
pub struct MemoryArgs {
    /// Tasks (`noop`) drained under load.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// Worker concurrency (`alertflow-worker -c`).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// The worker binary (default: `alertflow-worker` beside this executable).
    #[arg(long, value_name = "PATH")]
    pub worker_bin: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct MemoryReport {
    pub tasks: usize,
    pub concurrency: usize,
    /// RSS after start-up and one task, with nothing to do.
    pub idle_rss_mb: f64,
    /// Highest RSS while draining (sampled every 10 ms, and VmHWM).
    pub load_rss_peak_mb: f64,
    /// RSS once the load is drained.
    pub after_rss_mb: f64,
    /// Of which anonymous memory (heap, stacks), idle and after the load;
    /// the rest is mostly the binary's pages.
    pub idle_anon_mb: f64,
    pub after_anon_mb: f64,
    pub drain_per_s: f64,
}

/// Memory of a process from `/proc/PID/status`, in kB.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcMem {
    pub rss_kb: u64,
    /// Peak RSS of the process's life.
    pub hwm_kb: u64,
    pub anon_kb: u64,
}

/// `VmRSS`, `VmHWM` and `RssAnon` of a process.
pub fn proc_mem(pid: u32) -> Option<ProcMem> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some(ProcMem {
        rss_kb: field("VmRSS:")?,
        hwm_kb: field("VmHWM:").unwrap_or(0),
        anon_kb: field("RssAnon:").unwrap_or(0),
    })
}

fn worker_binary(a: &MemoryArgs) -> Result<PathBuf, CliError> {
    if let Some(p) = &a.worker_bin {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(CliError::failure)?;
    let p = exe.with_file_name("alertflow-worker");
    if !p.exists() {
        return Err(CliError::usage(format!(
            "{} not found: build it (`cargo build --release`) or pass --worker-bin",
            p.display()
        )));
    }
    Ok(p)
}

pub async fn memory(g: &GlobalOpts, a: MemoryArgs) -> CliResult {
    let base = g.load_config()?;
    let config = Arc::new(bench_config(&base, "benchmem", a.concurrency));
    let bin = worker_binary(&a)?;
    let result = measure_memory(g, &config, &a, &bin).await;
    delete_namespace(&config, &config.worker.queues).await;
    let report = result?;
    if a.json {
        emit(&report);
        return Ok(EXIT_OK);
    }
    println!(
        "memory: alertflow-worker -c {}, RSS idle and while draining {} noop tasks",
        report.concurrency, report.tasks
    );
    print_table(
        &["", "RSS MB"],
        &[
            vec![
                "idle".into(),
                format!(
                    "{:.1} ({:.1} anonymous)",
                    report.idle_rss_mb, report.idle_anon_mb
                ),
            ],
            vec![
                "under load (peak)".into(),
                format!("{:.1}", report.load_rss_peak_mb),
            ],
            vec![
                "after the load".into(),
                format!(
                    "{:.1} ({:.1} anonymous)",
                    report.after_rss_mb, report.after_anon_mb
                ),
            ],
        ],
    );
    println!("drain while sampling: {:.0} tasks/s", report.drain_per_s);
    Ok(EXIT_OK)
}

/// Stop a child with SIGTERM (then SIGKILL after 10 s).
async fn stop_child(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

async fn measure_memory(
    g: &GlobalOpts,
    config: &Arc<AppConfig>,
    a: &MemoryArgs,
    bin: &std::path::Path,
) -> Result<MemoryReport, CliError> {
    let pool = crate::cli::connect_redis(config).await?;
    let conn = connect_broker(config, "bench").await?;
    let topology = Arc::new(Topology::from_config(config));
    let publisher = Publisher::open(&conn, topology.clone(), config.broker.publish_window)
        .await
        .map_err(CliError::failure)?;
    topology
        .declare(publisher.channel(), &config.worker.queues)
        .await
        .map_err(CliError::failure)?;
    let registry = crate::tasks::lookup_registry(config)?;
    let states = StateStore::new(pool.clone(), &config.namespace, config.state.ttl.0);

    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["-Q", FAMILY, "-c", &a.concurrency.to_string()])
        .args(["--metrics-listen", "off"])
        .env("ALERTFLOW_NAMESPACE", &config.namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(path) = &g.config {
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::failure(format!("cannot start {}: {e}", bin.display())))?;
    let pid = child.id().expect("a running child has a pid");

    let outcome = async {
        let envs = |n: usize| -> Vec<Envelope> {
            (0..n)
                .map(|_| {
                    let mut e = BenchTask::Noop.envelope(&config.namespace);
                    registry.apply_policy(&mut e, config, Some(FAMILY));
                    e
                })
                .collect()
        };
        let ids = |envs: &[Envelope]| envs.iter().map(|e| e.id).collect::<Vec<_>>();
        // One task through, so the worker is connected and consuming.
        let first = envs(1);
        let first_ids = ids(&first);
        publisher
            .publish_many(first, |_| {})
            .await
            .map_err(CliError::failure)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        wait_succeeded(&pool, &states, first_ids, deadline, &mut child)
            .await
            .map_err(|e| match e {
                DrainError::Timeout(_) => CliError::failure("the worker did not start within 30 s"),
                e => CliError::failure(e),
            })?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = proc_mem(pid).ok_or_else(|| CliError::failure("no /proc status"))?;

        // Under load: publish N while the worker drains, sampling RSS.
        let peak = Arc::new(AtomicU64::new(idle.rss_kb));
        let sampling = CancellationToken::new();
        let sampler = {
            let (peak, stop) = (peak.clone(), sampling.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    if let Some(m) = proc_mem(pid) {
                        peak.fetch_max(m.rss_kb, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let load = envs(a.tasks);
        let load_ids = ids(&load);
        let t = Instant::now();
        publisher
            .publish_many(load, |_| {})
            .await
            .map_err(CliError::failure)?;
        let deadline = Instant::now() + Duration::from_secs(600);
        wait_succeeded(&pool, &states, load_ids, deadline, &mut child)
            .await
            .map_err(CliError::failure)?;
        let drain = a.tasks as f64 / t.elapsed().as_secs_f64();
        sampling.cancel();
        let _ = sampler.await;
        let hwm = proc_mem(pid).unwrap_or_default().hwm_kb;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = proc_mem(pid).unwrap_or_default();
        let mb = |kb: u64| kb as f64 / 1024.0;
        Ok(MemoryReport {
            tasks: a.tasks,
            concurrency: a.concurrency,
            idle_rss_mb: mb(idle.rss_kb),
            load_rss_peak_mb: mb(peak.load(Ordering::Relaxed).max(hwm)),
            after_rss_mb: mb(after.rss_kb),
            idle_anon_mb: mb(idle.anon_kb),
            after_anon_mb: mb(after.anon_kb),
            drain_per_s: drain,
        })
    }
    .await;
    stop_child(&mut child).await;
    let _ = publisher.channel().close(200, "bench done".into()).await;
    let _ = conn.close(200, "bench done".into()).await;
    outcome
}

/// Why [`wait_succeeded`] gave up.
#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error("the drain stalled: {0} tasks not succeeded by the deadline")]
    Timeout(usize),
    #[error("the worker exited: {0}")]
    WorkerExited(std::process::ExitStatus),
    #[error("task {id} ended {status}: {error}")]
    TaskFailed {
        id: uuid::Uuid,
        status: &'static str,
        error: String,
    },
    #[error("reading task states: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    #[error("reading task states: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
}

/// Waits until every task of `pending` has its `succeeded` state in Redis,
/// which the worker records once the task's body has returned. Ids are read
/// in publish order, [`STATE_POLL_CHUNK`] at a time, and dropped once
/// succeeded: the worker takes tasks roughly in that order, so each read
/// finds mostly finished tasks and the whole drain costs about N / chunk
/// reads. A task that ends any other way (dead-lettered, failed) is an error,
/// never counted as drained.
async fn wait_succeeded(
    pool: &crate::queue::redis_pool::Pool,
    states: &StateStore,
    mut pending: Vec<uuid::Uuid>,
    deadline: Instant,
    child: &mut tokio::process::Child,
) -> Result<(), DrainError> {
    let mut conn = pool.get().await?;
    while !pending.is_empty() {
        let n = pending.len().min(STATE_POLL_CHUNK);
        let keys: Vec<String> = pending[..n].iter().map(|id| states.key(id)).collect();
        let raw: Vec<Option<String>> = deadpool_redis::redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await?;
        let mut left = Vec::new();
        for (id, raw) in pending[..n].iter().zip(raw) {
            match raw.and_then(|s| serde_json::from_str::<TaskState>(&s).ok()) {
                Some(st) if st.status == TaskStatus::Succeeded => {}
                Some(st) if st.status.is_final() => {
                    return Err(DrainError::TaskFailed {
                        id: *id,
                        status: st.status.as_str(),
                        error: st.error.unwrap_or_default(),
                    });
                }
                _ => left.push(*id),
            }
        }
        let progressed = left.len() < n;
        pending.splice(..n, left);
        if progressed {
            continue;
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(DrainError::WorkerExited(st));
        }
        if Instant::now() > deadline {
            return Err(DrainError::Timeout(pending.len()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Task states read per Redis round trip while waiting for a drain.
const STATE_POLL_CHUNK: usize = 512;

// ---------------------------------------------------------------- parser

#[derive(clap::Args, Debug, Clone)]
pub struct ParserArgs {
    /// Synthetic sandbox days parsed (generated before timing).
    #[arg(long, default_value_t = 10)]
    pub days: u32,
    /// Sandbox messages per day.
    #[arg(long, default_value_t = 2000)]
    pub per_day: u32,
    /// Minimum seconds of parsing (whole passes over the days).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct ParserReport {
    pub messages: usize,
    /// Messages that are alert cards (parse to one or more rows).
    pub cards: usize,
    pub rows: usize,
    pub passes: usize,
    pub seconds: f64,
    pub messages_per_s: f64,
    pub cards_per_s: f64,
    pub rows_per_s: f64,
    pub us_per_card: f64,
}

pub async fn parser(g: &GlobalOpts, a: ParserArgs) -> CliResult {
    let config = g.load_config()?;
    let aliases = config.parser.aliases().map_err(CliError::usage)?;
    let report = tokio::task::spawn_blocking(move || measure_parser(&a, &aliases))
        .await
        .map_err(CliError::failure)?;
    if report.1 {
        emit(&report.0);
        return Ok(EXIT_OK);
    }
    let r = report.0;
    println!(
        "parser: parse_items on one thread, {} messages ({} cards, {} rows) × {} passes in {:.2} s",
        r.messages, r.cards, r.rows, r.passes, r.seconds
    );
    print_table(
        &["", "per second per core"],
        &[
            vec!["cards".into(), format!("{:.0}", r.cards_per_s)],
            vec![
                "messages (cards + others)".into(),
                format!("{:.0}", r.messages_per_s),
            ],
            vec!["rows".into(), format!("{:.0}", r.rows_per_s)],
        ],
    );
    println!("{:.2} µs per card", r.us_per_card);
    Ok(EXIT_OK)
}

fn measure_parser(a: &ParserArgs, aliases: &crate::lark::card::Aliases) -> (ParserReport, bool) {
    use crate::lark::card::{parse_items, parse_message};
    let cfg = crate::sandbox::SandboxConfig {
        seed: 7,
        per_day: a.per_day.max(1),
        ..Default::default()
    };
    let chat = cfg.chats[0].clone();
    let today = crate::lark::window::pacific_date(Utc::now());
    let mut items = Vec::new();
    for k in 1..=i64::from(a.days.clamp(1, 365)) {
        items.extend(crate::sandbox::day_messages(
            &cfg,
            &chat,
            today - chrono::Duration::days(k),
        ));
    }
    let cards = items
        .iter()
        .filter(|m| parse_message(m, aliases).is_ok_and(|rows| !rows.is_empty()))
        .count();
    let rows = parse_items(&items, aliases).rows.len();
    let t = Instant::now();
    let mut passes = 0usize;
    while passes == 0 || t.elapsed().as_secs_f64() < a.seconds {
        std::hint::black_box(parse_items(std::hint::black_box(&items), aliases));
        passes += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    let per_s = |n: usize| (n * passes) as f64 / secs;
    (
        ParserReport {
            messages: items.len(),
            cards,
            rows,
            passes,
            seconds: secs,
            messages_per_s: per_s(items.len()),
            cards_per_s: per_s(cards),
            rows_per_s: per_s(rows),
            us_per_card: secs * 1e6 / (cards * passes).max(1) as f64,
        },
        a.json,
    )
}

// ---------------------------------------------------------------- rate limiter

#[derive(clap::Args, Debug, Clone)]
pub struct RatelimitArgs {
    /// Concurrent clients of the throughput phase.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Admission phase: the limit per second (16 clients contend for it).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Admission phase: the burst.
    #[arg(long, default_value_t = 10)]
    pub burst: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct RatelimitReport {
    pub clients: usize,
    pub seconds: f64,
    pub decisions: u64,
    pub decisions_per_s: f64,
    /// Server time of the script per call (`INFO commandstats`, evalsha).
    pub evalsha_usec_per_call: f64,
    pub evalsha_calls: u64,
    /// Redis process CPU (user + sys, `INFO cpu`) per decision; includes
    /// network handling, and any other client of the same Redis.
    pub redis_cpu_us_per_decision: f64,
    pub admission_clients: usize,
    pub admission_limit_per_s: u32,
    pub admission_burst: u32,
    pub admission_span_s: f64,
    pub admission_decisions: u64,
    pub admitted: u64,
    /// burst + floor(span / interval): the most GCRA may admit in the span.
    pub allowance: u64,
}

const ADMISSION_CLIENTS: usize = 16;

pub async fn ratelimit(g: &GlobalOpts, a: RatelimitArgs) -> CliResult {
    let base = g.load_config()?;
    let mut c = bench_config(&base, "benchrl", 1);
    c.redis.pool_size = a.clients.max(ADMISSION_CLIENTS).max(1);
    c.rate_limits = BTreeMap::from([
        (
            "bench.throughput".to_string(),
            vec![LimitSpec {
                limit: 1000,
                per: HumanDuration(Duration::from_secs(1)),
                burst: 100,
            }],
        ),
        (
            "bench.admission".to_string(),
            vec![LimitSpec {
                limit: a.limit.max(1),
                per: HumanDuration(Duration::from_secs(1)),
                burst: a.burst.max(1),
            }],
        ),
    ]);
    let config = Arc::new(c);
    let result = measure_ratelimit(&config, &a).await;
    delete_namespace(&config, &config.worker.queues).await;
    let r = result?;
    if a.json {
        emit(&r);
        return Ok(EXIT_OK);
    }
    println!(
        "rate limiter (GCRA in Redis): {} clients for {:.1} s; then {} clients on {}/s, burst {}",
        r.clients, r.seconds, r.admission_clients, r.admission_limit_per_s, r.admission_burst
    );
    print_table(
        &["", "value"],
        &[
            vec!["decisions/s".into(), format!("{:.0}", r.decisions_per_s)],
            vec![
                "Redis script time per decision (µs, evalsha)".into(),
                format!("{:.2}", r.evalsha_usec_per_call),
            ],
            vec![
                "Redis CPU per decision (µs, INFO cpu)".into(),
                format!("{:.2}", r.redis_cpu_us_per_decision),
            ],
            vec![
                format!(
                    "admitted in {:.2} s, {} clients",
                    r.admission_span_s, r.admission_clients
                ),
                r.admitted.to_string(),
            ],
            vec![
                "exact allowance (burst + span × rate)".into(),
                r.allowance.to_string(),
            ],
        ],
    );
    println!("note: CONFIG RESETSTAT was sent to Redis (it resets the server's INFO statistics)");
    Ok(EXIT_OK)
}

async fn redis_info(
    pool: &crate::queue::redis_pool::Pool,
    section: &str,
) -> Result<String, CliError> {
    let mut c = pool.get().await.map_err(CliError::failure)?;
    deadpool_redis::redis::cmd("INFO")
        .arg(section)
        .query_async(&mut c)
        .await
        .map_err(CliError::failure)
}

/// `used_cpu_user + used_cpu_sys` in seconds.
fn info_cpu_seconds(info: &str) -> f64 {
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            matches!(k, "used_cpu_user" | "used_cpu_sys").then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

/// `calls` and `usec_per_call` of one command in `INFO commandstats`.
fn info_cmdstat(info: &str, command: &str) -> (u64, f64) {
    let prefix = format!("cmdstat_{command}:");
    let Some(line) = info.lines().find_map(|l| l.trim().strip_prefix(&prefix)) else {
        return (0, 0.0);
    };
    let mut calls = 0;
    let mut per = 0.0;
    for kv in line.split(',') {
        match kv.split_once('=') {
            Some(("calls", v)) => calls = v.parse().unwrap_or(0),
            Some(("usec_per_call", v)) => per = v.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    (calls, per)
}

async fn redis_time_us(pool: &crate::queue::redis_pool::Pool) -> Result<i64, CliError> {
    let mut c = pool.get().await.map_err(CliError::failure)?;
    let (s, us): (i64, i64) = deadpool_redis::redis::cmd("TIME")
        .query_async(&mut c)
        .await
        .map_err(CliError::failure)?;
    Ok(s * 1_000_000 + us)
}

/// `clients` tasks calling `check(key)` until `seconds` pass: (decisions, admitted).
async fn hammer(
    limiter: &RateLimiter,
    key: &'static str,
    clients: usize,
    seconds: f64,
) -> Result<(u64, u64), CliError> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let l = limiter.clone();
        set.spawn(async move {
            let (mut n, mut ok) = (0u64, 0u64);
            while Instant::now() < deadline {
                match l.check(key).await? {
                    Decision::Allowed => ok += 1,
                    Decision::Wait(_) => {}
                }
                n += 1;
            }
            Ok::<_, crate::queue::ratelimit::RateLimitError>((n, ok))
        });
    }
    let (mut n, mut ok) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (a, b) = r.map_err(CliError::failure)?.map_err(CliError::failure)?;
        n += a;
        ok += b;
    }
    Ok((n, ok))
}

async fn measure_ratelimit(
    config: &Arc<AppConfig>,
    a: &RatelimitArgs,
) -> Result<RatelimitReport, CliError> {
    let pool = crate::cli::connect_redis(config).await?;
    let limiter = RateLimiter::new(
        pool.clone(),
        &config.namespace,
        config.rate_limits.clone(),
        false,
    );
    // Load the script and open the pool's connections before measuring.
    hammer(&limiter, "bench.throughput", a.clients, 0.2).await?;

    // 1. Throughput and Redis cost.
    {
        let mut c = pool.get().await.map_err(CliError::failure)?;
        let _: () = deadpool_redis::redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut c)
            .await
            .map_err(CliError::failure)?;
    }
    let cpu0 = info_cpu_seconds(&redis_info(&pool, "cpu").await?);
    let t = Instant::now();
    let (decisions, _) = hammer(&limiter, "bench.throughput", a.clients, a.seconds).await?;
    let elapsed = t.elapsed().as_secs_f64();
    let cpu1 = info_cpu_seconds(&redis_info(&pool, "cpu").await?);
    let (calls, per_call) = info_cmdstat(&redis_info(&pool, "commandstats").await?, "evalsha");

    // 2. Admission under 16 clients, against the exact GCRA allowance.
    let spec = config.rate_limits["bench.admission"][0].clone();
    let interval_us = (spec.per.0.as_micros() / u128::from(spec.limit)).max(1) as i64;
    let t0 = redis_time_us(&pool).await?;
    let (adm_decisions, admitted) =
        hammer(&limiter, "bench.admission", ADMISSION_CLIENTS, a.seconds).await?;
    let t1 = redis_time_us(&pool).await?;
    let span_us = (t1 - t0).max(0);
    let allowance = u64::from(spec.burst) + (span_us / interval_us) as u64;

    Ok(RatelimitReport {
        clients: a.clients,
        seconds: a.seconds,
        decisions,
        decisions_per_s: decisions as f64 / elapsed,
        evalsha_usec_per_call: per_call,
        evalsha_calls: calls,
        redis_cpu_us_per_decision: (cpu1 - cpu0) * 1e6 / decisions.max(1) as f64,
        admission_clients: ADMISSION_CLIENTS,
        admission_limit_per_s: spec.limit,
        admission_burst: spec.burst,
        admission_span_s: span_us as f64 / 1e6,
        admission_decisions: adm_decisions,
        admitted,
        allowance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(quantile(&[7], 0.99), 7);
    }

    #[test]
    fn parses_info_sections() {
        let cpu = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9\r\n";
        assert!((info_cpu_seconds(cpu) - 3.75).abs() < 1e-9);
        let cs = "# Commandstats\r\ncmdstat_get:calls=3,usec=9,usec_per_call=3.00\r\ncmdstat_evalsha:calls=120,usec=600,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n";
        assert_eq!(info_cmdstat(cs, "evalsha"), (120, 5.0));
        assert_eq!(info_cmdstat(cs, "eval"), (0, 0.0));
    }

    #[test]
    fn rss_of_this_process() {
        let m = proc_mem(std::process::id()).expect("linux /proc");
        assert!(m.rss_kb > 0 && m.hwm_kb >= m.rss_kb && m.anon_kb <= m.rss_kb);
    }
}
