//! The dashboard's audit log in the database (`web_audit`): who did what,
//! when, from where, with what result. Written after the action, read by
//! the audit page.

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::sink::ledger::{cut, dt, parse_dt, select_dt, text};
use crate::sink::schema;
use crate::sink::starrocks::{SinkError, SqlSink, lit};

/// One entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub at: NaiveDateTime,
    pub actor: String,
    pub role: String,
    pub remote: String,
    pub action: String,
    pub target: String,
    /// `ok`, `failed` or `denied`.
    pub result: String,
    pub detail: String,
}

/// Longest text kept in `target` and `detail` (the columns' sizes, in
/// characters, with room for multi-byte ones).
const TARGET_MAX: usize = 250;
const DETAIL_MAX: usize = 16_000;

impl SqlSink {
    /// Append an entry.
    pub async fn record_audit(&self, e: &AuditEntry) -> Result<(), SinkError> {
        let v = format!(
            "({}, {}, {}, {}, {}, {}, {}, {}, {})",
            lit(e.id.as_str()),
            dt(e.at),
            lit(cut(&e.actor, 60)),
            lit(e.role.as_str()),
            lit(cut(&e.remote, 60)),
            lit(cut(&e.action, 60)),
            lit(cut(&e.target, TARGET_MAX)),
            lit(e.result.as_str()),
            lit(cut(&e.detail, DETAIL_MAX)),
        );
        self.upsert(&schema::WEB_AUDIT, vec![v]).await
    }

    /// The newest `limit` entries, newest first.
    pub async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, SinkError> {
        let t = &schema::WEB_AUDIT;
        let q = format!(
            "SELECT id, {}, actor, role, remote, action, target, result, detail FROM {} \
             ORDER BY at DESC, id DESC LIMIT {limit}",
            select_dt("at"),
            self.table(t),
        );
        let mut out = Vec::new();
        for mut r in self.select(q).await? {
            out.push(AuditEntry {
                id: text(&mut r, 0),
                at: parse_dt(&text(&mut r, 1), t.name)?,
                actor: text(&mut r, 2),
                role: text(&mut r, 3),
                remote: text(&mut r, 4),
                action: text(&mut r, 5),
                target: text(&mut r, 6),
                result: text(&mut r, 7),
                detail: text(&mut r, 8),
            });
        }
        Ok(out)
    }
}
