//! Read queries over the domain tables for the API and the dashboard.
use crate::Result;
use crate::Store;
use crate::model::{AlertView, rfc3339};
use sqlx::Row;

/// One `alerts` row as an [`AlertView`], on either backend's row type.
macro_rules! alert_view {
    ($r:expr) => {{
        let r = $r;
        AlertView {
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
        }
    }};
}

/// Whose alerts a list may show: every device (open mode) or only these (the caller's walls).
#[derive(Debug, Clone, Copy)]
pub enum Devices<'a> {
    All,
    Only(&'a [String]),
}

/// One page of a list in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor of the next page (`after=`), when there are more rows.
    pub next: Option<i64>,
}

/// Alerts in arrival order (the row id, assigned when an alert is first stored) after the
/// cursor `after`, among `devices` only, at most `limit` (at least 1). The walls apply in the
/// query, before the limit; `next` is set when more rows follow.
pub async fn alerts_page(
    store: &Store,
    open_only: bool,
    devices: Devices<'_>,
    after: i64,
    limit: i64,
) -> Result<Page<AlertView>> {
    let limit = limit.max(1);
    let (all, ids) = match devices {
        Devices::All => (1i64, "[]".to_string()),
        Devices::Only(ids) => (0, serde_json::to_string(ids).expect("strings serialise")),
    };
    // The device list travels as one JSON array: SQLite reads it with json_each,
    // PostgreSQL with json_array_elements_text.
    macro_rules! page_sql {
        ($only:literal) => {
            concat!(
                "SELECT id, kind, device_id, severity, state, raised_at, updated_at, cleared_at, acknowledged_by, revision, details \
                 FROM alerts WHERE id > $1 AND ($2 = 0 OR state <> 'cleared') AND ($4 = 1 OR ",
                $only,
                ") ORDER BY id LIMIT $5"
            )
        };
    }
    let sql: &'static str = match store {
        Store::Sqlite(_) => page_sql!("device_id IN (SELECT value FROM json_each($3))"),
        Store::Postgres(_) => page_sql!("device_id IN (SELECT json_array_elements_text($3::text::json))"),
    };
    let mut items = with_pool!(store, |pool| {
        sqlx::query(sql)
            .bind(after)
            .bind(open_only as i64)
            .bind(&ids)
            .bind(all)
            .bind(limit + 1)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| alert_view!(r))
            .collect::<Vec<_>>()
    });
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|a| a.id)
    } else {
        None
    };
    Ok(Page { items, next })
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
