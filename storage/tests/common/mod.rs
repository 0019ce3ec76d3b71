//! What the storage suites share: a fresh database per test on each backend, and
//! readings to store.
#![allow(dead_code, unreachable_pub)] // each suite uses its own part

use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::{DeviceId, Envelope, LiftStatus};
use gridwatch_storage::Store;
use gridwatch_storage::model::Accepted;
use std::sync::atomic::{AtomicU32, Ordering};

/// Device time of the first reading in these tests: 2025-11-25T09:00:00Z.
pub const T0: u64 = 1_764_061_200_000;

/// Runs each named `async fn(Backend)` as a test on SQLite, one on PostgreSQL and
/// one on TimescaleDB (skipped, saying so, without `GRIDWATCH_TEST_TIMESCALE_URL`).
#[macro_export]
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Backend::Postgres).await
                }
            )*
        }
        mod timescale {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if $crate::common::timescale_server(stringify!($test)).is_some() {
                        super::$test($crate::common::Backend::Timescale).await
                    }
                }
            )*
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// The server of `GRIDWATCH_TEST_PG`, whatever it has: the store decides the layout.
    Postgres,
    /// A server that preloads TimescaleDB (`GRIDWATCH_TEST_TIMESCALE_URL`).
    Timescale,
}

/// The variable naming a PostgreSQL server that preloads TimescaleDB (`scripts/test`
/// starts one and sets it).
pub const TIMESCALE_VAR: &str = "GRIDWATCH_TEST_TIMESCALE_URL";

/// The TimescaleDB server's URL without a database, or `None` after printing that
/// `test` is skipped and why: a skip is said, never passed in silence.
pub fn timescale_server(test: &str) -> Option<String> {
    match std::env::var(TIMESCALE_VAR) {
        Ok(url) if !url.is_empty() => Some(server_of(&url)),
        _ => {
            eprintln!(
                "SKIPPED {test} on TimescaleDB: {TIMESCALE_VAR} is not set. scripts/test sets it after \
                 starting a PostgreSQL that preloads TimescaleDB (../shared/tools/timescaledb.sh), or set it \
                 to such a server, e.g. postgres://postgres@127.0.0.1:55433 (docs/storage.md)"
            );
            None
        }
    }
}

/// `postgres://user@host:port/db?x` without its database and parameters.
fn server_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_len = rest.find(['/', '?']).unwrap_or(rest.len());
    url[..url.len() - rest.len() + host_len].to_string()
}

/// A fresh, empty database for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    /// The PostgreSQL database to drop, and the server to drop it on.
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

pub fn pg_server() -> String {
    std::env::var("GRIDWATCH_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                TestDb {
                    url: format!("sqlite://{}", dir.path().join("gridwatch.db").display()),
                    postgres: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres | Backend::Timescale => {
                let server = if backend == Backend::Timescale {
                    timescale_server("this test").expect("a TimescaleDB server")
                } else {
                    pg_server()
                };
                let name = unique("gridwatch_test");
                let admin = format!("{server}/postgres");
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "the PostgreSQL conformance tests need a server at {server} \
                             (set GRIDWATCH_TEST_PG to another one); connecting failed: {e}"
                        )
                    });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("creating test database {name} on {server}: {e}"));
                TestDb {
                    url: format!("{server}/{name}"),
                    postgres: Some((server, name)),
                    _dir: None,
                }
            }
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("opening {}: {e:#}", self.url))
    }

    /// [`TestDb::open`] with store options.
    pub async fn open_with(&self, options: &gridwatch_storage::StoreOptions) -> Store {
        Store::open_with(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("opening {}: {e:#}", self.url))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime (maybe while unwinding), so the
        // database is dropped from a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{server}/postgres")).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test database: {dropped:?}");
        }
    }
}

// ---------------------------------------------------------------- readings

pub fn id(device: &str) -> DeviceId {
    DeviceId::try_from(device).unwrap()
}

pub fn lift_status(floor: i16) -> LiftStatus {
    LiftStatus::at_rest(floor)
}

/// Lift status `seq` of `device`, at device time T0 + seq seconds, on floor `seq`.
pub fn lift(device: &str, seq: u64) -> Accepted {
    lift_at(device, seq, T0 + seq * 1000)
}

pub fn lift_at(device: &str, seq: u64, ts: u64) -> Accepted {
    Accepted {
        gateway: "gw-t".into(),
        reading: Reading::Lift(Envelope::new(id(device), seq, ts, lift_status((seq % 100) as i16))),
    }
}

/// Runs `$body` with `$pool` bound to the store's pool, whatever the backend.
#[macro_export]
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            gridwatch_storage::Store::Sqlite(s) => {
                let $pool = s.pool();
                $body
            }
            gridwatch_storage::Store::Postgres(s) => {
                let $pool = s.pool();
                $body
            }
        }
    };
}

/// Runs one statement on the store's own database, outside ingest.
pub async fn execute(store: &Store, sql: &'static str) {
    match store {
        Store::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ()),
        Store::Postgres(p) => sqlx::query(sql).execute(p.pool()).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The alert engine and cases over `store`, as ingest loads them at start-up.
pub async fn alerting_on(store: &Store) -> gridwatch_domain::Alerting {
    gridwatch_domain::load(store, gridwatch_domain::DomainConfig::default())
        .await
        .unwrap()
}
