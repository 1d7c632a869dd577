//! Shared test harness: every test gets its own namespace (queues, exchanges,
//! Redis keys) on the real local RabbitMQ and Redis, removed when the test
//! ends, even when it fails.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertflow::config::{AppConfig, HumanDuration};
use alertflow::queue::admin::DeadEntry;
use alertflow::queue::context::Services;
use alertflow::queue::harness;
use alertflow::queue::message::Envelope;
use alertflow::queue::publisher::{Publisher, connect};
use alertflow::queue::state::{StateStore, TaskState, TaskStatus};
use alertflow::queue::task::Registry;
use alertflow::queue::topology::Topology;
use alertflow::queue::worker::WorkerOptions;

pub fn ms(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(n))
}

/// One test's isolated slice of the broker and Redis.
pub struct TestEnv {
    pub config: Arc<AppConfig>,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    /// A namespace `t-<name>-<random>` with fast retry tiers and backoff.
    pub fn new(name: &str) -> TestEnv {
        Self::with(name, |_| {})
    }

    pub fn with(name: &str, tweak: impl FnOnce(&mut AppConfig)) -> TestEnv {
        let defaults = AppConfig::default();
        let mut c = AppConfig {
            queue: alertflow::config::QueueConfig {
                namespace: alertflow::queue::harness::unique_namespace(name),
                ..defaults.queue.clone()
            },
            ..defaults
        };
        c.broker.retry_tiers = vec![ms(100), ms(1000), ms(5000)];
        c.worker.retry_backoff_base = ms(200);
        c.worker.retry_backoff_max = ms(2000);
        c.worker.metrics_listen = "off".into();
        c.worker.heartbeat_interval = ms(500);
        c.worker.shutdown_timeout = HumanDuration(Duration::from_secs(10));
        c.worker.queues = vec!["default".into()];
        // A database of its own, dropped at the end (only used by tests that write rows).
        c.mysql.database = format!("t_{}", c.namespace.replace('-', "_"));
        tweak(&mut c);
        c.validate().expect("test config is valid");
        TestEnv {
            config: Arc::new(c),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn ns(&self) -> &str {
        &self.config.namespace
    }

    pub fn topology(&self) -> Arc<Topology> {
        Arc::new(Topology::from_config(&self.config))
    }

    /// A confirm-mode publisher with the topology declared.
    pub async fn publisher(&self) -> (lapin::Connection, Publisher) {
        let conn = connect(&self.config, "test").await.expect("broker up");
        let p = Publisher::open(&conn, self.topology(), 64)
            .await
            .expect("publisher");
        self.topology()
            .declare(p.channel(), &self.config.worker.queues)
            .await
            .expect("declare");
        (conn, p)
    }

    pub fn states(&self) -> StateStore {
        let pool = alertflow::queue::context::redis_pool(&self.config).expect("pool");
        StateStore::new(pool, self.ns(), Duration::from_secs(600))
    }

    /// An envelope with the registry's policy, on queue `default`.
    pub fn envelope(&self, registry: &Registry, task: &str, args: serde_json::Value) -> Envelope {
        let mut e = Envelope::new(task, args);
        registry.apply_policy(&mut e, &self.config, None);
        e
    }

    /// Every task of alertflow, with clients built from this test's config
    /// (as `alertflow-worker` builds them at start).
    pub fn registry(&self) -> Registry {
        alertflow::tasks::lookup_registry(&self.config).expect("tasks set up")
    }

    /// Start an in-process worker.
    pub fn start_worker(&self, registry: Registry) -> RunningWorker {
        let (services, _writer) =
            Services::new(Arc::new(self.config.queue.clone())).expect("services");
        harness::start_worker(services, registry, WorkerOptions::from_config(&self.config))
    }

    /// Poll until the task reaches `status` (panics after `timeout`).
    pub async fn wait_status(
        &self,
        id: &uuid::Uuid,
        status: TaskStatus,
        timeout: Duration,
    ) -> TaskState {
        harness::wait_status(&self.states(), id, status, timeout).await
    }

    /// Messages ready in a queue (by full name).
    pub async fn ready(&self, queue: &str) -> u32 {
        let conn = connect(&self.config, "test").await.expect("broker");
        let ch = conn.create_channel().await.expect("channel");
        let counts = alertflow::queue::topology::queue_counts(&ch, queue)
            .await
            .expect("broker answers")
            .expect("queue exists");
        let _ = conn.close(200, "".into()).await;
        counts.ready as u32
    }

    /// Read the dead-letter queue without removing anything.
    pub async fn dead_letters(&self) -> Vec<DeadEntry> {
        let conn = connect(&self.config, "test").await.expect("broker");
        let ch = conn.create_channel().await.expect("channel");
        let out: Vec<DeadEntry> =
            alertflow::queue::admin::peek(&ch, &self.topology().dead_queue(), usize::MAX)
                .await
                .expect("peek dead letters")
                .into_iter()
                .map(|(_, e)| e)
                .collect();
        let _ = ch.close(200, "".into()).await;
        let _ = conn.close(200, "".into()).await;
        out
    }

    /// Wait until the dead-letter queue holds `n` messages.
    pub async fn wait_dead(&self, n: usize, timeout: Duration) -> Vec<DeadEntry> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.dead_letters().await;
            if d.len() >= n || Instant::now() > deadline {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Write this test's config as a TOML file for the real binaries.
    pub fn config_file(&self, extra: &str) -> PathBuf {
        let c = &self.config;
        let text = format!(
            "namespace = {:?}\n\
             [broker]\nretry_tiers = [\"100ms\", \"1s\", \"5s\"]\n\
             [worker]\nqueues = [\"default\"]\nconcurrency = 2\nmetrics_listen = \"off\"\n\
             retry_backoff_base = \"200ms\"\nretry_backoff_max = \"2s\"\nheartbeat_interval = \"500ms\"\n\
             shutdown_timeout = \"10s\"\n{extra}",
            c.namespace
        );
        let p = self.dir.path().join("alertflow.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let config = self.config.clone();
        // Drop may run inside a panicking test: clean up on a runtime of its own.
        cleanup_blocking(async move {
            let families: Vec<String> = alertflow::tasks::lookup_registry(&config)
                .expect("tasks set up")
                .families(&config)
                .into_iter()
                .collect();
            alertflow::queue::admin::delete_namespace(&config, &families).await;
            if config.mysql.database.starts_with("t_") {
                let sink = alertflow::sink::starrocks::SqlSink::new(&config);
                let _ = sink.drop_database().await;
                sink.close().await;
            }
        });
    }
}

/// Run a cleanup future to completion from a `Drop` (which may run in a
/// panicking test, inside or outside a runtime): on a thread with a runtime
/// of its own.
pub fn cleanup_blocking(f: impl std::future::Future<Output = ()> + Send + 'static) {
    harness::block_on_own_runtime(f)
}

pub use harness::RunningWorker;

/// Path of a binary built by cargo for the integration tests.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "alertflow" => PathBuf::from(env!("CARGO_BIN_EXE_alertflow")),
        "alertflow-worker" => PathBuf::from(env!("CARGO_BIN_EXE_alertflow-worker")),
        "alertflow-beat" => PathBuf::from(env!("CARGO_BIN_EXE_alertflow-beat")),
        other => panic!("unknown binary {other}"),
    }
}

/// A child process killed when dropped (so a failing test leaves none behind).
pub struct Child(pub std::process::Child);

impl Child {
    pub fn spawn(name: &str, args: &[&str], config: &std::path::Path) -> Child {
        let log = std::fs::File::create(format!(
            "{}.{}.log",
            config.display(),
            uuid::Uuid::new_v4().simple()
        ))
        .expect("log file");
        let c = std::process::Command::new(bin(name))
            .args(args)
            .env("ALERTFLOW_CONFIG", config)
            .env("ALERTFLOW_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn binary");
        Child(c)
    }
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }
    /// Wait for exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.0.try_wait().expect("try_wait") {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run statements on the config's MySQL server (no database selected).
pub async fn sql(config: &AppConfig, statements: &[&str]) {
    use mysql_async::prelude::Queryable;
    let opts = alertflow::sink::starrocks::server_opts(config);
    let mut c = mysql_async::Conn::new(opts)
        .await
        .expect("connect to mysql");
    for s in statements {
        c.query_drop(*s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    c.disconnect().await.expect("disconnect");
}

/// Point a test's config at a sandbox (`alertflow::sandbox::spawn`): its
/// Lark base URL, credentials and chat, and workers on the three families
/// of the pipeline.
pub fn use_sandbox(c: &mut AppConfig, base_url: &str) {
    c.worker.queues = vec!["default".into(), "lark".into(), "db".into()];
    c.lark.base_url = base_url.to_string();
    c.lark.app_id = "cli_sandbox".into();
    c.lark.app_secret = alertflow::config::Secret::new("sandbox-secret");
    c.lark.chat_id = "oc_sandbox_alerts".into();
}

/// Start `alertflow web` on a free loopback port: the process and the URL
/// it printed (without a trailing slash).
pub fn start_web(config: &std::path::Path) -> (Child, String) {
    start_web_on(config, "127.0.0.1:0")
}

/// Start `alertflow web --listen ADDR`; the URL it printed.
pub fn start_web_on(config: &std::path::Path, listen: &str) -> (Child, String) {
    start_web_with(config, &["--listen", listen])
}

/// [`start_web`] with extra environment variables (overrides of the config).
pub fn start_web_env(config: &std::path::Path, env: &[(&str, &str)]) -> (Child, String) {
    spawn_web(config, &["--listen", "127.0.0.1:0"], env)
}

/// Start `alertflow web ARGS...`; the URL it printed.
pub fn start_web_with(config: &std::path::Path, args: &[&str]) -> (Child, String) {
    spawn_web(config, args, &[])
}

fn spawn_web(config: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(bin("alertflow"))
        .arg("web")
        .args(args)
        .env("ALERTFLOW_CONFIG", config)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn alertflow web");
    let stdout = child.stdout.take().expect("stdout");
    let child = Child(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the URL line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL printed: {line:?}"))
        .trim_end_matches('/')
        .to_string();
    (child, url)
}

/// A TCP forwarder (`listen` → `to`), for tests that put a hop between a
/// client and a service; cancelling `cut` closes its port and every
/// connection through it.
pub struct Forwarder {
    pub port: u16,
    pub cut: tokio_util::sync::CancellationToken,
}

pub async fn forward(listen: &str, to: &str) -> Forwarder {
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cut = tokio_util::sync::CancellationToken::new();
    let stop = cut.clone();
    let to = to.to_string();
    tokio::spawn(async move {
        loop {
            let (mut inbound, _) = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
            };
            let (stop, to) = (stop.clone(), to.clone());
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await else {
                    return;
                };
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            });
        }
    });
    Forwarder { port, cut }
}

/// A free TCP port on loopback (for a service a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A process started in a process group of its own
/// (`CommandExt::process_group(0)`); the whole group is killed (-9) when
/// this is dropped, also when the test fails.
pub struct Group(pub std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-9", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn recs(
    sink: &alertflow::sink::starrocks::SqlSink,
    date: &str,
) -> Vec<alertflow::recommendation::Recommendation> {
    let mut r = sink.recommendations(date).await.unwrap();
    r.sort_by(|a, b| a.alert_name.cmp(&b.alert_name));
    r
}

/// Recompute the day's recommendations from the rows with SQL aggregates
/// and set arithmetic, independently of `recommendation`.
pub async fn check_recommendations(
    config: &AppConfig,
    sink: &alertflow::sink::starrocks::SqlSink,
    date: &str,
    expected_rows: &[alertflow::lark::card::AlertRow],
) {
    let stored = recs(sink, date).await;
    let opts = alertflow::sink::starrocks::server_opts(config);
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();
    use mysql_async::prelude::Queryable;
    let counts: Vec<(String, i64, i64)> = conn
        .query(format!(
            "SELECT alert_name, SUM(status = 'firing'), SUM(status = 'resolved') FROM `{}`.lark_alerts \
             WHERE alert_date = '{date}' AND alert_name <> '' GROUP BY alert_name ORDER BY alert_name",
            config.mysql.database
        ))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    assert_eq!(
        stored.len(),
        counts.len(),
        "one recommendation per alert name"
    );
    let catalogue = alertflow::recommendation::catalogue::Catalogue::builtin();
    for (rec, (name, fired, resolved)) in stored.iter().zip(&counts) {
        assert_eq!(&rec.alert_name, name);
        assert_eq!(i64::from(rec.fired_count), *fired, "{name}");
        assert_eq!(i64::from(rec.resolved_count), *resolved, "{name}");
        let mine: Vec<&alertflow::lark::card::AlertRow> = expected_rows
            .iter()
            .filter(|r| &r.alert_name == name && r.alert_date == date)
            .collect();
        let clusters: std::collections::BTreeSet<&str> = mine
            .iter()
            .flat_map(|r| r.clusters.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let regions: std::collections::BTreeSet<&str> = mine
            .iter()
            .flat_map(|r| r.regions.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(rec.cluster_count as usize, clusters.len(), "{name}");
        assert_eq!(
            rec.clusters,
            clusters.iter().copied().collect::<Vec<_>>().join(","),
            "{name}"
        );
        assert_eq!(
            rec.regions,
            regions.iter().copied().collect::<Vec<_>>().join(","),
            "{name}"
        );
        assert_eq!(rec.is_noisy, *fired >= 10 || clusters.len() >= 3, "{name}");
        match catalogue.get(name) {
            Some(entry) => {
                assert_eq!(rec.severity, entry.severity, "{name}");
                assert_eq!(rec.recommendation, entry.recommendation, "{name}");
                assert!(rec.in_catalogue);
            }
            None => assert!(!rec.in_catalogue, "{name}"),
        }
    }
}
