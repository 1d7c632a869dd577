//! The task envelope (the JSON body of every task message) and the
//! dead-letter record that wraps an envelope in `<namespace>.dead`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One task message. `id` is also the AMQP `message_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    pub task: String,
    #[serde(default = "empty_object")]
    pub args: Value,
    /// 0 on the first delivery, incremented by each retry.
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub max_retries: u32,
    pub created_at: DateTime<Utc>,
    /// Not to run before this instant (countdowns and retry backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<DateTime<Utc>>,
    /// Not to run after this instant: dead-lettered as `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The first task of a tree (a day's run starts with one `fetch-day`).
    pub root_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The queue family it was published to (`lark`, `db`, ...).
    #[serde(default)]
    pub queue: String,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl Envelope {
    /// A new root task.
    pub fn new(task: impl Into<String>, args: Value) -> Envelope {
        let id = Uuid::new_v4();
        Envelope {
            id,
            task: task.into(),
            args,
            attempt: 0,
            max_retries: 0,
            created_at: Utc::now(),
            eta: None,
            expires_at: None,
            root_id: id,
            parent_id: None,
            run_id: None,
            queue: String::new(),
        }
    }

    /// A child of this task: same root and run, this task as parent.
    pub fn child(&self, task: impl Into<String>, args: Value) -> Envelope {
        let mut e = Envelope::new(task, args);
        e.root_id = self.root_id;
        e.parent_id = Some(self.id);
        e.run_id = self.run_id.clone();
        e
    }

    /// A child with a deterministic id derived from this task's id and `key`,
    /// so that a retried parent republishes the same children.
    pub fn child_with_key(&self, task: impl Into<String>, args: Value, key: &str) -> Envelope {
        let mut e = self.child(task, args);
        e.id = Uuid::new_v5(&self.id, key.as_bytes());
        e
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serializes")
    }

    /// Decode a message body; the error says why it is not an envelope.
    pub fn from_json(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        let env: Envelope = serde_json::from_slice(body)?;
        if env.task.is_empty() {
            return Err(EnvelopeError::EmptyTask);
        }
        if !env.args.is_object() {
            return Err(EnvelopeError::ArgsNotObject);
        }
        Ok(env)
    }
}

/// Why a message body is not a task envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a task envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("empty task name")]
    EmptyTask,
    #[error("args must be a JSON object")]
    ArgsNotObject,
}

/// Why a message was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadReason {
    /// The task returned a fatal error.
    Fatal,
    /// Retries (including time-limit overruns) exhausted.
    RetriesExhausted,
    /// The body is not a task envelope.
    Undecodable,
    /// No task of that name is registered.
    UnknownTask,
    /// `expires_at` passed before it ran.
    Expired,
    /// The broker dead-lettered it (quorum delivery limit, rejection).
    Broker,
    /// An operator revoked it before it ran (replay it to run it after all).
    Revoked,
}

impl DeadReason {
    /// Every reason, in declaration order.
    pub const ALL: [DeadReason; 7] = [
        DeadReason::Fatal,
        DeadReason::RetriesExhausted,
        DeadReason::Undecodable,
        DeadReason::UnknownTask,
        DeadReason::Expired,
        DeadReason::Broker,
        DeadReason::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Fatal => "fatal",
            DeadReason::RetriesExhausted => "retries-exhausted",
            DeadReason::Undecodable => "undecodable",
            DeadReason::UnknownTask => "unknown-task",
            DeadReason::Expired => "expired",
            DeadReason::Broker => "broker",
            DeadReason::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of a message in the dead-letter queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The envelope, when the body could be decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    /// The raw body (lossy UTF-8) when it could not be decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_body: Option<String>,
    pub reason: DeadReason,
    pub attempts: u32,
    pub last_error: String,
    pub worker: String,
    pub queue: String,
    pub dead_at: DateTime<Utc>,
}

impl DeadLetter {
    /// The task id, if known.
    pub fn task_id(&self) -> Option<Uuid> {
        self.envelope.as_ref().map(|e| e.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roundtrip_and_children() {
        let mut root = Envelope::new("fetch-day", json!({"date": "2026-03-10"}));
        root.run_id = Some("run-1".into());
        let back = Envelope::from_json(&root.to_json()).unwrap();
        assert_eq!(back, root);
        let c1 = root.child_with_key("parse-batch", json!({}), "page-1");
        let c2 = root.child_with_key("parse-batch", json!({}), "page-1");
        assert_eq!(c1.id, c2.id);
        assert_eq!(c1.root_id, root.id);
        assert_eq!(c1.parent_id, Some(root.id));
        assert_eq!(c1.run_id.as_deref(), Some("run-1"));
    }

    #[test]
    fn bad_bodies_are_explained() {
        assert!(Envelope::from_json(b"{not json").is_err());
        let no_args_obj = json!({"id": Uuid::new_v4(), "task": "noop", "args": [1],
            "created_at": Utc::now(), "root_id": Uuid::new_v4()});
        let err = Envelope::from_json(no_args_obj.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, EnvelopeError::ArgsNotObject));
        assert!(err.to_string().contains("object"));
    }
}
