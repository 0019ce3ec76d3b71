//! The outbox on disk: `outbox.db` (SQLite, WAL, `synchronous=FULL`) in the data directory.
//!
//! One row per reading, numbered in arrival order (`id`), with its device, seq, origin and
//! its JSON as sent upstream; `devices` keeps the seq each node was last acknowledged up
//! to, so that a node's resend after a restart is answered with its ack, not stored twice.
//! Writes come in batches: the rows handed over since the last write and the rows ingest
//! has committed since, in one transaction.
use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    polled INTEGER NOT NULL,
    stored_at_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

#[derive(Debug, thiserror::Error)]
#[error("outbox database {}: {source}", path.display())]
pub struct StoreError {
    path: PathBuf,
    source: sqlx::Error,
}

#[derive(Clone)]
pub(crate) struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

/// What a previous run left on disk.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Highest seq acknowledged to each node.
    pub(crate) devices: HashMap<String, u64>,
    pub(crate) readings: u64,
    pub(crate) bytes: u64,
    /// Ids of the rows left, possibly with holes.
    pub(crate) ids: Range<i64>,
    /// This start's number, counted on disk: the high half of its batch numbers, so that
    /// an ack ingest sends late for a batch of an earlier run releases nothing of this one.
    pub(crate) run: u64,
}

/// A reading written to disk.
pub(crate) struct NewRow<'a> {
    pub(crate) id: i64,
    pub(crate) device: &'a str,
    pub(crate) seq: u64,
    pub(crate) polled: bool,
    pub(crate) json: &'a str,
}

impl Store {
    pub(crate) async fn open(dir: &Path) -> Result<(Store, Loaded), StoreError> {
        let path = dir.join("outbox.db");
        let fail = |source| StoreError {
            path: path.clone(),
            source,
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(fail(sqlx::Error::Io(e)));
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A reading is acknowledged to its node once written: the write must survive a power cut.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10))
            .pragma("journal_size_limit", (16 * 1024 * 1024).to_string())
            // Rows are appended at one end and read and deleted at the other: a small page
            // cache serves both (SQLite's default is 2 MiB a connection).
            .pragma("cache_size", "-512");
        // One writer, and one reader for the replay beside it (WAL readers do not block it).
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(fail)?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(fail)?;
        let devices = sqlx::query_as::<_, (String, i64)>("SELECT device, seq FROM devices")
            .fetch_all(&pool)
            .await
            .map_err(fail)?
            .into_iter()
            .map(|(d, s)| (d, s as u64))
            .collect();
        let (readings, bytes, low, high): (i64, i64, Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(length(body)), 0), MIN(id), MAX(id) FROM readings")
                .fetch_one(&pool)
                .await
                .map_err(fail)?;
        let ids = match (low, high) {
            (Some(low), Some(high)) => low..high + 1,
            _ => 1..1,
        };
        let run: i64 = sqlx::query_scalar(
            "INSERT INTO meta (key, value) VALUES ('runs', 1) \
             ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
        )
        .fetch_one(&pool)
        .await
        .map_err(fail)?;
        let loaded = Loaded {
            run: run as u64,
            devices,
            readings: readings as u64,
            bytes: bytes as u64,
            ids,
        };
        Ok((Store { pool, path }, loaded))
    }

    fn fail(&self, source: sqlx::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes `rows` and deletes the rows `delete` in one transaction.
    pub(crate) async fn write(
        &self,
        rows: &[NewRow<'_>],
        delete: &[i64],
        acked: &[(String, u64)],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        // Each part is one statement over a JSON array: a statement per row costs a round
        // trip to sqlx's worker thread each.
        let mut insert = String::with_capacity(rows.iter().map(|r| r.json.len() + 48).sum::<usize>() + 2);
        insert.push('[');
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                insert.push(',');
            }
            let device = serde_json::to_string(r.device).expect("strings serialize");
            insert.push_str(&format!(
                "[{},{device},{},{},{}]",
                r.id, r.seq as i64, r.polled as u8, r.json
            ));
        }
        insert.push(']');
        let marks: Vec<(&str, i64)> = acked.iter().map(|(d, s)| (d.as_str(), *s as i64)).collect();
        let marks = serde_json::to_string(&marks).expect("marks serialize");
        let delete = serde_json::to_string(delete).expect("ids serialize");

        let mut tx = self.pool.begin().await.map_err(|e| self.fail(e))?;
        if !rows.is_empty() {
            sqlx::query(
                "INSERT INTO readings (id, device, seq, polled, stored_at_ms, body) \
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?1, value -> 4 FROM json_each(?2)",
            )
            .bind(now_ms as i64)
            .bind(&insert)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        }
        if !marks.is_empty() {
            sqlx::query(
                "INSERT INTO devices (device, seq) SELECT value ->> 0, value ->> 1 FROM json_each(?1) WHERE true \
                 ON CONFLICT (device) DO UPDATE SET seq = max(seq, excluded.seq)",
            )
            .bind(&marks)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        }
        if delete != "[]" {
            sqlx::query("DELETE FROM readings WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(&delete)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().await.map_err(|e| self.fail(e))
    }

    /// Up to `limit` rows with ids in `ids`, oldest first: (id, JSON).
    pub(crate) async fn read(&self, ids: Range<i64>, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        sqlx::query("SELECT id, body FROM readings WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3")
            .bind(ids.start)
            .bind(ids.end)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
            .map_err(|e| self.fail(e))
    }

    /// When the oldest reading on disk was written (unix ms), if any.
    pub(crate) async fn oldest_ms(&self) -> Result<Option<u64>, StoreError> {
        sqlx::query_scalar::<_, i64>("SELECT stored_at_ms FROM readings ORDER BY id LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map(|t| t.map(|t| t as u64))
            .map_err(|e| self.fail(e))
    }

    /// The database's files on disk, write-ahead log included.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut name = self.path.clone().into_os_string();
                name.push(suffix);
                std::fs::metadata(name).ok()
            })
            .map(|m| m.len())
            .sum()
    }
}

/// Rows written in one transaction at most.
const WRITE_MAX: usize = 5_000;

/// The outbox's writer: puts the readings handed over on disk in batches (everything
/// that came while the last transaction ran, up to [`WRITE_MAX`]) with the deletes of
/// the rows ingest committed, then passes the node acks this allows to `node_acks` and
/// wakes `forward` for the new live rows. A failed write is retried with back-off;
/// nothing of it is acknowledged meanwhile.
pub(crate) async fn persist(
    store: Store,
    outbox: std::sync::Arc<std::sync::Mutex<crate::outbox::Outbox>>,
    writer: std::sync::Arc<tokio::sync::Notify>,
    live: std::sync::Arc<tokio::sync::Notify>,
    node_acks: tokio::sync::mpsc::UnboundedSender<(String, u64)>,
    room: std::sync::Arc<tokio::sync::Notify>,
) {
    let mut backoff = std::time::Duration::from_millis(50);
    loop {
        // Woken by new work, or every second to let old gaps in a node's seqs pass.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer.notified()).await;
        let acks = outbox
            .lock()
            .expect("outbox lock")
            .expire_gaps(std::time::Instant::now());
        for ack in acks {
            let _ = node_acks.send(ack);
        }
        loop {
            let Some(write) = outbox.lock().expect("outbox lock").take_write(WRITE_MAX) else {
                break;
            };
            // What it took no longer waits: the intake may take in more.
            room.notify_one();
            let rows: Vec<NewRow<'_>> = (write.first_id..)
                .zip(&write.rows)
                .map(|(id, r)| NewRow {
                    id,
                    device: &r.device,
                    seq: r.seq,
                    polled: r.origin == crate::outbox::Origin::Polled,
                    json: r.json.get(),
                })
                .collect();
            let started = std::time::Instant::now();
            let result = store.write(&rows, &write.delete, &write.marks, unix_ms()).await;
            drop(rows);
            metrics::histogram!("gridwatch_gateway_outbox_write_seconds").record(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    backoff = std::time::Duration::from_millis(50);
                    let new_rows = !write.rows.is_empty();
                    let acks = outbox
                        .lock()
                        .expect("outbox lock")
                        .written(write, std::time::Instant::now());
                    for ack in acks {
                        let _ = node_acks.send(ack);
                    }
                    if new_rows {
                        live.notify_one();
                    }
                }
                Err(e) => {
                    metrics::counter!("gridwatch_gateway_outbox_write_failures_total").increment(1);
                    tracing::error!(error = %e, retry_in = ?backoff, "writing the outbox");
                    outbox.lock().expect("outbox lock").not_written(write);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Describes the outbox's metrics and sets its gauges every `every`.
pub(crate) async fn report(
    store: Store,
    outbox: std::sync::Arc<std::sync::Mutex<crate::outbox::Outbox>>,
    every: std::time::Duration,
) {
    metrics::describe_gauge!(
        "gridwatch_gateway_outbox_readings",
        "Readings handed to the gateway (by nodes or polled) and not yet committed by ingest"
    );
    metrics::describe_gauge!(
        "gridwatch_gateway_outbox_oldest_age_seconds",
        "Age of the oldest reading in the gateway's outbox on disk (0 when empty)"
    );
    metrics::describe_gauge!(
        "gridwatch_gateway_outbox_disk_bytes",
        "Size of the gateway's outbox database on disk, write-ahead log included"
    );
    metrics::describe_counter!(
        "gridwatch_gateway_outbox_overflow_total",
        "Readings the full outbox did not take: node readings refused (the node keeps them), polled readings dropped"
    );
    metrics::describe_counter!(
        "gridwatch_gateway_node_seqs_skipped_total",
        "Node seqs acknowledged without being received: the node's resend went past them (it no longer holds them)"
    );
    metrics::describe_histogram!(
        "gridwatch_gateway_outbox_write_seconds",
        "Time of one outbox transaction (new readings and committed deletes)"
    );
    metrics::describe_counter!(
        "gridwatch_gateway_outbox_write_failures_total",
        "Outbox transactions that failed and were retried"
    );
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let depth = outbox.lock().expect("outbox lock").unacknowledged();
        metrics::gauge!("gridwatch_gateway_outbox_readings").set(depth as f64);
        metrics::gauge!("gridwatch_gateway_outbox_disk_bytes").set(store.bytes_on_disk() as f64);
        let age = match store.oldest_ms().await {
            Ok(oldest) => oldest.map_or(0.0, |at| unix_ms().saturating_sub(at) as f64 / 1000.0),
            Err(e) => {
                tracing::warn!(error = %e, "reading the outbox's oldest reading");
                continue;
            }
        };
        metrics::gauge!("gridwatch_gateway_outbox_oldest_age_seconds").set(age);
    }
}
