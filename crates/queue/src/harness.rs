//! Helpers for integration tests of code built on the queue (feature
//! `test-harness`): a namespace of the test's own on the real broker and
//! Redis, a worker started in-process, waiting for a task state, and a
//! cleanup that runs even from the `Drop` of a panicking test.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::context::Services;
use crate::state::{StateStore, TaskState, TaskStatus};
use crate::task::Registry;
use crate::worker::{Worker, WorkerOptions};

/// `t-<name>-<8 hex>`: a namespace no other test (or run) shares.
pub fn unique_namespace(name: &str) -> String {
    format!("t-{name}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

/// Run `f` to completion on a thread with a runtime of its own: usable from
/// a `Drop`, inside or outside a runtime, in a panicking test.
pub fn block_on_own_runtime(f: impl Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds")
            .block_on(f)
    })
    .join();
}

/// A worker running in this process (see [`start_worker`]).
pub struct RunningWorker {
    pub token: CancellationToken,
    pub handle: tokio::task::JoinHandle<Result<(), String>>,
    pub services: Arc<Services>,
}

/// Start a worker with `services` and `registry` on a task of its own.
pub fn start_worker(
    services: Arc<Services>,
    registry: Registry,
    opts: WorkerOptions,
) -> RunningWorker {
    let token = CancellationToken::new();
    let worker = Worker::new(services.clone(), Arc::new(registry), opts);
    let stop = token.clone();
    let handle = tokio::spawn(async move { worker.run(stop).await.map_err(|e| e.to_string()) });
    RunningWorker {
        token,
        handle,
        services,
    }
}

impl RunningWorker {
    /// Stop it as SIGTERM would, and check that it ran without error.
    pub async fn stop(self) {
        self.token.cancel();
        let r = tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("worker stops within 20s")
            .expect("worker task did not panic");
        r.expect("worker ran without error");
    }
}

/// Poll until task `id` reaches `status`; panics after `timeout` with the
/// last state seen.
pub async fn wait_status(
    states: &StateStore,
    id: &Uuid,
    status: TaskStatus,
    timeout: Duration,
) -> TaskState {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(s) = states.get(id).await.expect("redis answers") {
            if s.status == status {
                return s;
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("task {id} did not reach {status:?} within {timeout:?}; last state {last:?}");
}
