//! Retention on every backend: readings older than the retention (device time, at
//! the `now` given) go in small steps while writes continue; nothing inside the
//! window is touched.
mod common;

use common::{Backend, T0, TestDb, lift_at};
use gridwatch_storage::Store;
use gridwatch_storage::model::Accepted;
use gridwatch_storage::retention::{Retention, prune};
use std::time::Duration;

conformance!(old_readings_go_in_steps_while_writes_continue,);

const DAY_MS: u64 = 86_400_000;

/// Readings of `device` with seqs `seqs`, one a minute from `start`.
fn readings(device: &str, start: u64, seqs: std::ops::Range<u64>) -> Vec<Accepted> {
    seqs.map(|s| lift_at(device, s, start + s * 60_000)).collect()
}

async fn count_before(store: &Store, device: &str, ts_ms: i64) -> i64 {
    let rows = store.history(device, 0, ts_ms, 1_000_000).await.unwrap();
    rows.len() as i64
}

async fn old_readings_go_in_steps_while_writes_continue(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let devices = ["L-a", "L-b", "L-c", "L-d", "L-e"];
    // 20 old readings per device, 100 days before `now`; 10 inside the window, one
    // of them a minute after the cutoff.
    let now = T0 + 100 * DAY_MS;
    let retention = Retention {
        step_rows: 7,
        step_devices: 2,
        pause: Duration::ZERO,
        ..Retention::days(90)
    };
    let cutoff = retention.cutoff_ms(now as i64) as u64;
    for d in devices {
        store.commit(&readings(d, T0, 0..20), &[]).await.unwrap();
        store.commit(&readings(d, cutoff, 1..11), &[]).await.unwrap();
        // Exactly at the cutoff: kept.
        store.commit(&[lift_at(d, 100, cutoff)], &[]).await.unwrap();
    }
    if let Store::Sqlite(s) = &store {
        s.settle_all().await.unwrap();
    }
    let before = store.reading_count().await.unwrap();
    assert_eq!(before, 5 * 31);

    // Writes go on during the pass: new readings and, for one device, old ones.
    let writes = async {
        for (n, d) in devices.iter().enumerate() {
            store
                .commit(&readings(d, cutoff + DAY_MS, 200..205), &[])
                .await
                .unwrap();
            tokio::task::yield_now().await;
            if n == 0 {
                store.commit(&readings("L-z", cutoff, 1..4), &[]).await.unwrap();
            }
        }
    };
    let (pass, ()) = tokio::join!(prune(&store, &retention, now as i64), writes);
    let pass = pass.unwrap();
    if backend == Backend::Timescale {
        // The hypertable's retention policy drops whole chunks; gridwatch deletes nothing.
        assert_eq!(pass.pruned, 0);
        return;
    }
    assert_eq!(pass.pruned, 100, "every old reading, each once: {pass:?}");
    // 100 readings at most 7 a step, 5 devices at most 2 a step.
    assert!(pass.steps >= 15, "small steps: {pass:?}");

    for d in devices {
        assert_eq!(
            count_before(&store, d, cutoff as i64).await,
            0,
            "{d}: nothing older than the cutoff"
        );
        let kept = store.history(d, 0, i64::MAX, 1000).await.unwrap();
        assert_eq!(kept.len(), 16, "{d}: the window's 11 and the 5 written meanwhile");
        assert!(kept.iter().all(|r| r.ts_ms >= cutoff as i64));
    }
    assert_eq!(store.history("L-z", 0, i64::MAX, 1000).await.unwrap().len(), 3);

    // A second pass finds nothing more.
    let again = prune(&store, &retention, now as i64).await.unwrap();
    assert_eq!(again.pruned, 0);
}

/// Ingest with a retention prunes on its own clock (virtual here), at start and then
/// every `every`; without one it keeps every reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_prunes_on_its_clock_when_given_a_retention() {
    for retention in [None, Some(Retention::days(90))] {
        let db = TestDb::new(Backend::Sqlite).await;
        let dir = tempfile::tempdir().unwrap();
        let now = T0 + 100 * DAY_MS;
        {
            let store = db.open().await;
            store.commit(&readings("L-old", T0, 0..5), &[]).await.unwrap();
            store.commit(&readings("L-new", now - DAY_MS, 0..5), &[]).await.unwrap();
            if let Store::Sqlite(s) = &store {
                s.settle_all().await.unwrap();
            }
        }
        let mut config = gridwatch_ingest::IngestConfig::embedded(dir.path());
        config.database = db.url.clone();
        config.clock = std::sync::Arc::new(gridwatch_protocol::clock::ManualClock::new(now));
        config.retention = retention;
        let ingest = gridwatch_ingest::start(config).await.unwrap();
        let expected = if retention.is_some() { 5 } else { 10 };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ingest.store.reading_count().await.unwrap() != expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{retention:?}: not {expected} readings"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if retention.is_none() {
            // Nothing runs that could still prune them.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(ingest.store.reading_count().await.unwrap(), 10);
        }
        assert_eq!(ingest.store.history("L-new", 0, i64::MAX, 100).await.unwrap().len(), 5);
        ingest.stop().await;
    }
}

/// Storage per million readings on each backend, printed (docs/storage.md):
/// `GRIDWATCH_SIZE_READINGS` (default 300,000) lift readings of 1,000 devices, one
/// every 5 s per device from a day ago, in batches of 5,000.
/// `cargo test --release -p gridwatch-storage --test retention storage_per_million -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run on its own"]
async fn storage_per_million_readings() {
    let total: u64 = std::env::var("GRIDWATCH_SIZE_READINGS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300_000);
    let mut backends = vec![Backend::Sqlite, Backend::Postgres];
    if common::timescale_server("storage_per_million_readings").is_some() {
        backends.push(Backend::Timescale);
    }
    for backend in backends {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let devices = 1_000u64;
        let batch: Vec<u64> = (0..total).collect();
        // Recent device time, so that no compression policy touches the chunks first.
        let start = gridwatch_storage::model::now_ms() as u64 - 86_400_000;
        for chunk in batch.chunks(5_000) {
            let readings: Vec<Accepted> = chunk
                .iter()
                .map(|n| {
                    let (device, seq) = (n % devices, n / devices);
                    let mut a = lift_at(&format!("L-{device:05}"), seq, start + seq * 5_000);
                    if let gridwatch_protocol::batch::Reading::Lift(e) = &mut a.reading {
                        e.body.runs = seq as u32;
                        e.body.door_cycles = 2 * seq as u32;
                    }
                    a
                })
                .collect();
            store.commit(&readings, &[]).await.unwrap();
        }
        store.flush_states().await.unwrap();
        let per_million = |bytes: i64| bytes as f64 * 1e6 / total as f64 / (1024.0 * 1024.0);
        match &store {
            Store::Sqlite(s) => {
                s.settle_all().await.unwrap();
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(s.pool())
                    .await
                    .unwrap();
                let bytes: i64 =
                    sqlx::query_scalar("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
                        .fetch_one(s.pool())
                        .await
                        .unwrap();
                println!(
                    "sqlite: {total} readings, {:.0} MiB per million (whole file)",
                    per_million(bytes)
                );
            }
            Store::Postgres(p) if backend == Backend::Timescale => {
                let size = |p: &gridwatch_storage::postgres::PgStore| {
                    let pool = p.pool().clone();
                    async move {
                        sqlx::query_scalar::<_, i64>(
                            "SELECT (SELECT sum(total_bytes) FROM hypertable_detailed_size('readings'))::int8",
                        )
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                    }
                };
                let plain = size(p).await;
                sqlx::query("SELECT count(compress_chunk(c, true)) FROM show_chunks('readings') c")
                    .execute(p.pool())
                    .await
                    .unwrap();
                let compressed = size(p).await;
                println!(
                    "timescaledb: {total} readings, {:.0} MiB per million uncompressed, {:.0} compressed",
                    per_million(plain),
                    per_million(compressed)
                );
            }
            Store::Postgres(p) => {
                let bytes: i64 = sqlx::query_scalar(
                    "SELECT sum(pg_total_relation_size(relid))::int8 FROM pg_partition_tree('readings')",
                )
                .fetch_one(p.pool())
                .await
                .unwrap();
                println!(
                    "postgres: {total} readings, {:.0} MiB per million (table and key)",
                    per_million(bytes)
                );
            }
        }
    }
}
