//! Readings stamped too far ahead of ingest's clock are quarantined as `clock_ahead`,
//! counted, acknowledged as handled, and never reach the alert engine: the device they
//! name still alerts afterwards. The brokers here are open: the readings stand for a
//! node whose clock jumped.
mod common;
use common::*;
use rumqttc::QoS;

/// 2099-01-01T00:00:00Z.
const Y2099: u64 = 4_070_908_800_000;

fn lift_reading(device: &str, seq: u64, ts: u64, occupied: bool) -> String {
    format!(
        r#"{{"v":1,"device":"{device}","seq":{seq},"ts":{ts},"body":{{"mode":"normal","motion":"stopped","door":"closed","door_zone":true,"floor":3,"occupied":{occupied},"alarm":false,"fault":0,"power":"mains","runs":0,"door_cycles":0}}}}"#
    )
}

/// The quarantine's rows, whether the API answers with a list or a page.
fn rows(answer: &serde_json::Value) -> Vec<serde_json::Value> {
    answer
        .as_array()
        .or_else(|| answer["items"].as_array())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_from_2099_is_quarantined_acked_and_the_lift_still_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let Stack { ingest, clock, .. } = start_open_stack(dir.path(), "gw-c").await;
    let base = format!("http://{}", ingest.http_addr);
    let (node, mut incoming) = mqtt_client(ingest.mqtt_addr, "L-7").await;
    node.subscribe("gw/gw-c/ack/#", QoS::AtLeastOnce).await.unwrap();
    node.subscribe("gw/gw-c/ack", QoS::AtLeastOnce).await.unwrap();
    let publish = |topic: &'static str, payload: String| {
        let node = node.clone();
        async move {
            node.publish(topic, QoS::AtLeastOnce, false, payload.into_bytes())
                .await
                .unwrap()
        }
    };

    publish("gw/gw-c/dev/L-7/lift", lift_reading("L-7", 1, T0, false)).await;
    // A direct node's reading from 2099: quarantined, and acked so the node drops it.
    publish("gw/gw-c/dev/L-7/lift", lift_reading("L-7", 2, Y2099, false)).await;
    // A gateway batch with one reading from 2099: acked with it as rejected.
    let batch = format!(
        r#"{{"v":1,"gateway":"gw-c","batch":1,"readings":[{{"kind":"lift",{},{{"kind":"lift",{}]}}"#,
        &lift_reading("L-8", 1, T0, false)[1..],
        &lift_reading("L-8", 2, Y2099 + 1, false)[1..],
    );
    publish("gw/gw-c/batch", batch).await;

    let deadline = tokio::time::Instant::now() + DEADLINE;
    let (mut node_acked, mut batch_ack) = (0, None);
    while node_acked < 2 || batch_ack.is_none() {
        let Ok(p) = tokio::time::timeout_at(deadline, incoming.recv()).await else {
            let q = get_json(&format!("{base}/api/quarantine")).await;
            panic!("acks: node up to {node_acked}, batch {batch_ack:?}; quarantine {q}");
        };
        let p = p.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
        match p.topic.as_str() {
            "gw/gw-c/ack/L-7" => node_acked = node_acked.max(body["seq"].as_u64().unwrap()),
            "gw/gw-c/ack" => batch_ack = Some((body["stored"].as_u64(), body["rejected"].as_u64())),
            _ => {}
        }
    }
    assert_eq!(batch_ack, Some((Some(1), Some(1))));

    let quarantined = eventually("two clock_ahead entries", || async {
        let rows = rows(&get_json(&format!("{base}/api/quarantine")).await);
        (rows.iter().filter(|r| r["reason"] == "clock_ahead").count() == 2).then_some(rows)
    })
    .await;
    assert!(
        quarantined
            .iter()
            .any(|r| r["source"] == "gw/gw-c/dev/L-7/lift" && r["payload"].as_str().unwrap().contains("4070908800000")),
        "{quarantined:?}"
    );
    let metrics = get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains(r#"gridwatch_ingest_rejected_total{reason="clock_ahead"} 2"#),
        "{metrics}"
    );
    assert_eq!(ingest.store.reading_count().await.unwrap(), 2);

    // A passenger shut in from T0 + 10 s is trapped 90 s later on the lift's own time.
    clock.set(T0 + 10_000);
    publish("gw/gw-c/dev/L-7/lift", lift_reading("L-7", 3, T0 + 10_000, true)).await;
    eventually("reading 3 applied by the alert engine", || async {
        let domain = ingest.domain().lock().await;
        (domain.engine().monitor("L-7").map(|m| m.last_seq) == Some(3)).then_some(())
    })
    .await;
    clock.set(T0 + 100_000);
    ingest.tick().await;
    let alerts: Vec<serde_json::Value> = get_json(&format!("{base}/api/alerts?state=all"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "trapped_passenger")
        .cloned()
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["device_id"], "L-7");
    assert_eq!(alerts[0]["raised_at_ms"], T0 + 100_000);
}
