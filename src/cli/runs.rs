//! `alertflow runs`: the runs of the last days, from the database run
//! ledger (so the story of a day survives Redis TTLs, restarts and data
//! loss), and the same for one date in `alertflow report`.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, print_table};
use crate::reconcile::{DEFAULT_STALL_AFTER, latest_recommends, run_recommended, since_date};
use crate::sink::ledger::{self, DayRows, RecommendRecord, RunLedger};
use crate::sink::starrocks::SqlSink;

#[derive(clap::Args, Debug)]
pub struct RunsArgs {
    /// How far back: `7d` (the default), `36h`, `30d`, ...
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub since: String,
    /// Database to read (default: mysql.database), e.g. `alertflow_demo`.
    #[arg(long)]
    pub database: Option<String>,
    /// Print the runs as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// Where a run stands, as the ledger tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Every page written and the date's recommendations computed from
    /// every row the run wrote (see [`run_recommended`]).
    Done,
    /// Every page written; no recommendation of the date read its rows yet
    /// (a `recommend` is due, or `reconcile` will publish one).
    Recommending,
    /// Pages still to fetch or write, and the run wrote something lately.
    InProgress,
    /// Pages missing and nothing written for the stall bound.
    Stalled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Done => "done",
            RunStatus::Recommending => "recommending",
            RunStatus::InProgress => "in progress",
            RunStatus::Stalled => "stalled",
        }
    }
}

/// A run as `alertflow runs` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub ledger: RunLedger,
    pub status: RunStatus,
    /// When the date's recommendations were last computed, and from how
    /// many rows (whichever run, reconcile or hand asked).
    pub recommended_at: Option<NaiveDateTime>,
    pub recommended_from_rows: Option<u64>,
}

/// Judge each run against its date's rows and recommendations at `now`.
pub fn views(
    runs: Vec<RunLedger>,
    days: &[DayRows],
    recs: &[RecommendRecord],
    now: NaiveDateTime,
) -> Vec<RunView> {
    let latest = latest_recommends(recs);
    let rows: BTreeMap<NaiveDate, &DayRows> = days.iter().map(|d| (d.date, d)).collect();
    let stall = chrono::Duration::from_std(DEFAULT_STALL_AFTER).expect("in range");
    runs.into_iter()
        .map(|l| {
            let rec = latest.get(&l.run.date).copied();
            let covered = run_recommended(&l, rows.get(&l.run.date).copied(), recs);
            let status = match (l.complete(), covered) {
                (true, true) => RunStatus::Done,
                (true, false) => RunStatus::Recommending,
                (false, _) if now - l.last_activity() < stall => RunStatus::InProgress,
                (false, _) => RunStatus::Stalled,
            };
            RunView {
                status,
                recommended_at: rec.map(|r| r.generated_at),
                recommended_from_rows: rec.map(|r| r.rows_read),
                ledger: l,
            }
        })
        .collect()
}

/// A run-ledger read that failed, as the CLI says it.
pub fn ledger_error(e: impl std::fmt::Display) -> CliError {
    CliError::failure(format!("reading the run ledger: {e}"))
}

/// The runs of dates from `since` on (by date, then start), judged now.
pub async fn read_views(sink: &SqlSink, since: NaiveDate) -> Result<Vec<RunView>, CliError> {
    let runs = sink.runs_since(since).await.map_err(ledger_error)?;
    let days = sink.day_rows_since(since).await.map_err(ledger_error)?;
    let recs = sink.recommends_since(since).await.map_err(ledger_error)?;
    Ok(views(runs, &days, &recs, ledger::now()))
}

/// The runs as a table.
pub fn print_runs(views: &[RunView]) {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let l = &v.ledger;
            vec![
                l.run.date.to_string(),
                l.run.run_id.clone(),
                l.run.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                match l.run.total_pages {
                    Some(t) => format!("{}/{t}", l.pages_written),
                    None => format!("{}/?", l.pages_written),
                },
                l.run.messages.to_string(),
                l.rows_written.to_string(),
                l.skips
                    .iter()
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                match (v.recommended_at, v.recommended_from_rows) {
                    (Some(at), Some(n)) => format!("{} from {n} rows", at.format("%H:%M:%S")),
                    _ => "-".into(),
                },
                v.status.as_str().to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "DATE",
            "RUN",
            "STARTED (UTC)",
            "PAGES",
            "MESSAGES",
            "ROWS",
            "SKIPPED",
            "RECOMMENDED (UTC)",
            "STATUS",
        ],
        &rows,
    );
}

pub async fn runs(g: &GlobalOpts, a: RunsArgs) -> CliResult {
    let mut config = (*g.load_config()?).clone();
    if let Some(db) = &a.database {
        config.mysql.database = db.clone();
    }
    let since = crate::config::parse_duration(&a.since)
        .map_err(|e| CliError::usage(format!("--since: {e}")))?;
    let from = since_date(chrono::Utc::now(), since);
    let sink = SqlSink::new(&config);
    let views = read_views(&sink, from).await;
    sink.close().await;
    let views = views?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&views).expect("runs serialize")
        );
    } else if views.is_empty() {
        println!("no runs recorded since {from}");
    } else {
        print_runs(&views);
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ledger::RunRecord;

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn a_run_is_judged_on_its_pages_and_its_dates_recommendation() {
        let date: NaiveDate = "2026-03-01".parse().unwrap();
        let run = |total: Option<u32>, written: u64| RunLedger {
            run: RunRecord {
                run_id: "r1".into(),
                date,
                chat_id: "oc".into(),
                window_start: t("2026-03-01 08:00:00"),
                window_end: t("2026-03-02 07:59:59"),
                started_at: t("2026-03-02 10:00:00"),
                total_pages: total,
                messages: 100,
                fetched_at: None,
            },
            pages_written: written,
            rows_written: 40,
            skips: BTreeMap::new(),
            last_written_at: Some(t("2026-03-02 10:00:10")),
        };
        let day = DayRows {
            date,
            rows: 40,
            max_ingested_at: Some(t("2026-03-02 10:00:10")),
        };
        let rec = RecommendRecord {
            date,
            run_id: String::new(),
            generated_at: t("2026-03-02 10:00:11"),
            rows_read: 40,
            alerts: 5,
            max_ingested_at: Some(t("2026-03-02 10:00:10")),
        };
        let now = t("2026-03-02 10:01:00");
        let one = |l, recs: &[RecommendRecord], now| {
            views(vec![l], std::slice::from_ref(&day), recs, now)
        };
        assert_eq!(
            one(run(Some(2), 2), std::slice::from_ref(&rec), now)[0].status,
            RunStatus::Done
        );
        assert_eq!(
            one(run(Some(2), 2), &[], now)[0].status,
            RunStatus::Recommending
        );
        let stale = RecommendRecord {
            rows_read: 39,
            ..rec.clone()
        };
        assert_eq!(
            one(run(Some(2), 2), &[stale], now)[0].status,
            RunStatus::Recommending
        );
        assert_eq!(
            one(run(Some(2), 1), std::slice::from_ref(&rec), now)[0].status,
            RunStatus::InProgress
        );
        assert_eq!(
            one(run(None, 1), &[], t("2026-03-02 11:00:00"))[0].status,
            RunStatus::Stalled
        );
        let v = &one(run(Some(2), 2), &[rec], now)[0];
        assert_eq!(v.recommended_from_rows, Some(40));
    }
}
