//! Dashboard actions over HTTP, against the real `alertflow web`, RabbitMQ,
//! Redis and MariaDB: sign-in and roles, CSRF, the audit log; replaying,
//! purging, retrying and revoking tasks; pausing schedules; starting runs;
//! searching tasks.

mod common;

use std::time::{Duration, Instant};

use alertflow::queue::state::TaskStatus;
use alertflow::sink::starrocks::SqlSink;
use base64::Engine;
use common::TestEnv;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, LOCATION, WWW_AUTHENTICATE};
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// GET with an optional Authorization header: status and body.
async fn get(url: &str, auth: Option<&str>) -> (StatusCode, String) {
    let mut r = client().get(url);
    if let Some(a) = auth {
        r = r.header(AUTHORIZATION, a);
    }
    let r = r.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn get_json(url: &str, auth: Option<&str>) -> Value {
    let (status, body) = get(url, auth).await;
    assert_eq!(status, StatusCode::OK, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

fn encode(form: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        s.append_pair(k, v);
    }
    s.finish()
}

/// POST a form: status, Location header, body.
async fn post(
    url: &str,
    auth: Option<&str>,
    form: &[(&str, &str)],
) -> (StatusCode, Option<String>, String) {
    let mut r = client()
        .post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(form));
    if let Some(a) = auth {
        r = r.header(AUTHORIZATION, a);
    }
    let r = r.send().await.unwrap();
    let location = r
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_string());
    (r.status(), location, r.text().await.unwrap())
}

fn decoded(location: &str) -> String {
    url::form_urlencoded::parse(location.split_once('?').map_or("", |(_, q)| q).as_bytes())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

async fn audit(url: &str, auth: Option<&str>) -> Vec<(String, String, String)> {
    let a = get_json(&format!("{url}/api/audit"), auth).await;
    a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_roles_csrf_and_the_audit_log() {
    let env = TestEnv::new("webauth");
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let password = "correct horse battery";
    let hash = alertflow::web::auth::hash_password(password).unwrap();
    let (token, digest) = alertflow::web::auth::new_token();
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n\
         [[schedules]]\nname = \"nightly\"\ncron = \"30 0 * * *\"\ntask = \"noop\"\n\
         [web.auth]\n\
         [[web.auth.users]]\nname = \"ann\"\nrole = \"admin\"\npassword_hash = {hash:?}\n\
         [[web.auth.users]]\nname = \"robot\"\nrole = \"viewer\"\ntoken_sha256 = {digest:?}\n",
        env.config.mysql.database
    ));
    // With users configured, any address may be served.
    let (_web, url) = common::start_web_on(&file, "0.0.0.0:0");
    let url = url.replace("0.0.0.0", "127.0.0.1");
    let ann = basic("ann", password);
    let robot = format!("Bearer {token}");

    // Nobody gets in without credentials, or with wrong ones.
    let r = client().get(format!("{url}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(WWW_AUTHENTICATE).is_some());
    for bad in [
        basic("ann", "wrong"),
        basic("robot", &token),
        "Bearer af_nope".to_string(),
    ] {
        let (status, _) = get(&format!("{url}/api/overview"), Some(&bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    // Both read; the session names the user and the role.
    let (status, page) = get(&format!("{url}/schedules"), Some(&ann)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Pause"), "an admin sees the actions: {page}");
    let (status, page) = get(&format!("{url}/schedules"), Some(&robot)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("Pause"), "a viewer sees no actions: {page}");
    let s = get_json(&format!("{url}/api/session"), Some(&ann)).await;
    assert_eq!(
        (s["user"].as_str(), s["role"].as_str()),
        (Some("ann"), Some("admin"))
    );
    let ann_csrf = s["csrf"].as_str().unwrap().to_string();
    let s = get_json(&format!("{url}/api/session"), Some(&robot)).await;
    assert_eq!(s["role"], "viewer");
    let robot_csrf = s["csrf"].as_str().unwrap().to_string();
    assert_ne!(ann_csrf, robot_csrf);

    let pause = format!("{url}/actions/schedule/pause");
    // A viewer cannot act, even with its own token.
    let (status, _, body) = post(
        &pause,
        Some(&robot),
        &[("csrf", &robot_csrf), ("name", "nightly")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("viewers cannot act"), "{body}");
    // An admin without a CSRF token (or with another user's) cannot either.
    for csrf in ["", robot_csrf.as_str()] {
        let (status, _, body) =
            post(&pause, Some(&ann), &[("csrf", csrf), ("name", "nightly")]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("CSRF"), "{body}");
    }
    let sch = get_json(&format!("{url}/api/schedules"), Some(&ann)).await;
    assert!(sch["schedules"][0]["paused"].is_null(), "{sch}");

    // With it, the pause is taken, and the page says so.
    let (status, location, _) = post(
        &pause,
        Some(&ann),
        &[
            ("csrf", &ann_csrf),
            ("name", "nightly"),
            ("comment", "db upgrade"),
            ("back", "/schedules"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(location.starts_with("/schedules?notice="), "{location}");
    assert!(decoded(&location).contains("nightly paused"), "{location}");
    let sch = get_json(&format!("{url}/api/schedules"), Some(&robot)).await;
    assert_eq!(sch["schedules"][0]["paused"]["by"], "ann", "{sch}");
    assert_eq!(
        sch["schedules"][0]["paused"]["comment"], "db upgrade",
        "{sch}"
    );
    let (_, page) = get(&format!("{url}{location}"), Some(&ann)).await;
    assert!(
        page.contains("paused") && page.contains("db upgrade"),
        "{page}"
    );
    // JSON clients get JSON.
    let r = client()
        .post(format!("{url}/actions/schedule/resume"))
        .header(AUTHORIZATION, &ann)
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(&[("csrf", ann_csrf.as_str()), ("name", "nightly")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let sch = get_json(&format!("{url}/api/schedules"), Some(&ann)).await;
    assert!(sch["schedules"][0]["paused"].is_null(), "{sch}");
    // An unknown schedule fails, and says which.
    let (status, location, _) =
        post(&pause, Some(&ann), &[("csrf", &ann_csrf), ("name", "nope")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(decoded(&location.unwrap()).contains("failure=no enabled schedule named \"nope\""));

    // Every attempt is in the audit log, refusals included, newest first.
    let entries = audit(&url, Some(&robot)).await;
    let want = [
        ("ann", "schedule.pause", "failed"),
        ("ann", "schedule.resume", "ok"),
        ("ann", "schedule.pause", "ok"),
        ("ann", "schedule.pause", "denied"),
        ("ann", "schedule.pause", "denied"),
        ("robot", "schedule.pause", "denied"),
    ];
    let got: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    // Newest first, also within one second.
    assert_eq!(got[0], ("ann", "schedule.pause", "failed"), "{entries:?}");
    assert_eq!(got[1], ("ann", "schedule.resume", "ok"), "{entries:?}");
    let mut sorted_got = got.clone();
    sorted_got.sort();
    let mut sorted_want = want.to_vec();
    sorted_want.sort();
    assert_eq!(sorted_got, sorted_want, "{entries:?}");
    let (_, page) = get(&format!("{url}/audit"), Some(&robot)).await;
    assert!(
        page.contains("schedule.pause")
            && page.contains("viewers cannot act")
            && page.contains("no enabled schedule named"),
        "the page shows the actions, refusals and failures: {page}"
    );

    // No secret reaches a page or an answer.
    for path in [
        "/",
        "/schedules",
        "/audit",
        "/api/audit",
        "/api/session",
        "/api/overview",
    ] {
        let (_, body) = get(&format!("{url}{path}"), Some(&ann)).await;
        for secret in [password, token.as_str(), digest.as_str(), hash.as_str()] {
            assert!(!body.contains(secret), "{path} shows a secret");
        }
    }
    sink.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_replayed_purged_tasks_revoked_retried_and_found() {
    let env = TestEnv::new("webact");
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n",
        env.config.mysql.database
    ));
    let (_web, url) = common::start_web(&file);
    // Without auth: the local admin, and loopback host names only.
    let r = client()
        .get(format!("{url}/"))
        .header(HOST, "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let s = get_json(&format!("{url}/api/session"), None).await;
    assert_eq!(
        (s["user"].as_str(), s["role"].as_str()),
        (Some("local"), Some("admin"))
    );
    let csrf = s["csrf"].as_str().unwrap().to_string();

    // A queued task, revoked before any worker runs it.
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["enqueue", "noop"])
        .env("ALERTFLOW_CONFIG", &file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let noop: uuid::Uuid = printed
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no task id in {printed:?}"));
    let (_, page) = get(&format!("{url}/task?id={noop}"), None).await;
    assert!(page.contains("Revoke"), "{page}");
    let (status, location, _) = post(
        &format!("{url}/actions/task/revoke"),
        None,
        &[("csrf", &csrf), ("id", &noop.to_string())],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(decoded(&location.unwrap()).contains("revoked"));
    let w = env.start_worker(env.registry());
    // And a task that dies: a sleep with bad arguments.
    let (_c, publisher) = env.publisher().await;
    let registry = env.registry();
    let poison = env.envelope(&registry, "sleep", serde_json::json!({"ms": "long"}));
    env.topology()
        .declare(publisher.channel(), std::slice::from_ref(&poison.queue))
        .await
        .unwrap();
    publisher.publish(&poison).await.unwrap();
    let dead = env.wait_dead(2, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    let st = env
        .wait_status(&noop, TaskStatus::Dead, Duration::from_secs(10))
        .await;
    assert!(
        st.error.unwrap().starts_with("revoked"),
        "the noop never ran"
    );

    // Filtered by reason, the page lists the revoked one only.
    let d = get_json(&format!("{url}/api/dead?reason=revoked"), None).await;
    let ids: Vec<&str> = d["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![noop.to_string().as_str()], "{d}");
    let (_, page) = get(&format!("{url}/dead?task=sleep"), None).await;
    assert!(
        page.contains(&poison.id.to_string()) && !page.contains(&noop.to_string()),
        "{page}"
    );

    // Retry the revoked task from its page: it leaves the dead-letter queue,
    // is no longer revoked, and runs.
    let (status, location, _) = post(
        &format!("{url}/actions/task/retry"),
        None,
        &[("csrf", &csrf), ("id", &noop.to_string())],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(
        decoded(&location).contains("retried from the dead-letter queue"),
        "{location}"
    );
    env.wait_status(&noop, TaskStatus::Succeeded, Duration::from_secs(20))
        .await;
    let v = get_json(&format!("{url}/api/task?id={noop}"), None).await;
    let steps: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&"dead") && steps.last() == Some(&"succeeded"),
        "{v}"
    );
    assert_eq!(v["revoked"], false);
    assert_eq!(env.dead_letters().await.len(), 1);

    // Replay all that match a filter: the sleep dies again (bad arguments).
    let (status, location, _) = post(
        &format!("{url}/actions/dead/replay"),
        None,
        &[
            ("csrf", &csrf),
            ("all_matching", "1"),
            ("task", "sleep"),
            ("back", "/dead?task=sleep"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(
        location.starts_with("/dead?task=sleep&notice="),
        "{location}"
    );
    assert!(decoded(&location).contains(&format!("replayed 1 dead letter(s): {}", poison.id)));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = get_json(&format!("{url}/api/task?id={}", poison.id), None).await;
        let deaths = h["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["status"] == "dead")
            .count();
        if h["state"]["status"] == "dead" && env.dead_letters().await.len() == 1 && deaths >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Search: by name and an argument, by status.
    let f = get_json(&format!("{url}/api/tasks?task=sleep&arg=ms%3Dlong"), None).await;
    let found: Vec<&str> = f["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, vec![poison.id.to_string().as_str()], "{f}");
    let f = get_json(&format!("{url}/api/tasks?task=sleep&arg=ms%3Dshort"), None).await;
    assert!(f["tasks"].as_array().unwrap().is_empty(), "{f}");
    let f = get_json(&format!("{url}/api/tasks?status=succeeded"), None).await;
    assert!(
        f["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == noop.to_string()),
        "{f}"
    );
    let (status, page) = get(&format!("{url}/tasks?task=noop"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&noop.to_string()), "{page}");
    let (status, _) = get(&format!("{url}/tasks?status=bogus"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Purge: refused without the queue's name typed, done with it.
    let dead_queue = format!("{}.dead", env.ns());
    let (_, location, _) = post(
        &format!("{url}/actions/dead/purge"),
        None,
        &[("csrf", &csrf), ("confirm", "yes")],
    )
    .await;
    assert!(decoded(&location.unwrap()).contains("failure=not purged"));
    assert_eq!(env.dead_letters().await.len(), 1);
    let (_, location, _) = post(
        &format!("{url}/actions/dead/purge"),
        None,
        &[("csrf", &csrf), ("confirm", &dead_queue)],
    )
    .await;
    assert!(decoded(&location.unwrap()).contains("purged 1 dead letter(s)"));
    assert_eq!(env.dead_letters().await.len(), 0);

    // A dead task no longer in the queue is published again from its state
    // (its arguments were kept whole): it dies again, in the queue again.
    let (_, location, _) = post(
        &format!("{url}/actions/task/retry"),
        None,
        &[("csrf", &csrf), ("id", &poison.id.to_string())],
    )
    .await;
    let location = location.unwrap();
    assert!(decoded(&location).contains("published again"), "{location}");
    let dead = env.wait_dead(1, Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, poison.id.to_string());
    // A task that succeeded is not retried.
    let (_, location, _) = post(
        &format!("{url}/actions/task/retry"),
        None,
        &[("csrf", &csrf), ("id", &noop.to_string())],
    )
    .await;
    assert!(
        decoded(&location.unwrap()).contains("is succeeded: only a dead or failed task is retried")
    );

    let entries = audit(&url, None).await;
    let actions: Vec<String> = entries
        .iter()
        .map(|(a, act, r)| format!("{a} {act} {r}"))
        .collect();
    for want in [
        "local task.revoke ok",
        "local task.retry ok",
        "local dead.replay ok",
        "local dead.purge failed",
        "local dead.purge ok",
    ] {
        assert!(actions.iter().any(|a| a == want), "{want}: {actions:?}");
    }
    w.stop().await;
    sink.close().await;
}

#[test]
fn a_bad_auth_config_stops_the_server_at_start_naming_the_key() {
    let env = TestEnv::new("webbadauth");
    let file = env.config_file(
        "[[web.auth.users]]\nname = \"ann\"\nrole = \"admin\"\npassword_hash = \"hunter2\"\n",
    );
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["web", "--listen", "0.0.0.0:0"])
        .env("ALERTFLOW_CONFIG", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web.auth.users[0].password_hash") && err.contains("hash-password"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the value is not echoed: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_demo_serves_the_demo_namespace_with_the_example_schedules() {
    let env = TestEnv::new("webdemo");
    let file = env.config_file("");
    let (_web, url) = common::start_web_with(&file, &["--demo", "--listen", "127.0.0.1:0"]);
    let (_, page) = get(&format!("{url}/schedules"), None).await;
    assert!(page.contains(&format!("{}-demo", env.ns())), "{page}");
    let sch = get_json(&format!("{url}/api/schedules"), None).await;
    let names: Vec<&str> = sch["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["daily-ingest", "hourly-today", "reconcile"],
        "{sch}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_added_and_expired_from_the_dashboard_and_the_ledger_is_filtered() {
    let env = TestEnv::new("websilence");
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n",
        env.config.mysql.database
    ));
    let (_web, url) = common::start_web(&file);
    let csrf = get_json(&format!("{url}/api/session"), None).await["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let add = format!("{url}/actions/silence/add");
    // Refused: no span, an unknown check.
    let (_, location, _) = post(
        &add,
        None,
        &[
            ("csrf", &csrf),
            ("match", "task=fetch-day"),
            ("comment", "x"),
        ],
    )
    .await;
    assert!(decoded(&location.unwrap()).contains("failure=say for how long"));
    let (_, location, _) = post(
        &add,
        None,
        &[
            ("csrf", &csrf),
            ("check", "nope"),
            ("for", "1h"),
            ("comment", "x"),
        ],
    )
    .await;
    assert!(decoded(&location.unwrap()).contains("failure=--check nope"));
    // Added.
    let (status, location, _) = post(
        &add,
        None,
        &[
            ("csrf", &csrf),
            ("match", "task=fetch-day queue=~.*lark"),
            ("for", "2h"),
            ("comment", "Lark outage"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = decoded(&location.unwrap());
    let id = location
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{location}"))
        .to_string();
    let v = get_json(&format!("{url}/api/silences"), None).await;
    let s = &v["silences"][0];
    assert_eq!(s["id"], id.as_str(), "{v}");
    assert_eq!(s["author"], "local");
    assert_eq!(s["matchers"].as_array().unwrap().len(), 2);
    let (_, page) = get(&format!("{url}/silences"), None).await;
    assert!(
        page.contains("Lark outage") && page.contains("Expire"),
        "{page}"
    );
    // Expired.
    let (_, location, _) = post(
        &format!("{url}/actions/silence/expire"),
        None,
        &[("csrf", &csrf), ("id", &id)],
    )
    .await;
    assert!(decoded(&location.unwrap()).contains(&format!("silence {id} expired")));
    let s = sink.silence(&id).await.unwrap().unwrap();
    assert_eq!(s.expired_by, "local");

    // The ledger, filtered by check or task.
    let entry = |subject: &str| alertflow::sink::notifications::NotificationRecord {
        id: uuid::Uuid::new_v4().to_string(),
        at: alertflow::sink::ledger::now(),
        source: "alarm".into(),
        subject: subject.into(),
        event: "firing".into(),
        labels: serde_json::json!({"labels": {"cluster": "a"}}),
        receiver: "ops".into(),
        outcome: "sent".into(),
        attempts: 1,
        error: String::new(),
        title: format!("[FIRING:1] {subject}"),
    };
    sink.record_notifications(&[entry("cpu-high"), entry("disk-full")])
        .await
        .unwrap();
    let v = get_json(&format!("{url}/api/notifications?check=cpu-high"), None).await;
    let subjects: Vec<&str> = v["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["cpu-high"], "{v}");
    let (_, page) = get(&format!("{url}/silences?check=disk-full"), None).await;
    // The ledger's subject cell, not the filter box that echoes it.
    assert!(page.contains("<td>disk-full</td>"), "{page}");
    assert!(!page.contains("<td>cpu-high</td>"), "{page}");
    let (_, page) = get(&format!("{url}/silences"), None).await;
    assert!(
        page.contains("<td>disk-full</td>") && page.contains("<td>cpu-high</td>"),
        "unfiltered, both: {page}"
    );
    let entries = audit(&url, None).await;
    let actions: Vec<String> = entries
        .iter()
        .map(|(a, act, r)| format!("{a} {act} {r}"))
        .collect();
    for want in [
        "local silence.add ok",
        "local silence.add failed",
        "local silence.expire ok",
    ] {
        assert!(actions.iter().any(|a| a == want), "{want}: {actions:?}");
    }
    sink.close().await;
}
