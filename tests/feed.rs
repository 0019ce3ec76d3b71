//! The live feed (`GET /api/feed`, Server-Sent Events) on a real ingest (SQLite, port 0,
//! virtual time) with the sample register: events arrive as they are committed (the
//! feed's own polling is set to an hour, so only the commit's wake-up can deliver them),
//! `Last-Event-ID` resumes exactly after the last event seen, also across a restart,
//! the walls hold, a subscriber that stops reading is cut off and counted while the
//! others go on, and subscribers beyond the limit get 503. Metrics are read from the
//! process's recorder: run with nextest (a process per test), as the suite does.
mod common;

use common::{DEADLINE, eventually};
use gridwatch_cases::{Assignment, GridScope, Role, User};
use gridwatch_ingest::{Ingest, IngestConfig, Users};
use gridwatch_protocol::clock::ManualClock;
use gridwatch_storage::feed::{self, Walls};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 2026-11-25 10:00 China time: the date of the sample register.
const NOW: u64 = 1_795_572_000_000;

fn users() -> Users {
    let grid = |id: &str, scopes: &[&str]| User {
        id: id.into(),
        name: id.into(),
        assignments: scopes
            .iter()
            .map(|s| Assignment::Grid {
                role: Role::GridHead,
                scope: GridScope::parse(s).unwrap(),
            })
            .collect(),
    };
    let firm = |firm: &str| User {
        id: format!("firm-{firm}"),
        name: firm.into(),
        assignments: vec![Assignment::Firm { firm: firm.into() }],
    };
    let mut users = Users::new();
    users.add("t-registrar", grid("registrar", &["01", "02"]));
    users.add("t-head01", grid("head01", &["01"]));
    users.add("t-mf04", firm("MF04"));
    users.add("t-mf01", firm("MF01"));
    users
}

/// Limits for the tests: no polling of the table (an hour), so only a commit's
/// wake-up delivers an event.
fn feed_config() -> gridwatch_ingest::FeedConfig {
    gridwatch_ingest::FeedConfig {
        poll_every: Duration::from_secs(3600),
        keep_alive: Duration::from_millis(200),
        ..gridwatch_ingest::FeedConfig::default()
    }
}

async fn start(dir: &Path, feed: gridwatch_ingest::FeedConfig) -> (Ingest, Api) {
    let mut config = IngestConfig::embedded(dir);
    config.clock = Arc::new(ManualClock::new(NOW));
    config.tick_every = Duration::from_secs(3600);
    config.users = users();
    config.feed = feed;
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let api = Api {
        base: format!("http://{}", ingest.http_addr),
        http: reqwest::Client::new(),
        pairs: std::sync::Mutex::new(Vec::new()),
    };
    (ingest, api)
}

/// [`start`] and the sample register imported (its overdue devices raise alerts and open cases).
async fn start_with_register(dir: &Path, feed: gridwatch_ingest::FeedConfig) -> (Ingest, Api) {
    let (ingest, api) = start(dir, feed).await;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulators/data/registry-sample.csv");
    let csv = std::fs::read(&path).unwrap();
    let resp = api
        .http
        .post(format!("{}/api/equipment/import", api.base))
        .bearer_auth("t-registrar")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    api.load_pairs().await;
    (ingest, api)
}

const CASE_TYPES: [&str; 5] = [
    "other",
    "equipment_fault",
    "device_offline",
    "sterilizer_misuse",
    "trapped_passenger",
];

struct Api {
    base: String,
    http: reqwest::Client,
    /// Devices and case types not reported yet: each report on one opens a case.
    pairs: std::sync::Mutex<Vec<Unreported>>,
}

struct Unreported {
    device: String,
    firm: String,
    /// In area 01 (head01's).
    area01: bool,
    case_type: &'static str,
}

/// Which device a report is about.
#[derive(Clone, Copy)]
enum Pick<'a> {
    Any,
    Firm(&'a str),
    Area01,
}

impl Api {
    async fn equipment(&self, token: &str) -> Vec<Value> {
        let devices: Value = self
            .http
            .get(format!("{}/api/equipment?limit=1000", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        devices.as_array().unwrap().clone()
    }

    async fn load_pairs(&self) {
        let area01: Vec<Value> = self.equipment("t-head01").await;
        let mut pairs = Vec::new();
        for case_type in CASE_TYPES {
            for d in self.equipment("t-registrar").await {
                pairs.push(Unreported {
                    device: d["id"].as_str().unwrap().to_string(),
                    firm: d["firm"].as_str().unwrap_or_default().to_string(),
                    area01: area01.iter().any(|a| a["id"] == d["id"]),
                    case_type,
                });
            }
        }
        pairs.reverse();
        *self.pairs.lock().unwrap() = pairs;
    }

    /// Reports a problem nobody reported yet on a device `pick` allows, with a
    /// description of `chars` characters, until a case opens: returns its id and device.
    async fn open_case(&self, pick: Pick<'_>, chars: usize) -> (u64, String) {
        loop {
            let Unreported { device, case_type, .. } = {
                let mut pairs = self.pairs.lock().unwrap();
                let at = pairs
                    .iter()
                    .rposition(|u| match pick {
                        Pick::Any => true,
                        Pick::Firm(firm) => u.firm == firm,
                        Pick::Area01 => u.area01,
                    })
                    .expect("a device and case type not reported yet");
                pairs.remove(at)
            };
            let report = json!({"channel": "hotline12315", "device_id": device, "case_type": case_type,
                "description": "x".repeat(chars)});
            let intake = eventually("the report to be taken", || async {
                let resp = self
                    .http
                    .post(format!("{}/api/cases", self.base))
                    .bearer_auth("t-registrar")
                    .json(&report)
                    .send()
                    .await
                    .unwrap();
                // Rate limited: the same report again.
                if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                    return None;
                }
                assert_eq!(resp.status(), StatusCode::CREATED);
                Some(resp.json::<Value>().await.unwrap())
            })
            .await;
            if intake["outcome"] == "opened" {
                return (intake["case"].as_u64().unwrap(), device);
            }
        }
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A subscriber: `token`, resuming after `last_event_id` when given.
    async fn subscribe(&self, token: &str, last_event_id: Option<i64>) -> Subscriber {
        let mut req = self.http.get(format!("{}/api/feed", self.base)).bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Subscriber { resp, buf: Vec::new() }
    }
}

/// One event as received.
#[derive(Debug, Clone)]
struct Ev {
    id: i64,
    event: String,
    data: Value,
}

/// A small Server-Sent Events reader over reqwest's streamed body.
struct Subscriber {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Subscriber {
    /// The next event (comments skipped), or `None` when the stream ends; fails after
    /// [`DEADLINE`] without one (keep-alive comments do not count).
    async fn next(&mut self) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.buf.drain(..end + 2).collect()).unwrap();
                let (mut id, mut event, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<i64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                let Some(id) = id else { continue };
                let data: Value = serde_json::from_str(&data).unwrap();
                let event = event.expect("every event names its type");
                assert_eq!(data["id"], id, "the id field and the data's id agree");
                assert_eq!(data["type"], event.as_str());
                return Some(Ev { id, event, data });
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) => return None,
                Err(_) => panic!("no event within {DEADLINE:?}"),
            }
        }
    }

    /// Events until (and with) the one with id `last`.
    async fn until(&mut self, last: i64) -> Vec<Ev> {
        let mut events = Vec::new();
        loop {
            let ev = self.next().await.expect("the stream goes on");
            assert!(ev.id <= last, "{ev:?} is past {last}");
            let done = ev.id == last;
            events.push(ev);
            if done {
                return events;
            }
        }
    }

    /// Events until the `case.opened` of case `case`.
    async fn until_case(&mut self, case: u64) -> Vec<Ev> {
        let mut events = Vec::new();
        loop {
            let ev = self.next().await.expect("the stream goes on");
            let done = ev.event == "case.opened" && ev.data["case_id"] == case;
            events.push(ev);
            if done {
                return events;
            }
        }
    }
}

fn ids(events: &[Ev]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

/// The feed rows `walls` let through, from the table: what a subscriber must get.
async fn stored(ingest: &Ingest, walls: &Walls, after: i64) -> Vec<i64> {
    let upto = feed::last_id(&ingest.store).await.unwrap();
    feed::page(&ingest.store, walls, after, upto, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}

fn grids(scopes: &[&str]) -> Walls {
    Walls::Only {
        grids: scopes.iter().map(|s| s.to_string()).collect(),
        firms: Vec::new(),
    }
}

fn firms(firms: &[&str]) -> Walls {
    Walls::Only {
        grids: Vec::new(),
        firms: firms.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_live_and_a_resume_gets_exactly_the_missed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = start_with_register(dir.path(), feed_config()).await;

    // The backlog first: everything the grid head may see, in id order, once.
    let backlog = stored(&ingest, &grids(&["01"]), 0).await;
    assert!(backlog.len() > 10, "the register's overdue devices: {backlog:?}");
    let mut head = api.subscribe("t-head01", None).await;
    let got = head.until(*backlog.last().unwrap()).await;
    assert_eq!(ids(&got), backlog);
    assert!(got.iter().all(|e| e.data["grid"].as_str().unwrap().starts_with("01")));
    assert!(got.iter().any(|e| e.event == "alert.raised"), "{:?}", got[0]);

    // Live: a report opens a case and its event arrives, pushed by the commit.
    let (case, device) = api.open_case(Pick::Area01, 20).await;
    let live = head.until_case(case).await;
    assert_eq!(live.len(), 1, "{live:?}");
    let opened = &live[0];
    assert_eq!(opened.data["device_id"], device.as_str());
    assert_eq!(opened.data["case"]["channel"], "hotline12315");
    assert!(opened.data["at"].as_str().unwrap().ends_with('Z'));
    let seen = opened.id;

    // Gone for a while: cases open meanwhile (some outside the head's grids).
    drop(head);
    let mut opened = Vec::new();
    for _ in 0..6 {
        opened.push(api.open_case(Pick::Any, 20).await.0);
    }
    let missed = stored(&ingest, &grids(&["01"]), seen).await;
    let mut head = api.subscribe("t-head01", Some(seen)).await;
    let (last, _) = api.open_case(Pick::Area01, 20).await;
    let resumed = head.until_case(last).await;
    let mut expected = missed.clone();
    expected.push(resumed.last().unwrap().id);
    assert_eq!(ids(&resumed), expected, "exactly the missed events, then the live one");
    assert!(resumed.iter().all(|e| e.id > seen));
    // `?after=` resumes the same way.
    let resp = api
        .http
        .get(format!("{}/api/feed?after={seen}", api.base))
        .bearer_auth("t-head01")
        .send()
        .await
        .unwrap();
    let mut by_query = Subscriber { resp, buf: Vec::new() };
    assert_eq!(ids(&by_query.until(*expected.last().unwrap()).await), expected);

    // Without a token: 401, like every route; a bad resume point: 400 naming it.
    let resp = api.http.get(format!("{}/api/feed", api.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = api
        .http
        .get(format!("{}/api/feed", api.base))
        .bearer_auth("t-head01")
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("Last-Event-ID"), "{body}");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_an_ingest_restart_gets_what_was_missed() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = start_with_register(dir.path(), feed_config()).await;
    let last = feed::last_id(&ingest.store).await.unwrap();
    let mut sub = api.subscribe("t-registrar", Some(last)).await;
    let (first, _) = api.open_case(Pick::Any, 20).await;
    let seen = sub.until_case(first).await.last().unwrap().id;
    drop(sub);
    // Missed before the stop...
    let (before_stop, _) = api.open_case(Pick::Any, 20).await;
    ingest.stop().await;

    let (ingest, api2) = start(dir.path(), feed_config()).await;
    *api2.pairs.lock().unwrap() = std::mem::take(&mut *api.pairs.lock().unwrap());
    // ...and after the start.
    let (after_start, _) = api2.open_case(Pick::Any, 20).await;
    let missed = stored(&ingest, &grids(&["01", "02"]), seen).await;
    let mut sub = api2.subscribe("t-registrar", Some(seen)).await;
    let (sentinel, _) = api2.open_case(Pick::Any, 20).await;
    let resumed = sub.until_case(sentinel).await;
    let cases: Vec<u64> = resumed
        .iter()
        .filter(|e| e.event == "case.opened")
        .map(|e| e.data["case_id"].as_u64().unwrap())
        .collect();
    assert_eq!(cases, [before_stop, after_start, sentinel]);
    assert_eq!(
        ids(&resumed[..resumed.len() - 1]),
        missed,
        "exactly what was missed, once"
    );
    assert!(resumed.windows(2).all(|w| w[0].id < w[1].id));
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firm_never_gets_another_firms_device_events() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = start_with_register(dir.path(), feed_config()).await;
    let (mut mf04, mut mf01) = (api.subscribe("t-mf04", None).await, api.subscribe("t-mf01", None).await);
    // The backlog: each firm exactly its own rows.
    for (sub, firm) in [(&mut mf04, "MF04"), (&mut mf01, "MF01")] {
        let own = stored(&ingest, &firms(&[firm]), 0).await;
        assert!(!own.is_empty(), "{firm} maintains overdue devices");
        let got = sub.until(*own.last().unwrap()).await;
        assert_eq!(ids(&got), own, "{firm}");
        assert!(got.iter().all(|e| e.data["firm"] == firm), "{firm}");
    }
    // Live: a case on an MF04 lift, then one on an MF01 lift. MF01's stream, in id order,
    // reaches its own case without the other firm's.
    let (theirs, _) = api.open_case(Pick::Firm("MF04"), 20).await;
    let (own, _) = api.open_case(Pick::Firm("MF01"), 20).await;
    let got = mf01.until_case(own).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].data["firm"], "MF01");
    let got = mf04.until_case(theirs).await;
    assert_eq!(got.len(), 1, "{got:?}");
    // The event of MF01's case, which MF04 skipped, lies between: MF04's next is later.
    let (next, _) = api.open_case(Pick::Firm("MF04"), 20).await;
    let got = mf04.until_case(next).await;
    assert_eq!(got.len(), 1, "MF01's case is not in MF04's feed: {got:?}");
    ingest.stop().await;
}

/// Connects to the feed with a receive buffer of a few KiB and never reads.
async fn silent_subscriber(addr: std::net::SocketAddr, token: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET /api/feed HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscriber_is_cut_off_and_counted_while_another_keeps_receiving() {
    let dir = tempfile::tempdir().unwrap();
    let config = gridwatch_ingest::FeedConfig {
        queue_chunks: 4,
        // Room for the reader that keeps up on a busy machine; the silent one is cut off
        // however long it takes.
        slow_after: Duration::from_secs(1),
        ..feed_config()
    };
    let (ingest, api) = start_with_register(dir.path(), config).await;
    let last = feed::last_id(&ingest.store).await.unwrap();
    let mut silent = silent_subscriber(ingest.http_addr, "t-registrar").await;
    // The reader that keeps up, reading all along on a task of its own.
    let mut reader = api.subscribe("t-registrar", Some(last)).await;
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = reader.next().await {
            if got_tx.send(ev).is_err() {
                return;
            }
        }
    });
    eventually("both subscribers to be connected", || async {
        (counter(&api.metrics().await, "gridwatch_feed_subscribers") == 2).then_some(())
    })
    .await;

    // Events of ~4 KB each until the silent one's buffers are full and it is cut off.
    let slow = "gridwatch_feed_disconnects_total{reason=\"slow\"}";
    let mut opened = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while counter(&api.metrics().await, slow) == 0 {
        assert!(Instant::now() < deadline, "the silent subscriber was never cut off");
        for _ in 0..20 {
            opened.push(api.open_case(Pick::Any, 4000).await.0);
        }
    }
    assert_eq!(counter(&api.metrics().await, slow), 1);
    // Its connection is closed: what was sent can be read, then the stream ends, cut
    // (a response that hyper finished would end with the last chunk, `0\r\n\r\n`).
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, silent.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the server closed the silent subscriber's connection");
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"));
    assert!(
        !rest.ends_with(b"\r\n0\r\n\r\n"),
        "the response was cut off, not finished"
    );

    // The other got every event in order, and goes on getting them.
    let (sentinel, _) = api.open_case(Pick::Any, 20).await;
    let mut got = Vec::new();
    while got
        .last()
        .is_none_or(|e: &Ev| !(e.event == "case.opened" && e.data["case_id"] == sentinel))
    {
        got.push(tokio::time::timeout(DEADLINE, got_rx.recv()).await.unwrap().unwrap());
    }
    assert_eq!(ids(&got), stored(&ingest, &grids(&["01", "02"]), last).await);
    let cases: Vec<u64> = got
        .iter()
        .filter(|e| e.event == "case.opened")
        .map(|e| e.data["case_id"].as_u64().unwrap())
        .collect();
    opened.push(sentinel);
    assert_eq!(cases, opened);
    assert_eq!(counter(&api.metrics().await, "gridwatch_feed_subscribers"), 1);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_over_the_limit_gets_503_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = gridwatch_ingest::FeedConfig {
        max_subscribers: 2,
        ..feed_config()
    };
    let (ingest, api) = start(dir.path(), config).await;
    let first = api.subscribe("t-mf04", None).await;
    let _second = api.subscribe("t-mf01", None).await;
    let resp = api
        .http
        .get(format!("{}/api/feed", api.base))
        .bearer_auth("t-head01")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("at most 2"), "{body}");
    assert_eq!(counter(&api.metrics().await, "gridwatch_feed_refused_total"), 1);

    // A subscriber that leaves frees its slot (noticed at the next keep-alive).
    drop(first);
    eventually("a slot to free", || async {
        let resp = api
            .http
            .get(format!("{}/api/feed", api.base))
            .bearer_auth("t-head01")
            .send()
            .await
            .unwrap();
        (resp.status() == StatusCode::OK).then_some(())
    })
    .await;
    let metrics = api.metrics().await;
    assert!(
        counter(&metrics, "gridwatch_feed_disconnects_total{reason=\"closed\"}") >= 1,
        "{metrics}"
    );
    ingest.stop().await;
}

/// Commit-to-delivery latency for 100 subscribers, printed (docs/api.md, "Live feed"):
/// `cargo nextest run --test feed --run-ignored only --no-capture`. Each round opens a case through the API; the latency of
/// a delivery is measured from the moment the report's response arrived (the save
/// committed before it was sent), and from the moment the report was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run on its own"]
async fn commit_to_delivery_latency_for_100_subscribers() {
    const SUBSCRIBERS: usize = 100;
    const ROUNDS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = start_with_register(dir.path(), feed_config()).await;
    let last = feed::last_id(&ingest.store).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    for _ in 0..SUBSCRIBERS {
        let mut sub = api.subscribe("t-registrar", Some(last)).await;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = sub.next().await {
                if ev.event == "case.opened" && tx.send((ev.data["case_id"].as_u64().unwrap(), Instant::now())).is_err()
                {
                    return;
                }
            }
        });
    }
    let (mut after_commit, mut after_send) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let sent = Instant::now();
        let (case, _) = api.open_case(Pick::Any, 20).await;
        let answered = Instant::now();
        let mut delivered = 0;
        while delivered < SUBSCRIBERS {
            let (id, at) = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap();
            assert_eq!(id, case);
            after_commit.push(at.saturating_duration_since(answered));
            after_send.push(at - sent);
            delivered += 1;
        }
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    };
    for (what, v) in [
        (
            "after the report's response (0 when delivered before it)",
            &mut after_commit,
        ),
        ("after the report was sent", &mut after_send),
    ] {
        println!(
            "{SUBSCRIBERS} subscribers x {ROUNDS} events, delivery {what}: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    }
    ingest.stop().await;
}

/// Alert-commit to delivery with 1,000 subscribers while 1,000 events a second are
/// committed, printed (docs/benchmarks.md, "Live feed"):
/// `cargo test --release -p gridwatch --test feed -- --ignored --nocapture thousand`.
/// The events are alert changes (a fault raised and cleared on the register's devices in
/// turn) saved through the domain as the write path saves them, 10 per commit every
/// 10 ms; a delivery's latency runs from the return of its commit to its arrival at a
/// subscriber (each a separate HTTP connection in this process, so the subscribers'
/// own parsing is in the figure).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run on its own"]
async fn thousand_subscribers_at_a_thousand_events_a_second() {
    use gridwatch_alerts::{AlertEvent, AlertKey, AlertKind, Change, Details, Severity};
    const SUBSCRIBERS: usize = 1000;
    const PER_COMMIT: usize = 10;
    const COMMITS: usize = 500; // 5 s at one commit every 10 ms
    let dir = tempfile::tempdir().unwrap();
    let feed_config = gridwatch_ingest::FeedConfig {
        max_subscribers: SUBSCRIBERS + 10,
        queue_chunks: 256,
        ..feed_config()
    };
    let mut config = IngestConfig::embedded(dir.path());
    config.clock = Arc::new(ManualClock::new(NOW));
    config.tick_every = Duration::from_secs(3600);
    config.users = users();
    config.feed = feed_config;
    config.http_limits.max_connections = SUBSCRIBERS + 64;
    // One user opens every subscription, from one address.
    let many = gridwatch_ingest::RateLimit {
        every: Duration::from_micros(100),
        burst: 2 * SUBSCRIBERS as u32,
    };
    config.http_limits.per_user = many;
    config.http_limits.per_address = many;
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let api = Api {
        base: format!("http://{}", ingest.http_addr),
        http: reqwest::Client::new(),
        pairs: std::sync::Mutex::new(Vec::new()),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulators/data/registry-sample.csv");
    let resp = api
        .http
        .post(format!("{}/api/equipment/import", api.base))
        .bearer_auth("t-registrar")
        .header("content-type", "text/csv")
        .body(std::fs::read(&path).unwrap())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let devices: Vec<String> = api
        .equipment("t-registrar")
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    let last = feed::last_id(&ingest.store).await.unwrap();

    // Every subscriber keeps (feed id, arrival) of each event, read off the stream's `id:`
    // lines without parsing the rest (the data's form is tested above), on its own
    // HTTP client so that no connection pool limits them.
    let expected = COMMITS * PER_COMMIT;
    let mut subscribers = tokio::task::JoinSet::new();
    for _ in 0..SUBSCRIBERS {
        let mut resp = reqwest::Client::new()
            .get(format!("{}/api/feed", api.base))
            .bearer_auth("t-registrar")
            .header("Last-Event-ID", last.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        subscribers.spawn(async move {
            let mut seen: Vec<(i64, Instant)> = Vec::with_capacity(expected);
            let mut carry = Vec::new();
            while seen.len() < expected {
                let chunk = tokio::time::timeout(DEADLINE, resp.chunk())
                    .await
                    .expect("events keep coming")
                    .unwrap()
                    .expect("the stream goes on");
                let now = Instant::now();
                carry.extend_from_slice(&chunk);
                let mut from = 0;
                while let Some(n) = carry[from..].iter().position(|b| *b == b'\n') {
                    if let Some(id) = carry[from..from + n].strip_prefix(b"id:") {
                        let id = std::str::from_utf8(id).unwrap().trim().parse::<i64>().unwrap();
                        seen.push((id, now));
                    }
                    from += n + 1;
                }
                carry.drain(..from);
            }
            seen
        });
    }

    let alerting = ingest.alerting().clone();
    let mut open: std::collections::HashMap<String, (u64, u32)> = Default::default();
    let mut committed: Vec<(i64, Instant)> = Vec::with_capacity(COMMITS);
    let mut next = 0usize;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for round in 0..COMMITS {
        tick.tick().await;
        let at = NOW + round as u64;
        let events = (0..PER_COMMIT)
            .map(|_| {
                let device = devices[next % devices.len()].clone();
                next += 1;
                let (change, raised_at, revision) = match open.remove(&device) {
                    Some((raised_at, revision)) => (Change::Cleared, raised_at, revision + 1),
                    None => {
                        open.insert(device.clone(), (at, 0));
                        (Change::Raised, at, 0)
                    }
                };
                AlertEvent {
                    key: AlertKey {
                        device,
                        kind: AlertKind::Fault(900),
                    },
                    change,
                    severity: Severity::Major,
                    raised_at,
                    at,
                    revision,
                    acknowledged_by: None,
                    details: Details::Fault {
                        code: 900,
                        name: "bench".into(),
                    },
                }
            })
            .collect();
        let mut domain = alerting.domain.lock().await;
        alerting
            .save(
                &mut domain,
                gridwatch_domain::Effects {
                    events,
                    ..Default::default()
                },
            )
            .await;
        drop(domain);
        committed.push((*alerting.feed().borrow(), Instant::now()));
    }
    let producing = started.elapsed();
    let last_id = committed.last().unwrap().0;
    // The commit each id belongs to: the first commit whose last id reaches it.
    let commit_of = |id: i64| committed[committed.partition_point(|(last, _)| *last < id)].1;
    let mut latencies = Vec::with_capacity(SUBSCRIBERS * expected);
    while let Some(seen) = subscribers.join_next().await {
        let seen = seen.unwrap();
        assert_eq!(seen.len(), expected, "every event once");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "in commit order");
        assert_eq!(seen.last().unwrap().0, last_id);
        latencies.extend(seen.iter().map(|(id, at)| at.saturating_duration_since(commit_of(*id))));
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{SUBSCRIBERS} subscribers, {} events in {:.1} s ({:.0} events/s, {} per commit): commit to delivery p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        COMMITS * PER_COMMIT,
        producing.as_secs_f64(),
        (COMMITS * PER_COMMIT) as f64 / producing.as_secs_f64(),
        PER_COMMIT,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    ingest.stop().await;
}
