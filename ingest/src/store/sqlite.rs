//! The embedded default backend: one SQLite file in WAL mode with full sync,
//! so a commit survives a process kill before anything is acknowledged.
use crate::model::*;
use crate::store::latest::{self, State};
use crate::store::{Committed, KindCount, ReadingRow, latest_states, plan_batch, quarantine_entry};
use anyhow::{Context, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Device states committed and not yet written to `devices` (see [`latest`]).
    latest: Arc<latest::Pending>,
    _flusher: latest::Background,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .with_context(|| format!("opening SQLite database {}", path.display()))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .with_context(|| format!("migrating SQLite database {}", path.display()))?;
        recover_states(&pool)
            .await
            .with_context(|| format!("recomputing device states in {}", path.display()))?;
        let latest = Arc::new(latest::Pending::default());
        let flusher = {
            let (pool, latest) = (pool.clone(), latest.clone());
            latest::spawn_flusher(move || {
                let (pool, latest) = (pool.clone(), latest.clone());
                async move { latest::flush(&latest, |states, at| write_states(pool, states, at)).await }
            })
        };
        Ok(Self {
            pool,
            latest,
            _flusher: Arc::new(latest::AbortOnDrop(Some(flusher))),
        })
    }

    /// Writes the pending device states now (the flusher does it every second).
    pub async fn flush_states(&self) -> Result<()> {
        let pool = self.pool.clone();
        latest::flush(&self.latest, |states, at| write_states(pool, states, at)).await
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn commit(&self, accepted: &[Accepted], refused: &[Refused]) -> Result<Committed> {
        let (storable, mut quarantined, mut quarantine) = plan_batch(accepted, refused);
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let mut new = Vec::with_capacity(storable.len());
        for chunk in storable.chunks(ROWS_PER_STATEMENT) {
            match insert_readings(&mut tx, accepted, chunk, now).await {
                Ok(inserted) => new.extend(inserted),
                // A failed statement leaves an SQLite transaction usable: retry the chunk row by row.
                Err(e) if is_data_error(&e) => {
                    tracing::warn!(error = %e, rows = chunk.len(), "the database refused data in a batch; storing it row by row");
                    for (i, why) in insert_row_by_row(&mut tx, accepted, chunk, now, &mut new).await? {
                        quarantine.push(quarantine_entry(&accepted[i], why));
                        quarantined.push(i);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        new.sort_unstable();
        quarantined.sort_unstable();
        let states = latest_states(accepted, &new, |_| None)?;
        for r in &quarantine {
            sqlx::query("INSERT INTO quarantine (received_at, source, reason, detail, payload) VALUES (?, ?, ?, ?, ?)")
                .bind(now)
                .bind(&r.source)
                .bind(r.reason)
                .bind(&r.detail)
                .bind(&r.payload)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.latest.merge(&states);
        Ok(Committed { new, quarantined })
    }

    pub async fn devices(&self) -> Result<Vec<DeviceRow>> {
        let rows = sqlx::query(
            "SELECT device_id, kind, gateway, last_seq, last_ts, last_body FROM devices ORDER BY device_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut devices = rows
            .into_iter()
            .map(|r| DeviceRow {
                device_id: r.get("device_id"),
                kind: r.get("kind"),
                gateway: r.get("gateway"),
                last_seq: r.get("last_seq"),
                last_seen: rfc3339(r.get("last_ts")),
                last_state: serde_json::from_str(r.get("last_body")).unwrap_or_default(),
            })
            .collect();
        self.latest.overlay(&mut devices);
        Ok(devices)
    }

    pub async fn quarantine(&self, limit: i64) -> Result<Vec<QuarantineRow>> {
        let rows = sqlx::query(
            "SELECT id, received_at, source, reason, detail, payload FROM quarantine ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| QuarantineRow {
                id: r.get("id"),
                received_at: rfc3339(r.get("received_at")),
                source: r.get("source"),
                reason: r.get("reason"),
                detail: r.get("detail"),
                payload: String::from_utf8_lossy(r.get::<&[u8], _>("payload")).into_owned(),
            })
            .collect())
    }

    pub async fn history(&self, device: &str, from_ms: i64, to_ms: i64, limit: i64) -> Result<Vec<ReadingRow>> {
        let rows = sqlx::query(
            "SELECT device_id, seq, ts, kind, gateway, body FROM readings \
             WHERE device_id = ? AND ts >= ? AND ts < ? ORDER BY ts, seq LIMIT ?",
        )
        .bind(device)
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ReadingRow {
                device_id: r.get("device_id"),
                seq: r.get("seq"),
                ts_ms: r.get("ts"),
                kind: r.get("kind"),
                gateway: r.get("gateway"),
                reading: serde_json::from_str(r.get("body")).unwrap_or_default(),
            })
            .collect())
    }

    pub async fn counts_per_kind(&self, since_ms: i64) -> Result<Vec<KindCount>> {
        let rows =
            sqlx::query("SELECT kind, COUNT(*) AS readings FROM readings WHERE ts >= ? GROUP BY kind ORDER BY kind")
                .bind(since_ms)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| KindCount {
                kind: r.get("kind"),
                readings: r.get("readings"),
            })
            .collect())
    }

    pub async fn reading_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM readings")
            .fetch_one(&self.pool)
            .await?)
    }
}

/// Readings per INSERT statement: 7 parameters each, well below SQLite's limit
/// of 32766, and large enough that the per-statement cost vanishes.
const ROWS_PER_STATEMENT: usize = 500;

/// The multi-row INSERT for `rows` readings; `RETURNING` names the rows that were new.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(120 + rows * 24);
    sql.push_str("INSERT INTO readings (device_id, seq, ts, kind, gateway, body, received_at) VALUES ");
    for i in 0..rows {
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?, ?)"
        });
    }
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING device_id, seq, ts");
    sql
}

/// Inserts the readings at `rows`; returns the indices of those that were new
/// (the others were stored before: redeliveries).
async fn insert_readings(
    tx: &mut Transaction<'_, Sqlite>,
    accepted: &[Accepted],
    rows: &[usize],
    now: i64,
) -> Result<Vec<usize>, sqlx::Error> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(insert_sql(rows.len())));
    for &i in rows {
        let a = &accepted[i];
        let r = &a.reading;
        let body = serde_json::to_string(r).map_err(|e| sqlx::Error::Encode(e.into()))?;
        query = query
            .bind(r.device())
            .bind(r.seq() as i64)
            .bind(r.ts() as i64)
            .bind(r.kind().as_str())
            .bind(&a.gateway)
            .bind(body)
            .bind(now);
    }
    let inserted = query.fetch_all(&mut **tx).await?;
    // Key → first index with it: a key twice in one batch is new once.
    let mut by_key: HashMap<(&str, i64, i64), usize> = HashMap::with_capacity(rows.len());
    for &i in rows {
        let r = &accepted[i].reading;
        by_key.entry((r.device(), r.seq() as i64, r.ts() as i64)).or_insert(i);
    }
    Ok(inserted
        .iter()
        .filter_map(|row| {
            let device: &str = row.get(0);
            by_key
                .get(&(device, row.get::<i64, _>(1), row.get::<i64, _>(2)))
                .copied()
        })
        .collect())
}

/// The data-error path: every row in its own savepoint. Pushes new rows to `new`
/// and returns the rows SQLite refused, with its reason.
async fn insert_row_by_row(
    tx: &mut Transaction<'_, Sqlite>,
    accepted: &[Accepted],
    rows: &[usize],
    now: i64,
    new: &mut Vec<usize>,
) -> Result<Vec<(usize, String)>> {
    let mut refused = Vec::new();
    for &i in rows {
        sqlx::query("SAVEPOINT gridwatch_row").execute(&mut **tx).await?;
        match insert_readings(tx, accepted, &[i], now).await {
            Ok(inserted) => {
                sqlx::query("RELEASE gridwatch_row").execute(&mut **tx).await?;
                new.extend(inserted);
            }
            Err(e) if is_data_error(&e) => {
                sqlx::query("ROLLBACK TO gridwatch_row").execute(&mut **tx).await?;
                sqlx::query("RELEASE gridwatch_row").execute(&mut **tx).await?;
                refused.push((i, format!("the database refused this reading: {e}")));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(refused)
}

/// Whether SQLite refused the data itself (too big, constraint, type mismatch)
/// rather than failing as a service (busy, I/O): such a chunk is split, not retried whole.
fn is_data_error(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else { return false };
    // Primary result codes are the low byte of extended ones.
    let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
    // 18 TOOBIG, 19 CONSTRAINT, 20 MISMATCH.
    matches!(primary, Some(18..=20))
}

/// Writes device states and the time of this flush in one transaction; an older
/// reading never replaces a newer state. Returns the states written.
async fn write_states(pool: SqlitePool, states: Vec<State>, flushed_at: i64) -> Result<Vec<State>> {
    let mut tx = pool.begin().await?;
    for chunk in states.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::with_capacity(400 + chunk.len() * 24);
        sql.push_str(
            "INSERT INTO devices (device_id, kind, gateway, last_seq, last_ts, last_body, updated_at) VALUES ",
        );
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 {
                "(?, ?, ?, ?, ?, ?, ?)"
            } else {
                ", (?, ?, ?, ?, ?, ?, ?)"
            });
        }
        sql.push_str(UPSERT_DEVICE);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            query = query
                .bind(&s.device)
                .bind(s.kind)
                .bind(&s.gateway)
                .bind(s.seq)
                .bind(s.ts)
                .bind(&s.body)
                .bind(flushed_at);
        }
        query.execute(&mut *tx).await?;
    }
    sqlx::query("UPDATE store_meta SET value = ? WHERE key = ?")
        .bind(flushed_at)
        .bind(latest::FLUSHED_AT)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(states)
}

const UPSERT_DEVICE: &str = " ON CONFLICT (device_id) DO UPDATE SET kind = excluded.kind, gateway = excluded.gateway, \
     last_seq = excluded.last_seq, last_ts = excluded.last_ts, last_body = excluded.last_body, \
     updated_at = excluded.updated_at WHERE excluded.last_seq > devices.last_seq";

/// After a crash, the states of the readings received since the last flush may
/// not be written: recompute them from the readings (see [`latest`]).
async fn recover_states(pool: &SqlitePool) -> Result<()> {
    let flushed_at: i64 = sqlx::query_scalar("SELECT value FROM store_meta WHERE key = ?")
        .bind(latest::FLUSHED_AT)
        .fetch_one(pool)
        .await?;
    let sql = format!(
        "INSERT INTO devices (device_id, kind, gateway, last_seq, last_ts, last_body, updated_at) \
         SELECT device_id, kind, gateway, seq, ts, json_extract(body, '$.body'), ?2 FROM ( \
           SELECT device_id, kind, gateway, seq, ts, body, \
                  row_number() OVER (PARTITION BY device_id ORDER BY seq DESC) AS newest \
           FROM readings WHERE received_at >= ?1 AND kind IN ('lift', 'sterilizer')) \
         WHERE newest = 1{UPSERT_DEVICE}"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(flushed_at - latest::RECOVERY_MARGIN_MS)
        .bind(now_ms())
        .execute(pool)
        .await?;
    if done.rows_affected() > 0 {
        tracing::info!(devices = done.rows_affected(), "recomputed device states the last run had not written");
    }
    Ok(())
}
