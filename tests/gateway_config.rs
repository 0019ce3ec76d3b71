//! `gridwatch gateway --config FILE`: a gateway run from its TOML file alone relays a
//! node's reading to ingest, and a bad file stops it naming the file, the key and what
//! was expected.
mod common;
use common::faults::{mqtt_addr, spawn};
use common::*;
use gridwatch_protocol::{DeviceId, Envelope, EventKind, NodeEvent};
use rumqttc::QoS;
use std::net::SocketAddr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_from_its_config_file_relays_a_node_reading_to_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.toml");
    let gw_secret = provision(&credentials, "gw-f", gridwatch_ingest::Role::Gateway, None);
    let node_secret = provision(&credentials, "node-f", gridwatch_ingest::Role::Node, Some("gw-f"));
    let data = dir.path().join("ingest");
    let (_ingest, line) = spawn(
        &[
            "ingest",
            "--open-api",
            "--http",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
            "--credentials",
            credentials.to_str().unwrap(),
        ],
        "ingest:",
    );
    let ingest_mqtt = mqtt_addr(&line);
    // Paths relative to the file: the gateway's directory moves as a whole.
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "id = \"gw-f\"\nlisten = \"127.0.0.1:0\"\ndata = \"gateway-data\"\n\
             [uplink]\nurl = \"mqtt://gw-f:{gw_secret}@{ingest_mqtt}\"\n\
             [nodes]\ncredentials = \"credentials.toml\"\n\
             [outbox]\nmax_readings = 10000\nmax_mib = 16\n"
        ),
    )
    .unwrap();
    let (_gateway, line) = spawn(&["gateway", "--config", config.to_str().unwrap()], "gateway:");
    let node_addr: SocketAddr = mqtt_addr(&line).parse().unwrap();
    assert!(
        dir.path().join("gateway-data").is_dir(),
        "the data directory is the file's"
    );

    let (node, mut acks) = mqtt_client_as(node_addr, "node-f", "node-f", &node_secret).await;
    node.subscribe("gw/gw-f/ack/node-f", QoS::AtLeastOnce).await.unwrap();
    let body = NodeEvent {
        event: EventKind::AlarmButton,
        code: 0,
    };
    let payload = serde_json::to_vec(&Envelope::new(DeviceId::try_from("node-f").unwrap(), 1, T0, body)).unwrap();
    // Until the ack subscription is in place a publish may be acknowledged unheard: resend, as a node does.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        node.publish("gw/gw-f/dev/node-f/event", QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(std::time::Duration::from_millis(500), acks.recv()).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the node's ack"
        );
    }
    let db = format!("sqlite://{}/gridwatch.db", data.display());
    eventually("the reading stored by ingest", || async {
        let pool = sqlx::SqlitePool::connect(&db).await.ok()?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings WHERE device_id = 'node-f'")
            .fetch_one(&pool)
            .await
            .ok()?;
        pool.close().await;
        (n == 1).then_some(())
    })
    .await;
}

#[test]
fn a_bad_config_file_stops_the_gateway_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        "id = \"gw-x\"\n[uplink]\nurl = \"mqtt://127.0.0.1:9\"\n[nodes]\nallow_anonymous = true\n[outbox]\nmax_gb = 1\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(["gateway", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("gw.toml") && stderr.contains("max_gb") && stderr.contains("expected"),
        "{stderr}"
    );
}
