//! The feed: a durable, ordered log of what the domain saved (alert events, case
//! openings, audit records, escalations, firm responses), one row each, written in
//! [`crate::domain::save`]'s transaction and read in id order by `GET /api/feed`.
//!
//! **Ids are in commit order**: a reader that sees id `n` will never later see a new row
//! below `n`. SQLite has one writer at a time and gives the ids inside its write lock;
//! on PostgreSQL `save` takes a transaction-level advisory lock ([`PG_LOCK`]) before its
//! first feed row, so the transactions that write feed rows commit one after the
//! other, in the order of their ids, whatever process runs them. Ids are never given
//! twice (SQLite `AUTOINCREMENT`, a PostgreSQL identity), also after retention
//! deleted the newest rows.
//!
//! Every row keeps what the walls need: the device, and the grid and firm it (or its
//! case) was placed in when the row was written ([`Walls`]).
use crate::model::rfc3339;
use crate::{Result, Store};
use gridwatch_alerts::{AlertEvent, Change};
use gridwatch_cases::{Case, Escalation, ResponseRecord, StepRecord, Subject};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

/// Taken by a PostgreSQL transaction before it writes its first feed row, held to its end.
pub(crate) const PG_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('gridwatch.feed'))";

/// Where a device stood in the register when its alert event was saved: what the
/// walls of its feed row hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Six digits.
    pub grid: String,
    pub firm: Option<String>,
}

/// One feed row to write.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) event: &'static str,
    /// The event's own time, ms: retention prunes by it.
    pub(crate) at: u64,
    pub(crate) device: Option<String>,
    pub(crate) grid: Option<String>,
    pub(crate) firm: Option<String>,
    pub(crate) body: String,
}

/// The event type of an alert change.
fn alert_type(change: Change) -> &'static str {
    match change {
        Change::Raised => "alert.raised",
        Change::Updated => "alert.updated",
        Change::Acknowledged => "alert.acknowledged",
        Change::Cleared => "alert.cleared",
    }
}

/// A time as the feed gives it: `NAME_ms` and `NAME` (RFC 3339, UTC).
fn times(into: &mut serde_json::Map<String, Value>, name: &str, ms: u64) {
    into.insert(format!("{name}_ms"), json!(ms));
    into.insert(name.to_string(), json!(rfc3339(ms as i64)));
}

fn value<T: Serialize>(v: &T) -> Result<Value> {
    Ok(serde_json::to_value(v)?)
}

/// The fields every body starts with.
fn head(
    event: &str,
    at: u64,
    device: Option<&str>,
    grid: Option<&str>,
    firm: Option<&str>,
) -> serde_json::Map<String, Value> {
    let mut body = serde_json::Map::new();
    body.insert("type".into(), json!(event));
    times(&mut body, "at", at);
    body.insert("device_id".into(), json!(device));
    body.insert("grid".into(), json!(grid));
    body.insert("firm".into(), json!(firm));
    body
}

/// The row of an alert event, placed where `place` says (`None`: outside the register).
pub(crate) fn alert(e: &AlertEvent, place: Option<&Place>) -> Result<Entry> {
    let event = alert_type(e.change);
    let (grid, firm) = (place.map(|p| p.grid.as_str()), place.and_then(|p| p.firm.as_deref()));
    let mut body = head(event, e.at, Some(&e.key.device), grid, firm);
    let mut alert = serde_json::Map::new();
    alert.insert("kind".into(), json!(e.key.kind.to_string()));
    alert.insert("severity".into(), value(&e.severity)?);
    times(&mut alert, "raised_at", e.raised_at);
    alert.insert("revision".into(), json!(e.revision));
    alert.insert("acknowledged_by".into(), json!(e.acknowledged_by));
    alert.insert("details".into(), value(&e.details)?);
    body.insert("alert".into(), Value::Object(alert));
    Ok(Entry {
        event,
        at: e.at,
        device: Some(e.key.device.clone()),
        grid: grid.map(str::to_string),
        firm: firm.map(str::to_string),
        body: serde_json::to_string(&body)?,
    })
}

/// What a case row says about its case, and under which key it says what happened.
fn case_entry(case: &Case, event: &'static str, at: u64, key: &str, what: Value) -> Result<Entry> {
    let device = match &case.subject {
        Subject::Device { id } => Some(id.as_str()),
        Subject::Unit { .. } => None,
    };
    let grid = case.grid.to_string();
    let mut body = head(event, at, device, Some(&grid), case.firm.as_deref());
    body.insert("case_id".into(), json!(case.id));
    body.insert("case_type".into(), value(&case.case_type)?);
    body.insert("priority".into(), value(&case.priority)?);
    body.insert(key.into(), what);
    Ok(Entry {
        event,
        at,
        device: device.map(str::to_string),
        grid: Some(grid),
        firm: case.firm.clone(),
        body: serde_json::to_string(&body)?,
    })
}

/// `case.opened`: at `known_at` (when the system learned of it), with its first report.
pub(crate) fn case_opened(case: &Case) -> Result<Entry> {
    let mut what = serde_json::Map::new();
    what.insert("subject".into(), value(&case.subject)?);
    times(&mut what, "opened_at", case.opened_at);
    times(&mut what, "known_at", case.known_at);
    what.insert("late".into(), json!(case.late));
    if let Some(report) = case.reports().first() {
        what.insert("channel".into(), value(&report.channel)?);
        what.insert("description".into(), json!(report.description));
        let alert = match &report.alert {
            Some(a) => {
                let mut alert = serde_json::Map::new();
                alert.insert("kind".into(), json!(a.key.kind.to_string()));
                times(&mut alert, "raised_at", a.raised_at);
                Value::Object(alert)
            }
            None => Value::Null,
        };
        what.insert("alert".into(), alert);
    }
    case_entry(case, "case.opened", case.known_at, "case", Value::Object(what))
}

/// `case.step` for audit record `n`, or `case.closed` for the record that closed the case.
pub(crate) fn case_step(case: &Case, n: usize, record: &StepRecord) -> Result<Entry> {
    let closes = n + 1 == case.records().len() && !case.is_open();
    let event = if closes { "case.closed" } else { "case.step" };
    let mut what = serde_json::Map::new();
    what.insert("n".into(), json!(n));
    what.insert("step".into(), value(&record.step)?);
    what.insert("decision".into(), value(&record.decision)?);
    what.insert("actor".into(), json!(record.actor));
    what.insert("role".into(), value(&record.role)?);
    what.insert("note".into(), json!(record.note));
    what.insert("evidence".into(), value(&record.evidence)?);
    case_entry(case, event, record.at, "step", Value::Object(what))
}

/// `case.escalated` for the case's escalation `n`.
pub(crate) fn case_escalated(case: &Case, n: usize, escalation: &Escalation) -> Result<Entry> {
    let mut what = serde_json::Map::new();
    what.insert("n".into(), json!(n));
    what.insert("level".into(), value(&escalation.level)?);
    what.insert("step".into(), value(&escalation.step)?);
    times(&mut what, "deadline_at", escalation.deadline_at);
    case_entry(case, "case.escalated", escalation.at, "escalation", Value::Object(what))
}

/// `case.acknowledged`, `case.arrived` or `case.resolved` for the firm's response `n`.
pub(crate) fn case_response(case: &Case, n: usize, response: &ResponseRecord) -> Result<Entry> {
    let event = match response.response {
        gridwatch_cases::Response::Acknowledged => "case.acknowledged",
        gridwatch_cases::Response::ArrivedOnSite => "case.arrived",
        gridwatch_cases::Response::Resolved => "case.resolved",
    };
    let mut what = serde_json::Map::new();
    what.insert("n".into(), json!(n));
    what.insert("response".into(), value(&response.response)?);
    what.insert("actor".into(), json!(response.actor));
    what.insert("role".into(), value(&response.role)?);
    what.insert("note".into(), json!(response.note));
    case_entry(case, event, response.at, "response", Value::Object(what))
}

/// One stored row, as the feed sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRow {
    pub id: i64,
    /// The event type (`alert.raised`, `case.step`, ...).
    pub event: String,
    /// The JSON body as stored, without the id.
    pub body: String,
    /// Where the row's device (or case) was placed when it was written: what [`Walls`] test.
    pub grid: Option<String>,
    pub firm: Option<String>,
}

impl FeedRow {
    /// The body with `"id"` as its first field: what an SSE event's `data` carries.
    pub fn data(&self) -> String {
        data(self.id, &self.body)
    }
}

/// A stored body with `"id"` as its first field: what the live feed, webhooks and the
/// MQTT feed send.
pub fn data(id: i64, body: &str) -> String {
    match body.trim_start().strip_prefix('{') {
        Some(rest) if !rest.trim_start().starts_with('}') => format!("{{\"id\":{id},{rest}"),
        _ => format!("{{\"id\":{id}}}"),
    }
}

/// Which rows a reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walls {
    /// Every row (the API's open mode).
    All,
    /// Rows whose grid starts with one of `grids` (2, 4 or 6 digits: the caller's grid
    /// scopes) or whose firm is one of `firms`. Rows outside the register (no grid) are
    /// never among them.
    Only { grids: Vec<String>, firms: Vec<String> },
}

impl Walls {
    /// Whether a row placed at `grid` and `firm` is let through: the same test as the SQL
    /// of [`page`], for readers that filter rows already in memory.
    pub fn admits(&self, grid: Option<&str>, firm: Option<&str>) -> bool {
        match self {
            Walls::All => true,
            Walls::Only { grids, firms } => {
                firm.is_some_and(|f| firms.iter().any(|w| w == f))
                    || grid.is_some_and(|g| grids.iter().any(|w| g.starts_with(w.as_str())))
            }
        }
    }

    /// The condition after `WHERE id > $1 AND id <= $2`, its parameters numbered from 3,
    /// and the values to bind to them in order.
    fn condition(&self) -> (String, Vec<String>) {
        match self {
            Walls::All => (String::new(), Vec::new()),
            Walls::Only { grids, firms } => {
                let mut parts = Vec::new();
                let mut values = Vec::new();
                for firm in firms {
                    values.push(firm.clone());
                    parts.push(format!("firm = ${}", values.len() + 2));
                }
                for grid in grids {
                    // Grid codes are digits only: nothing to escape in the pattern.
                    values.push(format!("{grid}%"));
                    parts.push(format!("grid LIKE ${}", values.len() + 2));
                }
                if parts.is_empty() {
                    return (" AND 1 = 0".into(), values);
                }
                (format!(" AND ({})", parts.join(" OR ")), values)
            }
        }
    }
}

/// The highest feed id stored (0 when there is none). Every row at or below it that
/// will ever be visible is visible once this returns (ids commit in order).
pub async fn last_id(store: &Store) -> Result<i64> {
    Ok(with_pool!(store, |pool| {
        sqlx::query_scalar::<_, i64>("SELECT coalesce(max(id), 0) FROM feed")
            .fetch_one(pool)
            .await?
    }))
}

/// The rows with `after < id <= upto` that `walls` let through, in id order, at most `limit`.
pub async fn page(store: &Store, walls: &Walls, after: i64, upto: i64, limit: i64) -> Result<Vec<FeedRow>> {
    let (condition, values) = walls.condition();
    let sql = format!(
        "SELECT id, event, body, grid, firm FROM feed WHERE id > $1 AND id <= $2{condition} ORDER BY id LIMIT ${}",
        values.len() + 3
    );
    Ok(with_pool!(store, |pool| {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(after).bind(upto);
        for v in &values {
            query = query.bind(v.as_str());
        }
        query
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| FeedRow {
                id: r.get(0),
                event: r.get(1),
                body: r.get(2),
                grid: r.get(3),
                firm: r.get(4),
            })
            .collect()
    }))
}

/// One step of retention: deletes up to `step_rows` of the oldest-id feed rows whose
/// event time is before `cutoff_ms`, in one short transaction; returns how many went.
pub(crate) async fn prune_step(store: &Store, cutoff_ms: i64, step_rows: i64) -> Result<u64> {
    Ok(with_pool!(store, writer, |pool| {
        sqlx::query("DELETE FROM feed WHERE id IN (SELECT id FROM feed WHERE at < $1 ORDER BY id LIMIT $2)")
            .bind(cutoff_ms)
            .bind(step_rows)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_puts_the_id_first() {
        let row = |body: &str| FeedRow {
            id: 42,
            event: "alert.raised".into(),
            body: body.into(),
            grid: None,
            firm: None,
        };
        assert_eq!(
            row(r#"{"type":"alert.raised"}"#).data(),
            r#"{"id":42,"type":"alert.raised"}"#
        );
        assert_eq!(row("{}").data(), r#"{"id":42}"#);
    }

    #[test]
    fn walls_number_their_parameters_after_the_range() {
        let walls = Walls::Only {
            grids: vec!["01".into(), "020301".into()],
            firms: vec!["MF04".into()],
        };
        let (sql, values) = walls.condition();
        assert_eq!(sql, " AND (firm = $3 OR grid LIKE $4 OR grid LIKE $5)");
        assert_eq!(values, ["MF04", "01%", "020301%"]);
        let none = Walls::Only {
            grids: vec![],
            firms: vec![],
        };
        assert_eq!(none.condition().0, " AND 1 = 0");
        assert_eq!(Walls::All.condition(), (String::new(), vec![]));
    }

    #[test]
    fn admits_tests_what_the_sql_condition_tests() {
        let walls = Walls::Only {
            grids: vec!["01".into(), "020301".into()],
            firms: vec!["MF04".into()],
        };
        assert!(walls.admits(Some("010101"), None));
        assert!(walls.admits(Some("020301"), Some("MF01")));
        assert!(!walls.admits(Some("020302"), Some("MF01")));
        assert!(walls.admits(Some("020302"), Some("MF04")));
        assert!(
            !walls.admits(None, None),
            "outside the register: never for a walled reader"
        );
        assert!(Walls::All.admits(None, None));
        let none = Walls::Only {
            grids: vec![],
            firms: vec![],
        };
        assert!(!none.admits(Some("010101"), Some("MF04")));
    }
}
