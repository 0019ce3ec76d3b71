//! Golden vectors: every encoder and decoder (serde-json-core for the firmware,
//! serde_json for the host) must agree with the files in `tests/vectors/` byte for byte.
use gridwatch_protocol::batch::{Batch, BatchAck, Reading};
use gridwatch_protocol::codec::{self, json};
use gridwatch_protocol::*;
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;

fn vector(name: &str) -> String {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim_end()
        .to_string()
}

/// Decodes the vector with both decoders, re-encodes with both encoders, and checks
/// that all four agree with the file.
fn check_both<T>(name: &str) -> T
where
    T: Serialize + DeserializeOwned + Validate + PartialEq + Debug,
{
    let text = vector(name);
    let core: T = codec::decode(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: serde-json-core: {e}"));
    let host: T =
        json::decode(text.as_bytes(), MAX_MESSAGE_BYTES).unwrap_or_else(|e| panic!("{name}: serde_json: {e}"));
    assert_eq!(core, host, "{name}: decoders disagree");
    let mut buf = [0u8; MAX_MESSAGE_BYTES];
    let n = codec::encode(&core, &mut buf).unwrap();
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        text,
        "{name}: serde-json-core encoding"
    );
    assert_eq!(
        String::from_utf8(json::encode(&host)).unwrap(),
        text,
        "{name}: serde_json encoding"
    );
    core
}

#[test]
fn lift_status_vector() {
    let m: Envelope<LiftStatus> = check_both("lift_trapped.json");
    assert_eq!(m.device.as_str(), "L-0001");
    assert_eq!((m.seq, m.ts), (42, 1_764_061_200_000));
    assert_eq!(m.body.door, Door::Closed);
    assert!(m.body.occupied);
}

#[test]
fn sterilizer_status_vector() {
    let m: Envelope<SterilizerStatus> = check_both("sterilizer_hot.json");
    assert_eq!(m.body.temp_c, 121.5);
    assert_eq!(m.body.method, Method::Infrared);
}

#[test]
fn cycle_vector() {
    let m: Envelope<CycleReport> = check_both("cycle_aborted.json");
    assert_eq!(m.body.outcome, CycleOutcome::Aborted);
    assert_eq!(m.body.hold_s, 240);
    assert_eq!(m.body.peak_c, Some(100.25));
}

#[test]
fn cycle_without_a_valid_reading_vector() {
    // A sensor faulty for the whole cycle: no peak, sent as null rather than a number.
    let m: Envelope<CycleReport> = check_both("cycle_no_reading.json");
    assert_eq!((m.body.peak_c, m.body.hold_s), (None, 0));
    assert_eq!(m.body.validate(), Ok(()));
}

#[test]
fn event_vector() {
    let m: Envelope<NodeEvent> = check_both("event_fault.json");
    assert_eq!(m.body.event, EventKind::FaultRaised);
    assert_eq!(m.body.code, 17);
}

#[test]
fn birth_vector() {
    let m: Envelope<Birth> = check_both("birth.json");
    assert_eq!(m.body.device_kind, DeviceKind::Lift);
    assert_eq!(m.body.boots, 3);
}

#[test]
fn presence_and_ack_vectors() {
    let p: Presence = check_both("presence_offline.json");
    assert!(!p.online);
    let a: NodeAck = check_both("ack.json");
    assert_eq!(a.seq, 42);
}

#[test]
fn batch_vector_round_trips_and_its_readings_decode() {
    let text = vector("batch.json");
    let batch: Batch = json::decode(text.as_bytes(), MAX_BATCH_BYTES).unwrap();
    assert_eq!(String::from_utf8(json::encode(&batch)).unwrap(), text);
    let readings: Vec<Reading> = batch
        .readings
        .iter()
        .map(|r| Reading::decode_tagged(r.get().as_bytes()).unwrap())
        .collect();
    assert_eq!(readings[0].kind(), Kind::Lift);
    assert_eq!((readings[1].device(), readings[1].seq()), ("L-0001", 43));
    // A tagged reading re-encodes to exactly the text the gateway sent.
    assert_eq!(
        String::from_utf8(json::encode(&readings[0])).unwrap(),
        batch.readings[0].get()
    );
    // Its body is the same as the standalone node message.
    let Reading::Lift(lift) = &readings[0] else { panic!() };
    let alone: Envelope<LiftStatus> = codec::decode(vector("lift_trapped.json").as_bytes()).unwrap();
    assert_eq!(lift, &alone);

    let ack: BatchAck = json::decode(vector("batch_ack.json").as_bytes(), MAX_MESSAGE_BYTES).unwrap();
    assert_eq!(String::from_utf8(json::encode(&ack)).unwrap(), vector("batch_ack.json"));
}

fn reject_both<T: DeserializeOwned + Validate + Debug>(payload: &str, reason: &str) {
    let core = codec::decode::<T>(payload.as_bytes()).expect_err(payload);
    assert_eq!(core.reason(), reason, "serde-json-core: {payload}");
    let host = json::decode::<T>(payload.as_bytes(), MAX_MESSAGE_BYTES).expect_err(payload);
    assert_eq!(host.reason, reason, "serde_json: {payload}");
    let kind = if std::any::type_name::<T>().contains("Lift") {
        Kind::Lift
    } else {
        Kind::Sterilizer
    };
    assert_eq!(
        Reading::decode(kind, payload.as_bytes()).expect_err(payload).reason,
        reason
    );
}

#[test]
fn invalid_vectors_are_refused_with_their_reason() {
    let text = vector("invalid.txt");
    let mut count = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut cols = line.splitn(3, '\t');
        let (kind, reason, payload) = (cols.next().unwrap(), cols.next().unwrap(), cols.next().unwrap());
        match kind {
            "lift" => reject_both::<Envelope<LiftStatus>>(payload, reason),
            "sterilizer" => reject_both::<Envelope<SterilizerStatus>>(payload, reason),
            other => panic!("unknown kind {other} in invalid.txt"),
        }
        count += 1;
    }
    assert_eq!(count, 10);
}

#[test]
fn oversize_is_refused_before_parsing() {
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_MESSAGE_BYTES));
    let e = codec::decode::<Envelope<LiftStatus>>(big.as_bytes()).unwrap_err();
    assert_eq!(e.reason(), "oversize");
    assert_eq!(
        json::decode::<Envelope<LiftStatus>>(big.as_bytes(), MAX_MESSAGE_BYTES)
            .unwrap_err()
            .reason,
        "oversize"
    );
}

#[test]
fn gateway_presence_vectors() {
    let birth: GatewayPresence = check_both("gateway_presence_online.json");
    assert_eq!(
        birth,
        GatewayPresence::new(DeviceId::try_from("gw-site-7").unwrap(), true)
    );
    let will: GatewayPresence = check_both("gateway_presence_offline.json");
    assert!(!will.online);
    for (payload, reason) in [
        (r#"{"v":2,"gateway":"gw-site-7","online":true}"#, "unsupported_version"),
        (r#"{"v":1,"gateway":"gw 7/#","online":true}"#, "bad_device_id"),
        (r#"{"v":1,"gateway":"gw-site-7","online":"yes"}"#, "malformed"),
    ] {
        let core = codec::decode::<GatewayPresence>(payload.as_bytes()).expect_err(payload);
        assert_eq!(core.reason(), reason, "serde-json-core: {payload}");
        let host = json::decode::<GatewayPresence>(payload.as_bytes(), MAX_MESSAGE_BYTES).expect_err(payload);
        assert_eq!(host.reason, reason, "serde_json: {payload}");
    }
}
