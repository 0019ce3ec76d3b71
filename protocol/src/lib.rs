//! Messages every side of gridwatch shares: node firmware, gateway and ingest.
//!
//! `no_std` and allocation-free by default so the firmware can use it; the `std`
//! feature adds the gateway→ingest batch types and `serde_json` codecs.
//! Wire format and topic scheme are documented in `docs/protocol.md`.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod codec;
pub mod message;
pub mod topic;
pub mod validate;

#[cfg(feature = "std")]
pub mod batch;
#[cfg(feature = "std")]
pub mod clock;

pub use codec::{DecodeError, EncodeError, decode, encode};
pub use message::*;
pub use topic::{ALL_BUT_NODE_ACKS, GW_BUT_NODE_ACKS, Topic, TopicError};
pub use validate::{Validate, ValidationError};
