//! The embedded default backend: one SQLite file in WAL mode with full sync,
//! so a commit survives a process kill before anything is acknowledged.
//!
//! Writes of readings and device states go through one connection of their own
//! (SQLite has one writer): it alone gets a large page cache, so that a batch's
//! dirty index pages stay in memory until its commit. The WAL is checkpointed in
//! the background on another connection, off the writer's path (docs/storage.md).
use crate::error::{Doing, Result};
use crate::latest::{self, State};
use crate::model::*;
use crate::settle::{SettleLimits, Settler};
use crate::thread_priority;
use crate::{Committed, KindCount, ReadingRow, plan_batch, quarantine_entry, statement_chunks};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
pub struct SqliteStore {
    /// Reads, the domain tables and migrations.
    pool: SqlitePool,
    /// The one connection that writes readings and device states.
    writer: SqlitePool,
    /// Device states committed and not yet written to `devices` (see [`latest`]).
    latest: Arc<latest::Pending>,
    _flusher: latest::Background,
    _checkpointer: latest::Background,
    /// Moves readings from `readings_recent` into `readings_settled`.
    settler: Arc<Settler>,
}

/// Page cache of the writer connection, KiB. A batch dirties about one page of
/// `readings_recent`'s key per device in it, and that key at 100,000 readings
/// (when pieces start moving, see [`crate::settle`]) is about this size.
/// Before that table, when a batch dirtied ~40 MB of the one large key, the
/// direct benchmark ran as fast with 8 MiB as with 24 MiB, and with 4 MiB as
/// with 8 (4-9 MiB less RSS).
const WRITER_CACHE_KIB: i64 = 4 * 1024;

/// How often the background checkpoint copies committed WAL frames into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// WAL pages after which the writer checkpoints itself, should the background
/// checkpoint fall behind (SQLite's default is 1000).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16 * 1024;

/// The name of the writer connection's thread (sqlx runs each SQLite connection
/// on a thread of its own): the benchmark counts its CPU as the writer's.
pub const WRITER_THREAD: &str = "sqlite-writer";

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SettleLimits::default()).await
    }

    /// [`Self::open`], with readings moved out of `readings_recent` at other sizes.
    pub async fn open_with(path: &Path, settle: SettleLimits) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).doing_with(|| format!("creating data directory {}", dir.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10))
            // Statement journals (multi-row INSERTs in a transaction) in memory, not in temp files.
            .pragma("temp_store", "MEMORY")
            // After a checkpoint restarts the WAL, keep its file no larger than this.
            .pragma("journal_size_limit", (64 * 1024 * 1024).to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .after_release(|conn, _| Box::pin(crate::retry::usable_after_release(conn)))
            .connect_with(options.clone())
            .await
            .doing_with(|| format!("opening SQLite database {}", path.display()))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .doing_with(|| format!("migrating SQLite database {}", path.display()))?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| Box::pin(crate::retry::usable_after_release(conn)))
            // Runs once the connection's thread exists, so also after a reconnect.
            .after_connect(|_, _| {
                Box::pin(async {
                    thread_priority::raise_writer(WRITER_THREAD);
                    Ok(())
                })
            })
            .connect_with(
                options
                    .thread_name(|_| WRITER_THREAD.to_string())
                    .pragma("cache_size", (-WRITER_CACHE_KIB).to_string())
                    .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES.to_string()),
            )
            .await
            .doing_with(|| format!("opening SQLite database {}", path.display()))?;
        recover_states(&writer)
            .await
            .doing_with(|| format!("recomputing device states in {}", path.display()))?;
        let latest = Arc::new(latest::Pending::default());
        let flusher = latest::spawn_flusher(latest.clone(), writer.clone(), write_states);
        let checkpointer = spawn_checkpointer(pool.clone());
        let settler = Arc::new(Settler::open(&writer, settle).await?);
        Ok(Self {
            settler,
            pool,
            writer,
            latest,
            _flusher: Arc::new(latest::AbortOnDrop(Some(flusher))),
            _checkpointer: Arc::new(latest::AbortOnDrop(Some(checkpointer))),
        })
    }

    /// The one connection that writes: readings, device states, the benchmark's
    /// limit, and the domain's writes (alerts, cases, the engine checkpoint).
    /// SQLite has one write lock; a second connection wanting it would poll in
    /// SQLite's busy handler, sleeping up to 100 ms at a time, and stall the
    /// readings writer whenever it won. Queued for this connection, domain
    /// writes wait their turn instead.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Writes the pending device states now (the flusher does it every [`latest::FLUSH_EVERY`]).
    pub async fn flush_states(&self) -> Result<()> {
        let writer = self.writer.clone();
        latest::flush(&self.latest, |states, at| write_states(writer, states, at)).await
    }

    /// Device states committed and not yet written to `devices`.
    pub fn pending_states(&self) -> &latest::Pending {
        &self.latest
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn commit(&self, accepted: &[Accepted], refused: &[Refused]) -> Result<Committed> {
        let (mut storable, mut quarantined, mut quarantine) = plan_batch(accepted, refused);
        // In key order (a key's first reading first): each statement walks
        // `readings_recent`'s key, and the lookups `readings_settled`'s, once from left to right.
        storable.sort_unstable_by_key(|&i| {
            let r = &accepted[i].reading;
            (r.device(), r.ts(), r.seq(), i)
        });
        let now = now_ms();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        // Rows inserted by this transaction get rowids above the largest so far
        // (SQLite picks rowids at random only once the largest is i64::MAX; then
        // every statement reports its new rows with RETURNING instead).
        let before: i64 = sqlx::query_scalar("SELECT coalesce(max(rowid), 0) FROM readings_recent")
            .fetch_one(&mut *tx)
            .await?;
        let by_rowid = before < i64::MAX - storable.len() as i64;
        let (checked, unchecked) = self.settler.tops().split(&mut tx, accepted, &storable).await?;
        let mut new = Vec::with_capacity(storable.len());
        let mut inserted = 0;
        let mut refused_data = false;
        let chunks = statement_chunks(&checked, ROWS_PER_STATEMENT)
            .map(|chunk| (Settled::MayHold, chunk))
            .chain(statement_chunks(&unchecked, ROWS_PER_STATEMENT).map(|chunk| (Settled::CannotHold, chunk)));
        for (settled, chunk) in chunks {
            let done = if by_rowid {
                insert_counted(&mut tx, accepted, chunk, now, settled).await
            } else {
                insert_readings(&mut tx, accepted, chunk, now, settled)
                    .await
                    .map(|rows| new.extend(rows))
                    .map(|()| 0)
            };
            match done {
                Ok(n) => inserted += n,
                // A failed statement leaves an SQLite transaction usable: retry the chunk row by row.
                Err(e) if is_data_error(&e) => {
                    tracing::warn!(error = %e, rows = chunk.len(), "the database refused data in a batch; storing it row by row");
                    refused_data = true;
                    for (i, why) in insert_row_by_row(&mut tx, accepted, chunk, now, &mut new).await? {
                        quarantine.push(quarantine_entry(&accepted[i], why));
                        quarantined.push(i);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if by_rowid {
            // The first reading of each key, in index order.
            let firsts: Vec<usize> = storable
                .iter()
                .enumerate()
                .filter(|&(n, &i)| n == 0 || key(&accepted[storable[n - 1]]) != key(&accepted[i]))
                .map(|(_, &i)| i)
                .collect();
            new = if !refused_data && inserted == firsts.len() as u64 {
                // Every key was new: the common case, no need to ask which.
                firsts
            } else {
                new_since(&mut tx, accepted, &firsts, before).await?
            };
        }
        new.sort_unstable();
        quarantined.sort_unstable();
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
        // Worked out after the commit, so that the one writer is not held for it.
        self.latest.merge(accepted, &new, |_| None);
        self.settler.added(new.len());
        // The batch is committed whatever happens here; a piece that failed is tried again after the next commit.
        if let Err(e) = self.settler.catch_up(&self.writer).await {
            tracing::warn!(error = %e, "moving readings into readings_settled failed; retrying after the next commit");
        }
        Ok(Committed { new, quarantined })
    }

    /// Moves every reading of `readings_recent` into `readings_settled`.
    pub async fn settle_all(&self) -> Result<()> {
        self.settler.move_all(&self.writer).await
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
}

/// Readings per INSERT statement: 7 parameters each, well below SQLite's limit
/// of 32766, and large enough that the per-statement cost vanishes.
const ROWS_PER_STATEMENT: usize = 500;

/// Copies committed WAL frames into the database every [`CHECKPOINT_EVERY`], on
/// a connection other than the writer's: a checkpoint runs alongside writes, and
/// the writer's own automatic checkpoint (which would run inside its commit) is
/// left for when this one falls behind. PASSIVE never waits for readers or the writer.
fn spawn_checkpointer(pool: SqlitePool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                tracing::warn!(error = %e, "SQLite WAL checkpoint failed; retrying");
            }
        }
    })
}

/// The multi-row INSERT for `rows` readings; `RETURNING` names the rows that were new.
fn insert_sql(rows: usize, settled: Settled) -> String {
    let mut sql = String::with_capacity(300 + rows * 24);
    push_insert_recent(&mut sql, rows, settled);
    sql.push_str(" RETURNING device_id, seq, ts");
    sql
}

/// The idempotency key of a reading.
fn key(a: &Accepted) -> (&str, u64, u64) {
    (a.reading.device(), a.reading.seq(), a.reading.ts())
}

/// Appends the INSERT of `rows` readings into `table`, without its conflict clause.
pub fn push_insert(sql: &mut String, table: &str, rows: usize) {
    push_insert_into(sql, table);
    push_values(sql, rows);
}

/// Appends `INSERT INTO table (the reading columns) `.
fn push_insert_into(sql: &mut String, table: &str) {
    sql.push_str("INSERT INTO ");
    sql.push_str(table);
    sql.push_str(" (device_id, seq, ts, kind, gateway, body, received_at) ");
}

/// Whether `readings_settled` may hold keys of the readings to insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    MayHold,
    /// Their keys are above every settled key of their devices: no need to look.
    CannotHold,
}

/// Appends the INSERT of `rows` new readings into `readings_recent`: those
/// whose key is in `readings_settled` are left out (looked up unless it
/// `CannotHold` them), and its own key leaves out the rest.
fn push_insert_recent(sql: &mut String, rows: usize, settled: Settled) {
    if settled == Settled::CannotHold {
        push_insert(sql, "readings_recent", rows);
        sql.push_str(" ON CONFLICT DO NOTHING");
        return;
    }
    push_insert_into(sql, "readings_recent");
    sql.push_str("SELECT * FROM (");
    push_values(sql, rows);
    sql.push_str(
        ") AS v WHERE NOT EXISTS (SELECT 1 FROM readings_settled s \
         WHERE s.device_id = v.column1 AND s.ts = v.column3 AND s.seq = v.column2) ON CONFLICT DO NOTHING",
    );
}

/// `VALUES` with `rows` tuples of seven placeholders: readings and device states
/// both have seven columns.
fn push_values(sql: &mut String, rows: usize) {
    sql.push_str("VALUES ");
    for i in 0..rows {
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?, ?)"
        });
    }
}

/// Binds the readings at `rows` in the order of [`push_insert`].
pub fn bind_readings<'q>(
    mut query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
    accepted: &'q [Accepted],
    rows: &[usize],
    now: i64,
) -> Result<sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>, sqlx::Error> {
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
    Ok(query)
}

/// Inserts the readings at `rows`; returns how many were new.
async fn insert_counted(
    tx: &mut Transaction<'_, Sqlite>,
    accepted: &[Accepted],
    rows: &[usize],
    now: i64,
    settled: Settled,
) -> Result<u64, sqlx::Error> {
    let mut sql = String::with_capacity(300 + rows.len() * 24);
    push_insert_recent(&mut sql, rows.len(), settled);
    let query = bind_readings(sqlx::query(sqlx::AssertSqlSafe(sql)), accepted, rows, now)?;
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

/// The readings among `firsts` (the first reading of each key) that this
/// transaction inserted: the rows above rowid `before`.
async fn new_since(
    tx: &mut Transaction<'_, Sqlite>,
    accepted: &[Accepted],
    firsts: &[usize],
    before: i64,
) -> Result<Vec<usize>> {
    let rows = sqlx::query("SELECT device_id, seq, ts FROM readings_recent WHERE rowid > ?")
        .bind(before)
        .fetch_all(&mut **tx)
        .await?;
    Ok(indices_of(&rows, &first_by_key(accepted, firsts)))
}

/// Key → index of the first reading with it among `rows`: a key twice in one
/// batch is new once.
fn first_by_key<'a>(accepted: &'a [Accepted], rows: &[usize]) -> HashMap<(&'a str, i64, i64), usize> {
    let mut by_key = HashMap::with_capacity(rows.len());
    for &i in rows {
        let r = &accepted[i].reading;
        by_key.entry((r.device(), r.seq() as i64, r.ts() as i64)).or_insert(i);
    }
    by_key
}

/// The batch indices of stored `(device_id, seq, ts)` rows.
fn indices_of(rows: &[sqlx::sqlite::SqliteRow], by_key: &HashMap<(&str, i64, i64), usize>) -> Vec<usize> {
    rows.iter()
        .filter_map(|row| {
            let device: &str = row.get(0);
            by_key
                .get(&(device, row.get::<i64, _>(1), row.get::<i64, _>(2)))
                .copied()
        })
        .collect()
}

/// Inserts the readings at `rows`; returns the indices of those that were new
/// (the others were stored before: redeliveries).
async fn insert_readings(
    tx: &mut Transaction<'_, Sqlite>,
    accepted: &[Accepted],
    rows: &[usize],
    now: i64,
    settled: Settled,
) -> Result<Vec<usize>, sqlx::Error> {
    let query = bind_readings(
        sqlx::query(sqlx::AssertSqlSafe(insert_sql(rows.len(), settled))),
        accepted,
        rows,
        now,
    )?;
    let inserted = query.fetch_all(&mut **tx).await?;
    Ok(indices_of(&inserted, &first_by_key(accepted, rows)))
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
        match insert_readings(tx, accepted, &[i], now, Settled::MayHold).await {
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
    for chunk in statement_chunks(&states, ROWS_PER_STATEMENT) {
        let mut sql = String::with_capacity(400 + chunk.len() * 24);
        sql.push_str("INSERT INTO devices (device_id, kind, gateway, last_seq, last_ts, last_body, updated_at) ");
        push_values(&mut sql, chunk.len());
        sql.push(' ');
        sql.push_str(latest::UPSERT_DEVICE);
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
    sqlx::query(latest::WRITE_FLUSHED_AT)
        .bind(flushed_at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(states)
}

/// After a crash, the states of the readings received since the last flush may
/// not be written: recompute them from the readings (see [`latest`]).
async fn recover_states(pool: &SqlitePool) -> Result<()> {
    let flushed_at: i64 = sqlx::query_scalar(latest::READ_FLUSHED_AT).fetch_one(pool).await?;
    let sql = format!(
        "INSERT INTO devices (device_id, kind, gateway, last_seq, last_ts, last_body, updated_at) \
         SELECT device_id, kind, gateway, seq, ts, json_extract(body, '$.body'), ?2 FROM ( \
           SELECT device_id, kind, gateway, seq, ts, body, \
                  row_number() OVER (PARTITION BY device_id ORDER BY seq DESC) AS newest \
           FROM readings WHERE received_at >= ?1 AND kind IN ('lift', 'sterilizer')) \
         WHERE newest = 1 {}",
        latest::UPSERT_DEVICE
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(flushed_at - latest::RECOVERY_MARGIN_MS)
        .bind(now_ms())
        .execute(pool)
        .await?;
    if done.rows_affected() > 0 {
        tracing::info!(
            devices = done.rows_affected(),
            "recomputed device states the last run had not written"
        );
    }
    Ok(())
}
