//! The `Task` trait, the registry, and `TaskError`.
//!
//! A task is a type implementing [`Task`]; adding one is a new file in
//! `src/tasks/` and one `.with(...)` line in `tasks::registry()`. Retries,
//! time limits, rate limits, state and metrics live once in the execution
//! path ([`crate::execute`]), not in tasks.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::context::Services;
use crate::message::Envelope;
use crate::publisher::{PublishError, Publisher};
use crate::state::{TaskState, TaskStatus};

/// How a task failed, which decides what the worker does with its message.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Transient (network, 5xx, 429, database down): retried with backoff,
    /// after `retry_after` when the cause said how long to wait.
    #[error("{message}")]
    Retry {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Permanent (bad args, bad credentials): dead-lettered at once.
    #[error("{0}")]
    Fatal(String),
    /// The hard time limit passed; retried like a transient failure.
    #[error("time limit of {0:?} exceeded")]
    TimedOut(Duration),
}

impl TaskError {
    pub fn retry(e: impl fmt::Display) -> TaskError {
        TaskError::Retry {
            message: e.to_string(),
            retry_after: None,
        }
    }
    pub fn retry_after(e: impl fmt::Display, after: Duration) -> TaskError {
        TaskError::Retry {
            message: e.to_string(),
            retry_after: Some(after),
        }
    }
    pub fn fatal(e: impl fmt::Display) -> TaskError {
        TaskError::Fatal(e.to_string())
    }
}

impl From<PublishError> for TaskError {
    fn from(e: PublishError) -> Self {
        TaskError::retry(format!("publishing a child task failed: {e}"))
    }
}

/// Where a task's children go: the broker (with confirms), or the
/// in-process queue of `alertflow run --local`.
#[derive(Clone)]
pub enum Outbox {
    Broker(Publisher),
    Local(tokio::sync::mpsc::UnboundedSender<Envelope>),
}

impl Outbox {
    /// Publish (or enqueue) children; returns once they are safe.
    pub async fn publish_many(&self, children: Vec<Envelope>) -> Result<(), TaskError> {
        match self {
            Outbox::Broker(p) => {
                p.publish_many(children, |_| {}).await?;
                Ok(())
            }
            Outbox::Local(tx) => {
                for c in children {
                    tx.send(c)
                        .map_err(|_| TaskError::retry("the local queue is closed"))?;
                }
                Ok(())
            }
        }
    }
}

/// What a running task can reach: its envelope, shared services, and an
/// outbox for children.
pub struct TaskContext {
    pub envelope: Envelope,
    pub services: Arc<Services>,
    pub publisher: Outbox,
    pub registry: Arc<Registry>,
}

impl TaskContext {
    pub fn id(&self) -> Uuid {
        self.envelope.id
    }
    pub fn attempt(&self) -> u32 {
        self.envelope.attempt
    }

    /// Build a child envelope with the registry's queue and retry policy.
    /// With `key`, the child id is derived from this task's id and the key, so
    /// a retried parent republishes children with the same ids.
    pub fn child(&self, task: &str, args: Value, key: Option<&str>) -> Envelope {
        let mut env = match key {
            Some(k) => self.envelope.child_with_key(task, args, k),
            None => self.envelope.child(task, args),
        };
        self.registry
            .apply_policy(&mut env, &self.services.config, None);
        env
    }

    /// A child of task type `T`, its name from `T::NAME` and its arguments
    /// from `T::Args`, so a child can be neither misnamed nor mistyped.
    /// `key` as in [`TaskContext::child`].
    pub fn child_task<T: Task>(
        &self,
        args: &T::Args,
        key: Option<&str>,
    ) -> Result<Envelope, TaskError>
    where
        T::Args: serde::Serialize,
    {
        let args = serde_json::to_value(args)
            .map_err(|e| TaskError::fatal(format!("arguments of a {} child: {e}", T::NAME)))?;
        Ok(self.child(T::NAME, args, key))
    }

    /// Publish children with confirms; the worker acks this task only after.
    /// Each publish is counted in the activity counters.
    pub async fn publish_children(&self, children: Vec<Envelope>) -> Result<(), TaskError> {
        let published: Vec<TaskState> = children
            .iter()
            .map(|c| TaskState::of(c, TaskStatus::Queued))
            .collect();
        self.publisher.publish_many(children).await?;
        for s in published {
            self.services.state_writer.count(s);
        }
        Ok(())
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A unit of work. Override only the policies that differ from the defaults.
pub trait Task: Send + Sync + 'static {
    /// The name messages use (`fetch-day`).
    const NAME: &'static str;
    /// Decoded from the envelope's `args`; a decode error is fatal.
    type Args: DeserializeOwned + Send + 'static;

    /// Queue family it is published to unless `[tasks.NAME].queue` says otherwise.
    fn queue(&self) -> &'static str {
        crate::topology::DEFAULT_FAMILY
    }
    /// Retries before dead-lettering; `None` = `worker.max_retries`.
    fn max_retries(&self) -> Option<u32> {
        None
    }
    /// Hard time limit; `None` = `worker.time_limit`.
    fn time_limit(&self) -> Option<Duration> {
        None
    }
    /// Rate-limit keys to pass before the task starts.
    fn rate_limit_keys(&self, _args: &Self::Args) -> Vec<String> {
        Vec::new()
    }
    /// Why this task cannot run in this process (a client it needs is not
    /// configured), or `None`. A worker consuming the task's queue refuses
    /// to start while this says something, rather than dead-lettering every
    /// message.
    fn unavailable(&self) -> Option<String> {
        None
    }
    /// Checks beyond the argument type, run before anything is published
    /// (`alertflow enqueue`, beat schedules, `check-config`): a date that
    /// does not exist, a check the config does not name. The message names
    /// the field.
    fn validate(&self, _args: &Self::Args) -> Result<(), InvalidArgs> {
        Ok(())
    }
    fn run(
        &self,
        ctx: &TaskContext,
        args: Self::Args,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// Object-safe view of a [`Task`] for the registry.
pub trait DynTask: Send + Sync {
    fn name(&self) -> &'static str;
    fn queue(&self) -> &'static str;
    fn max_retries(&self) -> Option<u32>;
    fn time_limit(&self) -> Option<Duration>;
    fn rate_limit_keys(&self, args: &Value) -> Result<Vec<String>, TaskError>;
    fn unavailable(&self) -> Option<String>;
    /// Decode `args` into the task's argument type and run its
    /// [`Task::validate`]; the error names the field (`date: invalid type:
    /// integer `5`, expected a string`).
    fn check_args(&self, args: &Value) -> Result<(), InvalidArgs>;
    fn call<'a>(
        &'a self,
        ctx: &'a TaskContext,
        args: Value,
    ) -> BoxFuture<'a, Result<(), TaskError>>;
}

/// Arguments a task refuses: the path of the field and why (`date: ...`,
/// `items[3].id: ...`; no field when the whole value is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct InvalidArgs {
    pub field: Option<String>,
    pub message: String,
}

impl InvalidArgs {
    /// `field` is wrong: `message` says how.
    pub fn field(field: &str, message: impl fmt::Display) -> InvalidArgs {
        InvalidArgs {
            field: Some(field.to_string()),
            message: message.to_string(),
        }
    }
}

fn decode_args<A: DeserializeOwned>(task: &str, args: &Value) -> Result<A, TaskError> {
    decode_named(args).map_err(|e| TaskError::Fatal(format!("bad arguments for task {task}: {e}")))
}

/// Decode, naming the path of the field that failed (`date: ...`,
/// `items[3].id: ...`); serde alone says only what it expected.
fn decode_named<A: DeserializeOwned>(args: &Value) -> Result<A, InvalidArgs> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        InvalidArgs {
            field: (path != ".").then_some(path),
            message: e.into_inner().to_string(),
        }
    })
}

impl<T: Task> DynTask for T {
    fn name(&self) -> &'static str {
        T::NAME
    }
    fn queue(&self) -> &'static str {
        Task::queue(self)
    }
    fn max_retries(&self) -> Option<u32> {
        Task::max_retries(self)
    }
    fn time_limit(&self) -> Option<Duration> {
        Task::time_limit(self)
    }
    fn rate_limit_keys(&self, args: &Value) -> Result<Vec<String>, TaskError> {
        let a: T::Args = decode_args(T::NAME, args)?;
        Ok(Task::rate_limit_keys(self, &a))
    }
    fn unavailable(&self) -> Option<String> {
        Task::unavailable(self)
    }
    fn check_args(&self, args: &Value) -> Result<(), InvalidArgs> {
        let a: T::Args = decode_named(args)?;
        Task::validate(self, &a)
    }
    fn call<'a>(
        &'a self,
        ctx: &'a TaskContext,
        args: Value,
    ) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(async move {
            let a: T::Args = decode_args(T::NAME, &args)?;
            self.run(ctx, a).await
        })
    }
}

/// Tasks by name.
#[derive(Clone, Default)]
pub struct Registry {
    tasks: BTreeMap<&'static str, Arc<dyn DynTask>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Add a task; a second task with the same name replaces the first.
    pub fn with<T: Task>(mut self, task: T) -> Registry {
        self.tasks.insert(T::NAME, Arc::new(task));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynTask>> {
        self.tasks.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tasks.keys().copied()
    }

    /// Every queue family a message can be routed to: the default one,
    /// each registered task's own, `worker.queues` and `[tasks.NAME].queue`
    /// (families come from the registry and the config, not a constant).
    /// Anything else would be a queue nobody consumes.
    pub fn families(
        &self,
        config: &crate::config::QueueConfig,
    ) -> std::collections::BTreeSet<String> {
        let mut out =
            std::collections::BTreeSet::from([crate::topology::DEFAULT_FAMILY.to_string()]);
        out.extend(self.tasks.values().map(|t| t.queue().to_string()));
        out.extend(config.worker.queues.iter().cloned());
        out.extend(config.tasks.values().filter_map(|o| o.queue.clone()));
        out
    }

    /// The families a worker consumes: `worker.queues` when set, else every
    /// family of [`Registry::families`].
    pub fn consumed_families(&self, config: &crate::config::QueueConfig) -> Vec<String> {
        if config.worker.queues.is_empty() {
            self.families(config).into_iter().collect()
        } else {
            config.worker.queues.clone()
        }
    }

    /// What only the registry can check in a config, run by every binary at
    /// start and by `check-config`: each `[tasks.NAME]` names a task, each
    /// schedule names a task, routes to a known family and has arguments
    /// its task accepts (templates rendered as of now). The error names the
    /// key (or the environment variable that set it).
    pub fn validate_config(
        &self,
        config: &crate::config::QueueConfig,
    ) -> Result<(), crate::config::ConfigError> {
        let known = || self.names().collect::<Vec<_>>().join(", ");
        for name in config.tasks.keys() {
            if self.get(name).is_none() {
                return Err(config.invalid(
                    &format!("tasks.{name}"),
                    &format!("no task is called {name:?} (known: {})", known()),
                ));
            }
        }
        let families = self.families(config);
        let now = chrono::Utc::now();
        for sc in &config.schedules {
            let key = format!("schedules.{}", sc.name);
            let schedule = crate::schedule::Schedule::from_config(sc)
                .map_err(|e| config.invalid(&key, &e.to_string()))?;
            let Some(task) = self.get(schedule.task()) else {
                return Err(config.invalid(
                    &format!("{key}.task"),
                    &format!(
                        "no task is called {:?} (known: {})",
                        schedule.task(),
                        known()
                    ),
                ));
            };
            if let Some(q) = schedule.queue()
                && !families.contains(q)
            {
                return Err(config.invalid(
                    &format!("{key}.queue"),
                    &format!(
                        "{q:?} is not a queue family workers consume (known: {}; add it to worker.queues to use it)",
                        families.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            task.check_args(&schedule.args_for(now))
                .map_err(|e| config.invalid(&format!("{key}.args"), &e.to_string()))?;
        }
        Ok(())
    }

    /// Fill in queue and retry policy for a new envelope: an explicit
    /// `queue` wins, then `[tasks.NAME]`, then the task's own defaults.
    pub fn apply_policy(
        &self,
        env: &mut Envelope,
        config: &crate::config::QueueConfig,
        queue: Option<&str>,
    ) {
        let task = self.get(&env.task);
        let default_queue = task.map(|t| t.queue()).unwrap_or("default");
        env.queue = match queue {
            Some(q) => q.to_string(),
            None => config.task_queue(&env.task, default_queue),
        };
        env.max_retries = config
            .tasks
            .get(&env.task)
            .and_then(|o| o.max_retries)
            .or_else(|| task.and_then(|t| t.max_retries()))
            .unwrap_or(config.worker.max_retries);
    }

    /// Rate-limit keys a delivery must pass before its task starts: the
    /// task's own ([`Task::rate_limit_keys`]) and `task.NAME` when
    /// `[tasks.NAME] rate_limits` is set.
    pub fn start_keys(
        task: &dyn DynTask,
        env: &Envelope,
        config: &crate::config::QueueConfig,
    ) -> Result<Vec<String>, TaskError> {
        let mut keys = task.rate_limit_keys(&env.args)?;
        if config
            .tasks
            .get(&env.task)
            .is_some_and(|o| o.rate_limits.is_some())
        {
            keys.push(crate::config::task_rate_key(&env.task));
        }
        Ok(keys)
    }

    /// The time limit of a task: `[tasks.NAME]`, then the task, then the default.
    pub fn time_limit(&self, task: &str, config: &crate::config::QueueConfig) -> Duration {
        config
            .tasks
            .get(task)
            .and_then(|o| o.time_limit.map(|d| d.0))
            .or_else(|| self.get(task).and_then(|t| t.time_limit()))
            .unwrap_or(config.worker.time_limit.0)
    }
}
