//! Transport security against real servers: `amqps://` and `rediss://`
//! through a TLS-terminating proxy in front of the local RabbitMQ and Redis,
//! and MySQL TLS against a MariaDB started for the test with a certificate.
//! Certificates come from a throw-away CA made with openssl. Each service
//! must verify the certificate: it connects with `[tls] ca_file` naming that
//! CA, and refuses without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Child, bin, free_port};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA, a server certificate for localhost / 127.0.0.1 signed by it, and
/// an unrelated CA.
fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for ca in ["ca", "other"] {
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=alertflow test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        d.join("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            "server.pem",
        ],
    );
    Certs {
        ca: d.join("ca.pem"),
        other_ca: d.join("other.pem"),
        cert: d.join("server.pem"),
        key: d.join("server.key"),
        _dir: dir,
    }
}

/// TLS in front of a plain local port.
struct TlsProxy {
    port: u16,
    task: JoinHandle<()>,
}

impl TlsProxy {
    async fn start(certs: &Certs, upstream: u16) -> TlsProxy {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&certs.key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                conns.push(tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return; // the client refused our certificate
                    };
                    if let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                    }
                }));
            }
        });
        TlsProxy { port, task }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `alertflow check-config --connect --json`: service → (status, detail).
fn check(
    config: &str,
    env: &[(&str, String)],
) -> std::collections::BTreeMap<String, (String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alertflow.toml");
    std::fs::write(&path, config).unwrap();
    let mut c = Command::new(bin("alertflow"));
    for (var, _) in alertflow::config::env_overrides() {
        c.env_remove(var);
    }
    c.env("ALERTFLOW_CONFIG", &path)
        .env("ALERTFLOW_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .args(["check-config", "--connect", "--json", "--timeout", "10s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&out.stderr)));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["service"].as_str().unwrap().to_string(),
                (
                    c["status"].as_str().unwrap().to_string(),
                    c["detail"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_verifies_the_broker_certificate() {
    let certs = certs();
    let proxy = TlsProxy::start(&certs, 5672).await;
    let url = format!("amqps://guest:guest@localhost:{}/%2f", proxy.port);
    let with = |ca: &Path| {
        vec![
            ("ALERTFLOW_BROKER_URL", url.clone()),
            ("ALERTFLOW_TLS_CA_FILE", ca.display().to_string()),
        ]
    };
    let (status, detail) = tokio::task::block_in_place(|| check("", &with(&certs.ca)))
        .remove("broker")
        .unwrap();
    assert_eq!(status, "ok", "{detail}");
    assert!(detail.contains("TLS"), "{detail}");

    for env in [
        vec![("ALERTFLOW_BROKER_URL", url.clone())],
        with(&certs.other_ca),
    ] {
        let (status, detail) = tokio::task::block_in_place(|| check("", &env))
            .remove("broker")
            .unwrap();
        assert_eq!(status, "fail", "an unknown issuer is refused: {detail}");
        assert!(refused_certificate(&detail), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_verifies_the_redis_certificate() {
    let certs = certs();
    let proxy = TlsProxy::start(&certs, 6379).await;
    let url = format!("rediss://localhost:{}", proxy.port);
    let env = |ca: Option<&Path>| {
        let mut e = vec![("ALERTFLOW_REDIS_URL", url.clone())];
        if let Some(ca) = ca {
            e.push(("ALERTFLOW_TLS_CA_FILE", ca.display().to_string()));
        }
        e
    };
    let (status, detail) = tokio::task::block_in_place(|| check("", &env(Some(&certs.ca))))
        .remove("redis")
        .unwrap();
    // Answered over TLS; `warn` when the Redis behind the proxy keeps
    // nothing across a restart (its durability is judged too).
    assert!(status == "ok" || status == "warn", "{status}: {detail}");
    assert!(
        detail.contains("PONG") && detail.contains("TLS"),
        "{detail}"
    );

    for e in [env(None), env(Some(&certs.other_ca))] {
        let (status, detail) = tokio::task::block_in_place(|| check("", &e))
            .remove("redis")
            .unwrap();
        assert_eq!(status, "fail", "an unknown issuer is refused: {detail}");
        assert!(refused_certificate(&detail), "{detail}");
    }
}

/// The failure is the certificate check, not something else.
fn refused_certificate(detail: &str) -> bool {
    let d = detail.to_lowercase();
    d.contains("certificate") || d.contains("issuer")
}

#[test]
fn mysql_tls_verifies_the_server_certificate() {
    let certs = certs();
    let data = tempfile::tempdir().unwrap();
    let datadir = data.path().join("data");
    let install = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .output()
        .expect("mariadb-install-db (Debian's mariadb-server)");
    assert!(install.status.success(), "{install:?}");
    let port = free_port();
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap().display().to_string();
    let _server = Child(
        Command::new("mariadbd")
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", data.path().join("sock").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
                "--skip-log-bin",
            ])
            .arg("--innodb-buffer-pool-size=16M")
            .arg(format!("--ssl-cert={}", abs(&certs.cert)))
            .arg(format!("--ssl-key={}", abs(&certs.key)))
            .arg(format!("--ssl-ca={}", abs(&certs.ca)))
            .arg(format!("--pid-file={}", data.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                data.path().join("err.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mariadbd did not start: {}",
            std::fs::read_to_string(data.path().join("err.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let config = |ca: Option<&Path>| {
        let mut c = format!("[mysql]\nhost = \"localhost\"\nport = {port}\ntls = true\n");
        if let Some(ca) = ca {
            c.push_str(&format!(
                "[tls]\nca_file = {:?}\n",
                ca.display().to_string()
            ));
        }
        c
    };
    let (status, detail) = check(&config(Some(&certs.ca)), &[])
        .remove("database")
        .unwrap();
    assert_eq!(status, "ok", "{detail}");
    assert!(detail.contains("TLS"), "{detail}");
    for c in [config(None), config(Some(&certs.other_ca))] {
        let (status, detail) = check(&c, &[]).remove("database").unwrap();
        assert_eq!(status, "fail", "an unknown issuer is refused: {detail}");
        assert!(refused_certificate(&detail), "{detail}");
    }
    // Without `tls` the same server is reached in plain text (TLS is opt-in
    // for MySQL, which has no URL scheme to ask for it).
    let plain = format!("[mysql]\nhost = \"127.0.0.1\"\nport = {port}\n");
    let (status, detail) = check(&plain, &[]).remove("database").unwrap();
    assert_eq!(status, "ok", "{detail}");
    assert!(!detail.contains("TLS"), "{detail}");
}
