//! The tasks, and the registry the worker dispatches from. A new task is a
//! file here and one `.with(...)` line in [`registry`].

pub mod bench_incr;
pub mod catalogue;
pub mod fetch_day;
pub mod influx_check;
pub mod insert;
pub mod noop;
pub mod parse_batch;
pub mod recommend;
pub mod recommendation;
pub mod run_state;
pub mod sleep;

use crate::config::{Config, ConfigError};
use crate::queue::task::Registry;

/// Check a config against this build's tasks (see
/// [`Registry::validate_config`]).
pub fn validate_config(config: &Config) -> Result<(), ConfigError> {
    registry().validate_config(config)
}

/// Every task this build of alertflow can run.
pub fn registry() -> Registry {
    Registry::new()
        .with(noop::Noop)
        .with(sleep::Sleep)
        .with(bench_incr::BenchIncr)
        .with(fetch_day::FetchDay::default())
        .with(parse_batch::ParseBatch)
        .with(insert::Insert::default())
        .with(recommend::Recommend::default())
        .with(influx_check::InfluxCheck::default())
}
