//! The one topic scheme, used on the gateway's broker and on ingest's broker alike:
//!
//! | topic | direction |
//! |---|---|
//! | `gw/{gateway}/dev/{device}/{kind}` | node → broker (kind: lift, sterilizer, cycle, event, birth, presence) |
//! | `gw/{gateway}/dev/{device}/ack` | broker side → node: highest durable `seq` |
//! | `gw/{gateway}/batch` | gateway → ingest: a batch of readings |
//! | `gw/{gateway}/ack` | ingest → gateway: the batch is committed |
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
        };
        out
    }
}

/// Subscription filter for every node message on a broker.
pub const NODE_FILTER: &str = "gw/+/dev/+/+";
/// Subscription filter for every gateway batch.
pub const BATCH_FILTER: &str = "gw/+/batch";
