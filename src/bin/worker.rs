//! `alertflow-worker`: consumes task queues. All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = alertflow::cli::worker::WorkerCli::parse();
    alertflow::telemetry::init(cli.global.log_format);
    alertflow::cli::worker::run(cli).await
}
