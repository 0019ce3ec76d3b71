//! `gridwatch demo`: ingest, a gateway and a simulated fleet in one process.
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Address of the HTTP API and dashboard (port 0 picks a free port).
    #[arg(long, default_value = super::defaults::HTTP)]
    http: SocketAddr,
    /// Directory for the SQLite database and quarantine files.
    #[arg(long, default_value = super::defaults::DATA_DIR)]
    data: PathBuf,
    /// Number of simulated lifts.
    #[arg(long, default_value_t = super::defaults::LIFTS)]
    lifts: usize,
    /// Number of simulated sterilizers.
    #[arg(long, default_value_t = super::defaults::STERILIZERS)]
    sterilizers: usize,
    /// Simulated device time starts 100 s in the past and runs this many times faster than
    /// wall time until it reaches now (timestamps are never in the future).
    #[arg(long, default_value_t = 4.0)]
    speed: f64,
}

pub(crate) async fn run(args: DemoArgs) -> Result<()> {
    let mut config = gridwatch_ingest::IngestConfig::embedded(&args.data);
    config.http = args.http;
    let ingest = gridwatch_ingest::start(config).await.context("starting ingest")?;
    // The sample county register: its due dates raise overdue alerts and cases at once, and
    // the simulated nodes take the registration codes of its first lifts and sterilizers, so
    // their alerts land in real grids and open cases.
    let summary = ingest
        .import_register_csv(SAMPLE_REGISTER)
        .await
        .context("importing the sample register")?;
    let (lift_ids, sterilizer_ids) = registered_ids(&ingest).await;
    let gateway_config =
        gridwatch_gateway::GatewayConfig::new("demo-gw", ingest.mqtt_addr.into(), args.data.join("gateway"));
    let gateway = gridwatch_gateway::start(gateway_config)
        .await
        .context("starting gateway")?;
    let mut fleet_config = gridwatch_simulators::fleet::FleetConfig::demo("demo-gw", gateway.node_addr.into());
    fleet_config.lifts = args.lifts;
    fleet_config.sterilizers = args.sterilizers;
    fleet_config.speed = args.speed;
    fleet_config.lift_ids = lift_ids;
    fleet_config.sterilizer_ids = sterilizer_ids;
    let trapped = fleet_config
        .lift_ids
        .first()
        .cloned()
        .unwrap_or_else(|| "lift-001".into());
    let fleet = gridwatch_simulators::fleet::start(&fleet_config).context("starting the simulated fleet")?;
    println!("dashboard: http://{}/", ingest.http_addr);
    println!(
        "register: {} devices ({} lifts, {} sterilizers) in {} using units",
        summary.devices, summary.lifts, summary.sterilizers, summary.using_units
    );
    println!(
        "running {} lifts and {} sterilizers, catching up from {} s ago at {}x speed; \
         lift {} stops between floors with a passenger after {} s of device time. Ctrl-C stops.",
        args.lifts,
        args.sterilizers,
        fleet_config.behind.as_secs(),
        args.speed,
        trapped,
        fleet_config.trap_after.unwrap_or_default().as_secs()
    );
    tokio::signal::ctrl_c().await?;
    drop(fleet);
    gateway.stop().await;
    ingest.stop().await;
    Ok(())
}

/// `simulators/data/registry-sample.csv`, the synthetic county register.
const SAMPLE_REGISTER: &[u8] = include_bytes!("../../simulators/data/registry-sample.csv");

/// Registration codes of in-service lifts and sterilizers, in register order.
async fn registered_ids(ingest: &gridwatch_ingest::Ingest) -> (Vec<String>, Vec<String>) {
    let domain = ingest.domain().lock().await;
    let in_service = |kind| {
        domain
            .registry()
            .devices()
            .filter(|d| d.kind == kind && d.status == gridwatch_cases::DeviceStatus::InUse)
            .map(|d| d.id.clone())
            .collect::<Vec<_>>()
    };
    (
        in_service(gridwatch_protocol::DeviceKind::Lift),
        in_service(gridwatch_protocol::DeviceKind::Sterilizer),
    )
}
