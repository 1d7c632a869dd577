//! The task-queue core: envelope, topology, publishing, the worker runtime,
//! rate limits, state and scheduling. Nothing here knows about alerts.

pub mod activity;
pub mod admin;
pub mod beat;
pub mod config;
pub mod connect;
pub mod context;
pub mod execute;
#[cfg(feature = "test-harness")]
pub mod harness;
pub mod local;
pub mod message;
pub mod metrics;
pub mod publisher;
pub mod ratelimit;
pub mod redis_pool;
pub mod revoke;
pub mod schedule;
pub mod state;
pub mod task;
pub mod task_index;
pub mod tls;
pub mod topology;
pub mod worker;
