//! The one connection policy for the broker, used by every process (worker,
//! beat, CLI, benchmarks):
//!
//! - every attempt (TCP connect, TLS, AMQP handshake, login) is bounded by
//!   `broker.connect_timeout`, so a broker that accepts TCP and never speaks
//!   AMQP is an error after that long, never a hang;
//! - failures are classified: a refused login, a missing or forbidden virtual
//!   host and a declare that contradicts an existing queue cannot fix
//!   themselves, so they are configuration errors ([`BrokerError::is_config`])
//!   that a worker or beat reports once and exits on (exit 2), instead of
//!   retrying forever.

use std::time::Duration;

use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties, ErrorKind};

use crate::config::QueueConfig;

/// AMQP reply codes that mean the configuration is wrong.
const ACCESS_REFUSED: u16 = 403;
const NOT_FOUND: u16 = 404;
const PRECONDITION_FAILED: u16 = 406;
const NOT_ALLOWED: u16 = 530;

/// Why the broker could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// TCP may have connected, but the handshake did not finish in time.
    #[error(
        "RabbitMQ at {url} did not complete the AMQP handshake within {timeout:?} \
         (broker.connect_timeout): is that address a RabbitMQ server, and is it healthy?"
    )]
    Timeout { url: String, timeout: Duration },
    /// The login was refused: user or password wrong (configuration).
    #[error(
        "RabbitMQ at {url} refused the login ({reply}): check the user and password in broker.url"
    )]
    AccessRefused { url: String, reply: String },
    /// The virtual host is missing or the user may not use it (configuration).
    #[error(
        "RabbitMQ at {url} does not let this user use the virtual host ({reply}): check the vhost in broker.url and the user's permissions"
    )]
    Vhost { url: String, reply: String },
    /// A queue exists with other arguments (configuration).
    #[error(
        "RabbitMQ refused to declare a queue ({reply}): an existing queue has other arguments; \
         broker.queue_type or broker.delivery_limit differ from what the queues were created with \
         (delete the namespace's queues, or set them back)"
    )]
    Precondition { reply: String },
    /// Anything else: connection refused, reset, DNS, TLS, a lost connection.
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: lapin::Error,
    },
}

impl BrokerError {
    /// True when retrying cannot help: the configuration must change.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            BrokerError::AccessRefused { .. }
                | BrokerError::Vhost { .. }
                | BrokerError::Precondition { .. }
        )
    }

    /// True for the one configuration error a healthy broker also gives
    /// for a few seconds while it boots: its vhost is not running yet.
    pub fn may_be_booting(&self) -> bool {
        matches!(self, BrokerError::Vhost { .. })
    }

    /// True when nothing listens at the address (the hint "start it" fits).
    pub fn is_refused(&self) -> bool {
        matches!(self, BrokerError::Unreachable { source, .. }
            if matches!(source.kind(), ErrorKind::IOError(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused))
    }

    /// Classify an error of a connection attempt to `url` (already redacted).
    pub fn classify(url: &str, e: lapin::Error) -> BrokerError {
        match reply_of(&e) {
            Some((ACCESS_REFUSED, reply)) => BrokerError::AccessRefused {
                url: url.to_string(),
                reply,
            },
            Some((NOT_ALLOWED | NOT_FOUND, reply)) => BrokerError::Vhost {
                url: url.to_string(),
                reply,
            },
            Some((PRECONDITION_FAILED, reply)) => BrokerError::Precondition { reply },
            _ => BrokerError::Unreachable {
                url: url.to_string(),
                source: e,
            },
        }
    }
}

/// The AMQP reply code and text of a protocol error.
fn reply_of(e: &lapin::Error) -> Option<(u16, String)> {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => Some((
            amqp.get_id(),
            format!("{} {}", amqp.get_id(), amqp.get_message()),
        )),
        _ => None,
    }
}

/// True for `PRECONDITION_FAILED` (a declare with arguments that differ from
/// the existing queue's): a configuration error, not a transient one.
pub fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(reply_of(e), Some((PRECONDITION_FAILED, _)))
}

/// A failed declare as the configuration error it is, when it is one
/// ([`BrokerError::Precondition`], which says which keys to look at).
pub fn declare_failure(e: &lapin::Error) -> Option<BrokerError> {
    match reply_of(e) {
        Some((PRECONDITION_FAILED, reply)) => Some(BrokerError::Precondition { reply }),
        _ => None,
    }
}

/// True for `NOT_FOUND` on a channel (a passive declare of a queue that
/// does not exist).
pub fn is_not_found(e: &lapin::Error) -> bool {
    matches!(reply_of(e), Some((NOT_FOUND, _)))
}

/// How long a vhost error must last, in a process that never connected,
/// before it is taken for a configuration error (a booting RabbitMQ
/// answers "vhost not found" until the vhost runs).
pub const BOOT_GRACE: Duration = Duration::from_secs(20);

/// Decides when a configuration error ends a long-running process (worker,
/// beat): at once for a refused login or a queue declared otherwise; for a
/// vhost error only when it lasted [`BOOT_GRACE`] and this process never
/// connected (once it did, the configuration was right and the broker is
/// restarting: keep trying).
#[derive(Debug, Default)]
pub struct ConfigErrorGate {
    since: Option<std::time::Instant>,
    connected: bool,
}

impl ConfigErrorGate {
    /// A session got connected: the configuration works.
    pub fn connected(&mut self) {
        self.connected = true;
        self.since = None;
    }

    /// Whether to stop on a configuration error; `booting` when it may be
    /// a broker still starting ([`BrokerError::may_be_booting`]).
    pub fn stop(&mut self, booting: bool) -> bool {
        if !booting {
            return true;
        }
        if self.connected {
            return false;
        }
        self.since
            .get_or_insert_with(std::time::Instant::now)
            .elapsed()
            >= BOOT_GRACE
    }
}

/// The node the next connection tries first (per process; starts at a
/// random node so the processes of a cluster spread over its nodes).
static NEXT_NODE: std::sync::LazyLock<std::sync::atomic::AtomicUsize> =
    std::sync::LazyLock::new(|| {
        std::sync::atomic::AtomicUsize::new(uuid::Uuid::new_v4().as_u128() as usize)
    });

/// Open an AMQP connection named after this process, each attempt bounded
/// by `broker.connect_timeout`. With several nodes (`broker.urls`, or a
/// comma-separated `broker.url`), they are tried in turn, starting after
/// the node of the previous connection: a process whose connection was
/// lost moves on to the next node, and the processes of a cluster spread
/// over its nodes. The error is the last node's.
pub async fn connect(config: &QueueConfig, role: &str) -> Result<Connection, BrokerError> {
    connect_node(config, role).await.map(|(c, _)| c)
}

/// [`connect`], also saying which node (its URL, password redacted).
pub async fn connect_node(
    config: &QueueConfig,
    role: &str,
) -> Result<(Connection, String), BrokerError> {
    let nodes = config.amqp_urls();
    let n = nodes.len().max(1);
    let start = NEXT_NODE.load(std::sync::atomic::Ordering::Relaxed);
    let timeout = config.broker.connect_timeout.0;
    let mut last = None;
    for i in 0..n {
        let idx = (start + i) % n;
        let Some(url) = nodes.get(idx) else { break };
        let shown = crate::config::redact_url(url);
        let result = match tokio::time::timeout(timeout, open(config, url, role)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(BrokerError::classify(&shown, e)),
            Err(_) => Err(BrokerError::Timeout {
                url: shown.clone(),
                timeout,
            }),
        };
        match result {
            Ok(conn) => {
                NEXT_NODE.store(idx + 1, std::sync::atomic::Ordering::Relaxed);
                return Ok((conn, shown));
            }
            Err(e) => {
                if n > 1 {
                    tracing::warn!(node = %shown, error = %e, "broker node unreachable; trying the next");
                }
                last = Some(e);
            }
        }
    }
    NEXT_NODE.store(start + 1, std::sync::atomic::Ordering::Relaxed);
    Err(last.unwrap_or_else(|| BrokerError::Timeout {
        url: "(no broker node configured)".into(),
        timeout,
    }))
}

async fn open(config: &QueueConfig, url: &str, role: &str) -> Result<Connection, lapin::Error> {
    let name = format!(
        "alertflow-{role}@{}:{}/{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id(),
        config.namespace
    );
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    if crate::tls::amqp_uses_tls(config) && config.tls.ca_file.is_some() {
        // amqps:// with a private CA ([tls] ca_file) as extra trusted roots.
        let tls = crate::tls::amqp_tls_config(config)?;
        return lapin::DefaultConnectionBuilder::new()?
            .with_uri_str(url.to_string())
            .with_properties(props)
            .with_tls_config(tls)
            .connect()
            .await;
    }
    Connection::connect(url, props).await
}

/// Close a connection in order, bounded, ignoring the outcome: the CLI's
/// way to finish with the broker without lapin logging errors about
/// channels closed under it.
pub async fn close(conn: Connection) {
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "done".into())).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};

    fn protocol(kind: AMQPErrorKind) -> lapin::Error {
        lapin::Error::from(ErrorKind::ProtocolError(AMQPError::new(
            kind,
            "refused".into(),
        )))
    }

    #[test]
    fn configuration_errors_are_told_apart_from_outages() {
        let refused = BrokerError::classify(
            "amqp://u:***@h/%2f",
            protocol(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)),
        );
        assert!(matches!(refused, BrokerError::AccessRefused { .. }));
        assert!(refused.is_config());
        assert!(refused.to_string().contains("user and password"));
        let vhost = BrokerError::classify(
            "amqp://u:***@h/nope",
            protocol(AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)),
        );
        assert!(matches!(vhost, BrokerError::Vhost { .. }) && vhost.is_config());
        let pre = protocol(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED));
        assert!(is_precondition_failed(&pre));
        let io = lapin::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let down = BrokerError::classify("amqp://h/%2f", io);
        assert!(!down.is_config() && down.is_refused());
    }

    #[test]
    fn a_vhost_error_stops_only_a_process_that_never_connected_after_the_grace() {
        let mut gate = ConfigErrorGate::default();
        assert!(gate.stop(false), "a refused login stops at once");
        assert!(!gate.stop(true), "a vhost error first gets the boot grace");
        gate.since = Some(std::time::Instant::now() - BOOT_GRACE);
        assert!(gate.stop(true), "and stops once the grace is over");
        gate.connected();
        gate.since = Some(std::time::Instant::now() - BOOT_GRACE * 10);
        assert!(
            !gate.stop(true),
            "once connected, a restarting broker is waited for"
        );
        assert!(gate.stop(false));
    }
}
