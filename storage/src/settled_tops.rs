//! Which new readings cannot be in `readings_settled`, so that their insert into
//! `readings_recent` may skip the lookup there (docs/storage.md).
//!
//! A key is kept out of both tables by looking it up in `readings_settled`
//! before inserting it into `readings_recent`. That lookup reads a leaf of the
//! large settled key per device, mostly from outside the writer's cache. But a
//! device's readings normally arrive in key order, and one above every key the
//! device has in `readings_settled` cannot be there. So per device this keeps a
//! "top": a key at or above all of its settled keys.
//!
//! - A device's top is read off the settled key (one index search) the first
//!   time a commit holds the device, inside that commit's transaction.
//! - Every piece moved raises the tops of its devices, before it commits: a
//!   top too high only costs lookups, never a missed duplicate.
//! - Moves count themselves in `store_meta` (`settled_moves`). A commit that
//!   finds the count changed by someone else (another process on the same
//!   file) forgets every top, and learns them again.
use crate::model::Accepted;
use crate::statement_chunks;
use foldhash::HashMap;
use sqlx::{Row, SqliteConnection};
use std::sync::Mutex;

/// `(ts, seq)` at or above every settled key of a device; `None`: it has none.
type Top = Option<(i64, i64)>;

/// The count of moves in `store_meta`, read and raised with the same SQL.
const READ_MOVES: &str = "SELECT value FROM store_meta WHERE key = 'settled_moves'";
const COUNT_MOVE: &str = "UPDATE store_meta SET value = value + 1 WHERE key = 'settled_moves' RETURNING value";

/// Devices looked up per statement.
const DEVICES_PER_STATEMENT: usize = 500;

#[derive(Debug, Default)]
pub struct SettledTops {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tops: HashMap<String, Top>,
    /// `settled_moves` as last seen by this process; `None`: not read yet.
    moves: Option<i64>,
}

impl SettledTops {
    /// Splits `rows` (indices into `accepted`, in key order) into those whose
    /// keys `readings_settled` may hold and those it cannot, each in the order
    /// given. Call it in the writer's transaction, after the write lock is
    /// taken, so that no move can come in between.
    pub async fn split(
        &self,
        conn: &mut SqliteConnection,
        accepted: &[Accepted],
        rows: &[usize],
    ) -> Result<(Vec<usize>, Vec<usize>), sqlx::Error> {
        let moves: i64 = sqlx::query_scalar(READ_MOVES).fetch_one(&mut *conn).await?;
        let unknown: Vec<&str> = {
            let mut inner = self.lock();
            if inner.moves != Some(moves) {
                inner.tops.clear();
                inner.moves = Some(moves);
            }
            let mut unknown: Vec<&str> = rows
                .iter()
                .map(|&i| accepted[i].reading.device())
                .filter(|device| !inner.tops.contains_key(*device))
                .collect();
            unknown.sort_unstable();
            unknown.dedup();
            unknown
        };
        for chunk in statement_chunks(&unknown, DEVICES_PER_STATEMENT) {
            let found = lookup_tops(conn, chunk).await?;
            let mut inner = self.lock();
            for (device, top) in found {
                inner.tops.insert(device, top);
            }
        }
        let inner = self.lock();
        Ok(rows.iter().partition(|&&i| {
            let r = &accepted[i].reading;
            match inner.tops.get(r.device()) {
                Some(Some(top)) => (r.ts() as i64, r.seq() as i64) <= *top,
                Some(None) => false,
                None => true,
            }
        }))
    }

    /// Counts a move and raises the tops of the devices it moves, given as
    /// `(device, greatest ts, greatest seq)`. Call it in the move's transaction.
    pub async fn moving(&self, conn: &mut SqliteConnection, moved: &[(String, i64, i64)]) -> Result<(), sqlx::Error> {
        let moves: i64 = sqlx::query_scalar(COUNT_MOVE).fetch_one(&mut *conn).await?;
        let mut inner = self.lock();
        // Another process moved readings since this one last looked: its tops may be too low.
        if inner.moves != Some(moves - 1) {
            inner.tops.clear();
        }
        inner.moves = Some(moves);
        for (device, ts, seq) in moved {
            // Only a known top covers everything settled; an unknown device is looked up when it comes.
            if let Some(top) = inner.tops.get_mut(device.as_str()) {
                *top = Some(top.map_or((*ts, *seq), |(t, s)| (t.max(*ts), s.max(*seq))));
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("settled tops")
    }
}

/// The greatest settled key of each of `devices`.
async fn lookup_tops(conn: &mut SqliteConnection, devices: &[&str]) -> Result<Vec<(String, Top)>, sqlx::Error> {
    let mut sql = String::from("SELECT d.column1, s.ts, s.seq FROM (VALUES ");
    for i in 0..devices.len() {
        sql.push_str(if i == 0 { "(?)" } else { ", (?)" });
    }
    sql.push_str(
        ") AS d LEFT JOIN readings_settled s ON s.rowid = (SELECT rowid FROM readings_settled \
         WHERE device_id = d.column1 ORDER BY ts DESC, seq DESC LIMIT 1)",
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for device in devices {
        query = query.bind(*device);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let top = match (row.get::<Option<i64>, _>(1), row.get::<Option<i64>, _>(2)) {
                (Some(ts), Some(seq)) => Some((ts, seq)),
                _ => None,
            };
            (row.get(0), top)
        })
        .collect())
}
