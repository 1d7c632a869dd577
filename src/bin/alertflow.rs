//! `alertflow`: the operator CLI. All logic lives in `alertflow::cli`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    alertflow::cli::exit_quietly_on_broken_pipe();
    let cli = alertflow::cli::Cli::parse();
    let _log = alertflow::telemetry::init_with_default(
        cli.global.log_format,
        alertflow::cli::default_log_filter(&cli.command),
    );
    alertflow::cli::run(cli).await
}
