//! The tables (alert rows, recommendations and the run ledger), defined once and rendered in two SQL dialects:
//! `starrocks` (Primary Key tables, `DISTRIBUTED BY HASH`, `PROPERTIES`,
//! VARCHAR lengths in bytes) and `mysql` (what MariaDB and MySQL accept;
//! long text becomes TEXT/MEDIUMTEXT to stay under the 64 KB row limit).

use std::fmt::Write;

/// SQL dialect of the target database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    #[value(name = "starrocks")]
    StarRocks,
    #[default]
    Mysql,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::StarRocks => "starrocks",
            Dialect::Mysql => "mysql",
        }
    }
}

/// Column types of the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    /// A short string; the length is in bytes (StarRocks) and used as
    /// characters in MySQL, where these columns stay small.
    Varchar(u32),
    /// A long string of up to this many bytes.
    Text(u32),
    Int,
    Bool,
    Date,
    DateTime,
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    pub comment: &'static str,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub name: &'static str,
    pub comment: &'static str,
    /// Key columns; they come first in `columns` (StarRocks requires it).
    pub key: &'static [&'static str],
    pub columns: &'static [Column],
    /// Secondary index for MySQL (StarRocks uses its own zone maps).
    pub index: Option<&'static str>,
}

const fn col(name: &'static str, ty: ColType, comment: &'static str) -> Column {
    Column { name, ty, comment }
}

/// `lark_alerts`: one row per (Lark message, status); columns of cards.md §6
/// plus `raw_content` and `ingested_at`.
pub const LARK_ALERTS: Table = Table {
    name: "lark_alerts",
    comment: "Alert rows parsed from Lark alert cards (one per message and status)",
    key: &["message_id"],
    columns: &[
        col(
            "message_id",
            ColType::Varchar(96),
            "Lark message id + -f (firing) or -r (resolved)",
        ),
        col("lark_message_id", ColType::Varchar(64), "Lark message id"),
        col("chat_id", ColType::Varchar(64), "Lark chat id"),
        col("status", ColType::Varchar(16), "firing or resolved"),
        col("alert_name", ColType::Varchar(512), "alert name"),
        col(
            "severity",
            ColType::Varchar(32),
            "critical, warning, info, other, or empty",
        ),
        col(
            "clusters",
            ColType::Text(65533),
            "distinct clusters, sorted, comma-separated",
        ),
        col(
            "regions",
            ColType::Text(65533),
            "distinct regions, sorted, comma-separated",
        ),
        col(
            "alert_count",
            ColType::Int,
            "sections with this status in the card",
        ),
        col("created_at", ColType::DateTime, "message time, UTC"),
        col(
            "alert_date",
            ColType::Date,
            "America/Los_Angeles date of created_at",
        ),
        col("title", ColType::Text(65533), "card title"),
        col(
            "summary",
            ColType::Text(65533),
            "summary of the first section",
        ),
        col(
            "raw_content",
            ColType::Text(1_048_576),
            "the card as read back from Lark",
        ),
        col(
            "ingested_at",
            ColType::DateTime,
            "when alertflow wrote the row, UTC",
        ),
    ],
    index: Some("alert_date"),
};

/// `alert_recommendations`: one row per (report_date, alert_name).
pub const ALERT_RECOMMENDATIONS: Table = Table {
    name: "alert_recommendations",
    comment: "Daily recommendation per alert name",
    key: &["report_date", "alert_name"],
    columns: &[
        col("report_date", ColType::Date, "America/Los_Angeles date"),
        col("alert_name", ColType::Varchar(512), "alert name"),
        col(
            "severity",
            ColType::Varchar(32),
            "from the catalogue, else the highest seen, else unknown",
        ),
        col("fired_count", ColType::Int, "firing rows that day"),
        col("resolved_count", ColType::Int, "resolved rows that day"),
        col("cluster_count", ColType::Int, "distinct clusters affected"),
        col(
            "clusters",
            ColType::Text(65533),
            "distinct clusters, sorted, comma-separated",
        ),
        col(
            "regions",
            ColType::Text(65533),
            "distinct regions, sorted, comma-separated",
        ),
        col(
            "is_noisy",
            ColType::Bool,
            "fired >= 10 times or on >= 3 clusters (configurable)",
        ),
        col(
            "in_catalogue",
            ColType::Bool,
            "whether the catalogue knows the alert",
        ),
        col(
            "recommendation",
            ColType::Text(65533),
            "what to do about it",
        ),
        col(
            "generated_at",
            ColType::DateTime,
            "when the recommendation was computed, UTC",
        ),
    ],
    index: None,
};

/// `pipeline_runs`: the run ledger, one row per run (a `fetch-day` and the
/// pages it published). Written by `fetch-day` when it starts (window) and
/// again once its last page is published (page total).
pub const PIPELINE_RUNS: Table = Table {
    name: "pipeline_runs",
    comment: "Run ledger: one row per fetch-day run",
    key: &["run_id"],
    columns: &[
        col("run_id", ColType::Varchar(64), "run id"),
        col(
            "report_date",
            ColType::Date,
            "America/Los_Angeles date fetched",
        ),
        col("chat_id", ColType::Varchar(64), "Lark chat id"),
        col(
            "window_start",
            ColType::DateTime,
            "first instant fetched, UTC",
        ),
        col(
            "window_end",
            ColType::DateTime,
            "last instant fetched, UTC (fixed on the first attempt)",
        ),
        col("started_at", ColType::DateTime, "when the run started, UTC"),
        col(
            "total_pages",
            ColType::Int,
            "pages published; 0 until the last page is known",
        ),
        col("messages", ColType::Int, "messages fetched, over all pages"),
        col(
            "fetched_at",
            ColType::DateTime,
            "when the last page was published, UTC (started_at until then)",
        ),
    ],
    index: Some("report_date"),
};

/// `pipeline_pages`: the page ledger, one row per page written to
/// `lark_alerts`, recorded by `insert` after the rows are written.
pub const PIPELINE_PAGES: Table = Table {
    name: "pipeline_pages",
    comment: "Run ledger: one row per page written",
    key: &["run_id", "page"],
    columns: &[
        col("run_id", ColType::Varchar(64), "run id"),
        col("page", ColType::Int, "page number, from 1"),
        col(
            "report_date",
            ColType::Date,
            "America/Los_Angeles date of the run",
        ),
        col("rows_written", ColType::Int, "alert rows the page gave"),
        col(
            "skips",
            ColType::Text(65533),
            "messages skipped by reason, JSON object",
        ),
        col(
            "written_at",
            ColType::DateTime,
            "when the rows were written, UTC",
        ),
    ],
    index: Some("report_date"),
};

/// `pipeline_recommends`: one row per date and run whose recommendations
/// were computed (`run_id` is empty for `reconcile` and by-hand runs),
/// recorded by `recommend` after it wrote them.
pub const PIPELINE_RECOMMENDS: Table = Table {
    name: "pipeline_recommends",
    comment: "Run ledger: when each date's recommendations were computed, from what",
    key: &["report_date", "run_id"],
    columns: &[
        col("report_date", ColType::Date, "America/Los_Angeles date"),
        col(
            "run_id",
            ColType::Varchar(64),
            "the run that asked, empty for reconcile or by hand",
        ),
        col("generated_at", ColType::DateTime, "when, UTC"),
        col("rows_read", ColType::Int, "alert rows of the date read"),
        col("alerts", ColType::Int, "recommendations written"),
        col(
            "max_ingested_at",
            ColType::DateTime,
            "newest ingested_at among the rows read (1970-01-01 if none)",
        ),
    ],
    index: None,
};

/// `web_audit`: every action taken on the dashboard (or refused), written
/// by `alertflow web` after the action.
pub const WEB_AUDIT: Table = Table {
    name: "web_audit",
    comment: "Dashboard audit log: who did what, when, with what result",
    key: &["id"],
    columns: &[
        col("id", ColType::Varchar(36), "entry id (UUID)"),
        col("at", ColType::DateTime, "when, UTC"),
        col(
            "actor",
            ColType::Varchar(64),
            "user name (`local` without auth)",
        ),
        col("role", ColType::Varchar(16), "viewer or admin"),
        col("remote", ColType::Varchar(64), "peer address"),
        col(
            "action",
            ColType::Varchar(64),
            "what was asked, e.g. dead.replay",
        ),
        col("target", ColType::Varchar(1024), "what it was asked of"),
        col("result", ColType::Varchar(16), "ok, failed or denied"),
        col("detail", ColType::Text(65533), "what happened, or why not"),
    ],
    index: Some("at"),
};

/// `notifications`: every notification alertflow sent or decided not to
/// send, recorded after the decision (the notification ledger).
pub const NOTIFICATIONS: Table = Table {
    name: "notifications",
    comment: "Notification ledger: what was sent (or not), to whom, with what outcome",
    key: &["id"],
    columns: &[
        col("id", ColType::Varchar(36), "entry id (UUID)"),
        col("at", ColType::DateTime, "when the outcome was known, UTC"),
        col("source", ColType::Varchar(16), "alarm, health or test"),
        col("subject", ColType::Varchar(255), "the check or the task"),
        col(
            "event",
            ColType::Varchar(16),
            "firing, repeat, resolved, ok, error or test",
        ),
        col(
            "labels",
            ColType::Text(65533),
            "labels or details, JSON object",
        ),
        col("receiver", ColType::Varchar(64), "the receiver's name"),
        col(
            "outcome",
            ColType::Varchar(24),
            "sent, failed, dropped, ...",
        ),
        col("attempts", ColType::Int, "delivery attempts made"),
        col(
            "error",
            ColType::Text(65533),
            "why it failed, empty when sent",
        ),
        col("title", ColType::Varchar(1024), "the message's title"),
    ],
    index: Some("at"),
};

/// `silences`: what not to send, and until when (`alertflow silence`).
pub const SILENCES: Table = Table {
    name: "silences",
    comment: "Silences: notifications matching them are recorded, not sent",
    key: &["id"],
    columns: &[
        col("id", ColType::Varchar(36), "silence id (UUID)"),
        col(
            "check_name",
            ColType::Varchar(255),
            "the check, empty for pipeline health (match on task)",
        ),
        col(
            "matchers",
            ColType::Text(65533),
            "label matchers, JSON list of [name, op, value]",
        ),
        col("starts_at", ColType::DateTime, "from, UTC"),
        col(
            "ends_at",
            ColType::DateTime,
            "until, UTC (far future with until_resolved)",
        ),
        col(
            "until_resolved",
            ColType::Bool,
            "expires by itself once nothing it matches fires",
        ),
        col("comment", ColType::Text(65533), "why"),
        col("author", ColType::Varchar(64), "who"),
        col(
            "expired_at",
            ColType::DateTime,
            "when it was expired early (1970-01-01 if not)",
        ),
        col(
            "expired_by",
            ColType::Varchar(64),
            "who or what expired it early",
        ),
    ],
    index: None,
};

/// `digests`: the daily digest's once-per-date claim (`digest` task and
/// `alertflow digest`): who claimed the date, when, and when it was sent.
pub const DIGESTS: Table = Table {
    name: "digests",
    comment: "Daily digest: one row per date, claimed before it is sent",
    key: &["report_date"],
    columns: &[
        col("report_date", ColType::Date, "America/Los_Angeles date"),
        col(
            "claimed_by",
            ColType::Varchar(64),
            "the task id (or cli-...) that claimed the date",
        ),
        col("claimed_at", ColType::DateTime, "when, UTC"),
        col(
            "sent_at",
            ColType::DateTime,
            "when it was sent, UTC (1970-01-01 until sent)",
        ),
        col("title", ColType::Varchar(1024), "the digest's title"),
        col(
            "receivers",
            ColType::Varchar(1024),
            "receiver names, comma-separated",
        ),
    ],
    index: None,
};

pub const TABLES: [&Table; 9] = [
    &LARK_ALERTS,
    &ALERT_RECOMMENDATIONS,
    &PIPELINE_RUNS,
    &PIPELINE_PAGES,
    &PIPELINE_RECOMMENDS,
    &WEB_AUDIT,
    &NOTIFICATIONS,
    &SILENCES,
    &DIGESTS,
];

/// StarRocks table properties.
#[derive(Clone, Debug)]
pub struct StarRocksOptions {
    pub buckets: u32,
    pub replication_num: u32,
}

impl Default for StarRocksOptions {
    fn default() -> Self {
        StarRocksOptions {
            buckets: 8,
            replication_num: 3,
        }
    }
}

fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn sql_type(ty: ColType, d: Dialect) -> String {
    match (ty, d) {
        (ColType::Varchar(n), _) => format!("VARCHAR({n})"),
        (ColType::Text(n), Dialect::StarRocks) => format!("VARCHAR({n})"),
        (ColType::Text(n), Dialect::Mysql) if n <= 65_535 => "TEXT".into(),
        (ColType::Text(_), Dialect::Mysql) => "MEDIUMTEXT".into(),
        (ColType::Int, _) => "INT".into(),
        (ColType::Bool, Dialect::StarRocks) => "BOOLEAN".into(),
        (ColType::Bool, Dialect::Mysql) => "TINYINT(1)".into(),
        (ColType::Date, _) => "DATE".into(),
        (ColType::DateTime, _) => "DATETIME".into(),
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `CREATE DATABASE IF NOT EXISTS`.
pub fn create_database(db: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {}", ident(db))
}

/// `CREATE TABLE IF NOT EXISTS` for a table in a dialect.
pub fn create_table(t: &Table, db: &str, d: Dialect, sr: &StarRocksOptions) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "CREATE TABLE IF NOT EXISTS {}.{} (",
        ident(db),
        ident(t.name)
    );
    let mut lines: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            format!(
                "  {} {} NOT NULL COMMENT {}",
                ident(c.name),
                sql_type(c.ty, d),
                quote(c.comment)
            )
        })
        .collect();
    let key = t
        .key
        .iter()
        .map(|k| ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    match d {
        Dialect::Mysql => {
            lines.push(format!("  PRIMARY KEY ({key})"));
            if let Some(ix) = t.index {
                lines.push(format!(
                    "  KEY {} ({})",
                    ident(&format!("idx_{ix}")),
                    ident(ix)
                ));
            }
            let _ = writeln!(s, "{}", lines.join(",\n"));
            let _ = write!(
                s,
                ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT={}",
                quote(t.comment)
            );
        }
        Dialect::StarRocks => {
            let _ = writeln!(s, "{}", lines.join(",\n"));
            let _ = writeln!(s, ") ENGINE=OLAP");
            let _ = writeln!(s, "PRIMARY KEY ({key})");
            let _ = writeln!(s, "COMMENT {}", quote(t.comment));
            let _ = writeln!(s, "DISTRIBUTED BY HASH({key}) BUCKETS {}", sr.buckets);
            let _ = write!(
                s,
                "PROPERTIES (\n  \"replication_num\" = \"{}\",\n  \"enable_persistent_index\" = \"true\"\n)",
                sr.replication_num
            );
        }
    }
    s
}

/// Every statement `alertflow migrate` runs, in order.
pub fn migration(db: &str, d: Dialect, sr: &StarRocksOptions) -> Vec<String> {
    let mut v = vec![create_database(db)];
    v.extend(TABLES.iter().map(|t| create_table(t, db, d, sr)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_first() {
        for t in TABLES {
            for (i, k) in t.key.iter().enumerate() {
                assert_eq!(t.columns[i].name, *k, "{}: key columns lead", t.name);
            }
        }
    }

    #[test]
    fn golden_mysql() {
        let got = format!(
            "{};",
            migration("alerts", Dialect::Mysql, &StarRocksOptions::default()).join(";\n\n")
        );
        let want = include_str!("golden/schema.mysql.sql");
        assert_eq!(
            got.trim(),
            want.trim(),
            "regenerate with `alertflow migrate --dialect mysql --print`"
        );
    }

    #[test]
    fn golden_starrocks() {
        let got = format!(
            "{};",
            migration("alerts", Dialect::StarRocks, &StarRocksOptions::default()).join(";\n\n")
        );
        let want = include_str!("golden/schema.starrocks.sql");
        assert_eq!(
            got.trim(),
            want.trim(),
            "regenerate with `alertflow migrate --dialect starrocks --print`"
        );
    }
}
