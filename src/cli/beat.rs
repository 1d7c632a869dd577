//! `alertflow-beat`: the scheduler process's command line.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::cli::{EXIT_FAILURE, EXIT_USAGE, GlobalOpts};
use crate::queue::beat::Beat;

const AFTER_HELP: &str = "\
Examples:
  alertflow-beat                                  schedules from [[schedules]] in the config
  alertflow-beat --config /etc/alertflow/alertflow.toml --log-format json

Run it on two hosts for high availability: every fire is claimed in Redis
before it is published, so each fire is published exactly once. Fires missed
while no beat ran are handled by each schedule's catch_up policy; with
--state-file (beat.state_file) that still holds after Redis lost its data.
SIGTERM exits between fires (exit 0).";

/// Publish scheduled tasks to RabbitMQ.
#[derive(Parser, Debug)]
#[command(name = "alertflow-beat", version, about, after_help = AFTER_HELP)]
pub struct BeatCli {
    #[command(flatten)]
    pub global: GlobalOpts,
    /// Address of /metrics and /healthz, or `off` (default: beat.metrics_listen).
    #[arg(long, env = "ALERTFLOW_BEAT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// A local file that also keeps each schedule's last fire, so catch-up
    /// survives Redis losing its data (default: beat.state_file).
    #[arg(long, env = "ALERTFLOW_BEAT_STATE_FILE", value_name = "PATH")]
    pub state_file: Option<std::path::PathBuf>,
}

pub async fn run(cli: BeatCli) -> ExitCode {
    let (config, registry) = match cli.global.load_with_registry() {
        Ok((c, r)) => ((*c).clone(), r),
        Err(e) => {
            eprintln!("error: {}", e.message);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut queue = config.queue;
    if let Some(m) = cli.metrics_listen {
        queue.beat.metrics_listen = m;
    }
    if let Some(f) = cli.state_file {
        queue.beat.state_file = Some(f);
    }
    let beat = match Beat::new(Arc::new(queue), Arc::new(registry)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if beat.schedules().is_empty() {
        eprintln!("error: no enabled [[schedules]] in the configuration; nothing to publish");
        return ExitCode::from(EXIT_USAGE);
    }
    let shutdown = CancellationToken::new();
    crate::cli::worker::install_signal_handlers(shutdown.clone(), "stopping between fires");
    crate::cli::worker::spawn_watchdog(beat.health(), shutdown.clone());
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    match beat.run(shutdown).await {
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
