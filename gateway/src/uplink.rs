//! The gateway's link to ingest: sends outbox batches as QoS 1 publishes on
//! `gw/{id}/batch` and receives `BatchAck`s on `gw/{id}/ack`; publishes the node acks
//! the outbox's writer hands it. It announces the gateway on
//! `gw/{id}/presence`: a birth after every connect, a heartbeat every
//! `heartbeat_every`, and `offline` as its last will, so that ingest can tell a
//! dead gateway from a quiet node.
use crate::outbox::Outbox;
use crate::store::Store;
use gridwatch_protocol::batch::{Batch, BatchAck};
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{GatewayPresence, MAX_MESSAGE_BYTES, NodeAck, SCHEMA_VERSION, Topic};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, Packet, QoS, SubscribeReasonCode};
use serde_json::value::RawValue;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};

#[derive(Debug, Clone)]
pub(crate) struct UplinkConfig {
    pub gateway: String,
    /// Most readings in one batch.
    pub batch_max: usize,
    /// How long to wait for a batch to fill once a reading is waiting.
    pub linger: Duration,
    /// Send a batch again when its ack has not come within this time.
    pub resend_after: Duration,
    /// How often to announce presence while connected.
    pub heartbeat_every: Duration,
}

/// The gateway's presence message: topic and payload.
pub(crate) fn presence(gateway: &str, online: bool) -> (String, Vec<u8>) {
    let topic = Topic::GatewayPresence { gateway }.write().to_string();
    // The id was validated at start.
    let id = gridwatch_protocol::DeviceId::try_from(gateway).unwrap_or_default();
    (topic, json::encode(&GatewayPresence::new(id, online)))
}

/// `offline` on the presence topic, for the broker to publish when the connection
/// dies without a DISCONNECT. Not retained: the brokers refuse to keep anything.
pub(crate) fn last_will(gateway: &str) -> LastWill {
    let (topic, payload) = presence(gateway, false);
    LastWill::new(topic, payload, QoS::AtLeastOnce, false)
}

/// Announces the gateway every `heartbeat_every` while connected (the birth after each
/// connect is `drive`'s). A heartbeat that finds the request queue full is skipped:
/// the batches in it will show ingest the gateway is alive.
pub(crate) async fn heartbeat(config: UplinkConfig, client: AsyncClient, subscribed: watch::Receiver<bool>) {
    let (topic, payload) = presence(&config.gateway, true);
    // An interval of zero would panic; a heartbeat per millisecond is already absurd.
    let mut every = tokio::time::interval(config.heartbeat_every.max(Duration::from_millis(1)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is immediate; the birth covers it
    loop {
        every.tick().await;
        if !*subscribed.borrow() {
            continue; // not connected: the next connect sends a birth
        }
        match client.try_publish(topic.as_str(), QoS::AtLeastOnce, false, payload.clone()) {
            Ok(()) => tracing::debug!(gateway = %config.gateway, "heartbeat"),
            Err(rumqttc::ClientError::TryRequest(_)) => tracing::debug!("request queue full: heartbeat skipped"),
            Err(_) => return, // the event loop has stopped: shutting down
        }
    }
}

pub(crate) fn encode_batch(gateway: &str, batch: u64, readings: &[Box<RawValue>]) -> Vec<u8> {
    let readings = readings.to_vec();
    json::encode(&Batch {
        v: SCHEMA_VERSION,
        gateway: gateway.to_string(),
        batch,
        readings,
    })
}

/// Sends live readings in batches, then the backlog read back from disk, and resends
/// the unacknowledged batches, but only while `subscribed`: a batch sent before
/// ingest's broker holds our ack subscription could be committed and acked into the
/// void, and would then wait `resend_after` for nothing. `wake` (new live rows) waits a
/// `linger` for more to join them; `acked` (a window slot freed) sends at once.
pub(crate) async fn forward(
    config: UplinkConfig,
    client: AsyncClient,
    outbox: Arc<Mutex<Outbox>>,
    store: Store,
    wakers: Wakers,
    subscribed: watch::Receiver<bool>,
) {
    let topic = Topic::Batch {
        gateway: &config.gateway,
    }
    .write()
    .to_string();
    let mut resend_check = tokio::time::interval(config.resend_after / 4);
    loop {
        tokio::select! {
            _ = wakers.live.notified() => tokio::time::sleep(config.linger).await,
            _ = wakers.acked.notified() => {}
            _ = resend_check.tick() => {}
        }
        if !*subscribed.borrow() {
            continue; // `drive` wakes us once the subscription is acknowledged
        }
        let mut to_send = Vec::new();
        let now = Instant::now();
        {
            let mut outbox = outbox.lock().expect("outbox lock");
            for (id, readings) in outbox.due_for_resend(config.resend_after, now) {
                metrics::counter!("gridwatch_gateway_batches_resent_total").increment(1);
                to_send.push(encode_batch(&config.gateway, id, &readings));
            }
            while let Some((id, readings)) = outbox.next_live_batch(now) {
                to_send.push(encode_batch(&config.gateway, id, readings));
            }
        }
        // The backlog, in the window live batches leave.
        loop {
            let Some(wanted) = outbox.lock().expect("outbox lock").replay_wanted() else {
                break;
            };
            let rows = match store.read(wanted.clone(), config.batch_max).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "reading the outbox backlog");
                    break;
                }
            };
            let mut outbox = outbox.lock().expect("outbox lock");
            if let Some((id, readings)) = outbox.replay_batch(wanted, rows, now) {
                metrics::counter!("gridwatch_gateway_batches_replayed_total").increment(1);
                to_send.push(encode_batch(&config.gateway, id, readings));
            }
        }
        tracing::debug!(batches = to_send.len(), "forward pass");
        for payload in to_send {
            metrics::counter!("gridwatch_gateway_batches_sent_total").increment(1);
            tracing::debug!(bytes = payload.len(), "sending batch");
            // The request channel is bounded: this waits while the connection is down.
            if client
                .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                return; // the event loop has stopped: shutting down
            }
        }
    }
}

/// What wakes `forward`: rows new in the live queue, and acks that free the window.
#[derive(Clone, Default)]
pub(crate) struct Wakers {
    pub(crate) live: Arc<Notify>,
    pub(crate) acked: Arc<Notify>,
}

/// The uplink's reconnect back-off doubles from the first to the last. The cap is what
/// a returning ingest waits for the backlog at most: with 10 s, 5 of a 14 s replay
/// into SQLite went to waiting (docs/benchmarks.md, "Replay"); one connection attempt
/// every 2 s per gateway costs a down ingest nothing.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Drives the MQTT connection: subscribes and announces the gateway's birth after
/// every connect (rumqttc restores neither by itself), releases the batches ingest
/// acknowledges (their rows are then deleted from disk), and once the subscription is
/// acknowledged, lets `forward` send and asks for every in-flight batch to be resent.
pub(crate) async fn drive(
    config: UplinkConfig,
    client: AsyncClient,
    mut events: EventLoop,
    outbox: Arc<Mutex<Outbox>>,
    wakers: Wakers,
    subscribed: watch::Sender<bool>,
) {
    let ack_topic = Topic::BatchAck {
        gateway: &config.gateway,
    }
    .write()
    .to_string();
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = RECONNECT_BACKOFF_MIN;
                subscribed.send_replace(false);
                tracing::info!(gateway = %config.gateway, "uplink connected");
                metrics::gauge!("gridwatch_gateway_uplink_connected").set(1.0);
                // Not awaited here: this task drives the event loop that drains the request
                // queue, and the queue may be full of batches waiting for this very connection.
                let (client, topic) = (client.clone(), ack_topic.clone());
                let (presence_topic, birth) = presence(&config.gateway, true);
                tokio::spawn(async move {
                    client.subscribe(topic, QoS::AtLeastOnce).await?;
                    client.publish(presence_topic, QoS::AtLeastOnce, false, birth).await
                });
            }
            // The uplink subscribes to nothing else, so any SubAck is the ack topic's.
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                if suback
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    // Readings still flow and are stored; they are resent until acked.
                    tracing::error!(gateway = %config.gateway, topic = %ack_topic, "ingest's broker refused the batch-ack subscription");
                    metrics::counter!("gridwatch_gateway_ack_subscription_refused_total").increment(1);
                }
                {
                    let mut outbox = outbox.lock().expect("outbox lock");
                    outbox.mark_all_for_resend();
                    outbox.set_uplink(true);
                }
                subscribed.send_replace(true);
                wakers.acked.notify_one();
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                match json::decode::<BatchAck>(&p.payload, MAX_MESSAGE_BYTES) {
                    Ok(ack) => {
                        tracing::debug!(batch = ack.batch, stored = ack.stored, "batch acknowledged");
                        if outbox.lock().expect("outbox lock").ack(ack.batch) {
                            wakers.acked.notify_one();
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable batch ack"),
                }
            }
            Ok(_) => {}
            Err(e) => {
                subscribed.send_replace(false);
                outbox.lock().expect("outbox lock").set_uplink(false);
                metrics::gauge!("gridwatch_gateway_uplink_connected").set(0.0);
                tracing::warn!(error = %e, retry_in = ?backoff, "uplink connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
            }
        }
    }
}

/// Publishes node acks on the gateway's broker.
pub(crate) async fn ack_nodes(
    gateway: String,
    mut link: gridwatch_broker::LinkSender,
    mut acks: mpsc::UnboundedReceiver<(String, u64)>,
) {
    while let Some((device, seq)) = acks.recv().await {
        let topic = Topic::NodeAck {
            gateway: &gateway,
            device: &device,
        }
        .write();
        let Ok(device) = gridwatch_protocol::DeviceId::try_from(device.as_str()) else {
            continue;
        };
        let ack = NodeAck {
            v: SCHEMA_VERSION,
            device,
            seq,
        };
        if link.publish(topic.to_string(), json::encode(&ack)).is_err() {
            return;
        }
    }
}
