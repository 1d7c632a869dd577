//! The Lark Open API part of the sandbox: tenant access tokens
//! (`lark-api.md` §1) and listing chat history (§2), with the gateway's
//! checks in the real order: authentication, then rate limit, then
//! parameters.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::generator::pacific_date_of_ms;
use super::{
    Endpoint, Fault, Outcome, SandboxState, code_message, json_response, json_value, new_log_id,
    open_api_error, rate_limited,
};

const MESSAGES_PATH: &str = "/open-apis/im/v1/messages";
/// A token with less than this left is replaced by a new one on request.
const REISSUE_BELOW_MS: i64 = 30 * 60 * 1000;

#[derive(Debug)]
struct IssuedToken {
    app_id: String,
    expires_at_ms: i64,
}

/// Tenant tokens issued so far: every token stays valid until its own expiry.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    tokens: HashMap<String, IssuedToken>,
    current: Option<String>,
}

impl TokenStore {
    /// The token to hand out at `now_ms`: the current one while at least 30
    /// minutes remain, else a new one. Returns (token, seconds left, is_new).
    fn issue(&mut self, app_id: &str, now_ms: i64, ttl_secs: u64) -> (String, i64, bool) {
        self.tokens.retain(|_, t| t.expires_at_ms > now_ms);
        if let Some(cur) = &self.current
            && let Some(t) = self.tokens.get(cur)
            && t.expires_at_ms - now_ms >= REISSUE_BELOW_MS
        {
            return (cur.clone(), (t.expires_at_ms - now_ms) / 1000, false);
        }
        let token = format!(
            "t-{:016x}{:016x}{:08x}",
            fastrand::u64(..),
            fastrand::u64(..),
            fastrand::u32(..)
        );
        let ttl_ms = i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                app_id: app_id.to_owned(),
                expires_at_ms: now_ms.saturating_add(ttl_ms),
            },
        );
        self.current = Some(token.clone());
        (token, ttl_ms / 1000, true)
    }

    /// The app a still-valid token belongs to.
    fn app_of(&self, token: &str, now_ms: i64) -> Option<String> {
        self.tokens
            .get(token)
            .filter(|t| t.expires_at_ms > now_ms)
            .map(|t| t.app_id.clone())
    }

    pub(crate) fn revoke(&mut self) {
        self.tokens.clear();
        self.current = None;
    }
}

/// The answer to an injected fault on an OpenAPI endpoint, or `None` to go
/// on (after the delay of a `Delay` fault).
async fn injected(st: &SandboxState, ep: Endpoint, log_id: &str) -> Option<Response> {
    let fault = st.take_fault(ep)?;
    let (outcome, response) = match fault {
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            return None;
        }
        Fault::Http500 => (
            Outcome::Error,
            json_value(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"code": 1500, "msg": code_message(1500)}),
                log_id,
            ),
        ),
        Fault::RateLimit429 => (
            Outcome::RateLimited,
            rate_limited(st.cfg.quotas.messages_per_sec, 1, false, log_id),
        ),
        Fault::BotFrequency11232 => (
            Outcome::RateLimited,
            json_value(
                StatusCode::OK,
                &json!({"code": 11232, "data": {}, "msg": code_message(11232)}),
                log_id,
            ),
        ),
        Fault::Code(code) if ep == Endpoint::TenantToken => (
            Outcome::Error,
            json_value(
                StatusCode::OK,
                &json!({"code": code, "data": {}, "msg": code_message(code)}),
                log_id,
            ),
        ),
        Fault::Code(code) => {
            let outcome = if code == 99991400 {
                Outcome::RateLimited
            } else {
                Outcome::Error
            };
            (
                outcome,
                open_api_error(StatusCode::BAD_REQUEST, code, log_id),
            )
        }
    };
    Some(st.finish(ep, outcome, response))
}

#[derive(Deserialize)]
struct TokenRequest {
    app_id: Option<String>,
    app_secret: Option<String>,
}

/// `POST /open-apis/auth/v3/tenant_access_token/internal` — failures are
/// HTTP 200 with a code, never an HTTP error.
pub(crate) async fn tenant_token(State(st): State<Arc<SandboxState>>, body: Bytes) -> Response {
    let ep = Endpoint::TenantToken;
    st.begin(ep);
    let now_ms = st.clock.unix_ms();
    let log_id = new_log_id(now_ms);
    if let Some(r) = injected(&st, ep, &log_id).await {
        return r;
    }
    let req: Option<TokenRequest> = serde_json::from_slice(&body).ok();
    let (app_id, secret) = match req {
        Some(TokenRequest {
            app_id: Some(a),
            app_secret: s,
        }) => (a, s.unwrap_or_default()),
        _ => (String::new(), String::new()),
    };
    if app_id != st.cfg.app_id {
        let body = json!({"code": 10003, "data": {}, "msg": code_message(10003)});
        return st.finish(
            ep,
            Outcome::Error,
            json_value(StatusCode::OK, &body, &log_id),
        );
    }
    if secret != st.cfg.app_secret {
        let body = json!({"code": 10014, "msg": code_message(10014)});
        return st.finish(
            ep,
            Outcome::Error,
            json_value(StatusCode::OK, &body, &log_id),
        );
    }
    let (token, expire, is_new) = st.tokens.lock().unwrap_or_else(|e| e.into_inner()).issue(
        &app_id,
        now_ms,
        st.cfg.token_ttl_secs,
    );
    if is_new {
        st.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }
    let body = json!({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire});
    st.finish(ep, Outcome::Ok, json_value(StatusCode::OK, &body, &log_id))
}

/// The app id behind the request's bearer token, or the gateway's error.
fn authenticate(st: &SandboxState, headers: &HeaderMap, now_ms: i64) -> Result<String, i64> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(token) = value.strip_prefix("Bearer ") else {
        return Err(99991661);
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(99991661);
    }
    if token.starts_with("eyJ") || token.starts_with("u-") {
        // Treated as a user access token, which this sandbox never issues.
        return Err(99991668);
    }
    if !token.starts_with("t-") {
        return Err(99991671);
    }
    st.tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .app_of(token, now_ms)
        .ok_or(99991663)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Sort {
    #[serde(rename = "asc")]
    Asc,
    #[serde(rename = "desc")]
    Desc,
}

/// What a page token carries: the binding of the first request and where
/// the next page starts. For ascending order `i` is the first index of day
/// `d` still to return; for descending order it is one past the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PageCursor {
    v: u8,
    c: String,
    s: Sort,
    st: Option<i64>,
    et: Option<i64>,
    d: NaiveDate,
    i: u64,
}

impl PageCursor {
    fn encode(&self) -> String {
        URL_SAFE.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Option<Self> {
        let bytes = URL_SAFE.decode(token.trim()).ok()?;
        serde_json::from_slice(&bytes)
            .ok()
            .filter(|c: &Self| c.v == 1)
    }
}

struct ListParams {
    chat: String,
    sort: Sort,
    start: Option<i64>,
    end: Option<i64>,
    page_size: usize,
    cursor: Option<PageCursor>,
}

fn parse_params(q: &HashMap<String, String>) -> Result<ListParams, i64> {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let container_type = get("container_id_type").ok_or(99992402)?;
    let chat = get("container_id").ok_or(99992402)?.to_owned();
    let time = |k: &str| {
        get(k)
            .map(|v| v.parse::<i64>().map_err(|_| 99992402))
            .transpose()
    };
    let start = time("start_time")?;
    let end = time("end_time")?;
    match container_type {
        "chat" => {}
        // No topic threads exist in the sandbox; a time range is not supported for threads.
        "thread" if start.is_some() || end.is_some() => return Err(230001),
        "thread" => return Err(230073),
        _ => return Err(99992402),
    }
    let sort = match get("sort_type") {
        None | Some("ByCreateTimeAsc") => Sort::Asc,
        Some("ByCreateTimeDesc") => Sort::Desc,
        Some(_) => return Err(99992402),
    };
    let page_size = match get("page_size") {
        None => 20,
        Some(v) => match v.parse::<usize>() {
            Ok(n @ 1..=50) => n,
            _ => return Err(99992402),
        },
    };
    let cursor = match get("page_token") {
        None => None,
        Some(t) => {
            let c = PageCursor::decode(t).ok_or(230001)?;
            if c.c != chat || c.s != sort || c.st != start || c.et != end {
                return Err(230001);
            }
            Some(c)
        }
    };
    Ok(ListParams {
        chat,
        sort,
        start,
        end,
        page_size,
        cursor,
    })
}

/// `GET /open-apis/im/v1/messages`
pub(crate) async fn list_messages(
    State(st): State<Arc<SandboxState>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let ep = Endpoint::ListMessages;
    st.begin(ep);
    let now_ms = st.clock.unix_ms();
    let log_id = new_log_id(now_ms);
    if let Some(r) = injected(&st, ep, &log_id).await {
        return r;
    }
    let app_id = match authenticate(&st, &headers, now_ms) {
        Ok(app) => app,
        Err(code) => {
            return st.finish(
                ep,
                Outcome::Error,
                open_api_error(StatusCode::BAD_REQUEST, code, &log_id),
            );
        }
    };
    if let Err(e) = st
        .api_quota
        .try_acquire(&format!("{app_id} {MESSAGES_PATH}"), st.clock.now())
    {
        let response = rate_limited(
            e.limit,
            e.reset_secs,
            st.cfg.quotas.legacy_rate_limit_400,
            &log_id,
        );
        return st.finish(ep, Outcome::RateLimited, response);
    }
    let params = match query
        .map_err(|_| 99992402)
        .and_then(|Query(q)| parse_params(&q))
    {
        Ok(p) => p,
        Err(code) => {
            return st.finish(
                ep,
                Outcome::Error,
                open_api_error(StatusCode::BAD_REQUEST, code, &log_id),
            );
        }
    };
    if !st.cfg.chats.contains(&params.chat) {
        return st.finish(
            ep,
            Outcome::Error,
            open_api_error(StatusCode::BAD_REQUEST, 230002, &log_id),
        );
    }
    let (items, next) = collect_page(&st, &params, now_ms);
    st.items_served
        .fetch_add(items.len() as u64, Ordering::Relaxed);

    let mut body = String::with_capacity(items.iter().map(|s| s.len() + 1).sum::<usize>() + 256);
    body.push_str(r#"{"code":0,"msg":"success","data":{"has_more":"#);
    body.push_str(if next.is_some() { "true" } else { "false" });
    match &next {
        Some(cursor) => {
            body.push_str(r#","page_token":"#);
            body.push_str(&Value::String(cursor.encode()).to_string());
        }
        None if st.cfg.page_token_on_last_page => body.push_str(r#","page_token":"""#),
        None => {}
    }
    body.push_str(r#","items":["#);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("]}}");
    st.finish(
        ep,
        Outcome::Ok,
        json_response(StatusCode::OK, body, &log_id),
    )
}

/// One page of items (pre-serialised) and the cursor of the next page, if
/// any item remains.
fn collect_page(
    st: &SandboxState,
    p: &ListParams,
    now_ms: i64,
) -> (Vec<String>, Option<PageCursor>) {
    let mut out = Vec::with_capacity(p.page_size);
    // Inclusive bounds in ms: whole seconds start..=end.
    let lo = p.start.map_or(i64::MIN, |s| s.saturating_mul(1000));
    let mut hi = p
        .end
        .map_or(i64::MAX, |e| e.saturating_mul(1000).saturating_add(999));
    if st.cfg.hide_future {
        hi = hi.min(now_ms);
    }
    let (from, to) = st.history_range();
    // Only Pacific days the window touches, clipped to the history.
    let first = if lo == i64::MIN {
        from
    } else {
        pacific_date_of_ms(lo.max(0)).max(from)
    };
    let last = if hi == i64::MAX {
        to
    } else {
        pacific_date_of_ms(hi.max(0)).min(to)
    };
    if lo > hi || first > last {
        return (out, None);
    }
    let cursor_at = |d: NaiveDate, i: usize| PageCursor {
        v: 1,
        c: p.chat.clone(),
        s: p.sort,
        st: p.start,
        et: p.end,
        d,
        i: i as u64,
    };
    let range = (from, to);
    let resume = p
        .cursor
        .as_ref()
        .map(|c| (c.d, usize::try_from(c.i).unwrap_or(usize::MAX)));
    match p.sort {
        Sort::Asc => {
            let mut day = resume.map_or(first, |(d, _)| d.max(first));
            while day <= last {
                let data = st.days.get(&st.cfg, range, &p.chat, day);
                let start_idx = match resume {
                    Some((d, i)) if d == day => i,
                    _ => 0,
                };
                let a = data.create_ms.partition_point(|t| *t < lo).max(start_idx);
                let b = data.create_ms.partition_point(|t| *t <= hi);
                for i in a..b {
                    if out.len() == p.page_size {
                        return (out, Some(cursor_at(day, i)));
                    }
                    out.push(data.json[i].clone());
                }
                let Some(next) = day.succ_opt() else { break };
                day = next;
            }
        }
        Sort::Desc => {
            let mut day = resume.map_or(last, |(d, _)| d.min(last));
            while day >= first {
                let data = st.days.get(&st.cfg, range, &p.chat, day);
                let end_idx = match resume {
                    Some((d, i)) if d == day => i,
                    _ => usize::MAX,
                };
                let a = data.create_ms.partition_point(|t| *t < lo);
                let b = data.create_ms.partition_point(|t| *t <= hi).min(end_idx);
                for i in (a..b).rev() {
                    if out.len() == p.page_size {
                        return (out, Some(cursor_at(day, i + 1)));
                    }
                    out.push(data.json[i].clone());
                }
                let Some(prev) = day.pred_opt() else { break };
                day = prev;
            }
        }
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_reissue_rules() {
        let mut store = TokenStore::default();
        let t0 = 1_000_000_000_000;
        let (a, exp, new) = store.issue("cli_x", t0, 7200);
        assert!(a.starts_with("t-") && a.len() == 42 && new);
        assert_eq!(exp, 7200);
        // ≥ 30 min left: same token, remaining lifetime.
        let (b, exp, new) = store.issue("cli_x", t0 + 3_600_000, 7200);
        assert_eq!((b.as_str(), exp, new), (a.as_str(), 3600, false));
        // < 30 min left: a new token; the old one stays valid until its expiry.
        let (c, exp, new) = store.issue("cli_x", t0 + 5_500_000, 7200);
        assert!(new && c != a && exp == 7200);
        assert_eq!(store.app_of(&a, t0 + 7_199_000).as_deref(), Some("cli_x"));
        assert_eq!(store.app_of(&a, t0 + 7_200_000), None);
        assert!(store.app_of(&c, t0 + 7_200_000).is_some());
        store.revoke();
        assert_eq!(store.app_of(&c, t0 + 5_500_001), None);
    }

    #[test]
    fn page_cursor_round_trips_and_rejects_garbage() {
        let c = PageCursor {
            v: 1,
            c: "oc_x".into(),
            s: Sort::Desc,
            st: Some(1),
            et: None,
            d: NaiveDate::from_ymd_opt(2026, 3, 8).unwrap(),
            i: 17,
        };
        let enc = c.encode();
        assert!(
            enc.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_=".contains(ch))
        );
        assert_eq!(PageCursor::decode(&enc), Some(c));
        assert_eq!(PageCursor::decode("not a token"), None);
        assert_eq!(PageCursor::decode(&URL_SAFE.encode(b"{\"v\":2}")), None);
    }

    #[test]
    fn params_validation() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let base = [("container_id_type", "chat"), ("container_id", "oc_a")];
        let p = parse_params(&q(&base)).unwrap();
        assert_eq!((p.page_size, p.sort), (20, Sort::Asc));
        for bad in ["0", "51", "abc", "-1"] {
            let mut v = base.to_vec();
            v.push(("page_size", bad));
            assert_eq!(parse_params(&q(&v)).err(), Some(99992402), "{bad}");
        }
        let mut v = base.to_vec();
        v.push(("sort_type", "Sideways"));
        assert_eq!(parse_params(&q(&v)).err(), Some(99992402));
        assert_eq!(
            parse_params(&q(&[("container_id", "oc_a")])).err(),
            Some(99992402)
        );
        assert_eq!(
            parse_params(&q(&[
                ("container_id_type", "thread"),
                ("container_id", "omt_1"),
                ("start_time", "1")
            ]))
            .err(),
            Some(230001)
        );
        let mut v = base.to_vec();
        v.push(("start_time", "12.5"));
        assert_eq!(parse_params(&q(&v)).err(), Some(99992402));
    }
}
