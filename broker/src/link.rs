//! In-process links to the embedded broker: rumqttd's local links behind types
//! of our own, so that no other crate depends on rumqttd.
use crate::hub::Hub;
use crate::{BrokerError, Result};
use bytes::Bytes;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{Filter, Packet, Publish, QoS, RetainForwardRule, Subscribe, SubscribeProperties};
use rumqttd::{Forward, Notification};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::mpsc;

/// A publish the broker delivered to a local link.
pub struct Delivered {
    pub topic: Bytes,
    pub payload: Bytes,
    /// Where it sits in the log of the filter it matched: consecutive deliveries
    /// of one filter have consecutive offsets unless the broker dropped some.
    /// Every filter has a log of its own, so offsets compare only within one
    /// [`Delivered::subscription`].
    pub offset: Option<u64>,
    /// Which subscription of the link it matched: the 1-based number of its
    /// [`LinkSender::subscribe`] call, in order.
    pub subscription: Option<usize>,
}

impl From<Forward> for Delivered {
    fn from(forward: Forward) -> Self {
        let subscription = forward
            .properties
            .as_ref()
            .and_then(|p| p.subscription_identifiers.first().copied());
        Self {
            topic: forward.publish.topic,
            payload: forward.publish.payload,
            offset: forward.cursor.map(|(_, offset)| offset),
            subscription,
        }
    }
}

/// What the broker delivers to a local link.
pub struct LinkReceiver(Receiver);

enum Receiver {
    Rumqttd(LinkRx),
    Hub(mpsc::Receiver<Delivered>),
}

impl LinkReceiver {
    pub(crate) fn new(rx: LinkRx) -> Self {
        Self(Receiver::Rumqttd(rx))
    }

    pub(crate) fn hub(rx: mpsc::Receiver<Delivered>) -> Self {
        Self(Receiver::Hub(rx))
    }

    /// The next publish; `None` once the broker is gone.
    ///
    /// When a link's outgoing buffer fills, rumqttd sends `Unschedule` and stops
    /// delivering to it until the link asks to be scheduled again; a consumer that
    /// ignores it stalls forever after the first burst. This asks at once.
    pub async fn next(&mut self) -> Option<Delivered> {
        let rx = match &mut self.0 {
            Receiver::Rumqttd(rx) => rx,
            Receiver::Hub(rx) => return rx.recv().await,
        };
        loop {
            match rx.next().await {
                Ok(Some(Notification::Forward(forward))) => return Some(forward.into()),
                Ok(Some(Notification::Unschedule)) => rx.wake().await.ok()?,
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
pub struct LinkSender(Sender);

enum Sender {
    /// rumqttd's link and the number of subscriptions made on it.
    Rumqttd(LinkTx, usize),
    Hub(Arc<Hub>),
}

/// Publishes queued on a link before the router is woken: one wake-up per
/// message costs a channel send each, and the link's buffer keeps the capacity
/// it once reached, so bursts are kept small.
const LINK_CHUNK: usize = 1_000;

impl LinkSender {
    pub(crate) fn new(tx: LinkTx) -> Self {
        Self(Sender::Rumqttd(tx, 0))
    }

    pub(crate) fn hub(hub: Arc<Hub>) -> Self {
        Self(Sender::Hub(hub))
    }

    /// Subscribes to `filter`; what it delivers carries the number of this call
    /// (1 for the first) as [`Delivered::subscription`], an MQTT 5 subscription
    /// identifier. On a hub, deliveries carry no subscription number.
    pub fn subscribe(&mut self, filter: &str) -> Result<()> {
        let (tx, subscriptions) = match &mut self.0 {
            Sender::Rumqttd(tx, subscriptions) => (tx, subscriptions),
            Sender::Hub(hub) => {
                hub.link_subscribe(filter);
                return Ok(());
            }
        };
        *subscriptions += 1;
        let subscribe = Subscribe {
            pkid: 0,
            filters: vec![Filter {
                path: filter.to_string(),
                qos: QoS::AtMostOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: RetainForwardRule::Never,
            }],
        };
        let properties = SubscribeProperties {
            id: Some(*subscriptions),
            user_properties: Vec::new(),
        };
        // rumqttd's `send` is async in name only (it queues and notifies without
        // awaiting), and its `subscribe` takes no properties: polled once, it is done.
        let sent = std::pin::pin!(tx.send(Packet::Subscribe(subscribe, Some(properties))))
            .poll(&mut Context::from_waker(Waker::noop()));
        match sent {
            Poll::Ready(Ok(_)) => Ok(()),
            Poll::Ready(Err(e)) => Err(BrokerError::Link(format!("subscribing to {filter}: {e}"))),
            Poll::Pending => Err(BrokerError::Link(format!(
                "subscribing to {filter}: the router did not take it"
            ))),
        }
    }

    pub fn publish(&mut self, topic: impl Into<Bytes>, payload: impl Into<Bytes>) -> Result<()> {
        let tx = match &mut self.0 {
            Sender::Rumqttd(tx, _) => tx,
            Sender::Hub(hub) => {
                let topic: Bytes = topic.into();
                hub.publish(&String::from_utf8_lossy(&topic), payload.into());
                return Ok(());
            }
        };
        tx.publish(topic, payload)
            .map(drop)
            .map_err(|e| BrokerError::Link(format!("publishing: {e}")))
    }

    /// Publishes many messages, a chunk per wake-up of the broker's router.
    pub async fn publish_all(&mut self, messages: Vec<(String, Vec<u8>)>) -> Result<()> {
        if let Sender::Hub(hub) = &self.0 {
            for (topic, payload) in messages {
                hub.publish(&topic, payload.into());
            }
            return Ok(());
        }
        let mut messages = messages.into_iter().peekable();
        while messages.peek().is_some() {
            while self.buffer_len() >= LINK_CHUNK {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut chunk: Vec<(String, Vec<u8>)> = messages.by_ref().take(LINK_CHUNK).collect();
            let Some((last_topic, last_payload)) = chunk.pop() else {
                break;
            };
            if let Sender::Rumqttd(tx, _) = &self.0 {
                let mut buffer = tx.buffer();
                for (topic, payload) in chunk {
                    buffer.push_back(Packet::Publish(Publish::new(topic.into_bytes(), payload, false), None));
                }
            }
            // The last one notifies the router, which then drains the whole buffer.
            self.publish(last_topic, last_payload)?;
        }
        Ok(())
    }

    fn buffer_len(&self) -> usize {
        match &self.0 {
            Sender::Rumqttd(tx, _) => tx.buffer().len(),
            Sender::Hub(_) => 0,
        }
    }
}
