//! The delivery side of a simulated node: numbers messages, keeps them until
//! acknowledged, reports on change and as a heartbeat.
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{Body, DeviceId, Envelope, Kind, Topic};
use serde::Serialize;
use std::collections::BTreeMap;

pub struct SimNode {
    pub device: String,
    pub gateway: String,
    seq: u64,
    heartbeat_ms: u64,
    last_body: Option<Vec<u8>>,
    last_sent_ms: u64,
    /// seq → (topic, payload), kept until acknowledged.
    unacked: BTreeMap<u64, (String, Vec<u8>)>,
}

/// One MQTT publish.
pub type Message = (String, Vec<u8>);

impl SimNode {
    pub fn new(device: &str, gateway: &str, heartbeat_ms: u64) -> Self {
        Self {
            device: device.to_string(),
            gateway: gateway.to_string(),
            seq: 0,
            heartbeat_ms,
            last_body: None,
            last_sent_ms: 0,
            unacked: BTreeMap::new(),
        }
    }

    pub fn ack_topic(&self) -> String {
        Topic::Node {
            gateway: &self.gateway,
            device: &self.device,
            kind: Kind::Ack,
        }
        .write()
        .to_string()
    }

    /// Returns a message when `body` differs from the last one sent, or the heartbeat is due.
    pub fn report<B: Body + Serialize>(&mut self, now_ms: u64, body: B) -> Option<Message> {
        let encoded = serde_json::to_vec(&body).expect("bodies serialize");
        let changed = self.last_body.as_ref() != Some(&encoded);
        if !changed && now_ms < self.last_sent_ms + self.heartbeat_ms {
            return None;
        }
        self.last_body = Some(encoded);
        Some(self.send(now_ms, body))
    }

    /// Numbers and keeps a message regardless of change (events, cycles).
    pub fn send<B: Body + Serialize>(&mut self, now_ms: u64, body: B) -> Message {
        self.seq += 1;
        self.last_sent_ms = now_ms;
        let device = DeviceId::try_from(self.device.as_str()).expect("simulated device ids are valid");
        let payload = json::encode(&Envelope::new(device, self.seq, now_ms, body));
        let topic = Topic::Node {
            gateway: &self.gateway,
            device: &self.device,
            kind: B::KIND,
        }
        .write()
        .to_string();
        self.unacked.insert(self.seq, (topic.clone(), payload.clone()));
        (topic, payload)
    }

    /// Everything up to `seq` is durable upstream.
    pub fn ack(&mut self, seq: u64) {
        self.unacked = self.unacked.split_off(&(seq + 1));
    }

    /// Messages to send again after a reconnect, oldest first.
    pub fn unacked(&self) -> Vec<Message> {
        self.unacked.values().cloned().collect()
    }

    pub fn last_seq(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_protocol::{EventKind, NodeEvent};

    #[test]
    fn keeps_messages_until_acked_and_numbers_them_in_order() {
        let mut node = SimNode::new("L1", "gw1", 10_000);
        let ev = NodeEvent {
            event: EventKind::AlarmButton,
            code: 0,
        };
        for _ in 0..3 {
            node.send(1_764_061_200_000, ev);
        }
        assert_eq!(node.unacked().len(), 3);
        node.ack(2);
        assert_eq!(node.unacked().len(), 1);
        assert!(node.unacked()[0].0.ends_with("/event"));
        assert_eq!(node.last_seq(), 3);
    }

    #[test]
    fn reports_on_change_and_on_heartbeat_only() {
        let mut node = SimNode::new("L1", "gw1", 10_000);
        let ev = NodeEvent {
            event: EventKind::AlarmButton,
            code: 0,
        };
        let t0 = 1_764_061_200_000;
        assert!(node.report(t0, ev).is_some());
        assert!(node.report(t0 + 5_000, ev).is_none());
        assert!(node.report(t0 + 10_000, ev).is_some());
        assert!(node.report(t0 + 10_001, NodeEvent { code: 1, ..ev }).is_some());
    }
}
