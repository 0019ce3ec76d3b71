//! Gateway → ingest batches and their acknowledgements (host side only).
use crate::message::*;
use crate::validate::{Validate, ValidationError};
use serde::{Deserialize, Serialize};
use std::string::String;
use std::vec::Vec;

/// Any sequenced reading, tagged with its kind (`{"kind":"lift", "v":1, ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reading {
    Lift(Envelope<LiftStatus>),
    Sterilizer(Envelope<SterilizerStatus>),
    Cycle(Envelope<CycleReport>),
    Event(Envelope<NodeEvent>),
    Birth(Envelope<Birth>),
}

macro_rules! with_envelope {
    ($self:expr, $e:ident => $body:expr) => {
        match $self {
            Reading::Lift($e) => $body,
            Reading::Sterilizer($e) => $body,
            Reading::Cycle($e) => $body,
            Reading::Event($e) => $body,
            Reading::Birth($e) => $body,
        }
    };
}

impl Reading {
    pub fn kind(&self) -> Kind {
        match self {
            Reading::Lift(_) => Kind::Lift,
            Reading::Sterilizer(_) => Kind::Sterilizer,
            Reading::Cycle(_) => Kind::Cycle,
            Reading::Event(_) => Kind::Event,
            Reading::Birth(_) => Kind::Birth,
        }
    }
    pub fn device(&self) -> &str {
        with_envelope!(self, e => &e.device)
    }
    pub fn seq(&self) -> u64 {
        with_envelope!(self, e => e.seq)
    }
    pub fn ts(&self) -> u64 {
        with_envelope!(self, e => e.ts)
    }

    /// Decodes the payload of a node topic of kind `kind` into a reading.
    pub fn decode(kind: Kind, bytes: &[u8]) -> Result<Reading, crate::codec::json::Rejection> {
        use crate::codec::json::decode;
        let max = MAX_MESSAGE_BYTES;
        Ok(match kind {
            Kind::Lift => Reading::Lift(decode(bytes, max)?),
            Kind::Sterilizer => Reading::Sterilizer(decode(bytes, max)?),
            Kind::Cycle => Reading::Cycle(decode(bytes, max)?),
            Kind::Event => Reading::Event(decode(bytes, max)?),
            Kind::Birth => Reading::Birth(decode(bytes, max)?),
            Kind::Presence => {
                return Err(crate::codec::json::Rejection {
                    reason: "not_a_reading",
                    detail: std::format!("{} messages are not readings", kind.as_str()),
                });
            }
        })
    }
}

impl Reading {
    /// Decodes one reading of a batch: `{"kind": "...", "v": 1, ...}`.
    pub fn decode_tagged(bytes: &[u8]) -> Result<Reading, crate::codec::json::Rejection> {
        crate::codec::json::decode(bytes, MAX_MESSAGE_BYTES + 32)
    }
}

impl Validate for Reading {
    fn validate(&self) -> Result<(), ValidationError> {
        with_envelope!(self, e => e.validate())
    }
}

/// Readings forwarded by a gateway in one MQTT message, oldest first per device.
///
/// Readings are validated one by one on arrival, so that one bad reading is
/// quarantined without refusing its neighbours: the batch itself only checks its header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub v: u8,
    pub gateway: String,
    /// The gateway's batch number; echoed in the [`BatchAck`].
    pub batch: u64,
    pub readings: Vec<std::boxed::Box<serde_json::value::RawValue>>,
}

impl Validate for Batch {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.v != SCHEMA_VERSION {
            return Err(ValidationError::UnsupportedVersion(self.v));
        }
        if crate::validate::valid_device_id(&self.gateway) {
            Ok(())
        } else {
            Err(ValidationError::BadDeviceId)
        }
    }
}

/// Highest `seq` of one device made durable by a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSeq {
    pub device: String,
    pub seq: u64,
}

/// Ingest → gateway: batch `batch` is committed (or quarantined) in full; the
/// gateway may delete it from its outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    pub v: u8,
    pub gateway: String,
    pub batch: u64,
    /// Readings stored (new or already present).
    pub stored: u32,
    /// Readings refused and quarantined.
    pub rejected: u32,
}

impl Validate for BatchAck {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.v == SCHEMA_VERSION {
            Ok(())
        } else {
            Err(ValidationError::UnsupportedVersion(self.v))
        }
    }
}
