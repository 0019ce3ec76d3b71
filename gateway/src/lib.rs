//! The edge gateway: an embedded MQTT broker for the site's nodes, and a
//! store-and-forward uplink that batches their readings to the ingest service.
//!
//! Data path: node → `gw/{id}/dev/{device}/{kind}` on our broker → [`intake`]
//! (decode, validate, quarantine) → [`outbox`] → [`uplink`] (`gw/{id}/batch` on
//! ingest's broker) → `BatchAck` → node acks `gw/{id}/ack/{device}`.
mod intake;
mod outbox;
mod quarantine;
mod uplink;

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
    /// Where nodes connect (the embedded broker); port 0 picks one.
    pub listen: SocketAddr,
    /// The ingest service's broker.
    pub uplink: MqttUrl,
    /// Where the gateway keeps its quarantine.
    pub data_dir: PathBuf,
    pub batch_max: usize,
    pub linger: Duration,
    pub resend_after: Duration,
}

impl GatewayConfig {
    pub fn new(id: &str, uplink: MqttUrl, data_dir: PathBuf) -> Self {
        Self {
            id: id.to_string(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            uplink,
            data_dir,
            batch_max: 500,
            linger: Duration::from_millis(20),
            resend_after: Duration::from_secs(10),
        }
    }
}

/// A running gateway. Dropping it stops its tasks (the embedded broker's threads
/// live until the process ends: rumqttd has no shutdown).
pub struct Gateway {
    /// Where nodes connect.
    pub node_addr: SocketAddr,
    pub quarantine_path: PathBuf,
    outbox: Arc<Mutex<Outbox>>,
    tasks: JoinSet<()>,
}

impl Gateway {
    /// Readings received but not yet committed upstream.
    pub fn unacknowledged(&self) -> usize {
        self.outbox.lock().expect("outbox lock").unacknowledged()
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
    #[error("waiting for Ctrl-C: {0}")]
    Signal(std::io::Error),
}

pub async fn start(config: GatewayConfig) -> Result<Gateway, GatewayError> {
    if !gridwatch_protocol::validate::valid_device_id(&config.id) {
        return Err(GatewayError::BadId(config.id.clone()));
    }
    let broker_config = BrokerConfig {
        listen: config.listen,
        ..BrokerConfig::default()
    };
    let mut broker = EmbeddedBroker::start(&format!("gateway-{}", config.id), &broker_config, &["intake"])?;
    let (mut link_tx, mut link_rx) = broker.take_link("intake")?;
    // Everything but our own acks to nodes, so that a publish under another
    // gateway's or an unknown topic is quarantined with its reason instead of
    // vanishing unrouted.
    for filter in gridwatch_protocol::ALL_BUT_NODE_ACKS {
        link_tx.subscribe(filter)?;
    }

    let quarantine = Arc::new(Quarantine::open(&config.data_dir)?);
    let outbox = Arc::new(Mutex::new(Outbox::default()));
    let wake = Arc::new(Notify::new());
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed_rx) = watch::channel(false);

    let uplink_config = UplinkConfig {
        gateway: config.id.clone(),
        batch_max: config.batch_max,
        linger: config.linger,
        resend_after: config.resend_after,
    };
    let (client, events) =
        rumqttc::AsyncClient::new(client_options(&config.uplink, &format!("gateway-{}", config.id)), 64);

    let mut tasks = JoinSet::new();
    tasks.spawn(uplink::drive(
        uplink_config.clone(),
        client.clone(),
        events,
        outbox.clone(),
        ack_tx.clone(),
        wake.clone(),
        subscribed_tx,
    ));
    tasks.spawn(uplink::forward(
        uplink_config,
        client,
        outbox.clone(),
        wake.clone(),
        subscribed_rx,
    ));
    tasks.spawn(uplink::ack_nodes(config.id.clone(), link_tx, ack_rx));
    {
        let (outbox, quarantine, id) = (outbox.clone(), quarantine.clone(), config.id.clone());
        tasks.spawn(async move {
            while let Some(delivered) = link_rx.next().await {
                let topic = String::from_utf8_lossy(&delivered.topic);
                let outcome = {
                    let mut outbox = outbox.lock().expect("outbox lock");
                    intake::take_in(&id, &topic, &delivered.payload, &mut outbox, &quarantine)
                };
                match outcome {
                    intake::Outcome::Queued => wake.notify_one(),
                    intake::Outcome::Reack { device, seq } => {
                        let _ = ack_tx.send((device, seq));
                    }
                    intake::Outcome::Ignored | intake::Outcome::Rejected => {}
                }
            }
        });
    }
    tracing::info!(gateway = %config.id, nodes = %broker.addr, uplink = %config.uplink, "gateway started");
    Ok(Gateway {
        node_addr: broker.addr,
        quarantine_path: quarantine.path().to_path_buf(),
        outbox,
        tasks,
    })
}

/// Runs a gateway until Ctrl-C.
pub async fn run(config: GatewayConfig) -> Result<(), GatewayError> {
    let gateway = start(config).await?;
    println!("gateway: nodes connect to mqtt://{}", gateway.node_addr);
    tokio::signal::ctrl_c().await.map_err(GatewayError::Signal)?;
    gateway.stop().await;
    Ok(())
}
