//! alertflow: a distributed task queue on RabbitMQ and Redis, built to run an
//! alert pipeline (Lark alert cards → StarRocks, InfluxDB checks → Lark bot).
//!
//! `queue` is the reusable task-queue core and knows nothing about alerts;
//! `tasks` holds the tasks and their registry; `cli` the operator commands.

pub mod cli;
pub mod config;
pub mod influx;
pub mod lark;
pub mod notify;
pub mod queue;
pub mod sandbox;
pub mod severity;
pub mod sink;
pub mod tasks;
pub mod telemetry;
pub mod tls;
