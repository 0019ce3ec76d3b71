//! The `inject_reading` action: one raw reading with a chosen `ts` and `seq`, published
//! to ingest's broker as the device itself (a direct node whose clock or seq went
//! wrong), for scenarios about input the firmware would not produce.
use crate::error::RunError;
use gridwatch_protocol::{DeviceId, DeviceKind, Door, Envelope, LiftStatus, Method, SterilizerStatus};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::time::Duration;

/// One injection: who, and the reading's `seq` and device time.
pub(crate) struct Injection<'a> {
    pub gateway: &'a str,
    pub device: &'a str,
    pub kind: DeviceKind,
    pub seq: u64,
    pub ts: u64,
    /// The device's login on ingest's broker, when it runs with credentials.
    pub secret: Option<&'a str>,
}

/// The payload and topic: a status of the device at rest with nothing wrong (a lift
/// at floor 1, a cold sterilizer), stamped `ts` with `seq`.
fn message(i: &Injection<'_>) -> Result<(String, Vec<u8>), RunError> {
    let id = DeviceId::try_from(i.device).map_err(|_| RunError::NoDevice(i.device.to_string()))?;
    let (kind, payload) = match i.kind {
        DeviceKind::Lift => (
            "lift",
            serde_json::to_vec(&Envelope::new(id, i.seq, i.ts, LiftStatus::at_rest(1))),
        ),
        DeviceKind::Sterilizer => {
            let idle = SterilizerStatus {
                method: Method::Infrared,
                temp_c: 25.0,
                door: Door::Closed,
                heating: false,
                power: true,
                in_cycle: false,
            };
            ("sterilizer", serde_json::to_vec(&Envelope::new(id, i.seq, i.ts, idle)))
        }
    };
    let payload = payload.map_err(|e| inject_error(i, e.to_string()))?;
    Ok((format!("gw/{}/dev/{}/{kind}", i.gateway, i.device), payload))
}

fn inject_error(i: &Injection<'_>, why: String) -> RunError {
    RunError::Inject {
        device: i.device.to_string(),
        why,
    }
}

/// Publishes the injection to `broker` and waits, at most `within`, until ingest has
/// handled it: its `NodeAck` up to the seq comes back (ingest acknowledges a direct
/// node's reading once stored or quarantined).
pub(crate) async fn inject(broker: SocketAddr, i: &Injection<'_>, within: Duration) -> Result<(), RunError> {
    let (topic, payload) = message(i)?;
    let messages = Messages {
        gateway: i.gateway,
        device: i.device,
        secret: i.secret,
        messages: vec![(topic, payload, i.seq)],
    };
    publish_all(broker, &messages, within).await
}

/// Raw messages of one device, each with its seq, to publish to ingest as the device.
pub(crate) struct Messages<'a> {
    pub gateway: &'a str,
    pub device: &'a str,
    pub secret: Option<&'a str>,
    /// (topic, payload, seq), published in this order.
    pub messages: Vec<(String, Vec<u8>, u64)>,
}

/// Publishes `m`'s messages to `broker` in their order and waits, at most `within`,
/// until ingest has acknowledged the highest seq among them.
pub(crate) async fn publish_all(broker: SocketAddr, m: &Messages<'_>, within: Duration) -> Result<(), RunError> {
    let fail = |why: String| RunError::Inject {
        device: m.device.to_string(),
        why,
    };
    let last_seq = m.messages.iter().map(|(_, _, seq)| *seq).max().unwrap_or(0);
    let mut options = MqttOptions::new(m.device, broker.ip().to_string(), broker.port());
    if let Some(secret) = m.secret {
        options.set_credentials(m.device, secret);
    }
    let (client, mut events) = AsyncClient::new(options, m.messages.len().clamp(16, 4096));
    let ack_topic = format!("gw/{}/ack/{}", m.gateway, m.device);
    let handled = async {
        loop {
            match events.poll().await.map_err(|e| e.to_string())? {
                Event::Incoming(Packet::ConnAck(_)) => {
                    client
                        .subscribe(ack_topic.as_str(), QoS::AtLeastOnce)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    for (topic, payload, _) in &m.messages {
                        client
                            .try_publish(topic.as_str(), QoS::AtLeastOnce, false, payload.clone())
                            .map_err(|e| e.to_string())?;
                    }
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == ack_topic => {
                    let ack: serde_json::Value = serde_json::from_slice(&p.payload).map_err(|e| e.to_string())?;
                    if ack["seq"].as_u64().is_some_and(|s| s >= last_seq) {
                        return Ok::<(), String>(());
                    }
                }
                _ => {}
            }
        }
    };
    let outcome = tokio::time::timeout(within, handled).await;
    let _ = client.disconnect().await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(fail(why)),
        Err(_) => Err(fail(format!(
            "no ack up to seq {last_seq} from ingest within {within:?}"
        ))),
    }
}

/// Shuffles `items` in place (Fisher-Yates on a xorshift seeded with `seed`): the same
/// seed gives the same order on every run.
pub(crate) fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_shuffle_is_a_seeded_permutation() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        super::shuffle(&mut a, 7);
        super::shuffle(&mut b, 7);
        assert_eq!(a, b);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        a.sort();
        assert_eq!(a, (0..50).collect::<Vec<_>>());
    }
}
