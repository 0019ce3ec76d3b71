//! Which alerts open cases. A trapped passenger always opens an urgent case, whatever
//! the configuration says; everything else follows the configured rules.
use crate::case::{AlertRef, CaseType, Channel, Priority, Report, Subject};
use crate::registry::Registry;
use gridwatch_alerts::{AlertEvent, AlertKind, Change, Severity};
use serde::{Deserialize, Serialize};

/// Which alert kinds a rule matches: one kind, or every fault code (`"fault:*"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AlertPattern {
    Kind(AlertKind),
    AnyFault,
}

impl AlertPattern {
    pub fn matches(self, kind: AlertKind) -> bool {
        match self {
            AlertPattern::Kind(k) => k == kind,
            AlertPattern::AnyFault => matches!(kind, AlertKind::Fault(_)),
        }
    }
}

impl TryFrom<String> for AlertPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "fault:*" {
            Ok(AlertPattern::AnyFault)
        } else {
            s.parse().map(AlertPattern::Kind)
        }
    }
}

impl From<AlertPattern> for String {
    fn from(p: AlertPattern) -> String {
        match p {
            AlertPattern::Kind(k) => k.to_string(),
            AlertPattern::AnyFault => "fault:*".to_string(),
        }
    }
}

/// Alerts matching `alert` at `min_severity` or above open (or join) a case of `case_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRule {
    pub alert: AlertPattern,
    pub min_severity: Severity,
    pub case_type: CaseType,
    pub priority: Priority,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaseRules(pub Vec<CaseRule>);

impl Default for CaseRules {
    fn default() -> Self {
        let rule = |alert, min_severity, case_type, priority| CaseRule {
            alert,
            min_severity,
            case_type,
            priority,
        };
        use AlertPattern::{AnyFault, Kind};
        CaseRules(vec![
            rule(AnyFault, Severity::Major, CaseType::EquipmentFault, Priority::High),
            rule(
                Kind(AlertKind::DoorOpenWhileRunning),
                Severity::Major,
                CaseType::EquipmentFault,
                Priority::High,
            ),
            rule(
                Kind(AlertKind::StoppedOutsideDoorZone),
                Severity::Major,
                CaseType::EquipmentFault,
                Priority::High,
            ),
            // Overdue alerts turn major when the grace period is over.
            rule(
                Kind(AlertKind::InspectionOverdue),
                Severity::Major,
                CaseType::InspectionOverdue,
                Priority::Normal,
            ),
            rule(
                Kind(AlertKind::MaintenanceOverdue),
                Severity::Major,
                CaseType::MaintenanceOverdue,
                Priority::Normal,
            ),
            rule(
                Kind(AlertKind::NoCycleInMealPeriod),
                Severity::Minor,
                CaseType::SterilizerNotUsed,
                Priority::Normal,
            ),
        ])
    }
}

impl CaseRules {
    /// The case an alert event calls for, if any. Only raised and updated alerts count
    /// (an update may be a severity that crossed a rule's threshold).
    pub fn case_for(&self, event: &AlertEvent) -> Option<(CaseType, Priority)> {
        if !matches!(event.change, Change::Raised | Change::Updated) {
            return None;
        }
        if event.key.kind == AlertKind::TrappedPassenger {
            return Some((CaseType::TrappedPassenger, Priority::Urgent));
        }
        self.0
            .iter()
            .find(|r| r.alert.matches(event.key.kind) && event.severity >= r.min_severity)
            .map(|r| (r.case_type, r.priority))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertReportError {
    #[error("alert for device {0:?}, which is not in the register: its grid is unknown")]
    UnknownDevice(String),
}

/// The report an alert event makes for the case office, if a rule calls for one.
pub fn report_from_alert(
    event: &AlertEvent,
    registry: &Registry,
    rules: &CaseRules,
) -> Result<Option<Report>, AlertReportError> {
    let Some((case_type, priority)) = rules.case_for(event) else {
        return Ok(None);
    };
    let id = &event.key.device;
    let device = registry
        .device(id)
        .ok_or_else(|| AlertReportError::UnknownDevice(id.clone()))?;
    Ok(Some(Report {
        channel: Channel::Telemetry,
        subject: Subject::Device { id: id.clone() },
        case_type,
        grid: registry.grid_of(device),
        firm: device.firm.clone(),
        priority,
        at: event.at,
        // The caller knows when it learned of the alert (ingest's clock).
        known_at: None,
        description: format!("{} alert ({:?})", event.key.kind, event.severity),
        reporter: Some("gridwatch".to_string()),
        alert: Some(AlertRef {
            key: event.key.clone(),
            raised_at: event.raised_at,
        }),
    }))
}
