//! The Lark Open API client against the sandbox (a real HTTP server on
//! 127.0.0.1:0) and the real local Redis for the shared rate limiter. Token
//! expiry is driven by the sandbox clock (`advance_clock`); each test has its
//! own Redis namespace.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alertflow::config::{HumanDuration, LarkConfig, LimitSpec, Secret};
use alertflow::lark::client::{ClientOptions, LarkClient, LarkError, MessagePage, RetryPolicy};
use alertflow::queue::ratelimit::RateLimiter;
use alertflow::queue::task::TaskError;
use alertflow::sandbox::{
    Endpoint, Fault, QuotaConfig, SandboxConfig, SandboxHandle, day_messages,
    pacific_day_bounds_ms, spawn,
};
use chrono::NaiveDate;
use common::TestEnv;

const CHAT: &str = "oc_sandbox_alerts";
const SECRET: &str = "sandbox-secret";

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Fixed history, nothing hidden, quotas out of the way unless a test sets them.
fn sandbox_config() -> SandboxConfig {
    SandboxConfig {
        seed: 7,
        per_day: 40, // one page a day
        history_from: Some(date("2026-03-01")),
        history_to: Some(date("2026-03-20")),
        hide_future: false,
        quotas: QuotaConfig {
            messages_per_sec: 10_000,
            messages_per_min: 100_000,
            ..QuotaConfig::default()
        },
        ..SandboxConfig::default()
    }
}

fn lark_config(sb: &SandboxHandle) -> LarkConfig {
    LarkConfig {
        base_url: format!("{}/", sb.base_url),
        app_id: "cli_sandbox".into(),
        app_secret: Secret::new(SECRET),
        chat_id: CHAT.into(),
    }
}

fn limit(n: u32, per_ms: u64, burst: u32) -> LimitSpec {
    LimitSpec {
        limit: n,
        per: HumanDuration(Duration::from_millis(per_ms)),
        burst,
    }
}

/// A limiter in the test's namespace: `lark.api` as configured by default
/// unless `limits` replaces it.
fn limiter(env: &TestEnv, limits: Option<Vec<LimitSpec>>) -> RateLimiter {
    let pool = alertflow::queue::context::redis_pool(&env.config).expect("redis pool");
    let mut map: BTreeMap<String, Vec<LimitSpec>> = env.config.rate_limits.clone();
    if let Some(l) = limits {
        map.insert("lark.api".into(), l);
    }
    RateLimiter::new(pool, env.ns(), map, false)
}

fn client(env: &TestEnv, sb: &SandboxHandle) -> LarkClient {
    LarkClient::new(&lark_config(sb), Some(limiter(env, None)), "lark.api").expect("client")
}

/// Start and end (inclusive, Unix seconds) of a Pacific day.
fn day_window(d: NaiveDate) -> (i64, i64) {
    let (start_ms, end_ms) = pacific_day_bounds_ms(d);
    (start_ms / 1000, (end_ms - 1) / 1000)
}

async fn list_day(c: &LarkClient, d: &str) -> Result<MessagePage, LarkError> {
    let (s, e) = day_window(date(d));
    c.list_messages(CHAT, s, e, None).await
}

#[tokio::test]
async fn token_is_fetched_once_and_shared_by_clones() {
    let env = TestEnv::new("lark-token-once");
    let sb = spawn(sandbox_config()).await.unwrap();
    let c = client(&env, &sb);
    // 16 concurrent first calls from clones share one in-flight token fetch.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            list_day(&c, "2026-03-05").await.map(|p| p.items.len())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 40);
    }
    for _ in 0..10 {
        list_day(&c, "2026-03-06").await.unwrap();
    }
    let s = sb.stats();
    assert_eq!(s.tokens_issued, 1);
    assert_eq!(s.tenant_token.requests, 1, "one token request in all");
    assert_eq!(s.list_messages.ok, 26);
    assert_eq!(s.list_messages.errors, 0);
}

#[tokio::test]
async fn token_is_refetched_after_expiry_and_revocation_once() {
    let env = TestEnv::new("lark-token-refresh");
    let sb = spawn(sandbox_config()).await.unwrap();
    let c = client(&env, &sb);
    list_day(&c, "2026-03-05").await.unwrap();
    assert_eq!(sb.stats().tokens_issued, 1);

    // The sandbox's token expires (its clock jumps past the 2 h TTL) while the
    // client still believes in it: 99991663 → one new token → the retry works.
    sb.advance_clock(Duration::from_secs(7201));
    assert_eq!(list_day(&c, "2026-03-05").await.unwrap().items.len(), 40);
    let s = sb.stats();
    assert_eq!((s.tokens_issued, s.tenant_token.requests), (2, 2));
    assert_eq!((s.list_messages.ok, s.list_messages.errors), (2, 1));

    // Revoked tokens: the same recovery.
    sb.revoke_tokens();
    list_day(&c, "2026-03-05").await.unwrap();
    list_day(&c, "2026-03-06").await.unwrap();
    let s = sb.stats();
    assert_eq!((s.tokens_issued, s.tenant_token.requests), (3, 3));
    assert_eq!((s.list_messages.ok, s.list_messages.errors), (4, 2));

    // Rejected again right after the refresh: an error (retryable), not a loop.
    sb.fail_next(Endpoint::ListMessages, 2, Fault::Code(99991663));
    let err = list_day(&c, "2026-03-05").await.unwrap_err();
    assert!(
        matches!(err, LarkError::TokenRejected { code: 99991663, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let s = sb.stats();
    assert_eq!(s.tenant_token.requests, 4, "exactly one refetch");
    assert_eq!(s.list_messages.requests, 8);
    // And the next call works with the token fetched then.
    list_day(&c, "2026-03-05").await.unwrap();
    assert_eq!(sb.stats().tenant_token.requests, 4);
}

#[tokio::test]
async fn token_is_refreshed_before_it_expires() {
    let env = TestEnv::new("lark-token-early");
    let sb = spawn(SandboxConfig {
        token_ttl_secs: 2,
        ..sandbox_config()
    })
    .await
    .unwrap();
    let c = client(&env, &sb);
    list_day(&c, "2026-03-05").await.unwrap();
    list_day(&c, "2026-03-05").await.unwrap();
    assert_eq!(sb.stats().tokens_issued, 1);
    // A 2 s token is refreshed after 1 s (half its life; 3 min before expiry
    // for normal tokens), so no request ever goes out with an expired token.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    list_day(&c, "2026-03-05").await.unwrap();
    let s = sb.stats();
    assert_eq!(s.tokens_issued, 2);
    assert_eq!(s.list_messages.errors, 0, "no 99991663 round trip");
}

#[tokio::test]
async fn pagination_returns_exactly_the_days_messages_in_order() {
    let env = TestEnv::new("lark-pages");
    let cfg = SandboxConfig {
        per_day: 500,
        ..sandbox_config()
    };
    let sb = spawn(cfg.clone()).await.unwrap();
    let c = client(&env, &sb);
    let day = date("2026-03-10");
    let (s, e) = day_window(day);
    let mut pages = Vec::new();
    let items = c
        .fetch_window(CHAT, s, e, &RetryPolicy::none(), |n, page| {
            pages.push((n, page.items.len(), page.has_more));
        })
        .await
        .unwrap();
    let want = day_messages(&cfg, CHAT, day);
    assert_eq!(want.len(), 500);
    assert_eq!(items, want, "every message once, in order, as generated");
    let expected_pages: Vec<(usize, usize, bool)> = (1..=10).map(|n| (n, 50, n < 10)).collect();
    assert_eq!(pages, expected_pages);
    let st = sb.stats();
    assert_eq!(st.list_messages.requests, 10);
    assert_eq!(st.items_served, 500);

    // Two days in one window: pages cross the day boundary seamlessly.
    let (s2, _) = day_window(date("2026-03-11"));
    let (_, e2) = day_window(date("2026-03-12"));
    let both = c
        .fetch_window(CHAT, s2, e2, &RetryPolicy::none(), |_, _| {})
        .await
        .unwrap();
    let mut want = day_messages(&cfg, CHAT, date("2026-03-11"));
    want.extend(day_messages(&cfg, CHAT, date("2026-03-12")));
    assert_eq!(both, want);

    // An empty window (outside the history) is one empty page.
    let (s3, e3) = day_window(date("2025-01-01"));
    let none = c.list_messages(CHAT, s3, e3, None).await.unwrap();
    assert_eq!(none, MessagePage::default());
}

#[tokio::test]
async fn rate_limit_429_is_retryable_after_the_reset_header() {
    let env = TestEnv::new("lark-429");
    let sb = spawn(sandbox_config()).await.unwrap();
    let c = client(&env, &sb);

    sb.fail_next(Endpoint::ListMessages, 1, Fault::RateLimit429);
    let err = list_day(&c, "2026-03-05").await.unwrap_err();
    assert!(matches!(err, LarkError::RateLimited { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    match TaskError::from(err) {
        TaskError::Retry { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)))
        }
        other => panic!("{other:?}"),
    }

    // Through the retrying helper: waits the header's second, then succeeds.
    sb.fail_next(Endpoint::ListMessages, 1, Fault::RateLimit429);
    let (s, e) = day_window(date("2026-03-05"));
    let started = Instant::now();
    let page = c
        .list_messages_retrying(CHAT, s, e, None, &RetryPolicy::default())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(page.items.len(), 40);

    // The legacy form, HTTP 400 with code 99991400 (no reset header here):
    // still rate limiting, retryable with backoff.
    sb.fail_next(Endpoint::ListMessages, 1, Fault::Code(99991400));
    let err = list_day(&c, "2026-03-05").await.unwrap_err();
    assert!(matches!(err, LarkError::RateLimited { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), None);
    assert_eq!(sb.stats().list_messages.rate_limited, 3);
}

#[tokio::test]
async fn server_network_and_timeout_errors_are_retryable_without_retry_after() {
    let env = TestEnv::new("lark-5xx");
    let sb = spawn(sandbox_config()).await.unwrap();
    let c = client(&env, &sb);

    sb.fail_next(Endpoint::ListMessages, 1, Fault::Http500);
    let err = list_day(&c, "2026-03-05").await.unwrap_err();
    assert!(
        matches!(err, LarkError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable() && err.retry_after().is_none());
    assert!(matches!(
        TaskError::from(err),
        TaskError::Retry {
            retry_after: None,
            ..
        }
    ));

    for code in [1500, 5000, 2200] {
        sb.fail_next(Endpoint::ListMessages, 1, Fault::Code(code));
        let err = list_day(&c, "2026-03-05").await.unwrap_err();
        assert!(
            err.is_retryable() && err.retry_after().is_none(),
            "{code}: {err:?}"
        );
    }

    // A 500 on the token endpoint is retryable too.
    let c2 = client(&env, &sb);
    sb.fail_next(Endpoint::TenantToken, 1, Fault::Http500);
    let err = list_day(&c2, "2026-03-05").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    // The retrying helper rides over two 500s.
    sb.fail_next(Endpoint::ListMessages, 2, Fault::Http500);
    let (s, e) = day_window(date("2026-03-05"));
    let policy = RetryPolicy {
        base_backoff: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    let page = c
        .list_messages_retrying(CHAT, s, e, None, &policy)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 40);

    // Client-side timeout.
    let slow = LarkClient::with_options(
        &lark_config(&sb),
        None,
        "lark.api",
        ClientOptions {
            request_timeout: Duration::from_millis(200),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    list_day(&slow, "2026-03-05").await.unwrap();
    sb.fail_next(
        Endpoint::ListMessages,
        1,
        Fault::Delay(Duration::from_secs(1)),
    );
    let err = list_day(&slow, "2026-03-05").await.unwrap_err();
    assert!(matches!(err, LarkError::Timeout(_)), "{err:?}");
    assert!(err.is_retryable() && err.retry_after().is_none());

    // Nothing listening: a network error.
    let gone_config = lark_config(&sb);
    sb.shutdown().await.unwrap();
    let gone = LarkClient::new(&gone_config, None, "lark.api").unwrap();
    let err = gone.list_messages(CHAT, 0, 1, None).await.unwrap_err();
    assert!(matches!(err, LarkError::Network(_)), "{err:?}");
    assert!(err.is_retryable() && err.retry_after().is_none());
}

fn fatal_message(err: LarkError) -> String {
    assert!(!err.is_retryable(), "{err:?} should be fatal");
    assert_eq!(err.retry_after(), None);
    match TaskError::from(err) {
        TaskError::Fatal(m) => m,
        other => panic!("not fatal: {other:?}"),
    }
}

#[tokio::test]
async fn permission_and_request_errors_are_fatal_and_actionable() {
    let env = TestEnv::new("lark-perm");
    let sb = spawn(sandbox_config()).await.unwrap();
    let c = client(&env, &sb);

    // A chat the bot is not in: the sandbox's real 230002.
    let (s, e) = day_window(date("2026-03-05"));
    let err = c
        .list_messages("oc_elsewhere", s, e, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LarkError::Permission { code: 230002, .. }),
        "{err:?}"
    );
    let m = fatal_message(err);
    assert!(
        m.contains("oc_elsewhere") && m.contains("add the app's bot"),
        "{m}"
    );

    sb.fail_next(Endpoint::ListMessages, 1, Fault::Code(230027));
    let m = fatal_message(list_day(&c, "2026-03-05").await.unwrap_err());
    assert!(
        m.contains("230027") && m.contains("im:message.group_msg"),
        "{m}"
    );

    sb.fail_next(Endpoint::ListMessages, 1, Fault::Code(230006));
    let m = fatal_message(list_day(&c, "2026-03-05").await.unwrap_err());
    assert!(m.contains("Bot"), "{m}");

    sb.fail_next(Endpoint::ListMessages, 1, Fault::Code(99991672));
    let m = fatal_message(list_day(&c, "2026-03-05").await.unwrap_err());
    assert!(m.contains("scope"), "{m}");

    for code in [230001, 99992402] {
        sb.fail_next(Endpoint::ListMessages, 1, Fault::Code(code));
        let err = list_day(&c, "2026-03-05").await.unwrap_err();
        assert!(matches!(err, LarkError::BadRequest { .. }), "{err:?}");
        fatal_message(err);
    }

    // A stale page token is the sandbox's real 230001.
    let err = c
        .list_messages(CHAT, s, e, Some("not-a-page-token"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LarkError::BadRequest { code: 230001, .. }),
        "{err:?}"
    );

    // A wrong base URL path gives plain-text 404s, never decoded as JSON.
    let wrong = LarkClient::new(
        &LarkConfig {
            base_url: format!("{}/not-lark", sb.base_url),
            ..lark_config(&sb)
        },
        None,
        "lark.api",
    )
    .unwrap();
    let m = fatal_message(list_day(&wrong, "2026-03-05").await.unwrap_err());
    assert!(m.contains("404") && m.contains("lark.base_url"), "{m}");
    assert_eq!(sb.stats().not_found, 1);
}

#[tokio::test]
async fn bad_credentials_are_fatal_and_secrets_never_leak() {
    let env = TestEnv::new("lark-creds");
    let sb = spawn(sandbox_config()).await.unwrap();
    let wrong_secret = "wr0ng-s3cret-value";
    let bad = LarkClient::new(
        &LarkConfig {
            app_secret: Secret::new(wrong_secret),
            ..lark_config(&sb)
        },
        Some(limiter(&env, None)),
        "lark.api",
    )
    .unwrap();
    let err = list_day(&bad, "2026-03-05").await.unwrap_err();
    assert!(
        matches!(err, LarkError::Credentials { code: 10014, .. }),
        "{err:?}"
    );
    let debug = format!("{err:?}");
    let m = fatal_message(err);
    assert!(
        m.contains("LARK_APP_SECRET") && m.contains("lark.app_secret"),
        "{m}"
    );
    assert!(!m.contains(wrong_secret) && !debug.contains(wrong_secret));
    assert!(!format!("{bad:?}").contains(wrong_secret));
    assert_eq!(
        sb.stats().list_messages.requests,
        0,
        "no API call without a token"
    );

    let bad_id = LarkClient::new(
        &LarkConfig {
            app_id: "cli_nope".into(),
            ..lark_config(&sb)
        },
        None,
        "lark.api",
    )
    .unwrap();
    let m = fatal_message(list_day(&bad_id, "2026-03-05").await.unwrap_err());
    assert!(m.contains("cli_nope") && m.contains("LARK_APP_ID"), "{m}");

    // A working client: neither the secret nor the live token is in its Debug.
    let good = client(&env, &sb);
    list_day(&good, "2026-03-05").await.unwrap();
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/open-apis/auth/v3/tenant_access_token/internal",
            sb.base_url
        ))
        .json(&serde_json::json!({"app_id": "cli_sandbox", "app_secret": SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["tenant_access_token"].as_str().unwrap();
    assert_eq!(
        sb.stats().tokens_issued,
        1,
        "the sandbox re-issued the client's token"
    );
    let debug = format!("{good:?} {:#?}", good.clone());
    assert!(debug.contains("cli_sandbox"), "{debug}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(!debug.contains(token), "{debug}");

    // Missing settings are refused up front, by name.
    let err = LarkClient::new(
        &LarkConfig {
            app_secret: Secret::default(),
            ..lark_config(&sb)
        },
        None,
        "lark.api",
    )
    .unwrap_err();
    assert!(err.to_string().contains("LARK_APP_SECRET"), "{err}");
    let err =
        LarkClient::new(&lark_config(&sb), Some(limiter(&env, None)), "lark.nope").unwrap_err();
    assert!(matches!(err, LarkError::Config(_)), "{err:?}");
}

/// Two clients (two token caches) hammer one chat concurrently.
async fn two_clients_fetch(
    a: &LarkClient,
    b: &LarkClient,
    days: [&str; 2],
) -> (
    Result<Vec<serde_json::Value>, LarkError>,
    Result<Vec<serde_json::Value>, LarkError>,
) {
    let (s0, e0) = day_window(date(days[0]));
    let (s1, e1) = day_window(date(days[1]));
    let none = RetryPolicy::none();
    tokio::join!(
        a.fetch_window(CHAT, s0, e0, &none, |_, _| {}),
        b.fetch_window(CHAT, s1, e1, &none, |_, _| {}),
    )
}

#[tokio::test]
async fn shared_limiter_keeps_two_clients_under_the_lark_quota() {
    let env = TestEnv::new("lark-shared-rl");
    let cfg = SandboxConfig {
        per_day: 150,
        quotas: QuotaConfig {
            messages_per_sec: 20,
            messages_per_min: 1000,
            ..QuotaConfig::default()
        },
        ..sandbox_config()
    };
    let small_pages = ClientOptions {
        page_size: 10,
        ..ClientOptions::default()
    };
    let sb = spawn(cfg.clone()).await.unwrap();

    // Control: without the limiter the same work is refused by Lark.
    let a =
        LarkClient::with_options(&lark_config(&sb), None, "lark.api", small_pages.clone()).unwrap();
    let b =
        LarkClient::with_options(&lark_config(&sb), None, "lark.api", small_pages.clone()).unwrap();
    let (ra, rb) = two_clients_fetch(&a, &b, ["2026-03-05", "2026-03-06"]).await;
    assert!(
        matches!(ra, Err(LarkError::RateLimited { .. }))
            || matches!(rb, Err(LarkError::RateLimited { .. })),
        "unthrottled clients should hit the sandbox quota"
    );
    assert!(sb.stats().list_messages.rate_limited > 0);
    drop((a, b));
    sb.shutdown().await.unwrap();

    // With one shared limiter at the quota's rate: never a 429.
    let sb = spawn(cfg.clone()).await.unwrap();
    let shared = limiter(&env, Some(vec![limit(20, 1000, 1)]));
    let a = LarkClient::with_options(
        &lark_config(&sb),
        Some(shared.clone()),
        "lark.api",
        small_pages.clone(),
    )
    .unwrap();
    let b =
        LarkClient::with_options(&lark_config(&sb), Some(shared), "lark.api", small_pages).unwrap();
    let started = Instant::now();
    let (ra, rb) = two_clients_fetch(&a, &b, ["2026-03-05", "2026-03-06"]).await;
    let elapsed = started.elapsed();
    assert_eq!(ra.unwrap(), day_messages(&cfg, CHAT, date("2026-03-05")));
    assert_eq!(rb.unwrap(), day_messages(&cfg, CHAT, date("2026-03-06")));
    let s = sb.stats();
    assert_eq!(s.list_messages.requests, 30);
    assert_eq!(s.list_messages.rate_limited, 0, "{s:?}");
    // 30 requests at 20/s with a burst of 1 take at least 29 intervals.
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");
}

#[tokio::test]
async fn limiter_gives_up_with_a_retryable_wait() {
    let env = TestEnv::new("lark-throttled");
    let sb = spawn(sandbox_config()).await.unwrap();
    let c = LarkClient::with_options(
        &lark_config(&sb),
        Some(limiter(&env, Some(vec![limit(1, 60_000, 1)]))),
        "lark.api",
        ClientOptions {
            limiter_max_wait: Duration::from_millis(100),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    list_day(&c, "2026-03-05").await.unwrap();
    let started = Instant::now();
    let err = list_day(&c, "2026-03-05").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(err, LarkError::Throttled { .. }), "{err:?}");
    assert!(err.is_retryable());
    let after = err.retry_after().unwrap();
    assert!(
        after > Duration::from_secs(50) && after <= Duration::from_secs(60),
        "{after:?}"
    );
    assert_eq!(
        sb.stats().list_messages.requests,
        1,
        "nothing sent without a slot"
    );
}
