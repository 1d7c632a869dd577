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

/// The filter when neither `ALERTFLOW_LOG` nor `RUST_LOG` is set.
pub const DEFAULT_FILTER: &str = "info,lapin=warn,amq_protocol=warn";

/// Install the global subscriber; logs go to standard error.
pub fn init(format: LogFormat) {
    init_with_default(format, DEFAULT_FILTER)
}

/// [`init`] with another default filter (interactive commands that draw
/// progress bars default to `warn`).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter = std::env::var("ALERTFLOW_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .map(EnvFilter::new)
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match (format, under_journald) {
        (LogFormat::Json, _) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        (LogFormat::Pretty, true) => builder.without_time().with_ansi(false).try_init(),
        (LogFormat::Pretty, false) => builder.try_init(),
    };
}
