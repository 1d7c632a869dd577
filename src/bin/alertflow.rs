//! `alertflow`: the operator CLI. All logic lives in `alertflow::cli`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // `alertflow queues | head` closes stdout early: exit quietly like
    // other Unix tools instead of panicking (unsafe SIGPIPE handling is
    // forbidden in this crate).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = alertflow::cli::Cli::parse();
    // Commands that draw progress bars run workers in-process: keep their
    // logs to warnings unless asked.
    let quiet = matches!(
        cli.command,
        alertflow::cli::Command::Demo(_) | alertflow::cli::Command::Bench(_)
    );
    let default = if quiet {
        "warn"
    } else {
        alertflow::telemetry::DEFAULT_FILTER
    };
    alertflow::telemetry::init_with_default(cli.global.log_format, default);
    alertflow::cli::run(cli).await
}
