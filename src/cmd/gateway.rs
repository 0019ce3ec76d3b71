//! `gridwatch gateway`: an edge gateway on its own.
use anyhow::Result;
use gridwatch_mqtt::MqttUrl;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct GatewayArgs {
    /// The whole gateway from one TOML file (docs/gateway.md, "Configuration file"),
    /// instead of the options below.
    #[arg(long, conflicts_with_all = ["id", "uplink", "modbus", "credentials", "allow_anonymous"])]
    config: Option<PathBuf>,
    /// Gateway id: the `{gateway}` segment of its topics (A-Z a-z 0-9 - _ ., at most 32).
    #[arg(long, required_unless_present = "config")]
    id: Option<String>,
    /// The ingest service's broker with this gateway's login, e.g.
    /// mqtt://gw-01:SECRET@127.0.0.1:1884 (`gridwatch devices add gw-01 --role gateway`).
    /// mqtts://... for TLS (with --uplink-ca).
    #[arg(long, required_unless_present = "config")]
    uplink: Option<MqttUrl>,
    /// mqtts:// uplink: CA certificates (PEM) that sign ingest's broker certificate.
    #[arg(long)]
    uplink_ca: Option<PathBuf>,
    /// mqtts:// uplink: this gateway's client certificate (PEM), whose CN is its id; with
    /// it, the uplink URL needs no secret.
    #[arg(long, requires_all = ["uplink_key", "uplink_ca"])]
    uplink_cert: Option<PathBuf>,
    /// ...and its private key (PEM).
    #[arg(long, requires = "uplink_cert")]
    uplink_key: Option<PathBuf>,
    /// Address of the embedded broker nodes connect to, over MQTT 3.1.1 or MQTT 5 (the
    /// board firmware's) on the same port.
    #[arg(long, default_value = super::defaults::GATEWAY_MQTT)]
    listen: SocketAddr,
    /// Directory for the gateway's quarantine.
    #[arg(long, default_value = super::defaults::GATEWAY_DATA_DIR)]
    data: PathBuf,
    /// Who may use the embedded broker: with --credentials, only this gateway's nodes.
    #[command(flatten)]
    mqtt_access: super::devices::MqttAccessArgs,
    /// A controller to poll over Modbus: DEVICE=MAP@tcp://HOST:PORT, or
    /// DEVICE=MAP@rtu+tcp://HOST:PORT behind an RTU-over-TCP converter; MAP is a
    /// register-map file (gateway/maps/, docs/gateway.md). Repeat for more.
    #[arg(long = "modbus", value_name = "DEVICE=MAP@URL")]
    modbus: Vec<String>,
    /// How often each Modbus device is polled, in ms.
    #[arg(long, default_value_t = 1000)]
    modbus_period_ms: u64,
    /// How long a Modbus request may take before it counts as unanswered, in ms.
    #[arg(long, default_value_t = 500)]
    modbus_timeout_ms: u64,
    /// The outbox's disk budget: readings held until ingest commits them...
    #[arg(long, default_value_t = gridwatch_gateway::OutboxBudget::default().max_readings)]
    outbox_max_readings: u64,
    /// ...and MiB of their JSON; past either, node readings are refused (the node keeps
    /// them) and polled ones dropped, counted (docs/gateway.md).
    #[arg(long, default_value_t = gridwatch_gateway::OutboxBudget::default().max_bytes >> 20)]
    outbox_max_mib: u64,
    /// Readings in one batch to ingest, at most 500: a batch must fit the protocol's 256 KiB
    /// with readings of up to 512 bytes.
    #[arg(long, default_value_t = gridwatch_gateway::DEFAULT_BATCH_MAX,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=gridwatch_gateway::DEFAULT_BATCH_MAX as u64))]
    batch_max: usize,
    /// Batches sent to ingest and not yet acknowledged, at most...
    #[arg(long, default_value_t = gridwatch_gateway::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// ...of which batches of the backlog (docs/gateway.md, "Pacing").
    #[arg(long, default_value_t = gridwatch_gateway::DEFAULT_REPLAY_IN_FLIGHT)]
    replay_in_flight: usize,
}

/// One `--modbus DEVICE=MAP@URL`.
fn modbus_device(
    spec: &str,
    poll: &gridwatch_gateway::modbus::PollConfig,
) -> Result<gridwatch_gateway::modbus::ModbusDevice> {
    use gridwatch_gateway::modbus::{ModbusDevice, map::RegisterMap};
    let expected =
        || anyhow::anyhow!("--modbus {spec:?}: expected DEVICE=MAP@tcp://HOST:PORT or DEVICE=MAP@rtu+tcp://HOST:PORT");
    let (device, rest) = spec.split_once('=').ok_or_else(expected)?;
    let (map, url) = rest.rsplit_once('@').ok_or_else(expected)?;
    let transport = super::gateway_file::transport(url).ok_or_else(expected)?;
    Ok(ModbusDevice {
        device: device.to_string(),
        map: std::sync::Arc::new(RegisterMap::load(std::path::Path::new(map))?),
        transport,
        unit_id: None,
        poll: poll.clone(),
    })
}

pub(crate) async fn run(args: GatewayArgs) -> Result<()> {
    if let Some(path) = &args.config {
        return Ok(gridwatch_gateway::run(super::gateway_file::load(path)?).await?);
    }
    let (Some(id), Some(uplink)) = (args.id, args.uplink) else {
        anyhow::bail!("gridwatch gateway needs --config FILE, or --id and --uplink");
    };
    let mut config = gridwatch_gateway::GatewayConfig::new(&id, uplink, args.data);
    config.outbox_budget = gridwatch_gateway::OutboxBudget {
        max_readings: args.outbox_max_readings,
        max_bytes: args.outbox_max_mib << 20,
    };
    config.listen = args.listen;
    config.batch_max = args.batch_max.max(1);
    config.max_in_flight = args.max_in_flight.max(1);
    config.replay_in_flight = args.replay_in_flight.max(1);
    config.uplink_tls = args.uplink_ca.map(|ca| gridwatch_mqtt::TlsClientFiles {
        ca,
        cert_and_key: args.uplink_cert.zip(args.uplink_key),
    });
    config.node_guard = args.mqtt_access.guard()?;
    let poll = gridwatch_gateway::modbus::PollConfig {
        period: std::time::Duration::from_millis(args.modbus_period_ms.max(1)),
        timeout: std::time::Duration::from_millis(args.modbus_timeout_ms.max(1)),
        ..Default::default()
    };
    for spec in &args.modbus {
        config.modbus.devices.push(modbus_device(spec, &poll)?);
    }
    Ok(gridwatch_gateway::run(config).await?)
}
