//! An in-process queue for `alertflow run --local`: the same tasks, the same
//! retry, time-limit and rate-limit rules and the same task states, without
//! RabbitMQ. For a single box or for debugging; nothing survives the process.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{Instrument, info_span, warn};

use crate::context::Services;
use crate::message::Envelope;
use crate::state::{TaskState, TaskStatus};
use crate::task::{Outbox, Registry, TaskContext, TaskError};
use crate::worker::next_attempt;

/// How a local run ended.
#[derive(Debug, Default, Clone)]
pub struct LocalReport {
    pub succeeded: u64,
    pub retried: u64,
    /// Tasks that ended failed or dead, with the error.
    pub failed: Vec<(Envelope, String)>,
}

enum Outcome {
    Done,
    Again(Envelope),
    Failed(Envelope, String),
}

/// Runs tasks in this process until none are left.
pub struct LocalRunner {
    services: Arc<Services>,
    registry: Arc<Registry>,
    concurrency: usize,
}

impl LocalRunner {
    pub fn new(
        services: Arc<Services>,
        registry: Arc<Registry>,
        concurrency: usize,
    ) -> LocalRunner {
        LocalRunner {
            services,
            registry,
            concurrency: concurrency.max(1),
        }
    }

    /// Run `initial` and everything it spawns.
    pub async fn run(&self, initial: Vec<Envelope>) -> LocalReport {
        let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
        for e in initial {
            let _ = tx.send(e);
        }
        let sem = Arc::new(Semaphore::new(self.concurrency));
        let mut running: JoinSet<Outcome> = JoinSet::new();
        let mut report = LocalReport::default();
        loop {
            tokio::select! {
                Some(env) = rx.recv() => {
                    let permit = sem.clone().acquire_owned().await.expect("never closed");
                    let (s, r, out) = (self.services.clone(), self.registry.clone(), tx.clone());
                    running.spawn(async move {
                        let o = run_one(s, r, out, env).await;
                        drop(permit);
                        o
                    });
                }
                Some(done) = running.join_next() => {
                    match done {
                        Ok(Outcome::Done) => report.succeeded += 1,
                        Ok(Outcome::Again(next)) => {
                            report.retried += 1;
                            let _ = tx.send(next);
                        }
                        Ok(Outcome::Failed(env, e)) => report.failed.push((env, e)),
                        Err(e) => warn!(error = %e, "a local task panicked"),
                    }
                }
                else => break,
            }
            if running.is_empty() && rx.is_empty() {
                break;
            }
        }
        report
    }
}

async fn run_one(
    s: Arc<Services>,
    registry: Arc<Registry>,
    out: mpsc::UnboundedSender<Envelope>,
    env: Envelope,
) -> Outcome {
    if let Some(eta) = env.eta
        && let Ok(wait) = (eta - Utc::now()).to_std()
    {
        tokio::time::sleep(wait).await;
    }
    let record = |env: &Envelope, status: TaskStatus, error: Option<String>| {
        let mut st = TaskState::of(env, status);
        st.worker = Some(format!("{} (local)", s.worker_id));
        st.error = error;
        s.state_writer.record(st);
    };
    let Some(task) = registry.get(&env.task).cloned() else {
        let e = format!("no task named {:?}", env.task);
        record(&env, TaskStatus::Dead, Some(e.clone()));
        return Outcome::Failed(env, e);
    };
    let span = info_span!("task", task.id = %env.id, task.name = %env.task, attempt = env.attempt, run_id = env.run_id.as_deref().unwrap_or(""));
    async {
        let result = async {
            for key in crate::task::Registry::start_keys(task.as_ref(), &env, &s.config)? {
                s.limiter
                    .acquire(&key, Duration::from_secs(300))
                    .await
                    .map_err(TaskError::retry)?;
            }
            record(&env, TaskStatus::Started, None);
            let limit = registry.time_limit(&env.task, &s.config);
            let ctx = TaskContext {
                envelope: env.clone(),
                services: s.clone(),
                publisher: Outbox::Local(out.clone()),
                registry: registry.clone(),
            };
            match tokio::time::timeout(limit, task.call(&ctx, env.args.clone())).await {
                Ok(r) => r,
                Err(_) => Err(TaskError::TimedOut(limit)),
            }
        }
        .await;
        match result {
            Ok(()) => {
                record(&env, TaskStatus::Succeeded, None);
                Outcome::Done
            }
            Err(TaskError::Fatal(e)) => {
                record(&env, TaskStatus::Failed, Some(e.clone()));
                Outcome::Failed(env.clone(), e)
            }
            Err(e) if env.attempt >= env.max_retries => {
                let msg = format!("gave up after {} attempts: {e}", env.attempt + 1);
                record(&env, TaskStatus::Dead, Some(msg.clone()));
                Outcome::Failed(env.clone(), msg)
            }
            Err(e) => {
                let (next, delay) = next_attempt(&env, &e, &s.config.worker);
                warn!(error = %e, ?delay, "task failed; will retry");
                record(&next, TaskStatus::Retrying, Some(e.to_string()));
                Outcome::Again(next)
            }
        }
    }
    .instrument(span)
    .await
}
