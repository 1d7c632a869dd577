//! `sleep`: waits `ms` milliseconds. For smoke tests of shutdown, time limits
//! and redelivery (`alertflow enqueue sleep --args '{"ms": 2000}'`).

use std::time::Duration;

use serde::Deserialize;

use crate::queue::task::{Task, TaskContext, TaskError};

pub struct Sleep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    pub ms: u64,
}

impl Task for Sleep {
    const NAME: &'static str = "sleep";
    type Args = SleepArgs;

    async fn run(&self, _ctx: &TaskContext, args: SleepArgs) -> Result<(), TaskError> {
        if args.ms > 24 * 3600 * 1000 {
            return Err(TaskError::fatal("sleep: ms must be at most one day"));
        }
        tokio::time::sleep(Duration::from_millis(args.ms)).await;
        Ok(())
    }
}
