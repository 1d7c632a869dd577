//! `noop`: does nothing. For smoke tests and benchmarks.

use serde::Deserialize;

use crate::queue::task::{Task, TaskContext, TaskError};

pub struct Noop;

/// `noop` accepts any arguments and ignores them.
#[derive(Deserialize)]
pub struct NoopArgs {}

impl Task for Noop {
    const NAME: &'static str = "noop";
    type Args = NoopArgs;

    async fn run(&self, _ctx: &TaskContext, _args: NoopArgs) -> Result<(), TaskError> {
        Ok(())
    }
}
