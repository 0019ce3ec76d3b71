//! The JSON bodies of the API's POST routes, through axum's `Json` extractor as the
//! handlers receive them; the first byte picks the route. Properties: no panic, an
//! accepted body encodes and decodes to the same value, and an acknowledged alert
//! kind parses back from its name.
#![no_main]
use axum::Json;
use gridwatch_alerts::AlertKind;
use gridwatch_fuzz::bodies::*;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) -> Option<T> {
    let Json(value) = Json::<T>::from_bytes(bytes).ok()?;
    let encoded = serde_json::to_vec(&value).expect("bodies serialize");
    let Json(again) = Json::<T>::from_bytes(&encoded)
        .unwrap_or_else(|e| panic!("{value:?} re-encoded as {:?}: {e}", String::from_utf8_lossy(&encoded)));
    assert_eq!(value, again);
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Some(ack) = round_trip::<AckBody>(bytes)
                && let Ok(kind) = ack.kind.parse::<AlertKind>()
            {
                assert_eq!(kind.to_string().parse::<AlertKind>(), Ok(kind));
            }
        }
        1 => drop(round_trip::<ReportBody>(bytes)),
        2 => drop(round_trip::<StepBody>(bytes)),
        3 => drop(round_trip::<InspectionBody>(bytes)),
        _ => drop(round_trip::<MaintenanceBody>(bytes)),
    }
});
