//! InfluxDB query client for the `influx-check` task (`starrocks-influx.md` §5).
//!
//! - **v1** (`GET /query`, InfluxQL): JSON `results[].series[]`; a statement
//!   that fails comes back with HTTP 200 and `results[i].error`, which is an
//!   error here too. Credentials as HTTP Basic auth (default) or `u`/`p` in
//!   the query string (`auth = "query"`).
//! - **v2** (`POST /api/v2/query?org=…`, Flux): `Authorization: Token …`,
//!   annotated CSV (`#datatype`, `#group`, `#default`), several tables each
//!   with its own header; a runtime error after partial results is an error
//!   table appended with HTTP 200 (`,error,reference`). Partial results are
//!   never returned as if they were complete: the whole query is an error.
//!
//! Sources are named in the config (`[influx.sources.NAME]`). A result is a
//! list of [`Row`]s: column → value, tags included (v1 series tags are added
//! to each row, plus `_measurement`). Passwords and tokens are [`Secret`]s,
//! and transport errors are reported without the URL (which may carry `p=`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Number, Value, json};

use crate::config::{HumanDuration, Secret};

/// One result row: column (or tag) → value.
pub type Row = BTreeMap<String, Value>;

/// `[influx]`: named sources.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {
    pub sources: BTreeMap<String, InfluxSource>,
}

/// The API a source speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InfluxVersion {
    /// InfluxQL over `/query` (InfluxDB 1.x, and 2.x/3.x's v1 compatibility API).
    #[default]
    V1,
    /// Flux over `/api/v2/query` (InfluxDB 2.x, 1.8+ with flux-enabled).
    V2,
}

impl<'de> Deserialize<'de> for InfluxVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        let bad = || serde::de::Error::custom("expected 1 or 2 (or \"v1\" / \"v2\")");
        match Raw::deserialize(d)? {
            Raw::Int(1) => Ok(InfluxVersion::V1),
            Raw::Int(2) => Ok(InfluxVersion::V2),
            Raw::Int(_) => Err(bad()),
            Raw::Str(s) => match s.trim().trim_start_matches(['v', 'V']) {
                "1" => Ok(InfluxVersion::V1),
                "2" => Ok(InfluxVersion::V2),
                _ => Err(bad()),
            },
        }
    }
}

/// How v1 credentials are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum V1Auth {
    /// `Authorization: Basic …`
    #[default]
    Basic,
    /// `u=…&p=…` in the query string.
    Query,
}

/// `[influx.sources.NAME]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxSource {
    pub version: InfluxVersion,
    /// Base URL, e.g. `http://127.0.0.1:8086` (no path, or a proxy prefix).
    pub url: String,
    /// v1: database.
    pub db: Option<String>,
    /// v1: retention policy.
    pub rp: Option<String>,
    /// v1: user and password.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// v1: `basic` (default) or `query`.
    pub auth: V1Auth,
    /// v2: organisation name.
    pub org: Option<String>,
    /// v2: API token (`Authorization: Token …`).
    pub token: Option<Secret>,
    /// Whole-request timeout.
    pub timeout: HumanDuration,
}

impl Default for InfluxSource {
    fn default() -> Self {
        InfluxSource {
            version: InfluxVersion::V1,
            url: "http://127.0.0.1:8086".into(),
            db: None,
            rp: None,
            username: None,
            password: None,
            auth: V1Auth::Basic,
            org: None,
            token: None,
            timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

impl InfluxSource {
    /// Check the fields the version needs; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if Url::parse(&self.url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            return err("url", "must be an http:// or https:// URL");
        }
        match self.version {
            InfluxVersion::V1 => {
                if self.db.as_deref().is_none_or(str::is_empty) {
                    return err("db", "a version 1 source needs a database");
                }
                if self.org.is_some() || self.token.is_some() {
                    return err("org", "org and token are for version 2 sources");
                }
                if self.password.is_some() && self.username.is_none() {
                    return err("username", "a password needs a username");
                }
            }
            InfluxVersion::V2 => {
                if self.org.as_deref().is_none_or(str::is_empty) {
                    return err("org", "a version 2 source needs an org");
                }
                if self.db.is_some() || self.username.is_some() || self.password.is_some() {
                    return err(
                        "db",
                        "db, username and password are for version 1 sources (v2 uses org and token)",
                    );
                }
            }
        }
        if self.timeout.0.is_zero() {
            return err("timeout", "must be positive");
        }
        Ok(())
    }
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InfluxError {
    /// Connect, timeout, reading the body (the URL is never included).
    #[error("cannot reach InfluxDB at {url}: {message}")]
    Transport { url: String, message: String },
    /// A non-2xx answer.
    #[error("InfluxDB answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// v1: a statement's `error` (HTTP 200).
    #[error("InfluxDB statement {statement} failed: {message}")]
    Statement { statement: u64, message: String },
    /// v2: the error table appended after (possibly partial) results.
    #[error("InfluxDB query failed after {partial_rows} rows: {message}{}", reference.as_deref().map(|r| format!(" (reference {r})")).unwrap_or_default())]
    Query {
        message: String,
        reference: Option<String>,
        partial_rows: usize,
    },
    /// The body is not what the API documents.
    #[error("cannot decode InfluxDB's answer: {0}")]
    Decode(String),
}

impl InfluxError {
    /// Worth retrying (network trouble, 5xx, 429, a runtime error table)?
    pub fn is_retryable(&self) -> bool {
        match self {
            InfluxError::Transport { .. } | InfluxError::Query { .. } => true,
            InfluxError::Http { status, .. } => *status == 429 || *status >= 500,
            InfluxError::Statement { .. } | InfluxError::Decode(_) => false,
        }
    }
}

impl From<InfluxError> for crate::queue::task::TaskError {
    fn from(e: InfluxError) -> Self {
        if e.is_retryable() {
            crate::queue::task::TaskError::retry(e)
        } else {
            crate::queue::task::TaskError::fatal(e)
        }
    }
}

/// A client for one source. Cheap to clone (the HTTP pool is shared).
#[derive(Clone)]
pub struct InfluxClient {
    source: InfluxSource,
    base: Url,
    http: reqwest::Client,
}

impl fmt::Debug for InfluxClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxClient")
            .field("url", &self.base.as_str())
            .field("version", &self.source.version)
            .finish_non_exhaustive()
    }
}

const SNIPPET: usize = 300;

fn snippet(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= SNIPPET {
        s.to_string()
    } else {
        let cut: String = s.chars().take(SNIPPET).collect();
        format!("{cut}…")
    }
}

impl InfluxClient {
    pub fn new(source: &InfluxSource) -> Result<InfluxClient, InfluxError> {
        let base = Url::parse(source.url.trim_end_matches('/'))
            .map_err(|e| InfluxError::Decode(format!("bad url {:?}: {e}", source.url)))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(source.timeout.0))
            .timeout(source.timeout.0)
            .build()
            .map_err(|e| InfluxError::Transport {
                url: base.to_string(),
                message: e.without_url().to_string(),
            })?;
        Ok(InfluxClient {
            source: source.clone(),
            base,
            http,
        })
    }

    pub fn version(&self) -> InfluxVersion {
        self.source.version
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let prefix = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{prefix}{path}"));
        u
    }

    fn transport(&self, e: reqwest::Error) -> InfluxError {
        InfluxError::Transport {
            url: self.base.to_string(),
            message: e.without_url().to_string(),
        }
    }

    /// Run a read query (InfluxQL for v1, Flux for v2) and return its rows.
    pub async fn query(&self, q: &str) -> Result<Vec<Row>, InfluxError> {
        match self.source.version {
            InfluxVersion::V1 => {
                let body = self.v1_request(reqwest::Method::GET, q).await?;
                parse_v1(&body)
            }
            InfluxVersion::V2 => {
                let body = self.v2_request(q).await?;
                parse_annotated_csv(&body)
            }
        }
    }

    /// v1: run statements that change things (`CREATE DATABASE`, `DROP …`)
    /// with POST; per-statement errors are errors.
    pub async fn execute(&self, q: &str) -> Result<(), InfluxError> {
        let body = self.v1_request(reqwest::Method::POST, q).await?;
        parse_v1(&body).map(|_| ())
    }

    /// v1: write line protocol to the source's database.
    pub async fn write_lines(&self, lines: &str) -> Result<(), InfluxError> {
        let mut url = self.endpoint("/write");
        {
            let mut qp = url.query_pairs_mut();
            qp.append_pair("db", self.source.db.as_deref().unwrap_or_default());
            if let Some(rp) = &self.source.rp {
                qp.append_pair("rp", rp);
            }
            for (k, v) in self.v1_query_auth() {
                qp.append_pair(k, v);
            }
        }
        let req = self
            .v1_basic_auth(self.http.post(url))
            .body(lines.to_string());
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.transport(e))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(http_error(status, &text))
        }
    }

    /// `u` and `p` when credentials go in the query string.
    fn v1_query_auth(&self) -> Vec<(&'static str, &str)> {
        match (&self.source.auth, &self.source.username) {
            (V1Auth::Query, Some(u)) => vec![
                ("u", u.as_str()),
                (
                    "p",
                    self.source.password.as_ref().map_or("", |p| p.expose()),
                ),
            ],
            _ => Vec::new(),
        }
    }

    fn v1_basic_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.source.auth, &self.source.username) {
            (V1Auth::Basic, Some(u)) => {
                req.basic_auth(u, self.source.password.as_ref().map(|p| p.expose()))
            }
            _ => req,
        }
    }

    async fn v1_request(&self, method: reqwest::Method, q: &str) -> Result<String, InfluxError> {
        let mut url = self.endpoint("/query");
        {
            let mut qp = url.query_pairs_mut();
            if let Some(db) = &self.source.db {
                qp.append_pair("db", db);
            }
            if let Some(rp) = &self.source.rp {
                qp.append_pair("rp", rp);
            }
            qp.append_pair("q", q);
            for (k, v) in self.v1_query_auth() {
                qp.append_pair(k, v);
            }
        }
        let req = self.v1_basic_auth(self.http.request(method, url));
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(http_error(status, &text));
        }
        Ok(text)
    }

    async fn v2_request(&self, q: &str) -> Result<String, InfluxError> {
        let mut url = self.endpoint("/api/v2/query");
        url.query_pairs_mut()
            .append_pair("org", self.source.org.as_deref().unwrap_or_default());
        let body = json!({
            "query": q,
            "type": "flux",
            "dialect": {
                "header": true,
                "delimiter": ",",
                "annotations": ["datatype", "group", "default"],
                "commentPrefix": "#",
                "dateTimeFormat": "RFC3339",
            },
        });
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/csv")
            .json(&body);
        if let Some(t) = &self.source.token {
            req = req.header(
                reqwest::header::AUTHORIZATION,
                format!("Token {}", t.expose()),
            );
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(http_error(status, &text));
        }
        Ok(text)
    }
}

/// A non-2xx answer: v1 `{"error": …}`, v2 `{"code": …, "message": …}`, or text.
fn http_error(status: StatusCode, body: &str) -> InfluxError {
    let message = match serde_json::from_str::<Value>(body) {
        Ok(v) => match (&v["error"], &v["message"], &v["code"]) {
            (Value::String(e), _, _) => e.clone(),
            (_, Value::String(m), Value::String(c)) => format!("{c}: {m}"),
            (_, Value::String(m), _) => m.clone(),
            _ => snippet(body),
        },
        Err(_) => snippet(body),
    };
    InfluxError::Http {
        status: status.as_u16(),
        message,
    }
}

/// Decode a v1 JSON answer into rows: every series of every statement, each
/// row with the series' tags and `_measurement`. A statement with `error`
/// fails the whole answer.
pub fn parse_v1(body: &str) -> Result<Vec<Row>, InfluxError> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| InfluxError::Decode(format!("{e}: {}", snippet(body))))?;
    if let Some(e) = v["error"].as_str() {
        return Err(InfluxError::Http {
            status: 200,
            message: e.to_string(),
        });
    }
    let results = v["results"]
        .as_array()
        .ok_or_else(|| InfluxError::Decode(format!("no `results`: {}", snippet(body))))?;
    let mut rows = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let statement = r["statement_id"].as_u64().unwrap_or(i as u64);
        if let Some(e) = r["error"].as_str() {
            return Err(InfluxError::Statement {
                statement,
                message: e.to_string(),
            });
        }
        let Some(series) = r["series"].as_array() else {
            continue; // no data
        };
        for s in series {
            let columns: Vec<&str> = s["columns"]
                .as_array()
                .map(|c| c.iter().map(|x| x.as_str().unwrap_or("")).collect())
                .unwrap_or_default();
            let tags = s["tags"].as_object();
            for values in s["values"].as_array().into_iter().flatten() {
                let mut row = Row::new();
                if let Some(name) = s["name"].as_str() {
                    row.insert("_measurement".into(), Value::String(name.into()));
                }
                if let Some(tags) = tags {
                    for (k, v) in tags {
                        row.insert(k.clone(), v.clone());
                    }
                }
                for (c, v) in columns.iter().zip(values.as_array().into_iter().flatten()) {
                    row.insert((*c).to_string(), v.clone());
                }
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// Split CSV text into tables of records (the `csv` crate reads RFC 4180
/// quoting and CRLF). Annotated CSV separates tables by a blank line, which
/// the reader skips, so the gap is found in the text before each record: a
/// record's position is where the reader started looking for it, just after
/// the previous record's `\r` (the `\n` of a CRLF is still ahead) or its
/// `\n`; any further line end there is a blank line. A line of blanks also
/// separates tables, as a blank line does.
fn csv_tables(text: &str) -> Result<Vec<Vec<Vec<String>>>, InfluxError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let bytes = text.as_bytes();
    let mut tables: Vec<Vec<Vec<String>>> = vec![Vec::new()];
    let mut record = csv::StringRecord::new();
    while reader
        .read_record(&mut record)
        .map_err(|e| InfluxError::Decode(format!("annotated CSV: {e}")))?
    {
        let start = record.position().map_or(0, |p| p.byte() as usize);
        let line_ends = bytes[start.min(bytes.len())..]
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .filter(|b| **b == b'\n')
            .count();
        let rest_of_crlf = usize::from(start > 0 && bytes.get(start - 1) == Some(&b'\r'));
        let blank_before = line_ends > rest_of_crlf;
        let blank_line = record.iter().all(|c| c.trim().is_empty());
        let current_is_empty = tables.last().is_some_and(Vec::is_empty);
        if (blank_before || blank_line) && !current_is_empty {
            tables.push(Vec::new());
        }
        if !blank_line && let Some(table) = tables.last_mut() {
            table.push(record.iter().map(str::to_string).collect());
        }
    }
    tables.retain(|t| !t.is_empty());
    Ok(tables)
}

/// Convert a CSV cell by its `#datatype`.
fn typed(cell: &str, datatype: Option<&str>) -> Value {
    let number = |s: &str| -> Option<Value> {
        if let Ok(i) = s.parse::<i64>() {
            return Some(Value::Number(i.into()));
        }
        if let Ok(u) = s.parse::<u64>() {
            return Some(Value::Number(u.into()));
        }
        let f = match s {
            "+Inf" | "Inf" => return Some(Value::String(s.into())),
            _ => s.parse::<f64>().ok()?,
        };
        Number::from_f64(f).map(Value::Number)
    };
    match datatype {
        Some("long" | "unsignedLong" | "double") => {
            if cell.is_empty() {
                Value::Null
            } else {
                number(cell).unwrap_or_else(|| Value::String(cell.into()))
            }
        }
        Some("boolean") => match cell {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "" => Value::Null,
            _ => Value::String(cell.into()),
        },
        Some(_) => Value::String(cell.into()),
        // Plain CSV (no annotations): numbers where they parse.
        None => number(cell).unwrap_or_else(|| Value::String(cell.into())),
    }
}

/// Decode Flux annotated CSV (several tables; a header row per table) into
/// rows without the annotation, `result` and `table` columns. An error table
/// (`,error,reference`) fails the whole answer, whatever came before it.
pub fn parse_annotated_csv(body: &str) -> Result<Vec<Row>, InfluxError> {
    let mut rows = Vec::new();
    let mut datatypes: Vec<String> = Vec::new();
    let mut defaults: Vec<String> = Vec::new();
    let mut header: Option<Vec<String>> = None;
    let records = csv_tables(body)?.into_iter().flat_map(|table| {
        // A new table: annotations and header start over.
        std::iter::once(None).chain(table.into_iter().map(Some))
    });
    for rec in records {
        let Some(rec) = rec else {
            datatypes.clear();
            defaults.clear();
            header = None;
            continue;
        };
        let first = rec[0].as_str();
        if first.starts_with('#') {
            if header.is_some() {
                // Annotations without a blank line before them: a new table.
                header = None;
                datatypes.clear();
                defaults.clear();
            }
            match first {
                "#datatype" => datatypes = rec.clone(),
                "#default" => defaults = rec.clone(),
                _ => {}
            }
            continue;
        }
        let Some(cols) = &header else {
            header = Some(rec);
            continue;
        };
        if cols.get(1).map(String::as_str) == Some("error") {
            let message = rec.get(1).cloned().unwrap_or_default();
            let reference = rec.get(2).filter(|r| !r.is_empty()).cloned();
            return Err(InfluxError::Query {
                message,
                reference,
                partial_rows: rows.len(),
            });
        }
        let mut row = Row::new();
        for (i, name) in cols.iter().enumerate() {
            if i == 0 && name.is_empty() {
                continue; // the annotation column
            }
            if name == "result" || name == "table" || name.is_empty() {
                continue;
            }
            let mut cell = rec.get(i).map(String::as_str).unwrap_or("");
            if cell.is_empty()
                && let Some(d) = defaults.get(i)
            {
                cell = d;
            }
            let dt = datatypes.get(i).map(String::as_str);
            row.insert(name.clone(), typed(cell, dt));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// A row value as text for labels and messages (`"a"` → `a`, `1.5` → `1.5`).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A row value as a number, if it is one (or a string holding one).
pub fn value_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// Rows as a JSON array (for `--json` output).
pub fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                Value::Object(
                    r.iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Map<_, _>>(),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_series_tags_and_statement_errors() {
        let body = r#"{"results":[{"statement_id":0,"series":[
            {"name":"cpu","tags":{"cluster":"a"},"columns":["time","usage"],"values":[["2026-01-01T00:00:00Z",95.5]]},
            {"name":"cpu","tags":{"cluster":"b"},"columns":["time","usage"],"values":[["2026-01-01T00:00:00Z",null]]}]},
            {"statement_id":1}]}"#;
        let rows = parse_v1(body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["cluster"], "a");
        assert_eq!(rows[0]["usage"], 95.5);
        assert_eq!(rows[0]["_measurement"], "cpu");
        assert!(rows[1]["usage"].is_null());
        let err = parse_v1(r#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#)
            .unwrap_err();
        assert!(
            matches!(err, InfluxError::Statement { statement: 0, .. }),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert!(parse_v1("{}").is_err());
    }

    #[test]
    fn annotated_csv_several_tables() {
        let body = "#group,false,false,true,true,false,false,true,true,true\r\n\
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string\r\n\
#default,_result,,,,,,,,\r\n\
,result,table,_start,_stop,_time,_value,_field,_measurement,cluster\r\n\
,,0,2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-01T00:30:00Z,91.5,usage,cpu,a\r\n\
,,1,2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-01T00:30:00Z,12,usage,cpu,b\r\n\
\r\n\
#group,false,false,true,false,false\r\n\
#datatype,string,long,string,boolean,long\r\n\
#default,_result,,,,\r\n\
,result,table,cluster,up,count\r\n\
,,2,\"c,1\",true,3\r\n";
        let rows = parse_annotated_csv(body).unwrap();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0]["_value"], 91.5);
        assert_eq!(rows[1]["_value"], 12);
        assert_eq!(rows[0]["cluster"], "a");
        assert!(!rows[0].contains_key("result") && !rows[0].contains_key("table"));
        assert_eq!(rows[2]["cluster"], "c,1");
        assert_eq!(rows[2]["up"], true);
        assert_eq!(rows[2]["count"], 3);
    }

    #[test]
    fn error_table_after_partial_results_fails_the_query() {
        let body = "#datatype,string,long,double,string\n#group,false,false,false,true\n#default,_result,,,\n\
,result,table,_value,cluster\n,,0,95,a\n\n\
#datatype,string,string\n#group,true,true\n#default,,\n,error,reference\n,\"panic: runtime error, oops\",897\n";
        let err = parse_annotated_csv(body).unwrap_err();
        assert_eq!(
            err,
            InfluxError::Query {
                message: "panic: runtime error, oops".into(),
                reference: Some("897".into()),
                partial_rows: 1
            }
        );
        assert!(err.is_retryable());
    }

    #[test]
    fn plain_tables_are_split_by_blank_lines_and_quotes_keep_newlines() {
        // Two tables without annotations, each with its own header, CRLF
        // line ends, and a quoted cell holding a comma and a blank line.
        let body = ",result,table,_value,host\r\n,_result,0,3.5,h1\r\n\r\n\
,result,table,note\r\n,_result,1,\"a, b\n\nc\"\r\n";
        for body in [body.to_string(), body.replace("\r\n", "\n")] {
            let rows = parse_annotated_csv(&body).unwrap();
            assert_eq!(rows.len(), 2, "{rows:?}");
            assert_eq!(rows[0]["_value"], 3.5);
            assert_eq!(rows[0]["host"], "h1");
            assert_eq!(rows[1]["note"], "a, b\n\nc");
            assert!(!rows[1].contains_key("host"), "{rows:?}");
        }
    }

    #[test]
    fn plain_csv_without_annotations() {
        let rows = parse_annotated_csv(",result,table,_value,host\n,_result,0,3.5,h1\n").unwrap();
        assert_eq!(rows[0]["_value"], 3.5);
        assert_eq!(rows[0]["host"], "h1");
    }

    #[test]
    fn versions_and_validation() {
        #[derive(Deserialize)]
        struct W {
            v: InfluxVersion,
        }
        let v = |s: &str| toml::from_str::<W>(&format!("v = {s}")).map(|w| w.v);
        assert_eq!(v("1").unwrap(), InfluxVersion::V1);
        assert_eq!(v("\"v2\"").unwrap(), InfluxVersion::V2);
        assert!(v("3").is_err());
        let s = InfluxSource {
            db: Some("x".into()),
            ..InfluxSource::default()
        };
        assert!(s.validate().is_ok());
        let s2 = InfluxSource {
            version: InfluxVersion::V2,
            ..InfluxSource::default()
        };
        assert_eq!(s2.validate().unwrap_err().0, "org");
    }

    #[test]
    fn http_errors_are_readable() {
        let e = http_error(
            StatusCode::BAD_REQUEST,
            r#"{"error":"error parsing query: x"}"#,
        );
        assert_eq!(
            e.to_string(),
            "InfluxDB answered HTTP 400: error parsing query: x"
        );
        let e = http_error(
            StatusCode::BAD_REQUEST,
            r#"{"code":"invalid","message":"compilation failed"}"#,
        );
        assert!(e.to_string().contains("invalid: compilation failed"));
        assert!(!e.is_retryable());
        assert!(http_error(StatusCode::SERVICE_UNAVAILABLE, "x").is_retryable());
    }
}
