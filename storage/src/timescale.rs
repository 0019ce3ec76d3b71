//! The TimescaleDB path of the PostgreSQL store: detection at start-up, the
//! decision to use it (`--timescale auto|on|off`), and the hypertable set-up.
//! Needs TimescaleDB 2.13 or later (the generalized `create_hypertable` with
//! `by_range`). The storage conformance suite runs it against a TimescaleDB
//! server (`GRIDWATCH_TEST_TIMESCALE_URL`, set by `scripts/test`); the policies'
//! health is watched by [`crate::timescale_jobs`].
//!
//! Facts this module is built on (design.md, "Storage"):
//! - `CREATE EXTENSION timescaledb` on a server that does not preload the library
//!   kills the connection, so it is only tried when `shared_preload_libraries`
//!   names it;
//! - every unique key of a hypertable must contain the time column: the key
//!   `(device_id, ts, seq)` of the migration does;
//! - continuous aggregates are created `WITH NO DATA` (creating one with data, and
//!   refreshing one, fail inside a transaction) and refreshed outside transactions,
//!   never up to the unfinished current bucket.
use crate::error::{Doing, Error, Result};
use sqlx::PgPool;
use std::time::Duration;

/// The oldest TimescaleDB gridwatch sets up (`create_hypertable(..., by_range(...))`).
pub(crate) const OLDEST_SUPPORTED: (u32, u32) = (2, 13);

/// Whether a PostgreSQL database uses TimescaleDB (`gridwatch ingest --timescale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimescaleMode {
    /// Where the server preloads it: a hypertable; elsewhere native partitions.
    #[default]
    Auto,
    /// A hypertable, or a clear error saying what the server lacks.
    On,
    /// Native partitions, even where the server preloads TimescaleDB: the
    /// extension is not created. A `readings` already made a hypertable stays one.
    Off,
}

impl std::str::FromStr for TimescaleMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            _ => Err(format!("{s:?}: expected auto, on or off")),
        }
    }
}

impl std::fmt::Display for TimescaleMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// What the server offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Support {
    /// `CREATE EXTENSION` has run in this database: the installed version.
    pub installed: Option<String>,
    /// `shared_preload_libraries` names timescaledb (a requirement of the extension).
    pub preloaded: bool,
    /// The extension's files are on the server.
    pub available: bool,
}

impl Support {
    /// Whether the extension may be created here without harm.
    pub(crate) fn can_install(&self) -> bool {
        self.installed.is_none() && self.preloaded && self.available
    }
}

/// What the store does with `readings`, decided from the server and the mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A hypertable; `install`: run `CREATE EXTENSION` first.
    Hypertable { install: bool },
    /// Native partitions, for this reason (logged).
    Native(&'static str),
}

/// Decides, before anything of the extension is touched: in a database that has
/// the extension, the first use of it on a server that does not preload the
/// library ends the session (`FATAL: extension "timescaledb" must be preloaded`),
/// which a client only sees as a lost connection.
pub(crate) fn decide(support: &Support, mode: TimescaleMode) -> Result<Decision> {
    if let Some(version) = &support.installed {
        if !support.preloaded {
            return Err(Error::Layout(format!(
                "this database has the TimescaleDB extension (version {version}) but the server does not \
                 preload its library, and without it every use of the extension ends the connection: add \
                 timescaledb to shared_preload_libraries in postgresql.conf and restart PostgreSQL \
                 (or, if this database should not use TimescaleDB, DROP EXTENSION timescaledb CASCADE, \
                 which drops a readings hypertable with it)"
            )));
        }
        if !supported(version) {
            let (major, minor) = OLDEST_SUPPORTED;
            return Err(Error::Layout(format!(
                "this database has TimescaleDB {version}, older than {major}.{minor}, the oldest gridwatch \
                 sets up: install a newer TimescaleDB package, restart PostgreSQL, then run \
                 ALTER EXTENSION timescaledb UPDATE in this database"
            )));
        }
    }
    Ok(match mode {
        TimescaleMode::Off => Decision::Native("--timescale off"),
        _ if support.installed.is_some() => Decision::Hypertable { install: false },
        _ if support.can_install() => Decision::Hypertable { install: true },
        TimescaleMode::On if support.available => {
            return Err(Error::Layout(
                "--timescale on, but the server does not preload TimescaleDB: add timescaledb to \
                 shared_preload_libraries in postgresql.conf and restart PostgreSQL"
                    .into(),
            ));
        }
        TimescaleMode::On => {
            return Err(Error::Layout(
                "--timescale on, but TimescaleDB is not installed on the server: install Timescale's \
                 package for this PostgreSQL version (docs/storage.md), preload it and restart PostgreSQL"
                    .into(),
            ));
        }
        TimescaleMode::Auto if support.available => {
            Decision::Native("TimescaleDB not preloaded (shared_preload_libraries)")
        }
        TimescaleMode::Auto => Decision::Native("TimescaleDB not installed"),
    })
}

/// Whether an installed version (`2.28.3`, `2.14.0-dev`) is at least [`OLDEST_SUPPORTED`].
fn supported(version: &str) -> bool {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= OLDEST_SUPPORTED
}

/// Policies of the hypertable (and of the native partitions, where they apply).
#[derive(Debug, Clone)]
pub(crate) struct Policies {
    /// Chunk (and native partition) width.
    pub chunk: Duration,
    /// Compress chunks older than this: after the longest expected replay
    /// window, since late rows into compressed chunks are slow.
    pub compress_after: Duration,
    /// Drop chunks older than this.
    pub retention: Duration,
}

impl Default for Policies {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            chunk: Duration::from_secs(DAY),
            compress_after: Duration::from_secs(7 * DAY),
            retention: Duration::from_secs(730 * DAY),
        }
    }
}

/// Reads what the server offers, without changing anything.
pub(crate) async fn detect(pool: &PgPool) -> Result<Support> {
    let installed: Option<String> =
        sqlx::query_scalar("SELECT extversion::text FROM pg_extension WHERE extname = 'timescaledb'")
            .fetch_optional(pool)
            .await
            .doing("reading pg_extension")?;
    let preload: String = sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
        .fetch_one(pool)
        .await
        .doing("reading shared_preload_libraries")?;
    let available: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')")
            .fetch_one(pool)
            .await
            .doing("reading pg_available_extensions")?;
    Ok(Support {
        installed,
        preloaded: preloads_timescale(&preload),
        available,
    })
}

/// Whether a `shared_preload_libraries` value names timescaledb (entries may be
/// quoted or paths, e.g. `'pg_stat_statements, timescaledb'` or `$libdir/timescaledb`).
pub(crate) fn preloads_timescale(setting: &str) -> bool {
    setting.split(',').any(|entry| {
        let name = entry.trim().trim_matches('"');
        let name = name.rsplit('/').next().unwrap_or(name);
        name == "timescaledb" || name.starts_with("timescaledb-")
    })
}

/// Creates the extension in this database. Only call when [`Support::can_install`].
pub(crate) async fn install(pool: &PgPool) -> Result<String> {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .execute(pool)
        .await
        .doing("CREATE EXTENSION timescaledb")?;
    let version: String = sqlx::query_scalar("SELECT extversion::text FROM pg_extension WHERE extname = 'timescaledb'")
        .fetch_one(pool)
        .await?;
    Ok(version)
}

/// Whether `readings` already is a hypertable.
pub(crate) async fn is_hypertable(pool: &PgPool) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables \
         WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings')",
    )
    .fetch_one(pool)
    .await?)
}

/// Tries of [`set_up`] that the database aborted to break a deadlock or a lock wait.
const SET_UP_TRIES: u32 = 5;

/// Turns the migrated plain `readings` table into a hypertable with compression,
/// retention and a continuous aggregate for charts. Idempotent: every step is
/// skipped when already done, so it runs at every start-up.
///
/// Its DDL locks the hypertable and its chunks while TimescaleDB's own background
/// jobs may be working on them (a new database's first policy runs, a previous
/// store's maintenance): PostgreSQL then breaks a deadlock by aborting one side,
/// sometimes ours. Being idempotent, the set-up is simply tried again.
pub(crate) async fn set_up(pool: &PgPool, policies: &Policies) -> Result<()> {
    let mut tries = 1;
    loop {
        match set_up_once(pool, policies).await {
            Err(e) if e.class() == crate::ErrorClass::Busy && tries < SET_UP_TRIES => {
                tracing::warn!(error = %e, tries, "setting up the readings hypertable was aborted by a lock; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(tries))).await;
                tries += 1;
            }
            done => return done,
        }
    }
}

async fn set_up_once(pool: &PgPool, policies: &Policies) -> Result<()> {
    let chunk = interval(policies.chunk);
    // migrate_data: a process may have died between the migration and this call
    // after rows arrived; they move into chunks. No default indexes: the key
    // (device_id, ts, seq) serves every read, and the default (ts DESC) index
    // cost 10-20 % of COPY's time (psql, 500k rows).
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT create_hypertable('readings', by_range('ts', INTERVAL '{chunk}'), \
         create_default_indexes => FALSE, if_not_exists => TRUE, migrate_data => TRUE)"
    )))
    .execute(pool)
    .await
    .doing("create_hypertable(readings)")?;
    // Made by earlier versions of this set-up. Dropped only where it exists: even a
    // DROP INDEX IF EXISTS of a missing index locks the hypertable.
    let old_index: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'readings_ts_idx')",
    )
    .fetch_one(pool)
    .await
    .doing("looking for the index readings_ts_idx")?;
    if old_index {
        sqlx::query("DROP INDEX readings_ts_idx")
            .execute(pool)
            .await
            .doing("dropping the index readings_ts_idx")?;
    }

    let compressed: bool = sqlx::query_scalar(
        "SELECT compression_enabled FROM timescaledb_information.hypertables \
         WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings'",
    )
    .fetch_one(pool)
    .await?;
    if !compressed {
        // One device's rows together, newest first: how history is read.
        sqlx::query(
            "ALTER TABLE readings SET (timescaledb.compress, \
             timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC, seq DESC')",
        )
        .execute(pool)
        .await
        .doing("enabling compression on readings")?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT add_compression_policy('readings', compress_after => INTERVAL '{}', if_not_exists => TRUE)",
        interval(policies.compress_after)
    )))
    .execute(pool)
    .await
    .doing("add_compression_policy(readings)")?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT add_retention_policy('readings', drop_after => INTERVAL '{}', if_not_exists => TRUE)",
        interval(policies.retention)
    )))
    .execute(pool)
    .await
    .doing("add_retention_policy(readings)")?;

    // Charts: the hourly continuous aggregate the history API reads (its definition
    // and policy live with its reader, crate::history).
    crate::history::set_up_hourly(pool).await?;
    Ok(())
}

/// A duration as a PostgreSQL interval literal, in whole seconds.
fn interval(d: Duration) -> String {
    format!("{} seconds", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_shared_preload_libraries_in_its_forms() {
        assert!(preloads_timescale("timescaledb"));
        assert!(preloads_timescale("pg_stat_statements, timescaledb"));
        assert!(preloads_timescale("\"$libdir/timescaledb\""));
        assert!(preloads_timescale("timescaledb-2.28.0"));
        assert!(!preloads_timescale(""));
        assert!(!preloads_timescale("pg_stat_statements"));
        assert!(!preloads_timescale("timescaledb_toolkit"));
    }

    #[test]
    fn installs_only_where_preloaded_and_available() {
        let absent = Support {
            installed: None,
            preloaded: false,
            available: true,
        };
        assert!(!absent.can_install(), "never CREATE EXTENSION without the preload");
        let ready = Support {
            preloaded: true,
            ..absent.clone()
        };
        assert!(ready.can_install());
        let done = Support {
            installed: Some("2.28.0".into()),
            ..ready
        };
        assert!(!done.can_install());
    }

    fn support(installed: Option<&str>, preloaded: bool, available: bool) -> Support {
        Support {
            installed: installed.map(str::to_string),
            preloaded,
            available,
        }
    }

    #[test]
    fn an_installed_extension_the_server_does_not_preload_is_an_error_naming_the_fix() {
        for mode in [TimescaleMode::Auto, TimescaleMode::On, TimescaleMode::Off] {
            let e = decide(&support(Some("2.28.3"), false, true), mode)
                .unwrap_err()
                .to_string();
            assert!(e.contains("does not preload"), "{e}");
            assert!(e.contains("shared_preload_libraries"), "{e}");
        }
    }

    #[test]
    fn an_installed_extension_older_than_supported_is_an_error() {
        let e = decide(&support(Some("2.11.2"), true, true), TimescaleMode::Auto)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("older than 2.13") && e.contains("ALTER EXTENSION timescaledb UPDATE"),
            "{e}"
        );
        assert!(decide(&support(Some("2.13.0"), true, true), TimescaleMode::Auto).is_ok());
        assert!(decide(&support(Some("3.0.0-dev"), true, true), TimescaleMode::Auto).is_ok());
    }

    #[test]
    fn each_mode_decides_as_documented() {
        use Decision::*;
        use TimescaleMode::*;
        let ready = support(None, true, true);
        let installed = support(Some("2.28.3"), true, true);
        let not_preloaded = support(None, false, true);
        let absent = support(None, false, false);
        assert_eq!(decide(&ready, Auto).unwrap(), Hypertable { install: true });
        assert_eq!(decide(&ready, On).unwrap(), Hypertable { install: true });
        assert_eq!(decide(&ready, Off).unwrap(), Native("--timescale off"));
        for mode in [Auto, On] {
            assert_eq!(
                decide(&installed, mode).unwrap(),
                Hypertable { install: false },
                "{mode}"
            );
        }
        assert_eq!(decide(&installed, Off).unwrap(), Native("--timescale off"));
        assert!(matches!(decide(&not_preloaded, Auto).unwrap(), Native(why) if why.contains("not preloaded")));
        assert_eq!(decide(&absent, Auto).unwrap(), Native("TimescaleDB not installed"));
        assert_eq!(decide(&absent, Off).unwrap(), Native("--timescale off"));
        let e = decide(&not_preloaded, On).unwrap_err().to_string();
        assert!(
            e.contains("does not preload") && e.contains("shared_preload_libraries"),
            "{e}"
        );
        let e = decide(&absent, On).unwrap_err().to_string();
        assert!(e.contains("not installed"), "{e}");
        assert_eq!("off".parse::<TimescaleMode>(), Ok(Off));
        assert!("maybe".parse::<TimescaleMode>().is_err());
    }
}
