//! `gridwatch bench layout`: what each part of the readings layout costs a write, on
//! each PostgreSQL server given (docs/benchmarks.md, "Write cost of the layout").
//!
//! The same rows are written by one binary COPY (the database's fastest path, as in
//! `bench ingest`'s limit) into a fresh `readings` as gridwatch makes it, and into
//! one without each of its indexes; the variants alternate within each run, so a
//! drifting machine moves them alike. On a hypertable, compression is measured too:
//! the time to compress every chunk, the size before and after, and late readings
//! written into the compressed chunks against the same late readings written into
//! uncompressed ones.
use super::limit::{self, Prepared};
use anyhow::{Context, Result};
use gridwatch_simulators::load::{self, LoadConfig, Mode};
use gridwatch_storage::Store;
use gridwatch_storage::postgres::Layout;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct LayoutBenchArgs {
    /// A PostgreSQL server URL; repeat it to measure several servers (e.g. plain
    /// PostgreSQL and one that preloads TimescaleDB). Fresh databases are created on it
    /// and dropped afterwards.
    #[arg(long, default_values_t = [super::DEFAULT_POSTGRES.to_string()])]
    db: Vec<String>,
    /// Rows per COPY.
    #[arg(long, default_value_t = 500_000)]
    rows: u64,
    #[arg(long, default_value_t = crate::cmd::defaults::LOAD_DEVICES)]
    devices: usize,
    /// Runs of every variant; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The layout with some of its parts left out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    AsMade,
    WithoutReceivedAt,
    WithoutKey,
    HeapOnly,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::AsMade,
        Variant::WithoutReceivedAt,
        Variant::WithoutKey,
        Variant::HeapOnly,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::AsMade => "as gridwatch makes it",
            Variant::WithoutReceivedAt => "without readings_received_at (BRIN)",
            Variant::WithoutKey => "without the key (device_id, ts, seq)",
            Variant::HeapOnly => "no index at all",
        }
    }

    /// What turns the layout as made into this variant.
    fn drops(self) -> &'static [&'static str] {
        const BRIN: &str = "DROP INDEX readings_received_at";
        const KEY: &str = "ALTER TABLE readings DROP CONSTRAINT readings_pkey";
        match self {
            Variant::AsMade => &[],
            Variant::WithoutReceivedAt => &[BRIN],
            Variant::WithoutKey => &[KEY],
            Variant::HeapOnly => &[BRIN, KEY],
        }
    }
}

/// One server's measurements, in seconds per COPY of all rows (per run).
#[derive(Default)]
struct Measured {
    copies: Vec<(Variant, Result<Duration, String>)>,
    compression: Vec<Compression>,
}

struct Compression {
    bytes_before: i64,
    bytes_after: i64,
    compress: Duration,
    late_into_uncompressed: Duration,
    late_into_compressed: Duration,
}

pub(crate) async fn run(args: LayoutBenchArgs) -> Result<()> {
    println!("{}", super::machine());
    let mut plan = LoadConfig::new("mqtt://127.0.0.1:1".parse()?, Mode::Direct, args.devices);
    plan.readings = Some(args.rows);
    // Late readings: a tenth as many, the same devices a millisecond later (same chunk).
    let mut late_plan = plan.clone();
    late_plan.readings = Some((args.rows / 10).max(1));
    let ts = super::now_ms();
    for server in &args.db {
        let measured = measure_server(server, &args, &plan, &late_plan, ts).await?;
        report(server, &args, &measured);
    }
    Ok(())
}

async fn measure_server(
    server: &str,
    args: &LayoutBenchArgs,
    plan: &LoadConfig,
    late_plan: &LoadConfig,
    ts: u64,
) -> Result<Measured> {
    let mut measured = Measured::default();
    for run in 1..=args.runs {
        for variant in Variant::ALL {
            let db = ScratchDb::create(server, "layout").await?;
            let store = Store::open(&db.url).await?;
            let prepared = prepare(&store, plan, ts);
            let outcome = match drop_parts(&store, variant).await {
                Ok(()) => {
                    limit::checkpoint(&store).await;
                    let (_, took) = limit::measure(&store, &prepared).await?;
                    Ok(took)
                }
                // A server may refuse to change a layout (e.g. a key of a hypertable
                // with compression on): reported, not fatal.
                Err(e) => Err(e.to_string()),
            };
            eprintln!(
                "bench layout: run {run}, {}: {}",
                variant.name(),
                outcome
                    .as_ref()
                    .map_or_else(|e| format!("refused: {e}"), |t| format!("{:.2} s", t.as_secs_f64()))
            );
            measured.copies.push((variant, outcome));
            drop(store);
            db.drop().await;
        }
        let db = ScratchDb::create(server, "layout").await?;
        let store = Store::open(&db.url).await?;
        if matches!(&store, Store::Postgres(pg) if pg.layout() == Layout::Hypertable) {
            measured
                .compression
                .push(measure_compression(&store, plan, late_plan, ts, server).await?);
        }
        drop(store);
        db.drop().await;
    }
    Ok(measured)
}

fn prepare(store: &Store, plan: &LoadConfig, ts: u64) -> Prepared {
    let readings = load::planned_readings(plan, ts).map(|(gateway, json)| {
        let reading = gridwatch_protocol::batch::Reading::decode(gridwatch_protocol::Kind::Lift, &json)
            .expect("the load generator writes valid readings");
        gridwatch_storage::model::Accepted { gateway, reading }
    });
    limit::prepare(store, readings)
}

async fn drop_parts(store: &Store, variant: Variant) -> Result<()> {
    let Store::Postgres(pg) = store else {
        anyhow::bail!("bench layout measures PostgreSQL servers");
    };
    for sql in variant.drops() {
        sqlx::query(*sql)
            .execute(pg.pool())
            .await
            .with_context(|| sql.to_string())?;
    }
    Ok(())
}

/// On a fresh hypertable: COPY the rows, late rows into uncompressed chunks (timed), then
/// compress every chunk (timed, sizes before and after), then more late rows into the
/// compressed chunks (timed).
async fn measure_compression(
    store: &Store,
    plan: &LoadConfig,
    late_plan: &LoadConfig,
    ts: u64,
    server: &str,
) -> Result<Compression> {
    let Store::Postgres(pg) = store else {
        anyhow::bail!("compression is TimescaleDB's");
    };
    let pool = pg.pool();
    limit::measure(store, &prepare(store, plan, ts)).await?;
    let (_, late_into_uncompressed) = limit::measure(store, &prepare(store, late_plan, ts + 1)).await?;
    let size = || async {
        sqlx::query_scalar::<_, i64>("SELECT hypertable_size('readings')")
            .fetch_one(pool)
            .await
    };
    let bytes_before = size().await?;
    let started = Instant::now();
    sqlx::query("SELECT count(compress_chunk(c, true)) FROM show_chunks('readings') c")
        .execute(pool)
        .await
        .with_context(|| format!("compressing the chunks on {}", gridwatch_storage::redact_url(server)))?;
    let compress = started.elapsed();
    let bytes_after = size().await?;
    let (_, late_into_compressed) = limit::measure(store, &prepare(store, late_plan, ts + 2)).await?;
    eprintln!(
        "bench layout: compression {:.2} s, {} -> {} MiB; late rows {:.2} s uncompressed, {:.2} s compressed",
        compress.as_secs_f64(),
        bytes_before >> 20,
        bytes_after >> 20,
        late_into_uncompressed.as_secs_f64(),
        late_into_compressed.as_secs_f64()
    );
    Ok(Compression {
        bytes_before,
        bytes_after,
        compress,
        late_into_uncompressed,
        late_into_compressed,
    })
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    (!values.is_empty()).then(|| values[values.len() / 2])
}

fn report(server: &str, args: &LayoutBenchArgs, measured: &Measured) {
    println!(
        "layout of {} ({} rows from {} devices, median of {} runs):",
        gridwatch_storage::redact_url(server),
        args.rows,
        args.devices,
        args.runs
    );
    let seconds = |variant: Variant| {
        median(
            measured
                .copies
                .iter()
                .filter(|(v, _)| *v == variant)
                .filter_map(|(_, t)| t.as_ref().ok().map(Duration::as_secs_f64))
                .collect(),
        )
    };
    let as_made = seconds(Variant::AsMade);
    for variant in Variant::ALL {
        match (seconds(variant), as_made) {
            (Some(s), Some(full)) => println!(
                "  {:<40} {s:>6.2} s {:>9.0} rows/s  {:>+6.1} % of the layout's time",
                variant.name(),
                args.rows as f64 / s,
                (s - full) / full * 100.0
            ),
            _ => {
                let why = measured
                    .copies
                    .iter()
                    .find_map(|(v, t)| (*v == variant).then(|| t.as_ref().err()).flatten())
                    .map_or("no measurement", String::as_str);
                println!("  {:<40} refused: {why}", variant.name());
            }
        }
    }
    if measured.compression.is_empty() {
        return;
    }
    let c = &measured.compression;
    let per_million = 1e6 / args.rows as f64;
    let late_rows = (args.rows / 10).max(1) as f64;
    let m = |f: &dyn Fn(&Compression) -> f64| median(c.iter().map(f).collect()).unwrap_or(f64::NAN);
    println!(
        "  compression: {:.2} s per million rows; {:.0} MiB -> {:.0} MiB per million rows",
        m(&|c| c.compress.as_secs_f64()) * per_million,
        m(&|c| c.bytes_before as f64) * per_million / 1048576.0,
        m(&|c| c.bytes_after as f64) * per_million / 1048576.0,
    );
    println!(
        "  late rows: {:.0} rows/s into uncompressed chunks, {:.0} rows/s into compressed chunks",
        late_rows / m(&|c| c.late_into_uncompressed.as_secs_f64()),
        late_rows / m(&|c| c.late_into_compressed.as_secs_f64()),
    );
}

/// A fresh database on a server, dropped by [`ScratchDb::drop`].
struct ScratchDb {
    server: String,
    name: String,
    url: String,
}

impl ScratchDb {
    async fn create(server: &str, tag: &str) -> Result<ScratchDb> {
        static CREATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("gridwatch_bench_{tag}_{}_{n}", std::process::id());
        let url = limit::create_database(server, &name).await?;
        Ok(ScratchDb {
            server: server.to_string(),
            name,
            url,
        })
    }

    async fn drop(self) {
        if let Err(e) = limit::drop_database(&self.server, &self.name).await {
            tracing::warn!(error = %e, database = self.name, "dropping a benchmark database");
        }
    }
}
