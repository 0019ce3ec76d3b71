//! Storage behind one type, whatever the backend. The embedded default is
//! SQLite ([`sqlite`]); the backend is chosen by the database URL.
//!
//! Every write of a batch is one transaction: readings (idempotent on
//! `(device_id, seq, ts)`), the latest state per device, and quarantined input.
//! Acknowledgements are sent only after [`Store::commit`] returns.
pub mod sqlite;

use crate::model::*;
use anyhow::{Result, bail};
use std::path::Path;

#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
}

/// What a commit did: which of the accepted readings were new (in input order).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub new: Vec<usize>,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs migrations.
    /// `sqlite://PATH` or a bare path is SQLite.
    pub async fn open(url: &str) -> Result<Store> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            return Ok(Store::Sqlite(sqlite::SqliteStore::open(Path::new(path)).await?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            bail!("database URL {url:?}: PostgreSQL is not supported yet; use sqlite://PATH");
        }
        bail!("database URL {url:?}: expected sqlite://PATH");
    }

    pub async fn commit(&self, accepted: &[Accepted], refused: &[Refused]) -> Result<Committed> {
        match self {
            Store::Sqlite(s) => s.commit(accepted, refused).await,
        }
    }

    pub async fn apply_alerts(&self, changes: &[AlertChange]) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.apply_alerts(changes).await,
        }
    }

    pub async fn alerts(&self, open_only: bool) -> Result<Vec<AlertRow>> {
        match self {
            Store::Sqlite(s) => s.alerts(open_only).await,
        }
    }

    pub async fn devices(&self) -> Result<Vec<DeviceRow>> {
        match self {
            Store::Sqlite(s) => s.devices().await,
        }
    }

    pub async fn quarantine(&self, limit: i64) -> Result<Vec<QuarantineRow>> {
        match self {
            Store::Sqlite(s) => s.quarantine(limit).await,
        }
    }

    pub async fn reading_count(&self) -> Result<i64> {
        match self {
            Store::Sqlite(s) => s.reading_count().await,
        }
    }
}
