//! The operator CLI (`alertflow`) and the worker's command line.
//!
//! Exit codes, for scripts: 0 success; 1 failure (a service unreachable, an
//! operation failed); 2 usage or configuration error; 3 a waited-for task
//! ended failed or dead-lettered; 4 gave up waiting.

pub mod beat;
pub mod bench;
pub mod bench_incr;
pub mod bench_more;
pub mod bench_pipeline;
pub mod bench_web;
pub mod check;
pub mod checks;
pub mod completions;
pub mod dead;
pub mod demo;
pub mod digest;
pub mod enqueue;
pub mod fetch;
pub mod inspect;
pub mod notifications;
pub mod notify;
pub mod parse;
pub mod reconcile;
pub mod run;
pub mod run_progress;
pub mod runs;
pub mod sandbox;
pub mod schedule;
pub mod silence;
pub mod web;
pub mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::{AppConfig, ConfigError};
use crate::queue::task::Registry;
use crate::telemetry::LogFormat;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_TASK_FAILED: u8 = 3;
pub const EXIT_TIMEOUT: u8 = 4;

/// An error with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn failure(e: impl std::fmt::Display) -> CliError {
        CliError {
            code: EXIT_FAILURE,
            message: e.to_string(),
        }
    }
    pub fn usage(e: impl std::fmt::Display) -> CliError {
        CliError {
            code: EXIT_USAGE,
            message: e.to_string(),
        }
    }
    /// A failed write to standard output. A reader that went away (`alertflow
    /// man | head`) ends the command quietly with 141, as `SIGPIPE` would.
    pub fn write(e: std::io::Error) -> CliError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError {
                code: EXIT_BROKEN_PIPE,
                message: String::new(),
            }
        } else {
            CliError::failure(format!("writing the output: {e}"))
        }
    }
}

/// Exit status of a process whose output pipe closed (128 + SIGPIPE).
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// Make a closed standard output or error end the process quietly with 141
/// instead of a panic (exit 101): `println!` and `eprintln!` panic on a
/// broken pipe, and ignoring `SIGPIPE` needs `unsafe`, which this crate
/// forbids. Every binary installs it first.
pub fn exit_quietly_on_broken_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("Broken pipe") {
            std::process::exit(i32::from(EXIT_BROKEN_PIPE));
        }
        default_hook(info);
    }));
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::usage(e)
    }
}

impl From<crate::tasks::SetupError> for CliError {
    fn from(e: crate::tasks::SetupError) -> Self {
        CliError::usage(e)
    }
}

pub type CliResult = Result<u8, CliError>;

/// Options every command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalOpts {
    /// Config file (default: $ALERTFLOW_CONFIG, else /etc/alertflow/alertflow.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "ALERTFLOW_LOG_FORMAT",
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
}

impl GlobalOpts {
    /// Load and validate the config: the file's own rules and what only the
    /// task registry can check (see [`crate::tasks::validate_config`]). Every
    /// binary starts with this, and `check-config` runs exactly this.
    pub fn load_config(&self) -> Result<Arc<AppConfig>, CliError> {
        Ok(self.load_with_registry()?.0)
    }

    /// [`GlobalOpts::load_config`], keeping the task registry it checked the
    /// config with, for commands that look tasks up (its clients are built
    /// once per process, not once per check).
    pub fn load_with_registry(&self) -> Result<(Arc<AppConfig>, Registry), CliError> {
        let config = AppConfig::load(self.config.as_deref())?;
        let registry = crate::tasks::lookup_registry(&config)?;
        registry.validate_config(&config)?;
        Ok((Arc::new(config), registry))
    }
}

const AFTER_HELP: &str = "\
Examples:
  alertflow demo                                  the whole pipeline on this machine
  alertflow run --backfill 7 --wait               fetch, parse, insert, recommend the last 7 days
  alertflow report 2026-03-10                     a day's recommendations
  alertflow enqueue noop                          publish one no-op task, print its id
  alertflow enqueue sleep --args '{\"ms\":500}' --wait
  alertflow status 3f2a...                        show a task's state
  alertflow queues --json                         ready/unacked/consumers per queue
  alertflow workers                               live workers from their heartbeats
  alertflow dead list                             what is in the dead-letter queue
  alertflow dead replay --all                     send every dead letter back to its queue
  alertflow purge lark --yes                      empty alertflow.lark
  alertflow schedule list --next 5                next fires of each schedule (local and UTC)
  alertflow bench noop --tasks 100000 --concurrency 256
  alertflow check-config --connect                validate the config, reach every service
  alertflow completions bash                      shell completions (also zsh, fish)

Exit codes: 0 ok, 1 failure, 2 usage/config error, 3 task failed, 4 timed out.
Environment: ALERTFLOW_CONFIG, ALERTFLOW_BROKER_URL, ALERTFLOW_REDIS_URL, ALERTFLOW_NAMESPACE,
ALERTFLOW_TLS_CA_FILE, ALERTFLOW_LOG (filter), ALERTFLOW_LOG_FORMAT, LARK_APP_ID, LARK_APP_SECRET, LARK_CHAT_ID,
STARROCKS_HOST/PORT/USER/PASSWORD.";

/// alertflow: run and operate the alert pipeline's task queue.
#[derive(Parser, Debug)]
#[command(name = "alertflow", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Publish one task (with publisher confirms) and print its id.
    #[command(
        after_help = "Examples:\n  alertflow enqueue noop\n  alertflow enqueue fetch-day --args '{\"date\":\"2026-03-10\"}' --wait\n  alertflow enqueue sleep --args '{\"ms\":100}' --countdown 30"
    )]
    Enqueue(enqueue::EnqueueArgs),
    /// Show a task's state.
    #[command(
        after_help = "Example:\n  alertflow status 0b9c6f1e-8a3e-4a55-9d1f-2f1f0b2d3c4e --json"
    )]
    Status(enqueue::StatusArgs),
    /// Ready, unacked and consumers per queue.
    #[command(after_help = "Example:\n  alertflow queues --json")]
    Queues(inspect::QueuesArgs),
    /// Live workers, from their Redis heartbeats.
    #[command(after_help = "Example:\n  alertflow workers --json")]
    Workers(inspect::WorkersArgs),
    /// Inspect, replay or purge the dead-letter queue.
    #[command(subcommand)]
    Dead(dead::DeadCommand),
    /// Remove every ready message from a queue.
    #[command(
        after_help = "Examples:\n  alertflow purge lark          (asks to type the queue name)\n  alertflow purge alertflow.db --yes"
    )]
    Purge(inspect::PurgeArgs),
    /// Run the whole pipeline on this machine: sandbox Lark, RabbitMQ, a worker, MariaDB.
    #[command(after_help = "Example:\n  alertflow demo\n  alertflow demo --days 5 --per-day 1000")]
    Demo(demo::DemoArgs),
    /// Process days (fetch → parse → insert → recommend) through the queue.
    #[command(
        after_help = "Examples:\n  alertflow run                        yesterday\n  alertflow run 2026-03-10             one day\n  alertflow run 2026-03-10 2026-03-11  several days\n  alertflow run --backfill 7 --wait    the last 7 days, with progress bars\n  alertflow run --catch-up             yesterday + today so far\n  alertflow run --today --local        today so far, in this process (no RabbitMQ)\n\nExit codes: 0 all days done, 2 bad arguments (nothing published), 3 a day failed, 4 timed out."
    )]
    Run(run::RunArgs),
    /// A day's recommendations: severity, counts, noisy alerts, unmapped names.
    #[command(after_help = "Examples:\n  alertflow report 2026-03-10\n  alertflow report --json")]
    Report(run::ReportArgs),
    /// A date's alert digest (volume against the 7 days before, noisy
    /// alerts, new names, names not in the catalogue, busiest clusters);
    /// sent to `[digest] receivers` once per date, by the `digest` task
    /// after `recommend` or by this command.
    #[command(
        after_help = "Examples:\n  alertflow digest --dry-run                 yesterday's, printed only\n  alertflow digest 2026-03-08 --dry-run --json\n  alertflow digest 2026-03-08                send it (unless already sent)\n  alertflow digest 2026-03-08 --database alertflow_demo --dry-run\n\nExit codes: 0 printed (and sent, or already sent), 1 failed, 2 bad DATE or config."
    )]
    Digest(digest::DigestArgs),
    /// Find days whose recommendations are missing or stale and runs that
    /// stopped with their Redis progress gone (from the database run
    /// ledger), and publish what repairs them: a `recommend` per day, a
    /// `fetch-day` re-drive per run. Beat runs the same as the `reconcile` task.
    #[command(
        after_help = "Examples:\n  alertflow reconcile --dry-run\n  alertflow reconcile --since 30d\n  alertflow reconcile --since 2d --stall-after 5m --json"
    )]
    Reconcile(reconcile::ReconcileCliArgs),
    /// The runs of the last days from the database run ledger: pages
    /// written of the total, messages, rows, skips by reason, when the
    /// date's recommendations were computed and from how many rows.
    #[command(
        after_help = "Examples:\n  alertflow runs\n  alertflow runs --since 30d\n  alertflow runs --json"
    )]
    Runs(runs::RunsArgs),
    /// The notification ledger: every health, alarm and test notification
    /// with its receiver and outcome.
    #[command(subcommand)]
    Notifications(notifications::NotificationsCommand),
    /// Silences: alarms and health notifications that match one are
    /// recorded, not sent.
    #[command(subcommand)]
    Silence(silence::SilenceCommand),
    /// The dashboard: anything unhealthy on top, runs and days, tasks, dead
    /// letters, schedules, alarms, with actions for admins (replay, purge,
    /// retry, revoke, pause, run); the same data as JSON under /api/.
    /// Loopback only unless [web.auth] users are configured.
    #[command(
        after_help = "Examples:\n  alertflow web\n  alertflow web --demo   (after ./scripts/demo)\n  alertflow web --listen 127.0.0.1:8080\n  alertflow web hash-password\n  curl -s http://127.0.0.1:9800/api/overview | jq .problems"
    )]
    Web(web::WebArgs),
    /// Create the database and tables (StarRocks or MySQL dialect).
    #[command(
        after_help = "Examples:\n  alertflow migrate\n  alertflow migrate --dialect starrocks --print"
    )]
    Migrate(run::MigrateArgs),
    /// Parse a file of Lark messages into alert rows (JSON lines), offline.
    #[command(
        after_help = "Examples:\n  alertflow parse tests/fixtures/cards/keyed-en.json\n  alertflow fetch --date 2026-03-10 | alertflow parse -"
    )]
    Parse(parse::ParseArgs),
    /// Fetch one Pacific day of the chat's history to a file (debugging a day).
    #[command(
        after_help = "Examples:\n  alertflow fetch --date 2026-03-10 --out day.json\n  alertflow fetch --date 2026-03-10 | alertflow parse -"
    )]
    Fetch(fetch::FetchArgs),
    /// Run the Lark/Slack-compatible sandbox (synthetic alert history, bot and Slack webhooks).
    #[command(
        after_help = "Examples:\n  alertflow sandbox\n  alertflow sandbox --listen 127.0.0.1:8900 --seed 7 --per-day 2000"
    )]
    Sandbox(sandbox::SandboxArgs),
    /// Beat schedules: list them with their next fires, or fire one now.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Benchmarks (they print figures; they are not tests).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// InfluxDB checks: list them, or evaluate one now (`--dry-run` sends nothing).
    #[command(subcommand)]
    Checks(checks::ChecksCommand),
    /// Notification receivers: send a test message, list them.
    #[command(subcommand)]
    Notify(notify::NotifyCommand),
    /// Pipeline health: task statuses (OK/ERROR) and dead letters; exit 0 OK, 2 CRITICAL, 3 unknown (Nagios).
    #[command(
        after_help = "Examples:\n  alertflow health                  every task's status and the dead-letter count\n  alertflow health influx-check     one task's status only (exit 2 if ERROR)\n  alertflow health --json\n\nExit codes (Nagios/Icinga): 0 OK; 2 CRITICAL, a task is ERROR or the dead-letter queue holds\nmessages (see them: alertflow dead list); 3 UNKNOWN, Redis or RabbitMQ unreachable, or no\nstatus for TASK."
    )]
    Health(notify::HealthArgs),
    /// Validate the config file; with --connect, reach every service it names.
    #[command(
        name = "check-config",
        after_help = "Examples:\n  alertflow check-config\n  alertflow check-config --connect\n  alertflow --config /etc/alertflow/alertflow.toml check-config --connect --json\n\nExit codes: 0 valid (and every service answered), 2 invalid config, 1 a service unreachable."
    )]
    CheckConfig(check::CheckArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  alertflow completions bash > /usr/share/bash-completion/completions/alertflow\n  alertflow completions zsh > \"${fpath[1]}/_alertflow\"\n  alertflow completions fish --for alertflow-worker > ~/.config/fish/completions/alertflow-worker.fish"
    )]
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff) of alertflow, alertflow-worker or alertflow-beat.
    #[command(
        after_help = "Examples:\n  alertflow man | man -l -\n  alertflow man --for alertflow-worker > /usr/local/share/man/man1/alertflow-worker.1"
    )]
    Man(completions::ManArgs),
}

/// The log filter of a command when `ALERTFLOW_LOG` is not set. Commands
/// that draw progress bars run workers in-process and keep to warnings; the
/// others log at `info`. lapin's own lines are off: every broker error
/// reaches the command as an error and is reported once, in plain words.
pub fn default_log_filter(command: &Command) -> &'static str {
    match command {
        Command::Demo(_) | Command::Bench(_) => "warn,lapin=off,amq_protocol=off",
        _ => "info,lapin=off,amq_protocol=off",
    }
}

/// Run a parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Enqueue(a) => enqueue::enqueue(&cli.global, a).await,
        Command::Status(a) => enqueue::status(&cli.global, a).await,
        Command::Queues(a) => inspect::queues(&cli.global, a).await,
        Command::Workers(a) => inspect::workers(&cli.global, a).await,
        Command::Dead(c) => dead::run(&cli.global, c).await,
        Command::Purge(a) => inspect::purge(&cli.global, a).await,
        Command::Schedule(c) => schedule::run(&cli.global, c).await,
        Command::Parse(a) => parse::parse(&cli.global, a).await,
        Command::Demo(a) => demo::demo(&cli.global, a).await,
        Command::Run(a) => run::run(&cli.global, a).await,
        Command::Report(a) => run::report(&cli.global, a).await,
        Command::Digest(a) => digest::digest(&cli.global, a).await,
        Command::Reconcile(a) => reconcile::reconcile(&cli.global, a).await,
        Command::Runs(a) => runs::runs(&cli.global, a).await,
        Command::Notifications(c) => notifications::run(&cli.global, c).await,
        Command::Silence(c) => silence::run(&cli.global, c).await,
        Command::Web(a) => web::web(&cli.global, a).await,
        Command::Migrate(a) => run::migrate(&cli.global, a).await,
        Command::Fetch(a) => fetch::fetch(&cli.global, a).await,
        Command::Sandbox(a) => sandbox::run(&cli.global, a).await,
        Command::Bench(c) => bench::run(&cli.global, c).await,
        Command::Checks(c) => checks::run(&cli.global, c).await,
        Command::Notify(c) => notify::run(&cli.global, c).await,
        Command::Health(a) => notify::health(&cli.global, a).await,
        Command::CheckConfig(a) => check::check_config(&cli.global, a).await,
        Command::Completions(a) => completions::completions(&cli.global, a).await,
        Command::Man(a) => completions::man(&cli.global, a).await,
    };
    finish(result)
}

/// Print an error and turn a result into an exit code.
pub fn finish(result: CliResult) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("error: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

/// Connect to the broker (bounded by `broker.connect_timeout`). A refused
/// login, a missing vhost or a queue declared otherwise is a configuration
/// error (exit 2); a broker that is down or silent is a failure (exit 1),
/// with a hint to start it only when nothing listens at the address.
pub async fn connect_broker(config: &AppConfig, role: &str) -> Result<lapin::Connection, CliError> {
    crate::queue::publisher::connect(config, role)
        .await
        .map_err(broker_error)
}

/// The CLI's reading of a broker error: exit code and hint.
pub fn broker_error(e: crate::queue::connect::BrokerError) -> CliError {
    if e.is_config() {
        CliError::usage(e)
    } else if e.is_refused() {
        CliError::failure(format!(
            "{e}\n  start it with `rabbitmq-server -detached` (or `docker compose up -d rabbitmq`)"
        ))
    } else {
        CliError::failure(e)
    }
}

/// A Redis pool, checked with a PING so a dead Redis is named at once
/// (bounded by `redis.timeout`). The hint to start Redis only when nothing
/// listens at the address; wrong credentials are a configuration error.
pub async fn connect_redis(config: &AppConfig) -> Result<crate::queue::redis_pool::Pool, CliError> {
    use deadpool_redis::redis::ErrorKind;
    let pool = crate::queue::context::redis_pool(config).map_err(CliError::usage)?;
    let sentinels = !config.redis.sentinels.is_empty();
    let explain = |e: &dyn std::fmt::Display, refused: bool, auth: bool| {
        let at = if sentinels {
            let urls: Vec<String> = config
                .redis
                .sentinels
                .iter()
                .map(|u| u.redacted())
                .collect();
            format!(
                "the master {:?} named by the Sentinels {} (during a failover, try again in a few seconds)",
                config.redis.master_name,
                urls.join(", ")
            )
        } else {
            config.redis.url.to_string()
        };
        let what = format!("cannot reach Redis at {at}: {e}");
        if auth {
            CliError::usage(format!(
                "{what}\n  check the user and password in redis.url"
            ))
        } else if refused && !sentinels {
            CliError::failure(format!(
                "{what}\n  start it with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no`"
            ))
        } else {
            CliError::failure(what)
        }
    };
    let mut conn = pool.get().await.map_err(|e| match &e {
        deadpool_redis::PoolError::Backend(re) => explain(
            &e,
            re.is_connection_refusal(),
            re.kind() == ErrorKind::AuthenticationFailed,
        ),
        _ => explain(&e, false, false),
    })?;
    let _: String = deadpool_redis::redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| {
            let auth = e.kind() == ErrorKind::AuthenticationFailed;
            explain(&e, false, auth)
        })?;
    Ok(pool)
}

/// Resolve a queue argument: a family (`lark`) or a full name (`alertflow.lark`).
pub fn resolve_queue(config: &AppConfig, name: &str) -> String {
    let prefix = format!("{}.", config.namespace);
    if name.starts_with(&prefix) {
        name.to_string()
    } else {
        format!("{prefix}{name}")
    }
}

/// Ask the operator to type `expected`; false when stdin is not a terminal.
pub fn confirm(prompt: &str, expected: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{prompt} Type {expected:?} to confirm: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    line.trim() == expected
}

/// Print rows as an aligned table.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect());
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option and positional argument of every command says what it
    /// is for in `--help` (issue 11: `--json`, `--limit`, `--yes` and
    /// positional arguments had none).
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            undocumented(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_has_help_text() {
        let mut missing = Vec::new();
        undocumented(&super::Cli::command(), "alertflow", &mut missing);
        undocumented(
            &super::worker::WorkerCli::command(),
            "alertflow-worker",
            &mut missing,
        );
        undocumented(
            &super::beat::BeatCli::command(),
            "alertflow-beat",
            &mut missing,
        );
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
