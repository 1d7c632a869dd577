//! `bench-incr`: increments one Redis key (`INCR`). The task body of
//! `alertflow bench noop --task incr`, the same body the Celery side of
//! `bench/run` runs, so both queues do the same work per task. Only that
//! in-process benchmark registers it: `tasks::registry` does not, so an
//! `alertflow-worker` process dead-letters it as an unknown task.
//!
//! The key must lie in this process's namespace (`<namespace>:...`), so a
//! published `bench-incr` can never touch another application's keys.

use serde::Deserialize;

use crate::queue::task::{Task, TaskContext, TaskError};

pub struct BenchIncr;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchIncrArgs {
    pub key: String,
}

impl Task for BenchIncr {
    const NAME: &'static str = "bench-incr";
    type Args = BenchIncrArgs;

    async fn run(&self, ctx: &TaskContext, args: BenchIncrArgs) -> Result<(), TaskError> {
        let ns = &ctx.services.config.namespace;
        if !args.key.starts_with(&format!("{ns}:")) {
            return Err(TaskError::fatal(format!(
                "bench-incr: key {:?} is outside the namespace {ns:?}",
                args.key
            )));
        }
        let mut conn = ctx.services.redis.get().await.map_err(TaskError::retry)?;
        let _: i64 = deadpool_redis::redis::cmd("INCR")
            .arg(&args.key)
            .query_async(&mut conn)
            .await
            .map_err(TaskError::retry)?;
        Ok(())
    }
}
