//! Storage behind one type, whatever the backend, chosen by the database URL:
//! SQLite ([`sqlite`], the embedded default) or PostgreSQL ([`postgres`], with
//! TimescaleDB when the server has it, see [`timescale`] and [`partitions`]).
//!
//! Every write of a batch is one transaction: readings (idempotent on
//! `(device_id, seq, ts)`) and quarantined input. The latest state per device
//! is written behind them, every five seconds ([`latest`]).
//! Acknowledgements are sent only after [`Store::commit`] returns.
//! The domain tables (alerts, cases, register, the engine's checkpoint) are
//! written by [`domain`] and read by [`query`]; [`feed`] is the ordered log of
//! their changes that the live feed reads.
//! `tests/storage_conformance.rs` runs the same tests against every backend.

/// Runs `$body` with `$pool` bound to the store's connection pool, whatever the
/// backend: one SQL text (`$n` placeholders in order, portable upserts) serves both.
/// `with_pool!(store, writer, |pool| ...)` binds the pool for writes instead.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        with_pool!($store, pool, |$pool| $body)
    };
    ($store:expr, $which:ident, |$pool:ident| $body:expr) => {
        match $store {
            crate::Store::Sqlite(s) => {
                let $pool = s.$which();
                $body
            }
            crate::Store::Postgres(s) => {
                let $pool = s.$which();
                $body
            }
        }
    };
}

pub mod domain;
mod error;
pub mod events;
pub mod feed;
pub mod history;
mod latest;
pub mod model;
mod partitions;
pub mod pg_copy;
pub mod postgres;
pub mod query;
pub mod retention;
mod retry;
pub mod settle;
mod settled_tops;
pub mod sqlite;
pub mod thread_priority;
mod timescale;
pub mod timescale_jobs;
mod url;
pub mod webhooks;

pub use error::{Error, ErrorClass, Result, Verdict, classify_sqlx};
pub use retry::{OTHER_TRIES, Retried, retry, retry_classified};
pub use timescale::TimescaleMode;
pub use timescale_jobs::{JobRuns, PolicyHealth};
pub use url::redact_url;

use crate::model::*;
use serde::Serialize;
use sqlx::Row;
use std::path::Path;

const SELECT_DEVICES: &str =
    "SELECT device_id, kind, gateway, last_seq, last_ts, last_body FROM devices ORDER BY device_id";
const SELECT_DEVICE: &str =
    "SELECT device_id, kind, gateway, last_seq, last_ts, last_body FROM devices WHERE device_id = $1";

/// A [`DeviceRow`] from a row of [`SELECT_DEVICES`] on either backend.
macro_rules! device_row {
    ($r:expr) => {
        DeviceRow {
            device_id: $r.get("device_id"),
            kind: $r.get("kind"),
            gateway: $r.get("gateway"),
            last_seq: $r.get("last_seq"),
            last_seen: rfc3339($r.get("last_ts")),
            last_state: serde_json::from_str($r.get("last_body")).unwrap_or_default(),
        }
    };
}

#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// What a commit did, by index into the accepted readings (in input order).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Readings new to the store: only these reach the alert engine.
    pub new: Vec<usize>,
    /// Readings the database could not keep (see [`unstorable`]), put into the
    /// quarantine in the same transaction instead of failing their batch.
    pub quarantined: Vec<usize>,
}

/// One stored reading, as history queries return it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadingRow {
    pub device_id: String,
    pub seq: i64,
    /// Device time, ms since the Unix epoch.
    pub ts_ms: i64,
    pub kind: String,
    pub gateway: String,
    /// The whole reading as stored (tagged JSON: `{"kind":..,"v":1,"device":..,"body":{..}}`).
    pub reading: serde_json::Value,
}

/// How many readings of one kind are stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KindCount {
    pub kind: String,
    pub readings: i64,
}

/// The file of a `sqlite://PATH` (or `sqlite:PATH`) URL.
fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))
}

/// Whether `url` names an SQLite database.
pub fn is_sqlite(url: &str) -> bool {
    sqlite_path(url).is_some()
}

/// How a PostgreSQL store uses TimescaleDB (SQLite ignores these).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Whether `readings` is a hypertable (`--timescale`).
    pub timescale: TimescaleMode,
    /// Whether gridwatch runs TimescaleDB's jobs itself (`--timescale-jobs`).
    pub job_runs: JobRuns,
    /// How often the jobs' state is read (and due jobs run).
    pub check_jobs_every: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            timescale: TimescaleMode::Auto,
            job_runs: JobRuns::Auto,
            check_jobs_every: timescale_jobs::CHECK_EVERY,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs migrations.
    /// `sqlite://PATH` (or `sqlite:PATH`) is SQLite; `postgres://...` or
    /// `postgresql://...` is PostgreSQL, e.g. `postgres:///gridwatch?host=/var/run/postgresql`.
    pub async fn open(url: &str) -> Result<Store> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    /// [`Store::open`] with options for PostgreSQL.
    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Store> {
        if let Some(path) = sqlite_path(url) {
            return Ok(Store::Sqlite(sqlite::SqliteStore::open(Path::new(path)).await?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Store::Postgres(postgres::PgStore::open_with(url, options).await?));
        }
        Err(Error::Url {
            url: redact_url(url),
            problem: "expected sqlite://PATH or postgres://[user[:password]@]host[:port]/database".into(),
        })
    }

    /// Which backend this is, for logs and reports.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// The health of TimescaleDB's jobs; `None` on other layouts and before the first check.
    pub fn policy_health(&self) -> Option<PolicyHealth> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(s) => s.policy_health(),
        }
    }

    /// How many batches may be committing at once. PostgreSQL overlaps one
    /// batch's commit (WAL flush) with the next batch's COPY. SQLite has one
    /// writer: a second batch would only wait for it, closed, while the batch
    /// being gathered could still grow (the pipeline closes it when a commit can
    /// start). Direct benchmark, alternating runs: mean 79.5k msg/s one at a time
    /// against 75.0k with a second one waiting, a lower and steadier p99 (0.65-0.74 s
    /// against 0.66-0.90 s) and peak RSS (at most 122.7 MiB against 127.3).
    pub fn max_concurrent_commits(&self) -> usize {
        match self {
            Store::Sqlite(_) => 1,
            Store::Postgres(_) => 4,
        }
    }

    /// Stores a batch in one transaction: new readings and the quarantine (refused
    /// input and readings the database cannot hold). The batch's device states
    /// are written behind ([`latest`]); reads see them at once.
    pub async fn commit(&self, accepted: &[Accepted], refused: &[Refused]) -> Result<Committed> {
        let committed = match self {
            Store::Sqlite(s) => s.commit(accepted, refused).await,
            Store::Postgres(s) => s.commit(accepted, refused).await,
        }?;
        if !refused.is_empty() || !committed.quarantined.is_empty() {
            // After the commit, so the batch and its acks never wait on it; a failure
            // leaves the quarantine over its bound until the next batch that adds to it.
            if let Err(e) = self.bound_quarantine().await {
                tracing::warn!(error = %e, "quarantine not trimmed to its bound");
            }
        }
        Ok(committed)
    }

    /// Writes the device states committed since the last flush (done every
    /// second in the background; call it before stopping).
    pub async fn flush_states(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.flush_states().await,
            Store::Postgres(s) => s.flush_states().await,
        }
    }

    /// Latest known state of every device, by device id: the `devices` table with
    /// the states not written yet laid over it.
    pub async fn devices(&self) -> Result<Vec<DeviceRow>> {
        // Before the read: see `Pending::states`.
        let pending = match self {
            Store::Sqlite(s) => s.pending_states().states(),
            Store::Postgres(s) => s.pending_states().states(),
        };
        let mut devices: Vec<DeviceRow> = with_pool!(self, |pool| {
            sqlx::query(SELECT_DEVICES)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| device_row!(r))
                .collect()
        });
        latest::overlay(pending, &mut devices);
        Ok(devices)
    }

    /// Latest known state of one device, as [`Store::devices`] has it.
    pub async fn device(&self, id: &str) -> Result<Option<DeviceRow>> {
        let pending = match self {
            Store::Sqlite(s) => s.pending_states().state(id),
            Store::Postgres(s) => s.pending_states().state(id),
        };
        let mut device: Vec<DeviceRow> = with_pool!(self, |pool| {
            sqlx::query(SELECT_DEVICE)
                .bind(id)
                .fetch_optional(pool)
                .await?
                .iter()
                .map(|r| device_row!(r))
                .collect()
        });
        latest::overlay(pending.into_iter().collect(), &mut device);
        Ok(device.pop())
    }

    /// Readings of one device with `from_ms <= ts < to_ms` (device time), oldest
    /// first, at most `limit`.
    pub async fn history(&self, device: &str, from_ms: i64, to_ms: i64, limit: i64) -> Result<Vec<ReadingRow>> {
        match self {
            Store::Sqlite(s) => s.history(device, from_ms, to_ms, limit).await,
            Store::Postgres(s) => s.history(device, from_ms, to_ms, limit).await,
        }
    }

    /// Readings per kind with device time at or after `since_ms`, by kind.
    pub async fn counts_per_kind(&self, since_ms: i64) -> Result<Vec<KindCount>> {
        match self {
            Store::Sqlite(s) => s.counts_per_kind(since_ms).await,
            Store::Postgres(s) => s.counts_per_kind(since_ms).await,
        }
    }

    /// Quarantine entries newest first, older than the entry `after` when given, at most
    /// `limit`; each payload cut to its first `payload_bytes` bytes (the row gives the
    /// whole length), so a page's size is bounded whatever was quarantined.
    pub async fn quarantine(&self, after: Option<i64>, limit: i64, payload_bytes: i32) -> Result<Vec<QuarantineRow>> {
        Ok(with_pool!(self, |pool| {
            sqlx::query(
                "SELECT id, received_at, source, reason, detail, substr(payload, 1, $1) AS head, \
                 CAST(length(payload) AS BIGINT) AS payload_bytes \
                 FROM quarantine WHERE id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(payload_bytes.max(0))
            .bind(after.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let head = r.get::<&[u8], _>("head");
                let payload_bytes: i64 = r.get("payload_bytes");
                QuarantineRow {
                    id: r.get("id"),
                    received_at: rfc3339(r.get("received_at")),
                    source: r.get("source"),
                    reason: r.get("reason"),
                    detail: r.get("detail"),
                    payload_truncated: (head.len() as i64) < payload_bytes,
                    payload: String::from_utf8_lossy(head).into_owned(),
                    payload_bytes,
                }
            })
            .collect()
        }))
    }

    /// Drops the oldest quarantine entries beyond [`QUARANTINE_MAX_ROWS`] rows or
    /// [`QUARANTINE_MAX_BYTES`] bytes of payload, counting them in
    /// `gridwatch_quarantine_dropped_total`; returns how many it dropped.
    pub async fn bound_quarantine(&self) -> Result<u64> {
        self.bound_quarantine_to(QUARANTINE_MAX_ROWS, QUARANTINE_MAX_BYTES)
            .await
    }

    /// [`Store::bound_quarantine`] with other bounds.
    pub async fn bound_quarantine_to(&self, max_rows: i64, max_bytes: i64) -> Result<u64> {
        // The newest entry that no longer fits, counting rows and bytes from the newest;
        // it and everything older go. Reads only the ids and lengths of the kept rows.
        let dropped = with_pool!(self, writer, |pool| {
            sqlx::query(
                "DELETE FROM quarantine WHERE id <= (SELECT max(id) FROM (\
                 SELECT id, count(*) OVER w AS n, sum(length(payload)) OVER w AS bytes FROM quarantine \
                 WINDOW w AS (ORDER BY id DESC)) kept WHERE n > $1 OR bytes > $2)",
            )
            .bind(max_rows)
            .bind(max_bytes)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if dropped > 0 {
            static DESCRIBED: std::sync::Once = std::sync::Once::new();
            DESCRIBED.call_once(|| {
                metrics::describe_counter!(
                    "gridwatch_quarantine_dropped_total",
                    "Oldest quarantine entries dropped to keep the quarantine within its bound"
                );
            });
            metrics::counter!("gridwatch_quarantine_dropped_total").increment(dropped);
        }
        Ok(dropped)
    }

    pub async fn reading_count(&self) -> Result<i64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT count(*) FROM readings")
                .fetch_one(pool)
                .await?
        }))
    }
}

/// The most quarantine entries kept ([`Store::bound_quarantine`]).
pub const QUARANTINE_MAX_ROWS: i64 = 10_000;
/// The most quarantine payload bytes kept: 64 MiB.
pub const QUARANTINE_MAX_BYTES: i64 = 64 * 1024 * 1024;

/// The quarantine reason for a reading that passed validation but cannot be stored.
pub const UNSTORABLE: &str = "unstorable";

/// Why `a` cannot be stored in any backend, if it cannot: the protocol allows any
/// `u64` seq, every database column is a signed 64-bit integer.
pub fn unstorable(a: &Accepted) -> Option<String> {
    let r = &a.reading;
    if i64::try_from(r.seq()).is_err() {
        return Some(format!("seq {} exceeds the largest storable seq {}", r.seq(), i64::MAX));
    }
    if i64::try_from(r.ts()).is_err() {
        return Some(format!(
            "ts {} exceeds the largest storable time {} ms",
            r.ts(),
            i64::MAX
        ));
    }
    None
}

/// A reading the database refused, as a quarantine entry: the reading itself is
/// the payload, its source the topic it would have arrived on from a node.
pub fn quarantine_entry(a: &Accepted, detail: String) -> Refused {
    metrics::counter!("gridwatch_ingest_rejected_total", "reason" => UNSTORABLE).increment(1);
    let r = &a.reading;
    Refused {
        source: format!("gw/{}/dev/{}/{}", a.gateway, r.device(), r.kind().as_str()),
        reason: UNSTORABLE,
        detail,
        payload: serde_json::to_vec(r).unwrap_or_default(),
    }
}

/// One row of the `devices` table to write.
#[derive(Debug)]
pub struct DeviceState<'a> {
    pub device: &'a str,
    pub kind: &'static str,
    pub gateway: &'a str,
    pub seq: i64,
    pub ts: i64,
    /// The status body as JSON.
    pub body: std::borrow::Cow<'a, str>,
}

/// `rows` in statements of `most` rows, the rest in powers of two: a few
/// statement shapes, each prepared once and cached per connection, whatever the
/// batch sizes (a statement of every size would churn the statement cache).
pub(crate) fn statement_chunks<T>(rows: &[T], most: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= most {
            most
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// Splits a batch into what can be stored and what goes to quarantine: the
/// refused input plus readings no database can hold.
pub(crate) fn plan_batch(accepted: &[Accepted], refused: &[Refused]) -> (Vec<usize>, Vec<usize>, Vec<Refused>) {
    let mut storable = Vec::with_capacity(accepted.len());
    let mut unstorable_rows = Vec::new();
    let mut quarantine = refused.to_vec();
    for (i, a) in accepted.iter().enumerate() {
        match unstorable(a) {
            None => storable.push(i),
            Some(why) => {
                unstorable_rows.push(i);
                quarantine.push(quarantine_entry(a, why));
            }
        }
    }
    (storable, unstorable_rows, quarantine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_come_in_a_few_sizes() {
        let rows: Vec<u32> = (0..1234).collect();
        let sizes: Vec<usize> = statement_chunks(&rows, 500).map(<[u32]>::len).collect();
        assert_eq!(sizes, [500, 500, 128, 64, 32, 8, 2]);
        let all: Vec<u32> = statement_chunks(&rows, 500).flatten().copied().collect();
        assert_eq!(all, rows);
        assert_eq!(statement_chunks(&rows[..0], 500).count(), 0);
    }
}
