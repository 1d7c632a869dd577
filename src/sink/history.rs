//! Reads for looking back over days (the web's runs and day pages, and
//! `alertflow report`): alert volume per day, a date's pages in the run
//! ledger, and a date's recommendations in report order. Read-only; every
//! statement works on MariaDB and StarRocks alike.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use mysql_async::Row;
use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::recommendation::{Recommendation, sort_report};
use crate::sink::ledger::PageRecord;
use crate::sink::schema;
use crate::sink::starrocks::{SinkError, SqlSink, classify, date_lit};

/// Alert rows per day, the noisiest alert names apart and the rest summed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AlertVolume {
    /// Every date of the range, oldest first (dates without rows too).
    pub dates: Vec<NaiveDate>,
    /// The noisiest names over the range, noisiest first, then
    /// [`OTHER`] when any other name had rows; one count per date.
    pub series: Vec<VolumeSeries>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeSeries {
    pub name: String,
    pub rows: Vec<u64>,
}

/// One alert name's firing on a date against the 7 dates before it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertTrend {
    pub alert_name: String,
    /// `fired_count` on the date (0 when it did not fire).
    pub fired: u64,
    /// Mean `fired_count` over the [`TREND_DAYS`] dates before (a date
    /// without a row counts 0).
    pub avg_7d: f64,
    /// `fired` against `avg_7d` in whole percent; `None` when the average is 0.
    pub change_percent: Option<i64>,
}

/// Dates before the report date that make the trend's average.
pub const TREND_DAYS: u64 = 7;

/// The series of every name not among the noisiest.
pub const OTHER: &str = "other";

impl AlertVolume {
    /// Alert rows of each date, all names together.
    pub fn totals(&self) -> Vec<u64> {
        (0..self.dates.len())
            .map(|i| self.series.iter().map(|s| s.rows[i]).sum())
            .collect()
    }
}

fn text(r: &mut Row, i: usize) -> String {
    r.take::<Option<String>, _>(i).flatten().unwrap_or_default()
}

fn count(r: &mut Row, i: usize) -> u64 {
    text(r, i).parse::<f64>().map(|f| f as u64).unwrap_or(0)
}

fn data_error(table: &str, what: &str, value: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::Data {
        table: table.into(),
        message: format!("bad {what} {value:?}: {e}"),
    }
}

impl SqlSink {
    async fn rows(&self, q: String) -> Result<Vec<Row>, SinkError> {
        let mut c = self.conn().await?;
        c.query(q).await.map_err(classify)
    }

    /// Alert rows per Pacific date from `since` to `until` (inclusive), with
    /// the `top` names with the most rows over the range apart and every
    /// other name in [`OTHER`]. One statement: the top names are a derived
    /// table joined to the rows.
    pub async fn alert_volume(
        &self,
        since: NaiveDate,
        until: NaiveDate,
        top: usize,
    ) -> Result<AlertVolume, SinkError> {
        let t = &schema::LARK_ALERTS;
        let (from, to) = (
            date_lit(&since.to_string(), t.name)?,
            date_lit(&until.to_string(), t.name)?,
        );
        let table = self.table(t);
        let q = format!(
            "SELECT DATE_FORMAT(a.alert_date, '%Y-%m-%d'), \
             CASE WHEN n.alert_name IS NULL THEN 1 ELSE 0 END, \
             CASE WHEN n.alert_name IS NULL THEN '' ELSE a.alert_name END, COUNT(*) \
             FROM {table} a LEFT JOIN \
             (SELECT alert_name, COUNT(*) AS c FROM {table} \
              WHERE alert_date >= {from} AND alert_date <= {to} \
              GROUP BY alert_name ORDER BY c DESC, alert_name LIMIT {top}) n \
             ON n.alert_name = a.alert_name \
             WHERE a.alert_date >= {from} AND a.alert_date <= {to} \
             GROUP BY a.alert_date, \
             CASE WHEN n.alert_name IS NULL THEN 1 ELSE 0 END, \
             CASE WHEN n.alert_name IS NULL THEN '' ELSE a.alert_name END"
        );
        let dates: Vec<NaiveDate> = since.iter_days().take_while(|d| *d <= until).collect();
        let index: BTreeMap<NaiveDate, usize> =
            dates.iter().enumerate().map(|(i, d)| (*d, i)).collect();
        // name (None: the rest) → rows per date
        let mut by_name: BTreeMap<Option<String>, Vec<u64>> = BTreeMap::new();
        for mut r in self.rows(q).await? {
            let date_text = text(&mut r, 0);
            let date = NaiveDate::parse_from_str(&date_text, "%Y-%m-%d")
                .map_err(|e| data_error(t.name, "date", &date_text, e))?;
            let rest = text(&mut r, 1) == "1";
            let name = text(&mut r, 2);
            let n = count(&mut r, 3);
            let Some(&i) = index.get(&date) else { continue };
            let key = (!rest).then_some(name);
            by_name.entry(key).or_insert_with(|| vec![0; dates.len()])[i] += n;
        }
        let other = by_name.remove(&None);
        let mut named: Vec<(String, Vec<u64>)> = by_name
            .into_iter()
            .filter_map(|(k, v)| k.map(|k| (k, v)))
            .collect();
        named.sort_by(|(a, av), (b, bv)| {
            let (at, bt): (u64, u64) = (av.iter().sum(), bv.iter().sum());
            bt.cmp(&at).then_with(|| a.cmp(b))
        });
        let mut series: Vec<VolumeSeries> = named
            .into_iter()
            .map(|(name, rows)| VolumeSeries { name, rows })
            .collect();
        if let Some(rows) = other {
            series.push(VolumeSeries {
                name: OTHER.into(),
                rows,
            });
        }
        Ok(AlertVolume { dates, series })
    }

    /// The pages of a date's runs in the run ledger, in the order written.
    pub async fn pages_of_date(&self, date: NaiveDate) -> Result<Vec<PageRecord>, SinkError> {
        let t = &schema::PIPELINE_PAGES;
        let q = format!(
            "SELECT run_id, page, rows_written, skips, DATE_FORMAT(written_at, '%Y-%m-%d %H:%i:%s') \
             FROM {} WHERE report_date = {} ORDER BY written_at, run_id, page",
            self.table(t),
            date_lit(&date.to_string(), t.name)?
        );
        let mut out = Vec::new();
        for mut r in self.rows(q).await? {
            let at = text(&mut r, 4);
            out.push(PageRecord {
                run_id: text(&mut r, 0),
                page: count(&mut r, 1) as u32,
                date,
                rows: count(&mut r, 2),
                skips: serde_json::from_str(&text(&mut r, 3)).unwrap_or_default(),
                written_at: NaiveDateTime::parse_from_str(&at, "%Y-%m-%d %H:%M:%S")
                    .map_err(|e| data_error(t.name, "datetime", &at, e))?,
            });
        }
        Ok(out)
    }

    /// Per alert name, fired on `date` and the mean over the [`TREND_DAYS`]
    /// dates before, in one statement (conditional sums over
    /// `alert_recommendations`, which MariaDB and StarRocks both run), by name.
    pub async fn alert_trends(&self, date: NaiveDate) -> Result<Vec<AlertTrend>, SinkError> {
        let t = &schema::ALERT_RECOMMENDATIONS;
        let d = date_lit(&date.to_string(), t.name)?;
        let first = date_lit(&(date - chrono::Days::new(TREND_DAYS)).to_string(), t.name)?;
        let q = format!(
            "SELECT alert_name, \
             SUM(CASE WHEN report_date = {d} THEN fired_count ELSE 0 END), \
             SUM(CASE WHEN report_date < {d} THEN fired_count ELSE 0 END) \
             FROM {} WHERE report_date >= {first} AND report_date <= {d} \
             GROUP BY alert_name ORDER BY alert_name",
            self.table(t)
        );
        let mut out = Vec::new();
        for mut r in self.rows(q).await? {
            let alert_name = text(&mut r, 0);
            let fired = count(&mut r, 1);
            let avg_7d = count(&mut r, 2) as f64 / TREND_DAYS as f64;
            out.push(AlertTrend {
                alert_name,
                fired,
                avg_7d,
                change_percent: (avg_7d > 0.0)
                    .then(|| ((fired as f64 - avg_7d) / avg_7d * 100.0).round() as i64),
            });
        }
        Ok(out)
    }

    /// A date's recommendations as `alertflow report` shows them: most
    /// severe first, then most fired, then by name.
    pub async fn report(&self, date: NaiveDate) -> Result<Vec<Recommendation>, SinkError> {
        let mut recs = self.recommendations(&date.to_string()).await?;
        sort_report(&mut recs);
        Ok(recs)
    }
}
