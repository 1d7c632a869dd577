//! Issue 11: what a newcomer hit when trying the CLI with bad input on
//! purpose. Each test runs the real binaries against the real RabbitMQ and
//! Redis in a namespace of its own, and failed before the fix it covers.

mod common;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use alertflow::queue::task::Registry;
use common::{Child, TestEnv, bin};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

/// Run a binary with `config`, bounded by coreutils `timeout` (exit 124
/// when it had to be killed: the hang these tests are about).
fn run(name: &str, config: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new("timeout");
    c.arg("60")
        .arg(bin(name))
        .args(args)
        .env("ALERTFLOW_CONFIG", config)
        .env_remove("ALERTFLOW_NAMESPACE")
        .env_remove("ALERTFLOW_BROKER_URL")
        .env_remove("ALERTFLOW_LOG")
        .stdin(Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A TCP port that accepts connections and never says a word: the kernel
/// completes the handshake from the listen backlog, nothing ever answers.
fn silent_port() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// A config file of its own for `env`'s namespace, with `extra` TOML. The
/// delay tiers are the test namespace's, so its cleanup removes them all.
fn config_with(env: &TestEnv, file: &str, extra: &str) -> PathBuf {
    let tiers = "retry_tiers = [\"100ms\", \"1s\", \"5s\"]";
    let extra = if extra.contains("[broker]\n") {
        extra.replacen("[broker]\n", &format!("[broker]\n{tiers}\n"), 1)
    } else {
        format!("[broker]\n{tiers}\n{extra}")
    };
    let p = env.dir.path().join(file);
    std::fs::write(
        &p,
        format!(
            "namespace = {:?}\n{extra}\n[worker]\nmetrics_listen = \"off\"\nqueues = [\"default\"]\nheartbeat_interval = \"500ms\"\n",
            env.ns()
        ),
    )
    .unwrap();
    p
}

async fn queue_exists(env: &TestEnv, family: &str) -> Option<u32> {
    let conn = alertflow::queue::publisher::connect(&env.config, "test")
        .await
        .expect("broker");
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            format!("{}.{family}", env.ns()).into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .ok()
        .map(|q| q.message_count());
    let _ = conn.close(200, "done".into()).await;
    q
}

// 1. A broker that accepts TCP but never speaks AMQP.

#[test]
fn a_silent_broker_redis_or_database_is_an_error_after_its_timeout_not_a_hang() {
    let env = TestEnv::new("silent-cli");
    let (_listener, port) = silent_port();
    let config = config_with(
        &env,
        "silent.toml",
        &format!(
            "[broker]\nurl = \"amqp://guest:guest@127.0.0.1:{port}/%2f\"\nconnect_timeout = \"1s\""
        ),
    );
    for args in [
        vec!["queues"],
        vec!["enqueue", "noop"],
        vec!["dead", "list"],
    ] {
        let out = run("alertflow", &config, &args, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("did not complete the AMQP handshake")
                && err.contains("broker.connect_timeout"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("rabbitmq-server"), "something listens: {err}");
    }
    // Redis and the database under the same rule.
    let out = run(
        "alertflow",
        &env.config_file(""),
        &["workers"],
        &[("ALERTFLOW_REDIS_URL", &format!("redis://127.0.0.1:{port}"))],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("timed out") && !err.contains("redis-server"),
        "{err}"
    );
    let db = config_with(
        &env,
        "silent-db.toml",
        &format!("[mysql]\nport = {port}\nconnect_timeout = \"1s\""),
    );
    let out = run("alertflow", &db, &["report", "2026-01-01"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("mysql.connect_timeout"), "{err}");
}

#[test]
fn sigterm_ends_a_worker_that_is_still_connecting() {
    let env = TestEnv::new("silent-worker");
    let (_listener, port) = silent_port();
    // A long connect timeout: only the signal can end it quickly.
    let config = config_with(
        &env,
        "silent.toml",
        &format!(
            "[broker]\nurl = \"amqp://guest:guest@127.0.0.1:{port}/%2f\"\nconnect_timeout = \"120s\""
        ),
    );
    let mut worker = Child::spawn("alertflow-worker", &[], &config);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(worker.0.try_wait().unwrap().is_none(), "still connecting");
    worker.signal("TERM");
    let status = worker
        .wait_exit(Duration::from_secs(10))
        .expect("the first SIGTERM ends a connecting worker");
    assert_eq!(status.code(), Some(0));
}

// 2. A typo in `enqueue --queue`, and queues nobody consumes.

#[tokio::test]
async fn an_unknown_queue_family_is_refused_and_creates_nothing() {
    let env = TestEnv::new("typo-queue");
    let config = env.config_file("");
    let out = run(
        "alertflow",
        &config,
        &["enqueue", "noop", "--queue", "nosuchq"],
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown queue family \"nosuchq\"") && err.contains("default, influx, lark"),
        "{err}"
    );
    assert_eq!(
        queue_exists(&env, "nosuchq").await,
        None,
        "no queue created"
    );
}

#[tokio::test]
async fn queues_lists_a_family_nobody_consumes_and_flags_its_messages() {
    let env = TestEnv::with("stranded", |c| {
        c.worker.queues = vec!["default".into(), "side".into()];
    });
    // One config routes noop to `side`; the operator's does not know it.
    let routing = config_with(&env, "routing.toml", "[tasks.noop]\nqueue = \"side\"");
    let out = run("alertflow", &routing, &["enqueue", "noop"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plain = env.config_file("");
    let out = run("alertflow", &plain, &["queues", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let side = rows
        .iter()
        .find(|r| r["queue"] == format!("{}.side", env.ns()))
        .unwrap_or_else(|| panic!("the side queue is listed: {rows:#?}"));
    assert_eq!(side["ready"], 1);
    assert_eq!(side["consumers"], 0);
    assert_eq!(side["stranded"], true);
    let table = run("alertflow", &plain, &["queues"], &[]);
    assert!(text(&table.stdout).contains("NO CONSUMER"));
}

// 4. Arguments of known tasks are checked before publishing.

#[tokio::test]
async fn enqueue_checks_arguments_against_the_task_and_reads_files_and_stdin() {
    let env = TestEnv::new("enqueue-args");
    let config = env.config_file("");
    for (args, wanted) in [
        (
            r#"{"date":5}"#,
            "date: invalid type: integer `5`, expected a string",
        ),
        (r#"{"date":"2026-02-30"}"#, "date:"),
        (r#"{"dat":"2026-01-01"}"#, "unknown field `dat`"),
        (r#"{"date":"2026-01-01","until":"later"}"#, "until:"),
    ] {
        let out = run(
            "alertflow",
            &config,
            &["enqueue", "fetch-day", "--args", args],
            &[],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args}: {err}");
        assert!(err.contains(wanted), "{args}: {err}");
    }
    assert_eq!(
        queue_exists(&env, "lark").await.unwrap_or(0),
        0,
        "nothing was published"
    );
    let file = env.dir.path().join("args.json");
    std::fs::write(&file, r#"{"ms": 5}"#).unwrap();
    let at = format!("@{}", file.display());
    let out = run(
        "alertflow",
        &config,
        &["enqueue", "sleep", "--args", &at],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut child = Command::new(bin("alertflow"))
        .args(["enqueue", "sleep", "--args", "-"])
        .env("ALERTFLOW_CONFIG", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"ms": 7}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(queue_exists(&env, "default").await, Some(2));
}

// 5. One validation for every binary and check-config.

#[test]
fn check_config_worker_and_beat_refuse_the_same_configs() {
    let env = TestEnv::new("validate");
    let cases = [
        (
            "[[schedules]]\nname = \"x\"\nevery = \"1m\"\ntask = \"fetch-dya\"",
            "schedules.x.task",
        ),
        ("[tasks.fetch-dya]\nqueue = \"lark\"", "tasks.fetch-dya"),
        (
            "[[schedules]]\nname = \"x\"\nevery = \"1m\"\ntask = \"fetch-day\"\nargs = { date = 5 }",
            "schedules.x.args",
        ),
        (
            "[[schedules]]\nname = \"x\"\nevery = \"1m\"\ntask = \"noop\"\nqueue = \"lrak\"",
            "schedules.x.queue",
        ),
    ];
    for (i, (extra, key)) in cases.iter().enumerate() {
        let config = config_with(&env, &format!("bad{i}.toml"), extra);
        for (name, args) in [
            ("alertflow", vec!["check-config"]),
            ("alertflow-worker", vec![]),
            ("alertflow-beat", vec![]),
        ] {
            let out = run(name, &config, &args, &[]);
            let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert_eq!(out.status.code(), Some(2), "{name} {key}: {all}");
            assert!(all.contains(&format!("`{key}`")), "{name} {key}: {all}");
        }
    }
    let ok = config_with(
        &env,
        "good.toml",
        "[[schedules]]\nname = \"x\"\nevery = \"1m\"\ntask = \"fetch-day\"\nargs = { date = \"{yesterday}\" }",
    );
    let out = run("alertflow", &ok, &["check-config"], &[]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

// 6 and 9. The dead-letter queue's total, and no library noise in output.

#[tokio::test]
async fn dead_list_counts_every_dead_letter_and_replay_prints_no_noise() {
    let env = TestEnv::new("dead-total");
    let (_conn, publisher) = env.publisher().await;
    let reg = Registry::new();
    for _ in 0..5 {
        let e = env.envelope(&reg, "no-such-task", serde_json::json!({}));
        publisher.publish(&e).await.unwrap();
    }
    let w = env.start_worker(Registry::new());
    env.wait_dead(5, Duration::from_secs(20)).await;
    w.stop().await;
    let config = env.config_file("");
    let out = run("alertflow", &config, &["dead", "list", "--limit", "2"], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("(2 shown; 5 in {}.dead)", env.ns())),
        "{stdout}"
    );
    let out = run("alertflow", &config, &["dead", "replay", "--all"], &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(text(&out.stdout).contains("5 replayed"));
    assert!(
        !err.contains("ERROR") && !err.contains("invalid channel") && !err.contains('\u{1b}'),
        "stderr of a successful replay is clean: {err:?}"
    );
}

// 8. Errors that cannot fix themselves end the process with exit 2.

#[tokio::test]
async fn refused_login_missing_vhost_and_queue_type_mismatch_exit_2() {
    let env = TestEnv::new("config-errors");
    let config = env.config_file("");
    let bad_password = [(
        "ALERTFLOW_BROKER_URL",
        "amqp://guest:wrong@127.0.0.1:5672/%2f",
    )];
    let out = run("alertflow-worker", &config, &[], &bad_password);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("refused the login"), "{err}");
    let out = run("alertflow", &config, &["queues"], &bad_password);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("check the user and password") && !err.contains("rabbitmq-server"),
        "{err}"
    );
    let no_vhost = [(
        "ALERTFLOW_BROKER_URL",
        "amqp://guest:guest@127.0.0.1:5672/nosuchvhost",
    )];
    let out = run("alertflow-worker", &config, &[], &no_vhost);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("virtual host"), "{err}");
    // Classic queues exist; a worker configured for quorum queues.
    let (_conn, _publisher) = env.publisher().await;
    let out = run(
        "alertflow-worker",
        &config,
        &[],
        &[("ALERTFLOW_QUEUE_TYPE", "quorum")],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("PRECONDITION_FAILED") && err.contains("broker.queue_type"),
        "{err}"
    );
}

// 10. A closed stderr pipe neither panics a worker nor makes it deaf.

#[test]
fn a_worker_whose_stderr_pipe_closed_still_stops_on_sigterm() {
    let env = TestEnv::new("closed-stderr");
    let config = env.config_file("");
    let mut child = Command::new(bin("alertflow-worker"))
        .env("ALERTFLOW_CONFIG", &config)
        .env("ALERTFLOW_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `alertflow-worker 2>&1 | head -1`
    let mut first = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    let worker = Child(child);
    std::thread::sleep(Duration::from_millis(1500));
    worker.signal("TERM");
    let mut worker = worker;
    let status = worker
        .wait_exit(Duration::from_secs(20))
        .expect("stops on the first SIGTERM");
    assert_eq!(status.code(), Some(0), "no panic (101)");
}

#[test]
fn man_into_a_closed_pipe_exits_quietly() {
    let mut child = Command::new(bin("alertflow"))
        .arg("man")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(
        !err.contains("Broken pipe") && !err.contains("panicked"),
        "{err}"
    );
    assert!(
        matches!(out.status.code(), Some(0 | 141)),
        "{:?}",
        out.status
    );
}

// Smaller items.

#[tokio::test]
async fn status_agrees_with_json_on_attempts_and_knows_run_ids() {
    let env = TestEnv::new("status");
    let config = env.config_file("");
    let out = run("alertflow", &config, &["enqueue", "noop"], &[]);
    assert!(out.status.success());
    let id = text(&out.stdout).trim().to_string();
    let json = run("alertflow", &config, &["status", &id, "--json"], &[]);
    let state: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let plain = text(&run("alertflow", &config, &["status", &id], &[]).stdout);
    assert!(
        plain.contains(&format!("attempt:  {}", state["attempt"])),
        "{plain} vs {state}"
    );
    let pool = alertflow::queue::context::redis_pool(&env.config).unwrap();
    let runs = alertflow::run_state::RunState::new(pool, env.ns(), Duration::from_secs(600));
    let run_id = uuid::Uuid::new_v4().to_string();
    runs.begin(&run_id, "2026-03-10", "oc_x").await.unwrap();
    let out = run("alertflow", &config, &["status", &run_id], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("a run id") && stdout.contains("2026-03-10"),
        "{stdout}"
    );
}

#[test]
fn a_bad_environment_variable_is_blamed_on_the_variable() {
    let env = TestEnv::new("env-blame");
    let config = env.config_file("");
    let out = run(
        "alertflow",
        &config,
        &["queues"],
        &[("ALERTFLOW_WORKER_CONCURRENCY", "0")],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("ALERTFLOW_WORKER_CONCURRENCY")
            && err.contains("worker.concurrency")
            && !err.contains("config file"),
        "{err}"
    );
}

#[test]
fn the_sandbox_banner_prints_its_webhooks() {
    let mut child = Command::new(bin("alertflow"))
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Child(child);
    let lines: Vec<String> = std::io::BufReader::new(stdout)
        .lines()
        .take(8)
        .map(|l| l.unwrap())
        .collect();
    let banner = lines.join("\n");
    assert!(
        banner.contains("/open-apis/bot/v2/hook/sandbox\"")
            && banner.contains("secret = \"sandbox-sign-secret\"")
            && banner.contains("/services/"),
        "{banner}"
    );
}

#[test]
fn beat_says_what_it_does_on_sigterm() {
    let env = TestEnv::new("beat-stop");
    let config = config_with(
        &env,
        "beat.toml",
        "[[schedules]]\nname = \"tick\"\nevery = \"1h\"\ntask = \"noop\"\n[beat]\nmetrics_listen = \"off\"",
    );
    let log = env.dir.path().join("beat.log");
    let child = Command::new(bin("alertflow-beat"))
        .env("ALERTFLOW_CONFIG", &config)
        .env("ALERTFLOW_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut beat = Child(child);
    std::thread::sleep(Duration::from_millis(2000));
    beat.signal("TERM");
    let status = beat.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("stopping between fires") && !text.contains("in-flight"),
        "{text}"
    );
}

#[test]
fn run_and_report_refuse_the_same_dates_and_say_why() {
    let env = TestEnv::new("dates");
    let config = env.config_file("");
    let out = run("alertflow", &config, &["run", "--backfill", "-1"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("-1 is not in 1..=366") && !err.contains("-- -1"),
        "{err}"
    );
    for args in [vec!["report", "2099-01-01"], vec!["run", "2099-01-01"]] {
        let out = run("alertflow", &config, &args, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("is in the future"), "{args:?}: {err}");
    }
}
