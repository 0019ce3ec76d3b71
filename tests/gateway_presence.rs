//! Gateway presence end to end, with the real brokers, gateway and ingest on a
//! manual clock: the gateway's birth and heartbeats reach the alert engine, so a
//! quiet node behind a live gateway is reported itself; a gateway whose connection
//! dies is taken offline by its last will, and its alert stands for the node.
mod common;
use common::*;
use gridwatch_alerts::{AlertKind, Details};
use gridwatch_ingest::Role;
use rumqttc::QoS;
use std::time::Duration;

const GW: &str = "gw-p";

/// A lift reading of `device` at device time `ts`, as a node publishes it.
fn lift_reading(device: &str, seq: u64, ts: u64) -> String {
    format!(
        r#"{{"v":1,"device":"{device}","seq":{seq},"ts":{ts},"body":{{"mode":"normal","motion":"stopped","door":"closed","door_zone":true,"floor":1,"occupied":false,"alarm":false,"fault":0,"power":"mains","runs":0,"door_cycles":0}}}}"#
    )
}

/// Ingest on a manual clock at [`T0`] and gateway [`GW`] heartbeating every 50 ms of
/// wall time, both brokers with credentials; the node secret of `L-1`.
async fn start(dir: &std::path::Path) -> (Stack, String) {
    let path = dir.join("credentials.toml");
    let gateway_secret = provision(&path, GW, Role::Gateway, None);
    let node_secret = provision(&path, "L-1", Role::Node, Some(GW));
    let clock = gridwatch_protocol::clock::ManualClock::new(T0);
    let mut config = gridwatch_ingest::IngestConfig::embedded(dir);
    config.clock = std::sync::Arc::new(clock.clone());
    config.tick_every = Duration::from_secs(3600);
    config.mqtt_guard = guard_with(&path);
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let uplink = gridwatch_mqtt::MqttUrl::from(ingest.mqtt_addr).with_login(GW, &gateway_secret);
    let mut config = gridwatch_gateway::GatewayConfig::new(GW, uplink, dir.join("gateway"));
    config.linger = Duration::from_millis(5);
    config.heartbeat_every = Duration::from_millis(50);
    config.node_guard = guard_with(&path);
    let gateway = gridwatch_gateway::start(config).await.unwrap();
    let stack = Stack {
        ingest,
        gateway,
        clock,
        credentials: Some(path),
    };
    (stack, node_secret)
}

/// The gateway's presence as the engine knows it: (online, ingest time it came).
async fn presence(ingest: &gridwatch_ingest::Ingest) -> Option<(bool, u64)> {
    let domain = ingest.domain().lock().await;
    let g = domain.engine().state().gateways.get(GW)?;
    g.presence.zip(g.presence_at)
}

/// The open alerts as (id, kind).
async fn open_alerts(ingest: &gridwatch_ingest::Ingest) -> Vec<(String, AlertKind)> {
    let domain = ingest.domain().lock().await;
    domain
        .engine()
        .open_alerts()
        .iter()
        .map(|a| (a.key.device.clone(), a.key.kind))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_gateway_reports_its_quiet_node_and_its_last_will_takes_it_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (stack, node_secret) = start(dir.path()).await;
    let Stack {
        ingest, gateway, clock, ..
    } = stack;
    use gridwatch_protocol::clock::Clock;

    // The birth reaches ingest.
    eventually("the gateway's birth", || async {
        (presence(&ingest).await == Some((true, T0))).then_some(())
    })
    .await;

    // L-1 reports once, then goes quiet.
    let (node, _) = mqtt_client_as(gateway.node_addr, "L-1", "L-1", &node_secret).await;
    node.publish(
        "gw/gw-p/dev/L-1/lift",
        QoS::AtLeastOnce,
        false,
        lift_reading("L-1", 1, T0),
    )
    .await
    .unwrap();
    eventually("L-1's reading in the engine", || async {
        let domain = ingest.domain().lock().await;
        domain.engine().monitor("L-1").and_then(|m| m.last_reading).map(|_| ())
    })
    .await;
    drop(node);

    // Six minutes in 30 s steps, each ticked once a heartbeat has come at that time.
    for _ in 0..12 {
        clock.advance(30_000);
        let now = clock.now_ms();
        eventually("a heartbeat at the new time", || async {
            presence(&ingest)
                .await
                .is_some_and(|(online, at)| online && at >= now)
                .then_some(())
        })
        .await;
        ingest.tick().await;
    }
    assert_eq!(
        open_alerts(&ingest).await,
        [("L-1".to_string(), AlertKind::DeviceOffline)],
        "the node is quiet, the gateway is not"
    );

    // The gateway's connection dies without a DISCONNECT: its last will arrives.
    gateway.stop().await;
    eventually("the gateway's last will", || async {
        presence(&ingest).await.is_some_and(|(online, _)| !online).then_some(())
    })
    .await;
    clock.advance(1_000);
    ingest.tick().await;
    let gateway_alert = {
        let domain = ingest.domain().lock().await;
        let alerts = domain.engine().open_alerts();
        let alert = alerts
            .iter()
            .find(|a| a.key.kind == AlertKind::GatewayOffline)
            .expect("gateway_offline raised");
        (alert.key.device.clone(), alert.details.clone())
    };
    assert_eq!(gateway_alert, (GW.to_string(), Details::GatewayOffline { devices: 1 }));
    // The gateway's alert stands for its node: L-1's own clears after the minimum clear time.
    clock.advance(61_000);
    ingest.tick().await;
    assert_eq!(
        open_alerts(&ingest).await,
        [(GW.to_string(), AlertKind::GatewayOffline)]
    );
    ingest.stop().await;
}
