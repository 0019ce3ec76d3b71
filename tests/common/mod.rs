//! Helpers shared by the end-to-end tests: start the services on port 0 and
//! poll for outcomes with a deadline (never sleep for a fixed time).
#![allow(dead_code)]
pub(crate) mod faults;
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
    connect_client(addr.into(), id).await
}

async fn connect_client(
    url: gridwatch_mqtt::MqttUrl,
    id: &str,
) -> (AsyncClient, mpsc::UnboundedReceiver<rumqttc::Publish>) {
    let options = gridwatch_mqtt::client_options(&url, id);
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
/// only when a test says so, plus a gateway `gw_id` linked to it. Both brokers run
/// with the credentials file `dir/credentials.toml`, where the gateway is provisioned;
/// [`Stack::provision`] adds the identities a test connects as.
pub(crate) struct Stack {
    pub ingest: gridwatch_ingest::Ingest,
    pub gateway: gridwatch_gateway::Gateway,
    pub clock: gridwatch_protocol::clock::ManualClock,
    /// `None` for an open stack ([`start_open_stack`]).
    pub credentials: Option<std::path::PathBuf>,
}

impl Stack {
    /// Adds an identity to the stack's credentials file and returns its secret; the
    /// brokers read the file again at the next connect.
    pub(crate) fn provision(&self, id: &str, role: gridwatch_ingest::Role, gateway: Option<&str>) -> String {
        provision(
            self.credentials.as_ref().expect("a stack with credentials"),
            id,
            role,
            gateway,
        )
    }
}

/// Adds an identity to the credentials file at `path` (created if missing) and returns its secret.
pub(crate) fn provision(
    path: &std::path::Path,
    id: &str,
    role: gridwatch_ingest::Role,
    gateway: Option<&str>,
) -> String {
    let mut file = gridwatch_ingest::CredentialsFile::load_or_empty(path).unwrap();
    let secret = file.add(id, role, gateway, T0).unwrap();
    file.save(path).unwrap();
    secret
}

/// Brokers that take only the identities of the credentials file at `path`.
pub(crate) fn guard_with(path: &std::path::Path) -> gridwatch_ingest::GuardConfig {
    gridwatch_ingest::GuardConfig {
        auth: gridwatch_ingest::MqttAuth::Credentials {
            credentials: std::sync::Arc::new(gridwatch_ingest::Credentials::open(path).unwrap()),
            nodes_of: None,
        },
        reload_every: Duration::from_millis(50),
        ..gridwatch_ingest::GuardConfig::default()
    }
}

pub(crate) async fn start_stack(dir: &std::path::Path, gw_id: &str) -> Stack {
    start_stack_with(dir, gw_id, true).await
}

/// [`start_stack`] with brokers open to anonymous clients and every topic, for tests of
/// what the services do with input that credentials would keep out.
pub(crate) async fn start_open_stack(dir: &std::path::Path, gw_id: &str) -> Stack {
    start_stack_with(dir, gw_id, false).await
}

async fn start_stack_with(dir: &std::path::Path, gw_id: &str, with_credentials: bool) -> Stack {
    let clock = gridwatch_protocol::clock::ManualClock::new(T0);
    let credentials = with_credentials.then(|| dir.join("credentials.toml"));
    let gateway_secret = credentials
        .as_ref()
        .map(|path| provision(path, gw_id, gridwatch_ingest::Role::Gateway, None));
    let guard = credentials.as_deref().map(guard_with).unwrap_or_default();
    let mut config = gridwatch_ingest::IngestConfig::embedded(dir);
    config.clock = std::sync::Arc::new(clock.clone());
    config.tick_every = Duration::from_secs(3600);
    config.mqtt_guard = guard.clone();
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let mut uplink = gridwatch_mqtt::MqttUrl::from(ingest.mqtt_addr);
    if let Some(secret) = &gateway_secret {
        uplink = uplink.with_login(gw_id, secret);
    }
    let mut config = gridwatch_gateway::GatewayConfig::new(gw_id, uplink, dir.join("gateway"));
    config.linger = Duration::from_millis(5);
    config.node_guard = guard;
    let gateway = gridwatch_gateway::start(config).await.unwrap();
    Stack {
        ingest,
        gateway,
        clock,
        credentials,
    }
}

/// [`mqtt_client`] logging in as `id` with `secret`.
pub(crate) async fn mqtt_client_as(
    addr: SocketAddr,
    client_id: &str,
    id: &str,
    secret: &str,
) -> (AsyncClient, mpsc::UnboundedReceiver<rumqttc::Publish>) {
    connect_client(gridwatch_mqtt::MqttUrl::from(addr).with_login(id, secret), client_id).await
}
