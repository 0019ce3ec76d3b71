//! What a node sends: typed, sequenced records, and their wire form (the protocol's
//! JSON [`Envelope`] on a `gw/{gateway}/dev/{device}/{kind}` topic).
//!
//! Records stay typed in the buffer (about 50 bytes each) and are encoded only when
//! they go out, so a deep buffer costs little RAM.
use gridwatch_protocol::{
    Birth, CycleReport, DeviceId, EncodeError, Envelope, Kind, LiftStatus, NodeEvent, SterilizerStatus, encode,
};
use serde::{Deserialize, Serialize};

/// The body of one reading, tagged with its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeMessage {
    Lift(LiftStatus),
    Sterilizer(SterilizerStatus),
    Cycle(CycleReport),
    Event(NodeEvent),
    Birth(Birth),
}

impl NodeMessage {
    /// The topic kind this message is published under.
    pub const fn kind(&self) -> Kind {
        match self {
            NodeMessage::Lift(_) => Kind::Lift,
            NodeMessage::Sterilizer(_) => Kind::Sterilizer,
            NodeMessage::Cycle(_) => Kind::Cycle,
            NodeMessage::Event(_) => Kind::Event,
            NodeMessage::Birth(_) => Kind::Birth,
        }
    }
}

/// One buffered reading: its per-device `seq`, device time `ts` and body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub ts: u64,
    pub message: NodeMessage,
}

impl Record {
    /// Writes the record as the protocol's JSON envelope into `buf`; returns its length.
    pub fn encode_envelope(&self, device: &DeviceId, buf: &mut [u8]) -> Result<usize, EncodeError> {
        match &self.message {
            NodeMessage::Lift(body) => self.encode_with(device, body, buf),
            NodeMessage::Sterilizer(body) => self.encode_with(device, body, buf),
            NodeMessage::Cycle(body) => self.encode_with(device, body, buf),
            NodeMessage::Event(body) => self.encode_with(device, body, buf),
            NodeMessage::Birth(body) => self.encode_with(device, body, buf),
        }
    }

    fn encode_with<B: Serialize>(&self, device: &DeviceId, body: &B, buf: &mut [u8]) -> Result<usize, EncodeError> {
        encode(&Envelope::new(device.clone(), self.seq, self.ts, body), buf)
    }
}
