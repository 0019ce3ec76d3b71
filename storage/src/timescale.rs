//! The TimescaleDB path of the PostgreSQL store, and all of it: detection at
//! start-up and the hypertable set-up. Written against the TimescaleDB 2.x
//! documentation (the generalized `create_hypertable` with `by_range`, 2.13+;
//! compression settings and policies, retention policies, continuous
//! aggregates); not installed on the development machine, so run its ignored
//! test against a TimescaleDB server before relying on it (docs/storage.md).
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
use crate::error::{Doing, Result};
use sqlx::PgPool;
use std::time::Duration;

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

/// Name of the continuous aggregate behind the dashboard's charts.
pub(crate) const HOURLY_VIEW: &str = "readings_hourly";

/// Turns the migrated plain `readings` table into a hypertable with compression,
/// retention and a continuous aggregate for charts. Idempotent: every step is
/// skipped when already done, so it runs at every start-up.
pub(crate) async fn set_up(pool: &PgPool, policies: &Policies) -> Result<()> {
    let chunk = interval(policies.chunk);
    // migrate_data: a process may have died between the migration and this call
    // after rows arrived; they move into chunks.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT create_hypertable('readings', by_range('ts', INTERVAL '{chunk}'), \
         if_not_exists => TRUE, migrate_data => TRUE)"
    )))
    .execute(pool)
    .await
    .doing("create_hypertable(readings)")?;

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

    // Charts: readings per device and hour, with the sterilizer's peak
    // temperature; WITH NO DATA, the policy fills it outside any transaction.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {HOURLY_VIEW} WITH (timescaledb.continuous) AS \
         SELECT device_id, kind, time_bucket(INTERVAL '1 hour', ts) AS bucket, count(*) AS readings, \
                max(((body::jsonb) -> 'body' ->> 'temp_c')::real) AS max_temp_c \
         FROM readings GROUP BY device_id, kind, bucket WITH NO DATA"
    )))
    .execute(pool)
    .await
    .doing_with(|| format!("creating continuous aggregate {HOURLY_VIEW}"))?;
    // Refresh the last three days every 30 minutes, leaving out the current
    // (unfinished) hour.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT add_continuous_aggregate_policy('{HOURLY_VIEW}', start_offset => INTERVAL '3 days', \
         end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE)"
    )))
    .execute(pool)
    .await
    .doing_with(|| format!("add_continuous_aggregate_policy({HOURLY_VIEW})"))?;
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
}
