//! Turns MQTT messages arriving at ingest's broker into readings to store and
//! refusals to quarantine. Two shapes arrive: gateway batches on `gw/{gw}/batch`
//! and single readings from smart nodes on `gw/{gw}/dev/{device}/{kind}`; and,
//! stored nowhere but told to the alert engine, gateway presence on `gw/{gw}/presence`.
use gridwatch_protocol::batch::{Batch, Reading};
use gridwatch_protocol::codec::json::{self, Rejection};
use gridwatch_protocol::{GatewayPresence, Kind, MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, Topic, ValidationError};
use gridwatch_storage::model::{Accepted, Refused};

/// Where a message came from, which decides how it is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A gateway batch: acknowledged with a `BatchAck` on `gw/{gateway}/ack`.
    Batch { gateway: String, batch: u64 },
    /// A direct node: acknowledged with a `NodeAck` on `gw/{gateway}/ack/{device}`,
    /// the gateway and device of its one reading (a refused message is not
    /// acknowledged). No copies of them here: every reading in a batch keeps its source.
    Node,
    /// Nothing to acknowledge (unparseable input).
    None,
}

#[derive(Debug)]
pub struct Incoming {
    pub source: Source,
    pub accepted: Vec<Accepted>,
    pub refused: Vec<Refused>,
}

impl Incoming {
    fn refused(topic: &str, payload: &[u8], why: Rejection) -> Incoming {
        Incoming {
            source: Source::None,
            accepted: Vec::new(),
            refused: vec![refusal(topic, payload, why)],
        }
    }
}

fn refusal(topic: &str, payload: &[u8], why: Rejection) -> Refused {
    metrics::counter!("gridwatch_ingest_rejected_total", "reason" => why.reason).increment(1);
    Refused {
        source: topic.to_string(),
        reason: why.reason,
        detail: why.detail,
        payload: payload.to_vec(),
    }
}

/// A gateway's presence message: birth or heartbeat (`online`), or its last will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceReport {
    pub gateway: String,
    pub online: bool,
}

/// What one MQTT message is for.
#[derive(Debug)]
pub enum Message {
    /// Readings to store and refusals to quarantine.
    Store(Incoming),
    /// A gateway's presence, for the alert engine.
    Presence(PresenceReport),
    /// Nothing to do (acks, node presence).
    Ignored,
}

/// Classifies one MQTT message; `None` for messages that need no storing (acks,
/// presence: see [`classify_message`]).
pub fn classify(topic: &str, payload: &[u8]) -> Option<Incoming> {
    match classify_message(topic, payload) {
        Message::Store(incoming) => Some(incoming),
        Message::Presence(_) | Message::Ignored => None,
    }
}

/// Classifies one MQTT message, gateway presence included.
pub fn classify_message(topic: &str, payload: &[u8]) -> Message {
    // Ingest's own: the firms' feed it publishes (`firm_feed`) comes back to it.
    if topic.starts_with("feed/firm/") {
        return ignored("feed").map_or(Message::Ignored, Message::Store);
    }
    let parsed = match Topic::parse(topic) {
        Ok(t) => t,
        Err(e) => {
            return Message::Store(Incoming::refused(
                topic,
                payload,
                Rejection {
                    reason: e.reason(),
                    detail: format!("topic {topic:?}"),
                },
            ));
        }
    };
    let store = match parsed {
        Topic::Batch { gateway } => Some(batch(topic, gateway, payload)),
        Topic::Node { gateway, device, kind } if kind.is_reading() => Some(node(topic, gateway, device, kind, payload)),
        Topic::Node {
            kind: Kind::Presence,
            device,
            ..
        } => {
            tracing::info!(device, payload = %String::from_utf8_lossy(payload), "node presence");
            ignored("presence")
        }
        Topic::Node { .. } => ignored("not_a_reading"),
        // Ingest's own: its batch acks come back (`+/+/+` is subscribed for batches),
        // its node acks do not (`ALL_BUT_NODE_ACKS`).
        Topic::BatchAck { .. } => ignored("batch_ack"),
        Topic::NodeAck { .. } => ignored("node_ack"),
        Topic::GatewayPresence { gateway } => return gateway_presence(topic, gateway, payload),
    };
    store.map_or(Message::Ignored, Message::Store)
}

/// A presence message is refused (quarantined) like any bad input: a payload that
/// does not decode, or one naming another gateway than its topic (`gateway_mismatch`).
fn gateway_presence(topic: &str, gateway: &str, payload: &[u8]) -> Message {
    let checked = json::decode::<GatewayPresence>(payload, MAX_MESSAGE_BYTES).and_then(|p| {
        if p.gateway == gateway {
            Ok(p)
        } else {
            Err(Rejection {
                reason: "gateway_mismatch",
                detail: format!("presence of {} on topic of {gateway}", p.gateway),
            })
        }
    });
    match checked {
        Ok(p) => Message::Presence(PresenceReport {
            gateway: gateway.to_string(),
            online: p.online,
        }),
        Err(why) => Message::Store(Incoming::refused(topic, payload, why)),
    }
}

/// Counts a message that needs no storing.
fn ignored(what: &'static str) -> Option<Incoming> {
    metrics::counter!("gridwatch_ingest_ignored_total", "topic" => what).increment(1);
    None
}

fn node(topic: &str, gateway: &str, device: &str, kind: Kind, payload: &[u8]) -> Incoming {
    let decoded = Reading::decode(kind, payload).and_then(|r| {
        if r.device() == device {
            Ok(r)
        } else {
            Err(ValidationError::DeviceMismatch.into())
        }
    });
    let source = Source::Node;
    match decoded {
        Ok(reading) => Incoming {
            source,
            accepted: vec![Accepted {
                gateway: gateway.to_string(),
                reading,
            }],
            refused: vec![],
        },
        Err(why) => Incoming {
            source,
            accepted: vec![],
            refused: vec![refusal(topic, payload, why)],
        },
    }
}

fn batch(topic: &str, gateway: &str, payload: &[u8]) -> Incoming {
    let batch: Batch = match json::decode(payload, MAX_BATCH_BYTES) {
        Ok(b) => b,
        Err(why) => return Incoming::refused(topic, payload, why),
    };
    if batch.gateway != gateway {
        let why = Rejection {
            reason: "gateway_mismatch",
            detail: format!("batch from {} on topic of {gateway}", batch.gateway),
        };
        return Incoming::refused(topic, payload, why);
    }
    let mut incoming = Incoming {
        source: Source::Batch {
            gateway: gateway.to_string(),
            batch: batch.batch,
        },
        accepted: Vec::with_capacity(batch.readings.len()),
        refused: Vec::new(),
    };
    for raw in &batch.readings {
        let bytes = raw.get().as_bytes();
        match decode_batched(bytes) {
            Ok(reading) => incoming.accepted.push(Accepted {
                gateway: gateway.to_string(),
                reading,
            }),
            Err(why) => incoming.refused.push(refusal(topic, bytes, why)),
        }
    }
    incoming
}

/// Whether a device may send readings through a gateway: the identities of the
/// credentials file, when brokers run with credentials.
pub trait Membership {
    fn membership(&self, device: &str, gateway: &str) -> gridwatch_broker::Membership;
}

impl Membership for gridwatch_broker::Credentials {
    fn membership(&self, device: &str, gateway: &str) -> gridwatch_broker::Membership {
        gridwatch_broker::Credentials::membership(self, device, gateway)
    }
}

/// Quarantines the readings of a gateway batch whose devices are not provisioned
/// nodes of that gateway (`wrong_gateway`, `unknown_device`); the rest of the
/// batch stays accepted. An authenticated gateway may publish only its own
/// batches, but could otherwise still speak for any device.
pub fn check_membership(incoming: &mut Incoming, topic: &str, members: &impl Membership) {
    let Source::Batch { gateway, .. } = &incoming.source else {
        return;
    };
    let gateway = gateway.clone();
    let accepted = std::mem::take(&mut incoming.accepted);
    for reading in accepted {
        let reason = match members.membership(reading.reading.device(), &gateway) {
            gridwatch_broker::Membership::Member => {
                incoming.accepted.push(reading);
                continue;
            }
            gridwatch_broker::Membership::WrongGateway => "wrong_gateway",
            gridwatch_broker::Membership::UnknownDevice => "unknown_device",
        };
        let why = Rejection {
            reason,
            detail: format!("device {} is not a node of gateway {gateway}", reading.reading.device()),
        };
        let payload = serde_json::to_vec(&reading.reading).unwrap_or_default();
        incoming.refused.push(refusal(topic, &payload, why));
    }
}

/// Decodes one reading of a batch. Readings as gateways write them start with
/// their tag (`{"kind":"lift",...`): those are decoded straight as their kind,
/// which is about twice as fast as serde's internally tagged enum (it buffers
/// every field before choosing the variant). Anything else, and anything the
/// fast path refuses, goes through [`Reading::decode_tagged`], so acceptance and
/// refusal reasons are exactly its.
fn decode_batched(bytes: &[u8]) -> Result<Reading, Rejection> {
    const PREFIX: &[u8] = b"{\"kind\":\"";
    let fast = bytes.strip_prefix(PREFIX).and_then(|rest| {
        let end = rest.iter().position(|&b| b == b'"')?;
        let kind = Kind::parse(std::str::from_utf8(&rest[..end]).ok()?)?;
        // A second "kind" would make the tagged decoder's answer differ: leave it to it.
        let after = &rest[end..];
        if after.windows(6).any(|w| w == b"\"kind\"") {
            return None;
        }
        Reading::decode(kind, bytes).ok()
    });
    match fast {
        Some(reading) => Ok(reading),
        None => Reading::decode_tagged(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_its_gateways_nodes_and_quarantines_the_rest() {
        struct Register;
        impl Membership for Register {
            fn membership(&self, device: &str, gateway: &str) -> gridwatch_broker::Membership {
                match (device, gateway) {
                    ("L-1", "gw1") => gridwatch_broker::Membership::Member,
                    ("L-2", _) => gridwatch_broker::Membership::WrongGateway,
                    _ => gridwatch_broker::Membership::UnknownDevice,
                }
            }
        }
        let reading = |device: &str| {
            format!(
                r#"{{"kind":"event","v":1,"device":"{device}","seq":1,"ts":1764061201000,"body":{{"event":"alarm_button","code":0}}}}"#
            )
        };
        let payload = format!(
            r#"{{"v":1,"gateway":"gw1","batch":7,"readings":[{},{},{}]}}"#,
            reading("L-1"),
            reading("L-2"),
            reading("X-9")
        );
        let mut incoming = classify("gw/gw1/batch", payload.as_bytes()).unwrap();
        assert_eq!(incoming.accepted.len(), 3, "{:?}", incoming.refused);
        check_membership(&mut incoming, "gw/gw1/batch", &Register);
        let kept: Vec<&str> = incoming.accepted.iter().map(|a| a.reading.device()).collect();
        assert_eq!(kept, ["L-1"]);
        let reasons: Vec<&str> = incoming.refused.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, ["wrong_gateway", "unknown_device"]);
        assert!(String::from_utf8_lossy(&incoming.refused[0].payload).contains("L-2"));
    }

    #[test]
    fn one_bad_reading_does_not_refuse_its_batch() {
        let good = r#"{"kind":"event","v":1,"device":"L-1","seq":4,"ts":1764061201000,"body":{"event":"alarm_button","code":0}}"#;
        let bad = r#"{"kind":"event","v":1,"device":"L-1","seq":5,"ts":1764061201000,"body":{"event":"levitation","code":0}}"#;
        let payload = format!(r#"{{"v":1,"gateway":"gw1","batch":3,"readings":[{good},{bad}]}}"#);
        let incoming = classify("gw/gw1/batch", payload.as_bytes()).unwrap();
        assert_eq!(
            incoming.source,
            Source::Batch {
                gateway: "gw1".into(),
                batch: 3
            }
        );
        assert_eq!(incoming.accepted.len(), 1);
        assert_eq!(incoming.refused.len(), 1);
        assert_eq!(incoming.refused[0].reason, "malformed");
        assert_eq!(incoming.refused[0].payload, bad.as_bytes());
    }

    #[test]
    fn batched_readings_decode_as_the_tagged_decoder_does() {
        let cases: &[&[u8]] = &[
            br#"{"kind":"event","v":1,"device":"L-1","seq":4,"ts":1764061201000,"body":{"event":"alarm_button","code":0}}"#,
            br#"{"v":1,"kind":"event","device":"L-1","seq":4,"ts":1764061201000,"body":{"event":"alarm_button","code":0}}"#,
            br#"{"kind":"lift","v":1,"device":"L-1","seq":4,"ts":1764061201000,"body":{"event":"alarm_button","code":0}}"#,
            br#"{"kind":"event","v":1,"device":"L-1","seq":0,"ts":1764061201000,"body":{"event":"alarm_button","code":0}}"#,
            br#"{"kind":"ack","v":1,"device":"L-1","seq":4}"#,
            br#"{"kind":"levitation","v":1}"#,
            br#"{"kind":"event","kind":"lift","v":1,"device":"L-1","seq":4,"ts":1764061201000,"body":{"event":"alarm_button","code":0}}"#,
            b"{\"kind\":\"event",
        ];
        for bytes in cases {
            let fast = decode_batched(bytes).map_err(|e| e.reason);
            let tagged = Reading::decode_tagged(bytes).map_err(|e| e.reason);
            assert_eq!(fast, tagged, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn a_node_may_only_publish_as_itself() {
        let payload = r#"{"v":1,"device":"L-2","seq":1,"ts":1764061201000,"body":{"event":"alarm_button","code":0}}"#;
        let incoming = classify("gw/gw1/dev/L-1/event", payload.as_bytes()).unwrap();
        assert_eq!(incoming.refused[0].reason, "device_mismatch");
    }

    #[test]
    fn unknown_topics_are_quarantined_and_acks_ignored() {
        assert_eq!(
            classify("somewhere/else", b"x").unwrap().refused[0].reason,
            "unknown_topic"
        );
        assert_eq!(
            classify("gw/gw1/dev/L-1/ack", b"{}").unwrap().refused[0].reason,
            "unknown_kind"
        );
        assert!(classify("gw/gw1/ack/L-1", b"{}").is_none());
        assert!(classify("feed/firm/MF04", b"{}").is_none(), "ingest's own firm feed");
        assert_eq!(classify("feed/other", b"x").unwrap().refused[0].reason, "unknown_topic");
    }

    #[test]
    fn gateway_presence_goes_to_the_engine_and_a_bad_one_to_the_quarantine() {
        let will = br#"{"v":1,"gateway":"gw1","online":false}"#;
        let Message::Presence(report) = classify_message("gw/gw1/presence", will) else {
            panic!("not a presence");
        };
        assert_eq!(
            report,
            PresenceReport {
                gateway: "gw1".into(),
                online: false
            }
        );
        assert!(classify("gw/gw1/presence", will).is_none(), "nothing to store");
        let reason = |topic: &str, payload: &[u8]| match classify_message(topic, payload) {
            Message::Store(incoming) => incoming.refused[0].reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason("gw/gw2/presence", will), "gateway_mismatch");
        assert_eq!(reason("gw/gw1/presence", b"online"), "malformed");
    }
}
