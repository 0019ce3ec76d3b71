//! Bad input is refused with a counted reason and kept, never dropped and never a crash.
//! The brokers here are open (anonymous, every topic): credentials would keep most of
//! this input out before the services see it (tests/mqtt_access.rs).
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
    let Stack { ingest, gateway, .. } = start_open_stack(dir.path(), "gw-q").await;
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
    let Stack { ingest, .. } = start_open_stack(dir.path(), "gw-s").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quarantine_api_pages_every_row_once_with_bounded_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let Stack { ingest, .. } = start_open_stack(dir.path(), "gw-p").await;
    let base = format!("http://{}", ingest.http_addr);
    let (junk, _) = mqtt_client(ingest.mqtt_addr, "junk-node").await;
    let sent = 120;
    for i in 0..sent {
        // Every tenth one large: the API shows its head and its whole length.
        let payload = if i % 10 == 0 {
            vec![b'{'; 100_000]
        } else {
            format!("junk {i}").into_bytes()
        };
        junk.publish("gw/gw-p/dev/J-1/lift", QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    eventually("every junk message quarantined", || async {
        let page = get_json(&format!("{base}/api/quarantine?limit=500")).await;
        (page.as_array().unwrap().len() >= sent).then_some(())
    })
    .await;

    let (mut ids, mut after, mut pages) = (Vec::new(), None::<i64>, 0);
    loop {
        let url = match after {
            None => format!("{base}/api/quarantine?limit=50"),
            Some(id) => format!("{base}/api/quarantine?limit=50&after={id}"),
        };
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        let next: Option<i64> = response
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let page: serde_json::Value = response.json().await.unwrap();
        pages += 1;
        let items = page.as_array().unwrap();
        assert!(items.len() <= 50);
        for row in items {
            ids.push(row["id"].as_i64().unwrap());
            let shown = row["payload"].as_str().unwrap().len();
            assert!(shown <= 4096, "{shown} bytes of payload in one row");
            if row["payload_bytes"] == 100_000 {
                assert_eq!(row["payload_truncated"], true);
                assert_eq!(shown, 4096);
            }
        }
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3, "120 rows in pages of 50");
    assert_eq!(ids.len(), sent, "every row");
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), sent, "each once");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");

    let refused = reqwest::get(format!("{base}/api/quarantine?limit=100000"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}
