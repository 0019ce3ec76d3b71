//! The MQTT session, independent of any MQTT client or network stack ("sans I/O").
//!
//! [`Session::next_action`] says what to do next; the caller does it with whatever
//! client it has and reports back with [`Session::connected`], [`Session::sent`],
//! [`Session::disconnected`] and [`Session::received`]. The session owns the policy:
//!
//! - the last will is `Presence { online: false }`, retained, on `gw/{gw}/dev/{id}/presence`;
//! - after every connect: subscribe to `gw/{gw}/ack/{id}`, publish
//!   `Presence { online: true }` (retained), queue a `Birth` reading, then replay the
//!   buffer oldest first, so readings (the birth included) leave in `seq` order;
//! - reconnects back off exponentially (with per-device jitter);
//! - when no ack arrives for `resend_after_ms` while connected, everything unacknowledged
//!   is sent again (duplicates are harmless upstream; silence is not);
//! - a PINGREQ goes out when nothing else was sent for half the keep-alive.
//!
//! [`Transport`] + [`Session::service`] drive the same state machine for a client with
//! non-blocking calls (tests, blocking hosts); an async board loop matches on
//! [`Action`] directly.
use crate::backoff::{Backoff, BackoffConfig, seed_from};
use crate::outbox::Outbox;
use crate::record::NodeMessage;
use embedded_storage::Storage;
use gridwatch_protocol::topic::TopicBuf;
use gridwatch_protocol::validate::valid_device_id;
use gridwatch_protocol::{
    Birth, DecodeError, DeviceId, DeviceKind, Kind, MAX_MESSAGE_BYTES, NodeAck, Presence, SCHEMA_VERSION, Topic,
    decode, encode,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub gateway: DeviceId,
    pub device: DeviceId,
    pub device_kind: DeviceKind,
    /// Reported in the birth message.
    pub firmware: heapless::String<16>,
    pub keep_alive_s: u16,
    pub backoff: BackoffConfig,
    /// Send every unacknowledged reading again after this long without an ack.
    pub resend_after_ms: u32,
    /// The node's MQTT secret, sent on every connect with the device id as username
    /// (from its persistent identity, `crate::identity`); `None`: anonymous.
    pub secret: Option<heapless::String<{ crate::identity::MAX_SECRET }>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// Gateway or device id is empty, too long or has characters outside `A-Z a-z 0-9 - _ .`.
    BadId,
}

impl SessionConfig {
    /// Defaults: keep-alive 30 s, back-off 1 s doubling to 60 s (±20 %), resend after 30 s.
    pub fn new(gateway: &str, device: &str, device_kind: DeviceKind) -> Result<Self, ConfigError> {
        if !valid_device_id(gateway) || !valid_device_id(device) {
            return Err(ConfigError::BadId);
        }
        let id = |s: &str| DeviceId::try_from(s).map_err(|_| ConfigError::BadId);
        // Versions longer than the protocol's 16 bytes are reported empty rather than cut.
        let firmware = heapless::String::try_from(env!("CARGO_PKG_VERSION")).unwrap_or_default();
        Ok(Self {
            gateway: id(gateway)?,
            device: id(device)?,
            device_kind,
            firmware,
            keep_alive_s: 30,
            backoff: BackoffConfig::default(),
            resend_after_ms: 30_000,
            secret: None,
        })
    }

    /// The session of a node with this persistent identity, logging in with its secret.
    pub fn for_identity(
        identity: &crate::identity::NodeIdentity,
        device_kind: DeviceKind,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::new(&identity.gateway, &identity.device, device_kind)?;
        config.secret = identity.secret.clone();
        Ok(config)
    }
}

/// One MQTT PUBLISH. QoS is the transport's choice (QoS 1 recommended); delivery is
/// guaranteed by the application-level acks, not by the QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub retain: bool,
}

/// Parameters of an MQTT CONNECT: a clean session with the presence last will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest<'a> {
    /// Also the username when there is a password.
    pub client_id: &'a str,
    pub password: Option<&'a str>,
    pub keep_alive_s: u16,
    pub will: Publish<'a>,
}

/// What the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Open a connection; report [`Session::connected`] or [`Session::disconnected`].
    Connect(ConnectRequest<'a>),
    /// Subscribe (QoS 1); report [`Session::sent`].
    Subscribe { topic: &'a str },
    /// Publish; report [`Session::sent`].
    Publish(Publish<'a>),
    /// Send a PINGREQ; report [`Session::sent`].
    Ping,
    /// Nothing to send: sleep until `until_ms` or until a message arrives or the node
    /// has something new, then ask again.
    Wait { until_ms: u64 },
}

/// What an incoming message meant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Received {
    /// An ack for this node: `dropped` records left the buffer.
    Ack { seq: u64, dropped: usize },
    /// Not a topic this node listens to.
    Ignored,
    /// On the ack topic but malformed or for another device.
    Rejected(Option<DecodeError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    pub connects: u32,
    pub connect_failures: u32,
    pub disconnects: u32,
    pub published: u32,
    pub acks: u32,
    pub rejected: u32,
    pub resends: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Subscribe,
    AnnouncePresence,
    Stream,
}

/// State of an open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Connection {
    step: Step,
    /// Seq of the last reading published on this connection (0: none yet).
    cursor: u64,
    last_tx_ms: u64,
    resend_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Down { retry_at_ms: u64 },
    Up(Connection),
}

/// What the last action was, applied when the caller reports it [`Session::sent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Nothing,
    Step(Step),
    Record(u64),
}

pub struct Session {
    config: SessionConfig,
    backoff: Backoff,
    link: Link,
    pending: Pending,
    ack_topic: TopicBuf,
    presence_topic: TopicBuf,
    reading_topic: TopicBuf,
    offline: heapless::Vec<u8, 96>,
    online: heapless::Vec<u8, 96>,
    payload: [u8; MAX_MESSAGE_BYTES],
    stats: SessionStats,
}

/// Ways to talk MQTT without blocking, for [`Session::service`].
pub trait Transport {
    type Error;
    fn connect(&mut self, request: &ConnectRequest<'_>) -> Result<(), Self::Error>;
    fn subscribe(&mut self, topic: &str) -> Result<(), Self::Error>;
    fn publish(&mut self, message: &Publish<'_>) -> Result<(), Self::Error>;
    fn ping(&mut self) -> Result<(), Self::Error>;
    /// Hands every message that has arrived to `on_message`; returns at once if none.
    fn poll_incoming(&mut self, on_message: &mut dyn FnMut(&str, &[u8])) -> Result<(), Self::Error>;
}

impl Session {
    /// A disconnected session that will connect at the first [`Session::next_action`].
    pub fn new(config: SessionConfig) -> Self {
        let topic = |kind| {
            Topic::Node {
                gateway: &config.gateway,
                device: &config.device,
                kind,
            }
            .write()
        };
        let presence = |online| {
            let mut bytes = heapless::Vec::new();
            let _ = bytes.resize_default(96);
            let message = Presence {
                v: SCHEMA_VERSION,
                device: config.device.clone(),
                online,
            };
            let len = encode(&message, &mut bytes).expect("a presence message fits 96 bytes");
            bytes.truncate(len);
            bytes
        };
        Self {
            backoff: Backoff::new(config.backoff, seed_from(config.device.as_bytes())),
            link: Link::Down { retry_at_ms: 0 },
            pending: Pending::Nothing,
            ack_topic: Topic::NodeAck {
                gateway: &config.gateway,
                device: &config.device,
            }
            .write(),
            presence_topic: topic(Kind::Presence),
            reading_topic: TopicBuf::new(),
            offline: presence(false),
            online: presence(true),
            payload: [0; MAX_MESSAGE_BYTES],
            stats: SessionStats::default(),
            config,
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    pub const fn stats(&self) -> SessionStats {
        self.stats
    }

    pub const fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The next thing to do at `now_ms`, given what the outbox holds.
    pub fn next_action<S: Storage, const N: usize>(&mut self, now_ms: u64, outbox: &Outbox<S, N>) -> Action<'_> {
        self.pending = Pending::Nothing;
        match self.link {
            Link::Down { retry_at_ms } if now_ms < retry_at_ms => Action::Wait { until_ms: retry_at_ms },
            Link::Down { .. } => Action::Connect(ConnectRequest {
                client_id: &self.config.device,
                password: self.config.secret.as_deref(),
                keep_alive_s: self.config.keep_alive_s,
                will: Publish {
                    topic: &self.presence_topic,
                    payload: &self.offline,
                    retain: true,
                },
            }),
            Link::Up(Connection {
                step: Step::Subscribe, ..
            }) => {
                self.pending = Pending::Step(Step::AnnouncePresence);
                Action::Subscribe { topic: &self.ack_topic }
            }
            Link::Up(Connection {
                step: Step::AnnouncePresence,
                ..
            }) => {
                self.pending = Pending::Step(Step::Stream);
                Action::Publish(Publish {
                    topic: &self.presence_topic,
                    payload: &self.online,
                    retain: true,
                })
            }
            Link::Up(connection) => self.stream(now_ms, outbox, connection),
        }
    }

    fn stream<S: Storage, const N: usize>(
        &mut self,
        now_ms: u64,
        outbox: &Outbox<S, N>,
        mut connection: Connection,
    ) -> Action<'_> {
        let caught_up = outbox.first_after(connection.cursor).is_none();
        if caught_up && !outbox.is_empty() && now_ms >= connection.resend_at_ms {
            connection.cursor = 0;
            connection.resend_at_ms = now_ms + self.resend_after_ms();
            self.link = Link::Up(connection);
            self.stats.resends += 1;
        }
        if let Some(record) = outbox.first_after(connection.cursor) {
            let len = record
                .encode_envelope(&self.config.device, &mut self.payload)
                .expect("every record encodes within MAX_MESSAGE_BYTES");
            let kind = record.message.kind();
            self.reading_topic = Topic::Node {
                gateway: &self.config.gateway,
                device: &self.config.device,
                kind,
            }
            .write();
            self.pending = Pending::Record(record.seq);
            return Action::Publish(Publish {
                topic: &self.reading_topic,
                payload: &self.payload[..len],
                retain: false,
            });
        }
        // Half the keep-alive leaves margin for a slow link; 0 disables keep-alive.
        let ping_at_ms = match self.config.keep_alive_s {
            0 => u64::MAX,
            s => connection.last_tx_ms + u64::from(s) * 500,
        };
        if now_ms >= ping_at_ms {
            self.pending = Pending::Step(Step::Stream);
            return Action::Ping;
        }
        let resend_at_ms = if outbox.is_empty() {
            u64::MAX
        } else {
            connection.resend_at_ms
        };
        Action::Wait {
            until_ms: ping_at_ms.min(resend_at_ms),
        }
    }

    /// The connection is up (CONNACK accepted).
    pub fn connected<S: Storage, const N: usize>(&mut self, now_ms: u64, outbox: &mut Outbox<S, N>) {
        self.backoff.reset();
        self.stats.connects += 1;
        self.link = Link::Up(Connection {
            step: Step::Subscribe,
            cursor: 0,
            last_tx_ms: now_ms,
            resend_at_ms: now_ms + self.resend_after_ms(),
        });
        let birth = Birth {
            device_kind: self.config.device_kind,
            fw: self.config.firmware.clone(),
            boots: outbox.boots(),
        };
        outbox.push(now_ms, NodeMessage::Birth(birth));
    }

    /// The last [`Action`] (subscribe, publish or ping) went out.
    pub fn sent(&mut self, now_ms: u64) {
        let pending = core::mem::replace(&mut self.pending, Pending::Nothing);
        if let Link::Up(connection) = &mut self.link {
            connection.last_tx_ms = now_ms;
            match pending {
                Pending::Step(next) => connection.step = next,
                Pending::Record(seq) => {
                    connection.cursor = seq;
                    self.stats.published += 1;
                }
                Pending::Nothing => {}
            }
        }
    }

    /// The connection failed or dropped: retry after the back-off delay.
    pub fn disconnected(&mut self, now_ms: u64) {
        match self.link {
            Link::Up(_) => self.stats.disconnects += 1,
            Link::Down { .. } => self.stats.connect_failures += 1,
        }
        self.pending = Pending::Nothing;
        self.link = Link::Down {
            retry_at_ms: now_ms + self.backoff.next_delay_ms().max(1),
        };
    }

    /// A message arrived on a subscribed topic.
    pub fn received<S: Storage, const N: usize>(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ms: u64,
        outbox: &mut Outbox<S, N>,
    ) -> Received {
        if topic != self.ack_topic.as_str() {
            return Received::Ignored;
        }
        let ack = match decode::<NodeAck>(payload) {
            Ok(ack) if ack.device == self.config.device => ack,
            Ok(_) => return self.reject(None),
            Err(e) => return self.reject(Some(e)),
        };
        self.stats.acks += 1;
        let dropped = outbox.ack(ack.seq, now_ms);
        let resend_at_ms = now_ms + self.resend_after_ms();
        if let (true, Link::Up(connection)) = (dropped > 0, &mut self.link) {
            connection.resend_at_ms = resend_at_ms;
        }
        Received::Ack { seq: ack.seq, dropped }
    }

    /// Drives the session over a non-blocking [`Transport`] until there is nothing to
    /// do; returns when to call again at the latest.
    pub fn service<T: Transport, S: Storage, const N: usize>(
        &mut self,
        transport: &mut T,
        outbox: &mut Outbox<S, N>,
        now_ms: u64,
    ) -> u64 {
        if self.is_connected() {
            let mut on_message = |topic: &str, payload: &[u8]| {
                self.received(topic, payload, now_ms, outbox);
            };
            if transport.poll_incoming(&mut on_message).is_err() {
                self.disconnected(now_ms);
            }
        }
        loop {
            let outcome = match self.next_action(now_ms, outbox) {
                Action::Wait { until_ms } => return until_ms,
                Action::Connect(request) => transport.connect(&request).map(|()| true),
                Action::Subscribe { topic } => transport.subscribe(topic).map(|()| false),
                Action::Publish(message) => transport.publish(&message).map(|()| false),
                Action::Ping => transport.ping().map(|()| false),
            };
            match outcome {
                Ok(true) => self.connected(now_ms, outbox),
                Ok(false) => self.sent(now_ms),
                Err(_) => self.disconnected(now_ms),
            }
        }
    }

    fn reject(&mut self, error: Option<DecodeError>) -> Received {
        self.stats.rejected += 1;
        Received::Rejected(error)
    }

    fn resend_after_ms(&self) -> u64 {
        u64::from(self.config.resend_after_ms).max(1)
    }
}
