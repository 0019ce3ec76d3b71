//! JSON encoding. `encode`/`decode` use serde-json-core (no_std, no heap) and are
//! what the firmware runs; [`json`] does the same with serde_json on the host.
//! Both are checked against the golden vectors in `protocol/tests/vectors/`.
use crate::validate::{Validate, ValidationError};
use serde::{Serialize, de::DeserializeOwned};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DecodeError {
    /// Larger than the limit for its kind.
    Oversize { len: usize, max: usize },
    /// Not JSON, wrong shape, unknown enum value or missing field.
    Malformed,
    /// Well-formed but out of range.
    Invalid(ValidationError),
}

impl DecodeError {
    /// A stable, countable reason code (metrics label, quarantine reason).
    pub const fn reason(&self) -> &'static str {
        match self {
            DecodeError::Oversize { .. } => "oversize",
            DecodeError::Malformed => "malformed",
            DecodeError::Invalid(e) => e.reason(),
        }
    }
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Oversize { len, max } => write!(f, "message of {len} bytes exceeds the limit of {max}"),
            DecodeError::Malformed => f.write_str("malformed message"),
            DecodeError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl From<ValidationError> for DecodeError {
    fn from(e: ValidationError) -> Self {
        DecodeError::Invalid(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferFull,
}

/// Encodes `value` as JSON into `buf`, returning the number of bytes written.
pub fn encode<T: Serialize>(value: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    serde_json_core::to_slice(value, buf).map_err(|_| EncodeError::BufferFull)
}

/// Decodes and validates one node message of at most `MAX_MESSAGE_BYTES`.
pub fn decode<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, DecodeError> {
    check_size(bytes, crate::message::MAX_MESSAGE_BYTES)?;
    let (value, _): (T, usize) = serde_json_core::from_slice(bytes).map_err(|_| DecodeError::Malformed)?;
    value.validate()?;
    Ok(value)
}

pub fn check_size(bytes: &[u8], max: usize) -> Result<(), DecodeError> {
    if bytes.len() > max {
        Err(DecodeError::Oversize { len: bytes.len(), max })
    } else {
        Ok(())
    }
}

/// Host-side codec with serde_json, and a [`json::Rejection`] that keeps the
/// human-readable detail for the quarantine.
#[cfg(feature = "std")]
pub mod json {
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// Why a message was refused: a countable reason code and a detail for people.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Rejection {
        pub reason: &'static str,
        pub detail: String,
    }

    impl From<DecodeError> for Rejection {
        fn from(e: DecodeError) -> Self {
            Rejection {
                reason: e.reason(),
                detail: e.to_string(),
            }
        }
    }

    impl From<ValidationError> for Rejection {
        fn from(e: ValidationError) -> Self {
            DecodeError::Invalid(e).into()
        }
    }

    impl core::fmt::Display for Rejection {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "{}: {}", self.reason, self.detail)
        }
    }

    pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).expect("gridwatch messages always serialize")
    }

    /// Decodes and validates a value of at most `max` bytes.
    pub fn decode<T: DeserializeOwned + Validate>(bytes: &[u8], max: usize) -> Result<T, Rejection> {
        check_size(bytes, max)?;
        let value: T = serde_json::from_slice(bytes).map_err(|e| Rejection {
            reason: DecodeError::Malformed.reason(),
            detail: e.to_string(),
        })?;
        value.validate()?;
        Ok(value)
    }
}
