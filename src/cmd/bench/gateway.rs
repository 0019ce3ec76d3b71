//! `gridwatch bench gateway`: a gateway process under load, end to end (docs/benchmarks.md,
//! "Gateway"). Nodes (`gridwatch sim load --gateway`, its own process, one connection a
//! node) → `gridwatch gateway` (its own process) → `gridwatch ingest` (its own process) →
//! the database, while the gateway polls simulated Modbus TCP slaves (tokio-modbus
//! servers in this process, real sockets). Two phases:
//!
//! 1. **live**: the load through the whole chain; readings/s to the gateway's acks and
//!    until all are stored, the gateway's peak RSS (VmHWM), and the polls the slaves
//!    saw: polls/s and each poll's lateness against its slot on the poll grid;
//! 2. **replay**: ingest killed, a second load written into the gateway's outbox only,
//!    then ingest started again on the same address: readings/s from that start until
//!    every backlog reading is stored.
//!
//! Every reading is then checked in the table: lost = sent − distinct, duplicated =
//! rows − distinct.
use super::polls;
use super::procfs::{cpu_seconds, peak_rss_kib};
use super::{Databases, describe, now_ms, spawn_reporting_mqtt, start_ingest};
use anyhow::{Context, Result, bail};
use gridwatch_protocol::clock::{Clock, SystemClock};
use gridwatch_simulators::lift::{LiftModel, LiftParams};
use gridwatch_simulators::load::LoadReport;
use gridwatch_simulators::modbus::{Framing, ModbusSlave, SlaveModel};
use gridwatch_storage::Store;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(clap::Args)]
pub(crate) struct GatewayBenchArgs {
    /// A PostgreSQL server URL (a fresh database is created and dropped), or `sqlite`.
    #[arg(long, default_value = "postgres:///postgres?host=/var/run/postgresql&user=postgres")]
    db: String,
    /// Nodes, each its own MQTT connection to the gateway.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Readings the nodes send in the live phase.
    #[arg(long, default_value_t = 500_000)]
    messages: u64,
    /// Readings per second over all nodes in the live phase (default: as fast as acks allow).
    #[arg(long)]
    rate: Option<f64>,
    /// Readings the nodes send with ingest down, replayed from the outbox (0: no replay phase).
    #[arg(long, default_value_t = 500_000)]
    replay: u64,
    /// Simulated Modbus TCP lift controllers the gateway polls.
    #[arg(long, default_value_t = 200)]
    slaves: usize,
    #[arg(long, default_value_t = 1000)]
    modbus_period_ms: u64,
    /// The live phase lasts at least this long, for the poll figures.
    #[arg(long, default_value_t = 30)]
    min_seconds: u64,
    /// Readings the nodes may have unacknowledged at once (default: the load's).
    #[arg(long)]
    window: Option<usize>,
    /// Extra arguments for the gateway process, e.g. --gateway-arg=--replay-in-flight=8.
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    gateway_args: Vec<String>,
    /// Keep the database (or SQLite files).
    #[arg(long)]
    keep: bool,
}

const GATEWAY_ID: &str = "bench-gw";
const LOAD_IDENTITY: &str = "bench-nodes";
/// Device ids of the live phase's nodes, the replay's and the polled slaves': all
/// start with the load identity's prefix `ld`.
const LIVE: &str = "ldl";
const REPLAY: &str = "ldr";
const POLLED: &str = "ld-mb-";
const LIFT_MAP: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway/maps/lift-lc3000.toml"));

pub(crate) async fn run(args: GatewayBenchArgs) -> Result<()> {
    println!("{}", super::machine());
    let databases = Databases::create(args.keep, &args.db, "gwbench").await?;
    let outcome = measure(&args, &databases).await;
    databases.remove().await;
    let report = outcome?;
    println!("{report}");
    if !report.clean() {
        bail!("readings were lost or duplicated");
    }
    Ok(())
}

struct GatewayProcess {
    child: Child,
    node_addr: String,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn measure(args: &GatewayBenchArgs, databases: &Databases) -> Result<Report> {
    let exe = std::env::current_exe().context("finding the gridwatch executable")?;
    let data = std::env::temp_dir().join(format!("gridwatch_gwbench_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let store = Store::open(&databases.ingest).await?;
    let backend = describe(&store);

    // Who may log in: the gateway on ingest's broker; the nodes (one load identity for
    // the `ld` prefix, a member of the gateway) on both.
    let credentials = data.join("credentials.toml");
    let mut file = gridwatch_broker::CredentialsFile::load_or_empty(&credentials)?;
    let gateway_secret = file.add(GATEWAY_ID, gridwatch_broker::Role::Gateway, None, now_ms())?;
    let nodes_secret = file.add_with_prefix(
        LOAD_IDENTITY,
        gridwatch_broker::Role::Load,
        Some(GATEWAY_ID),
        Some("ld"),
        now_ms(),
    )?;
    file.save(&credentials)?;

    let mut ingest = start_ingest(&exe, &databases.ingest, &data, "127.0.0.1:0", &[]).await?;
    let ingest_mqtt = ingest.mqtt.clone();

    // The slaves: lift controllers in the LC-3000 layout, on this process's runtime.
    let map = data.join("lift-lc3000.toml");
    std::fs::write(&map, LIFT_MAP)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut slaves = Vec::with_capacity(args.slaves);
    for _ in 0..args.slaves {
        let model = SlaveModel::Lift(Box::new(LiftModel::new(LiftParams::default(), clock.now_ms())));
        slaves.push(ModbusSlave::start(model, clock.clone(), "127.0.0.1:0".parse()?, Framing::Tcp).await?);
    }

    let mut gateway_args: Vec<String> = vec![
        "gateway".into(),
        "--id".into(),
        GATEWAY_ID.into(),
        "--uplink".into(),
        format!("mqtt://{GATEWAY_ID}:{gateway_secret}@{ingest_mqtt}"),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data".into(),
        data.join("gateway").display().to_string(),
        "--credentials".into(),
        credentials.display().to_string(),
        // More nodes than the default connection limit may be asked for.
        "--max-mqtt-connections".into(),
        (args.nodes + 100).to_string(),
        "--modbus-period-ms".into(),
        args.modbus_period_ms.to_string(),
    ];
    for (i, slave) in slaves.iter().enumerate() {
        gateway_args.push("--modbus".into());
        gateway_args.push(format!("{POLLED}{i:03}={}@tcp://{}", map.display(), slave.addr));
    }
    gateway_args.extend(args.gateway_args.iter().cloned());
    let gateway = start_gateway(&exe, &gateway_args).await?;
    let gateway_pid = gateway.child.id();
    eprintln!(
        "bench gateway: ingest on mqtt://{ingest_mqtt}, gateway pid {gateway_pid} on mqtt://{}, {} slaves",
        gateway.node_addr, args.slaves
    );
    let nodes_url = format!("mqtt://{LOAD_IDENTITY}:{nodes_secret}@{}", gateway.node_addr);

    // 1. Live.
    let polls_from = Instant::now() + Duration::from_secs(2); // after the first connects
    let live_started = Instant::now();
    let gateway_cpu_before = cpu_seconds(gateway_pid)?;
    let live = run_load(&exe, &nodes_url, LIVE, args.messages, args.rate, args, &data).await?;
    let live_acked = live_started.elapsed();
    let (live_stored, _) = wait_stored(&store, LIVE, args.messages, Duration::from_secs(120)).await?;
    let live_all_stored = live_started.elapsed();
    let gateway_cpu = cpu_seconds(gateway_pid)? - gateway_cpu_before;
    let minimum = Duration::from_secs(args.min_seconds);
    if live_started.elapsed() < minimum {
        tokio::time::sleep_until(live_started + minimum).await;
    }
    let polls_to = Instant::now();
    let period = Duration::from_millis(args.modbus_period_ms);
    let poll_figures = PollFigures::of(&slaves, polls_from, polls_to, period);
    let live_rss_kib = peak_rss_kib(gateway_pid)?;

    // 2. Replay: ingest away while the nodes write a backlog into the outbox.
    let replay = if args.replay > 0 {
        ingest.stop();
        let load = run_load(&exe, &nodes_url, REPLAY, args.replay, None, args, &data).await?;
        let outbox_bytes = dir_bytes(&data.join("gateway"));
        ingest = start_ingest(&exe, &databases.ingest, &data, &ingest_mqtt, &[]).await?;
        let restored = Instant::now();
        let (stored, first) = wait_stored(&store, REPLAY, args.replay, Duration::from_secs(600)).await?;
        Some(Replay {
            load,
            outbox_bytes,
            stored,
            took: restored.elapsed(),
            first: first.map(|f| f.duration_since(restored)),
        })
    } else {
        None
    };
    let peak_rss_kib = peak_rss_kib(gateway_pid)?;
    drop(gateway);
    ingest.stop();
    drop(slaves);

    let check = |prefix| counts(&store, prefix);
    let (live_rows, live_distinct) = check(LIVE).await?;
    let (replay_rows, replay_distinct) = check(REPLAY).await?;
    let (polled_rows, polled_distinct) = check(POLLED).await?;
    let _ = std::fs::remove_dir_all(&data);
    Ok(Report {
        backend,
        nodes: args.nodes,
        slaves: args.slaves,
        live,
        live_acked,
        live_stored,
        live_all_stored,
        gateway_cpu,
        polls: poll_figures,
        live_rss_kib,
        replay,
        peak_rss_kib,
        sent: (args.messages, args.replay),
        live_rows: (live_rows, live_distinct),
        replay_rows: (replay_rows, replay_distinct),
        polled_rows: (polled_rows, polled_distinct),
    })
}

async fn start_gateway(exe: &Path, args: &[String]) -> Result<GatewayProcess> {
    let mut command = Command::new(exe);
    command.args(args);
    let (child, node_addr) = spawn_reporting_mqtt(command, "gateway").await?;
    Ok(GatewayProcess { child, node_addr })
}

/// `gridwatch sim load` against the gateway: one connection a node, device ids
/// `{prefix}000000`...
async fn run_load(
    exe: &Path,
    url: &str,
    prefix: &str,
    messages: u64,
    rate: Option<f64>,
    args: &GatewayBenchArgs,
    data: &Path,
) -> Result<LoadReport> {
    let mut load = Command::new(exe);
    load.args(["sim", "load", "--json", "--mode", "direct", "--mqtt", url])
        .args(["--gateway", GATEWAY_ID, "--prefix", prefix])
        .args(["--devices", &args.nodes.to_string()])
        .args(["--connections", &args.nodes.to_string()])
        .args(["--messages", &messages.to_string()])
        .current_dir(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(rate) = rate {
        load.args(["--rate", &rate.to_string()]);
    }
    if let Some(window) = args.window {
        load.args(["--window", &window.to_string()]);
    }
    let output = tokio::task::spawn_blocking(move || load.output())
        .await?
        .context("running gridwatch sim load")?;
    if !output.status.success() {
        bail!("gridwatch sim load failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(LoadReport::from_json(stdout.lines().last().unwrap_or_default())?)
}

/// Waits until `expected` readings of devices starting with `prefix` are stored; returns
/// how many are, and when the first was seen (to within the 100 ms between looks).
async fn wait_stored(store: &Store, prefix: &str, expected: u64, within: Duration) -> Result<(i64, Option<Instant>)> {
    let deadline = Instant::now() + within;
    let mut first = None;
    loop {
        let (rows, _) = counts(store, prefix).await?;
        if rows > 0 {
            first.get_or_insert_with(Instant::now);
        }
        if rows >= expected as i64 || Instant::now() >= deadline {
            return Ok((rows, first));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows and distinct (device, seq) of the devices starting with `prefix`.
async fn counts(store: &Store, prefix: &str) -> Result<(i64, i64)> {
    const PG: &str = "SELECT COUNT(*), COUNT(DISTINCT device_id || '/' || seq) FROM readings WHERE device_id LIKE $1";
    const SQLITE: &str =
        "SELECT COUNT(*), COUNT(DISTINCT device_id || '/' || seq) FROM readings WHERE device_id LIKE ?1";
    // The prefixes hold no LIKE wildcards.
    let pattern = format!("{prefix}%");
    Ok(match store {
        Store::Postgres(pg) => sqlx::query_as(PG).bind(pattern).fetch_one(pg.pool()).await?,
        Store::Sqlite(sqlite) => sqlx::query_as(SQLITE).bind(pattern).fetch_one(sqlite.pool()).await?,
    })
}

/// Bytes of the files in a directory (the outbox with its WAL).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

struct PollFigures {
    polls: usize,
    seconds: f64,
    /// Over the slaves, polls between each one's first and last start per second of that span.
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl PollFigures {
    fn of(slaves: &[ModbusSlave], from: Instant, to: Instant, period: Duration) -> PollFigures {
        let mut polls = 0;
        let mut per_second = 0.0;
        let mut late = Vec::new();
        for slave in slaves {
            let requests: Vec<Instant> = slave.requests().into_iter().filter(|&t| t >= from && t < to).collect();
            let starts = polls::starts(&requests, period);
            polls += starts.len();
            if let (Some(first), Some(last)) = (starts.first(), starts.last())
                && last > first
            {
                per_second += (starts.len() - 1) as f64 / last.duration_since(*first).as_secs_f64();
            }
            late.extend(polls::lateness(&starts, period));
        }
        late.sort();
        PollFigures {
            polls,
            seconds: to.saturating_duration_since(from).as_secs_f64(),
            per_second,
            p50: polls::quantile(&late, 0.5),
            p99: polls::quantile(&late, 0.99),
            max: late.last().copied().unwrap_or_default(),
        }
    }
}

struct Replay {
    load: LoadReport,
    outbox_bytes: u64,
    stored: i64,
    took: Duration,
    /// From ingest's start to the first backlog reading stored (the uplink's reconnect).
    first: Option<Duration>,
}

struct Report {
    backend: String,
    nodes: usize,
    slaves: usize,
    live: LoadReport,
    live_acked: Duration,
    live_stored: i64,
    live_all_stored: Duration,
    gateway_cpu: f64,
    polls: PollFigures,
    live_rss_kib: u64,
    replay: Option<Replay>,
    peak_rss_kib: u64,
    sent: (u64, u64),
    live_rows: (i64, i64),
    replay_rows: (i64, i64),
    polled_rows: (i64, i64),
}

impl Report {
    fn lost_and_duplicated(&self) -> [(i64, i64); 2] {
        let of = |sent: u64, (rows, distinct): (i64, i64)| ((sent as i64 - distinct).max(0), rows - distinct);
        [of(self.sent.0, self.live_rows), of(self.sent.1, self.replay_rows)]
    }

    fn clean(&self) -> bool {
        self.lost_and_duplicated().iter().all(|&(l, d)| l == 0 && d == 0) && self.polled_rows.0 == self.polled_rows.1
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let per_s = |n: f64, d: Duration| n / d.as_secs_f64().max(f64::EPSILON);
        writeln!(
            f,
            "gateway bench: {} nodes (a connection each), {} Modbus TCP slaves, {}",
            self.nodes, self.slaves, self.backend
        )?;
        writeln!(
            f,
            "  live        {} readings: {:.0} readings/s acked by the gateway ({:.2} s), all {} stored after {:.2} s ({:.0}/s); gateway CPU {:.2} s",
            self.live.readings_acked,
            per_s(self.live.readings_acked as f64, self.live_acked),
            self.live_acked.as_secs_f64(),
            self.live_stored,
            self.live_all_stored.as_secs_f64(),
            per_s(self.live_stored as f64, self.live_all_stored),
            self.gateway_cpu
        )?;
        let p = &self.polls;
        writeln!(
            f,
            "  modbus      {} polls in {:.1} s: {:.1} polls/s; lateness against the grid p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            p.polls,
            p.seconds,
            p.per_second,
            p.p50.as_secs_f64() * 1e3,
            p.p99.as_secs_f64() * 1e3,
            p.max.as_secs_f64() * 1e3
        )?;
        writeln!(
            f,
            "  gateway RSS peak {:.1} MiB after the live phase",
            mib(self.live_rss_kib)
        )?;
        if let Some(r) = &self.replay {
            let first = r.first.unwrap_or(r.took);
            writeln!(
                f,
                "  replay      {} readings into the outbox with ingest down ({:.0} readings/s, outbox {:.1} MiB); from ingest's restart all {} stored in {:.2} s: {:.0} readings/s; from the first stored ({:.2} s after the restart: the uplink's reconnect) {:.0} readings/s",
                r.load.readings_acked,
                r.load.readings_acked as f64 / r.load.seconds.max(f64::EPSILON),
                r.outbox_bytes as f64 / (1024.0 * 1024.0),
                r.stored,
                r.took.as_secs_f64(),
                per_s(r.stored as f64, r.took),
                first.as_secs_f64(),
                per_s(r.stored as f64, r.took.saturating_sub(first))
            )?;
        }
        writeln!(
            f,
            "  gateway RSS peak {:.1} MiB over the whole run (VmHWM)",
            mib(self.peak_rss_kib)
        )?;
        let [(live_lost, live_dup), (replay_lost, replay_dup)] = self.lost_and_duplicated();
        write!(
            f,
            "  check       live: lost {live_lost}, duplicated {live_dup}; replay: lost {replay_lost}, duplicated {replay_dup}; polled: {} rows, {} duplicated",
            self.polled_rows.0,
            self.polled_rows.0 - self.polled_rows.1
        )
    }
}
