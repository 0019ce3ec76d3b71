//! SQLite keeps new readings in `readings_recent` and moves them into
//! `readings_settled` in pieces, in key order (migration 0102, docs/storage.md).
//!
//! Both tables are keyed by `(device_id, ts, seq)`. A batch from thousands of
//! devices inserted straight into the large settled key dirtied a page of it per
//! device, and every commit wrote those pages to the WAL again. The recent key
//! is small enough to stay in the writer's cache; the settled key is written in
//! key-ordered pieces, each page once per [`SettleLimits::settle_at`] readings or so.
//!
//! A piece is a range of keys after the previous piece's last one, wrapping
//! around at the end: pieces walk the key space, so each touches its own share
//! of the settled key, and a commit usually waits for one piece at most.
use crate::Result;
use crate::settled_tops::SettledTops;
use sqlx::{Row, SqlitePool};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// When readings move, and how many at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleLimits {
    /// Rows in `readings_recent` from which each commit is followed by a piece.
    pub settle_at: u64,
    /// Readings moved per piece.
    pub piece_rows: i64,
}

impl Default for SettleLimits {
    /// Direct benchmark, 10,000 devices: moving 100,000 at once was as fast but
    /// held commits back long enough for ingest to hold 10-20 MiB more meanwhile;
    /// a quarter of that at a time bounds the wait.
    fn default() -> Self {
        Self {
            settle_at: 100_000,
            piece_rows: 25_000,
        }
    }
}

/// A key of both tables: `(device_id, ts, seq)`.
type Key = (String, i64, i64);

/// Where the next piece starts, and how many rows `readings_recent` has.
#[derive(Debug)]
pub struct Settler {
    limits: SettleLimits,
    recent: AtomicU64,
    /// The last key moved; `None`: start from the lowest.
    after: Mutex<Option<Key>>,
    /// Which new readings cannot be settled yet; raised by every piece.
    tops: SettledTops,
}

impl Settler {
    /// Counts the rows a previous run left in `readings_recent`.
    pub async fn open(writer: &SqlitePool, limits: SettleLimits) -> Result<Self> {
        let recent: i64 = sqlx::query_scalar("SELECT count(*) FROM readings_recent")
            .fetch_one(writer)
            .await?;
        Ok(Self {
            limits,
            recent: AtomicU64::new(recent as u64),
            after: Mutex::new(None),
            tops: SettledTops::default(),
        })
    }

    /// Which new readings cannot be in `readings_settled` (see [`SettledTops`]).
    pub fn tops(&self) -> &SettledTops {
        &self.tops
    }

    /// Counts rows a commit added to `readings_recent`.
    pub fn added(&self, rows: usize) {
        let recent = self.recent.fetch_add(rows as u64, Ordering::Relaxed) + rows as u64;
        metrics::gauge!("gridwatch_ingest_recent_readings").set(recent as f64);
    }

    /// Moves pieces until fewer than `settle_at` readings are recent: usually
    /// one piece, as a commit adds fewer readings than a piece holds.
    pub async fn catch_up(&self, writer: &SqlitePool) -> Result<()> {
        let mut empty_pieces = 0;
        // Two empty pieces in a row: the table is empty whatever the count says.
        while self.recent.load(Ordering::Relaxed) >= self.limits.settle_at && empty_pieces < 2 {
            empty_pieces = if self.move_piece(writer).await? == 0 {
                empty_pieces + 1
            } else {
                0
            };
        }
        Ok(())
    }

    /// Moves the next piece in one transaction; returns how many readings moved
    /// (zero when none are left after the previous piece: the next starts over).
    pub async fn move_piece(&self, writer: &SqlitePool) -> Result<u64> {
        let started = std::time::Instant::now();
        let after = self.after.lock().expect("settle cursor").clone();
        let from = after.unwrap_or_else(|| (String::new(), i64::MIN, i64::MIN));
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let last: Option<Key> = sqlx::query_as(
            "SELECT device_id, ts, seq FROM (SELECT device_id, ts, seq FROM readings_recent \
             WHERE (device_id, ts, seq) > (?, ?, ?) ORDER BY device_id, ts, seq LIMIT ?) \
             ORDER BY device_id DESC, ts DESC, seq DESC LIMIT 1",
        )
        .bind(&from.0)
        .bind(from.1)
        .bind(from.2)
        .bind(self.limits.piece_rows)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(last) = last else {
            // Nothing after the cursor: the next piece starts from the lowest key.
            tx.rollback().await?;
            *self.after.lock().expect("settle cursor") = None;
            return Ok(0);
        };
        let devices = sqlx::query(
            "SELECT device_id, max(ts), max(seq) FROM readings_recent \
             WHERE (device_id, ts, seq) > (?1, ?2, ?3) AND (device_id, ts, seq) <= (?4, ?5, ?6) GROUP BY device_id",
        );
        let moving: Vec<(String, i64, i64)> = bind_range(devices, &from, &last)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        self.tops.moving(&mut tx, &moving).await?;
        // `WHERE` before the upsert clause keeps SQLite's parser from reading it as a join.
        let copy = sqlx::query(
            "INSERT INTO readings_settled (device_id, seq, ts, kind, gateway, body, received_at) \
             SELECT device_id, seq, ts, kind, gateway, body, received_at FROM readings_recent \
             WHERE (device_id, ts, seq) > (?1, ?2, ?3) AND (device_id, ts, seq) <= (?4, ?5, ?6) \
             ORDER BY device_id, ts, seq ON CONFLICT DO NOTHING",
        );
        bind_range(copy, &from, &last).execute(&mut *tx).await?;
        let delete = sqlx::query(
            "DELETE FROM readings_recent WHERE (device_id, ts, seq) > (?1, ?2, ?3) AND (device_id, ts, seq) <= (?4, ?5, ?6)",
        );
        let moved = bind_range(delete, &from, &last)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        *self.after.lock().expect("settle cursor") = Some(last);
        // Saturating: rows another process added are not counted here.
        let _ = self
            .recent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(moved)));
        metrics::histogram!("gridwatch_ingest_settle_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("gridwatch_ingest_settled_readings_total").increment(moved);
        metrics::gauge!("gridwatch_ingest_recent_readings").set(self.recent.load(Ordering::Relaxed) as f64);
        Ok(moved)
    }

    /// Moves every row of `readings_recent`, piece by piece (tests, tools).
    pub async fn move_all(&self, writer: &SqlitePool) -> Result<()> {
        *self.after.lock().expect("settle cursor") = None;
        while self.move_piece(writer).await? > 0 {}
        Ok(())
    }
}

/// Binds the keys after `from` up to and including `last` as `?1` to `?6`.
fn bind_range<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    from: &'q Key,
    last: &'q Key,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    query
        .bind(&from.0)
        .bind(from.1)
        .bind(from.2)
        .bind(&last.0)
        .bind(last.1)
        .bind(last.2)
}
