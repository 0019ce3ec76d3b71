//! Times in API answers: each instant as `X_ms` (ms since the Unix epoch) and `X` (RFC 3339
//! UTC, e.g. `2026-11-25T02:00:00.000Z`), docs/api.md, "Times".
//!
//! The domain's types (cases, their records and deadlines, alert events) keep times as
//! bare ms under names like `opened_at` or `at`; [`api_times`] rewrites their JSON into the
//! pair once, where a handler answers with them.
use gridwatch_storage::model::rfc3339;
use serde_json::{Map, Value};

/// The domain's time fields, all ms since the epoch.
const TIME_KEYS: &[&str] = &[
    "at",
    "raised_at",
    "opened_at",
    "known_at",
    "updated_at",
    "cleared_at",
    "acknowledged_at",
    "closed_at",
    "due_at",
    "done_at",
    "deadline_at",
    "received_at",
    "created_at",
    "queued_at",
    "next_at",
    "last_at",
];

/// Rewrites every bare-ms time (a [`TIME_KEYS`] key with a whole number) into `X_ms` plus
/// `X` in RFC 3339, gives such a key holding RFC 3339 its `X_ms`, and any `X_ms` without
/// its `X` one, at every depth.
pub(crate) fn api_times(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for inner in map.values_mut() {
                api_times(inner);
            }
            pair(map);
        }
        Value::Array(items) => items.iter_mut().for_each(api_times),
        _ => {}
    }
}

fn pair(map: &mut Map<String, Value>) {
    for key in TIME_KEYS {
        match map.get(*key) {
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                let ms = n.as_i64().unwrap_or_default();
                map.insert(format!("{key}_ms"), Value::from(ms));
                map.insert((*key).to_string(), Value::from(rfc3339(ms)));
            }
            // Storage's views give the string: the number goes beside it.
            Some(Value::String(text)) if !map.contains_key(&format!("{key}_ms")) => {
                if let Ok(t) = text.parse::<jiff::Timestamp>() {
                    map.insert(format!("{key}_ms"), Value::from(t.as_millisecond()));
                }
            }
            // Not yet (a deadline not met): both halves say so.
            Some(Value::Null) => {
                map.entry(format!("{key}_ms")).or_insert(Value::Null);
            }
            _ => {}
        }
    }
    let unpaired: Vec<(String, i64)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.strip_suffix("_ms")?.to_string(), v.as_i64()?)))
        .filter(|(stem, _)| !map.contains_key(stem))
        .collect();
    for (stem, ms) in unpaired {
        map.insert(stem, Value::from(rfc3339(ms)));
    }
}

/// `value` as JSON with its times paired.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Value {
    let mut value = serde_json::to_value(value).unwrap_or(Value::Null);
    api_times(&mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bare_times_become_pairs_at_every_depth() {
        let mut v = json!({"opened_at": 1_795_572_000_000u64, "records": [{"at": 0, "note": "x"}],
            "ts_ms": 1000, "ts": "kept", "done_at": null, "late": false});
        api_times(&mut v);
        assert_eq!(v["opened_at"], "2026-11-25T02:00:00.000Z");
        assert_eq!(v["opened_at_ms"], 1_795_572_000_000u64);
        assert_eq!(v["records"][0]["at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["records"][0]["at_ms"], 0);
        assert_eq!(v["ts"], "kept");
        assert!(v["done_at"].is_null() && v["done_at_ms"].is_null());
        assert_eq!(v["late"], false);
    }

    #[test]
    fn an_rfc3339_time_gets_its_ms() {
        let mut v =
            json!({"cleared_at": "2026-11-25T02:00:00.000Z", "updated_at": "2026-11-25T02:00:00Z", "updated_at_ms": 5});
        api_times(&mut v);
        assert_eq!(v["cleared_at_ms"], 1_795_572_000_000u64);
        assert_eq!(v["updated_at_ms"], 5, "a pair is left as it is");
    }

    #[test]
    fn an_unpaired_ms_gets_its_sibling() {
        let mut v = json!({"seen_ms": 1000});
        api_times(&mut v);
        assert_eq!(v["seen"], "1970-01-01T00:00:01.000Z");
    }
}
