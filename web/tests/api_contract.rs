//! The HTTP API's contract on a real server (port 0) with the sample register: the OpenAPI
//! document lists every route the router serves, every error answers in the one JSON
//! shape with its status and code, every `*_ms` time has its RFC 3339 sibling, every answer
//! has a concrete schema and the real answers validate against it, and the lists page
//! with cursors.
use gridwatch_cases::{Assignment, GridScope, Role, User};
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::{DeviceId, Door, Envelope, LiftStatus};
use gridwatch_storage::model::{Accepted, Refused};
mod common;

use common::{NOW, roomy};
use gridwatch_web::{AppState, HttpLimits, RateLimit, Users};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A passenger lift of grid 010101 in the sample register, maintained by MF04.
const LIFT: &str = "31103306242009000001";
const HEAD: &str = "t-head";
const INSPECTOR: &str = "t-inspector";
/// Staff of MF04, the lift's maintenance firm.
const FIRM: &str = "t-mf04";
/// The longest any wait below may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

struct Server {
    base: String,
    addr: SocketAddr,
    _state: AppState,
    _dir: tempfile::TempDir,
}

fn user(id: &str, role: Role, scope: &str) -> User {
    User {
        id: id.into(),
        name: id.into(),
        assignments: vec![Assignment::Grid {
            role,
            scope: GridScope::parse(scope).unwrap(),
        }],
    }
}

/// LIFT at rest on floor 2 with its door as given, reported through gateway gw-1.
fn lift_reading(seq: u64, ts: u64, door: Door) -> Accepted {
    let status = Envelope::new(
        DeviceId::try_from(LIFT).unwrap(),
        seq,
        ts,
        LiftStatus {
            door,
            ..LiftStatus::at_rest(2)
        },
    );
    Accepted {
        gateway: "gw-1".into(),
        reading: Reading::Lift(status),
    }
}

/// A server with the sample register, a grid head over area 01 and an inspector of grid
/// 010101.
async fn start(limits: HttpLimits) -> Server {
    let (dir, store, alerting) = common::store().await;
    let csv = include_bytes!("../../simulators/data/registry-sample.csv");
    gridwatch_domain::import_register(&alerting, csv, NOW).await.unwrap();
    // One lift has reported; one message was refused.
    let reading = lift_reading(1, NOW - 60_000, Door::Closed);
    let refused = Refused {
        source: "gridwatch/v1/gw-1/batch".into(),
        reason: "malformed",
        detail: "not JSON".into(),
        payload: b"{".to_vec(),
    };
    store.commit(&[reading], &[refused]).await.unwrap();
    let mut users = Users::new();
    users.add(HEAD, user("head", Role::GridHead, "01"));
    users.add(INSPECTOR, user("inspector", Role::Inspector, "010101"));
    users.add(
        FIRM,
        User {
            id: "mf04".into(),
            name: "mf04".into(),
            assignments: vec![Assignment::Firm { firm: "MF04".into() }],
        },
    );
    let (addr, state) = common::serve(store, alerting, Arc::new(users), limits).await;
    Server {
        base: format!("http://{addr}"),
        addr,
        _state: state,
        _dir: dir,
    }
}

/// Checks an error answer: its status, its code, and the one shape.
async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "{}", response.url());
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(!body["error"].as_str().unwrap_or_default().is_empty(), "{body}");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| ["error", "code", "details"].contains(&k.as_str())),
        "{body}"
    );
    body
}

async fn document(server: &Server) -> Value {
    // No token: the document is public.
    let answer = reqwest::get(format!("{}/api/openapi.json", server.base)).await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

/// The documented operations as (method, path template).
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                out.push((method.clone(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_with_the_bearer_scheme_and_error_answers() {
    let server = start(roomy()).await;
    let doc = document(&server).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let ops = operations(&doc);
    assert!(ops.len() >= 26, "{ops:?}");
    let mut ids: Vec<&str> = ops
        .iter()
        .map(|(method, path)| doc["paths"][path][method]["operationId"].as_str().unwrap())
        .collect();
    ids.sort();
    let all = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), all, "operation ids are unique: {ids:?}");
    for (method, path) in &ops {
        let op = &doc["paths"][path][method];
        let answers = op["responses"].as_object().unwrap();
        assert!(
            answers.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success answer"
        );
        for status in ["408", "413", "429", "500"] {
            assert!(answers.contains_key(status), "{method} {path}: no {status}");
        }
        let public = op["security"] == json!([{}]);
        assert_eq!(answers.contains_key("401"), !public, "{method} {path}");
        // Path parameters are declared.
        for name in path.split('{').skip(1).map(|s| s.split('}').next().unwrap()) {
            let declared = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
            assert!(declared, "{method} {path}: parameter {name} not declared");
        }
    }
    for public in [
        "/metrics",
        "/healthz",
        "/healthz/live",
        "/healthz/ready",
        "/api/openapi.json",
    ] {
        assert_eq!(doc["paths"][public]["get"]["security"], json!([{}]), "{public}");
    }
}

/// Every documented operation reaches a handler: the router serves what the document
/// lists. (The other way round is by construction: routes are registered only through
/// `routes!`, which needs the handler's documentation, and clippy refuses `.route`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    let server = start(roomy()).await;
    let doc = document(&server).await;
    let http = reqwest::Client::new();
    for (method, path) in operations(&doc) {
        let url = format!(
            "{}{}",
            server.base,
            path.replace("{id}", "1")
                .replace("{name}", "cases")
                .replace("{delivery}", "1")
        );
        let request = match method.as_str() {
            "get" => http.get(&url),
            "post" => http.post(&url),
            "put" => http.put(&url),
            "delete" => http.delete(&url),
            other => panic!("{other} {path}: a method the test does not know"),
        };
        let answer = request.bearer_auth(HEAD).send().await.unwrap();
        let status = answer.status().as_u16();
        assert_ne!(status, 405, "{method} {path}: documented, not served");
        if status == 404 {
            let body: Value = answer.json().await.unwrap();
            let message = body["error"].as_str().unwrap();
            assert!(
                !message.starts_with("no route"),
                "{method} {path}: documented, not served: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answers_in_the_one_shape() {
    let server = start(roomy()).await;
    let http = reqwest::Client::new();
    let base = &server.base;

    let unknown = http
        .get(format!("{base}/api/nothing"))
        .bearer_auth(HEAD)
        .send()
        .await
        .unwrap();
    let body = assert_error(unknown, 404, "not_found").await;
    assert!(body["error"].as_str().unwrap().contains("/api/openapi.json"), "{body}");
    let method = http
        .delete(format!("{base}/api/alerts"))
        .bearer_auth(HEAD)
        .send()
        .await
        .unwrap();
    assert_error(method, 405, "method_not_allowed").await;
    let no_token = http.get(format!("{base}/api/alerts")).send().await.unwrap();
    assert_error(no_token, 401, "unauthorized").await;
    let bad_token = http
        .get(format!("{base}/api/alerts"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_error(bad_token, 401, "unauthorized").await;
    let forbidden = http
        .get(format!("{base}/api/quarantine"))
        .bearer_auth(INSPECTOR)
        .send()
        .await
        .unwrap();
    assert_error(forbidden, 403, "forbidden").await;
    let no_case = http
        .get(format!("{base}/api/cases/999"))
        .bearer_auth(HEAD)
        .send()
        .await
        .unwrap();
    assert_error(no_case, 404, "not_found").await;
    let bad_limit = http
        .get(format!("{base}/api/alerts?limit=0"))
        .bearer_auth(HEAD)
        .send()
        .await
        .unwrap();
    assert_error(bad_limit, 400, "bad_request").await;

    // axum's extractors: path, query, body.
    let bad_path = http
        .get(format!("{base}/api/cases/abc"))
        .bearer_auth(HEAD)
        .send()
        .await
        .unwrap();
    assert_error(bad_path, 400, "invalid_path").await;
    let bad_query = http
        .post(format!("{base}/api/equipment/import?confirm_removals=many"))
        .bearer_auth(HEAD)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(bad_query, 400, "invalid_query").await;
    let cases = format!("{base}/api/cases");
    let not_json = http
        .post(&cases)
        .bearer_auth(HEAD)
        .header("content-type", "application/json")
        .body("{\"channel\":")
        .send()
        .await
        .unwrap();
    assert_error(not_json, 400, "invalid_body").await;
    let wrong_shape = http
        .post(&cases)
        .bearer_auth(HEAD)
        .json(&json!({"channel": "fax"}))
        .send()
        .await
        .unwrap();
    let body = assert_error(wrong_shape, 422, "invalid_body").await;
    assert!(body["error"].as_str().unwrap().contains("channel"), "{body}");
    let no_type = http.post(&cases).bearer_auth(HEAD).body("{}").send().await.unwrap();
    assert_error(no_type, 415, "unsupported_media_type").await;

    // The handlers' own refusals.
    let unregistered = http
        .post(&cases)
        .bearer_auth(HEAD)
        .json(&json!({"channel": "patrol", "device_id": "31103306242009999999", "case_type": "other", "description": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(unregistered, 422, "unprocessable").await;
    let too_long = http
        .post(&cases)
        .bearer_auth(HEAD)
        .json(&json!({"channel": "patrol", "device_id": LIFT, "case_type": "other", "description": "长".repeat(5000)}))
        .send()
        .await
        .unwrap();
    assert_error(too_long, 413, "payload_too_large").await;
    let opened = http
        .post(&cases)
        .bearer_auth(HEAD)
        .json(&json!({"channel": "patrol", "device_id": LIFT, "case_type": "other", "description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 201);
    let id = opened.json::<Value>().await.unwrap()["case"].as_u64().unwrap();
    // Review before the case was accepted: out of order.
    let early = http
        .post(format!("{base}/api/cases/{id}/steps"))
        .bearer_auth(HEAD)
        .json(&json!({"step": "review", "note": "x"}))
        .send()
        .await
        .unwrap();
    let status = early.status().as_u16();
    assert_error(early, status, if status == 409 { "conflict" } else { "forbidden" }).await;
    assert!([403, 409].contains(&status), "{status}");
    let removal = http
        .post(format!("{base}/api/equipment/import"))
        .bearer_auth(HEAD)
        .body(
            include_str!("../../simulators/data/registry-sample.csv")
                .lines()
                .take(2)
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .send()
        .await
        .unwrap();
    let body = assert_error(removal, 409, "conflict").await;
    assert!(body["details"]["removals"].as_u64().unwrap() > 0, "{body}");

    // Each answer is counted by its code, and the metric is described.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("# HELP gridwatch_http_errors_total"), "{metrics}");
    for code in ["not_found", "method_not_allowed", "invalid_body", "conflict"] {
        assert!(
            metrics.contains(&format!("gridwatch_http_errors_total{{code=\"{code}\"}}")),
            "{code}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layers_answer_in_the_one_shape() {
    let limits = HttpLimits {
        body_bytes: 1024,
        request_timeout: Duration::from_millis(300),
        per_address: RateLimit {
            every: Duration::from_secs(3600),
            burst: 20,
        },
        ..roomy()
    };
    let server = start(limits).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let big = http
        .post(format!("{}/api/equipment/import", server.base))
        .bearer_auth(HEAD)
        .body(vec![b'a'; 4096])
        .send()
        .await
        .unwrap();
    let body = assert_error(big, 413, "payload_too_large").await;
    assert!(body["error"].as_str().unwrap().contains("1024"), "{body}");

    // A body that never arrives: 408 in the shape, read off the socket.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(
        format!("POST /api/equipment/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {HEAD}\r\nContent-Length: 1000\r\n\r\nfirst")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, slow.read_to_end(&mut out))
        .await
        .expect("an answer in time");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");

    // Without a token, the address's bucket runs out: 429.
    let mut refused = None;
    for _ in 0..40 {
        let answer = http.get(format!("{}/healthz", server.base)).send().await.unwrap();
        if answer.status() == 429 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a 429 within 40 requests");
    assert!(refused.headers().contains_key("retry-after"));
    assert_error(refused, 429, "rate_limited").await;
}

/// Every key `X_ms` in `value` has a sibling `X` in RFC 3339, and no time is a bare
/// number; `path` names where.
fn check_times(value: &Value, path: &str, missing: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if let Some(stem) = key.strip_suffix("_ms")
                    && !inner.is_null()
                {
                    let sibling = map.get(stem).and_then(Value::as_str);
                    let ok = sibling.is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok());
                    if !ok {
                        missing.push(format!("{path}.{key}"));
                    }
                }
                // A bare number under a time's name is a time without its pair.
                let timeish = key.ends_with("_at") || key == "at" || key == "ts";
                if timeish && inner.is_number() {
                    missing.push(format!("{path}.{key} (a bare number)"));
                }
                if key.ends_with("_at") && inner.is_string() && !map.contains_key(&format!("{key}_ms")) {
                    missing.push(format!("{path}.{key} (no {key}_ms)"));
                }
                check_times(inner, &format!("{path}.{key}"), missing);
            }
        }
        Value::Array(items) => {
            for item in items.iter().take(20) {
                check_times(item, &format!("{path}[]"), missing);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ms_time_has_its_rfc3339_sibling() {
    let server = start(roomy()).await;
    let http = reqwest::Client::new();
    let base = &server.base;
    let mut answers: Vec<(String, Value)> = Vec::new();
    let opened = http
        .post(format!("{base}/api/cases"))
        .bearer_auth(HEAD)
        .json(&json!({"channel": "patrol", "device_id": LIFT, "case_type": "other", "description": "x"}))
        .send()
        .await
        .unwrap();
    let opened: Value = opened.json().await.unwrap();
    let id = opened["case"].as_u64().unwrap();
    answers.push(("POST /api/cases".into(), opened));
    let accepted = http
        .post(format!("{base}/api/cases/{id}/steps"))
        .bearer_auth(HEAD)
        .json(&json!({"step": "accept", "note": "taken"}))
        .send()
        .await
        .unwrap();
    answers.push(("POST steps".into(), accepted.json().await.unwrap()));
    let alerts: Value = http
        .get(format!("{base}/api/alerts?state=all"))
        .bearer_auth(HEAD)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!alerts.as_array().unwrap().is_empty(), "the register raises due alerts");
    let first_alert = alerts[0].clone();
    answers.push(("GET /api/alerts".into(), alerts));
    let ack = http
        .post(format!("{base}/api/alerts/ack"))
        .bearer_auth(HEAD)
        .json(&json!({"device_id": first_alert["device_id"], "kind": first_alert["kind"]}))
        .send()
        .await
        .unwrap();
    answers.push(("POST /api/alerts/ack".into(), ack.json().await.unwrap()));
    let paths = [
        "/api/cases".to_string(),
        format!("/api/cases/{id}"),
        "/api/devices".into(),
        "/api/equipment".into(),
        "/api/quarantine".into(),
        format!("/api/devices/{LIFT}/events"),
        format!("/api/devices/{LIFT}/history"),
        "/api/stats/cases".into(),
        "/api/stats/overdue".into(),
        "/api/stats/timings".into(),
        "/api/stats/devices-due".into(),
        "/api/stats/ranking".into(),
        "/healthz/ready".into(),
    ];
    for path in paths {
        let answer = http
            .get(format!("{base}{path}"))
            .bearer_auth(HEAD)
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success() || path == "/healthz/ready",
            "{path}: {}",
            answer.status()
        );
        answers.push((format!("GET {path}"), answer.json().await.unwrap()));
    }
    let mut missing = Vec::new();
    let mut times = 0;
    for (what, body) in &answers {
        check_times(body, what, &mut missing);
        times += body.to_string().matches("_ms\"").count();
    }
    assert!(missing.is_empty(), "without an RFC 3339 sibling: {missing:#?}");
    assert!(times > 10, "the walk saw {times} times: too few to mean anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_lists_the_register_with_health_in_pages() {
    let server = start(roomy()).await;
    let http = reqwest::Client::new();
    let get = |url: String, token: &'static str| http.get(url).bearer_auth(token).send();
    let equipment: Vec<Value> = get(format!("{}/api/equipment?limit=1000", server.base), HEAD)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Follow the cursors, 7 a page: every registered device the head sees, once, in order.
    let mut seen: Vec<Value> = Vec::new();
    let mut url = format!("{}/api/devices?limit=7", server.base);
    loop {
        let answer = get(url.clone(), HEAD).await.unwrap();
        assert_eq!(answer.status(), 200);
        let next = answer
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Vec<Value> = answer.json().await.unwrap();
        assert!(page.len() <= 7);
        seen.extend(page);
        match next {
            Some(cursor) => url = format!("{}/api/devices?limit=7&after={cursor}", server.base),
            None => break,
        }
        assert!(seen.len() <= equipment.len(), "the cursors loop");
    }
    let ids: Vec<&str> = seen.iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "in device id order, each once");
    assert_eq!(ids.len(), equipment.len(), "every registered device, reporting or not");
    let known = [
        "ok",
        "fault",
        "trapped",
        "offline",
        "inspection_overdue",
        "maintenance_overdue",
        "due_soon",
        "never_reported",
    ];
    for device in &seen {
        assert!(known.contains(&device["health"].as_str().unwrap()), "{device}");
        assert_eq!(device["registered"], true);
    }
    // Nothing reported: never_reported unless something worse is due.
    assert!(seen.iter().any(|d| d["health"] == "never_reported"), "{seen:?}");
    // A device with an open alert shows it, and its health is that alert's or worse.
    let alerts: Vec<Value> = get(format!("{}/api/alerts?limit=1000", server.base), HEAD)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order = [
        "trapped",
        "fault",
        "offline",
        "inspection_overdue",
        "maintenance_overdue",
        "never_reported",
        "due_soon",
        "ok",
    ];
    let rank = |h: &str| order.iter().position(|o| *o == h).unwrap();
    let mut checked = 0;
    for alert in &alerts {
        let kind = alert["kind"].as_str().unwrap();
        let Some(health) = ["inspection_overdue", "maintenance_overdue"]
            .into_iter()
            .find(|h| *h == kind)
        else {
            continue;
        };
        let device = seen.iter().find(|d| d["device_id"] == alert["device_id"]).unwrap();
        assert!(
            device["open_alerts"].as_array().unwrap().contains(&alert["kind"]),
            "{device}"
        );
        assert!(rank(device["health"].as_str().unwrap()) <= rank(health), "{device}");
        checked += 1;
    }
    assert!(
        checked > 0,
        "the sample register has overdue devices on its date: {alerts:?}"
    );
    let lift = seen.iter().find(|d| d["device_id"] == LIFT).unwrap();
    assert_ne!(lift["health"], "never_reported", "{lift}");
    assert_eq!(lift["last_seen_ms"], NOW - 60_000, "{lift}");
    assert_eq!(lift["last_state"]["floor"], 2, "{lift}");
    // Walls: the inspector of grid 010101 sees only that grid's devices.
    let theirs: Vec<Value> = get(format!("{}/api/devices?limit=1000", server.base), INSPECTOR)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!theirs.is_empty() && theirs.len() < seen.len());
    assert!(theirs.iter().all(|d| d["grid"] == "010101"), "{theirs:?}");
    // The register pages too.
    let first = get(format!("{}/api/equipment?limit=2", server.base), HEAD)
        .await
        .unwrap();
    assert!(first.headers().contains_key("x-next-cursor"));
    assert_eq!(first.json::<Vec<Value>>().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_page_by_position_in_json_and_csv() {
    let server = start(roomy()).await;
    let http = reqwest::Client::new();
    let whole: Vec<Value> = http
        .get(format!("{}/api/stats/devices-due?limit=1000", server.base))
        .bearer_auth(HEAD)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(whole.len() > 1, "{whole:?}");
    let mut paged: Vec<Value> = Vec::new();
    let mut url = format!("{}/api/stats/devices-due?limit=1", server.base);
    loop {
        let answer = http.get(&url).bearer_auth(HEAD).send().await.unwrap();
        let next = answer
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_string());
        let link = answer.headers().get("link").map(|v| v.to_str().unwrap().to_string());
        paged.extend(answer.json::<Vec<Value>>().await.unwrap());
        match (next, link) {
            (Some(_), Some(link)) => {
                let path = link.trim_start_matches('<').split('>').next().unwrap().to_string();
                url = format!("{}{path}", server.base);
            }
            (None, None) => break,
            other => panic!("a cursor without its link or the other way: {other:?}"),
        }
        assert!(paged.len() <= whole.len(), "the cursors loop");
    }
    assert_eq!(paged, whole);
    let csv = http
        .get(format!("{}/api/stats/devices-due?format=csv&limit=1", server.base))
        .bearer_auth(HEAD)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["x-next-cursor"], "1");
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(csv.text().await.unwrap().lines().count(), 2, "a header and one row");
}

/// Where a schema of the document gives no type: a bare object (no properties, no `$ref`,
/// no `additionalProperties`), an array without `items`, or no type at all. A free-form
/// object is meant only where it says so with `additionalProperties`.
fn untyped(schema: &Value, at: &str, out: &mut Vec<String>) {
    let Some(map) = schema.as_object() else { return };
    if map.contains_key("$ref") {
        return;
    }
    let composed = ["oneOf", "anyOf", "allOf"]
        .iter()
        .filter_map(|k| map.get(*k).and_then(Value::as_array))
        .collect::<Vec<_>>();
    for (i, inner) in composed.iter().flat_map(|items| items.iter()).enumerate() {
        untyped(inner, &format!("{at}/of{i}"), out);
    }
    let types: Vec<&str> = match map.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.is_empty() && composed.is_empty() && !map.contains_key("enum") && !map.contains_key("const") {
        out.push(format!("{at}: no type"));
    }
    if types.contains(&"object") {
        let properties = map.get("properties").and_then(Value::as_object);
        match (properties, map.get("additionalProperties")) {
            (None, None) => out.push(format!("{at}: an object without properties")),
            (None, Some(Value::Bool(false))) => out.push(format!("{at}: an object that can hold nothing")),
            _ => {}
        }
        for (name, inner) in properties.into_iter().flatten() {
            untyped(inner, &format!("{at}/{name}"), out);
        }
        if let Some(extra @ Value::Object(_)) = map.get("additionalProperties") {
            untyped(extra, &format!("{at}/*"), out);
        }
    }
    if types.contains(&"array") {
        match map.get("items") {
            Some(items) => untyped(items, &format!("{at}[]"), out),
            None => out.push(format!("{at}: an array without items")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_has_a_concrete_schema() {
    let server = start(roomy()).await;
    let doc = document(&server).await;
    let mut out = Vec::new();
    let mut answers = 0;
    for (method, path) in operations(&doc) {
        for (status, answer) in doc["paths"][&path][&method]["responses"].as_object().unwrap() {
            let Some(content) = answer["content"].as_object() else {
                continue;
            };
            for (media, body) in content {
                if media != "application/json" {
                    continue;
                }
                answers += 1;
                match body.get("schema") {
                    Some(schema) => untyped(schema, &format!("{method} {path} {status}"), &mut out),
                    None => out.push(format!("{method} {path} {status}: JSON without a schema")),
                }
            }
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        untyped(schema, &format!("#/components/schemas/{name}"), &mut out);
    }
    assert!(answers > 100, "{answers} JSON answers: the walk missed the document");
    assert!(out.is_empty(), "schemas without a type: {out:#?}");
    // The walk tells a bare object from a free-form one that says so.
    let mut bare = Vec::new();
    untyped(&json!({"type": "object"}), "bare", &mut bare);
    untyped(&json!({"type": "array"}), "list", &mut bare);
    untyped(&json!({"description": "anything"}), "any", &mut bare);
    assert_eq!(bare.len(), 3, "{bare:?}");
    let mut free = Vec::new();
    untyped(
        &json!({"type": "object", "additionalProperties": true}),
        "free",
        &mut free,
    );
    assert!(free.is_empty(), "{free:?}");
}

/// Checks `body` against the document's schema for the answer `status` of `method path`.
fn check_against(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let errors = violations(doc, method, path, status, body);
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:#?}\nbody: {body:#}"
    );
}

/// Where `body` breaks the document's schema for the answer `status` of `method path`,
/// strictly: a field the schema does not name breaks it too (`unevaluatedProperties`).
fn violations(doc: &Value, method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path} {status}: not in the document");
    // JSON Schema 2020-12 with the components as $defs, so the refs resolve in the one resource.
    let rebased = |v: &Value| -> Value {
        serde_json::from_str(&v.to_string().replace("\"#/components/schemas/", "\"#/$defs/")).unwrap()
    };
    let mut root = rebased(schema);
    let mut defs = rebased(&doc["components"]["schemas"]);
    strict(&mut root);
    strict(&mut defs);
    let root_map = root.as_object_mut().unwrap();
    root_map.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    root_map.insert("$defs".into(), defs);
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{method} {path} {status}: the schema does not compile: {e}"));
    validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(10)
        .collect()
}

/// Every object schema that names its properties allows no others.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for inner in map.values_mut() {
                strict(inner);
            }
            if map.get("properties").is_some_and(Value::is_object) && !map.contains_key("additionalProperties") {
                map.insert("unevaluatedProperties".into(), Value::Bool(false));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

/// Sends `request` and gives its status and JSON body.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answers_validate_against_their_schemas() {
    let server = start(roomy()).await;
    // The lift opens its door: a `door_opened` event for the events list.
    let reading = lift_reading(2, NOW - 30_000, Door::Open);
    server._state.store.commit(&[reading], &[]).await.unwrap();
    let doc = document(&server).await;
    let http = reqwest::Client::new();
    let base = &server.base;
    let mut checked = Vec::new();
    let mut check = |method: &str, path: &str, status: u16, body: &Value| {
        check_against(&doc, method, path, status, body);
        checked.push(format!("{method} {path} {status}"));
    };

    // Writes first, so the lists below have something in them; their answers are checked too.
    let (status, opened) = answer(
        http.post(format!("{base}/api/cases"))
            .bearer_auth(HEAD)
            .json(&json!({"channel": "patrol", "device_id": LIFT, "case_type": "other", "description": "x"})),
    )
    .await;
    assert_eq!(status, 201, "{opened}");
    check("post", "/api/cases", 201, &opened);
    let id = opened["case"].as_u64().unwrap();
    let (status, step) = answer(
        http.post(format!("{base}/api/cases/{id}/steps"))
            .bearer_auth(HEAD)
            .json(&json!({"step": "accept", "note": "taken", "evidence": [{"kind": "photo", "reference": "p-1"}]})),
    )
    .await;
    assert_eq!(status, 201, "{step}");
    check("post", "/api/cases/{id}/steps", 201, &step);
    let (status, acknowledged) = answer(
        http.post(format!("{base}/api/cases/{id}/acknowledgement"))
            .bearer_auth(FIRM)
            .json(&json!({"note": "on our way"})),
    )
    .await;
    assert_eq!(status, 201, "{acknowledged}");
    check("post", "/api/cases/{id}/acknowledgement", 201, &acknowledged);
    let (status, arrived) = answer(http.post(format!("{base}/api/cases/{id}/arrival")).bearer_auth(FIRM)).await;
    assert_eq!(status, 201, "{arrived}");
    check("post", "/api/cases/{id}/arrival", 201, &arrived);
    let (_, alerts) = answer(http.get(format!("{base}/api/alerts?state=all")).bearer_auth(HEAD)).await;
    let first = alerts
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .expect("the register raises due alerts");
    let (status, ack) = answer(
        http.post(format!("{base}/api/alerts/ack"))
            .bearer_auth(HEAD)
            .json(&json!({"device_id": first["device_id"], "kind": first["kind"]})),
    )
    .await;
    assert_eq!(status, 200, "{ack}");
    check("post", "/api/alerts/ack", 200, &ack);
    let (status, inspected) = answer(
        http.post(format!("{base}/api/equipment/{LIFT}/inspections"))
            .bearer_auth(INSPECTOR)
            .json(&json!({"date": "2026-11-25", "next_due": "2027-11-24"})),
    )
    .await;
    assert_eq!(status, 201, "{inspected}");
    check("post", "/api/equipment/{id}/inspections", 201, &inspected);
    let (status, maintained) = answer(
        http.post(format!("{base}/api/equipment/{LIFT}/maintenance"))
            .bearer_auth(FIRM)
            .json(&json!({"date": "2026-11-24"})),
    )
    .await;
    assert_eq!(status, 201, "{maintained}");
    check("post", "/api/equipment/{id}/maintenance", 201, &maintained);
    let unit = &inspected["device"]["unit"];
    let (status, scheduled) = answer(http.put(format!("{base}/api/units/schedule")).bearer_auth(INSPECTOR).json(
        &json!({"unit": unit, "schedule": {"meal_periods": [{"name": "lunch", "start": "11:00", "end": "13:00"}], "operating_days": [1, 2, 3, 4, 5], "opens": "08:00", "closes": "20:00"}}),
    ))
    .await;
    assert_eq!(status, 200, "{scheduled}");
    check("put", "/api/units/schedule", 200, &scheduled);
    let (status, endpoint) = answer(
        http.post(format!("{base}/api/webhooks"))
            .bearer_auth(FIRM)
            .json(&json!({"url": "http://127.0.0.1:9/hooks"})),
    )
    .await;
    assert_eq!(status, 201, "{endpoint}");
    assert!(
        endpoint["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")),
        "{endpoint}"
    );
    check("post", "/api/webhooks", 201, &endpoint);
    let hook = endpoint["id"].as_i64().unwrap();

    // Every list and detail, as the head and the firm see them.
    let gets = [
        ("/api/alerts", "/api/alerts?state=all".to_string(), HEAD),
        ("/api/cases", "/api/cases".into(), HEAD),
        ("/api/cases/{id}", format!("/api/cases/{id}"), HEAD),
        ("/api/devices", "/api/devices".into(), HEAD),
        ("/api/equipment", "/api/equipment".into(), HEAD),
        ("/api/quarantine", "/api/quarantine".into(), HEAD),
        ("/api/devices/{id}/events", format!("/api/devices/{LIFT}/events"), HEAD),
        (
            "/api/devices/{id}/history",
            format!("/api/devices/{LIFT}/history"),
            HEAD,
        ),
        ("/api/stats/{name}", "/api/stats/cases".into(), HEAD),
        ("/api/stats/{name}", "/api/stats/overdue".into(), HEAD),
        ("/api/stats/{name}", "/api/stats/timings".into(), HEAD),
        ("/api/stats/{name}", "/api/stats/devices-due".into(), HEAD),
        ("/api/stats/{name}", "/api/stats/ranking".into(), HEAD),
        ("/api/webhooks", "/api/webhooks".into(), FIRM),
        (
            "/api/webhooks/{id}/deliveries",
            format!("/api/webhooks/{hook}/deliveries"),
            FIRM,
        ),
        ("/healthz/ready", "/healthz/ready".into(), HEAD),
        ("/api/openapi.json", "/api/openapi.json".into(), HEAD),
    ];
    for (template, url, token) in gets {
        let (status, body) = answer(http.get(format!("{base}{url}")).bearer_auth(token)).await;
        assert!((200..300).contains(&status), "{url}: {status} {body}");
        let empty = body.as_array().is_some_and(Vec::is_empty);
        // A list checked empty checks nothing of its rows.
        let may_be_empty = ["/api/webhooks/{id}/deliveries", "/api/stats/{name}"].contains(&template);
        assert!(!empty || may_be_empty, "{url}: an empty list");
        check("get", template, status, &body);
    }
    assert!(checked.len() >= 25, "{checked:?}");

    // The import last: the head's part of the register (area 01) replaced with itself.
    let csv = include_str!("../../simulators/data/registry-sample.csv");
    let ours: Vec<&str> = csv
        .lines()
        .enumerate()
        .filter(|(i, line)| *i == 0 || line.split(',').nth(9).is_some_and(|grid| grid.starts_with("01")))
        .map(|(_, line)| line)
        .collect();
    let (status, summary) = answer(
        http.post(format!("{base}/api/equipment/import"))
            .bearer_auth(HEAD)
            .body(ours.join("\n")),
    )
    .await;
    assert_eq!(status, 200, "{summary}");
    check_against(&doc, "post", "/api/equipment/import", 200, &summary);

    // Errors: the one shape, by the document's schema for each.
    let (status, missing) = answer(http.get(format!("{base}/api/cases/999")).bearer_auth(HEAD)).await;
    assert_eq!(status, 404);
    check_against(&doc, "get", "/api/cases/{id}", 404, &missing);
    // The whole register has rows outside the head's area: each refused in `details`.
    let (status, refused) = answer(
        http.post(format!("{base}/api/equipment/import"))
            .bearer_auth(HEAD)
            .body(csv),
    )
    .await;
    assert_eq!(status, 422);
    assert!(refused["details"].is_array(), "{}", refused["error"]);
    check_against(&doc, "post", "/api/equipment/import", 422, &refused);
    let few = csv.lines().take(2).collect::<Vec<_>>().join("\n");
    let (status, unconfirmed) = answer(
        http.post(format!("{base}/api/equipment/import"))
            .bearer_auth(HEAD)
            .body(few),
    )
    .await;
    assert_eq!(status, 409, "{unconfirmed}");
    assert!(unconfirmed["details"].is_object(), "{unconfirmed}");
    check_against(&doc, "post", "/api/equipment/import", 409, &unconfirmed);
    let (status, wrong) = answer(
        http.post(format!("{base}/api/cases"))
            .bearer_auth(HEAD)
            .json(&json!({"channel": "fax"})),
    )
    .await;
    assert_eq!(status, 422);
    check_against(&doc, "post", "/api/cases", 422, &wrong);

    // A body that breaks its schema is caught: the check is not vacuous.
    let mut broken = opened.clone();
    broken["case"] = json!("one");
    assert!(
        !violations(&doc, "post", "/api/cases", 201, &broken).is_empty(),
        "a wrong type passed"
    );
    let mut extra = missing.clone();
    extra["hint"] = json!("x");
    assert!(
        !violations(&doc, "get", "/api/cases/{id}", 404, &extra).is_empty(),
        "a field the schema does not name passed"
    );
}
