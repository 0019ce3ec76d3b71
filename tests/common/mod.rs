//! Helpers shared by the end-to-end tests: start the services on port 0 and
//! poll for outcomes with a deadline (never sleep for a fixed time).
#![allow(dead_code)]
use rumqttc::{AsyncClient, Event, EventLoop, Packet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;

pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Some`, or panics after [`DEADLINE`] naming `what`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url)
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// An MQTT client whose incoming publishes arrive on the returned channel; it is
/// connected (ConnAck seen) when this returns.
pub(crate) async fn mqtt_client(
    addr: SocketAddr,
    id: &str,
) -> (AsyncClient, mpsc::UnboundedReceiver<rumqttc::Publish>) {
    let options = gridwatch_mqtt::client_options(&addr.into(), id);
    let (client, events) = AsyncClient::new(options, 1000);
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel();
    let (publish_tx, publish_rx) = mpsc::unbounded_channel();
    tokio::spawn(drive(events, connected_tx, publish_tx));
    tokio::time::timeout(DEADLINE, connected_rx.recv())
        .await
        .expect("MQTT connect timed out");
    (client, publish_rx)
}

async fn drive(
    mut events: EventLoop,
    connected: mpsc::UnboundedSender<()>,
    publishes: mpsc::UnboundedSender<rumqttc::Publish>,
) {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = connected.send(());
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = publishes.send(p);
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Device time at the start of every test: 2025-11-25 09:00:00 UTC.
pub(crate) const T0: u64 = 1_764_061_200_000;

/// Ingest on embedded defaults under `dir`, on a manual clock at [`T0`] that ticks
/// only when a test says so, plus a gateway `gw_id` linked to it.
pub(crate) struct Stack {
    pub ingest: gridwatch_ingest::Ingest,
    pub gateway: gridwatch_gateway::Gateway,
    pub clock: gridwatch_protocol::clock::ManualClock,
}

pub(crate) async fn start_stack(dir: &std::path::Path, gw_id: &str) -> Stack {
    let clock = gridwatch_protocol::clock::ManualClock::new(T0);
    let mut config = gridwatch_ingest::IngestConfig::embedded(dir);
    config.clock = std::sync::Arc::new(clock.clone());
    config.tick_every = Duration::from_secs(3600);
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let mut config = gridwatch_gateway::GatewayConfig::new(gw_id, ingest.mqtt_addr.into(), dir.join("gateway"));
    config.linger = Duration::from_millis(5);
    let gateway = gridwatch_gateway::start(config).await.unwrap();
    Stack { ingest, gateway, clock }
}
