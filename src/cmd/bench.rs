//! `gridwatch bench ingest`: the end-to-end ingest benchmark.
//!
//! For each mode (direct: one reading per message; gateway: batches) it
//! 1. measures the database's own limit: the same readings written by one COPY
//!    (SQLite: bulk INSERTs) into an empty `readings` table of a fresh database;
//! 2. starts `gridwatch ingest` as a separate process on another fresh database,
//!    and `gridwatch sim load` as a third process publishing the readings as QoS 1
//!    MQTT messages over TCP loopback to ingest's embedded broker;
//! 3. takes the time from the first publish to the last application ack (sent by
//!    ingest after the commit, so the row is committed and visible then), checks
//!    that every row is there, reads the ingest process's peak RSS and CPU time
//!    from /proc and the load's CPU time once it has ended, and checks the table
//!    for lost and duplicated readings.
//!
//! On a PostgreSQL server of this machine it also counts the CPU time of the
//! server's backends for each database (`procfs::DatabaseCpu`): the machine's
//! speed drifts between runs, while the ratio of the database's work per row in
//! the ingest run to its work in the COPY limit does not.
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use gridwatch_simulators::load::{self, LoadConfig, LoadReport, Mode};
use gridwatch_storage::postgres::Layout;
use gridwatch_storage::{Store, redact_url};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod gateway;
mod layout;
mod limit;
mod polls;
mod procfs;
use procfs::{DatabaseCpu, cpu_seconds, peak_rss_kib, thread_cpu_seconds, waited_children_cpu_seconds};

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// End-to-end ingest throughput against the database's own COPY limit (docs/benchmarks.md).
    Ingest(IngestBenchArgs),
    /// The write cost of each index of `readings` and of compression, per PostgreSQL server.
    Layout(layout::LayoutBenchArgs),
    /// A gateway process with nodes and Modbus slaves: its peak RSS, poll timing, and
    /// the replay of its outbox after an outage (docs/benchmarks.md, "Gateway").
    Gateway(gateway::GatewayBenchArgs),
}

/// The machine's PostgreSQL over its Unix socket.
const DEFAULT_POSTGRES: &str = "postgres:///postgres?host=/var/run/postgresql&user=postgres";

#[derive(clap::Args)]
pub(crate) struct IngestBenchArgs {
    /// A PostgreSQL server URL (fresh databases are created on it and dropped afterwards),
    /// or `sqlite` for fresh SQLite files in a temporary directory. Repeat it to compare
    /// servers in one run (e.g. plain PostgreSQL and one that preloads TimescaleDB): each
    /// mode runs on each in turn, and the throughputs are compared with the first's.
    #[arg(long, default_values_t = [DEFAULT_POSTGRES.to_string()])]
    db: Vec<String>,
    /// `direct`, `gateway` or `both`.
    #[arg(long, default_value = "both", value_parser = ["direct", "gateway", "both"])]
    mode: String,
    /// Readings to send (in gateway mode they travel in batches of --batch).
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = super::defaults::LOAD_DEVICES)]
    devices: usize,
    /// Readings per gateway batch.
    #[arg(long, default_value_t = super::defaults::LOAD_BATCH)]
    batch: usize,
    /// Load connections (default: one per 1000 devices, at most 1000).
    #[arg(long)]
    connections: Option<usize>,
    /// Readings the load may have unacknowledged at once over all connections (default:
    /// 36,000 direct, 60,000 gateway).
    #[arg(long)]
    window: Option<usize>,
    /// Extra arguments for the ingest process, e.g. --ingest-arg=--batch-max=4000 (repeatable).
    #[arg(long = "ingest-arg", allow_hyphen_values = true)]
    ingest_args: Vec<String>,
    /// Keep the databases (and SQLite files) instead of dropping them.
    #[arg(long)]
    keep: bool,
}

pub(crate) async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest(args).await,
        BenchCommand::Layout(args) => layout::run(args).await,
        BenchCommand::Gateway(args) => gateway::run(args).await,
    }
}

async fn ingest(args: IngestBenchArgs) -> Result<()> {
    let modes: &[Mode] = match args.mode.as_str() {
        "direct" => &[Mode::Direct],
        "gateway" => &[Mode::Gateway],
        _ => &[Mode::Direct, Mode::Gateway],
    };
    println!("{}", machine());
    let mut failed = false;
    // Modes outside, servers inside: the runs to compare follow each other.
    for &mode in modes {
        let mut first: Option<ModeResult> = None;
        for db in &args.db {
            let result = run_mode(&args, db, mode).await?;
            println!("{result}");
            failed |= !result.lost_and_duplicated_ok();
            match &first {
                None => first = Some(result),
                Some(first) => println!("{}", compare(&result, first)),
            }
        }
    }
    if failed {
        bail!("readings were lost or duplicated");
    }
    Ok(())
}

/// Where one run's databases live, removed when dropped unless kept.
struct Databases {
    /// The URL ingest uses, and the one the COPY limit is measured on.
    ingest: String,
    limit: String,
    /// PostgreSQL's names for the two (ingest, limit), to find their backends' CPU time.
    postgres_names: Option<(String, String)>,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres { server: String, names: Vec<String> },
    Sqlite { dir: PathBuf },
    Keep,
}

impl Databases {
    async fn create(keep: bool, db: &str, tag: &str) -> Result<Databases> {
        let unique = format!(
            "{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
        );
        if db == "sqlite" || db.starts_with("sqlite:") {
            let dir = std::env::temp_dir().join(format!("gridwatch_bench_{unique}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            return Ok(Databases {
                ingest: format!("sqlite://{}", dir.join("ingest.db").display()),
                limit: format!("sqlite://{}", dir.join("limit.db").display()),
                postgres_names: None,
                cleanup: if keep { Cleanup::Keep } else { Cleanup::Sqlite { dir } },
            });
        }
        let (ingest_name, limit_name) = (
            format!("gridwatch_bench_{unique}"),
            format!("gridwatch_bench_{unique}_copy"),
        );
        let ingest = limit::create_database(db, &ingest_name)
            .await
            .with_context(|| format!("creating a database on {}", redact_url(db)))?;
        let limit_url = limit::create_database(db, &limit_name).await?;
        Ok(Databases {
            ingest,
            limit: limit_url,
            postgres_names: Some((ingest_name.clone(), limit_name.clone())),
            cleanup: if keep {
                Cleanup::Keep
            } else {
                Cleanup::Postgres {
                    server: db.to_string(),
                    names: vec![ingest_name, limit_name],
                }
            },
        })
    }

    async fn remove(self) {
        match self.cleanup {
            Cleanup::Postgres { server, names } => {
                for name in names {
                    if let Err(e) = limit::drop_database(&server, &name).await {
                        eprintln!("bench: could not drop database {name}: {e:#}");
                    }
                }
            }
            Cleanup::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Keep => {}
        }
    }
}

struct ModeResult {
    mode: Mode,
    backend: String,
    readings: u64,
    load: LoadReport,
    limit_rows_per_second: f64,
    stored: i64,
    distinct: i64,
    visible_after: Duration,
    peak_rss_kib: u64,
    cpu_seconds: f64,
    /// Of `cpu_seconds`, the embedded broker's threads' and, on SQLite, the writer
    /// thread's: parts whose cost ingest's own code cannot lower.
    broker_cpu_seconds: f64,
    sqlite_writer_cpu_seconds: Option<f64>,
    /// The load process's CPU seconds.
    load_cpu_seconds: f64,
    /// PostgreSQL's CPU seconds for the ingest run and for the COPY limit, when the
    /// server runs on this machine.
    database_cpu: Option<(f64, f64)>,
}

impl ModeResult {
    fn lost(&self) -> i64 {
        (self.readings as i64 - self.distinct).max(0)
    }

    fn duplicated(&self) -> i64 {
        self.stored - self.distinct
    }

    fn lost_and_duplicated_ok(&self) -> bool {
        self.lost() == 0 && self.duplicated() == 0
    }

    /// Where the machine's CPU went during the load: when ingest, the database and
    /// the load together use nearly all the cores give, the machine is the limit.
    fn cpu_line(&self) -> String {
        let mut inside = vec![format!("broker {:.2} s", self.broker_cpu_seconds)];
        if let Some(writer) = self.sqlite_writer_cpu_seconds {
            inside.push(format!("SQLite writer {writer:.2} s"));
        }
        let mut parts = vec![format!("ingest {:.2} s ({})", self.cpu_seconds, inside.join(", "))];
        let mut used = self.cpu_seconds + self.load_cpu_seconds;
        if let Some((database, _)) = self.database_cpu {
            parts.push(format!("PostgreSQL {database:.2} s"));
            used += database;
        }
        parts.push(format!("load {:.2} s", self.load_cpu_seconds));
        let cores = cores();
        let available = cores as f64 * self.load.seconds;
        format!(
            "  cpu         {} = {used:.2} s of the {available:.2} s that {cores} cores give in {:.2} s ({:.0} %)",
            parts.join(" + "),
            self.load.seconds,
            100.0 * used / available.max(f64::EPSILON)
        )
    }

    /// The most readings per second the parts that ingest's own code cannot make
    /// cheaper leave room for on this machine, at the CPU they used in this run:
    /// on PostgreSQL the broker and the database's own COPY of the same rows (its
    /// least work for them) sharing the cores; on SQLite its one writer thread,
    /// which cannot use more than one core.
    fn ceiling_line(&self) -> Option<String> {
        let readings = self.load.readings_acked as f64;
        // CPU time comes in 10 ms ticks: a short run's count says nothing.
        let per_second = |seconds: f64| {
            if seconds < 0.1 {
                "(too little CPU time to tell)".to_string()
            } else {
                format!("{:.0}", readings / seconds)
            }
        };
        if let Some((_, copy)) = self.database_cpu {
            let cores = cores();
            let needed = self.broker_cpu_seconds + copy;
            return Some(format!(
                "  ceiling     broker {:.2} s + PostgreSQL {copy:.2} s (its COPY of these rows) = {needed:.2} s: \
                 {cores} cores carry at most {} readings/s of it, ingest's own work and the load not counted",
                self.broker_cpu_seconds,
                per_second(needed / cores as f64)
            ));
        }
        self.sqlite_writer_cpu_seconds.map(|writer| {
            format!(
                "  ceiling     SQLite writer {writer:.2} s on one thread: at most {} readings/s through it",
                per_second(writer)
            )
        })
    }
}

/// The cores this process may run on, which the CPU lines divide among ingest,
/// the database and the load.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

async fn run_mode(args: &IngestBenchArgs, db: &str, mode: Mode) -> Result<ModeResult> {
    let tag = match mode {
        Mode::Direct => "direct",
        Mode::Gateway => "gateway",
    };
    let databases = Databases::create(args.keep, db, tag).await?;
    let outcome = measure_mode(args, mode, &databases).await;
    databases.remove().await;
    outcome
}

async fn measure_mode(args: &IngestBenchArgs, mode: Mode, databases: &Databases) -> Result<ModeResult> {
    let exe = std::env::current_exe().context("finding the gridwatch executable")?;
    let mut plan = LoadConfig::new("mqtt://127.0.0.1:1".parse()?, mode, args.devices);
    plan.readings = Some(args.messages);
    plan.batch = args.batch;
    if let Some(connections) = args.connections {
        plan.connections = connections;
    }

    // 1. The database's own limit, on its own fresh database.
    eprintln!(
        "bench {mode:?}: preparing {} readings for the COPY limit",
        args.messages
    );
    let limit_store = Store::open(&databases.limit).await?;
    let backend = describe(&limit_store);
    let readings = load::planned_readings(&plan, now_ms()).map(|(gateway, json)| {
        let reading = gridwatch_protocol::batch::Reading::decode(gridwatch_protocol::Kind::Lift, &json)
            .expect("the load generator writes valid readings");
        gridwatch_storage::model::Accepted { gateway, reading }
    });
    let prepared = limit::prepare(&limit_store, readings);
    limit::checkpoint(&limit_store).await;
    let limit_cpu = databases
        .postgres_names
        .as_ref()
        .map(|(_, name)| DatabaseCpu::start(name));
    let (rows, took) = limit::measure(&limit_store, &prepared).await?;
    let limit_cpu = limit_cpu.and_then(DatabaseCpu::finish);
    drop(prepared);
    let limit_rows_per_second = rows as f64 / took.as_secs_f64();
    eprintln!(
        "bench {mode:?}: COPY limit {rows} rows in {:.2} s: {limit_rows_per_second:.0} rows/s",
        took.as_secs_f64()
    );
    drop(limit_store);

    // 2. Ingest and the load, each its own process.
    let store = Store::open(&databases.ingest).await?;
    limit::checkpoint(&store).await;
    let data = std::env::temp_dir().join(format!("gridwatch_bench_data_{}", std::process::id()));
    // The broker checks every login and publish as in production: the load logs in as a
    // load identity for its prefix.
    let credentials = data.join("credentials.toml");
    let mut file = gridwatch_broker::CredentialsFile::load_or_empty(&credentials)?;
    file.identity.retain(|i| i.id != BENCH_IDENTITY);
    let secret = file.add_with_prefix(
        BENCH_IDENTITY,
        gridwatch_broker::Role::Load,
        None,
        Some(&plan.prefix),
        now_ms(),
    )?;
    file.save(&credentials)?;
    let mut ingest = start_ingest(&exe, &databases.ingest, &data, "127.0.0.1:0", &args.ingest_args).await?;
    let ingest_pid = ingest.child.id();
    let cpu_before = cpu_seconds(ingest_pid)?;
    let threads_before = thread_cpu_seconds(ingest_pid)?;
    let ingest_db_cpu = databases
        .postgres_names
        .as_ref()
        .map(|(name, _)| DatabaseCpu::start(name));
    let mut load = Command::new(&exe);
    load.args(["sim", "load", "--json", "--mqtt"])
        .arg(format!("mqtt://{BENCH_IDENTITY}:{secret}@{}", ingest.mqtt))
        .arg("--mode")
        .arg(match mode {
            Mode::Direct => "direct",
            Mode::Gateway => "gateway",
        })
        .args(["--devices", &args.devices.to_string()])
        .args(["--messages", &args.messages.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .args(["--window", &args.window.unwrap_or(plan.window).to_string()])
        .args(["--connections", &plan.connections.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!(
        "bench {mode:?}: ingest pid {ingest_pid} on mqtt://{}; starting the load",
        ingest.mqtt
    );
    // The load's CPU, read once it has been waited for: ingest, the other child, is
    // still running then, so it is not in the count.
    let children_before = waited_children_cpu_seconds()?;
    let output = tokio::task::spawn_blocking(move || load.output())
        .await?
        .context("running gridwatch sim load")?;
    let load_cpu_seconds = waited_children_cpu_seconds()? - children_before;
    if !output.status.success() {
        bail!("gridwatch sim load failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = LoadReport::from_json(stdout.lines().last().unwrap_or_default())?;

    // 3. Everything visible? Then the process's numbers, then the table check.
    let waited = Instant::now();
    let deadline = waited + Duration::from_secs(60);
    loop {
        let count = store.reading_count().await?;
        if count >= args.messages as i64 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let visible_after = waited.elapsed();
    let peak_rss_kib = peak_rss_kib(ingest_pid)?;
    let cpu_seconds = cpu_seconds(ingest_pid)? - cpu_before;
    let threads_after = thread_cpu_seconds(ingest_pid)?;
    let threads_used = |pick: &dyn Fn(&str) -> bool| -> f64 {
        threads_after
            .iter()
            .filter(|(name, _)| pick(name))
            .map(|(name, after)| after - threads_before.get(name).unwrap_or(&0.0))
            .sum()
    };
    let broker_cpu_seconds =
        threads_used(&|name| gridwatch_broker::is_broker_thread(gridwatch_ingest::BROKER_NAME, name));
    let sqlite_writer_cpu_seconds = matches!(store, Store::Sqlite(_))
        .then(|| threads_used(&|name| name == gridwatch_storage::sqlite::WRITER_THREAD));
    let database_cpu = ingest_db_cpu.and_then(DatabaseCpu::finish).zip(limit_cpu);
    ingest.stop();
    let _ = std::fs::remove_dir_all(&data);
    let (stored, distinct) = limit::stored(&store).await?;
    Ok(ModeResult {
        mode,
        backend,
        readings: args.messages,
        load: report,
        limit_rows_per_second,
        stored,
        distinct,
        visible_after,
        peak_rss_kib,
        cpu_seconds,
        broker_cpu_seconds,
        sqlite_writer_cpu_seconds,
        load_cpu_seconds,
        database_cpu,
    })
}

fn describe(store: &Store) -> String {
    match store {
        Store::Sqlite(_) => "SQLite".to_string(),
        Store::Postgres(pg) => match pg.layout() {
            Layout::Hypertable => "PostgreSQL, readings a TimescaleDB hypertable".to_string(),
            Layout::Partitioned => "PostgreSQL, readings in native daily partitions".to_string(),
            Layout::Plain => "PostgreSQL, readings a plain table".to_string(),
        },
    }
}

/// The load identity the benchmark's `sim load` logs in as.
const BENCH_IDENTITY: &str = "bench-load";

struct IngestProcess {
    child: Child,
    mqtt: String,
}

impl IngestProcess {
    /// kill -9: what it committed is committed, the rest was never acknowledged.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for IngestProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a `gridwatch` process (`what`: ingest or gateway) with its stdout read on a
/// thread until it ends, so it never blocks on a full pipe, and returns it with the
/// `mqtt://` address its first line names; a process that does not name one is killed.
async fn spawn_reporting_mqtt(mut command: Command, what: &'static str) -> Result<(Child, String)> {
    let mut child = command
        // rumqttd logs every client disconnect as an error: noise here.
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,rumqttd=off".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting gridwatch {what}"))?;
    let stdout = child.stdout.take().with_context(|| format!("{what} stdout"))?;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let _ = first_tx.send(lines.next());
        for _ in lines {}
    });
    let reported = async {
        let line = tokio::time::timeout(Duration::from_secs(60), first_rx)
            .await
            .with_context(|| format!("{what} did not report its address within 60 s"))??
            .with_context(|| format!("{what} exited before reporting its address"))??;
        line.split_whitespace()
            .find_map(|word| word.strip_prefix("mqtt://"))
            .map(str::to_string)
            .with_context(|| format!("no mqtt:// address in {what}'s line {line:?}"))
    };
    match reported.await {
        Ok(mqtt) => Ok((child, mqtt)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Starts `gridwatch ingest` (its broker on `mqtt`, port 0 picks one) and waits for the line naming its ports.
async fn start_ingest(
    exe: &std::path::Path,
    db: &str,
    data: &std::path::Path,
    mqtt: &str,
    extra: &[String],
) -> Result<IngestProcess> {
    let mut command = Command::new(exe);
    command
        .args([
            "ingest",
            "--open-api",
            "--http",
            "127.0.0.1:0",
            "--mqtt",
            mqtt,
            "--data",
        ])
        .arg(data)
        .arg("--credentials")
        .arg(data.join("credentials.toml"))
        .args(["--db", db])
        .args(extra);
    let (child, mqtt) = spawn_reporting_mqtt(command, "ingest").await?;
    Ok(IngestProcess { child, mqtt })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The machine, for the record.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "machine: {cores} cores, {cpu}; load average {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

/// One line comparing a run with the same mode's run on the first `--db`.
fn compare(result: &ModeResult, first: &ModeResult) -> String {
    let per_second = |r: &ModeResult| r.load.readings_acked as f64 / r.load.seconds.max(f64::EPSILON);
    format!(
        "  compared    {:.2}× the readings/s of {} ({:.0} against {:.0}); COPY limit {:.2}× ({:.0} against {:.0} rows/s)",
        per_second(result) / per_second(first),
        first.backend,
        per_second(result),
        per_second(first),
        result.limit_rows_per_second / first.limit_rows_per_second,
        result.limit_rows_per_second,
        first.limit_rows_per_second
    )
}

impl std::fmt::Display for ModeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.load;
        let seconds = l.seconds.max(f64::EPSILON);
        let messages_per_second = l.messages_sent as f64 / seconds;
        let readings_per_second = l.readings_acked as f64 / seconds;
        let ratio = readings_per_second / self.limit_rows_per_second;
        let mode = match self.mode {
            Mode::Direct => "direct (one reading per message)".to_string(),
            Mode::Gateway => format!(
                "gateway (batches of {} readings)",
                l.readings_sent / l.messages_sent.max(1)
            ),
        };
        writeln!(f, "\n== {mode}, {}", self.backend)?;
        writeln!(
            f,
            "  load        {} readings in {} messages from {} devices on {} connections",
            l.readings_sent, l.messages_sent, l.devices, l.connections
        )?;
        writeln!(
            f,
            "  ingest      {messages_per_second:.0} msg/s, {readings_per_second:.0} readings/s \
             (first publish to last commit {:.2} s; all rows visible {:.1} s after the load ended)",
            l.seconds,
            self.visible_after.as_secs_f64()
        )?;
        writeln!(
            f,
            "  COPY limit  {:.0} rows/s (the same rows, one transaction, empty table): ingest is {ratio:.2} of it",
            self.limit_rows_per_second
        )?;
        writeln!(
            f,
            "  latency     publish to commit (application ack): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.latency_ms.p50, l.latency_ms.p99, l.latency_ms.max
        )?;
        writeln!(
            f,
            "  ingest proc peak RSS {:.1} MiB, CPU {:.2} s user+system",
            self.peak_rss_kib as f64 / 1024.0,
            self.cpu_seconds
        )?;
        if let Some((ingest, limit)) = self.database_cpu {
            writeln!(
                f,
                "  database    PostgreSQL CPU {ingest:.2} s for these rows, {limit:.2} s for the COPY limit's: {:.2}x",
                ingest / limit.max(f64::EPSILON)
            )?;
        }
        writeln!(f, "{}", self.cpu_line())?;
        if let Some(ceiling) = self.ceiling_line() {
            writeln!(f, "{ceiling}")?;
        }
        writeln!(
            f,
            "  check       {} rows stored, {} lost, {} duplicated",
            self.stored,
            self.lost(),
            self.duplicated()
        )?;
        let sqlite = self.backend.starts_with("SQLite");
        // The msg/s targets are for one reading per message; a gateway's message holds hundreds.
        let (what, met) = match (self.mode, sqlite) {
            (Mode::Direct, true) => ("SQLite >= 80,000 msg/s".to_string(), messages_per_second >= 80_000.0),
            (Mode::Direct, false) => ("direct >= 150,000 msg/s".to_string(), messages_per_second >= 150_000.0),
            (Mode::Gateway, _) => ("gateway >= 2/3 of the COPY limit".to_string(), ratio >= 2.0 / 3.0),
        };
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        write!(
            f,
            "  targets     {what}: {}; peak RSS <= 128 MiB: {}; 0 lost, 0 duplicated: {}",
            verdict(met),
            verdict(self.peak_rss_kib <= 128 * 1024),
            verdict(self.lost_and_duplicated_ok())
        )
    }
}
