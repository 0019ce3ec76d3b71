//! How long the dashboard's pages take on the server with a large register: 10,000
//! devices (the sample register's rows repeated with new registration codes), three
//! readings from every lift and a day of readings every 5 minutes from one, sent through
//! ingest, and 10 million older readings (1,000 a device over the 40 days before)
//! written straight into the database; signed in as a grid head who sees them all. Prints p50 and p99 of `/`, a device page and `/stats`
//! (docs/benchmarks.md, "Dashboard"). Ignored by default: it measures, it does not check.
//!
//! `cargo nextest run --cargo-profile release -p gridwatch --test dashboard_bench --run-ignored only --no-capture`
use gridwatch_cases::{Assignment, GridScope, Role, User};
use gridwatch_ingest::{IngestConfig, Users};
use gridwatch_protocol::clock::ManualClock;
use rumqttc::{AsyncClient, QoS};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 2026-11-25 10:00 China time: the date of the sample register.
const NOW: u64 = 1_795_572_000_000;
const DEVICES: usize = 10_000;
const REQUESTS: usize = 100;
/// Readings written straight into the database before the ones sent through ingest
/// (`GRIDWATCH_BENCH_READINGS` overrides).
const HISTORY: u64 = 10_000_000;
/// Seqs of the readings sent through ingest start here: above the history's.
const LIVE_SEQ: u64 = 1_000_000;

/// The sample register's rows repeated to `n` devices, each with a code of its own (the
/// row's code with its last six digits replaced by the row number).
fn register(n: usize) -> String {
    let sample =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("simulators/data/registry-sample.csv"))
            .unwrap();
    let mut lines = sample.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    let mut out = format!("{header}\n");
    for i in 0..n {
        let mut fields: Vec<String> = rows[i % rows.len()].split(',').map(str::to_string).collect();
        let code = &fields[2];
        fields[2] = format!("{}{i:06}", &code[..code.len() - 6]);
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

fn status(device: &str, seq: u64, ts: u64, floor: u64) -> Vec<u8> {
    let body = json!({"v":1,"device":device,"seq":seq,"ts":ts,"body":{"mode":"normal","motion":"stopped","door":"closed",
        "door_zone":true,"floor":floor,"occupied":false,"alarm":false,"fault":0,"power":"mains","runs":seq * 3,"door_cycles":seq * 5}});
    serde_json::to_vec(&body).unwrap()
}

/// `total` readings spread evenly over `devices` (id, kind), every device's in the 40 days
/// before `NOW - 2 days`, in one transaction on a connection of its own.
async fn seed_history(db: &Path, devices: &[(String, &str)], total: u64) -> u64 {
    use sqlx::Connection;
    let per_device = (total / devices.len() as u64).max(1);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("PRAGMA synchronous = OFF")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("CREATE TEMP TABLE bench_devices (id TEXT PRIMARY KEY, kind TEXT NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut sorted = devices.to_vec();
    sorted.sort();
    for chunk in sorted.chunks(400) {
        let values = vec!["(?, ?)"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO bench_devices (id, kind) VALUES {values}");
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, kind) in chunk {
            insert = insert.bind(id).bind(*kind);
        }
        insert.execute(&mut conn).await.unwrap();
    }
    let step_ms = 40 * 86_400_000 / per_device;
    let first_ts = NOW - 42 * 86_400_000;
    let body = String::from_utf8(status("x", 1, first_ts, 1)).unwrap();
    let started = Instant::now();
    let mut tx = conn.begin().await.unwrap();
    // CROSS JOIN keeps the devices outside: rows arrive in key order.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 - 1) \
         INSERT INTO readings_settled (device_id, seq, ts, kind, gateway, body, received_at) \
         SELECT d.id, n.i + 1, ?2 + n.i * ?3, d.kind, 'direct', ?4, ?2 + n.i * ?3 \
         FROM bench_devices d CROSS JOIN n",
    )
    .bind(per_device as i64)
    .bind(first_ts as i64)
    .bind(step_ms as i64)
    .bind(body)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let written = per_device * devices.len() as u64;
    println!(
        "history: {written} readings written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    written
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --run-ignored only --no-capture"]
async fn dashboard_pages_with_ten_thousand_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut users = Users::new();
    let head = User {
        id: "head".into(),
        name: "head".into(),
        assignments: ["01", "02"]
            .iter()
            .map(|s| Assignment::Grid {
                role: Role::GridHead,
                scope: GridScope::parse(s).unwrap(),
            })
            .collect(),
    };
    users.add("t-head", head);
    let mut config = IngestConfig::embedded(dir.path());
    config.clock = Arc::new(ManualClock::new(NOW));
    config.tick_every = Duration::from_secs(3600);
    config.users = users;
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let base = format!("http://{}", ingest.http_addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let csv = register(DEVICES);
    let summary: serde_json::Value = http
        .post(format!("{base}/api/equipment/import"))
        .bearer_auth("t-head")
        .body(csv.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["devices"], DEVICES, "{summary}");
    let everyone: Vec<(String, &str)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let kind = if l.starts_with("电梯") { "lift" } else { "sterilizer" };
            (l.split(',').nth(2).unwrap().to_string(), kind)
        })
        .collect();
    let history = std::env::var("GRIDWATCH_BENCH_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(HISTORY);
    let seeded = seed_history(&dir.path().join("gridwatch.db"), &everyone, history).await;
    let lifts: Vec<String> = csv
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("电梯"))
        .map(|l| l.split(',').nth(2).unwrap().to_string())
        .collect();

    // Three readings from every lift, and a day every 5 minutes from the one measured.
    let options = gridwatch_mqtt::client_options(&ingest.mqtt_addr.into(), "bench-node");
    let (client, mut events) = AsyncClient::new(options, 10_000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let measured = lifts[0].clone();
    let mut sent = 0i64;
    for lift in &lifts[1..] {
        for seq in LIVE_SEQ + 1..=LIVE_SEQ + 3 {
            let n = seq - LIVE_SEQ;
            let payload = status(lift, seq, NOW - 3_600_000 + n * 60_000, n);
            client
                .publish(format!("gw/direct/dev/{lift}/lift"), QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
            sent += 1;
        }
    }
    for seq in LIVE_SEQ + 1..=LIVE_SEQ + 288 {
        let n = seq - LIVE_SEQ;
        let payload = status(&measured, seq, NOW - 86_400_000 + n * 300_000, n % 12);
        client
            .publish(
                format!("gw/direct/dev/{measured}/lift"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
        sent += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while ingest.store.reading_count().await.unwrap() < sent + seeded as i64 {
        assert!(Instant::now() < deadline, "readings not stored in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Sign in through the form, as a browser does.
    let form = http.get(format!("{base}/signin")).send().await.unwrap();
    let pre = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("gw_signin="))
        .unwrap();
    let html = form.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    let csrf = html[at..].split('"').next().unwrap().to_string();
    let signed = http
        .post(format!("{base}/signin"))
        .header("cookie", pre)
        .form(&[("csrf", csrf.as_str()), ("token", "t-head")])
        .send()
        .await
        .unwrap();
    let session = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("gw_session="))
        .expect("signed in");

    // Paced under the per-address rate limit (50/s) that session requests count against.
    let mut pace = tokio::time::interval(Duration::from_millis(25));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let readings = sent + seeded as i64;
    println!("dashboard with {DEVICES} devices, {readings} readings, {REQUESTS} requests a page, one after another:");
    println!("| page | p50 ms | p99 ms | bytes |");
    println!("|---|---:|---:|---:|");
    for (name, path) in [
        ("overview `/`", "/".to_string()),
        ("overview page 50 `/?page=50`", "/?page=50".to_string()),
        ("device `/devices/{id}`", format!("/devices/{measured}")),
        ("cases `/cases`", "/cases".to_string()),
        ("statistics `/stats`", "/stats".to_string()),
    ] {
        let mut times = Vec::with_capacity(REQUESTS);
        let mut bytes = 0;
        for _ in 0..REQUESTS {
            pace.tick().await;
            let started = Instant::now();
            let resp = http
                .get(format!("{base}{path}"))
                .header("cookie", &session)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            bytes = resp.bytes().await.unwrap().len();
            times.push(started.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {name} | {:.1} | {:.1} | {bytes} |",
            ms(percentile(&times, 0.50)),
            ms(percentile(&times, 0.99))
        );
    }
}
