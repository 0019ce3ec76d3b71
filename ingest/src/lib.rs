//! The ingest service: an embedded MQTT broker for gateways and smart nodes, the
//! write path into storage, and the alert engine fed with what was committed; it
//! serves the HTTP side (`gridwatch-web`) beside them.
//!
//! Codemap: [`intake`] classifies messages, [`pipeline`] batches, commits and
//! acknowledges, [`ack_pacing`] and [`node_acks`] decide when a node is acked,
//! [`external`] consumes an external broker, [`device_clock`] quarantines readings
//! stamped too far ahead of ingest's clock, [`presence`] tells the alert engine
//! gateways' presence, [`firm_feed`] publishes the firms' feed events over MQTT.
mod ack_pacing;
pub mod device_clock;
mod error;
mod external;
mod firm_feed;
// Public for the storage conformance suite, which drives the pipeline on each backend.
pub mod intake;
mod node_acks;
pub mod pipeline;
mod presence;

pub use device_clock::ClockCheck;
pub use error::IngestError;
pub use external::ExternalConfig;
/// Identity and access on the embedded brokers, for the services' callers.
pub use gridwatch_broker::{Auth as MqttAuth, Credentials, CredentialsFile, GuardConfig, Role, TlsFiles};
pub use gridwatch_domain::DomainConfig;
/// API users and the users file, for the commands that manage them.
pub use gridwatch_web::users_file;
pub use gridwatch_web::webhooks;
pub use gridwatch_web::{FeedConfig, HttpLimits, RateLimit, Users, UsersFile};
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
    /// On PostgreSQL: TimescaleDB or not, and who runs its jobs (docs/storage.md).
    pub storage: gridwatch_storage::StoreOptions,
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
    /// API users: [`Users::open`] is an open, read-only API. Users loaded from a file
    /// ([`Users::load`]) follow it: the file is looked at every `users_reload_every`.
    pub users: Users,
    /// How often (wall time) the users file is looked at for changes.
    pub users_reload_every: Duration,
    /// Who may use the embedded broker (credentials or anonymous), TLS and the
    /// connection limits. With credentials, batches are also checked for membership:
    /// a gateway's readings must come from its own provisioned nodes.
    pub mqtt_guard: gridwatch_broker::GuardConfig,
    /// Delete readings and feed rows older than this (device and event time, on `clock`),
    /// in small steps; `None` keeps every reading (`gridwatch ingest --retention-days` sets
    /// it), and on PostgreSQL prunes the feed alone after 730 days
    /// (`Retention::feed_only_for`).
    pub retention: Option<gridwatch_storage::retention::Retention>,
    /// The live feed's limits (`GET /api/feed`).
    pub feed: FeedConfig,
    /// The HTTP server's limits: connections, sizes, timeouts, rates.
    pub http_limits: gridwatch_web::HttpLimits,
    /// Webhook deliveries to maintenance firms: timeouts, concurrency, retry budget.
    pub webhooks: gridwatch_web::webhooks::WebhookConfig,
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
            storage: gridwatch_storage::StoreOptions::default(),
            external: None,
            broker_log: BrokerLog::default(),
            domain: DomainConfig::default(),
            clock: Arc::new(SystemClock),
            tick_every: Duration::from_secs(1),
            checkpoint_every: Duration::from_secs(5),
            users: Users::open(),
            users_reload_every: Duration::from_secs(1),
            mqtt_guard: gridwatch_broker::GuardConfig::default(),
            retention: None,
            feed: FeedConfig::default(),
            http_limits: gridwatch_web::HttpLimits::default(),
            webhooks: gridwatch_web::webhooks::WebhookConfig::default(),
        }
    }
}

/// Decoded deliveries waiting for the membership check.
const MEMBERSHIP_BACKLOG: usize = 1024;

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
    /// The write path's state, as `/healthz/ready` reports it.
    pub health: gridwatch_web::health::Health,
}

impl Ingest {
    /// Runs the time-based alert rules and case deadlines now, at the configured
    /// clock's time (the background tick does the same every `tick_every`).
    pub async fn tick(&self) {
        self.alerting.tick(self.clock.now_ms()).await;
    }

    /// The domain with its saving and the feed's wake-up: what the write path and the API
    /// change it through (benchmarks produce feed events through it).
    pub fn alerting(&self) -> &Alerting {
        &self.alerting
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
        self.health.stopping();
        // Abandons a commit in flight: nothing of it was acknowledged, so its
        // senders still hold and resend it.
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
        match self.alerting.try_checkpoint(gridwatch_storage::model::now_ms()).await {
            Ok(()) => tracing::info!("stopped: alert engine checkpointed"),
            Err(e) => {
                tracing::error!(error = %e, "stopped without the alert engine's checkpoint; the next start replays more")
            }
        }
    }
}

pub async fn start(config: IngestConfig) -> Result<Ingest, IngestError> {
    let metrics = gridwatch_web::metrics::handle();
    let store = Store::open_with(&config.database, &config.storage).await?;
    let alerting = gridwatch_domain::load(&store, config.domain.clone())
        .await
        .map_err(IngestError::LoadDomain)?;
    // Alerts become known on ingest's clock (a case's known_at), virtual in tests.
    alerting.domain.lock().await.set_clock(config.clock.clone());
    let broker_config = BrokerConfig {
        listen: config.mqtt,
        segment_size: config.broker_log.segment_size,
        segment_count: config.broker_log.segment_count,
        filter_logs: config.broker_log.ack_filter_logs(),
        guard: config.mqtt_guard.clone(),
        ..BrokerConfig::default()
    };
    let mut broker = EmbeddedBroker::start(BROKER_NAME, &broker_config, &["ingest", "feed"])?;
    let (mut link_tx, link_rx) = broker.take_link("ingest")?;
    let (feed_tx, feed_rx) = broker.take_link("feed")?;
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
    let health = gridwatch_web::health::Health::new(pipeline::READY_BACKLOG);
    let webhooks = gridwatch_web::webhooks::Webhooks::new();
    let users = Arc::new(config.users.clone());
    let app = gridwatch_web::AppState {
        store: store.clone(),
        metrics,
        alerting: alerting.clone(),
        clock: config.clock.clone(),
        users: users.clone(),
        health: health.clone(),
        feed: gridwatch_web::Feed::new(config.feed.clone()),
        webhooks: webhooks.clone(),
    };

    let mut tasks = JoinSet::new();
    // Users of a file follow it: revoked tokens are refused, new users sign in, no restart.
    tasks.spawn(gridwatch_web::auth::watch(users, config.users_reload_every));
    let external = config.external.as_ref().map(external::connect);
    let acks = pipeline::Acks {
        embedded: Some(link_tx),
        external: external.as_ref().map(|(client, _)| client.clone()),
    };
    let queue = pipeline::spawn_reporting(
        &mut tasks,
        // Device time is checked against ingest's own clock (virtual in tests).
        PipelineConfig {
            device_clock: config.pipeline.device_clock.clone().on(config.clock.clone()),
            ..config.pipeline.clone()
        },
        store.clone(),
        acks,
        alerting.clone(),
        health.clone(),
    );
    let (presence_tx, presence_rx) = tokio::sync::mpsc::channel(presence::PRESENCE_BACKLOG);
    tasks.spawn(presence::feed(presence_rx, alerting.clone(), config.clock.clone()));
    let (undecoded_tx, undecoded_rx) = tokio::sync::mpsc::channel(pipeline::UNDECODED_BACKLOG);
    let budget = pipeline::ByteBudget::new(pipeline::UNDECODED_BYTES);
    tasks.spawn(pipeline::read_broker(link_rx, undecoded_tx, budget, health.clone()));
    match &config.mqtt_guard.auth {
        gridwatch_broker::Auth::Credentials { credentials, .. } => {
            // Between decoding and the pipeline: the membership check of batches.
            let (checked_tx, mut checked_rx) = tokio::sync::mpsc::channel::<pipeline::Delivery>(MEMBERSHIP_BACKLOG);
            tasks.spawn(pipeline::decode_broker(
                undecoded_rx,
                checked_tx,
                presence_tx.clone(),
                health.clone(),
            ));
            let (credentials, queue) = (credentials.clone(), queue.clone());
            tasks.spawn(async move {
                while let Some(mut delivery) = checked_rx.recv().await {
                    if let intake::Source::Batch { gateway, .. } = &delivery.incoming.source {
                        let topic = gridwatch_protocol::Topic::Batch { gateway }.write();
                        intake::check_membership(&mut delivery.incoming, &topic, credentials.as_ref());
                    }
                    if queue.send(delivery).await.is_err() {
                        return;
                    }
                }
            });
        }
        gridwatch_broker::Auth::Anonymous => {
            tasks.spawn(pipeline::decode_broker(
                undecoded_rx,
                queue.clone(),
                presence_tx.clone(),
                health.clone(),
            ));
        }
    }
    if let (Some((client, events)), Some(external_config)) = (external, config.external.clone()) {
        tasks.spawn(external::read(client, events, external_config, queue, presence_tx));
    }
    let retention = config
        .retention
        .or_else(|| gridwatch_storage::retention::Retention::feed_only_for(&store));
    if let Some(retention) = retention {
        let clock = config.clock.clone();
        tasks.spawn(gridwatch_storage::retention::run(store.clone(), retention, move || {
            clock.now_ms() as i64
        }));
    }
    // The firms' feed on feed/firm/{firm} of the embedded broker.
    tasks.spawn(firm_feed::run(store.clone(), alerting.feed(), feed_tx, feed_rx));
    // Firms' webhooks: from the feed table, woken by the domain's commits and the API.
    tasks.spawn(gridwatch_web::webhooks::run(
        store.clone(),
        alerting.feed(),
        config.clock.clone(),
        config.webhooks.clone(),
        webhooks,
    ));
    tasks.spawn(gridwatch_domain::run_ticks(
        alerting.clone(),
        config.clock.clone(),
        config.tick_every,
        config.checkpoint_every,
    ));
    let http_limits = config.http_limits.clone();
    tasks.spawn(async move {
        // Stopped by aborting the task (`Ingest::stop`); a shutdown signal goes in the last argument.
        gridwatch_web::serve(listener, app, http_limits, std::future::pending()).await;
    });
    tracing::info!(http = %http_addr, mqtt = %broker.addr, database = %config.database, "ingest started");
    Ok(Ingest {
        http_addr,
        mqtt_addr: broker.addr,
        store,
        alerting,
        clock: config.clock,
        tasks,
        health,
    })
}

/// Runs the ingest service until SIGTERM or Ctrl-C, then stops within
/// [`STOP_LIMIT`] (see [`stop_within`]); fails if the write path stopped on an
/// error retrying cannot fix.
pub async fn run(config: IngestConfig) -> Result<(), IngestError> {
    // Before the start: a signal during it stops the service once started.
    let mut signals = StopSignals::new().map_err(IngestError::Signal)?;
    let ingest = start(config).await?;
    println!("ingest: http://{}/ mqtt://{}", ingest.http_addr, ingest.mqtt_addr);
    let health = ingest.health.clone();
    let gave_up = tokio::select! {
        signal = signals.next() => {
            tracing::info!(signal, "stopping");
            false
        }
        () = health.given_up() => true,
    };
    stop_within(STOP_LIMIT, &mut signals, ingest.stop()).await?;
    if gave_up {
        return Err(IngestError::WritePathStopped);
    }
    Ok(())
}

/// How long a stop may take before the process gives up on it.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);

/// SIGTERM and SIGINT (Ctrl-C), once registered: from then on they no longer
/// end the process by themselves, [`StopSignals::next`] hears them.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT, by name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Runs `stop` for at most `limit`; a second signal or the limit abandons it
/// (the caller then exits at once, with an error).
pub async fn stop_within(
    limit: Duration,
    signals: &mut StopSignals,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), IngestError> {
    tokio::select! {
        () = stop => Ok(()),
        signal = signals.next() => {
            tracing::warn!(signal, "a second signal: exiting without finishing the stop");
            Err(IngestError::StopAbandoned(signal))
        }
        () = tokio::time::sleep(limit) => {
            tracing::error!(?limit, "the stop took too long: exiting without finishing it");
            Err(IngestError::StopTimedOut(limit))
        }
    }
}
