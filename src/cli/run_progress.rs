//! What `alertflow run --wait` (and `alertflow demo`) shows while the runs
//! go on: a view of each day computed from its run state ([`DayView`], pure),
//! drawn as a bar per day on a terminal or as one line per change otherwise,
//! and a watch on the queues the waiting days need ([`ConsumerAlarm`]), so
//! that a run nobody works on says so instead of "running" for an hour.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cli::run::DayOutcome;
use crate::config::AppConfig;
use crate::queue::task::Registry;
use crate::queue::topology::Topology;

/// The tasks of a run, in pipeline order.
pub const RUN_TASKS: [&str; 4] = ["fetch-day", "parse-batch", "insert", "recommend"];

/// Where a day is, as far as its run state tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// No page fetched yet (the `fetch-day` has not started, or has not
    /// finished its first page).
    Waiting,
    /// Pages are coming in; the last page is not known yet.
    Fetching,
    /// The last page is known; pages are being parsed and written.
    Writing,
    /// Every page is written; the day's `recommend` is pending or running.
    Recommending,
    Done,
    Failed,
}

/// A day's progress as shown: the stage and one line of figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayView {
    pub stage: Stage,
    /// Pages written so far.
    pub written: u64,
    /// Pages in the day: `None` until its last page is fetched (the total
    /// grows with every page found until then).
    pub total: Option<u64>,
    /// E.g. `fetching  pages 3 (more to come), parsed 2, written 1` or
    /// `writing  written 3/12 pages (25%), parsed 5/12`.
    pub text: String,
}

impl DayView {
    pub fn of(o: &DayOutcome) -> DayView {
        let s = &o.summary;
        let (f, p, w) = (s.pages_fetched, s.pages_parsed, s.pages_written);
        let (stage, text) = if o.status == "done" {
            let pages = s.total_pages.unwrap_or(w);
            (
                Stage::Done,
                format!(
                    "done  written {w}/{pages} pages, {} rows, recommended",
                    s.rows_written
                ),
            )
        } else if o.status.starts_with("failed") {
            (Stage::Failed, o.status.clone())
        } else {
            match s.total_pages {
                None if f == 0 => (Stage::Waiting, "waiting  no page fetched yet".to_string()),
                None => (
                    Stage::Fetching,
                    format!("fetching  pages {f} (more to come), parsed {p}, written {w}"),
                ),
                Some(t) if w < t => (
                    Stage::Writing,
                    format!(
                        "writing  written {w}/{t} pages ({}%), parsed {p}/{t}",
                        percent(w, t)
                    ),
                ),
                Some(t) => (
                    Stage::Recommending,
                    format!(
                        "recommending  written {w}/{t} pages, {} rows",
                        s.rows_written
                    ),
                ),
            }
        };
        DayView {
            stage,
            written: w,
            total: s.total_pages,
            text,
        }
    }

    /// Percent of the day's pages written; `None` while its last page is
    /// not known, so a day still being fetched never shows as full.
    pub fn percent(&self) -> Option<u64> {
        self.total.map(|t| percent(self.written, t))
    }

    pub fn finished(&self) -> bool {
        matches!(self.stage, Stage::Done | Stage::Failed)
    }
}

fn percent(done: u64, total: u64) -> u64 {
    (done.min(total) * 100).checked_div(total).unwrap_or(100)
}

/// The tasks whose queues a day still needs: none once it is done or
/// failed; `fetch-day` until the last page is known, `parse-batch` and
/// `insert` until every page is parsed and written, `recommend` until done.
pub fn tasks_needed(o: &DayOutcome) -> Vec<&'static str> {
    if o.status != "running" {
        return Vec::new();
    }
    let s = &o.summary;
    let open = |n: u64| s.total_pages.is_none_or(|t| n < t);
    let mut out = Vec::new();
    if s.total_pages.is_none() {
        out.push("fetch-day");
    }
    if open(s.pages_parsed) {
        out.push("parse-batch");
    }
    if open(s.pages_written) {
        out.push("insert");
    }
    out.push("recommend");
    out
}

/// The queue families the given days still need, in pipeline order.
pub fn families_needed(
    days: &[DayOutcome],
    families: &BTreeMap<&'static str, String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for task in RUN_TASKS {
        if days.iter().any(|o| tasks_needed(o).contains(&task))
            && let Some(f) = families.get(task)
            && !out.contains(f)
        {
            out.push(f.clone());
        }
    }
    out
}

/// How often a day's figures are printed in line mode while its stage stays
/// the same (a change of stage prints at once).
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// Line mode: what was last printed for a day, to print only changes.
#[derive(Default)]
pub struct LinePrinter {
    last: Option<(Stage, String, Instant)>,
}

impl LinePrinter {
    /// The line to print for `view` now, if any: on a change of stage at
    /// once, on a change of figures at most every [`LINE_EVERY`], nothing
    /// when nothing changed.
    pub fn next(&mut self, date: &str, view: &DayView, now: Instant) -> Option<String> {
        let due = match &self.last {
            None => true,
            Some((stage, text, at)) => {
                *stage != view.stage
                    || (*text != view.text && now.duration_since(*at) >= LINE_EVERY)
            }
        };
        if !due {
            return None;
        }
        self.last = Some((view.stage, view.text.clone(), now));
        Some(format!("{date}  {}", view.text))
    }
}

/// How long a queue a waiting day needs may have no consumer before
/// `run --wait` says so (a worker restarting is not worth a warning).
pub const CONSUMER_GRACE: Duration = Duration::from_secs(5);

/// How often `run --wait` looks at the consumers of the run's queues.
pub const CONSUMER_PROBE_EVERY: Duration = Duration::from_secs(1);

/// Decides what to say about the consumers of the queues waiting days
/// need: a warning once a needed queue has had none for [`CONSUMER_GRACE`],
/// and a note when, after that warning, a consumer appears (or the days get
/// past the queue, which takes one).
pub struct ConsumerAlarm {
    namespace: String,
    grace: Duration,
    /// Needed families without a consumer, since when.
    empty_since: BTreeMap<String, Instant>,
    /// Families warned about and still without a consumer, in warning order.
    warned: Vec<String>,
}

impl ConsumerAlarm {
    pub fn new(namespace: &str, grace: Duration) -> ConsumerAlarm {
        ConsumerAlarm {
            namespace: namespace.to_string(),
            grace,
            empty_since: BTreeMap::new(),
            warned: Vec::new(),
        }
    }

    /// Feed one look at the queues: consumers per queue family (`None`: could
    /// not look) and the families the waiting days need, in pipeline order.
    /// Returns the lines to print (usually none).
    pub fn observe(
        &mut self,
        now: Instant,
        consumers: &ConsumerCounts,
        needed: &[String],
    ) -> Vec<String> {
        let has_consumer = |f: &String| matches!(consumers.get(f), Some(Some(n)) if *n > 0);
        let mut back = Vec::new();
        self.warned.retain(|f| {
            let consumed = !needed.contains(f) || has_consumer(f);
            if consumed {
                back.push(f.clone());
            }
            !consumed
        });
        self.empty_since.retain(|f, _| needed.contains(f));
        let mut starved = Vec::new();
        for family in needed {
            match consumers.get(family) {
                Some(Some(0)) => {
                    let since = *self.empty_since.entry(family.clone()).or_insert(now);
                    if now.duration_since(since) >= self.grace && !self.warned.contains(family) {
                        self.warned.push(family.clone());
                        starved.push(family.clone());
                    }
                }
                Some(Some(_)) => {
                    self.empty_since.remove(family);
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        if !back.is_empty() {
            out.push(format!(
                "a worker consumes {} now; the run goes on",
                self.queues(&back)
            ));
        }
        if !starved.is_empty() {
            out.push(format!(
                "warning: nothing consumes {}: start a worker (alertflow-worker -Q {}) — the run waits",
                self.queues(&starved),
                starved.join(",")
            ));
        }
        out
    }

    fn queues(&self, families: &[String]) -> String {
        families
            .iter()
            .map(|f| format!("{}.{f}", self.namespace))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The queue family each task of a run goes to (`[tasks.NAME] queue`, else
/// the task's own).
pub fn task_families(config: &AppConfig, registry: &Registry) -> BTreeMap<&'static str, String> {
    RUN_TASKS
        .iter()
        .map(|t| {
            let default = registry.get(t).map(|x| x.queue()).unwrap_or("default");
            (*t, config.task_queue(t, default))
        })
        .collect()
}

/// Consumers per queue family, `None` where the broker could not be asked.
pub type ConsumerCounts = BTreeMap<String, Option<u32>>;

/// Every [`CONSUMER_PROBE_EVERY`], ask the broker (a passive declare per
/// queue) how many consumers each family's queue has and publish the counts
/// on `tx`, until `stop`. A queue that does not exist has no consumer; a
/// broker that cannot be reached gives `None` (the watch goes on).
pub async fn probe_consumers(
    config: std::sync::Arc<AppConfig>,
    families: BTreeSet<String>,
    tx: watch::Sender<ConsumerCounts>,
    stop: CancellationToken,
) {
    let topology = Topology::from_config(&config);
    let mut conn: Option<lapin::Connection> = None;
    loop {
        if conn.is_none() {
            match crate::queue::connect::connect(&config, "cli-wait").await {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::debug!(error = %e, "cannot look at the queues' consumers"),
            }
        }
        let mut counts = ConsumerCounts::new();
        for family in &families {
            let n = match &conn {
                Some(c) => consumers(c, &topology.queue(family)).await,
                None => None,
            };
            counts.insert(family.clone(), n);
        }
        if conn
            .as_ref()
            .is_some_and(|c| !c.status().connected() || c.status().errored())
        {
            conn = None;
        }
        tx.send_replace(counts);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(CONSUMER_PROBE_EVERY) => {}
        }
    }
    if let Some(c) = conn {
        crate::queue::connect::close(c).await;
    }
}

/// Consumers of one queue: a passive declare (on a channel of its own, as a
/// missing queue closes the channel). A missing queue has none.
async fn consumers(conn: &lapin::Connection, queue: &str) -> Option<u32> {
    let ch = conn.create_channel().await.ok()?;
    match crate::queue::topology::queue_counts(&ch, queue).await {
        Ok(Some(c)) => {
            let _ = ch.close(200, "ok".into()).await;
            Some(c.consumers as u32)
        }
        Ok(None) => Some(0),
        Err(e) => {
            tracing::debug!(queue, error = %e, "cannot look at the queue's consumers");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_state::RunSummary;

    fn day(status: &str, f: u64, total: Option<u64>, p: u64, w: u64) -> DayOutcome {
        DayOutcome {
            date: "2026-03-10".into(),
            run_id: "r".into(),
            summary: RunSummary {
                pages_fetched: f,
                total_pages: total,
                pages_parsed: p,
                pages_written: w,
                rows_written: w * 40,
                ..Default::default()
            },
            status: status.into(),
            source: Default::default(),
        }
    }

    #[test]
    fn a_day_whose_last_page_is_unknown_never_shows_full() {
        // Every page found so far is written, but more may come.
        for n in [0, 1, 37, 500] {
            let v = DayView::of(&day("running", n, None, n, n));
            assert_eq!(v.percent(), None, "{v:?}");
            assert_eq!(v.total, None);
            assert!(!v.text.contains('%'), "{v:?}");
            assert!(!v.text.contains('/'), "no total to show: {v:?}");
            assert!(!v.finished());
            if n > 0 {
                assert_eq!(v.stage, Stage::Fetching);
                assert!(
                    v.text.contains(&format!("pages {n} (more to come)")),
                    "{v:?}"
                );
            } else {
                assert_eq!(v.stage, Stage::Waiting);
            }
        }
    }

    #[test]
    fn a_known_total_shows_written_of_total() {
        let v = DayView::of(&day("running", 12, Some(12), 5, 3));
        assert_eq!(v.stage, Stage::Writing);
        assert_eq!(v.percent(), Some(25));
        assert_eq!(v.text, "writing  written 3/12 pages (25%), parsed 5/12");
        let v = DayView::of(&day("running", 12, Some(12), 12, 12));
        assert_eq!(v.stage, Stage::Recommending);
        assert_eq!(v.percent(), Some(100));
        assert!(v.text.starts_with("recommending  written 12/12"), "{v:?}");
        let v = DayView::of(&day("done", 12, Some(12), 12, 12));
        assert_eq!(v.stage, Stage::Done);
        assert!(v.text.contains("recommended") && v.finished(), "{v:?}");
        let v = DayView::of(&day("failed: fetch-day quota", 2, None, 2, 2));
        assert_eq!(v.stage, Stage::Failed);
        assert_eq!(v.text, "failed: fetch-day quota");
        assert_eq!(v.percent(), None);
    }

    #[test]
    fn needed_tasks_follow_the_stage() {
        assert_eq!(tasks_needed(&day("running", 0, None, 0, 0)), RUN_TASKS);
        assert_eq!(
            tasks_needed(&day("running", 12, Some(12), 12, 3)),
            ["insert", "recommend"]
        );
        assert_eq!(
            tasks_needed(&day("running", 12, Some(12), 12, 12)),
            ["recommend"]
        );
        assert!(tasks_needed(&day("done", 12, Some(12), 12, 12)).is_empty());
        assert!(tasks_needed(&day("failed: x", 1, None, 0, 0)).is_empty());
    }

    #[test]
    fn needed_families_come_in_pipeline_order() {
        let families: BTreeMap<&'static str, String> = [
            ("fetch-day", "lark".to_string()),
            ("parse-batch", "default".to_string()),
            ("insert", "db".to_string()),
            ("recommend", "db".to_string()),
        ]
        .into();
        let waiting = day("running", 0, None, 0, 0);
        let writing = day("running", 4, Some(4), 4, 2);
        assert_eq!(
            families_needed(&[writing.clone(), waiting], &families),
            ["lark", "default", "db"]
        );
        assert_eq!(families_needed(&[writing], &families), ["db"]);
        assert!(families_needed(&[day("done", 1, Some(1), 1, 1)], &families).is_empty());
    }

    #[test]
    fn lines_are_printed_on_changes_only() {
        let t0 = Instant::now();
        let mut p = LinePrinter::default();
        let v = |f| DayView::of(&day("running", f, None, 0, 0));
        assert_eq!(
            p.next("2026-03-10", &v(1), t0).as_deref(),
            Some("2026-03-10  fetching  pages 1 (more to come), parsed 0, written 0")
        );
        assert_eq!(p.next("2026-03-10", &v(1), t0 + LINE_EVERY * 3), None);
        // New figures, same stage: at most every LINE_EVERY.
        assert_eq!(
            p.next("2026-03-10", &v(2), t0 + Duration::from_secs(1)),
            None
        );
        assert!(p.next("2026-03-10", &v(3), t0 + LINE_EVERY).is_some());
        // A new stage: at once.
        let w = DayView::of(&day("running", 3, Some(3), 3, 1));
        assert!(p.next("2026-03-10", &w, t0 + LINE_EVERY).is_some());
        let d = DayView::of(&day("done", 3, Some(3), 3, 3));
        assert!(
            p.next("2026-03-10", &d, t0 + LINE_EVERY)
                .unwrap()
                .ends_with("recommended")
        );
    }

    #[test]
    fn an_unconsumed_queue_is_reported_once_after_the_grace() {
        let t0 = Instant::now();
        let mut a = ConsumerAlarm::new("ns", Duration::from_secs(5));
        let needed = ["lark".to_string(), "db".to_string()];
        let counts = |lark, db| -> ConsumerCounts {
            [("lark".to_string(), lark), ("db".to_string(), db)].into()
        };
        let s = Duration::from_secs;
        assert!(a.observe(t0, &counts(Some(0), Some(1)), &needed).is_empty());
        assert!(
            a.observe(t0 + s(4), &counts(Some(0), Some(1)), &needed)
                .is_empty()
        );
        // Unknown counts neither warn nor reset.
        assert!(
            a.observe(t0 + s(4), &counts(None, None), &needed)
                .is_empty()
        );
        let said = a.observe(t0 + s(5), &counts(Some(0), Some(1)), &needed);
        assert_eq!(
            said,
            [
                "warning: nothing consumes ns.lark: start a worker (alertflow-worker -Q lark) — the run waits"
            ]
        );
        assert!(
            a.observe(t0 + s(60), &counts(Some(0), Some(1)), &needed)
                .is_empty(),
            "once"
        );
        assert_eq!(
            a.observe(t0 + s(61), &counts(Some(2), Some(1)), &needed),
            ["a worker consumes ns.lark now; the run goes on"]
        );
        // A queue no waiting day needs any more is not watched.
        let db_only = ["db".to_string()];
        assert!(
            a.observe(t0 + s(62), &counts(Some(0), Some(1)), &db_only)
                .is_empty()
        );
        assert!(
            a.observe(t0 + s(99), &counts(Some(0), Some(1)), &db_only)
                .is_empty()
        );
        // A warned queue the days got past was consumed, seen or not.
        let mut c = ConsumerAlarm::new("ns", Duration::from_secs(5));
        assert!(c.observe(t0, &counts(Some(0), Some(0)), &needed).is_empty());
        assert_eq!(
            c.observe(t0 + s(5), &counts(Some(0), Some(0)), &needed)
                .len(),
            1
        );
        assert_eq!(
            c.observe(t0 + s(6), &counts(Some(0), Some(0)), &db_only),
            ["a worker consumes ns.lark now; the run goes on"]
        );
        assert_eq!(
            c.observe(t0 + s(7), &counts(None, Some(3)), &db_only),
            ["a worker consumes ns.db now; the run goes on"]
        );
        // A consumer that appears before the grace ends is not news.
        let mut b = ConsumerAlarm::new("ns", Duration::from_secs(5));
        assert!(b.observe(t0, &counts(Some(0), Some(0)), &needed).is_empty());
        assert!(
            b.observe(t0 + s(2), &counts(Some(1), Some(1)), &needed)
                .is_empty()
        );
        let both = b.observe(t0 + s(20), &counts(Some(0), Some(0)), &needed);
        assert!(both.is_empty(), "the grace starts again: {both:?}");
        let both = b.observe(t0 + s(25), &counts(Some(0), Some(0)), &needed);
        assert_eq!(
            both,
            [
                "warning: nothing consumes ns.lark, ns.db: start a worker (alertflow-worker -Q lark,db) — the run waits"
            ]
        );
    }
}
