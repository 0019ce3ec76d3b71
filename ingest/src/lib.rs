//! The ingest service: an embedded MQTT broker for gateways and smart nodes, the
//! write path into storage, and the alert engine fed with what was committed; it
//! serves the HTTP side (`gridwatch-web`) beside them.
//!
//! Codemap: [`intake`] classifies messages, [`pipeline`] batches, commits and
//! acknowledges, [`ack_pacing`] and [`node_acks`] decide when a node is acked,
//! [`external`] consumes an external broker.
mod ack_pacing;
mod error;
mod external;
// Public for the storage conformance suite, which drives the pipeline on each backend.
pub mod intake;
mod node_acks;
pub mod pipeline;

pub use error::IngestError;
pub use external::ExternalConfig;
pub use gridwatch_domain::DomainConfig;
pub use gridwatch_web::Users;
pub use pipeline::{BrokerLog, PipelineConfig};

use gridwatch_broker::{BrokerConfig, EmbeddedBroker};
use gridwatch_domain::Alerting;
use gridwatch_protocol::clock::{Clock, SystemClock};
use gridwatch_storage::Store;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

#[derive(Clone)]
pub struct IngestConfig {
    /// HTTP API and dashboard; port 0 picks one.
    pub http: SocketAddr,
    /// The embedded MQTT broker for gateways and direct nodes; port 0 picks one.
    pub mqtt: SocketAddr,
    /// `sqlite://PATH` (the embedded default).
    pub database: String,
    pub pipeline: PipelineConfig,
    /// Also consume this external broker (persistent session, acks after commit).
    pub external: Option<ExternalConfig>,
    /// The embedded broker's in-memory log: its memory bound (see `gridwatch_broker::BrokerConfig`).
    pub broker_log: BrokerLog,
    /// Alert thresholds and case rules.
    pub domain: DomainConfig,
    /// The time the alert engine's time-based rules and case deadlines run on.
    pub clock: Arc<dyn Clock>,
    /// How often (wall time) the time-based rules run.
    pub tick_every: Duration,
    /// How often (wall time) the alert engine's state is checkpointed.
    pub checkpoint_every: Duration,
    /// API users; empty means an open, read-only API.
    pub users: Users,
}

impl IngestConfig {
    /// Embedded defaults: SQLite under `data_dir`, both listeners on loopback port 0.
    pub fn embedded(data_dir: &Path) -> Self {
        let database = format!("sqlite://{}", data_dir.join("gridwatch.db").display());
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            mqtt: SocketAddr::from(([127, 0, 0, 1], 0)),
            pipeline: PipelineConfig::for_database(&database),
            database,
            external: None,
            broker_log: BrokerLog::default(),
            domain: DomainConfig::default(),
            clock: Arc::new(SystemClock),
            tick_every: Duration::from_secs(1),
            checkpoint_every: Duration::from_secs(5),
            users: Users::open(),
        }
    }
}

/// How long a stop waits to write the pending device states.
const STOP_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// The name of ingest's embedded broker: its threads are named after it
/// ([`gridwatch_broker::is_broker_thread`]).
pub const BROKER_NAME: &str = "ingest";

/// A running ingest service.
pub struct Ingest {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub store: Store,
    alerting: Alerting,
    clock: Arc<dyn Clock>,
    tasks: JoinSet<()>,
}

impl Ingest {
    /// Runs the time-based alert rules and case deadlines now, at the configured
    /// clock's time (the background tick does the same every `tick_every`).
    pub async fn tick(&self) {
        self.alerting.tick(self.clock.now_ms()).await;
    }

    /// The domain: alert engine, register and cases.
    pub fn domain(&self) -> &gridwatch_domain::SharedDomain {
        &self.alerting.domain
    }

    /// Replaces the equipment register with the CSV export `csv` (the offices' layout);
    /// refuses the whole file, naming every bad row and column, if any row is bad.
    pub async fn import_register_csv(
        &self,
        csv: &[u8],
    ) -> Result<gridwatch_domain::ImportSummary, gridwatch_domain::RegisterRejected> {
        gridwatch_domain::import_register(&self.alerting, csv, self.clock.now_ms()).await
    }

    /// Stops every task, then checkpoints the alert engine so a restart replays little.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
        // Bounded: a stop must not wait on a busy database for this summary, which
        // the next start recomputes from the readings anyway.
        match tokio::time::timeout(STOP_FLUSH_LIMIT, self.store.flush_states()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "device states not written; the next start recomputes them")
            }
            Err(_) => tracing::warn!(
                limit = ?STOP_FLUSH_LIMIT,
                "device states not written in time; the next start recomputes them"
            ),
        }
        self.alerting.checkpoint(gridwatch_storage::model::now_ms()).await;
    }
}

pub async fn start(config: IngestConfig) -> Result<Ingest, IngestError> {
    let metrics = gridwatch_web::metrics::handle();
    let store = Store::open(&config.database).await?;
    let alerting = gridwatch_domain::load(&store, config.domain.clone())
        .await
        .map_err(IngestError::LoadDomain)?;
    let broker_config = BrokerConfig {
        listen: config.mqtt,
        segment_size: config.broker_log.segment_size,
        segment_count: config.broker_log.segment_count,
        filter_logs: config.broker_log.ack_filter_logs(),
        ..BrokerConfig::default()
    };
    let mut broker = EmbeddedBroker::start(BROKER_NAME, &broker_config, &["ingest"])?;
    let (mut link_tx, link_rx) = broker.take_link("ingest")?;
    // Everything but the node acks ingest publishes itself: unknown topics are
    // quarantined rather than left unrouted.
    for filter in gridwatch_protocol::ALL_BUT_NODE_ACKS {
        link_tx.subscribe(filter)?;
    }

    let bind_http = |source| IngestError::Http {
        addr: config.http,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.http).await.map_err(bind_http)?;
    let http_addr = listener.local_addr().map_err(bind_http)?;
    let app = gridwatch_web::router(gridwatch_web::AppState {
        store: store.clone(),
        metrics,
        alerting: alerting.clone(),
        clock: config.clock.clone(),
        users: Arc::new(config.users.clone()),
    });

    let mut tasks = JoinSet::new();
    let external = config.external.as_ref().map(external::connect);
    let acks = pipeline::Acks {
        embedded: Some(link_tx),
        external: external.as_ref().map(|(client, _)| client.clone()),
    };
    let queue = pipeline::spawn(
        &mut tasks,
        config.pipeline.clone(),
        store.clone(),
        acks,
        alerting.clone(),
    );
    let (undecoded_tx, undecoded_rx) = tokio::sync::mpsc::channel(pipeline::UNDECODED_BACKLOG);
    let budget = pipeline::ByteBudget::new(pipeline::UNDECODED_BYTES);
    tasks.spawn(pipeline::read_broker(link_rx, undecoded_tx, budget));
    tasks.spawn(pipeline::decode_broker(undecoded_rx, queue.clone()));
    if let (Some((client, events)), Some(external_config)) = (external, config.external.clone()) {
        tasks.spawn(external::read(client, events, external_config, queue));
    }
    tasks.spawn(gridwatch_domain::run_ticks(
        alerting.clone(),
        config.clock.clone(),
        config.tick_every,
        config.checkpoint_every,
    ));
    tasks.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    tracing::info!(http = %http_addr, mqtt = %broker.addr, database = %config.database, "ingest started");
    Ok(Ingest {
        http_addr,
        mqtt_addr: broker.addr,
        store,
        alerting,
        clock: config.clock,
        tasks,
    })
}

/// Runs the ingest service until Ctrl-C.
pub async fn run(config: IngestConfig) -> Result<(), IngestError> {
    let ingest = start(config).await?;
    println!("ingest: http://{}/ mqtt://{}", ingest.http_addr, ingest.mqtt_addr);
    tokio::signal::ctrl_c().await.map_err(IngestError::Signal)?;
    ingest.stop().await;
    Ok(())
}
