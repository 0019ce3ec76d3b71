//! `gridwatch ingest`: the ingest service on its own.
use anyhow::Result;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct IngestArgs {
    /// Address of the HTTP API and dashboard (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Address of the embedded MQTT broker that gateways and smart nodes publish to.
    #[arg(long, default_value = "127.0.0.1:1884")]
    mqtt: SocketAddr,
    /// Directory for data; the default database is DATA/gridwatch.db.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Database URL (`sqlite://PATH`); defaults to SQLite under --data.
    #[arg(long, env = "GRIDWATCH_DB")]
    db: Option<String>,
    /// Seconds doors-closed-occupied-stopped before a trapped-passenger alert.
    #[arg(long, default_value_t = 90)]
    trapped_after_secs: u64,
}

pub async fn run(args: IngestArgs) -> Result<()> {
    let mut config = gridwatch_ingest::IngestConfig::embedded(&args.data);
    config.http = args.http;
    config.mqtt = args.mqtt;
    if let Some(db) = args.db {
        config.database = db;
    }
    config.alerts.trapped_after = Duration::from_secs(args.trapped_after_secs);
    gridwatch_ingest::run(config).await
}
