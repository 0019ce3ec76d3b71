//! `gridwatch`: one binary, one subcommand per component. Each subcommand parses
//! its options and calls the component crate's `run`.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gridwatch_mqtt::MqttUrl;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "gridwatch",
    version,
    about = "Watches lifts and kitchen sterilizers for market-supervision grids"
)]
struct Cli {
    /// Log format on stderr: `text` or `json`. Verbosity comes from RUST_LOG (default `info`).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process on embedded defaults: ingest (SQLite), a gateway and
    /// simulated lifts and sterilizers. Prints the dashboard URL; one lift traps a passenger
    /// within a minute so there is a real alert to see. Ctrl-C stops it.
    Demo(DemoArgs),
    /// Run the ingest service: embedded MQTT broker, storage, alerts, HTTP API and dashboard.
    Ingest(IngestArgs),
    /// Run an edge gateway: embedded broker for nodes, batched uplink to ingest.
    Gateway(GatewayArgs),
    /// Hardware simulators.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Database administration.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Address of the HTTP API and dashboard (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Directory for the SQLite database and quarantine files.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Number of simulated lifts.
    #[arg(long, default_value_t = 4)]
    lifts: usize,
    /// Number of simulated sterilizers.
    #[arg(long, default_value_t = 2)]
    sterilizers: usize,
    /// Simulated device time starts 100 s in the past and runs this many times faster than
    /// wall time until it reaches now (timestamps are never in the future).
    #[arg(long, default_value_t = 4.0)]
    speed: f64,
}

#[derive(clap::Args)]
struct IngestArgs {
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

#[derive(clap::Args)]
struct GatewayArgs {
    /// Gateway id: the `{gateway}` segment of its topics (A-Z a-z 0-9 - _ ., at most 32).
    #[arg(long)]
    id: String,
    /// The ingest service's broker, e.g. mqtt://127.0.0.1:1884.
    #[arg(long)]
    uplink: MqttUrl,
    /// Address of the embedded broker nodes connect to.
    #[arg(long, default_value = "127.0.0.1:1883")]
    listen: SocketAddr,
    /// Directory for the gateway's quarantine.
    #[arg(long, default_value = "data/gateway")]
    data: PathBuf,
}

#[derive(Subcommand)]
enum SimCommand {
    /// Simulated lifts and sterilizers publishing to a gateway's broker until Ctrl-C.
    Fleet {
        /// The gateway's broker, e.g. mqtt://127.0.0.1:1883.
        #[arg(long)]
        mqtt: MqttUrl,
        /// The gateway id the nodes publish under.
        #[arg(long)]
        gateway: String,
        #[arg(long, default_value_t = 4)]
        lifts: usize,
        #[arg(long, default_value_t = 2)]
        sterilizers: usize,
        /// Device time starts this many seconds in the past...
        #[arg(long, default_value_t = 0)]
        behind_secs: u64,
        /// ...and runs this many times faster than wall time until it reaches now.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Trap a passenger in lift-001 after this many seconds of device time.
        #[arg(long)]
        trap_after_secs: Option<u64>,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Create or upgrade the database schema, then exit.
    Migrate {
        /// Database URL (`sqlite://PATH`).
        #[arg(long, env = "GRIDWATCH_DB", default_value = "sqlite://data/gridwatch.db")]
        db: String,
    },
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rumqttd=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn ingest_config(
    data: &Path,
    http: SocketAddr,
    mqtt: SocketAddr,
    db: Option<String>,
) -> gridwatch_ingest::IngestConfig {
    let mut config = gridwatch_ingest::IngestConfig::embedded(data);
    config.http = http;
    config.mqtt = mqtt;
    if let Some(db) = db {
        config.database = db;
    }
    config
}

async fn demo(args: DemoArgs) -> Result<()> {
    let ingest = gridwatch_ingest::start(ingest_config(
        &args.data,
        args.http,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
    ))
    .await
    .context("starting ingest")?;
    let gateway_config =
        gridwatch_gateway::GatewayConfig::new("demo-gw", ingest.mqtt_addr.into(), args.data.join("gateway"));
    let gateway = gridwatch_gateway::start(gateway_config)
        .await
        .context("starting gateway")?;
    let mut fleet_config = gridwatch_simulators::fleet::FleetConfig::demo("demo-gw", gateway.node_addr.into());
    fleet_config.lifts = args.lifts;
    fleet_config.sterilizers = args.sterilizers;
    fleet_config.speed = args.speed;
    let fleet = gridwatch_simulators::fleet::start(&fleet_config);
    println!("dashboard: http://{}/", ingest.http_addr);
    println!(
        "running {} lifts and {} sterilizers, catching up from {} s ago at {}x speed; \
         lift-001 traps a passenger after {} s of device time. Ctrl-C stops.",
        args.lifts,
        args.sterilizers,
        fleet_config.behind.as_secs(),
        args.speed,
        fleet_config.trap_after.unwrap_or_default().as_secs()
    );
    tokio::signal::ctrl_c().await?;
    drop(fleet);
    gateway.stop().await;
    ingest.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match cli.command {
        Command::Demo(args) => demo(args).await,
        Command::Ingest(args) => {
            let mut config = ingest_config(&args.data, args.http, args.mqtt, args.db);
            config.alerts.trapped_after = Duration::from_secs(args.trapped_after_secs);
            gridwatch_ingest::run(config).await
        }
        Command::Gateway(args) => {
            let mut config = gridwatch_gateway::GatewayConfig::new(&args.id, args.uplink, args.data);
            config.listen = args.listen;
            gridwatch_gateway::run(config).await
        }
        Command::Sim(SimCommand::Fleet {
            mqtt,
            gateway,
            lifts,
            sterilizers,
            behind_secs,
            speed,
            trap_after_secs,
        }) => {
            let mut config = gridwatch_simulators::fleet::FleetConfig::demo(&gateway, mqtt);
            config.lifts = lifts;
            config.sterilizers = sterilizers;
            config.speed = speed;
            config.behind = Duration::from_secs(behind_secs);
            config.trap_after = trap_after_secs.map(Duration::from_secs);
            let _fleet = gridwatch_simulators::fleet::start(&config);
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::Db(DbCommand::Migrate { db }) => {
            gridwatch_ingest::store::Store::open(&db).await?;
            println!("database {db} is migrated");
            Ok(())
        }
    }
}
