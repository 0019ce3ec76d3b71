//! Saving and loading the domain. One SQL text serves both backends (`$n`
//! placeholders in order, portable upserts); `with_pool!` runs it on whichever
//! pool the store has.
//!
//! Alerts, cases and the register are saved in one transaction after every change.
//! The engine's per-device state changes with every reading, so it is checkpointed
//! periodically instead; on start-up the readings stored since the checkpoint are
//! replayed (the engine ignores readings it has applied already, so overlap is harmless).
use super::{Domain, DomainConfig, Effects};
use crate::store::Store;
use anyhow::{Context, Result};
use gridwatch_alerts::{AlertEvent, Change, Engine, EngineState};
use gridwatch_cases::{Case, CaseBook, Registry};
use gridwatch_protocol::batch::Reading;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeSet;

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

/// Saves alert events, touched cases and the register in one transaction.
pub async fn save(store: &Store, domain: &Domain, fx: &Effects) -> Result<()> {
    if fx.events.is_empty() && fx.cases.is_empty() && !fx.register_changed {
        return Ok(());
    }
    let cases: Vec<&Case> = fx.cases.iter().filter_map(|id| domain.book.case(*id)).collect();
    let register = if fx.register_changed {
        Some(serde_json::to_string(&domain.registry)?)
    } else {
        None
    };
    let saved = &domain.saved_records;
    with_pool!(store, writer, |pool| {
        let mut tx = pool.begin().await?;
        for e in &fx.events {
            let kind = e.key.kind.to_string();
            let details = serde_json::to_string(&e.details)?;
            sqlx::query(
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
            .await?;
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
        for case in &cases {
            sqlx::query(
                "INSERT INTO cases (id, case_type, grid, status, priority, opened_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, priority = excluded.priority, body = excluded.body",
            )
            .bind(case.id as i64)
            .bind(json_str(&case.case_type)?)
            .bind(case.grid.to_string())
            .bind(json_str(&case.status())?)
            .bind(json_str(&case.priority)?)
            .bind(case.opened_at as i64)
            .bind(serde_json::to_string(case)?)
            .execute(&mut *tx)
            .await?;
            let from = saved.get(&case.id).copied().unwrap_or(0);
            for (n, record) in case.records().iter().enumerate().skip(from) {
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
            }
        }
        if let Some(body) = &register {
            sqlx::query("INSERT INTO register (key, body) VALUES ('register', $1) ON CONFLICT (key) DO UPDATE SET body = excluded.body")
                .bind(body)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        anyhow::Ok(())
    })
}

/// A string enum's serde name (`"trapped_passenger"`), for indexed columns.
fn json_str<T: Serialize>(value: &T) -> Result<String> {
    Ok(serde_json::to_value(value)?.as_str().unwrap_or_default().to_string())
}

/// Engine state rows serialised and written together. A checkpoint goes out in
/// pieces of this many rows, each in its own transaction: ten thousand changed
/// devices serialised at once were ~10 MB of JSON, 20 MB of ingest's peak memory
/// in the SQLite direct benchmark. Pieces may land apart, and a device's row may
/// be newer than the `engine` row's `replay_from`: the engine ignores readings it
/// has applied, so that only replays more.
pub const CHECKPOINT_PIECE_ROWS: usize = 500;

/// What one checkpoint saves: the engine state changed since the last one, in
/// pieces of at most [`CHECKPOINT_PIECE_ROWS`] devices or gateways, then the
/// `engine` row, taken when the checkpoint began.
pub struct Checkpoint {
    pieces: std::collections::VecDeque<gridwatch_alerts::Changes>,
    meta: (String, String),
}

impl Checkpoint {
    /// Takes the changes out of `domain`. `replay_from` is the ingest-clock time
    /// from which readings must be replayed after a restart.
    pub fn begin(domain: &mut Domain, replay_from: i64) -> Result<Checkpoint> {
        let state = domain.engine.state();
        let meta = EngineMeta {
            last_tick: state.last_tick,
            due_date: state.due_date,
            replay_from: replay_from - REPLAY_MARGIN_MS,
        };
        let meta = ("engine".to_string(), serde_json::to_string(&meta)?);
        // Taken here, not after every batch: the engine's set holds each changed
        // id once however many readings changed it, while merging it into an
        // ordered set per batch was ~2.5 % of ingest's CPU samples (perf, direct benchmark).
        let engine = domain.engine.take_changes();
        domain.mark_unsaved(engine);
        let changes = std::mem::take(&mut domain.unsaved_engine);
        let devices = in_pieces(changes.devices).map(|devices| gridwatch_alerts::Changes {
            devices,
            ..Default::default()
        });
        let gateways = in_pieces(changes.gateways).map(|gateways| gridwatch_alerts::Changes {
            gateways,
            ..Default::default()
        });
        let pieces = devices.chain(gateways).collect();
        Ok(Checkpoint { pieces, meta })
    }

    /// The next piece to write.
    pub fn next_piece(&mut self) -> Option<gridwatch_alerts::Changes> {
        self.pieces.pop_front()
    }

    /// Hands what was not written back to the domain, for the next checkpoint.
    pub fn abandon(self, domain: &mut Domain) {
        for piece in self.pieces {
            domain.mark_unsaved(piece);
        }
    }

    /// The `engine` row, written after every piece.
    pub fn meta(&self) -> &(String, String) {
        &self.meta
    }
}

fn in_pieces(ids: BTreeSet<String>) -> impl Iterator<Item = BTreeSet<String>> {
    let mut ids = ids.into_iter().peekable();
    std::iter::from_fn(move || {
        ids.peek()?;
        Some(ids.by_ref().take(CHECKPOINT_PIECE_ROWS).collect())
    })
}

/// Serialises the current state of the devices and gateways in `piece`.
pub fn state_rows(domain: &Domain, piece: &gridwatch_alerts::Changes) -> Result<Vec<(String, String)>> {
    let state = domain.engine.state();
    let mut rows = Vec::with_capacity(piece.devices.len() + piece.gateways.len());
    for id in &piece.devices {
        if let Some(m) = state.devices.get(id) {
            rows.push((format!("device/{id}"), serde_json::to_string(m)?));
        }
    }
    for id in &piece.gateways {
        if let Some(g) = state.gateways.get(id) {
            rows.push((format!("gateway/{id}"), serde_json::to_string(g)?));
        }
    }
    Ok(rows)
}

/// Upserts engine state rows in one transaction.
pub async fn write_state_rows(store: &Store, rows: &[(String, String)]) -> Result<()> {
    with_pool!(store, writer, |pool| {
        let mut tx = pool.begin().await?;
        // Few statement shapes, each prepared once per connection.
        for chunk in crate::store::statement_chunks(rows, CHECKPOINT_PIECE_ROWS) {
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
        anyhow::Ok(())
    })
}

/// Loads the register, the cases and the engine checkpoint, then replays the readings
/// stored since the checkpoint.
pub async fn load(store: &Store, config: DomainConfig) -> Result<Domain> {
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
        anyhow::Ok((register, cases, engine))
    })?;
    let registry: Registry = match register {
        Some(body) => serde_json::from_str(&body).context("reading the stored register")?,
        None => Registry::default(),
    };
    let cases = cases
        .iter()
        .map(|b| serde_json::from_str::<Case>(b))
        .collect::<Result<Vec<_>, _>>()
        .context("reading stored cases")?;
    let mut state = EngineState::default();
    let mut replay_from = 0;
    for (key, body) in engine_rows {
        if let Some(id) = key.strip_prefix("device/") {
            state.devices.insert(
                id.to_string(),
                serde_json::from_str(&body).with_context(|| format!("engine state {key}"))?,
            );
        } else if let Some(id) = key.strip_prefix("gateway/") {
            state.gateways.insert(
                id.to_string(),
                serde_json::from_str(&body).with_context(|| format!("engine state {key}"))?,
            );
        } else if key == "engine" {
            let meta: EngineMeta = serde_json::from_str(&body).context("engine checkpoint")?;
            (state.last_tick, state.due_date, replay_from) = (meta.last_tick, meta.due_date, meta.replay_from);
        }
    }
    let engine = Engine::from_state(config.alerts.clone(), state);
    let mut domain = Domain::new(config, engine, registry, CaseBook::from_cases(cases));
    let replayed = replay(store, &mut domain, replay_from).await?;
    tracing::info!(
        replayed,
        devices = domain.engine.state().devices.len(),
        cases = domain.book.cases().count(),
        "domain loaded"
    );
    Ok(domain)
}

/// Re-applies readings received since `from`; events they produce are saved
/// idempotently (an alert already stored is not stored twice).
async fn replay(store: &Store, domain: &mut Domain, from: i64) -> Result<usize> {
    let rows: Vec<(String, String)> = with_pool!(store, |pool| {
        let rows = sqlx::query("SELECT gateway, body FROM readings WHERE received_at >= $1 ORDER BY device_id, seq")
            .bind(from)
            .fetch_all(pool)
            .await?;
        anyhow::Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    })?;
    let readings: Vec<(Reading, String)> = rows
        .into_iter()
        .filter_map(|(gateway, body)| serde_json::from_str::<Reading>(&body).ok().map(|r| (r, gateway)))
        .collect();
    let fx = domain.on_readings(readings.iter().map(|(r, g)| (r, g.as_str())));
    save(store, domain, &fx).await?;
    domain.mark_saved(&fx);
    Ok(readings.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_protocol::{DeviceId, Door, Envelope, LiftStatus, Motion, Power, ServiceMode};

    fn lift(device: &str, seq: u64) -> Reading {
        let body = LiftStatus {
            mode: ServiceMode::Normal,
            motion: Motion::Stopped,
            door: Door::Closed,
            door_zone: true,
            floor: 1,
            occupied: false,
            alarm: false,
            fault: 0,
            power: Power::Mains,
            runs: 0,
            door_cycles: 0,
        };
        Reading::Lift(Envelope::new(
            DeviceId::try_from(device).unwrap(),
            seq,
            seq * 1000,
            body,
        ))
    }

    fn devices_of(checkpoint: &mut Checkpoint) -> Vec<String> {
        std::iter::from_fn(|| checkpoint.next_piece())
            .flat_map(|piece| piece.devices)
            .collect()
    }

    #[test]
    fn a_checkpoint_takes_what_changed_since_the_last_and_what_a_failed_one_left() {
        let config = DomainConfig::default();
        let engine = Engine::new(config.alerts.clone());
        let mut domain = Domain::new(config, engine, Registry::default(), CaseBook::from_cases(vec![]));
        let readings = [lift("L-1", 1), lift("L-2", 1), lift("L-1", 2)];
        domain.on_readings(readings.iter().map(|r| (r, "gw")));

        let mut first = Checkpoint::begin(&mut domain, 0).unwrap();
        assert_eq!(devices_of(&mut first), ["L-1", "L-2"], "each changed device once");
        let mut nothing_new = Checkpoint::begin(&mut domain, 0).unwrap();
        assert!(devices_of(&mut nothing_new).is_empty());

        // A checkpoint that fails hands its pieces back; the next one takes them
        // together with what changed meanwhile.
        domain.on_readings([(&lift("L-2", 2), "gw")]);
        let failed = Checkpoint::begin(&mut domain, 0).unwrap();
        failed.abandon(&mut domain);
        domain.on_readings([(&lift("L-3", 1), "gw")]);
        let mut next = Checkpoint::begin(&mut domain, 0).unwrap();
        assert_eq!(devices_of(&mut next), ["L-2", "L-3"]);
    }
}
