//! The Stream Load client against the fake FE/BE (`alertflow::sandbox::stream_load`).

use std::time::Duration;

use alertflow::config::Secret;
use alertflow::sandbox::stream_load::{
    FakeFailure, FakeStreamLoad, FakeStreamLoadOptions, spawn_fake_stream_load,
};
use alertflow::sink::stream_load::{
    LoadOutcome, StreamLoadConfig, StreamLoadError, StreamLoader, batch_label,
};
use serde_json::{Value, json};

const DB: &str = "alerts";
const TABLE: &str = "alert_event";
const PASSWORD: &str = "s3cr3t-Pa55word";

async fn fake() -> FakeStreamLoad {
    spawn_fake_stream_load(FakeStreamLoadOptions {
        user: "loader".to_string(),
        password: PASSWORD.to_string(),
        ..FakeStreamLoadOptions::default()
    })
    .await
    .expect("spawn fake stream load")
}

fn loader_with(fe_url: &str, password: &str) -> StreamLoader {
    StreamLoader::new(StreamLoadConfig {
        fe_url: fe_url.to_string(),
        user: "loader".to_string(),
        password: Secret::new(password),
        timeout: Duration::from_secs(1),
    })
    .expect("loader")
}

fn loader(f: &FakeStreamLoad) -> StreamLoader {
    loader_with(&f.fe_url(), PASSWORD)
}

fn rows(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"alert_name": format!("{tag}-{i}"), "severity": "P1", "n": i}))
        .collect()
}

fn body(rows: &[Value]) -> Vec<u8> {
    serde_json::to_vec(rows).unwrap()
}

#[tokio::test]
async fn redirect_is_followed_with_credentials_and_rows_load_exactly() {
    let f = fake().await;
    let l = loader(&f);
    let batch = rows(3, "a");
    let label = batch_label("alerts", &["worker-1", "42"]);
    let out = l
        .load(DB, TABLE, &label, body(&batch), None)
        .await
        .expect("load");
    assert_eq!(out, LoadOutcome::Loaded { rows: 3 });
    assert_eq!(
        f.requests(),
        (1, 1),
        "one FE request redirected to one BE request"
    );
    assert_eq!(
        f.be_authorized_requests(),
        1,
        "the BE saw the Authorization header"
    );
    assert_eq!(f.rows(DB, TABLE), batch);
    assert_eq!(f.labels(), vec![label]);
    assert!(f.rows(DB, "other").is_empty());
}

#[tokio::test]
async fn columns_header_is_sent() {
    let f = fake().await;
    let l = loader(&f);
    let batch = rows(2, "c");
    let out = l
        .load(
            DB,
            TABLE,
            "cols_1",
            body(&batch),
            Some("alert_name, severity"),
        )
        .await
        .unwrap();
    assert_eq!(out, LoadOutcome::Loaded { rows: 2 });
    assert_eq!(
        f.rows(DB, TABLE),
        vec![
            json!({"alert_name": "c-0", "severity": "P1"}),
            json!({"alert_name": "c-1", "severity": "P1"}),
        ]
    );
}

#[tokio::test]
async fn same_label_twice_is_already_loaded_and_not_doubled() {
    let f = fake().await;
    let l = loader(&f);
    let batch = rows(4, "b");
    let label = batch_label("alerts", &["batch", "7"]);
    assert_eq!(
        l.load(DB, TABLE, &label, body(&batch), None).await.unwrap(),
        LoadOutcome::Loaded { rows: 4 }
    );
    assert_eq!(
        l.load(DB, TABLE, &label, body(&batch), None).await.unwrap(),
        LoadOutcome::AlreadyLoaded
    );
    assert_eq!(f.rows(DB, TABLE).len(), 4);
    assert_eq!(f.requests(), (2, 2));
    // Another label loads again.
    l.load(DB, TABLE, "other_label", body(&batch), None)
        .await
        .unwrap();
    assert_eq!(f.rows(DB, TABLE).len(), 8);
}

#[tokio::test]
async fn fail_is_retryable_and_same_label_retry_loads_once() {
    let f = fake().await;
    let l = loader(&f);
    let batch = rows(2, "f");
    let label = "retry_me";
    f.fail_next(1, FakeFailure::Fail);
    let err = l
        .load(DB, TABLE, label, body(&batch), None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, StreamLoadError::LoadFailed { ref label, .. } if label == "retry_me"),
        "{err:?}"
    );
    assert!(f.rows(DB, TABLE).is_empty());
    assert_eq!(
        l.load(DB, TABLE, label, body(&batch), None).await.unwrap(),
        LoadOutcome::Loaded { rows: 2 }
    );
    assert_eq!(
        l.load(DB, TABLE, label, body(&batch), None).await.unwrap(),
        LoadOutcome::AlreadyLoaded
    );
    assert_eq!(f.rows(DB, TABLE), batch);
    assert_eq!(f.labels(), vec![label.to_string()]);
}

#[tokio::test]
async fn bad_body_fails_with_error_url() {
    let f = fake().await;
    let l = loader(&f);
    let err = l
        .load(
            DB,
            TABLE,
            "bad_body",
            b"{\"not\":\"an array\"}".to_vec(),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    let StreamLoadError::LoadFailed { error_url, .. } = &err else {
        panic!("{err:?}");
    };
    let url = error_url.as_deref().expect("ErrorURL");
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert!(text.contains("not a JSON array"), "{text}");
    assert!(err.to_string().contains(url));
}

#[tokio::test]
async fn publish_timeout_is_success() {
    let f = fake().await;
    let l = loader(&f);
    let batch = rows(5, "p");
    f.fail_next(1, FakeFailure::PublishTimeout);
    assert_eq!(
        l.load(DB, TABLE, "pt_1", body(&batch), None).await.unwrap(),
        LoadOutcome::Loaded { rows: 5 }
    );
    assert_eq!(f.rows(DB, TABLE).len(), 5);
    // A retry after the (successful) publish timeout is a duplicate.
    assert_eq!(
        l.load(DB, TABLE, "pt_1", body(&batch), None).await.unwrap(),
        LoadOutcome::AlreadyLoaded
    );
    assert_eq!(f.rows(DB, TABLE).len(), 5);
}

#[tokio::test]
async fn label_running_is_retryable() {
    let f = fake().await;
    let l = loader(&f);
    let batch = rows(1, "r");
    f.fail_next(1, FakeFailure::LabelRunning);
    let err = l
        .load(DB, TABLE, "running_1", body(&batch), None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, StreamLoadError::LabelInProgress { ref status, .. } if status == "RUNNING"),
        "{err:?}"
    );
    assert!(f.rows(DB, TABLE).is_empty());
    assert_eq!(
        l.load(DB, TABLE, "running_1", body(&batch), None)
            .await
            .unwrap(),
        LoadOutcome::Loaded { rows: 1 }
    );
}

#[tokio::test]
async fn wrong_password_is_fatal_and_not_printed() {
    let f = fake().await;
    let wrong = "hunter2-WRONG-pw";
    let l = loader_with(&f.fe_url(), wrong);
    let err = l
        .load(DB, TABLE, "auth_1", body(&rows(1, "w")), None)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        matches!(err, StreamLoadError::Auth { status: 401, .. }),
        "{err:?}"
    );
    let shown = err.to_string();
    let debug = format!("{err:?}");
    assert!(shown.contains("loader"), "{shown}");
    for s in [&shown, &debug] {
        assert!(!s.contains(wrong), "{s}");
        assert!(!s.contains(PASSWORD), "{s}");
    }
    assert!(f.rows(DB, TABLE).is_empty());
    assert_eq!(f.requests(), (1, 1), "FE redirected, BE refused");
    assert_eq!(f.be_authorized_requests(), 0);
}

#[tokio::test]
async fn http_500_is_retryable() {
    let f = fake().await;
    let l = loader(&f);
    f.fail_next(1, FakeFailure::Http500);
    let err = l
        .load(DB, TABLE, "h500", body(&rows(1, "h")), None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, StreamLoadError::Http { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("injected internal error"), "{err}");
    assert_eq!(
        l.load(DB, TABLE, "h500", body(&rows(1, "h")), None)
            .await
            .unwrap(),
        LoadOutcome::Loaded { rows: 1 }
    );
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let l = loader_with(&format!("http://{addr}"), PASSWORD);
    let err = l
        .load(DB, TABLE, "net_1", body(&rows(1, "n")), None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(err, StreamLoadError::Network { .. }), "{err:?}");
    assert!(!err.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn missing_expect_header_is_refused_by_the_fake() {
    // The client always sends `Expect: 100-continue`; a raw request without it
    // is refused the way StarRocks does.
    let f = fake().await;
    let resp = reqwest::Client::new()
        .put(format!("{}/api/{DB}/{TABLE}/_stream_load", f.be_url()))
        .basic_auth("loader", Some(PASSWORD))
        .header("label", "raw_1")
        .header("format", "json")
        .header("strip_outer_array", "true")
        .body("[]")
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["Status"], "Fail");
    assert!(v["Message"].as_str().unwrap().contains("100-continue"));
}

#[tokio::test]
async fn invalid_label_is_a_config_error() {
    let f = fake().await;
    let l = loader(&f);
    for bad in ["", "has space", "semi;colon", &"x".repeat(129)] {
        let err = l
            .load(DB, TABLE, bad, b"[]".to_vec(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StreamLoadError::Config(_)),
            "{bad:?}: {err:?}"
        );
        assert!(!err.is_retryable());
    }
    assert_eq!(f.requests(), (0, 0));
}

#[test]
fn batch_label_is_deterministic_and_charset_limited() {
    let a = batch_label("alerts", &["worker-1", "2026-03-01", "17"]);
    assert_eq!(a, batch_label("alerts", &["worker-1", "2026-03-01", "17"]));
    assert_ne!(a, batch_label("alerts", &["worker-1", "2026-03-01", "18"]));
    assert_ne!(
        batch_label("p", &["ab", "c"]),
        batch_label("p", &["a", "bc"]),
        "parts are not simply concatenated"
    );
    assert!(a.starts_with("alerts_"));
    let weird = batch_label("alert event/día:1 ☃", &["x y", "ü"]);
    let long = batch_label(&"p".repeat(500), &["q"]);
    for l in [&a, &weird, &long] {
        assert!(!l.is_empty() && l.len() <= 128, "{l}");
        assert!(
            l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{l}"
        );
    }
}

#[test]
fn debug_hides_the_password() {
    let l = loader_with("http://127.0.0.1:8030", PASSWORD);
    let shown = format!("{l:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("127.0.0.1:8030"), "{shown}");
    let cfg = StreamLoadConfig {
        fe_url: "http://fe:8030".into(),
        user: "u".into(),
        password: Secret::new(PASSWORD),
        timeout: Duration::from_secs(1),
    };
    assert!(!format!("{cfg:?}").contains(PASSWORD));
    let opts = FakeStreamLoadOptions {
        password: PASSWORD.into(),
        ..FakeStreamLoadOptions::default()
    };
    assert!(!format!("{opts:?}").contains(PASSWORD));
}

#[test]
fn bad_config_is_refused() {
    let mk = |url: &str, user: &str| {
        StreamLoader::new(StreamLoadConfig {
            fe_url: url.into(),
            user: user.into(),
            password: Secret::new(PASSWORD),
            timeout: Duration::from_secs(1),
        })
    };
    assert!(mk("not a url", "u").is_err());
    assert!(mk("ftp://fe:8030", "u").is_err());
    assert!(mk("http://fe:8030", "").is_err());
    let err = mk("http://u:pw-in-url@fe:8030", "u").unwrap_err();
    assert!(!err.to_string().contains("pw-in-url"), "{err}");
    assert!(mk("http://fe:8030/", "u").is_ok());
}

#[tokio::test]
async fn silent_server_times_out_retryably() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept connections and never answer.
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.push(s);
        }
    });
    let l = StreamLoader::new(StreamLoadConfig {
        fe_url: format!("http://{addr}"),
        user: "loader".into(),
        password: Secret::new(PASSWORD),
        timeout: Duration::from_millis(200),
    })
    .unwrap();
    let err = l
        .load(DB, TABLE, "slow_1", body(&rows(1, "s")), None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, StreamLoadError::Network { timeout: true, .. }),
        "{err:?}"
    );
    hold.abort();
}

#[tokio::test]
async fn large_body_survives_the_redirect() {
    let f = fake().await;
    let l = loader(&f);
    let batch: Vec<Value> = (0..20_000)
        .map(|i| json!({"alert_name": format!("big-{i}"), "message": "x".repeat(200)}))
        .collect();
    let bytes = body(&batch);
    assert!(bytes.len() > 4 * 1024 * 1024);
    let out = l.load(DB, TABLE, "big_1", bytes, None).await.unwrap();
    assert_eq!(out, LoadOutcome::Loaded { rows: 20_000 });
    assert_eq!(f.rows(DB, TABLE).len(), 20_000);
}
