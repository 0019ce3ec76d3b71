//! `gridwatch demo`: ingest, a gateway and a simulated fleet in one process.
use anyhow::{Context, Result, anyhow};
use gridwatch_cases::{Assignment, GridScope, Role};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Address of the HTTP API and dashboard: IP:PORT or HOST:PORT, a host name resolved
    /// at start (port 0 picks a free port).
    #[arg(long, default_value = super::defaults::HTTP)]
    http: super::listen::HostPort,
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
    // Before the start: a signal during it stops the demo once started.
    let mut signals = gridwatch_ingest::StopSignals::new().context("listening for SIGTERM and Ctrl-C")?;
    // Both brokers run with credentials: the gateway and every node get an identity in
    // DATA/credentials.toml, made afresh on each start (only hashes are kept, so the
    // secrets of an earlier run cannot be reused).
    let credentials_path = args.data.join("credentials.toml");
    let mut credentials_file = gridwatch_ingest::CredentialsFile::load_or_empty(&credentials_path)?;
    let gateway_secret = provision(
        &mut credentials_file,
        DEMO_GATEWAY,
        gridwatch_ingest::Role::Gateway,
        None,
    )?;
    credentials_file.save(&credentials_path)?;
    let credentials = std::sync::Arc::new(gridwatch_ingest::Credentials::open(&credentials_path)?);
    let guard = gridwatch_ingest::GuardConfig {
        auth: gridwatch_ingest::MqttAuth::Credentials {
            credentials,
            nodes_of: None,
        },
        ..gridwatch_ingest::GuardConfig::default()
    };
    // The API has users, one per role the closed loop needs, in DATA/users.toml with new
    // tokens on each start (users added there with `gridwatch users add` stay).
    let users_path = args.data.join("users.toml");
    let sign_ins = demo_users(&users_path)?;
    let mut config = gridwatch_ingest::IngestConfig::embedded(&args.data);
    config.http = args.http.resolve("--http").await?;
    config.mqtt_guard = guard.clone();
    config.users = gridwatch_ingest::Users::load(&users_path)?;
    let ingest = gridwatch_ingest::start(config).await.context("starting ingest")?;
    // The sample county register: its due dates raise overdue alerts and cases at once, and
    // the simulated nodes take the registration codes of its first lifts and sterilizers, so
    // their alerts land in real grids and open cases.
    let summary = ingest
        .import_register_csv(SAMPLE_REGISTER)
        .await
        .context("importing the sample register")?;
    let (lift_ids, sterilizer_ids) = registered_ids(&ingest).await;
    let uplink = gridwatch_mqtt::MqttUrl::from(ingest.mqtt_addr).with_login(DEMO_GATEWAY, &gateway_secret);
    let mut gateway_config = gridwatch_gateway::GatewayConfig::new(DEMO_GATEWAY, uplink, args.data.join("gateway"));
    gateway_config.node_guard = guard;
    let gateway = gridwatch_gateway::start(gateway_config)
        .await
        .context("starting gateway")?;
    let mut fleet_config = gridwatch_simulators::fleet::FleetConfig::demo(DEMO_GATEWAY, gateway.node_addr.into());
    fleet_config.lifts = args.lifts;
    fleet_config.sterilizers = args.sterilizers;
    fleet_config.speed = args.speed;
    fleet_config.lift_ids = lift_ids;
    fleet_config.sterilizer_ids = sterilizer_ids;
    let mut credentials_file = gridwatch_ingest::CredentialsFile::load_or_empty(&credentials_path)?;
    for device in fleet_config.device_ids() {
        let secret = provision(
            &mut credentials_file,
            &device,
            gridwatch_ingest::Role::Node,
            Some(DEMO_GATEWAY),
        )?;
        fleet_config.secrets.insert(device, secret);
    }
    // The brokers read the file again at the nodes' first connect.
    credentials_file.save(&credentials_path)?;
    let trapped = fleet_config
        .lift_ids
        .first()
        .cloned()
        .unwrap_or_else(|| "lift-001".into());
    let fleet = gridwatch_simulators::fleet::start(&fleet_config).context("starting the simulated fleet")?;
    println!(
        "dashboard: http://{}/ (sign in with a token below; the API takes it as Authorization: Bearer TOKEN)",
        ingest.http_addr
    );
    println!(
        "API users in {} (tokens are new on every start and shown only here):",
        users_path.display()
    );
    for user in &sign_ins {
        println!(
            "  {:<16} {:<44} curl -H 'Authorization: Bearer {}' http://{}/api/cases",
            user.id, user.what, user.token, ingest.http_addr
        );
    }
    println!(
        "register: {} devices ({} lifts, {} sterilizers) in {} using units",
        summary.devices, summary.lifts, summary.sterilizers, summary.using_units
    );
    println!(
        "running {} lifts and {} sterilizers, catching up from {} s ago at {}x speed; \
         lift {} stops between floors with a passenger after {} s of device time. Ctrl-C (or SIGTERM) stops.",
        args.lifts,
        args.sterilizers,
        fleet_config.behind.as_secs(),
        args.speed,
        trapped,
        fleet_config.trap_after.unwrap_or_default().as_secs()
    );
    let signal = signals.next().await;
    tracing::info!(signal, "stopping");
    let stop = async {
        drop(fleet);
        gateway.stop().await;
        ingest.stop().await;
    };
    gridwatch_ingest::stop_within(gridwatch_ingest::STOP_LIMIT, &mut signals, stop).await?;
    Ok(())
}

const DEMO_GATEWAY: &str = "demo-gw";

/// (Re)provisions `id`, replacing an identity of that id from an earlier run.
fn provision(
    file: &mut gridwatch_ingest::CredentialsFile,
    id: &str,
    role: gridwatch_ingest::Role,
    gateway: Option<&str>,
) -> Result<String> {
    file.identity.retain(|i| i.id != id);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(file.add(id, role, gateway, now_ms)?)
}

/// A demo user, as the demo prints them.
struct SignIn {
    id: &'static str,
    what: String,
    token: String,
}

/// Writes the demo's users into the users file at `path` (made if missing), each with a
/// new token: the grid head of the trapped lift's area, the information officer,
/// inspector and supervisor of its grid, and its maintenance firm's staff. So every
/// step of the closed loop has someone to take it, and the review is not the handler's.
fn demo_users(path: &Path) -> Result<Vec<SignIn>> {
    let register = gridwatch_cases::import_register(SAMPLE_REGISTER)
        .map_err(|errors| anyhow!("the sample register has {} bad rows", errors.len()))?;
    // The lift the fleet traps a passenger in: the register's first lift in use.
    let lift = register
        .devices()
        .find(|d| d.kind == gridwatch_protocol::DeviceKind::Lift && d.status == gridwatch_cases::DeviceStatus::InUse)
        .context("the sample register has no lift in use")?;
    let place = register.placement(lift);
    let grid = GridScope::Grid(place.grid);
    let firm = place
        .firm
        .context("the sample register's first lift has no maintenance firm")?;
    let in_grid = |role| Assignment::Grid { role, scope: grid };
    let users = [
        (
            "demo.head",
            "网格长 (demo)",
            Assignment::Grid {
                role: Role::GridHead,
                scope: place.grid.area_scope(),
            },
            format!("grid head of area {}", place.grid.area_scope()),
        ),
        (
            "demo.officer",
            "网格信息员 (demo)",
            in_grid(Role::InformationOfficer),
            format!("information officer of grid {grid}"),
        ),
        (
            "demo.inspector",
            "网格监管员 (demo)",
            in_grid(Role::Inspector),
            format!("inspector of grid {grid}"),
        ),
        (
            "demo.supervisor",
            "网格监督员 (demo)",
            in_grid(Role::Supervisor),
            format!("supervisor of grid {grid}"),
        ),
        (
            "demo.firm",
            "维保单位 (demo)",
            Assignment::Firm { firm: firm.to_string() },
            format!("maintenance firm {firm}"),
        ),
    ];
    let mut file = gridwatch_ingest::UsersFile::load_or_empty(path)?;
    let mut sign_ins = Vec::new();
    for (id, name, assignment, what) in users {
        let token = file.replace(id, name, vec![assignment])?;
        sign_ins.push(SignIn { id, what, token });
    }
    file.save(path)?;
    Ok(sign_ins)
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
