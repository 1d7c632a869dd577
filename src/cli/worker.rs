//! `alertflow-worker`: the worker process's command line, signals and
//! systemd notifications.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::{EXIT_FAILURE, EXIT_USAGE, GlobalOpts};
use crate::config::AppConfig;
use crate::queue::context::Services;
use crate::queue::worker::{Worker, WorkerOptions};

const AFTER_HELP: &str = "\
Examples:
  alertflow-worker                                  all queues, worker.concurrency from the config
  alertflow-worker --queues lark,db --concurrency 8
  alertflow-worker -Q influx -c 2 --metrics-listen 127.0.0.1:9809 --log-format json

Signals: SIGTERM or SIGINT stops consuming and lets running tasks finish
within worker.shutdown_timeout (exit 0); a second signal exits at once
(exit 130; unacked tasks are redelivered). Under systemd (Type=notify) it
sends READY=1 when consuming, STOPPING=1 on SIGTERM and WATCHDOG=1 while healthy.";

/// Run tasks from RabbitMQ queues.
#[derive(Parser, Debug)]
#[command(name = "alertflow-worker", version, about, after_help = AFTER_HELP)]
pub struct WorkerCli {
    #[command(flatten)]
    pub global: GlobalOpts,
    /// Queue families to consume, comma separated (default: worker.queues).
    #[arg(short = 'Q', long, value_delimiter = ',')]
    pub queues: Option<Vec<String>>,
    /// Tasks run at once (default: worker.concurrency).
    #[arg(short = 'c', long)]
    pub concurrency: Option<usize>,
    /// Address of /metrics and /healthz, or `off` (default: worker.metrics_listen).
    #[arg(long, env = "ALERTFLOW_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

/// Cancel `token` on the first SIGTERM/SIGINT, logging `stopping` (what the
/// process does now); exit at once on the second.
pub fn install_signal_handlers(token: CancellationToken, stopping: &'static str) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("signal received: {stopping} (send it again to exit at once)");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        token.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        warn!("second signal: exiting now; unacked tasks will be redelivered");
        std::process::exit(130);
    });
}

/// Under systemd with `WatchdogSec=` (`WATCHDOG_USEC` set), send `WATCHDOG=1`
/// every half period while `health` is healthy (connected and consuming), so
/// a wedged or disconnected process is restarted. Stops at `stop`.
pub fn spawn_watchdog(
    health: std::sync::Arc<crate::queue::metrics::Health>,
    stop: CancellationToken,
) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(async move {
        let every = period / 2;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if health.healthy() {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    });
}

pub async fn run(cli: WorkerCli) -> ExitCode {
    // The registry check runs below, with the registry this worker runs
    // (its clients are built once).
    let mut config = match AppConfig::load(cli.global.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(q) = cli.queues {
        config.worker.queues = q;
    }
    if let Some(c) = cli.concurrency {
        config.worker.concurrency = c;
    }
    if let Some(m) = cli.metrics_listen {
        config.worker.metrics_listen = m;
    }
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let config = Arc::new(config);
    let (services, state_task) = match Services::new(Arc::new(config.queue.clone())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Pipeline health: statuses always (`alertflow health` reads them),
    // notifications when `[notify]` has receivers.
    if let Err(e) = crate::notify::health::HealthNotifier::attach(&config, &services) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let shutdown = CancellationToken::new();
    install_signal_handlers(
        shutdown.clone(),
        "finishing in-flight tasks (or giving up connecting)",
    );
    let registry = match crate::tasks::registry(&config, &crate::tasks::Shared::of(&services)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = registry.validate_config(&config) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let worker = Worker::new(
        services.clone(),
        Arc::new(registry),
        WorkerOptions::from_config(&config),
    )
    .on_ready(|| {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    });
    spawn_watchdog(worker.health(), shutdown.clone());
    crate::watchdog::spawn_ticker(
        config.clone(),
        services.redis.clone(),
        services.worker_id.clone(),
        shutdown.clone(),
    );
    let result = worker.run(shutdown).await;
    drop(worker);
    drop(services);
    // Flush the task states still buffered.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), state_task).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_config() => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
