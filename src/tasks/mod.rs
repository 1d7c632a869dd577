//! The tasks, and the registry the worker dispatches from.
//!
//! A task is a struct holding the clients it needs, built once by
//! [`registry`] when the process starts; a bad config value stops the
//! process there (exit 2, naming the key) instead of failing every message.
//! A new task is a file here and one `.with(...)` line in [`registry`]
//! (see "Add a task" in the README).

pub mod digest;
pub mod fetch_day;
pub mod http_probe;
pub mod influx_check;
pub mod insert;
pub mod noop;
pub mod parse_batch;
pub mod recommend;
pub mod reconcile;
pub mod sleep;
pub mod watchdog;

use crate::queue::redis_pool::Pool;

use crate::config::{AppConfig, ConfigError};
use crate::queue::context::{RedisSetupError, Services, redis_pool};
use crate::queue::ratelimit::RateLimiter;
use crate::queue::task::Registry;

/// Why the tasks could not be set up: a config value their clients refuse.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
}

/// What the tasks share with the queue runtime of their process: its Redis
/// pool and its rate limiter (so a Lark call and a task start take slots of
/// the same limits).
#[derive(Clone)]
pub struct Shared {
    pub redis: Pool,
    pub limiter: RateLimiter,
}

impl Shared {
    /// The worker's (or `run --local`'s) own pool and limiter.
    pub fn of(services: &Services) -> Shared {
        Shared {
            redis: services.redis.clone(),
            limiter: services.limiter.clone(),
        }
    }

    /// A pool and limiter of their own, for processes that only publish or
    /// look tasks up (the CLI, beat). Nothing connects until used.
    pub fn standalone(config: &AppConfig) -> Result<Shared, RedisSetupError> {
        let redis = redis_pool(config)?;
        let limiter = RateLimiter::new(
            redis.clone(),
            &config.namespace,
            config.limiter_limits(),
            config.redis.fail_open,
        );
        Ok(Shared { redis, limiter })
    }
}

/// Every task this build of alertflow can run, each with its clients.
pub fn registry(config: &AppConfig, shared: &Shared) -> Result<Registry, SetupError> {
    // One notification runner (receivers, Influx clients, ledger pool) for
    // the checks and the watchdogs.
    let checks = std::sync::Arc::new(influx_check::CheckRunner::new(
        std::sync::Arc::new(config.clone()),
        shared.redis.clone(),
        Some(shared.limiter.clone()),
    )?);
    Ok(Registry::new()
        .with(noop::Noop)
        .with(sleep::Sleep)
        .with(fetch_day::FetchDay::new(config, shared)?)
        .with(parse_batch::ParseBatch::new(config)?)
        .with(insert::Insert::new(config)?)
        .with(recommend::Recommend::new(config)?)
        .with(digest::Digest::new(config, shared)?)
        .with(reconcile::Reconcile::new(config))
        .with(influx_check::InfluxCheck::new(checks.clone()))
        .with(http_probe::HttpProbe::new(config)?)
        .with(watchdog::Watchdog::new(config, shared, checks)))
}

/// [`registry`] for a process without a worker runtime (CLI, beat): names,
/// queues and argument checks, with clients that connect only when used.
pub fn lookup_registry(config: &AppConfig) -> Result<Registry, SetupError> {
    registry(config, &Shared::standalone(config)?)
}

/// Check a config against this build's tasks (see
/// [`Registry::validate_config`]).
pub fn validate_config(config: &AppConfig) -> Result<(), SetupError> {
    lookup_registry(config)?.validate_config(config)?;
    Ok(())
}
