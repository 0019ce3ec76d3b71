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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    TrappedPassenger,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::TrappedPassenger => "trapped_passenger",
        }
    }
}

/// A change the alert engine asks the store to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertChange {
    Raise {
        device: String,
        kind: AlertKind,
        severity: &'static str,
        at_ms: u64,
        detail: String,
    },
    Clear {
        device: String,
        kind: AlertKind,
        at_ms: u64,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    pub device_id: String,
    pub severity: String,
    pub state: String,
    pub raised_at: String,
    pub raised_at_ms: i64,
    pub cleared_at: Option<String>,
    pub detail: String,
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
pub struct QuarantineRow {
    pub id: i64,
    pub received_at: String,
    pub source: String,
    pub reason: String,
    pub detail: String,
    /// The payload as text (lossy where it was not UTF-8).
    pub payload: String,
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
