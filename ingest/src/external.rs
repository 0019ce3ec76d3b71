//! Consuming an external MQTT broker (e.g. Mosquitto) instead of, or next to,
//! the embedded one: rumqttc on a persistent session (`clean_session = false`)
//! with manual acks, so a message is MQTT-acknowledged only after the
//! transaction holding it committed; until then the broker keeps it and
//! redelivers it after a reconnect (duplicates are harmless, invariant 2).
//!
//! Throughput through an external broker is bounded by its window of
//! unacknowledged QoS 1 messages per subscriber (Mosquitto's
//! `max_inflight_messages`, 20 by default; rumqttd's 100): a batch can hold no
//! more than that. See docs/storage.md.
use crate::pipeline::{Delivery, Via};
use gridwatch_mqtt::MqttUrl;
use rumqttc::{AsyncClient, Event, EventLoop, Packet, Publish, QoS};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct ExternalConfig {
    pub url: MqttUrl,
    /// The session's client id: keep it stable, the broker keeps the session by it.
    pub client_id: String,
    /// Topic filters subscribed at QoS 1, again after every (re)connect.
    pub filters: Vec<String>,
}

impl ExternalConfig {
    /// Everything of the gridwatch topic scheme (`gw/...`) but the node acks
    /// ingest publishes itself; unknown topics under it are quarantined, node
    /// presence and batch acks are ignored, gateway presence goes to the engine.
    pub fn new(url: MqttUrl, client_id: &str) -> Self {
        Self {
            url,
            client_id: client_id.to_string(),
            filters: gridwatch_protocol::GW_BUT_NODE_ACKS.map(String::from).to_vec(),
        }
    }
}

/// Requests (acks, subscriptions, application acks) waiting for the event loop.
/// A commit adds at most two per message of the batch; the broker's window of
/// unacknowledged messages keeps that far below this.
const REQUEST_CAPACITY: usize = 10_000;

/// The client (to acknowledge with) and its event loop (to run with [`read`]).
pub(crate) fn connect(config: &ExternalConfig) -> (AsyncClient, EventLoop) {
    let mut options = gridwatch_mqtt::client_options(&config.url, &config.client_id);
    options.set_clean_session(false);
    options.set_manual_acks(true);
    AsyncClient::new(options, REQUEST_CAPACITY)
}

/// Runs the event loop: subscribes after every ConnAck (a resumed session keeps
/// its subscriptions, a new one has none; subscribing again is harmless), and
/// queues every message for the pipeline. Messages with nothing to store are
/// acknowledged at once.
pub(crate) async fn read(
    client: AsyncClient,
    mut events: EventLoop,
    config: ExternalConfig,
    queue: mpsc::Sender<Delivery>,
    presence: mpsc::Sender<crate::intake::PresenceReport>,
) {
    let mut retry_in = Duration::from_millis(100);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                retry_in = Duration::from_millis(100);
                tracing::info!(broker = %config.url, session_present = connack.session_present, "connected to the external broker");
                metrics::gauge!("gridwatch_ingest_external_connected").set(1.0);
                for filter in &config.filters {
                    if let Err(e) = client.try_subscribe(filter.as_str(), QoS::AtLeastOnce) {
                        tracing::error!(error = %e, %filter, "subscribing on the external broker failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let topic = publish.topic.clone();
                match crate::intake::classify_message(&topic, &publish.payload) {
                    crate::intake::Message::Store(incoming) => {
                        let delivery = Delivery {
                            incoming,
                            via: Via::External(Box::new(ack_handle(&publish))),
                            // An external broker does not say when it drops messages (Mosquitto's
                            // queue limit for an offline session): see docs/storage.md.
                            ack_ceiling: None,
                        };
                        // Blocks when the pipeline is full: back-pressure reaches the
                        // broker, which stops at its window of unacknowledged messages.
                        if queue.send(delivery).await.is_err() {
                            return;
                        }
                    }
                    crate::intake::Message::Presence(report) => {
                        let _ = presence.send(report).await;
                        ack(&client, &ack_handle(&publish));
                    }
                    crate::intake::Message::Ignored => ack(&client, &ack_handle(&publish)),
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics::gauge!("gridwatch_ingest_external_connected").set(0.0);
                tracing::warn!(broker = %config.url, error = %e, retry_in = ?retry_in, "external broker connection lost; reconnecting");
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// What an MQTT ack needs of a publish (its QoS and packet id), without the payload.
fn ack_handle(publish: &Publish) -> Publish {
    let mut handle = Publish::new(publish.topic.as_str(), publish.qos, Vec::new());
    handle.pkid = publish.pkid;
    handle
}

fn ack(client: &AsyncClient, handle: &Publish) {
    if let Err(e) = client.try_ack(handle) {
        // The broker redelivers unacknowledged messages after a reconnect.
        tracing::warn!(error = %e, "could not queue an MQTT ack; the message will come again");
    }
}

/// After a commit: publishes the application acks, then MQTT-acks the external
/// deliveries of the batch.
pub(crate) fn acknowledge<'a>(
    client: &AsyncClient,
    app_acks: Vec<(String, Vec<u8>)>,
    vias: impl Iterator<Item = &'a Via>,
) {
    for (topic, payload) in app_acks {
        if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
            tracing::warn!(error = %e, "could not queue an application ack; the sender will resend");
        }
    }
    for via in vias {
        if let Via::External(handle) = via {
            ack(client, handle);
        }
    }
}
