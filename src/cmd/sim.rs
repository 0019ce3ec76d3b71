//! `gridwatch sim ...`: hardware simulators.
use anyhow::Result;
use clap::Subcommand;
use gridwatch_mqtt::MqttUrl;
use std::time::Duration;

#[derive(Subcommand)]
pub(crate) enum SimCommand {
    /// Simulated lifts and sterilizers publishing to a gateway's broker until Ctrl-C.
    Fleet(FleetArgs),
    /// Run scenario files (or every *.toml in a directory) through an in-process gateway and
    /// ingest on virtual time, and print the expected against the actual alerts.
    Run(RunArgs),
    /// Load generator: many simulated devices publishing QoS 1 readings to a broker as fast as
    /// application acks allow (or at --rate), with a progress line and a summary.
    Load(LoadArgs),
    /// Simulated lift controllers and dishwashers as Modbus slaves (the layouts of
    /// gateway/maps/), one port each, until Ctrl-C.
    Modbus(ModbusArgs),
}

#[derive(clap::Args)]
pub(crate) struct ModbusArgs {
    #[arg(long, default_value_t = 1)]
    lifts: usize,
    #[arg(long, default_value_t = 1)]
    dishwashers: usize,
    /// First port; the slaves take consecutive ones (lifts first). Port 0: any free ports.
    #[arg(long, default_value = "127.0.0.1:5020")]
    listen: std::net::SocketAddr,
    /// RTU framing over TCP (as behind a serial converter) instead of Modbus TCP.
    #[arg(long)]
    rtu: bool,
    /// Passengers per hour arriving at each lift.
    #[arg(long, default_value_t = 60.0)]
    traffic_per_hour: f64,
    /// Fault of every slave: none, no-answer, slow:MS, exception:CODE or garbage.
    #[arg(long, default_value = "none")]
    fault: gridwatch_simulators::modbus::Fault,
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// Scenario files (TOML, see docs/simulators.md) or directories of them.
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
    /// Exit non-zero when the actual alerts differ from the expected ones.
    #[arg(long)]
    check: bool,
}

#[derive(clap::Args)]
pub(crate) struct FleetArgs {
    /// The gateway's broker, e.g. mqtt://127.0.0.1:1883.
    #[arg(long)]
    mqtt: MqttUrl,
    /// The gateway id the nodes publish under.
    #[arg(long)]
    gateway: String,
    #[arg(long, default_value_t = super::defaults::LIFTS)]
    lifts: usize,
    #[arg(long, default_value_t = super::defaults::STERILIZERS)]
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

pub(crate) async fn run(command: SimCommand) -> Result<()> {
    match command {
        SimCommand::Fleet(args) => fleet(args).await,
        SimCommand::Run(args) => run_scenarios(args).await,
        SimCommand::Load(args) => load(args).await,
        SimCommand::Modbus(args) => modbus(args).await,
    }
}

async fn fleet(args: FleetArgs) -> Result<()> {
    let mut config = gridwatch_simulators::fleet::FleetConfig::demo(&args.gateway, args.mqtt);
    config.lifts = args.lifts;
    config.sterilizers = args.sterilizers;
    config.speed = args.speed;
    config.behind = Duration::from_secs(args.behind_secs);
    config.trap_after = args.trap_after_secs.map(Duration::from_secs);
    let _fleet = gridwatch_simulators::fleet::start(&config)?;
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn modbus(args: ModbusArgs) -> Result<()> {
    use gridwatch_protocol::clock::{Clock, SystemClock};
    use gridwatch_simulators::modbus::{Framing, ModbusSlave, SlaveModel};
    let framing = if args.rtu { Framing::RtuOverTcp } else { Framing::Tcp };
    let now = SystemClock.now_ms();
    let mut slaves = Vec::new();
    for i in 0..args.lifts + args.dishwashers {
        let (name, model) = if i < args.lifts {
            let params = gridwatch_simulators::lift::LiftParams {
                traffic_per_hour: args.traffic_per_hour,
                seed: i as u64 + 1,
                ..Default::default()
            };
            let model = gridwatch_simulators::lift::LiftModel::new(params, now);
            (
                "lift (gateway/maps/lift-lc3000.toml)",
                SlaveModel::Lift(Box::new(model)),
            )
        } else {
            let params =
                gridwatch_simulators::sterilizer::SterilizerParams::for_method(gridwatch_protocol::Method::Dishwasher);
            let mut model = gridwatch_simulators::sterilizer::SterilizerModel::new(params, now);
            model.apply(&gridwatch_simulators::sterilizer::SterilizerEvent::StartCycle {
                hold_s: None,
                setpoint_c: None,
            });
            (
                "dishwasher (gateway/maps/dishwasher-dw500.toml)",
                SlaveModel::Sterilizer(Box::new(model)),
            )
        };
        let mut listen = args.listen;
        if listen.port() != 0 {
            listen.set_port(listen.port() + i as u16);
        }
        let slave = ModbusSlave::start(model, std::sync::Arc::new(SystemClock), listen, framing).await?;
        slave.set_fault(args.fault);
        println!("{name}: {}", slave.addr);
        slaves.push(slave);
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn run_scenarios(args: RunArgs) -> Result<()> {
    use gridwatch_scenario as scenario;
    let mut files = Vec::new();
    for path in &args.files {
        if path.is_dir() {
            files.extend(scenario::files_in(path)?);
        } else {
            files.push(path.clone());
        }
    }
    let mut failed = Vec::new();
    for file in &files {
        let report = scenario::run_file(file).await?;
        print!("{}", report.render());
        if !report.passed() {
            failed.push(report.name.clone());
        }
    }
    if files.len() > 1 {
        println!(
            "{} scenarios, {} passed, {} failed",
            files.len(),
            files.len() - failed.len(),
            failed.len()
        );
    }
    if args.check && !failed.is_empty() {
        eprintln!("alerts differ from the expected ones in: {}", failed.join(", "));
        std::process::exit(1);
    }
    Ok(())
}

#[derive(clap::Args)]
pub(crate) struct LoadArgs {
    /// The broker to load, e.g. mqtt://ID:SECRET@127.0.0.1:1884 (an ingest service's), logged
    /// in as a load identity for --prefix (`gridwatch devices add ID --role load --prefix ld`).
    #[arg(long)]
    mqtt: MqttUrl,
    /// Simulated devices.
    #[arg(long, default_value_t = super::defaults::LOAD_DEVICES)]
    devices: usize,
    /// `direct` (one reading per message, as smart nodes publish) or `gateway` (batches).
    #[arg(long, default_value = "direct", value_parser = ["direct", "gateway"])]
    mode: String,
    /// Readings per second over all devices; without it, as fast as acks allow.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this long (e.g. 30s, 5m, 1h)...
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// ...or after this many readings, whichever comes first.
    #[arg(long)]
    messages: Option<u64>,
    /// Readings per message in gateway mode.
    #[arg(long, default_value_t = super::defaults::LOAD_BATCH)]
    batch: usize,
    /// Connections the devices share (default: one per 1000 devices, at most 1000).
    #[arg(long)]
    connections: Option<usize>,
    /// Readings unacknowledged at once over all connections (default: 36,000 direct,
    /// 60,000 gateway).
    #[arg(long)]
    window: Option<usize>,
    /// Prefix of device and gateway ids.
    #[arg(long, default_value = "ld")]
    prefix: String,
    /// Load one gateway's node broker: every connection speaks for this gateway id
    /// (devices {prefix}000000...), each hearing only its devices' acks; e.g.
    /// --connections 1000 --devices 1000 for a thousand nodes.
    #[arg(long)]
    gateway: Option<String>,
    /// Print the summary as one JSON line (for `gridwatch bench`).
    #[arg(long)]
    json: bool,
}

async fn load(args: LoadArgs) -> Result<()> {
    use gridwatch_simulators::load;
    let mode = if args.mode == "gateway" {
        load::Mode::Gateway
    } else {
        load::Mode::Direct
    };
    let mut config = load::LoadConfig::new(args.mqtt, mode, args.devices);
    if let Some(connections) = args.connections {
        config.connections = connections;
    }
    config.readings = args.messages;
    config.duration = args.duration;
    if config.readings.is_none() && config.duration.is_none() {
        config.duration = Some(Duration::from_secs(60));
    }
    config.rate = args.rate;
    config.batch = args.batch;
    if let Some(window) = args.window {
        config.window = window;
    }
    config.prefix = args.prefix;
    config.gateway = args.gateway;
    config.progress = true;
    let report = load::run(config).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    Ok(())
}

/// `30s`, `5m`, `1h`, `250ms` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, ""), |i| s.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 30s, 5m, 1h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(seconds))
}
