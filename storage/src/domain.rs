//! The domain tables: alert events and alerts, cases with their audit steps and the
//! firm's responses, the register, and the alert engine's checkpoint. One SQL text
//! serves both backends (`$n` placeholders in order, portable upserts); `with_pool!`
//! runs it on whichever pool the store has.
//!
//! Alerts, cases and the register are saved in one transaction per change
//! ([`save`]), with a row in the feed ([`crate::feed`]) for every alert event,
//! case opening, audit record, escalation and firm response new to the store. The engine's per-device state is checkpointed in pieces
//! ([`write_state_rows`]); on start-up the readings stored since the checkpoint are
//! replayed ([`readings_since`]).
use crate::feed::{self, Place};
use crate::{Result, Store};
use gridwatch_alerts::{AlertEvent, Change, EngineState};
use gridwatch_cases::{Case, Registry};
use gridwatch_protocol::batch::Reading;
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// How far before the checkpoint replay starts: covers readings committed just
/// before the checkpoint but applied to the engine just after it.
const REPLAY_MARGIN_MS: i64 = 30_000;

#[derive(Serialize, Deserialize)]
struct EngineMeta {
    last_tick: u64,
    due_date: Option<gridwatch_alerts::Date>,
    /// Readings received at or after this (ms, ingest clock) are not in the checkpoint.
    replay_from: i64,
}

fn alert_state(event: &AlertEvent) -> &'static str {
    match (event.change, &event.acknowledged_by) {
        (Change::Cleared, _) => "cleared",
        (_, Some(_)) => "acknowledged",
        _ => "raised",
    }
}

/// One change of the domain to save: alert events with the engine state rows of
/// the devices and gateways they are about (see [`engine_state_rows`]) and where
/// their devices stand in the register (for the feed's walls), the cases it touched
/// (each with how much of it is stored already), and the register when it changed.
#[derive(Debug, Default)]
pub struct DomainChanges<'a> {
    pub events: &'a [AlertEvent],
    pub engine: Vec<(String, String)>,
    /// The grid and firm of each registered device the events are about, by device id.
    pub places: std::collections::HashMap<String, Place>,
    pub cases: Vec<(&'a Case, SavedUpTo)>,
    pub register: Option<&'a Registry>,
}

/// How much of a case is stored already: its first `records` audit records and first
/// `escalations` escalations. Only later ones are appended (and fed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SavedUpTo {
    pub records: usize,
    pub escalations: usize,
}

impl SavedUpTo {
    /// All of `case` as it is now.
    pub fn all_of(case: &Case) -> Self {
        Self {
            records: case.records().len(),
            escalations: case.escalations().len(),
        }
    }
}

impl DomainChanges<'_> {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.engine.is_empty() && self.cases.is_empty() && self.register.is_none()
    }
}

/// What [`save`] stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Saved {
    /// The highest feed id it wrote, if it wrote feed rows.
    pub feed_last: Option<i64>,
}

/// Saves alert events, touched cases and the register in one transaction, with their
/// feed rows: one per alert event the store did not have (a replayed event, ignored by
/// `ON CONFLICT DO NOTHING`, has none), per case opened, per audit record and
/// escalation after those stored, and per firm response the store did not have.
pub async fn save(store: &Store, changes: &DomainChanges<'_>) -> Result<Saved> {
    if changes.is_empty() {
        return Ok(Saved::default());
    }
    let register = changes.register.map(serde_json::to_string).transpose()?;
    // Feed ids in commit order across transactions (crate::feed): SQLite has one writer.
    let feed_lock = match store {
        Store::Sqlite(_) => None,
        Store::Postgres(_) => Some(feed::PG_LOCK),
    };
    with_pool!(store, writer, |pool| {
        let mut tx = pool.begin().await?;
        let mut fed = Vec::new();
        for e in changes.events {
            let kind = e.key.kind.to_string();
            let details = serde_json::to_string(&e.details)?;
            let inserted = sqlx::query(
                "INSERT INTO alert_events (device_id, kind, raised_at, revision, change, at, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&e.key.device)
            .bind(&kind)
            .bind(e.raised_at as i64)
            .bind(e.revision as i64)
            .bind(format!("{:?}", e.change).to_lowercase())
            .bind(e.at as i64)
            .bind(serde_json::to_string(e)?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                fed.push(feed::alert(e, changes.places.get(&e.key.device))?);
            }
            if e.change != Change::Cleared {
                // One open alert per device and kind (index alerts_one_open). The engine
                // raises or reopens an alert only while it holds no other of its kind, so
                // another open row is one it no longer knows and will never clear: after
                // a restart from a checkpoint taken before that row was raised, alerts
                // raised on the ingest clock (ticks: offline, due dates, meal periods,
                // timed lift rules) come again with a new raised_at. That row is closed
                // when this event is about to be written, or the upsert below would
                // fail the unique index on every retry. An event already stored (a
                // replayed one) closes nothing.
                sqlx::query(
                    "UPDATE alerts SET state = 'cleared', \
                     cleared_at = CASE WHEN updated_at > $4 THEN updated_at ELSE $4 END, \
                     updated_at = CASE WHEN updated_at > $4 THEN updated_at ELSE $4 END \
                     WHERE device_id = $1 AND kind = $2 AND state <> 'cleared' AND raised_at <> $3 \
                     AND NOT EXISTS (SELECT 1 FROM alerts AS stored WHERE stored.device_id = $1 \
                     AND stored.kind = $2 AND stored.raised_at = $3 AND stored.revision >= $5)",
                )
                .bind(&e.key.device)
                .bind(&kind)
                .bind(e.raised_at as i64)
                .bind(e.at as i64)
                .bind(e.revision as i64)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO alerts (device_id, kind, raised_at, severity, state, revision, updated_at, cleared_at, acknowledged_by, details) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (device_id, kind, raised_at) DO UPDATE SET severity = excluded.severity, state = excluded.state, \
                 revision = excluded.revision, updated_at = excluded.updated_at, cleared_at = excluded.cleared_at, \
                 acknowledged_by = excluded.acknowledged_by, details = excluded.details \
                 WHERE alerts.revision < excluded.revision",
            )
            .bind(&e.key.device)
            .bind(&kind)
            .bind(e.raised_at as i64)
            .bind(format!("{:?}", e.severity).to_lowercase())
            .bind(alert_state(e))
            .bind(e.revision as i64)
            .bind(e.at as i64)
            .bind((e.change == Change::Cleared).then_some(e.at as i64))
            .bind(&e.acknowledged_by)
            .bind(details)
            .execute(&mut *tx)
            .await?;
        }
        // The engine's state of what an event is about goes with the event: a restart
        // then knows every alert it has stored as open, also those a tick raised on
        // the ingest clock, which a replay of readings could not raise again.
        for (key, body) in &changes.engine {
            sqlx::query("INSERT INTO engine_state (key, body) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET body = excluded.body")
                .bind(key)
                .bind(body)
                .execute(&mut *tx)
                .await?;
        }
        for (case, saved) in &changes.cases {
            let body = serde_json::to_string(case)?;
            let (status, priority) = (json_str(&case.status())?, json_str(&case.priority)?);
            // New to the store or not: a case is opened once, whatever a retry or a replay does.
            let opened = sqlx::query(
                "INSERT INTO cases (id, case_type, grid, status, priority, opened_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(case.id as i64)
            .bind(json_str(&case.case_type)?)
            .bind(case.grid.to_string())
            .bind(&status)
            .bind(&priority)
            .bind(case.opened_at as i64)
            .bind(&body)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !opened {
                sqlx::query("UPDATE cases SET status = $1, priority = $2, body = $3 WHERE id = $4")
                    .bind(&status)
                    .bind(&priority)
                    .bind(&body)
                    .bind(case.id as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            let mut later = Vec::new();
            for (n, record) in case.records().iter().enumerate().skip(saved.records) {
                sqlx::query(
                    "INSERT INTO case_steps (case_id, n, step, actor, at, body) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(case.id as i64)
                .bind(n as i64)
                .bind(json_str(&record.step)?)
                .bind(&record.actor)
                .bind(record.at as i64)
                .bind(serde_json::to_string(record)?)
                .execute(&mut *tx)
                .await?;
                later.push(feed::case_step(case, n, record)?);
            }
            // Escalations live in the case's body only: those after the stored ones are new.
            for (n, escalation) in case.escalations().iter().enumerate().skip(saved.escalations) {
                later.push(feed::case_escalated(case, n, escalation)?);
            }
            // A case has a response or two: all are written, those stored already skipped.
            for (n, response) in case.responses().iter().enumerate() {
                let inserted = sqlx::query(
                    "INSERT INTO case_responses (case_id, n, response, actor, at, body) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (case_id, n) DO NOTHING",
                )
                .bind(case.id as i64)
                .bind(n as i64)
                .bind(json_str(&response.response)?)
                .bind(&response.actor)
                .bind(response.at as i64)
                .bind(serde_json::to_string(response)?)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    later.push(feed::case_response(case, n, response)?);
                }
            }
            if opened {
                fed.push(feed::case_opened(case)?);
            }
            // What happened to the case since it was last saved, in the order it happened.
            later.sort_by_key(|entry| entry.at);
            fed.append(&mut later);
        }
        if let Some(body) = &register {
            sqlx::query("INSERT INTO register (key, body) VALUES ('register', $1) ON CONFLICT (key) DO UPDATE SET body = excluded.body")
                .bind(body)
                .execute(&mut *tx)
                .await?;
        }
        // Last, so the lock that orders feed ids across transactions is held briefly.
        let mut saved = Saved::default();
        if !fed.is_empty() {
            if let Some(lock) = feed_lock {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            for entry in &fed {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO feed (event, at, device_id, grid, firm, body) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(entry.event)
                .bind(entry.at as i64)
                .bind(&entry.device)
                .bind(&entry.grid)
                .bind(&entry.firm)
                .bind(&entry.body)
                .fetch_one(&mut *tx)
                .await?;
                saved.feed_last = Some(id);
            }
        }
        tx.commit().await?;
        Ok(saved)
    })
}

/// A string enum's serde name (`"trapped_passenger"`), for indexed columns.
fn json_str<T: Serialize>(value: &T) -> Result<String> {
    Ok(serde_json::to_value(value)?.as_str().unwrap_or_default().to_string())
}

/// Engine state rows written in one statement shape: a checkpoint writes its
/// pieces of at most this many rows, each in its own transaction.
pub const CHECKPOINT_PIECE_ROWS: usize = 500;

/// The rows of the engine state of the devices and gateways named, as they are now.
pub fn engine_state_rows(
    state: &EngineState,
    devices: &std::collections::BTreeSet<String>,
    gateways: &std::collections::BTreeSet<String>,
) -> Result<Vec<(String, String)>> {
    let mut rows = Vec::with_capacity(devices.len() + gateways.len());
    for id in devices {
        if let Some(m) = state.devices.get(id) {
            rows.push((format!("device/{id}"), serde_json::to_string(m)?));
        }
    }
    for id in gateways {
        if let Some(g) = state.gateways.get(id) {
            rows.push((format!("gateway/{id}"), serde_json::to_string(g)?));
        }
    }
    Ok(rows)
}

/// The `engine` row: the engine's clock state and where a restart replays from.
/// `replay_from` is the ingest-clock time from which readings are not in the checkpoint.
pub fn engine_meta_row(state: &EngineState, replay_from: i64) -> Result<(String, String)> {
    let meta = EngineMeta {
        last_tick: state.last_tick,
        due_date: state.due_date,
        replay_from: replay_from - REPLAY_MARGIN_MS,
    };
    Ok(("engine".to_string(), serde_json::to_string(&meta)?))
}

/// Upserts engine state rows in one transaction.
pub async fn write_state_rows(store: &Store, rows: &[(String, String)]) -> Result<()> {
    with_pool!(store, writer, |pool| {
        let mut tx = pool.begin().await?;
        // Few statement shapes, each prepared once per connection.
        for chunk in crate::statement_chunks(rows, CHECKPOINT_PIECE_ROWS) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "INSERT INTO engine_state (key, body) VALUES {} ON CONFLICT (key) DO UPDATE SET body = excluded.body",
                values.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (key, body) in chunk {
                query = query.bind(key).bind(body);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    })
}

/// What [`load`] reads back: the register, the cases, the engine checkpoint, and
/// the ingest-clock time from which readings must be replayed into the engine.
#[derive(Debug, Default)]
pub struct StoredDomain {
    pub registry: Registry,
    pub cases: Vec<Case>,
    pub engine: EngineState,
    pub replay_from: i64,
}

/// Loads the register, the cases and the engine checkpoint.
pub async fn load(store: &Store) -> Result<StoredDomain> {
    let (register, cases, engine_rows) = with_pool!(store, |pool| {
        let register: Option<String> = sqlx::query_scalar("SELECT body FROM register WHERE key = 'register'")
            .fetch_optional(pool)
            .await?;
        let cases: Vec<String> = sqlx::query_scalar("SELECT body FROM cases ORDER BY id")
            .fetch_all(pool)
            .await?;
        let engine: Vec<(String, String)> = sqlx::query("SELECT key, body FROM engine_state")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok::<_, crate::Error>((register, cases, engine))
    })?;
    let corrupt = |what: String| move |e: serde_json::Error| crate::Error::Corrupt { what, source: e };
    let registry: Registry = match register {
        Some(body) => serde_json::from_str(&body).map_err(corrupt("the stored register".into()))?,
        None => Registry::default(),
    };
    let cases = cases
        .iter()
        .map(|b| serde_json::from_str::<Case>(b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(corrupt("the stored cases".into()))?;
    let mut engine = EngineState::default();
    let mut replay_from = 0;
    for (key, body) in engine_rows {
        if let Some(id) = key.strip_prefix("device/") {
            let state = serde_json::from_str(&body).map_err(corrupt(format!("engine state {key}")))?;
            engine.devices.insert(id.to_string(), state);
        } else if let Some(id) = key.strip_prefix("gateway/") {
            let state = serde_json::from_str(&body).map_err(corrupt(format!("engine state {key}")))?;
            engine.gateways.insert(id.to_string(), state);
        } else if key == "engine" {
            let meta: EngineMeta = serde_json::from_str(&body).map_err(corrupt("the engine checkpoint".into()))?;
            (engine.last_tick, engine.due_date, replay_from) = (meta.last_tick, meta.due_date, meta.replay_from);
        }
    }
    Ok(StoredDomain {
        registry,
        cases,
        engine,
        replay_from,
    })
}

/// Readings received at or after `from` (ingest clock), with the gateway each came
/// through, in device and seq order: what the engine replays after a restart.
pub async fn readings_since(store: &Store, from: i64) -> Result<Vec<(Reading, String)>> {
    let rows: Vec<(String, String)> = with_pool!(store, |pool| {
        let rows = sqlx::query("SELECT gateway, body FROM readings WHERE received_at >= $1 ORDER BY device_id, seq")
            .bind(from)
            .fetch_all(pool)
            .await?;
        Ok::<_, crate::Error>(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    })?;
    Ok(rows
        .into_iter()
        .filter_map(|(gateway, body)| serde_json::from_str::<Reading>(&body).ok().map(|r| (r, gateway)))
        .collect())
}
