//! The SQL writer (StarRocks FE or MariaDB/MySQL over the MySQL protocol).
//!
//! Connection options that work on StarRocks: TCP only (`prefer_socket =
//! false`), no `COM_RESET_CONNECTION` on pool return, no prepared-statement
//! cache (StarRocks rejects prepared INSERT). Rows go in multi-row INSERTs
//! over the text protocol, every value escaped by the driver's own escaping
//! (`mysql_common`'s `Value::as_sql`), never formatted by hand. Writes are
//! upserts on the table key, so a replayed batch leaves one copy:
//! `ON DUPLICATE KEY UPDATE` on MySQL, plain INSERT into the Primary Key
//! table on StarRocks.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, Value};

use crate::config::AppConfig;
use crate::lark::card::AlertRow;
use crate::recommendation::Recommendation;
use crate::sink::schema::{self, Dialect, StarRocksOptions, Table};

/// Rows per INSERT statement (keeps statements well under max_allowed_packet).
const ROWS_PER_STATEMENT: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The database is unreachable or failed transiently: retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement was refused for a reason a retry will not fix.
    #[error("database refused the statement: {0}")]
    Refused(String),
    #[error("unexpected data in {table}: {message}")]
    Data { table: String, message: String },
}

impl SinkError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Unavailable(_))
    }
}

/// Server error codes that no retry can fix.
const FATAL_CODES: &[u16] = &[
    1044, // access denied to database
    1045, // access denied (password)
    1049, // unknown database
    1054, // unknown column
    1064, // syntax error
    1136, // column count mismatch
    1146, // table does not exist
    1406, // data too long
];

pub(crate) fn classify(e: mysql_async::Error) -> SinkError {
    match &e {
        mysql_async::Error::Server(s) if FATAL_CODES.contains(&s.code) => {
            let hint = match s.code {
                1049 | 1146 => " (run `alertflow migrate` to create the database and tables)",
                1044 | 1045 => {
                    " (check mysql.user / mysql.password, or STARROCKS_USER / STARROCKS_PASSWORD)"
                }
                _ => "",
            };
            SinkError::Refused(format!("{} {}{hint}", s.code, s.message))
        }
        _ => SinkError::Unavailable(e.to_string()),
    }
}

impl From<SinkError> for crate::queue::task::TaskError {
    fn from(e: SinkError) -> Self {
        if e.is_retryable() {
            crate::queue::task::TaskError::retry(e)
        } else {
            crate::queue::task::TaskError::fatal(e)
        }
    }
}

/// A row of `lark_alerts` as written.
#[derive(Clone, Debug)]
pub struct StoredAlert {
    pub row: AlertRow,
    pub raw_content: String,
    pub ingested_at: DateTime<Utc>,
}

/// Escape a value with the driver's own escaping.
pub(crate) fn lit(v: impl Into<Value>) -> String {
    v.into().as_sql(false)
}

pub(crate) fn datetime_lit(s: &str, table: &str) -> Result<String, SinkError> {
    let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").map_err(|e| SinkError::Data {
        table: table.into(),
        message: format!("bad datetime {s:?}: {e}"),
    })?;
    Ok(lit(t.format("%Y-%m-%d %H:%M:%S").to_string()))
}

pub(crate) fn date_lit(s: &str, table: &str) -> Result<String, SinkError> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| SinkError::Data {
        table: table.into(),
        message: format!("bad date {s:?}: {e}"),
    })?;
    Ok(lit(d.format("%Y-%m-%d").to_string()))
}

fn column_list(t: &Table) -> String {
    t.columns
        .iter()
        .map(|c| format!("`{}`", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The SQL writer and reader.
#[derive(Clone)]
pub struct SqlSink {
    pool: Pool,
    db: String,
    dialect: Dialect,
    sr: StarRocksOptions,
    /// Bound on getting a connection (`mysql.connect_timeout`).
    connect_timeout: std::time::Duration,
}

impl std::fmt::Debug for SqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSink")
            .field("db", &self.db)
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl SqlSink {
    /// A pool for `config.mysql` (the database is not selected at connect,
    /// so `migrate` can create it).
    pub fn new(config: &AppConfig) -> SqlSink {
        let m = &config.mysql;
        let pool_opts = PoolOpts::default()
            .with_reset_connection(false)
            .with_constraints(PoolConstraints::new(0, 16).expect("0 <= 16"));
        let opts = server_opts(config)
            .stmt_cache_size(0)
            .conn_ttl(std::time::Duration::from_secs(300))
            .pool_opts(pool_opts);
        SqlSink {
            pool: Pool::new(Opts::from(opts)),
            db: m.database.clone(),
            dialect: config.sink.dialect,
            connect_timeout: m.connect_timeout.0,
            sr: StarRocksOptions {
                buckets: config.sink.buckets,
                replication_num: config.sink.replication_num,
            },
        }
    }

    pub fn database(&self) -> &str {
        &self.db
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub(crate) async fn conn(&self) -> Result<mysql_async::Conn, SinkError> {
        match tokio::time::timeout(self.connect_timeout, self.pool.get_conn()).await {
            Ok(c) => c.map_err(classify),
            Err(_) => Err(SinkError::Unavailable(format!(
                "no connection within {:?} (mysql.connect_timeout)",
                self.connect_timeout
            ))),
        }
    }

    /// Create the database and every table if missing.
    pub async fn migrate(&self) -> Result<Vec<String>, SinkError> {
        let stmts = schema::migration(&self.db, self.dialect, &self.sr);
        let mut c = self.conn().await?;
        for s in &stmts {
            c.query_drop(s).await.map_err(classify)?;
        }
        Ok(stmts)
    }

    /// Drop the database (tests and the demo clean up with it).
    pub async fn drop_database(&self) -> Result<(), SinkError> {
        let mut c = self.conn().await?;
        c.query_drop(format!(
            "DROP DATABASE IF EXISTS `{}`",
            self.db.replace('`', "``")
        ))
        .await
        .map_err(classify)
    }

    pub(crate) fn table(&self, t: &Table) -> String {
        format!("`{}`.`{}`", self.db.replace('`', "``"), t.name)
    }

    pub(crate) fn upsert_tail(&self, t: &Table) -> String {
        match self.dialect {
            Dialect::StarRocks => String::new(),
            Dialect::Mysql => {
                let updates = t
                    .columns
                    .iter()
                    .filter(|c| !t.key.contains(&c.name))
                    .map(|c| format!("`{0}` = VALUES(`{0}`)", c.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(" ON DUPLICATE KEY UPDATE {updates}")
            }
        }
    }

    /// One multi-row upsert of `values` (each a parenthesised row) into `t`.
    pub(crate) fn insert_sql(&self, t: &Table, values: &[String]) -> String {
        format!(
            "INSERT INTO {} ({}) VALUES {}{}",
            self.table(t),
            column_list(t),
            values.join(", "),
            self.upsert_tail(t)
        )
    }

    /// The INSERT statements for alert rows (exposed for tests).
    pub fn alert_statements(&self, rows: &[StoredAlert]) -> Result<Vec<String>, SinkError> {
        let t = &schema::LARK_ALERTS;
        let mut out = Vec::new();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut values = Vec::with_capacity(chunk.len());
            for a in chunk {
                let r = &a.row;
                values.push(format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                    lit(r.message_id.as_str()),
                    lit(r.lark_message_id.as_str()),
                    lit(r.chat_id.as_str()),
                    lit(r.status.as_str()),
                    lit(r.alert_name.as_str()),
                    lit(r.severity.as_str()),
                    lit(r.clusters.as_str()),
                    lit(r.regions.as_str()),
                    lit(r.alert_count),
                    datetime_lit(&r.created_at, t.name)?,
                    date_lit(&r.alert_date, t.name)?,
                    lit(r.title.as_str()),
                    lit(r.summary.as_str()),
                    lit(a.raw_content.as_str()),
                    lit(a.ingested_at.format("%Y-%m-%d %H:%M:%S").to_string()),
                ));
            }
            out.push(self.insert_sql(t, &values));
        }
        Ok(out)
    }

    /// Upsert alert rows; returns the number of rows sent.
    pub async fn write_alerts(&self, rows: &[StoredAlert]) -> Result<u64, SinkError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let stmts = self.alert_statements(rows)?;
        let mut c = self.conn().await?;
        for s in stmts {
            c.query_drop(s).await.map_err(classify)?;
        }
        Ok(rows.len() as u64)
    }

    /// Every alert row of a Pacific date.
    pub async fn alerts_for_date(&self, date: &str) -> Result<Vec<AlertRow>, SinkError> {
        Ok(self.alerts_with_newest(date).await?.0)
    }

    /// Every alert row of a Pacific date, and the newest `ingested_at`
    /// among them (read in the same statement, so the two agree).
    pub async fn alerts_with_newest(
        &self,
        date: &str,
    ) -> Result<(Vec<AlertRow>, Option<NaiveDateTime>), SinkError> {
        let t = &schema::LARK_ALERTS;
        let q = format!(
            "SELECT message_id, lark_message_id, chat_id, status, alert_name, severity, clusters, regions, \
             alert_count, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'), DATE_FORMAT(alert_date, '%Y-%m-%d'), title, summary, \
             DATE_FORMAT(ingested_at, '%Y-%m-%d %H:%i:%s') \
             FROM {} WHERE alert_date = {} ORDER BY created_at, message_id",
            self.table(t),
            date_lit(date, t.name)?
        );
        let mut c = self.conn().await?;
        let rows: Vec<Row> = c.query(q).await.map_err(classify)?;
        let mut newest: Option<NaiveDateTime> = None;
        let mut out = Vec::with_capacity(rows.len());
        for mut r in rows {
            let mut s = |i: usize| -> String { r.take::<String, _>(i).unwrap_or_default() };
            let row = AlertRow {
                message_id: s(0),
                lark_message_id: s(1),
                chat_id: s(2),
                status: s(3),
                alert_name: s(4),
                severity: s(5),
                clusters: s(6),
                regions: s(7),
                alert_count: s(8).parse().unwrap_or(0),
                created_at: s(9),
                alert_date: s(10),
                title: s(11),
                summary: s(12),
            };
            let ingested = s(13);
            let at =
                NaiveDateTime::parse_from_str(&ingested, "%Y-%m-%d %H:%M:%S").map_err(|e| {
                    SinkError::Data {
                        table: t.name.into(),
                        message: format!("bad ingested_at {ingested:?}: {e}"),
                    }
                })?;
            newest = newest.max(Some(at));
            out.push(row);
        }
        Ok((out, newest))
    }

    /// Replace a date's recommendations: delete them, insert the new ones.
    pub async fn replace_recommendations(
        &self,
        date: &str,
        recs: &[Recommendation],
    ) -> Result<(), SinkError> {
        let t = &schema::ALERT_RECOMMENDATIONS;
        let now = Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
        let mut c = self.conn().await?;
        c.query_drop(format!(
            "DELETE FROM {} WHERE report_date = {}",
            self.table(t),
            date_lit(date, t.name)?
        ))
        .await
        .map_err(classify)?;
        for chunk in recs.chunks(ROWS_PER_STATEMENT) {
            let mut values = Vec::with_capacity(chunk.len());
            for r in chunk {
                values.push(format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                    date_lit(&r.report_date, t.name)?,
                    lit(r.alert_name.as_str()),
                    lit(r.severity.as_str()),
                    lit(r.fired_count),
                    lit(r.resolved_count),
                    lit(r.cluster_count),
                    lit(r.clusters.as_str()),
                    lit(r.regions.as_str()),
                    lit(r.is_noisy),
                    lit(r.in_catalogue),
                    lit(r.recommendation.as_str()),
                    lit(now.as_str()),
                ));
            }
            c.query_drop(self.insert_sql(t, &values))
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    /// A date's recommendations as stored.
    pub async fn recommendations(&self, date: &str) -> Result<Vec<Recommendation>, SinkError> {
        let t = &schema::ALERT_RECOMMENDATIONS;
        let q = format!(
            "SELECT DATE_FORMAT(report_date, '%Y-%m-%d'), alert_name, severity, fired_count, resolved_count, \
             cluster_count, clusters, regions, is_noisy, in_catalogue, recommendation \
             FROM {} WHERE report_date = {}",
            self.table(t),
            date_lit(date, t.name)?
        );
        let mut c = self.conn().await?;
        let rows: Vec<Row> = c.query(q).await.map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|mut r| {
                let mut s = |i: usize| -> String { r.take::<String, _>(i).unwrap_or_default() };
                Recommendation {
                    report_date: s(0),
                    alert_name: s(1),
                    severity: s(2),
                    fired_count: s(3).parse().unwrap_or(0),
                    resolved_count: s(4).parse().unwrap_or(0),
                    cluster_count: s(5).parse().unwrap_or(0),
                    clusters: s(6),
                    regions: s(7),
                    is_noisy: matches!(s(8).as_str(), "1" | "true"),
                    in_catalogue: matches!(s(9).as_str(), "1" | "true"),
                    recommendation: s(10),
                }
            })
            .collect())
    }

    /// Close the pool (waits for connections to be returned).
    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }
}
/// How to reach `config.mysql`'s server (no database selected, TCP only,
/// TLS when `mysql.tls` is on): the one place its options are built.
pub fn server_opts(config: &AppConfig) -> OptsBuilder {
    let m = &config.mysql;
    OptsBuilder::default()
        .ip_or_hostname(m.host.clone())
        .tcp_port(m.port)
        .user(Some(m.user.clone()))
        .pass((!m.password.is_empty()).then(|| m.password.expose().to_string()))
        .prefer_socket(false)
        .ssl_opts(mysql_ssl_opts(config))
}

/// mysql_async's TLS settings when `mysql.tls` is on (`None`: plain TCP).
/// Certificates are verified against the Mozilla roots (webpki-roots) plus
/// `tls.ca_file`, and the server's name must match `mysql.host`.
fn mysql_ssl_opts(config: &AppConfig) -> Option<mysql_async::SslOpts> {
    if !config.mysql.tls {
        return None;
    }
    let mut opts = mysql_async::SslOpts::default();
    if let Some(ca) = &config.tls.ca_file {
        opts = opts.with_root_certs(vec![ca.clone().into()]);
    }
    Some(opts)
}
