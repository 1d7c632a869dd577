//! `alertflow web`'s runs, day and alarms pages over HTTP, against a real
//! `alertflow web` process: after a sandboxed run of a day, `/runs` lists it
//! under the alert-volume chart and `/day` shows its timeline and the
//! recommendations `alertflow report` prints; `/alarms` shows task health
//! and an InfluxDB alarm a real `influx-check` raised, never a receiver's
//! URL.

mod common;

use std::time::{Duration, Instant};

use alertflow::lark::card::AlertRow;
use alertflow::notify::health::{HealthNotifier, HealthStore, Record, Status};
use alertflow::queue::message::Envelope;
use alertflow::queue::state::TaskStatus;
use alertflow::sandbox::SandboxConfig;
use alertflow::sandbox::influx_v2::{self, FluxAnswer, FluxColumn, FluxTable, InfluxV2Config};
use alertflow::sink::starrocks::{SqlSink, StoredAlert};
use common::TestEnv;
use serde_json::{Value, json};

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get_json(url: &str) -> (u16, Value) {
    let (status, body) = get(url).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (status, v)
}

/// `s` as the pages print it (HTML-escaped).
fn esc(s: &str) -> String {
    maud::html! { (s) }.into_string()
}

fn cell(n: impl std::fmt::Display) -> String {
    format!(r#"<td class="num">{n}</td>"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_and_day_pages_show_a_sandboxed_run_and_its_recommendations() {
    let sandbox = alertflow::sandbox::spawn(SandboxConfig {
        seed: 47,
        per_day: 200,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let base = sandbox.base_url.clone();
    let env = TestEnv::with("webpages", move |c| {
        common::use_sandbox(c, &base);
        c.sink.batch_interval = common::ms(200);
    });
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n",
        env.config.mysql.database
    ));
    let w = env.start_worker(env.registry());
    let yesterday =
        alertflow::lark::window::pacific_date(chrono::Utc::now()) - chrono::Duration::days(1);
    let day = yesterday.to_string();
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["run", &day, "--wait", "--timeout", "60"])
        .env("ALERTFLOW_CONFIG", &file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let run_id = printed.split_whitespace().nth(2).unwrap().to_string();
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["report", &day, "--json"])
        .env("ALERTFLOW_CONFIG", &file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = report["recommendations"].as_array().unwrap().clone();
    assert!(recs.len() > 1, "the sandbox day has alerts: {report}");
    // What the database says the run did.
    let ledger = sink
        .runs_since(yesterday)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.run.run_id == run_id)
        .expect("the run is in the ledger");
    let day_rows = sink.day_rows_since(yesterday).await.unwrap()[0].rows;
    assert!(ledger.rows_written > 0 && ledger.pages_written > 0);
    let (_web, url) = common::start_web(&file);

    // /runs: the run with its pages, messages and rows, under the chart.
    let (status, page) = get(&format!("{url}/runs")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&run_id), "{page}");
    assert!(
        page.contains(&format!(r#"href="/day?date={day}""#)),
        "{page}"
    );
    assert!(
        page.contains(&cell(format!(
            "{}/{}",
            ledger.pages_written,
            ledger.run.total_pages.unwrap()
        ))),
        "{page}"
    );
    assert!(page.contains(&cell(ledger.run.messages)), "{page}");
    assert!(page.contains(&cell(ledger.rows_written)), "{page}");
    assert!(page.contains(">done</td>"), "{page}");
    let svg = &page[page.find("<svg").expect("the volume chart")..];
    assert!(
        svg.contains("alert rows") && svg.contains("</svg>"),
        "{svg}"
    );
    assert!(page.contains(r#"href="/runs""#), "in the navigation");

    // /api/runs: 30 dates of volume whose counts add up to the day's rows.
    let (status, r) = get_json(&format!("{url}/api/runs")).await;
    assert_eq!(status, 200);
    assert_eq!(r["days"], 30);
    assert_eq!(r["errors"].as_array().unwrap().len(), 0, "{r}");
    let dates = r["volume"]["dates"].as_array().unwrap();
    assert_eq!(dates.len(), 30);
    let i = dates.iter().position(|d| d == day.as_str()).unwrap();
    let series = r["volume"]["series"].as_array().unwrap();
    assert!(!series.is_empty() && series.len() <= 7, "{r}");
    let on_day: u64 = series.iter().map(|s| s["rows"][i].as_u64().unwrap()).sum();
    assert_eq!(on_day, day_rows, "{r}");
    // The noisiest first, "other" (if any) last.
    let firsts: Vec<u64> = series
        .iter()
        .filter(|s| s["name"] != "other")
        .map(|s| {
            s["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .sum()
        })
        .collect();
    assert!(firsts.windows(2).all(|w| w[0] >= w[1]), "{firsts:?}");
    assert!(page.contains(&esc(series[0]["name"].as_str().unwrap())));
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{r}");
    assert_eq!(runs[0]["run"]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["rows_written"], ledger.rows_written);
    assert_eq!(runs[0]["status"], "done");
    let (status, r) = get_json(&format!("{url}/api/runs?days=3")).await;
    assert_eq!(status, 200);
    assert_eq!(r["volume"]["dates"].as_array().unwrap().len(), 3);
    let (status, page) = get(&format!("{url}/runs?days=lots")).await;
    assert_eq!(status, 400);
    assert!(page.contains("days=&quot;lots&quot;"), "{page}");

    // /day: the run, its timeline, and the report's table in its order.
    let (status, page) = get(&format!("{url}/day?date={day}")).await;
    // The date's digest, built as `alertflow digest` builds it (not sent:
    // no [digest] receivers here).
    let out = std::process::Command::new(common::bin("alertflow"))
        .args(["digest", &day, "--dry-run", "--json"])
        .env("ALERTFLOW_CONFIG", &file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest: Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest_title = digest["title"].as_str().unwrap().to_string();
    assert!(digest_title.starts_with(&format!("Alert digest {day}: ")));
    assert!(page.contains(&esc(&digest_title)), "{page}");
    assert!(page.contains(r#"<div id="digest">"#), "{page}");
    assert!(page.contains("Not sent"), "{page}");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&run_id), "{page}");
    assert!(
        page.contains(&cell(ledger.rows_written)) && page.contains(">done</td>"),
        "{page}"
    );
    let timeline = page
        .find(r#"<svg class="chart timeline""#)
        .expect("a timeline");
    let timeline = &page[timeline..];
    assert_eq!(
        timeline[..timeline.find("</svg>").unwrap()]
            .matches("page written at")
            .count() as u64,
        ledger.pages_written,
        "a mark per page written"
    );
    assert!(page.contains(&format!(
        "Alert recommendations for {day} ({} alert names)",
        recs.len()
    )));
    let table = &page[page.find(r#"id="recommendations""#).expect("the table")..];
    let mut at = 0;
    for rec in &recs {
        let name = esc(rec["alert_name"].as_str().unwrap());
        // The name cell, plain or marked noisy (not a longer name's).
        let row = [format!("<td>{name}</td>"), format!("<td>{name} <span")]
            .iter()
            .filter_map(|p| table[at..].find(p.as_str()))
            .min()
            .unwrap_or_else(|| panic!("{name} after position {at}: {table}"))
            + at;
        let tr = &table[row..row + table[row..].find("</tr>").unwrap()];
        assert!(tr.contains(&cell(&rec["fired_count"])), "{tr} vs {rec}");
        assert!(tr.contains(&cell(&rec["resolved_count"])), "{tr} vs {rec}");
        assert!(tr.contains(&esc(rec["recommendation"].as_str().unwrap())));
        at = row + 1;
    }
    // The computation that produced it: when, from how many rows.
    let rows_read = runs[0]["recommended_from_rows"].as_u64().unwrap();
    assert_eq!(rows_read, day_rows);
    let recommends = &page[page.find(r#"id="recommends""#).unwrap()..];
    assert!(recommends.contains(&cell(rows_read)), "{recommends}");

    // /api/day: the same, as JSON; the recommendations are the report's.
    let (status, d) = get_json(&format!("{url}/api/day?date={day}")).await;
    assert_eq!(status, 200);
    assert_eq!(d["date"], day.as_str());
    assert_eq!(d["recommendations"], report["recommendations"]);
    assert_eq!(d["unmapped"], report["unmapped"]);
    assert_eq!(d["runs"][0]["run"]["run_id"], run_id.as_str());
    assert_eq!(
        d["pages"].as_array().unwrap().len() as u64,
        ledger.pages_written
    );
    let page_rows: u64 = d["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(page_rows, ledger.rows_written);
    assert_eq!(d["recommends"][0]["rows_read"], day_rows);
    let skipped: u64 = ledger.skips.values().sum();
    let shown: u64 = d["skips"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(shown, skipped);

    // A bad date is a 400 that says why; a date with nothing says so.
    let (status, page) = get(&format!("{url}/day?date=2026-02-30")).await;
    assert_eq!(status, 400);
    assert!(
        page.contains("2026-02-30") && page.contains(r#"id="error""#),
        "{page}"
    );
    let (status, page) = get(&format!("{url}/day")).await;
    assert_eq!(status, 400);
    assert!(page.contains("YYYY-MM-DD"), "{page}");
    let (status, e) = get_json(&format!("{url}/api/day?date=yesterday")).await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("yesterday"), "{e}");
    let (status, page) = get(&format!("{url}/day?date=2020-01-01")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Nothing recorded for 2020-01-01"), "{page}");
    let (_, d) = get_json(&format!("{url}/api/day?date=2020-01-01")).await;
    assert_eq!(d["runs"].as_array().unwrap().len(), 0);
    assert_eq!(d["recommendations"].as_array().unwrap().len(), 0);
    w.stop().await;
    sink.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_alert_volume_keeps_the_noisiest_names_of_the_range_apart() {
    let env = TestEnv::new("webvolume");
    let sink = SqlSink::new(&env.config);
    sink.migrate().await.unwrap();
    let today = alertflow::lark::window::pacific_date(chrono::Utc::now());
    let day = |n: i64| today - chrono::Duration::days(n);
    // (name, days back, rows): over the range A 10, B 9, C 8, D 7, E 6,
    // F 5 lead; G 4 and H 2 are "other", though G beats D on day 1.
    let plan = [
        ("A", 1, 10),
        ("B", 2, 9),
        ("C", 1, 4),
        ("C", 3, 4),
        ("D", 3, 7),
        ("E", 2, 6),
        ("F", 1, 5),
        ("G", 1, 3),
        ("G", 2, 1),
        ("H", 3, 2),
        ("A", 40, 50),
    ];
    let mut rows = Vec::new();
    for (name, back, n) in plan {
        for i in 0..n {
            let date = day(back).to_string();
            rows.push(StoredAlert {
                row: AlertRow {
                    message_id: format!("{name}-{back}-{i}-f"),
                    lark_message_id: format!("{name}-{back}-{i}"),
                    chat_id: "oc".into(),
                    status: "firing".into(),
                    alert_name: name.into(),
                    severity: "warning".into(),
                    clusters: "c1".into(),
                    regions: "r1".into(),
                    alert_count: 1,
                    created_at: format!("{date} 12:00:00"),
                    alert_date: date,
                    title: String::new(),
                    summary: String::new(),
                },
                raw_content: String::new(),
                ingested_at: chrono::Utc::now(),
            });
        }
    }
    sink.write_alerts(&rows).await.unwrap();
    let file = env.config_file(&format!(
        "[mysql]\ndatabase = {:?}\n",
        env.config.mysql.database
    ));
    let (_web, url) = common::start_web(&file);

    let (status, r) = get_json(&format!("{url}/api/runs?days=5")).await;
    assert_eq!(status, 200, "{r}");
    let dates: Vec<String> = serde_json::from_value(r["volume"]["dates"].clone()).unwrap();
    assert_eq!(
        dates,
        (0..5).rev().map(|n| day(n).to_string()).collect::<Vec<_>>()
    );
    let series: Vec<(String, Vec<u64>)> = r["volume"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                serde_json::from_value(s["rows"].clone()).unwrap(),
            )
        })
        .collect();
    // Oldest date first: 4, 3, 2, 1 and 0 days back.
    let want: Vec<(String, Vec<u64>)> = [
        ("A", [0, 0, 0, 10, 0]),
        ("B", [0, 0, 9, 0, 0]),
        ("C", [0, 4, 0, 4, 0]),
        ("D", [0, 7, 0, 0, 0]),
        ("E", [0, 0, 6, 0, 0]),
        ("F", [0, 0, 0, 5, 0]),
        ("other", [0, 2, 1, 3, 0]),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_vec()))
    .collect();
    assert_eq!(series, want);
    assert_eq!(r["runs"].as_array().unwrap().len(), 0);

    // The page: the chart's segments carry their counts; no run yet.
    let (status, page) = get(&format!("{url}/runs?days=5")).await;
    assert_eq!(status, 200);
    let d1 = day(1).format("%m-%d").to_string();
    for seg in [format!("{d1} · A: 10"), format!("{d1} · other: 3")] {
        assert!(page.contains(&seg), "{seg}: {page}");
    }
    assert!(
        page.contains(&format!("{d1}: 22")),
        "the day's total: {page}"
    );
    assert!(page.contains("51 alert rows in 5 days."), "{page}");
    assert!(page.contains("No run recorded in the run ledger"), "{page}");
    sink.close().await;
}

const FLUX_Q: &str = "from(bucket: \"m\") |> range(start: -5m) |> last()";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_alarms_page_shows_task_health_and_firing_alarms_but_no_receiver_url() {
    let sb = alertflow::sandbox::spawn(SandboxConfig::default())
        .await
        .unwrap();
    // InfluxDB v2 (the local fake): cluster a is over the threshold, b not.
    let flux = influx_v2::spawn(InfluxV2Config {
        org: "ops".into(),
        token: "tok-influx-secret".into(),
        answers: [(
            FLUX_Q.to_string(),
            FluxAnswer::Tables(vec![FluxTable {
                columns: vec![
                    FluxColumn::new("_value", "double", false),
                    FluxColumn::new("cluster", "string", true),
                ],
                rows: vec![
                    vec!["97.5".into(), "a".into()],
                    vec!["10".into(), "b".into()],
                ],
            }]),
        )]
        .into_iter()
        .collect(),
    })
    .await
    .unwrap();
    let hook = format!("{}/open-apis/bot/v2/hook/sandbox", sb.base_url);
    // One TOML for the web process's file and the in-process worker.
    let source = format!(
        "version = 2\nurl = {:?}\norg = \"ops\"\ntoken = \"tok-influx-secret\"\n",
        flux.base_url
    );
    let receiver = format!("type = \"lark\"\nurl = {hook:?}\n");
    let check = format!(
        "name = \"cpu-high\"\nsource = \"metrics\"\nquery = {FLUX_Q:?}\nvalue = \"_value\"\n\
         threshold = \"> 90\"\nlabels = [\"cluster\"]\nseverity = \"critical\"\n\
         summary = \"CPU on {{cluster}} is {{value}}%\"\nrepeat_interval = \"1h\"\nreceiver = \"ops\"\n"
    );
    let env = TestEnv::with("webalarms", |c| {
        c.worker.queues = vec!["default".into(), "influx".into()];
        c.influx
            .sources
            .insert("metrics".into(), toml::from_str(&source).unwrap());
        c.receivers
            .insert("ops".into(), toml::from_str(&receiver).unwrap());
        c.checks.push(toml::from_str(&check).unwrap());
    });
    let file = env.config_file(&format!(
        "[influx.sources.metrics]\n{source}[receivers.ops]\n{receiver}[[checks]]\n{check}"
    ));
    let reg = env.registry();
    let (_conn, publisher) = env.publisher().await;
    let w = env.start_worker(reg.clone());
    HealthNotifier::attach(&env.config, &w.services).unwrap();

    // A real evaluation raises the alarm and notifies the sandbox's bot.
    let e = env.envelope(&reg, "influx-check", json!({"check": "cpu-high"}));
    publisher.publish(&e).await.unwrap();
    env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
    assert_eq!(sb.received_bot("sandbox").len(), 1, "the alarm was sent");
    // A task the workers do not know ends in ERROR.
    let mut unknown = Envelope::new("no-such-task", json!({}));
    unknown.queue = "default".into();
    publisher.publish(&unknown).await.unwrap();
    let store = HealthStore::new(
        alertflow::queue::context::redis_pool(&env.config).unwrap(),
        env.ns(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all = store.all().await.unwrap();
        let status = |t: &str| all.get(t).cloned().flatten().map(|r| r.status);
        if status("influx-check") == Some(Status::Ok)
            && status("no-such-task") == Some(Status::Error)
        {
            break;
        }
        assert!(Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let latest = |all: &std::collections::BTreeMap<String, Option<Record>>| {
        all["influx-check"].as_ref().unwrap().at
    };
    let first_ok = latest(&store.all().await.unwrap());
    // Evaluated again: a new outcome, the same status (so the same since),
    // and the alarm is not sent again within its repeat interval.
    let e = env.envelope(&reg, "influx-check", json!({"check": "cpu-high"}));
    publisher.publish(&e).await.unwrap();
    env.wait_status(&e.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
    while latest(&store.all().await.unwrap()) == first_ok {
        assert!(Instant::now() < deadline, "the second outcome is recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sb.received_bot("sandbox").len(), 1);
    let (_web, url) = common::start_web(&file);

    let (status, page) = get(&format!("{url}/alarms")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"href="/alarms""#), "in the navigation");
    assert!(
        page.contains("1 alarm(s) firing · 1 task(s) in ERROR"),
        "{page}"
    );
    let health = &page[page.find(r#"id="health""#).unwrap()..];
    let row = |task: &str| {
        let at = health.find(&format!("<td>{task}</td>")).unwrap();
        health[at..at + health[at..].find("</tr>").unwrap()].to_string()
    };
    assert!(row("influx-check").contains(">OK</td>"), "{health}");
    let bad = row("no-such-task");
    assert!(
        bad.contains(">ERROR</td>") && bad.contains("unknown-task"),
        "{bad}"
    );
    assert!(page.contains("cpu-high"), "{page}");
    let alarms = &page[page.find(r#"class="alarms""#).expect("an alarm table")..];
    assert!(alarms.contains("cluster=a"), "{alarms}");
    assert!(!alarms.contains("cluster=b"), "b is not firing: {alarms}");
    assert!(alarms.contains(&cell("97.5")), "{alarms}");
    assert!(alarms.contains("CPU on a is 97.5%"), "{alarms}");
    assert!(page.contains("to ops"), "the receiver by name: {page}");

    let (status, a) = get_json(&format!("{url}/api/alarms")).await;
    assert_eq!(status, 200);
    let c = &a["checks"][0];
    assert_eq!(c["check"], "cpu-high");
    assert_eq!(c["receiver"], "ops");
    assert_eq!(c["active"].as_array().unwrap().len(), 1, "{a}");
    let alarm = &c["active"][0];
    assert_eq!(alarm["labels"]["cluster"], "a");
    assert_eq!(alarm["value"], 97.5);
    assert_eq!(alarm["severity"], "critical");
    let sent: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(alarm["last_sent"].clone()).expect("last sent is known");
    assert!((chrono::Utc::now() - sent).num_seconds() < 60, "{sent}");
    let tasks = a["tasks"].as_array().unwrap();
    let check = tasks.iter().find(|t| t["task"] == "influx-check").unwrap();
    let time = |v: &Value| -> chrono::DateTime<chrono::Utc> {
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"))
    };
    let since = time(&check["status_since"]);
    assert!(
        (since - first_ok).num_milliseconds().abs() < 1,
        "OK since the first outcome: {since} vs {first_ok}"
    );
    assert!(time(&check["last_outcome_at"]) > since, "{check}");
    assert!(
        (time(&alarm["since"]) - sent).num_seconds().abs() < 5,
        "sent once, when it started firing: {alarm}"
    );
    assert!(
        tasks
            .iter()
            .any(|t| t["task"] == "no-such-task" && t["status"] == "ERROR"),
        "{a}"
    );

    // No receiver URL nor secret anywhere.
    let api = a.to_string();
    for secret in [hook.as_str(), "/open-apis/bot", "tok-influx-secret"] {
        assert!(!page.contains(secret), "{secret} in the page");
        assert!(!api.contains(secret), "{secret} in /api/alarms");
    }
    w.stop().await;
}
