//! Publish/subscribe: in-process broadcast on one node, Redis pub/sub across nodes.
//!
//! Either way a subscriber gets a [`Subscription`] fed by a local broadcast channel; with
//! Redis one subscriber connection per node carries every channel and fans messages out.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use fred::clients::SubscriberClient;
use fred::prelude::*;
use tokio::sync::broadcast;

use super::redis::RedisConn;

/// Messages a slow subscriber may fall behind by before it starts missing some.
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Clone)]
pub enum PubSub {
    Local(LocalPubSub),
    Redis(RedisPubSub),
}

#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
}

/// Messages on one channel, as they arrive.
pub struct Subscription {
    channel: String,
    rx: broadcast::Receiver<Arc<str>>,
}

impl Subscription {
    /// The next message; `None` once the bus is gone. A subscriber that fell behind
    /// skips what it missed (and a warning is logged) rather than stalling publishers.
    pub async fn recv(&mut self) -> Option<Arc<str>> {
        loop {
            match self.rx.recv().await {
                Ok(m) => return Some(m),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(channel = %self.channel, skipped = n, "subscriber fell behind; messages skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl PubSub {
    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), PubSubError> {
        match self {
            PubSub::Local(local) => {
                local.publish(channel, message.into());
                Ok(())
            }
            PubSub::Redis(redis) => redis.publish(channel, message).await,
        }
    }

    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, PubSubError> {
        match self {
            PubSub::Local(local) => Ok(local.subscribe(channel)),
            PubSub::Redis(redis) => redis.subscribe(channel).await,
        }
    }
}

/// Channels within this process.
#[derive(Clone, Default)]
pub struct LocalPubSub {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>>,
}

impl LocalPubSub {
    pub fn publish(&self, channel: &str, message: Arc<str>) {
        let mut channels = self.channels.lock().expect("channel map");
        // A channel nobody listens to any more is forgotten.
        if let Some(tx) = channels.get(channel)
            && tx.send(message).is_err()
        {
            channels.remove(channel);
        }
    }

    pub fn subscribe(&self, channel: &str) -> Subscription {
        let mut channels = self.channels.lock().expect("channel map");
        let tx = channels
            .entry(channel.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0);
        Subscription {
            channel: channel.to_string(),
            rx: tx.subscribe(),
        }
    }
}

/// Channels across every node sharing the Redis server.
#[derive(Clone)]
pub struct RedisPubSub {
    conn: RedisConn,
    subscriber: SubscriberClient,
    local: LocalPubSub,
    subscribed: Arc<tokio::sync::Mutex<HashSet<String>>>,
}

impl RedisPubSub {
    pub fn start(conn: RedisConn) -> Result<Self, fred::error::Error> {
        let subscriber = conn.builder().build_subscriber_client()?;
        subscriber.connect();
        // Subscriptions are renewed after a reconnect.
        subscriber.manage_subscriptions();
        let local = LocalPubSub::default();
        let prefix = conn.prefix().to_string();
        let mut messages = subscriber.message_rx();
        let fan_out = local.clone();
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(m) => {
                        let Some(channel) = m.channel.strip_prefix(prefix.as_str()) else {
                            continue;
                        };
                        if let Some(text) = m.value.as_string() {
                            fan_out.publish(channel, text.into());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "redis pub/sub reader fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Self {
            conn,
            subscriber,
            local,
            subscribed: Arc::default(),
        })
    }

    async fn publish(&self, channel: &str, message: &str) -> Result<(), PubSubError> {
        let _: i64 = self
            .conn
            .quick(self.conn.client().publish(self.conn.key(channel), message))
            .await?;
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, PubSubError> {
        let subscription = self.local.subscribe(channel);
        let mut subscribed = self.subscribed.lock().await;
        if !subscribed.contains(channel) {
            self.subscriber.subscribe(self.conn.key(channel)).await?;
            subscribed.insert(channel.to_string());
        }
        Ok(subscription)
    }

    /// Closes the subscriber connection; shutdown does not wait long on Redis.
    pub async fn quit(&self) {
        let _ = tokio::time::timeout(super::redis::QUIT_TIMEOUT, self.subscriber.quit()).await;
    }
}
