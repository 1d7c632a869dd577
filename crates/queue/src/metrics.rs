//! Prometheus metrics of a worker, named as celery-exporter users know them
//! (`alertflow_task_succeeded_total{name,queue,hostname}` ...), and the
//! `/metrics` + `/healthz` HTTP endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio_util::sync::CancellationToken;

/// Counters and histograms of one worker process.
pub struct Metrics {
    pub registry: Registry,
    pub hostname: String,
    pub received: IntCounterVec,
    pub succeeded: IntCounterVec,
    pub failed: IntCounterVec,
    pub retried: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub runtime: HistogramVec,
    pub in_flight: IntGauge,
    pub worker_up: IntGauge,
    /// 1 for the broker node (`host:port`) the worker is connected to.
    pub broker_node: IntGaugeVec,
    pub queue_length: IntGaugeVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        let l = &["name", "queue", "hostname"];
        let runtime = HistogramVec::new(
            HistogramOpts::new("alertflow_task_runtime_seconds", "Task run time in seconds")
                .buckets(vec![
                    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                ]),
            l,
        )
        .expect("valid histogram");
        registry
            .register(Box::new(runtime.clone()))
            .expect("metric registered once");
        let in_flight =
            IntGauge::new("alertflow_tasks_in_flight", "Tasks running now").expect("valid gauge");
        registry
            .register(Box::new(in_flight.clone()))
            .expect("metric registered once");
        let worker_up = IntGauge::new(
            "alertflow_worker_up",
            "1 while the worker is connected and consuming",
        )
        .expect("valid gauge");
        registry
            .register(Box::new(worker_up.clone()))
            .expect("metric registered once");
        let broker_node = IntGaugeVec::new(
            Opts::new(
                "alertflow_broker_node",
                "1 for the RabbitMQ node (host:port) the worker is connected to",
            ),
            &["node"],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(broker_node.clone()))
            .expect("metric registered once");
        let queue_length = IntGaugeVec::new(
            Opts::new("alertflow_queue_length", "Ready messages per queue"),
            &["queue"],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(queue_length.clone()))
            .expect("metric registered once");
        Metrics {
            received: counter(
                &registry,
                "alertflow_task_received_total",
                "Tasks received",
                l,
            ),
            succeeded: counter(
                &registry,
                "alertflow_task_succeeded_total",
                "Tasks succeeded",
                l,
            ),
            failed: counter(
                &registry,
                "alertflow_task_failed_total",
                "Task attempts that failed",
                l,
            ),
            retried: counter(
                &registry,
                "alertflow_task_retried_total",
                "Tasks sent to retry",
                l,
            ),
            dead_lettered: counter(
                &registry,
                "alertflow_task_dead_lettered_total",
                "Tasks dead-lettered",
                l,
            ),
            rate_limited: counter(
                &registry,
                "alertflow_task_rate_limited_total",
                "Tasks deferred by a rate limit",
                l,
            ),
            runtime,
            in_flight,
            worker_up,
            broker_node,
            queue_length,
            registry,
            hostname,
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

/// Prometheus text exposition of a registry.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("text encoding cannot fail");
    String::from_utf8(buf).expect("prometheus text is UTF-8")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Health flags behind `/healthz` and the systemd watchdog.
#[derive(Default)]
pub struct Health {
    connected: AtomicBool,
    consuming: AtomicBool,
}

impl Health {
    pub fn set_connected(&self, v: bool) {
        self.connected.store(v, Ordering::SeqCst);
        if !v {
            self.consuming.store(false, Ordering::SeqCst);
        }
    }
    pub fn set_consuming(&self, v: bool) {
        self.consuming.store(v, Ordering::SeqCst);
    }
    /// Connected to the broker and consuming.
    pub fn healthy(&self) -> bool {
        self.connected.load(Ordering::SeqCst) && self.consuming.load(Ordering::SeqCst)
    }
}

/// Serve `/metrics` and `/healthz` until `shutdown`; returns the bound address.
///
/// Two fixed routes over HTTP/1.1 need no framework: hyper's connection
/// builder serves each accepted connection with one small handler.
pub async fn serve(
    listen: &str,
    registry: Registry,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {listen} for /metrics: {e}"),
        )
    })?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics listener: accept failed");
                        continue;
                    }
                },
            };
            let registry = registry.clone();
            let health = health.clone();
            let service = hyper::service::service_fn(move |req| {
                let response = respond(req.uri().path(), &registry, &health);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                // A request is answered at once; a bounded wait keeps a
                // stalled client from holding a task forever.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn).await;
            });
        }
    });
    Ok(addr)
}

fn respond(
    path: &str,
    registry: &Registry,
    health: &Health,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (200, "text/plain; version=0.0.4", render(registry)),
        "/healthz" if health.healthy() => (200, "text/plain", "ok\n".to_string()),
        "/healthz" => (503, "text/plain", "not consuming\n".to_string()),
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .expect("a static status and header make a valid response")
}
