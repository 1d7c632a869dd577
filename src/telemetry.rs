//! Logging set-up: `pretty` or `json` lines, filtered by `ALERTFLOW_LOG`
//! (RUST_LOG syntax, default `info`). Under systemd (journald adds its own
//! timestamps) the pretty format drops the timestamp.
//!
//! A JSON line is one object: `timestamp`, `level`, `message`, `target`, the
//! event's fields, `span` (the innermost span's fields) and `spans` (every
//! enclosing span, outermost first), so a task's lines carry `task.id`,
//! `task.name`, `attempt`, `run_id` and `queue` even from inside a nested span.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// The filter when neither `ALERTFLOW_LOG` nor `RUST_LOG` is set. lapin's
/// own lines are off: each broker error reaches alertflow as an error and is
/// logged once, in alertflow's words (`ALERTFLOW_LOG=info,lapin=debug` shows them).
pub const DEFAULT_FILTER: &str = "info,lapin=off,amq_protocol=off";

/// Keeps the background log writer alive; dropping it flushes what is
/// buffered. Hold it for the life of `main`.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Install the global subscriber; logs go to standard error.
pub fn init(format: LogFormat) -> LogGuard {
    init_with_default(format, DEFAULT_FILTER)
}

/// [`init`] with another default filter (interactive commands that draw
/// progress bars default to `warn`).
///
/// Lines are handed to a background thread that writes them to standard
/// error, so logging never blocks the runtime (a stalled reader of the pipe
/// drops lines instead of stalling tasks) and never panics (a closed pipe,
/// as in `alertflow-worker 2>&1 | head -1`, loses the lines, not the
/// process). Colours only when standard error is a terminal.
pub fn init_with_default(format: LogFormat, default_filter: &str) -> LogGuard {
    use std::io::IsTerminal;
    let filter = std::env::var("ALERTFLOW_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .map(EnvFilter::new)
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::stderr().is_terminal() && !under_journald;
    // The channel is preallocated: its default 128,000 lines cost 4.5 MB of
    // RSS in every process; 8,192 lines absorb any burst a worker logs.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(8192)
        .lossy(true)
        .thread_name("alertflow-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match (format, under_journald) {
        (LogFormat::Json, _) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        (LogFormat::Pretty, true) => builder.without_time().try_init(),
        (LogFormat::Pretty, false) => builder.try_init(),
    };
    LogGuard(installed.is_ok().then_some(guard))
}
