//! The embedded default backend: one SQLite file in WAL mode with full sync,
//! so a commit survives a process kill before anything is acknowledged.
use crate::model::*;
use crate::store::Committed;
use anyhow::{Context, Result};
use gridwatch_protocol::batch::Reading;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};
use std::path::Path;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
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
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn commit(&self, accepted: &[Accepted], refused: &[Refused]) -> Result<Committed> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let mut committed = Committed::default();
        for (i, a) in accepted.iter().enumerate() {
            if insert_reading(&mut tx, a, now).await? {
                committed.new.push(i);
            }
        }
        for i in &committed.new {
            upsert_device(&mut tx, &accepted[*i], now).await?;
        }
        for r in refused {
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
        Ok(committed)
    }

    pub async fn apply_alerts(&self, changes: &[AlertChange]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for change in changes {
            match change {
                AlertChange::Raise {
                    device,
                    kind,
                    severity,
                    at_ms,
                    detail,
                } => {
                    sqlx::query(
                        "INSERT INTO alerts (kind, device_id, severity, state, raised_at, updated_at, detail) \
                         VALUES (?, ?, ?, 'raised', ?, ?, ?) \
                         ON CONFLICT (device_id, kind) WHERE state <> 'cleared' DO NOTHING",
                    )
                    .bind(kind.as_str())
                    .bind(device)
                    .bind(severity)
                    .bind(*at_ms as i64)
                    .bind(now)
                    .bind(detail)
                    .execute(&mut *tx)
                    .await?;
                }
                AlertChange::Clear { device, kind, at_ms } => {
                    sqlx::query(
                        "UPDATE alerts SET state = 'cleared', cleared_at = ?, updated_at = ? \
                         WHERE device_id = ? AND kind = ? AND state <> 'cleared'",
                    )
                    .bind(*at_ms as i64)
                    .bind(now)
                    .bind(device)
                    .bind(kind.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn alerts(&self, open_only: bool) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query(
            "SELECT id, kind, device_id, severity, state, raised_at, cleared_at, detail FROM alerts \
             WHERE (? = 0 OR state <> 'cleared') ORDER BY raised_at DESC, id DESC LIMIT 1000",
        )
        .bind(open_only as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AlertRow {
                id: r.get("id"),
                kind: r.get("kind"),
                device_id: r.get("device_id"),
                severity: r.get("severity"),
                state: r.get("state"),
                raised_at: rfc3339(r.get("raised_at")),
                raised_at_ms: r.get("raised_at"),
                cleared_at: r.get::<Option<i64>, _>("cleared_at").map(rfc3339),
                detail: r.get("detail"),
            })
            .collect())
    }

    pub async fn devices(&self) -> Result<Vec<DeviceRow>> {
        let rows = sqlx::query(
            "SELECT device_id, kind, gateway, last_seq, last_ts, last_body FROM devices ORDER BY device_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeviceRow {
                device_id: r.get("device_id"),
                kind: r.get("kind"),
                gateway: r.get("gateway"),
                last_seq: r.get("last_seq"),
                last_seen: rfc3339(r.get("last_ts")),
                last_state: serde_json::from_str(r.get("last_body")).unwrap_or_default(),
            })
            .collect())
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

    pub async fn reading_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM readings")
            .fetch_one(&self.pool)
            .await?)
    }
}

/// Inserts one reading; false when it was already stored (a redelivery).
async fn insert_reading(tx: &mut Transaction<'_, Sqlite>, a: &Accepted, now: i64) -> Result<bool> {
    let r = &a.reading;
    let body = serde_json::to_string(r)?;
    let done = sqlx::query(
        "INSERT INTO readings (device_id, seq, ts, kind, gateway, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT DO NOTHING",
    )
    .bind(r.device())
    .bind(r.seq() as i64)
    .bind(r.ts() as i64)
    .bind(r.kind().as_str())
    .bind(&a.gateway)
    .bind(body)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Keeps the newest state per device; births and events do not replace a status.
async fn upsert_device(tx: &mut Transaction<'_, Sqlite>, a: &Accepted, now: i64) -> Result<()> {
    let r = &a.reading;
    let (kind, body) = match r {
        Reading::Lift(e) => ("lift", serde_json::to_string(&e.body)?),
        Reading::Sterilizer(e) => ("sterilizer", serde_json::to_string(&e.body)?),
        _ => return Ok(()),
    };
    sqlx::query(
        "INSERT INTO devices (device_id, kind, gateway, last_seq, last_ts, last_body, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (device_id) DO UPDATE SET kind = excluded.kind, gateway = excluded.gateway, \
         last_seq = excluded.last_seq, last_ts = excluded.last_ts, last_body = excluded.last_body, updated_at = excluded.updated_at \
         WHERE excluded.last_seq > devices.last_seq",
    )
    .bind(r.device())
    .bind(kind)
    .bind(&a.gateway)
    .bind(r.seq() as i64)
    .bind(r.ts() as i64)
    .bind(body)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
