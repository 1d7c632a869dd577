//! `alertflow-worker`: consumes task queues. All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    alertflow::cli::exit_quietly_on_broken_pipe();
    let cli = alertflow::cli::worker::WorkerCli::parse();
    let _log = alertflow::telemetry::init(cli.global.log_format);
    alertflow::cli::worker::run(cli).await
}
