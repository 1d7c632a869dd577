//! Shared services of a process: configuration, Redis, state, limits, metrics.

use std::sync::Arc;

use deadpool_redis::Runtime;

use crate::redis_pool::Pool;

use crate::config::QueueConfig;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::state::{StateStore, StateWriter, WorkerRegistry};
use crate::topology::Topology;

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the Redis pool for {url}: {message}")]
pub struct RedisSetupError {
    pub url: String,
    pub message: String,
}

/// Build a Redis pool with timeouts, so a dead Redis gives errors, not hangs.
pub fn redis_pool(config: &QueueConfig) -> Result<Pool, RedisSetupError> {
    let err = |message: String| RedisSetupError {
        url: config.redis.url.redacted(),
        message,
    };
    let timeout = Some(config.redis.timeout.0);
    if !config.redis.sentinels.is_empty() {
        return sentinel_pool(config).map_err(err);
    }
    // rediss:// with a private CA needs a client built with it (crate::tls).
    let builder = match crate::tls::redis_tls_manager(config).map_err(err)? {
        Some(manager) => deadpool_redis::Pool::builder(manager),
        None => deadpool_redis::Config::from_url(config.redis.url.expose())
            .builder()
            .map_err(|e| err(e.to_string()))?,
    };
    builder
        .max_size(config.redis.pool_size)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .runtime(Runtime::Tokio1)
        .build()
        .map(Pool::Direct)
        .map_err(|e| err(e.to_string()))
}

/// The pool of the master the Sentinels name (`redis.sentinels`,
/// `redis.master_name`); password and database from `redis.url`.
fn sentinel_pool(config: &QueueConfig) -> Result<Pool, String> {
    use deadpool_redis::redis::IntoConnectionInfo;
    use deadpool_redis::sentinel::{SentinelNodeConnectionInfo, SentinelServerType};
    let timeout = Some(config.redis.timeout.0);
    let urls: Vec<String> = config
        .redis
        .sentinels
        .iter()
        .map(|u| u.expose().to_string())
        .collect();
    let info = config
        .redis
        .url
        .expose()
        .into_connection_info()
        .map_err(|e| format!("redis.url: {e}"))?;
    let mut c = deadpool_redis::sentinel::Config::from_urls(
        urls,
        config.redis.master_name.clone(),
        SentinelServerType::Master,
    );
    c = c.with_node_connection_info(Some(SentinelNodeConnectionInfo {
        tls_mode: None,
        redis_connection_info: Some(info.redis_settings().clone().into()),
    }));
    c.builder()
        .map_err(|e| format!("redis.sentinels: {e}"))?
        .max_size(config.redis.pool_size)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .runtime(Runtime::Tokio1)
        .build()
        .map(Pool::Sentinel)
        .map_err(|e| format!("redis.sentinels: {e}"))
}

/// How a task's execution ended, as reported to observers.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    Succeeded,
    /// Failed and will be retried.
    Retrying {
        error: &'a str,
    },
    /// Sent to the dead-letter queue.
    DeadLettered {
        reason: crate::message::DeadReason,
        error: &'a str,
    },
}

/// Something told about every task outcome (pipeline health notifications).
/// Called on the worker's hot path: an implementation must return at once
/// and do its I/O in the background, and must never fail the task.
pub trait OutcomeObserver: Send + Sync {
    fn on_outcome(&self, envelope: &crate::message::Envelope, outcome: Outcome<'_>);
}

/// What every task and the worker runtime share.
pub struct Services {
    pub config: Arc<QueueConfig>,
    pub topology: Arc<Topology>,
    pub redis: Pool,
    pub states: StateStore,
    pub state_writer: StateWriter,
    pub workers: WorkerRegistry,
    pub limiter: RateLimiter,
    pub metrics: Arc<Metrics>,
    /// `host:pid:short-uuid`, unique per process.
    pub worker_id: String,
    /// Tasks operators revoked (see [`crate::revoke`]).
    pub revoked: Arc<crate::revoke::Revoked>,
    /// Told about every outcome (see [`OutcomeObserver`]).
    pub observers: std::sync::RwLock<Vec<Arc<dyn OutcomeObserver>>>,
}

impl Services {
    /// Build the services; spawns the state writer (hence needs a runtime).
    pub fn new(
        config: Arc<QueueConfig>,
    ) -> Result<(Arc<Services>, tokio::task::JoinHandle<()>), RedisSetupError> {
        let redis = redis_pool(&config)?;
        let states = StateStore::new(redis.clone(), &config.namespace, config.state.ttl.0);
        let (state_writer, writer_task) = StateWriter::spawn(states.clone());
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let worker_id = format!(
            "{host}:{}:{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let services = Services {
            topology: Arc::new(Topology::from_config(&config)),
            workers: WorkerRegistry::new(redis.clone(), &config.namespace),
            limiter: RateLimiter::new(
                redis.clone(),
                &config.namespace,
                config.limiter_limits(),
                config.redis.fail_open,
            ),
            metrics: Arc::new(Metrics::new()),
            states,
            state_writer,
            revoked: crate::revoke::Revoked::spawn(redis.clone(), &config.namespace),
            redis,
            config,
            worker_id,
            observers: std::sync::RwLock::new(Vec::new()),
        };
        Ok((Arc::new(services), writer_task))
    }
}

impl Services {
    /// Add an observer of task outcomes.
    pub fn observe(&self, o: Arc<dyn OutcomeObserver>) {
        self.observers
            .write()
            .expect("observer list lock is never poisoned")
            .push(o);
    }

    /// Tell every observer; an observer that panics is not allowed to fail
    /// the task. Observers only enqueue, so the read lock is held briefly.
    pub fn notify(&self, envelope: &crate::message::Envelope, outcome: Outcome<'_>) {
        let list = self
            .observers
            .read()
            .expect("observer list lock is never poisoned");
        for o in list.iter() {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                o.on_outcome(envelope, outcome)
            }));
            if r.is_err() {
                tracing::error!("an outcome observer panicked; ignored");
            }
        }
    }
}
