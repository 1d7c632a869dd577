//! Transport security of the queue's two services: `amqps://` (lapin,
//! rustls) and `rediss://` (redis, rustls). Certificates are always verified and
//! host names checked; nothing here turns verification off. `[tls] ca_file`
//! (or `ALERTFLOW_TLS_CA_FILE`) names a PEM file with a private CA:
//!
//! - AMQP trusts it in addition to the system / built-in roots;
//! - Redis trusts only it (the redis crate replaces its roots with it).
//!
//! Without `ca_file`, AMQP verifies against the platform store and Redis
//! against the system store (rustls-native-certs).

use std::path::Path;

use crate::config::QueueConfig;

/// The CA file's bytes, when `tls.ca_file` is set.
pub fn ca_pem(config: &QueueConfig) -> std::io::Result<Option<Vec<u8>>> {
    match &config.tls.ca_file {
        None => Ok(None),
        Some(p) => read_ca(p).map(Some),
    }
}

fn read_ca(path: &Path) -> std::io::Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| {
        std::io::Error::new(e.kind(), format!("tls.ca_file {}: {e}", path.display()))
    })?;
    if !bytes
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "tls.ca_file {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

/// Whether the broker URL asks for TLS.
pub fn amqp_uses_tls(config: &QueueConfig) -> bool {
    config
        .broker_nodes()
        .first()
        .is_some_and(|u| u.starts_with("amqps://"))
}

/// Whether the Redis URL asks for TLS.
pub fn redis_uses_tls(config: &QueueConfig) -> bool {
    config.redis.url.expose().starts_with("rediss://")
}

/// lapin's TLS settings: the CA file as extra trusted roots, if any.
pub fn amqp_tls_config(config: &QueueConfig) -> std::io::Result<lapin::tcp::OwnedTLSConfig> {
    let cert_chain = match ca_pem(config)? {
        None => None,
        Some(pem) => Some(String::from_utf8(pem).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "tls.ca_file is not UTF-8 PEM text",
            )
        })?),
    };
    Ok(lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain,
    })
}

/// A Redis pool manager for `rediss://` with the CA file as its roots;
/// `None` when the default (`deadpool_redis::Config::from_url`) will do.
pub fn redis_tls_manager(config: &QueueConfig) -> Result<Option<deadpool_redis::Manager>, String> {
    if !redis_uses_tls(config) {
        return Ok(None);
    }
    let Some(pem) = ca_pem(config).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let client = deadpool_redis::redis::Client::build_with_tls(
        config.redis.url.expose(),
        deadpool_redis::redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
    .map_err(|e| e.to_string())?;
    let info = client.get_connection_info().clone();
    deadpool_redis::Manager::new(info)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_need_nothing() {
        let c = QueueConfig::default();
        assert!(!amqp_uses_tls(&c) && !redis_uses_tls(&c));
        assert!(redis_tls_manager(&c).unwrap().is_none());
        assert!(amqp_tls_config(&c).unwrap().cert_chain.is_none());
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate").unwrap();
        let mut c = QueueConfig::default();
        c.tls.ca_file = Some(p);
        let e = amqp_tls_config(&c).unwrap_err().to_string();
        assert!(e.contains("tls.ca_file") && e.contains("no PEM"), "{e}");
    }
}
