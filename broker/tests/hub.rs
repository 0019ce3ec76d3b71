//! The guard's MQTT 3.1.1 cases (`tests/guard.rs`) with the guard serving its clients
//! itself, as the gateway's node side does (the hub), instead of relaying to rumqttd.

/// The hub has one in-process link; cases that ask for none get one they do not use.
fn start_broker(
    name: &str,
    config: &gridwatch_broker::BrokerConfig,
    links: &[&str],
) -> gridwatch_broker::EmbeddedBroker {
    gridwatch_broker::EmbeddedBroker::start_hub(name, config, links.first().copied().unwrap_or("unused")).unwrap()
}

include!("guard_cases/v4.rs");

#[tokio::test]
async fn a_persistent_session_keeps_its_subscription_across_a_reconnect() {
    let mut f = start(with_credentials, &["intake"]);
    let (mut tx, _rx) = f.broker.take_link("intake").unwrap();
    let mut persistent = options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret)));
    persistent.set_clean_session(false);
    let (client, mut events) = connect(persistent.clone()).await.unwrap();
    subscribe(&client, &mut events, "gw/gw-1/ack/L-1").await;
    drop((client, events));
    // rumqttc does not subscribe again after a reconnect: the session must.
    let present = tokio::time::timeout(DEADLINE, async {
        loop {
            let (_client, mut events) = AsyncClient::new(persistent.clone(), 10);
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return (ack.session_present, events),
                // The first connection may not be gone yet: its id is still taken.
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .unwrap();
    let (session_present, mut events) = present;
    assert!(session_present);
    tx.publish("gw/gw-1/ack/L-1", "{\"seq\":7}").unwrap();
    let ack = next_publish(&mut events, DEADLINE).await.expect("the ack");
    assert_eq!(&ack.payload[..], b"{\"seq\":7}");
}

#[tokio::test]
async fn a_client_silent_for_one_and_a_half_keep_alives_is_closed_and_its_will_delivered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut f = start(with_credentials, &["intake"]);
    let (mut tx, mut rx) = f.broker.take_link("intake").unwrap();
    tx.subscribe("gw/+/dev/+/presence").unwrap();
    let mut connect = rumqttc::mqttbytes::v4::Connect::new("L-1");
    connect.keep_alive = 1;
    connect.set_login("L-1", f.l1_secret.clone());
    connect.last_will = Some(rumqttc::mqttbytes::v4::LastWill::new(
        "gw/gw-1/dev/L-1/presence",
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    let mut bytes = bytes::BytesMut::new();
    connect.write(&mut bytes).unwrap();
    let mut silent = tokio::net::TcpStream::connect(f.broker.addr).await.unwrap();
    silent.write_all(&bytes).await.unwrap();
    let started = std::time::Instant::now();
    let mut connack = [0u8; 4];
    silent.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut [0u8; 16]))
        .await
        .expect("still open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    let will = tokio::time::timeout(DEADLINE, rx.next()).await.unwrap().unwrap();
    assert_eq!(&will.payload[..], b"offline");
}
