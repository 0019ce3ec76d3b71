//! Retention: readings older than the retention (device time) are deleted in small
//! steps, so the one SQLite writer, or PostgreSQL's writers, never wait long for it.
//!
//! A step is one short transaction on the writer pool: it walks devices in id order
//! from where the previous step stopped and deletes each one's old readings through
//! the key `(device_id, ts, seq)`, at most [`Retention::step_rows`] readings and
//! [`Retention::step_devices`] devices a step. Commits queue for the writer between
//! steps, never behind a whole pass.
//!
//! SQLite prunes `readings_settled` only: `readings_recent` holds the readings that
//! arrived last (see [`crate::settle`]), which settle and are pruned then. On
//! TimescaleDB the hypertable's retention policy drops whole chunks instead.
//!
//! The feed ([`crate::feed`]) is kept as long as the readings: each pass also deletes
//! the feed rows whose event time is before the cutoff, [`Retention::step_rows`] a
//! step, on every backend. A PostgreSQL store without a retention keeps its readings
//! until their partitions or chunks are dropped; its feed is pruned alone after as long
//! ([`Retention::feed_only_for`]).
use crate::postgres::Layout;
use crate::{Result, Store};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

/// How long readings are kept, and the size of each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Readings whose device time is older than this are deleted.
    pub keep: Duration,
    /// The most readings one step deletes.
    pub step_rows: i64,
    /// The most devices one step looks at.
    pub step_devices: usize,
    /// How often a pass runs.
    pub every: Duration,
    /// The pause between two steps of a pass, in which commits take the writer.
    pub pause: Duration,
    /// Whether a pass prunes readings; `false`: the feed only.
    pub readings: bool,
}

/// The embedded store's default: 90 days of device time.
pub const SQLITE_DEFAULT_DAYS: u64 = 90;

impl Retention {
    /// Keeps `days` days, in the default steps.
    pub fn days(days: u64) -> Self {
        Self {
            keep: DAY * days as u32,
            step_rows: 2_000,
            step_devices: 500,
            every: Duration::from_secs(3600),
            pause: Duration::from_millis(20),
            readings: true,
        }
    }

    /// What a store without a retention of its readings prunes: on PostgreSQL the feed
    /// alone, after as long as the readings' partitions or chunks are kept (730 days);
    /// on SQLite nothing (it then keeps every reading, and the feed with them).
    pub fn feed_only_for(store: &Store) -> Option<Self> {
        match store {
            Store::Sqlite(_) => None,
            Store::Postgres(_) => Some(Self {
                keep: crate::timescale::Policies::default().retention,
                readings: false,
                ..Self::days(0)
            }),
        }
    }

    /// The default for a database URL: [`SQLITE_DEFAULT_DAYS`] for SQLite, none for
    /// PostgreSQL (its partitions or chunks are dropped after 730 days).
    pub fn default_for(url: &str) -> Option<Self> {
        crate::is_sqlite(url).then(|| Self::days(SQLITE_DEFAULT_DAYS))
    }

    /// The oldest device time kept at `now_ms`.
    pub fn cutoff_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.keep.as_millis() as i64)
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Readings deleted.
    pub pruned: u64,
    /// Steps (transactions) over the readings.
    pub steps: u64,
    /// Feed rows deleted.
    pub feed_pruned: u64,
}

/// Where a pass is: the device the next step starts at (`inclusive`) or after.
#[derive(Debug, Clone)]
struct Cursor {
    device: String,
    inclusive: bool,
    done: bool,
}

impl Default for Cursor {
    fn default() -> Self {
        Self {
            device: String::new(),
            inclusive: true,
            done: false,
        }
    }
}

/// The table a step deletes from, or `None` where the backend prunes by itself.
fn table(store: &Store) -> Option<&'static str> {
    match store {
        Store::Sqlite(_) => Some("readings_settled"),
        Store::Postgres(p) if p.layout() == Layout::Hypertable => None,
        Store::Postgres(_) => Some("readings"),
    }
}

/// Deletes every reading older than `retention.cutoff_ms(now_ms)`, step by step,
/// pausing [`Retention::pause`] between steps, then the feed rows older than it
/// ([`prune_feed`]). Readings and feed rows at or after the cutoff are never touched.
pub async fn prune(store: &Store, retention: &Retention, now_ms: i64) -> Result<Pass> {
    let mut pass = Pass::default();
    if let Some(table) = table(store).filter(|_| retention.readings) {
        let cutoff = retention.cutoff_ms(now_ms);
        let mut cursor = Cursor::default();
        while !cursor.done {
            let pruned = step(store, table, retention, cutoff, &mut cursor).await?;
            pass.pruned += pruned;
            pass.steps += 1;
            if pruned > 0 {
                describe();
                metrics::counter!("gridwatch_storage_readings_pruned_total").increment(pruned);
            }
            if !cursor.done && !retention.pause.is_zero() {
                tokio::time::sleep(retention.pause).await;
            }
        }
    }
    pass.feed_pruned = prune_feed(store, retention, now_ms).await?;
    metrics::counter!("gridwatch_storage_retention_passes_total").increment(1);
    Ok(pass)
}

/// Deletes the feed rows whose event time is before `retention.cutoff_ms(now_ms)`, at
/// most [`Retention::step_rows`] a transaction, pausing [`Retention::pause`] between.
pub async fn prune_feed(store: &Store, retention: &Retention, now_ms: i64) -> Result<u64> {
    let cutoff = retention.cutoff_ms(now_ms);
    let step_rows = retention.step_rows.max(1);
    let mut pruned = 0;
    loop {
        let deleted = crate::feed::prune_step(store, cutoff, step_rows).await?;
        pruned += deleted;
        if deleted > 0 {
            describe();
            metrics::counter!("gridwatch_storage_feed_pruned_total").increment(deleted);
        }
        if (deleted as i64) < step_rows {
            return Ok(pruned);
        }
        if !retention.pause.is_zero() {
            tokio::time::sleep(retention.pause).await;
        }
    }
}

fn describe() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_counter!(
            "gridwatch_storage_readings_pruned_total",
            "Readings deleted because their device time is older than the retention"
        );
        metrics::describe_counter!(
            "gridwatch_storage_retention_passes_total",
            "Retention passes completed over every device"
        );
        metrics::describe_counter!(
            "gridwatch_storage_feed_pruned_total",
            "Feed rows deleted because their event time is older than the retention"
        );
    });
}

/// One transaction: up to `step_devices` devices after the cursor, up to `step_rows`
/// readings deleted. A device with more old readings than the step holds is taken
/// up again by the next step.
async fn step(store: &Store, table: &str, r: &Retention, cutoff: i64, cursor: &mut Cursor) -> Result<u64> {
    let next_device =
        |op: &str| format!("SELECT device_id FROM {table} WHERE device_id {op} $1 ORDER BY device_id LIMIT 1");
    let (at_or_after, after) = (next_device(">="), next_device(">"));
    let delete = match store {
        Store::Sqlite(_) => {
            format!(
                "DELETE FROM {table} WHERE rowid IN \
                 (SELECT rowid FROM {table} WHERE device_id = $1 AND ts < $2 ORDER BY ts LIMIT $3)"
            )
        }
        Store::Postgres(_) => {
            format!(
                "DELETE FROM {table} r USING (SELECT device_id, ts, seq FROM {table} \
                 WHERE device_id = $1 AND ts < timestamptz 'epoch' + $2 * interval '1 millisecond' \
                 ORDER BY ts LIMIT $3) old \
                 WHERE r.device_id = old.device_id AND r.ts = old.ts AND r.seq = old.seq"
            )
        }
    };
    let mut pruned = 0u64;
    with_pool!(store, writer, |pool| {
        let mut tx = pool.begin().await?;
        for _ in 0..r.step_devices {
            let next = if cursor.inclusive { &at_or_after } else { &after };
            let device: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(next.as_str()))
                .bind(cursor.device.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(device) = device else {
                cursor.done = true;
                break;
            };
            let room = r.step_rows - pruned as i64;
            let deleted = sqlx::query(sqlx::AssertSqlSafe(delete.as_str()))
                .bind(&device)
                .bind(cutoff)
                .bind(room)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            pruned += deleted;
            // A device with old readings left (the step is full) is where the next step starts.
            let full = deleted as i64 >= room;
            cursor.device = device;
            cursor.inclusive = full;
            if full {
                break;
            }
        }
        tx.commit().await?;
    });
    Ok(pruned)
}

/// Runs a pass every [`Retention::every`], the first at once, with `now` from
/// `clock_ms`, logging what it did. Never returns: abort its task to stop it.
pub async fn run(store: Store, retention: Retention, clock_ms: impl Fn() -> i64) {
    let mut every = tokio::time::interval(retention.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match prune(&store, &retention, clock_ms()).await {
            Ok(pass) if pass.pruned > 0 || pass.feed_pruned > 0 => {
                tracing::info!(
                    pruned = pass.pruned,
                    steps = pass.steps,
                    feed_pruned = pass.feed_pruned,
                    "retention: old readings and feed rows deleted"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed; retrying at the next one"),
        }
    }
}
