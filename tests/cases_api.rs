//! The grid case system through the HTTP API, on a real ingest service (embedded
//! broker, SQLite, port 0) and virtual time: register import, alerts from
//! telemetry opening cases, merging, the closed loop with its role checks and
//! audit trail, escalation, statistics, tenant walls and a restart.
use gridwatch_cases::{Assignment, GridScope, Role, User};
use gridwatch_ingest::{Ingest, IngestConfig, Users};
use gridwatch_protocol::clock::ManualClock;
use reqwest::StatusCode;
use rumqttc::{AsyncClient, QoS};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// 2026-11-25 10:00 China time: the date of the sample register.
const NOW: u64 = 1_795_572_000_000;
/// A passenger lift of grid 010101 maintained by firm MF04 (first row of the sample).
const LIFT: &str = "31103306242009000001";
/// Another MF04 lift in the same grid.
const LIFT2: &str = "31103306242025000002";

fn grid_user(id: &str, roles: &[(Role, &str)]) -> User {
    let assignments = roles
        .iter()
        .map(|(role, scope)| Assignment::Grid {
            role: *role,
            scope: GridScope::parse(scope).unwrap(),
        })
        .collect();
    User {
        id: id.into(),
        name: id.into(),
        assignments,
    }
}

fn users() -> Users {
    let mut users = Users::new();
    users.add("t-head", grid_user("head", &[(Role::GridHead, "01")]));
    // Imports the whole sample register, which spans areas 01 and 02.
    users.add(
        "t-registrar",
        grid_user("registrar", &[(Role::GridHead, "01"), (Role::GridHead, "02")]),
    );
    users.add("t-officer", grid_user("officer", &[(Role::InformationOfficer, "0101")]));
    users.add("t-inspector", grid_user("inspector", &[(Role::Inspector, "010101")]));
    users.add(
        "t-admin",
        grid_user(
            "admin",
            &[(Role::GridAdministrator, "0101"), (Role::Supervisor, "0101")],
        ),
    );
    users.add("t-supervisor", grid_user("supervisor", &[(Role::Supervisor, "0101")]));
    let firm = |firm: &str| User {
        id: format!("firm-{firm}"),
        name: firm.into(),
        assignments: vec![Assignment::Firm { firm: firm.into() }],
    };
    users.add("t-mf04", firm("MF04"));
    users.add("t-mf01", firm("MF01"));
    users
}

async fn start(dir: &Path, clock: &ManualClock) -> Ingest {
    let mut config = IngestConfig::embedded(dir);
    config.clock = Arc::new(clock.clone());
    config.tick_every = Duration::from_secs(3600);
    config.users = users();
    gridwatch_ingest::start(config).await.unwrap()
}

/// Ingest with the sample register imported through the API.
async fn start_with_register(dir: &Path, clock: &ManualClock) -> (Ingest, Api) {
    let ingest = start(dir, clock).await;
    let api = Api {
        base: format!("http://{}", ingest.http_addr),
        http: reqwest::Client::new(),
    };
    let resp = api
        .http
        .post(format!("{}/api/equipment/import", api.base))
        .bearer_auth("t-registrar");
    assert!(resp.body(sample_register()).send().await.unwrap().status().is_success());
    (ingest, api)
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(token, reqwest::Method::GET, path, None).await
    }
    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(token, reqwest::Method::POST, path, Some(body)).await
    }
}

async fn poll<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sample_register() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulators/data/registry-sample.csv");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn node(ingest: &Ingest, id: &str) -> AsyncClient {
    let options = gridwatch_mqtt::client_options(&ingest.mqtt_addr.into(), id);
    let (client, mut events) = AsyncClient::new(options, 100);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    client
}

/// A lift status as a smart node publishes it straight to ingest.
fn trapped_status(device: &str, seq: u64, ts: u64) -> (String, Vec<u8>) {
    let body = json!({"v":1,"device":device,"seq":seq,"ts":ts,"body":{"mode":"normal","motion":"stopped","door":"closed",
        "door_zone":true,"floor":3,"occupied":true,"alarm":false,"fault":0,"power":"mains","runs":10,"door_cycles":20}});
    (
        format!("gw/direct/dev/{device}/lift"),
        serde_json::to_vec(&body).unwrap(),
    )
}

async fn trap(client: &AsyncClient, device: &str, from: u64) {
    for (seq, ts) in [(1, from), (2, from + 50_000), (3, from + 100_000)] {
        let (topic, payload) = trapped_status(device, seq, ts);
        client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    }
}

async fn case_of(api: &Api, device: &str) -> Value {
    poll("a case for the device", async || {
        let (_, cases) = api.get("t-head", "/api/cases").await;
        cases.as_array()?.iter().find(|c| c["subject"]["id"] == device).cloned()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_alert_case_closed_loop_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let ingest = start(dir.path(), &clock).await;
    let api = Api {
        base: format!("http://{}", ingest.http_addr),
        http: reqwest::Client::new(),
    };

    // The register: grid heads only; a bad file is refused naming line and column.
    let csv = sample_register();
    let (status, _) = api
        .call("t-officer", reqwest::Method::POST, "/api/equipment/import", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let resp = api
        .http
        .post(format!("{}/api/equipment/import", api.base))
        .bearer_auth("t-registrar");
    let bad = "设备类别,设备品种\n电梯,飞行器\n";
    let refused: Value = resp
        .try_clone()
        .unwrap()
        .body(bad)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(refused["details"][0]["line"].as_u64().is_some(), "{refused}");
    let summary: Value = resp.body(csv).send().await.unwrap().json().await.unwrap();
    assert_eq!(summary["devices"], 362, "{summary}");
    assert_eq!(summary["lifts"], 278);

    // Due dates were evaluated at once: the register has lifts past their inspection date.
    let (_, alerts) = api.get("t-head", "/api/alerts").await;
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "inspection_overdue"),
        "{alerts}"
    );

    // A trapped passenger opens an urgent case at once.
    let client = node(&ingest, "smart-node").await;
    trap(&client, LIFT, NOW).await;
    let case = case_of(&api, LIFT).await;
    assert_eq!(case["case_type"], "trapped_passenger");
    assert_eq!(case["priority"], "urgent");
    let id = case["id"].as_u64().unwrap();
    // The alert came at device second 100; people act a little later.
    clock.set(NOW + 120_000);

    // The 96333 hotline calls about the same lift: the same case, not a second one.
    let report = json!({"channel":"hotline96333","device_id":LIFT,"case_type":"trapped_passenger","description":"caller stuck in lift"});
    let (status, intake) = api.post("t-officer", "/api/cases", report).await;
    assert_eq!(status, StatusCode::CREATED, "{intake}");
    assert_eq!(intake, json!({"outcome":"merged","case":id}));

    // The closed loop, in order, each step by its roles.
    let step = |step: &str, note: &str| json!({"step": step, "note": note});
    let path = format!("/api/cases/{id}/steps");
    let (status, e) = api.post("t-supervisor", &path, step("review", "too early")).await;
    assert_eq!(status, StatusCode::CONFLICT, "no step can be skipped: {e}");
    let (status, e) = api.post("t-mf04", &path, step("accept", "")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a firm does not accept cases: {e}");
    let (status, e) = api.post("t-officer", &path, step("accept", "dispatched")).await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    let (status, _) = api.post("t-inspector", &path, step("verify", "no evidence")).await;
    assert_eq!(status, StatusCode::CONFLICT, "verification needs evidence");
    let verify =
        json!({"step":"verify","note":"on site","evidence":[{"kind":"photo","reference":"file://evidence/1.jpg"}]});
    assert_eq!(api.post("t-inspector", &path, verify).await.0, StatusCode::CREATED);
    assert_eq!(
        api.post("t-admin", &path, step("handle", "passenger released")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        api.post("t-admin", &path, step("feedback", "door relay replaced"))
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, e) = api.post("t-admin", &path, step("review", "I checked myself")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the handler may not review: {e}");
    assert!(e["error"].as_str().unwrap().contains("reviewer"), "{e}");
    assert_eq!(
        api.post("t-supervisor", &path, step("review", "confirmed")).await.0,
        StatusCode::CREATED
    );
    let (_, shown) = api.get("t-head", &format!("/api/cases/{id}")).await;
    assert_eq!(shown["status"], "closed");
    assert_eq!(shown["records"].as_array().unwrap().len(), 5);
    assert_eq!(shown["reports"].as_array().unwrap().len(), 2);

    // The audit record is in the database and cannot be rewritten.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("gridwatch.db").display()))
        .await
        .unwrap();
    let steps: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM case_steps WHERE case_id = $1")
        .bind(id as i64)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(steps, 5);
    assert!(
        sqlx::query("UPDATE case_steps SET actor = 'someone else'")
            .execute(&db)
            .await
            .is_err()
    );
    assert!(sqlx::query("DELETE FROM case_steps").execute(&db).await.is_err());

    // Tenant walls: another firm sees none of this; MF04 sees its lift.
    let (_, theirs) = api.get("t-mf01", "/api/cases").await;
    assert!(!theirs.as_array().unwrap().iter().any(|c| c["id"] == id), "{theirs}");
    let (_, theirs) = api.get("t-mf01", "/api/alerts?state=all").await;
    assert!(!theirs.as_array().unwrap().iter().any(|a| a["device_id"] == LIFT));
    let (_, ours) = api.get("t-mf04", "/api/cases").await;
    assert!(ours.as_array().unwrap().iter().any(|c| c["id"] == id));
    assert_eq!(api.get("nobody", "/api/cases").await.0, StatusCode::UNAUTHORIZED);

    // Statistics, as JSON and CSV.
    let (_, rows) = api.get("t-head", "/api/stats/cases").await;
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["case_type"] == "trapped_passenger" && r["status"] == "closed")
    );
    let (status, csv) = api.get("t-head", "/api/stats/devices-due?format=csv").await;
    assert_eq!(status, StatusCode::OK);
    assert!(csv.as_str().unwrap().starts_with("grid,"), "{csv}");
    assert_eq!(api.get("t-head", "/api/stats/nonsense").await.0, StatusCode::NOT_FOUND);

    // A restart keeps alerts and cases, and a full redelivery changes nothing.
    let (_, before) = api.get("t-head", "/api/alerts?state=all").await;
    ingest.stop().await;
    let ingest = start(dir.path(), &clock).await;
    let api = Api {
        base: format!("http://{}", ingest.http_addr),
        http: reqwest::Client::new(),
    };
    let (_, after) = api.get("t-head", "/api/alerts?state=all").await;
    assert_eq!(before, after);
    let client = node(&ingest, "smart-node-2").await;
    trap(&client, LIFT, NOW).await;
    poll("the redelivery to be stored", async || {
        (ingest.store.reading_count().await.ok()? >= 3).then_some(())
    })
    .await;
    ingest.tick().await;
    let (_, again) = api.get("t-head", "/api/alerts?state=all").await;
    assert_eq!(before, again, "a redelivered stream raises nothing new");
    let (_, shown) = api.get("t-head", &format!("/api/cases/{id}")).await;
    assert_eq!(shown["status"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_trapped_passenger_escalates_on_virtual_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let (ingest, api) = start_with_register(dir.path(), &clock).await;

    let client = node(&ingest, "smart-node").await;
    trap(&client, LIFT2, NOW).await;
    let id = case_of(&api, LIFT2).await["id"].as_u64().unwrap();
    let (_, shown) = api.get("t-head", &format!("/api/cases/{id}")).await;
    assert!(shown["escalations"].as_array().unwrap().is_empty());

    // Nobody accepts it: ten minutes later the acknowledgement deadline has passed.
    clock.advance(10 * 60_000);
    ingest.tick().await;
    let (_, shown) = api.get("t-head", &format!("/api/cases/{id}")).await;
    let escalations = shown["escalations"].as_array().unwrap();
    assert!(!escalations.is_empty(), "{shown}");
    // Ticking again escalates nothing twice.
    ingest.tick().await;
    let (_, again) = api.get("t-head", &format!("/api/cases/{id}")).await;
    assert_eq!(again["escalations"], shown["escalations"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inspection_record_clears_an_overdue_inspection_alert() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let (_ingest, api) = start_with_register(dir.path(), &clock).await;

    let (_, alerts) = api.get("t-head", "/api/alerts").await;
    let overdue = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "inspection_overdue")
        .expect("an overdue lift")
        .clone();
    let device = overdue["device_id"].as_str().unwrap();
    let path = format!("/api/equipment/{device}/inspections");
    let (status, e) = api
        .post("t-head", &path, json!({"date":"2026-11-25","next_due":"2026-11-01"}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "next due must follow the inspection: {e}"
    );
    let (status, e) = api
        .post("t-head", &path, json!({"date":"2026-11-25","next_due":"2027-11-25"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    assert_eq!(e["device"]["next_inspection_due"], "2027-11-25");

    let (_, all) = api.get("t-head", "/api/alerts?state=all").await;
    let same = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == overdue["id"])
        .unwrap();
    assert_eq!(same["state"], "cleared", "{same}");
    assert_eq!(
        api.post("t-mf01", &path, json!({"date":"2026-11-25","next_due":"2027-11-25"}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

const MIN: u64 = 60_000;

async fn escalations(api: &Api, id: u64) -> Vec<Value> {
    let (_, shown) = api.get("t-head", &format!("/api/cases/{id}")).await;
    shown["escalations"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_episode_arriving_25_minutes_late_is_late_and_gets_the_full_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let (ingest, api) = start_with_register(dir.path(), &clock).await;

    // The node was offline: its trapped episode of device time NOW reaches ingest 25 minutes later.
    clock.set(NOW + 25 * MIN);
    let client = node(&ingest, "replaying-node").await;
    trap(&client, LIFT2, NOW).await;
    let case = case_of(&api, LIFT2).await;
    let id = case["id"].as_u64().unwrap();
    assert_eq!(case["late"], true, "{case}");
    assert_eq!(case["known_at_ms"], NOW + 25 * MIN, "known on ingest's clock");
    let raised = case["opened_at_ms"].as_u64().unwrap();
    assert!((NOW..=NOW + 100_000).contains(&raised), "opened at device time: {case}");

    // Nothing escalates on arrival: the firm has 5 minutes from when it could know.
    ingest.tick().await;
    assert!(escalations(&api, id).await.is_empty());
    let (_, shown) = api.get("t-head", &format!("/api/cases/{id}")).await;
    assert_eq!(shown["deadlines"][0]["due_at_ms"], NOW + 30 * MIN, "{shown}");
    clock.set(NOW + 30 * MIN - 1_000);
    ingest.tick().await;
    assert!(escalations(&api, id).await.is_empty());
    clock.set(NOW + 30 * MIN);
    ingest.tick().await;
    let escalated = escalations(&api, id).await;
    assert_eq!(escalated.len(), 1);
    assert_eq!(escalated[0]["level"], "grid_head");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firm_acknowledging_in_3_minutes_and_arriving_in_25_stops_the_rescue_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let (ingest, api) = start_with_register(dir.path(), &clock).await;
    let client = node(&ingest, "smart-node").await;
    trap(&client, LIFT2, NOW).await;
    let id = case_of(&api, LIFT2).await["id"].as_u64().unwrap();

    // The firm's own alert acknowledgement acknowledges the case too.
    clock.set(NOW + 3 * MIN);
    let ack = json!({"device_id": LIFT2, "kind": "trapped_passenger"});
    let (status, e) = api.post("t-mf04", "/api/alerts/ack", ack).await;
    assert_eq!(status, StatusCode::OK, "{e}");
    let (_, shown) = api.get("t-head", &format!("/api/cases/{id}")).await;
    let responses = shown["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 1, "{shown}");
    assert_eq!(
        (&responses[0]["response"], &responses[0]["actor"], &responses[0]["role"]),
        (&json!("acknowledged"), &json!("firm-MF04"), &json!("maintenance_firm"))
    );
    assert_eq!(responses[0]["at_ms"], NOW + 3 * MIN);
    clock.set(NOW + 6 * MIN);
    ingest.tick().await;
    assert!(escalations(&api, id).await.is_empty());

    // Arrival: the maintaining firm only (and grid administrators); once.
    clock.set(NOW + 25 * MIN);
    let arrival = format!("/api/cases/{id}/arrival");
    let (status, _) = api.post("t-mf01", &arrival, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another firm does not see the case");
    let (status, e) = api.post("t-supervisor", &arrival, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{e}");
    let (status, e) = api
        .post("t-mf04", &arrival, json!({"note": "car moved to floor 3"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    assert_eq!(
        (&e["response"], &e["at_ms"]),
        (&json!("arrived_on_site"), &json!(NOW + 25 * MIN))
    );
    let (status, e) = api.post("t-mf04", &arrival, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    clock.set(NOW + 120 * MIN);
    ingest.tick().await;
    assert!(escalations(&api, id).await.is_empty());

    // The loop stays with the grid: the firm still cannot accept.
    let step = json!({"step": "accept"});
    assert_eq!(
        api.post("t-mf04", &format!("/api/cases/{id}/steps"), step).await.0,
        StatusCode::FORBIDDEN
    );
    // The responses are in the database, append-only.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("gridwatch.db").display()))
        .await
        .unwrap();
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT response, actor FROM case_responses WHERE case_id = $1 ORDER BY n")
            .bind(id as i64)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        stored,
        [
            ("acknowledged".to_string(), "firm-MF04".to_string()),
            ("arrived_on_site".to_string(), "firm-MF04".to_string())
        ]
    );
    assert!(sqlx::query("DELETE FROM case_responses").execute(&db).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firm_resolving_in_20_minutes_meets_both_deadlines_and_the_loop_stays_with_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let (ingest, api) = start_with_register(dir.path(), &clock).await;
    let client = node(&ingest, "smart-node").await;
    trap(&client, LIFT2, NOW).await;
    let id = case_of(&api, LIFT2).await["id"].as_u64().unwrap();

    // Resolution: the maintaining firm only (and grid administrators); once.
    clock.set(NOW + 4 * MIN);
    let resolution = format!("/api/cases/{id}/resolution");
    let (status, _) = api.post("t-mf01", &resolution, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another firm does not see the case");
    let (status, e) = api.post("t-supervisor", &resolution, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{e}");
    let (status, e) = api
        .post(
            "t-mf04",
            &resolution,
            json!({"note": "passenger freed, door contact replaced"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    assert_eq!(
        (&e["response"], &e["at_ms"]),
        (&json!("resolved"), &json!(NOW + 4 * MIN))
    );
    let (status, e) = api.post("t-mf04", &resolution, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");

    // It answers the acceptance and the rescue deadline: nothing escalates.
    clock.set(NOW + 120 * MIN);
    ingest.tick().await;
    assert!(escalations(&api, id).await.is_empty());
    let (_, shown) = api.get("t-head", &format!("/api/cases/{id}")).await;
    let met: Vec<_> = shown["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["done_at_ms"].clone())
        .collect();
    assert_eq!(met, [json!(NOW + 4 * MIN), json!(NOW + 4 * MIN)], "{shown}");
    // The grid still accepts, handles, checks and closes the case.
    assert_eq!(shown["status"], "reported", "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firm_acknowledging_in_7_minutes_escalates_and_oversized_steps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let (ingest, api) = start_with_register(dir.path(), &clock).await;
    let client = node(&ingest, "smart-node").await;
    trap(&client, LIFT2, NOW).await;
    let id = case_of(&api, LIFT2).await["id"].as_u64().unwrap();

    clock.set(NOW + 7 * MIN);
    let path = format!("/api/cases/{id}/acknowledgement");
    let (status, e) = api.post("t-mf04", &path, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    ingest.tick().await;
    let escalated = escalations(&api, id).await;
    assert_eq!(escalated.len(), 1);
    assert_eq!(
        (&escalated[0]["level"], &escalated[0]["step"]),
        (&json!("grid_head"), &json!("accept"))
    );

    // Notes and evidence are bounded: the error names the field and the limit.
    let steps = format!("/api/cases/{id}/steps");
    let long = json!({"step": "accept", "note": "x".repeat(4_001)});
    let (status, e) = api.post("t-officer", &steps, long).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(e["error"], "field note: 4001 characters, at most 4000");
    let many = json!({"step": "accept", "evidence": vec![json!({"kind":"photo","reference":"p"}); 21]});
    let (status, e) = api.post("t-officer", &steps, many).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(e["error"], "field evidence: 21 items, at most 20");
    let (_, shown) = api.get("t-head", &format!("/api/cases/{id}")).await;
    assert!(
        shown["records"].as_array().unwrap().is_empty(),
        "nothing recorded: {shown}"
    );
}
