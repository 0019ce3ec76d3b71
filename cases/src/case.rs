//! A case: one real-world problem with one device (or using unit), the reports that led
//! to it, and its append-only record of steps and escalations.
use crate::deadline::Escalation;
use crate::grid::GridCode;
use crate::registry::UnitKey;
use crate::roles::{Placement, Role};
use crate::workflow::{Decision, Step};
use gridwatch_alerts::AlertKey;
use serde::{Deserialize, Serialize};

pub type CaseId = u64;

/// The problem a case is about; with the subject, what decides whether reports merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseType {
    TrappedPassenger,
    /// A fault or unsafe state of the equipment (lift fault, door open while running …).
    EquipmentFault,
    InspectionOverdue,
    MaintenanceOverdue,
    /// No disinfection cycle when the kitchen served meals.
    SterilizerNotUsed,
    /// Cycles too cold, too short or aborted.
    SterilizerMisuse,
    DeviceOffline,
    /// Anything else a hotline caller or an inspector reports.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Normal,
    High,
    /// Red: a person is in danger now.
    Urgent,
}

/// How a report reached the case office.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An alert of the monitoring system.
    Telemetry,
    /// 12315 market-supervision hotline.
    Hotline12315,
    /// 96333 lift emergency hotline.
    Hotline96333,
    /// An inspector's patrol.
    Patrol,
    /// Another system through the API.
    Api,
}

/// What a case is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Subject {
    /// A device by its registration code.
    Device { id: String },
    /// A using unit, when the reporter cannot name a device.
    Unit { unit: UnitKey },
}

/// The alert behind a telemetry report; the same alert reported twice is one report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlertRef {
    pub key: AlertKey,
    pub raised_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub channel: Channel,
    pub subject: Subject,
    pub case_type: CaseType,
    pub grid: GridCode,
    /// The maintenance firm responsible for the device, if any.
    pub firm: Option<String>,
    pub priority: Priority,
    /// When it was reported, ms since the Unix epoch.
    pub at: u64,
    pub description: String,
    /// Who reported: a user id, a caller's number, a system name.
    pub reporter: Option<String>,
    pub alert: Option<AlertRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    Photo,
    Attachment,
    Signature,
    /// An excerpt of the device's telemetry.
    Telemetry,
}

/// A reference to evidence stored elsewhere (a file id, a URL, a telemetry query).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: EvidenceKind,
    pub reference: String,
}

/// One step taken: who, in which role, when, what, with which evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    pub decision: Decision,
    pub actor: String,
    pub role: Role,
    pub at: u64,
    pub note: String,
    pub evidence: Vec<Evidence>,
}

/// Where a case stands: after which step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Reported,
    Accepted,
    Verified,
    Handled,
    FedBack,
    Closed,
}

impl Status {
    pub const fn is_open(self) -> bool {
        !matches!(self, Status::Closed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub id: CaseId,
    pub case_type: CaseType,
    pub subject: Subject,
    pub grid: GridCode,
    pub firm: Option<String>,
    /// Raised to the highest priority of its reports.
    pub priority: Priority,
    /// Rural deadlines apply.
    pub rural: bool,
    pub opened_at: u64,
    pub(crate) reports: Vec<Report>,
    pub(crate) records: Vec<StepRecord>,
    pub(crate) escalations: Vec<Escalation>,
}

impl Case {
    /// Opens a case from its first report.
    pub fn open(id: CaseId, report: Report, rural: bool) -> Case {
        Case {
            id,
            case_type: report.case_type,
            subject: report.subject.clone(),
            grid: report.grid,
            firm: report.firm.clone(),
            priority: report.priority,
            rural,
            opened_at: report.at,
            reports: vec![report],
            records: Vec::new(),
            escalations: Vec::new(),
        }
    }

    pub fn reports(&self) -> &[Report] {
        &self.reports
    }

    /// The audit trail, oldest first. Only ever appended to.
    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }

    pub fn escalations(&self) -> &[Escalation] {
        &self.escalations
    }

    pub fn placement(&self) -> Placement<'_> {
        Placement {
            grid: self.grid,
            firm: self.firm.as_deref(),
        }
    }

    pub fn status(&self) -> Status {
        match self.records.last() {
            None => Status::Reported,
            Some(r) => match (r.step, r.decision) {
                (Step::Accept, _) => Status::Accepted,
                (Step::Verify, _) => Status::Verified,
                (Step::Handle, _) => Status::Handled,
                (Step::Feedback, _) => Status::FedBack,
                (Step::Review, Decision::Proceed) => Status::Closed,
                // Sent back: handled again from the verified state.
                (Step::Review, Decision::ReturnForRework) => Status::Verified,
            },
        }
    }

    pub fn is_open(&self) -> bool {
        self.status().is_open()
    }

    /// When `step` was first completed.
    pub fn completed_at(&self, step: Step) -> Option<u64> {
        self.records.iter().find(|r| r.step == step).map(|r| r.at)
    }

    /// When the case was closed.
    pub fn closed_at(&self) -> Option<u64> {
        self.records
            .iter()
            .find(|r| r.step == Step::Review && r.decision == Decision::Proceed)
            .map(|r| r.at)
    }

    /// Attaches a further report about the same problem. Returns false (and changes
    /// nothing) when the same alert was attached already.
    pub(crate) fn attach(&mut self, report: Report) -> bool {
        if report.alert.is_some() && self.reports.iter().any(|r| r.alert == report.alert) {
            return false;
        }
        self.priority = self.priority.max(report.priority);
        self.reports.push(report);
        true
    }
}
