//! The uplink sends no batch before ingest's broker has acknowledged its
//! subscription to the batch acks: an ack published before that is lost, and
//! the batch would wait `resend_after` for nothing.
//!
//! The upstream broker here is a scripted one on a real socket, so that the test
//! sees the exact order of the gateway's packets and decides when each answer
//! goes back. Readings wait in the gateway while its connection is still
//! unanswered: that is when a batch used to be queued ahead of the SUBSCRIBE.
use bytes::BytesMut;
use gridwatch_gateway::GatewayConfig;
use gridwatch_protocol::batch::BatchAck;
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{DeviceId, Envelope, EventKind, GatewayPresence, Kind, NodeEvent, SCHEMA_VERSION, Topic};
use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, MqttOptions, Packet, PubAck, Publish, QoS, SubAck, SubscribeReasonCode,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const GATEWAY: &str = "gw-order";
const READINGS: u64 = 3;
const DEADLINE: Duration = Duration::from_secs(20);

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The upstream end of the gateway's connection, one MQTT packet at a time.
struct Upstream {
    socket: TcpStream,
    buffer: BytesMut,
}

impl Upstream {
    async fn next(&mut self) -> Packet {
        loop {
            match Packet::read(&mut self.buffer, 1 << 20) {
                Ok(packet) => return packet,
                Err(rumqttc::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("the gateway sent a malformed packet: {e:?}"),
            }
            let read = tokio::time::timeout(DEADLINE, self.socket.read_buf(&mut self.buffer))
                .await
                .expect("the gateway went quiet")
                .unwrap();
            assert!(read > 0, "the gateway closed its uplink");
        }
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, 1 << 20).unwrap();
        self.socket.write_all(&out).await.unwrap();
    }
}

/// Starts a gateway whose uplink points at an upstream that does not answer yet,
/// and has a node hand it `READINGS` readings.
async fn gateway_with_waiting_readings(
    dir: &tempfile::TempDir,
) -> (gridwatch_gateway::Gateway, TcpListener, AsyncClient) {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = GatewayConfig::new(GATEWAY, upstream.local_addr().unwrap().into(), dir.path().to_path_buf());
    // Far beyond the deadline: a lost ack can only be recovered by a resend.
    config.resend_after = Duration::from_secs(600);
    config.linger = Duration::from_millis(1);
    let gateway = gridwatch_gateway::start(config).await.unwrap();

    let mut options = MqttOptions::new("node-order", "127.0.0.1", gateway.node_addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (node, mut events) = AsyncClient::new(options, 16);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let device = DeviceId::try_from("L-order").unwrap();
    let topic = Topic::Node {
        gateway: GATEWAY,
        device: &device,
        kind: Kind::Event,
    }
    .write()
    .to_string();
    for seq in 1..=READINGS {
        let body = NodeEvent {
            event: EventKind::AlarmButton,
            code: 0,
        };
        let envelope = Envelope::new(device.clone(), seq, 1_764_061_200_000 + seq, body);
        node.publish(topic.clone(), QoS::AtLeastOnce, false, json::encode(&envelope))
            .await
            .unwrap();
    }
    wait_until("the gateway to hold the readings", || {
        gateway.unacknowledged() == READINGS as usize
    })
    .await;
    // Not a wait for something to happen but room for a mistake to: fifty lingers
    // in which a forwarder that does not wait for the subscription would queue its
    // batch ahead of the SUBSCRIBE.
    tokio::time::sleep(Duration::from_millis(50)).await;
    (gateway, upstream, node)
}

fn presence_topic() -> String {
    Topic::GatewayPresence { gateway: GATEWAY }.write().to_string()
}

/// Accepts the gateway's connection and answers its CONNECT.
async fn accept(listener: &TcpListener) -> Upstream {
    let (socket, _) = tokio::time::timeout(DEADLINE, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut upstream = Upstream {
        socket,
        buffer: BytesMut::new(),
    };
    match upstream.next().await {
        Packet::Connect(..) => {}
        other => panic!("expected CONNECT, got {other:?}"),
    }
    upstream
        .send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)))
        .await;
    upstream
}

/// Answers packets until the first batch arrives, granting the subscription with
/// `grant`; returns the packet names in arrival order and the batch. The gateway's
/// presence (birth, heartbeats) is acknowledged and left out: it needs no subscription.
async fn until_first_batch(upstream: &mut Upstream, grant: SubscribeReasonCode) -> (Vec<&'static str>, Publish) {
    let mut order = Vec::new();
    loop {
        match upstream.next().await {
            Packet::Subscribe(s) => {
                order.push("SUBSCRIBE");
                upstream.send(Packet::SubAck(SubAck::new(s.pkid, vec![grant]))).await;
            }
            Packet::Publish(p) if p.topic == presence_topic() => {
                upstream.send(Packet::PubAck(PubAck::new(p.pkid))).await;
            }
            Packet::Publish(p) => {
                order.push("PUBLISH");
                upstream.send(Packet::PubAck(PubAck::new(p.pkid))).await;
                return (order, p);
            }
            Packet::PingReq => {}
            other => panic!("unexpected packet {other:?}"),
        }
    }
}

#[tokio::test]
async fn batches_wait_for_the_ack_subscription_and_their_acks_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, listener, _node) = gateway_with_waiting_readings(&dir).await;
    let mut upstream = accept(&listener).await;

    let (order, batch) = until_first_batch(&mut upstream, SubscribeReasonCode::Success(QoS::AtLeastOnce)).await;
    assert_eq!(
        order,
        ["SUBSCRIBE", "PUBLISH"],
        "a batch went out before the ack subscription"
    );
    assert_eq!(batch.topic, format!("gw/{GATEWAY}/batch"));

    // Ingest's answer, on the topic the gateway has just subscribed to.
    let sent: serde_json::Value = serde_json::from_slice(&batch.payload).unwrap();
    let ack = BatchAck {
        v: SCHEMA_VERSION,
        gateway: GATEWAY.to_string(),
        batch: sent["batch"].as_u64().unwrap(),
        stored: READINGS as u32,
        rejected: 0,
    };
    let ack_topic = Topic::BatchAck { gateway: GATEWAY }.write().to_string();
    upstream
        .send(Packet::Publish(Publish::new(
            ack_topic,
            QoS::AtMostOnce,
            json::encode(&ack),
        )))
        .await;
    wait_until("the batch ack to clear the outbox", || gateway.unacknowledged() == 0).await;
    gateway.stop().await;
}

#[tokio::test]
async fn a_refused_ack_subscription_does_not_hold_readings_back() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, listener, _node) = gateway_with_waiting_readings(&dir).await;
    let mut upstream = accept(&listener).await;

    let (order, batch) = until_first_batch(&mut upstream, SubscribeReasonCode::Failure).await;
    assert_eq!(order, ["SUBSCRIBE", "PUBLISH"]);
    let sent: serde_json::Value = serde_json::from_slice(&batch.payload).unwrap();
    assert_eq!(sent["readings"].as_array().unwrap().len(), READINGS as usize);
    // Unacknowledged, they stay in the outbox for the next resend.
    assert_eq!(gateway.unacknowledged(), READINGS as usize);
    gateway.stop().await;
}

/// Accepts the gateway's connection and returns its CONNECT's last will, answered.
async fn accept_with_will(listener: &TcpListener) -> (Upstream, Option<rumqttc::LastWill>) {
    let (socket, _) = tokio::time::timeout(DEADLINE, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut upstream = Upstream {
        socket,
        buffer: BytesMut::new(),
    };
    let will = match upstream.next().await {
        Packet::Connect(connect) => connect.last_will,
        other => panic!("expected CONNECT, got {other:?}"),
    };
    upstream
        .send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)))
        .await;
    (upstream, will)
}

/// Answers packets until a presence message arrives; returns whether it said online.
async fn next_presence(upstream: &mut Upstream) -> bool {
    loop {
        match upstream.next().await {
            Packet::Subscribe(s) => {
                let granted = vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)];
                upstream.send(Packet::SubAck(SubAck::new(s.pkid, granted))).await;
            }
            Packet::Publish(p) => {
                upstream.send(Packet::PubAck(PubAck::new(p.pkid))).await;
                if p.topic == presence_topic() {
                    let presence: GatewayPresence = json::decode(&p.payload, 512).unwrap();
                    assert_eq!(presence.gateway.as_str(), GATEWAY);
                    assert!(!p.retain, "brokers keep nothing retained");
                    return presence.online;
                }
            }
            Packet::PingReq => {}
            other => panic!("unexpected packet {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_gateway_announces_its_birth_on_every_connect_heartbeats_and_leaves_a_will() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = GatewayConfig::new(GATEWAY, listener.local_addr().unwrap().into(), dir.path().to_path_buf());
    config.heartbeat_every = Duration::from_millis(50);
    let gateway = gridwatch_gateway::start(config).await.unwrap();

    let (mut upstream, will) = accept_with_will(&listener).await;
    let will = will.expect("a last will in the CONNECT");
    assert_eq!(will.topic, presence_topic());
    let offline: GatewayPresence = json::decode(&will.message, 512).unwrap();
    assert!(!offline.online && !will.retain);
    assert!(next_presence(&mut upstream).await, "the birth");
    assert!(next_presence(&mut upstream).await, "a heartbeat");

    // The connection drops; rumqttc reconnects with a clean session and says nothing by
    // itself: the gateway announces its birth again.
    drop(upstream);
    let (mut upstream, will) = accept_with_will(&listener).await;
    assert!(will.is_some(), "the will again");
    assert!(next_presence(&mut upstream).await, "the birth after the reconnect");
    gateway.stop().await;
}
