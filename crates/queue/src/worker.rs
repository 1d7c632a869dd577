//! The worker runtime: consume, hand each delivery to the execution path
//! ([`crate::execute`]), carry its verdict out on the broker, ack, shut down.
//!
//! Guarantees:
//! - a delivery is acked only after its task finished and everything it
//!   caused (children, the retry copy, the dead letter) is confirmed by the
//!   broker; a crash before that means redelivery (at-least-once);
//! - acks are batched: the contiguous run of finished deliveries is acked
//!   with one `multiple` ack, never covering a delivery still running; a
//!   finished delivery stuck behind a long one is acked alone after 20 ms;
//! - failures never loop: retries go through the delay tiers, poison goes
//!   to the dead-letter queue at once;
//! - a lost connection ends the session: running tasks are aborted (their
//!   messages are redelivered by the broker), nothing is acked on a stale
//!   channel, and the supervisor reconnects with backoff;
//! - SIGTERM (the `shutdown` token) stops consuming, lets running tasks finish
//!   within `shutdown_timeout`, acks them, and returns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::QueueConfig;
use crate::connect::{BrokerError, ConfigErrorGate, declare_failure, is_precondition_failed};
use crate::context::Services;
use crate::execute::{Activity, Executor, Outlet, Verdict};
use crate::message::{DeadLetter, DeadReason, Envelope};
use crate::metrics::{self, Health};
use crate::publisher::{PublishError, Publisher};
use crate::state::WorkerInfo;
use crate::task::{Outbox, Registry};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Metrics(std::io::Error),
    #[error(transparent)]
    Connect(#[from] BrokerError),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("{0}")]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Queue(#[from] crate::topology::QueueNameError),
}

impl WorkerError {
    /// True when retrying cannot help (refused login, missing vhost, a queue
    /// declared with other arguments, an invalid queue name): the worker
    /// says so once and stops instead of reconnecting forever.
    pub fn is_config(&self) -> bool {
        match self {
            WorkerError::Connect(e) => e.is_config(),
            WorkerError::Broker(e) | WorkerError::Publish(PublishError::Broker(e)) => {
                is_precondition_failed(e)
            }
            WorkerError::Queue(_) => true,
            _ => false,
        }
    }

    /// A configuration error a booting broker also gives (see
    /// [`BrokerError::may_be_booting`]).
    pub fn may_be_booting(&self) -> bool {
        matches!(self, WorkerError::Connect(e) if e.may_be_booting())
    }
}

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Queue families to consume.
    pub queues: Vec<String>,
    pub concurrency: usize,
    /// Prefetch per consumer.
    pub prefetch: u16,
    pub shutdown_timeout: Duration,
    /// `None` = no `/metrics` endpoint.
    pub metrics_listen: Option<String>,
}

impl WorkerOptions {
    pub fn from_config(config: &QueueConfig) -> WorkerOptions {
        let listen = config.worker.metrics_listen.trim();
        WorkerOptions {
            queues: config.worker.queues.clone(),
            concurrency: config.worker.concurrency,
            prefetch: (config.worker.concurrency * config.worker.prefetch_multiplier)
                .min(u16::MAX as usize) as u16,
            shutdown_timeout: config.worker.shutdown_timeout.0,
            metrics_listen: (!listen.is_empty() && listen != "off").then(|| listen.to_string()),
        }
    }
}

/// A worker: runs sessions under a supervisor until shut down.
pub struct Worker {
    services: Arc<Services>,
    registry: Arc<Registry>,
    opts: WorkerOptions,
    health: Arc<Health>,
    /// Shown in heartbeats; shared by every session.
    activity: Arc<Activity>,
    on_ready: Option<Box<dyn Fn() + Send + Sync>>,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl Worker {
    /// Empty `opts.queues` means every family the registry's tasks use.
    pub fn new(
        services: Arc<Services>,
        registry: Arc<Registry>,
        mut opts: WorkerOptions,
    ) -> Worker {
        if opts.queues.is_empty() {
            opts.queues = registry.consumed_families(&services.config);
        }
        Worker {
            services,
            registry,
            opts,
            health: Arc::new(Health::default()),
            activity: Arc::default(),
            on_ready: None,
        }
    }

    /// Called each time the worker is connected and consuming (systemd READY=1).
    pub fn on_ready(mut self, f: impl Fn() + Send + Sync + 'static) -> Worker {
        self.on_ready = Some(Box::new(f));
        self
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Say at start, once per task, when a task routed to one of this
    /// worker's queues cannot run here ([`crate::task::Task::unavailable`]):
    /// its messages will be dead-lettered with that reason. (Not a refusal:
    /// a worker without Lark credentials still serves every other task of
    /// the queues it shares.)
    fn warn_unavailable_tasks(&self) {
        let config = &self.services.config;
        for name in self.registry.names() {
            let Some(task) = self.registry.get(name) else {
                continue;
            };
            let queue = config.task_queue(name, task.queue());
            if !self.opts.queues.contains(&queue) {
                continue;
            }
            if let Some(reason) = task.unavailable() {
                warn!(task = task.name(), %queue, %reason, "a task this worker consumes cannot run here; its messages will be dead-lettered");
            }
        }
    }

    /// Run until `shutdown` is cancelled. Returns the `/metrics` bind error
    /// at once; broker and Redis trouble are retried, never returned.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        for q in &self.opts.queues {
            crate::topology::validate_queue_name(q)?;
        }
        let s = &self.services;
        self.warn_unavailable_tasks();
        if let Some(listen) = &self.opts.metrics_listen {
            let addr = metrics::serve(
                listen,
                s.metrics.registry.clone(),
                self.health.clone(),
                shutdown.child_token(),
            )
            .await
            .map_err(WorkerError::Metrics)?;
            info!(%addr, "serving /metrics and /healthz");
        }
        let heartbeat = tokio::spawn(heartbeat_loop(
            s.clone(),
            self.opts.clone(),
            self.activity.clone(),
            shutdown.child_token(),
        ));
        info!(
            worker = %s.worker_id,
            queues = ?self.opts.queues,
            concurrency = self.opts.concurrency,
            prefetch = self.opts.prefetch,
            broker = %s.config.broker.url,
            "worker starting"
        );
        let mut backoff = Duration::from_millis(200);
        let mut gate = ConfigErrorGate::default();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let started = Instant::now();
            let end = self.session(&shutdown).await;
            self.health.set_connected(false);
            s.metrics.worker_up.set(0);
            match end {
                Ok(SessionEnd::Shutdown) => break,
                Ok(SessionEnd::Lost(why)) => {
                    gate.connected();
                    warn!(reason = %why, "broker session lost; reconnecting")
                }
                Err(e) if e.is_config() && !gate.stop(e.may_be_booting()) => {
                    warn!(error = %e, "the broker refuses this configuration, or is still starting: retrying");
                }
                Err(e) if e.is_config() => {
                    error!(error = %e, "configuration error: the worker cannot run until it is fixed");
                    heartbeat.abort();
                    let _ = s.workers.deregister(&s.worker_id).await;
                    return Err(e);
                }
                Err(e) => warn!(error = %e, "broker session failed; reconnecting"),
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(200);
            }
            let jittered = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(jittered) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        heartbeat.abort();
        if let Err(e) = s.workers.deregister(&s.worker_id).await {
            warn!(error = %e, "could not deregister worker");
        }
        info!("worker stopped");
        Ok(())
    }

    async fn session(&self, shutdown: &CancellationToken) -> Result<SessionEnd, WorkerError> {
        let s = &self.services;
        // SIGTERM ends a worker that is still connecting at once (the
        // attempt itself is bounded by broker.connect_timeout).
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
            c = crate::connect::connect_node(&s.config, "worker") => c?,
        };
        let (conn, node): (Connection, String) = conn;
        s.metrics.broker_node.reset();
        s.metrics
            .broker_node
            .with_label_values(&[crate::config::node_host(&node).as_str()])
            .set(1);
        self.activity.set_broker_node(Some(node));
        let prepare = async {
            let publisher =
                Publisher::open(&conn, s.topology.clone(), s.config.broker.publish_window).await?;
            let setup = conn.create_channel().await?;
            s.topology
                .declare(&setup, &self.opts.queues)
                .await
                .map_err(|e| match declare_failure(&e) {
                    Some(config) => WorkerError::Connect(config),
                    None => WorkerError::Broker(e),
                })?;
            let _ = setup.close(200, "declared".into()).await;
            Ok::<_, WorkerError>(publisher)
        };
        let publisher = tokio::select! {
            _ = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
            p = tokio::time::timeout(s.config.broker.connect_timeout.0, prepare) => match p {
                Ok(p) => p?,
                Err(_) => return Ok(SessionEnd::Lost(format!(
                    "declaring the queues took longer than broker.connect_timeout ({:?})",
                    s.config.broker.connect_timeout.0
                ))),
            },
        };
        self.health.set_connected(true);

        let ctx = Arc::new(SessionCtx {
            services: s.clone(),
            publisher: publisher.clone(),
            executor: Executor::new(
                s.clone(),
                self.registry.clone(),
                Outbox::Broker(publisher.clone()),
            )
            .with_activity(self.activity.clone()),
        });
        let mut streams = SelectAll::new();
        let mut consumers: Vec<(Channel, String)> = Vec::new();
        let mut ackers: Vec<AckBatcher> = Vec::new();
        for (i, family) in self.opts.queues.iter().enumerate() {
            let ch = conn.create_channel().await?;
            ch.basic_qos(self.opts.prefetch, BasicQosOptions { global: false })
                .await?;
            let tag = format!("{}/{family}", s.worker_id);
            let consumer = ch
                .basic_consume(
                    s.topology.queue(family).into(),
                    tag.clone().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            streams.push(consumer.map(move |d| (i, d)).boxed());
            ackers.push(AckBatcher::spawn(ch.clone()));
            consumers.push((ch, tag));
        }
        self.health.set_consuming(true);
        s.metrics.worker_up.set(1);
        if let Some(f) = &self.on_ready {
            f();
        }
        info!("connected and consuming");

        let sem = Arc::new(Semaphore::new(self.opts.concurrency));
        let mut running: JoinSet<()> = JoinSet::new();
        let end = loop {
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                p = sem.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let item = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                item = streams.next() => item,
            };
            match item {
                Some((i, Ok(delivery))) => {
                    let ctx = ctx.clone();
                    let family = self.opts.queues[i].clone();
                    let acker = ackers[i].handle();
                    running.spawn(async move {
                        let tag = delivery.delivery_tag;
                        match ctx.process(&delivery, &family).await {
                            Ok(()) => acker.ack(tag),
                            Err(e) => {
                                error!(error = %e, "could not record the outcome; message goes back to the queue");
                                acker.requeue(tag);
                            }
                        }
                        drop(permit);
                    });
                }
                Some((_, Err(e))) => break SessionEnd::Lost(e.to_string()),
                None => break SessionEnd::Lost("the broker closed the consumers".into()),
            }
            while running.try_join_next().is_some() {}
        };
        self.health.set_consuming(false);
        match &end {
            SessionEnd::Shutdown => {
                for (ch, tag) in &consumers {
                    let _ = ch
                        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                        .await;
                }
                while running.try_join_next().is_some() {}
                let n = running.len();
                if n > 0 {
                    info!(in_flight = n, timeout = ?self.opts.shutdown_timeout, "draining in-flight tasks");
                }
                let drained = tokio::time::timeout(self.opts.shutdown_timeout, async {
                    while running.join_next().await.is_some() {}
                })
                .await
                .is_ok();
                if !drained {
                    warn!(
                        left = running.len(),
                        "shutdown timeout: abandoning tasks still running (the broker will redeliver them)"
                    );
                    running.abort_all();
                }
            }
            SessionEnd::Lost(_) => {
                // Their deliveries are void on a dead channel; the broker
                // redelivers them, so stop duplicate work now.
                running.abort_all();
            }
        }
        while running.join_next().await.is_some() {}
        drop(ctx);
        for a in ackers {
            a.finish().await;
        }
        if let SessionEnd::Shutdown = end {
            for (ch, _) in &consumers {
                let _ = ch.close(200, "worker stopping".into()).await;
            }
            let _ = publisher
                .channel()
                .close(200, "worker stopping".into())
                .await;
            let _ = conn.close(200, "worker stopping".into()).await;
        }
        Ok(end)
    }
}

async fn heartbeat_loop(
    s: Arc<Services>,
    opts: WorkerOptions,
    activity: Arc<Activity>,
    stop: CancellationToken,
) {
    let interval = s.config.worker.heartbeat_interval.0;
    let started_at = Utc::now();
    loop {
        let info = WorkerInfo {
            id: s.worker_id.clone(),
            host: s.metrics.hostname.clone(),
            pid: std::process::id(),
            queues: opts.queues.clone(),
            concurrency: opts.concurrency,
            active: activity.active(),
            processed: activity.processed(),
            started_at,
            heartbeat_at: Utc::now(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            broker_node: activity.broker_node(),
        };
        if let Err(e) = s.workers.heartbeat(&info, interval * 3).await {
            warn!(error = %e, "worker heartbeat failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// What the tasks of one broker session share.
struct SessionCtx {
    services: Arc<Services>,
    publisher: Publisher,
    executor: Executor,
}

impl SessionCtx {
    fn dead(
        &self,
        env: Option<&Envelope>,
        raw: Option<&[u8]>,
        reason: DeadReason,
        error: &str,
        queue: &str,
    ) -> DeadLetter {
        DeadLetter {
            envelope: env.cloned(),
            raw_body: raw
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(64 * 1024)]).into_owned()),
            reason,
            attempts: env.map(|e| e.attempt + 1).unwrap_or(1),
            last_error: error.to_string(),
            worker: self.services.worker_id.clone(),
            queue: queue.to_string(),
            dead_at: Utc::now(),
        }
    }

    /// Decide and carry out what happens to one delivery. `Ok` means the
    /// delivery may be acked; `Err` means its outcome could not be made
    /// durable and it must go back to the queue.
    async fn process(&self, d: &Delivery, family: &str) -> Result<(), PublishError> {
        let mut env = match Envelope::from_json(&d.data) {
            Ok(e) => e,
            Err(e) => {
                let why = e.to_string();
                let m = &self.services.metrics;
                m.dead_lettered
                    .with_label_values(&["(undecodable)", family, m.hostname.as_str()])
                    .inc();
                warn!(queue = family, error = %why, "undecodable message dead-lettered");
                let dl = self.dead(None, Some(&d.data), DeadReason::Undecodable, &why, family);
                return self.publisher.publish_dead(&dl).await;
            }
        };
        if env.queue.is_empty() {
            env.queue = family.to_string();
        }
        self.executor.execute(&env, self).await.map(drop)
    }
}

/// The worker's side of a verdict: everything it causes is confirmed by the
/// broker before the delivery is acked.
impl Outlet for SessionCtx {
    type Error = PublishError;

    async fn carry_out(&self, env: &Envelope, verdict: &Verdict) -> Result<(), PublishError> {
        match verdict {
            Verdict::Ack => Ok(()),
            Verdict::Retry { next, delay, .. } | Verdict::Defer { next, delay, .. } => {
                self.publisher.publish_delayed(next, *delay).await
            }
            Verdict::DeadLetter { reason, error } => {
                let dl = self.dead(Some(env), None, *reason, error, &env.queue);
                self.publisher.publish_dead(&dl).await
            }
        }
    }
}

enum AckCmd {
    Ack(u64),
    Requeue(u64),
}

/// Sends the acks of one channel, batching contiguous runs.
struct AckBatcher {
    tx: mpsc::UnboundedSender<AckCmd>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct AckHandle {
    tx: mpsc::UnboundedSender<AckCmd>,
}

impl AckHandle {
    fn ack(&self, tag: u64) {
        let _ = self.tx.send(AckCmd::Ack(tag));
    }
    fn requeue(&self, tag: u64) {
        let _ = self.tx.send(AckCmd::Requeue(tag));
    }
}

/// A finished delivery waiting this long behind a running one is acked alone.
const STRAGGLER_AFTER: Duration = Duration::from_millis(20);

/// Which delivery tags of a channel are finished and which acks to send.
/// Tags start at 1 and are consecutive on a channel.
#[derive(Debug)]
pub struct AckLedger {
    /// Lowest tag not yet settled.
    next: u64,
    /// Finished, not yet acked, with when they finished.
    done: BTreeMap<u64, Instant>,
    /// Settled on their own (individual ack or requeue), above `next`.
    settled: BTreeSet<u64>,
}

/// One ack (or requeue) frame to send.
#[derive(Debug, PartialEq, Eq)]
pub enum AckFrame {
    /// Ack this tag and every unsettled tag below it.
    Multiple(u64),
    Single(u64),
    Requeue(u64),
}

impl Default for AckLedger {
    fn default() -> Self {
        AckLedger {
            next: 1,
            done: BTreeMap::new(),
            settled: BTreeSet::new(),
        }
    }
}

impl AckLedger {
    pub fn finished(&mut self, tag: u64, at: Instant) {
        if tag >= self.next {
            self.done.insert(tag, at);
        }
    }

    pub fn requeue(&mut self, tag: u64) -> AckFrame {
        self.done.remove(&tag);
        self.settled.insert(tag);
        AckFrame::Requeue(tag)
    }

    /// The frames to send now: one `multiple` ack for the contiguous run,
    /// then single acks for finished tags older than `straggler_after`
    /// (all of them when `everything`).
    pub fn flush(
        &mut self,
        now: Instant,
        straggler_after: Duration,
        everything: bool,
    ) -> Vec<AckFrame> {
        let mut frames = Vec::new();
        let mut last_multi = None;
        loop {
            if self.done.remove(&self.next).is_some() {
                last_multi = Some(self.next);
            } else if !self.settled.remove(&self.next) {
                break;
            }
            self.next += 1;
        }
        if let Some(t) = last_multi {
            frames.push(AckFrame::Multiple(t));
        }
        let stale: Vec<u64> = self
            .done
            .iter()
            .filter(|(_, at)| everything || now.duration_since(**at) >= straggler_after)
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.done.remove(&t);
            self.settled.insert(t);
            frames.push(AckFrame::Single(t));
        }
        frames
    }

    pub fn has_pending(&self) -> bool {
        !self.done.is_empty()
    }
}

impl AckBatcher {
    fn spawn(ch: Channel) -> AckBatcher {
        let (tx, mut rx) = mpsc::unbounded_channel::<AckCmd>();
        let task = tokio::spawn(async move {
            let mut ledger = AckLedger::default();
            let mut broken = false;
            loop {
                let first = if ledger.has_pending() {
                    match tokio::time::timeout(STRAGGLER_AFTER, rx.recv()).await {
                        Ok(c) => c,
                        Err(_) => {
                            let frames = ledger.flush(Instant::now(), STRAGGLER_AFTER, false);
                            send_frames(&ch, frames, &mut broken).await;
                            continue;
                        }
                    }
                } else {
                    rx.recv().await
                };
                let Some(first) = first else {
                    let frames = ledger.flush(Instant::now(), STRAGGLER_AFTER, true);
                    send_frames(&ch, frames, &mut broken).await;
                    break;
                };
                let now = Instant::now();
                let mut frames = Vec::new();
                let mut apply = |c: AckCmd, frames: &mut Vec<AckFrame>| match c {
                    AckCmd::Ack(t) => ledger.finished(t, now),
                    AckCmd::Requeue(t) => frames.push(ledger.requeue(t)),
                };
                apply(first, &mut frames);
                while let Ok(c) = rx.try_recv() {
                    apply(c, &mut frames);
                }
                frames.extend(ledger.flush(now, STRAGGLER_AFTER, false));
                send_frames(&ch, frames, &mut broken).await;
            }
        });
        AckBatcher { tx, task }
    }

    fn handle(&self) -> AckHandle {
        AckHandle {
            tx: self.tx.clone(),
        }
    }

    /// Flush every ack and stop.
    async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn send_frames(ch: &Channel, frames: Vec<AckFrame>, broken: &mut bool) {
    if *broken {
        return;
    }
    for f in frames {
        let r = match f {
            AckFrame::Multiple(t) => ch.basic_ack(t, BasicAckOptions { multiple: true }).await,
            AckFrame::Single(t) => ch.basic_ack(t, BasicAckOptions { multiple: false }).await,
            AckFrame::Requeue(t) => {
                ch.basic_nack(
                    t,
                    BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    },
                )
                .await
            }
        };
        if let Err(e) = r {
            // The channel is gone: the broker requeues every unacked
            // delivery of it, so stop sending acks that cannot land.
            warn!(error = %e, "ack failed; the channel is closed and its deliveries will be redelivered");
            *broken = true;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_runs_use_one_multiple_ack() {
        let t0 = Instant::now();
        let mut l = AckLedger::default();
        for t in [1, 2, 3] {
            l.finished(t, t0);
        }
        assert_eq!(
            l.flush(t0, STRAGGLER_AFTER, false),
            vec![AckFrame::Multiple(3)]
        );
        // 5 finished but 4 is still running: 5 waits, then goes alone.
        l.finished(5, t0);
        assert_eq!(l.flush(t0, STRAGGLER_AFTER, false), vec![]);
        let later = t0 + Duration::from_millis(25);
        assert_eq!(
            l.flush(later, STRAGGLER_AFTER, false),
            vec![AckFrame::Single(5)]
        );
        // 4 and 6 finish: the multiple ack must not name 5 (already acked).
        l.finished(4, later);
        l.finished(6, later);
        assert_eq!(
            l.flush(later, STRAGGLER_AFTER, false),
            vec![AckFrame::Multiple(6)]
        );
        // A requeued tag counts as settled and never blocks the run.
        assert_eq!(l.requeue(7), AckFrame::Requeue(7));
        l.finished(8, later);
        assert_eq!(
            l.flush(later, STRAGGLER_AFTER, false),
            vec![AckFrame::Multiple(8)]
        );
    }

    #[test]
    fn never_acks_a_running_delivery() {
        let t0 = Instant::now();
        let mut l = AckLedger::default();
        l.finished(2, t0);
        l.finished(3, t0);
        let frames = l.flush(t0, STRAGGLER_AFTER, true);
        assert_eq!(frames, vec![AckFrame::Single(2), AckFrame::Single(3)]);
        l.finished(1, t0);
        assert_eq!(
            l.flush(t0, STRAGGLER_AFTER, false),
            vec![AckFrame::Multiple(1)]
        );
    }
}
