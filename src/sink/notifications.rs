//! The notification ledger in the database (`notifications`): every
//! notification, when, about what, to which receiver, and its outcome
//! (`alertflow notifications list`).

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::sink::ledger::{cut, dt, num, parse_dt, select_dt, text};
use crate::sink::schema;
use crate::sink::starrocks::{SinkError, SqlSink, lit};

/// One notification and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotificationRecord {
    pub id: String,
    pub at: NaiveDateTime,
    /// `alarm`, `health` or `test`.
    pub source: String,
    /// The check or the task.
    pub subject: String,
    /// `firing`, `repeat`, `resolved`, `ok`, `error` or `test`.
    pub event: String,
    /// Labels or details, a JSON object.
    pub labels: serde_json::Value,
    pub receiver: String,
    /// `sent`, `failed`, `dropped`.
    pub outcome: String,
    pub attempts: u32,
    /// Why it failed; empty when sent.
    pub error: String,
    pub title: String,
}

impl SqlSink {
    /// Append entries (one statement).
    pub async fn record_notifications(&self, r: &[NotificationRecord]) -> Result<(), SinkError> {
        let values = r
            .iter()
            .map(|r| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                    lit(r.id.as_str()),
                    dt(r.at),
                    lit(r.source.as_str()),
                    lit(cut(&r.subject, 250)),
                    lit(r.event.as_str()),
                    lit(cut(&r.labels.to_string(), 16_000)),
                    lit(cut(&r.receiver, 60)),
                    lit(r.outcome.as_str()),
                    lit(r.attempts),
                    lit(cut(&r.error, 16_000)),
                    lit(cut(&r.title, 250)),
                )
            })
            .collect();
        self.upsert(&schema::NOTIFICATIONS, values).await
    }

    /// Entries since `since`, newest first, at most `limit`; `subject`
    /// narrows to one check or task.
    pub async fn notifications_since(
        &self,
        since: NaiveDateTime,
        subject: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, SinkError> {
        let t = &schema::NOTIFICATIONS;
        let mut filter = format!("at >= {}", dt(since));
        if let Some(s) = subject {
            filter.push_str(&format!(" AND subject = {}", lit(s)));
        }
        let q = format!(
            "SELECT id, {}, source, subject, event, labels, receiver, outcome, attempts, error, title \
             FROM {} WHERE {filter} ORDER BY at DESC, id DESC LIMIT {limit}",
            select_dt("at"),
            self.table(t),
        );
        let mut out = Vec::new();
        for mut r in self.select(q).await? {
            out.push(NotificationRecord {
                id: text(&mut r, 0),
                at: parse_dt(&text(&mut r, 1), t.name)?,
                source: text(&mut r, 2),
                subject: text(&mut r, 3),
                event: text(&mut r, 4),
                labels: serde_json::from_str(&text(&mut r, 5)).unwrap_or_default(),
                receiver: text(&mut r, 6),
                outcome: text(&mut r, 7),
                attempts: num(&mut r, 8) as u32,
                error: text(&mut r, 9),
                title: text(&mut r, 10),
            });
        }
        Ok(out)
    }
}
