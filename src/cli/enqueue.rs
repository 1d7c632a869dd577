//! `alertflow enqueue` and `alertflow status`.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use crate::cli::{
    CliError, CliResult, EXIT_OK, EXIT_TASK_FAILED, EXIT_TIMEOUT, GlobalOpts, connect_broker,
    connect_redis,
};
use crate::config::AppConfig;
use crate::queue::message::Envelope;
use crate::queue::publisher::Publisher;
use crate::queue::state::{StateStore, TaskState, TaskStatus};
use crate::queue::task::Registry;
use crate::queue::topology::{Topology, validate_queue_name};
use crate::sink::starrocks::SqlSink;

#[derive(clap::Args, Debug)]
pub struct EnqueueArgs {
    /// Task name (`noop`, `sleep`, `fetch-day`, ...).
    pub task: String,
    /// Arguments as a JSON object; `@FILE` reads them from a file, `-` from
    /// standard input. Checked against the task's argument type before
    /// anything is published.
    #[arg(long, default_value = "{}", value_name = "JSON|@FILE|-")]
    pub args: String,
    /// Queue family (default: the task's own, or `[tasks.NAME].queue`); must
    /// be one that workers consume (see `alertflow queues`).
    #[arg(long, value_name = "FAMILY")]
    pub queue: Option<String>,
    /// Run no earlier than this many seconds from now.
    #[arg(long, value_name = "SECONDS")]
    pub countdown: Option<f64>,
    /// Follow the task's state until it finishes.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit code 4).
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// Print the task id (and final state with --wait) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Task id, as printed by `enqueue` (a run id says how to follow the run).
    pub id: String,
    /// Print the state as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Read `--args`: inline JSON, `@FILE` or `-` (standard input).
fn read_args(spec: &str) -> Result<String, CliError> {
    if spec == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| CliError::usage(format!("--args -: cannot read standard input: {e}")))?;
        return Ok(text);
    }
    if let Some(path) = spec.strip_prefix('@') {
        return std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("--args @{path}: {e}")));
    }
    Ok(spec.to_string())
}

fn parse_args(text: &str) -> Result<Value, CliError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| CliError::usage(format!("--args is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(CliError::usage(
            "--args must be a JSON object, e.g. '{\"ms\": 100}'",
        ));
    }
    Ok(v)
}

/// The family of `--queue` (`lark` or `NS.lark`) if workers consume it
/// (see [`Registry::families`]), or exit 2 listing them: a typo must not
/// create a queue nobody reads.
pub fn check_family<'a>(
    registry: &Registry,
    config: &AppConfig,
    queue: &'a str,
) -> Result<&'a str, CliError> {
    let family = queue
        .strip_prefix(&format!("{}.", config.namespace))
        .unwrap_or(queue);
    validate_queue_name(family).map_err(CliError::usage)?;
    let known = registry.families(config);
    if known.contains(family) {
        return Ok(family);
    }
    Err(CliError::usage(format!(
        "unknown queue family {family:?}; known: {} (add it to worker.queues or [tasks.NAME].queue to use another)",
        known.into_iter().collect::<Vec<_>>().join(", ")
    )))
}

pub async fn enqueue(g: &GlobalOpts, a: EnqueueArgs) -> CliResult {
    let (config, registry) = g.load_with_registry()?;
    let args = parse_args(&read_args(&a.args)?)?;
    let countdown = match a.countdown {
        Some(c) if !(0.0..=86_400.0 * 365.0).contains(&c) => {
            return Err(CliError::usage(
                "--countdown must be between 0 and one year",
            ));
        }
        Some(c) => Some(Duration::from_secs_f64(c)),
        None => None,
    };
    let Some(task) = registry.get(&a.task) else {
        let known: Vec<&str> = registry.names().collect();
        return Err(CliError::usage(format!(
            "unknown task {:?}; known tasks: {}",
            a.task,
            known.join(", ")
        )));
    };
    task.check_args(&args)
        .map_err(|e| CliError::usage(format!("bad --args for task {}: {e}", a.task)))?;
    let queue = match &a.queue {
        Some(q) => Some(check_family(&registry, &config, q)?),
        None => None,
    };
    let mut env = Envelope::new(&a.task, args);
    registry.apply_policy(&mut env, &config, queue);
    if let Some(c) = countdown {
        env.eta = Some(Utc::now() + chrono::Duration::from_std(c).unwrap_or_default());
    }
    let pool = connect_redis(&config).await?;
    let states = StateStore::new(pool.clone(), &config.namespace, config.state.ttl.0);
    let conn = connect_broker(&config, "cli").await?;
    let topology = std::sync::Arc::new(Topology::from_config(&config));
    let publisher = Publisher::open(&conn, topology.clone(), 1)
        .await
        .map_err(CliError::failure)?;
    topology
        .declare(publisher.channel(), std::slice::from_ref(&env.queue))
        .await
        .map_err(|e| match crate::queue::connect::declare_failure(&e) {
            Some(config) => CliError::usage(config),
            None => CliError::failure(format!("declaring queues: {e}")),
        })?;
    crate::queue::state::WorkerRegistry::new(pool, &config.namespace)
        .remember_families(std::slice::from_ref(&env.queue))
        .await
        .map_err(CliError::failure)?;
    // Record `queued` before publishing, so a fast worker's `started` wins.
    states
        .put(&TaskState::of(&env, TaskStatus::Queued))
        .await
        .map_err(CliError::failure)?;
    let published = match countdown {
        Some(c) if c > Duration::ZERO => publisher.publish_delayed(&env, c).await,
        _ => publisher.publish(&env).await,
    };
    published.map_err(CliError::failure)?;
    drop(publisher);
    crate::queue::connect::close(conn).await;
    if !a.wait {
        if a.json {
            println!(
                "{}",
                serde_json::json!({"id": env.id, "task": env.task, "queue": env.queue})
            );
        } else {
            println!("{}", env.id);
        }
        return Ok(EXIT_OK);
    }
    if !a.json {
        println!("{}", env.id);
    }
    let sink = SqlSink::new(&config);
    let ledger = LedgerProbe::of(&env, &sink);
    let code = follow(
        &states,
        env.id,
        Duration::from_secs_f64(a.timeout.max(0.0)),
        a.json,
        ledger,
    )
    .await;
    sink.close().await;
    code
}

/// How a task whose state Redis lost is still followed: from the run
/// ledger, for the tasks that write to it.
pub enum LedgerProbe<'a> {
    /// A `fetch-day` is done once its run's page total is recorded.
    FetchDay { sink: &'a SqlSink, run_id: String },
    /// A `recommend` is done once the date's computation is recorded after
    /// the task was published.
    Recommend {
        sink: &'a SqlSink,
        date: chrono::NaiveDate,
        after: chrono::NaiveDateTime,
    },
}

impl<'a> LedgerProbe<'a> {
    pub fn of(env: &Envelope, sink: &'a SqlSink) -> Option<LedgerProbe<'a>> {
        match env.task.as_str() {
            "fetch-day" => Some(LedgerProbe::FetchDay {
                sink,
                run_id: env
                    .run_id
                    .clone()
                    .unwrap_or_else(|| env.root_id.to_string()),
            }),
            "recommend" => Some(LedgerProbe::Recommend {
                sink,
                date: env.args.get("date")?.as_str()?.parse().ok()?,
                after: crate::sink::ledger::now() - chrono::Duration::seconds(1),
            }),
            _ => None,
        }
    }

    /// Whether the ledger shows the task's work done (`None`: cannot tell).
    async fn done(&self) -> Option<bool> {
        match self {
            LedgerProbe::FetchDay { sink, run_id } => {
                let run = sink.ledger_run(run_id).await.ok()?;
                Some(run.is_some_and(|r| r.total_pages.is_some()))
            }
            LedgerProbe::Recommend { sink, date, after } => {
                let recs = sink.recommends_since(*date).await.ok()?;
                Some(
                    recs.iter()
                        .any(|r| r.date == *date && r.generated_at >= *after),
                )
            }
        }
    }
}

/// The line `enqueue --wait` says when Redis lost the task's state.
fn lost_task_line(id: Uuid, ledger: bool) -> String {
    let follow = if ledger {
        "following its work in the database run ledger now"
    } else {
        "its state comes back when a worker next records it; still waiting"
    };
    format!(
        "task {id}'s state in Redis is gone (Redis lost its data: restarted without persistence, failed over or evicted); \
         the task itself is safe in RabbitMQ (queued, running or retrying); {follow}; \
         by hand: alertflow queues, alertflow dead list, alertflow reconcile"
    )
}

/// Poll a task's state, printing each change, until it is final. The state
/// was recorded `queued` before publishing, so finding none means Redis lost
/// it: that is said once, and the task is then followed from the ledger
/// where it writes one (`ledger`), else until its state comes back.
pub async fn follow(
    states: &StateStore,
    id: Uuid,
    timeout: Duration,
    json: bool,
    ledger: Option<LedgerProbe<'_>>,
) -> CliResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<(TaskStatus, u32)> = None;
    let mut told_lost = false;
    let mut ledger_read: Option<tokio::time::Instant> = None;
    loop {
        let st = states.get(&id).await.map_err(CliError::failure)?;
        match &st {
            Some(st) => {
                if last != Some((st.status, st.attempt)) {
                    last = Some((st.status, st.attempt));
                    if !json {
                        print_transition(st);
                    }
                }
                if st.status.is_final() {
                    if json {
                        println!("{}", serde_json::to_string(st).expect("state serializes"));
                    }
                    return Ok(if st.status == TaskStatus::Succeeded {
                        EXIT_OK
                    } else {
                        EXIT_TASK_FAILED
                    });
                }
            }
            None => {
                if !told_lost {
                    told_lost = true;
                    eprintln!("{}", lost_task_line(id, ledger.is_some()));
                }
                if let Some(probe) = &ledger
                    && ledger_read.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                {
                    ledger_read = Some(tokio::time::Instant::now());
                    if probe.done().await == Some(true) {
                        if json {
                            println!(
                                "{}",
                                serde_json::json!({"id": id, "status": "succeeded", "source": "ledger"})
                            );
                        } else {
                            println!("the run ledger shows the task's work done");
                        }
                        return Ok(EXIT_OK);
                    }
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!("gave up waiting after {timeout:?}; the task goes on");
            return Ok(EXIT_TIMEOUT);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_transition(st: &TaskState) {
    let mut line = format!(
        "{}  {:<9} attempt {}",
        st.updated_at.format("%H:%M:%S%.3f"),
        st.status.as_str(),
        st.attempt
    );
    if let Some(w) = &st.worker {
        line.push_str(&format!("  on {w}"));
    }
    if let Some(e) = &st.error {
        line.push_str(&format!("  error: {e}"));
    }
    println!("{line}");
}

pub async fn status(g: &GlobalOpts, a: StatusArgs) -> CliResult {
    let config = g.load_config()?;
    let id: Uuid =
        a.id.parse()
            .map_err(|_| CliError::usage(format!("{:?} is not a task id (a UUID)", a.id)))?;
    let pool = connect_redis(&config).await?;
    let states = StateStore::new(pool.clone(), &config.namespace, config.state.ttl.0);
    match states.get(&id).await.map_err(CliError::failure)? {
        Some(st) if a.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&st).expect("state serializes")
            );
            Ok(EXIT_OK)
        }
        Some(st) => {
            println!("id:       {}", st.id);
            println!("task:     {}", st.task);
            println!("status:   {}", st.status.as_str());
            println!("attempt:  {} (0 is the first run)", st.attempt);
            println!("queue:    {}", st.queue);
            println!("updated:  {}", st.updated_at.to_rfc3339());
            if let Some(w) = st.worker {
                println!("worker:   {w}");
            }
            if let Some(r) = st.run_id {
                println!("run:      {r}");
            }
            if let Some(e) = st.eta {
                println!("eta:      {}", e.to_rfc3339());
            }
            if let Some(e) = st.error {
                println!("error:    {e}");
            }
            Ok(EXIT_OK)
        }
        None => run_status(&config, pool, &a.id, a.json).await,
    }
}

/// `status` of an id Redis knows nothing of: a run the ledger recorded (its
/// Redis state expired or was lost), or nothing this deployment knows.
async fn ledger_run_status(config: &AppConfig, id: &str, json: bool) -> CliResult {
    let sink = SqlSink::new(config);
    let found = sink.run_ledgers(&[id.to_string()]).await;
    sink.close().await;
    let unknown = || {
        CliError::failure(format!(
            "no state for task or run {id} in Redis (unknown, older than state.ttl, or lost with Redis's data) \
             and no run {id} in the database run ledger; `alertflow runs` lists the recorded runs"
        ))
    };
    let Some(l) = found.ok().and_then(|v| v.into_iter().next()) else {
        return Err(unknown());
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"run": l, "source": "ledger"}))
                .expect("run serializes")
        );
        return Ok(EXIT_OK);
    }
    println!(
        "run:      {} (from the database run ledger; its Redis state is gone)",
        l.run.run_id
    );
    println!("date:     {}", l.run.date);
    match l.run.total_pages {
        Some(t) => println!(
            "written:  {} of {t} pages, {} rows",
            l.pages_written, l.rows_written
        ),
        None => println!(
            "written:  {} pages (last page not known yet), {} rows",
            l.pages_written, l.rows_written
        ),
    }
    println!(
        "more:     alertflow runs --since 30d; alertflow report {}",
        l.run.date
    );
    Ok(EXIT_OK)
}

/// `status` of an id that has no task state: it may be a run id (as `run`
/// prints them); then show the run's progress and how to follow runs.
async fn run_status(
    config: &AppConfig,
    pool: crate::queue::redis_pool::Pool,
    id: &str,
    json: bool,
) -> CliResult {
    let runs = crate::run_state::RunState::new(pool, &config.namespace, config.state.ttl.0);
    let summary = runs
        .summary(id)
        .await
        .map_err(|e| CliError::failure(format!("reading run {id}: {e}")))?;
    let Some(r) = summary else {
        return ledger_run_status(config, id, json).await;
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"run": r})).expect("run serializes")
        );
        return Ok(EXIT_OK);
    }
    let total = r
        .total_pages
        .map(|t| t.to_string())
        .unwrap_or_else(|| "? (more to come)".into());
    println!("run:      {} (a run id, not a task id)", r.run_id);
    println!("date:     {}", r.date);
    println!("fetched:  {} of {total} pages", r.pages_fetched);
    println!(
        "written:  {} pages, {} rows",
        r.pages_written, r.rows_written
    );
    match &r.recommend {
        Some(task) => println!("recommend: task {task} (alertflow status {task})"),
        None => println!("recommend: not yet published"),
    }
    println!(
        "follow a day's runs with `alertflow run {} --wait` (it starts a new, idempotent run)",
        r.date
    );
    Ok(EXIT_OK)
}
