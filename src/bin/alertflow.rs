//! `alertflow`: the operator CLI. All logic lives in `alertflow::cli`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = alertflow::cli::Cli::parse();
    alertflow::telemetry::init(cli.global.log_format);
    alertflow::cli::run(cli).await
}
