//! Invariant 1 and 2 with real processes: a node publishes through a `gridwatch
//! gateway` process to a `gridwatch ingest` process; both are killed with SIGKILL
//! mid-stream and restarted. Every reading the node sent is stored exactly once,
//! and the node forgets a reading only after it was acknowledged.
mod common;
use common::*;
use gridwatch_protocol::{DeviceId, Envelope, EventKind, NodeAck, NodeEvent};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const READINGS: u64 = 3000;

/// A child process killed (SIGKILL) when dropped, so a failed test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gridwatch ARGS` and returns it with the first stdout line that starts with `prefix`.
fn spawn(args: &[&str], prefix: &str) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        // Warnings go to the test's output, which nextest shows when the test fails.
        .env("RUST_LOG", std::env::var("GRIDWATCH_TEST_LOG").unwrap_or("warn".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning gridwatch");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no {prefix} line"));
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), line)
}

fn mqtt_addr(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("mqtt://"))
        .expect("an mqtt:// address")
        .to_string()
}

struct Node {
    unacked: BTreeMap<u64, Vec<u8>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_ingest_and_gateway_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let gw_data = dir.path().join("gw").to_str().unwrap().to_string();

    let ingest_args = |mqtt: &str| {
        vec![
            "ingest".to_string(),
            "--http".into(),
            "127.0.0.1:0".into(),
            "--mqtt".into(),
            mqtt.to_string(),
            "--data".into(),
            data.clone(),
        ]
    };
    let run = |args: Vec<String>, prefix: &str| spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), prefix);
    let (ingest, line) = run(ingest_args("127.0.0.1:0"), "ingest:");
    let ingest_mqtt = mqtt_addr(&line);
    let gateway_args = |listen: &str| {
        vec![
            "gateway".to_string(),
            "--id".into(),
            "gw-k".into(),
            "--uplink".into(),
            format!("mqtt://{ingest_mqtt}"),
            "--listen".into(),
            listen.to_string(),
            "--data".into(),
            gw_data.clone(),
        ]
    };
    let (gateway, line) = run(gateway_args("127.0.0.1:0"), "gateway:");
    let node_addr = mqtt_addr(&line);

    // The node, as the firmware behaves: subscribes to its acks before it publishes, keeps
    // every reading until acked, replays the rest after each reconnect, and resends what
    // stays unacknowledged for a while (the gateway answers a resend of a committed reading
    // with its ack again).
    let node = Arc::new(Mutex::new(Node {
        unacked: BTreeMap::new(),
    }));
    let (host, port) = node_addr.rsplit_once(':').unwrap();
    let mut options = rumqttc::MqttOptions::new("node-k", host, port.parse().unwrap());
    options.set_clean_session(false);
    let (client, mut events) = AsyncClient::new(options, 10_000);
    let subscribed = Arc::new(tokio::sync::Notify::new());
    let replay = |client: AsyncClient, node: Arc<Mutex<Node>>| async move {
        let pending: Vec<Vec<u8>> = node.lock().unwrap().unacked.values().cloned().collect();
        for payload in pending {
            let _ = client
                .publish("gw/gw-k/dev/node-k/event", QoS::AtLeastOnce, false, payload)
                .await;
        }
    };
    {
        let (client, node, subscribed) = (client.clone(), node.clone(), subscribed.clone());
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // In its own task: this one must keep polling to drain the request queue.
                        let client = client.clone();
                        tokio::spawn(async move { client.subscribe("gw/gw-k/ack/node-k", QoS::AtLeastOnce).await });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subscribed.notify_one();
                        tokio::spawn(replay(client.clone(), node.clone()));
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let ack: NodeAck = serde_json::from_slice(&p.payload).unwrap();
                        let mut node = node.lock().unwrap();
                        node.unacked = node.unacked.split_off(&(ack.seq + 1));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    {
        let (client, node) = (client.clone(), node.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            let mut last_oldest = None;
            loop {
                every.tick().await;
                let oldest = node.lock().unwrap().unacked.keys().next().copied();
                if oldest.is_some() && oldest == last_oldest {
                    replay(client.clone(), node.clone()).await;
                }
                last_oldest = oldest;
            }
        });
    }
    subscribed.notified().await;

    let publish = async |from: u64, to: u64| {
        for seq in from..=to {
            let body = NodeEvent {
                event: EventKind::AlarmButton,
                code: (seq % 100) as u16,
            };
            let payload = serde_json::to_vec(&Envelope::new(
                DeviceId::try_from("node-k").unwrap(),
                seq,
                T0 + seq,
                body,
            ))
            .unwrap();
            node.lock().unwrap().unacked.insert(seq, payload.clone());
            client
                .publish("gw/gw-k/dev/node-k/event", QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    };
    let acked_through = |seq: u64| {
        let node = node.clone();
        async move {
            node.lock()
                .unwrap()
                .unacked
                .first_key_value()
                .is_none_or(|(first, _)| *first > seq)
                .then_some(())
        }
    };

    publish(1, 1000).await;
    eventually("the first readings acknowledged", || acked_through(200)).await;
    drop(ingest); // SIGKILL, mid-stream
    publish(1001, 2000).await;
    let (ingest, _) = run(ingest_args(&ingest_mqtt), "ingest:");
    eventually("acks after the ingest restart", || acked_through(1500)).await;
    drop(gateway); // SIGKILL: its in-memory outbox is gone; the node still holds what was not acked
    publish(2001, READINGS).await;
    let (_gateway, _) = run(gateway_args(&node_addr), "gateway:");
    eventually("every reading acknowledged", || acked_through(READINGS)).await;

    // Exactly once in the database.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{data}/gridwatch.db"))
        .await
        .unwrap();
    let (rows, distinct, low, high): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM readings WHERE device_id = 'node-k'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        (rows, distinct, low, high),
        (READINGS as i64, READINGS as i64, 1, READINGS as i64)
    );
    drop(ingest);
}
