//! `alertflow-beat`: publishes scheduled tasks. All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    alertflow::cli::exit_quietly_on_broken_pipe();
    let cli = alertflow::cli::beat::BeatCli::parse();
    let _log = alertflow::telemetry::init(cli.global.log_format);
    alertflow::cli::beat::run(cli).await
}
