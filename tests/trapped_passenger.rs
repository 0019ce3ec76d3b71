//! The thin path end to end: a simulated lift publishes to the gateway's
//! embedded broker, the gateway batches to ingest, ingest stores in SQLite and
//! raises a trapped-passenger alert on device time. Virtual time: the lift's
//! 200 seconds are simulated in a loop, nothing waits for them.
mod common;
use common::*;
use gridwatch_simulators::lift::SimLift;
use gridwatch_simulators::node::SimNode;
use rumqttc::QoS;
use sqlx::Row;
use std::sync::{Arc, Mutex};

const T0: u64 = 1_764_061_200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapped_passenger_alert_is_raised_once_on_device_time_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, gateway) = start_stack(dir.path(), "gw-e2e").await;
    let node = Arc::new(Mutex::new(SimNode::new("lift-1", "gw-e2e", 10_000)));
    let (client, mut incoming) = mqtt_client(gateway.node_addr, "lift-1").await;
    let ack_topic = node.lock().unwrap().ack_topic();
    client.subscribe(&ack_topic, QoS::AtLeastOnce).await.unwrap();
    {
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(p) = incoming.recv().await {
                let ack: gridwatch_protocol::NodeAck = serde_json::from_slice(&p.payload).unwrap();
                node.lock().unwrap().ack(ack.seq);
            }
        });
    }

    // 200 s of device time; the passenger is trapped from second 60.
    let mut lift = SimLift::new(10, 42);
    let mut sent = Vec::new();
    for s in 0..=200u64 {
        if s == 60 {
            lift.trap_passenger();
        }
        lift.step(s);
        let message = node.lock().unwrap().report(T0 + s * 1000, lift.status(s));
        if let Some((topic, payload)) = message {
            client
                .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                .await
                .unwrap();
            sent.push((topic, payload));
        }
    }
    let last_seq = node.lock().unwrap().last_seq();

    let base = format!("http://{}", ingest.http_addr);
    let alerts = eventually("the trapped-passenger alert", || async {
        let alerts = get_json(&format!("{base}/api/alerts")).await;
        (!alerts.as_array().unwrap().is_empty()).then_some(alerts)
    })
    .await;
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "trapped_passenger");
    assert_eq!(alerts[0]["device_id"], "lift-1");
    assert_eq!(alerts[0]["state"], "raised");
    assert!(alerts[0]["id"].as_i64().is_some());
    // Trapped from the reading at second 60; the heartbeat at second 150 is the first at ≥ 90 s.
    assert_eq!(alerts[0]["raised_at_ms"], T0 + 150_000);
    assert_eq!(alerts[0]["raised_at"], "2025-11-25T09:02:30.000Z");

    // Every reading is committed and acknowledged back to the node.
    eventually("node acks for every reading", || async {
        node.lock().unwrap().unacked().is_empty().then_some(())
    })
    .await;
    assert_eq!(ingest.store.reading_count().await.unwrap(), last_seq as i64);

    // A node that lost its acks replays everything: nothing changes.
    for (topic, payload) in &sent {
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }
    eventually("the replay to be acknowledged", || async {
        (gateway.unacknowledged() == 0).then_some(())
    })
    .await;
    assert_eq!(ingest.store.reading_count().await.unwrap(), last_seq as i64);

    // The row is in the database file itself.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("gridwatch.db").display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT kind, device_id, state, raised_at FROM alerts")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String, _>("kind"), "trapped_passenger");
    assert_eq!(rows[0].get::<i64, _>("raised_at"), (T0 + 150_000) as i64);

    let page = get_text(&format!("{base}/")).await;
    assert!(page.contains("trapped_passenger") && page.contains("lift-1"), "{page}");
}
