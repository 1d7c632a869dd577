//! Exchanges and queues, declared idempotently by every process at start.
//!
//! With namespace `ns`:
//! - `ns` (direct exchange; cheaper to route than a topic one) routes task
//!   messages; queue family `f` is the durable queue `ns.f`, bound with `f`
//!   and with `<tier>.f` for each tier (messages coming back from a delay
//!   tier keep the routing key they were delayed with);
//! - `ns.delay` (topic exchange) feeds the delay tiers `ns.delay.<tier>`, each a
//!   queue with one queue-level `x-message-ttl` that dead-letters back to `ns`
//!   keeping the routing key `<tier>.f`. One TTL per queue means messages
//!   expire in order: no head-of-line blocking, no per-message TTL;
//! - `ns.dead` (fanout exchange) feeds the one dead-letter queue `ns.dead`.
//!   Work queues name it as their dead-letter exchange, so a quorum queue's
//!   delivery limit lands there too.

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::config::{QueueConfig, QueueType};

/// The queue family of a task that names none.
pub const DEFAULT_FAMILY: &str = "default";

/// Names and settings derived from the configuration.
#[derive(Clone, Debug)]
pub struct Topology {
    pub namespace: String,
    pub queue_type: QueueType,
    pub delivery_limit: u32,
    /// Delay tiers, shortest first.
    pub tiers: Vec<Duration>,
}

/// A queue family name must be short, lowercase and dot-free (dots separate
/// the tier from the family in delay routing keys).
pub fn validate_queue_name(name: &str) -> Result<(), QueueNameError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(QueueNameError {
            name: name.to_string(),
        })
    }
}

/// A queue family name [`validate_queue_name`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue name {name:?} must be 1-64 characters of a-z, 0-9, '-' or '_'")]
pub struct QueueNameError {
    pub name: String,
}

/// `1s`, `500ms`, `2m`, `1h`: a tier's label in queue names and routing keys.
pub fn tier_label(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

impl Topology {
    pub fn from_config(config: &QueueConfig) -> Topology {
        let mut tiers: Vec<Duration> = config.broker.retry_tiers.iter().map(|t| t.0).collect();
        tiers.sort();
        tiers.dedup();
        Topology {
            namespace: config.namespace.clone(),
            queue_type: config.broker.queue_type,
            delivery_limit: config.broker.delivery_limit,
            tiers,
        }
    }

    pub fn work_exchange(&self) -> String {
        self.namespace.clone()
    }
    pub fn delay_exchange(&self) -> String {
        format!("{}.delay", self.namespace)
    }
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.namespace)
    }
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.namespace)
    }
    /// The AMQP queue of a family: `ns.family`.
    pub fn queue(&self, family: &str) -> String {
        format!("{}.{family}", self.namespace)
    }
    pub fn tier_queue(&self, tier: Duration) -> String {
        format!("{}.delay.{}", self.namespace, tier_label(tier))
    }

    /// The tier to wait in for `delay`: the longest tier not longer than it
    /// (the shortest tier when `delay` is shorter than all). A message that
    /// comes back before its `eta` is sent around again.
    pub fn tier_for(&self, delay: Duration) -> Duration {
        self.tiers
            .iter()
            .rev()
            .find(|t| **t <= delay)
            .copied()
            .unwrap_or(self.tiers[0])
    }

    /// Routing key to publish a delayed message for `family` into `tier`.
    pub fn delay_routing_key(&self, tier: Duration, family: &str) -> String {
        format!("{}.{family}", tier_label(tier))
    }

    fn work_queue_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(self.dead_exchange())),
        );
        if self.queue_type == QueueType::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString(LongString::from("quorum")),
            );
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
        }
        args
    }

    /// Declare the exchanges, tiers, dead-letter queue and the given families.
    pub async fn declare(&self, ch: &Channel, families: &[String]) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            self.work_exchange().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.delay_exchange().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.dead_exchange().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
        let mut dead_args = FieldTable::default();
        if self.queue_type == QueueType::Quorum {
            dead_args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString(LongString::from("quorum")),
            );
        }
        ch.queue_declare(
            self.dead_queue().into(),
            QueueDeclareOptions::durable(),
            dead_args,
        )
        .await?;
        ch.queue_bind(
            self.dead_queue().into(),
            self.dead_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        for tier in &self.tiers {
            let mut args = FieldTable::default();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(tier.as_millis() as i64),
            );
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(LongString::from(self.work_exchange())),
            );
            if self.queue_type == QueueType::Quorum {
                args.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString(LongString::from("quorum")),
                );
            }
            let q = self.tier_queue(*tier);
            ch.queue_declare(q.clone().into(), QueueDeclareOptions::durable(), args)
                .await?;
            ch.queue_bind(
                q.into(),
                self.delay_exchange().into(),
                format!("{}.*", tier_label(*tier)).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        for family in families {
            self.declare_family(ch, family).await?;
        }
        Ok(())
    }

    /// Declare one work queue and its bindings.
    pub async fn declare_family(&self, ch: &Channel, family: &str) -> Result<(), lapin::Error> {
        let q = self.queue(family);
        ch.queue_declare(
            q.clone().into(),
            QueueDeclareOptions::durable(),
            self.work_queue_args(),
        )
        .await?;
        let keys = std::iter::once(family.to_string()).chain(
            self.tiers
                .iter()
                .map(|t| self.delay_routing_key(*t, family)),
        );
        for key in keys {
            ch.queue_bind(
                q.clone().into(),
                self.work_exchange().into(),
                ShortString::from(key),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// Delete everything this topology declared (tests and `bench` clean up).
    pub async fn delete(&self, ch: &Channel, families: &[String]) -> Result<(), lapin::Error> {
        let mut queues: Vec<String> = families.iter().map(|f| self.queue(f)).collect();
        queues.extend(self.tiers.iter().map(|t| self.tier_queue(*t)));
        queues.push(self.dead_queue());
        for q in queues {
            ch.queue_delete(q.into(), QueueDeleteOptions::default())
                .await?;
        }
        for x in [
            self.work_exchange(),
            self.delay_exchange(),
            self.dead_exchange(),
        ] {
            ch.exchange_delete(x.into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

/// What a passive declare tells of a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready messages (not those delivered and unacked).
    pub ready: u64,
    pub consumers: u64,
}

/// Ready messages and consumers of `queue` by a passive declare; `None`
/// when the queue does not exist. The broker closes the channel on a
/// missing queue, so give each call that may miss a channel of its own.
pub async fn queue_counts(ch: &Channel, queue: &str) -> Result<Option<QueueCounts>, lapin::Error> {
    let declared = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(q) => Ok(Some(QueueCounts {
            ready: u64::from(q.message_count()),
            consumers: u64::from(q.consumer_count()),
        })),
        Err(e) if crate::connect::is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_and_names() {
        let t = Topology::from_config(&QueueConfig::default());
        assert_eq!(t.queue("lark"), "alertflow.lark");
        assert_eq!(
            t.tier_for(Duration::from_millis(300)),
            Duration::from_secs(1)
        );
        assert_eq!(t.tier_for(Duration::from_secs(7)), Duration::from_secs(5));
        assert_eq!(
            t.tier_for(Duration::from_secs(7200)),
            Duration::from_secs(3600)
        );
        assert_eq!(tier_label(Duration::from_secs(120)), "2m");
        assert_eq!(tier_label(Duration::from_millis(1500)), "1500ms");
        assert_eq!(t.delay_routing_key(Duration::from_secs(30), "db"), "30s.db");
        assert!(validate_queue_name("lark").is_ok());
        assert!(validate_queue_name("a.b").is_err());
        assert!(validate_queue_name("").is_err());
    }
}
