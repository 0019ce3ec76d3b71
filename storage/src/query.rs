//! Read queries over the domain tables for the API and the dashboard.
use crate::Result;
use crate::Store;
use crate::model::{AlertView, rfc3339};
use sqlx::Row;

/// Alerts, newest first; `open_only` leaves out cleared ones.
pub async fn alerts(store: &Store, open_only: bool, limit: i64) -> Result<Vec<AlertView>> {
    let rows = with_pool!(store, |pool| {
        sqlx::query(
            "SELECT id, kind, device_id, severity, state, raised_at, updated_at, cleared_at, acknowledged_by, revision, details \
             FROM alerts WHERE ($1 = 0 OR state <> 'cleared') ORDER BY raised_at DESC, id DESC LIMIT $2",
        )
        .bind(open_only as i64)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| AlertView {
            id: r.get("id"),
            kind: r.get("kind"),
            device_id: r.get("device_id"),
            severity: r.get("severity"),
            state: r.get("state"),
            raised_at: rfc3339(r.get("raised_at")),
            raised_at_ms: r.get("raised_at"),
            updated_at: rfc3339(r.get("updated_at")),
            cleared_at: r.get::<Option<i64>, _>("cleared_at").map(rfc3339),
            acknowledged_by: r.get("acknowledged_by"),
            revision: r.get("revision"),
            details: serde_json::from_str(r.get("details")).unwrap_or_default(),
        })
        .collect::<Vec<_>>()
    });
    Ok(rows)
}

/// Alert events after `after` (the feed's cursor), oldest first.
pub async fn alert_events(store: &Store, after: i64, limit: i64) -> Result<Vec<(i64, serde_json::Value)>> {
    let rows = with_pool!(store, |pool| {
        sqlx::query("SELECT seq, body FROM alert_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                (
                    r.get::<i64, _>("seq"),
                    serde_json::from_str(r.get("body")).unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
    });
    Ok(rows)
}
