//! The deployment files: systemd units (installed by deploy/install.sh into a
//! staging root, then `systemd-analyze verify`), the environment file, the
//! compose file and the Dockerfile. Nothing here starts a service or touches
//! the host's /etc.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Where cargo put the three binaries of this build.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_alertflow"))
        .parent()
        .expect("binary has a directory")
        .to_path_buf()
}

fn install(destdir: &Path) -> String {
    let out = Command::new("bash")
        .arg(repo().join("deploy/install.sh"))
        .args(["--destdir".as_ref(), destdir.as_os_str()])
        .args(["--from".as_ref(), bin_dir().as_os_str()])
        .env_remove("DESTDIR")
        .output()
        .expect("run deploy/install.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install.sh failed:\n{text}");
    text
}

fn systemd_analyze() -> &'static str {
    let p = "/usr/bin/systemd-analyze";
    assert!(
        Path::new(p).exists() || which("systemd-analyze"),
        "systemd-analyze is missing: `apt-get install -y systemd` (scripts/services does it)"
    );
    if Path::new(p).exists() {
        p
    } else {
        "systemd-analyze"
    }
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `systemd-analyze verify` on unit files; returns (success, all output).
fn verify(units: &[PathBuf]) -> (bool, String) {
    let out = Command::new(systemd_analyze())
        .arg("verify")
        .args(units)
        .output()
        .expect("run systemd-analyze verify");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A copy of the installed units whose ExecStart= points at the staged
/// binaries. `systemd-analyze verify` checks that ExecStart= is an executable
/// on *this* host, and the staged units name their final place,
/// /usr/local/bin, which a CI machine does not have; only that path is
/// rewritten, so what is verified is otherwise the installed file. The unit's
/// User=alertflow need not exist for verify (it resolves users only at start),
/// so no system user is created.
fn units_for_verify(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let staged_bin = root.join("usr/local/bin");
    for u in [
        "alertflow-worker@.service",
        "alertflow-beat.service",
        "alertflow-web.service",
    ] {
        let text = std::fs::read_to_string(root.join("etc/systemd/system").join(u)).unwrap();
        let text = text.replace("/usr/local/bin/", &format!("{}/", staged_bin.display()));
        std::fs::write(dir.join(u), text).unwrap();
    }
    vec![
        dir.join("alertflow-beat.service"),
        dir.join("alertflow-web.service"),
        // A template is verified through instances of it.
        dir.join("alertflow-worker@1.service"),
        dir.join("alertflow-worker@4.service"),
    ]
}

#[test]
fn install_stages_everything_idempotently_and_the_units_verify() {
    let root = tempfile::tempdir().unwrap();
    let first = install(root.path());
    let r = root.path();
    for f in [
        "usr/local/bin/alertflow",
        "usr/local/bin/alertflow-worker",
        "usr/local/bin/alertflow-beat",
        "etc/systemd/system/alertflow-worker@.service",
        "etc/systemd/system/alertflow-beat.service",
        "etc/systemd/system/alertflow-web.service",
        "etc/sysusers.d/alertflow.conf",
        "etc/default/alertflow",
        "etc/alertflow/alertflow.toml",
        "usr/local/share/doc/alertflow/alertflow.toml",
        "usr/local/share/bash-completion/completions/alertflow",
        "usr/local/share/zsh/site-functions/_alertflow-worker",
        "usr/local/share/fish/vendor_completions.d/alertflow-beat.fish",
        "usr/local/share/man/man1/alertflow.1",
        "usr/local/share/man/man1/alertflow-check-config.1",
        "usr/local/share/man/man1/alertflow-worker.1",
    ] {
        assert!(r.join(f).is_file(), "{f} was not installed:\n{first}");
    }
    assert!(
        first.contains("not creating it"),
        "staging never creates users:\n{first}"
    );
    assert!(first.contains("systemd: not reloaded"), "{first}");

    // A second run keeps the operator's config and env file, replaces the rest.
    let cfg = r.join("etc/alertflow/alertflow.toml");
    let env = r.join("etc/default/alertflow");
    let mut edited = std::fs::read_to_string(&cfg).unwrap();
    edited.push_str("# edited by the operator\n");
    std::fs::write(&cfg, &edited).unwrap();
    std::fs::write(&env, "LARK_APP_ID=cli_operator\n").unwrap();
    let unit = r.join("etc/systemd/system/alertflow-beat.service");
    std::fs::write(&unit, "stale").unwrap();
    let second = install(r);
    assert!(
        second.contains("config: kept") && second.contains("env: kept"),
        "{second}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), edited);
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "LARK_APP_ID=cli_operator\n"
    );
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap(),
        read("deploy/systemd/alertflow-beat.service"),
        "units are replaced on every run"
    );

    // The staged units pass systemd-analyze verify, with no warning at all.
    let dir = tempfile::tempdir().unwrap();
    let units = units_for_verify(r, dir.path());
    let (ok, output) = verify(&units);
    assert!(ok, "systemd-analyze verify failed:\n{output}");
    assert!(
        output.trim().is_empty(),
        "systemd-analyze verify warned:\n{output}"
    );

    // Control: the same check does catch a broken unit (verify only warns
    // about unknown keys, hence the empty-output assertion above).
    let broken = dir.path().join("alertflow-broken.service");
    let text = std::fs::read_to_string(dir.path().join("alertflow-beat.service")).unwrap();
    std::fs::write(
        &broken,
        text.replace("WatchdogSec=60s", "WatchdogSec=sixty\nNotAKey=1"),
    )
    .unwrap();
    let (_, output) = verify(&[broken]);
    assert!(
        output.contains("sixty") && output.contains("NotAKey"),
        "{output}"
    );
}

#[test]
fn the_units_are_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    install(root.path());
    for unit in units_for_verify(root.path(), dir.path()) {
        let out = Command::new(systemd_analyze())
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit)
            .output()
            .expect("systemd-analyze security");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| {
                panic!(
                    "no exposure level for {}:\n{text}{}",
                    unit.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
        assert!(
            score <= 2.0,
            "{} exposure {score} (want <= 2.0, OK):\n{text}",
            unit.display()
        );
    }
}

/// `key=value` lines of a unit's [Service] section (several values per key).
fn unit_settings(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with('[') || !line.contains('=') {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap();
        out.entry(k.to_string()).or_default().push(v.to_string());
    }
    out
}

fn seconds(systemd_time: &str) -> u64 {
    let t = systemd_time.trim();
    if let Some(m) = t.strip_suffix("min") {
        m.parse::<u64>().unwrap() * 60
    } else if let Some(s) = t.strip_suffix('s') {
        s.parse().unwrap()
    } else {
        t.parse().unwrap()
    }
}

#[test]
fn worker_unit_contract() {
    let text = read("deploy/systemd/alertflow-worker@.service");
    let s = unit_settings(&text);
    let one = |k: &str| -> String {
        let v = s.get(k).unwrap_or_else(|| panic!("{k}= missing"));
        v.last().unwrap().clone()
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("User"), "alertflow");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert!(seconds(&one("WatchdogSec")) > 0);
    let env_files = &s["EnvironmentFile"];
    assert_eq!(
        env_files,
        &vec![
            "/etc/default/alertflow".to_string(),
            "-/etc/alertflow/worker-%i.env".to_string()
        ]
    );
    assert!(one("ExecStart").contains("$ALERTFLOW_WORKER_ARGS"));

    // SIGTERM drains: the config's shutdown_timeout covers its time limit, and
    // systemd waits longer than shutdown_timeout before SIGKILL.
    let config = alertflow::config::AppConfig::from_toml(
        &read("deploy/alertflow.toml"),
        "deploy/alertflow.toml",
    )
    .unwrap();
    let stop = seconds(&one("TimeoutStopSec"));
    let drain = config.worker.shutdown_timeout.0.as_secs();
    let mut longest = config.worker.time_limit.0.as_secs();
    for t in config.tasks.values() {
        if let Some(l) = t.time_limit {
            longest = longest.max(l.0.as_secs());
        }
    }
    assert!(
        drain >= longest,
        "shutdown_timeout {drain}s < longest time limit {longest}s"
    );
    assert!(
        stop > drain + 5,
        "TimeoutStopSec {stop}s must exceed shutdown_timeout {drain}s (+ state flush)"
    );

    // Each of worker@1..9 gets its own metrics port, none of them the lone
    // worker's (9808) or the beat's (9810).
    let listen = s["Environment"]
        .iter()
        .find_map(|e| e.strip_prefix("ALERTFLOW_METRICS_LISTEN="))
        .expect("per-instance ALERTFLOW_METRICS_LISTEN");
    let mut ports = BTreeSet::new();
    for i in 1..=9 {
        let addr: std::net::SocketAddr = listen.replace("%i", &i.to_string()).parse().unwrap();
        assert!(addr.ip().is_loopback(), "{addr} must be loopback");
        assert!(![9808, 9810].contains(&addr.port()));
        ports.insert(addr.port());
    }
    assert_eq!(ports.len(), 9, "distinct ports for worker@1..9");

    let beat = unit_settings(&read("deploy/systemd/alertflow-beat.service"));
    assert_eq!(beat["Type"], vec!["notify"]);
    assert_eq!(beat["User"], vec!["alertflow"]);
}

#[test]
fn web_unit_contract() {
    let s = unit_settings(&read("deploy/systemd/alertflow-web.service"));
    let one = |k: &str| -> String {
        let v = s.get(k).unwrap_or_else(|| panic!("{k}= missing"));
        v.last().unwrap().clone()
    };
    // `alertflow web` does not talk to systemd: started once it runs.
    assert_eq!(one("Type"), "exec");
    assert_eq!(one("User"), "alertflow");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(
        one("RestartPreventExitStatus"),
        "2",
        "a refused address is not retried"
    );
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert_eq!(
        s["EnvironmentFile"],
        vec![
            "/etc/default/alertflow".to_string(),
            "-/etc/alertflow/web.env".to_string()
        ]
    );
    let exec = one("ExecStart");
    assert!(
        exec.ends_with("/alertflow web $ALERTFLOW_WEB_ARGS"),
        "{exec}"
    );
    // With the shipped env file it serves the default address, which the
    // server accepts (loopback), and which no other unit uses.
    let env = read("deploy/alertflow.env");
    let args = env
        .lines()
        .find_map(|l| l.strip_prefix("ALERTFLOW_WEB_ARGS="))
        .expect("ALERTFLOW_WEB_ARGS in deploy/alertflow.env");
    assert_eq!(args.trim(), "", "the default --listen");
    let addr =
        alertflow::web::bind_address("127.0.0.1:9800", false).expect("the default is served");
    assert!(![9808, 9810].contains(&addr.port()) && !(9811..=9819).contains(&addr.port()));
}

/// Every variable the binaries read, from the source: the config overrides,
/// clap `env = "..."` attributes and `env::var("...")` calls. The benchmark
/// commands (`src/cli/bench*.rs`) are not run by the units and are left out.
fn variables_read() -> BTreeSet<String> {
    let mut vars: BTreeSet<String> = alertflow::config::env_overrides()
        .iter()
        .map(|(v, _)| v.to_string())
        .collect();
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs")
                || p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("bench"))
            {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for pat in ["env = \"", "env::var(\"", "env::var_os(\""] {
                let mut rest = text.as_str();
                while let Some(i) = rest.find(pat) {
                    rest = &rest[i + pat.len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if !name.is_empty() && rest[name.len()..].starts_with('"') {
                        vars.insert(name);
                    }
                }
            }
        }
    }
    vars
}

#[test]
fn env_file_documents_every_variable() {
    let env = read("deploy/alertflow.env");
    let documented: BTreeSet<String> = env
        .lines()
        .map(|l| l.trim().trim_start_matches('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    let read_by_binaries = variables_read();
    assert!(read_by_binaries.contains("ALERTFLOW_CONFIG"));
    let missing: Vec<&String> = read_by_binaries
        .iter()
        .filter(|v| !documented.contains(*v) && !env.contains(v.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/alertflow.env does not document {missing:?}"
    );
    // Secrets are never shipped with a value, and an empty assignment would
    // override the config file, so they stay commented out.
    for secret in ["LARK_APP_SECRET", "STARROCKS_PASSWORD"] {
        for line in env.lines().filter(|l| l.contains(&format!("{secret}="))) {
            assert!(
                line.trim_start().starts_with('#') && line.trim_end().ends_with('='),
                "{line:?}"
            );
        }
    }
    // Setting the metrics port here would give every instance the same one.
    assert!(
        !env.lines()
            .any(|l| l.starts_with("ALERTFLOW_METRICS_LISTEN=")),
        "ALERTFLOW_METRICS_LISTEN must not be set for all instances"
    );
}

#[test]
fn sysusers_file_declares_the_user() {
    let text = read("deploy/systemd/alertflow.sysusers");
    let line = text
        .lines()
        .find(|l| l.starts_with("u "))
        .expect("a `u` line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1], "alertflow");
}

// --- docker compose --------------------------------------------------------

/// `| `service` | image | host ports | health check |` rows of the "Docker
/// Compose" section of docs/operations.md: service → promised host ports.
fn promised_ports() -> BTreeMap<String, BTreeSet<u16>> {
    let doc = read("docs/operations.md");
    let start = doc
        .find("## Docker Compose")
        .expect("docs/operations.md has a \"## Docker Compose\" section");
    let section = &doc[start + 3..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut out = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let name = cells[0]
            .split('`')
            .nth(1)
            .expect("the service name in backticks")
            .to_string();
        let ports: BTreeSet<u16> = cells[2]
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        out.insert(name, ports);
    }
    assert!(
        out.len() >= 6,
        "the compose table lists the services: {out:?}"
    );
    out
}

fn yaml_str(v: &serde_norway::Value) -> Option<String> {
    match v {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Host ports a service publishes (short syntax `[IP:]HOST:CONTAINER`).
fn published(service: &serde_norway::Value) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    if let Some(ports) = service.get("ports").and_then(|p| p.as_sequence()) {
        for p in ports {
            let s = yaml_str(p).expect("short port syntax");
            let parts: Vec<&str> = s.split(':').collect();
            assert!(parts.len() >= 2, "{s}: publish with an explicit host port");
            if parts.len() == 3 {
                assert_eq!(parts[0], "127.0.0.1", "{s}: publish on loopback only");
            }
            out.insert(parts[parts.len() - 2].parse().unwrap());
        }
    }
    out
}

#[test]
fn compose_file_is_complete() {
    let mut doc: serde_norway::Value =
        serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses");
    doc.apply_merge().expect("merge keys resolve");
    let services = doc
        .get("services")
        .and_then(|s| s.as_mapping())
        .expect("services");
    let names: BTreeSet<String> = services.keys().filter_map(yaml_str).collect();
    for want in [
        "rabbitmq",
        "redis",
        "starrocks",
        "influxdb",
        "alertflow-worker",
        "alertflow-beat",
        "sandbox",
        "web",
    ] {
        assert!(names.contains(want), "no service {want}: {names:?}");
    }
    let image = |n: &str| {
        services[n]
            .get("image")
            .and_then(yaml_str)
            .unwrap_or_default()
    };
    assert!(image("rabbitmq").contains("management"));
    assert!(image("starrocks").starts_with("starrocks/allin1-ubuntu"));
    assert!(image("influxdb").starts_with("influxdb:1.8"));

    for (name, svc) in services {
        let name = yaml_str(name).unwrap();
        assert!(
            svc.get("image").is_some() || svc.get("build").is_some(),
            "{name}: needs an image or a build"
        );
        let hc = svc
            .get("healthcheck")
            .unwrap_or_else(|| panic!("{name}: no healthcheck"));
        let disabled = hc.get("disable").and_then(|d| d.as_bool()) == Some(true);
        if disabled {
            // Only one-shot jobs, which are waited for as completed.
            let restart = svc.get("restart").and_then(yaml_str).unwrap_or_default();
            assert!(
                restart == "no" || restart == "on-failure",
                "{name}: a long-running service needs a real health check"
            );
        } else {
            let test = hc
                .get("test")
                .unwrap_or_else(|| panic!("{name}: healthcheck without test"));
            assert!(
                test.as_sequence().is_some_and(|s| !s.is_empty()) || yaml_str(test).is_some(),
                "{name}: empty healthcheck test"
            );
        }
        // Dependencies exist, and `service_healthy` ones have a health check.
        if let Some(deps) = svc.get("depends_on").and_then(|d| d.as_mapping()) {
            for (dep, how) in deps {
                let dep = yaml_str(dep).unwrap();
                let target = services
                    .get(dep.as_str())
                    .unwrap_or_else(|| panic!("{name} depends on unknown {dep}"));
                let cond = how.get("condition").and_then(yaml_str).unwrap_or_default();
                if cond == "service_healthy" {
                    assert!(
                        target
                            .get("healthcheck")
                            .and_then(|h| h.get("test"))
                            .is_some(),
                        "{name} waits for {dep} to be healthy, which has no check"
                    );
                }
            }
        }
    }

    let replicas = |n: &str| {
        services[n]
            .get("deploy")
            .and_then(|d| d.get("replicas"))
            .and_then(|r| r.as_u64())
            .unwrap_or(1)
    };
    assert!(replicas("alertflow-worker") >= 2, "several workers");
    assert_eq!(replicas("alertflow-beat"), 2, "two beats");
    let profiles = services["sandbox"]
        .get("profiles")
        .and_then(|p| p.as_sequence())
        .expect("the sandbox is under a profile");
    assert!(
        profiles
            .iter()
            .any(|p| yaml_str(p).as_deref() == Some("sandbox"))
    );
    let cmd: Vec<String> = services["sandbox"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(yaml_str)
        .collect();
    assert_eq!(cmd, ["alertflow", "sandbox", "--listen", "0.0.0.0:8900"]);

    // The ports the docs promise are exactly the ones published.
    let promised = promised_ports();
    for (name, ports) in &promised {
        let svc = services
            .get(name.as_str())
            .unwrap_or_else(|| panic!("docs promise service {name}, compose has none"));
        assert_eq!(
            &published(svc),
            ports,
            "{name}: published vs documented ports"
        );
    }
    for name in &names {
        if !published(&services[name.as_str()]).is_empty() {
            assert!(
                promised.contains_key(name),
                "{name} publishes undocumented ports"
            );
        }
    }
    // Replicated services cannot publish fixed host ports.
    assert!(published(&services["alertflow-worker"]).is_empty());

    // The dashboard: what `alertflow web` accepts today is a loopback
    // address, unreachable through a published port from a bridge network,
    // so the container uses the host's network and reaches each service the
    // config names through that service's loopback-published port.
    let web = &services["web"];
    let cmd: Vec<String> = web["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(yaml_str)
        .collect();
    assert_eq!(cmd[..3], ["alertflow", "web", "--listen"]);
    let addr = alertflow::web::bind_address(&cmd[3], false)
        .unwrap_or_else(|e| panic!("compose runs `alertflow web --listen {}`: {e}", cmd[3]));
    assert!(addr.ip().is_loopback());
    assert_eq!(
        web.get("network_mode").and_then(yaml_str).as_deref(),
        Some("host"),
        "a loopback listener is only reachable with the host's network"
    );
    assert!(published(web).is_empty(), "host network publishes nothing");
    let health = format!("{:?}", web["healthcheck"]["test"]);
    assert!(
        health.contains(&format!("127.0.0.1:{}/", addr.port())),
        "{health}"
    );
    let extra: Vec<String> = web["extra_hosts"]
        .as_sequence()
        .expect("extra_hosts")
        .iter()
        .filter_map(yaml_str)
        .collect();
    for (host, port) in [("rabbitmq", 5672), ("redis", 6379), ("starrocks", 9030)] {
        assert!(
            extra.contains(&format!("{host}:127.0.0.1")),
            "web: {host} must resolve to the host's loopback: {extra:?}"
        );
        assert!(
            published(&services[host]).contains(&port),
            "web reaches {host} on the host's 127.0.0.1:{port}, which must be published"
        );
    }

    // The config the containers mount is valid.
    let mounted = alertflow::config::AppConfig::from_toml(
        &read("deploy/docker/alertflow.toml"),
        "deploy/docker/alertflow.toml",
    )
    .expect("deploy/docker/alertflow.toml parses");
    mounted
        .validate()
        .expect("deploy/docker/alertflow.toml is valid");
    assert_eq!(
        mounted.sink.replication_num, 1,
        "one BE in the all-in-one image"
    );
}

#[test]
fn dockerfile_is_multi_stage_and_unprivileged() {
    let text = read("Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(froms[0].contains("rust"), "builds with a Rust image");
    assert!(
        froms.last().unwrap().contains("debian"),
        "runs on Debian slim"
    );
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root"), "{user}");
    for b in ["alertflow", "alertflow-worker", "alertflow-beat"] {
        assert!(text.contains(&format!("target/release/{b}")), "{b} copied");
    }
    assert!(text.contains("--locked"), "builds from Cargo.lock");
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"));
}
