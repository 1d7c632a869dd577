//! The beat: publishes each fire of each schedule exactly once, however many
//! beat processes run.
//!
//! For every fire `(schedule, instant)` a beat first claims
//! `<ns>:beat:claim:<schedule>:<unix ms>` in Redis with `SET NX` and a short
//! TTL (`beat.claim_timeout`), publishes with confirms, then marks the claim
//! `done` for the long TTL and advances `<ns>:beat:last:<schedule>`. A failed
//! publish releases the claim. A beat that lost a claim checks after the
//! claim timeout that the winner finished; if the claim vanished (the winner
//! died between claim and publish) it claims and publishes the fire itself,
//! so a crash costs a late fire, never a missed or doubled one. The task id
//! is derived from the schedule and the instant (UUID v5 of
//! `beat:<schedule>@<instant>`), so even a duplicate would be recognisable.
//!
//! On start and after every broker or Redis outage, fires missed since
//! `last` and within `catch_up_window` follow the schedule's policy: `skip`
//! (none), `once` (the most recent), `all` (each, oldest first).
//!
//! Redis down means no claims: the beat publishes nothing (rather than risk
//! duplicates) and catches up per policy once Redis is back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::redis_pool::Pool;
use chrono::{DateTime, TimeZone, Utc};
use deadpool_redis::redis::Script;
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry as PromRegistry};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::config::QueueConfig;
use crate::message::Envelope;
use crate::metrics::Health;
use crate::publisher::{PublishError, Publisher, connect};
use crate::schedule::{CatchUp, Schedule, fire_message_id};
use crate::state::{BeatInfo, BeatRegistry, StateStore, TaskState, TaskStatus};
use crate::task::Registry;
use crate::topology::Topology;

/// How often a beat refreshes its registration (which lives three times as long).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// Namespace of the UUID v5 task ids of beat fires.
pub const FIRE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1e_f10e_5c4e_4d1a_9b3f_0a1e_7f10_b3a7);

#[derive(Debug, thiserror::Error)]
pub enum BeatError {
    #[error("{0}")]
    Config(String),
    #[error("redis: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    #[error("redis: {0}")]
    RedisPool(#[from] deadpool_redis::PoolError),
    #[error(transparent)]
    Connect(#[from] crate::connect::BrokerError),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("{0}")]
    Publish(#[from] PublishError),
    #[error("cannot serve /metrics: {0}")]
    Metrics(#[source] std::io::Error),
    #[error("the broker connection was lost")]
    ConnectionLost,
}

impl BeatError {
    /// True when retrying cannot help (see [`WorkerError::is_config`]).
    ///
    /// [`WorkerError::is_config`]: crate::worker::WorkerError::is_config
    pub fn is_config(&self) -> bool {
        use crate::connect::is_precondition_failed;
        match self {
            BeatError::Config(_) => true,
            BeatError::Connect(e) => e.is_config(),
            BeatError::Broker(e) | BeatError::Publish(PublishError::Broker(e)) => {
                is_precondition_failed(e)
            }
            _ => false,
        }
    }

    /// A configuration error a booting broker also gives.
    pub fn may_be_booting(&self) -> bool {
        matches!(self, BeatError::Connect(e) if e.may_be_booting())
    }
}

/// Whether a fire is on time or a catch-up of a missed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FireKind {
    OnTime,
    CatchUp,
    /// Published again after the claimer died before publishing.
    Recovered,
    /// `alertflow schedule run`.
    Manual,
}

impl FireKind {
    fn as_str(self) -> &'static str {
        match self {
            FireKind::OnTime => "on-time",
            FireKind::CatchUp => "catch-up",
            FireKind::Recovered => "recovered",
            FireKind::Manual => "manual",
        }
    }
}

/// What happened to one fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FireOutcome {
    Published(Uuid),
    /// Another beat holds the claim.
    ClaimedElsewhere,
    /// The schedule is paused: nothing published, the fire counted as
    /// passed (resuming does not catch it up).
    Paused,
}

/// Who paused a schedule, when and why (`<ns>:beat:paused`, a hash by
/// schedule name, read by every beat before each fire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub comment: String,
}

/// Counters of a beat process.
pub struct BeatMetrics {
    pub registry: PromRegistry,
    pub fires: IntCounterVec,
    pub published: IntCounterVec,
    pub claims_lost: IntCounterVec,
    pub publish_failures: IntCounterVec,
    pub paused: IntCounterVec,
    pub seconds_until_next: GaugeVec,
    /// This host's clock minus the Redis server's (seconds), as last
    /// measured.
    pub clock_skew: prometheus::Gauge,
}

impl BeatMetrics {
    fn new() -> BeatMetrics {
        let registry = PromRegistry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["schedule"]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let fires = counter("alertflow_beat_fires_total", "Fires that came due");
        let published = counter(
            "alertflow_beat_published_total",
            "Fires published by this beat",
        );
        let claims_lost = counter(
            "alertflow_beat_claims_lost_total",
            "Fires claimed by another beat instance",
        );
        let publish_failures = counter(
            "alertflow_beat_publish_failures_total",
            "Publishes that failed (the fire is retried)",
        );
        let paused = counter(
            "alertflow_beat_paused_fires_total",
            "Fires not published because the schedule is paused",
        );
        let seconds_until_next = GaugeVec::new(
            Opts::new(
                "alertflow_beat_seconds_until_next_fire",
                "Seconds until the schedule's next fire",
            ),
            &["schedule"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(seconds_until_next.clone()))
            .expect("registered once");
        let clock_skew = prometheus::Gauge::new(
            "alertflow_beat_clock_skew_seconds",
            "This host's clock minus the Redis server's clock, as last measured (beat fires on the Redis clock)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(clock_skew.clone()))
            .expect("registered once");
        BeatMetrics {
            registry,
            clock_skew,
            fires,
            published,
            claims_lost,
            publish_failures,
            paused,
            seconds_until_next,
        }
    }
}

static CLAIM_DONE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
  local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tonumber(ARGV[3]) > cur then redis.call('SET', KEYS[2], ARGV[3]) end
  return 1
end
return 0
"#,
    )
});

static CLAIM_RELEASE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// A fire whose claim another beat holds, to verify later.
struct Pending {
    schedule: usize,
    instant: DateTime<Utc>,
    check_at: DateTime<Utc>,
}

/// A source of wall-clock time (the host's, or one set by a test).
pub type LocalClock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How far this host's clock may drift from the Redis server's before
/// beat says so loudly (it fires on the Redis clock either way).
const SKEW_WARN: chrono::Duration = chrono::Duration::seconds(1);

/// How often beat measures its clock against the Redis server's.
const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(30);

/// Beat's time: the host clock corrected by its measured offset from the
/// Redis server clock (`TIME`), so every beat of a namespace fires on one
/// clock whatever its host's says.
struct ServerClock {
    local: LocalClock,
    /// Redis server time minus local time, ms.
    offset_ms: std::sync::atomic::AtomicI64,
}

/// The scheduler.
pub struct Beat {
    config: Arc<QueueConfig>,
    topology: Arc<Topology>,
    redis: Pool,
    states: StateStore,
    registry: Arc<Registry>,
    schedules: Vec<Schedule>,
    metrics: Arc<BeatMetrics>,
    health: Arc<Health>,
    id: String,
    clock: ServerClock,
}

impl Beat {
    /// Validate the schedules (each must name a registered task).
    pub fn new(config: Arc<QueueConfig>, registry: Arc<Registry>) -> Result<Beat, BeatError> {
        let mut schedules = Vec::new();
        for sc in &config.schedules {
            let s = Schedule::from_config(sc).map_err(|e| BeatError::Config(e.to_string()))?;
            if registry.get(s.task()).is_none() {
                return Err(BeatError::Config(format!(
                    "schedule {:?}: task {:?} is not registered (known: {})",
                    s.name(),
                    s.task(),
                    registry.names().collect::<Vec<_>>().join(", ")
                )));
            }
            if s.enabled() {
                schedules.push(s);
            }
        }
        let redis =
            crate::context::redis_pool(&config).map_err(|e| BeatError::Config(e.to_string()))?;
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Ok(Beat {
            topology: Arc::new(Topology::from_config(&config)),
            states: StateStore::new(redis.clone(), &config.namespace, config.state.ttl.0),
            redis,
            registry,
            schedules,
            metrics: Arc::new(BeatMetrics::new()),
            health: Arc::new(Health::default()),
            id: format!(
                "{host}:{}:{}",
                std::process::id(),
                &Uuid::new_v4().simple().to_string()[..8]
            ),
            config,
            clock: ServerClock {
                local: Arc::new(Utc::now),
                offset_ms: std::sync::atomic::AtomicI64::new(0),
            },
        })
    }

    /// Use `clock` as this host's wall clock (tests: a host whose clock is
    /// off).
    pub fn with_local_clock(mut self, clock: LocalClock) -> Beat {
        self.clock.local = clock;
        self
    }

    /// Now, on the Redis server's clock (as last measured).
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock.local)()
            + chrono::Duration::milliseconds(
                self.clock
                    .offset_ms
                    .load(std::sync::atomic::Ordering::Relaxed),
            )
    }

    /// Measure this host's clock against the Redis server's (`TIME`, the
    /// round trip's midpoint); returns the skew (local minus server). A
    /// skew over a second is logged at WARN.
    pub async fn sync_clock(&self) -> Result<chrono::Duration, BeatError> {
        let mut conn = self.redis.get().await?;
        let before = (self.clock.local)();
        let (secs, micros): (i64, i64) = deadpool_redis::redis::cmd("TIME")
            .query_async(&mut conn)
            .await?;
        let after = (self.clock.local)();
        let server = Utc
            .timestamp_opt(secs, (micros * 1000) as u32)
            .single()
            .unwrap_or(after);
        let mid = before + (after - before) / 2;
        let offset = server - mid;
        self.clock.offset_ms.store(
            offset.num_milliseconds(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let skew = -offset;
        self.metrics
            .clock_skew
            .set(skew.num_milliseconds() as f64 / 1000.0);
        if skew.abs() > SKEW_WARN {
            warn!(
                skew_ms = skew.num_milliseconds(),
                "this host's clock is off the Redis server's clock; beat fires on the Redis clock (fix NTP on this host)"
            );
        }
        Ok(skew)
    }

    pub fn schedules(&self) -> &[Schedule] {
        &self.schedules
    }
    pub fn metrics(&self) -> Arc<BeatMetrics> {
        self.metrics.clone()
    }
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    fn claim_key(&self, s: &Schedule, instant: DateTime<Utc>) -> String {
        format!(
            "{}:beat:claim:{}:{}",
            self.config.namespace,
            s.name(),
            instant.timestamp_millis()
        )
    }

    fn last_key(&self, name: &str) -> String {
        format!("{}:beat:last:{name}", self.config.namespace)
    }

    fn done_ttl(&self, s: &Schedule) -> Duration {
        s.catch_up_window() + Duration::from_secs(3600)
    }

    /// The queue family a schedule publishes to.
    pub fn family(&self, s: &Schedule) -> String {
        let mut probe = Envelope::new(s.task(), serde_json::json!({}));
        self.registry
            .apply_policy(&mut probe, &self.config, s.queue());
        probe.queue
    }

    /// The envelope of one fire: its id is derived from schedule and instant.
    pub fn envelope(&self, s: &Schedule, instant: DateTime<Utc>) -> Envelope {
        let mut env = Envelope::new(s.task(), s.args_for(instant));
        env.id = Uuid::new_v5(
            &FIRE_ID_NAMESPACE,
            fire_message_id(s.name(), instant).as_bytes(),
        );
        env.root_id = env.id;
        self.registry
            .apply_policy(&mut env, &self.config, s.queue());
        env
    }

    /// Last published fire of a schedule: from Redis, or from the beat's
    /// state file (`beat.state_file`) when that knows a later one (Redis lost
    /// its data).
    pub async fn last_fire(&self, name: &str) -> Result<Option<DateTime<Utc>>, BeatError> {
        let mut conn = self.redis.get().await?;
        let v: Option<i64> = deadpool_redis::redis::cmd("GET")
            .arg(self.last_key(name))
            .query_async(&mut conn)
            .await?;
        let kept = self.state_file().and_then(|f| f.last(name));
        if kept > v {
            info!(schedule = name, last_fire_ms = ?kept, "last fire from beat.state_file (Redis has none or an older one)");
        }
        Ok(v.max(kept)
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()))
    }

    fn state_file(&self) -> Option<StateFile> {
        self.config.beat.state_file.clone().map(StateFile)
    }

    /// Keep a schedule's last fire in the state file too (a failure to is
    /// logged: Redis still has it).
    fn keep_last_fire(&self, name: &str, instant: DateTime<Utc>, moved: bool) {
        if let Some(f) = self.state_file()
            && let Err(e) = f.set_last(name, instant.timestamp_millis(), moved)
        {
            warn!(schedule = name, file = %f.0.display(), error = %e, "cannot write beat.state_file");
        }
    }

    /// Set a schedule's last fire: where catch-up starts counting missed
    /// fires (tests use it; operators can move a schedule's origin).
    pub async fn record_last_fire(
        &self,
        name: &str,
        instant: DateTime<Utc>,
    ) -> Result<(), BeatError> {
        let mut conn = self.redis.get().await?;
        let _: () = deadpool_redis::redis::cmd("SET")
            .arg(self.last_key(name))
            .arg(instant.timestamp_millis())
            .query_async(&mut conn)
            .await?;
        self.keep_last_fire(name, instant, true);
        Ok(())
    }

    fn paused_key(&self) -> String {
        format!("{}:beat:paused", self.config.namespace)
    }

    /// Pause schedule `name` on every beat (from their next fire on).
    pub async fn pause(&self, name: &str, pause: &Pause) -> Result<(), BeatError> {
        self.enabled(name)?;
        let mut conn = self.redis.get().await?;
        let _: i64 = deadpool_redis::redis::cmd("HSET")
            .arg(self.paused_key())
            .arg(name)
            .arg(serde_json::to_string(pause).expect("serializes"))
            .query_async(&mut conn)
            .await?;
        info!(schedule = name, by = %pause.by, comment = %pause.comment, "schedule paused");
        Ok(())
    }

    /// Resume schedule `name`; false when it was not paused.
    pub async fn resume(&self, name: &str) -> Result<bool, BeatError> {
        self.enabled(name)?;
        let mut conn = self.redis.get().await?;
        let n: i64 = deadpool_redis::redis::cmd("HDEL")
            .arg(self.paused_key())
            .arg(name)
            .query_async(&mut conn)
            .await?;
        info!(schedule = name, "schedule resumed");
        Ok(n == 1)
    }

    /// The paused schedules.
    pub async fn paused(&self) -> Result<BTreeMap<String, Pause>, BeatError> {
        let mut conn = self.redis.get().await?;
        let raw: BTreeMap<String, String> = deadpool_redis::redis::cmd("HGETALL")
            .arg(self.paused_key())
            .query_async(&mut conn)
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_str(&v).ok()?)))
            .collect())
    }

    fn enabled(&self, name: &str) -> Result<&Schedule, BeatError> {
        self.schedules
            .iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| BeatError::Config(format!("no enabled schedule named {name:?}")))
    }

    /// Claim, publish and record one fire.
    pub async fn fire(
        &self,
        publisher: &Publisher,
        idx: usize,
        instant: DateTime<Utc>,
        kind: FireKind,
    ) -> Result<FireOutcome, BeatError> {
        let s = &self.schedules[idx];
        let key = self.claim_key(s, instant);
        let token = format!("pending:{}", self.id);
        self.metrics.fires.with_label_values(&[s.name()]).inc();
        let mut conn = self.redis.get().await?;
        let paused: Option<String> = deadpool_redis::redis::cmd("HGET")
            .arg(self.paused_key())
            .arg(s.name())
            .query_async(&mut conn)
            .await?;
        if paused.is_some() {
            self.metrics.paused.with_label_values(&[s.name()]).inc();
            info!(schedule = s.name(), fire = %instant, "schedule paused: fire not published");
            self.record_last_fire(s.name(), instant).await?;
            return Ok(FireOutcome::Paused);
        }
        let claimed: Option<String> = deadpool_redis::redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(self.config.beat.claim_timeout.0.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        if claimed.is_none() {
            self.metrics
                .claims_lost
                .with_label_values(&[s.name()])
                .inc();
            debug!(schedule = s.name(), fire = %instant, "fire claimed by another beat");
            return Ok(FireOutcome::ClaimedElsewhere);
        }
        let env = self.envelope(s, instant);
        if let Err(e) = self.publish(publisher, &env).await {
            self.metrics
                .publish_failures
                .with_label_values(&[s.name()])
                .inc();
            let _: Result<i64, _> = CLAIM_RELEASE
                .key(&key)
                .arg(&token)
                .invoke_async(&mut conn)
                .await;
            return Err(e);
        }
        let marked: i64 = CLAIM_DONE
            .key(&key)
            .key(self.last_key(s.name()))
            .arg(&token)
            .arg(self.done_ttl(s).as_millis() as u64)
            .arg(instant.timestamp_millis())
            .invoke_async(&mut conn)
            .await?;
        if marked == 0 {
            warn!(schedule = s.name(), fire = %instant, "claim expired while publishing (beat.claim_timeout too short?)");
        }
        self.keep_last_fire(s.name(), instant, false);
        let _ = self
            .states
            .put(&TaskState::of(&env, TaskStatus::Queued))
            .await;
        self.metrics.published.with_label_values(&[s.name()]).inc();
        let local = instant.with_timezone(&s.timezone());
        info!(
            schedule = s.name(),
            fire_local = %local.format("%Y-%m-%d %H:%M:%S %Z"),
            fire_utc = %instant.format("%Y-%m-%dT%H:%M:%SZ"),
            task = s.task(),
            task.id = %env.id,
            queue = %env.queue,
            kind = kind.as_str(),
            "fire published"
        );
        Ok(FireOutcome::Published(env.id))
    }

    async fn publish(&self, publisher: &Publisher, env: &Envelope) -> Result<(), BeatError> {
        publisher.publish(env).await?;
        Ok(())
    }

    /// Publish a fire now, for operators (`alertflow schedule run`); no claim.
    pub async fn run_now(&self, publisher: &Publisher, name: &str) -> Result<Uuid, BeatError> {
        let s = self.enabled(name)?;
        let mut env = self.envelope(s, self.now());
        env.id = Uuid::new_v4();
        env.root_id = env.id;
        self.topology
            .declare_family(publisher.channel(), &env.queue)
            .await?;
        self.publish(publisher, &env).await?;
        let _ = self
            .states
            .put(&TaskState::of(&env, TaskStatus::Queued))
            .await;
        info!(schedule = name, task.id = %env.id, kind = FireKind::Manual.as_str(), "fire published");
        Ok(env.id)
    }

    /// The fires a policy publishes for the missed fires of `s` up to `now`.
    pub fn missed_fires(
        s: &Schedule,
        last: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let Some(last) = last else {
            return Vec::new();
        };
        let window = chrono::Duration::from_std(s.catch_up_window()).unwrap_or_default();
        let from = last.max(now - window);
        // `from` itself was published (or is outside the window).
        let fires: Vec<DateTime<Utc>> = s
            .fires_between(from, now)
            .take(10_000)
            .filter(|t| *t > last)
            .collect();
        match s.catch_up() {
            CatchUp::Skip => Vec::new(),
            CatchUp::Once => fires.last().copied().into_iter().collect(),
            CatchUp::All => fires,
        }
    }

    /// Handle every schedule's missed fires as of `now`; returns how many
    /// this beat published.
    pub async fn catch_up(
        &self,
        publisher: &Publisher,
        now: DateTime<Utc>,
    ) -> Result<usize, BeatError> {
        let mut published = 0;
        for idx in 0..self.schedules.len() {
            let s = &self.schedules[idx];
            let last = self.last_fire(s.name()).await?;
            let missed = Self::missed_fires(s, last, now);
            if !missed.is_empty() {
                info!(schedule = s.name(), policy = %s.catch_up(), count = missed.len(), "catching up missed fires");
            }
            for t in missed {
                if let FireOutcome::Published(_) =
                    self.fire(publisher, idx, t, FireKind::CatchUp).await?
                {
                    published += 1;
                }
            }
        }
        Ok(published)
    }

    /// Verify a lost claim: done → nothing; gone → the claimer died before
    /// publishing, so publish it; still pending → check again later.
    async fn verify(
        &self,
        publisher: &Publisher,
        p: &Pending,
    ) -> Result<Option<DateTime<Utc>>, BeatError> {
        let s = &self.schedules[p.schedule];
        let mut conn = self.redis.get().await?;
        let v: Option<String> = deadpool_redis::redis::cmd("GET")
            .arg(self.claim_key(s, p.instant))
            .query_async(&mut conn)
            .await?;
        match v.as_deref() {
            Some("done") => Ok(None),
            Some(_) => Ok(Some(
                self.now()
                    + chrono::Duration::from_std(self.config.beat.claim_timeout.0)
                        .unwrap_or_default(),
            )),
            None => {
                warn!(schedule = s.name(), fire = %p.instant, "the beat that claimed this fire did not publish it; publishing it now");
                match self
                    .fire(publisher, p.schedule, p.instant, FireKind::Recovered)
                    .await?
                {
                    FireOutcome::Published(_) | FireOutcome::Paused => Ok(None),
                    FireOutcome::ClaimedElsewhere => Ok(Some(
                        self.now()
                            + chrono::Duration::from_std(self.config.beat.claim_timeout.0)
                                .unwrap_or_default(),
                    )),
                }
            }
        }
    }

    /// Run until `shutdown`: reconnects with backoff after broker or Redis
    /// failures and catches up each time.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), BeatError> {
        let listen = self.config.beat.metrics_listen.trim();
        if !listen.is_empty() && listen != "off" {
            let addr = crate::metrics::serve(
                listen,
                self.metrics.registry.clone(),
                self.health.clone(),
                shutdown.child_token(),
            )
            .await
            .map_err(BeatError::Metrics)?;
            info!(%addr, "serving /metrics and /healthz");
        }
        info!(beat = %self.id, schedules = self.schedules.len(), "beat starting");
        let registration = shutdown.child_token();
        let (result, ()) = tokio::join!(
            async {
                let r = self.sessions(&shutdown).await;
                registration.cancel();
                r
            },
            self.heartbeats(registration.clone()),
        );
        result
    }

    /// Keep this beat registered in Redis (`alertflow web` lists beats)
    /// until `stop`, then deregister. Redis being down only delays it.
    async fn heartbeats(&self, stop: CancellationToken) {
        let registry = BeatRegistry::new(self.redis.clone(), &self.config.namespace);
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let started_at = Utc::now();
        loop {
            let info = BeatInfo {
                id: self.id.clone(),
                host: host.clone(),
                pid: std::process::id(),
                schedules: self.schedules.len(),
                connected: self.health.healthy(),
                started_at,
                heartbeat_at: Utc::now(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            };
            // A Redis that hangs must not hold up a stop.
            tokio::select! {
                _ = stop.cancelled() => break,
                r = registry.heartbeat(&info, HEARTBEAT_INTERVAL * 3) => {
                    if let Err(e) = r {
                        debug!(error = %e, "beat registration not refreshed");
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
            }
        }
        // Unreachable Redis: the registration expires on its own.
        let _ = tokio::time::timeout(Duration::from_secs(2), registry.deregister(&self.id)).await;
    }

    /// Sessions until `shutdown`, reconnecting with backoff.
    async fn sessions(&self, shutdown: &CancellationToken) -> Result<(), BeatError> {
        let mut backoff = Duration::from_millis(200);
        let mut gate = crate::connect::ConfigErrorGate::default();
        while !shutdown.is_cancelled() {
            let started = std::time::Instant::now();
            let result = self.session(shutdown).await;
            if self.health.healthy() {
                // This session got connected: the configuration works.
                gate.connected();
            }
            match result {
                Ok(()) => break,
                Err(e) if e.is_config() && !gate.stop(e.may_be_booting()) => {
                    warn!(error = %e, "the broker refuses this configuration, or is still starting: retrying");
                }
                Err(e) if e.is_config() => {
                    error!(error = %e, "configuration error: beat cannot run until it is fixed");
                    return Err(e);
                }
                Err(e) => warn!(error = %e, "beat session failed; reconnecting and catching up"),
            }
            self.health.set_connected(false);
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(200);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() * 0.5)) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        info!("beat stopped");
        Ok(())
    }

    async fn session(&self, shutdown: &CancellationToken) -> Result<(), BeatError> {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            c = connect(&self.config, "beat") => c?,
        };
        let publisher = Publisher::open(&conn, self.topology.clone(), 64).await?;
        let mut families: Vec<String> = self.schedules.iter().map(|s| self.family(s)).collect();
        families.sort();
        families.dedup();
        self.topology
            .declare(publisher.channel(), &families)
            .await
            .map_err(|e| match crate::connect::declare_failure(&e) {
                Some(config) => BeatError::Connect(config),
                None => BeatError::Broker(e),
            })?;
        self.health.set_connected(true);
        self.health.set_consuming(true);
        self.sync_clock().await?;
        let mut synced = std::time::Instant::now();
        let start = self.now();
        self.catch_up(&publisher, start).await?;
        let mut next: Vec<Option<DateTime<Utc>>> = self
            .schedules
            .iter()
            .map(|s| s.next_fire_after(start))
            .collect();
        let mut pending: Vec<Pending> = Vec::new();
        loop {
            if synced.elapsed() >= CLOCK_SYNC_EVERY {
                if let Err(e) = self.sync_clock().await {
                    warn!(error = %e, "beat clock not measured against Redis; keeping the last offset");
                }
                synced = std::time::Instant::now();
            }
            let now = self.now();
            for (idx, slot) in next.iter_mut().enumerate() {
                while let Some(t) = slot.filter(|t| *t <= now) {
                    let outcome = self.fire(&publisher, idx, t, FireKind::OnTime).await?;
                    if outcome == FireOutcome::ClaimedElsewhere {
                        pending.push(Pending {
                            schedule: idx,
                            instant: t,
                            check_at: now
                                + chrono::Duration::from_std(self.config.beat.claim_timeout.0)
                                    .unwrap_or_default()
                                + chrono::Duration::milliseconds(500),
                        });
                    }
                    *slot = self.schedules[idx].next_fire_after(t);
                }
            }
            let mut still = Vec::new();
            for p in pending.drain(..) {
                if p.check_at > now {
                    still.push(p);
                } else if let Some(again) = self.verify(&publisher, &p).await? {
                    still.push(Pending {
                        check_at: again,
                        ..p
                    });
                }
            }
            pending = still;
            let now = self.now();
            let mut sleep = Duration::from_secs(1);
            for (idx, n) in next.iter().enumerate() {
                if let Some(t) = n {
                    let until = (*t - now).to_std().unwrap_or_default();
                    self.metrics
                        .seconds_until_next
                        .with_label_values(&[self.schedules[idx].name()])
                        .set(until.as_secs_f64());
                    sleep = sleep.min(until);
                }
            }
            if conn.status().errored() || !conn.status().connected() {
                return Err(BeatError::ConnectionLost);
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = publisher.channel().close(200, "beat stopping".into()).await;
                    let _ = conn.close(200, "beat stopping".into()).await;
                    return Ok(());
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}

/// `beat.state_file`: each schedule's last fire (unix ms) as a JSON object,
/// replaced atomically (write a temporary file, then rename).
struct StateFile(std::path::PathBuf);

impl StateFile {
    fn read(&self) -> std::collections::BTreeMap<String, i64> {
        std::fs::read(&self.0)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn last(&self, name: &str) -> Option<i64> {
        self.read().get(name).copied()
    }

    /// Record `ms`; unless `moved`, not over a later fire already there.
    fn set_last(&self, name: &str, ms: i64, moved: bool) -> std::io::Result<()> {
        let mut all = self.read();
        if !moved && all.get(name).is_some_and(|v| *v >= ms) {
            return Ok(());
        }
        all.insert(name.to_string(), ms);
        let tmp = self.0.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(&all).expect("map serializes"))?;
        std::fs::rename(&tmp, &self.0)
    }
}
