//! `gridwatch`: one binary, one subcommand per component. Each subcommand (in
//! [`cmd`]) parses its options and calls the component crate's `start`/`run`.
mod allocator;
mod cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    Demo(cmd::demo::DemoArgs),
    /// Run the ingest service: embedded MQTT broker, storage, alerts, HTTP API and dashboard.
    Ingest(Box<cmd::ingest::IngestArgs>),
    /// Run an edge gateway: embedded broker for nodes, batched uplink to ingest.
    Gateway(Box<cmd::gateway::GatewayArgs>),
    /// MQTT identities of devices, gateways and services: provision, revoke, list.
    #[command(subcommand)]
    Devices(cmd::devices::DevicesCommand),
    /// Users of the HTTP API and their bearer tokens: add, revoke, list.
    #[command(subcommand)]
    Users(cmd::users::UsersCommand),
    /// Webhook endpoints of maintenance firms: add, list, remove.
    #[command(subcommand)]
    Webhooks(cmd::webhooks::WebhooksCommand),
    /// Hardware simulators.
    #[command(subcommand)]
    Sim(cmd::sim::SimCommand),
    /// Database administration.
    #[command(subcommand)]
    Db(cmd::db::DbCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// The equipment register.
    #[command(subcommand)]
    Equipment(cmd::equipment::EquipmentCommand),
}

fn init_logging(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rumqttd=warn".into());
    // Colour only for a person at a terminal: not in files, pipes or journald, nor with NO_COLOR.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> Result<()> {
    // Before the runtime starts its threads.
    allocator::tune();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match cli.command {
        Command::Demo(args) => cmd::demo::run(args).await,
        Command::Ingest(args) => cmd::ingest::run(*args).await,
        Command::Gateway(args) => cmd::gateway::run(*args).await,
        Command::Devices(command) => cmd::devices::run(command).await,
        Command::Users(command) => cmd::users::run(command),
        Command::Webhooks(command) => cmd::webhooks::run(command).await,
        Command::Sim(command) => cmd::sim::run(command).await,
        Command::Db(command) => cmd::db::run(command).await,
        Command::Bench(command) => cmd::bench::run(command).await,
        Command::Equipment(command) => cmd::equipment::run(command).await,
    }
}
