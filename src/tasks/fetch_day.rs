//! `fetch-day`: pages through one Pacific day (or today so far) of a Lark
//! chat's history and publishes one `parse-batch` per page.
//!
//! Page children have ids derived from this task's id and the page number,
//! so a retried `fetch-day` republishes the same pages (and the inserts are
//! idempotent): a retry never doubles rows. The run's window (its end, for
//! an `until = "now"` run) is fixed on the first attempt in the run ledger
//! (`pipeline_runs`), so retries and `reconcile`'s re-drives page over the
//! same window whatever Redis kept; the page total is recorded there once
//! the last page is published, and the run barrier is checked.

use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use tracing::info;

use crate::config::{AppConfig, ConfigError};
use crate::lark::client::{LarkClient, RetryPolicy};
use crate::lark::window::{api_window, pacific_date};
use crate::queue::task::{InvalidArgs, Task, TaskContext, TaskError};
use crate::run_state::RunState;
use crate::sink::ledger::RunRecord;
use crate::sink::starrocks::SqlSink;
use crate::tasks::Shared;
use crate::tasks::parse_batch::{ParseBatch, ParseBatchArgs};

/// The rate-limit key every Lark Open API call takes a slot of.
pub const LARK_RATE_KEY: &str = "lark.api";

/// Holds the process's one Lark client, so every `fetch-day` of a worker
/// shares its tenant token. Without Lark credentials there is no client:
/// the task is registered (it can be enqueued and scheduled) and a worker
/// that consumes its queue refuses to start (see [`Task::unavailable`]).
pub struct FetchDay {
    client: Option<LarkClient>,
    default_chat: String,
    /// The run ledger's database.
    sink: SqlSink,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FetchDayArgs {
    /// A Pacific calendar day, `YYYY-MM-DD`.
    pub date: String,
    /// `"now"`: only up to the current time (today so far).
    #[serde(default)]
    pub until: Option<String>,
    /// Default: `lark.chat_id`.
    #[serde(default)]
    pub chat_id: Option<String>,
}

impl FetchDay {
    pub fn new(config: &AppConfig, shared: &Shared) -> Result<FetchDay, ConfigError> {
        let lark = &config.lark;
        let client = if lark.app_id.is_empty() || lark.app_secret.is_empty() {
            None
        } else {
            Some(
                LarkClient::new(lark, Some(shared.limiter.clone()), LARK_RATE_KEY)
                    .map_err(|e| config.invalid("lark", &e.to_string()))?,
            )
        };
        Ok(FetchDay {
            client,
            default_chat: lark.chat_id.clone(),
            sink: SqlSink::new(config),
        })
    }
}

/// Why `fetch-day` cannot run without Lark credentials.
const NO_CREDENTIALS: &str = "Lark credentials are not configured: set lark.app_id and lark.app_secret (or LARK_APP_ID and LARK_APP_SECRET)";

/// A run date that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunDateError {
    #[error("date {input:?} is not YYYY-MM-DD: {source}")]
    NotADate {
        input: String,
        source: chrono::ParseError,
    },
    #[error("date {date} is in the future (today is {today} in America/Los_Angeles)")]
    InTheFuture { date: NaiveDate, today: NaiveDate },
}

/// Parse and check a run date: a real date, not in the future.
pub fn parse_run_date(s: &str) -> Result<NaiveDate, RunDateError> {
    check_run_date(s, pacific_date(Utc::now()))
}

/// [`parse_run_date`] with the Pacific `today` given.
pub fn check_run_date(s: &str, today: NaiveDate) -> Result<NaiveDate, RunDateError> {
    let date =
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|source| RunDateError::NotADate {
            input: s.to_string(),
            source,
        })?;
    if date > today {
        return Err(RunDateError::InTheFuture { date, today });
    }
    Ok(date)
}

impl Task for FetchDay {
    const NAME: &'static str = "fetch-day";
    type Args = FetchDayArgs;

    fn queue(&self) -> &'static str {
        "lark"
    }

    fn unavailable(&self) -> Option<String> {
        self.client.is_none().then(|| NO_CREDENTIALS.to_string())
    }

    fn validate(&self, a: &FetchDayArgs) -> Result<(), InvalidArgs> {
        parse_run_date(&a.date).map_err(|e| InvalidArgs::field("date", e))?;
        match a.until.as_deref() {
            None | Some("now") => Ok(()),
            Some(other) => Err(InvalidArgs::field(
                "until",
                format!("must be \"now\" (or absent), not {other:?}"),
            )),
        }
    }

    async fn run(&self, ctx: &TaskContext, a: FetchDayArgs) -> Result<(), TaskError> {
        let date = parse_run_date(&a.date).map_err(TaskError::fatal)?;
        let until = match a.until.as_deref() {
            None => None,
            Some("now") => Some(Utc::now()),
            Some(other) => {
                return Err(TaskError::fatal(format!(
                    "until must be \"now\" (or absent), not {other:?}"
                )));
            }
        };
        let config = &ctx.services.config;
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| TaskError::fatal(NO_CREDENTIALS))?;
        let chat = a
            .chat_id
            .clone()
            .unwrap_or_else(|| self.default_chat.clone());
        let run_id = ctx
            .envelope
            .run_id
            .clone()
            .unwrap_or_else(|| ctx.envelope.root_id.to_string());
        let runs = RunState::new(
            ctx.services.redis.clone(),
            &config.namespace,
            config.state.ttl.0,
        );
        // The ledger fixes the window on the first attempt, so a retry (or a
        // re-drive by `reconcile`) pages over the same window even when Redis
        // lost the run's hash.
        let run = match self.sink.ledger_run(&run_id).await? {
            Some(r) => r,
            None => {
                let (start, end) = api_window(date, until);
                let at = |s: i64| {
                    chrono::DateTime::from_timestamp(s, 0)
                        .expect("window in range")
                        .naive_utc()
                };
                let r = RunRecord {
                    run_id: run_id.clone(),
                    date,
                    chat_id: chat.clone(),
                    window_start: at(start),
                    window_end: at(end),
                    started_at: crate::sink::ledger::now(),
                    total_pages: None,
                    messages: 0,
                    fetched_at: None,
                };
                self.sink.record_run(&r).await?;
                r
            }
        };
        let chat = run.chat_id.clone();
        let start = run.window_start.and_utc().timestamp();
        let end = run.window_end.and_utc().timestamp();
        runs.begin(&run_id, &a.date, &chat).await?;
        // Ride out short trouble in place; longer trouble retries the task.
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let mut token: Option<String> = None;
        let mut page_no: u32 = 0;
        let mut messages = 0usize;
        loop {
            page_no += 1;
            let page = client
                .list_messages_retrying(&chat, start, end, token.as_deref(), &policy)
                .await?;
            messages += page.items.len();
            let n = page.items.len();
            let mut child = ctx.child_task::<ParseBatch>(
                &ParseBatchArgs {
                    run_id: run_id.clone(),
                    date: a.date.clone(),
                    page: page_no,
                    items: page.items,
                },
                Some(&format!("page-{page_no}")),
            )?;
            child.run_id = Some(run_id.clone());
            ctx.publish_children(vec![child]).await?;
            runs.page_fetched(&run_id, page_no, n).await?;
            match (page.has_more, page.page_token) {
                (true, Some(t)) => token = Some(t),
                (true, None) => {
                    return Err(TaskError::retry(
                        "Lark said has_more but sent no page_token; retrying the day",
                    ));
                }
                (false, _) => break,
            }
        }
        self.sink
            .record_run(&RunRecord {
                total_pages: Some(page_no),
                messages: messages as u64,
                fetched_at: Some(crate::sink::ledger::now()),
                ..run
            })
            .await?;
        runs.fetch_done(&run_id, page_no).await?;
        crate::run_state::complete_if_done(ctx, &runs, &self.sink, &run_id, &a.date).await?;
        info!(date = %a.date, chat = %chat, pages = page_no, messages, run_id = %run_id, "day fetched");
        Ok(())
    }
}
