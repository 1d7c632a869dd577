//! `alertflow web` over HTTP: the overview page and `/api/overview` show a
//! finished run, the queues, the live worker and beat and the activity
//! counters (rates, the last hour per task, the per-minute chart), and put
//! dead letters on top; a broker that cannot be reached is named on the
//! page; a non-loopback address is refused without auth.

mod common;

use std::time::{Duration, Instant};

use alertflow::sandbox::SandboxConfig;
use alertflow::sink::starrocks::SqlSink;
use common::TestEnv;
use serde_json::Value;

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_overview_shows_runs_queues_workers_and_what_needs_a_look() {
    let sandbox = alertflow::sandbox::spawn(SandboxConfig {
        seed: 31,
        per_day: 200,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let base = sandbox.base_url.clone();
    let env = TestEnv::with("web", move |c| {
        common::use_sandbox(c, &base);
        c.sink.batch_interval = common::ms(200);
    });
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n\
         [[schedules]]\nname = \"nightly\"\ncron = \"30 0 * * *\"\ntask = \"fetch-day\"\n\
         args = {{ date = \"{{yesterday}}\" }}\n",
        env.config.mysql.database
    ));
    let w = env.start_worker(env.registry());
    // The overview shows the runs of the last days: yesterday's.
    let yesterday = (alertflow::lark::window::pacific_date(chrono::Utc::now())
        - chrono::Duration::days(1))
    .to_string();
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["run", &yesterday, "--wait", "--timeout", "60"])
        .env("ALERTFLOW_CONFIG", &file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let words: Vec<&str> = printed.split_whitespace().collect();
    let (run_id, task_id) = (words[2].to_string(), words[4].to_string());
    let (_web, url) = common::start_web(&file);

    let (status, page) = get(&format!("{url}/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Nothing needs a look."), "{page}");
    assert!(page.contains(&run_id), "the run is listed: {page}");
    assert!(page.contains(&format!("{}.lark", env.ns())), "{page}");
    assert!(page.contains(r#"http-equiv="refresh""#), "refreshes itself");
    let (status, css) = get(&format!("{url}/style.css")).await;
    assert_eq!(status, 200);
    assert!(css.contains("table"));

    let (status, body) = get(&format!("{url}/api/overview")).await;
    assert_eq!(status, 200);
    let o: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(o["problems"].as_array().unwrap().len(), 0, "{body}");
    let runs = o["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{body}");
    assert_eq!(runs[0]["run"]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["status"], "done");
    assert!(runs[0]["rows_written"].as_u64().unwrap() > 0);
    assert_eq!(o["workers"].as_array().unwrap().len(), 1, "{body}");
    // The activity counters: the run's tasks were published, delivered and
    // succeeded within the hour, on their queue families.
    let fetch = &o["last_hour"]["fetch-day"];
    assert!(fetch["published"].as_u64().unwrap() >= 1, "{body}");
    assert!(fetch["delivered"].as_u64().unwrap() >= 1, "{body}");
    assert!(fetch["succeeded"].as_u64().unwrap() >= 1, "{body}");
    // fetch-day's children, published by the worker, are counted too.
    let children = &o["last_hour"]["parse-batch"];
    assert!(children["published"].as_u64().unwrap() >= 1, "{body}");
    assert!(
        children["delivered"].as_u64().unwrap() >= children["published"].as_u64().unwrap(),
        "{body}"
    );
    let rates = o["rates"].as_object().unwrap();
    assert!(
        rates
            .values()
            .any(|r| r["delivered_per_min"].as_f64().unwrap() > 0.0),
        "{body}"
    );
    let per_minute = o["per_minute"].as_object().unwrap();
    assert!(!per_minute.is_empty(), "{body}");
    assert!(
        per_minute
            .values()
            .all(|s| s.as_array().unwrap().len() == 180)
    );
    assert!(
        page.contains("Tasks in the last hour") && page.contains("<svg"),
        "{page}"
    );
    assert!(page.contains("delivered/min"), "{page}");
    // A live beat is listed.
    let beats = alertflow::queue::state::BeatRegistry::new(
        alertflow::queue::context::redis_pool(&env.config).unwrap(),
        env.ns(),
    );
    let now = chrono::Utc::now();
    beats
        .heartbeat(
            &alertflow::queue::state::BeatInfo {
                id: "host-b:42:abcd".into(),
                host: "host-b".into(),
                pid: 42,
                schedules: 1,
                connected: true,
                started_at: now,
                heartbeat_at: now,
                version: "test".into(),
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let (_, page) = get(&format!("{url}/")).await;
    assert!(
        page.contains("host-b:42:abcd"),
        "the beat is listed: {page}"
    );
    assert!(
        o["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["kind"] == "dead"),
        "{body}"
    );

    // A dead letter goes on top, on the page and in the API.
    let (_c, publisher) = env.publisher().await;
    let registry = env.registry();
    let poison = env.envelope(
        &registry,
        "fetch-day",
        serde_json::json!({"date": "not-a-date"}),
    );
    publisher.publish(&poison).await.unwrap();
    env.wait_dead(1, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get(&format!("{url}/api/overview")).await;
        let o: Value = serde_json::from_str(&body).unwrap();
        let problems: Vec<String> = o["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        if problems.iter().any(|p| p.contains("dead letters")) {
            break;
        }
        assert!(Instant::now() < deadline, "{problems:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, page) = get(&format!("{url}/")).await;
    assert!(page.contains("Needs a look"), "{page}");
    assert!(
        page.contains(&format!("1 dead letters in {}.dead", env.ns())),
        "{page}"
    );

    // The dead letter's page lists it with its reason, and links to it.
    let (status, page) = get(&format!("{url}/dead")).await;
    assert_eq!(status, 200);
    assert!(page.contains(&poison.id.to_string()), "{page}");
    assert!(page.contains("1 message(s)"), "{page}");
    let (_, body) = get(&format!("{url}/api/dead")).await;
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["total"], 1, "{body}");
    assert_eq!(d["entries"][0]["id"], poison.id.to_string(), "{body}");
    assert_eq!(d["entries"][0]["task"], "fetch-day", "{body}");
    // Peeking put it back.
    let (_, body) = get(&format!("{url}/api/dead")).await;
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["total"], 1, "{body}");

    // Find a task by id: the run's fetch-day, the dead one, the run itself.
    let (status, page) = get(&format!("{url}/task?id={task_id}")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("succeeded") && page.contains("fetch-day"),
        "{page}"
    );
    let (_, page) = get(&format!("{url}/task?id={}", poison.id)).await;
    assert!(page.contains("dead"), "{page}");
    let (status, page) = get(&format!("{url}/task?id={run_id}")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("run ledger") && page.contains(&yesterday),
        "{page}"
    );
    let (status, _) = get(&format!("{url}/task?id={}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
    // What a user typed is shown escaped.
    let (status, page) = get(&format!("{url}/task?id=%3Cscript%3Ex%3C/script%3E")).await;
    assert_eq!(status, 400);
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&lt;script&gt;"), "{page}");

    // Schedules: next fires in the schedule's zone and UTC, never fired.
    let (status, page) = get(&format!("{url}/schedules")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("nightly") && page.contains("00:30:00 P"),
        "{page}"
    );
    assert!(page.contains("never"), "{page}");
    let (_, body) = get(&format!("{url}/api/schedules")).await;
    let sch: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sch["schedules"][0]["name"], "nightly", "{body}");
    assert_eq!(sch["schedules"][0]["next"].as_array().unwrap().len(), 3);
    w.stop().await;
    sink.close().await;
}

#[tokio::test]
async fn a_broker_that_cannot_be_reached_is_named_and_the_rest_is_shown() {
    let env = TestEnv::new("webnobroker");
    let file = env.config_file("");
    let (_web, url) = common::start_web_env(
        &file,
        &[("ALERTFLOW_BROKER_URL", "amqp://guest:guest@127.0.0.1:1/%2f")],
    );
    let (status, body) = get(&format!("{url}/api/overview")).await;
    assert_eq!(status, 200);
    let o: Value = serde_json::from_str(&body).unwrap();
    let problems: Vec<&str> = o["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        problems.iter().any(|p| p.starts_with("RabbitMQ:")),
        "{problems:?}"
    );
    // Redis answered: only the broker is named.
    assert!(
        !problems.iter().any(|p| p.contains("(Redis)")),
        "{problems:?}"
    );
    assert!(o["per_minute_from"].as_i64().unwrap() > 0, "{body}");
    let (status, page) = get(&format!("{url}/dead")).await;
    assert_eq!(status, 200);
    assert!(page.contains("class=\"problems\""), "{page}");
}

#[test]
fn a_non_loopback_address_is_refused_without_auth() {
    let env = TestEnv::new("webbind");
    let file = env.config_file("");
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["web", "--listen", "0.0.0.0:0"])
        .env("ALERTFLOW_CONFIG", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[web.auth]") && err.contains("127.0.0.1"),
        "{err}"
    );
}
