//! The gateway's link to ingest: sends outbox batches as QoS 1 publishes on
//! `gw/{id}/batch`, receives `BatchAck`s on `gw/{id}/ack`, and passes the
//! resulting per-device acks down to the nodes.
use crate::outbox::Outbox;
use gridwatch_protocol::batch::{Batch, BatchAck, Reading};
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{MAX_MESSAGE_BYTES, NodeAck, SCHEMA_VERSION, Topic};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS, SubscribeReasonCode};
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
}

pub(crate) fn encode_batch(gateway: &str, batch: u64, readings: &[Reading]) -> Vec<u8> {
    let readings = readings
        .iter()
        .map(|r| serde_json::value::to_raw_value(r).expect("readings serialize"))
        .collect();
    json::encode(&Batch {
        v: SCHEMA_VERSION,
        gateway: gateway.to_string(),
        batch,
        readings,
    })
}

/// Sends waiting readings in batches, and resends the unacknowledged ones, but
/// only while `subscribed`: a batch sent before ingest's broker holds our ack
/// subscription could be committed and acked into the void, and would then wait
/// `resend_after` for nothing.
pub(crate) async fn forward(
    config: UplinkConfig,
    client: AsyncClient,
    outbox: Arc<Mutex<Outbox>>,
    wake: Arc<Notify>,
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
            _ = wake.notified() => tokio::time::sleep(config.linger).await,
            _ = resend_check.tick() => {}
        }
        if !*subscribed.borrow() {
            continue; // `drive` wakes us once the subscription is acknowledged
        }
        let mut to_send = Vec::new();
        {
            let now = Instant::now();
            let mut outbox = outbox.lock().expect("outbox lock");
            for (id, readings) in outbox.due_for_resend(config.resend_after, now) {
                metrics::counter!("gridwatch_gateway_batches_resent_total").increment(1);
                to_send.push(encode_batch(&config.gateway, id, &readings));
            }
            while let Some((id, readings)) = outbox.next_batch(config.batch_max, now) {
                to_send.push(encode_batch(&config.gateway, id, readings));
            }
            metrics::gauge!("gridwatch_gateway_outbox_readings").set(outbox.unacknowledged() as f64);
            tracing::debug!(
                waiting = outbox.waiting(),
                unacknowledged = outbox.unacknowledged(),
                batches = to_send.len(),
                "forward pass"
            );
        }
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

/// Drives the MQTT connection: subscribes after every connect (rumqttc does not
/// restore subscriptions by itself), turns batch acks into node acks, and once
/// the subscription is acknowledged, lets `forward` send and asks for every
/// in-flight batch to be resent.
pub(crate) async fn drive(
    config: UplinkConfig,
    client: AsyncClient,
    mut events: EventLoop,
    outbox: Arc<Mutex<Outbox>>,
    node_acks: mpsc::UnboundedSender<(String, u64)>,
    wake: Arc<Notify>,
    subscribed: watch::Sender<bool>,
) {
    let ack_topic = Topic::BatchAck {
        gateway: &config.gateway,
    }
    .write()
    .to_string();
    let mut backoff = Duration::from_millis(100);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                subscribed.send_replace(false);
                tracing::info!(gateway = %config.gateway, "uplink connected");
                metrics::gauge!("gridwatch_gateway_uplink_connected").set(1.0);
                // Not awaited here: this task drives the event loop that drains the request
                // queue, and the queue may be full of batches waiting for this very connection.
                let (client, topic) = (client.clone(), ack_topic.clone());
                tokio::spawn(async move { client.subscribe(topic, QoS::AtLeastOnce).await });
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
                outbox.lock().expect("outbox lock").mark_all_for_resend();
                subscribed.send_replace(true);
                wake.notify_one();
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                match json::decode::<BatchAck>(&p.payload, MAX_MESSAGE_BYTES) {
                    Ok(ack) => {
                        tracing::debug!(batch = ack.batch, stored = ack.stored, "batch acknowledged");
                        let acks = outbox.lock().expect("outbox lock").ack(ack.batch);
                        for a in acks {
                            let _ = node_acks.send(a);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable batch ack"),
                }
            }
            Ok(_) => {}
            Err(e) => {
                subscribed.send_replace(false);
                metrics::gauge!("gridwatch_gateway_uplink_connected").set(0.0);
                tracing::warn!(error = %e, retry_in = ?backoff, "uplink connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
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
