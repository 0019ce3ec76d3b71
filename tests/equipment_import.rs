//! `gridwatch equipment import` as a new user runs it: the binary on a SQLite
//! file, twice, then ingest on the same database. The import must save the alert
//! engine's state with the alerts it raised; without it the second import raised
//! every due-date alert again (616 open alerts for 308 device and kind pairs, a
//! second report in every case), and ingest, knowing nothing of the open alerts,
//! never cleared them when an inspection or a maintenance was recorded.
use gridwatch_alerts::china;
use gridwatch_cases::{Assignment, GridScope, Role, User};
use gridwatch_ingest::{IngestConfig, Users};
use gridwatch_protocol::clock::{Clock, ManualClock, SystemClock};
use serde_json::{Value, json};
use sqlx::SqlitePool;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn register() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("simulators/data/registry-sample.csv")
        .display()
        .to_string()
}

/// Runs `gridwatch equipment import` on the sample register; returns its output.
fn import(db: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(["equipment", "import", &register(), "--db", db])
        .env_remove("GRIDWATCH_DB")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gridwatch equipment import failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every alert: `(id, device_id, kind, raised_at, state, revision)`.
type AlertRow = (i64, String, String, i64, String, i64);

async fn alerts(db: &SqlitePool) -> Vec<AlertRow> {
    sqlx::query_as("SELECT id, device_id, kind, raised_at, state, revision FROM alerts ORDER BY id")
        .fetch_all(db)
        .await
        .unwrap()
}

async fn cases(db: &SqlitePool) -> Vec<Value> {
    let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM cases ORDER BY id")
        .fetch_all(db)
        .await
        .unwrap();
    bodies.iter().map(|b| serde_json::from_str(b).unwrap()).collect()
}

/// (device, kind) pairs with more than one open alert.
async fn open_twice(db: &SqlitePool) -> Vec<(String, String, i64)> {
    sqlx::query_as(
        "SELECT device_id, kind, COUNT(*) FROM alerts WHERE state <> 'cleared' \
         GROUP BY device_id, kind HAVING COUNT(*) > 1",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// Cases holding two reports of one alert (device and kind): their ids and reports.
fn cases_reporting_an_alert_twice(cases: &[Value]) -> Vec<Value> {
    cases
        .iter()
        .filter(|case| {
            let reports = case["reports"].as_array().expect("a case has reports");
            let alerts: Vec<String> = reports
                .iter()
                .map(|r| &r["alert"]["key"])
                .filter(|k| !k.is_null())
                .map(Value::to_string)
                .collect();
            alerts.iter().collect::<BTreeSet<_>>().len() != alerts.len()
        })
        .map(|case| json!({"id": case["id"], "reports": case["reports"]}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_twice_changes_no_alert_and_ingest_clears_overdue_alerts_on_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gridwatch.db");
    let url = format!("sqlite://{}", file.display());

    let first = import(&url);
    let db = SqlitePool::connect(&url).await.unwrap();
    let after_first = alerts(&db).await;
    let cases_first = cases(&db).await;
    let overdue = |rows: &[AlertRow], kind: &str| rows.iter().filter(|a| a.2 == kind && a.4 != "cleared").count();
    assert!(
        overdue(&after_first, "inspection_overdue") > 0 && overdue(&after_first, "maintenance_overdue") > 0,
        "the sample register has overdue devices: {first}"
    );
    assert!(!cases_first.is_empty(), "overdue beyond the grace period opens cases");

    // The same register again: nothing new to say.
    let second = import(&url);
    assert_eq!(alerts(&db).await, after_first, "the second import changes no alert");
    assert!(second.contains("; 0 alert events"), "{second}");
    assert_eq!(open_twice(&db).await, [], "one open alert per device and kind");
    let cases_second = cases(&db).await;
    let twice = cases_reporting_an_alert_twice(&cases_second);
    assert!(
        twice.is_empty(),
        "{} of {} cases have two reports of one alert, e.g. {}",
        twice.len(),
        cases_second.len(),
        twice[0]
    );
    // Nothing else either (compared quietly: the cases are long).
    assert!(cases_second == cases_first, "the second import changed a case");

    // Ingest on the same database: an inspection and a maintenance recorded for
    // overdue devices clear their alerts, the very ones the import raised.
    let now = SystemClock.now_ms();
    let mut config = IngestConfig::embedded(dir.path());
    config.clock = Arc::new(ManualClock::new(now));
    config.tick_every = Duration::from_secs(3600);
    config.users = users();
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let api = format!("http://{}", ingest.http_addr);

    let open_of = |kind: &str| {
        after_first
            .iter()
            .filter(|a| a.2 == kind && a.4 != "cleared")
            .map(|a| a.1.clone())
            .collect::<BTreeSet<String>>()
    };
    let (inspection, maintenance) = (open_of("inspection_overdue"), open_of("maintenance_overdue"));
    // A device overdue for both if the register has one, else one of each.
    let both = inspection.intersection(&maintenance).next().cloned();
    let inspected = both.clone().unwrap_or_else(|| inspection.first().unwrap().clone());
    let maintained = both.unwrap_or_else(|| maintenance.first().unwrap().clone());

    let today = china_date(now, 0);
    let http = reqwest::Client::new();
    let post = async |path: String, body: Value| {
        let resp = http
            .post(format!("{api}{path}"))
            .bearer_auth("t-head")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, reqwest::StatusCode::CREATED, "{path}: {body}");
        body
    };
    post(
        format!("/api/equipment/{inspected}/inspections"),
        json!({"date": today, "next_due": china_date(now, 365)}),
    )
    .await;
    post(
        format!("/api/equipment/{maintained}/maintenance"),
        json!({"date": today}),
    )
    .await;

    // Those two alerts, the very ones the import raised, are cleared; no other
    // alert changed. The only alert that may be new: maintenance due soon for the
    // maintained device, whose next visit is an interval from today (15 days for
    // many lifts of the sample, within the 30 days of "due soon").
    type Seen = (i64, String, String, i64, String);
    let after_records = alerts(&db).await;
    let to_clear = |row: &AlertRow| {
        row.1 == inspected && row.2 == "inspection_overdue" || row.1 == maintained && row.2 == "maintenance_overdue"
    };
    let expected: Vec<Seen> = after_first
        .iter()
        .map(|a| {
            let state = if to_clear(a) {
                "cleared".to_string()
            } else {
                a.4.clone()
            };
            (a.0, a.1.clone(), a.2.clone(), a.3, state)
        })
        .collect();
    let (old, new): (Vec<Seen>, Vec<Seen>) = after_records
        .iter()
        .map(|a| (a.0, a.1.clone(), a.2.clone(), a.3, a.4.clone()))
        .partition(|a| after_first.iter().any(|b| b.0 == a.0));
    let of = |rows: &[Seen], device: &str| rows.iter().filter(|a| a.1 == device).cloned().collect::<Vec<_>>();
    assert_eq!(of(&old, &inspected), of(&expected, &inspected), "{inspected}");
    assert_eq!(of(&old, &maintained), of(&expected, &maintained), "{maintained}");
    assert_eq!(old, expected);
    assert!(
        new.iter()
            .all(|a| a.1 == maintained && a.2 == "maintenance_due_soon" && a.4 == "raised"),
        "{new:?}"
    );

    // The API says the same.
    let resp = http
        .get(format!("{api}/api/alerts"))
        .bearer_auth("t-head")
        .send()
        .await
        .unwrap();
    let listed: Value = resp.json().await.unwrap();
    let still_open: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["device_id"] == inspected.as_str() && a["kind"] == "inspection_overdue"
                || a["device_id"] == maintained.as_str() && a["kind"] == "maintenance_overdue"
        })
        .collect();
    assert!(still_open.is_empty(), "{still_open:?}");
    ingest.stop().await;
}

/// Runs the binary with `args`; returns (success, stdout, stderr).
fn gridwatch(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        .env_remove("GRIDWATCH_DB")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_empty_files_and_unconfirmed_mass_removals() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gridwatch.db").display());
    import(&url);
    let db = SqlitePool::connect(&url).await.unwrap();
    let register = async || -> String {
        sqlx::query_scalar("SELECT body FROM register")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let before = register().await;

    let sample = std::fs::read_to_string(register_path()).unwrap();
    let header = sample.lines().next().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    for (name, text) in [("header-only.csv", format!("{header}\n")), ("empty.csv", String::new())] {
        let file = write(name, &text);
        let (ok, _, stderr) = gridwatch(&["equipment", "import", &file, "--db", &url]);
        assert!(!ok && stderr.contains("at least one device row"), "{name}: {stderr}");
    }
    // Two rows for a register of 362: 360 removals, only when confirmed.
    let two: String = sample.lines().take(3).map(|l| format!("{l}\n")).collect();
    let file = write("two.csv", &two);
    let (ok, _, stderr) = gridwatch(&["equipment", "import", &file, "--db", &url]);
    assert!(!ok && stderr.contains("confirm_removals=360"), "{stderr}");
    assert!(register().await == before, "refused imports change nothing");
    // Scoped to area 01: the two rows are of area 01, area 02 stays.
    let (ok, stdout, stderr) = gridwatch(&[
        "equipment",
        "import",
        &file,
        "--db",
        &url,
        "--scope",
        "01",
        "--confirm-removals",
        "175",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("imported 187 devices (175 removed, 185 outside the scope kept)"),
        "{stdout}"
    );
}

#[test]
fn ingest_refuses_an_empty_users_file_and_runs_open_only_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    // The broker's own access is not what this test is about.
    let common = [
        "--allow-anonymous",
        "--http",
        "127.0.0.1:0",
        "--mqtt",
        "127.0.0.1:0",
        "--data",
        &data,
    ];
    let users = dir.path().join("users.toml");
    std::fs::write(&users, "# nobody yet\n").unwrap();
    let users = users.display().to_string();
    let (ok, stderr) = exits(&[&["ingest", "--users", &users][..], &common].concat());
    assert!(!ok && stderr.contains("no [[user]]"), "{stderr}");
    let (ok, stderr) = exits(&[&["ingest"][..], &common].concat());
    assert!(!ok && stderr.contains("--users"), "{stderr}");

    // --open-api starts, and says so in its log.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args([&["ingest", "--open-api"][..], &common].concat())
        .env_remove("GRIDWATCH_DB")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let warned = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("WARN") && line.contains("--open-api") => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(warned, "ingest --open-api logs a warning");
}

/// Runs the binary with `args` and expects it to exit within the deadline (a service
/// that starts instead is killed and fails the test): (success, stderr).
fn exits(args: &[&str]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        .env_remove("GRIDWATCH_DB")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("gridwatch {args:?} started instead of refusing to");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.success(), stderr)
}

fn register_path() -> String {
    register()
}

/// A grid head of both areas of the sample register.
fn users() -> Users {
    let assignments = ["01", "02"]
        .iter()
        .map(|area| Assignment::Grid {
            role: Role::GridHead,
            scope: GridScope::parse(area).unwrap(),
        })
        .collect();
    let mut users = Users::new();
    users.add(
        "t-head",
        User {
            id: "head".into(),
            name: "head".into(),
            assignments,
        },
    );
    users
}

/// The China-local date of `ms`, plus `days`, as `YYYY-MM-DD`.
fn china_date(ms: u64, days: i64) -> String {
    china::add_days(china::date_of(ms), days).to_string()
}
