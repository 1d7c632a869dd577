//! `alertflow bench noop`: no-op throughput through the real publisher and
//! worker runtime (confirms, acks, task state and metrics all on), beside the
//! broker's raw ceiling measured in the same run by a bare lapin publisher
//! (confirms, same window) and a bare consumer acking each message.
//! Every run uses its own namespace and removes it afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, connect_broker, connect_redis};
use crate::config::AppConfig;
use crate::queue::context::Services;
use crate::queue::message::Envelope;
use crate::queue::publisher::Publisher;
use crate::queue::state::{TaskState, TaskStatus};
use crate::queue::task::Registry;
use crate::queue::worker::{Worker, WorkerOptions};

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// No-op tasks: enqueue and drain rates beside the broker's raw ceiling.
    #[command(
        after_help = "Examples:\n  alertflow bench noop --tasks 50000 --concurrency 256\n  alertflow bench noop --tasks 20000 --rounds 3 --json"
    )]
    Noop(NoopArgs),
    /// A backfill against the sandbox (50 requests/s quota) into MariaDB,
    /// beside the quota floor and a bare multi-row INSERT.
    #[command(
        after_help = "Examples:\n  alertflow bench pipeline --days 3 --per-day 2000\n  alertflow bench pipeline --days 30 --per-day 1000 --json"
    )]
    Pipeline(crate::cli::bench_pipeline::PipelineArgs),
    /// Enqueue → task start latency at a paced offered load (p50/p99/max).
    #[command(
        after_help = "Examples:\n  alertflow bench latency --rate 100,1000 --seconds 10\n  alertflow bench latency --rate 1000 --json"
    )]
    Latency(crate::cli::bench_more::LatencyArgs),
    /// RSS of an `alertflow-worker` process, idle and draining N tasks.
    #[command(after_help = "Example:\n  alertflow bench memory --tasks 20000 --json")]
    Memory(crate::cli::bench_more::MemoryArgs),
    /// Cards parsed per second on one core (parse_items over sandbox days).
    #[command(after_help = "Example:\n  alertflow bench parser --days 10 --per-day 2000")]
    Parser(crate::cli::bench_more::ParserArgs),
    /// Rate limiter: decisions/s, Redis CPU per decision, admitted vs allowance.
    /// Sends CONFIG RESETSTAT to Redis (resets its INFO statistics).
    #[command(after_help = "Example:\n  alertflow bench ratelimit --clients 64 --seconds 5 --json")]
    Ratelimit(crate::cli::bench_more::RatelimitArgs),
    /// Overview latency of `alertflow web` (p50/p95/p99/max) over seeded
    /// task states, workers, activity and 30 days of runs.
    #[command(
        after_help = "Examples:\n  alertflow bench web\n  alertflow bench web --requests 1000 --json"
    )]
    Web(crate::cli::bench_web::WebArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct NoopArgs {
    /// Tasks to enqueue and drain per round.
    #[arg(long, default_value_t = 50_000)]
    pub tasks: usize,
    /// Worker concurrency while draining.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Repeat each measurement and report medians.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Task body: `noop`, or `incr` (`bench-incr`: one Redis INCR, as the Celery comparison).
    #[arg(long, value_enum, default_value_t = crate::cli::bench_more::BenchTask::Noop)]
    pub task: crate::cli::bench_more::BenchTask,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct NoopReport {
    pub task: &'static str,
    pub tasks: usize,
    pub concurrency: usize,
    pub rounds: usize,
    pub enqueue_per_s: f64,
    pub drain_per_s: f64,
    pub ceiling_publish_per_s: f64,
    pub ceiling_consume_per_s: f64,
    pub enqueue_ratio: f64,
    pub drain_ratio: f64,
}

pub async fn run(g: &GlobalOpts, cmd: BenchCommand) -> CliResult {
    match cmd {
        BenchCommand::Noop(a) => {
            let config = g.load_config()?;
            let report = bench_noop(&config, &a).await?;
            print_report(&report, a.json);
            Ok(EXIT_OK)
        }
        BenchCommand::Pipeline(a) => crate::cli::bench_pipeline::run(g, a).await,
        BenchCommand::Latency(a) => crate::cli::bench_more::latency(g, a).await,
        BenchCommand::Memory(a) => crate::cli::bench_more::memory(g, a).await,
        BenchCommand::Parser(a) => crate::cli::bench_more::parser(g, a).await,
        BenchCommand::Ratelimit(a) => crate::cli::bench_more::ratelimit(g, a).await,
        BenchCommand::Web(a) => crate::cli::bench_web::run(g, a).await,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("rates are finite"));
    v[v.len() / 2]
}

fn bar(len: usize, msg: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} {per_sec}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// Run the no-op benchmark and return its figures.
pub async fn bench_noop(base: &AppConfig, a: &NoopArgs) -> Result<NoopReport, CliError> {
    let rounds = a.rounds.max(1);
    let mut config = base.clone();
    config.namespace = format!(
        "{}-bench-{}",
        base.namespace,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    config.worker.concurrency = a.concurrency.max(1);
    config.worker.metrics_listen = "off".into();
    config.worker.queues = vec!["bench".into()];
    let config = Arc::new(config);
    connect_redis(&config).await?;
    let conn = connect_broker(&config, "bench").await?;
    let prefetch =
        (a.concurrency * config.worker.prefetch_multiplier).min(u16::MAX as usize) as u16;
    let sample = a.task.envelope(&config.namespace).to_json();

    let (mut pubs, mut cons, mut enqs, mut drains) = (vec![], vec![], vec![], vec![]);
    let outcome = async {
        for round in 0..rounds {
            let quiet = a.json;
            let tag = format!("round {}/{rounds}", round + 1);
            let (p, c) =
                raw_ceiling(&conn, &config, &sample, a.tasks, prefetch, &tag, quiet).await?;
            pubs.push(p);
            cons.push(c);
            let (e, d) = alertflow_round(&config, a.task, a.tasks, &tag, quiet).await?;
            enqs.push(e);
            drains.push(d);
        }
        Ok::<(), CliError>(())
    }
    .await;
    delete_namespace(&config, &config.worker.queues).await;
    let _ = conn.close(200, "bench done".into()).await;
    outcome?;
    let (p, c, e, d) = (median(pubs), median(cons), median(enqs), median(drains));
    Ok(NoopReport {
        task: a.task.name(),
        tasks: a.tasks,
        concurrency: a.concurrency,
        rounds,
        enqueue_per_s: e,
        drain_per_s: d,
        ceiling_publish_per_s: p,
        ceiling_consume_per_s: c,
        enqueue_ratio: e / p,
        drain_ratio: d / c,
    })
}

/// A bare publisher (confirms, same window) and a bare consumer acking each
/// message, on a queue of their own.
async fn raw_ceiling(
    conn: &Connection,
    config: &AppConfig,
    body: &[u8],
    n: usize,
    prefetch: u16,
    tag: &str,
    quiet: bool,
) -> Result<(f64, f64), CliError> {
    let queue = format!("{}.raw", config.namespace);
    let ch = conn.create_channel().await.map_err(CliError::failure)?;
    ch.queue_declare(
        queue.clone().into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .map_err(CliError::failure)?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(CliError::failure)?;
    let pb = bar(n, &format!("raw publish {tag}"), quiet);
    let window = config.broker.publish_window;
    let mut in_flight = std::collections::VecDeque::with_capacity(window);
    let start = Instant::now();
    for _ in 0..n {
        if in_flight.len() >= window {
            let c: lapin::PublisherConfirm = in_flight.pop_front().expect("non-empty");
            c.await.map_err(CliError::failure)?;
            pb.inc(1);
        }
        let props = BasicProperties::default().with_delivery_mode(2);
        let c = ch
            .basic_publish(
                "".into(),
                queue.clone().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                props,
            )
            .await
            .map_err(CliError::failure)?;
        in_flight.push_back(c);
    }
    while let Some(c) = in_flight.pop_front() {
        c.await.map_err(CliError::failure)?;
        pb.inc(1);
    }
    let publish_rate = n as f64 / start.elapsed().as_secs_f64();
    pb.finish_and_clear();

    let cch = conn.create_channel().await.map_err(CliError::failure)?;
    cch.basic_qos(prefetch, BasicQosOptions { global: false })
        .await
        .map_err(CliError::failure)?;
    let pb = bar(n, &format!("raw consume {tag}"), quiet);
    let start = Instant::now();
    let mut consumer = cch
        .basic_consume(
            queue.clone().into(),
            "raw-ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(CliError::failure)?;
    let mut got = 0usize;
    while got < n {
        let Some(d) = consumer.next().await else {
            return Err(CliError::failure("raw consumer ended early"));
        };
        let d = d.map_err(CliError::failure)?;
        d.ack(BasicAckOptions::default())
            .await
            .map_err(CliError::failure)?;
        got += 1;
        pb.inc(1);
    }
    let consume_rate = n as f64 / start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let _ = cch.close(200, "done".into()).await;
    ch.queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .map_err(CliError::failure)?;
    let _ = ch.close(200, "done".into()).await;
    Ok((publish_rate, consume_rate))
}

/// Enqueue `n` no-op tasks through the normal publisher (recording `queued`
/// states), then drain them with the normal worker runtime.
async fn alertflow_round(
    config: &Arc<AppConfig>,
    task: crate::cli::bench_more::BenchTask,
    n: usize,
    tag: &str,
    quiet: bool,
) -> Result<(f64, f64), CliError> {
    let (services, state_task) =
        Services::new(Arc::new(config.queue.clone())).map_err(CliError::failure)?;
    let registry = Arc::new(
        Registry::new()
            .with(crate::tasks::noop::Noop)
            .with(crate::cli::bench_incr::BenchIncr),
    );
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
    let envs: Vec<Envelope> = (0..n)
        .map(|_| {
            let mut e = task.envelope(&config.namespace);
            registry.apply_policy(&mut e, config, Some("bench"));
            e
        })
        .collect();
    let pb = bar(n, &format!("alertflow enqueue {tag}"), quiet);
    let start = Instant::now();
    for e in &envs {
        services
            .state_writer
            .record(TaskState::of(e, TaskStatus::Queued));
    }
    publisher
        .publish_many(envs, |k| {
            if k % 256 == 0 {
                pb.set_position(k as u64);
            }
        })
        .await
        .map_err(CliError::failure)?;
    let enqueue_rate = n as f64 / start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let _ = conn.close(200, "done".into()).await;

    let pb = bar(n, &format!("alertflow drain {tag}"), quiet);
    let shutdown = CancellationToken::new();
    let worker = Worker::new(
        services.clone(),
        registry,
        WorkerOptions::from_config(config),
    );
    let metrics = services.metrics.clone();
    let start = Instant::now();
    let stop = shutdown.clone();
    let run = tokio::spawn(async move { worker.run(stop).await });
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = metrics
            .succeeded
            .with_label_values(&[task.name(), "bench", metrics.hostname.as_str()])
            .get() as usize;
        pb.set_position(done as u64);
        if done >= n {
            break;
        }
        if Instant::now() > deadline || run.is_finished() {
            shutdown.cancel();
            return Err(CliError::failure(format!("drain stalled at {done}/{n}")));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_rate = n as f64 / start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    shutdown.cancel();
    let _ = run.await;
    drop(services);
    let _ = tokio::time::timeout(Duration::from_secs(10), state_task).await;
    Ok((enqueue_rate, drain_rate))
}

pub use crate::queue::admin::{delete_namespace, delete_namespace_keys};

fn print_report(r: &NoopReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("report serializes"));
        return;
    }
    println!(
        "no-op benchmark ({}): {} tasks, concurrency {}, {} round(s), medians",
        r.task, r.tasks, r.concurrency, r.rounds
    );
    crate::cli::print_table(
        &["", "alertflow/s", "raw ceiling/s", "ratio"],
        &[
            vec![
                "enqueue (confirmed)".into(),
                format!("{:.0}", r.enqueue_per_s),
                format!("{:.0}", r.ceiling_publish_per_s),
                format!("{:.2}", r.enqueue_ratio),
            ],
            vec![
                "drain (acked, state, metrics)".into(),
                format!("{:.0}", r.drain_per_s),
                format!("{:.0}", r.ceiling_consume_per_s),
                format!("{:.2}", r.drain_ratio),
            ],
        ],
    );
}
