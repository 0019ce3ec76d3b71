//! The thin path end to end: a simulated lift node (the real firmware over a lift model)
//! publishes to the gateway's embedded broker, the gateway batches to ingest, ingest stores in
//! SQLite and raises a trapped-passenger alert on device time. Virtual time: the lift's 200
//! seconds are simulated in a loop, nothing waits for them.
mod common;
use common::*;
use gridwatch_simulators::lift::{LiftEvent, LiftParams};
use gridwatch_simulators::node::{EquipmentEvent, NodeConfig, SimNode};
use rumqttc::QoS;
use sqlx::Row;
use std::sync::Arc;
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapped_passenger_alert_is_raised_once_on_device_time_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path(), "gw-e2e").await;
    let spy_secret = stack.provision("spy", gridwatch_ingest::Role::Service, None);
    let node_secret = stack.provision("lift-1", gridwatch_ingest::Role::Node, Some("gw-e2e"));
    let Stack { ingest, gateway, .. } = stack;
    // A spy on the gateway's broker keeps every reading the node publishes, for the replay below.
    let (spy, mut spied) = mqtt_client_as(gateway.node_addr, "spy", "spy", &spy_secret).await;
    spy.subscribe("gw/gw-e2e/dev/lift-1/+", QoS::AtLeastOnce).await.unwrap();

    let wake = Arc::new(Notify::new());
    let config = NodeConfig {
        secret: Some(node_secret.clone()),
        ..NodeConfig::new("lift-1", "gw-e2e", gateway.node_addr)
    };
    let mut node = SimNode::lift(config, LiftParams::default(), T0, wake.clone()).unwrap();
    // From second 20 a passenger rides from floor 1 to 9; the drive stops the car between floors.
    let lift = |e| EquipmentEvent::Lift(e);
    node.schedule(T0 + 20_000, lift(LiftEvent::Call { from: 1, to: 9 }));
    node.schedule(T0 + 20_000, lift(LiftEvent::StopBetweenFloors));

    // 200 s of device time, delivered second by second.
    for s in 0..=200u64 {
        node.advance_to(T0 + s * 1000).unwrap();
        node.deliver(T0 + s * 1000).await;
    }
    // Every reading is acknowledged back to the node (once on the gateway's disk)...
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while node.unacknowledged() > 0 {
        let woken = tokio::time::timeout_at(deadline, wake.notified()).await;
        assert!(woken.is_ok(), "timed out waiting for node acks: {:?}", node.stats());
        node.take_incoming(T0 + 200_000);
    }
    let last_seq = node.stats().outbox.next_seq - 1;
    // ...and committed by ingest once the gateway's outbox is empty.
    eventually("the gateway's outbox committed upstream", || async {
        (gateway.unacknowledged() == 0).then_some(())
    })
    .await;
    assert_eq!(ingest.store.reading_count().await.unwrap(), last_seq as i64);

    let base = format!("http://{}", ingest.http_addr);
    let alerts = eventually("the trapped-passenger alert", || async {
        let alerts = get_json(&format!("{base}/api/alerts")).await;
        (alerts.as_array().unwrap().len() >= 2).then_some(alerts)
    })
    .await;
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let trapped = alerts
        .iter()
        .find(|a| a["kind"] == "trapped_passenger")
        .expect("a trapped_passenger alert");
    assert_eq!(trapped["device_id"], "lift-1");
    assert_eq!(trapped["state"], "raised");
    assert_eq!(trapped["severity"], "critical");
    assert!(trapped["id"].as_i64().is_some());
    assert_eq!(trapped["details"]["reason"], "stopped_outside_door_zone");
    assert!(alerts.iter().any(|a| a["kind"] == "stopped_outside_door_zone"));

    // The car left floor 1 at about second 29 and stopped between floors a second later:
    // trapped 45 s after the node reported it stopped, at the device time of the reading
    // that showed it (not the arrival time).
    let raised_at = trapped["raised_at_ms"].as_u64().unwrap();
    assert!((T0 + 75_000..=T0 + 90_000).contains(&raised_at), "{trapped}");
    // Virtual time outran the acks, so the node resent (seq, ts) pairs: harmless duplicates.
    let mut readings = std::collections::BTreeMap::new();
    while let Ok(p) = spied.try_recv() {
        if !p.topic.ends_with("/ack") && !p.topic.ends_with("/presence") {
            let envelope: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            let (seq, ts) = (envelope["seq"].as_u64().unwrap(), envelope["ts"].as_u64().unwrap());
            readings.insert(seq, (ts, p));
        }
    }
    assert_eq!(readings.len() as u64, last_seq, "seq 1..={last_seq}, each seen");
    assert!(
        readings.values().any(|(ts, _)| *ts == raised_at),
        "raised at {raised_at}, not the time of a reading"
    );

    // A node that lost its acks replays everything: nothing changes.
    let readings: Vec<rumqttc::Publish> = readings.into_values().map(|(_, p)| p).collect();
    // As the node itself: the spy, a service, may read but not publish.
    let (replayer, _) = mqtt_client_as(gateway.node_addr, "lift-1-replay", "lift-1", &node_secret).await;
    for p in &readings {
        replayer
            .publish(p.topic.clone(), QoS::AtLeastOnce, false, p.payload.to_vec())
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
    let rows = sqlx::query("SELECT kind, device_id, state, raised_at FROM alerts WHERE kind = 'trapped_passenger'")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one alert, however often the data came");
    assert_eq!(rows[0].get::<String, _>("device_id"), "lift-1");
    assert_eq!(rows[0].get::<i64, _>("raised_at"), raised_at as i64);

    let page = get_text(&format!("{base}/")).await;
    assert!(page.contains("trapped_passenger") && page.contains("lift-1"), "{page}");
}
