//! `insert`: writes a page's rows into `lark_alerts`, idempotently.
//!
//! StarRocks wants few, large loads, so a worker coalesces: every `insert`
//! hands its rows to the worker's one [`Coalescer`] and waits; the coalescer
//! writes the rows of several messages in one load when it holds
//! `sink.batch_rows` rows, when the oldest waited `sink.batch_interval`, when
//! no more arrive for a moment, or when every task slot of the worker is
//! waiting on it. Only then do those tasks return, so their messages are
//! acked after the write. A failed write fails every task of the batch,
//! which retries with backoff; the upsert makes replays harmless.
//!
//! With the rows, the coalescer records each page in the run ledger
//! (`pipeline_pages`, one statement per batch) and then asks the ledger which
//! of the batch's runs have every page written: the run barrier, decided in
//! the database so that it holds when Redis loses the run's progress.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::{AppConfig, ConfigError, SinkMode};
use crate::lark::card::AlertRow;
use crate::queue::task::{Task, TaskContext, TaskError};
use crate::run_state::{RunState, publish_recommend};
use crate::sink::ledger::{self, PageRecord};
use crate::sink::starrocks::{SinkError, SqlSink, StoredAlert};
use crate::sink::stream_load::{LoadOutcome, StreamLoadConfig, StreamLoader, batch_label};

/// With nothing new for this long, a partial batch is written.
const IDLE_FLUSH: Duration = Duration::from_millis(50);

struct Submission {
    rows: Vec<StoredAlert>,
    label_part: String,
    page: PageRecord,
    /// `Ok(true)`: the page completed its run (told to one page of a run per
    /// batch).
    done: oneshot::Sender<Result<bool, WriteFailure>>,
}

/// Why a coalesced write failed, told to every task of the batch.
#[derive(Clone, Debug)]
struct WriteFailure {
    /// The database may take it on a later attempt (the task retries); if
    /// not, the task is dead-lettered.
    retryable: bool,
    message: String,
}

impl From<SinkError> for WriteFailure {
    fn from(e: SinkError) -> WriteFailure {
        WriteFailure {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

impl From<WriteFailure> for TaskError {
    fn from(f: WriteFailure) -> TaskError {
        if f.retryable {
            TaskError::retry(f.message)
        } else {
            TaskError::fatal(f.message)
        }
    }
}

enum Writer {
    Sql(SqlSink),
    StreamLoad { loader: StreamLoader, db: String },
}

impl Writer {
    async fn write(
        &self,
        rows: &[StoredAlert],
        label_parts: &[String],
    ) -> Result<(), WriteFailure> {
        match self {
            Writer::Sql(sink) => {
                sink.write_alerts(rows).await?;
                Ok(())
            }
            Writer::StreamLoad { loader, db } => {
                let parts: Vec<&str> = label_parts.iter().map(String::as_str).collect();
                let label = batch_label("alertflow_lark_alerts", &parts);
                let body =
                    serde_json::to_vec(&rows.iter().map(stream_load_row).collect::<Vec<_>>())
                        .expect("rows serialize");
                match loader.load(db, "lark_alerts", &label, body, None).await {
                    Ok(LoadOutcome::Loaded { .. }) | Ok(LoadOutcome::AlreadyLoaded) => Ok(()),
                    Err(e) => Err(WriteFailure {
                        retryable: e.is_retryable(),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }
}

fn stream_load_row(a: &StoredAlert) -> serde_json::Value {
    let mut v = serde_json::to_value(&a.row).expect("row serializes");
    v["raw_content"] = serde_json::Value::String(a.raw_content.clone());
    v["ingested_at"] =
        serde_json::Value::String(a.ingested_at.format("%Y-%m-%d %H:%M:%S").to_string());
    v
}

/// Collects the rows of concurrent `insert` tasks into large writes.
struct Coalescer {
    tx: mpsc::Sender<Submission>,
}

impl Coalescer {
    fn start(config: &AppConfig) -> Result<Coalescer, ConfigError> {
        let writer = match config.sink.mode {
            SinkMode::Sql => Writer::Sql(SqlSink::new(config)),
            SinkMode::StreamLoad => Writer::StreamLoad {
                loader: StreamLoader::new(StreamLoadConfig {
                    fe_url: config.sink.stream_load_url.clone(),
                    user: config.mysql.user.clone(),
                    password: config.mysql.password.clone(),
                    timeout: Duration::from_secs(120),
                })
                .map_err(|e| config.invalid("sink.stream_load_url", &e.to_string()))?,
                db: config.mysql.database.clone(),
            },
        };
        let ledger = SqlSink::new(config);
        let batch_rows = config.sink.batch_rows;
        let interval = config.sink.batch_interval.0;
        let max_waiting = config.worker.concurrency.max(1);
        let (tx, mut rx) = mpsc::channel::<Submission>(1024);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let deadline = Instant::now() + interval;
                let mut batch = vec![first];
                let mut rows: usize = batch[0].rows.len();
                while rows < batch_rows && batch.len() < max_waiting {
                    let idle = (Instant::now() + IDLE_FLUSH).min(deadline);
                    match tokio::time::timeout_at(idle, rx.recv()).await {
                        Ok(Some(s)) => {
                            rows += s.rows.len();
                            batch.push(s);
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                let mut all = Vec::with_capacity(rows);
                let mut labels = Vec::with_capacity(batch.len());
                let mut pages = Vec::with_capacity(batch.len());
                let mut waiters = Vec::with_capacity(batch.len());
                for s in batch {
                    all.extend(s.rows);
                    labels.push(s.label_part);
                    pages.push(s.page);
                    waiters.push(s.done);
                }
                let started = std::time::Instant::now();
                let result = write_batch(&writer, &ledger, &all, &labels, &pages).await;
                match &result {
                    Ok(_) => {
                        debug!(rows = all.len(), messages = waiters.len(), elapsed = ?started.elapsed(), "batch written")
                    }
                    Err(WriteFailure { message: e, .. }) => {
                        warn!(rows = all.len(), messages = waiters.len(), error = %e, "batch write failed; its messages will retry")
                    }
                }
                let mut told: BTreeSet<&str> = BTreeSet::new();
                for (w, page) in waiters.into_iter().zip(&pages) {
                    let completes = |complete: &BTreeSet<String>| {
                        complete.contains(&page.run_id) && told.insert(page.run_id.as_str())
                    };
                    let _ = w.send(result.as_ref().map(completes).map_err(Clone::clone));
                }
            }
        });
        Ok(Coalescer { tx })
    }
}

/// Write a batch's rows, then its pages to the ledger, then read which of
/// its runs are complete.
async fn write_batch(
    writer: &Writer,
    ledger: &SqlSink,
    rows: &[StoredAlert],
    labels: &[String],
    pages: &[PageRecord],
) -> Result<BTreeSet<String>, WriteFailure> {
    if !rows.is_empty() {
        writer.write(rows, labels).await?;
    }
    let written = ledger::now();
    let pages: Vec<PageRecord> = pages
        .iter()
        .map(|p| PageRecord {
            written_at: written,
            ..p.clone()
        })
        .collect();
    ledger.record_pages(&pages).await?;
    let mut runs: Vec<String> = pages.iter().map(|p| p.run_id.clone()).collect();
    runs.sort();
    runs.dedup();
    Ok(ledger.complete_runs(&runs).await?.into_iter().collect())
}

/// What `parse-batch` hands to `insert`.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct InsertArgs {
    pub run_id: String,
    pub date: String,
    pub page: u32,
    pub rows: Vec<AlertRow>,
    /// The card content as read back, by Lark message id (`raw_content`).
    #[serde(default)]
    pub raw: BTreeMap<String, String>,
    /// Messages of the page skipped by reason (for the run ledger).
    #[serde(default)]
    pub skips: BTreeMap<String, u64>,
}

/// The worker's `insert` task; holds its one coalescer.
pub struct Insert {
    coalescer: Coalescer,
}

impl Insert {
    /// Starts the coalescer (a background task: call within a runtime).
    pub fn new(config: &AppConfig) -> Result<Insert, ConfigError> {
        Ok(Insert {
            coalescer: Coalescer::start(config)?,
        })
    }
}

impl Task for Insert {
    const NAME: &'static str = "insert";
    type Args = InsertArgs;

    fn queue(&self) -> &'static str {
        "db"
    }

    /// Database outages are ridden out: with the default backoff (1 s
    /// doubling, capped at 10 min) twelve retries cover well over an hour.
    fn max_retries(&self) -> Option<u32> {
        Some(12)
    }

    async fn run(&self, ctx: &TaskContext, a: InsertArgs) -> Result<(), TaskError> {
        let config = &ctx.services.config;
        let coalescer = &self.coalescer;
        let now = Utc::now();
        let n = a.rows.len();
        let rows: Vec<StoredAlert> = a
            .rows
            .into_iter()
            .map(|row| StoredAlert {
                raw_content: a.raw.get(&row.lark_message_id).cloned().unwrap_or_default(),
                row,
                ingested_at: now,
            })
            .collect();
        let date = chrono::NaiveDate::parse_from_str(&a.date, "%Y-%m-%d")
            .map_err(|e| TaskError::fatal(format!("date {:?} is not YYYY-MM-DD: {e}", a.date)))?;
        let (done, wait) = oneshot::channel();
        coalescer
            .tx
            .send(Submission {
                rows,
                label_part: format!("{}:{}", a.run_id, a.page),
                page: PageRecord {
                    run_id: a.run_id.clone(),
                    page: a.page,
                    date,
                    rows: n as u64,
                    skips: a.skips,
                    written_at: ledger::epoch(),
                },
                done,
            })
            .await
            .map_err(|_| TaskError::retry("the insert coalescer stopped"))?;
        let completes = match wait.await {
            Ok(Ok(completes)) => completes,
            Ok(Err(failure)) => return Err(failure.into()),
            Err(_) => return Err(TaskError::retry("the insert coalescer stopped")),
        };
        let runs = RunState::new(
            ctx.services.redis.clone(),
            &config.namespace,
            config.state.ttl.0,
        );
        runs.page_written(&a.run_id, a.page, n).await?;
        if completes {
            publish_recommend(ctx, &runs, &a.run_id, &a.date).await?;
        }
        Ok(())
    }
}
