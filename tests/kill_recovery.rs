//! Invariant 1 and 2 with real processes: a node publishes through a `gridwatch
//! gateway` process to a `gridwatch ingest` process; both are killed with SIGKILL
//! mid-stream and restarted. Every reading the node sent is stored exactly once,
//! and the node forgets a reading only after it was acknowledged. On SQLite, on
//! PostgreSQL, and on a PostgreSQL that preloads TimescaleDB (readings in a hypertable).
mod common;
use common::faults::storage_common::{Backend, TestDb, timescale_server};
use common::faults::{mqtt_addr, rows, spawn};
use common::*;
use gridwatch_protocol::{DeviceId, Envelope, EventKind, NodeAck, NodeEvent};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const READINGS: u64 = 3000;

struct Node {
    unacked: BTreeMap<u64, Vec<u8>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_ingest_and_gateway_loses_and_doubles_nothing() {
    killing_ingest_and_gateway(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_ingest_and_gateway_loses_and_doubles_nothing_on_postgresql() {
    killing_ingest_and_gateway(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_ingest_and_gateway_loses_and_doubles_nothing_on_timescaledb() {
    if timescale_server("kill and redelivery").is_none() {
        return;
    }
    killing_ingest_and_gateway(Backend::Timescale).await;
}

async fn killing_ingest_and_gateway(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let gw_data = dir.path().join("gw").to_str().unwrap().to_string();
    // Both brokers with credentials: the gateway and the node have identities.
    let credentials = dir.path().join("credentials.toml");
    let gw_secret = provision(&credentials, "gw-k", gridwatch_ingest::Role::Gateway, None);
    let node_secret = provision(&credentials, "node-k", gridwatch_ingest::Role::Node, Some("gw-k"));
    let credentials = credentials.to_str().unwrap().to_string();

    // Plain PostgreSQL must not turn into TimescaleDB, and TimescaleDB must be used.
    let timescale = if backend == Backend::Timescale { "on" } else { "off" };
    let ingest_args = |mqtt: &str| {
        let mut args = vec![
            "ingest".to_string(),
            "--open-api".into(),
            "--http".into(),
            "127.0.0.1:0".into(),
            "--mqtt".into(),
            mqtt.to_string(),
            "--data".into(),
            data.clone(),
            "--credentials".into(),
            credentials.clone(),
        ];
        if backend != Backend::Sqlite {
            args.extend(["--db".into(), db.url.clone(), "--timescale".into(), timescale.into()]);
        }
        args
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
            format!("mqtt://gw-k:{gw_secret}@{ingest_mqtt}"),
            "--listen".into(),
            listen.to_string(),
            "--data".into(),
            gw_data.clone(),
            "--credentials".into(),
            credentials.clone(),
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
    options.set_credentials("node-k", node_secret);
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
    drop(gateway); // SIGKILL: what it acknowledged is on its disk; the node still holds the rest
    publish(2001, READINGS).await;
    let (_gateway, _) = run(gateway_args(&node_addr), "gateway:");
    eventually("every reading acknowledged", || acked_through(READINGS)).await;

    // Exactly once in the database.
    let url = if backend == Backend::Sqlite {
        format!("sqlite://{data}/gridwatch.db")
    } else {
        db.url.clone()
    };
    // Empty until ingest stores the first reading: MIN and MAX are then 0, not NULL.
    let query = || async {
        rows::<(i64, i64, i64, i64)>(
            &url,
            "SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM readings WHERE device_id = 'node-k'",
        )
        .await[0]
    };
    // The node is acknowledged once its reading is on the gateway's disk; ingest stores it after.
    eventually("every reading stored", || async {
        (query().await.1 >= READINGS as i64).then_some(())
    })
    .await;
    let (rows_stored, distinct, low, high) = query().await;
    assert_eq!(
        (rows_stored, distinct, low, high),
        (READINGS as i64, READINGS as i64, 1, READINGS as i64)
    );
    if backend == Backend::Timescale {
        let hypertables: Vec<(i64,)> = rows(
            &url,
            "SELECT COUNT(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'",
        )
        .await;
        assert_eq!(hypertables[0].0, 1, "readings is a hypertable");
    }
    drop(ingest);
}
