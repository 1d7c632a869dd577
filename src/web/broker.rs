//! The web server's one broker connection, shared by every request that
//! reads RabbitMQ (the overview's queue counts, the dead letters): opened on
//! first use, reopened after it closes or fails, each attempt bounded.
//! Requests open their own channels on it; they never close the connection.

use std::sync::Arc;
use std::time::Duration;

use lapin::Connection;
use tokio::sync::Mutex;

use crate::config::AppConfig;

/// A lazily (re)connected broker connection.
pub struct BrokerLink {
    config: Arc<AppConfig>,
    conn: Mutex<Option<Arc<Connection>>>,
}

impl BrokerLink {
    pub fn new(config: Arc<AppConfig>) -> BrokerLink {
        BrokerLink {
            config,
            conn: Mutex::new(None),
        }
    }

    /// The open connection, or a new one if there is none or it closed;
    /// waiting for another request's connect attempt counts towards
    /// `timeout`. The error says why, for the page.
    pub async fn connection(&self, timeout: Duration) -> Result<Arc<Connection>, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let late = || format!("RabbitMQ did not answer within {timeout:?}");
        let mut slot = tokio::time::timeout_at(deadline, self.conn.lock())
            .await
            .map_err(|_| late())?;
        if let Some(c) = slot.as_ref() {
            let s = c.status();
            if s.connected() && !s.errored() {
                return Ok(c.clone());
            }
        }
        if let Some(old) = slot.take() {
            close_later(old);
        }
        let conn =
            tokio::time::timeout_at(deadline, crate::cli::connect_broker(&self.config, "web"))
                .await
                .map_err(|_| late())?
                .map_err(|e| e.message)?;
        let conn = Arc::new(conn);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Run `f` on the connection (on channels of its own, that it closes);
    /// a connection found broken after an error is dropped, so the next
    /// request reconnects.
    pub async fn with<T>(
        &self,
        timeout: Duration,
        f: impl AsyncFnOnce(&Connection) -> Result<T, String>,
    ) -> Result<T, String> {
        let conn = self.connection(timeout).await?;
        let out = f(&conn).await;
        let s = conn.status();
        if out.is_err() && (!s.connected() || s.errored()) {
            self.discard(&conn).await;
        }
        out
    }

    /// Drop `conn` after an error on it, so the next request reconnects
    /// (unless another request already replaced it).
    async fn discard(&self, conn: &Arc<Connection>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn))
            && let Some(old) = slot.take()
        {
            close_later(old);
        }
    }
}

/// Close a connection nobody should use any more once the requests still
/// holding it are done with it, without making this request wait.
fn close_later(conn: Arc<Connection>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            conn.close(200, "web: replaced".into()),
        )
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn one_connection_is_shared_and_replaced_once_closed_or_discarded() {
        let link = BrokerLink::new(Arc::new(AppConfig::default()));
        let a = link.connection(T).await.unwrap();
        let b = link.connection(T).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one connection for every request");
        a.close(200, "test".into()).await.unwrap();
        let c = link.connection(T).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &c) && c.status().connected());
        link.discard(&a).await; // stale: does not drop the new one
        assert!(Arc::ptr_eq(&c, &link.connection(T).await.unwrap()));
        link.discard(&c).await;
        let d = link.connection(T).await.unwrap();
        assert!(!Arc::ptr_eq(&c, &d) && d.status().connected());
        d.close(200, "test".into()).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_an_error_within_the_bound() {
        let mut config = AppConfig::default();
        config.queue.broker.url =
            crate::queue::config::SecretUrl::new("amqp://guest:guest@127.0.0.1:1/%2f");
        let link = BrokerLink::new(Arc::new(config));
        let started = std::time::Instant::now();
        let e = link.connection(Duration::from_secs(2)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3), "{e}");
        assert!(!e.is_empty());
    }
}
