//! StarRocks Stream Load over HTTP (StarRocks `docs/en/loading/StreamLoad.md`).
//!
//! One [`StreamLoader::load`] call is one load job: an HTTP `PUT
//! /api/{db}/{table}/_stream_load` of a JSON array (`format: json`,
//! `strip_outer_array: true`) under a caller-chosen label. The job is atomic:
//! all rows or none.
//!
//! # Idempotency
//!
//! Derive the label from the batch identity ([`batch_label`]) and, when
//! [`StreamLoadError::is_retryable`] says so, retry **with the same label**:
//! - `Success` and `Publish Timeout` (committed, visible soon) → [`LoadOutcome::Loaded`];
//! - `Label Already Exists` with `ExistingJobStatus` `FINISHED`/`VISIBLE` →
//!   [`LoadOutcome::AlreadyLoaded`] (an earlier attempt went through);
//! - `Label Already Exists` with any other status (`RUNNING`, `PREPARE`,
//!   `COMMITTED`, …) → [`StreamLoadError::LabelInProgress`], retryable: an
//!   earlier attempt is still running; ask again later with the same label;
//! - `Fail` → [`StreamLoadError::LoadFailed`], retryable: nothing was written
//!   and failed labels may be reused.
//!
//! A fresh label on retry would risk loading the batch twice.
//!
//! # HTTP details
//!
//! - The FE answers `307 Temporary Redirect` to a BE. reqwest drops the
//!   `Authorization` header when a redirect changes host or port, so automatic
//!   redirects are off and the loader follows up to [`MAX_REDIRECTS`] hops
//!   itself, re-sending the body and the credentials to each `Location`.
//! - `Expect: 100-continue` is sent because the StarRocks FE refuses requests
//!   without it. hyper/reqwest do not wait for the `100 Continue` interim
//!   response before sending the body (reqwest#2845, hyper#3833); they send
//!   the body at once, which satisfies StarRocks' check. The body is held as
//!   shared bytes, so re-sending it on a redirect does not copy it.
//! - 401/403 (or a `Fail` whose message says "Access denied") are fatal
//!   credential errors; 5xx, 408, 429, network errors and timeouts are
//!   retryable; other 4xx without a Stream Load answer are fatal; a response
//!   that cannot be understood is retryable and carries a snippet of it.
//! - The password never appears in errors, logs or `Debug` output.

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, EXPECT, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// Redirect hops followed per load (FE → BE is one).
pub const MAX_REDIRECTS: usize = 3;

/// Longest label StarRocks accepts.
pub const MAX_LABEL_LEN: usize = 128;

/// Characters of a server answer quoted in errors.
const SNIPPET_CHARS: usize = 300;

/// Where and as whom to load.
#[derive(Debug, Clone)]
pub struct StreamLoadConfig {
    /// The FE HTTP address, e.g. `http://fe:8030` (no credentials in it).
    pub fe_url: String,
    pub user: String,
    /// May be empty (StarRocks' `root` has no password by default).
    pub password: Secret,
    /// Per HTTP request (each redirect hop gets its own), connect included.
    pub timeout: Duration,
}

/// What a load job amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// This request loaded the rows (`Success`, or `Publish Timeout`: committed
    /// and becoming visible). `rows` is StarRocks' `NumberLoadedRows`.
    Loaded { rows: u64 },
    /// The label was already used by a job that finished
    /// (`Label Already Exists` with `ExistingJobStatus` `FINISHED`/`VISIBLE`):
    /// the batch is in the table from an earlier attempt.
    AlreadyLoaded,
}

/// Why a load did not complete. See [`StreamLoadError::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub enum StreamLoadError {
    /// Bad configuration or arguments (URL, user, label, header values). Fatal.
    #[error("stream load configuration: {0}")]
    Config(String),
    /// The server refused the credentials. Fatal.
    #[error(
        "stream load to {url}: StarRocks refused the credentials of user {user:?} \
         (HTTP {status}{detail}): check the sink's user and password and that the user \
         has INSERT privilege on the table"
    )]
    Auth {
        url: String,
        user: String,
        status: u16,
        /// `: <server message>` or empty.
        detail: String,
    },
    /// Connection, TLS, I/O error or timeout. Retryable.
    #[error("stream load to {url}: {message}")]
    Network {
        url: String,
        message: String,
        timeout: bool,
    },
    /// An HTTP error status without a Stream Load answer. Retryable for 5xx,
    /// 408 and 429, fatal otherwise.
    #[error("stream load to {url}: HTTP {status}: {snippet}")]
    Http {
        url: String,
        status: u16,
        snippet: String,
    },
    /// `Status: Fail`: nothing was loaded. Retryable with the same label.
    #[error("stream load label {label} failed: {message}{}", error_url_suffix(.error_url))]
    LoadFailed {
        label: String,
        message: String,
        /// Where StarRocks keeps the rejected rows (`GET` it), if any.
        error_url: Option<String>,
    },
    /// `Label Already Exists` and the existing job has not finished
    /// (`RUNNING`, `PREPARE`, `COMMITTED`, …). Retryable later with the same label.
    #[error(
        "stream load label {label} is already used by a job in state {status}: \
         retry later with the same label"
    )]
    LabelInProgress { label: String, status: String },
    /// A redirect without a usable `Location`, or too many hops. Fatal.
    #[error("stream load redirect: {0}")]
    Redirect(String),
    /// A response that is not a Stream Load answer. Retryable.
    #[error("stream load to {url}: unexpected response (HTTP {status}): {snippet}")]
    Unparseable {
        url: String,
        status: u16,
        snippet: String,
    },
}

fn error_url_suffix(error_url: &Option<String>) -> String {
    match error_url {
        Some(u) => format!(" (rejected rows: {u})"),
        None => String::new(),
    }
}

impl StreamLoadError {
    /// Whether the same load (same label, same rows) may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            StreamLoadError::Config(_)
            | StreamLoadError::Auth { .. }
            | StreamLoadError::Redirect(_) => false,
            StreamLoadError::Http { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            StreamLoadError::Network { .. }
            | StreamLoadError::LoadFailed { .. }
            | StreamLoadError::LabelInProgress { .. }
            | StreamLoadError::Unparseable { .. } => true,
        }
    }
}

struct Inner {
    http: reqwest::Client,
    /// Parsed FE base URL, without query or fragment.
    fe_url: Url,
    user: String,
    password: Secret,
    /// `Basic base64(user:password)`, marked sensitive.
    authorization: HeaderValue,
    timeout: Duration,
}

/// A Stream Load client. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct StreamLoader {
    inner: Arc<Inner>,
}

impl fmt::Debug for StreamLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("StreamLoader")
            .field("fe_url", &i.fe_url.as_str())
            .field("user", &i.user)
            .field("password", &i.password)
            .field("timeout", &i.timeout)
            .finish_non_exhaustive()
    }
}

impl StreamLoader {
    /// Validate `cfg` and build the HTTP client (redirects off; `cfg.timeout`
    /// per request).
    pub fn new(cfg: StreamLoadConfig) -> Result<StreamLoader, StreamLoadError> {
        let raw = cfg.fe_url.trim();
        let mut fe_url = Url::parse(raw).map_err(|e| {
            StreamLoadError::Config(format!(
                "fe_url {:?} is not a URL ({e}); expected e.g. http://fe:8030",
                crate::config::redact_url(raw)
            ))
        })?;
        if !matches!(fe_url.scheme(), "http" | "https") {
            return Err(StreamLoadError::Config(format!(
                "fe_url {:?} must be http(s), e.g. http://fe:8030",
                crate::config::redact_url(raw)
            )));
        }
        if fe_url.cannot_be_a_base() || fe_url.host_str().is_none() {
            return Err(StreamLoadError::Config(format!(
                "fe_url {:?} has no host; expected e.g. http://fe:8030",
                crate::config::redact_url(raw)
            )));
        }
        if !fe_url.username().is_empty() || fe_url.password().is_some() {
            return Err(StreamLoadError::Config(
                "fe_url must not carry credentials; set the user and password separately"
                    .to_string(),
            ));
        }
        fe_url.set_query(None);
        fe_url.set_fragment(None);
        if cfg.user.is_empty() {
            return Err(StreamLoadError::Config(
                "the StarRocks user is empty".to_string(),
            ));
        }
        if cfg.user.contains(':') {
            return Err(StreamLoadError::Config(format!(
                "the StarRocks user {:?} contains ':', which HTTP Basic auth cannot carry",
                cfg.user
            )));
        }
        if cfg.timeout.is_zero() {
            return Err(StreamLoadError::Config(
                "the stream load timeout must be positive".to_string(),
            ));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            cfg.user,
            cfg.password.expose()
        ));
        let mut authorization = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| StreamLoadError::Config("invalid credentials encoding".to_string()))?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .timeout(cfg.timeout)
            .user_agent(concat!("alertflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StreamLoadError::Config(format!("building the HTTP client: {e}")))?;
        Ok(StreamLoader {
            inner: Arc::new(Inner {
                http,
                fe_url,
                user: cfg.user,
                password: cfg.password,
                authorization,
                timeout: cfg.timeout,
            }),
        })
    }

    /// The FE base URL.
    pub fn fe_url(&self) -> &str {
        self.inner.fe_url.as_str()
    }

    /// `PUT /api/{db}/{table}/_stream_load` of `rows_json_array` (a JSON
    /// array of objects) with `format: json`, `strip_outer_array: true`,
    /// `label` and, if given, `columns`. Follows the FE's redirect to a BE
    /// with the credentials. On a retryable error, call again with the same
    /// label (see the module docs).
    pub async fn load(
        &self,
        db: &str,
        table: &str,
        label: &str,
        rows_json_array: Vec<u8>,
        columns: Option<&str>,
    ) -> Result<LoadOutcome, StreamLoadError> {
        check_name("database", db)?;
        check_name("table", table)?;
        check_label(label)?;
        let headers = self.headers(label, columns)?;
        let body = Bytes::from(rows_json_array);

        let mut url = self.inner.fe_url.clone();
        url.path_segments_mut()
            .map_err(|()| StreamLoadError::Config("fe_url cannot be a base URL".to_string()))?
            .pop_if_empty()
            .extend(["api", db, table, "_stream_load"]);

        let mut hops = 0;
        loop {
            let resp = self
                .inner
                .http
                .put(url.clone())
                .headers(headers.clone())
                .body(body.clone())
                .send()
                .await
                .map_err(|e| self.network_error(&url, &e))?;
            let status = resp.status();
            if status.is_redirection() {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(StreamLoadError::Redirect(format!(
                        "more than {MAX_REDIRECTS} redirects starting at {}",
                        self.inner.fe_url
                    )));
                }
                let next = redirect_target(&url, status, resp.headers())?;
                tracing::debug!(from = %url, to = %next, %status, "stream load: following redirect");
                url = next;
                continue;
            }
            let text = resp
                .text()
                .await
                .map_err(|e| self.network_error(&url, &e))?;
            return self.interpret(&url, label, status, &text);
        }
    }

    fn headers(&self, label: &str, columns: Option<&str>) -> Result<HeaderMap, StreamLoadError> {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, self.inner.authorization.clone());
        h.insert(EXPECT, HeaderValue::from_static("100-continue"));
        h.insert(
            HeaderName::from_static("label"),
            HeaderValue::from_str(label)
                .map_err(|_| StreamLoadError::Config(format!("invalid label {label:?}")))?,
        );
        h.insert(
            HeaderName::from_static("format"),
            HeaderValue::from_static("json"),
        );
        h.insert(
            HeaderName::from_static("strip_outer_array"),
            HeaderValue::from_static("true"),
        );
        if let Some(cols) = columns {
            let v = HeaderValue::from_str(cols.trim()).map_err(|_| {
                StreamLoadError::Config(format!("columns {cols:?} cannot be an HTTP header value"))
            })?;
            h.insert(HeaderName::from_static("columns"), v);
        }
        Ok(h)
    }

    fn network_error(&self, url: &Url, e: &reqwest::Error) -> StreamLoadError {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        StreamLoadError::Network {
            url: url.to_string(),
            message: self.scrub(&message),
            timeout: e.is_timeout(),
        }
    }

    /// `s` with the password (if any) replaced by `***`, for server-provided text.
    fn scrub(&self, s: &str) -> String {
        let pw = self.inner.password.expose();
        if pw.is_empty() {
            s.to_string()
        } else {
            s.replace(pw, "***")
        }
    }

    fn snippet(&self, text: &str) -> String {
        let t = text.trim();
        let cut: String = t.chars().take(SNIPPET_CHARS).collect();
        let cut = if cut.len() < t.len() {
            format!("{cut}…")
        } else {
            cut
        };
        if cut.is_empty() {
            "<empty body>".to_string()
        } else {
            self.scrub(&cut)
        }
    }

    /// Turn a final (non-redirect) response into an outcome.
    fn interpret(
        &self,
        url: &Url,
        label: &str,
        status: StatusCode,
        text: &str,
    ) -> Result<LoadOutcome, StreamLoadError> {
        let url_s = url.to_string();
        let body: Option<Value> = serde_json::from_str(text).ok();
        let load_status = body
            .as_ref()
            .and_then(|v| str_field(v, &["Status", "status"]));
        let message = body
            .as_ref()
            .and_then(|v| str_field(v, &["Message", "Msg", "msg", "message"]))
            .map(|m| self.scrub(&m));

        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(StreamLoadError::Auth {
                url: url_s,
                user: self.inner.user.clone(),
                status: status.as_u16(),
                detail: message.map(|m| format!(": {m}")).unwrap_or_default(),
            });
        }

        let Some(load_status) = load_status else {
            let snippet = self.snippet(text);
            return Err(if status.is_client_error() || status.is_server_error() {
                StreamLoadError::Http {
                    url: url_s,
                    status: status.as_u16(),
                    snippet,
                }
            } else {
                StreamLoadError::Unparseable {
                    url: url_s,
                    status: status.as_u16(),
                    snippet,
                }
            });
        };
        let body = body.unwrap_or(Value::Null);
        let txn_id = body.get("TxnId").and_then(as_u64);
        let loaded_rows = body.get("NumberLoadedRows").and_then(as_u64);

        match normalize_status(&load_status).as_str() {
            "SUCCESS" | "OK" => {
                let rows = loaded_rows.unwrap_or(0);
                tracing::debug!(
                    label,
                    txn_id,
                    rows,
                    filtered = body.get("NumberFilteredRows").and_then(as_u64),
                    load_ms = body.get("LoadTimeMs").and_then(as_u64),
                    "stream load succeeded"
                );
                Ok(LoadOutcome::Loaded { rows })
            }
            "PUBLISH_TIMEOUT" => {
                let rows = loaded_rows.unwrap_or(0);
                tracing::warn!(
                    label,
                    txn_id,
                    rows,
                    "stream load committed but publish timed out; rows become visible shortly"
                );
                Ok(LoadOutcome::Loaded { rows })
            }
            "LABEL_ALREADY_EXISTS" => {
                let existing = str_field(&body, &["ExistingJobStatus"])
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                match existing.as_str() {
                    "FINISHED" | "VISIBLE" => {
                        tracing::info!(
                            label,
                            existing_status = %existing,
                            "stream load label already finished; batch was loaded before"
                        );
                        Ok(LoadOutcome::AlreadyLoaded)
                    }
                    _ => Err(StreamLoadError::LabelInProgress {
                        label: label.to_string(),
                        status: if existing.is_empty() {
                            "UNKNOWN".to_string()
                        } else {
                            existing
                        },
                    }),
                }
            }
            "FAIL" | "FAILED" => {
                let message = message.unwrap_or_else(|| "no message".to_string());
                if message.to_ascii_lowercase().contains("access denied") {
                    return Err(StreamLoadError::Auth {
                        url: url_s,
                        user: self.inner.user.clone(),
                        status: status.as_u16(),
                        detail: format!(": {message}"),
                    });
                }
                Err(StreamLoadError::LoadFailed {
                    label: label.to_string(),
                    message,
                    error_url: str_field(&body, &["ErrorURL"]).filter(|u| !u.is_empty()),
                })
            }
            _ => Err(StreamLoadError::Unparseable {
                url: url_s,
                status: status.as_u16(),
                snippet: self.snippet(text),
            }),
        }
    }
}

/// The next URL of a redirect response.
fn redirect_target(
    current: &Url,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Url, StreamLoadError> {
    let location = headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            StreamLoadError::Redirect(format!(
                "HTTP {status} from {current} without a usable Location header"
            ))
        })?;
    let next = current.join(location).map_err(|e| {
        StreamLoadError::Redirect(format!(
            "HTTP {status} from {current}: bad Location {location:?}: {e}"
        ))
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(StreamLoadError::Redirect(format!(
            "HTTP {status} from {current}: Location {location:?} is not http(s)"
        )));
    }
    if !next.username().is_empty() || next.password().is_some() {
        return Err(StreamLoadError::Redirect(format!(
            "HTTP {status} from {current}: Location carries credentials"
        )));
    }
    Ok(next)
}

/// `"Label Already Exists"` / `"LABEL_ALREADY_EXISTS"` → `"LABEL_ALREADY_EXISTS"`.
fn normalize_status(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| {
            if c == ' ' || c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

fn str_field(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| v.get(*k)).and_then(|x| match x {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.trim().parse().ok())
}

fn check_name(what: &str, name: &str) -> Result<(), StreamLoadError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c == '/' || c.is_control()) {
        return Err(StreamLoadError::Config(format!(
            "invalid {what} name {name:?}"
        )));
    }
    Ok(())
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn check_label(label: &str) -> Result<(), StreamLoadError> {
    if label.is_empty() || label.len() > MAX_LABEL_LEN || !label.chars().all(is_label_char) {
        return Err(StreamLoadError::Config(format!(
            "invalid label {label:?}: use 1..={MAX_LABEL_LEN} characters of [A-Za-z0-9_-] \
             (see batch_label)"
        )));
    }
    Ok(())
}

/// A deterministic Stream Load label for a batch: the prefix (characters
/// outside `[A-Za-z0-9_-]` replaced by `_`, cut to 63 characters), `_`, and
/// the SHA-256 of the parts as 64 hex digits. Same prefix and parts → same
/// label; the parts are length-prefixed before hashing, so `["ab","c"]` and
/// `["a","bc"]` differ. At most 128 characters; an empty prefix gives the
/// hash alone.
pub fn batch_label(prefix: &str, parts: &[&str]) -> String {
    const HASH_HEX: usize = 64;
    let mut hasher = Sha256::new();
    hasher.update((parts.len() as u64).to_le_bytes());
    for p in parts {
        hasher.update((p.len() as u64).to_le_bytes());
        hasher.update(p.as_bytes());
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(HASH_HEX);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    let prefix: String = prefix
        .chars()
        .map(|c| if is_label_char(c) { c } else { '_' })
        .take(MAX_LABEL_LEN - HASH_HEX - 1)
        .collect();
    if prefix.is_empty() {
        hex
    } else {
        format!("{prefix}_{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_normalization() {
        assert_eq!(
            normalize_status("Label Already Exists"),
            "LABEL_ALREADY_EXISTS"
        );
        assert_eq!(normalize_status("Publish Timeout"), "PUBLISH_TIMEOUT");
        assert_eq!(normalize_status("FAILED"), "FAILED");
    }

    #[test]
    fn label_shape() {
        let l = batch_label(&"x".repeat(300), &["a"]);
        assert_eq!(l.len(), MAX_LABEL_LEN);
        assert!(check_label(&l).is_ok());
        assert_eq!(batch_label("", &["a"]).len(), 64);
    }
}
