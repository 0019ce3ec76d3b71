//! Walls on every write and on every list, through the HTTP API of a real ingest
//! (SQLite, port 0, virtual time): who may record inspections and maintenance and
//! with which dates, which part of the register a grid head may replace, and alert
//! and case lists that apply the caller's walls before their page limit.
use gridwatch_alerts::{AlertEvent, AlertKey, AlertKind, Change, Details, Severity};
use gridwatch_cases::{Assignment, GridScope, Role, User};
use gridwatch_ingest::{Ingest, IngestConfig, Users};
use gridwatch_protocol::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// 2026-11-25 10:00 China time: the date of the sample register.
const NOW: u64 = 1_795_572_000_000;
/// A passenger lift of grid 010101 maintained by firm MF04, installed 2009.
const LIFT: &str = "31103306242009000001";
/// 2099-01-01T00:00:00Z.
const Y2099: u64 = 4_070_908_800_000;

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
    users.add(
        "t-registrar",
        grid_user("registrar", &[(Role::GridHead, "01"), (Role::GridHead, "02")]),
    );
    users.add("t-head01", grid_user("head01", &[(Role::GridHead, "01")]));
    users.add("t-head02", grid_user("head02", &[(Role::GridHead, "02")]));
    users.add("t-officer", grid_user("officer", &[(Role::InformationOfficer, "0101")]));
    users.add("t-inspector", grid_user("inspector", &[(Role::Inspector, "010101")]));
    let firm = |firm: &str| User {
        id: format!("firm-{firm}"),
        name: firm.into(),
        assignments: vec![Assignment::Firm { firm: firm.into() }],
    };
    users.add("t-mf04", firm("MF04"));
    users.add("t-mf01", firm("MF01"));
    users
}

fn sample() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulators/data/registry-sample.csv");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The header and the rows of the sample whose grid starts with `area`.
fn rows_of(area: &str) -> (String, Vec<String>) {
    let text = sample();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let grid = header.split(',').position(|c| c == "网格编码").unwrap();
    let rows = lines
        .filter(|l| l.split(',').nth(grid).is_some_and(|g| g.starts_with(area)))
        .map(str::to_string)
        .collect();
    (header, rows)
}

fn csv(header: &str, rows: &[String]) -> String {
    let mut out = format!("{header}\n");
    for row in rows {
        out.push_str(row);
        out.push('\n');
    }
    out
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn get(&self, token: &str, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)).bearer_auth(token))
            .await
    }
    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self
            .send(
                self.http
                    .post(format!("{}{path}", self.base))
                    .bearer_auth(token)
                    .json(&body),
            )
            .await;
        (status, body)
    }
    async fn import(&self, token: &str, query: &str, body: String) -> (StatusCode, Value) {
        let url = format!("{}/api/equipment/import{query}", self.base);
        let (status, _, body) = self.send(self.http.post(url).bearer_auth(token).body(body)).await;
        (status, body)
    }
    /// Every page of a list, following `x-next-cursor`: the rows of each page.
    async fn pages(&self, token: &str, path: &str, limit: usize) -> Vec<Vec<Value>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut pages = Vec::new();
        let mut after = String::new();
        loop {
            let (status, headers, body) = self
                .get(token, &format!("{path}{sep}limit={limit}&after={after}"))
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
    async fn devices(&self, token: &str) -> BTreeSet<String> {
        let (_, _, body) = self.get(token, "/api/equipment?limit=1000").await;
        body.as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Ingest on virtual time with the users above and the sample register imported.
async fn start(dir: &Path) -> (Ingest, Api) {
    let mut config = IngestConfig::embedded(dir);
    config.clock = Arc::new(ManualClock::new(NOW));
    config.tick_every = Duration::from_secs(3600);
    config.users = users();
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let api = Api {
        base: format!("http://{}", ingest.http_addr),
        http: reqwest::Client::new(),
    };
    let (status, summary) = api.import("t-registrar", "", sample()).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["devices"], 362);
    (ingest, api)
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, contains: &str) {
    assert_eq!(status, expected, "{body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("the shared error shape: {body}"));
    assert!(message.contains(contains), "{message:?} should say {contains:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_follow_the_roles_and_the_inspection_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = start(dir.path()).await;
    let inspections = format!("/api/equipment/{LIFT}/inspections");
    let maintenance = format!("/api/equipment/{LIFT}/maintenance");
    let far = json!({"date": "2026-11-25", "next_due": "2099-01-01"});

    // The lift's own firm may not clear its overdue inspection with a date of its choosing.
    let (status, body) = api.post("t-mf04", &inspections, far.clone()).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "inspector");
    // An information officer sees the lift but may record neither.
    let (status, body) = api.post("t-officer", &inspections, far.clone()).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "inspection");
    let (status, body) = api.post("t-officer", &maintenance, json!({"date": "2026-11-25"})).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "maintenance");
    // Another firm does not see the lift at all.
    let (status, body) = api.post("t-mf01", &maintenance, json!({"date": "2026-11-25"})).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "no device");

    // The inspector may, within the schedule: the lift is 17 years old, inspected yearly.
    let (status, body) = api.post("t-inspector", &inspections, far).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "allowed range 2026-11-26 to 2027-11-25",
    );
    let (status, body) = api
        .post(
            "t-inspector",
            &inspections,
            json!({"date": "2026-11-26", "next_due": "2027-11-20"}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "in the future");
    let (status, body) = api
        .post(
            "t-inspector",
            &inspections,
            json!({"date": "2026-11-25", "next_due": "2027-11-25"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["device"]["next_inspection_due"], "2027-11-25");

    // Maintenance: the lift's own firm, dated today at the latest.
    let (status, body) = api.post("t-mf04", &maintenance, json!({"date": "2026-11-26"})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "in the future");
    let (status, body) = api.post("t-mf04", &maintenance, json!({"date": "2026-11-25"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["device"]["last_maintenance"], "2026-11-25");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_head_replaces_only_their_area_and_mass_removals_need_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = start(dir.path()).await;
    let (header, area01) = rows_of("01");
    let (_, area02) = rows_of("02");
    let before02 = api.devices("t-head02").await;
    assert_eq!(before02.len(), area02.len());

    // The area-01 head's own export replaces area 01 and leaves area 02 alone.
    let (status, summary) = api.import("t-head01", "", csv(&header, &area01)).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["devices"], 362, "{summary}");
    assert_eq!(summary["removed"], 0);
    assert_eq!(summary["kept_outside_scope"], area02.len());
    assert_eq!(api.devices("t-head02").await, before02);

    // A row of area 02 in their file is refused, naming the line and the column.
    let mut mixed = area01.clone();
    mixed.push(area02[0].clone());
    let (status, body) = api.import("t-head01", "", csv(&header, &mixed)).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "bad row");
    assert_eq!(body["details"][0]["line"], mixed.len() as u64 + 1, "{body}");
    assert_eq!(body["details"][0]["column"], "网格编码");

    // Three rows for an area of 177 devices would remove 174: only when confirmed.
    let few = csv(&header, &area01[..3]);
    let removals = area01.len() - 3;
    let (status, body) = api.import("t-head01", "", few.clone()).await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        &format!("remove {removals} of the {}", area01.len()),
    );
    assert_eq!(body["details"]["removals"], removals);
    assert_eq!(api.devices("t-head01").await.len(), area01.len(), "nothing changed");
    let (status, body) = api
        .import("t-head01", &format!("?confirm_removals={}", removals - 1), few.clone())
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, summary) = api
        .import("t-head01", &format!("?confirm_removals={removals}"), few)
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["removed"], removals);
    assert_eq!(api.devices("t-head01").await.len(), 3);
    assert_eq!(api.devices("t-head02").await, before02, "area 02 untouched");

    // Empty files are refused, whoever sends them.
    for empty in [format!("{header}\n"), String::new()] {
        let (status, body) = api.import("t-registrar", "", empty).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "device row");
    }
    assert_eq!(api.devices("t-head02").await, before02);
    ingest.stop().await;
}

fn far_future_alert(device: &str, i: u64) -> AlertEvent {
    AlertEvent {
        key: AlertKey {
            device: device.into(),
            kind: AlertKind::Fault(7),
        },
        change: Change::Raised,
        severity: Severity::Major,
        raised_at: Y2099 + i,
        at: Y2099 + i,
        revision: 0,
        acknowledged_by: None,
        details: Details::Fault {
            code: 7,
            name: "safety circuit open".into(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_wall_before_their_limit_and_pages_hold_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, api) = start(dir.path()).await;
    let head01 = api.pages("t-head01", "/api/alerts", 1000).await.concat();
    let mf04 = api.pages("t-mf04", "/api/alerts", 1000).await.concat();
    assert!(
        !head01.is_empty() && !mf04.is_empty(),
        "the register has overdue devices"
    );

    // 1,000 alerts of devices outside the register, stamped 2099, stored after them.
    let fake: Vec<AlertEvent> = (0..1000)
        .map(|i| far_future_alert(&format!("fake-{i:04}"), i))
        .collect();
    let changes = gridwatch_storage::domain::DomainChanges {
        events: &fake,
        ..Default::default()
    };
    gridwatch_storage::domain::save(&ingest.store, &changes).await.unwrap();

    for (token, before) in [("t-head01", &head01), ("t-mf04", &mf04)] {
        let (status, headers, first) = api.get(token, "/api/alerts?limit=1000").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(first.as_array().unwrap(), before, "{token}: the same open alerts");
        assert!(headers.get("x-next-cursor").is_none(), "{token}: one page holds them");
        // Every page size gives every alert once, in arrival order.
        for limit in [1, 7, 50] {
            let pages = api.pages(token, "/api/alerts", limit).await;
            assert!(pages[..pages.len() - 1].iter().all(|p| p.len() == limit));
            let ids: Vec<i64> = pages.concat().iter().map(|a| a["id"].as_i64().unwrap()).collect();
            let expected: Vec<i64> = before.iter().map(|a| a["id"].as_i64().unwrap()).collect();
            assert_eq!(ids, expected, "{token}, limit {limit}");
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
        }
    }
    // The firm sees its own devices' alerts only.
    let own = api.devices("t-mf04").await;
    assert!(mf04.iter().all(|a| own.contains(a["device_id"].as_str().unwrap())));

    // Cases: the same paging, walls first. Reports on devices of both areas, interleaved.
    let (area01, area02) = (api.devices("t-head01").await, api.devices("t-head02").await);
    for (a, b) in area01.iter().zip(&area02).take(6) {
        for device in [a, b] {
            let report =
                json!({"channel": "hotline12315", "device_id": device, "case_type": "other", "description": "noise"});
            let (status, body) = api.post("t-registrar", "/api/cases", report).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    let cases = api.pages("t-head01", "/api/cases", 1000).await.concat();
    assert!(cases.len() >= 6, "{cases:?}");
    assert!(cases.iter().all(|c| c["grid"].as_str().unwrap().starts_with("01")));
    let ids = |rows: &[Value]| rows.iter().map(|c| c["id"].as_u64().unwrap()).collect::<Vec<_>>();
    for limit in [1, 3] {
        let paged = api.pages("t-head01", "/api/cases", limit).await.concat();
        assert_eq!(ids(&paged), ids(&cases), "limit {limit}");
    }
    assert!(ids(&cases).windows(2).all(|w| w[0] < w[1]));
    let firm_cases = api.pages("t-mf04", "/api/cases", 1000).await.concat();
    assert_eq!(
        ids(&api.pages("t-mf04", "/api/cases", 2).await.concat()),
        ids(&firm_cases)
    );

    // Bounded pages, said so.
    let (status, _, body) = api.get("t-head01", "/api/alerts?limit=1001").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "1 to 1000");
    let (status, _, body) = api.get("t-head01", "/api/cases?after=x").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "after=");
    ingest.stop().await;
}
