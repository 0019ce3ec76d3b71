//! Node messages arriving on the gateway's embedded broker: decoded, checked
//! against their topic, and handed to the outbox (which may refuse them when full:
//! the node keeps them) or quarantined.
use crate::outbox::{Accepted, Outbox};
use crate::quarantine::Quarantine;
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::codec::json::Rejection;
use gridwatch_protocol::{Kind, Topic};

/// What the caller must do after a message was taken in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Queued,
    Ignored,
    Rejected,
    /// Tell `device` again that everything up to `seq` is committed.
    Reack {
        device: String,
        seq: u64,
    },
}

pub(crate) fn take_in(
    gateway: &str,
    topic: &str,
    payload: &[u8],
    outbox: &mut Outbox,
    quarantine: &Quarantine,
) -> Outcome {
    match classify(gateway, topic, payload) {
        Ok(None) => Outcome::Ignored,
        Ok(Some(reading)) => {
            metrics::counter!("gridwatch_gateway_readings_total").increment(1);
            let device = reading.device().to_string();
            match outbox.relay(reading) {
                Accepted::AlreadyAcked(seq) => Outcome::Reack { device, seq },
                Accepted::Queued | Accepted::AlreadyPending => Outcome::Queued,
                // Not acknowledged: the node keeps it and sends it again.
                Accepted::Refused | Accepted::Dropped => Outcome::Ignored,
            }
        }
        Err(why) => {
            quarantine.keep(topic, payload, &why);
            match sender_and_seq(gateway, topic, payload) {
                Some((device, seq)) => match outbox.quarantined(&device, seq, std::time::Instant::now()) {
                    Some(seq) => Outcome::Reack { device, seq },
                    None => Outcome::Rejected,
                },
                None => Outcome::Rejected,
            }
        }
    }
}

/// The device and seq of a rejected node reading, when its topic is this gateway's and
/// its envelope names the topic's device (only its body failed the checks).
fn sender_and_seq(gateway: &str, topic: &str, payload: &[u8]) -> Option<(String, u64)> {
    #[derive(serde::Deserialize)]
    struct Head {
        device: String,
        seq: u64,
    }
    let Ok(Topic::Node {
        gateway: gw, device, ..
    }) = Topic::parse(topic)
    else {
        return None;
    };
    let head: Head = serde_json::from_slice(payload).ok()?;
    (gw == gateway && head.device == device).then_some((head.device, head.seq))
}

fn classify(gateway: &str, topic: &str, payload: &[u8]) -> Result<Option<Reading>, Rejection> {
    let parsed = Topic::parse(topic).map_err(|e| Rejection {
        reason: e.reason(),
        detail: format!("topic {topic:?}"),
    })?;
    let Topic::Node {
        gateway: gw,
        device,
        kind,
    } = parsed
    else {
        return Ok(None);
    };
    if gw != gateway {
        return Err(Rejection {
            reason: "foreign_gateway",
            detail: format!("topic is for gateway {gw}, this is {gateway}"),
        });
    }
    match kind {
        Kind::Presence => {
            tracing::info!(device, payload = %String::from_utf8_lossy(payload), "node presence");
            Ok(None)
        }
        _ => {
            let reading = Reading::decode(kind, payload)?;
            if reading.device() != device {
                return Err(gridwatch_protocol::ValidationError::DeviceMismatch.into());
            }
            Ok(Some(reading))
        }
    }
}
