//! `gridwatch ingest`: the ingest service on its own.
use anyhow::Result;
use gridwatch_ingest::{BrokerLog, PipelineConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct IngestArgs {
    /// Address of the HTTP API and dashboard: IP:PORT or HOST:PORT, a host name resolved
    /// at start (port 0 picks a free port).
    #[arg(long, default_value = super::defaults::HTTP)]
    http: super::listen::HostPort,
    /// Address of the embedded MQTT broker that gateways and smart nodes publish to.
    #[arg(long, default_value = super::defaults::INGEST_MQTT)]
    mqtt: SocketAddr,
    /// Directory for data; the default database is DATA/gridwatch.db.
    #[arg(long, default_value = super::defaults::DATA_DIR)]
    data: PathBuf,
    /// Database URL: `sqlite://PATH`, or `postgres://user@host/db` (over the Unix socket:
    /// `postgres:///db?host=/var/run/postgresql`); defaults to SQLite under --data.
    #[arg(long, env = "GRIDWATCH_DB")]
    db: Option<String>,
    /// PostgreSQL: `auto` makes readings a TimescaleDB hypertable where the server preloads
    /// TimescaleDB, `on` requires that (a clear error otherwise), `off` keeps native partitions.
    #[arg(long, default_value = "auto")]
    timescale: gridwatch_storage::TimescaleMode,
    /// TimescaleDB's jobs: `auto` runs a job whose scheduled run failed from gridwatch, once per
    /// its interval; `always` runs every job; `never` leaves them to the scheduler (docs/storage.md).
    #[arg(long, default_value = "auto")]
    timescale_jobs: gridwatch_storage::JobRuns,
    /// TOML file with `[alerts]` thresholds and `[cases]` rules and deadlines (docs/alerts.md,
    /// docs/cases.md); every field is optional and defaults as documented.
    #[arg(long)]
    config: Option<PathBuf>,
    /// TOML file of API users with their token digests and roles (`gridwatch users add`,
    /// docs/api.md); re-read when it changes, so users are added and revoked without a
    /// restart. A file without a user is refused. Required unless --open-api.
    #[arg(long, required_unless_present = "open_api")]
    users: Option<PathBuf>,
    /// Run the API without users: anyone who reaches it may read everything, nobody may
    /// change anything. Logs a warning.
    #[arg(long, conflicts_with = "users")]
    open_api: bool,
    #[command(flatten)]
    mqtt_access: super::devices::MqttAccessArgs,
    #[command(flatten)]
    write_path: WritePathArgs,
    /// Delete readings older than this many days of device time, and live feed events
    /// older than this, in small steps, hourly (0: keep every reading) [default: SQLite 90,
    /// PostgreSQL 0, whose partitions or chunks are dropped after 730 days, as is its feed]
    #[arg(long)]
    retention_days: Option<u64>,
    /// Live feed subscribers (GET /api/feed) served at once; one more is answered 503.
    #[arg(long, default_value_t = gridwatch_ingest::FeedConfig::default().max_subscribers)]
    feed_max_subscribers: usize,
    #[command(flatten)]
    webhooks: WebhookArgs,
}

/// Webhook deliveries to maintenance firms (docs/api.md, "Webhooks").
#[derive(clap::Args)]
pub(crate) struct WebhookArgs {
    /// One delivery request's limit, ms.
    #[arg(long, default_value_t = 10_000)]
    webhook_timeout_ms: u64,
    /// Attempts of a delivery before it is parked.
    #[arg(long, default_value_t = gridwatch_ingest::webhooks::Schedule::default().attempts)]
    webhook_attempts: u32,
    /// A delivery failing this many hours after it was queued is parked.
    #[arg(long, default_value_t = 24)]
    webhook_max_age_hours: u64,
    /// The ceiling of the first retry's delay, ms; each next one is 5 times longer, at most an hour.
    #[arg(long, default_value_t = 5_000)]
    webhook_first_retry_ms: u64,
    /// How often the database is looked at for endpoints and feed rows of other processes, ms.
    #[arg(long, default_value_t = 5_000)]
    webhook_poll_ms: u64,
    /// Also deliver to loopback, private and link-local addresses (endpoints on your own
    /// network). Without it a firm's URL can never make the server call into its network.
    #[arg(long)]
    webhooks_allow_private_hosts: bool,
}

impl WebhookArgs {
    fn apply(&self, config: &mut gridwatch_ingest::webhooks::WebhookConfig) {
        use std::time::Duration;
        config.timeout = Duration::from_millis(self.webhook_timeout_ms.max(1));
        config.schedule.attempts = self.webhook_attempts.max(1);
        config.schedule.max_age = Duration::from_secs(self.webhook_max_age_hours * 3600);
        config.schedule.first = Duration::from_millis(self.webhook_first_retry_ms);
        config.poll_every = Duration::from_millis(self.webhook_poll_ms.max(10));
        config.allow_private_hosts = self.webhooks_allow_private_hosts;
    }
}

pub(crate) async fn run(args: IngestArgs) -> Result<()> {
    let mut config = gridwatch_ingest::IngestConfig::embedded(&args.data);
    config.http = args.http.resolve("--http").await?;
    config.mqtt = args.mqtt;
    if let Some(db) = args.db {
        config.database = db;
    }
    config.storage.timescale = args.timescale;
    config.storage.job_runs = args.timescale_jobs;
    if let Some(path) = &args.config {
        config.domain = gridwatch_ingest::DomainConfig::load(path)?;
    }
    config.users = match &args.users {
        Some(path) => gridwatch_ingest::Users::load(path)?,
        None => {
            tracing::warn!(
                "--open-api: the HTTP API has no users; anyone who reaches it may read every device, alert and case"
            );
            gridwatch_ingest::Users::open()
        }
    };
    config.mqtt_guard = args.mqtt_access.guard()?;
    args.write_path.apply(&mut config);
    config.retention = match args.retention_days {
        Some(0) => None,
        Some(days) => Some(gridwatch_storage::retention::Retention::days(days)),
        None => gridwatch_storage::retention::Retention::default_for(&config.database),
    };
    config.feed.max_subscribers = args.feed_max_subscribers;
    args.webhooks.apply(&mut config.webhooks);
    Ok(gridwatch_ingest::run(config).await?)
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The write path: an external broker to consume, and batching.
#[derive(clap::Args)]
pub(crate) struct WritePathArgs {
    /// Also consume this external broker, e.g. mqtt://127.0.0.1:1883 (persistent session,
    /// messages acknowledged after their commit).
    #[arg(long)]
    broker: Option<gridwatch_mqtt::MqttUrl>,
    /// Client id of the session on --broker (keep it stable across restarts).
    #[arg(long, default_value = "gridwatch-ingest")]
    broker_client_id: String,
    /// Topic filters to consume on --broker (repeatable) [default: every gridwatch topic but
    /// the node acks ingest publishes: gw, gw/+, gw/+/+, gw/+/dev/+, gw/+/+/+/+, gw/+/+/+/+/+/#]
    #[arg(long = "broker-filter")]
    broker_filters: Vec<String>,
    /// Commit once this many readings are gathered... (default: PostgreSQL 5000, SQLite
    /// 20,000, whose one writer gains from several readings of a device per commit)
    #[arg(long)]
    batch_max: Option<usize>,
    /// ...or this many ms after the first one arrived, when a commit can start on it; while
    /// every commit slot is busy the batch grows up to --batch-max instead
    #[arg(long, default_value_t = PipelineConfig::default().linger.as_millis() as u64)]
    linger_ms: u64,
    /// Batches committing at once on PostgreSQL (SQLite has one writer: always 1).
    #[arg(long, default_value_t = PipelineConfig::default().commits_in_flight)]
    commits_in_flight: usize,
    /// A node is acked at most once per this many ms (0: after every commit); one sending
    /// faster gets one cumulative ack per interval, not one per batch. Acks are the broker's
    /// other half of the work for one reading per message.
    #[arg(long, default_value_t = PipelineConfig::default().node_ack_interval.as_millis() as u64)]
    node_ack_interval_ms: u64,
    /// Readings stamped more than this many seconds ahead of ingest's clock are quarantined
    /// (`clock_ahead`, see docs/protocol.md).
    #[arg(long, default_value_t = PipelineConfig::default().device_clock.max_ahead().as_secs())]
    max_clock_ahead_s: u64,
    /// The embedded broker's log for ingest's own subscription: segments of this many MiB...
    #[arg(long, default_value_t = BrokerLog::default().segment_size / MIB)]
    broker_log_mib: usize,
    /// ...and this many of them kept (the bound on how far ingest may fall behind the publishers).
    #[arg(long, default_value_t = BrokerLog::default().segment_count)]
    broker_log_segments: usize,
    /// The log of each ack subscription, KiB (see docs/storage.md).
    #[arg(long, default_value_t = BrokerLog::default().ack_log_bytes / KIB)]
    ack_log_kib: usize,
}

impl WritePathArgs {
    fn apply(self, config: &mut gridwatch_ingest::IngestConfig) {
        let defaults = PipelineConfig::for_database(&config.database);
        config.pipeline.batch_max = self.batch_max.unwrap_or(defaults.batch_max);
        config.pipeline.linger = std::time::Duration::from_millis(self.linger_ms);
        config.pipeline.commits_in_flight = self.commits_in_flight;
        config.pipeline.node_ack_interval = std::time::Duration::from_millis(self.node_ack_interval_ms);
        config.pipeline.device_clock = gridwatch_ingest::ClockCheck::new(
            config.clock.clone(),
            std::time::Duration::from_secs(self.max_clock_ahead_s),
        );
        config.broker_log.segment_size = self.broker_log_mib.max(1) * MIB;
        config.broker_log.segment_count = self.broker_log_segments.max(1);
        config.broker_log.ack_log_bytes = self.ack_log_kib.max(1) * KIB;
        if let Some(url) = self.broker {
            let mut external = gridwatch_ingest::ExternalConfig::new(url, &self.broker_client_id);
            if !self.broker_filters.is_empty() {
                external.filters = self.broker_filters;
            }
            config.external = Some(external);
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use gridwatch_storage::{JobRuns, TimescaleMode};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ingest: super::IngestArgs,
    }

    #[test]
    fn timescale_flags_default_to_auto_and_take_each_value() {
        let cli = Cli::try_parse_from(["gridwatch", "--open-api"]).unwrap();
        assert_eq!(
            (cli.ingest.timescale, cli.ingest.timescale_jobs),
            (TimescaleMode::Auto, JobRuns::Auto)
        );
        let cli = Cli::try_parse_from([
            "gridwatch",
            "--open-api",
            "--timescale",
            "off",
            "--timescale-jobs",
            "never",
        ])
        .unwrap();
        assert_eq!(
            (cli.ingest.timescale, cli.ingest.timescale_jobs),
            (TimescaleMode::Off, JobRuns::Never)
        );
        assert!(Cli::try_parse_from(["gridwatch", "--open-api", "--timescale", "maybe"]).is_err());
    }
}
