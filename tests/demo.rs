//! `gridwatch demo` as a person runs it: the API has users (not open mode), one per role
//! of the closed loop, whose printed curl lines sign in and see what their walls allow;
//! SIGTERM stops it cleanly.
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The stop bound (`gridwatch_ingest::STOP_LIMIT`).
const BOUND: Duration = Duration::from_secs(10);

/// What the demo printed until it was running: the API's address, each user's token,
/// and the lift that traps a passenger.
struct Printed {
    http: String,
    tokens: HashMap<String, String>,
    trapped: String,
}

fn read_printed(lines: &std::sync::mpsc::Receiver<String>) -> Printed {
    let (mut http, mut tokens, mut trapped) = (None, HashMap::new(), None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while trapped.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the demo did not print its start within 60 s");
        if let Some(rest) = line.strip_prefix("dashboard: http://") {
            http = rest.split('/').next().map(str::to_string);
        } else if let Some((head, token)) = line.split_once("Bearer ") {
            let id = head.split_whitespace().next().unwrap().to_string();
            let token = token.split('\'').next().unwrap().to_string();
            tokens.insert(id, token);
        } else if line.starts_with("running ") {
            trapped = line
                .split_once("; lift ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_string);
        }
    }
    Printed {
        http: http.expect("a dashboard line"),
        tokens,
        trapped: trapped.unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_signs_in_its_users_behind_their_walls_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(["demo", "--http", "localhost:0", "--data"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting gridwatch demo");
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = demo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = demo.stderr.take().unwrap();
    let gathered = log.clone();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        *gathered.lock().unwrap() = text;
    });
    let printed = tokio::task::spawn_blocking(move || read_printed(&lines)).await.unwrap();
    for id in [
        "demo.head",
        "demo.officer",
        "demo.inspector",
        "demo.supervisor",
        "demo.firm",
    ] {
        assert!(
            printed.tokens.contains_key(id),
            "no sign-in line for {id}: {:?}",
            printed.tokens
        );
    }
    let users_file = std::fs::read_to_string(dir.path().join("users.toml")).unwrap();
    for token in printed.tokens.values() {
        assert!(!users_file.contains(token.as_str()), "a token itself is never stored");
    }

    let http = reqwest::Client::new();
    let cases = format!("http://{}/api/cases", printed.http);
    let anonymous = http.get(&cases).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "not open mode: no token, no data");
    let as_user = |id: &str| {
        let (http, cases, token) = (http.clone(), cases.clone(), printed.tokens[id].clone());
        async move {
            let response = http.get(&cases).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Vec<serde_json::Value>>().await.unwrap()
        }
    };
    // The trapped lift's case reaches the supervisor of its grid and its firm.
    let is_trapped = |c: &serde_json::Value| c["subject"]["id"] == printed.trapped.as_str();
    let seen = common::eventually("the trapped lift's case for the demo supervisor", || async {
        let cases = as_user("demo.supervisor").await;
        cases.iter().any(is_trapped).then_some(cases)
    })
    .await;
    let grid = seen.iter().find(|c| is_trapped(c)).unwrap()["grid"].clone();
    assert!(
        seen.iter().all(|c| c["grid"] == grid),
        "the supervisor sees cases of their grid only"
    );
    assert!(as_user("demo.firm").await.iter().any(is_trapped));

    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < BOUND * 2,
            "still running {:?} after SIGTERM",
            sent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status} after SIGTERM");
    assert!(sent.elapsed() < BOUND, "the stop took {:?}", sent.elapsed());
    let log = common::eventually("the demo's log to end", || async {
        let text = log.lock().unwrap().clone();
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(log.contains("stopped: alert engine checkpointed"), "{log}");
    assert!(!log.contains('\x1b'), "colour codes in a log that is no terminal");
}
