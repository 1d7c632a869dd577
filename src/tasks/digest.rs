//! `digest`: send a date's digest ([`crate::notify::digest`]) to `[digest]
//! receivers`, once per date. Published by `recommend` after it wrote the
//! date's recommendations; `alertflow digest` sends through the same
//! [`send_digest`], so a CLI send and a worker send never both go out.
//!
//! Once per date: the date is claimed in `digests` before sending and
//! marked sent after ([`crate::sink::digests`]). A retry of the same task
//! (same id) sends under its own claim; a claim held by another sender is
//! waited for (the task retries after the claim would go stale), so a
//! sender that died mid-send is replaced: at least once, not exactly once.

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::{AppConfig, ConfigError};
use crate::notify::digest::DigestConfig;
use crate::notify::{Notification, NotifyError, Receivers};
use crate::queue::task::{InvalidArgs, Task, TaskContext, TaskError};
use crate::sink::digests::{ClaimOutcome, DigestClaim, STALE_CLAIM};
use crate::sink::notifications::NotificationRecord;
use crate::sink::starrocks::{SinkError, SqlSink};
use crate::tasks::Shared;

/// The worker's `digest` task: its receivers and database pool.
pub struct Digest {
    sink: SqlSink,
    receivers: Receivers,
    config: DigestConfig,
}

impl Digest {
    pub fn new(config: &AppConfig, shared: &Shared) -> Result<Digest, ConfigError> {
        Ok(Digest {
            sink: SqlSink::new(config),
            receivers: Receivers::from_config(config, Some(shared.limiter.clone()))
                .map_err(|e| config.invalid("receivers", &e.to_string()))?,
            config: config.digest.clone(),
        })
    }
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct DigestArgs {
    /// The Pacific date, YYYY-MM-DD.
    pub date: String,
}

/// Why a digest was not sent.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A receiver did not take it (the others may have).
    #[error("digest of {date} not delivered to {receiver}: {error}")]
    Notify {
        date: chrono::NaiveDate,
        receiver: String,
        error: NotifyError,
    },
    #[error("digest.receivers names {0}, which is not configured")]
    UnknownReceiver(String),
}

impl From<DigestError> for TaskError {
    fn from(e: DigestError) -> Self {
        match e {
            DigestError::Sink(s) => s.into(),
            DigestError::Notify { error, .. } => error.into(),
            e @ DigestError::UnknownReceiver(_) => TaskError::fatal(e),
        }
    }
}

/// What [`send_digest`] did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum SendOutcome {
    /// Sent to every receiver (name, attempts).
    Sent {
        title: String,
        receivers: Vec<(String, u32)>,
    },
    /// Sent before, by whoever claimed it.
    AlreadySent { claim: DigestClaim },
    /// Claimed by another sender that has not finished.
    HeldBy { claim: DigestClaim },
    /// `[digest] receivers` is empty.
    Off,
}

/// Claim the date as `me`, send `n` to every receiver of `config`, record
/// each delivery in the notification ledger (source `digest`, subject the
/// date) and mark the date sent once every receiver took it.
pub async fn send_digest(
    sink: &SqlSink,
    receivers: &Receivers,
    config: &DigestConfig,
    date: chrono::NaiveDate,
    n: &Notification,
    me: &str,
) -> Result<SendOutcome, DigestError> {
    if !config.enabled() {
        return Ok(SendOutcome::Off);
    }
    let targets = config
        .receivers
        .iter()
        .map(|name| {
            receivers
                .get(name)
                .ok_or_else(|| DigestError::UnknownReceiver(name.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match sink
        .claim_digest(date, me, &n.title, &config.receivers.join(","))
        .await?
    {
        ClaimOutcome::Claimed => {}
        ClaimOutcome::AlreadySent(claim) => return Ok(SendOutcome::AlreadySent { claim }),
        ClaimOutcome::HeldBy(claim) => return Ok(SendOutcome::HeldBy { claim }),
    }
    // A retry under the same claim skips the receivers that took it
    // already (from the ledger; if that cannot be read, all are sent to).
    let since = crate::sink::ledger::now() - chrono::Duration::days(1);
    let taken: Vec<String> = sink
        .notifications_since(since, Some(&date.to_string()), 1000)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.source == "digest" && r.outcome == "sent" && r.labels["claimed_by"] == me)
        .map(|r| r.receiver)
        .collect();
    let mut records = Vec::new();
    let mut sent = Vec::new();
    let mut failed = None;
    for r in targets {
        if taken.iter().any(|t| t == r.name()) {
            info!(date = %date, receiver = r.name(), "digest already delivered to this receiver under this claim");
            continue;
        }
        let (result, attempts) = r.deliver(n).await;
        records.push(NotificationRecord {
            id: uuid::Uuid::now_v7().to_string(),
            at: crate::sink::ledger::now(),
            source: "digest".into(),
            subject: date.to_string(),
            event: "digest".into(),
            labels: serde_json::json!({"claimed_by": me}),
            receiver: r.name().to_string(),
            outcome: result
                .as_ref()
                .err()
                .map_or("sent", NotifyError::outcome)
                .into(),
            attempts,
            error: result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default(),
            title: n.title.clone(),
        });
        match result {
            Ok(()) => sent.push((r.name().to_string(), attempts)),
            Err(error) => {
                failed.get_or_insert(DigestError::Notify {
                    date,
                    receiver: r.name().to_string(),
                    error,
                });
            }
        }
    }
    crate::notify::record_notifications(sink, &records).await;
    if let Some(e) = failed {
        return Err(e);
    }
    sink.digest_sent(date, me).await?;
    Ok(SendOutcome::Sent {
        title: n.title.clone(),
        receivers: sent,
    })
}

impl Task for Digest {
    const NAME: &'static str = "digest";
    type Args = DigestArgs;

    fn queue(&self) -> &'static str {
        crate::queue::topology::DEFAULT_FAMILY
    }

    fn validate(&self, a: &DigestArgs) -> Result<(), InvalidArgs> {
        chrono::NaiveDate::parse_from_str(&a.date, "%Y-%m-%d")
            .map(|_| ())
            .map_err(|e| InvalidArgs::field("date", format!("{:?} is not YYYY-MM-DD: {e}", a.date)))
    }

    async fn run(&self, ctx: &TaskContext, a: DigestArgs) -> Result<(), TaskError> {
        let date = chrono::NaiveDate::parse_from_str(&a.date, "%Y-%m-%d")
            .map_err(|e| TaskError::fatal(format!("date {:?} is not YYYY-MM-DD: {e}", a.date)))?;
        let data = self
            .sink
            .digest_data(
                date,
                self.config.top,
                self.config.new_days,
                self.config.dashboard_url.as_deref(),
            )
            .await?;
        let n = data.notification();
        let me = ctx.id().to_string();
        match send_digest(&self.sink, &self.receivers, &self.config, date, &n, &me).await? {
            SendOutcome::HeldBy { claim } => {
                // Wait for the holder to finish, or for its claim to go stale.
                let left = (claim.claimed_at + STALE_CLAIM) - crate::sink::ledger::now();
                let after = left.to_std().unwrap_or_default() + std::time::Duration::from_secs(5);
                Err(TaskError::retry_after(
                    format!(
                        "digest of {date} is being sent by {} (claimed {})",
                        claim.claimed_by, claim.claimed_at
                    ),
                    after,
                ))
            }
            outcome => {
                info!(date = %date, outcome = ?outcome, "digest");
                Ok(())
            }
        }
    }
}
