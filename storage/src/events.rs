//! One device's events, read from its stored readings: what the node reported as
//! events (`event` readings), its (re)connections (`birth`), and its door opening or closing
//! (a status reading, `lift` or `sterilizer`, whose door differs from the one before
//! it). In device time then seq, one page at a time, over the index on
//! `(device_id, ts)`.
use crate::model::rfc3339;
use crate::{Result, Store};
use gridwatch_protocol::message::{Birth, Door, EventKind as NodeEventKind, NodeEvent};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::fmt;
use std::str::FromStr;

/// What happened, as the events list names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventKind {
    FaultRaised,
    FaultCleared,
    AlarmButton,
    DoorOpenWhileRunning,
    StoppedOutsideDoorZone,
    PowerLost,
    PowerRestored,
    BufferOverflow,
    /// The node (re)connected, a `birth` reading: after a restart when `boots` grew.
    Birth,
    /// The door is open in a status reading and was closed in the one before.
    DoorOpened,
    /// The door is closed in a status reading and was open in the one before.
    DoorClosed,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::FaultRaised,
        EventKind::FaultCleared,
        EventKind::AlarmButton,
        EventKind::DoorOpenWhileRunning,
        EventKind::StoppedOutsideDoorZone,
        EventKind::PowerLost,
        EventKind::PowerRestored,
        EventKind::BufferOverflow,
        EventKind::Birth,
        EventKind::DoorOpened,
        EventKind::DoorClosed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::FaultRaised => "fault_raised",
            EventKind::FaultCleared => "fault_cleared",
            EventKind::AlarmButton => "alarm_button",
            EventKind::DoorOpenWhileRunning => "door_open_while_running",
            EventKind::StoppedOutsideDoorZone => "stopped_outside_door_zone",
            EventKind::PowerLost => "power_lost",
            EventKind::PowerRestored => "power_restored",
            EventKind::BufferOverflow => "buffer_overflow",
            EventKind::Birth => "birth",
            EventKind::DoorOpened => "door_opened",
            EventKind::DoorClosed => "door_closed",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    const fn of_node(e: NodeEventKind) -> EventKind {
        match e {
            NodeEventKind::FaultRaised => EventKind::FaultRaised,
            NodeEventKind::FaultCleared => EventKind::FaultCleared,
            NodeEventKind::AlarmButton => EventKind::AlarmButton,
            NodeEventKind::DoorOpenWhileRunning => EventKind::DoorOpenWhileRunning,
            NodeEventKind::StoppedOutsideDoorZone => EventKind::StoppedOutsideDoorZone,
            NodeEventKind::PowerLost => EventKind::PowerLost,
            NodeEventKind::PowerRestored => EventKind::PowerRestored,
            NodeEventKind::BufferOverflow => EventKind::BufferOverflow,
        }
    }

    /// The kinds of stored readings this event is read from.
    const fn sources(self) -> &'static [&'static str] {
        match self {
            EventKind::Birth => &["birth"],
            EventKind::DoorOpened | EventKind::DoorClosed => &["lift", "sterilizer"],
            _ => &["event"],
        }
    }
}

/// One event of a device.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceEvent {
    pub kind: EventKind,
    /// The seq of the reading it was read from.
    pub seq: i64,
    /// Device time, ms since the Unix epoch, and the same instant in RFC 3339.
    pub ts_ms: i64,
    pub ts: String,
    /// The fault code (`fault_raised`, `fault_cleared`) or the readings dropped (`buffer_overflow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The floor a lift's door opened or closed at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<i16>,
    /// Firmware version and boot count of a `birth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fw: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boots: Option<u32>,
}

impl DeviceEvent {
    pub fn position(&self) -> Position {
        Position {
            ts_ms: self.ts_ms,
            seq: self.seq,
        }
    }
}

/// A place in one device's readings, in list order (device time, then seq): the
/// cursor of a page, written `TS-SEQ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub ts_ms: i64,
    pub seq: i64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ts_ms, self.seq)
    }
}

impl FromStr for Position {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        let (ts, seq) = s.split_once('-').ok_or(())?;
        let number = |t: &str| t.parse::<i64>().ok().filter(|n| *n >= 0).ok_or(());
        Ok(Position {
            ts_ms: number(ts)?,
            seq: number(seq)?,
        })
    }
}

/// Which events of a device to list.
#[derive(Debug, Clone)]
pub struct EventQuery<'a> {
    pub device: &'a str,
    /// Device time window, `from_ms <= ts < to_ms`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only these kinds; empty: every kind.
    pub kinds: &'a [EventKind],
    /// Events after this position (a previous page's `next`).
    pub after: Option<Position>,
    /// At most this many events (at least 1).
    pub limit: i64,
}

/// One page of events.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub items: Vec<DeviceEvent>,
    /// Where the next page starts, when readings may follow.
    pub next: Option<Position>,
}

/// The most readings one page reads. A window of status heartbeats without a door
/// change would otherwise be read whole for one page; past this the page ends early
/// (maybe empty) with a cursor to go on from.
pub const SCAN_ROWS: usize = 20_000;
/// Readings fetched per statement while filling a page.
const CHUNK_ROWS: usize = 1_000;

/// Events of `q.device` in device time then seq. The door state before the window (or
/// the cursor) comes from the last status reading before it, so the first status
/// reading of a page is compared with the right one.
pub async fn events_page(store: &Store, q: &EventQuery<'_>) -> Result<EventPage> {
    events_page_scanning(store, q, SCAN_ROWS).await
}

/// [`events_page`] reading at most `scan_rows` readings.
pub async fn events_page_scanning(store: &Store, q: &EventQuery<'_>, scan_rows: usize) -> Result<EventPage> {
    let limit = q.limit.max(1) as usize;
    let wanted: Vec<EventKind> = if q.kinds.is_empty() {
        EventKind::ALL.to_vec()
    } else {
        q.kinds.to_vec()
    };
    let mut sources: Vec<&str> = wanted.iter().flat_map(|k| k.sources()).copied().collect();
    sources.sort_unstable();
    sources.dedup();
    let sources = serde_json::to_string(&sources).expect("strings serialise");
    let doors = wanted
        .iter()
        .any(|k| matches!(k, EventKind::DoorOpened | EventKind::DoorClosed));

    // Everything before `from`: the last ms before it, every seq.
    let window_start = Position {
        ts_ms: q.from_ms.saturating_sub(1),
        seq: i64::MAX,
    };
    let mut pos = q.after.map_or(window_start, |a| a.max(window_start));
    let mut door = if doors {
        last_door(store, q.device, pos).await?
    } else {
        None
    };
    let mut items = Vec::new();
    let mut scanned = 0;
    while scanned < scan_rows {
        let chunk = CHUNK_ROWS.min(scan_rows - scanned);
        let rows = scan(store, q.device, &sources, pos, q.to_ms, chunk as i64).await?;
        scanned += rows.len();
        for row in &rows {
            pos = Position {
                ts_ms: row.ts_ms,
                seq: row.seq,
            };
            let Some(event) = decode(row, &mut door) else {
                continue;
            };
            if !wanted.contains(&event.kind) {
                continue;
            }
            if items.len() == limit {
                // One more than the page holds: the page ends at the last one kept.
                let next = items.last().map(DeviceEvent::position);
                return Ok(EventPage { items, next });
            }
            items.push(event);
        }
        if rows.len() < chunk {
            return Ok(EventPage { items, next: None });
        }
    }
    Ok(EventPage { items, next: Some(pos) })
}

/// Whether any reading of `device` is stored.
pub async fn device_has_readings(store: &Store, device: &str) -> Result<bool> {
    Ok(with_pool!(store, |pool| {
        sqlx::query("SELECT 1 AS one FROM readings WHERE device_id = $1 LIMIT 1")
            .bind(device)
            .fetch_optional(pool)
            .await?
            .is_some()
    }))
}

/// One query over SQLite's two reading tables (`readings` is their UNION ALL view,
/// migration 0102): `SELECT $select <table> $filter ORDER BY $order LIMIT $limit` on each,
/// merged. Through the view SQLite may gather and sort every matching row before the
/// limit; per table each part walks the `(device_id, ts, seq)` key and stops at it.
macro_rules! sqlite_both {
    ($select:literal, $filter:literal, $order:literal, $limit:literal) => {
        concat!(
            "SELECT * FROM (SELECT * FROM (",
            $select,
            "readings_settled",
            $filter,
            " ORDER BY ",
            $order,
            " LIMIT ",
            $limit,
            ") UNION ALL SELECT * FROM (",
            $select,
            "readings_recent",
            $filter,
            " ORDER BY ",
            $order,
            " LIMIT ",
            $limit,
            ")) ORDER BY ",
            $order,
            " LIMIT ",
            $limit
        )
    };
}

struct ScannedRow {
    ts_ms: i64,
    seq: i64,
    kind: String,
    body: String,
}

/// Readings of `device` of the kinds in `sources` (a JSON array) after `pos` and before
/// `to_ms`, in device time then seq, at most `limit`.
async fn scan(
    store: &Store,
    device: &str,
    sources: &str,
    pos: Position,
    to_ms: i64,
    limit: i64,
) -> Result<Vec<ScannedRow>> {
    let (sql, pos_ts, to_ms): (&'static str, i64, i64) = match store {
        Store::Sqlite(_) => (
            sqlite_both!(
                "SELECT ts AS ts_ms, seq, kind, body FROM ",
                " WHERE device_id = $1 AND kind IN (SELECT value FROM json_each($2)) \
                 AND ts >= $3 AND (ts > $3 OR seq > $4) AND ts < $5",
                "ts_ms, seq",
                "$6"
            ),
            pos.ts_ms,
            to_ms,
        ),
        Store::Postgres(_) => (
            "SELECT (extract(epoch FROM ts) * 1000)::int8 AS ts_ms, seq, kind, body FROM readings \
             WHERE device_id = $1 AND kind = ANY(ARRAY(SELECT json_array_elements_text($2::text::json))) \
               AND (ts, seq) > (timestamptz 'epoch' + $3 * interval '1 millisecond', $4) \
               AND ts < timestamptz 'epoch' + $5 * interval '1 millisecond' \
             ORDER BY ts, seq LIMIT $6",
            pg_ms(pos.ts_ms),
            pg_ms(to_ms),
        ),
    };
    Ok(with_pool!(store, |pool| {
        sqlx::query(sql)
            .bind(device)
            .bind(sources)
            .bind(pos_ts)
            .bind(pos.seq)
            .bind(to_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| ScannedRow {
                ts_ms: r.get("ts_ms"),
                seq: r.get("seq"),
                kind: r.get("kind"),
                body: r.get("body"),
            })
            .collect()
    }))
}

/// The door state in the last status reading of `device` at or before `pos`.
async fn last_door(store: &Store, device: &str, pos: Position) -> Result<Option<Door>> {
    let (sql, pos_ts): (&'static str, i64) = match store {
        Store::Sqlite(_) => (
            sqlite_both!(
                "SELECT ts, seq, body FROM ",
                " WHERE device_id = $1 AND kind IN ('lift', 'sterilizer') AND ts <= $2 AND (ts < $2 OR seq <= $3)",
                "ts DESC, seq DESC",
                "1"
            ),
            pos.ts_ms,
        ),
        Store::Postgres(_) => (
            "SELECT body FROM readings \
             WHERE device_id = $1 AND kind IN ('lift', 'sterilizer') \
               AND (ts, seq) <= (timestamptz 'epoch' + $2 * interval '1 millisecond', $3) \
             ORDER BY ts DESC, seq DESC LIMIT 1",
            pg_ms(pos.ts_ms),
        ),
    };
    let body: Option<String> = with_pool!(store, |pool| {
        sqlx::query(sql)
            .bind(device)
            .bind(pos_ts)
            .bind(pos.seq)
            .fetch_optional(pool)
            .await?
            .map(|r| r.get("body"))
    });
    Ok(body.and_then(|b| body_of::<DoorState>(&b)).map(|s| s.door))
}

/// The `body` of a stored reading (tagged JSON around the message body).
#[derive(Deserialize)]
struct Stored<B> {
    body: B,
}

/// What a status reading (lift or sterilizer) says of its door.
#[derive(Deserialize)]
struct DoorState {
    door: Door,
    /// Lifts only.
    #[serde(default)]
    floor: Option<i16>,
}

fn body_of<B: for<'de> Deserialize<'de>>(text: &str) -> Option<B> {
    match serde_json::from_str::<Stored<B>>(text) {
        Ok(stored) => Some(stored.body),
        Err(e) => {
            tracing::warn!(error = %e, "a stored reading does not decode; left out of the events");
            None
        }
    }
}

/// The event a reading stands for, if any; `door` is the door state before the
/// reading and becomes the one after it.
fn decode(row: &ScannedRow, door: &mut Option<Door>) -> Option<DeviceEvent> {
    let event = |kind| DeviceEvent {
        kind,
        seq: row.seq,
        ts_ms: row.ts_ms,
        ts: rfc3339(row.ts_ms),
        code: None,
        floor: None,
        fw: None,
        boots: None,
    };
    match row.kind.as_str() {
        "event" => {
            let e: NodeEvent = body_of(&row.body)?;
            let kind = EventKind::of_node(e.event);
            let has_code = matches!(
                kind,
                EventKind::FaultRaised | EventKind::FaultCleared | EventKind::BufferOverflow
            );
            Some(DeviceEvent {
                code: has_code.then_some(e.code),
                ..event(kind)
            })
        }
        "birth" => {
            let b: Birth = body_of(&row.body)?;
            Some(DeviceEvent {
                fw: Some(b.fw.as_str().to_string()),
                boots: Some(b.boots),
                ..event(EventKind::Birth)
            })
        }
        "lift" | "sterilizer" => {
            let state: DoorState = body_of(&row.body)?;
            // The first status reading ever has nothing to compare with: no event.
            let before = door.replace(state.door)?;
            let kind = match (before, state.door) {
                (Door::Closed, Door::Open) => EventKind::DoorOpened,
                (Door::Open, Door::Closed) => EventKind::DoorClosed,
                _ => return None,
            };
            Some(DeviceEvent {
                floor: state.floor,
                ..event(kind)
            })
        }
        _ => None,
    }
}

/// A time bound in ms clamped to what a `timestamptz` holds (years 0 to 9999), so
/// that open windows such as `..i64::MAX` work.
fn pg_ms(ms: i64) -> i64 {
    const YEAR_0: i64 = -62_167_219_200_000;
    const YEAR_10000: i64 = 253_402_300_800_000;
    ms.clamp(YEAR_0, YEAR_10000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_positions_read_back() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
        }
        let p = Position {
            ts_ms: 1_764_061_200_000,
            seq: 42,
        };
        assert_eq!(p.to_string().parse::<Position>(), Ok(p));
        for bad in ["", "12", "-1-2", "1-", "a-1", "1-2-3"] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
    }
}
