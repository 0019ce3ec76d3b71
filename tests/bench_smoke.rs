//! A short run of `gridwatch bench ingest` (2,000 readings, both modes) on each
//! backend, so that the benchmark, the load generator (`gridwatch sim load`) and
//! their process plumbing cannot rot. It checks that every reading arrived once;
//! it never asserts a speed.
use std::process::Command;

fn bench(db: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args([
            "bench",
            "ingest",
            "--messages",
            "2000",
            "--devices",
            "100",
            "--batch",
            "100",
            "--db",
            db,
        ])
        .env("RUST_LOG", "warn,rumqttd=off")
        .output()
        .expect("running gridwatch bench ingest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}\n{stderr}",
        output.status
    );
    for mode in ["== direct", "== gateway"] {
        assert!(stdout.contains(mode), "no {mode} result:\n{stdout}");
    }
    assert_eq!(
        stdout.matches("2000 rows stored, 0 lost, 0 duplicated").count(),
        2,
        "every reading stored once in both modes:\n{stdout}"
    );
    assert!(stdout.contains("COPY limit"), "{stdout}");
}

#[test]
fn bench_ingest_runs_on_sqlite() {
    bench("sqlite");
}

#[test]
fn bench_ingest_runs_on_postgres() {
    let server = std::env::var("GRIDWATCH_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    bench(&format!("{server}/postgres"));
}
