//! One device's hourly history on every backend: a lift's floors, trips and door
//! cycles, a sterilizer's temperatures and cycles, in whole UTC hours.
mod common;

use common::{Backend, T0, TestDb, id};
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::{CycleOutcome, CycleReport, Door, Envelope, LiftStatus, Method, SterilizerStatus};
use gridwatch_storage::Store;
use gridwatch_storage::history::{HOUR_MS, HourBucket, Source, hour_window, hourly};
use gridwatch_storage::model::Accepted;
use gridwatch_storage::postgres::Layout;

conformance!(
    lift_hours_give_floors_trips_and_door_cycles,
    sterilizer_hours_give_temperatures_and_cycles,
);

/// T0 (09:00 UTC) + `m` minutes.
fn at(m: u64) -> u64 {
    T0 + m * 60_000
}

fn accepted(reading: Reading) -> Accepted {
    Accepted {
        gateway: "gw-t".into(),
        reading,
    }
}

fn lift(seq: u64, ts: u64, floor: i16, runs: u32, door_cycles: u32) -> Accepted {
    let body = LiftStatus {
        runs,
        door_cycles,
        ..LiftStatus::at_rest(floor)
    };
    accepted(Reading::Lift(Envelope::new(id("L-hist"), seq, ts, body)))
}

fn sterilizer(seq: u64, ts: u64, temp_c: f32) -> Accepted {
    let body = SterilizerStatus {
        method: Method::Steam,
        temp_c,
        door: Door::Closed,
        heating: true,
        power: true,
        in_cycle: true,
    };
    accepted(Reading::Sterilizer(Envelope::new(id("S-hist"), seq, ts, body)))
}

fn cycle(seq: u64, ts: u64) -> Accepted {
    let body = CycleReport {
        method: Method::Steam,
        started: ts - 600_000,
        peak_c: Some(121.0),
        hold_s: 300,
        outcome: CycleOutcome::Completed,
    };
    accepted(Reading::Cycle(Envelope::new(id("S-hist"), seq, ts, body)))
}

/// On SQLite, settles what is stored, so the query reads both reading tables.
async fn settle(store: &Store) {
    if let Store::Sqlite(s) = store {
        s.settle_all().await.unwrap();
    }
}

async fn history(store: &Store, device: &str, from: u64, to: u64) -> Vec<HourBucket> {
    let (from, to) = hour_window(from as i64, to as i64).unwrap();
    let h = hourly(store, device, from, to).await.unwrap();
    let hypertable = matches!(store, Store::Postgres(p) if p.layout() == Layout::Hypertable);
    let expected = if hypertable {
        Source::ContinuousAggregate
    } else {
        Source::Readings
    };
    assert_eq!(
        h.source, expected,
        "TimescaleDB reads its aggregate, the others the readings"
    );
    h.buckets
}

async fn lift_hours_give_floors_trips_and_door_cycles(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    store
        .commit(
            &[
                // Before the window: the counters the first hour counts on from.
                lift(1, at(0) - 30 * 60_000, 0, 100, 40),
                // 09:00-10:00
                lift(2, at(5), 3, 104, 44),
                lift(3, at(50), -1, 110, 50),
            ],
            &[],
        )
        .await
        .unwrap();
    settle(&store).await;
    if let Store::Postgres(p) = &store
        && p.layout() == Layout::Hypertable
    {
        // The hours up to 10:00 materialized; the later ones come from the readings
        // (real-time aggregation).
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CALL refresh_continuous_aggregate('readings_hourly', NULL, timestamptz 'epoch' + {} * interval '1 millisecond')",
            at(60)
        )))
        .execute(p.pool())
        .await
        .unwrap();
        let materialized: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _timescaledb_catalog.continuous_aggs_watermark")
                .fetch_one(p.pool())
                .await
                .unwrap();
        assert_eq!(materialized, 1);
    }
    store
        .commit(
            &[
                // 11:00-12:00 (nothing at 10): counts on from 09:50.
                lift(4, at(130), 7, 111, 52),
                lift(5, at(170), 2, 115, 52),
                // After the window.
                lift(6, at(185), 9, 200, 90),
            ],
            &[],
        )
        .await
        .unwrap();
    let buckets = history(&store, "L-hist", at(0), at(180)).await;
    let got: Vec<_> = buckets
        .iter()
        .map(|b| {
            (
                b.start_ms,
                b.kind,
                b.readings,
                b.floor_min,
                b.floor_max,
                b.trips,
                b.door_cycles,
            )
        })
        .collect();
    let h = |n: u64| at(n * 60) as i64;
    assert_eq!(
        got,
        [
            (h(0), "lift", 2, Some(-1), Some(3), Some(10), Some(10)),
            (h(2), "lift", 2, Some(2), Some(7), Some(5), Some(2)),
        ]
    );
    assert_eq!(buckets[0].start, "2025-11-25T09:00:00.000Z");
    assert_eq!(buckets[0].temp_mean_c, None);

    // A window starting mid-hour covers the whole hour; another device is not in it.
    let whole = history(&store, "L-hist", at(20), at(21)).await;
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].readings, 2);
    assert!(history(&store, "L-other", at(0), at(180)).await.is_empty());
}

async fn sterilizer_hours_give_temperatures_and_cycles(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    store
        .commit(
            &[
                sterilizer(1, at(1), 20.0),
                sterilizer(2, at(2), 100.0),
                sterilizer(3, at(3), 120.0),
                cycle(4, at(40)),
                cycle(5, at(59)),
                sterilizer(6, at(61), 60.5),
                cycle(7, at(125)),
            ],
            &[],
        )
        .await
        .unwrap();
    let got: Vec<_> = history(&store, "S-hist", at(0), at(180))
        .await
        .iter()
        .map(|b| (b.kind, b.readings, b.temp_min_c, b.temp_max_c, b.temp_mean_c, b.cycles))
        .collect();
    assert_eq!(
        got,
        [
            ("sterilizer", 3, Some(20.0), Some(120.0), Some(80.0), Some(2)),
            ("sterilizer", 1, Some(60.5), Some(60.5), Some(60.5), Some(0)),
            // An hour with a cycle report only.
            ("sterilizer", 0, None, None, None, Some(1)),
        ]
    );
}

#[test]
fn a_window_beyond_31_days_is_refused() {
    let day = 24 * HOUR_MS;
    assert!(hour_window(0, 31 * day).is_ok());
    let e = hour_window(0, 31 * day + 1).unwrap_err().to_string();
    assert!(e.contains("at most 31 days"), "{e}");
}

/// A database made with the aggregate's first definition (a count and the peak
/// temperature per hour) gets the typed columns at the next start, its past
/// materialized, so old hours are not lost to the policy's three-day window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_an_older_aggregate_is_replaced_and_materialized() {
    if common::timescale_server("timescale_an_older_aggregate_is_replaced_and_materialized").is_none() {
        return;
    }
    let db = TestDb::new(Backend::Timescale).await;
    let store = db.open().await;
    store
        .commit(&[lift(1, at(5), 3, 104, 44), lift(2, at(50), 1, 110, 50)], &[])
        .await
        .unwrap();
    let Store::Postgres(p) = &store else { unreachable!() };
    for sql in [
        "DROP MATERIALIZED VIEW readings_hourly",
        "CREATE MATERIALIZED VIEW readings_hourly WITH (timescaledb.continuous) AS \
         SELECT device_id, kind, time_bucket(INTERVAL '1 hour', ts) AS bucket, count(*) AS readings, \
                max(((body::jsonb) -> 'body' ->> 'temp_c')::real) AS max_temp_c \
         FROM readings GROUP BY device_id, kind, bucket WITH NO DATA",
    ] {
        sqlx::query(sql).execute(p.pool()).await.unwrap();
    }
    drop(store);
    let store = db.open().await;
    let Store::Postgres(p) = &store else { unreachable!() };
    let materialized: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM _timescaledb_catalog.continuous_aggs_watermark w \
         WHERE w.watermark > 0",
    )
    .fetch_one(p.pool())
    .await
    .unwrap();
    assert_eq!(materialized, 1, "the past is materialized once");
    let got: Vec<_> = history(&store, "L-hist", at(0), at(60))
        .await
        .iter()
        .map(|b| (b.readings, b.floor_min, b.floor_max, b.trips))
        .collect();
    assert_eq!(got, [(2, Some(1), Some(3), Some(6))]);
}
