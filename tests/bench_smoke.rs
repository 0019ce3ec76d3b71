//! A short run of `gridwatch bench ingest` (2,000 readings, both modes) on each
//! backend, so that the benchmark, the load generator (`gridwatch sim load`) and
//! their process plumbing cannot rot. It checks that every reading arrived once;
//! it never asserts a speed.
use std::process::Command;

/// Runs `gridwatch bench ingest` (2,000 readings from 100 devices, both modes) on each of
/// `dbs` in one run, fails unless it succeeded, and returns what it printed.
fn run_bench(dbs: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridwatch"));
    command.args([
        "bench",
        "ingest",
        "--messages",
        "2000",
        "--devices",
        "100",
        "--batch",
        "100",
    ]);
    for db in dbs {
        command.args(["--db", db]);
    }
    let output = command
        .env("RUST_LOG", "warn,rumqttd=off")
        .output()
        .expect("running gridwatch bench ingest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.into_owned()
}

/// Runs both modes on `db`; `direct_target` is the direct mode's target as printed.
/// Returns what it printed.
fn bench(db: &str, direct_target: &str) -> String {
    let stdout = run_bench(&[db]);
    for mode in ["== direct", "== gateway"] {
        assert!(stdout.contains(mode), "no {mode} result:\n{stdout}");
    }
    assert_eq!(
        stdout.matches("2000 rows stored, 0 lost, 0 duplicated").count(),
        2,
        "every reading stored once in both modes:\n{stdout}"
    );
    assert!(stdout.contains("COPY limit"), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("  cpu         ingest ") && l.contains(" (broker ") && l.contains(" load "))
            .count(),
        2,
        "where the CPU went, the broker's share too, in both modes:\n{stdout}"
    );
    assert_eq!(
        stdout.matches("\n  ceiling     ").count(),
        2,
        "what the parts ingest cannot make cheaper leave room for, in both modes:\n{stdout}"
    );
    // Each mode is judged by its own target: msg/s targets count one reading per message.
    for target in [direct_target, "gateway >= 2/3 of the COPY limit"] {
        assert_eq!(
            stdout.matches(&format!("targets     {target}:")).count(),
            1,
            "{target} judged once:\n{stdout}"
        );
    }
    stdout
}

#[test]
fn bench_ingest_runs_on_sqlite() {
    let stdout = bench("sqlite", "SQLite >= 80,000 msg/s");
    assert!(!stdout.contains("PostgreSQL"), "{stdout}");
    assert_eq!(
        stdout.matches("ceiling     SQLite writer ").count(),
        2,
        "the writer thread found:\n{stdout}"
    );
}

#[test]
fn bench_ingest_runs_on_postgres() {
    let server = std::env::var("GRIDWATCH_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let stdout = bench(&format!("{server}/postgres"), "direct >= 150,000 msg/s");
    // The server is on this machine: its backends' CPU is counted for both phases.
    assert_eq!(
        stdout.matches("database    PostgreSQL CPU ").count(),
        2,
        "PostgreSQL's CPU in both modes:\n{stdout}"
    );
    assert_eq!(
        stdout.matches("(its COPY of these rows)").count(),
        2,
        "the ceiling counts PostgreSQL's least work:\n{stdout}"
    );
}

/// Plain PostgreSQL against a server that preloads TimescaleDB, in one run
/// (`GRIDWATCH_TEST_TIMESCALE_URL`, set by scripts/test; skipped, saying so, without it).
#[test]
fn bench_ingest_compares_timescaledb_with_plain_postgres_in_one_run() {
    let Some(timescale) = std::env::var("GRIDWATCH_TEST_TIMESCALE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("SKIPPED the TimescaleDB comparison: GRIDWATCH_TEST_TIMESCALE_URL is not set");
        return;
    };
    let server = std::env::var("GRIDWATCH_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let plain = format!("{server}/postgres");
    let stdout = run_bench(&[&plain, &timescale]);
    assert_eq!(
        stdout.matches("2000 rows stored, 0 lost, 0 duplicated").count(),
        4,
        "both modes on both servers:\n{stdout}"
    );
    assert_eq!(
        stdout
            .matches(", PostgreSQL, readings a TimescaleDB hypertable")
            .count(),
        2,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("  compared    ").count(),
        2,
        "each mode's TimescaleDB run compared with plain PostgreSQL's:\n{stdout}"
    );
}

/// `gridwatch bench layout` on plain PostgreSQL and, where there is one, a server that
/// preloads TimescaleDB: every variant of the layout measured (none refused), and
/// compression reported for the hypertable only.
#[test]
fn bench_layout_measures_every_index_and_compression() {
    let server = std::env::var("GRIDWATCH_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut dbs = vec![format!("{server}/postgres")];
    let timescale = std::env::var("GRIDWATCH_TEST_TIMESCALE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    dbs.extend(timescale.clone());
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridwatch"));
    command.args(["bench", "layout", "--rows", "2000", "--devices", "100", "--runs", "1"]);
    for db in &dbs {
        command.args(["--db", db]);
    }
    let output = command
        .env("RUST_LOG", "warn")
        .output()
        .expect("running gridwatch bench layout");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("layout of ").count(), dbs.len(), "{stdout}");
    assert_eq!(
        stdout.matches(" % of the layout's time").count(),
        4 * dbs.len(),
        "four variants measured on each server:\n{stdout}"
    );
    assert!(!stdout.contains("refused"), "{stdout}");
    let compressed = usize::from(timescale.is_some());
    assert_eq!(stdout.matches("  compression: ").count(), compressed, "{stdout}");
    assert_eq!(stdout.matches("  late rows: ").count(), compressed, "{stdout}");
}
