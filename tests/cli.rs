//! The operator CLI as a user runs it: `alertflow parse` on the fixtures,
//! `alertflow schedule list` on the example config, and `--help` examples.

mod common;

use std::path::PathBuf;
use std::process::Command;

use chrono::{DateTime, Utc};

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cards"))
}

#[test]
fn parse_prints_the_expected_rows_and_skip_counts_for_every_fixture() {
    let mut families = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") || name.ends_with(".skips.json") {
            continue;
        }
        let stem = name.trim_end_matches(".json");
        let out = Command::new(common::bin("alertflow"))
            .args(["parse", path.to_str().unwrap()])
            .env_remove("ALERTFLOW_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{stem}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let want: Vec<serde_json::Value> =
            std::fs::read_to_string(fixtures().join(format!("{stem}.expected.jsonl")))
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        assert_eq!(got, want, "{stem}: rows");
        let skips: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("{stem}.skips.json"))).unwrap(),
        )
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let printed: serde_json::Value =
            serde_json::from_str(stderr.rsplit("skipped: ").next().unwrap().trim()).unwrap();
        assert_eq!(printed, skips, "{stem}: skip counts on stderr");
        families += 1;
    }
    assert!(families >= 3, "every fixture family was checked");
}

#[test]
fn parse_refuses_a_file_that_is_not_json() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.json");
    std::fs::write(&f, "{not json").unwrap();
    let out = Command::new(common::bin("alertflow"))
        .args(["parse", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
}

#[test]
fn schedule_list_is_correct_for_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/alertflow.toml");
    let out = Command::new(common::bin("alertflow"))
        .args(["schedule", "list", "--next", "3", "--json"])
        .env("ALERTFLOW_CONFIG", example)
        .env(
            "ALERTFLOW_NAMESPACE",
            format!("t-schedlist-{}", std::process::id()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.as_array().unwrap();
    let daily = list
        .iter()
        .find(|s| s["name"] == "daily-ingest")
        .expect("daily-ingest");
    assert_eq!(daily["task"], "fetch-day");
    assert_eq!(daily["queue"], "lark");
    assert_eq!(daily["args"]["date"], "{yesterday}");
    let nexts = daily["next"].as_array().unwrap();
    assert_eq!(nexts.len(), 3);
    let mut prev: Option<DateTime<Utc>> = None;
    for n in nexts {
        let local = n["local"].as_str().unwrap();
        assert!(local.contains(" 00:30:00 P"), "00:30 Pacific: {local}");
        let utc: DateTime<Utc> = n["utc"].as_str().unwrap().parse().unwrap();
        if let Some(p) = prev {
            let gap = (utc - p).num_hours();
            assert!((23..=25).contains(&gap), "one a day: {gap} h");
        }
        prev = Some(utc);
    }
    let hourly = list
        .iter()
        .find(|s| s["name"] == "hourly-today")
        .expect("hourly-today");
    for n in hourly["next"].as_array().unwrap() {
        assert!(n["local"].as_str().unwrap().contains(":05:00 P"));
    }
    assert_eq!(hourly["args"]["until"], "now");
}

#[test]
fn every_command_has_help_with_an_example() {
    let top = Command::new(common::bin("alertflow"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&top.stdout).to_string();
    let commands: Vec<String> = text
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");
    for c in &commands {
        let out = Command::new(common::bin("alertflow"))
            .args([c.as_str(), "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{c} --help");
        assert!(
            help.contains("Example") || help.contains("Commands:"),
            "{c} --help has no example:\n{help}"
        );
    }
    for bin in ["alertflow-worker", "alertflow-beat"] {
        let out = Command::new(common::bin(bin))
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Examples:"),
            "{bin}"
        );
    }
}

/// `run --wait` piped (as under cron or CI) with no worker: a line for the
/// day's state, printed once as nothing changes, a warning naming the queue
/// nothing consumes (once), then the timeout (exit 4). With `--json` stdout
/// stays one JSON document and the progress goes to stderr.
#[test]
fn run_wait_without_a_worker_says_what_nothing_consumes_and_times_out() {
    let env = common::TestEnv::new("runwait");
    let cfg = env.config_file("");
    let start = |extra: &[&str]| {
        Command::new(common::bin("alertflow"))
            .args(["run", "2026-03-10", "--wait", "--timeout", "9"])
            .args(extra)
            .env("ALERTFLOW_CONFIG", &cfg)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (plain, json) = (start(&[]), start(&["--json"]));
    let (plain, json) = (
        plain.wait_with_output().unwrap(),
        json.wait_with_output().unwrap(),
    );
    let warning = format!(
        "warning: nothing consumes {ns}.lark, {ns}.default, {ns}.db: start a worker (alertflow-worker -Q lark,default,db) — the run waits",
        ns = env.ns()
    );
    for (name, out) in [("plain", &plain), ("json", &json)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{name}: {stderr}");
        assert_eq!(
            stderr.matches(&warning).count(),
            1,
            "{name}: once: {stderr}"
        );
        assert_eq!(
            stderr
                .lines()
                .filter(|l| *l == "2026-03-10  waiting  no page fetched yet")
                .count(),
            1,
            "{name}: one line for the one state: {stderr}"
        );
        assert!(stderr.contains("gave up waiting"), "{name}: {stderr}");
    }
    let stdout = String::from_utf8_lossy(&plain.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("2026-03-10  0+ ") && l.ends_with("running")),
        "the summary shows the pages as not all known: {stdout}"
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("stdout is JSON");
    assert_eq!(v[0]["status"], "running");
    assert_eq!(v[0]["summary"]["total_pages"], serde_json::Value::Null);
}
