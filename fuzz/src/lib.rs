//! Shared checks of the fuzz targets: each decoder must never panic, and whatever
//! it accepts must survive encode → decode unchanged.
use gridwatch_protocol::codec::{self, json};
use gridwatch_protocol::{MAX_MESSAGE_BYTES, Validate};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

pub mod bodies;
pub mod config;

/// Room for a re-encoded message: numbers may come back longer than they were
/// written (`1e1` → `10.0`), so the limit that admitted the input does not apply.
const REENCODED_MAX: usize = 4 * MAX_MESSAGE_BYTES;

/// The host decoder (gateway and ingest): decode → encode → decode gives the same value.
pub fn host_round_trip<T>(bytes: &[u8], max: usize) -> Option<T>
where
    T: Serialize + DeserializeOwned + Validate + PartialEq + Debug,
{
    let value: T = json::decode(bytes, max).ok()?;
    let encoded = json::encode(&value);
    let again: T = json::decode(&encoded, max.max(REENCODED_MAX)).unwrap_or_else(|e| {
        panic!(
            "re-encoded {value:?} as {:?}: refused: {e}",
            String::from_utf8_lossy(&encoded)
        )
    });
    assert_eq!(
        value,
        again,
        "host round trip through {:?}",
        String::from_utf8_lossy(&encoded)
    );
    Some(value)
}

/// The firmware decoder (serde-json-core): the same round trip, and where both
/// decoders accept a message they read the same value.
pub fn firmware_round_trip<T>(bytes: &[u8], host: Option<&T>)
where
    T: Serialize + DeserializeOwned + Validate + PartialEq + Debug,
{
    let Ok(value) = codec::decode::<T>(bytes) else { return };
    if let Some(host) = host {
        assert_eq!(&value, host, "firmware and host decoders disagree");
    }
    let mut buf = [0u8; REENCODED_MAX];
    let n = codec::encode(&value, &mut buf).expect("a decoded message fits four times its limit");
    // The firmware encoder's output must be readable by the firmware decoder at any
    // length (`codec::decode` would refuse it past MAX_MESSAGE_BYTES).
    let (again, _): (T, usize) = serde_json_core::from_slice(&buf[..n])
        .unwrap_or_else(|_| panic!("firmware decoder refused {:?}", String::from_utf8_lossy(&buf[..n])));
    assert_eq!(
        value,
        again,
        "firmware round trip through {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}
