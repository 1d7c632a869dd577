//! `alertflow demo`: the whole pipeline on this machine with no
//! configuration. Starts the sandbox (synthetic Lark history) and a worker in
//! this process, creates the `alertflow_demo` database on the configured
//! MySQL/MariaDB, runs three synthetic days through RabbitMQ with progress
//! bars, and prints the last day's report.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as Days, Utc};
use tokio_util::sync::CancellationToken;

use crate::cli::run::{DayPlan, print_report, print_summary, publish_days, wait_days};
use crate::cli::{
    CliError, CliResult, EXIT_OK, EXIT_TASK_FAILED, GlobalOpts, connect_broker, connect_redis,
};
use crate::config::{Secret, SinkMode};
use crate::lark::window::pacific_date;
use crate::queue::context::Services;
use crate::queue::worker::{Worker, WorkerOptions};
use crate::recommendation::sort_report;
use crate::sandbox::SandboxConfig;
use crate::sink::schema::Dialect;
use crate::sink::starrocks::SqlSink;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Synthetic messages per day.
    #[arg(long, default_value_t = 400)]
    pub per_day: u32,
    /// Days to run (ending yesterday).
    #[arg(long, default_value_t = 3)]
    pub days: u32,
}

/// Where the demo keeps its data: the configured services, with a
/// namespace and a database of its own (`alertflow web --demo` reads them).
/// Without schedules of its own, the demo has the example config's (a
/// nightly run, today's hourly run, reconcile), so the dashboard shows when
/// a beat would fire them.
pub fn demo_config(base: &crate::config::AppConfig) -> crate::config::AppConfig {
    let mut config = base.clone();
    if config.schedules.is_empty()
        && let Ok(example) = crate::config::AppConfig::from_toml(
            include_str!("../../deploy/alertflow.toml"),
            "deploy/alertflow.toml",
        )
    {
        config.schedules = example.queue.schedules.clone();
    }
    config.namespace = format!("{}-demo", base.namespace);
    config.mysql.database = "alertflow_demo".into();
    config.sink.dialect = Dialect::Mysql;
    config.sink.mode = SinkMode::Sql;
    config
}

pub async fn demo(g: &GlobalOpts, a: DemoArgs) -> CliResult {
    let base = g.load_config()?;
    let mut config = demo_config(&base);
    config.sink.batch_interval = crate::config::HumanDuration(Duration::from_secs(1));
    config.worker.queues = vec!["default".into(), "lark".into(), "db".into()];
    config.worker.concurrency = config.worker.concurrency.max(16);
    config.worker.metrics_listen = "off".into();

    println!(
        "alertflow demo: sandbox Lark → RabbitMQ → workers → MariaDB ({}), namespace {}",
        config.mysql.database, config.namespace
    );
    println!("checking services...");
    connect_redis(&config).await?;
    let conn = connect_broker(&config, "demo").await?;
    let _ = conn.close(200, "checked".into()).await;
    let sink = SqlSink::new(&config);
    sink.drop_database().await.map_err(|e| {
        CliError::failure(format!(
            "cannot reach MySQL/MariaDB at {}:{} as {}: {e}\n  start it with `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd` (or `docker compose up -d`)",
            config.mysql.host, config.mysql.port, config.mysql.user
        ))
    })?;
    sink.migrate().await.map_err(CliError::failure)?;
    println!(
        "  RabbitMQ, Redis and MariaDB are up; database {} created",
        config.mysql.database
    );

    let sandbox_cfg = SandboxConfig {
        seed: 2026,
        per_day: a.per_day,
        ..SandboxConfig::default()
    };
    let sandbox = crate::sandbox::spawn(sandbox_cfg.clone())
        .await
        .map_err(CliError::failure)?;
    config.lark.base_url = sandbox.base_url.clone();
    config.lark.app_id = sandbox_cfg.app_id.clone();
    config.lark.app_secret = Secret::new(sandbox_cfg.app_secret.clone());
    config.lark.chat_id = sandbox_cfg.chats[0].clone();
    println!(
        "  sandbox Lark API at {} ({} messages/day)",
        sandbox.base_url, a.per_day
    );
    let config = Arc::new(config);

    let (services, writer) =
        Services::new(Arc::new(config.queue.clone())).map_err(CliError::usage)?;
    let shutdown = CancellationToken::new();
    let registry = crate::tasks::registry(&config, &crate::tasks::Shared::of(&services))?;
    let worker = Worker::new(
        services.clone(),
        Arc::new(registry),
        WorkerOptions::from_config(&config),
    );
    let stop = shutdown.clone();
    let worker_task = tokio::spawn(async move { worker.run(stop).await });

    let today = pacific_date(Utc::now());
    let plans: Vec<DayPlan> = (1..=a.days.clamp(1, 30) as i64)
        .rev()
        .map(|k| DayPlan {
            date: today - Days::days(k),
            until_now: false,
        })
        .collect();
    println!("running {} days through the queue:", plans.len());
    let published = publish_days(&config, &plans).await?;
    let waited = wait_days(&config, &published, Some(Duration::from_secs(600)), false).await;
    shutdown.cancel();
    let _ = worker_task.await;
    drop(services);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    let (outcomes, _) = waited?;
    println!();
    print_summary(&outcomes);
    let last = published.last().expect("at least one day").date.clone();
    let mut recs = sink
        .recommendations(&last)
        .await
        .map_err(CliError::failure)?;
    sort_report(&mut recs);
    println!();
    print_report(&last, &recs, &[]);
    let stats = sandbox.stats();
    println!(
        "\nLark API calls: {} (rejected by the quota: {}); tokens fetched: {}",
        stats.list_messages.requests, stats.list_messages.rate_limited, stats.tenant_token.requests
    );
    sink.close().await;
    println!(
        "\nWhat to try next:\n  \
         alertflow report {last} --database alertflow_demo\n  \
         alertflow runs --database alertflow_demo   the runs, from the database run ledger\n  \
         alertflow web --demo                       the dashboard over the demo's data (http://127.0.0.1:9800/)\n  \
         alertflow sandbox                          a Lark stand-in you can point workers at\n  \
         alertflow-worker & alertflow run --backfill 3 --wait   the same pipeline with your own worker\n  \
         alertflow queues / workers / dead list     what the queue is doing\n  \
         ./scripts/test                             the test suite"
    );
    Ok(if outcomes.iter().all(|o| o.status == "done") {
        EXIT_OK
    } else {
        EXIT_TASK_FAILED
    })
}
