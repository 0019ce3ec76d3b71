//! `gridwatch sim ...`: hardware simulators.
use anyhow::Result;
use clap::Subcommand;
use gridwatch_mqtt::MqttUrl;
use std::time::Duration;

#[derive(Subcommand)]
pub enum SimCommand {
    /// Simulated lifts and sterilizers publishing to a gateway's broker until Ctrl-C.
    Fleet(FleetArgs),
}

#[derive(clap::Args)]
pub struct FleetArgs {
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
}

pub async fn run(command: SimCommand) -> Result<()> {
    match command {
        SimCommand::Fleet(args) => fleet(args).await,
    }
}

async fn fleet(args: FleetArgs) -> Result<()> {
    let mut config = gridwatch_simulators::fleet::FleetConfig::demo(&args.gateway, args.mqtt);
    config.lifts = args.lifts;
    config.sterilizers = args.sterilizers;
    config.speed = args.speed;
    config.behind = Duration::from_secs(args.behind_secs);
    config.trap_after = args.trap_after_secs.map(Duration::from_secs);
    let _fleet = gridwatch_simulators::fleet::start(&config);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
