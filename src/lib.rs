//! alertflow: a distributed task queue on RabbitMQ and Redis, built to run an
//! alert pipeline (Lark alert cards → StarRocks, InfluxDB checks → Lark bot).
//!
//! `queue` (the `alertflow-queue` crate) is the reusable task-queue core and
//! knows nothing about alerts; `tasks` holds the tasks and their registry;
//! `cli` the operator commands; the other modules are the domain the tasks
//! use (cards, sinks, recommendations, checks and notifications).
//! `sandbox` (the `alertflow-sandbox` crate) holds the stand-ins for Lark,
//! Slack, Stream Load and InfluxDB that the CLI's `sandbox`, `demo` and
//! benchmarks and the tests use; nothing the worker or beat runs reaches it.

pub mod cli;
pub mod config;
pub mod influx;
pub mod lark;
pub mod notify;
pub mod recommendation;
pub mod reconcile;
pub mod run_state;
pub use alertflow_queue as queue;
pub use alertflow_sandbox as sandbox;
pub mod severity;
pub mod sink;
pub mod tasks;
pub mod telemetry;
pub mod watchdog;
pub mod web;
