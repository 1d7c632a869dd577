//! Confirm-mode publishing: every message is persistent and `mandatory`, and
//! a publish returns only once the broker confirmed it. An unroutable or
//! nacked message is an error. Bulk publishing keeps a window of unconfirmed
//! messages in flight instead of waiting for each one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use crate::message::{DeadLetter, Envelope};
use crate::topology::Topology;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused (nacked) message {id}")]
    Nacked { id: String },
    #[error(
        "message {id} is unroutable: exchange {exchange:?} has no queue for routing key {routing_key:?} ({reply})"
    )]
    Unroutable {
        id: String,
        exchange: String,
        routing_key: String,
        reply: String,
    },
    #[error("publisher confirms are not enabled on this channel")]
    NotConfirmed,
    #[error("no confirm for message {id} within {secs}s")]
    Timeout { id: String, secs: u64 },
}

/// How long to wait for one confirm before calling the publish failed.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

pub use crate::connect::connect;

/// A publisher on its own confirm-mode channel. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    topology: Arc<Topology>,
    window: usize,
}

/// What to publish: the exchange, routing key and body of one message.
struct Outgoing {
    exchange: String,
    routing_key: String,
    id: String,
    kind: Option<String>,
    body: Vec<u8>,
    headers: Option<FieldTable>,
}

impl Publisher {
    /// Open a channel on `conn` and put it in confirm mode.
    pub async fn open(
        conn: &Connection,
        topology: Arc<Topology>,
        window: usize,
    ) -> Result<Publisher, PublishError> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher {
            channel,
            topology,
            window: window.max(1),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    fn task_message(&self, env: &Envelope) -> Outgoing {
        // The task name rides in the AMQP `type` property (visible in the
        // management UI); everything else is in the body.
        Outgoing {
            exchange: self.topology.work_exchange(),
            routing_key: env.queue.clone(),
            id: env.id.to_string(),
            kind: Some(env.task.clone()),
            body: env.to_json(),
            headers: None,
        }
    }

    async fn send(&self, m: Outgoing) -> Result<lapin::PublisherConfirm, PublishError> {
        let mut props = BasicProperties::default()
            .with_message_id(ShortString::from(m.id))
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2);
        if let Some(kind) = m.kind {
            props = props.with_type(ShortString::from(kind));
        }
        if let Some(headers) = m.headers {
            props = props.with_headers(headers);
        }
        let confirm = self
            .channel
            .basic_publish(
                m.exchange.into(),
                m.routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &m.body,
                props,
            )
            .await?;
        Ok(confirm)
    }

    async fn settle(
        confirm: lapin::PublisherConfirm,
        id: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), PublishError> {
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| PublishError::Timeout {
                id: id.to_string(),
                secs: CONFIRM_TIMEOUT.as_secs(),
            })??;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(PublishError::Unroutable {
                id: id.to_string(),
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
                reply: returned.reply_text.to_string(),
            }),
            Confirmation::Nack(_) => Err(PublishError::Nacked { id: id.to_string() }),
            Confirmation::NotRequested => Err(PublishError::NotConfirmed),
        }
    }

    async fn publish_one(&self, m: Outgoing) -> Result<(), PublishError> {
        let (id, exchange, rk) = (m.id.clone(), m.exchange.clone(), m.routing_key.clone());
        let confirm = self.send(m).await?;
        Self::settle(confirm, &id, &exchange, &rk).await
    }

    /// Publish a task to its queue family (`env.queue`) and await the confirm.
    pub async fn publish(&self, env: &Envelope) -> Result<(), PublishError> {
        self.publish_one(self.task_message(env)).await
    }

    /// Publish a task into the delay tier for `delay`; it reaches its queue
    /// when the tier's TTL expires (the worker re-delays it if `eta` is
    /// still ahead).
    pub async fn publish_delayed(
        &self,
        env: &Envelope,
        delay: Duration,
    ) -> Result<(), PublishError> {
        let tier = self.topology.tier_for(delay);
        let mut m = self.task_message(env);
        m.exchange = self.topology.delay_exchange();
        m.routing_key = self.topology.delay_routing_key(tier, &env.queue);
        self.publish_one(m).await
    }

    /// Publish a dead-letter record to `<ns>.dead`.
    pub async fn publish_dead(&self, dead: &DeadLetter) -> Result<(), PublishError> {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-dead-reason".into(),
            AMQPValue::LongString(LongString::from(dead.reason.as_str())),
        );
        let id = dead
            .task_id()
            .map(|u| u.to_string())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.publish_one(Outgoing {
            exchange: self.topology.dead_exchange(),
            routing_key: String::new(),
            id,
            kind: None,
            body: serde_json::to_vec(dead).expect("a dead letter always serializes"),
            headers: Some(headers),
        })
        .await
    }

    /// Publish many tasks keeping up to `window` unconfirmed in flight.
    /// `on_confirmed` is called with the running count of confirmed messages.
    /// Stops at the first failure; messages before it are confirmed.
    pub async fn publish_many<I>(
        &self,
        envs: I,
        mut on_confirmed: impl FnMut(usize),
    ) -> Result<usize, PublishError>
    where
        I: IntoIterator<Item = Envelope>,
    {
        let mut in_flight: VecDeque<(lapin::PublisherConfirm, String, String, String)> =
            VecDeque::with_capacity(self.window);
        let mut confirmed = 0usize;
        for env in envs {
            if in_flight.len() >= self.window {
                let (c, id, x, rk) = in_flight.pop_front().expect("window is not empty");
                Self::settle(c, &id, &x, &rk).await?;
                confirmed += 1;
                on_confirmed(confirmed);
            }
            let m = self.task_message(&env);
            let (id, x, rk) = (m.id.clone(), m.exchange.clone(), m.routing_key.clone());
            let c = self.send(m).await?;
            in_flight.push_back((c, id, x, rk));
        }
        while let Some((c, id, x, rk)) = in_flight.pop_front() {
            Self::settle(c, &id, &x, &rk).await?;
            confirmed += 1;
            on_confirmed(confirmed);
        }
        Ok(confirmed)
    }
}
