//! Reconcile: the safety net under the run barrier. From the database
//! ledger (and nothing in Redis but whether a run's progress hash is still
//! there) it finds
//!
//! - days whose recommendations are missing or stale — the day has rows and
//!   no recommendation, or more or newer rows than its latest recommendation
//!   was computed from — and no run of the day still in progress: their
//!   `recommend` is published again;
//! - runs that stopped making progress (no page written for `stall_after`,
//!   not every page written) whose Redis progress is gone: they are re-driven,
//!   a `fetch-day` with the same run id, which pages over the window the
//!   ledger fixed and rewrites the same rows (idempotent). A stalled run whose
//!   progress is still in Redis is reported, not re-driven: its tasks are in
//!   the queues or the dead letters, where `alertflow dead` shows them.
//!
//! [`plan`] decides, purely, from [`Facts`] and a clock; [`gather`] reads
//! the facts; the `reconcile` task and `alertflow reconcile` publish the
//! plan's [`Plan::tasks`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;
use serde_json::{Value, json};

use crate::queue::task::TaskError;
use crate::run_state::RunState;
use crate::sink::ledger::{DayRows, RecommendRecord, RunLedger};
use crate::sink::starrocks::SqlSink;

/// Default look-back of a reconcile.
pub const DEFAULT_SINCE: Duration = Duration::from_secs(7 * 86_400);
/// Default: a run that wrote nothing for this long has stopped.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(15 * 60);

/// What the ledger (and Redis) say about the days and runs since a date.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub days: Vec<DayRows>,
    pub recommends: Vec<RecommendRecord>,
    pub runs: Vec<RunLedger>,
    /// Incomplete runs whose Redis progress hash is intact.
    pub intact: BTreeSet<String>,
}

/// Why a day's recommendations are computed again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "kebab-case")]
pub enum Stale {
    /// Rows and no recommendation at all.
    NoRecommendation { rows: u64 },
    /// The row count differs from what the latest recommendation read.
    RowCount { rows: u64, computed_from: u64 },
    /// Rows were written after the latest recommendation read them.
    NewerRows {
        newest: NaiveDateTime,
        computed_from: Option<NaiveDateTime>,
    },
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::NoRecommendation { rows } => write!(f, "{rows} rows, no recommendation"),
            Stale::RowCount {
                rows,
                computed_from,
            } => write!(
                f,
                "{rows} rows, recommendation computed from {computed_from}"
            ),
            Stale::NewerRows { newest, .. } => {
                write!(f, "rows written at {newest} after the recommendation")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Recompute {
    pub date: NaiveDate,
    #[serde(flatten)]
    pub stale: Stale,
}

/// A run that wrote nothing for `stall_after` with pages still missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stalled {
    pub run_id: String,
    pub date: NaiveDate,
    pub chat_id: String,
    pub pages_written: u64,
    pub total_pages: Option<u32>,
    pub idle_s: i64,
}

/// A day that waits for a run in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Waiting {
    pub date: NaiveDate,
    pub run_id: String,
}

/// What a reconcile does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Days whose `recommend` is published again.
    pub recompute: Vec<Recompute>,
    /// Stalled runs whose Redis progress is gone: re-driven.
    pub redrive: Vec<Stalled>,
    /// Stalled runs whose progress is still in Redis: left to their tasks.
    pub stalled: Vec<Stalled>,
    /// Stale days left alone because a run of theirs is in progress.
    pub waiting: Vec<Waiting>,
    /// Days with rows whose recommendations are up to date.
    pub fresh: usize,
}

/// A task the plan publishes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedTask {
    pub task: &'static str,
    pub args: Value,
    /// The run a re-drive continues.
    pub run_id: Option<String>,
    /// Distinguishes the children of one reconcile.
    pub key: String,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.recompute.is_empty() && self.redrive.is_empty()
    }

    /// The tasks to publish: a `recommend` per stale day, a `fetch-day` per
    /// re-driven run (same run id and chat; the ledger keeps its window).
    pub fn tasks(&self) -> Vec<PlannedTask> {
        let mut out: Vec<PlannedTask> = self
            .recompute
            .iter()
            .map(|r| PlannedTask {
                task: "recommend",
                args: json!({"date": r.date.to_string()}),
                run_id: None,
                key: format!("recommend:{}", r.date),
            })
            .collect();
        out.extend(self.redrive.iter().map(|s| PlannedTask {
            task: "fetch-day",
            args: json!({"date": s.date.to_string(), "chat_id": s.chat_id}),
            run_id: Some(s.run_id.clone()),
            key: format!("redrive:{}", s.run_id),
        }));
        out
    }
}

/// Decide what to do, at `now`, with runs stalled after `stall_after`.
pub fn plan(facts: &Facts, now: NaiveDateTime, stall_after: Duration) -> Plan {
    let stall = chrono::Duration::from_std(stall_after).unwrap_or(chrono::Duration::MAX);
    let mut out = Plan::default();
    // Per date, a run that blocks its recompute (in progress or re-driven).
    let mut busy: BTreeMap<NaiveDate, String> = BTreeMap::new();
    for r in facts.runs.iter().filter(|r| !r.complete()) {
        let idle = now - r.last_activity();
        if idle < stall {
            busy.entry(r.run.date)
                .or_insert_with(|| r.run.run_id.clone());
            continue;
        }
        let s = Stalled {
            run_id: r.run.run_id.clone(),
            date: r.run.date,
            chat_id: r.run.chat_id.clone(),
            pages_written: r.pages_written,
            total_pages: r.run.total_pages,
            idle_s: idle.num_seconds(),
        };
        if facts.intact.contains(&r.run.run_id) {
            out.stalled.push(s);
        } else {
            busy.entry(r.run.date)
                .or_insert_with(|| r.run.run_id.clone());
            out.redrive.push(s);
        }
    }
    let latest = latest_recommends(&facts.recommends);
    for day in facts.days.iter().filter(|d| d.rows > 0) {
        let stale = staleness(day, latest.get(&day.date).copied());
        match (stale, busy.get(&day.date)) {
            (None, _) => out.fresh += 1,
            (Some(_), Some(run)) => out.waiting.push(Waiting {
                date: day.date,
                run_id: run.clone(),
            }),
            (Some(stale), None) => out.recompute.push(Recompute {
                date: day.date,
                stale,
            }),
        }
    }
    out
}

/// The latest recommendation computation of each date.
pub fn latest_recommends(recs: &[RecommendRecord]) -> BTreeMap<NaiveDate, &RecommendRecord> {
    let mut latest: BTreeMap<NaiveDate, &RecommendRecord> = BTreeMap::new();
    for rec in recs {
        let e = latest.entry(rec.date).or_insert(rec);
        if (rec.generated_at, &rec.run_id) > (e.generated_at, &e.run_id) {
            *e = rec;
        }
    }
    latest
}

/// Why a day's recommendations do not match its rows, given its latest
/// computation; `None` when they do.
pub fn staleness(day: &DayRows, latest: Option<&RecommendRecord>) -> Option<Stale> {
    match latest {
        None if day.rows == 0 => None,
        None => Some(Stale::NoRecommendation { rows: day.rows }),
        Some(rec) if rec.rows_read != day.rows => Some(Stale::RowCount {
            rows: day.rows,
            computed_from: rec.rows_read,
        }),
        Some(rec) => match day.max_ingested_at {
            Some(newest) if Some(newest) > rec.max_ingested_at => Some(Stale::NewerRows {
                newest,
                computed_from: rec.max_ingested_at,
            }),
            _ => None,
        },
    }
}

/// Whether a run's date has recommendations computed from every row the run
/// wrote: the run's own `recommend` recorded it, or the date's latest
/// computation (by `reconcile` or by hand) started after the run and read as
/// many rows as the date has. Rows are only ever added, so reading as many
/// means reading them all; a replayed page rewrites the same rows (newer
/// `ingested_at`, same content), which is why this, unlike [`staleness`],
/// does not compare write times.
pub fn run_recommended(run: &RunLedger, day: Option<&DayRows>, recs: &[RecommendRecord]) -> bool {
    let rows = day.map_or(0, |d| d.rows);
    recs.iter().filter(|r| r.date == run.run.date).any(|r| {
        r.run_id == run.run.run_id || (r.generated_at >= run.run.started_at && r.rows_read == rows)
    })
}

/// Read the facts for dates from `since` on: the ledger from the database,
/// and for each incomplete run whether its Redis progress is intact.
pub async fn gather(sink: &SqlSink, runs: &RunState, since: NaiveDate) -> Result<Facts, TaskError> {
    let days = sink.day_rows_since(since).await?;
    let recommends = sink.recommends_since(since).await?;
    let ledger = sink.runs_since(since).await?;
    let mut intact = BTreeSet::new();
    for r in ledger.iter().filter(|r| !r.complete()) {
        if runs.intact(&r.run.run_id).await? {
            intact.insert(r.run.run_id.clone());
        }
    }
    Ok(Facts {
        days,
        recommends,
        runs: ledger,
        intact,
    })
}

/// The first date a look-back of `since` covers, on Pacific dates.
pub fn since_date(now: chrono::DateTime<chrono::Utc>, since: Duration) -> NaiveDate {
    let back = chrono::Duration::from_std(since).unwrap_or(chrono::Duration::days(366));
    crate::lark::window::pacific_date(now - back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ledger::RunRecord;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }
    fn run(id: &str, date: &str, total: Option<u32>, written: u64, last: &str) -> RunLedger {
        RunLedger {
            run: RunRecord {
                run_id: id.into(),
                date: d(date),
                chat_id: "oc_1".into(),
                window_start: t("2026-03-01 08:00:00"),
                window_end: t("2026-03-02 07:59:59"),
                started_at: t("2026-03-02 10:00:00"),
                total_pages: total,
                messages: 0,
                fetched_at: total.map(|_| t("2026-03-02 10:00:05")),
            },
            pages_written: written,
            rows_written: written * 10,
            skips: BTreeMap::new(),
            last_written_at: (written > 0).then(|| t(last)),
        }
    }
    fn rows(date: &str, n: u64, newest: &str) -> DayRows {
        DayRows {
            date: d(date),
            rows: n,
            max_ingested_at: Some(t(newest)),
        }
    }
    fn rec(date: &str, run: &str, at: &str, n: u64, newest: &str) -> RecommendRecord {
        RecommendRecord {
            date: d(date),
            run_id: run.into(),
            generated_at: t(at),
            rows_read: n,
            alerts: 3,
            max_ingested_at: Some(t(newest)),
        }
    }
    const STALL: Duration = Duration::from_secs(15 * 60);

    #[test]
    fn a_day_with_rows_and_no_recommendation_is_recomputed() {
        let f = Facts {
            days: vec![rows("2026-03-01", 40, "2026-03-02 10:01:00")],
            runs: vec![run("r1", "2026-03-01", Some(4), 4, "2026-03-02 10:01:00")],
            ..Facts::default()
        };
        let p = plan(&f, t("2026-03-02 10:02:00"), STALL);
        assert_eq!(
            p.recompute,
            [Recompute {
                date: d("2026-03-01"),
                stale: Stale::NoRecommendation { rows: 40 }
            }]
        );
        assert!(p.redrive.is_empty() && p.waiting.is_empty());
        assert_eq!(
            p.tasks(),
            [PlannedTask {
                task: "recommend",
                args: json!({"date": "2026-03-01"}),
                run_id: None,
                key: "recommend:2026-03-01".into(),
            }]
        );
    }

    #[test]
    fn a_fresh_day_is_left_alone_and_a_stale_one_is_not() {
        let f = Facts {
            days: vec![
                rows("2026-03-01", 40, "2026-03-02 10:01:00"),
                rows("2026-03-02", 41, "2026-03-03 10:01:00"),
                rows("2026-03-03", 40, "2026-03-04 10:05:00"),
            ],
            recommends: vec![
                rec(
                    "2026-03-01",
                    "r1",
                    "2026-03-02 10:02:00",
                    40,
                    "2026-03-02 10:01:00",
                ),
                // An older computation of the same day does not matter.
                rec(
                    "2026-03-01",
                    "",
                    "2026-03-02 09:00:00",
                    12,
                    "2026-03-02 08:00:00",
                ),
                rec(
                    "2026-03-02",
                    "r2",
                    "2026-03-03 10:02:00",
                    40,
                    "2026-03-03 10:01:00",
                ),
                rec(
                    "2026-03-03",
                    "r3",
                    "2026-03-04 10:02:00",
                    40,
                    "2026-03-04 10:01:00",
                ),
            ],
            ..Facts::default()
        };
        let p = plan(&f, t("2026-03-05 00:00:00"), STALL);
        assert_eq!(p.fresh, 1);
        assert_eq!(
            p.recompute,
            [
                Recompute {
                    date: d("2026-03-02"),
                    stale: Stale::RowCount {
                        rows: 41,
                        computed_from: 40
                    }
                },
                Recompute {
                    date: d("2026-03-03"),
                    stale: Stale::NewerRows {
                        newest: t("2026-03-04 10:05:00"),
                        computed_from: Some(t("2026-03-04 10:01:00"))
                    }
                },
            ]
        );
    }

    #[test]
    fn a_run_in_progress_holds_its_day_until_it_stalls() {
        let f = |intact: bool| Facts {
            days: vec![rows("2026-03-01", 20, "2026-03-02 10:01:00")],
            runs: vec![run("r1", "2026-03-01", Some(4), 2, "2026-03-02 10:01:00")],
            intact: if intact {
                ["r1".to_string()].into()
            } else {
                BTreeSet::new()
            },
            ..Facts::default()
        };
        // Written to a minute ago: in progress, the day waits.
        let p = plan(&f(false), t("2026-03-02 10:02:00"), STALL);
        assert!(p.recompute.is_empty() && p.redrive.is_empty(), "{p:?}");
        assert_eq!(
            p.waiting,
            [Waiting {
                date: d("2026-03-01"),
                run_id: "r1".into()
            }]
        );
        // Just under the stall bound: still in progress.
        let p = plan(&f(false), t("2026-03-02 10:15:59"), STALL);
        assert!(p.redrive.is_empty() && p.recompute.is_empty(), "{p:?}");
        // Stalled, Redis progress gone: re-driven, and the day waits for it.
        let p = plan(&f(false), t("2026-03-02 10:16:00"), STALL);
        assert_eq!(p.redrive.len(), 1, "{p:?}");
        assert_eq!(p.redrive[0].idle_s, 15 * 60);
        assert!(p.recompute.is_empty(), "{p:?}");
        assert_eq!(
            p.tasks(),
            [PlannedTask {
                task: "fetch-day",
                args: json!({"date": "2026-03-01", "chat_id": "oc_1"}),
                run_id: Some("r1".into()),
                key: "redrive:r1".into(),
            }]
        );
        // Stalled with its progress in Redis: reported, not re-driven, and
        // the rows there are recommended on.
        let p = plan(&f(true), t("2026-03-02 11:00:00"), STALL);
        assert!(p.redrive.is_empty(), "{p:?}");
        assert_eq!(p.stalled.len(), 1);
        assert_eq!(p.recompute.len(), 1);
    }

    #[test]
    fn a_run_still_fetching_counts_from_its_start() {
        let mut r = run("r1", "2026-03-01", None, 0, "");
        r.run.started_at = t("2026-03-02 10:00:00");
        let f = Facts {
            runs: vec![r],
            ..Facts::default()
        };
        assert!(plan(&f, t("2026-03-02 10:10:00"), STALL).is_empty());
        let p = plan(&f, t("2026-03-02 10:20:00"), STALL);
        assert_eq!(p.redrive.len(), 1);
        assert_eq!(p.redrive[0].total_pages, None);
    }

    #[test]
    fn a_run_is_recommended_by_its_own_recommend_or_a_later_one_that_read_every_row() {
        let r = run("r1", "2026-03-01", Some(4), 4, "2026-03-02 10:01:00");
        // A replayed page rewrote rows after the recommendation: the same
        // rows, so the run is still recommended (reconcile recomputes the day
        // anyway, harmlessly).
        let day = rows("2026-03-01", 40, "2026-03-02 10:09:00");
        let by_reconcile = rec(
            "2026-03-01",
            "",
            "2026-03-02 10:02:00",
            40,
            "2026-03-02 10:01:00",
        );
        assert!(run_recommended(
            &r,
            Some(&day),
            std::slice::from_ref(&by_reconcile)
        ));
        assert!(staleness(&day, Some(&by_reconcile)).is_some());
        // Computed before the run started (a re-run of a done day): not yet.
        let before = rec(
            "2026-03-01",
            "r0",
            "2026-03-02 09:00:00",
            40,
            "2026-03-02 08:00:00",
        );
        assert!(!run_recommended(
            &r,
            Some(&day),
            std::slice::from_ref(&before)
        ));
        // Missing rows: not yet; the run's own recommend: yes.
        let short = rec(
            "2026-03-01",
            "",
            "2026-03-02 10:02:00",
            39,
            "2026-03-02 10:01:00",
        );
        assert!(!run_recommended(
            &r,
            Some(&day),
            std::slice::from_ref(&short)
        ));
        let own = rec(
            "2026-03-01",
            "r1",
            "2026-03-02 10:02:00",
            40,
            "2026-03-02 10:01:00",
        );
        assert!(run_recommended(&r, Some(&day), &[before, own]));
        // Another date's computation does not count.
        let other = rec(
            "2026-03-02",
            "r1",
            "2026-03-02 10:02:00",
            40,
            "2026-03-02 10:01:00",
        );
        assert!(!run_recommended(&r, Some(&day), &[other]));
    }

    #[test]
    fn complete_runs_and_empty_days_need_nothing() {
        let f = Facts {
            days: vec![rows("2026-03-01", 0, "2026-03-02 10:01:00")],
            runs: vec![run("r1", "2026-03-01", Some(1), 1, "2026-03-02 10:01:00")],
            ..Facts::default()
        };
        let p = plan(&f, t("2026-03-09 00:00:00"), STALL);
        assert_eq!(p, Plan::default());
    }
}
