//! The ingest service: an embedded MQTT broker for gateways and smart nodes,
//! the write path into storage, the alert engine, and the HTTP API/dashboard.
//!
//! Codemap: [`intake`] classifies messages, [`pipeline`] batches, commits and
//! acknowledges, [`store`] is the storage backend, [`alerting`] the rules,
//! [`http`] and [`dashboard`] the web side, [`metrics`] the Prometheus recorder.
pub mod alerting;
pub mod dashboard;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod store;

use anyhow::{Context, Result};
use gridwatch_mqtt::{BrokerConfig, EmbeddedBroker};
use std::net::SocketAddr;
use std::path::Path;
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// HTTP API and dashboard; port 0 picks one.
    pub http: SocketAddr,
    /// The embedded MQTT broker for gateways and direct nodes; port 0 picks one.
    pub mqtt: SocketAddr,
    /// `sqlite://PATH` (the embedded default).
    pub database: String,
    pub pipeline: pipeline::PipelineConfig,
    pub alerts: alerting::AlertConfig,
}

impl IngestConfig {
    /// Embedded defaults: SQLite under `data_dir`, both listeners on loopback port 0.
    pub fn embedded(data_dir: &Path) -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            mqtt: SocketAddr::from(([127, 0, 0, 1], 0)),
            database: format!("sqlite://{}", data_dir.join("gridwatch.db").display()),
            pipeline: pipeline::PipelineConfig::default(),
            alerts: alerting::AlertConfig::default(),
        }
    }
}

/// A running ingest service.
pub struct Ingest {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub store: store::Store,
    tasks: JoinSet<()>,
}

impl Ingest {
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

pub async fn start(config: IngestConfig) -> Result<Ingest> {
    let metrics = metrics::handle();
    let store = store::Store::open(&config.database).await?;
    let broker_config = BrokerConfig {
        listen: config.mqtt,
        ..BrokerConfig::default()
    };
    let mut broker = EmbeddedBroker::start("ingest", &broker_config, &["ingest"])?;
    let (mut link_tx, link_rx) = broker.take_link("ingest")?;
    // Everything: unknown topics are quarantined rather than left unrouted.
    link_tx.subscribe("#")?;

    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http))?;
    let http_addr = listener.local_addr()?;
    let app = http::router(http::AppState {
        store: store.clone(),
        metrics,
    });

    let (queue_tx, queue_rx) = tokio::sync::mpsc::channel(config.pipeline.queue);
    let mut tasks = JoinSet::new();
    tasks.spawn(pipeline::read_broker(link_rx, queue_tx));
    tasks.spawn(pipeline::write(
        config.pipeline.clone(),
        store.clone(),
        link_tx,
        queue_rx,
        alerting::Alerting::new(config.alerts.clone()),
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
        tasks,
    })
}

/// Runs the ingest service until Ctrl-C.
pub async fn run(config: IngestConfig) -> Result<()> {
    let ingest = start(config).await?;
    println!("ingest: http://{}/ mqtt://{}", ingest.http_addr, ingest.mqtt_addr);
    tokio::signal::ctrl_c().await?;
    ingest.stop().await;
    Ok(())
}
