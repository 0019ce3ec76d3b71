//! The database's own write limit and a check of what was stored, for
//! `gridwatch bench ingest`: the same readings written by the fastest path the
//! database offers, with nothing else in the way (no broker, no parsing, no acks,
//! no device state), into an empty `readings` table.
//!
//! - PostgreSQL: one binary COPY of every row in one transaction, encoded beforehand;
//! - SQLite: multi-row INSERTs of 500 rows in one transaction, on the store's
//!   writer connection (its page cache and checkpointing, as ingest writes).
use anyhow::Result;
use gridwatch_storage::model::Accepted;
use gridwatch_storage::pg_copy::{CopyRows, HEADER, TRAILER};
use gridwatch_storage::{Store, sqlite};
use std::time::{Duration, Instant};

/// Rows per COPY message (about 3 MB).
const CHUNK: usize = 10_000;

/// Readings made ready for [`measure`], so that their preparation is not timed.
pub(super) enum Prepared {
    /// Binary COPY rows in chunks (PostgreSQL).
    Copy { chunks: Vec<Vec<u8>>, rows: u64 },
    /// The readings themselves (SQLite binds them).
    Rows(Vec<Accepted>),
}

pub(super) fn prepare(store: &Store, readings: impl Iterator<Item = Accepted>) -> Prepared {
    match store {
        Store::Postgres(_) => {
            let received_at = gridwatch_storage::model::now_ms();
            let mut chunks = Vec::new();
            let mut rows = 0;
            let mut chunk = CopyRows::with_capacity(CHUNK);
            for a in readings {
                chunk.push(&a, received_at);
                if chunk.rows() == CHUNK {
                    rows += CHUNK as u64;
                    chunks.push(std::mem::replace(&mut chunk, CopyRows::with_capacity(CHUNK)).into_rows());
                }
            }
            rows += chunk.rows() as u64;
            chunks.push(chunk.into_rows());
            Prepared::Copy { chunks, rows }
        }
        Store::Sqlite(_) => Prepared::Rows(readings.collect()),
    }
}

/// Writes the prepared readings into `readings`, returning the rows and the time
/// from the start of the transaction to its commit.
pub(super) async fn measure(store: &Store, prepared: &Prepared) -> Result<(u64, Duration)> {
    let started = Instant::now();
    let rows = match (store, prepared) {
        (Store::Postgres(pg), Prepared::Copy { chunks, rows }) => {
            let mut tx = pg.pool().begin().await?;
            let mut copy = tx.copy_in_raw(gridwatch_storage::postgres::COPY_READINGS).await?;
            copy.send(&HEADER[..]).await?;
            for chunk in chunks {
                copy.send(chunk.as_slice()).await?;
            }
            copy.send(&TRAILER[..]).await?;
            copy.finish().await?;
            tx.commit().await?;
            *rows
        }
        (Store::Sqlite(sqlite), Prepared::Rows(readings)) => {
            let now = gridwatch_storage::model::now_ms();
            let mut tx = sqlite.writer().begin_with("BEGIN IMMEDIATE").await?;
            // The statements ingest uses, without its conflict clause (the table is empty).
            let all: Vec<usize> = (0..readings.len()).collect();
            for chunk in all.chunks(500) {
                let mut sql = String::new();
                sqlite::push_insert(&mut sql, "readings_settled", chunk.len());
                sqlite::bind_readings(sqlx::query(sqlx::AssertSqlSafe(sql)), readings, chunk, now)?
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            readings.len() as u64
        }
        _ => anyhow::bail!("readings prepared for another backend"),
    };
    Ok((rows, started.elapsed()))
}

/// Rows in `readings`, and distinct `(device_id, seq)` among them: their
/// difference is readings stored twice.
pub(super) async fn stored(store: &Store) -> Result<(i64, i64)> {
    const SQL: &str = "SELECT COUNT(*), COUNT(DISTINCT device_id || '/' || seq) FROM readings";
    Ok(match store {
        Store::Postgres(pg) => sqlx::query_as(SQL).fetch_one(pg.pool()).await?,
        Store::Sqlite(sqlite) => sqlx::query_as(SQL).fetch_one(sqlite.pool()).await?,
    })
}

/// Asks PostgreSQL to write out dirty pages now, so that a checkpoint does not
/// land in the middle of a measurement (needs superuser or pg_checkpoint; skipped otherwise).
pub(super) async fn checkpoint(store: &Store) {
    if let Store::Postgres(pg) = store
        && let Err(e) = sqlx::query("CHECKPOINT").execute(pg.pool()).await
    {
        tracing::debug!(error = %e, "CHECKPOINT not allowed; measuring without");
    }
}

/// Creates database `name` on the PostgreSQL server of `server_url` and returns
/// its URL (the server URL with the database replaced).
pub(super) async fn create_database(server_url: &str, name: &str) -> Result<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    Ok(with_database(server_url, name))
}

/// Drops database `name` on the server of `server_url`, closing its sessions.
pub(super) async fn drop_database(server_url: &str, name: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// `url` naming database `name` instead of its own.
pub(super) fn with_database(url: &str, name: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_at = scheme_end + 3;
    let path_at = url[rest_at..].find(['/', '?']).map_or(url.len(), |i| rest_at + i);
    let query_at = url[path_at..].find('?').map_or(url.len(), |i| path_at + i);
    format!("{}/{name}{}", &url[..path_at], &url[query_at..])
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "b1"),
            "postgres://u@h:5432/b1"
        );
        assert_eq!(
            with_database("postgres:///postgres?host=/var/run/postgresql&user=postgres", "b1"),
            "postgres:///b1?host=/var/run/postgresql&user=postgres"
        );
        assert_eq!(with_database("postgres://h", "b1"), "postgres://h/b1");
        assert_eq!(
            with_database("postgres://h?sslmode=disable", "b1"),
            "postgres://h/b1?sslmode=disable"
        );
    }
}
