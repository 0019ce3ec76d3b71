//! A node's own MQTT code against a real gateway: the firmware's session, outbox and
//! rust-mqtt client (`gridwatch_firmware::mqtt_client`, MQTT 5, the code the board
//! runs) over a tokio socket adapted to embedded-io-async, in the loop the board runs
//! (`board::node_loop`) on the wall clock. The gateway's broker has credentials, as in
//! the field, and its uplink leads nowhere: a node is acknowledged once its reading
//! is on the gateway's disk, before anything goes upstream.
use embedded_io_adapters::tokio_1::FromTokio;
use gridwatch_broker::{Auth, Credentials, CredentialsFile, Role};
use gridwatch_firmware::backoff::BackoffConfig;
use gridwatch_firmware::mqtt_client::{BumpBuffer, LinkDown, MqttClient, RECEIVE_BUFFER};
use gridwatch_firmware::outbox::Outbox;
use gridwatch_firmware::record::NodeMessage;
use gridwatch_firmware::session::{Action, Received, Session, SessionConfig};
use gridwatch_firmware::storage::{RamStorage, storage_bytes};
use gridwatch_gateway::GatewayConfig;
use gridwatch_protocol::{DeviceKind, EventKind, NodeEvent};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;

const GATEWAY: &str = "gw-m5";
const DEVICE: &str = "L-m5";
const DEADLINE: Duration = Duration::from_secs(30);
const CAPACITY: usize = 32;

type Transport = FromTokio<TcpStream>;
type Storage = RamStorage<{ storage_bytes(CAPACITY) }>;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A gateway whose broker admits the provisioned node; the node's secret.
struct Site {
    _dir: tempfile::TempDir,
    gateway: gridwatch_gateway::Gateway,
    secret: String,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.toml");
    let mut file = CredentialsFile::default();
    let secret = file.add(DEVICE, Role::Node, Some(GATEWAY), 1).unwrap();
    file.add("L-other", Role::Node, Some(GATEWAY), 1).unwrap();
    file.save(&path).unwrap();
    // Nothing listens upstream: the uplink retries in the background.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = GatewayConfig::new(GATEWAY, nowhere.into(), dir.path().join("data"));
    std::fs::create_dir_all(&config.data_dir).unwrap();
    config.node_guard.auth = Auth::Credentials {
        credentials: Arc::new(Credentials::open(&path).unwrap()),
        nodes_of: None,
    };
    let gateway = gridwatch_gateway::start(config).await.unwrap();
    Site {
        _dir: dir,
        gateway,
        secret,
    }
}

/// The node: its session and outbox as the firmware has them, and the board's client.
struct Node<'b> {
    broker: SocketAddr,
    session: Session,
    outbox: Outbox<Storage, CAPACITY>,
    client: MqttClient<'b, Transport>,
    /// The seqs of the acks it took, in order.
    acks: Vec<u64>,
}

impl<'b> Node<'b> {
    fn new(broker: SocketAddr, secret: &str, buffer: &'b mut BumpBuffer<'b>) -> Self {
        let mut config = SessionConfig::new(GATEWAY, DEVICE, DeviceKind::Lift).unwrap();
        // As the node's persistent identity holds it (`gridwatch_firmware::identity`).
        config.secret = Some(secret.try_into().unwrap());
        // Short back-off: the reconnect is what the test waits for.
        config.backoff = BackoffConfig {
            initial_ms: 50,
            max_ms: 400,
            jitter_permille: 0,
        };
        Self {
            broker,
            session: Session::new(config),
            outbox: Outbox::open(Storage::new(), 0).unwrap(),
            client: MqttClient::new(buffer),
            acks: Vec::new(),
        }
    }

    /// A reading, as the node's sensing code hands it over: the outbox gives it its seq.
    fn read(&mut self, code: u16) -> u64 {
        let event = NodeMessage::Event(NodeEvent {
            event: EventKind::AlarmButton,
            code,
        });
        self.outbox.push(now_ms(), event)
    }

    /// Carries out the session's actions until it has nothing to send; its wake time.
    async fn send(&mut self) -> u64 {
        loop {
            let now = now_ms();
            let outcome: Result<bool, LinkDown> = match self.session.next_action(now, &self.outbox) {
                Action::Wait { until_ms } => return until_ms,
                Action::Connect(request) => match TcpStream::connect(self.broker).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        self.client
                            .connect(FromTokio::new(stream), &request)
                            .await
                            .map(|()| true)
                    }
                    Err(_) => Err(LinkDown),
                },
                Action::Subscribe { topic } => self.client.subscribe(topic).await.map(|()| false),
                Action::Publish(message) => self.client.publish(&message).await.map(|()| false),
                Action::Ping => self.client.ping().await.map(|()| false),
            };
            match outcome {
                Ok(true) => self.session.connected(now, &mut self.outbox),
                Ok(false) => self.session.sent(now),
                Err(LinkDown) => {
                    drop(self.client.drop_connection().await);
                    self.session.disconnected(now);
                }
            }
        }
    }

    /// Runs the board's node loop until `done` holds: send, then sleep until the
    /// session's wake time or until a packet arrives, and hand it to the session.
    async fn run_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        tokio::time::timeout(DEADLINE, async {
            while !done(self) {
                let wake_ms = self.send().await;
                let sleep = tokio::time::sleep(Duration::from_millis(wake_ms.saturating_sub(now_ms())));
                if !self.session.is_connected() {
                    sleep.await;
                    continue;
                }
                let incoming = tokio::select! {
                    () = sleep => Ok(()),
                    header = self.client.next_header() => match header {
                        Ok(header) => {
                            let (session, outbox, acks) = (&mut self.session, &mut self.outbox, &mut self.acks);
                            self.client
                                .read_packet(header, |topic, payload| {
                                    if let Received::Ack { seq, .. } = session.received(topic, payload, now_ms(), outbox) {
                                        acks.push(seq);
                                    }
                                })
                                .await
                        }
                        Err(e) => Err(e),
                    },
                };
                if incoming.is_err() {
                    drop(self.client.drop_connection().await);
                    self.session.disconnected(now_ms());
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    /// The network goes away under the node: the socket closes without a DISCONNECT,
    /// and whatever the gateway sent since the node last read is lost with it.
    async fn lose_connection(&mut self) {
        let transport = self.client.drop_connection().await.expect("connected");
        drop(transport);
        self.session.disconnected(now_ms());
    }
}

#[tokio::test]
async fn the_firmwares_mqtt5_client_is_acked_by_the_gateway_and_replays_what_a_lost_connection_left_unacked() {
    let site = site().await;
    let mut memory = [0u8; RECEIVE_BUFFER];
    let mut buffer = BumpBuffer::new(&mut memory);
    let mut node = Node::new(site.gateway.node_addr, &site.secret, &mut buffer);

    // Connected: the birth takes seq 1, the readings 2-6; each acked from the ack topic.
    for code in 1..=5 {
        node.read(code);
    }
    node.run_until("the first readings' acks", |n| n.outbox.is_empty())
        .await;
    assert_eq!(node.session.stats().connects, 1);
    assert_eq!(node.acks.last(), Some(&6), "acks: {:?}", node.acks);
    assert!(
        node.acks.windows(2).all(|w| w[0] < w[1]),
        "acks go forward: {:?}",
        node.acks
    );

    // Five more go out, and the connection is lost before the node reads their acks.
    let last_before_cut = (6..=10).map(|code| node.read(code)).last().unwrap();
    assert_eq!(last_before_cut, 11);
    node.send().await;
    assert_eq!(node.session.stats().published, 6 + 5, "every reading was sent once");
    node.lose_connection().await;
    assert_eq!(node.outbox.len(), 5, "nothing of 7-11 was acked on the node");

    // Reconnected (a new birth, seq 12), it replays 7-11 and all of them are acked.
    node.run_until("the replay's acks", |n| n.outbox.is_empty()).await;
    assert!(node.session.stats().connects >= 2);
    assert!(
        node.session.stats().published >= 11 + 6,
        "7-12 went out after the reconnect"
    );
    assert_eq!(node.acks.last(), Some(&12), "acks: {:?}", node.acks);

    // The gateway holds every reading once: 12 seqs, none twice, none refused.
    assert_eq!(site.gateway.unacknowledged(), 12);
    let quarantined = std::fs::read_to_string(&site.gateway.quarantine_path).unwrap_or_default();
    assert!(quarantined.is_empty(), "quarantined: {quarantined}");
}

#[tokio::test]
async fn the_firmwares_mqtt5_client_with_a_wrong_secret_is_refused_with_reason_bad_user_name_or_password() {
    let site = site().await;
    let mut memory = [0u8; RECEIVE_BUFFER];
    let mut buffer = BumpBuffer::new(&mut memory);
    let mut node = Node::new(site.gateway.node_addr, "not-the-secret", &mut buffer);
    let Action::Connect(request) = node.session.next_action(now_ms(), &node.outbox) else {
        panic!("a new session connects first")
    };
    let stream = TcpStream::connect(node.broker).await.unwrap();
    let outcome = node.client.connect(FromTokio::new(stream), &request).await;
    assert_eq!(outcome, Err(LinkDown));
    assert_eq!(node.client.refusal(), Some(0x86), "MQTT 5: bad user name or password");
}

#[tokio::test]
async fn the_firmwares_mqtt5_client_publishing_as_another_node_is_cut_off() {
    let site = site().await;
    let mut memory = [0u8; RECEIVE_BUFFER];
    let mut buffer = BumpBuffer::new(&mut memory);
    let mut node = Node::new(site.gateway.node_addr, &site.secret, &mut buffer);
    node.run_until("the birth's ack", |n| n.session.stats().acks > 0 && n.outbox.is_empty())
        .await;
    let forged = gridwatch_firmware::session::Publish {
        topic: "gw/gw-m5/dev/L-other/event",
        payload: br#"{"v":1,"device":"L-other","seq":1,"ts":1764061200000,"event":"alarm_button","code":0}"#,
        retain: false,
    };
    node.client.publish(&forged).await.unwrap();
    let closed = tokio::time::timeout(DEADLINE, async {
        while let Ok(header) = node.client.next_header().await {
            if node.client.read_packet(header, |_, _| {}).await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the gateway kept the connection open");
}
