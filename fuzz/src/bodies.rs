//! The JSON bodies of the API's POST handlers (`web/src/api/*`), as the handlers
//! declare them: the same field types and serde attributes around the real domain
//! types. The handlers' structs are private to gridwatch-web, which brings the
//! storage and HTTP server stacks; keep these in step with them.
use gridwatch_alerts::Date;
use gridwatch_cases::{CaseType, Channel, Decision, Evidence, Priority, Step};
use serde::{Deserialize, Serialize};

/// `POST /api/alerts/ack` (`api/alerts.rs`); `kind` is then parsed as an `AlertKind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    pub device_id: String,
    pub kind: String,
}

/// `POST /api/cases` (`api/cases.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    pub channel: Channel,
    pub device_id: String,
    pub case_type: CaseType,
    #[serde(default)]
    pub priority: Option<Priority>,
    pub description: String,
    #[serde(default)]
    pub reporter: Option<String>,
}

/// `POST /api/cases/{id}/steps` (`api/cases.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    pub step: Step,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    #[serde(default)]
    pub decision: Decision,
}

/// `POST /api/equipment/{id}/inspections` (`api/equipment.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectionBody {
    pub date: Date,
    pub next_due: Date,
}

/// `POST /api/equipment/{id}/maintenance` (`api/equipment.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    pub date: Date,
}
