//! One device's events from its stored readings, on every backend: node events,
//! births and door changes in device time then seq, filtered by kind and time,
//! and pages that hold every event once.
mod common;

use common::{Backend, T0, TestDb, id};
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::{Birth, Door, Envelope, EventKind as NodeKind, LiftStatus, NodeEvent};
use gridwatch_storage::Store;
use gridwatch_storage::events::{
    EventKind, EventQuery, Position, device_has_readings, events_page, events_page_scanning,
};
use gridwatch_storage::model::Accepted;

conformance!(
    events_births_and_door_changes_in_device_time,
    kind_and_time_filters_and_the_door_before_the_window,
    pages_hold_every_event_once,
    a_page_that_reads_its_budget_ends_early_with_a_cursor,
);

const LIFT: &str = "L-events";

/// Device time T0 + `s` seconds.
fn at(s: u64) -> u64 {
    T0 + s * 1000
}

fn accepted(reading: Reading) -> Accepted {
    Accepted {
        gateway: "gw-t".into(),
        reading,
    }
}

fn node_event(device: &str, seq: u64, ts: u64, event: NodeKind, code: u16) -> Accepted {
    accepted(Reading::Event(Envelope::new(
        id(device),
        seq,
        ts,
        NodeEvent { event, code },
    )))
}

fn status(device: &str, seq: u64, ts: u64, door: Door, floor: i16) -> Accepted {
    let body = LiftStatus {
        door,
        ..LiftStatus::at_rest(floor)
    };
    accepted(Reading::Lift(Envelope::new(id(device), seq, ts, body)))
}

fn birth(device: &str, seq: u64, ts: u64, boots: u32) -> Accepted {
    let body: Birth =
        serde_json::from_value(serde_json::json!({"device_kind": "lift", "fw": "2.1.0", "boots": boots})).unwrap();
    accepted(Reading::Birth(Envelope::new(id(device), seq, ts, body)))
}

async fn commit(store: &Store, readings: &[Accepted]) {
    store.commit(readings, &[]).await.unwrap();
}

/// On SQLite, moves what is stored into `readings_settled`: readings committed after
/// it stay in `readings_recent`, so a query reads both tables.
async fn settle(store: &Store) {
    if let Store::Sqlite(s) = store {
        s.settle_all().await.unwrap();
        let settled: i64 = sqlx::query_scalar("SELECT count(*) FROM readings_settled")
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert!(settled > 0, "readings moved to readings_settled");
    }
}

fn query(kinds: &[EventKind]) -> EventQuery<'_> {
    EventQuery {
        device: LIFT,
        from_ms: 0,
        to_ms: i64::MAX,
        kinds,
        after: None,
        limit: 1000,
    }
}

fn kinds(page: &[gridwatch_storage::events::DeviceEvent]) -> Vec<(u64, EventKind)> {
    page.iter().map(|e| (((e.ts_ms as u64) - T0) / 1000, e.kind)).collect()
}

/// A morning of one lift: a birth, a door cycle with an alarm press inside it, a
/// power loss, a fault; stored in two batches out of device-time order (on SQLite in
/// both reading tables), next to another lift's events.
async fn a_morning(s: &Store) {
    commit(
        s,
        &[
            node_event(LIFT, 7, at(70), NodeKind::PowerLost, 0),
            node_event(LIFT, 8, at(80), NodeKind::PowerRestored, 0),
            node_event(LIFT, 9, at(90), NodeKind::FaultRaised, 801),
            status(LIFT, 10, at(100), Door::Closed, 3),
            node_event("L-other", 1, at(15), NodeKind::AlarmButton, 0),
        ],
    )
    .await;
    settle(s).await;
    commit(
        s,
        &[
            birth(LIFT, 1, at(10), 4),
            status(LIFT, 2, at(20), Door::Closed, 1),
            status(LIFT, 3, at(30), Door::Open, 1),
            status(LIFT, 4, at(40), Door::Open, 1),
            node_event(LIFT, 5, at(40), NodeKind::AlarmButton, 0),
            status(LIFT, 6, at(60), Door::Closed, 1),
        ],
    )
    .await;
}

async fn events_births_and_door_changes_in_device_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.open().await;
    a_morning(&s).await;
    let page = events_page(&s, &query(&[])).await.unwrap();
    assert_eq!(page.next, None);
    assert_eq!(
        kinds(&page.items),
        [
            (10, EventKind::Birth),
            (30, EventKind::DoorOpened),
            // Same device time as a heartbeat, later seq: after it.
            (40, EventKind::AlarmButton),
            (60, EventKind::DoorClosed),
            (70, EventKind::PowerLost),
            (80, EventKind::PowerRestored),
            (90, EventKind::FaultRaised),
        ],
        "a heartbeat with the door still open, or closed as before, is no event"
    );
    let json = serde_json::to_value(&page.items).unwrap();
    assert_eq!(
        json[0],
        serde_json::json!({"kind": "birth", "seq": 1, "ts_ms": at(10), "ts": "2025-11-25T09:00:10.000Z", "fw": "2.1.0", "boots": 4})
    );
    assert_eq!(json[1]["floor"], 1);
    assert_eq!(json[2].get("code"), None, "an alarm press has no code");
    assert_eq!(json[6]["code"], 801);
    // Nothing for a device without readings.
    let none = EventQuery {
        device: "L-none",
        ..query(&[])
    };
    assert_eq!(events_page(&s, &none).await.unwrap().items, []);
    assert!(device_has_readings(&s, LIFT).await.unwrap());
    assert!(!device_has_readings(&s, "L-none").await.unwrap());
}

async fn kind_and_time_filters_and_the_door_before_the_window(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.open().await;
    a_morning(&s).await;
    let power = [EventKind::PowerLost, EventKind::PowerRestored];
    let page = events_page(&s, &query(&power)).await.unwrap();
    assert_eq!(
        kinds(&page.items),
        [(70, EventKind::PowerLost), (80, EventKind::PowerRestored)]
    );

    // From 40 s to before 80 s: the door was open before the window, so the closed
    // door at 60 s is a closing; the open heartbeat at 40 s is none.
    let window = EventQuery {
        from_ms: at(40) as i64,
        to_ms: at(80) as i64,
        ..query(&[])
    };
    let page = events_page(&s, &window).await.unwrap();
    assert_eq!(
        kinds(&page.items),
        [
            (40, EventKind::AlarmButton),
            (60, EventKind::DoorClosed),
            (70, EventKind::PowerLost)
        ]
    );
    let doors = [EventKind::DoorOpened, EventKind::DoorClosed];
    let from_35 = EventQuery {
        from_ms: at(35) as i64,
        ..query(&doors)
    };
    assert_eq!(
        kinds(&events_page(&s, &from_35).await.unwrap().items),
        [(60, EventKind::DoorClosed)]
    );
    // A window that starts at the opening itself shows it.
    let from_30 = EventQuery {
        from_ms: at(30) as i64,
        ..query(&doors)
    };
    assert_eq!(
        kinds(&events_page(&s, &from_30).await.unwrap().items),
        [(30, EventKind::DoorOpened), (60, EventKind::DoorClosed)]
    );
}

/// Every page of `q`, following the cursors; `scan_rows` bounds the readings a page reads.
async fn all_pages(s: &Store, q: &EventQuery<'_>, scan_rows: usize) -> Vec<Vec<(i64, i64, EventKind)>> {
    let mut pages = Vec::new();
    let mut after: Option<Position> = None;
    loop {
        let page = events_page_scanning(s, &EventQuery { after, ..q.clone() }, scan_rows)
            .await
            .unwrap();
        assert!(page.items.len() as i64 <= q.limit);
        pages.push(page.items.iter().map(|e| (e.ts_ms, e.seq, e.kind)).collect());
        match page.next {
            Some(next) => {
                assert!(after < Some(next), "the cursor moves on");
                after = Some(next);
            }
            None => return pages,
        }
        assert!(pages.len() < 10_000, "paging does not end");
    }
}

async fn pages_hold_every_event_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.open().await;
    // 600 readings: heartbeats, a door cycle every 5, an alarm press every 7; some
    // pairs share a device time.
    let readings: Vec<Accepted> = (1..=600u64)
        .map(|seq| {
            let ts = at(seq / 2);
            match (seq % 7, seq % 5) {
                (0, _) => node_event(LIFT, seq, ts, NodeKind::AlarmButton, 0),
                (_, 0) => status(LIFT, seq, ts, Door::Open, 2),
                _ => status(LIFT, seq, ts, Door::Closed, 2),
            }
        })
        .collect();
    // Odd seqs settled, even ones recent on SQLite: every page merges both tables.
    let (odd, even): (Vec<Accepted>, Vec<Accepted>) = readings.into_iter().partition(|a| a.reading.seq() % 2 == 1);
    for batch in odd.chunks(97) {
        commit(&s, batch).await;
    }
    settle(&s).await;
    for batch in even.chunks(97) {
        commit(&s, batch).await;
    }
    let whole = events_page(&s, &query(&[])).await.unwrap();
    assert_eq!(whole.next, None);
    let all: Vec<_> = whole.items.iter().map(|e| (e.ts_ms, e.seq, e.kind)).collect();
    assert!(all.len() > 200, "{}", all.len());
    assert!(all.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
    for limit in [1, 7, 100] {
        let q = EventQuery { limit, ..query(&[]) };
        let pages = all_pages(&s, &q, gridwatch_storage::events::SCAN_ROWS).await;
        assert!(pages[..pages.len() - 1].iter().all(|p| p.len() as i64 == limit));
        assert_eq!(pages.concat(), all, "limit {limit}");
    }
    // Door changes only, paged across the alarm presses between them.
    let doors = [EventKind::DoorOpened, EventKind::DoorClosed];
    let q = EventQuery {
        limit: 3,
        ..query(&doors)
    };
    let expected: Vec<_> = all.iter().filter(|e| doors.contains(&e.2)).copied().collect();
    assert_eq!(all_pages(&s, &q, 20_000).await.concat(), expected);
}

async fn a_page_that_reads_its_budget_ends_early_with_a_cursor(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.open().await;
    // 50 heartbeats with the door closed, then an opening, 50 more, an alarm press.
    let mut readings: Vec<Accepted> = (1..=50)
        .map(|seq| status(LIFT, seq, at(seq), Door::Closed, 0))
        .collect();
    readings.push(status(LIFT, 51, at(51), Door::Open, 0));
    readings.extend((52..=101).map(|seq| status(LIFT, seq, at(seq), Door::Open, 0)));
    readings.push(node_event(LIFT, 102, at(102), NodeKind::AlarmButton, 0));
    commit(&s, &readings).await;

    let first = events_page_scanning(&s, &query(&[]), 10).await.unwrap();
    assert_eq!(first.items, [], "ten heartbeats read, no event among them");
    assert_eq!(
        first.next,
        Some(Position {
            ts_ms: at(10) as i64,
            seq: 10
        })
    );
    let pages = all_pages(&s, &query(&[]), 10).await;
    assert_eq!(
        pages.concat(),
        [
            (at(51) as i64, 51, EventKind::DoorOpened),
            (at(102) as i64, 102, EventKind::AlarmButton)
        ]
    );
    assert!(pages.len() > 10, "{} pages", pages.len());
}
