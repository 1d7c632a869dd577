//! The web pages in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/services`), driven through
//! WebDriver: the overview follows a backfill as it runs, a task is found
//! from the search box, a dead letter shows on its page and is replayed
//! from it, a schedule is paused and the running beat stops publishing it.
//! Screenshots of the pages are saved under `target/tmp/screenshots/`.

mod common;

use std::time::{Duration, Instant};

use alertflow::config::{HumanDuration, LimitSpec};
use alertflow::sandbox::SandboxConfig;
use alertflow::sink::starrocks::SqlSink;
use common::TestEnv;
use fantoccini::{Client, ClientBuilder, Locator};

/// chromedriver on a free port, killed on drop.
fn start_chromedriver() -> (common::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver (apt-get install chromium chromium-driver; scripts/services does)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (common::Child(child), port)
}

async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1700"]
        }),
    );
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless Chromium")
}

async fn shot(c: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The text of `css` once it is on the page.
async fn wait_text(c: &Client, css: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            return t;
        }
        assert!(Instant::now() < deadline, "{css} never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_follows_a_backfill_finds_a_task_and_sees_a_dead_letter() {
    let sandbox = alertflow::sandbox::spawn(SandboxConfig {
        seed: 41,
        per_day: 600,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let base = sandbox.base_url.clone();
    let env = TestEnv::with("browser", move |c| {
        common::use_sandbox(c, &base);
        c.sink.batch_interval = common::ms(200);
        // A few pages a second: the backfill takes long enough to watch.
        c.rate_limits.insert(
            "lark.api".into(),
            vec![LimitSpec {
                limit: 3,
                per: HumanDuration(Duration::from_secs(1)),
                burst: 1,
            }],
        );
    });
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n[beat]\nmetrics_listen = \"off\"\n\
         [[schedules]]\nname = \"heartbeat\"\nevery = \"1s\"\ntask = \"noop\"\n",
        env.config.mysql.database
    ));
    let (_driver, driver_port) = start_chromedriver();
    let (_web, url) = common::start_web(&file);
    let c = browser(driver_port).await;

    // Two days of backfill, the last two days.
    let today = alertflow::lark::window::pacific_date(chrono::Utc::now());
    let days: Vec<String> = (1..=2)
        .map(|k| (today - chrono::Duration::days(k)).to_string())
        .collect();
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["run", &days[0], &days[1]])
        .env("ALERTFLOW_CONFIG", &file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let task_id = printed.split_whitespace().nth(4).unwrap().to_string();
    let w = env.start_worker(env.registry());

    // The overview follows the runs: the runs table changes while pages are
    // written, until both days are done.
    c.goto(&format!("{url}/")).await.unwrap();
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        c.goto(&format!("{url}/")).await.unwrap();
        let runs = match c.find(Locator::Css("#runs")).await {
            Ok(e) => e.text().await.unwrap(),
            Err(_) => String::new(),
        };
        if seen.last() != Some(&runs) {
            seen.push(runs.clone());
        }
        if runs.matches("done").count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not done: {seen:#?}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(
        seen.len() >= 3,
        "the page showed the runs progress, not only their end: {seen:#?}"
    );
    assert!(seen.iter().any(|s| s.contains("in progress")), "{seen:#?}");
    assert!(text(&c, "#problems").await.contains("Nothing needs a look"));
    shot(&c, "overview").await;

    // Find the first day's fetch-day from the search box.
    let input = c.find(Locator::Css("input[name=id]")).await.unwrap();
    input.send_keys(&task_id).await.unwrap();
    c.find(Locator::Css("nav form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("/task?id=")
    {
        assert!(Instant::now() < deadline, "the search did not navigate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let task = text(&c, "#task").await;
    assert!(
        task.contains("fetch-day") && task.contains("succeeded"),
        "{task}"
    );
    shot(&c, "task").await;

    // A dead letter: on top of the overview, and on its page.
    let (_conn, publisher) = env.publisher().await;
    let poison = env.envelope(
        &env.registry(),
        "fetch-day",
        serde_json::json!({"date": "not-a-date"}),
    );
    publisher.publish(&poison).await.unwrap();
    env.wait_dead(1, Duration::from_secs(20)).await;
    c.goto(&format!("{url}/")).await.unwrap();
    let problems = text(&c, "#problems").await;
    assert!(problems.contains("dead letters"), "{problems}");
    c.find(Locator::LinkText("Dead letters"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let dead = text(&c, "#dead").await;
    assert!(dead.contains(&poison.id.to_string()), "{dead}");

    // A task that expired in the queue: replayed from the page, it runs,
    // and the queue shrinks.
    let mut expired = env.envelope(&env.registry(), "noop", serde_json::json!({}));
    expired.expires_at = Some(chrono::Utc::now() - chrono::Duration::minutes(1));
    publisher.publish(&expired).await.unwrap();
    env.wait_dead(2, Duration::from_secs(20)).await;
    c.goto(&format!("{url}/dead")).await.unwrap();
    assert!(text(&c, "#count").await.contains("2 message(s)"));
    shot(&c, "dead-letters").await;
    c.find(Locator::Css(&format!("input[value='{}']", expired.id)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#replay-selected"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = wait_text(&c, "#notice", Duration::from_secs(15)).await;
    assert!(
        notice.contains("replayed 1 dead letter(s)") && notice.contains(&expired.id.to_string()),
        "{notice}"
    );
    env.wait_status(
        &expired.id,
        alertflow::queue::state::TaskStatus::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    c.goto(&format!("{url}/dead")).await.unwrap();
    let count = text(&c, "#count").await;
    assert!(count.contains("1 message(s)"), "{count}");
    assert!(!text(&c, "#dead").await.contains(&expired.id.to_string()));

    // Pause a schedule while a beat runs: it stops publishing, then goes
    // on once resumed.
    let _beat = common::Child(
        std::process::Command::new(common::bin("alertflow-beat"))
            .env("ALERTFLOW_CONFIG", &file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let published = async || -> usize {
        let v: serde_json::Value = reqwest::get(format!("{url}/api/tasks?task=noop&limit=1000"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["tasks"].as_array().unwrap().len()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while published().await < 3 {
        assert!(Instant::now() < deadline, "the beat did not publish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.goto(&format!("{url}/schedules")).await.unwrap();
    c.find(Locator::Css("#schedule-heartbeat input[name=comment]"))
        .await
        .unwrap()
        .send_keys("maintenance")
        .await
        .unwrap();
    c.find(Locator::Css("#schedule-heartbeat button.pause"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = wait_text(&c, "#notice", Duration::from_secs(15)).await;
    assert!(notice.contains("heartbeat paused"), "{notice}");
    let row = text(&c, "#schedule-heartbeat").await;
    assert!(
        row.contains("paused by local") && row.contains("maintenance"),
        "{row}"
    );
    shot(&c, "schedules").await;
    // A fire in flight may still land; after that, nothing for 4 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = published().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(published().await, before, "the beat honours the pause");
    c.find(Locator::Css("#schedule-heartbeat button.resume"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = wait_text(&c, "#notice", Duration::from_secs(15)).await;
    assert!(notice.contains("heartbeat resumed"), "{notice}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while published().await <= before {
        assert!(Instant::now() < deadline, "the beat did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The other pages, for the README.
    for (path, name) in [
        ("/runs".to_string(), "runs"),
        (format!("/day?date={}", days[0]), "day"),
        ("/tasks?task=fetch-day".to_string(), "tasks"),
        ("/alarms".to_string(), "alarms"),
        ("/audit".to_string(), "audit"),
    ] {
        c.goto(&format!("{url}{path}")).await.unwrap();
        shot(&c, name).await;
    }
    c.goto(&format!("{url}/")).await.unwrap();
    shot(&c, "overview-after").await;

    c.close().await.unwrap();
    w.stop().await;
    sink.close().await;
}
