//! A fake InfluxDB 2.x query API (`starrocks-influx.md` §5.2) for tests and
//! the demo: `POST /api/v2/query?org=…` with `Authorization: Token …`,
//! answering configured queries with annotated CSV (several tables; a new
//! header only when a table's schema differs, CRLF line endings), an error
//! table appended after partial results, or a JSON error before any result.
//! Without annotations in the request's dialect (or with a raw
//! `application/vnd.flux` body) it answers plain CSV, as the real server does.
//! There is no Flux engine: queries are matched by their trimmed text.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// One column: name, `#datatype` (`string`, `long`, `double`, `boolean`,
/// `dateTime:RFC3339`, …) and whether it is in the group key.
#[derive(Clone, Debug, PartialEq)]
pub struct FluxColumn {
    pub name: String,
    pub datatype: String,
    pub group: bool,
}

impl FluxColumn {
    pub fn new(name: &str, datatype: &str, group: bool) -> FluxColumn {
        FluxColumn {
            name: name.into(),
            datatype: datatype.into(),
            group,
        }
    }
}

/// One Flux table.
#[derive(Clone, Debug, PartialEq)]
pub struct FluxTable {
    pub columns: Vec<FluxColumn>,
    pub rows: Vec<Vec<String>>,
}

/// What a query is answered with.
#[derive(Clone, Debug, PartialEq)]
pub enum FluxAnswer {
    Tables(Vec<FluxTable>),
    /// HTTP 200: the tables, then an error table (`,error,reference`).
    TablesThenError {
        tables: Vec<FluxTable>,
        message: String,
        reference: String,
    },
    /// Before any result: `status` with `{"code": …, "message": …}`.
    Error {
        status: u16,
        code: String,
        message: String,
    },
}

#[derive(Clone, Debug)]
pub struct InfluxV2Config {
    pub org: String,
    pub token: String,
    /// Trimmed query text → answer.
    pub answers: BTreeMap<String, FluxAnswer>,
}

impl Default for InfluxV2Config {
    fn default() -> Self {
        InfluxV2Config {
            org: "sandbox-org".into(),
            token: "sandbox-token".into(),
            answers: BTreeMap::new(),
        }
    }
}

struct FakeState {
    cfg: Mutex<InfluxV2Config>,
    requests: Mutex<Vec<Value>>,
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn line(cells: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = cells.into_iter().collect();
    format!("{}\r\n", v.join(","))
}

/// Render tables as the server does (annotated or plain).
pub fn render_csv(tables: &[FluxTable], annotated: bool) -> String {
    let mut out = String::new();
    let mut previous: Option<&Vec<FluxColumn>> = None;
    for (id, t) in tables.iter().enumerate() {
        if previous != Some(&t.columns) {
            if previous.is_some() {
                out.push_str("\r\n");
            }
            if annotated {
                let mut group = vec!["#group".to_string(), "false".into(), "false".into()];
                group.extend(t.columns.iter().map(|c| c.group.to_string()));
                let mut dt = vec!["#datatype".to_string(), "string".into(), "long".into()];
                dt.extend(t.columns.iter().map(|c| c.datatype.clone()));
                let mut def = vec!["#default".to_string(), "_result".into(), String::new()];
                def.extend(t.columns.iter().map(|_| String::new()));
                out.push_str(&line(group));
                out.push_str(&line(dt));
                out.push_str(&line(def));
            }
            let mut header = vec![String::new(), "result".into(), "table".into()];
            header.extend(t.columns.iter().map(|c| csv_cell(&c.name)));
            out.push_str(&line(header));
            previous = Some(&t.columns);
        }
        for r in &t.rows {
            let result = if annotated { "" } else { "_result" };
            let mut cells = vec![String::new(), result.to_string(), id.to_string()];
            cells.extend(r.iter().map(|c| csv_cell(c)));
            out.push_str(&line(cells));
        }
    }
    out
}

/// The error table appended after partial results.
pub fn render_error_table(message: &str, reference: &str, annotated: bool) -> String {
    let mut out = String::from("\r\n");
    if annotated {
        out.push_str("#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n");
    }
    out.push_str(",error,reference\r\n");
    out.push_str(&line([
        String::new(),
        csv_cell(message),
        csv_cell(reference),
    ]));
    out
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        json!({"code": code, "message": message}).to_string(),
    )
        .into_response()
}

async fn query(
    State(st): State<Arc<FakeState>>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cfg = st.cfg.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (q, annotated) = if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => {
                let annotated = v["dialect"]["annotations"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty());
                (v["query"].as_str().unwrap_or("").to_string(), annotated)
            }
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("failed to decode request body: {e}"),
                );
            }
        }
    } else {
        (String::from_utf8_lossy(&body).into_owned(), false)
    };
    st.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(json!({
            "org": params.get("org"),
            "authorization": auth,
            "content_type": content_type,
            "query": q,
            "annotated": annotated,
        }));
    if auth != format!("Token {}", cfg.token) {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unauthorized access",
        );
    }
    match params.get("org") {
        Some(o) if *o == cfg.org => {}
        Some(o) => {
            return json_error(
                StatusCode::NOT_FOUND,
                "not found",
                &format!("organization name \"{o}\" not found"),
            );
        }
        None => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid",
                "Please provide either orgID or org",
            );
        }
    }
    let csv = |body: String| {
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            )],
            body,
        )
            .into_response()
    };
    match cfg.answers.get(q.trim()) {
        None => json_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "compilation failed: error @1:1-1:6: undefined identifier query",
        ),
        Some(FluxAnswer::Tables(t)) => csv(render_csv(t, annotated)),
        Some(FluxAnswer::TablesThenError {
            tables,
            message,
            reference,
        }) => {
            let mut body = render_csv(tables, annotated);
            body.push_str(&render_error_table(message, reference, annotated));
            csv(body)
        }
        Some(FluxAnswer::Error {
            status,
            code,
            message,
        }) => json_error(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message,
        ),
    }
}

/// A running fake; dropping it stops the server.
pub struct InfluxV2Handle {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    state: Arc<FakeState>,
    _shutdown: oneshot::Sender<()>,
}

impl InfluxV2Handle {
    /// Requests received (org, authorization, content type, query, annotated).
    pub fn requests(&self) -> Vec<Value> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Answer `query` with `answer` from now on.
    pub fn set_answer(&self, query: &str, answer: FluxAnswer) {
        self.state
            .cfg
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .answers
            .insert(query.trim().to_string(), answer);
    }
}

/// Start the fake on `127.0.0.1:0`.
pub async fn spawn(cfg: InfluxV2Config) -> std::io::Result<InfluxV2Handle> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(FakeState {
        cfg: Mutex::new(InfluxV2Config {
            answers: cfg
                .answers
                .into_iter()
                .map(|(k, v)| (k.trim().to_string(), v))
                .collect(),
            ..cfg
        }),
        requests: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/api/v2/query", post(query))
        .with_state(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(InfluxV2Handle {
        addr,
        base_url: format!("http://{addr}"),
        state,
        _shutdown: tx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_shape() {
        let t = FluxTable {
            columns: vec![
                FluxColumn::new("_value", "double", false),
                FluxColumn::new("host", "string", true),
            ],
            rows: vec![vec!["1.5".into(), "a,b".into()]],
        };
        let csv = render_csv(&[t.clone(), t], true);
        assert!(csv.starts_with("#group,false,false,false,true\r\n#datatype,string,long,double,string\r\n#default,_result,,,\r\n,result,table,_value,host\r\n,,0,1.5,\"a,b\"\r\n,,1,1.5"), "{csv}");
        assert_eq!(
            csv.matches(",result,table").count(),
            1,
            "same schema, one header"
        );
        let plain = render_csv(
            &[FluxTable {
                columns: vec![FluxColumn::new("_value", "long", false)],
                rows: vec![vec!["3".into()]],
            }],
            false,
        );
        assert_eq!(plain, ",result,table,_value\r\n,_result,0,3\r\n");
        assert!(
            render_error_table("boom", "897", true).ends_with(",error,reference\r\n,boom,897\r\n")
        );
    }
}
