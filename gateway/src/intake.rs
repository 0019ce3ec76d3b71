//! Node messages arriving on the gateway's embedded broker: decoded, checked
//! against their topic, and queued in the outbox or quarantined.
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
            match outbox.push(reading) {
                Accepted::AlreadyAcked(seq) => Outcome::Reack { device, seq },
                Accepted::Queued | Accepted::AlreadyPending => Outcome::Queued,
            }
        }
        Err(why) => {
            quarantine.keep(topic, payload, &why);
            Outcome::Rejected
        }
    }
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
