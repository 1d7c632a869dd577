//! The README's "add a task" example, `http-probe`, runs in a real worker
//! against a real HTTP server: an endpoint that answers is a success, one
//! that keeps failing is retried and dead-lettered with its last answer, and
//! a URL's password never reaches the task's state or the dead letter.

mod common;

use alertflow::queue::message::DeadReason;

use std::time::Duration;

use alertflow::queue::state::TaskStatus;
use common::TestEnv;
use serde_json::json;

/// A server with `/up` (200) and `/down` (503); returns its base URL.
async fn serve() -> String {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/up", get(|| async { "ok" }))
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn http_probe_succeeds_on_the_expected_status_and_dead_letters_a_dead_endpoint() {
    let env = TestEnv::with("probe", |c| c.worker.max_retries = 1);
    let base = serve().await;
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let up = env.envelope(&reg, "http-probe", json!({"url": format!("{base}/up")}));
    let down_url = base.replace("http://", "http://probe:s3cret-pw@") + "/down";
    let down = env.envelope(&reg, "http-probe", json!({"url": down_url}));
    publisher.publish(&up).await.unwrap();
    publisher.publish(&down).await.unwrap();
    let w = env.start_worker(reg);

    env.wait_status(&up.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
    let st = env
        .wait_status(&down.id, TaskStatus::Dead, Duration::from_secs(20))
        .await;
    let error = st.error.unwrap_or_default();
    assert!(error.contains("answered 503, expected 200"), "{error}");
    assert!(!error.contains("s3cret-pw"), "{error}");
    let dead = env.wait_dead(1, Duration::from_secs(5)).await;
    assert_eq!(dead[0].id, down.id.to_string());
    assert_eq!(dead[0].reason, DeadReason::RetriesExhausted);
    assert_eq!(dead[0].attempts, 2);
    assert!(!dead[0].last_error.contains("s3cret-pw"));
    w.stop().await;
}

#[tokio::test]
async fn http_probe_arguments_are_checked_before_anything_is_published() {
    let env = TestEnv::new("probe-args");
    let cfg = env.config_file("");
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["enqueue", "http-probe", "--args", r#"{"url": "ftp://x/"}"#])
        .env("ALERTFLOW_CONFIG", &cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("url: must be http:// or https://"),
        "{stderr}"
    );
}
