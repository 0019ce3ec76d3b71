//! A device's hourly history through the HTTP API of a real ingest (SQLite, port 0,
//! virtual time, API tokens on): the lift's own firm and inspector get its hours,
//! another firm gets the 404 of an unknown device, and a window beyond 31 days or an
//! unknown bucket is a 400 that says why.
use gridwatch_cases::{Assignment, GridScope, Role, User};
use gridwatch_ingest::{Ingest, IngestConfig, Users};
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::clock::ManualClock;
use gridwatch_protocol::{DeviceId, Envelope, LiftStatus};
use gridwatch_storage::model::Accepted;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// 2026-11-25 10:00 China time (02:00 UTC): the date of the sample register.
const NOW: u64 = 1_795_572_000_000;
/// A passenger lift of grid 010101 maintained by firm MF04.
const LIFT: &str = "31103306242009000001";
const HOUR: u64 = 3_600_000;

fn users() -> Users {
    let grid = |role, scope: &str| Assignment::Grid {
        role,
        scope: GridScope::parse(scope).unwrap(),
    };
    let user = |id: &str, assignments| User {
        id: id.into(),
        name: id.into(),
        assignments,
    };
    let mut users = Users::new();
    users.add(
        "t-registrar",
        user(
            "registrar",
            vec![grid(Role::GridHead, "01"), grid(Role::GridHead, "02")],
        ),
    );
    users.add("t-inspector", user("inspector", vec![grid(Role::Inspector, "010101")]));
    users.add(
        "t-mf04",
        user("firm-MF04", vec![Assignment::Firm { firm: "MF04".into() }]),
    );
    users.add(
        "t-mf01",
        user("firm-MF01", vec![Assignment::Firm { firm: "MF01".into() }]),
    );
    users
}

/// A lift status `seq` at `ts` on `floor` with its wear counters.
fn lift(seq: u64, ts: u64, floor: i16, runs: u32) -> Accepted {
    let body = LiftStatus {
        runs,
        door_cycles: runs * 2,
        ..LiftStatus::at_rest(floor)
    };
    Accepted {
        gateway: "gw-h".into(),
        reading: Reading::Lift(Envelope::new(DeviceId::try_from(LIFT).unwrap(), seq, ts, body)),
    }
}

async fn get(ingest: &Ingest, token: &str, path: &str) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .get(format!("http://{}{path}", ingest.http_addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn start(dir: &Path) -> Ingest {
    let mut config = IngestConfig::embedded(dir);
    config.clock = Arc::new(ManualClock::new(NOW));
    config.tick_every = Duration::from_secs(3600);
    config.users = users();
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let sample =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("simulators/data/registry-sample.csv"))
            .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/equipment/import", ingest.http_addr))
        .bearer_auth("t-registrar")
        .body(sample)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", &text[..text.len().min(500)]);
    // Two hours ago and the last hour (before now, 02:00 UTC).
    let readings = [
        lift(1, NOW - 2 * HOUR + 60_000, 1, 10),
        lift(2, NOW - 2 * HOUR + 120_000, 4, 13),
        lift(3, NOW - HOUR + 60_000, 2, 20),
    ];
    ingest.store.commit(&readings, &[]).await.unwrap();
    ingest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifts_firm_sees_its_hours_and_another_firm_gets_a_404() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = start(dir.path()).await;
    let path = format!("/api/devices/{LIFT}/history");
    for token in ["t-mf04", "t-inspector"] {
        // The default window: the day up to now.
        let (status, body) = get(&ingest, token, &path).await;
        assert_eq!(status, StatusCode::OK, "{token}: {body}");
        assert_eq!(body["bucket"], "hour");
        assert_eq!(body["source"], "readings");
        assert_eq!(body["to_ms"], NOW);
        assert_eq!(body["from_ms"], NOW - 24 * HOUR);
        assert_eq!(
            body["buckets"],
            json!([
                {"start_ms": NOW - 2 * HOUR, "start": "2026-11-25T00:00:00.000Z", "kind": "lift", "readings": 2,
                 "floor_min": 1, "floor_max": 4, "trips": 3, "door_cycles": 6},
                {"start_ms": NOW - HOUR, "start": "2026-11-25T01:00:00.000Z", "kind": "lift", "readings": 1,
                 "floor_min": 2, "floor_max": 2, "trips": 7, "door_cycles": 14},
            ]),
            "{token}"
        );
    }
    // A window in RFC 3339, widened to whole hours.
    let (status, body) = get(
        &ingest,
        "t-mf04",
        &format!("{path}?from=2026-11-25T01:30:00Z&to=2026-11-25T01:31:00Z&bucket=hour"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["from_ms"], NOW - HOUR);
    assert_eq!(body["buckets"].as_array().unwrap().len(), 1);

    let (status, unknown) = get(&ingest, "t-mf04", "/api/devices/31103306242009999999/history").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    let (status, body) = get(&ingest, "t-mf01", &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        body["error"].as_str().unwrap().replace(LIFT, "ID"),
        unknown["error"].as_str().unwrap().replace("31103306242009999999", "ID")
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_beyond_31_days_or_another_bucket_is_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = start(dir.path()).await;
    let path = format!("/api/devices/{LIFT}/history");
    let day = 24 * HOUR;
    let (status, body) = get(&ingest, "t-mf04", &format!("{path}?from={}&to={NOW}", NOW - 31 * day)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(
        &ingest,
        "t-mf04",
        &format!("{path}?from={}&to={NOW}", NOW - 31 * day - 1),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("at most 31 days"), "{body}");
    let (status, body) = get(&ingest, "t-mf04", &format!("{path}?bucket=day")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("expected hour"), "{body}");
    let (status, body) = get(&ingest, "t-mf04", &format!("{path}?from={NOW}&to={NOW}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    ingest.stop().await;
}
