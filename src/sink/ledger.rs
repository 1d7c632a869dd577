//! The run ledger: what the pipeline did, kept in the database beside the
//! rows (`pipeline_runs`, `pipeline_pages`, `pipeline_recommends`, see
//! [`schema`](crate::sink::schema)), so that a run's story and the run
//! barrier survive Redis losing its data.
//!
//! Every write is a whole-row upsert on the table key, by the task that did
//! the work and after its effect: replaying a write leaves the same row.
//! Timestamps are UTC, at second precision, as the rows' own.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use mysql_async::Row;
use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::sink::schema::{self, Table};
use crate::sink::starrocks::{SinkError, SqlSink, classify, date_lit, lit};

const DATETIME: &str = "%Y-%m-%d %H:%M:%S";

/// What `DATETIME` columns hold where there is nothing to say yet.
pub fn epoch() -> NaiveDateTime {
    chrono::DateTime::UNIX_EPOCH.naive_utc()
}

/// The current UTC time at the ledger's precision (whole seconds).
pub fn now() -> NaiveDateTime {
    let t = chrono::Utc::now().naive_utc();
    t - chrono::Duration::nanoseconds(i64::from(t.and_utc().timestamp_subsec_nanos()))
}

/// A run as `fetch-day` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub date: NaiveDate,
    pub chat_id: String,
    pub window_start: NaiveDateTime,
    pub window_end: NaiveDateTime,
    pub started_at: NaiveDateTime,
    /// Pages published; `None` until the last page is known.
    pub total_pages: Option<u32>,
    pub messages: u64,
    /// When the last page was published.
    pub fetched_at: Option<NaiveDateTime>,
}

/// A page as `insert` records it, once its rows are written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageRecord {
    pub run_id: String,
    pub page: u32,
    pub date: NaiveDate,
    pub rows: u64,
    pub skips: BTreeMap<String, u64>,
    pub written_at: NaiveDateTime,
}

/// A computation of a date's recommendations, as `recommend` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecommendRecord {
    pub date: NaiveDate,
    /// The run that asked for it; empty for `reconcile` and by hand.
    pub run_id: String,
    pub generated_at: NaiveDateTime,
    /// Alert rows of the date it read.
    pub rows_read: u64,
    /// Recommendations it wrote.
    pub alerts: u64,
    /// The newest `ingested_at` among the rows it read.
    pub max_ingested_at: Option<NaiveDateTime>,
}

/// A run with its pages summed: what the ledger knows of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunLedger {
    pub run: RunRecord,
    pub pages_written: u64,
    pub rows_written: u64,
    pub skips: BTreeMap<String, u64>,
    /// When its last-written page was written.
    pub last_written_at: Option<NaiveDateTime>,
}

impl RunLedger {
    /// Every page of the run is written (so its last page is known).
    pub fn complete(&self) -> bool {
        self.run
            .total_pages
            .is_some_and(|t| self.pages_written >= u64::from(t))
    }

    /// The last time the run was seen doing something.
    pub fn last_activity(&self) -> NaiveDateTime {
        [
            Some(self.run.started_at),
            self.run.fetched_at,
            self.last_written_at,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(self.run.started_at)
    }
}

/// A date's rows in `lark_alerts`: how many, and the newest write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DayRows {
    pub date: NaiveDate,
    pub rows: u64,
    pub max_ingested_at: Option<NaiveDateTime>,
}

/// Per run: pages, rows, skips by reason, last written.
type PageSums = (u64, u64, BTreeMap<String, u64>, Option<NaiveDateTime>);

pub(crate) fn dt(v: NaiveDateTime) -> String {
    lit(v.format(DATETIME).to_string())
}

pub(crate) fn parse_dt(s: &str, table: &str) -> Result<NaiveDateTime, SinkError> {
    NaiveDateTime::parse_from_str(s, DATETIME).map_err(|e| SinkError::Data {
        table: table.into(),
        message: format!("bad datetime {s:?}: {e}"),
    })
}

fn parse_date(s: &str, table: &str) -> Result<NaiveDate, SinkError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| SinkError::Data {
        table: table.into(),
        message: format!("bad date {s:?}: {e}"),
    })
}

/// `None` for the epoch placeholder.
fn non_epoch(v: NaiveDateTime) -> Option<NaiveDateTime> {
    (v != epoch()).then_some(v)
}

pub(crate) fn select_dt(col: &str) -> String {
    format!("DATE_FORMAT({col}, '%Y-%m-%d %H:%i:%s')")
}

fn select_date(col: &str) -> String {
    format!("DATE_FORMAT({col}, '%Y-%m-%d')")
}

fn in_list(ids: &[String]) -> String {
    ids.iter()
        .map(|i| lit(i.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `s` cut to `max` characters (with `…`), for a column of bounded size.
pub(crate) fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Text of column `i`, empty when NULL.
pub(crate) fn text(r: &mut Row, i: usize) -> String {
    r.take::<Option<String>, _>(i).flatten().unwrap_or_default()
}

pub(crate) fn num(r: &mut Row, i: usize) -> u64 {
    text(r, i).parse::<f64>().map(|f| f as u64).unwrap_or(0)
}

impl SqlSink {
    pub(crate) async fn upsert(&self, t: &Table, values: Vec<String>) -> Result<(), SinkError> {
        if values.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        c.query_drop(self.insert_sql(t, &values))
            .await
            .map_err(classify)
    }

    pub(crate) async fn select(&self, q: String) -> Result<Vec<Row>, SinkError> {
        let mut c = self.conn().await?;
        c.query(q).await.map_err(classify)
    }

    /// Write a run's row (whole, replacing what was there).
    pub async fn record_run(&self, r: &RunRecord) -> Result<(), SinkError> {
        let v = format!(
            "({}, {}, {}, {}, {}, {}, {}, {}, {})",
            lit(r.run_id.as_str()),
            lit(r.date.format("%Y-%m-%d").to_string()),
            lit(r.chat_id.as_str()),
            dt(r.window_start),
            dt(r.window_end),
            dt(r.started_at),
            lit(r.total_pages.unwrap_or(0)),
            lit(r.messages),
            dt(r.fetched_at.unwrap_or(r.started_at)),
        );
        self.upsert(&schema::PIPELINE_RUNS, vec![v]).await
    }

    /// Write pages' rows.
    pub async fn record_pages(&self, pages: &[PageRecord]) -> Result<(), SinkError> {
        let values = pages
            .iter()
            .map(|p| {
                format!(
                    "({}, {}, {}, {}, {}, {})",
                    lit(p.run_id.as_str()),
                    lit(p.page),
                    lit(p.date.format("%Y-%m-%d").to_string()),
                    lit(p.rows),
                    lit(serde_json::to_string(&p.skips).expect("skip counts serialize")),
                    dt(p.written_at),
                )
            })
            .collect();
        self.upsert(&schema::PIPELINE_PAGES, values).await
    }

    /// Write a recommendation computation's row.
    pub async fn record_recommend(&self, r: &RecommendRecord) -> Result<(), SinkError> {
        let v = format!(
            "({}, {}, {}, {}, {}, {})",
            lit(r.date.format("%Y-%m-%d").to_string()),
            lit(r.run_id.as_str()),
            dt(r.generated_at),
            lit(r.rows_read),
            lit(r.alerts),
            dt(r.max_ingested_at.unwrap_or_else(epoch)),
        );
        self.upsert(&schema::PIPELINE_RECOMMENDS, vec![v]).await
    }

    async fn run_rows(&self, filter: String) -> Result<Vec<RunRecord>, SinkError> {
        let t = &schema::PIPELINE_RUNS;
        let q = format!(
            "SELECT run_id, {}, chat_id, {}, {}, {}, total_pages, messages, {} FROM {} WHERE {filter} \
             ORDER BY report_date, started_at, run_id",
            select_date("report_date"),
            select_dt("window_start"),
            select_dt("window_end"),
            select_dt("started_at"),
            select_dt("fetched_at"),
            self.table(t),
        );
        let mut out = Vec::new();
        for mut r in self.select(q).await? {
            let total = num(&mut r, 6) as u32;
            let started_at = parse_dt(&text(&mut r, 5), t.name)?;
            out.push(RunRecord {
                run_id: text(&mut r, 0),
                date: parse_date(&text(&mut r, 1), t.name)?,
                chat_id: text(&mut r, 2),
                window_start: parse_dt(&text(&mut r, 3), t.name)?,
                window_end: parse_dt(&text(&mut r, 4), t.name)?,
                started_at,
                total_pages: (total > 0).then_some(total),
                messages: num(&mut r, 7),
                fetched_at: (total > 0)
                    .then(|| parse_dt(&text(&mut r, 8), t.name))
                    .transpose()?,
            });
        }
        Ok(out)
    }

    /// A run's row, if it was recorded.
    pub async fn ledger_run(&self, run_id: &str) -> Result<Option<RunRecord>, SinkError> {
        Ok(self
            .run_rows(format!("run_id = {}", lit(run_id)))
            .await?
            .into_iter()
            .next())
    }

    /// How many pages of each run are written (runs with none are absent).
    pub async fn pages_written(
        &self,
        run_ids: &[String],
    ) -> Result<BTreeMap<String, u64>, SinkError> {
        if run_ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let q = format!(
            "SELECT run_id, COUNT(*) FROM {} WHERE run_id IN ({}) GROUP BY run_id",
            self.table(&schema::PIPELINE_PAGES),
            in_list(run_ids)
        );
        Ok(self
            .select(q)
            .await?
            .into_iter()
            .map(|mut r| (text(&mut r, 0), num(&mut r, 1)))
            .collect())
    }

    /// Which of these runs have every page written: the run barrier (the
    /// SQL form of [`RunLedger::complete`]), one statement per call, as the
    /// insert coalescer asks it after every batch.
    pub async fn complete_runs(&self, run_ids: &[String]) -> Result<Vec<String>, SinkError> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = in_list(run_ids);
        let q = format!(
            "SELECT r.run_id FROM {} r JOIN \
             (SELECT run_id, COUNT(*) AS written FROM {} WHERE run_id IN ({ids}) GROUP BY run_id) p \
             ON p.run_id = r.run_id \
             WHERE r.run_id IN ({ids}) AND r.total_pages > 0 AND p.written >= r.total_pages",
            self.table(&schema::PIPELINE_RUNS),
            self.table(&schema::PIPELINE_PAGES),
        );
        Ok(self
            .select(q)
            .await?
            .into_iter()
            .map(|mut r| text(&mut r, 0))
            .collect())
    }

    async fn ledgers(&self, runs: Vec<RunRecord>) -> Result<Vec<RunLedger>, SinkError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
        let t = &schema::PIPELINE_PAGES;
        let q = format!(
            "SELECT run_id, rows_written, skips, {} FROM {} WHERE run_id IN ({})",
            select_dt("written_at"),
            self.table(t),
            in_list(&ids)
        );
        let mut pages: BTreeMap<String, PageSums> = BTreeMap::new();
        for mut r in self.select(q).await? {
            let e = pages.entry(text(&mut r, 0)).or_default();
            e.0 += 1;
            e.1 += num(&mut r, 1);
            let skips: BTreeMap<String, u64> =
                serde_json::from_str(&text(&mut r, 2)).unwrap_or_default();
            for (reason, n) in skips {
                *e.2.entry(reason).or_default() += n;
            }
            let at = parse_dt(&text(&mut r, 3), t.name)?;
            e.3 = e.3.max(Some(at));
        }
        Ok(runs
            .into_iter()
            .map(|run| {
                let (pages_written, rows_written, skips, last_written_at) =
                    pages.remove(&run.run_id).unwrap_or_default();
                RunLedger {
                    run,
                    pages_written,
                    rows_written,
                    skips,
                    last_written_at,
                }
            })
            .collect())
    }

    /// These runs as the ledger knows them (unknown ids are absent).
    pub async fn run_ledgers(&self, run_ids: &[String]) -> Result<Vec<RunLedger>, SinkError> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let runs = self
            .run_rows(format!("run_id IN ({})", in_list(run_ids)))
            .await?;
        self.ledgers(runs).await
    }

    /// Every run of a date from `since` on, oldest first.
    pub async fn runs_since(&self, since: NaiveDate) -> Result<Vec<RunLedger>, SinkError> {
        let runs = self
            .run_rows(format!(
                "report_date >= {}",
                date_lit(&since.to_string(), schema::PIPELINE_RUNS.name)?
            ))
            .await?;
        self.ledgers(runs).await
    }

    /// Every run of one date, oldest first.
    pub async fn runs_on(&self, date: NaiveDate) -> Result<Vec<RunLedger>, SinkError> {
        let runs = self
            .run_rows(format!(
                "report_date = {}",
                date_lit(&date.to_string(), schema::PIPELINE_RUNS.name)?
            ))
            .await?;
        self.ledgers(runs).await
    }

    /// Rows per date in `lark_alerts` from `since` on (dates with rows only).
    pub async fn day_rows_since(&self, since: NaiveDate) -> Result<Vec<DayRows>, SinkError> {
        let t = &schema::LARK_ALERTS;
        let q = format!(
            "SELECT {}, COUNT(*), {} FROM {} WHERE alert_date >= {} GROUP BY alert_date ORDER BY alert_date",
            select_date("alert_date"),
            select_dt("MAX(ingested_at)"),
            self.table(t),
            date_lit(&since.to_string(), t.name)?
        );
        let mut out = Vec::new();
        for mut r in self.select(q).await? {
            let date = parse_date(&text(&mut r, 0), t.name)?;
            let rows = num(&mut r, 1);
            let max = text(&mut r, 2);
            out.push(DayRows {
                date,
                rows,
                max_ingested_at: if max.is_empty() {
                    None
                } else {
                    Some(parse_dt(&max, t.name)?)
                },
            });
        }
        Ok(out)
    }

    /// The message time of the newest alert card of `chat` among the
    /// dates from `since` on (`None`: none); for the source-silent
    /// watchdog.
    pub async fn newest_card(
        &self,
        chat: &str,
        since: NaiveDate,
    ) -> Result<Option<NaiveDateTime>, SinkError> {
        let t = &schema::LARK_ALERTS;
        let q = format!(
            "SELECT {} FROM {} WHERE alert_date >= {} AND chat_id = {}",
            select_dt("MAX(created_at)"),
            self.table(t),
            date_lit(&since.to_string(), t.name)?,
            lit(chat)
        );
        let mut rows = self.select(q).await?;
        let newest = rows.first_mut().map(|r| text(r, 0)).unwrap_or_default();
        if newest.is_empty() {
            return Ok(None);
        }
        Ok(Some(parse_dt(&newest, t.name)?))
    }

    /// Every recommendation computation of a date from `since` on.
    pub async fn recommends_since(
        &self,
        since: NaiveDate,
    ) -> Result<Vec<RecommendRecord>, SinkError> {
        let t = &schema::PIPELINE_RECOMMENDS;
        let q = format!(
            "SELECT {}, run_id, {}, rows_read, alerts, {} FROM {} WHERE report_date >= {} \
             ORDER BY report_date, generated_at, run_id",
            select_date("report_date"),
            select_dt("generated_at"),
            select_dt("max_ingested_at"),
            self.table(t),
            date_lit(&since.to_string(), t.name)?
        );
        let mut out = Vec::new();
        for mut r in self.select(q).await? {
            out.push(RecommendRecord {
                date: parse_date(&text(&mut r, 0), t.name)?,
                run_id: text(&mut r, 1),
                generated_at: parse_dt(&text(&mut r, 2), t.name)?,
                rows_read: num(&mut r, 3),
                alerts: num(&mut r, 4),
                max_ingested_at: non_epoch(parse_dt(&text(&mut r, 5), t.name)?),
            });
        }
        Ok(out)
    }
}
