//! Running it in production: systemd notifications (READY / WATCHDOG /
//! STOPPING) from the real worker binary, JSON log lines, `check-config`,
//! shell completions and the man page.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use alertflow::queue::state::TaskStatus;
use common::{Child, TestEnv, bin};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A command for one of our binaries with no inherited alertflow settings.
fn command(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    for (var, _) in alertflow::config::env_overrides() {
        c.env_remove(var);
    }
    for var in [
        "ALERTFLOW_CONFIG",
        "ALERTFLOW_LOG_FORMAT",
        "ALERTFLOW_BEAT_METRICS_LISTEN",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "JOURNAL_STREAM",
        "NOTIFYDIR",
    ] {
        c.env_remove(var);
    }
    c.env("ALERTFLOW_LOG", "info");
    c
}

/// A TCP proxy to a local port that the test can cut (every connection is
/// dropped and new ones are refused) and restore.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c, list) = (cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                list.lock().unwrap().push(h);
            }
        });
        Proxy {
            port,
            cut,
            conns,
            accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

/// The test's side of `NOTIFY_SOCKET`: every line received, with its time.
struct NotifySocket {
    rx: mpsc::Receiver<(Instant, String)>,
    stop: Arc<AtomicBool>,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let sock = UnixDatagram::bind(path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    for line in String::from_utf8_lossy(&buf[..n]).lines() {
                        if tx.send((Instant::now(), line.to_string())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        NotifySocket { rx, stop }
    }

    /// Wait for `what`; panics after `timeout` with what was seen.
    fn expect(&self, what: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok((at, line)) if line == what => return at,
                Ok((_, line)) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no {what} within {timeout:?}; saw {seen:?}");
    }

    /// Every line received during the next `d`.
    fn during(&self, d: Duration) -> Vec<String> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok((_, line)) => out.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        out
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn count(lines: &[String], what: &str) -> usize {
    lines.iter().filter(|l| *l == what).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_watchdog_stopping_and_silence_without_the_broker() {
    let env = TestEnv::new("sdnotify");
    let config = env.config_file("");
    let proxy = Proxy::start(5672).await;
    let sock_path = env.dir.path().join("notify.sock");
    let notify = NotifySocket::bind(&sock_path);
    let log = env.dir.path().join("worker.log");
    let mut worker = Child(
        command("alertflow-worker")
            .env("ALERTFLOW_CONFIG", &config)
            .env(
                "ALERTFLOW_BROKER_URL",
                format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
            )
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "1000000")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn alertflow-worker"),
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    // Connected and consuming: READY=1, then WATCHDOG=1 every 500 ms.
    notify.expect("READY=1", Duration::from_secs(30));
    let healthy = notify.during(Duration::from_millis(2600));
    assert!(
        count(&healthy, "WATCHDOG=1") >= 3,
        "periodic WATCHDOG=1 while healthy: {healthy:?}\n{}",
        logs()
    );

    // The broker connection is cut and cannot be re-made: the pings stop.
    proxy.cut();
    let _grace = notify.during(Duration::from_millis(1500));
    let cut = notify.during(Duration::from_secs(3));
    assert_eq!(
        count(&cut, "WATCHDOG=1"),
        0,
        "no WATCHDOG=1 without a broker: {cut:?}\n{}",
        logs()
    );
    assert!(
        logs().contains("broker session lost") || logs().contains("broker session failed"),
        "{}",
        logs()
    );

    // The broker comes back: the worker reconnects and pings again.
    proxy.restore();
    notify.expect("READY=1", Duration::from_secs(40));
    notify.expect("WATCHDOG=1", Duration::from_secs(3));

    // SIGTERM: STOPPING=1, then a clean exit.
    worker.signal("TERM");
    notify.expect("STOPPING=1", Duration::from_secs(5));
    let status = worker
        .wait_exit(Duration::from_secs(20))
        .expect("the worker exits after SIGTERM");
    assert!(status.success(), "exit {status:?}\n{}", logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_carry_the_task_fields() {
    let env = TestEnv::new("jsonlogs");
    let config = env.config_file("[tasks.sleep]\ntime_limit = \"200ms\"\nmax_retries = 1\n");
    let log = env.dir.path().join("worker.json.log");
    let mut worker = Child(
        command("alertflow-worker")
            .args(["--log-format", "json"])
            .env("ALERTFLOW_CONFIG", &config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn alertflow-worker"),
    );
    let enqueue = |args: &str| -> uuid::Uuid {
        let out = command("alertflow")
            .env("ALERTFLOW_CONFIG", &config)
            .args(["enqueue", "sleep", "--queue", "default", "--args", args])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .expect("enqueue prints the id")
    };
    // Times out twice (a retry, then the dead-letter queue), and a fatal one.
    let slow = enqueue(r#"{"ms": 1000}"#);
    let fatal = enqueue(r#"{"ms": 99999999999}"#);
    env.wait_status(&slow, TaskStatus::Dead, Duration::from_secs(30))
        .await;
    env.wait_status(&fatal, TaskStatus::Dead, Duration::from_secs(30))
        .await;
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(20)).expect("exits");

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 5, "{text}");
    for l in &lines {
        for key in ["timestamp", "level", "message", "target"] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
    }
    let task_line = |id: &uuid::Uuid, message: &str, attempt: u64| -> &Value {
        lines
            .iter()
            .find(|l| {
                l["message"] == message
                    && l["span"]["task.id"] == id.to_string()
                    && l["span"]["attempt"] == attempt
            })
            .unwrap_or_else(|| panic!("no {message:?} line of {id} attempt {attempt}:\n{text}"))
    };
    for (id, message, attempt) in [
        (&slow, "task failed; will retry", 0),
        (&slow, "task dead-lettered", 1),
        (&fatal, "task dead-lettered", 0),
    ] {
        let l = task_line(id, message, attempt);
        let span = &l["span"];
        assert_eq!(span["task.name"], "sleep", "{l}");
        assert_eq!(span["queue"], "default", "{l}");
        assert!(span["run_id"].is_string(), "run_id present: {l}");
        // The enclosing spans too, so fields survive nested spans.
        let task_span = l["spans"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "task"))
            .unwrap_or_else(|| panic!("no task span in spans: {l}"));
        assert_eq!(task_span["task.id"], id.to_string());
    }
    assert_eq!(
        task_line(&slow, "task failed; will retry", 0)["level"],
        "WARN"
    );
}

fn check_config(config: &Path, extra: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let mut c = command("alertflow");
    c.env("ALERTFLOW_CONFIG", config);
    for (k, v) in extra {
        c.env(k, v);
    }
    let out = c
        .arg("check-config")
        .args(args)
        .output()
        .expect("run check-config");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn statuses(json: &str) -> std::collections::BTreeMap<String, String> {
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["service"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn check_config_names_the_key_and_line_of_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("alertflow.toml");
    std::fs::write(&bad, "namespace = \"x\"\n[worker]\nconcurency = 4\n").unwrap();
    let (code, out) = check_config(&bad, &[], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("ERROR"), "{out}");
    assert!(
        out.contains("concurency") && out.contains("line 3"),
        "{out}"
    );
    assert!(out.contains(&bad.display().to_string()), "{out}");

    let (code, out) = check_config(&bad, &[], &["--json"]);
    assert_eq!(code, 2);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["config"]["ok"], false);
    assert!(
        v["config"]["error"]
            .as_str()
            .unwrap()
            .contains("concurency")
    );

    // A value that parses but makes no sense is named too.
    std::fs::write(&bad, "[worker]\nconcurrency = 0\n").unwrap();
    let (code, out) = check_config(&bad, &[], &[]);
    assert_eq!(code, 2);
    assert!(out.contains("worker.concurrency"), "{out}");
    // And so is a bad environment override.
    std::fs::write(&bad, "").unwrap();
    let (code, out) = check_config(&bad, &[("STARROCKS_PORT", "x")], &[]);
    assert_eq!(code, 2);
    assert!(out.contains("STARROCKS_PORT"), "{out}");

    std::fs::write(&bad, "namespace = \"ok\"\n").unwrap();
    let (code, out) = check_config(&bad, &[], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK"), "{out}");
}

/// `appendonly` and `save` of the local Redis.
fn local_redis_persistence() -> (String, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = alertflow::queue::context::redis_pool(&alertflow::config::AppConfig::default())
            .unwrap();
        let mut conn = pool.get().await.unwrap();
        let mut get = async |key: &str| -> String {
            let pair: Vec<String> = deadpool_redis::redis::cmd("CONFIG")
                .arg("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            pair[1].clone()
        };
        let aof = get("appendonly").await;
        let save = get("save").await;
        (aof, save)
    })
}

#[test]
fn check_config_connect_reports_exactly_the_service_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("alertflow.toml");
    std::fs::write(&cfg, "namespace = \"t-check\"\n").unwrap();

    let (code, out) = check_config(&cfg, &[], &["--connect", "--json"]);
    assert_eq!(code, 0, "every local service answers:\n{out}");
    let s = statuses(&out);
    assert_eq!(s["broker"], "ok");
    // The local Redis is judged by its own settings: one that keeps nothing
    // across a restart (as on this project's machines) is a warning.
    let (aof, save) = local_redis_persistence();
    if aof == "yes" {
        assert_eq!(s["redis"], "ok", "{out}");
    } else {
        assert_eq!(
            s["redis"], "warn",
            "appendonly {aof}, save {save:?}:\n{out}"
        );
        let expected = if save.trim().is_empty() {
            "no persistence"
        } else {
            "snapshots only"
        };
        assert!(out.contains(expected), "{out}");
    }
    assert_eq!(s["database"], "ok");
    assert_eq!(s["influx"], "skip", "no source configured");
    assert_eq!(s["lark"], "skip", "no app id");

    let dead = format!("redis://127.0.0.1:{}", closed_port());
    let (code, out) = check_config(
        &cfg,
        &[("ALERTFLOW_REDIS_URL", &dead)],
        &["--connect", "--json"],
    );
    assert_eq!(code, 1, "{out}");
    let s = statuses(&out);
    let failed: Vec<&String> = s
        .iter()
        .filter(|(_, v)| *v == "fail")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(failed, ["redis"], "{out}");

    // The text table says the same, in one line a person reads first.
    let (code, out) = check_config(&cfg, &[("ALERTFLOW_REDIS_URL", &dead)], &["--connect"]);
    assert_eq!(code, 1);
    assert!(out.contains("unreachable: redis\n"), "{out}");
    let redis_row = out.lines().find(|l| l.starts_with("redis")).unwrap();
    assert!(redis_row.contains("FAIL"), "{out}");

    // A configured InfluxDB source is checked too (here: one that is down).
    std::fs::write(
        &cfg,
        format!(
            "namespace = \"t-check\"\n[influx.sources.main]\nurl = \"http://127.0.0.1:{}\"\ndb = \"metrics\"\n",
            closed_port()
        ),
    )
    .unwrap();
    let (code, out) = check_config(&cfg, &[], &["--connect", "--json"]);
    if out.contains("unknown field `influx`") {
        return; // this build has no [influx] section yet
    }
    assert_eq!(code, 1, "{out}");
    let s = statuses(&out);
    assert_eq!(s["influx.main"], "fail", "{out}");
    assert_eq!(s["broker"], "ok", "{out}");
}

#[test]
fn check_config_fetches_a_lark_token_from_the_sandbox() {
    let mut sandbox = Child(
        command("alertflow")
            .args(["sandbox", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    let mut stdout = BufReader::new(sandbox.0.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    // Keep reading: a closed pipe would kill the sandbox at its next line.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("sandbox printed {first:?}"))
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("alertflow.toml");
    std::fs::write(&cfg, "namespace = \"t-check-lark\"\n").unwrap();
    let lark = [
        ("LARK_BASE_URL", url.as_str()),
        ("LARK_APP_ID", "cli_sandbox"),
        ("LARK_APP_SECRET", "sandbox-secret"),
    ];
    let (code, out) = check_config(&cfg, &lark, &["--connect", "--json"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(statuses(&out)["lark"], "ok", "{out}");
    assert!(
        !out.contains("sandbox-secret"),
        "the secret is never printed"
    );

    let wrong = [
        ("LARK_BASE_URL", url.as_str()),
        ("LARK_APP_ID", "cli_sandbox"),
        ("LARK_APP_SECRET", "not-the-secret"),
    ];
    let (code, out) = check_config(&cfg, &wrong, &["--connect", "--json"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(statuses(&out)["lark"], "fail", "{out}");
    assert!(!out.contains("not-the-secret"));
}

#[test]
fn completions_man_page_and_help() {
    let run = |args: &[&str]| -> String {
        let out = command("alertflow").args(args).output().unwrap();
        assert!(out.status.success(), "alertflow {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&["completions", "bash"]).contains("complete -F _alertflow"));
    assert!(run(&["completions", "zsh"]).starts_with("#compdef alertflow"));
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains("complete -c alertflow") && fish.contains("check-config"));
    assert!(run(&["completions", "bash", "--for", "alertflow-worker"]).contains("--concurrency"));
    let man = run(&["man"]);
    assert!(man.contains(".TH alertflow 1"), "{man}");
    assert!(man.contains("check\\-config"), "subcommands listed");
    assert!(
        man.contains("Exit codes"),
        "the examples and exit codes are in it"
    );
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(dir.path().join("alertflow-check-config.1").is_file());
    assert!(dir.path().join("alertflow-dead-replay.1").is_file());

    // Listeners are loopback unless configured otherwise.
    assert!(run(&["sandbox", "--help"]).contains("[default: 127.0.0.1:8900]"));
    let defaults = alertflow::config::AppConfig::default();
    assert!(defaults.worker.metrics_listen.starts_with("127.0.0.1:"));
    assert!(defaults.beat.metrics_listen.starts_with("127.0.0.1:"));

    let help = run(&["check-config", "--help"]);
    assert!(
        help.contains("--connect") && help.contains("Exit codes"),
        "{help}"
    );
    for b in ["alertflow-worker", "alertflow-beat"] {
        let out = command(b).arg("--help").output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Examples"), "{b} --help has examples");
    }
}
