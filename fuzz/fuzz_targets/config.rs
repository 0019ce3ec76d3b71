//! The TOML files `gridwatch ingest` reads: `--config` (alert thresholds, case
//! rules and deadlines) and `--users`; the first byte picks the file. Properties:
//! no panic, and an accepted file written back as TOML reads as the same value.
#![no_main]
use gridwatch_fuzz::config::{DomainConfig, UsersFile};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

fn round_trip<T: Serialize + DeserializeOwned + Debug>(text: &str) {
    let Ok(value) = toml::from_str::<T>(text) else { return };
    let written = toml::to_string(&value).unwrap_or_else(|e| panic!("{value:?} does not write as TOML: {e}"));
    let again: T = toml::from_str(&written).unwrap_or_else(|e| panic!("written back as {written:?}: {e}"));
    // Compared as written: a `nan` threshold is not equal to itself.
    let rewritten = toml::to_string(&again).expect("writes as TOML");
    assert_eq!(written, rewritten, "{value:?} then {again:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    // Both loaders read the file with `read_to_string`: UTF-8 or refused.
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if which % 2 == 0 {
        round_trip::<DomainConfig>(text);
    } else {
        round_trip::<UsersFile>(text);
    }
});
