//! `alertflow run` (the seed's usage, on the queue), `alertflow report` and
//! `alertflow migrate`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as Days, NaiveDate, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cli::run_progress::{
    CONSUMER_GRACE, ConsumerAlarm, ConsumerCounts, DayView, LinePrinter, families_needed,
    probe_consumers, task_families,
};
use crate::cli::{
    CliError, CliResult, EXIT_OK, EXIT_TASK_FAILED, EXIT_TIMEOUT, GlobalOpts, connect_broker,
    connect_redis, print_table,
};
use crate::config::AppConfig;
use crate::lark::window::pacific_date;
use crate::queue::context::Services;
use crate::queue::local::LocalRunner;
use crate::queue::message::Envelope;
use crate::queue::publisher::Publisher;
use crate::queue::state::{StateStore, TaskState, TaskStatus};
use crate::queue::task::Registry;
use crate::queue::topology::Topology;
use crate::recommendation::Recommendation;
use crate::run_state::{RunState, RunSummary};
use crate::sink::schema::{self, Dialect, StarRocksOptions};
use crate::sink::starrocks::SqlSink;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Dates to process (YYYY-MM-DD, Pacific days); default: yesterday.
    pub dates: Vec<String>,
    /// The last N days, ending yesterday.
    #[arg(
        long,
        value_name = "N",
        conflicts_with_all = ["dates", "catch_up", "today"],
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=366)
    )]
    pub backfill: Option<u32>,
    /// Yesterday, plus today so far.
    #[arg(long, conflicts_with_all = ["dates", "today"])]
    pub catch_up: bool,
    /// Today so far.
    #[arg(long, conflicts_with = "dates")]
    pub today: bool,
    /// Follow the runs, then print a summary table. Progress goes to stderr:
    /// a bar per day on a terminal, else a line per change of a day; a queue
    /// the runs need that no worker consumes is named after a few seconds.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit code 4). Default:
    /// an hour, or ten times the Lark quota floor of the pages found so far
    /// (pages over the tightest `lark.api` rate) when that is longer.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Run the tasks in this process (no RabbitMQ), then print the summary.
    #[arg(long, conflicts_with = "wait")]
    pub local: bool,
    /// Print the runs (and with --wait/--local the summaries) as JSON on
    /// stdout (--wait progress stays on stderr).
    #[arg(long)]
    pub json: bool,
}

/// One day to process: the date and whether it stops at "now".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayPlan {
    pub date: NaiveDate,
    pub until_now: bool,
}

/// Which days `alertflow run` processes, checked before anything is published.
pub fn plan_days(a: &RunArgs, today: NaiveDate) -> Result<Vec<DayPlan>, String> {
    let yesterday = today - Days::days(1);
    let day = |d: NaiveDate, until_now: bool| DayPlan { date: d, until_now };
    let plans: Vec<DayPlan> = if let Some(n) = a.backfill {
        if n == 0 || n > 366 {
            return Err(format!("--backfill {n}: give 1 to 366 days"));
        }
        (1..=n as i64)
            .rev()
            .map(|k| day(today - Days::days(k), false))
            .collect()
    } else if a.catch_up {
        vec![day(yesterday, false), day(today, true)]
    } else if a.today {
        vec![day(today, true)]
    } else if a.dates.is_empty() {
        vec![day(yesterday, false)]
    } else {
        let mut v = Vec::new();
        for s in &a.dates {
            // The rule `fetch-day` itself applies (and `report`).
            let d = crate::tasks::fetch_day::check_run_date(s, today).map_err(|e| e.to_string())?;
            v.push(day(d, d == today));
        }
        v.sort_by_key(|p| p.date);
        v.dedup();
        v
    };
    let first = plans.first().map(|p| p.date).expect("at least one day");
    let last = plans.last().map(|p| p.date).expect("at least one day");
    if (last - first).num_days() > 366 {
        return Err(format!(
            "{first} .. {last} spans more than a year; split the backfill"
        ));
    }
    Ok(plans)
}

/// A published day.
#[derive(Clone, Debug, Serialize)]
pub struct PublishedRun {
    pub date: String,
    pub run_id: String,
    pub task_id: Uuid,
}

fn fetch_envelope(config: &AppConfig, registry: &Registry, plan: &DayPlan) -> (Envelope, String) {
    let run_id = Uuid::new_v4().to_string();
    let mut args = json!({"date": plan.date.format("%Y-%m-%d").to_string()});
    if plan.until_now {
        args["until"] = json!("now");
    }
    let mut env = Envelope::new("fetch-day", args);
    env.run_id = Some(run_id.clone());
    registry.apply_policy(&mut env, config, None);
    (env, run_id)
}

/// One `fetch-day` envelope (with a fresh run id) per day.
fn plan_runs(
    config: &AppConfig,
    registry: &Registry,
    plans: &[DayPlan],
) -> (Vec<PublishedRun>, Vec<Envelope>) {
    plans
        .iter()
        .map(|p| {
            let (env, run_id) = fetch_envelope(config, registry, p);
            let run = PublishedRun {
                date: p.date.format("%Y-%m-%d").to_string(),
                run_id,
                task_id: env.id,
            };
            (run, env)
        })
        .unzip()
}

/// Publish one `fetch-day` per day (with confirms) and record them queued.
pub async fn publish_days(
    config: &Arc<AppConfig>,
    plans: &[DayPlan],
) -> Result<Vec<PublishedRun>, CliError> {
    let (out, envs) = plan_runs(config, &crate::tasks::lookup_registry(config)?, plans);
    publish_envelopes(config, envs).await?;
    Ok(out)
}

/// Declare the envelopes' queues, record them queued, and publish them
/// with confirms.
pub async fn publish_envelopes(
    config: &Arc<AppConfig>,
    envs: Vec<Envelope>,
) -> Result<(), CliError> {
    let pool = connect_redis(config).await?;
    let states = StateStore::new(pool, &config.namespace, config.state.ttl.0);
    let conn = connect_broker(config, "cli").await?;
    let topology = Arc::new(Topology::from_config(config));
    let publisher = Publisher::open(&conn, topology.clone(), config.broker.publish_window)
        .await
        .map_err(CliError::failure)?;
    let mut families: Vec<String> = envs.iter().map(|e| e.queue.clone()).collect();
    families.sort();
    families.dedup();
    topology
        .declare(publisher.channel(), &families)
        .await
        .map_err(CliError::failure)?;
    let queued: Vec<TaskState> = envs
        .iter()
        .map(|e| TaskState::of(e, TaskStatus::Queued))
        .collect();
    states.put_many(&queued).await.map_err(CliError::failure)?;
    publisher
        .publish_many(envs, |_| {})
        .await
        .map_err(CliError::failure)?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// Where a day's run stands.
#[derive(Clone, Debug, Serialize)]
pub struct DayOutcome {
    pub date: String,
    pub run_id: String,
    pub summary: RunSummary,
    /// `done`, `failed: ...`, or `running`.
    pub status: String,
    /// Where the figures were read (the ledger once Redis lost the run).
    pub source: Source,
}

/// One look at a day in Redis: its outcome, and whether Redis lost the
/// run's state (the `fetch-day` state recorded before publishing is gone,
/// or the run's hash is gone or was recreated without what `begin` wrote).
async fn day_status(
    runs: &RunState,
    states: &StateStore,
    r: &PublishedRun,
) -> Result<(DayOutcome, bool), CliError> {
    let stored = runs
        .summary(&r.run_id)
        .await
        .map_err(|e| CliError::failure(e.to_string()))?;
    let fetch = states.get(&r.task_id).await.map_err(CliError::failure)?;
    let lost = match (&fetch, &stored) {
        (None, _) => true,
        (Some(_), Some(s)) => s.date.is_empty(),
        (Some(f), None) => f.status == TaskStatus::Succeeded,
    };
    let summary = stored.unwrap_or_else(|| RunSummary {
        run_id: r.run_id.clone(),
        date: r.date.clone(),
        ..Default::default()
    });
    let mut status = fetch_failure(fetch.as_ref()).unwrap_or_else(|| "running".to_string());
    if let Some(rec) = summary
        .recommend
        .as_deref()
        .and_then(|s| s.parse::<Uuid>().ok())
    {
        match states.get(&rec).await.map_err(CliError::failure)? {
            Some(st) if st.status == TaskStatus::Succeeded => status = "done".into(),
            Some(st) if matches!(st.status, TaskStatus::Failed | TaskStatus::Dead) => {
                status = format!("failed: recommend {}", st.error.unwrap_or_default())
            }
            _ => {}
        }
    }
    Ok((
        DayOutcome {
            date: r.date.clone(),
            run_id: r.run_id.clone(),
            summary,
            status,
            source: Source::Redis,
        },
        lost,
    ))
}

fn fetch_failure(fetch: Option<&TaskState>) -> Option<String> {
    fetch
        .filter(|f| matches!(f.status, TaskStatus::Failed | TaskStatus::Dead))
        .map(|f| format!("failed: fetch-day {}", f.error.clone().unwrap_or_default()))
}

/// The days' outcomes from the database ledger: a day is done once every
/// page of its run is written and the date's recommendations were computed
/// from every row it has.
async fn ledger_outcomes(
    sink: &SqlSink,
    states: &StateStore,
    days: &[&PublishedRun],
) -> Result<Vec<DayOutcome>, CliError> {
    let ids: Vec<String> = days.iter().map(|r| r.run_id.clone()).collect();
    let ledgers = sink
        .run_ledgers(&ids)
        .await
        .map_err(crate::cli::runs::ledger_error)?;
    let first = days
        .iter()
        .filter_map(|r| r.date.parse::<NaiveDate>().ok())
        .min()
        .unwrap_or_default();
    let rows = sink
        .day_rows_since(first)
        .await
        .map_err(crate::cli::runs::ledger_error)?;
    let recs = sink
        .recommends_since(first)
        .await
        .map_err(crate::cli::runs::ledger_error)?;
    let mut out = Vec::with_capacity(days.len());
    for r in days {
        let date: NaiveDate = r.date.parse().unwrap_or_default();
        let mut summary = RunSummary {
            run_id: r.run_id.clone(),
            date: r.date.clone(),
            ..Default::default()
        };
        let mut status = "running".to_string();
        if let Some(l) = ledgers.iter().find(|l| l.run.run_id == r.run_id) {
            let total = l.run.total_pages.map(u64::from);
            summary.chat_id = l.run.chat_id.clone();
            summary.total_pages = total;
            summary.pages_fetched = total.unwrap_or(l.pages_written);
            summary.pages_parsed = l.pages_written;
            summary.pages_written = l.pages_written;
            summary.messages = l.run.messages;
            summary.rows = l.rows_written;
            summary.rows_written = l.rows_written;
            summary.skips = l.skips.clone();
            let day = rows.iter().find(|d| d.date == date);
            let covered = crate::reconcile::run_recommended(l, day, &recs);
            if l.complete() && covered {
                status = "done".into();
            }
        }
        if status == "running" {
            let fetch = states.get(&r.task_id).await.map_err(CliError::failure)?;
            if let Some(f) = fetch_failure(fetch.as_ref()) {
                status = f;
            }
        }
        out.push(DayOutcome {
            date: r.date.clone(),
            run_id: r.run_id.clone(),
            summary,
            status,
            source: Source::Ledger,
        });
    }
    Ok(out)
}

/// What a day's outcome was read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The run's progress in Redis (the fast path).
    #[default]
    Redis,
    /// The database run ledger, after Redis lost the run's state.
    Ledger,
}

/// The one line `run --wait` says when Redis lost a day's run state.
pub fn lost_state_line(r: &PublishedRun) -> String {
    format!(
        "{}: run {}'s progress in Redis is gone (Redis lost its data: restarted without persistence, failed over or evicted); \
         the run heals itself (its tasks are still queued and the run barrier is kept in the database) and the `reconcile` schedule repairs what it cannot; \
         following the day from the database ledger now; by hand: alertflow reconcile --since 2d",
        r.date, r.run_id
    )
}

/// The default `--timeout`: an hour, or ten times the quota floor of the
/// pages known so far (pages over the tightest `lark.api` rate) when that
/// is longer, so a long backfill is not given up on while it is on pace.
pub fn default_timeout(config: &AppConfig, pages: u64) -> Duration {
    let rate = config
        .limiter_limits()
        .get(crate::tasks::fetch_day::LARK_RATE_KEY)
        .and_then(|specs| {
            specs
                .iter()
                .map(|s| f64::from(s.limit) / s.per.0.as_secs_f64().max(1e-3))
                .min_by(f64::total_cmp)
        })
        .filter(|r| *r > 0.0);
    let floor = rate.map_or(0.0, |r| pages as f64 / r);
    Duration::from_secs(3600).max(Duration::from_secs_f64(10.0 * floor))
}

/// How `wait_days` shows progress.
enum Progress {
    Hidden,
    /// On a terminal: a bar per day (a spinner until the day's last page is known).
    Bars {
        multi: MultiProgress,
        bars: Vec<ProgressBar>,
        known_total: Vec<bool>,
    },
    /// Off a terminal: a line per change of a day.
    Lines(Vec<LinePrinter>),
}

impl Progress {
    fn new(runs: &[PublishedRun], quiet: bool) -> Progress {
        if quiet {
            return Progress::Hidden;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines(runs.iter().map(|_| LinePrinter::default()).collect());
        }
        let multi = MultiProgress::new();
        let bars = runs
            .iter()
            .map(|r| {
                let b = multi.add(ProgressBar::no_length());
                b.set_style(spinner_style());
                b.set_prefix(r.date.clone());
                b
            })
            .collect();
        Progress::Bars {
            multi,
            bars,
            known_total: vec![false; runs.len()],
        }
    }

    fn show(&mut self, i: usize, date: &str, view: &DayView) {
        match self {
            Progress::Hidden => {}
            Progress::Lines(printers) => {
                if let Some(line) = printers[i].next(date, view, std::time::Instant::now()) {
                    eprintln!("{line}");
                }
            }
            Progress::Bars {
                bars, known_total, ..
            } => {
                let bar = &bars[i];
                if bar.is_finished() {
                    return;
                }
                // Message, then figures, then style: each call may draw.
                bar.set_message(view.text.clone());
                match view.total {
                    Some(total) => {
                        bar.set_length(total);
                        bar.set_position(view.written.min(total));
                        if !known_total[i] {
                            known_total[i] = true;
                            bar.set_style(bar_style());
                        }
                    }
                    None => bar.tick(),
                }
                if view.finished() {
                    bar.finish();
                }
            }
        }
    }

    /// A line on stderr, above the bars if there are any.
    fn say(&self, line: &str) {
        match self {
            Progress::Bars { multi, .. } => multi.suspend(|| eprintln!("{line}")),
            _ => eprintln!("{line}"),
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} {msg}").expect("valid template")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{bar:30}] {msg}")
        .expect("valid template")
        .progress_chars("=> ")
}

/// Follow runs until each is done or failed, or until `timeout` (then the
/// bool is false; `None`: [`default_timeout`]). Unless `quiet`, progress
/// goes to stderr: a bar per day on a terminal, one line per change of a
/// day otherwise. Whatever `quiet`, a queue the waiting days need that
/// nothing consumes is named on stderr, and so is a day whose run state
/// Redis lost: that day is then followed from the database ledger.
pub async fn wait_days(
    config: &Arc<AppConfig>,
    runs_published: &[PublishedRun],
    timeout: Option<Duration>,
    quiet: bool,
) -> Result<(Vec<DayOutcome>, bool), CliError> {
    let pool = connect_redis(config).await?;
    let runs = RunState::new(pool.clone(), &config.namespace, config.state.ttl.0);
    let states = StateStore::new(pool, &config.namespace, config.state.ttl.0);
    let sink = SqlSink::new(config);
    let mut progress = Progress::new(runs_published, quiet);
    let families = task_families(config, &crate::tasks::lookup_registry(config)?);
    let (tx, counts) = watch::channel(ConsumerCounts::new());
    let stop = CancellationToken::new();
    let mut prober = tokio::spawn(probe_consumers(
        config.clone(),
        families.values().cloned().collect(),
        tx,
        stop.clone(),
    ));
    let mut alarm = ConsumerAlarm::new(&config.namespace, CONSUMER_GRACE);
    let started = tokio::time::Instant::now();
    let pending = |r: &PublishedRun| DayOutcome {
        date: r.date.clone(),
        run_id: r.run_id.clone(),
        summary: RunSummary {
            run_id: r.run_id.clone(),
            date: r.date.clone(),
            ..Default::default()
        },
        status: "running".into(),
        source: Source::Redis,
    };
    // A Redis or database blip must not end the watch: keep the last view
    // and retry, giving up only when a store stays unreachable for a minute.
    let mut last: Vec<DayOutcome> = runs_published.iter().map(pending).collect();
    // Days whose run state Redis lost: followed from the ledger from then on.
    let mut lost = vec![false; runs_published.len()];
    let mut ledger_read: Option<tokio::time::Instant> = None;
    let mut failing_since: Option<tokio::time::Instant> = None;
    let result = async {
        loop {
            let mut ok = true;
            for (i, r) in runs_published.iter().enumerate() {
                if lost[i] {
                    continue;
                }
                match day_status(&runs, &states, r).await {
                    Ok((_, true)) => {
                        lost[i] = true;
                        ledger_read = None;
                        progress.say(&lost_state_line(r));
                    }
                    Ok((o, false)) => last[i] = o,
                    Err(e) => {
                        ok = false;
                        tolerate(&mut failing_since, e)?;
                    }
                }
            }
            if lost.iter().any(|l| *l) && ledger_read.is_none_or(|t| t.elapsed() >= LEDGER_EVERY) {
                ledger_read = Some(tokio::time::Instant::now());
                let days: Vec<&PublishedRun> = runs_published
                    .iter()
                    .zip(&lost)
                    .filter_map(|(r, l)| l.then_some(r))
                    .collect();
                match ledger_outcomes(&sink, &states, &days).await {
                    Ok(v) => {
                        for o in v {
                            if let Some(i) =
                                runs_published.iter().position(|r| r.run_id == o.run_id)
                            {
                                last[i] = o;
                            }
                        }
                    }
                    Err(e) => {
                        ok = false;
                        tolerate(&mut failing_since, e)?;
                    }
                }
            }
            if ok {
                failing_since = None;
            }
            for (i, r) in runs_published.iter().enumerate() {
                progress.show(i, &r.date, &DayView::of(&last[i]));
            }
            let outcomes = last.clone();
            // Also when every day ended: a warning given is taken back.
            let needed = families_needed(&outcomes, &families);
            let said = alarm.observe(std::time::Instant::now(), &counts.borrow(), &needed);
            for line in said {
                progress.say(&line);
            }
            if outcomes.iter().all(|o| o.status != "running") {
                return Ok((outcomes, true));
            }
            let pages: u64 = outcomes
                .iter()
                .map(|o| {
                    o.summary
                        .total_pages
                        .unwrap_or(o.summary.pages_fetched)
                        .max(1)
                })
                .sum();
            let limit = timeout.unwrap_or_else(|| default_timeout(config, pages));
            if started.elapsed() >= limit {
                return Ok((outcomes, false));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    stop.cancel();
    if tokio::time::timeout(Duration::from_secs(3), &mut prober)
        .await
        .is_err()
    {
        prober.abort();
    }
    sink.close().await;
    result
}

/// A store failed while following runs: fine for up to a minute in a row.
fn tolerate(failing_since: &mut Option<tokio::time::Instant>, e: CliError) -> Result<(), CliError> {
    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
    if since.elapsed() > Duration::from_secs(60) {
        return Err(e);
    }
    Ok(())
}

/// How often a day followed from the ledger is read.
const LEDGER_EVERY: Duration = Duration::from_secs(1);

/// The summary table printed at the end of `run --wait` and `demo`.
pub fn print_summary(outcomes: &[DayOutcome]) {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let s = &o.summary;
            vec![
                o.date.clone(),
                // `12`, or `7+` while the day's last page is not known.
                match s.total_pages {
                    Some(t) => t.to_string(),
                    None => format!("{}+", s.pages_fetched),
                },
                s.messages.to_string(),
                s.rows_written.to_string(),
                s.skips
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                o.status.clone(),
            ]
        })
        .collect();
    print_table(
        &["DATE", "PAGES", "MESSAGES", "ROWS", "SKIPPED", "STATUS"],
        &rows,
    );
}

pub async fn run(g: &GlobalOpts, a: RunArgs) -> CliResult {
    let config = g.load_config()?;
    let plans = plan_days(&a, pacific_date(Utc::now())).map_err(CliError::usage)?;
    if a.local {
        return run_local(&config, &plans, a.json).await;
    }
    let published = publish_days(&config, &plans).await?;
    if a.json && !a.wait {
        println!(
            "{}",
            serde_json::to_string_pretty(&published).expect("serializes")
        );
    } else if !a.json {
        for p in &published {
            println!("{}  run {}  task {}", p.date, p.run_id, p.task_id);
        }
    }
    if !a.wait {
        return Ok(EXIT_OK);
    }
    let (outcomes, finished) = wait_days(
        &config,
        &published,
        a.timeout.map(|t| Duration::from_secs_f64(t.max(0.0))),
        false,
    )
    .await?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcomes).expect("serializes")
        );
    } else {
        print_summary(&outcomes);
    }
    if !finished {
        eprintln!("gave up waiting; the runs go on");
        return Ok(EXIT_TIMEOUT);
    }
    Ok(if outcomes.iter().all(|o| o.status == "done") {
        EXIT_OK
    } else {
        EXIT_TASK_FAILED
    })
}

async fn run_local(config: &Arc<AppConfig>, plans: &[DayPlan], json: bool) -> CliResult {
    connect_redis(config).await?;
    let (services, writer) =
        Services::new(Arc::new(config.queue.clone())).map_err(CliError::usage)?;
    let registry = Arc::new(crate::tasks::registry(
        config,
        &crate::tasks::Shared::of(&services),
    )?);
    let (published, envs) = plan_runs(config, &registry, plans);
    let report = LocalRunner::new(services.clone(), registry, config.worker.concurrency)
        .run(envs)
        .await;
    drop(services);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    let pool = connect_redis(config).await?;
    let runs = RunState::new(pool.clone(), &config.namespace, config.state.ttl.0);
    let states = StateStore::new(pool, &config.namespace, config.state.ttl.0);
    let mut outcomes = Vec::new();
    for r in &published {
        outcomes.push(day_status(&runs, &states, r).await?.0);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcomes).expect("serializes")
        );
    } else {
        print_summary(&outcomes);
        for (env, e) in &report.failed {
            eprintln!("failed: {} {} ({}): {e}", env.task, env.id, env.args);
        }
    }
    Ok(
        if report.failed.is_empty() && outcomes.iter().all(|o| o.status == "done") {
            EXIT_OK
        } else {
            EXIT_TASK_FAILED
        },
    )
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Pacific date, YYYY-MM-DD (default: yesterday).
    pub date: Option<String>,
    /// Database to read (default: mysql.database), e.g. `alertflow_demo`.
    #[arg(long)]
    pub database: Option<String>,
    /// Print the recommendations, unmapped names and the day's runs (from
    /// the run ledger) as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Print a day's report as a table (used by `report` and `demo`); with
/// `trends`, each alert's 7-day average and change are columns too.
pub fn print_report(
    date: &str,
    recs: &[Recommendation],
    trends: &[crate::sink::history::AlertTrend],
) {
    let trend: BTreeMap<&str, &crate::sink::history::AlertTrend> =
        trends.iter().map(|t| (t.alert_name.as_str(), t)).collect();
    println!(
        "Alert recommendations for {date} ({} alert names)",
        recs.len()
    );
    let rows: Vec<Vec<String>> = recs
        .iter()
        .map(|r| {
            let mut row = vec![
                r.severity.clone(),
                format!(
                    "{}{}",
                    r.alert_name,
                    if r.is_noisy { " [noisy]" } else { "" }
                ),
                r.fired_count.to_string(),
            ];
            if !trends.is_empty() {
                let t = trend.get(r.alert_name.as_str());
                row.push(t.map_or("0.0".into(), |t| format!("{:.1}", t.avg_7d)));
                row.push(
                    t.and_then(|t| t.change_percent)
                        .map_or("new".into(), |p| format!("{p:+}%")),
                );
            }
            row.extend([
                r.resolved_count.to_string(),
                r.cluster_count.to_string(),
                truncate(&r.recommendation, 70),
            ]);
            row
        })
        .collect();
    let mut headers = vec!["SEVERITY", "ALERT", "FIRED"];
    if !trends.is_empty() {
        headers.extend(["AVG 7D", "CHANGE"]);
    }
    headers.extend(["RESOLVED", "CLUSTERS", "RECOMMENDATION"]);
    print_table(&headers, &rows);
    let unmapped: Vec<&str> = recs
        .iter()
        .filter(|r| !r.in_catalogue)
        .map(|r| r.alert_name.as_str())
        .collect();
    if !unmapped.is_empty() {
        println!(
            "Not in the catalogue (add them to recommend.catalogue): {}",
            unmapped.join(", ")
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

pub async fn report(g: &GlobalOpts, a: ReportArgs) -> CliResult {
    let mut config = (*g.load_config()?).clone();
    if let Some(db) = &a.database {
        config.mysql.database = db.clone();
    }
    let date = match &a.date {
        Some(d) => crate::tasks::fetch_day::parse_run_date(d).map_err(CliError::usage)?,
        None => pacific_date(Utc::now()) - Days::days(1),
    };
    let sink = SqlSink::new(&config);
    let read_error = |e| {
        CliError::failure(format!(
            "reading {}.alert_recommendations on {}:{}: {e}",
            config.mysql.database, config.mysql.host, config.mysql.port
        ))
    };
    let recs = sink.report(date).await.map_err(read_error)?;
    let trends = sink.alert_trends(date).await.map_err(read_error)?;
    // The day's story from the run ledger; the recommendations stand alone
    // when it cannot be read (a database not migrated since the ledger came).
    let runs: Vec<crate::cli::runs::RunView> = match crate::cli::runs::read_views(&sink, date).await
    {
        Ok(v) => v
            .into_iter()
            .filter(|v| v.ledger.run.date == date)
            .collect(),
        Err(e) => {
            eprintln!("warning: {e}");
            Vec::new()
        }
    };
    sink.close().await;
    let date = date.format("%Y-%m-%d").to_string();
    if a.json {
        let unmapped: Vec<&str> = recs
            .iter()
            .filter(|r| !r.in_catalogue)
            .map(|r| r.alert_name.as_str())
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"date": date, "recommendations": recs, "unmapped": unmapped, "trends": trends, "runs": runs})
            )
            .expect("serializes")
        );
    } else {
        print_report(&date, &recs, &trends);
        println!();
        if runs.is_empty() {
            println!("no run of {date} in the run ledger");
        } else {
            println!("runs of {date} (run ledger):");
            crate::cli::runs::print_runs(&runs);
        }
    }
    Ok(EXIT_OK)
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// SQL dialect (default: sink.dialect).
    #[arg(long, value_enum)]
    pub dialect: Option<Dialect>,
    /// Print the statements instead of running them.
    #[arg(long)]
    pub print: bool,
}

pub async fn migrate(g: &GlobalOpts, a: MigrateArgs) -> CliResult {
    let mut config = (*g.load_config()?).clone();
    if let Some(d) = a.dialect {
        config.sink.dialect = d;
    }
    if a.print {
        let stmts = schema::migration(
            &config.mysql.database,
            config.sink.dialect,
            &StarRocksOptions {
                buckets: config.sink.buckets,
                replication_num: config.sink.replication_num,
            },
        );
        println!("{};", stmts.join(";\n\n"));
        return Ok(EXIT_OK);
    }
    let sink = SqlSink::new(&config);
    let stmts = sink.migrate().await.map_err(|e| {
        CliError::failure(format!(
            "migrating {} on {}:{} ({}): {e}",
            config.mysql.database,
            config.mysql.host,
            config.mysql.port,
            config.sink.dialect.as_str()
        ))
    })?;
    sink.close().await;
    println!(
        "database {} ready ({} statements, dialect {}): lark_alerts, alert_recommendations",
        config.mysql.database,
        stmts.len(),
        config.sink.dialect.as_str()
    );
    Ok(EXIT_OK)
}

/// Counts by date (for JSON output of a set of runs).
pub fn by_date(outcomes: &[DayOutcome]) -> BTreeMap<String, &DayOutcome> {
    outcomes.iter().map(|o| (o.date.clone(), o)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dates: &[&str]) -> RunArgs {
        RunArgs {
            dates: dates.iter().map(|s| s.to_string()).collect(),
            backfill: None,
            catch_up: false,
            today: false,
            wait: false,
            timeout: Some(1.0),
            local: false,
            json: false,
        }
    }

    #[test]
    fn plans_follow_the_seed_usage() {
        let today: NaiveDate = "2026-03-12".parse().unwrap();
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            plan_days(&args(&[]), today).unwrap(),
            vec![DayPlan {
                date: d("2026-03-11"),
                until_now: false
            }]
        );
        let two = plan_days(&args(&["2026-03-11", "2026-03-10"]), today).unwrap();
        assert_eq!(
            two.iter().map(|p| p.date).collect::<Vec<_>>(),
            vec![d("2026-03-10"), d("2026-03-11")]
        );
        let mut a = args(&[]);
        a.backfill = Some(7);
        let b = plan_days(&a, today).unwrap();
        assert_eq!(b.len(), 7);
        assert_eq!(b[0].date, d("2026-03-05"));
        assert_eq!(b[6].date, d("2026-03-11"));
        let mut a = args(&[]);
        a.catch_up = true;
        assert_eq!(
            plan_days(&a, today).unwrap(),
            vec![
                DayPlan {
                    date: d("2026-03-11"),
                    until_now: false
                },
                DayPlan {
                    date: d("2026-03-12"),
                    until_now: true
                }
            ]
        );
        let mut a = args(&[]);
        a.today = true;
        assert_eq!(
            plan_days(&a, today).unwrap(),
            vec![DayPlan {
                date: today,
                until_now: true
            }]
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let today: NaiveDate = "2026-03-12".parse().unwrap();
        assert!(
            plan_days(&args(&["2026-13-01"]), today)
                .unwrap_err()
                .contains("not YYYY-MM-DD")
        );
        assert!(
            plan_days(&args(&["2026-03-13"]), today)
                .unwrap_err()
                .contains("future")
        );
        assert!(
            plan_days(&args(&["2024-01-01", "2026-03-01"]), today)
                .unwrap_err()
                .contains("more than a year")
        );
        let mut a = args(&[]);
        a.backfill = Some(400);
        assert!(plan_days(&a, today).is_err());
        a.backfill = Some(0);
        assert!(plan_days(&a, today).is_err());
    }
}
