//! What only the TimescaleDB path has: the hypertable's indexes, `--timescale
//! auto|on|off`, and the health of TimescaleDB's jobs with gridwatch running them
//! itself. On the server of `GRIDWATCH_TEST_TIMESCALE_URL` (one that preloads
//! TimescaleDB; `scripts/test` starts one): without it these tests say they are
//! skipped. The error of `--timescale on` without TimescaleDB runs on the plain
//! PostgreSQL of `GRIDWATCH_TEST_PG`.
mod common;

use common::{Backend, T0, TestDb, lift, lift_at, timescale_server};
use gridwatch_storage::postgres::{Layout, PgStore};
use gridwatch_storage::{JobRuns, PolicyHealth, Store, StoreOptions, TimescaleMode};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const HOUR_MS: i64 = 3_600_000;

fn pg(store: &Store) -> &PgStore {
    match store {
        Store::Postgres(pg) => pg,
        Store::Sqlite(_) => unreachable!("a PostgreSQL store"),
    }
}

fn options(timescale: TimescaleMode, job_runs: JobRuns) -> StoreOptions {
    StoreOptions {
        timescale,
        job_runs,
        // The tests check the jobs themselves, at times they choose.
        check_jobs_every: Duration::from_secs(3600),
    }
}

async fn indexes(pg: &PgStore, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 ORDER BY indexname",
    )
    .bind(table)
    .fetch_all(pg.pool())
    .await
    .unwrap()
}

async fn has_extension(pg: &PgStore) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
        .fetch_one(pg.pool())
        .await
        .unwrap()
}

/// docs/storage.md: the key and the BRIN index on received_at, nothing else; not
/// create_hypertable's default (ts DESC) index, which a database made by an
/// earlier set-up loses at its next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hypertable_has_only_the_indexes_storage_md_names() {
    if timescale_server("the_hypertable_has_only_the_indexes_storage_md_names").is_none() {
        return;
    }
    let db = TestDb::new(Backend::Timescale).await;
    let store = db.open().await;
    assert_eq!(pg(&store).layout(), Layout::Hypertable);
    store.commit(&[lift("L-1", 1)], &[]).await.unwrap();
    let want = ["readings_pkey", "readings_received_at"];
    assert_eq!(indexes(pg(&store), "readings").await, want);
    let chunk_indexes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM show_chunks('readings') c JOIN pg_index i ON i.indrelid = c")
            .fetch_one(pg(&store).pool())
            .await
            .unwrap();
    assert_eq!(chunk_indexes, 2, "a chunk has the key and the BRIN index only");

    sqlx::query("CREATE INDEX readings_ts_idx ON readings (ts DESC)")
        .execute(pg(&store).pool())
        .await
        .unwrap();
    drop(store);
    let store = db.open().await;
    assert_eq!(indexes(pg(&store), "readings").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_off_keeps_native_partitions_on_a_server_that_preloads_it() {
    if timescale_server("timescale_off_keeps_native_partitions_on_a_server_that_preloads_it").is_none() {
        return;
    }
    let db = TestDb::new(Backend::Timescale).await;
    let store = db.open_with(&options(TimescaleMode::Off, JobRuns::Auto)).await;
    assert_eq!(pg(&store).layout(), Layout::Partitioned);
    assert!(!has_extension(pg(&store)).await, "--timescale off creates no extension");
    assert_eq!(store.policy_health(), None);
    store.commit(&[lift("L-1", 1)], &[]).await.unwrap();
    drop(store);
    // auto on a database that opted out: its readings keep their layout.
    let store = db.open().await;
    assert_eq!(pg(&store).layout(), Layout::Partitioned);
    assert_eq!(store.reading_count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_on_and_auto_make_a_hypertable_where_the_server_preloads_it() {
    if timescale_server("timescale_on_and_auto_make_a_hypertable_where_the_server_preloads_it").is_none() {
        return;
    }
    for mode in [TimescaleMode::On, TimescaleMode::Auto] {
        let db = TestDb::new(Backend::Timescale).await;
        let store = db.open_with(&options(mode, JobRuns::Auto)).await;
        assert_eq!(pg(&store).layout(), Layout::Hypertable, "--timescale {mode}");
        assert!(has_extension(pg(&store)).await);
    }
}

/// On a server without TimescaleDB (or not preloading it), `on` refuses to start,
/// naming what the server lacks; `auto` falls back to native partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_on_without_timescaledb_on_the_server_is_a_clear_error() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.open().await;
    let preloaded: String = sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
        .fetch_one(pg(&store).pool())
        .await
        .unwrap();
    if preloaded.contains("timescaledb") {
        eprintln!("SKIPPED: GRIDWATCH_TEST_PG preloads TimescaleDB; this test needs a server without it");
        return;
    }
    assert_eq!(pg(&store).layout(), Layout::Partitioned);
    drop(store);
    let fresh = TestDb::new(Backend::Postgres).await;
    let Err(e) = Store::open_with(&fresh.url, &options(TimescaleMode::On, JobRuns::Auto)).await else {
        panic!("--timescale on opened a server without TimescaleDB")
    };
    let e = format!("{e:#}");
    assert!(e.contains("--timescale on"), "{e}");
    assert!(
        e.contains("shared_preload_libraries") || e.contains("not installed"),
        "names the fix: {e}"
    );
}

/// Polls the jobs until the scheduler has run every one of them.
async fn after_the_scheduler_ran(pg: &PgStore, now_ms: i64) -> PolicyHealth {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let health = pg.check_policies(now_ms).await.expect("a hypertable's jobs");
        assert_eq!(health.error, None);
        if health.jobs.len() == 3 && health.jobs.iter().all(|j| j.scheduler_last_status.is_some()) {
            return health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scheduler did not run every job: {health:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The three policies are read with their last scheduled run; a failed run is
/// reported with the server's message and, with `auto`, run by gridwatch once per
/// the job's interval (on PostgreSQL 15.20 every scheduled run fails with
/// `cannot drop portal "" while it is being set up`). `never` reports only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_health_is_reported_and_failed_jobs_run_by_gridwatch() {
    if timescale_server("the_jobs_health_is_reported_and_failed_jobs_run_by_gridwatch").is_none() {
        return;
    }
    for runs in [JobRuns::Auto, JobRuns::Never] {
        let db = TestDb::new(Backend::Timescale).await;
        let store = db.open_with(&options(TimescaleMode::Auto, runs)).await;
        let pg = pg(&store);
        assert_eq!(store.policy_health(), None, "no check before the first interval");
        let now = gridwatch_storage::model::now_ms();
        let health = after_the_scheduler_ran(pg, now).await;
        let mut names: Vec<&str> = health.jobs.iter().map(|j| j.job.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "policy_compression",
                "policy_refresh_continuous_aggregate",
                "policy_retention"
            ]
        );
        for job in &health.jobs {
            let failed = job.scheduler_last_status.as_deref() == Some("Failed");
            if failed {
                let message = job.scheduler_last_error.as_deref().unwrap_or_default();
                assert!(!message.is_empty(), "the server's message: {job:?}");
            }
            let ran = runs == JobRuns::Auto && failed;
            // The poll above may have run it already: once, then not again within its interval.
            assert_eq!(job.gridwatch_runs, u64::from(ran), "{runs}: {job:?}");
            assert_eq!(job.gridwatch_last_error, None, "CALL run_job works: {job:?}");
            assert_eq!(job.ok, ran || !failed, "{runs}: {job:?}");
        }
        assert_eq!(store.policy_health().as_ref(), Some(&health));
        let again = pg.check_policies(now + 1000).await.unwrap();
        assert!(
            again
                .jobs
                .iter()
                .zip(&health.jobs)
                .all(|(a, b)| a.gridwatch_runs == b.gridwatch_runs)
        );
        if runs == JobRuns::Auto {
            // A day on, every failed job's interval has passed: each is run again.
            let later = pg.check_policies(now + 24 * HOUR_MS).await.unwrap();
            for (job, before) in later.jobs.iter().zip(&health.jobs) {
                assert_eq!(job.gridwatch_runs, before.gridwatch_runs * 2, "{job:?}");
            }
        }
    }
}

/// gridwatch's own runs do the maintenance: with the scheduler's runs switched
/// off, `always` compresses a chunk past its age and fills the hourly aggregate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gridwatch_runs_the_maintenance_itself() {
    if timescale_server("gridwatch_runs_the_maintenance_itself").is_none() {
        return;
    }
    let db = TestDb::new(Backend::Timescale).await;
    let store = db.open_with(&options(TimescaleMode::Auto, JobRuns::Always)).await;
    let pg = pg(&store);
    sqlx::query(
        "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs \
         WHERE hypertable_name IN ('readings', 'readings_hourly')",
    )
    .execute(pg.pool())
    .await
    .unwrap();
    // A chunk older than the compression age (T0 is in 2025), and readings of the
    // hour before the last (within the aggregate's refresh window).
    let now = gridwatch_storage::model::now_ms();
    let recent = (now - 2 * HOUR_MS) as u64;
    store
        .commit(
            &[
                lift("L-1", 1),
                lift_at("L-2", 1, recent),
                lift_at("L-2", 2, recent + 1000),
            ],
            &[],
        )
        .await
        .unwrap();
    assert!(T0 < recent);
    let hours = || async {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM _timescaledb_internal.{}",
            materialization(pg).await
        )))
        .fetch_one(pg.pool())
        .await
        .unwrap()
    };
    assert_eq!(hours().await, 0);
    let compressed = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM timescaledb_information.chunks \
             WHERE hypertable_name = 'readings' AND is_compressed",
        )
        .fetch_one(pg.pool())
        .await
        .unwrap()
    };
    assert_eq!(compressed().await, 0);

    let health = pg.check_policies(now).await.unwrap();
    assert!(health.ok, "{health:#?}");
    assert!(health.jobs.iter().all(|j| j.gridwatch_runs == 1), "{health:#?}");
    assert_eq!(compressed().await, 1, "the old chunk is compressed");
    assert!(
        hours().await >= 1,
        "the aggregate's refresh materialized the recent hour"
    );
    // Everything is still there.
    assert_eq!(store.reading_count().await.unwrap(), 3);
}

async fn materialization(pg: &PgStore) -> String {
    sqlx::query_scalar(
        "SELECT materialization_hypertable_name::text FROM timescaledb_information.continuous_aggregates \
         WHERE view_name = 'readings_hourly'",
    )
    .fetch_one(pg.pool())
    .await
    .unwrap()
}
