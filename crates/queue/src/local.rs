//! An in-process queue for `alertflow run --local`: the worker's execution
//! path ([`crate::execute`]), so the same expiry, retry, time-limit and
//! rate-limit rules, task states, metrics and observers, without RabbitMQ.
//! For a single box or for debugging; nothing survives the process.
//!
//! Where the worker publishes a verdict, this runner acts on it in memory:
//! a retried or deferred task waits its delay in a tokio sleep that holds
//! no concurrency slot, then goes back on the queue; a dead-lettered one is
//! reported (there is no dead-letter queue).

use std::convert::Infallible;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::warn;

use crate::context::Services;
use crate::execute::{Clock, Executor, Outlet, Verdict, system_clock};
use crate::message::Envelope;
use crate::task::{Outbox, Registry};

/// How a local run ended.
#[derive(Debug, Default, Clone)]
pub struct LocalReport {
    pub succeeded: u64,
    pub retried: u64,
    /// Tasks that ended dead, with `reason: error`.
    pub failed: Vec<(Envelope, String)>,
}

/// Runs tasks in this process until none are left.
pub struct LocalRunner {
    services: Arc<Services>,
    registry: Arc<Registry>,
    concurrency: usize,
    clock: Clock,
}

/// Nothing to make durable before a verdict is recorded: the runner
/// re-enqueues after [`Executor::execute`] returns.
struct InProcess;

impl Outlet for InProcess {
    type Error = Infallible;

    async fn carry_out(&self, _: &Envelope, _: &Verdict) -> Result<(), Infallible> {
        Ok(())
    }
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
            clock: system_clock(),
        }
    }

    /// Read `eta` and `expires_at` against `clock` rather than the system
    /// clock (tests that pause tokio time).
    pub fn with_clock(mut self, clock: Clock) -> LocalRunner {
        self.clock = clock;
        self
    }

    /// Run `initial` and everything it spawns.
    pub async fn run(&self, initial: Vec<Envelope>) -> LocalReport {
        let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
        for e in initial {
            let _ = tx.send(e);
        }
        let executor = Arc::new(
            Executor::new(
                self.services.clone(),
                self.registry.clone(),
                Outbox::Local(tx.clone()),
            )
            .worker_name(format!("{} (local)", self.services.worker_id))
            .with_clock(self.clock.clone()),
        );
        let sem = Arc::new(Semaphore::new(self.concurrency));
        let mut running: JoinSet<(Envelope, Verdict)> = JoinSet::new();
        let mut report = LocalReport::default();
        loop {
            tokio::select! {
                Some(env) = rx.recv() => {
                    let permit = sem.clone().acquire_owned().await.expect("never closed");
                    let executor = executor.clone();
                    running.spawn(async move {
                        let Ok(verdict) = executor.execute(&env, &InProcess).await;
                        drop(permit);
                        if let Verdict::Retry { delay, .. } | Verdict::Defer { delay, .. } = &verdict {
                            tokio::time::sleep(*delay).await;
                        }
                        (env, verdict)
                    });
                }
                Some(done) = running.join_next() => {
                    match done {
                        Ok((_, Verdict::Ack)) => report.succeeded += 1,
                        Ok((_, Verdict::Retry { next, .. })) => {
                            report.retried += 1;
                            let _ = tx.send(*next);
                        }
                        Ok((_, Verdict::Defer { next, .. })) => {
                            let _ = tx.send(*next);
                        }
                        Ok((env, Verdict::DeadLetter { reason, error })) => {
                            report.failed.push((env, format!("{reason}: {error}")));
                        }
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
