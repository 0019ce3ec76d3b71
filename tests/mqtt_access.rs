//! Identity at the MQTT edges, end to end: a forged batch ack from the network
//! cannot make the gateway drop readings, and ingest keeps a gateway to its own nodes.
mod common;
use common::*;
use gridwatch_ingest::Role;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::time::Duration;

/// A lift reading of `device` as a node publishes it.
fn lift_reading(device: &str, seq: u64) -> String {
    format!(
        r#"{{"v":1,"device":"{device}","seq":{seq},"ts":{T0},"body":{{"mode":"normal","motion":"stopped","door":"closed","door_zone":true,"floor":1,"occupied":false,"alarm":false,"fault":0,"power":"mains","runs":0,"door_cycles":0}}}}"#
    )
}

/// Publishes `payload` on `topic` as `id` and returns once the broker has closed the
/// connection (or panics if it keeps it open).
async fn publish_and_expect_cut_off(addr: std::net::SocketAddr, id: &str, secret: &str, topic: &str, payload: String) {
    let mut options = MqttOptions::new("forger", addr.ip().to_string(), addr.port());
    options.set_credentials(id, secret);
    let (client, mut events) = AsyncClient::new(options, 10);
    client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => panic!("the broker took the forged {topic}"),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    })
    .await
    .expect("the forger was not cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_batch_ack_from_the_network_is_refused_and_the_gateway_keeps_its_readings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.toml");
    let gw_secret = provision(&path, "gw-f", Role::Gateway, None);
    let node_secret = provision(&path, "L-1", Role::Node, Some("gw-f"));
    // An upstream broker that never acks by itself: the test decides when the batch is acked.
    let config = gridwatch_broker::BrokerConfig {
        guard: guard_with(&path),
        ..gridwatch_broker::BrokerConfig::default()
    };
    let mut upstream = gridwatch_broker::EmbeddedBroker::start("upstream", &config, &["ingest"]).unwrap();
    let (mut trusted, mut batches) = upstream.take_link("ingest").unwrap();
    trusted.subscribe("gw/gw-f/batch").unwrap();
    let uplink = gridwatch_mqtt::MqttUrl::from(upstream.addr).with_login("gw-f", &gw_secret);
    let mut gateway_config = gridwatch_gateway::GatewayConfig::new("gw-f", uplink, dir.path().join("gateway"));
    gateway_config.linger = Duration::from_millis(5);
    gateway_config.node_guard = guard_with(&path);
    let gateway = gridwatch_gateway::start(gateway_config).await.unwrap();

    let (node, _) = mqtt_client_as(gateway.node_addr, "L-1", "L-1", &node_secret).await;
    node.publish("gw/gw-f/dev/L-1/lift", QoS::AtLeastOnce, false, lift_reading("L-1", 1))
        .await
        .unwrap();
    let batch = tokio::time::timeout(DEADLINE, batches.next()).await.unwrap().unwrap();
    let batch: serde_json::Value = serde_json::from_slice(&batch.payload).unwrap();
    let ack = format!(
        r#"{{"v":1,"gateway":"gw-f","batch":{},"stored":1,"rejected":0}}"#,
        batch["batch"]
    );
    assert_eq!(gateway.unacknowledged(), 1);

    // Neither a node nor the gateway's own identity may publish a batch ack.
    publish_and_expect_cut_off(upstream.addr, "L-1", &node_secret, "gw/gw-f/ack", ack.clone()).await;
    publish_and_expect_cut_off(upstream.addr, "gw-f", &gw_secret, "gw/gw-f/ack", ack.clone()).await;
    assert_eq!(
        gateway.unacknowledged(),
        1,
        "a forged ack released an uncommitted reading"
    );

    // The same ack from the trusted side (ingest's local link) is taken: the forgery
    // was refused for who sent it, not for what it said.
    trusted.publish("gw/gw-f/ack", ack.into_bytes()).unwrap();
    eventually("the genuine ack", || async {
        (gateway.unacknowledged() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_the_gateways_own_nodes_and_quarantines_foreign_devices() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path(), "gw-m").await;
    let gw_secret = stack.provision("gw-m-2", Role::Gateway, None);
    stack.provision("L-1", Role::Node, Some("gw-m-2"));
    stack.provision("L-2", Role::Node, Some("gw-m"));
    // gw-m-2 speaks for its own L-1, gw-m's L-2 and the unknown X-9.
    let reading = |device: &str| {
        let envelope = lift_reading(device, 1);
        format!(r#"{{"kind":"lift",{}"#, &envelope[1..])
    };
    let batch = format!(
        r#"{{"v":1,"gateway":"gw-m-2","batch":1,"readings":[{},{},{}]}}"#,
        reading("L-1"),
        reading("L-2"),
        reading("X-9")
    );
    let (rogue, _) = mqtt_client_as(stack.ingest.mqtt_addr, "gateway-gw-m-2", "gw-m-2", &gw_secret).await;
    rogue
        .publish("gw/gw-m-2/batch", QoS::AtLeastOnce, false, batch)
        .await
        .unwrap();
    let base = format!("http://{}", stack.ingest.http_addr);
    let metrics = eventually("the batch committed", || async {
        let metrics = get_text(&format!("{base}/metrics")).await;
        metrics
            .contains(r#"gridwatch_ingest_rejected_total{reason="unknown_device"} 1"#)
            .then_some(metrics)
    })
    .await;
    assert!(
        metrics.contains(r#"gridwatch_ingest_rejected_total{reason="wrong_gateway"} 1"#),
        "{metrics}"
    );
    eventually("the member's reading stored", || async {
        (stack.ingest.store.reading_count().await.unwrap() == 1).then_some(())
    })
    .await;
}

/// Neither service starts a broker nobody has said who may use: without --credentials
/// (or an explicit --allow-anonymous) each exits with an error that says what to give.
#[test]
fn a_broker_without_credentials_or_an_explicit_open_flag_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for args in [
        vec![
            "ingest",
            "--open-api",
            "--data",
            data,
            "--http",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
        ],
        vec![
            "gateway",
            "--id",
            "gw-x",
            "--uplink",
            "mqtt://127.0.0.1:9",
            "--data",
            data,
            "--listen",
            "127.0.0.1:0",
        ],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gridwatch"))
            .args(&args)
            .env_remove("GRIDWATCH_CREDENTIALS")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} started: {stderr}", args[0]);
        assert!(
            stderr.contains("--credentials") && stderr.contains("--allow-anonymous"),
            "{}: {stderr}",
            args[0]
        );
    }
}
