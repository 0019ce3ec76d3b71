//! The PostgreSQL backend: readings go in with binary COPY, one transaction per
//! batch, together with the latest state per device and the quarantine.
//!
//! The write path, fastest first:
//! 1. COPY straight into `readings`. Almost every batch is all new rows.
//! 2. A batch that hits a known key (SQLSTATE 23505, whatever constraint or
//!    chunk names it) is redone: COPY into a temporary staging table, then
//!    `INSERT … ON CONFLICT DO NOTHING RETURNING` tells which rows were new.
//! 3. A batch the database refuses for its data (SQLSTATE classes 22 and 23, 54)
//!    is redone row by row, each in a savepoint: a row that still fails goes to
//!    the quarantine with the database's reason, the rest are stored.
//!
//! Layout of `readings` (hypertable or native partitions) is decided at
//! [`PgStore::open`]; see [`timescale`] and [`partitions`].
use crate::error::{Doing, Result};
use crate::latest::{self, State};
use crate::model::*;
use crate::pg_copy::{CopyRows, READING_COLUMNS};
use crate::timescale::{Decision, TimescaleMode};
use crate::timescale_jobs::{self, JobWatch, PolicyHealth};
use crate::{
    Committed, KindCount, ReadingRow, StoreOptions, partitions, plan_batch, quarantine_entry, redact_url, timescale,
};
use foldhash::HashMap;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Row, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How `readings` is laid out on this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A TimescaleDB hypertable (compression, retention, continuous aggregate).
    Hypertable,
    /// Native declarative partitions by day, with a default partition.
    Partitioned,
    /// A plain table: TimescaleDB's layout on a server that no longer has it.
    Plain,
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    layout: Layout,
    /// TimescaleDB's jobs, watched (hypertable layout only).
    jobs: Option<Arc<JobWatch>>,
    /// Device states committed and not yet written to `devices` (see [`latest`]).
    latest: Arc<latest::Pending>,
    /// Stop the partition maintenance and the state flusher when the last clone is dropped.
    _maintenance: latest::Background,
    _flusher: latest::Background,
}

pub const COPY_READINGS: &str =
    "COPY readings (device_id, seq, ts, kind, gateway, body, received_at) FROM STDIN (FORMAT binary)";
const COPY_STAGING: &str =
    "COPY readings_staging (device_id, seq, ts, kind, gateway, body, received_at) FROM STDIN (FORMAT binary)";
/// How often native partitions are created ahead and expired ones dropped.
const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

impl PgStore {
    /// Connects, detects TimescaleDB, migrates, and sets up the layout of `readings`.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    /// [`PgStore::open`] with options: whether to use TimescaleDB, and how its jobs are run.
    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Self> {
        let shown = redact_url(url);
        let connect_options = PgConnectOptions::from_str(url)
            .doing_with(|| format!("database URL {shown:?} is not a valid PostgreSQL URL"))?
            .application_name("gridwatch")
            // `CREATE … IF NOT EXISTS` notices are not news.
            .options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // sqlx retries a refused connect until this: an unreachable server must show in
            // the failure count and /healthz within seconds, the retry layer does the rest.
            .acquire_timeout(Duration::from_secs(10))
            .after_release(|conn, _| Box::pin(crate::retry::usable_after_release(conn)))
            .connect_with(connect_options)
            .await
            .doing_with(|| format!("connecting to PostgreSQL at {shown}"))?;

        // Decided before anything of the extension is touched (see `timescale::decide`).
        let support = timescale::detect(&pool).await?;
        let decision = timescale::decide(&support, options.timescale)
            .doing_with(|| format!("opening PostgreSQL database {shown}"))?;
        let mut timescale_version = support.installed.clone();
        if decision == (Decision::Hypertable { install: true }) {
            match timescale::install(&pool).await {
                Ok(version) => timescale_version = Some(version),
                Err(e) if options.timescale == TimescaleMode::On => {
                    return Err(e).doing_with(|| format!("--timescale on: opening {shown}"));
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "TimescaleDB is preloaded but could not be created here")
                }
            }
        }
        let existing = existing_layout(&pool, timescale_version.is_some()).await?;
        let wanted = match decision {
            Decision::Hypertable { .. } if timescale_version.is_some() => Layout::Hypertable,
            _ => Layout::Partitioned,
        };
        if let Some(existing) = existing
            && existing != wanted
            && !(existing == Layout::Plain && wanted == Layout::Hypertable)
        {
            tracing::warn!(?existing, ?wanted, timescale = %options.timescale, "readings keeps the layout it was created with");
        }
        migrate(&pool, existing.unwrap_or(wanted))
            .await
            .doing_with(|| format!("migrating PostgreSQL database {shown}"))?;

        let layout = existing_layout(&pool, timescale_version.is_some())
            .await?
            .ok_or_else(|| crate::Error::Layout("readings is missing after the migrations".into()))?;
        let jobs = Arc::new(JobWatch::new(options.job_runs));
        let mut maintenance = None;
        match (layout, &timescale_version) {
            (Layout::Plain | Layout::Hypertable, Some(version)) => {
                timescale::set_up(&pool, &timescale::Policies::default())
                    .await
                    .doing("setting up the readings hypertable")?;
                tracing::info!(
                    database = %shown, timescaledb = %version, jobs = %options.job_runs,
                    "PostgreSQL storage: readings is a TimescaleDB hypertable (compression, retention, hourly aggregate)"
                );
                let watch = timescale_jobs::spawn(jobs.clone(), pool.clone(), options.check_jobs_every);
                return Self::with_layout(pool, Layout::Hypertable, Some(watch), Some(jobs)).await;
            }
            (Layout::Partitioned, _) => {
                let plan = partitions::Plan::default();
                partitions::maintain(&pool, &plan).await?;
                let why = match decision {
                    Decision::Native(why) => why,
                    Decision::Hypertable { .. } => "readings was created with native partitions",
                };
                tracing::info!(
                    database = %shown, reason = why,
                    "PostgreSQL storage: readings uses native daily partitions with a default partition"
                );
                let pool = pool.clone();
                maintenance = Some(tokio::spawn(async move {
                    let mut every = tokio::time::interval(MAINTAIN_EVERY);
                    every.tick().await; // the first tick is now, and that was done above
                    loop {
                        every.tick().await;
                        if let Err(e) = partitions::maintain(&pool, &plan).await {
                            tracing::error!(error = %format!("{e:#}"), "partition maintenance failed; retrying in an hour");
                        }
                    }
                }));
            }
            (Layout::Plain | Layout::Hypertable, None) => tracing::warn!(
                database = %shown,
                "PostgreSQL storage: readings is a plain table (made for TimescaleDB, which this server lacks)"
            ),
        }
        Self::with_layout(pool, layout, maintenance, None).await
    }

    /// Recomputes what a crash left unwritten of the device states, and starts writing them behind.
    async fn with_layout(
        pool: PgPool,
        layout: Layout,
        maintenance: Option<tokio::task::JoinHandle<()>>,
        jobs: Option<Arc<JobWatch>>,
    ) -> Result<Self> {
        let maintenance = Arc::new(latest::AbortOnDrop(maintenance));
        recover_states(&pool).await.doing("recomputing device states")?;
        let latest = Arc::new(latest::Pending::default());
        let flusher = latest::spawn_flusher(latest.clone(), pool.clone(), write_states);
        Ok(Self {
            pool,
            layout,
            jobs,
            latest,
            _maintenance: maintenance,
            _flusher: Arc::new(latest::AbortOnDrop(Some(flusher))),
        })
    }

    /// Writes the pending device states now (the flusher does it every [`latest::FLUSH_EVERY`]).
    pub async fn flush_states(&self) -> Result<()> {
        let pool = self.pool.clone();
        latest::flush(&self.latest, |states, at| write_states(pool, states, at)).await
    }

    /// Device states committed and not yet written to `devices`.
    pub fn pending_states(&self) -> &latest::Pending {
        &self.latest
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool for the domain's writes: the same pool (PostgreSQL has many
    /// writers; SQLite's [`crate::sqlite::SqliteStore::writer`] is one connection).
    pub fn writer(&self) -> &PgPool {
        &self.pool
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The health of TimescaleDB's jobs after the last check (hypertable layout only).
    pub fn policy_health(&self) -> Option<PolicyHealth> {
        self.jobs.as_ref()?.health()
    }

    /// Reads TimescaleDB's jobs now and runs those due at `now_ms` (done every
    /// `check_jobs_every` in the background); `None` on other layouts.
    pub async fn check_policies(&self, now_ms: i64) -> Option<PolicyHealth> {
        Some(self.jobs.as_ref()?.check(&self.pool, now_ms).await)
    }

    pub async fn commit(&self, accepted: &[Accepted], refused: &[Refused]) -> Result<Committed> {
        let (storable, quarantined, mut quarantine) = plan_batch(accepted, refused);
        let received_at = now_ms();
        let mut rows = CopyRows::with_capacity(storable.len());
        let mut row_of = vec![usize::MAX; accepted.len()];
        for (row, &i) in storable.iter().enumerate() {
            rows.push(&accepted[i], received_at);
            row_of[i] = row;
        }
        let ranges: Vec<_> = (0..rows.rows()).map(|row| rows.reading_range(row)).collect();
        let copy = rows.finish();
        // The device states reuse the readings' JSON from the COPY payload.
        let reading_json = |i: usize| {
            let range = ranges.get(*row_of.get(i)?)?.clone();
            std::str::from_utf8(&copy[range]).ok()
        };

        let mut tx = self.pool.begin().await?;
        let mut quarantined = quarantined;
        let new = match copy_in(&mut tx, COPY_READINGS, &copy).await {
            Ok(()) => {
                metrics::counter!("gridwatch_ingest_copy_batches_total").increment(1);
                storable
            }
            Err(e) if has_sqlstate(&e, "23505") => {
                metrics::counter!("gridwatch_ingest_copy_fallback_total", "reason" => "duplicate").increment(1);
                tx.rollback().await?;
                tx = self.pool.begin().await?;
                insert_via_staging(&mut tx, accepted, &storable, &copy).await?
            }
            Err(e) if is_data_error(&e) => {
                metrics::counter!("gridwatch_ingest_copy_fallback_total", "reason" => "data").increment(1);
                tracing::warn!(error = %e, rows = storable.len(), "the database refused data in a batch; storing it row by row");
                tx.rollback().await?;
                tx = self.pool.begin().await?;
                let (new, refused_rows) = insert_row_by_row(&mut tx, accepted, &storable).await?;
                for (i, why) in refused_rows {
                    quarantine.push(quarantine_entry(&accepted[i], why));
                    quarantined.push(i);
                }
                quarantined.sort_unstable();
                new
            }
            Err(e) => return Err(e.into()),
        };
        insert_quarantine(&mut tx, &quarantine).await?;
        tx.commit().await?;
        // Worked out after the commit, so that the transaction is not held open for it.
        self.latest.merge(accepted, &new, reading_json);
        Ok(Committed { new, quarantined })
    }

    pub async fn history(&self, device: &str, from_ms: i64, to_ms: i64, limit: i64) -> Result<Vec<ReadingRow>> {
        let rows = sqlx::query(
            "SELECT device_id, seq, (extract(epoch FROM ts) * 1000)::int8 AS ts_ms, kind, gateway, body \
             FROM readings \
             WHERE device_id = $1 AND ts >= timestamptz 'epoch' + $2 * interval '1 millisecond' \
               AND ts < timestamptz 'epoch' + $3 * interval '1 millisecond' \
             ORDER BY ts, seq LIMIT $4",
        )
        .bind(device)
        .bind(clamp_ms(from_ms))
        .bind(clamp_ms(to_ms))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ReadingRow {
                device_id: r.get("device_id"),
                seq: r.get("seq"),
                ts_ms: r.get("ts_ms"),
                kind: r.get("kind"),
                gateway: r.get("gateway"),
                reading: serde_json::from_str(r.get("body")).unwrap_or_default(),
            })
            .collect())
    }

    pub async fn counts_per_kind(&self, since_ms: i64) -> Result<Vec<KindCount>> {
        let rows = sqlx::query(
            "SELECT kind, count(*) AS readings FROM readings \
             WHERE ts >= timestamptz 'epoch' + $1 * interval '1 millisecond' GROUP BY kind ORDER BY kind",
        )
        .bind(clamp_ms(since_ms))
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

/// A time bound in ms clamped to what a `timestamptz` holds (the years 0 to 9999
/// are plenty), so that open ranges such as `..i64::MAX` work.
fn clamp_ms(ms: i64) -> i64 {
    const YEAR_0: i64 = -62_167_219_200_000;
    const YEAR_10000: i64 = 253_402_300_800_000;
    ms.clamp(YEAR_0, YEAR_10000)
}

/// The layout of an existing `readings` table, `None` before the first migration.
async fn existing_layout(pool: &PgPool, timescale: bool) -> Result<Option<Layout>> {
    let kind: Option<String> = sqlx::query_scalar(
        "SELECT c.relkind::text FROM pg_class c \
         WHERE c.relname = 'readings' AND c.relnamespace = current_schema()::regnamespace",
    )
    .fetch_optional(pool)
    .await
    .doing("reading the catalog for readings")?;
    Ok(match kind.as_deref() {
        None => None,
        Some("p") => Some(Layout::Partitioned),
        Some(_) if timescale && timescale::is_hypertable(pool).await? => Some(Layout::Hypertable),
        Some(_) => Some(Layout::Plain),
    })
}

/// Runs the embedded migrations, telling the first one which layout to create.
async fn migrate(pool: &PgPool, layout: Layout) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let setting = if layout == Layout::Partitioned {
        "partitioned"
    } else {
        "hypertable"
    };
    sqlx::query("SELECT set_config('gridwatch.readings_layout', $1, false)")
        .bind(setting)
        .execute(&mut *conn)
        .await?;
    let migrated = sqlx::migrate!("./migrations/postgres").run(&mut *conn).await;
    sqlx::query("RESET gridwatch.readings_layout")
        .execute(&mut *conn)
        .await?;
    migrated?;
    Ok(())
}

/// Streams a prepared COPY payload into the table named by `statement`, in
/// pieces: the connection's write buffer keeps the largest capacity it ever
/// needed, so whole batches would pin a batch-sized buffer per pooled connection.
pub(crate) async fn copy_in(conn: &mut PgConnection, statement: &str, data: &[u8]) -> Result<(), sqlx::Error> {
    const PIECE: usize = 128 * 1024;
    let mut copy = conn.copy_in_raw(statement).await?;
    for piece in data.chunks(PIECE) {
        if let Err(e) = copy.send(piece).await {
            // Leave the connection usable: end the COPY before reporting.
            let _ = copy.abort("gridwatch: send failed").await;
            return Err(e);
        }
    }
    copy.finish().await.map(|_| ())
}

/// The duplicate path: stage the batch, insert what is new, and learn which rows those were.
async fn insert_via_staging(
    tx: &mut Transaction<'_, Postgres>,
    accepted: &[Accepted],
    storable: &[usize],
    copy: &[u8],
) -> Result<Vec<usize>> {
    // Pooled connections keep temp tables: create once, emptied by every commit.
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS readings_staging (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    )
    .execute(&mut **tx)
    .await?;
    copy_in(tx, COPY_STAGING, copy).await?;
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO readings ({READING_COLUMNS}) SELECT {READING_COLUMNS} FROM readings_staging \
         ON CONFLICT DO NOTHING RETURNING device_id, seq, (extract(epoch FROM ts) * 1000)::int8"
    )))
    .fetch_all(&mut **tx)
    .await?;
    // Key → first index with it: a key twice in one batch is new once.
    let mut by_key: HashMap<(&str, i64, i64), usize> =
        HashMap::with_capacity_and_hasher(storable.len(), Default::default());
    for &i in storable {
        let r = &accepted[i].reading;
        by_key.entry((r.device(), r.seq() as i64, r.ts() as i64)).or_insert(i);
    }
    let mut new: Vec<usize> = inserted
        .iter()
        .filter_map(|row| {
            let device: &str = row.get(0);
            by_key
                .get(&(device, row.get::<i64, _>(1), row.get::<i64, _>(2)))
                .copied()
        })
        .collect();
    new.sort_unstable();
    Ok(new)
}

/// The data-error path: every row in its own savepoint. Returns the new rows and
/// the rows the database refused, with its reason.
async fn insert_row_by_row(
    tx: &mut Transaction<'_, Postgres>,
    accepted: &[Accepted],
    storable: &[usize],
) -> Result<(Vec<usize>, Vec<(usize, String)>)> {
    let mut new = Vec::new();
    let mut refused = Vec::new();
    for &i in storable {
        let a = &accepted[i];
        let r = &a.reading;
        sqlx::query("SAVEPOINT gridwatch_row").execute(&mut **tx).await?;
        let inserted = sqlx::query(
            "INSERT INTO readings (device_id, seq, ts, kind, gateway, body) \
             VALUES ($1, $2, timestamptz 'epoch' + $3 * interval '1 millisecond', $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(r.device())
        .bind(r.seq() as i64)
        .bind(r.ts() as i64)
        .bind(r.kind().as_str())
        .bind(&a.gateway)
        .bind(serde_json::to_string(r)?)
        .execute(&mut **tx)
        .await;
        match inserted {
            Ok(done) => {
                sqlx::query("RELEASE SAVEPOINT gridwatch_row")
                    .execute(&mut **tx)
                    .await?;
                if done.rows_affected() == 1 {
                    new.push(i);
                }
            }
            Err(e) if is_data_error(&e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT gridwatch_row")
                    .execute(&mut **tx)
                    .await?;
                refused.push((i, format!("the database refused this reading: {e}")));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((new, refused))
}

/// Device states per statement: a connection's write buffer keeps the largest
/// capacity it once needed, so ten thousand bodies in one statement would pin
/// megabytes on every pooled connection.
const STATES_PER_STATEMENT: usize = 1000;

/// Writes device states and the time of this flush in one transaction; an older
/// reading never replaces a newer state. Returns the states written.
async fn write_states(pool: PgPool, states: Vec<State>, flushed_at: i64) -> Result<Vec<State>> {
    let mut tx = pool.begin().await?;
    // In device order (as given): a fixed lock order.
    for chunk in states.chunks(STATES_PER_STATEMENT) {
        let column = |f: fn(&State) -> &str| chunk.iter().map(f).collect::<Vec<&str>>();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO devices (device_id, kind, gateway, last_seq, last_ts, last_body, updated_at) \
             SELECT d, k, g, s, t, b, $7 \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[]) AS u(d, k, g, s, t, b) \
             ORDER BY d {}",
            latest::UPSERT_DEVICE
        )))
        .bind(column(|s| &s.device))
        .bind(column(|s| s.kind))
        .bind(column(|s| &s.gateway))
        .bind(chunk.iter().map(|s| s.seq).collect::<Vec<i64>>())
        .bind(chunk.iter().map(|s| s.ts).collect::<Vec<i64>>())
        .bind(column(|s| &s.body))
        .bind(flushed_at)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(latest::WRITE_FLUSHED_AT)
        .bind(flushed_at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(states)
}

/// After a crash, the states of the readings received since the last flush may
/// not be written: recompute them from the readings (see [`latest`]). Readings
/// older than TimescaleDB's compression age (device time) are left out: the
/// query then reads only recent partitions and never decompresses a chunk, and
/// such a reading is rarely a device's newest state (its next reading mends it).
async fn recover_states(pool: &PgPool) -> Result<()> {
    let flushed_at: i64 = sqlx::query_scalar(latest::READ_FLUSHED_AT).fetch_one(pool).await?;
    let oldest = timescale::Policies::default().compress_after;
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO devices (device_id, kind, gateway, last_seq, last_ts, last_body, updated_at) \
         SELECT DISTINCT ON (device_id) device_id, kind, gateway, seq, (extract(epoch FROM ts) * 1000)::int8, \
                (body::jsonb -> 'body')::text, $2 \
         FROM readings WHERE received_at >= $1 AND kind IN ('lift', 'sterilizer') \
           AND ts >= now() - $3 * interval '1 second' \
         ORDER BY device_id, seq DESC {}",
        latest::UPSERT_DEVICE
    )))
    .bind(flushed_at - latest::RECOVERY_MARGIN_MS)
    .bind(now_ms())
    .bind(oldest.as_secs() as f64)
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

async fn insert_quarantine(tx: &mut Transaction<'_, Postgres>, entries: &[Refused]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    // The quarantine must take anything: PostgreSQL text cannot hold NUL, so it is
    // spelled out (the payload column is bytea and keeps the bytes as they came).
    let text = |s: &str| s.replace('\0', "\\0");
    let sources: Vec<String> = entries.iter().map(|e| text(&e.source)).collect();
    let reasons: Vec<&str> = entries.iter().map(|e| e.reason).collect();
    let details: Vec<String> = entries.iter().map(|e| text(&e.detail)).collect();
    let payloads: Vec<&[u8]> = entries.iter().map(|e| e.payload.as_slice()).collect();
    sqlx::query(
        "INSERT INTO quarantine (received_at, source, reason, detail, payload) \
         SELECT (extract(epoch FROM now()) * 1000)::int8, s, r, d, p \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) WITH ORDINALITY AS u(s, r, d, p, n) ORDER BY n",
    )
    .bind(&sources)
    .bind(&reasons)
    .bind(&details)
    .bind(&payloads)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether `e` is a database error with SQLSTATE `code`: errors are told apart by
/// code, never by constraint name (TimescaleDB names a chunk's constraint).
fn has_sqlstate(e: &sqlx::Error, code: &str) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(code))
}

/// Whether the database refused the data itself (bad value, constraint, limit) rather
/// than failing as a service: such a batch is split, not retried as a whole.
fn is_data_error(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else { return false };
    let Some(code) = db.code() else { return false };
    (code.starts_with("22") || code.starts_with("23") || code.starts_with("54")) && code != "23505"
}
