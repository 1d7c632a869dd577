//! The daily digest in the database: its content read from `lark_alerts`
//! and `alert_recommendations` ([`SqlSink::digest_data`]), and the
//! once-per-date claim in `digests` ([`SqlSink::claim_digest`],
//! [`SqlSink::digest_sent`]).
//!
//! The claim: on MySQL/MariaDB an `INSERT IGNORE` on the date's primary key,
//! which exactly one writer wins (affected rows 1). StarRocks enforces no
//! such uniqueness (a Primary Key table upserts), so there the claim is read
//! first, written when free and read back, and the last writer keeps it: two
//! claims within the same instant can both read themselves back and both
//! send. A claim that is older than [`STALE_CLAIM`] without `sent_at` (the
//! sender died mid-send) may be taken over, so a date's digest is sent at
//! least once, and twice only when a sender died after sending and before
//! recording it.

use chrono::{Days, NaiveDate, NaiveDateTime};
use mysql_async::prelude::Queryable;

use crate::notify::digest::{BASELINE_DAYS, DigestData, NoisyAlert, day_link, first_line};
use crate::sink::ledger::{dt, epoch, now, num, parse_dt, select_dt, text};
use crate::sink::schema::{self, Dialect};
use crate::sink::starrocks::{SinkError, SqlSink, classify, lit};

/// A claim this old without `sent_at` belongs to a sender that died.
pub const STALE_CLAIM: chrono::Duration = chrono::Duration::minutes(10);

/// A date's row of `digests`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DigestClaim {
    pub date: NaiveDate,
    pub claimed_by: String,
    pub claimed_at: NaiveDateTime,
    /// `None` until sent.
    pub sent_at: Option<NaiveDateTime>,
    pub title: String,
    pub receivers: String,
}

/// What a claim attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The date is ours to send (a new claim, our own earlier claim, or a
    /// stale one taken over).
    Claimed,
    /// Someone sent it already.
    AlreadySent(DigestClaim),
    /// Someone else claimed it recently and has not sent it yet.
    HeldBy(DigestClaim),
}

fn date_sql(d: NaiveDate) -> String {
    lit(d.format("%Y-%m-%d").to_string())
}

impl SqlSink {
    /// The first column of every row `q` returns, as text.
    async fn names(&self, q: String) -> Result<Vec<String>, SinkError> {
        Ok(self
            .select(q)
            .await?
            .into_iter()
            .map(|mut r| text(&mut r, 0))
            .collect())
    }

    /// Everything the date's digest says. `top` bounds the noisy alerts and
    /// the clusters listed; `new_days` is how far back a name must be unseen
    /// to count as new; `dashboard_url` makes the link.
    pub async fn digest_data(
        &self,
        date: NaiveDate,
        top: u32,
        new_days: u32,
        dashboard_url: Option<&str>,
    ) -> Result<DigestData, SinkError> {
        let alerts = self.table(&schema::LARK_ALERTS);
        let recs = self.table(&schema::ALERT_RECOMMENDATIONS);
        let d = date_sql(date);
        let first = date - Days::new(u64::from(BASELINE_DAYS));
        let q = format!(
            "SELECT DATE_FORMAT(alert_date, '%Y-%m-%d'), COUNT(*) FROM {alerts} \
             WHERE status = 'firing' AND alert_date >= {} AND alert_date <= {d} \
             GROUP BY alert_date",
            date_sql(first)
        );
        let mut per_day = std::collections::BTreeMap::new();
        for mut r in self.select(q).await? {
            per_day.insert(text(&mut r, 0), num(&mut r, 1));
        }
        let count_of = |day: NaiveDate| per_day.get(&day.to_string()).copied().unwrap_or(0);
        let previous = first
            .iter_days()
            .take(BASELINE_DAYS as usize)
            .map(|day| (day, count_of(day)))
            .collect();

        let q = format!(
            "SELECT alert_name, severity, fired_count, clusters, recommendation FROM {recs} \
             WHERE report_date = {d} AND is_noisy = 1 ORDER BY fired_count DESC, alert_name"
        );
        let rows = self.select(q).await?;
        let noisy_total = rows.len() as u64;
        let noisy = rows
            .into_iter()
            .take(top as usize)
            .map(|mut r| NoisyAlert {
                alert_name: text(&mut r, 0),
                severity: text(&mut r, 1),
                fired: num(&mut r, 2),
                clusters: text(&mut r, 3),
                recommendation: first_line(&text(&mut r, 4)),
            })
            .collect();

        let q = format!(
            "SELECT alert_name FROM {recs} WHERE report_date = {d} AND in_catalogue = 0 \
             ORDER BY alert_name"
        );
        let not_in_catalogue = self.names(q).await?;

        let q = format!(
            "SELECT alert_name FROM {alerts} \
             WHERE alert_date >= {} AND alert_date <= {d} \
             GROUP BY alert_name HAVING MIN(alert_date) = {d} ORDER BY alert_name",
            date_sql(date - Days::new(u64::from(new_days)))
        );
        let new_names = self.names(q).await?;

        let q = format!(
            "SELECT clusters, COUNT(*) FROM {alerts} \
             WHERE status = 'firing' AND alert_date = {d} GROUP BY clusters"
        );
        let mut by_cluster: std::collections::BTreeMap<String, u64> = Default::default();
        for mut r in self.select(q).await? {
            let (cs, n) = (text(&mut r, 0), num(&mut r, 1));
            for c in cs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                *by_cluster.entry(c.to_string()).or_default() += n;
            }
        }
        let mut clusters: Vec<(String, u64)> = by_cluster.into_iter().collect();
        clusters.sort_by(|(a, an), (b, bn)| bn.cmp(an).then_with(|| a.cmp(b)));
        clusters.truncate(top as usize);

        Ok(DigestData {
            date,
            firing: count_of(date),
            previous,
            noisy,
            noisy_total,
            new_names,
            not_in_catalogue,
            clusters,
            link: dashboard_url.map(|u| day_link(u, date)),
        })
    }

    /// The date's row of `digests`, if any.
    pub async fn digest_claim(&self, date: NaiveDate) -> Result<Option<DigestClaim>, SinkError> {
        let t = &schema::DIGESTS;
        let q = format!(
            "SELECT claimed_by, {}, {}, title, receivers FROM {} WHERE report_date = {}",
            select_dt("claimed_at"),
            select_dt("sent_at"),
            self.table(t),
            date_sql(date)
        );
        let Some(mut r) = self.select(q).await?.into_iter().next() else {
            return Ok(None);
        };
        let sent = parse_dt(&text(&mut r, 2), t.name)?;
        Ok(Some(DigestClaim {
            date,
            claimed_by: text(&mut r, 0),
            claimed_at: parse_dt(&text(&mut r, 1), t.name)?,
            sent_at: (sent != epoch()).then_some(sent),
            title: text(&mut r, 3),
            receivers: text(&mut r, 4),
        }))
    }

    /// Claim the date's digest for `me` (see the module docs).
    pub async fn claim_digest(
        &self,
        date: NaiveDate,
        me: &str,
        title: &str,
        receivers: &str,
    ) -> Result<ClaimOutcome, SinkError> {
        let t = &schema::DIGESTS;
        let at = now();
        let row = format!(
            "({}, {}, {}, {}, {}, {})",
            date_sql(date),
            lit(me),
            dt(at),
            dt(epoch()),
            lit(crate::sink::ledger::cut(title, 1000)),
            lit(crate::sink::ledger::cut(receivers, 1000)),
        );
        let won = match self.dialect() {
            Dialect::Mysql => {
                let mut c = self.conn().await?;
                c.query_drop(format!("INSERT IGNORE INTO {} VALUES {row}", self.table(t)))
                    .await
                    .map_err(classify)?;
                c.affected_rows() == 1
            }
            Dialect::StarRocks => {
                if self.digest_claim(date).await?.is_none() {
                    self.upsert(t, vec![row]).await?;
                }
                false
            }
        };
        if won {
            return Ok(ClaimOutcome::Claimed);
        }
        let Some(held) = self.digest_claim(date).await? else {
            return Err(SinkError::Data {
                table: t.name.into(),
                message: format!("the claim of {date} vanished"),
            });
        };
        if held.sent_at.is_some() {
            return Ok(ClaimOutcome::AlreadySent(held));
        }
        if held.claimed_by == me {
            return Ok(ClaimOutcome::Claimed);
        }
        if at - held.claimed_at < STALE_CLAIM {
            return Ok(ClaimOutcome::HeldBy(held));
        }
        // Take over a dead sender's claim: only if it is still the one read.
        let q = format!(
            "UPDATE {} SET claimed_by = {}, claimed_at = {} WHERE report_date = {} \
             AND claimed_by = {} AND claimed_at = {} AND sent_at = {}",
            self.table(t),
            lit(me),
            dt(at),
            date_sql(date),
            lit(held.claimed_by.as_str()),
            dt(held.claimed_at),
            dt(epoch()),
        );
        let mut c = self.conn().await?;
        c.query_drop(q).await.map_err(classify)?;
        let taken = match self.dialect() {
            Dialect::Mysql => c.affected_rows() == 1,
            Dialect::StarRocks => true,
        };
        drop(c);
        match self.digest_claim(date).await? {
            Some(h) if taken && h.claimed_by == me && h.sent_at.is_none() => {
                Ok(ClaimOutcome::Claimed)
            }
            Some(h) if h.sent_at.is_some() => Ok(ClaimOutcome::AlreadySent(h)),
            Some(h) => Ok(ClaimOutcome::HeldBy(h)),
            None => Ok(ClaimOutcome::HeldBy(held)),
        }
    }

    /// Record that `me` sent the date's digest.
    pub async fn digest_sent(&self, date: NaiveDate, me: &str) -> Result<(), SinkError> {
        let q = format!(
            "UPDATE {} SET sent_at = {} WHERE report_date = {} AND claimed_by = {}",
            self.table(&schema::DIGESTS),
            dt(now()),
            date_sql(date),
            lit(me),
        );
        let mut c = self.conn().await?;
        c.query_drop(q).await.map_err(classify)
    }
}
