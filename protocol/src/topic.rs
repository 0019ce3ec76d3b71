//! The one topic scheme, used on the gateway's broker and on ingest's broker alike:
//!
//! | topic | direction |
//! |---|---|
//! | `gw/{gateway}/dev/{device}/{kind}` | node → broker (kind: lift, sterilizer, cycle, event, birth, presence) |
//! | `gw/{gateway}/ack/{device}` | broker side → node: highest durable `seq` |
//! | `gw/{gateway}/batch` | gateway → ingest: a batch of readings |
//! | `gw/{gateway}/ack` | ingest → gateway: the batch is committed |
//! | `gw/{gateway}/presence` | gateway → ingest: birth, heartbeat, last will |
//!
//! Node acks sit at a depth (four levels) of their own, so that the service
//! that publishes them can subscribe to everything else ([`ALL_BUT_NODE_ACKS`])
//! without every ack coming back to it.
use crate::message::Kind;
use core::fmt::Write;

/// Longest topic we produce or accept.
pub const MAX_TOPIC: usize = 96;
pub type TopicBuf = heapless::String<MAX_TOPIC>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic<'a> {
    Node {
        gateway: &'a str,
        device: &'a str,
        kind: Kind,
    },
    Batch {
        gateway: &'a str,
    },
    BatchAck {
        gateway: &'a str,
    },
    NodeAck {
        gateway: &'a str,
        device: &'a str,
    },
    /// A gateway's own presence (birth, heartbeat, last will).
    GatewayPresence {
        gateway: &'a str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// Not of the form of any gridwatch topic.
    UnknownTopic,
    /// A `gw/../dev/../{kind}` topic with an unknown kind.
    UnknownKind,
    /// An empty or over-long segment, or one with MQTT wildcard characters.
    BadSegment,
}

impl TopicError {
    pub const fn reason(self) -> &'static str {
        match self {
            TopicError::UnknownTopic => "unknown_topic",
            TopicError::UnknownKind => "unknown_kind",
            TopicError::BadSegment => "bad_topic_segment",
        }
    }
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())
    }
}

fn segment(s: &str) -> Result<&str, TopicError> {
    let ok = !s.is_empty()
        && s.len() <= crate::message::MAX_DEVICE_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok { Ok(s) } else { Err(TopicError::BadSegment) }
}

impl<'a> Topic<'a> {
    pub fn parse(topic: &'a str) -> Result<Topic<'a>, TopicError> {
        let mut parts = topic.split('/');
        let mut next = || parts.next();
        match (next(), next(), next(), next(), next(), next()) {
            (Some("gw"), Some(gw), Some("dev"), Some(dev), Some(kind), None) => Ok(Topic::Node {
                gateway: segment(gw)?,
                device: segment(dev)?,
                kind: Kind::parse(kind).ok_or(TopicError::UnknownKind)?,
            }),
            (Some("gw"), Some(gw), Some("batch"), None, _, _) => Ok(Topic::Batch { gateway: segment(gw)? }),
            (Some("gw"), Some(gw), Some("ack"), None, _, _) => Ok(Topic::BatchAck { gateway: segment(gw)? }),
            (Some("gw"), Some(gw), Some("presence"), None, _, _) => {
                Ok(Topic::GatewayPresence { gateway: segment(gw)? })
            }
            (Some("gw"), Some(gw), Some("ack"), Some(dev), None, _) => Ok(Topic::NodeAck {
                gateway: segment(gw)?,
                device: segment(dev)?,
            }),
            _ => Err(TopicError::UnknownTopic),
        }
    }

    pub fn write(&self) -> TopicBuf {
        let mut out = TopicBuf::new();
        // Segments are bounded by MAX_DEVICE_ID, so the topic always fits.
        let _ = match *self {
            Topic::Node { gateway, device, kind } => write!(out, "gw/{gateway}/dev/{device}/{}", kind.as_str()),
            Topic::Batch { gateway } => write!(out, "gw/{gateway}/batch"),
            Topic::BatchAck { gateway } => write!(out, "gw/{gateway}/ack"),
            Topic::NodeAck { gateway, device } => write!(out, "gw/{gateway}/ack/{device}"),
            Topic::GatewayPresence { gateway } => write!(out, "gw/{gateway}/presence"),
        };
        out
    }
}

/// Subscription filters that together match every topic but node acks, each
/// topic by exactly one filter (so nothing is delivered twice): for the service
/// that publishes the node acks and must see (to quarantine) whatever else
/// arrives. A broker routes each ack to every matching subscriber, so `#` would
/// hand every ack back to its publisher: a third of all messages in the direct
/// benchmark.
///
/// MQTT filters cannot exclude a topic, so the one depth acks use is covered
/// only where it differs by a literal level: four-level topics other than
/// `{any}/{any}/dev/{any}` (and node acks) reach no subscriber.
pub const ALL_BUT_NODE_ACKS: [&str; 6] = [
    "+",
    "+/+",
    "+/+/+",
    "+/+/dev/+",
    "+/+/+/+/+",
    // Six levels or more: `#` also matches the level before it, and not one less.
    "+/+/+/+/+/+/#",
];

/// [`ALL_BUT_NODE_ACKS`] under `gw` only (every gridwatch topic), for a broker
/// shared with other applications.
pub const GW_BUT_NODE_ACKS: [&str; 6] = ["gw", "gw/+", "gw/+/+", "gw/+/dev/+", "gw/+/+/+/+", "gw/+/+/+/+/+/#"];

/// Subscription filter for every node message on a broker.
pub const NODE_FILTER: &str = "gw/+/dev/+/+";
/// Subscription filter for every gateway batch.
pub const BATCH_FILTER: &str = "gw/+/batch";
/// Subscription filter for every gateway's presence.
pub const GATEWAY_PRESENCE_FILTER: &str = "gw/+/presence";
