// The cases of `tests/guard.rs` and `tests/hub.rs`: included by both, each with its own
// `start_broker`.
use gridwatch_broker::TlsFiles;
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

include!("fixture.rs");

fn start(guard: impl FnOnce(Arc<Credentials>) -> GuardConfig, links: &[&str]) -> Fixture {
    start_named("guardtest", guard, links)
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

/// Polls until a publish arrives on `events` (or `wait` passes: `None`).
async fn next_publish(events: &mut EventLoop, wait: Duration) -> Option<rumqttc::Publish> {
    tokio::time::timeout(wait, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => return Some(p),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Subscribes and polls until the SUBACK; returns its return codes.
async fn subscribe(client: &AsyncClient, events: &mut EventLoop, filter: &str) -> Vec<rumqttc::SubscribeReasonCode> {
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

#[tokio::test]
async fn a_client_without_credentials_or_with_a_wrong_secret_is_refused_with_its_connack_code() {
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
    assert_eq!(
        refused_with(connect(options(addr, "nobody", Some(("L-9", &f.l1_secret)))).await),
        ConnectReturnCode::BadUserNamePassword
    );
    assert!(connect(options(addr, "L-1", Some(("L-1", &f.l1_secret)))).await.is_ok());
}

#[tokio::test]
async fn a_gateways_broker_admits_only_its_own_nodes() {
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
async fn subscribing_to_everything_closes_the_connection() {
    let f = start(with_credentials, &[]);
    let (client, mut events) = connect(options(f.broker.addr, "reader", Some(("reader", &f.service_secret))))
        .await
        .unwrap();
    client.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    closed(&mut events).await;
    // The node's own ack topic is fine.
    let (client, mut events) = connect(options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret))))
        .await
        .unwrap();
    let codes = subscribe(&client, &mut events, "gw/gw-1/ack/L-1").await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    client.subscribe("gw/gw-1/ack/L-2", QoS::AtLeastOnce).await.unwrap();
    closed(&mut events).await;
}

#[tokio::test]
async fn a_node_publishing_under_another_nodes_topic_or_an_ack_is_cut_off_and_nothing_arrives() {
    let mut f = start(with_credentials, &["probe"]);
    let (mut tx, mut rx) = f.broker.take_link("probe").unwrap();
    tx.subscribe("gw/#").unwrap();
    let (client, mut events) = connect(options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret))))
        .await
        .unwrap();
    for forged in ["gw/gw-1/dev/L-2/lift", "gw/gw-1/ack", "gw/gw-1/ack/L-2"] {
        client.publish(forged, QoS::AtLeastOnce, false, "{}").await.unwrap();
        closed(&mut events).await;
        // Reconnects (rumqttc does on the next poll) and tries the next one.
        tokio::time::timeout(DEADLINE, async {
            while !matches!(events.poll().await, Ok(Event::Incoming(Packet::ConnAck(_)))) {}
        })
        .await
        .unwrap();
    }
    // Its own topic goes through: the first and only thing the probe sees.
    client
        .publish("gw/gw-1/dev/L-1/lift", QoS::AtLeastOnce, false, "own")
        .await
        .unwrap();
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let delivered = tokio::time::timeout(DEADLINE, rx.next()).await.unwrap().unwrap();
    assert_eq!(&delivered.topic[..], b"gw/gw-1/dev/L-1/lift");
}

#[tokio::test]
async fn a_retained_publish_is_never_kept_for_later_subscribers() {
    let f = start(with_credentials, &[]);
    let (client, mut events) = connect(options(f.broker.addr, "L-1", Some(("L-1", &f.l1_secret))))
        .await
        .unwrap();
    client
        .publish("gw/gw-1/dev/L-1/presence", QoS::AtLeastOnce, true, "retained")
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        while !matches!(events.poll().await, Ok(Event::Incoming(Packet::PubAck(_)))) {}
    })
    .await
    .unwrap();
    let (reader, mut reader_events) = connect(options(f.broker.addr, "reader", Some(("reader", &f.service_secret))))
        .await
        .unwrap();
    subscribe(&reader, &mut reader_events, "gw/+/dev/+/+").await;
    // A retained message is delivered right after the SUBACK; a live one proves delivery works.
    client
        .publish("gw/gw-1/dev/L-1/lift", QoS::AtLeastOnce, false, "live")
        .await
        .unwrap();
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let first = next_publish(&mut reader_events, DEADLINE).await.expect("a publish");
    assert_eq!(&first.payload[..], b"live", "the retained one came first: {first:?}");
}

#[tokio::test]
async fn a_second_connection_with_a_taken_client_id_is_refused_and_the_first_keeps_working() {
    let mut f = start(with_credentials, &["probe"]);
    let (mut tx, mut rx) = f.broker.take_link("probe").unwrap();
    tx.subscribe("gw/gw-1/batch").unwrap();
    let addr = f.broker.addr;
    let (client, mut events) = connect(options(addr, "gateway-gw-1", Some(("gw-1", &f.gw_secret))))
        .await
        .unwrap();
    assert_eq!(
        refused_with(connect(options(addr, "gateway-gw-1", Some(("gw-1", &f.gw_secret)))).await),
        ConnectReturnCode::BadClientId
    );
    // Another identity under the same client id has a session of its own.
    assert!(
        connect(options(addr, "gateway-gw-1", Some(("L-1", &f.l1_secret))))
            .await
            .is_ok()
    );
    client
        .publish("gw/gw-1/batch", QoS::AtLeastOnce, false, "b")
        .await
        .unwrap();
    let poll = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    });
    let delivered = tokio::time::timeout(DEADLINE, rx.next()).await.unwrap().unwrap();
    assert_eq!(&delivered.payload[..], b"b");
    assert!(!poll.is_finished(), "the first connection was dropped");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let f = start(
        |credentials| GuardConfig {
            max_clients: 2,
            ..with_credentials(credentials)
        },
        &[],
    );
    let addr = f.broker.addr;
    let _first = connect(options(addr, "a", Some(("L-1", &f.l1_secret)))).await.unwrap();
    let _second = connect(options(addr, "b", Some(("L-2", &f.l2_secret)))).await.unwrap();
    assert_eq!(
        refused_with(connect(options(addr, "c", Some(("gw-1", &f.gw_secret)))).await),
        ConnectReturnCode::ServiceUnavailable
    );
}

#[tokio::test]
async fn a_socket_that_sends_no_connect_is_closed_at_the_deadline() {
    use tokio::io::AsyncReadExt;
    let f = start(
        |credentials| GuardConfig {
            connect_timeout: Duration::from_millis(300),
            ..with_credentials(credentials)
        },
        &[],
    );
    let mut silent = tokio::net::TcpStream::connect(f.broker.addr).await.unwrap();
    let started = std::time::Instant::now();
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut [0u8; 16]))
        .await
        .expect("still open after the deadline");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn a_revoked_identity_is_cut_off_without_a_restart_and_refused_after() {
    let f = start(with_credentials, &[]);
    let addr = f.broker.addr;
    let (_client, mut events) = connect(options(addr, "L-1", Some(("L-1", &f.l1_secret))))
        .await
        .unwrap();
    let (_other, mut other_events) = connect(options(addr, "L-2", Some(("L-2", &f.l2_secret))))
        .await
        .unwrap();
    let mut file = CredentialsFile::load_or_empty(&f.path).unwrap();
    file.revoke("L-1").unwrap();
    file.save(&f.path).unwrap();
    closed(&mut events).await;
    assert_eq!(
        refused_with(connect(options(addr, "L-1", Some(("L-1", &f.l1_secret)))).await),
        ConnectReturnCode::BadUserNamePassword
    );
    // The other node's connection stays.
    let still = tokio::time::timeout(Duration::from_millis(300), other_events.poll()).await;
    assert!(!matches!(still, Ok(Err(_))), "{still:?}");
}

#[tokio::test]
async fn over_tls_a_client_certificate_names_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_cert = |cn: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let tls = TlsFiles {
        cert_chain: write("server.pem", &server.pem()),
        key: write("server.key", &server_key.serialize_pem()),
        client_ca: Some(write("ca.pem", &ca.pem())),
    };
    let f = start(
        |credentials| GuardConfig {
            tls: Some(tls),
            ..with_credentials(credentials)
        },
        &[],
    );
    let client_config = |cert: Option<(String, String)>| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            Some((cert, key)) => {
                use rustls::pki_types::pem::PemObject;
                let cert = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(vec![cert], key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    };
    let addr = f.broker.addr;
    // A certificate for a provisioned node: no password needed, and its ACL applies.
    let mut l1 = TlsMqtt::connect(addr, client_config(Some(client_cert("L-1"))), None).await;
    assert_eq!(l1.connack().await, Some(ConnectReturnCode::Success));
    assert!(l1.subscribe("gw/gw-1/ack/L-1").await, "its own ack topic");
    assert!(!l1.subscribe("gw/gw-1/ack/L-2").await, "another node's ack topic");
    // A signed certificate for no identity is refused; a password over TLS still works.
    let mut stranger = TlsMqtt::connect(addr, client_config(Some(client_cert("stranger"))), None).await;
    assert_eq!(stranger.connack().await, Some(ConnectReturnCode::BadUserNamePassword));
    let mut l2 = TlsMqtt::connect(addr, client_config(None), Some(("L-2", &f.l2_secret))).await;
    assert_eq!(l2.connack().await, Some(ConnectReturnCode::Success));
    // Plain MQTT on the TLS port gets nowhere.
    assert!(
        connect(options(addr, "plain", Some(("L-2", &f.l2_secret))))
            .await
            .is_err()
    );
}

/// A bare MQTT client over tokio-rustls, speaking through rumqttc's codec.
struct TlsMqtt {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: bytes::BytesMut,
}

impl TlsMqtt {
    async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>, login: Option<(&str, &str)>) -> Self {
        use rumqttc::mqttbytes::v4::Connect;
        use tokio::io::AsyncWriteExt;
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        let mut connect = Connect::new("tls-client");
        connect.keep_alive = 5;
        if let Some((user, password)) = login {
            connect.set_login(user, password);
        }
        let mut out = bytes::BytesMut::new();
        connect.write(&mut out).unwrap();
        stream.write_all(&out).await.unwrap();
        Self {
            stream,
            buf: bytes::BytesMut::new(),
        }
    }

    /// The next packet, or `None` once the broker closed the connection.
    async fn next(&mut self) -> Option<rumqttc::mqttbytes::v4::Packet> {
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(DEADLINE, async {
            loop {
                match rumqttc::mqttbytes::v4::Packet::read(&mut self.buf, 1 << 20) {
                    Ok(packet) => return Some(packet),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
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

    async fn connack(&mut self) -> Option<ConnectReturnCode> {
        match self.next().await? {
            rumqttc::mqttbytes::v4::Packet::ConnAck(ack) => Some(match ack.code {
                rumqttc::mqttbytes::v4::ConnectReturnCode::Success => ConnectReturnCode::Success,
                rumqttc::mqttbytes::v4::ConnectReturnCode::BadUserNamePassword => {
                    ConnectReturnCode::BadUserNamePassword
                }
                other => panic!("{other:?}"),
            }),
            other => panic!("{other:?}"),
        }
    }

    /// Whether the broker granted the subscription (SUBACK) rather than closing.
    async fn subscribe(&mut self, filter: &str) -> bool {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        rumqttc::mqttbytes::v4::Subscribe::new(filter, rumqttc::mqttbytes::QoS::AtLeastOnce)
            .write(&mut out)
            .unwrap();
        self.stream.write_all(&out).await.unwrap();
        matches!(self.next().await, Some(rumqttc::mqttbytes::v4::Packet::SubAck(_)))
    }
}

#[tokio::test]
async fn an_open_broker_takes_anyone_with_every_topic() {
    let config = BrokerConfig::default();
    assert!(matches!(config.guard.auth, Auth::Anonymous));
    let broker = start_broker("guardopen", &config, &[]);
    let (client, mut events) = connect(options(broker.addr, "anyone", None)).await.unwrap();
    let codes = subscribe(&client, &mut events, "#").await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
}

#[tokio::test]
async fn a_gateway_announces_only_its_own_presence_and_its_will_arrives_when_its_connection_dies() {
    let mut f = start(with_credentials, &["probe"]);
    let (mut tx, mut rx) = f.broker.take_link("probe").unwrap();
    tx.subscribe("gw/+/presence").unwrap();
    let addr = f.broker.addr;
    let will = |gw: &str| rumqttc::LastWill::new(format!("gw/{gw}/presence"), "offline", QoS::AtLeastOnce, false);

    // A will on another gateway's presence is refused at CONNECT.
    let mut forged = options(addr, "gateway-gw-1", Some(("gw-1", &f.gw_secret)));
    forged.set_last_will(will("gw-2"));
    assert_eq!(refused_with(connect(forged).await), ConnectReturnCode::NotAuthorized);
    // A node may not speak for its gateway.
    let (node, mut node_events) = connect(options(addr, "L-1", Some(("L-1", &f.l1_secret))))
        .await
        .unwrap();
    node.publish("gw/gw-1/presence", QoS::AtLeastOnce, false, "online")
        .await
        .unwrap();
    closed(&mut node_events).await;

    let mut own = options(addr, "gateway-gw-1", Some(("gw-1", &f.gw_secret)));
    own.set_last_will(will("gw-1"));
    let (client, mut events) = connect(own).await.unwrap();
    client
        .publish("gw/gw-1/presence", QoS::AtLeastOnce, false, "online")
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        while !matches!(events.poll().await, Ok(Event::Incoming(Packet::PubAck(_)))) {}
    })
    .await
    .unwrap();
    let birth = tokio::time::timeout(DEADLINE, rx.next()).await.unwrap().unwrap();
    assert_eq!(
        (&birth.topic[..], &birth.payload[..]),
        (&b"gw/gw-1/presence"[..], &b"online"[..])
    );
    // The connection dies without a DISCONNECT: the broker publishes the will.
    drop((client, events));
    let will = tokio::time::timeout(DEADLINE, rx.next()).await.unwrap().unwrap();
    assert_eq!(
        (&will.topic[..], &will.payload[..]),
        (&b"gw/gw-1/presence"[..], &b"offline"[..])
    );

    // A trusted reader (ingest on an external broker) may subscribe to every gateway's presence.
    let (reader, mut reader_events) = connect(options(addr, "reader", Some(("reader", &f.service_secret))))
        .await
        .unwrap();
    let codes = subscribe(&reader, &mut reader_events, "gw/+/presence").await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
}
