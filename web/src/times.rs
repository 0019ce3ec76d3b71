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
    each_object(value, &pair);
}

/// Calls `f` on every object in `value`, innermost first.
fn each_object(value: &mut Value, f: &impl Fn(&mut Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            for inner in map.values_mut() {
                each_object(inner, f);
            }
            f(map);
        }
        Value::Array(items) => items.iter_mut().for_each(|item| each_object(item, f)),
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

/// The schema side of [`api_times`], over a JSON Schema (or an OpenAPI document's
/// schemas, at every depth): in each object schema, a [`TIME_KEYS`] property of integer
/// type becomes an RFC 3339 string with its `X_ms` integer beside it; one of string type
/// gets its `X_ms`; an `X_ms` integer gets its `X`. Each half is nullable and required as
/// the property it comes from.
pub(crate) fn api_times_schemas(value: &mut Value) {
    each_object(value, &pair_schema);
}

/// The JSON types a property schema allows (`type` as a name or a list).
fn types_of(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn typed(name: &str, nullable: bool) -> Value {
    if nullable {
        Value::from(vec![name, "null"])
    } else {
        Value::from(name)
    }
}

fn pair_schema(map: &mut Map<String, Value>) {
    let Some(Value::Object(props)) = map.get("properties") else {
        return;
    };
    let required: Vec<String> = map
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    // (property, its schema, required) to set, decided before any is set.
    let mut set: Vec<(String, Value, bool)> = Vec::new();
    for key in TIME_KEYS {
        let Some(prop) = props.get(*key) else { continue };
        let types = types_of(prop);
        let nullable = types.contains(&"null");
        let needed = required.iter().any(|r| r == key);
        let ms = format!("{key}_ms");
        // The type's own description (of the bare ms) goes with the ms half.
        let mut described = format!("`{key}` as ms since the Unix epoch");
        if types.contains(&"integer") {
            if let Some(description) = prop.get("description").and_then(Value::as_str) {
                described = description.to_string();
            }
            let text = serde_json::json!({"type": typed("string", nullable), "format": "date-time",
                "description": format!("`{ms}` in RFC 3339 UTC")});
            set.push(((*key).to_string(), text, needed));
        } else if !types.contains(&"string") || props.contains_key(&ms) {
            continue;
        }
        if !props.contains_key(&ms) {
            let number = serde_json::json!({"type": typed("integer", nullable), "format": "int64",
                "description": described});
            set.push((ms, number, needed));
        }
    }
    for (name, prop) in props {
        let Some(stem) = name.strip_suffix("_ms") else { continue };
        let types = types_of(prop);
        if types.contains(&"integer") && !props.contains_key(stem) && !set.iter().any(|(n, _, _)| n == stem) {
            let text = serde_json::json!({"type": typed("string", types.contains(&"null")), "format": "date-time",
                "description": format!("`{name}` in RFC 3339 UTC")});
            set.push((stem.to_string(), text, required.iter().any(|r| r == name)));
        }
    }
    if set.is_empty() {
        return;
    }
    let mut required = required;
    for (name, schema, needed) in set {
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            props.insert(name.clone(), schema);
        }
        if needed && !required.contains(&name) {
            required.push(name);
        }
    }
    map.insert("required".into(), Value::from(required));
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

    #[test]
    fn schemas_pair_their_times_as_answers_do() {
        let mut schema = json!({"components": {"schemas": {"Case": {"type": "object",
            "properties": {"opened_at": {"type": "integer", "description": "ms"}, "done_at": {"type": ["integer", "null"]},
                "raised_at": {"type": "string"}, "seen_ms": {"type": "integer"}, "note": {"type": "string"}},
            "required": ["opened_at", "raised_at", "seen_ms"]}}}});
        api_times_schemas(&mut schema);
        let case = &schema["components"]["schemas"]["Case"];
        let props = &case["properties"];
        assert_eq!(props["opened_at"]["type"], "string");
        assert_eq!(props["opened_at"]["format"], "date-time");
        assert_eq!(props["opened_at_ms"]["type"], "integer");
        assert_eq!(
            props["opened_at_ms"]["description"], "ms",
            "the bare ms's description stays with the ms"
        );
        assert_eq!(props["done_at"]["type"], json!(["string", "null"]));
        assert_eq!(props["done_at_ms"]["type"], json!(["integer", "null"]));
        assert_eq!(props["raised_at_ms"]["type"], "integer");
        assert_eq!(props["seen"]["type"], "string");
        assert_eq!(props["note"], json!({"type": "string"}));
        let required: Vec<&str> = case["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for name in [
            "opened_at",
            "opened_at_ms",
            "raised_at",
            "raised_at_ms",
            "seen_ms",
            "seen",
        ] {
            assert!(required.contains(&name), "{name}: {required:?}");
        }
        assert!(!required.contains(&"done_at_ms"));
    }
}
