//! SIGTERM stops `gridwatch ingest` and `gridwatch gateway` cleanly: exit status 0
//! within the stop bound, and the next start opens the same data again. (`gridwatch
//! demo`: tests/demo.rs.)
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bound a stop must keep (`gridwatch_ingest::STOP_LIMIT`).
const BOUND: Duration = Duration::from_secs(10);

/// What a process wrote to stderr (its log), gathered as it runs.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// Starts the binary with `args` and waits (with a deadline) for its line starting with `ready`.
fn start(args: &[&str], ready: &str) -> Child {
    start_logged(args, ready).0
}

/// [`start`], gathering its log.
fn start_logged(args: &[&str], ready: &str) -> (Child, Log) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting gridwatch");
    let log = Log::default();
    let mut stderr = child.stderr.take().unwrap();
    let gathered = log.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            gathered
                .0
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(&ready) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{args:?} did not start within 60 s: {}", log.text()));
    (child, log)
}

/// Sends SIGTERM and waits, polling with a deadline, for the exit; returns its status and how long it took.
fn terminate(child: &mut Child) -> (std::process::ExitStatus, Duration) {
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, sent.elapsed());
        }
        if sent.elapsed() > BOUND * 2 {
            let _ = child.kill();
            panic!("still running {:?} after SIGTERM", sent.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_ingest_cleanly_within_the_bound_and_it_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // The second run listens on a host name, resolved at start.
    for (run, http) in ["127.0.0.1:0", "localhost:0"].into_iter().enumerate() {
        let args = [
            "ingest",
            "--open-api",
            "--allow-anonymous",
            "--http",
            http,
            "--mqtt",
            "127.0.0.1:0",
            "--data",
            data,
        ];
        let (mut ingest, log) = start_logged(&args, "ingest:");
        let (status, took) = terminate(&mut ingest);
        assert!(status.success(), "run {run}: exit status {status} after SIGTERM");
        assert!(took < BOUND, "run {run}: the stop took {took:?}");
        eprintln!("run {run}: ingest stopped {took:?} after SIGTERM");
        let log = log.text();
        assert!(log.contains("signal=\"SIGTERM\"") && log.contains("stopping"), "{log}");
        assert!(
            log.contains("stopped: alert engine checkpointed"),
            "run {run}: no shutdown checkpoint in the log: {log}"
        );
        assert!(
            !log.contains('\x1b'),
            "run {run}: colour codes in a log that is no terminal: {log}"
        );
    }
}

#[test]
fn ingest_names_an_http_host_that_does_not_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args([
            "ingest",
            "--open-api",
            "--allow-anonymous",
            "--mqtt",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path())
        .args(["--http", "no-such-host.invalid:8080"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--http no-such-host.invalid:8080: the host name does not resolve"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(["ingest", "--open-api", "--http", "localhost"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected HOST:PORT"));
}

#[test]
fn sigterm_stops_a_gateway_cleanly_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // No ingest behind it: the uplink keeps reconnecting, and the stop must not wait for it.
    let args = [
        "gateway",
        "--id",
        "gw-term",
        "--uplink",
        "mqtt://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data,
        "--allow-anonymous",
    ];
    let mut gateway = start(&args, "gateway:");
    let (status, took) = terminate(&mut gateway);
    assert!(status.success(), "exit status {status} after SIGTERM");
    assert!(took < BOUND, "the stop took {took:?}");
}
