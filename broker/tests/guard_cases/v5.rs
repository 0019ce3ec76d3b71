// The cases of `tests/guard_v5.rs` and `tests/hub_v5.rs`: included by both, each with its own
// `start_broker`.
use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{self, ConnectReturnCode, Packet};
use rumqttc::v5::mqttbytes::{QoS, v5::LastWill};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(20);

include!("fixture.rs");

fn start(guard: impl FnOnce(Arc<Credentials>) -> GuardConfig, links: &[&str]) -> Fixture {
    start_named("guardv5", guard, links)
}

fn options(addr: SocketAddr, client_id: &str, login: Option<(&str, &str)>) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(5));
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    options
}

/// Polls until the CONNACK: the connected client and its event loop, or the refusal.
async fn connect(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let (client, mut events) = AsyncClient::new(options, 100);
    let outcome = tokio::time::timeout(DEADLINE, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("no CONNACK and no error");
    outcome.map(|()| (client, events))
}

fn refused_with(outcome: Result<(AsyncClient, EventLoop), ConnectionError>) -> ConnectReturnCode {
    match outcome {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        Err(e) => panic!("expected a CONNACK refusal, got {e:?}"),
        Ok(_) => panic!("expected a CONNACK refusal, got a connection"),
    }
}

/// Polls `events` until the broker closes the connection; panics if it does not.
async fn closed(events: &mut EventLoop) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if events.poll().await.is_err() {
                return;
            }
        }
    })
    .await
    .expect("the broker did not close the connection");
}

/// Subscribes and polls until the SUBACK; returns its reason codes.
async fn subscribe(client: &AsyncClient, events: &mut EventLoop, filter: &str) -> Vec<v5::SubscribeReasonCode> {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Event::Incoming(Packet::SubAck(ack)) = events.poll().await.expect("connection open") {
                return ack.return_codes;
            }
        }
    })
    .await
    .expect("SUBACK")
}

/// A bare MQTT 5 client over rumqttc's v5 codec: exact packets in, every packet out.
struct RawV5 {
    stream: tokio::net::TcpStream,
    buf: BytesMut,
}

impl RawV5 {
    async fn connect(addr: SocketAddr, client_id: &str, login: Option<(&str, &str)>) -> Self {
        let mut connect = v5::Connect {
            keep_alive: 5,
            client_id: client_id.to_string(),
            clean_start: true,
            properties: None,
        };
        // Ask for broker→client aliases: what the client may receive is its own business.
        connect.properties = Some(v5::ConnectProperties {
            topic_alias_max: Some(10),
            ..v5::ConnectProperties::new()
        });
        let login = login.map(|(user, password)| v5::Login::new(user, password));
        let mut out = BytesMut::new();
        connect.write(&None, &login, &mut out).unwrap();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(&out).await.unwrap();
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, None).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next packet, or `None` once the broker closed the connection.
    async fn next(&mut self) -> Option<Packet> {
        tokio::time::timeout(DEADLINE, async {
            loop {
                match Packet::read(&mut self.buf, None) {
                    Ok(packet) => return Some(packet),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("{e}"),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("neither a packet nor a close")
    }

    async fn connack(&mut self) -> v5::ConnAck {
        match self.next().await {
            Some(Packet::ConnAck(ack)) => ack,
            other => panic!("expected a CONNACK, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_mqtt5_client_without_credentials_or_with_a_wrong_secret_gets_reason_bad_user_name_or_password() {
    let f = start(with_credentials, &[]);
    let addr = f.broker.addr;
    assert_eq!(
        refused_with(connect(options(addr, "anon", None)).await),
        ConnectReturnCode::BadUserNamePassword
    );
    assert_eq!(
        refused_with(connect(options(addr, "wrong", Some(("L-1", &f.l2_secret)))).await),
        ConnectReturnCode::BadUserNamePassword
    );
    assert!(connect(options(addr, "L-1", Some(("L-1", &f.l1_secret)))).await.is_ok());
}

#[tokio::test]
async fn an_mqtt5_node_of_another_gateway_gets_reason_not_authorized() {
    let f = start(
        |credentials| GuardConfig {
            auth: Auth::Credentials {
                credentials,
                nodes_of: Some("gw-2".into()),
            },
            ..GuardConfig::default()
        },
        &[],
    );
    assert_eq!(
        refused_with(connect(options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret)))).await),
        ConnectReturnCode::NotAuthorized
    );
}

#[tokio::test]
async fn an_mqtt5_will_outside_the_acl_gets_reason_not_authorized() {
    let f = start(with_credentials, &[]);
    let mut forged = options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret)));
    forged.set_last_will(LastWill::new(
        "gw/gw-1/dev/L-2/presence",
        "offline",
        QoS::AtLeastOnce,
        true,
        None,
    ));
    assert_eq!(refused_with(connect(forged).await), ConnectReturnCode::NotAuthorized);
}

#[tokio::test]
async fn mqtt5_enhanced_authentication_gets_reason_bad_authentication_method() {
    let f = start(with_credentials, &[]);
    let mut options = options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret)));
    options.set_authentication_method(Some("SCRAM-SHA-1".into()));
    assert_eq!(
        refused_with(connect(options).await),
        ConnectReturnCode::BadAuthenticationMethod
    );
}

#[tokio::test]
async fn a_client_id_taken_in_either_protocol_gets_reason_client_identifier_not_valid() {
    let f = start(with_credentials, &[]);
    let addr = f.broker.addr;
    let (_first, mut first_events) = connect(options(addr, "L-1", Some(("L-1", &f.l1_secret))))
        .await
        .unwrap();
    assert_eq!(
        refused_with(connect(options(addr, "L-1", Some(("L-1", &f.l1_secret)))).await),
        ConnectReturnCode::ClientIdentifierNotValid
    );
    // An MQTT 3.1.1 connection holds the id against an MQTT 5 one.
    let mut v4 = rumqttc::MqttOptions::new("L-2", addr.ip().to_string(), addr.port());
    v4.set_credentials("L-2", &f.l2_secret);
    let (_v4_client, mut v4_events) = rumqttc::AsyncClient::new(v4, 10);
    tokio::time::timeout(DEADLINE, async {
        while !matches!(
            v4_events.poll().await,
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))
        ) {}
    })
    .await
    .unwrap();
    assert_eq!(
        refused_with(connect(options(addr, "L-2", Some(("L-2", &f.l2_secret)))).await),
        ConnectReturnCode::ClientIdentifierNotValid
    );
    // The first connection was not kicked.
    let still = tokio::time::timeout(Duration::from_millis(300), first_events.poll()).await;
    assert!(!matches!(still, Ok(Err(_))), "{still:?}");
}

#[tokio::test]
async fn mqtt5_connections_beyond_the_limit_get_reason_server_unavailable() {
    let f = start(
        |credentials| GuardConfig {
            max_clients: 1,
            ..with_credentials(credentials)
        },
        &[],
    );
    let addr = f.broker.addr;
    let _first = connect(options(addr, "a", Some(("L-1", &f.l1_secret)))).await.unwrap();
    assert_eq!(
        refused_with(connect(options(addr, "b", Some(("L-2", &f.l2_secret)))).await),
        ConnectReturnCode::ServerUnavailable
    );
}

#[tokio::test]
async fn an_mqtt5_socket_that_sends_no_connect_is_closed_at_the_deadline() {
    let f = start(
        |credentials| GuardConfig {
            connect_timeout: Duration::from_millis(300),
            ..with_credentials(credentials)
        },
        &[],
    );
    // Half a CONNECT: the fixed header and the protocol name and level of MQTT 5.
    let mut stalled = tokio::net::TcpStream::connect(f.broker.addr).await.unwrap();
    stalled
        .write_all(&[0x10, 0x20, 0, 4, b'M', b'Q', b'T', b'T', 5])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let read = tokio::time::timeout(DEADLINE, stalled.read(&mut [0u8; 16]))
        .await
        .expect("still open after the deadline");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn an_mqtt5_node_publishing_outside_its_acl_is_cut_off_and_its_own_topic_goes_through() {
    let mut f = start(with_credentials, &["probe"]);
    let (mut tx, mut rx) = f.broker.take_link("probe").unwrap();
    tx.subscribe("gw/#").unwrap();
    for forged in ["gw/gw-1/dev/L-2/lift", "gw/gw-1/ack/L-2"] {
        let (client, mut events) = connect(options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret))))
            .await
            .unwrap();
        client.publish(forged, QoS::AtMostOnce, false, "{}").await.unwrap();
        closed(&mut events).await;
    }
    let (client, mut events) = connect(options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret))))
        .await
        .unwrap();
    client
        .publish("gw/gw-1/dev/L-1/lift", QoS::AtLeastOnce, false, "own")
        .await
        .unwrap();
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let delivered = tokio::time::timeout(DEADLINE, rx.next()).await.unwrap().unwrap();
    assert_eq!(&delivered.topic[..], b"gw/gw-1/dev/L-1/lift");
    assert_eq!(&delivered.payload[..], b"own");
}

#[tokio::test]
async fn an_mqtt5_subscription_outside_the_acl_closes_the_connection_and_its_own_ack_topic_is_granted() {
    let f = start(with_credentials, &[]);
    let (client, mut events) = connect(options(f.broker.addr, "reader", Some(("reader", &f.service_secret))))
        .await
        .unwrap();
    client.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    closed(&mut events).await;
    let (client, mut events) = connect(options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret))))
        .await
        .unwrap();
    let codes = subscribe(&client, &mut events, "gw/gw-1/ack/L-1").await;
    assert_eq!(codes, vec![v5::SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    client.subscribe("gw/gw-1/ack/L-2", QoS::AtLeastOnce).await.unwrap();
    closed(&mut events).await;
}

#[tokio::test]
async fn an_mqtt5_node_gets_what_the_service_publishes_on_its_ack_topic() {
    let mut f = start(with_credentials, &["acks"]);
    let (mut tx, _rx) = f.broker.take_link("acks").unwrap();
    let (client, mut events) = connect(options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret))))
        .await
        .unwrap();
    subscribe(&client, &mut events, "gw/gw-1/ack/L-1").await;
    // The gateway publishes node acks on a local link, as a 3.1.1-era publisher.
    tx.publish("gw/gw-1/ack/L-1", b"{\"seq\":7}".to_vec()).unwrap();
    let publish = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = events.poll().await.expect("connection open") {
                return p;
            }
        }
    })
    .await
    .expect("the ack");
    assert_eq!(&publish.topic[..], b"gw/gw-1/ack/L-1");
    assert_eq!(&publish.payload[..], b"{\"seq\":7}");
}

#[tokio::test]
async fn an_mqtt5_retained_publish_and_will_are_never_kept_for_later_subscribers() {
    let mut f = start(with_credentials, &["probe"]);
    let (mut tx, mut rx) = f.broker.take_link("probe").unwrap();
    tx.subscribe("gw/+/dev/+/presence").unwrap();
    let addr = f.broker.addr;
    let mut with_will = options(addr, "L-1", Some(("L-1", &f.l1_secret)));
    with_will.set_last_will(LastWill::new(
        "gw/gw-1/dev/L-1/presence",
        "offline",
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let (client, mut events) = connect(with_will).await.unwrap();
    client
        .publish("gw/gw-1/dev/L-1/presence", QoS::AtLeastOnce, true, "retained")
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        while !matches!(events.poll().await, Ok(Event::Incoming(Packet::PubAck(_)))) {}
    })
    .await
    .unwrap();
    // The connection dies: its will (sent with retain) goes out, and must not stay either.
    drop((client, events));
    for expected in [&b"retained"[..], b"offline"] {
        let seen = tokio::time::timeout(DEADLINE, rx.next()).await.unwrap().unwrap();
        assert_eq!(&seen.payload[..], expected);
    }
    let (reader, mut reader_events) = connect(options(addr, "reader", Some(("reader", &f.service_secret))))
        .await
        .unwrap();
    subscribe(&reader, &mut reader_events, "gw/+/dev/+/+").await;
    let (client, mut events) = connect(options(addr, "L-1b", Some(("L-1", &f.l1_secret))))
        .await
        .unwrap();
    client
        .publish("gw/gw-1/dev/L-1/lift", QoS::AtLeastOnce, false, "live")
        .await
        .unwrap();
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let first = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = reader_events.poll().await.expect("connection open") {
                return p;
            }
        }
    })
    .await
    .expect("a publish");
    assert_eq!(&first.payload[..], b"live", "a retained one came first: {first:?}");
}

#[tokio::test]
async fn the_mqtt5_connack_offers_no_topic_aliases_and_a_publish_with_one_closes_the_connection() {
    let mut f = start(with_credentials, &["probe"]);
    let (mut tx, mut rx) = f.broker.take_link("probe").unwrap();
    tx.subscribe("gw/#").unwrap();
    let mut node = RawV5::connect(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret))).await;
    let connack = node.connack().await;
    assert_eq!(connack.code, ConnectReturnCode::Success);
    assert_eq!(connack.properties.and_then(|p| p.topic_alias_max), None);
    // A topic and an alias for it: the guard could check this one, but not the next
    // that names the topic by the alias alone, so aliases are refused outright.
    let mut publish = v5::Publish::new("gw/gw-1/dev/L-1/lift", QoS::AtMostOnce, "aliased", None);
    publish.properties = Some(v5::PublishProperties {
        topic_alias: Some(1),
        ..Default::default()
    });
    node.send(Packet::Publish(publish)).await;
    assert_eq!(node.next().await, None, "still open after a topic alias");

    // Without an alias the same node's publish arrives, and nothing before it did.
    let mut node = RawV5::connect(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret))).await;
    assert_eq!(node.connack().await.code, ConnectReturnCode::Success);
    let publish = v5::Publish::new("gw/gw-1/dev/L-1/lift", QoS::AtLeastOnce, "plain", None);
    let mut publish = publish;
    publish.pkid = 1;
    node.send(Packet::Publish(publish)).await;
    assert!(matches!(node.next().await, Some(Packet::PubAck(_))));
    let delivered = tokio::time::timeout(DEADLINE, rx.next()).await.unwrap().unwrap();
    assert_eq!(&delivered.payload[..], b"plain");
}

#[tokio::test]
async fn an_open_broker_takes_anyone_over_mqtt5_with_every_topic() {
    let broker = start_broker("guardv5open", &BrokerConfig::default(), &[]);
    let (client, mut events) = connect(options(broker.addr, "anyone", None)).await.unwrap();
    let codes = subscribe(&client, &mut events, "#").await;
    assert_eq!(codes, vec![v5::SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
}
