//! Inputs the fuzz targets (fuzz/fuzz_targets/) once failed on, kept as they were found.
use gridwatch_protocol::codec::{self, json};
use gridwatch_protocol::*;

/// `message` target: a birth whose `fw` held raw control bytes. The firmware decoder
/// took them raw, its encoder wrote them back as `\u0000` escapes, and it then
/// refused its own output; the host decoder took the escaped form.
#[test]
fn birth_with_control_characters_in_fw_is_refused_by_both_decoders() {
    let raw: &[u8] = b"{\"v\":1,\"device\":\"L-0001\",\"seq\":1,\"ts\":1764067100000,\"body\":{\"device_kind\":\"lift\",\"fw\":\"\0\0\0\0\0\0\0\x100.1.0\",\"boots\":0}}";
    assert_eq!(
        codec::decode::<Envelope<Birth>>(raw),
        Err(DecodeError::Invalid(ValidationError::BadFirmwareVersion))
    );
    let escaped = br#"{"v":1,"device":"L-0001","seq":1,"ts":1764067100000,"body":{"device_kind":"lift","fw":"\u0000\u00100.1.0","boots":0}}"#;
    let refused = json::decode::<Envelope<Birth>>(escaped, MAX_MESSAGE_BYTES).unwrap_err();
    assert_eq!(refused.reason, "bad_firmware_version");
    let refused = batch::Reading::decode(Kind::Birth, escaped).unwrap_err();
    assert_eq!(refused.reason, "bad_firmware_version");
}

/// What the firmware decoder accepts, its encoder writes in a form it reads back.
#[test]
fn firmware_codec_reads_back_what_it_accepted() {
    let inputs: &[&[u8]] = &[
        b"{\"v\":1,\"device\":\"L-0001\",\"seq\":1,\"ts\":1764067100000,\"body\":{\"device_kind\":\"lift\",\"fw\":\"\0\0\0\0\0\0\0\x100.1.0\",\"boots\":0}}",
        br#"{"v":1,"device":"L-0001","seq":1,"ts":1764067100000,"body":{"device_kind":"lift","fw":"0.1.0 rc1","boots":0}}"#,
    ];
    for input in inputs {
        let Ok(value) = codec::decode::<Envelope<Birth>>(input) else {
            continue;
        };
        let mut buf = [0u8; 4 * MAX_MESSAGE_BYTES];
        let n = codec::encode(&value, &mut buf).unwrap();
        let (again, _): (Envelope<Birth>, usize) = serde_json_core::from_slice(&buf[..n])
            .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(&buf[..n])));
        assert_eq!(again, value);
    }
}
