//! A fake StarRocks Stream Load endpoint for tests and the demo (see
//! alertflow's `sink::stream_load`). It never talks to a real StarRocks.
//!
//! Two listeners on `127.0.0.1`:
//! - the **FE** answers every `PUT /api/{db}/{table}/_stream_load` with
//!   `307 Temporary Redirect` and a `Location` on the BE (same path and
//!   query), like a real FE;
//! - the **BE** checks HTTP Basic credentials (401 otherwise), the `label`
//!   header, `format: json`, `strip_outer_array: true` and (by default)
//!   `Expect: 100-continue`, parses the JSON array body and keeps the rows per
//!   `(db, table)` in memory.
//!
//! Labels are remembered per database, like StarRocks: reusing the label of a
//! finished job answers `Label Already Exists` / `ExistingJobStatus: FINISHED`
//! without loading again; failed jobs' labels may be reused.
//!
//! Choices where the fake differs from StarRocks:
//! - The real FE checks `Expect: 100-continue`; here the BE does (so the FE
//!   redirects every PUT). The FE reads the request body before answering,
//!   which keeps large test bodies from racing the early redirect.
//! - With a `columns` header, each stored row keeps only the named columns
//!   (the name before any `=`); a missing column is stored as `null`. No
//!   expressions are evaluated.
//! - The body must be a JSON array of objects; anything else fails the job
//!   (`Status: Fail`, with an `ErrorURL` served by the BE).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const LOAD_PATH: &str = "/api/{db}/{table}/_stream_load";
/// StarRocks' JSON body limit without `ignore_json_size`.
const BODY_LIMIT: usize = 100 * 1024 * 1024;

/// Who may load, and how strict the fake is.
#[derive(Clone)]
pub struct FakeStreamLoadOptions {
    pub user: String,
    pub password: String,
    /// Fail (`Status: Fail`) requests without `Expect: 100-continue`, as the
    /// StarRocks FE does.
    pub require_expect_continue: bool,
}

impl Default for FakeStreamLoadOptions {
    fn default() -> Self {
        Self {
            user: "root".to_string(),
            password: "sandbox-starrocks".to_string(),
            require_expect_continue: true,
        }
    }
}

impl fmt::Debug for FakeStreamLoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeStreamLoadOptions")
            .field("user", &self.user)
            .field("password", &"***")
            .field("require_expect_continue", &self.require_expect_continue)
            .finish()
    }
}

/// A failure for the BE to answer the next load requests with (after the
/// credentials and headers are checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeFailure {
    /// `Status: Fail`, nothing loaded; the label stays reusable.
    Fail,
    /// The rows are loaded and the label finished, but the answer is
    /// `Status: Publish Timeout`.
    PublishTimeout,
    /// HTTP 500 with a plain-text body; nothing loaded.
    Http500,
    /// `Label Already Exists` with `ExistingJobStatus: RUNNING`; nothing loaded.
    LabelRunning,
}

#[derive(Default)]
struct Data {
    /// Loaded rows per (db, table), in load order.
    tables: HashMap<(String, String), Vec<Value>>,
    /// Finished labels per (db, label) → txn id.
    finished: HashMap<(String, String), u64>,
    /// Finished labels in the order they finished.
    label_order: Vec<String>,
    failures: VecDeque<FakeFailure>,
    /// Error logs served at `/api/_load_error_log?file=…`.
    error_logs: HashMap<String, String>,
}

struct Shared {
    opts: FakeStreamLoadOptions,
    be_addr: SocketAddr,
    fe_requests: AtomicU64,
    be_requests: AtomicU64,
    be_authorized: AtomicU64,
    next_txn: AtomicU64,
    data: Mutex<Data>,
}

impl Shared {
    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake. Dropping it stops both listeners (without waiting);
/// [`FakeStreamLoad::shutdown`] stops them and waits.
pub struct FakeStreamLoad {
    fe_addr: SocketAddr,
    be_addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl fmt::Debug for FakeStreamLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeStreamLoad")
            .field("fe_addr", &self.fe_addr)
            .field("be_addr", &self.be_addr)
            .finish_non_exhaustive()
    }
}

/// Start a fake FE and BE on `127.0.0.1:0` in background tasks.
pub async fn spawn_fake_stream_load(
    opts: FakeStreamLoadOptions,
) -> std::io::Result<FakeStreamLoad> {
    let fe_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let be_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let fe_addr = fe_listener.local_addr()?;
    let be_addr = be_listener.local_addr()?;
    let shared = Arc::new(Shared {
        opts,
        be_addr,
        fe_requests: AtomicU64::new(0),
        be_requests: AtomicU64::new(0),
        be_authorized: AtomicU64::new(0),
        next_txn: AtomicU64::new(1000),
        data: Mutex::new(Data::default()),
    });
    let fe = Router::new()
        .route(LOAD_PATH, put(fe_load))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared.clone());
    let be = Router::new()
        .route(LOAD_PATH, put(be_load))
        .route("/api/_load_error_log", get(error_log))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared.clone());
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for (listener, router) in [(fe_listener, fe), (be_listener, be)] {
        let c = cancel.clone();
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { c.cancelled().await })
                .await
        }));
    }
    tracing::info!(%fe_addr, %be_addr, "fake stream load listening");
    Ok(FakeStreamLoad {
        fe_addr,
        be_addr,
        shared,
        cancel,
        tasks,
    })
}

impl FakeStreamLoad {
    /// `http://127.0.0.1:FE_PORT`, no trailing slash.
    pub fn fe_url(&self) -> String {
        format!("http://{}", self.fe_addr)
    }

    /// `http://127.0.0.1:BE_PORT`, no trailing slash.
    pub fn be_url(&self) -> String {
        format!("http://{}", self.be_addr)
    }

    /// Rows loaded into `db`.`table`, in load order.
    pub fn rows(&self, db: &str, table: &str) -> Vec<Value> {
        self.shared
            .data()
            .tables
            .get(&(db.to_string(), table.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Requests received so far: `(fe, be)`.
    pub fn requests(&self) -> (u64, u64) {
        (
            self.shared.fe_requests.load(Ordering::Relaxed),
            self.shared.be_requests.load(Ordering::Relaxed),
        )
    }

    /// BE requests that carried the expected Basic credentials.
    pub fn be_authorized_requests(&self) -> u64 {
        self.shared.be_authorized.load(Ordering::Relaxed)
    }

    /// Labels of finished jobs (all databases), in the order they finished.
    pub fn labels(&self) -> Vec<String> {
        self.shared.data().label_order.clone()
    }

    /// Answer the next `n` BE load requests with `failure`.
    pub fn fail_next(&self, n: u32, failure: FakeFailure) {
        self.shared
            .data()
            .failures
            .extend(std::iter::repeat_n(failure, n as usize));
    }

    /// Stop both listeners, let in-flight requests finish, and wait.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.cancel.cancel();
        for t in self.tasks.drain(..) {
            t.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }
}

impl Drop for FakeStreamLoad {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

// ---------------------------------------------------------------------------
// Handlers

async fn fe_load(State(st): State<Arc<Shared>>, uri: Uri, _body: Bytes) -> Response {
    st.fe_requests.fetch_add(1, Ordering::Relaxed);
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
    let location = format!("http://{}{}", st.be_addr, path_and_query);
    match HeaderValue::from_str(&location) {
        Ok(v) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, v)]).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "bad location").into_response(),
    }
}

/// The fields of one load answer (`StreamLoadContext::to_json()`).
struct Answer<'a> {
    txn_id: u64,
    label: &'a str,
    status: &'a str,
    message: &'a str,
    total: u64,
    loaded: u64,
    filtered: u64,
    bytes: u64,
    started: Instant,
}

impl Answer<'_> {
    fn to_json(&self) -> Map<String, Value> {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let v = json!({
            "TxnId": self.txn_id,
            "Label": self.label,
            "Status": self.status,
            "Message": self.message,
            "NumberTotalRows": self.total,
            "NumberLoadedRows": self.loaded,
            "NumberFilteredRows": self.filtered,
            "NumberUnselectedRows": 0,
            "LoadBytes": self.bytes,
            "LoadTimeMs": ms,
            "BeginTxnTimeMs": 0,
            "StreamLoadPlanTimeMs": 0,
            "ReadDataTimeMs": 0,
            "WriteDataTimeMs": ms,
            "CommitAndPublishTimeMs": 0,
        });
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

fn json_response(status: StatusCode, body: Map<String, Value>) -> Response {
    (status, axum::Json(Value::Object(body))).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn authorized(opts: &FakeStreamLoadOptions, headers: &HeaderMap) -> bool {
    let Some(value) = header_str(headers, "authorization") else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
        return false;
    };
    decoded == format!("{}:{}", opts.user, opts.password).as_bytes()
}

/// The column names of a `columns` header (`a, b, tmp, c = f(tmp)` → a, b, tmp, c).
fn column_names(columns: &str) -> Vec<String> {
    columns
        .split(',')
        .map(|c| c.split('=').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

async fn be_load(
    State(st): State<Arc<Shared>>,
    Path((db, table)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    st.be_requests.fetch_add(1, Ordering::Relaxed);

    if !authorized(&st.opts, &headers) {
        let user = header_str(&headers, "authorization")
            .map_or("<none>", |_| st.opts.user.as_str())
            .to_string();
        let mut m = Map::new();
        m.insert("Status".into(), json!("Fail"));
        m.insert(
            "Message".into(),
            json!(format!(
                "Access denied; check the user ({user}) and password"
            )),
        );
        let mut resp = json_response(StatusCode::UNAUTHORIZED, m);
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"StarRocks\""),
        );
        return resp;
    }
    st.be_authorized.fetch_add(1, Ordering::Relaxed);

    let txn_id = st.next_txn.fetch_add(1, Ordering::Relaxed);
    let label = header_str(&headers, "label").unwrap_or("").to_string();
    let bytes = body.len() as u64;
    let answer = |status: &str, message: &str, total: u64, loaded: u64, filtered: u64| {
        Answer {
            txn_id,
            label: &label,
            status,
            message,
            total,
            loaded,
            filtered,
            bytes,
            started,
        }
        .to_json()
    };
    let fail =
        |code: StatusCode, message: &str| json_response(code, answer("Fail", message, 0, 0, 0));

    if st.opts.require_expect_continue
        && !header_str(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        return fail(StatusCode::OK, "There is no 100-continue header");
    }
    if label.is_empty() {
        return fail(StatusCode::BAD_REQUEST, "the fake requires a label header");
    }
    if !header_str(&headers, "format").is_some_and(|v| v.eq_ignore_ascii_case("json")) {
        return fail(StatusCode::OK, "the fake only accepts format: json");
    }
    if !header_str(&headers, "strip_outer_array").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return fail(StatusCode::OK, "the fake requires strip_outer_array: true");
    }

    let failure = st.data().failures.pop_front();
    match failure {
        Some(FakeFailure::Http500) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "injected internal error").into_response();
        }
        Some(FakeFailure::Fail) => {
            return fail(
                StatusCode::OK,
                "[E1008]Reached timeout=600000ms @127.0.0.1:9060 (injected)",
            );
        }
        Some(FakeFailure::LabelRunning) => {
            let mut m = answer(
                "Label Already Exists",
                &format!("Label [{label}] has already been used."),
                0,
                0,
                0,
            );
            m.insert("ExistingJobStatus".into(), json!("RUNNING"));
            return json_response(StatusCode::OK, m);
        }
        Some(FakeFailure::PublishTimeout) | None => {}
    }

    let key = (db.clone(), label.clone());
    if let Some(existing_txn) = st.data().finished.get(&key).copied() {
        let mut m = answer(
            "Label Already Exists",
            &format!("Label [{label}] has already been used, relate to txn [{existing_txn}]"),
            0,
            0,
            0,
        );
        m.insert("ExistingJobStatus".into(), json!("FINISHED"));
        return json_response(StatusCode::OK, m);
    }

    let rows = match parse_rows(&body, header_str(&headers, "columns")) {
        Ok(rows) => rows,
        Err(reason) => {
            let file = format!("error_log_{txn_id}");
            st.data().error_logs.insert(file.clone(), reason.clone());
            let mut m = answer("Fail", "too many filtered rows", 1, 0, 1);
            m.insert(
                "ErrorURL".into(),
                json!(format!(
                    "http://{}/api/_load_error_log?file={file}",
                    st.be_addr
                )),
            );
            return json_response(StatusCode::OK, m);
        }
    };
    let n = rows.len() as u64;
    {
        let mut data = st.data();
        // A concurrent request may have finished the same label meanwhile.
        if let Some(existing_txn) = data.finished.get(&key).copied() {
            drop(data);
            let mut m = answer(
                "Label Already Exists",
                &format!("Label [{label}] has already been used, relate to txn [{existing_txn}]"),
                0,
                0,
                0,
            );
            m.insert("ExistingJobStatus".into(), json!("FINISHED"));
            return json_response(StatusCode::OK, m);
        }
        data.tables
            .entry((db.clone(), table.clone()))
            .or_default()
            .extend(rows);
        data.finished.insert(key, txn_id);
        data.label_order.push(label.clone());
    }
    let status = if failure == Some(FakeFailure::PublishTimeout) {
        "Publish Timeout"
    } else {
        "Success"
    };
    let message = if status == "Success" {
        "OK"
    } else {
        "transaction commit successfully, BUT data will be visible later"
    };
    json_response(StatusCode::OK, answer(status, message, n, n, 0))
}

/// The rows of a `strip_outer_array` JSON body, projected on `columns`.
fn parse_rows(body: &[u8], columns: Option<&str>) -> Result<Vec<Value>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Reason: JSON parse error: {e}"))?;
    let Value::Array(items) = value else {
        return Err("Reason: strip_outer_array is true but the body is not a JSON array".into());
    };
    let names = columns.map(column_names);
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(obj) = item else {
                return Err(format!("Reason: row {i} is not a JSON object"));
            };
            Ok(match &names {
                Some(names) => Value::Object(
                    names
                        .iter()
                        .map(|n| (n.clone(), obj.get(n).cloned().unwrap_or(Value::Null)))
                        .collect(),
                ),
                None => Value::Object(obj),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct ErrorLogQuery {
    file: String,
}

async fn error_log(State(st): State<Arc<Shared>>, Query(q): Query<ErrorLogQuery>) -> Response {
    match st.data().error_logs.get(&q.file) {
        Some(text) => (StatusCode::OK, text.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such error log").into_response(),
    }
}
