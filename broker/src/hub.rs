//! The hub: the guard serving its clients itself, for a broker whose one reader is
//! in-process (the gateway's node side), without rumqttd behind it.
//!
//! rumqttd 0.20 gives every connection fixed queues (200 incoming packets, two such
//! buffers taking turns, and 200 + 100–200 outgoing notifications) whose pages stay
//! touched once traffic passed through them: ~150 KiB a node under load, ~150 MiB
//! for 1,000 nodes, on a box with 512 MB. The hub keeps per connection a read
//! buffer, a write buffer and a queue of at most [`OUTGOING_QUEUE`] messages.
//!
//! What it serves, after the guard's login, ACL and unique-id checks:
//! - PUBLISH at QoS 0, 1 and 2 (retain flag cleared, like the guard does): handed to
//!   the in-process reader when it matches one of the link's filters, and to every
//!   client subscribed to it; PUBACK (QoS 1) or PUBREC/PUBCOMP (QoS 2) once the
//!   reader's bounded queue took it, so a reader that falls behind holds the
//!   publisher back instead of growing memory;
//! - SUBSCRIBE/UNSUBSCRIBE (granted at most QoS 1), PINGREQ, DISCONNECT, the will on
//!   any other end, keep-alive (1.5 times the client's, [`KEEP_ALIVE_FOR_NONE`] for 0);
//! - messages to clients go out at the granted QoS and are not sent again: a client
//!   whose queue is full misses them, counted (`gridwatch_broker_hub_dropped_total`).
//!   The gateway sends nodes only cumulative acks, which the next one repeats; a
//!   service reading the nodes' telemetry must keep up with them;
//! - a session with clean session off keeps its subscriptions across reconnects
//!   (CONNACK "session present"), not its missed messages.
use crate::acl::Acl;
use crate::guard::{KEEP_ALIVE_FOR_NONE, RETAIN_CLEARED, Reason, Stream, Version};
use crate::link::Delivered;
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::mqttbytes::{QoS as V4QoS, has_wildcards, matches};
use rumqttc::v5::mqttbytes::QoS as V5QoS;
use rumqttc::v5::mqttbytes::v5;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

/// Messages waiting for one client; beyond it they are dropped and counted. Room for a
/// burst to a service reading the nodes' telemetry; a node's queue holds an ack or two,
/// and tokio allocates a queue's slots 32 at a time as they fill, so room unused costs
/// nothing.
pub(crate) const OUTGOING_QUEUE: usize = 256;
/// Publishes waiting for the in-process reader; beyond it publishers wait.
pub(crate) const LINK_QUEUE: usize = 1024;
/// Persistent sessions whose subscriptions are kept while they are away.
const KEPT_SESSIONS_MAX: usize = 100_000;

pub(crate) const DROPPED: &str = "gridwatch_broker_hub_dropped_total";

/// A message for one client.
struct Outgoing {
    topic: Bytes,
    payload: Bytes,
    qos: u8,
}

struct Client {
    session: String,
    queue: mpsc::Sender<Outgoing>,
    /// Filter and granted QoS.
    filters: Vec<(String, u8)>,
}

#[derive(Default)]
struct Routes {
    next_id: u64,
    clients: HashMap<u64, Client>,
    /// Clients by the filters without wildcards they subscribed to (node ack topics).
    exact: HashMap<String, Vec<u64>>,
    /// Clients with a wildcard filter: few, checked one by one.
    wildcard: Vec<u64>,
    /// The subscriptions of persistent sessions that are away.
    kept: HashMap<String, Vec<(String, u8)>>,
}

impl Routes {
    fn index(&mut self, id: u64, filter: &str) {
        if has_wildcards(filter) {
            if !self.wildcard.contains(&id) {
                self.wildcard.push(id);
            }
        } else {
            let ids = self.exact.entry(filter.to_string()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }

    fn unindex(&mut self, id: u64, filter: &str) {
        if has_wildcards(filter) {
            let still = self
                .clients
                .get(&id)
                .is_some_and(|c| c.filters.iter().any(|(f, _)| has_wildcards(f)));
            if !still {
                self.wildcard.retain(|c| *c != id);
            }
        } else if let Some(ids) = self.exact.get_mut(filter) {
            ids.retain(|c| *c != id);
            if ids.is_empty() {
                self.exact.remove(filter);
            }
        }
    }

    fn subscribe(&mut self, id: u64, filter: &str, qos: u8) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        match client.filters.iter_mut().find(|(f, _)| f == filter) {
            Some(existing) => existing.1 = qos,
            None => client.filters.push((filter.to_string(), qos)),
        }
        self.index(id, filter);
    }

    fn unsubscribe(&mut self, id: u64, filter: &str) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        client.filters.retain(|(f, _)| f != filter);
        self.unindex(id, filter);
    }

    /// The clients a publish on `topic` goes to, with the QoS of their best match.
    fn targets(&self, topic: &str) -> Vec<(&Client, u8)> {
        let mut out: Vec<(&Client, u8)> = Vec::new();
        let exact = self.exact.get(topic).into_iter().flatten();
        for id in exact.chain(self.wildcard.iter()) {
            let Some(client) = self.clients.get(id) else { continue };
            let best = client
                .filters
                .iter()
                .filter(|(f, _)| matches(topic, f))
                .map(|(_, qos)| *qos)
                .max();
            if let Some(qos) = best
                && !out.iter().any(|(c, _)| std::ptr::eq(*c, client))
            {
                out.push((client, qos));
            }
        }
        out
    }
}

/// The routing of one hub: its in-process reader and its clients.
pub(crate) struct Hub {
    name: String,
    link: mpsc::Sender<Delivered>,
    link_filters: RwLock<Vec<String>>,
    routes: Mutex<Routes>,
}

impl Hub {
    pub(crate) fn new(name: &str) -> (Self, mpsc::Receiver<Delivered>) {
        let (link, rx) = mpsc::channel(LINK_QUEUE);
        let hub = Self {
            name: name.to_string(),
            link,
            link_filters: RwLock::new(Vec::new()),
            routes: Mutex::new(Routes::default()),
        };
        (hub, rx)
    }

    /// What the in-process reader receives from now on.
    pub(crate) fn link_subscribe(&self, filter: &str) {
        self.link_filters
            .write()
            .expect("filters lock")
            .push(filter.to_string());
    }

    /// A publish of the in-process side: to every client subscribed to it.
    pub(crate) fn publish(&self, topic: &str, payload: Bytes) {
        let routes = self.routes.lock().expect("routes lock");
        for (client, qos) in routes.targets(topic) {
            let message = Outgoing {
                topic: Bytes::copy_from_slice(topic.as_bytes()),
                payload: payload.clone(),
                qos,
            };
            if client.queue.try_send(message).is_err() {
                metrics::counter!(DROPPED, "broker" => self.name.clone()).increment(1);
                tracing::debug!(broker = %self.name, session = %client.session, topic, "client queue full: message dropped");
            }
        }
    }

    /// A publish of a client: to the in-process reader (waiting while its queue is
    /// full) and to the clients subscribed to it. `false` once the reader is gone.
    async fn deliver(&self, topic: &str, payload: Bytes) -> bool {
        self.publish(topic, payload.clone());
        let wanted = self
            .link_filters
            .read()
            .expect("filters lock")
            .iter()
            .any(|f| matches(topic, f));
        if !wanted {
            return true;
        }
        let delivered = Delivered {
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            payload,
            offset: None,
            subscription: None,
        };
        self.link.send(delivered).await.is_ok()
    }

    /// Adds a connected client; whether its persistent session was present.
    fn connect(&self, session: &str, clean: bool, queue: mpsc::Sender<Outgoing>) -> (u64, bool) {
        let mut routes = self.routes.lock().expect("routes lock");
        let id = routes.next_id;
        routes.next_id += 1;
        let kept = routes.kept.remove(session);
        let present = kept.is_some() && !clean;
        routes.clients.insert(
            id,
            Client {
                session: session.to_string(),
                queue,
                filters: Vec::new(),
            },
        );
        if !clean {
            for (filter, qos) in kept.unwrap_or_default() {
                routes.subscribe(id, &filter, qos);
            }
        }
        (id, present)
    }

    fn disconnect(&self, id: u64, clean: bool) {
        let mut routes = self.routes.lock().expect("routes lock");
        let Some(client) = routes.clients.remove(&id) else {
            return;
        };
        for (filter, _) in &client.filters {
            routes.unindex(id, filter);
        }
        if !clean && routes.kept.len() < KEPT_SESSIONS_MAX {
            routes.kept.insert(client.session, client.filters);
        }
    }
}

/// What the guard learned of a client before handing it to the hub.
pub(crate) struct Start<'a> {
    pub(crate) version: Version,
    pub(crate) session: &'a str,
    pub(crate) acl: &'a Acl,
    pub(crate) close: &'a Notify,
    pub(crate) keep_alive: u16,
    pub(crate) clean: bool,
    /// Topic and payload.
    pub(crate) will: Option<(String, Bytes)>,
    pub(crate) max_packet: usize,
}

/// A client packet, in either protocol.
enum Incoming {
    Publish {
        topic: String,
        payload: Bytes,
        qos: u8,
        pkid: u16,
        retain: bool,
        topic_alias: bool,
    },
    PubRel(u16),
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// With or without the will (MQTT 5 reason 0x04).
    Disconnect {
        will: bool,
    },
    Connect,
    /// Acknowledgements of what the hub sent (not sent again, so not tracked).
    Ignored,
}

/// A hub packet to a client, in either protocol.
enum Reply {
    ConnAck { session_present: bool },
    PubAck(u16),
    PubRec(u16),
    PubComp(u16),
    SubAck { pkid: u16, granted: Vec<u8> },
    UnsubAck { pkid: u16, count: usize },
    PingResp,
    Publish(Outgoing, u16),
}

type Refusal = (Reason, String);

fn malformed(e: &dyn std::fmt::Display) -> Refusal {
    (Reason::Malformed, e.to_string())
}

fn v4_qos(qos: V4QoS) -> u8 {
    qos as u8
}

fn v5_qos(qos: V5QoS) -> u8 {
    qos as u8
}

/// The packet at the front of `pending`, or `None` while it is incomplete.
fn next_incoming(version: Version, pending: &mut BytesMut, max: usize) -> Result<Option<Incoming>, Refusal> {
    match version {
        Version::V4 => {
            match rumqttc::mqttbytes::check(pending.iter(), max) {
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
                Err(e) => return Err(malformed(&e)),
                Ok(_) => {}
            }
            Ok(Some(
                match v4::Packet::read(pending, max).map_err(|e| malformed(&e))? {
                    v4::Packet::Publish(p) => Incoming::Publish {
                        topic: p.topic,
                        payload: p.payload,
                        qos: v4_qos(p.qos),
                        pkid: p.pkid,
                        retain: p.retain,
                        topic_alias: false,
                    },
                    v4::Packet::PubRel(p) => Incoming::PubRel(p.pkid),
                    v4::Packet::Subscribe(s) => Incoming::Subscribe {
                        pkid: s.pkid,
                        filters: s.filters.into_iter().map(|f| (f.path, v4_qos(f.qos))).collect(),
                    },
                    v4::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
                        pkid: u.pkid,
                        filters: u.topics,
                    },
                    v4::Packet::PingReq => Incoming::PingReq,
                    v4::Packet::Disconnect => Incoming::Disconnect { will: false },
                    v4::Packet::Connect(_) => Incoming::Connect,
                    _ => Incoming::Ignored,
                },
            ))
        }
        Version::V5 => {
            match v5::check(pending.iter(), Some(max as u32)) {
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
                Err(e) => return Err(malformed(&e)),
                Ok(_) => {}
            }
            Ok(Some(
                match v5::Packet::read(pending, Some(max as u32)).map_err(|e| malformed(&e))? {
                    v5::Packet::Publish(p) => Incoming::Publish {
                        topic: String::from_utf8(p.topic.to_vec())
                            .map_err(|_| (Reason::Malformed, "a topic that is not UTF-8".to_string()))?,
                        payload: p.payload,
                        qos: v5_qos(p.qos),
                        pkid: p.pkid,
                        retain: p.retain,
                        topic_alias: p.properties.is_some_and(|p| p.topic_alias.is_some()),
                    },
                    v5::Packet::PubRel(p) => Incoming::PubRel(p.pkid),
                    v5::Packet::Subscribe(s) => Incoming::Subscribe {
                        pkid: s.pkid,
                        filters: s.filters.into_iter().map(|f| (f.path, v5_qos(f.qos))).collect(),
                    },
                    v5::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
                        pkid: u.pkid,
                        filters: u.filters,
                    },
                    v5::Packet::PingReq(_) => Incoming::PingReq,
                    v5::Packet::Disconnect(d) => Incoming::Disconnect {
                        will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
                    },
                    v5::Packet::Connect(..) => Incoming::Connect,
                    v5::Packet::Auth(_) => return Err((Reason::Malformed, "an AUTH packet".into())),
                    _ => Incoming::Ignored,
                },
            ))
        }
    }
}

fn write_v4(reply: Reply, out: &mut BytesMut) -> Result<usize, rumqttc::mqttbytes::Error> {
    let code = |qos: u8| match qos {
        0 => v4::SubscribeReasonCode::Success(V4QoS::AtMostOnce),
        _ => v4::SubscribeReasonCode::Success(V4QoS::AtLeastOnce),
    };
    match reply {
        Reply::ConnAck { session_present } => {
            v4::ConnAck::new(v4::ConnectReturnCode::Success, session_present).write(out)
        }
        Reply::PubAck(pkid) => v4::PubAck::new(pkid).write(out),
        Reply::PubRec(pkid) => v4::PubRec::new(pkid).write(out),
        Reply::PubComp(pkid) => v4::PubComp::new(pkid).write(out),
        Reply::SubAck { pkid, granted } => v4::SubAck::new(pkid, granted.into_iter().map(code).collect()).write(out),
        Reply::UnsubAck { pkid, .. } => v4::UnsubAck::new(pkid).write(out),
        Reply::PingResp => v4::PingResp.write(out),
        Reply::Publish(message, pkid) => {
            let qos = if message.qos == 0 {
                V4QoS::AtMostOnce
            } else {
                V4QoS::AtLeastOnce
            };
            let mut publish = v4::Publish::from_bytes(
                String::from_utf8_lossy(&message.topic).into_owned(),
                qos,
                message.payload,
            );
            publish.pkid = pkid;
            publish.write(out)
        }
    }
}

fn write_v5(reply: Reply, out: &mut BytesMut) -> Result<usize, rumqttc::v5::mqttbytes::Error> {
    let packet = match reply {
        // No properties: no topic aliases offered (their maximum defaults to 0).
        Reply::ConnAck { session_present } => v5::Packet::ConnAck(v5::ConnAck {
            session_present,
            code: v5::ConnectReturnCode::Success,
            properties: None,
        }),
        Reply::PubAck(pkid) => v5::Packet::PubAck(v5::PubAck::new(pkid, None)),
        Reply::PubRec(pkid) => v5::Packet::PubRec(v5::PubRec::new(pkid, None)),
        Reply::PubComp(pkid) => v5::Packet::PubComp(v5::PubComp::new(pkid, None)),
        Reply::SubAck { pkid, granted } => v5::Packet::SubAck(v5::SubAck {
            pkid,
            return_codes: granted
                .into_iter()
                .map(|qos| match qos {
                    0 => v5::SubscribeReasonCode::Success(V5QoS::AtMostOnce),
                    _ => v5::SubscribeReasonCode::Success(V5QoS::AtLeastOnce),
                })
                .collect(),
            properties: None,
        }),
        Reply::UnsubAck { pkid, count } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid,
            reasons: vec![v5::UnsubAckReason::Success; count],
            properties: None,
        }),
        Reply::PingResp => v5::Packet::PingResp(v5::PingResp),
        Reply::Publish(message, pkid) => {
            let qos = if message.qos == 0 {
                V5QoS::AtMostOnce
            } else {
                V5QoS::AtLeastOnce
            };
            let mut publish = v5::Publish {
                qos,
                topic: message.topic,
                payload: message.payload,
                ..Default::default()
            };
            publish.pkid = pkid;
            v5::Packet::Publish(publish)
        }
    };
    packet.write(out, None)
}

fn write(version: Version, reply: Reply, out: &mut BytesMut) {
    // Encoding fails only for sizes beyond the protocol's; such a reply is left out.
    let _ = match version {
        Version::V4 => write_v4(reply, out).is_ok(),
        Version::V5 => write_v5(reply, out).is_ok(),
    };
}

/// One client's connection state.
struct Connection<'a> {
    hub: &'a Hub,
    start: &'a Start<'a>,
    id: u64,
    next_pkid: u16,
}

impl Connection<'_> {
    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    /// Handles one client packet; what ends the connection, if it does.
    async fn handle(&mut self, packet: Incoming, out: &mut BytesMut) -> Result<Option<End>, Refusal> {
        let version = self.start.version;
        match packet {
            Incoming::Publish {
                topic,
                payload,
                qos,
                pkid,
                retain,
                topic_alias,
            } => {
                if topic_alias {
                    return Err((Reason::TopicAlias, "a PUBLISH with a topic alias".into()));
                }
                if !self.start.acl.may_publish(&topic) {
                    return Err((Reason::PublishDenied, topic));
                }
                if retain {
                    metrics::counter!(RETAIN_CLEARED, "broker" => self.hub.name.clone()).increment(1);
                }
                if !self.hub.deliver(&topic, payload).await {
                    return Ok(Some(End::ReaderGone));
                }
                match qos {
                    0 => {}
                    1 => write(version, Reply::PubAck(pkid), out),
                    _ => write(version, Reply::PubRec(pkid), out),
                }
            }
            Incoming::PubRel(pkid) => write(version, Reply::PubComp(pkid), out),
            Incoming::Subscribe { pkid, filters } => {
                if let Some((denied, _)) = filters.iter().find(|(f, _)| !self.start.acl.may_subscribe(f)) {
                    return Err((Reason::SubscribeDenied, denied.clone()));
                }
                let mut granted = Vec::with_capacity(filters.len());
                {
                    let mut routes = self.hub.routes.lock().expect("routes lock");
                    for (filter, qos) in filters {
                        let qos = qos.min(1);
                        routes.subscribe(self.id, &filter, qos);
                        granted.push(qos);
                    }
                }
                write(version, Reply::SubAck { pkid, granted }, out);
            }
            Incoming::Unsubscribe { pkid, filters } => {
                let count = filters.len();
                {
                    let mut routes = self.hub.routes.lock().expect("routes lock");
                    for filter in filters {
                        routes.unsubscribe(self.id, &filter);
                    }
                }
                write(version, Reply::UnsubAck { pkid, count }, out);
            }
            Incoming::PingReq => write(version, Reply::PingResp, out),
            Incoming::Disconnect { will } => return Ok(Some(End::Disconnected { will })),
            Incoming::Connect => return Err((Reason::Malformed, "a second CONNECT".into())),
            Incoming::Ignored => {}
        }
        Ok(None)
    }
}

/// How a connection ended without the hub closing it for a reason.
enum End {
    Disconnected { will: bool },
    Lost,
    ReaderGone,
}

/// Serves one logged-in client until it leaves; why the hub closed it, if it did.
pub(crate) async fn serve<S: Stream>(hub: &Hub, stream: S, mut pending: BytesMut, start: Start<'_>) -> Option<Refusal> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (queue, mut outgoing) = mpsc::channel(OUTGOING_QUEUE);
    let (id, session_present) = hub.connect(start.session, start.clean, queue);
    let mut connection = Connection {
        hub,
        start: &start,
        id,
        next_pkid: 0,
    };
    let keep_alive = match start.keep_alive {
        0 => KEEP_ALIVE_FOR_NONE,
        seconds => seconds,
    };
    let idle = Duration::from_millis(u64::from(keep_alive) * 1500);
    let mut out = BytesMut::with_capacity(256);
    write(start.version, Reply::ConnAck { session_present }, &mut out);
    let ended: Result<End, Refusal> = async {
        loop {
            while let Some(packet) = next_incoming(start.version, &mut pending, start.max_packet)? {
                if let Some(end) = connection.handle(packet, &mut out).await? {
                    let _ = writer.write_all(&out).await;
                    return Ok(end);
                }
            }
            if !out.is_empty() {
                if writer.write_all(&out).await.is_err() {
                    return Ok(End::Lost);
                }
                out.clear();
            }
            tokio::select! {
                read = tokio::time::timeout(idle, reader.read_buf(&mut pending)) => match read {
                    Ok(Ok(n)) if n > 0 => pending.reserve(1024),
                    Ok(_) => return Ok(End::Lost),
                    Err(_) => return Err((Reason::KeepAlive, format!("nothing for {idle:?}"))),
                },
                Some(message) = outgoing.recv() => {
                    let pkid = if message.qos == 0 { 0 } else { connection.pkid() };
                    write(start.version, Reply::Publish(message, pkid), &mut out);
                    while let Ok(message) = outgoing.try_recv() {
                        let pkid = if message.qos == 0 { 0 } else { connection.pkid() };
                        write(start.version, Reply::Publish(message, pkid), &mut out);
                    }
                }
                () = start.close.notified() => return Err((Reason::Revoked, "identity revoked".into())),
            }
        }
    }
    .await;
    hub.disconnect(id, start.clean);
    let will = match &ended {
        Ok(End::Disconnected { will }) => *will,
        Ok(End::ReaderGone) => false,
        Ok(End::Lost) | Err(_) => true,
    };
    if will && let Some((topic, payload)) = &start.will {
        hub.deliver(topic, payload.clone()).await;
    }
    let _ = writer.shutdown().await;
    ended.err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_with_client(filters: &[&str]) -> (Hub, mpsc::Receiver<Outgoing>, u64) {
        let (hub, _rx) = Hub::new("test");
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
        let (id, _) = hub.connect("s", true, tx);
        {
            let mut routes = hub.routes.lock().unwrap();
            for f in filters {
                routes.subscribe(id, f, 1);
            }
        }
        (hub, rx, id)
    }

    #[test]
    fn a_publish_reaches_exact_and_wildcard_subscribers_once() {
        let (hub, mut rx, _) = hub_with_client(&["gw/g/ack/L-1", "gw/g/ack/+"]);
        hub.publish("gw/g/ack/L-1", Bytes::from_static(b"1"));
        hub.publish("gw/g/ack/L-2", Bytes::from_static(b"2"));
        hub.publish("gw/g/other", Bytes::from_static(b"3"));
        let got: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv().ok()).map(|m| m.payload).collect();
        assert_eq!(got, vec![Bytes::from_static(b"1"), Bytes::from_static(b"2")]);
    }

    #[test]
    fn a_full_client_queue_drops_and_an_unsubscribed_filter_stops() {
        let (hub, mut rx, id) = hub_with_client(&["a/b"]);
        for _ in 0..OUTGOING_QUEUE + 5 {
            hub.publish("a/b", Bytes::new());
        }
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), OUTGOING_QUEUE);
        hub.routes.lock().unwrap().unsubscribe(id, "a/b");
        hub.publish("a/b", Bytes::new());
        assert!(rx.try_recv().is_err());
        assert!(hub.routes.lock().unwrap().exact.is_empty());
    }

    #[test]
    fn a_persistent_session_gets_its_subscriptions_back_and_a_clean_one_does_not() {
        let (hub, _rx) = Hub::new("test");
        let (tx, _keep) = mpsc::channel(1);
        let (id, present) = hub.connect("node", false, tx.clone());
        assert!(!present);
        hub.routes.lock().unwrap().subscribe(id, "gw/g/ack/L-1", 1);
        hub.disconnect(id, false);
        let (id, present) = hub.connect("node", false, tx.clone());
        assert!(present);
        assert_eq!(hub.routes.lock().unwrap().targets("gw/g/ack/L-1").len(), 1);
        hub.disconnect(id, true);
        let (_, present) = hub.connect("node", false, tx);
        assert!(!present, "a clean session ended it");
        assert!(hub.routes.lock().unwrap().targets("gw/g/ack/L-1").is_empty());
    }

    #[test]
    fn replies_encode_in_both_protocols() {
        for version in [Version::V4, Version::V5] {
            let mut out = BytesMut::new();
            write(version, Reply::ConnAck { session_present: true }, &mut out);
            write(version, Reply::PubAck(7), &mut out);
            write(
                version,
                Reply::SubAck {
                    pkid: 3,
                    granted: vec![1, 0],
                },
                &mut out,
            );
            let message = Outgoing {
                topic: Bytes::from_static(b"gw/g/ack/L-1"),
                payload: Bytes::from_static(b"{}"),
                qos: 1,
            };
            write(version, Reply::Publish(message, 9), &mut out);
            write(version, Reply::PingResp, &mut out);
            match version {
                Version::V4 => {
                    let read = |out: &mut BytesMut| v4::Packet::read(out, 1 << 16).unwrap();
                    assert!(matches!(read(&mut out), v4::Packet::ConnAck(c) if c.session_present));
                    assert!(matches!(read(&mut out), v4::Packet::PubAck(a) if a.pkid == 7));
                    assert!(matches!(read(&mut out), v4::Packet::SubAck(s) if s.return_codes.len() == 2));
                    assert!(
                        matches!(read(&mut out), v4::Packet::Publish(p) if p.pkid == 9 && p.topic == "gw/g/ack/L-1")
                    );
                    assert!(matches!(read(&mut out), v4::Packet::PingResp));
                }
                Version::V5 => {
                    let read = |out: &mut BytesMut| v5::Packet::read(out, None).unwrap();
                    assert!(
                        matches!(read(&mut out), v5::Packet::ConnAck(c) if c.session_present && c.properties.is_none())
                    );
                    assert!(matches!(read(&mut out), v5::Packet::PubAck(a) if a.pkid == 7));
                    assert!(matches!(read(&mut out), v5::Packet::SubAck(s) if s.return_codes.len() == 2));
                    assert!(matches!(read(&mut out), v5::Packet::Publish(p) if p.pkid == 9));
                    assert!(matches!(read(&mut out), v5::Packet::PingResp(_)));
                }
            }
            assert!(out.is_empty());
        }
    }
}
