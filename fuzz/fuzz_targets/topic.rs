//! The topic parser, on any string a client can publish to. Properties: no panic,
//! and a parsed topic writes back to exactly the string it came from.
#![no_main]
use gridwatch_protocol::Topic;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // MQTT topic names are UTF-8; brokers refuse anything else before us.
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(topic) = Topic::parse(text) {
        let written = topic.write();
        assert_eq!(written.as_str(), text, "{topic:?}");
        assert_eq!(Topic::parse(&written), Ok(topic));
    }
});
