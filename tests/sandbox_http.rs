//! The sandbox over the wire: a real server on 127.0.0.1:0, driven with
//! reqwest. Time-dependent behaviour (token expiry, quota windows) is driven
//! by the sandbox clock (`advance_clock`), never by sleeping.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alertflow::sandbox::{
    Endpoint, Fault, QuotaConfig, SandboxConfig, SandboxHandle, day_messages, expected_day,
    lark_bot_sign, spawn,
};
use chrono::NaiveDate;
use reqwest::{Client, StatusCode, Url};
use serde_json::{Value, json};

const CHAT: &str = "oc_sandbox_alerts";
const MESSAGES: &str = "/open-apis/im/v1/messages";
const TOKEN_PATH: &str = "/open-apis/auth/v3/tenant_access_token/internal";

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn config() -> SandboxConfig {
    SandboxConfig {
        seed: 11,
        per_day: 120,
        history_from: Some(date("2026-03-01")),
        history_to: Some(date("2026-03-20")),
        // Test dates are fixed; do not depend on today's date.
        hide_future: false,
        ..SandboxConfig::default()
    }
}

async fn start(cfg: SandboxConfig) -> (SandboxHandle, Client) {
    (spawn(cfg).await.expect("spawn sandbox"), Client::new())
}

async fn get_token(client: &Client, sb: &SandboxHandle) -> Value {
    client
        .post(format!("{}{TOKEN_PATH}", sb.base_url))
        .json(&json!({"app_id": "cli_sandbox", "app_secret": "sandbox-secret"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn token(client: &Client, sb: &SandboxHandle) -> String {
    get_token(client, sb).await["tenant_access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn messages_url(sb: &SandboxHandle, params: &[(&str, &str)]) -> Url {
    let mut all = vec![("container_id_type", "chat"), ("container_id", CHAT)];
    all.extend_from_slice(params);
    Url::parse_with_params(&format!("{}{MESSAGES}", sb.base_url), &all).unwrap()
}

/// (HTTP status, JSON body) of a list call.
async fn list(
    client: &Client,
    sb: &SandboxHandle,
    token: &str,
    params: &[(&str, &str)],
) -> (StatusCode, Value) {
    let resp = client
        .get(messages_url(sb, params))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn create_ms(item: &Value) -> i64 {
    item["create_time"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn tenant_token_success_and_failures() {
    let (sb, client) = start(config()).await;
    let url = format!("{}{TOKEN_PATH}", sb.base_url);

    let resp = client
        .post(&url)
        .json(&json!({"app_id": "cli_sandbox", "app_secret": "sandbox-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert!(!resp.headers()["x-tt-logid"].is_empty());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 0);
    assert_eq!(body["msg"], "ok");
    assert_eq!(body["expire"], 7200);
    assert!(body.get("data").is_none(), "token fields are top level");
    let t = body["tenant_access_token"].as_str().unwrap();
    assert!(t.starts_with("t-") && t.len() == 42, "{t}");

    // Plenty of time left: the same token again, also via the trailing slash.
    let again: Value = client
        .post(format!("{url}/"))
        .json(&json!({"app_id": "cli_sandbox", "app_secret": "sandbox-secret"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["tenant_access_token"], t);

    for (req, code) in [
        (
            json!({"app_id": "test", "app_secret": "sandbox-secret"}),
            10003,
        ),
        (
            json!({"app_id": "cli_sandbox", "app_secret": "nope"}),
            10014,
        ),
        (json!({"app_secret": "sandbox-secret"}), 10003),
    ] {
        let resp = client.post(&url).json(&req).send().await.unwrap();
        assert_eq!(resp.status(), 200, "token errors are HTTP 200");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{req}");
    }
    let unknown: Value = client
        .post(&url)
        .json(&json!({"app_id": "test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        unknown,
        json!({"code": 10003, "data": {}, "msg": "invalid param"})
    );

    // Wrong method: plain-text 404.
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "404 page not found");

    let stats = sb.stats();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.tenant_token.requests, 6);
    assert_eq!(stats.tenant_token.ok, 2);
    assert_eq!(stats.tenant_token.errors, 4);
    assert_eq!(stats.not_found, 1);
    sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn token_reissue_expiry_and_revoke() {
    let (sb, client) = start(config()).await;
    let first = token(&client, &sb).await;
    let page = [("page_size", "1")];
    assert_eq!(list(&client, &sb, &first, &page).await.1["code"], 0);

    // 1799 s left (< 30 min): a new token, and the old one still works.
    sb.advance_clock(Duration::from_secs(5401));
    let body = get_token(&client, &sb).await;
    let second = body["tenant_access_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(body["expire"], 7200);
    assert_eq!(list(&client, &sb, &first, &page).await.1["code"], 0);

    // Past the first token's own expiry: 99991663; the second still works.
    sb.advance_clock(Duration::from_secs(1800));
    let (status, body) = list(&client, &sb, &first, &page).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 99991663);
    assert!(
        body["error"]["log_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        body["error"]["troubleshooter"]
            .as_str()
            .unwrap()
            .contains("code=99991663")
    );
    assert_eq!(list(&client, &sb, &second, &page).await.1["code"], 0);

    // Expire the second one by TTL.
    sb.advance_clock(Duration::from_secs(7200));
    assert_eq!(list(&client, &sb, &second, &page).await.1["code"], 99991663);

    // Revoke: a fresh token stops working at once.
    let third = token(&client, &sb).await;
    assert_eq!(list(&client, &sb, &third, &page).await.1["code"], 0);
    sb.revoke_tokens();
    assert_eq!(list(&client, &sb, &third, &page).await.1["code"], 99991663);
    assert_eq!(sb.stats().tokens_issued, 3);
}

#[tokio::test]
async fn bearer_header_checks_come_before_parameters() {
    let (sb, client) = start(config()).await;
    // page_size=100 is invalid, but auth errors win.
    let url = messages_url(&sb, &[("page_size", "100")]);
    let cases: [(Option<&str>, i64); 6] = [
        (None, 99991661),
        (Some("t-abc"), 99991661),
        (Some("Basic dXNlcjpwYXNz"), 99991661),
        (Some("Bearer abc"), 99991671),
        (Some("Bearer eyJhbGciOiJIUzI1NiJ9.x.y"), 99991668),
        (Some("Bearer t-0123456789abcdef"), 99991663),
    ];
    for (header, code) in cases {
        let mut req = client.get(url.clone());
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{header:?}");
        let log_id = resp.headers()["x-tt-logid"].to_str().unwrap().to_owned();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{header:?}");
        assert_eq!(body["error"]["log_id"], log_id.as_str());
    }
    let stats = sb.stats();
    assert_eq!(stats.list_messages.requests, 6);
    assert_eq!(stats.list_messages.errors, 6);
}

#[tokio::test]
async fn list_parameter_validation() {
    let (sb, client) = start(config()).await;
    let t = token(&client, &sb).await;

    let (status, body) = list(&client, &sb, &t, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["code"], 0);
    assert_eq!(body["msg"], "success");
    assert_eq!(
        body["data"]["items"].as_array().unwrap().len(),
        20,
        "default page size"
    );
    assert_eq!(body["data"]["has_more"], true);

    for size in ["0", "51", "100", "abc"] {
        let (status, body) = list(&client, &sb, &t, &[("page_size", size)]).await;
        assert_eq!(
            (status.as_u16(), body["code"].as_i64()),
            (400, Some(99992402)),
            "page_size={size}"
        );
        assert_eq!(body["msg"], "field validation failed");
    }
    for size in ["1", "50"] {
        let (_, body) = list(&client, &sb, &t, &[("page_size", size)]).await;
        assert_eq!(
            body["data"]["items"].as_array().unwrap().len(),
            size.parse::<usize>().unwrap()
        );
    }
    for bad in [
        [("sort_type", "Newest")],
        [("start_time", "1773100000000.5")],
    ] {
        assert_eq!(list(&client, &sb, &t, &bad).await.1["code"], 99992402);
    }

    // Unknown chat.
    let url = Url::parse_with_params(
        &format!("{}{MESSAGES}", sb.base_url),
        &[
            ("container_id_type", "chat"),
            ("container_id", "oc_not_a_member"),
        ],
    )
    .unwrap();
    let resp = client.get(url).bearer_auth(&t).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 230002);
    assert_eq!(body["msg"], "Bot/User can NOT be out of the chat.");

    // A page token is bound to its sort (and chat and window).
    let (_, first) = list(&client, &sb, &t, &[("page_size", "5")]).await;
    let pt = first["data"]["page_token"].as_str().unwrap().to_owned();
    let (status, body) = list(
        &client,
        &sb,
        &t,
        &[
            ("page_size", "5"),
            ("page_token", &pt),
            ("sort_type", "ByCreateTimeDesc"),
        ],
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_i64()),
        (400, Some(230001))
    );
    let (_, body) = list(
        &client,
        &sb,
        &t,
        &[("page_token", &pt), ("start_time", "1")],
    )
    .await;
    assert_eq!(body["code"], 230001);
    let (_, body) = list(&client, &sb, &t, &[("page_token", "garbage!")]).await;
    assert_eq!(body["code"], 230001);
    let (_, body) = list(&client, &sb, &t, &[("page_size", "5"), ("page_token", &pt)]).await;
    assert_eq!(body["code"], 0);
}

/// Walk every page of a listing; returns the items in the order served.
async fn walk(
    client: &Client,
    sb: &SandboxHandle,
    token: &str,
    params: &[(&str, &str)],
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut page_token: Option<String> = None;
    for _ in 0..10_000 {
        let mut p = params.to_vec();
        if let Some(pt) = &page_token {
            p.push(("page_token", pt));
        }
        let (status, body) = list(client, sb, token, &p).await;
        assert_eq!(status, 200, "{body}");
        let data = &body["data"];
        let page = data["items"].as_array().unwrap();
        items.extend(page.iter().cloned());
        if data["has_more"] == true {
            assert!(!page.is_empty());
            page_token = Some(data["page_token"].as_str().unwrap().to_owned());
        } else {
            assert!(
                data.get("page_token").is_none(),
                "last page omits page_token by default"
            );
            return items;
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn pagination_is_exact_ordered_and_respects_inclusive_bounds() {
    let cfg = SandboxConfig {
        quotas: QuotaConfig {
            messages_per_sec: 10_000,
            messages_per_min: 100_000,
            ..QuotaConfig::default()
        },
        ..config()
    };
    let (sb, client) = start(cfg.clone()).await;
    let t = token(&client, &sb).await;

    // Three Pacific days, the middle one the 23-hour DST day.
    let days: Vec<Value> = ["2026-03-07", "2026-03-08", "2026-03-09"]
        .iter()
        .flat_map(|d| day_messages(&cfg, CHAT, date(d)))
        .collect();
    assert_eq!(days.len(), 360);
    // Bounds exactly at two messages' create_time (in seconds).
    let start = create_ms(&days[10]) / 1000;
    let end = create_ms(&days[330]) / 1000;
    let want: Vec<Value> = days
        .iter()
        .filter(|i| (start..=end).contains(&(create_ms(i) / 1000)))
        .cloned()
        .collect();
    assert!(want.len() >= 321);
    let (s, e) = (start.to_string(), end.to_string());

    let asc = walk(
        &client,
        &sb,
        &t,
        &[("start_time", &s), ("end_time", &e), ("page_size", "7")],
    )
    .await;
    assert_eq!(asc.len(), want.len());
    assert_eq!(
        asc, want,
        "ascending pages give each message once, in order, exactly as generated"
    );
    assert_eq!(create_ms(&asc[0]) / 1000, start, "start_time is inclusive");
    assert_eq!(
        create_ms(asc.last().unwrap()) / 1000,
        end,
        "end_time is inclusive"
    );
    let ids: BTreeSet<&str> = asc
        .iter()
        .map(|i| i["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), asc.len());

    let desc = walk(
        &client,
        &sb,
        &t,
        &[
            ("start_time", &s),
            ("end_time", &e),
            ("page_size", "50"),
            ("sort_type", "ByCreateTimeDesc"),
        ],
    )
    .await;
    let mut reversed = want.clone();
    reversed.reverse();
    assert_eq!(desc, reversed);

    // Empty window and a window outside the history.
    let (_, body) = list(&client, &sb, &t, &[("start_time", &e), ("end_time", &s)]).await;
    assert_eq!(body["data"]["items"], json!([]));
    assert_eq!(body["data"]["has_more"], false);
    let (_, body) = list(
        &client,
        &sb,
        &t,
        &[("start_time", "1600000000"), ("end_time", "1600086400")],
    )
    .await;
    assert_eq!(body["data"]["items"], json!([]));

    let served = sb.stats().items_served;
    assert_eq!(served, 2 * want.len() as u64);
}

#[tokio::test]
async fn hidden_future_and_last_page_token_knobs() {
    let cfg = SandboxConfig {
        history_from: None,
        history_to: None,
        hide_future: true,
        page_token_on_last_page: true,
        ..config()
    };
    let (sb, client) = start(cfg).await;
    let t = token(&client, &sb).await;
    let (_, body) = list(
        &client,
        &sb,
        &t,
        &[("sort_type", "ByCreateTimeDesc"), ("page_size", "3")],
    )
    .await;
    let items = body["data"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let now_ms = now_secs() * 1000 + 1000;
    assert!(
        items.iter().all(|i| create_ms(i) <= now_ms),
        "no message from the future"
    );
    let (_, body) = list(&client, &sb, &t, &[("start_time", "1"), ("end_time", "2")]).await;
    assert_eq!(body["data"]["has_more"], false);
    assert_eq!(body["data"]["page_token"], "");
}

#[tokio::test]
async fn list_rate_limit_50_per_second() {
    let (sb, client) = start(config()).await;
    let t = token(&client, &sb).await;
    let url = messages_url(&sb, &[("page_size", "1")]);
    let calls = (0..80).map(|_| {
        let req = client.get(url.clone()).bearer_auth(&t);
        async move { req.send().await.unwrap() }
    });
    let responses = futures_join_all(calls).await;
    let mut ok: usize = 0;
    let mut limited = Vec::new();
    for r in responses {
        match r.status().as_u16() {
            200 => ok += 1,
            429 => limited.push(r),
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(ok <= 50, "{ok} accepted within one second");
    assert_eq!(ok + limited.len(), 80);
    assert!(limited.len() >= 30, "only {} refused", limited.len());
    let r = limited.pop().unwrap();
    assert_eq!(r.headers()["x-ogw-ratelimit-limit"], "50");
    let reset: u64 = r.headers()["x-ogw-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&reset));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"code": 99991400, "msg": "request trigger frequency limit"})
    );
    let stats = sb.stats();
    assert_eq!(stats.list_messages.rate_limited, 80 - ok as u64);
    assert_eq!(stats.list_messages.ok, ok as u64);

    // The window slides: a second later requests pass again.
    sb.advance_clock(Duration::from_millis(1100));
    assert_eq!(list(&client, &sb, &t, &[("page_size", "1")]).await.0, 200);
}

/// Minimal join_all so the test needs no extra dependency.
async fn futures_join_all<
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
>(
    futs: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn post_bot(
    client: &Client,
    sb: &SandboxHandle,
    token: &str,
    body: reqwest::Body,
) -> (StatusCode, Value) {
    let resp = client
        .post(format!("{}/open-apis/bot/v2/hook/{token}", sb.base_url))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

fn body_of(v: &Value) -> reqwest::Body {
    reqwest::Body::from(v.to_string())
}

#[tokio::test]
async fn lark_bot_webhook_codes_signature_and_records() {
    let (sb, client) = start(config()).await;
    let text =
        json!({"msg_type": "text", "content": {"text": "BeAliveAbnormal firing on byoc-prod-01"}});

    let (status, body) = post_bot(&client, &sb, "sandbox", body_of(&text)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"})
    );
    let card = json!({"msg_type": "interactive", "card": {"header": {"title": {"tag": "plain_text", "content": "[FIRING:1] X"}}, "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "**Severity:** critical"}}]}});
    assert_eq!(
        post_bot(&client, &sb, "sandbox", body_of(&card)).await.1["code"],
        0
    );

    let (status, body) = post_bot(&client, &sb, "sandbox", "not json".into()).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_i64()),
        (400, Some(99991300))
    );
    let big = json!({"msg_type": "text", "content": {"text": "x".repeat(21 * 1024)}});
    assert_eq!(
        post_bot(&client, &sb, "sandbox", body_of(&big)).await,
        (
            StatusCode::OK,
            json!({"code": 9499, "data": {}, "msg": "Bad Request"})
        )
    );
    sb.advance_clock(Duration::from_secs(2));
    let mismatch = json!({"msg_type": "text", "content": {"post": {}}});
    assert_eq!(
        post_bot(&client, &sb, "sandbox", body_of(&mismatch))
            .await
            .1["code"],
        9499
    );
    assert_eq!(
        post_bot(&client, &sb, "no-such-hook", body_of(&text))
            .await
            .1["code"],
        19001
    );

    // Signed hook: the doc's algorithm, within an hour of the server clock.
    let secret = "sandbox-sign-secret";
    let ts = now_secs();
    let mut signed = text.clone();
    signed["timestamp"] = json!(ts.to_string());
    signed["sign"] = json!(lark_bot_sign(ts, secret));
    assert_eq!(
        post_bot(&client, &sb, "sandbox-signed", body_of(&signed))
            .await
            .1["code"],
        0
    );
    let mut wrong = signed.clone();
    wrong["sign"] = json!(lark_bot_sign(ts, "other"));
    assert_eq!(
        post_bot(&client, &sb, "sandbox-signed", body_of(&wrong))
            .await
            .1["code"],
        19021
    );
    assert_eq!(
        post_bot(&client, &sb, "sandbox-signed", body_of(&text))
            .await
            .1["code"],
        19021
    );
    let stale_ts = ts - 4000;
    let mut stale = text.clone();
    stale["timestamp"] = json!(stale_ts.to_string());
    stale["sign"] = json!(lark_bot_sign(stale_ts, secret));
    let (status, body) = post_bot(&client, &sb, "sandbox-signed", body_of(&stale)).await;
    assert_eq!((status.as_u16(), body["code"].as_i64()), (200, Some(19021)));

    // Only accepted bodies are recorded, in order; also over HTTP.
    assert_eq!(sb.received_bot("sandbox"), vec![text.clone(), card.clone()]);
    assert_eq!(sb.received_bot("sandbox-signed"), vec![signed.clone()]);
    let over_http: Value = client
        .get(format!("{}/sandbox/received/bot/sandbox", sb.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, json!([text, card]));
}

#[tokio::test]
async fn lark_bot_frequency_limit_beyond_5_per_second() {
    let (sb, client) = start(config()).await;
    let url = format!("{}/open-apis/bot/v2/hook/sandbox", sb.base_url);
    let calls = (0..8).map(|i| {
        let req = client
            .post(&url)
            .json(&json!({"msg_type": "text", "content": {"text": format!("n{i}")}}));
        async move { req.send().await.unwrap() }
    });
    let mut codes = Vec::new();
    for r in futures_join_all(calls).await {
        assert_eq!(r.status(), 200, "11232 is HTTP 200");
        let body: Value = r.json().await.unwrap();
        if body["code"] == 11232 {
            assert_eq!(
                body,
                json!({"code": 11232, "data": {}, "msg": "frequency limited psm[lark.oapi.app_platform_runtime]appID[1500]"})
            );
        }
        codes.push(body["code"].as_i64().unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 5);
    assert_eq!(codes.iter().filter(|c| **c == 11232).count(), 3);
    assert_eq!(sb.received_bot("sandbox").len(), 5);
    assert_eq!(sb.stats().lark_bot.rate_limited, 3);
    sb.advance_clock(Duration::from_secs(1));
    let r: Value = client
        .post(&url)
        .json(&json!({"msg_type": "text", "content": {"text": "later"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["code"], 0);
}

#[tokio::test]
async fn slack_webhook_codes_rate_limit_and_records() {
    let (sb, client) = start(config()).await;
    let path = "/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX";
    let url = format!("{}{path}", sb.base_url);
    let msg = json!({"text": "[FIRING:2] HighCPU", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Severity:* critical"}}]});

    let resp = client.post(&url).json(&msg).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(resp.text().await.unwrap(), "ok");
    let resp = client
        .post(&url)
        .json(&json!({"username": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.text().await.unwrap()),
        (400, "no_text".to_owned())
    );
    let resp = client
        .post(&url)
        .body("payload=not-json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.text().await.unwrap()),
        (400, "invalid_payload".to_owned())
    );

    // The burst (3) is used up: 429 with Retry-After.
    let resp = client.post(&url).json(&msg).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(sb.stats().slack.rate_limited, 1);
    // After Retry-After seconds it is accepted again.
    sb.advance_clock(Duration::from_secs(retry));
    assert_eq!(
        client
            .post(&url)
            .json(&msg)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );

    // Other hooks have their own bucket; a bad path is not a hook.
    let other = format!("{}/services/T0001/B0002/YYYY", sb.base_url);
    assert_eq!(
        client
            .post(&other)
            .json(&msg)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let resp = client
        .post(format!("{}/services/x/y/z", sb.base_url))
        .json(&msg)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.text().await.unwrap()),
        (404, "no_service".to_owned())
    );

    assert_eq!(sb.received_slack(path), vec![msg.clone(), msg.clone()]);
    assert_eq!(sb.received_slack("T0001/B0002/YYYY"), vec![msg.clone()]);
    let over_http: Value = client
        .get(
            Url::parse_with_params(
                &format!("{}/sandbox/received/slack", sb.base_url),
                &[("path", path)],
            )
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, json!([msg, msg]));
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_plain_404() {
    let (sb, client) = start(config()).await;
    let b = &sb.base_url;
    let reqs = [
        client.get(format!("{b}/nope")),
        client.post(format!("{b}{MESSAGES}")),
        client.get(format!("{b}/open-apis/bot/v2/hook/sandbox")),
        client.get(format!("{b}/services/T1/B1/X1")),
        client.post(format!("{b}/services/T1/B1")),
        client.get(format!("{b}/open-apis/im/v1/messages/om_1")),
    ];
    for req in reqs {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
        assert!(resp.headers().contains_key("x-tt-logid"));
        assert_eq!(resp.text().await.unwrap(), "404 page not found");
    }
    assert_eq!(sb.stats().not_found, 6);
}

#[tokio::test]
async fn injected_faults() {
    let (sb, client) = start(config()).await;
    let t = token(&client, &sb).await;
    let page = [("page_size", "1")];

    sb.fail_next(Endpoint::ListMessages, 2, Fault::Http500);
    assert_eq!(list(&client, &sb, &t, &page).await.0, 500);
    assert_eq!(list(&client, &sb, &t, &page).await.0, 500);
    assert_eq!(list(&client, &sb, &t, &page).await.0, 200);

    sb.fail_next(Endpoint::ListMessages, 1, Fault::Code(230027));
    let (status, body) = list(&client, &sb, &t, &page).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_i64()),
        (400, Some(230027))
    );

    sb.fail_next(Endpoint::ListMessages, 1, Fault::RateLimit429);
    let resp = client
        .get(messages_url(&sb, &page))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("x-ogw-ratelimit-reset"));

    sb.fail_next(
        Endpoint::ListMessages,
        1,
        Fault::Delay(Duration::from_millis(50)),
    );
    let began = std::time::Instant::now();
    assert_eq!(list(&client, &sb, &t, &page).await.0, 200);
    assert!(began.elapsed() >= Duration::from_millis(50));

    sb.fail_next(Endpoint::TenantToken, 1, Fault::Code(10014));
    assert_eq!(get_token(&client, &sb).await["code"], 10014);
    assert_eq!(get_token(&client, &sb).await["code"], 0);

    sb.fail_next(Endpoint::LarkBot, 1, Fault::BotFrequency11232);
    let text = json!({"msg_type": "text", "content": {"text": "x"}});
    assert_eq!(
        post_bot(&client, &sb, "sandbox", body_of(&text)).await.1["code"],
        11232
    );
    assert_eq!(
        post_bot(&client, &sb, "sandbox", body_of(&text)).await.1["code"],
        0
    );

    sb.fail_next(Endpoint::Slack, 1, Fault::Code(403));
    let resp = client
        .post(format!("{}/services/T1/B1/X1", sb.base_url))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.text().await.unwrap()),
        (403, "invalid_token".to_owned())
    );

    let stats = sb.stats();
    assert_eq!(stats.list_messages.errors, 3);
    assert_eq!(stats.list_messages.rate_limited, 1);
    assert_eq!(stats.lark_bot.rate_limited, 1);
    assert_eq!(stats.slack.errors, 1);
}

#[tokio::test]
async fn expected_and_stats_endpoints() {
    let cfg = config();
    let (sb, client) = start(cfg.clone()).await;
    let get = |path: String| {
        let client = client.clone();
        async move { client.get(path).send().await.unwrap() }
    };
    let url = Url::parse_with_params(
        &format!("{}/sandbox/expected", sb.base_url),
        &[("chat_id", CHAT), ("date", "2026-03-10")],
    )
    .unwrap();
    let body: Value = get(url.to_string()).await.json().await.unwrap();
    let want = expected_day(&cfg, CHAT, date("2026-03-10"));
    assert_eq!(body, serde_json::to_value(&want).unwrap());
    assert!(!want.rows.is_empty());

    let url = Url::parse_with_params(
        &format!("{}/sandbox/expected", sb.base_url),
        &[
            ("chat_id", CHAT),
            ("date", "2026-03-10"),
            ("to", "2026-03-11"),
        ],
    )
    .unwrap();
    let body: Value = get(url.to_string()).await.json().await.unwrap();
    let two =
        alertflow::sandbox::expected_range(&cfg, CHAT, date("2026-03-10"), date("2026-03-11"));
    assert_eq!(body, serde_json::to_value(&two).unwrap());
    assert!(two.rows.len() > want.rows.len());

    let resp = get(format!(
        "{}/sandbox/expected?chat_id={CHAT}&date=10-03-2026",
        sb.base_url
    ))
    .await;
    assert_eq!(resp.status(), 400);

    let stats: Value = get(format!("{}/sandbox/stats", sb.base_url))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["list_messages"]["requests"], 0);
    assert!(stats["tokens_issued"].is_u64());
}

#[tokio::test]
async fn serve_with_own_listener_and_shutdown_future() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(alertflow::sandbox::serve(listener, config(), async {
        let _ = rx.await;
    }));
    let client = Client::new();
    let body: Value = client
        .post(format!("http://{addr}{TOKEN_PATH}"))
        .json(&json!({"app_id": "cli_sandbox", "app_secret": "sandbox-secret"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["code"], 0);
    drop(client);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
