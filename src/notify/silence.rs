//! Silences: notifications that match one are evaluated and recorded in
//! the notification ledger (outcome `silenced`) but not sent.
//!
//! A silence names a check (alarms) or none (pipeline health
//! notifications, matched on `task`, `queue` and `status`), label matchers
//! (`k=v` equality, `k=~re` a regular expression over the whole value, `k!=v`
//! inequality), a time span, and `until_resolved`: it then ends by itself
//! at the first evaluation where nothing it matches fires.
//!
//! Silences live in the database (`silences`): they survive Redis losing
//! its data. Each check evaluation and each health notification reads the
//! active ones with one query (a few rows); no cache is needed at these
//! rates (one evaluation a minute per check).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::sink::ledger::{dt, epoch, parse_dt, select_dt, text};
use crate::sink::schema;
use crate::sink::starrocks::{SinkError, SqlSink, lit};

/// How a matcher compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "=~")]
    Regex,
}

/// One label matcher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
}

impl Matcher {
    /// `k=v`, `k!=v` or `k=~regex`.
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let (name, op, value) = if let Some((k, v)) = s.split_once("=~") {
            (k, Op::Regex, v)
        } else if let Some((k, v)) = s.split_once("!=") {
            (k, Op::Ne, v)
        } else if let Some((k, v)) = s.split_once('=') {
            (k, Op::Eq, v)
        } else {
            return Err(format!(
                "{s:?}: give name=value, name!=value or name=~regex"
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{s:?}: the label name is empty"));
        }
        let m = Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
        };
        if op == Op::Regex {
            m.regex().map_err(|e| format!("{s:?}: {e}"))?;
        }
        Ok(m)
    }

    fn regex(&self) -> Result<regex::Regex, regex::Error> {
        regex::Regex::new(&format!("^(?:{})$", self.value))
    }

    /// Whether `labels` satisfy it (a missing label is the empty string).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Regex => self.regex().is_ok_and(|r| r.is_match(v)),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Regex => "=~",
        };
        write!(f, "{}{op}{}", self.name, self.value)
    }
}

/// A silence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Silence {
    pub id: String,
    /// The check; `None` for pipeline health notifications.
    pub check: Option<String>,
    pub matchers: Vec<Matcher>,
    pub starts_at: NaiveDateTime,
    pub ends_at: NaiveDateTime,
    pub until_resolved: bool,
    pub comment: String,
    pub author: String,
    pub expired_at: Option<NaiveDateTime>,
    pub expired_by: String,
}

/// Where `until_resolved` silences end: far enough.
pub fn far_future() -> NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
        .expect("valid")
        .and_hms_opt(0, 0, 0)
        .expect("valid")
}

impl Silence {
    /// In force at `now`.
    pub fn active(&self, now: NaiveDateTime) -> bool {
        self.expired_at.is_none() && self.starts_at <= now && now < self.ends_at
    }

    /// Whether it silences a notification of `check` (`None`: health) with
    /// `labels`.
    pub fn matches(&self, check: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
        self.check.as_deref() == check && self.matchers.iter().all(|m| m.matches(labels))
    }

    /// The state a person reads: active, pending, expired.
    pub fn state(&self, now: NaiveDateTime) -> &'static str {
        if self.active(now) {
            "active"
        } else if self.expired_at.is_none() && now < self.starts_at {
            "pending"
        } else {
            "expired"
        }
    }
}

/// The first active silence of `silences` that silences it, if any.
pub fn silenced_by<'a>(
    silences: &'a [Silence],
    now: NaiveDateTime,
    check: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> Option<&'a Silence> {
    silences
        .iter()
        .find(|s| s.active(now) && s.matches(check, labels))
}

/// How long a new silence lasts.
#[derive(Clone, Debug)]
pub enum Span {
    /// From now, e.g. `2h`.
    For(String),
    /// Until this time (RFC 3339, or `YYYY-MM-DD HH:MM` in UTC).
    Until(String),
    /// Until nothing it matches fires.
    UntilResolved,
}

/// What a person asks for (the CLI's and the dashboard's form).
#[derive(Clone, Debug)]
pub struct Request {
    pub check: Option<String>,
    pub matchers: Vec<String>,
    pub span: Option<Span>,
    pub comment: String,
    pub author: String,
}

fn parse_time(s: &str) -> Result<NaiveDateTime, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.naive_utc());
    }
    for f in ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t);
        }
    }
    Err(format!(
        "--until {s:?}: give an RFC 3339 time (2026-03-10T08:00:00Z) or YYYY-MM-DD HH:MM in UTC"
    ))
}

impl Request {
    /// The silence asked for, checked against `config` at `now`; the error
    /// names the option at fault.
    pub fn build(
        self,
        config: &crate::config::AppConfig,
        now: NaiveDateTime,
    ) -> Result<Silence, String> {
        let matchers: Vec<Matcher> = self
            .matchers
            .iter()
            .map(|m| Matcher::parse(m))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--match {e}"))?;
        if self.check.is_none() && matchers.is_empty() {
            return Err(
                "say what to silence: --check NAME (alarms) and/or --match (health: task=NAME)"
                    .into(),
            );
        }
        if let Some(c) = &self.check
            && !config.checks.iter().any(|k| &k.name == c)
            && !config.watchdogs.iter().any(|w| &w.name == c)
        {
            return Err(format!(
                "--check {c}: no [[checks]] or [[watchdogs]] entry of that name in {}",
                config.source
            ));
        }
        if self.comment.trim().is_empty() {
            return Err("--comment: say why".into());
        }
        let until_resolved = matches!(self.span, Some(Span::UntilResolved));
        if until_resolved && self.check.is_none() {
            return Err("--until-resolved needs --check (health statuses do not resolve)".into());
        }
        let ends_at = match self.span {
            Some(Span::For(d)) => {
                let d = crate::config::parse_duration(&d).map_err(|e| format!("--for: {e}"))?;
                now + chrono::Duration::from_std(d).map_err(|_| "--for: too long".to_string())?
            }
            Some(Span::Until(t)) => {
                let t = parse_time(&t)?;
                if t <= now {
                    return Err(format!("--until {t}: that is past"));
                }
                t
            }
            Some(Span::UntilResolved) => far_future(),
            None => {
                return Err(
                    "say for how long: --for DURATION, --until TIME or --until-resolved".into(),
                );
            }
        };
        Ok(Silence {
            id: uuid::Uuid::new_v4().to_string(),
            check: self.check,
            matchers,
            starts_at: now,
            ends_at,
            until_resolved,
            comment: self.comment,
            author: self.author,
            expired_at: None,
            expired_by: String::new(),
        })
    }
}

/// The silences in force at `now`, for `about` (a check or a task, named
/// in the log). A database that does not answer within 5 s silences
/// nothing (logged): better a message too many than one lost.
pub async fn in_force(sink: &SqlSink, now: NaiveDateTime, about: &str) -> Vec<Silence> {
    let read = sink.silences(now, Some(now));
    match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(about, error = %e, "silences unreadable: sending as if there were none");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!(
                about,
                "silences unreadable within 5 s: sending as if there were none"
            );
            Vec::new()
        }
    }
}

impl SqlSink {
    /// Expire silence `id` now, by `who`; false when it had already ended.
    pub async fn expire_silence(&self, id: &str, who: &str) -> Result<Option<bool>, SinkError> {
        let now = crate::sink::ledger::now();
        let Some(mut s) = self.silence(id).await? else {
            return Ok(None);
        };
        if !s.active(now) && s.expired_at.is_some() {
            return Ok(Some(false));
        }
        s.expired_at = Some(now);
        s.expired_by = who.to_string();
        self.record_silence(&s).await?;
        Ok(Some(true))
    }

    /// Write a silence (whole row).
    pub async fn record_silence(&self, s: &Silence) -> Result<(), SinkError> {
        let v = format!(
            "({}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            lit(s.id.as_str()),
            lit(s.check.clone().unwrap_or_default()),
            lit(serde_json::to_string(&s.matchers).expect("serializes")),
            dt(s.starts_at),
            dt(s.ends_at),
            lit(s.until_resolved),
            lit(s.comment.as_str()),
            lit(s.author.as_str()),
            dt(s.expired_at.unwrap_or_else(epoch)),
            lit(s.expired_by.as_str()),
        );
        self.upsert(&schema::SILENCES, vec![v]).await
    }

    /// Silences that have not ended before `since`, newest first; with
    /// `active_at`, only those in force then.
    pub async fn silences(
        &self,
        since: NaiveDateTime,
        active_at: Option<NaiveDateTime>,
    ) -> Result<Vec<Silence>, SinkError> {
        let t = &schema::SILENCES;
        let mut filter = format!("ends_at >= {}", dt(since));
        if let Some(now) = active_at {
            filter = format!(
                "starts_at <= {now} AND ends_at > {now} AND expired_at = {epoch}",
                now = dt(now),
                epoch = dt(epoch())
            );
        }
        let q = format!(
            "SELECT id, check_name, matchers, {}, {}, until_resolved, comment, author, {}, expired_by \
             FROM {} WHERE {filter} ORDER BY starts_at DESC, id",
            select_dt("starts_at"),
            select_dt("ends_at"),
            select_dt("expired_at"),
            self.table(t),
        );
        let mut out = Vec::new();
        for mut r in self.select(q).await? {
            let check = text(&mut r, 1);
            let expired_at = parse_dt(&text(&mut r, 8), t.name)?;
            out.push(Silence {
                id: text(&mut r, 0),
                check: (!check.is_empty()).then_some(check),
                matchers: serde_json::from_str(&text(&mut r, 2)).map_err(|e| SinkError::Data {
                    table: t.name.into(),
                    message: format!("bad matchers: {e}"),
                })?,
                starts_at: parse_dt(&text(&mut r, 3), t.name)?,
                ends_at: parse_dt(&text(&mut r, 4), t.name)?,
                until_resolved: matches!(text(&mut r, 5).as_str(), "1" | "true"),
                comment: text(&mut r, 6),
                author: text(&mut r, 7),
                expired_at: (expired_at != epoch()).then_some(expired_at),
                expired_by: text(&mut r, 9),
            });
        }
        Ok(out)
    }

    /// One silence by id.
    pub async fn silence(&self, id: &str) -> Result<Option<Silence>, SinkError> {
        Ok(self
            .silences(epoch(), None)
            .await?
            .into_iter()
            .find(|s| s.id == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn t(h: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 3, 10)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
    }

    fn silence(check: Option<&str>, matchers: &[&str]) -> Silence {
        Silence {
            id: "s1".into(),
            check: check.map(str::to_string),
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            starts_at: t(1),
            ends_at: t(3),
            until_resolved: false,
            comment: String::new(),
            author: String::new(),
            expired_at: None,
            expired_by: String::new(),
        }
    }

    #[test]
    fn matchers_compare_equal_unequal_and_by_whole_regex() {
        let l = labels(&[("cluster", "prod-a"), ("host", "be1")]);
        assert!(Matcher::parse("cluster=prod-a").unwrap().matches(&l));
        assert!(!Matcher::parse("cluster=prod").unwrap().matches(&l));
        assert!(Matcher::parse("cluster=~prod-.*").unwrap().matches(&l));
        assert!(
            !Matcher::parse("cluster=~prod").unwrap().matches(&l),
            "anchored"
        );
        assert!(Matcher::parse("host!=be2").unwrap().matches(&l));
        assert!(
            Matcher::parse("zone=").unwrap().matches(&l),
            "missing is empty"
        );
        assert!(Matcher::parse("cluster=~(").is_err());
        assert!(Matcher::parse("cluster").is_err());
        assert!(Matcher::parse("=x").is_err());
        assert_eq!(Matcher::parse("a=~b.*").unwrap().to_string(), "a=~b.*");
    }

    #[test]
    fn a_silence_matches_its_check_its_labels_and_its_time_only() {
        let s = silence(Some("cpu-high"), &["cluster=a"]);
        let a = labels(&[("cluster", "a")]);
        let b = labels(&[("cluster", "b")]);
        let list = [s.clone()];
        assert!(silenced_by(&list, t(2), Some("cpu-high"), &a).is_some());
        assert!(silenced_by(&list, t(2), Some("cpu-high"), &b).is_none());
        assert!(silenced_by(&list, t(2), Some("disk-full"), &a).is_none());
        assert!(silenced_by(&list, t(2), None, &a).is_none(), "not health");
        assert!(
            silenced_by(&list, t(0), Some("cpu-high"), &a).is_none(),
            "not yet"
        );
        assert!(
            silenced_by(&list, t(3), Some("cpu-high"), &a).is_none(),
            "ended"
        );
        let mut expired = s.clone();
        expired.expired_at = Some(t(1));
        assert!(!expired.active(t(2)));
        assert_eq!(expired.state(t(2)), "expired");
        assert_eq!(s.state(t(0)), "pending");
        // Health: no check, matched on the task.
        let h = silence(None, &["task=fetch-day"]);
        assert!(h.matches(None, &labels(&[("task", "fetch-day")])));
        assert!(!h.matches(None, &labels(&[("task", "insert")])));
    }
}
