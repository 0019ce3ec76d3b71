//! A device's events through the HTTP API of a real ingest (SQLite, port 0, virtual
//! time, MQTT credentials and API tokens on): readings arrive as a provisioned
//! gateway's batch; the lift's own firm lists its events, other callers get the 404 of
//! an unknown device; open mode lists a device outside the register that sent readings;
//! pages hold every event once; kind and time filters apply.
mod common;

use common::*;
use gridwatch_cases::{Assignment, GridScope, Role, User};
use gridwatch_ingest::{Ingest, IngestConfig, Users};
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::clock::ManualClock;
use gridwatch_protocol::{Birth, DeviceId, Door, Envelope, EventKind, LiftStatus, NodeEvent};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// 2026-11-25 10:00 China time: the date of the sample register.
const NOW: u64 = 1_795_572_000_000;
/// A passenger lift of grid 010101 maintained by firm MF04.
const LIFT: &str = "31103306242009000001";
const GATEWAY: &str = "gw-e";
/// Readings the lift sends, one a second from an hour before [`NOW`].
const READINGS: u64 = 300;

fn ts(seq: u64) -> u64 {
    NOW - 3_600_000 + seq * 1000
}

/// The lift's reading `seq`: a birth first, then status heartbeats with the door open
/// at seqs ending in 3 and 4, an alarm press at those ending in 5, a power loss and
/// its restoration every 50.
fn reading(seq: u64) -> Reading {
    let device = DeviceId::try_from(LIFT).unwrap();
    let event = |event, code| Reading::Event(Envelope::new(device.clone(), seq, ts(seq), NodeEvent { event, code }));
    match (seq, seq % 50, seq % 10) {
        (1, ..) => {
            let birth: Birth =
                serde_json::from_value(json!({"device_kind": "lift", "fw": "2.1.0", "boots": 3})).unwrap();
            Reading::Birth(Envelope::new(device, seq, ts(seq), birth))
        }
        (_, 20, _) => event(EventKind::PowerLost, 0),
        (_, 21, _) => event(EventKind::PowerRestored, 0),
        (_, _, 5) => event(EventKind::AlarmButton, 0),
        (_, _, last) => {
            let door = if last == 3 || last == 4 {
                Door::Open
            } else {
                Door::Closed
            };
            let status = LiftStatus {
                door,
                ..LiftStatus::at_rest(1)
            };
            Reading::Lift(Envelope::new(device, seq, ts(seq), status))
        }
    }
}

/// The events those readings stand for: (seq, kind).
fn expected() -> Vec<(u64, &'static str)> {
    (1..=READINGS)
        .filter_map(|seq| match (seq, seq % 50, seq % 10) {
            (1, ..) => Some((seq, "birth")),
            (_, 20, _) => Some((seq, "power_lost")),
            (_, 21, _) => Some((seq, "power_restored")),
            (_, _, 3) => Some((seq, "door_opened")),
            (_, _, 5) => Some((seq, "alarm_button")),
            // The status after an alarm press: the door closed since the one at 4.
            (_, _, 6) => Some((seq, "door_closed")),
            _ => None,
        })
        .collect()
}

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
    let firm = |firm: &str| Assignment::Firm { firm: firm.into() };
    let mut users = Users::new();
    users.add(
        "t-registrar",
        user(
            "registrar",
            vec![grid(Role::GridHead, "01"), grid(Role::GridHead, "02")],
        ),
    );
    users.add("t-inspector", user("inspector", vec![grid(Role::Inspector, "010101")]));
    users.add("t-head02", user("head02", vec![grid(Role::GridHead, "02")]));
    users.add("t-mf04", user("firm-MF04", vec![firm("MF04")]));
    users.add("t-mf01", user("firm-MF01", vec![firm("MF01")]));
    users
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, token: Option<&str>, path: &str) -> (StatusCode, HeaderMap, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Every page of `path` as `token`, following `x-next-cursor`: the rows of each page.
    async fn pages(&self, token: &str, path: &str, limit: usize) -> Vec<Vec<Value>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut pages = Vec::new();
        let mut after = String::new();
        loop {
            let (status, headers, body) = self
                .get(Some(token), &format!("{path}{sep}limit={limit}&after={after}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            let rows = body.as_array().unwrap().clone();
            assert!(rows.len() <= limit);
            pages.push(rows);
            match headers.get("x-next-cursor") {
                Some(next) => after = next.to_str().unwrap().to_string(),
                None => return pages,
            }
            assert!(pages.len() < 10_000, "paging does not end");
        }
    }
}

fn seq_kinds(rows: &[Value]) -> Vec<(u64, String)> {
    rows.iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["kind"].as_str().unwrap().to_string()))
        .collect()
}

fn owned(events: &[(u64, &str)]) -> Vec<(u64, String)> {
    events.iter().map(|(s, k)| (*s, k.to_string())).collect()
}

/// Ingest with MQTT credentials and API users, the sample register imported, and the
/// lift's readings committed from its gateway.
async fn start(dir: &Path) -> (Ingest, Api) {
    start_with(dir, users()).await
}

/// [`start`] with other API users; the register is imported only when they may write.
async fn start_with(dir: &Path, users: Users) -> (Ingest, Api) {
    let credentials = dir.join("credentials.toml");
    let gateway_secret = provision(&credentials, GATEWAY, gridwatch_ingest::Role::Gateway, None);
    provision(&credentials, LIFT, gridwatch_ingest::Role::Node, Some(GATEWAY));
    let mut config = IngestConfig::embedded(dir);
    config.clock = Arc::new(ManualClock::new(NOW));
    config.tick_every = Duration::from_secs(3600);
    let open = users.is_open();
    config.users = users;
    config.mqtt_guard = guard_with(&credentials);
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let api = Api {
        base: format!("http://{}", ingest.http_addr),
        http: reqwest::Client::new(),
    };
    if !open {
        let sample =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("simulators/data/registry-sample.csv"))
                .unwrap();
        let resp = api
            .http
            .post(format!("{}/api/equipment/import", api.base))
            .bearer_auth("t-registrar")
            .body(sample)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    }

    let readings: Vec<Value> = (1..=READINGS)
        .map(|seq| serde_json::to_value(reading(seq)).unwrap())
        .collect();
    let batch = json!({"v": 1, "gateway": GATEWAY, "batch": 1, "readings": readings});
    let (gateway, _) = mqtt_client_as(ingest.mqtt_addr, "gateway-gw-e", GATEWAY, &gateway_secret).await;
    gateway
        .publish(
            format!("gw/{GATEWAY}/batch"),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&batch).unwrap(),
        )
        .await
        .unwrap();
    eventually("the lift's readings stored", || async {
        (ingest.store.reading_count().await.unwrap() == READINGS as i64).then_some(())
    })
    .await;
    (ingest, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifts_firm_and_inspector_see_its_events_and_nobody_else_learns_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = start(dir.path()).await;
    let path = format!("/api/devices/{LIFT}/events?limit=1000");
    for token in ["t-mf04", "t-inspector"] {
        let (status, headers, body) = api.get(Some(token), &path).await;
        assert_eq!(status, StatusCode::OK, "{token}: {body}");
        assert_eq!(seq_kinds(body.as_array().unwrap()), owned(&expected()), "{token}");
        assert!(headers.get("x-next-cursor").is_none(), "one page holds them");
        assert_eq!(
            body[0],
            json!({"kind": "birth", "seq": 1, "ts_ms": ts(1), "ts": "2026-11-25T01:00:01.000Z", "fw": "2.1.0", "boots": 3})
        );
    }
    // Another firm and another area's head get the answer an unknown device gets.
    let (status, _, unknown) = api
        .get(Some("t-mf04"), "/api/devices/31103306242009999999/events")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    for token in ["t-mf01", "t-head02"] {
        let (status, _, body) = api.get(Some(token), &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{token}: {body}");
        assert_eq!(
            body["error"].as_str().unwrap().replace(LIFT, "ID"),
            unknown["error"].as_str().unwrap().replace("31103306242009999999", "ID"),
            "{token}"
        );
    }
    let (status, _, _) = api.get(None, &path).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_hold_every_event_once_and_kind_and_time_filters_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = start(dir.path()).await;
    let path = format!("/api/devices/{LIFT}/events");
    let all = owned(&expected());
    for limit in [1, 7, 100] {
        let pages = api.pages("t-mf04", &path, limit).await;
        assert!(pages[..pages.len() - 1].iter().all(|p| p.len() == limit));
        assert_eq!(seq_kinds(&pages.concat()), all, "limit {limit}");
    }
    // Without limit: 100 a page, and the Link header leads to the rest.
    let (_, headers, first) = api.get(Some("t-mf04"), &path).await;
    assert_eq!(first.as_array().unwrap().len(), 100);
    let link = headers["link"].to_str().unwrap();
    let next = link.strip_prefix('<').and_then(|l| l.split_once('>')).unwrap().0;
    let (status, _, rest) = api.get(Some("t-mf04"), next).await;
    assert_eq!(status, StatusCode::OK, "{link}: {rest}");
    assert_eq!(seq_kinds(rest.as_array().unwrap()), all[100..]);

    // Kinds, paged too.
    let power = api
        .pages("t-mf04", &format!("{path}?kind=power_lost,power_restored"), 4)
        .await
        .concat();
    let expected_power: Vec<_> = all.iter().filter(|(_, k)| k.starts_with("power_")).cloned().collect();
    assert_eq!(seq_kinds(&power), expected_power);
    assert_eq!(expected_power.len(), 12);

    // A window in China time (seqs 100 to 139) and the same in ms; the door was open
    // at seq 103 and 104 and the closing comes at 106, inside.
    let window = |from: u64, to: u64| -> Vec<(u64, String)> {
        all.iter()
            .filter(|(seq, _)| (from..to).contains(&ts(*seq)))
            .cloned()
            .collect()
    };
    let china = api
        .pages(
            "t-mf04",
            &format!("{path}?from=2026-11-25T09:01:40%2B08:00&to=2026-11-25T09:02:20%2B08:00"),
            3,
        )
        .await
        .concat();
    assert_eq!(seq_kinds(&china), window(ts(100), ts(140)));
    assert_eq!(seq_kinds(&china)[0], (103, "door_opened".to_string()));
    // From 104 (door open before it): the first event is the closing at 106.
    let doors = api
        .pages(
            "t-mf04",
            &format!("{path}?from={}&to={}&kind=door_closed,door_opened", ts(104), ts(117)),
            1000,
        )
        .await
        .concat();
    assert_eq!(
        seq_kinds(&doors),
        owned(&[(106, "door_closed"), (113, "door_opened"), (116, "door_closed")])
    );

    // Bad parameters name themselves.
    for (query, says) in [
        ("kind=door_slammed", "kind="),
        ("limit=0", "limit="),
        ("limit=1001", "1 to 1000"),
        ("after=12", "after="),
        ("from=yesterday", "from="),
        ("from=2000&to=1000", "window is empty"),
    ] {
        let (status, _, body) = api.get(Some("t-mf04"), &format!("{path}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message:?} should say {says:?}");
    }
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_lists_a_device_outside_the_register_that_sent_readings() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = start_with(dir.path(), Users::open()).await;
    let (status, _, body) = api.get(None, &format!("/api/devices/{LIFT}/events?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(seq_kinds(body.as_array().unwrap()), owned(&expected()));
    let (status, _, body) = api.get(None, "/api/devices/31103306242009999999/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    ingest.stop().await;
}
