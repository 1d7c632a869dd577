//! Issue 17.1: broker node lists. A worker given several nodes connects to
//! one that answers, and when its node goes away it moves on to the next
//! and keeps consuming; every node's password stays out of errors.
//!
//! The two "nodes" here are TCP forwarders (each a port of its own) in
//! front of the local RabbitMQ, so one can be cut while the other stays;
//! the 3-node RabbitMQ cluster test of the issue is separate.

mod common;

use std::time::{Duration, Instant};

use alertflow::config::SecretUrl;
use alertflow::queue::state::{TaskStatus, WorkerRegistry};
use common::TestEnv;
use serde_json::json;

async fn node() -> common::Forwarder {
    common::forward("127.0.0.1:0", "127.0.0.1:5672").await
}

fn url(port: u16) -> SecretUrl {
    SecretUrl::new(format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
}

async fn worker_node(
    env: &TestEnv,
    services: &alertflow::queue::context::Services,
) -> Option<String> {
    let list = WorkerRegistry::new(services.redis.clone(), env.ns())
        .list()
        .await
        .unwrap();
    list.first().and_then(|w| w.broker_node.clone())
}

#[tokio::test]
async fn a_worker_moves_to_the_next_node_when_its_node_is_cut_and_keeps_consuming() {
    let (a, b) = (node().await, node().await);
    let env = TestEnv::with("brokernodes", |c| {
        // A dead port first, then the two forwarders.
        c.broker.urls = vec![url(1), url(a.port), url(b.port)];
        c.broker.connect_timeout = alertflow::config::HumanDuration(Duration::from_secs(2));
    });
    let reg = env.registry();
    let w = env.start_worker(reg.clone());
    let (_conn, publisher) = env.publisher().await;
    let e = env.envelope(&reg, "noop", json!({}));
    publisher.publish(&e).await.unwrap();
    env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
    // Whichever node it started at, it is on a forwarder now.
    let deadline = Instant::now() + Duration::from_secs(10);
    let on = loop {
        if let Some(n) = worker_node(&env, &w.services).await {
            break n;
        }
        assert!(Instant::now() < deadline, "the worker registers its node");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let port_of = |n: &str| -> u16 {
        alertflow::queue::config::node_host(n)
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(!on.contains("guest:guest"), "redacted: {on}");
    let first = port_of(&on);
    assert!(first == a.port || first == b.port, "{on}");
    // Cut the worker's node (publish through the other one).
    let (cut, other) = if first == a.port { (&a, &b) } else { (&b, &a) };
    cut.cut.cancel();
    let mut c = (*env.config).clone();
    c.broker.urls = vec![url(other.port)];
    let conn = alertflow::queue::publisher::connect(&c, "test")
        .await
        .unwrap();
    let p2 = alertflow::queue::publisher::Publisher::open(&conn, env.topology(), 8)
        .await
        .unwrap();
    let t = Instant::now();
    let e = env.envelope(&reg, "noop", json!({}));
    p2.publish(&e).await.unwrap();
    env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(30))
        .await;
    let recovered = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now_on = worker_node(&env, &w.services).await.unwrap_or_default();
        if port_of(&now_on) == other.port {
            break;
        }
        assert!(Instant::now() < deadline, "still on {now_on}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered < Duration::from_secs(30), "{recovered:?}");
    let metrics = w.services.metrics.render();
    assert!(
        metrics.contains(&format!(
            "alertflow_broker_node{{node=\"127.0.0.1:{}\"}} 1",
            other.port
        )),
        "{metrics}"
    );
    drop(p2);
    alertflow::queue::connect::close(conn).await;
    w.stop().await;
}

#[tokio::test]
async fn every_node_of_a_list_is_redacted_when_none_answers() {
    let env = TestEnv::new("brokernodes-redact");
    let config = env.config_file("");
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["queues"])
        .env("ALERTFLOW_CONFIG", &config)
        .env(
            "ALERTFLOW_BROKER_URL",
            "amqp://u:first-secret@127.0.0.1:1/%2f,amqp://u:second-secret@127.0.0.1:2/%2f",
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot connect to RabbitMQ at amqp://u:***@127.0.0.1:"),
        "{err}"
    );
    assert!(
        !err.contains("first-secret") && !err.contains("second-secret"),
        "{err}"
    );
}
