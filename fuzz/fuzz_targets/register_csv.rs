//! The equipment register CSV (`gridwatch equipment import`, `POST /api/equipment/import`).
//! Properties: no panic; the device count matches the registry; every error says
//! what was expected and names a line of the file. (Building the CSV reader is most of
//! each run: the target parses once.)
#![no_main]
use gridwatch_cases::parse_register;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_register(data);
    assert_eq!(parsed.registry.devices().count(), parsed.devices);
    // Line numbers are 1-based; 0 only where the CSV reader has no position.
    let lines = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u64 + 1;
    for error in &parsed.errors {
        assert!(!error.expected.is_empty(), "{error:?}");
        assert!(error.line <= lines, "{error:?} past the last of {lines} lines");
    }
});
