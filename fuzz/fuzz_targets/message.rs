//! Every node-side message the gateway, ingest and firmware decode from the wire,
//! through both decoders; the first byte picks the kind. Properties: no panic,
//! decode → encode → decode gives the same value, both decoders agree, and a
//! reading decoded for a topic's kind is of that kind.
#![no_main]
use gridwatch_fuzz::{firmware_round_trip, host_round_trip};
use gridwatch_protocol::batch::{BatchAck, Reading};
use gridwatch_protocol::*;
use libfuzzer_sys::fuzz_target;

fn reading<B>(kind: Kind, bytes: &[u8])
where
    B: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    Envelope<B>: Validate,
{
    // What the gateway's and ingest's intake call for `gw/{gw}/dev/{device}/{kind}`.
    if let Ok(r) = Reading::decode(kind, bytes) {
        assert_eq!(r.kind(), kind);
        assert_eq!(r.validate(), Ok(()));
    }
    let host = host_round_trip::<Envelope<B>>(bytes, MAX_MESSAGE_BYTES);
    firmware_round_trip::<Envelope<B>>(bytes, host.as_ref());
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => reading::<LiftStatus>(Kind::Lift, bytes),
        1 => reading::<SterilizerStatus>(Kind::Sterilizer, bytes),
        2 => reading::<CycleReport>(Kind::Cycle, bytes),
        3 => reading::<NodeEvent>(Kind::Event, bytes),
        4 => reading::<Birth>(Kind::Birth, bytes),
        5 => {
            // Presence is never a reading, whatever its payload.
            assert!(Reading::decode(Kind::Presence, bytes).is_err());
            let host = host_round_trip::<Presence>(bytes, MAX_MESSAGE_BYTES);
            firmware_round_trip::<Presence>(bytes, host.as_ref());
        }
        6 => {
            // The node acks the firmware reads.
            let host = host_round_trip::<NodeAck>(bytes, MAX_MESSAGE_BYTES);
            firmware_round_trip::<NodeAck>(bytes, host.as_ref());
        }
        _ => {
            // The batch acks the gateway reads.
            host_round_trip::<BatchAck>(bytes, MAX_MESSAGE_BYTES);
        }
    }
});
