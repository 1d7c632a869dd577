//! The daily digest end to end: a sandboxed day through two real workers
//! (RabbitMQ, Redis, MariaDB) with extra `recommend`s and a reconcile gives
//! exactly one digest per receiver at the sandbox's bot and Slack webhook;
//! the digest's numbers equal a recomputation by plain SQL over seeded
//! rows; `--dry-run --json` sends nothing and says the same twice; and
//! `alertflow report` gives each alert's 7-day average and change.

mod common;

use std::time::{Duration, Instant};

use alertflow::notify::{ReceiverConfig, ReceiverKind};
use alertflow::sandbox::{SandboxConfig, SandboxHandle};
use alertflow::sink::starrocks::SqlSink;
use common::TestEnv;
use mysql_async::prelude::Queryable;
use serde_json::Value;

const TOKEN: &str = "sandbox";
const SLACK_PATH: &str = "/services/T0TEST/B0TEST/alertflowtesthook";

fn receivers_toml(sb: &SandboxHandle) -> String {
    format!(
        "[receivers.ops]\ntype = \"lark\"\nurl = \"{0}/open-apis/bot/v2/hook/{TOKEN}\"\n\
         [receivers.ops-slack]\ntype = \"slack\"\nurl = \"{0}{SLACK_PATH}\"\n\
         [digest]\nreceivers = [\"ops\", \"ops-slack\"]\ntop = 3\n\
         dashboard_url = \"https://dash.example\"\n",
        sb.base_url
    )
}

fn digest_env(name: &str, sb: &SandboxHandle) -> TestEnv {
    let base = sb.base_url.clone();
    TestEnv::with(name, move |c| {
        common::use_sandbox(c, &base);
        c.sink.batch_interval = common::ms(200);
        c.receivers.insert(
            "ops".into(),
            ReceiverConfig::new(
                ReceiverKind::Lark,
                format!("{base}/open-apis/bot/v2/hook/{TOKEN}"),
            ),
        );
        c.receivers.insert(
            "ops-slack".into(),
            ReceiverConfig::new(ReceiverKind::Slack, format!("{base}{SLACK_PATH}")),
        );
        c.digest.receivers = vec!["ops".into(), "ops-slack".into()];
        c.digest.top = 3;
        c.digest.dashboard_url = Some("https://dash.example".into());
    })
}

fn cli(file: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(args)
        .env("ALERTFLOW_CONFIG", file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn digest_cards(sb: &SandboxHandle) -> Vec<String> {
    sb.received_bot(TOKEN)
        .iter()
        .map(|c| {
            c["card"]["header"]["title"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .filter(|t| t.starts_with("Alert digest "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sandboxed_day_through_two_workers_and_a_reconcile_sends_one_digest() {
    let sb = alertflow::sandbox::spawn(SandboxConfig {
        seed: 16,
        per_day: 200,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let env = digest_env("digest1", &sb);
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n{}",
        env.config.mysql.database,
        receivers_toml(&sb)
    ));
    let _w1 = env.start_worker(env.registry());
    let _w2 = env.start_worker(env.registry());
    let day = (alertflow::lark::window::pacific_date(chrono::Utc::now())
        - chrono::Duration::days(1))
    .to_string();
    let (code, _, err) = cli(&file, &["run", &day, "--wait", "--timeout", "90"]);
    assert_eq!(code, 0, "{err}");
    // The date recomputed twice more, at once, as reconcile or a re-run
    // would, and a reconcile: each recommend publishes a digest.
    let args = format!("{{\"date\":\"{day}\"}}");
    for _ in 0..2 {
        let (code, _, err) = cli(&file, &["enqueue", "recommend", "--args", &args]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = cli(&file, &["reconcile", "--since", "2d"]);
    assert_eq!(code, 0, "{err}");

    let deadline = Instant::now() + Duration::from_secs(60);
    while digest_cards(&sb).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the other digest tasks (one per recommend) run to their end.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let cards = digest_cards(&sb);
    assert_eq!(cards.len(), 1, "one digest card for {day}: {cards:?}");
    assert!(cards[0].starts_with(&format!("Alert digest {day}: ")));
    assert_eq!(sb.received_slack(SLACK_PATH).len(), 1, "one Slack message");

    // The CLI goes through the same claim: nothing more is sent.
    let (code, out, err) = cli(&file, &["digest", &day]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already sent"), "{out}");
    assert_eq!(digest_cards(&sb).len(), 1);
    let claim = sink
        .digest_claim(day.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(claim.sent_at.is_some(), "{claim:?}");
    assert_eq!(claim.title, cards[0]);

    // The ledger: one entry per receiver, source digest, subject the date.
    let (code, out, _) = cli(&file, &["notifications", "list", "--json"]);
    assert_eq!(code, 0);
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
    let digest: Vec<&Value> = entries.iter().filter(|e| e["source"] == "digest").collect();
    assert_eq!(digest.len(), 2, "{entries:?}");
    assert!(
        digest
            .iter()
            .all(|e| e["subject"] == day && e["outcome"] == "sent")
    );
    sink.close().await;
}

const D: &str = "2026-03-08";

/// Firing rows of `name` on day `k` (0 = D-7 … 7 = D).
fn fired(name: &str, k: u32) -> u32 {
    match (name, k) {
        ("AlphaDown", 7) => 10,
        ("AlphaDown", k) => k + 1,
        ("BetaSlow", 0 | 3 | 6) => 2,
        ("GammaNew", 7) => 3,
        ("DeltaNoisy", 7) => 10,
        _ => 0,
    }
}

fn clusters(name: &str) -> &'static str {
    match name {
        "AlphaDown" => "prod-a,prod-b",
        "BetaSlow" => "prod-b",
        "GammaNew" => "prod-c",
        _ => "prod-a,prod-c,prod-d",
    }
}

/// Eight days of rows in `lark_alerts` and `alert_recommendations`, plus
/// `DeltaNoisy` once 20 days before (so it is not new).
async fn seed(env: &TestEnv) {
    let db = &env.config.mysql.database;
    let d: chrono::NaiveDate = D.parse().unwrap();
    let names = ["AlphaDown", "BetaSlow", "GammaNew", "DeltaNoisy"];
    let mut stmts = Vec::new();
    let alert = |date: chrono::NaiveDate, name: &str, i: u32, status: &str| {
        format!(
            "INSERT INTO `{db}`.lark_alerts VALUES ('m-{date}-{name}-{i}-{s}', 'm-{date}-{name}-{i}', 'oc', \
             '{status}', '{name}', 'critical', '{c}', 'us', 1, '{date} 12:00:00', '{date}', 't', 's', '{{}}', \
             '{date} 12:00:00')",
            s = &status[..1],
            c = clusters(name)
        )
    };
    let old = d - chrono::Days::new(20);
    stmts.push(alert(old, "DeltaNoisy", 0, "firing"));
    for k in 0..=7u32 {
        let date = d - chrono::Days::new(u64::from(7 - k));
        for name in names {
            let n = fired(name, k);
            for i in 0..n {
                stmts.push(alert(date, name, i, "firing"));
            }
            if n > 0 {
                stmts.push(alert(date, name, 0, "resolved"));
                let noisy = u8::from(n >= 3);
                let known = u8::from(name != "GammaNew" && name != "DeltaNoisy");
                stmts.push(format!(
                    "INSERT INTO `{db}`.alert_recommendations VALUES ('{date}', '{name}', 'critical', \
                     {n}, 1, 1, '{c}', 'us', {noisy}, {known}, 'Look at {name} first.\\nThen the rest.', \
                     '{date} 13:00:00')",
                    c = clusters(name)
                ));
            }
        }
    }
    let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
    common::sql(&env.config, &refs).await;
}

async fn query<T: mysql_async::prelude::FromRow + Send + 'static>(
    env: &TestEnv,
    q: String,
) -> Vec<T> {
    let mut c = mysql_async::Conn::new(alertflow::sink::starrocks::server_opts(&env.config))
        .await
        .unwrap();
    let v = c.query(q).await.unwrap();
    c.disconnect().await.unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_says_what_plain_sql_says_and_a_dry_run_sends_nothing() {
    let sb = alertflow::sandbox::spawn(SandboxConfig::default())
        .await
        .unwrap();
    let env = digest_env("digest2", &sb);
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    sink.close().await;
    seed(&env).await;
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n{}",
        env.config.mysql.database,
        receivers_toml(&sb)
    ));
    let db = env.config.mysql.database.clone();

    let (code, first, err) = cli(&file, &["digest", D, "--dry-run", "--json"]);
    assert_eq!(code, 0, "{err}");
    let (_, second, _) = cli(&file, &["digest", D, "--dry-run", "--json"]);
    assert_eq!(first, second, "same tables, same digest");
    assert!(sb.received_bot(TOKEN).is_empty() && sb.received_slack(SLACK_PATH).is_empty());
    let j: Value = serde_json::from_str(&first).unwrap();
    assert!(j["sent"].is_null(), "{j}");
    let data = &j["data"];

    // Volume and the 7-day average.
    let today: Vec<i64> = query(
        &env,
        format!(
            "SELECT COUNT(*) FROM `{db}`.lark_alerts WHERE status = 'firing' AND alert_date = '{D}'"
        ),
    )
    .await;
    assert_eq!(data["firing"].as_i64().unwrap(), today[0]);
    let before: Vec<i64> = query(
        &env,
        format!(
            "SELECT COUNT(*) FROM `{db}`.lark_alerts WHERE status = 'firing' \
             AND alert_date BETWEEN DATE_SUB('{D}', INTERVAL 7 DAY) AND DATE_SUB('{D}', INTERVAL 1 DAY)"
        ),
    )
    .await;
    let prev: i64 = data["previous"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_i64().unwrap())
        .sum();
    assert_eq!(prev, before[0]);
    assert_eq!(data["previous"].as_array().unwrap().len(), 7);
    let avg = before[0] as f64 / 7.0;
    let change = ((today[0] as f64 - avg) / avg * 100.0).round() as i64;
    assert_eq!(
        j["title"],
        format!(
            "Alert digest {D}: {} firing ({change:+}% vs 7-day avg {avg:.0})",
            today[0]
        )
    );

    // The top noisy alerts (top = 3), most fired first, ties by name.
    let noisy: Vec<(String, i64)> = query(
        &env,
        format!(
            "SELECT alert_name, fired_count FROM `{db}`.alert_recommendations \
             WHERE report_date = '{D}' AND is_noisy = 1 ORDER BY fired_count DESC, alert_name LIMIT 3"
        ),
    )
    .await;
    let got: Vec<(String, i64)> = data["noisy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["alert_name"].as_str().unwrap().to_string(),
                n["fired"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, noisy);
    assert_eq!(
        data["noisy"][0]["recommendation"],
        "Look at AlphaDown first."
    );

    // New names: seen on D and on none of the 30 days before.
    let new: Vec<String> = query(
        &env,
        format!(
            "SELECT DISTINCT a.alert_name FROM `{db}`.lark_alerts a WHERE a.alert_date = '{D}' \
             AND NOT EXISTS (SELECT 1 FROM `{db}`.lark_alerts b WHERE b.alert_name = a.alert_name \
             AND b.alert_date >= DATE_SUB('{D}', INTERVAL 30 DAY) AND b.alert_date < '{D}') \
             ORDER BY a.alert_name"
        ),
    )
    .await;
    assert_eq!(new, vec!["GammaNew".to_string()]);
    assert_eq!(data["new_names"], serde_json::json!(new));

    let unknown: Vec<String> = query(
        &env,
        format!(
            "SELECT alert_name FROM `{db}`.alert_recommendations WHERE report_date = '{D}' \
             AND in_catalogue = 0 ORDER BY alert_name"
        ),
    )
    .await;
    assert_eq!(data["not_in_catalogue"], serde_json::json!(unknown));

    // Clusters: every firing row of D counted for each of its clusters.
    let rows: Vec<String> = query(
        &env,
        format!(
            "SELECT clusters FROM `{db}`.lark_alerts WHERE status = 'firing' AND alert_date = '{D}'"
        ),
    )
    .await;
    let mut by: std::collections::BTreeMap<String, i64> = Default::default();
    for r in rows {
        for c in r.split(',') {
            *by.entry(c.to_string()).or_default() += 1;
        }
    }
    let mut want: Vec<(String, i64)> = by.into_iter().collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    want.truncate(3);
    let got: Vec<(String, i64)> = data["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().to_string(), c[1].as_i64().unwrap()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(data["link"], format!("https://dash.example/day?date={D}"));

    // Text, and a bad date named with exit 2.
    let (code, text, _) = cli(&file, &["digest", D, "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("dry run: nothing sent") && text.contains("GammaNew"),
        "{text}"
    );
    let (code, _, err) = cli(&file, &["digest", "2026-02-30", "--dry-run"]);
    assert_eq!(code, 2);
    assert!(err.contains("2026-02-30"), "{err}");

    // Sent for real once; a second send says it was already sent.
    let (code, out, err) = cli(&file, &["digest", D]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sent to ops"), "{out}");
    let (_, out, _) = cli(&file, &["digest", D]);
    assert!(out.contains("already sent"), "{out}");
    assert_eq!(sb.received_bot(TOKEN).len(), 1);
    assert_eq!(sb.received_slack(SLACK_PATH).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_gives_each_alert_its_seven_day_average_and_change() {
    let env = TestEnv::new("trends");
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    seed(&env).await;
    let trends = sink.alert_trends(D.parse().unwrap()).await.unwrap();
    sink.close().await;
    let by: std::collections::BTreeMap<&str, _> =
        trends.iter().map(|t| (t.alert_name.as_str(), t)).collect();
    // AlphaDown: 1..7 before (28 / 7 = 4), 10 on D.
    assert_eq!(by["AlphaDown"].fired, 10);
    assert!((by["AlphaDown"].avg_7d - 4.0).abs() < 1e-9);
    assert_eq!(by["AlphaDown"].change_percent, Some(150));
    // BetaSlow: 2 on days 0, 3, 6 before; not on D.
    assert_eq!(by["BetaSlow"].fired, 0);
    assert!((by["BetaSlow"].avg_7d - 6.0 / 7.0).abs() < 1e-9);
    assert_eq!(by["BetaSlow"].change_percent, Some(-100));
    // New on D: no average, no change.
    assert_eq!(by["GammaNew"].fired, 3);
    assert_eq!(by["GammaNew"].avg_7d, 0.0);
    assert_eq!(by["GammaNew"].change_percent, None);
    assert_eq!(trends.len(), 4);

    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n",
        env.config.mysql.database
    ));
    let (code, out, err) = cli(&file, &["report", D, "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    let alpha = j["trends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["alert_name"] == "AlphaDown")
        .unwrap()
        .clone();
    assert_eq!(alpha["avg_7d"], 4.0);
    assert_eq!(alpha["change_percent"], 150);
    let (_, text, _) = cli(&file, &["report", D]);
    assert!(text.contains("AVG 7D") && text.contains("+150%"), "{text}");
}

/// A receiver that fails makes the `digest` task retry; the retry sends to
/// that receiver only (the others took it already under the same claim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_receiver_is_retried_alone() {
    let sb = alertflow::sandbox::spawn(SandboxConfig::default())
        .await
        .unwrap();
    let env = digest_env("digest-retry", &sb);
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    seed(&env).await;
    // Slack is down for the three attempts of the first delivery.
    sb.fail_next(
        alertflow::sandbox::Endpoint::Slack,
        3,
        alertflow::sandbox::Fault::Http500,
    );
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    let e = env.envelope(&reg, "digest", serde_json::json!({"date": D}));
    publisher.publish(&e).await.unwrap();
    env.wait_status(
        &e.id,
        alertflow::queue::state::TaskStatus::Succeeded,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(digest_cards(&sb).len(), 1, "Lark got it once");
    assert_eq!(
        sb.received_slack(SLACK_PATH).len(),
        1,
        "Slack got it on the retry"
    );
    let ledger = sink
        .notifications_since(alertflow::sink::ledger::epoch(), Some(D), 10)
        .await
        .unwrap();
    let mut rows: Vec<(String, String)> = ledger
        .iter()
        .map(|r| (r.receiver.clone(), r.outcome.clone()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("ops".to_string(), "sent".to_string()),
            ("ops-slack".to_string(), "failed".to_string()),
            ("ops-slack".to_string(), "sent".to_string()),
        ]
    );
    w.stop().await;
    sink.close().await;
}
