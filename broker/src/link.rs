//! In-process links to the embedded broker: rumqttd's local links behind types
//! of our own, so that no other crate depends on rumqttd.
use crate::{BrokerError, Result};
use bytes::Bytes;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{Packet, Publish};
use rumqttd::{Forward, Notification};
use std::time::Duration;

/// A publish the broker delivered to a local link.
pub struct Delivered {
    pub topic: Bytes,
    pub payload: Bytes,
    /// Where it sits in the log of the filter it matched: consecutive deliveries
    /// of one filter have consecutive offsets unless the broker dropped some.
    pub offset: Option<u64>,
}

impl From<Forward> for Delivered {
    fn from(forward: Forward) -> Self {
        Self {
            topic: forward.publish.topic,
            payload: forward.publish.payload,
            offset: forward.cursor.map(|(_, offset)| offset),
        }
    }
}

/// What the broker delivers to a local link.
pub struct LinkReceiver(LinkRx);

impl LinkReceiver {
    pub(crate) fn new(rx: LinkRx) -> Self {
        Self(rx)
    }

    /// The next publish; `None` once the broker is gone.
    ///
    /// When a link's outgoing buffer fills, rumqttd sends `Unschedule` and stops
    /// delivering to it until the link asks to be scheduled again; a consumer that
    /// ignores it stalls forever after the first burst. This asks at once.
    pub async fn next(&mut self) -> Option<Delivered> {
        loop {
            match self.0.next().await {
                Ok(Some(Notification::Forward(forward))) => return Some(forward.into()),
                Ok(Some(Notification::Unschedule)) => self.0.wake().await.ok()?,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "embedded broker link closed");
                    return None;
                }
            }
        }
    }
}

/// Subscribes and publishes on the broker from inside the process.
pub struct LinkSender(LinkTx);

/// Publishes queued on a link before the router is woken: one wake-up per
/// message costs a channel send each, and the link's buffer keeps the capacity
/// it once reached, so bursts are kept small.
const LINK_CHUNK: usize = 1_000;

impl LinkSender {
    pub(crate) fn new(tx: LinkTx) -> Self {
        Self(tx)
    }

    pub fn subscribe(&mut self, filter: &str) -> Result<()> {
        self.0
            .subscribe(filter)
            .map(drop)
            .map_err(|e| BrokerError::Link(format!("subscribing to {filter}: {e}")))
    }

    pub fn publish(&mut self, topic: impl Into<Bytes>, payload: impl Into<Bytes>) -> Result<()> {
        self.0
            .publish(topic, payload)
            .map(drop)
            .map_err(|e| BrokerError::Link(format!("publishing: {e}")))
    }

    /// Publishes many messages, a chunk per wake-up of the broker's router.
    pub async fn publish_all(&mut self, messages: Vec<(String, Vec<u8>)>) -> Result<()> {
        let mut messages = messages.into_iter().peekable();
        while messages.peek().is_some() {
            while self.0.buffer().len() >= LINK_CHUNK {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut chunk: Vec<(String, Vec<u8>)> = messages.by_ref().take(LINK_CHUNK).collect();
            let Some((last_topic, last_payload)) = chunk.pop() else {
                break;
            };
            {
                let mut buffer = self.0.buffer();
                for (topic, payload) in chunk {
                    buffer.push_back(Packet::Publish(Publish::new(topic.into_bytes(), payload, false), None));
                }
            }
            // The last one notifies the router, which then drains the whole buffer.
            self.publish(last_topic, last_payload)?;
        }
        Ok(())
    }
}
