//! The HTTP limits on real sockets (port 0): header and idle timeouts, the connection
//! cap, rate limits, body and request limits, security headers, and the case report
//! bounds. Timeouts are configured small; nothing sleeps to wait, every wait polls
//! with a deadline.
use gridwatch_cases::{Assignment, GridScope, Role, User};
mod common;

use common::{NOW, roomy};
use gridwatch_web::{AppState, HttpLimits, RateLimit, Users};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A passenger lift of grid 010101 in the sample register.
const LIFT: &str = "31103306242009000001";
/// The longest any wait below may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn start(limits: HttpLimits, users: Users) -> Server {
    let (dir, store, alerting) = common::store().await;
    let (addr, state) = common::serve(store, alerting, Arc::new(users), limits).await;
    Server { addr, state, _dir: dir }
}

/// Reads until the server closes the connection, failing after [`DEADLINE`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one whole response head, failing after [`DEADLINE`].
async fn read_head(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(DEADLINE, async {
        while !out.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed before a response");
            out.push(byte[0]);
        }
    })
    .await
    .expect("a response in time");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_header_is_closed_within_the_header_timeout() {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        ..roomy()
    };
    let server = start(limits, Users::open()).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    read_until_closed(&mut slow).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        ..roomy()
    };
    let server = start(limits, Users::open()).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /dashboard.css HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut idle).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("connection: close"), "{head}");
    // Kept alive, then closed for sending nothing more.
    read_until_closed(&mut idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_a_slot_frees() {
    let limits = HttpLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        ..roomy()
    };
    let server = start(limits, Users::open()).await;
    let first = TcpStream::connect(server.addr).await.unwrap();
    let _second = TcpStream::connect(server.addr).await.unwrap();
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /dashboard.css HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "served past the cap: {early:?}");
    drop(first);
    let head = read_head(&mut third).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

fn grid_head(id: &str) -> User {
    User {
        id: id.into(),
        name: id.into(),
        assignments: vec![Assignment::Grid {
            role: Role::GridHead,
            scope: GridScope::parse("01").unwrap(),
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_per_caller_and_recover() {
    let mut users = Users::new();
    users.add("t-a", grid_head("a"));
    users.add("t-b", grid_head("b"));
    let limits = HttpLimits {
        per_user: RateLimit {
            every: Duration::from_millis(200),
            burst: 2,
        },
        per_address: RateLimit {
            every: Duration::from_secs(3600),
            burst: 3,
        },
        ..HttpLimits::default()
    };
    let server = start(limits, users).await;
    let http = reqwest::Client::new();
    let get = |token: Option<&'static str>| {
        let mut request = http.get(format!("http://{}/api/alerts", server.addr));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for _ in 0..2 {
        assert_eq!(get(Some("t-a")).await.unwrap().status(), 200);
    }
    let refused = get(Some("t-a")).await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.headers()["x-content-type-options"], "nosniff");
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("too many requests"), "{body}");

    // Another user has a bucket of their own.
    assert_eq!(get(Some("t-b")).await.unwrap().status(), 200);
    // Callers without a valid token share their address's bucket.
    for _ in 0..3 {
        assert_eq!(get(Some("wrong")).await.unwrap().status(), 401);
    }
    assert_eq!(get(None).await.unwrap().status(), 429);

    // The user's bucket refills.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = get(Some("t-a")).await.unwrap().status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(Instant::now() < deadline, "still limited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_body_is_refused_with_413() {
    let limits = HttpLimits {
        body_bytes: 64 * 1024,
        ..roomy()
    };
    let server = start(limits, Users::open()).await;
    // The server closes a connection after refusing a body it did not read (its rest is
    // still on the wire): no pooled connection, or the next request may meet that close.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = format!("http://{}/api/equipment/import", server.addr);
    let big = http.post(&url).body(vec![b'a'; 100 * 1024]).send().await.unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(big.headers()["x-frame-options"], "DENY");
    // Within the limit it reaches the handler (which wants a user).
    let small = http.post(&url).body(vec![b'a'; 1024]).send().await.unwrap();
    assert_eq!(small.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_never_arrives_times_out_with_408() {
    let limits = HttpLimits {
        request_timeout: Duration::from_millis(300),
        ..roomy()
    };
    let server = start(limits, Users::open()).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"POST /api/equipment/import HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nfirst,bytes")
        .await
        .unwrap();
    let head = read_head(&mut slow).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_the_dashboard_and_the_api() {
    let server = start(roomy(), Users::open()).await;
    let base = format!("http://{}", server.addr);
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("style-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    // Nothing inline: the one script is a file.
    assert!(!html.contains("<style"), "{html}");
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=\"/dashboard.js\" defer></script>").count(),
        "{html}"
    );
    assert!(html.contains("href=\"/dashboard.css\""), "{html}");
    let css = reqwest::get(format!("{base}/dashboard.css")).await.unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");

    let api = reqwest::get(format!("{base}/api/alerts")).await.unwrap();
    assert_eq!(api.status(), 200);
    let csp = api.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'") && !csp.contains("style-src"),
        "{csp}"
    );
    assert_eq!(api.headers()["x-frame-options"], "DENY");
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    assert_eq!(api.headers()["referrer-policy"], "no-referrer");
    // An error answer too.
    let missing = reqwest::get(format!("{base}/api/cases/999")).await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_reports_are_refused_and_a_case_keeps_a_bounded_number() {
    let mut users = Users::new();
    users.add("t-head", grid_head("head"));
    let server = start(roomy(), users).await;
    let csv = include_bytes!("../../simulators/data/registry-sample.csv");
    gridwatch_domain::import_register(&server.state.alerting, csv, NOW)
        .await
        .unwrap();
    let limits = gridwatch_cases::ReportLimits::default();
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/cases", server.addr);
    let report = |description: String| {
        http.post(&url)
            .bearer_auth("t-head")
            .json(&json!({"channel": "hotline12315", "device_id": LIFT, "case_type": "other", "description": description}))
            .send()
    };

    let big = report("长".repeat(limits.description_chars + 1)).await.unwrap();
    assert_eq!(big.status(), 413);
    let e: Value = big.json().await.unwrap();
    let message = e["error"].as_str().unwrap();
    assert!(
        message.contains("description") && message.contains(&limits.description_chars.to_string()),
        "{message}"
    );
    let reporter = http
        .post(&url)
        .bearer_auth("t-head")
        .json(&json!({"channel": "patrol", "device_id": LIFT, "case_type": "other", "description": "x", "reporter": "r".repeat(limits.reporter_chars + 1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(reporter.status(), 413);

    let extra = 5;
    let mut case = 0;
    for i in 0..limits.reports_per_case + extra {
        let ok = report(format!("report {i}: {}", "长".repeat(limits.description_chars - 20)))
            .await
            .unwrap();
        assert_eq!(ok.status(), 201);
        case = ok.json::<Value>().await.unwrap()["case"].as_u64().unwrap();
    }
    let shown: Value = http
        .get(format!("{url}/{case}"))
        .bearer_auth("t-head")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["reports"].as_array().unwrap().len(), limits.reports_per_case);
    assert_eq!(shown["case"]["extra_reports"], extra as u64);
}
