//! Turns MQTT messages arriving at ingest's broker into readings to store and
//! refusals to quarantine. Two shapes arrive: gateway batches on `gw/{gw}/batch`
//! and single readings from smart nodes on `gw/{gw}/dev/{device}/{kind}`.
use gridwatch_protocol::batch::{Batch, Reading};
use gridwatch_protocol::codec::json::{self, Rejection};
use gridwatch_protocol::{Kind, MAX_BATCH_BYTES, Topic, ValidationError};
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

/// Classifies one MQTT message; `None` for messages that need no storing (acks, presence).
pub fn classify(topic: &str, payload: &[u8]) -> Option<Incoming> {
    let parsed = match Topic::parse(topic) {
        Ok(t) => t,
        Err(e) => {
            return Some(Incoming::refused(
                topic,
                payload,
                Rejection {
                    reason: e.reason(),
                    detail: format!("topic {topic:?}"),
                },
            ));
        }
    };
    match parsed {
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
    }
}
