//! The edge gateway: an embedded MQTT broker for the site's nodes, and a
//! store-and-forward uplink that batches their readings to the ingest service.
//!
//! Data path: node → `gw/{id}/dev/{device}/{kind}` on our broker → [`intake`]
//! (decode, validate, quarantine) → [`outbox`] → [`store`] (on disk; then the node ack
//! `gw/{id}/ack/{device}`) → [`uplink`] (`gw/{id}/batch` on ingest's broker) →
//! `BatchAck` → the rows deleted from disk.
mod intake;
pub mod modbus;
mod outbox;
mod quarantine;
mod store;
mod uplink;

pub use outbox::{OutboxBudget, OutboxStats};
pub use store::StoreError;

use gridwatch_broker::{BrokerConfig, EmbeddedBroker};
use gridwatch_mqtt::{MqttUrl, client_options};
use outbox::Outbox;
use quarantine::Quarantine;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use uplink::UplinkConfig;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// This gateway's id: the `{gateway}` segment of its topics.
    pub id: String,
    /// Where nodes connect (the embedded broker, MQTT 3.1.1 and MQTT 5 on this one
    /// port); port 0 picks one.
    pub listen: SocketAddr,
    /// The ingest service's broker.
    pub uplink: MqttUrl,
    /// For an `mqtts://` uplink: the CA that signs ingest's certificate, and optionally
    /// this gateway's client certificate (which then names it instead of a password).
    pub uplink_tls: Option<gridwatch_mqtt::TlsClientFiles>,
    /// Where the gateway keeps its quarantine and its outbox (`outbox.db`).
    pub data_dir: PathBuf,
    /// How much the outbox may hold on disk, and what it refuses beyond (docs/gateway.md).
    pub outbox_budget: OutboxBudget,
    pub batch_max: usize,
    /// Batches sent and not yet acknowledged by ingest, at most.
    pub max_in_flight: usize,
    /// ...of which batches of the backlog: the rest of the window is the live readings'.
    pub replay_in_flight: usize,
    pub linger: Duration,
    pub resend_after: Duration,
    /// How often the gateway announces its presence to ingest while connected
    /// (`gw/{id}/presence`); ingest counts it offline after three missed heartbeats
    /// (`[alerts.offline] gateway_presence_after_s`, 90 s).
    pub heartbeat_every: Duration,
    /// Who may use the embedded broker: with credentials, only this gateway's
    /// provisioned nodes (and services), each on its own topics. The uplink logs in
    /// with the credentials in `uplink` (`mqtt://ID:SECRET@host:port`).
    pub node_guard: gridwatch_broker::GuardConfig,
    /// Controllers without a node that the gateway polls itself (docs/gateway.md).
    pub modbus: modbus::ModbusConfig,
}

impl GatewayConfig {
    pub fn new(id: &str, uplink: MqttUrl, data_dir: PathBuf) -> Self {
        Self {
            id: id.to_string(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            uplink,
            uplink_tls: None,
            data_dir,
            outbox_budget: OutboxBudget::default(),
            batch_max: DEFAULT_BATCH_MAX,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            replay_in_flight: DEFAULT_REPLAY_IN_FLIGHT,
            linger: Duration::from_millis(20),
            resend_after: Duration::from_secs(10),
            heartbeat_every: DEFAULT_HEARTBEAT,
            node_guard: gridwatch_broker::GuardConfig::default(),
            modbus: modbus::ModbusConfig::default(),
        }
    }
}

/// Readings in one batch to ingest, by default.
pub const DEFAULT_BATCH_MAX: usize = 500;
/// Batches unacknowledged by ingest at once, by default...
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// ...of which backlog batches (docs/gateway.md, "Pacing"): 16 replayed 88.6k readings/s
/// where 4 replayed 36.5k (`gridwatch bench gateway`), while a live reading waits behind
/// at most 8,000 backlog readings.
pub const DEFAULT_REPLAY_IN_FLIGHT: usize = 16;

/// The gateway's default presence heartbeat.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// A running gateway. Dropping it stops its tasks (the embedded broker's threads
/// live until the process ends: rumqttd has no shutdown).
pub struct Gateway {
    /// Where nodes connect.
    pub node_addr: SocketAddr,
    pub quarantine_path: PathBuf,
    outbox: Arc<Mutex<Outbox>>,
    tasks: JoinSet<()>,
    /// The mqtts:// bridge of the uplink, stopped with the gateway.
    _uplink_tls: Option<gridwatch_mqtt::TlsBridge>,
    /// The uplink's client and this gateway's presence message, for [`Gateway::announce`].
    uplink: rumqttc::AsyncClient,
    presence: (String, Vec<u8>),
}

impl Gateway {
    /// Publishes a presence heartbeat now, beside the periodic ones: for callers that
    /// run the gateway on a virtual clock (scenario runs), whose heartbeats on wall time
    /// would not keep pace. Skipped, like a heartbeat, when the uplink's queue is full.
    pub fn announce(&self) {
        let (topic, payload) = &self.presence;
        let _ = self
            .uplink
            .try_publish(topic.as_str(), rumqttc::QoS::AtLeastOnce, false, payload.clone());
    }

    /// Readings received but not yet committed upstream.
    pub fn unacknowledged(&self) -> usize {
        self.outbox.lock().expect("outbox lock").unacknowledged()
    }

    pub fn outbox_stats(&self) -> OutboxStats {
        self.outbox.lock().expect("outbox lock").stats()
    }

    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Why a gateway could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway id {0:?} must be 1-32 characters of A-Z a-z 0-9 - _ .")]
    BadId(String),
    #[error("embedded broker: {0}")]
    Broker(#[from] gridwatch_broker::BrokerError),
    #[error("opening the quarantine file {}: {source}", path.display())]
    Quarantine { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Outbox(#[from] StoreError),
    #[error(transparent)]
    Modbus(#[from] modbus::ModbusError),
    #[error("waiting for SIGTERM or Ctrl-C: {0}")]
    Signal(std::io::Error),
    #[error("the uplink is mqtts:// but no CA file says whom to trust (--uplink-ca)")]
    UplinkCaMissing,
    #[error("uplink TLS: {0}")]
    UplinkTls(#[from] gridwatch_mqtt::TlsError),
    #[error("a second signal, or the stop took longer than {STOP_LIMIT:?}: exited without finishing it")]
    StopAbandoned,
}

pub async fn start(config: GatewayConfig) -> Result<Gateway, GatewayError> {
    if !gridwatch_protocol::validate::valid_device_id(&config.id) {
        return Err(GatewayError::BadId(config.id.clone()));
    }
    let mut guard = config.node_guard.clone();
    if let gridwatch_broker::Auth::Credentials { nodes_of, .. } = &mut guard.auth {
        *nodes_of = Some(config.id.clone());
    }
    let broker_config = BrokerConfig {
        listen: config.listen,
        guard,
        ..BrokerConfig::default()
    };
    // The hub, not rumqttd: the nodes' only reader is the intake, in this process, and
    // rumqttd's fixed per-connection queues cost ~150 KiB a node (docs/gateway.md).
    let mut broker = EmbeddedBroker::start_hub(&format!("gateway-{}", config.id), &broker_config, "intake")?;
    let (mut link_tx, mut link_rx) = broker.take_link("intake")?;
    // Everything but our own acks to nodes, so that a publish under another
    // gateway's or an unknown topic is quarantined with its reason instead of
    // vanishing unrouted.
    for filter in gridwatch_protocol::ALL_BUT_NODE_ACKS {
        link_tx.subscribe(filter)?;
    }

    let quarantine = Arc::new(Quarantine::open(&config.data_dir)?);
    let (store, loaded) = store::Store::open(&config.data_dir).await?;
    if loaded.readings > 0 {
        tracing::info!(
            readings = loaded.readings,
            "outbox: sending again what ingest did not acknowledge"
        );
    }
    let pacing = outbox::Pacing {
        batch_max: config.batch_max.max(1),
        max_in_flight: config.max_in_flight.max(1),
        replay_in_flight: config.replay_in_flight.clamp(1, config.max_in_flight.max(1)),
        live_max: config.batch_max.max(1) * config.max_in_flight.max(1),
    };
    let writer = Arc::new(Notify::new());
    let room = Arc::new(Notify::new());
    let outbox = Arc::new(Mutex::new(Outbox::new(
        config.outbox_budget,
        pacing,
        loaded,
        writer.clone(),
    )));
    let wakers = uplink::Wakers::default();
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed_rx) = watch::channel(false);

    let uplink_config = UplinkConfig {
        gateway: config.id.clone(),
        batch_max: config.batch_max,
        linger: config.linger,
        resend_after: config.resend_after,
        heartbeat_every: config.heartbeat_every,
    };
    let client_id = format!("gateway-{}", config.id);
    let (mut options, uplink_tls) = if config.uplink.tls {
        let files = config.uplink_tls.as_ref().ok_or(GatewayError::UplinkCaMissing)?;
        let bridge = gridwatch_mqtt::TlsBridge::start(&config.uplink, gridwatch_mqtt::client_config(files)?)?;
        (bridge.client_options(&config.uplink, &client_id), Some(bridge))
    } else {
        (client_options(&config.uplink, &client_id), None)
    };
    options.set_last_will(uplink::last_will(&config.id));
    let (client, events) = rumqttc::AsyncClient::new(options, 64);
    let announcer = client.clone();

    let mut tasks = JoinSet::new();
    tasks.spawn(uplink::drive(
        uplink_config.clone(),
        client.clone(),
        events,
        outbox.clone(),
        wakers.clone(),
        subscribed_tx,
    ));
    tasks.spawn(store::persist(
        store.clone(),
        outbox.clone(),
        writer,
        wakers.live.clone(),
        ack_tx.clone(),
        room.clone(),
    ));
    tasks.spawn(store::report(store.clone(), outbox.clone(), Duration::from_secs(1)));
    tasks.spawn(uplink::heartbeat(
        uplink_config.clone(),
        client.clone(),
        subscribed_rx.clone(),
    ));
    tasks.spawn(uplink::forward(
        uplink_config,
        client,
        outbox.clone(),
        store,
        wakers,
        subscribed_rx,
    ));
    tasks.spawn(uplink::ack_nodes(config.id.clone(), link_tx, ack_rx));
    {
        let (outbox, quarantine, id) = (outbox.clone(), quarantine.clone(), config.id.clone());
        tasks.spawn(async move {
            while let Some(delivered) = link_rx.next().await {
                // Bounded memory: while the disk catches up, node messages wait in the
                // hub's bounded queue, and then in the nodes (notify_one keeps a wake-up
                // that comes early).
                while outbox.lock().expect("outbox lock").waiting_for_disk() >= outbox::WAITING_MAX {
                    room.notified().await;
                }
                let topic = String::from_utf8_lossy(&delivered.topic);
                let outcome = {
                    let mut outbox = outbox.lock().expect("outbox lock");
                    intake::take_in(&id, &topic, &delivered.payload, &mut outbox, &quarantine)
                };
                // A queued reading wakes the outbox's writer by itself.
                match outcome {
                    intake::Outcome::Reack { device, seq } => {
                        let _ = ack_tx.send((device, seq));
                    }
                    intake::Outcome::Queued | intake::Outcome::Ignored | intake::Outcome::Rejected => {}
                }
            }
        });
    }
    // Polled Modbus devices: their readings enter the outbox like node readings.
    {
        let outbox = outbox.clone();
        let sink = Arc::new(move |reading| {
            outbox.lock().expect("outbox lock").push(reading);
        });
        modbus::spawn(&config.modbus, &config.data_dir, sink, &mut tasks)?;
    }
    tracing::info!(gateway = %config.id, nodes = %broker.addr, uplink = %config.uplink, "gateway started");
    Ok(Gateway {
        node_addr: broker.addr,
        _uplink_tls: uplink_tls,
        uplink: announcer,
        presence: uplink::presence(&config.id, true),
        quarantine_path: quarantine.path().to_path_buf(),
        outbox,
        tasks,
    })
}

/// Runs a gateway until SIGTERM or Ctrl-C, then stops within [`STOP_LIMIT`]; a
/// second signal or the limit abandons the stop with an error. What the outbox
/// holds is not lost: what was acknowledged to a node is on disk and sent after the
/// next start, and the nodes resend what was not.
pub async fn run(config: GatewayConfig) -> Result<(), GatewayError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered before the start: a signal during it stops the gateway once started.
    let mut term = signal(SignalKind::terminate()).map_err(GatewayError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(GatewayError::Signal)?;
    let gateway = start(config).await?;
    println!("gateway: nodes connect to mqtt://{}", gateway.node_addr);
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "stopping"),
    }
    tokio::select! {
        () = gateway.stop() => Ok(()),
        _ = term.recv() => Err(GatewayError::StopAbandoned),
        _ = int.recv() => Err(GatewayError::StopAbandoned),
        () = tokio::time::sleep(STOP_LIMIT) => Err(GatewayError::StopAbandoned),
    }
}

/// How long a stop may take before the process gives up on it.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);
