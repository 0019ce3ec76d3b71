//! Bad input is refused with a counted reason and kept, never dropped and never a crash.
mod common;
use common::*;
use rumqttc::QoS;

/// A direct node's lift reading as it goes on the wire: seq 1 at [`T0`], on `floor`.
fn lift_reading(device: &str, floor: i32) -> Vec<u8> {
    format!(
        r#"{{"v":1,"device":"{device}","seq":1,"ts":{T0},"body":{{"mode":"normal","motion":"stopped","door":"closed","door_zone":true,"floor":{floor},"occupied":false,"alarm":false,"fault":0,"power":"mains","runs":0,"door_cycles":0}}}}"#
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_and_kept_by_ingest_and_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let Stack { ingest, gateway, .. } = start_stack(dir.path(), "gw-q").await;
    let base = format!("http://{}", ingest.http_addr);

    // Straight to ingest, as a smart node would publish.
    let (direct, _) = mqtt_client(ingest.mqtt_addr, "bad-node").await;
    direct
        .publish("gw/gw-q/dev/L-9/lift", QoS::AtLeastOnce, false, b"{not json".to_vec())
        .await
        .unwrap();
    direct
        .publish(
            "gw/gw-q/dev/L-9/lift",
            QoS::AtLeastOnce,
            false,
            lift_reading("L-9", 999),
        )
        .await
        .unwrap();
    direct
        .publish("gw/gw-q/batch", QoS::AtLeastOnce, false, b"[]".to_vec())
        .await
        .unwrap();

    let kept = eventually("three quarantined messages", || async {
        let rows = get_json(&format!("{base}/api/quarantine")).await;
        (rows.as_array().unwrap().len() >= 3).then_some(rows)
    })
    .await;
    let mut reasons: Vec<&str> = kept
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["floor_out_of_range", "malformed", "malformed"]);
    assert!(kept.as_array().unwrap().iter().any(|r| r["payload"] == "{not json"));

    let metrics = get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains(r#"gridwatch_ingest_rejected_total{reason="malformed"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gridwatch_ingest_rejected_total{reason="floor_out_of_range"} 1"#),
        "{metrics}"
    );

    // Through the gateway: refused at the edge, kept in its quarantine file.
    let (node, _) = mqtt_client(gateway.node_addr, "L-8").await;
    node.publish(
        "gw/gw-q/dev/L-8/sterilizer",
        QoS::AtLeastOnce,
        false,
        b"\xff\xfe".to_vec(),
    )
    .await
    .unwrap();
    node.publish("gw/other-gw/dev/L-8/lift", QoS::AtLeastOnce, false, b"{}".to_vec())
        .await
        .unwrap();
    let lines = eventually("the gateway quarantine file", || async {
        let text = std::fs::read_to_string(&gateway.quarantine_path).unwrap_or_default();
        (text.lines().count() >= 2).then_some(text)
    })
    .await;
    let entries: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries[0]["reason"], "malformed");
    assert_eq!(entries[0]["topic"], "gw/gw-q/dev/L-8/sterilizer");
    assert_eq!(entries[1]["reason"], "foreign_gateway");

    // Both services are still up and serving.
    assert_eq!(get_text(&format!("{base}/healthz")).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_outside_the_scheme_are_kept_and_node_acks_do_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let Stack { ingest, .. } = start_stack(dir.path(), "gw-s").await;
    let base = format!("http://{}", ingest.http_addr);
    let (node, mut acks) = mqtt_client(ingest.mqtt_addr, "L-7").await;
    node.subscribe("gw/gw-s/ack/L-7", QoS::AtLeastOnce).await.unwrap();

    // Every depth the services subscribe to instead of `#` (one to eight levels),
    // and the place node acks had before they moved to a depth of their own.
    let stray = [
        ("stray", "unknown_topic"),
        ("gw/gw-s", "unknown_topic"),
        ("gw/gw-s/nonsense", "unknown_topic"),
        ("gw/gw-s/dev/L-7", "unknown_topic"),
        ("gw/gw-s/dev/L-7/teleport", "unknown_kind"),
        ("gw/gw-s/dev/L-7/ack", "unknown_kind"),
        ("gw/gw-s/dev/L-7/lift/extra", "unknown_topic"),
        ("a/b/c/d/e/f/g/h", "unknown_topic"),
    ];
    for (topic, _) in stray {
        node.publish(topic, QoS::AtLeastOnce, false, b"{}".to_vec())
            .await
            .unwrap();
    }
    node.publish("gw/gw-s/dev/L-7/lift", QoS::AtLeastOnce, false, lift_reading("L-7", 1))
        .await
        .unwrap();
    let ack = tokio::time::timeout(DEADLINE, acks.recv())
        .await
        .expect("the node ack")
        .unwrap();
    assert_eq!(ack.topic, "gw/gw-s/ack/L-7");

    // One more after the ack: had the ack come back to ingest, it would have been
    // read before this one.
    node.publish("after/the/ack", QoS::AtLeastOnce, false, b"{}".to_vec())
        .await
        .unwrap();
    let kept = eventually("every stray message quarantined", || async {
        let rows = get_json(&format!("{base}/api/quarantine")).await;
        (rows.as_array().unwrap().len() > stray.len()).then_some(rows)
    })
    .await;
    for (topic, reason) in stray {
        assert!(
            kept.as_array()
                .unwrap()
                .iter()
                .any(|r| r["source"] == topic && r["reason"] == reason),
            "{topic} kept as {reason}: {kept}"
        );
    }
    let metrics = get_text(&format!("{base}/metrics")).await;
    assert!(!metrics.contains(r#"topic="node_ack""#), "{metrics}");
}
