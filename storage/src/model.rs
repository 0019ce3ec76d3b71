//! What the ingest service stores and serves, independent of the backend.
use gridwatch_protocol::batch::Reading;
use serde::Serialize;

/// A reading accepted for storage, with the gateway it came through.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub gateway: String,
    pub reading: Reading,
}

/// Input refused, to be kept in quarantine.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The MQTT topic it arrived on.
    pub source: String,
    pub reason: &'static str,
    pub detail: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceRow {
    pub device_id: String,
    pub kind: String,
    pub gateway: String,
    pub last_seq: i64,
    pub last_seen: String,
    pub last_state: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuarantineRow {
    pub id: i64,
    pub received_at: String,
    pub source: String,
    pub reason: String,
    pub detail: String,
    /// The payload as text (lossy where it was not UTF-8), perhaps only its head.
    pub payload: String,
    /// The whole payload's length in bytes.
    pub payload_bytes: i64,
    /// `payload` is only the head of it.
    pub payload_truncated: bool,
}

/// Milliseconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// The values of [`AlertView::state`], for the API's schema.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum AlertState {
    Raised,
    Acknowledged,
    Cleared,
}

/// An alert as the API and dashboard show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertView {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = gridwatch_alerts::AlertKind))]
    pub kind: String,
    pub device_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = gridwatch_alerts::Severity))]
    pub severity: String,
    /// `raised`, `acknowledged` or `cleared`.
    #[cfg_attr(feature = "openapi", schema(value_type = AlertState))]
    pub state: String,
    /// Device time the alert was raised.
    pub raised_at: String,
    pub raised_at_ms: i64,
    /// Device time of the latest change.
    pub updated_at: String,
    pub cleared_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub revision: i64,
    /// The alert's facts as its latest event gave them.
    #[cfg_attr(feature = "openapi", schema(value_type = gridwatch_alerts::Details))]
    pub details: serde_json::Value,
}
