//! The runs of the last days (`/runs`, `/api/runs`) under a chart of the
//! daily alert volume, and one day (`/day`, `/api/day`): its runs on a
//! timeline of pages written, skips by reason, the recommendation
//! computations and the recommendations table as `alertflow report DATE`
//! prints it. Read-only, from the database (the run ledger and the rows).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::{DateTime, NaiveDate, Utc};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use crate::cli::runs::{RunStatus, RunView, read_views, views};
use crate::lark::window::pacific_date;
use crate::recommendation::Recommendation;
use crate::sink::history::AlertVolume;
use crate::sink::ledger::{self, DayRows, PageRecord, RecommendRecord};
use crate::web::auth::Actor;
use crate::web::chart::{self, Lane};
use crate::web::{Notice, WebState};

/// Days shown when `?days=` is not given, and the most allowed.
const DEFAULT_DAYS: u32 = 30;
const MAX_DAYS: u32 = 366;
/// Alert names drawn apart in the volume chart; the rest is "other".
const TOP_NAMES: usize = 6;
/// How long the database may take before the page says so.
const DB_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/runs", get(runs_page))
        .route("/api/runs", get(runs_json))
        .route("/day", get(day_page))
        .route("/api/day", get(day_json))
}

async fn bounded<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(DB_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("the database did not answer within {DB_TIMEOUT:?}")),
    }
}

fn status_class(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Done => "good",
        RunStatus::Stalled => "bad",
        RunStatus::Recommending | RunStatus::InProgress => "",
    }
}

fn total_pages(v: &RunView) -> String {
    v.ledger
        .run
        .total_pages
        .map(|t| t.to_string())
        .unwrap_or_else(|| "?".into())
}

fn skips(s: &BTreeMap<String, u64>) -> Markup {
    html! { @for (k, n) in s { code { (k) "=" (n) } " " } }
}

/// A 400 page (or JSON) saying what was wrong with the request.
fn bad_request(namespace: &str, title: &str, message: String, json: bool) -> Response {
    if json {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": message })),
        )
            .into_response()
    } else {
        let body = html! { div.problems #error { (message) } };
        (
            StatusCode::BAD_REQUEST,
            Html(crate::web::layout(namespace, title, None, body).into_string()),
        )
            .into_response()
    }
}

// ---------------------------------------------------------------- /runs

#[derive(Deserialize)]
pub struct RunsQuery {
    days: Option<String>,
}

fn parse_days(q: &RunsQuery) -> Result<u32, String> {
    match q.days.as_deref().map(str::trim) {
        None | Some("") => Ok(DEFAULT_DAYS),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_DAYS).contains(&n) => Ok(n),
            _ => Err(format!(
                "days={s:?} is not a number of days from 1 to {MAX_DAYS} (e.g. /runs?days=30)"
            )),
        },
    }
}

/// The runs of the last days and the alert volume (also `/api/runs`).
#[derive(Serialize, Debug)]
pub struct Runs {
    pub days: u32,
    /// First and last Pacific dates shown.
    pub since: NaiveDate,
    pub until: NaiveDate,
    /// Alert rows per date, the noisiest names apart.
    pub volume: Option<AlertVolume>,
    /// Runs of the dates, newest date first.
    pub runs: Vec<RunView>,
    /// Sources that could not be read.
    pub errors: Vec<String>,
}

impl Runs {
    pub async fn gather(state: &WebState, days: u32) -> Runs {
        let until = pacific_date(Utc::now());
        let since = until - chrono::Duration::days(i64::from(days) - 1);
        let (views, volume) = tokio::join!(
            bounded(async { read_views(&state.sink, since).await.map_err(|e| e.message) }),
            bounded(state.sink.alert_volume(since, until, TOP_NAMES)),
        );
        let mut errors = Vec::new();
        let mut runs = views.unwrap_or_else(|e| {
            errors.push(format!("runs (database): {e}"));
            Vec::new()
        });
        runs.retain(|v| v.ledger.run.date <= until);
        runs.sort_by(|a, b| {
            b.ledger
                .run
                .date
                .cmp(&a.ledger.run.date)
                .then(b.ledger.run.started_at.cmp(&a.ledger.run.started_at))
        });
        let volume = volume
            .map_err(|e| errors.push(format!("alert volume (database): {e}")))
            .ok();
        Runs {
            days,
            since,
            until,
            volume,
            runs,
            errors,
        }
    }
}

fn volume_chart(v: &AlertVolume) -> Markup {
    let dates: Vec<String> = v
        .dates
        .iter()
        .map(|d| d.format("%m-%d").to_string())
        .collect();
    let series: Vec<(String, Vec<f64>)> = v
        .series
        .iter()
        .map(|s| (s.name.clone(), s.rows.iter().map(|n| *n as f64).collect()))
        .collect();
    chart::stacked_bars(
        "Alert rows per day, the noisiest alert names apart",
        &dates,
        &series,
        "date (America/Los_Angeles)",
        "alert rows",
    )
}

pub fn render_runs(r: &Runs, namespace: &str, top: Markup) -> Markup {
    let body = html! {
        (top)
        p.muted {
            (r.since) " to " (r.until) " (" (r.days) " days) · "
            a href="/runs?days=7" { "7 days" } " · " a href="/runs?days=30" { "30 days" } " · " a href="/runs?days=90" { "90 days" }
            " · " a href={ "/api/runs?days=" (r.days) } { "JSON" }
        }
        @if !r.errors.is_empty() {
            div.problems { ul { @for e in &r.errors { li { (e) } } } }
        }
        h2 { "Alert volume" }
        @if let Some(v) = &r.volume {
            div #volume { (volume_chart(v)) }
            p.muted { (v.totals().iter().sum::<u64>()) " alert rows in " (r.days) " days." }
        }
        h2 { "Runs" }
        @if r.runs.is_empty() && r.errors.is_empty() {
            p.muted { "No run recorded in the run ledger from " (r.since) " on." }
        } @else {
            table #runs {
                tr { th { "date" } th { "run" } th { "started (UTC)" } th { "pages written/fetched" } th { "messages" } th { "rows" } th { "skipped" } th { "recommended (UTC)" } th { "status" } }
                @for v in &r.runs {
                    @let l = &v.ledger;
                    tr {
                        td { a href={ "/day?date=" (l.run.date) } { (l.run.date) } }
                        td.muted { a href={ "/task?id=" (l.run.run_id) } { (l.run.run_id) } }
                        td { (l.run.started_at.format("%m-%d %H:%M:%S")) }
                        td.num { (l.pages_written) "/" (total_pages(v)) }
                        td.num { (l.run.messages) }
                        td.num { (l.rows_written) }
                        td { (skips(&l.skips)) }
                        td { @if let (Some(at), Some(n)) = (v.recommended_at, v.recommended_from_rows) { (at.format("%m-%d %H:%M:%S")) " from " (n) " rows" } @else { "-" } }
                        td class=(status_class(v.status)) { (v.status.as_str()) }
                    }
                }
            }
        }
    };
    crate::web::layout(namespace, "Runs", Some(30), body)
}

async fn runs_page(
    State(state): State<Arc<WebState>>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<RunsQuery>,
    Query(notice): Query<Notice>,
) -> Response {
    let ns = &state.config.namespace;
    match parse_days(&q) {
        Ok(days) => {
            let r = Runs::gather(&state, days).await;
            let top = html! {
                (notice.render())
                (crate::web::actions::run_form(&state, &actor, None, "/runs"))
            };
            Html(render_runs(&r, ns, top).into_string()).into_response()
        }
        Err(e) => bad_request(ns, "Runs", e, false),
    }
}

async fn runs_json(State(state): State<Arc<WebState>>, Query(q): Query<RunsQuery>) -> Response {
    match parse_days(&q) {
        Ok(days) => Json(Runs::gather(&state, days).await).into_response(),
        Err(e) => bad_request(&state.config.namespace, "Runs", e, true),
    }
}

// ---------------------------------------------------------------- /day

#[derive(Deserialize)]
pub struct DayQuery {
    date: Option<String>,
}

fn parse_date(q: &DayQuery) -> Result<NaiveDate, String> {
    let s = q.date.as_deref().map(str::trim).unwrap_or("");
    if s.is_empty() {
        return Err("which day? give date=YYYY-MM-DD (e.g. /day?date=2026-03-10)".into());
    }
    crate::tasks::fetch_day::parse_run_date(s).map_err(|e| format!("date={s:?}: {e}"))
}

/// One day as the ledger and the rows tell it (also `/api/day`).
#[derive(Serialize, Debug, Default)]
pub struct Day {
    pub date: NaiveDate,
    pub runs: Vec<RunView>,
    /// The pages of its runs, in the order written.
    pub pages: Vec<PageRecord>,
    /// Messages skipped by reason, over every run of the date.
    pub skips: BTreeMap<String, u64>,
    /// Each time the date's recommendations were computed.
    pub recommends: Vec<RecommendRecord>,
    /// The recommendations as stored, in `alertflow report` order.
    pub recommendations: Vec<Recommendation>,
    /// Alert names the catalogue does not know.
    pub unmapped: Vec<String>,
    /// The date's digest as `alertflow digest DATE` builds it, and whether
    /// it was sent.
    pub digest: Option<DayDigest>,
    pub errors: Vec<String>,
}

/// The digest of a day, rendered from the same builder as the message.
#[derive(Serialize, Debug)]
pub struct DayDigest {
    pub title: String,
    pub sections: Vec<crate::notify::Section>,
    /// The date's row of `digests`: who claimed it, when it was sent.
    pub claim: Option<crate::sink::digests::DigestClaim>,
}

impl Day {
    /// Nothing of the date anywhere.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.pages.is_empty()
            && self.recommends.is_empty()
            && self.recommendations.is_empty()
    }

    pub async fn gather(state: &WebState, date: NaiveDate) -> Day {
        let sink = &state.sink;
        // The date's runs only (not every run since, as `read_views` reads),
        // judged as `alertflow runs` judges them.
        let dc = &state.config.digest;
        let (runs, day_rows, pages, recommends, report, digest, claim) = tokio::join!(
            bounded(sink.runs_on(date)),
            bounded(sink.day_rows_since(date)),
            bounded(sink.pages_of_date(date)),
            bounded(sink.recommends_since(date)),
            bounded(sink.report(date)),
            bounded(sink.digest_data(date, dc.top, dc.new_days, dc.dashboard_url.as_deref())),
            bounded(sink.digest_claim(date)),
        );
        let mut day = Day {
            date,
            ..Day::default()
        };
        let mut take = |what: &str, e: String| day.errors.push(format!("{what} (database): {e}"));
        let runs = runs.map_err(|e| take("runs", e)).unwrap_or_default();
        let day_rows: Vec<DayRows> = day_rows
            .map_err(|e| take("alert rows", e))
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d.date == date)
            .collect();
        let pages = pages.map_err(|e| take("pages", e)).unwrap_or_default();
        let recommends: Vec<RecommendRecord> = recommends
            .map_err(|e| take("recommendation computations", e))
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.date == date)
            .collect();
        let runs = views(runs, &day_rows, &recommends, ledger::now());
        let recommendations = report
            .map_err(|e| take("recommendations", e))
            .unwrap_or_default();
        for v in &runs {
            for (k, n) in &v.ledger.skips {
                *day.skips.entry(k.clone()).or_default() += n;
            }
        }
        day.unmapped = recommendations
            .iter()
            .filter(|r| !r.in_catalogue)
            .map(|r| r.alert_name.clone())
            .collect();
        let claim = claim.map_err(|e| take("digest", e)).unwrap_or_default();
        if let Ok(data) = digest.map_err(|e| take("digest", e)) {
            let n = data.notification();
            day.digest = Some(DayDigest {
                title: n.title,
                sections: n.sections,
                claim,
            });
        }
        day.runs = runs;
        day.pages = pages;
        day.recommends = recommends;
        day.recommendations = recommendations;
        day
    }

    /// A lane per run (from its start to its last page, a mark per page
    /// written) and one for the recommendation computations.
    fn lanes(&self) -> Vec<Lane> {
        let utc = |t: chrono::NaiveDateTime| -> DateTime<Utc> { t.and_utc() };
        let mut lanes: Vec<Lane> = self
            .runs
            .iter()
            .map(|v| {
                let l = &v.ledger;
                Lane {
                    label: l.run.run_id.chars().take(8).collect(),
                    span: Some((utc(l.run.started_at), utc(l.last_activity()))),
                    marks: self
                        .pages
                        .iter()
                        .filter(|p| p.run_id == l.run.run_id)
                        .map(|p| utc(p.written_at))
                        .collect(),
                    mark_name: "page written".into(),
                }
            })
            .collect();
        if !self.recommends.is_empty() {
            lanes.push(Lane {
                label: "recommend".into(),
                span: None,
                marks: self
                    .recommends
                    .iter()
                    .map(|r| utc(r.generated_at))
                    .collect(),
                mark_name: "recommendations computed".into(),
            });
        }
        lanes
    }
}

pub fn render_day(d: &Day, namespace: &str, top: Markup) -> Markup {
    let title = format!("Day {}", d.date);
    let body = html! {
        (top)
        p.muted {
            "America/Los_Angeles date; times in UTC · "
            a href={ "/day?date=" (d.date - chrono::Duration::days(1)) } { "previous day" } " · "
            @if d.date < pacific_date(Utc::now()) {
                a href={ "/day?date=" (d.date + chrono::Duration::days(1)) } { "next day" } " · "
            }
            a href="/runs" { "all runs" } " · "
            a href={ "/api/day?date=" (d.date) } { "JSON" }
        }
        @if !d.errors.is_empty() {
            div.problems { ul { @for e in &d.errors { li { (e) } } } }
        }
        @if d.is_empty() && d.errors.is_empty() {
            div.ok #nothing { "Nothing recorded for " (d.date) ": no run in the run ledger and no recommendations." }
        } @else {
            h2 { "Runs" }
            @if d.runs.is_empty() {
                p.muted { "No run of " (d.date) " in the run ledger." }
            } @else {
                table #runs {
                    tr { th { "run" } th { "started (UTC)" } th { "last page (UTC)" } th { "pages written/fetched" } th { "messages" } th { "rows" } th { "skipped" } th { "status" } }
                    @for v in &d.runs {
                        @let l = &v.ledger;
                        tr {
                            td { a href={ "/task?id=" (l.run.run_id) } { (l.run.run_id) } }
                            td { (l.run.started_at.format("%H:%M:%S")) }
                            td { (l.last_written_at.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_else(|| "-".into())) }
                            td.num { (l.pages_written) "/" (total_pages(v)) }
                            td.num { (l.run.messages) }
                            td.num { (l.rows_written) }
                            td { (skips(&l.skips)) }
                            td class=(status_class(v.status)) { (v.status.as_str()) }
                        }
                    }
                }
                div #timeline { (chart::timeline("Pages written over time, per run", &d.lanes())) }
            }
            h2 { "Skipped messages" }
            @if d.skips.is_empty() {
                p.muted { "None." }
            } @else {
                table #skips {
                    tr { th { "reason" } th { "messages" } }
                    @for (k, n) in &d.skips { tr { td { (k) } td.num { (n) } } }
                }
            }
            h2 { "Recommendations computed" }
            @if d.recommends.is_empty() {
                p.muted { "Not computed yet." }
            } @else {
                table #recommends {
                    tr { th { "at (UTC)" } th { "rows read" } th { "alert names" } th { "newest row read (UTC)" } th { "asked by" } }
                    @for r in &d.recommends {
                        tr {
                            td { (r.generated_at.format("%Y-%m-%d %H:%M:%S")) }
                            td.num { (r.rows_read) }
                            td.num { (r.alerts) }
                            td { (r.max_ingested_at.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_else(|| "-".into())) }
                            td { @if r.run_id.is_empty() { span.muted { "reconcile or by hand" } } @else { a href={ "/task?id=" (r.run_id) } { "run " (r.run_id) } } }
                        }
                    }
                }
            }
            h2 { "Alert recommendations for " (d.date) " (" (d.recommendations.len()) " alert names)" }
            @if !d.recommendations.is_empty() {
                table #recommendations {
                    tr { th { "severity" } th { "alert" } th { "fired" } th { "resolved" } th { "clusters" } th { "recommendation" } }
                    @for r in &d.recommendations {
                        tr {
                            td class=(if r.severity == "critical" { "bad" } else { "" }) { (r.severity) }
                            td { (r.alert_name) @if r.is_noisy { " " span.bad { "[noisy]" } } }
                            td.num { (r.fired_count) }
                            td.num { (r.resolved_count) }
                            td.num { (r.cluster_count) }
                            td { (r.recommendation) }
                        }
                    }
                }
                @if !d.unmapped.is_empty() {
                    p.muted { "Not in the catalogue (add them to recommend.catalogue): " (d.unmapped.join(", ")) }
                }
            }
            @if let Some(g) = &d.digest {
                h2 { "Digest" }
                div #digest {
                    p { strong { (g.title) } }
                    p.muted {
                        @match &g.claim {
                            Some(c) if c.sent_at.is_some() => {
                                "Sent at " (c.sent_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default())
                                " UTC to " (c.receivers) " (by " (c.claimed_by) ")."
                            }
                            Some(c) => { "Claimed by " (c.claimed_by) " at " (c.claimed_at.format("%Y-%m-%d %H:%M:%S")) " UTC, not sent yet." }
                            None => { "Not sent (sent once per date to [digest] receivers after the recommendations)." }
                        }
                    }
                    @for s in &g.sections {
                        h3 { (s.heading) }
                        @if !s.text.is_empty() { p { (s.text) } }
                        @if !s.fields.is_empty() {
                            ul { @for (k, v) in &s.fields { li { (k) ": " (v) } } }
                        }
                    }
                }
            }
        }
    };
    crate::web::layout(namespace, &title, None, body)
}

async fn day_page(
    State(state): State<Arc<WebState>>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<DayQuery>,
    Query(notice): Query<Notice>,
) -> Response {
    let ns = &state.config.namespace;
    match parse_date(&q) {
        Ok(date) => {
            let d = Day::gather(&state, date).await;
            let back = format!("/day?date={date}");
            let top = html! {
                (notice.render())
                (crate::web::actions::run_form(&state, &actor, Some(date), &back))
            };
            Html(render_day(&d, ns, top).into_string()).into_response()
        }
        Err(e) => bad_request(ns, "Day", e, false),
    }
}

async fn day_json(State(state): State<Arc<WebState>>, Query(q): Query<DayQuery>) -> Response {
    match parse_date(&q) {
        Ok(date) => Json(Day::gather(&state, date).await).into_response(),
        Err(e) => bad_request(&state.config.namespace, "Day", e, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_of_the_alert_names_is_drawn_grey() {
        assert_eq!(crate::sink::history::OTHER, chart::OTHER);
    }

    #[test]
    fn days_and_dates_are_checked_with_a_clear_message() {
        let days = |s: Option<&str>| {
            parse_days(&RunsQuery {
                days: s.map(Into::into),
            })
        };
        assert_eq!(days(None), Ok(30));
        assert_eq!(days(Some("7")), Ok(7));
        for bad in ["0", "-1", "x", "367"] {
            let e = days(Some(bad)).unwrap_err();
            assert!(e.contains("from 1 to 366"), "{e}");
        }
        let date = |s: Option<&str>| {
            parse_date(&DayQuery {
                date: s.map(Into::into),
            })
        };
        assert_eq!(
            date(Some("2026-03-10")),
            Ok(NaiveDate::from_ymd_opt(2026, 3, 10).unwrap())
        );
        assert!(date(None).unwrap_err().contains("YYYY-MM-DD"));
        let e = date(Some("2026-13-40")).unwrap_err();
        assert!(e.contains("2026-13-40"), "{e}");
        let e = date(Some("2999-01-01")).unwrap_err();
        assert!(e.contains("2999-01-01"), "{e}");
    }
}
