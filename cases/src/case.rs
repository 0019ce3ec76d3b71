//! A case: one real-world problem with one device (or using unit), the reports that led
//! to it, and its append-only record of steps and escalations.
use crate::deadline::Escalation;
use crate::grid::GridCode;
use crate::registry::UnitKey;
use crate::response::ResponseRecord;
use crate::roles::{Placement, Role};
use crate::workflow::{Decision, Step};
use gridwatch_alerts::AlertKey;
use serde::{Deserialize, Serialize};

pub type CaseId = u64;

/// The problem a case is about; with the subject, what decides whether reports merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Priority {
    Normal,
    High,
    /// Red: a person is in danger now.
    Urgent,
}

/// How a report reached the case office.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Subject {
    /// A device by its registration code.
    Device { id: String },
    /// A using unit, when the reporter cannot name a device.
    Unit { unit: UnitKey },
}

/// The alert behind a telemetry report; the same alert reported twice is one report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertRef {
    pub key: AlertKey,
    pub raised_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    pub channel: Channel,
    pub subject: Subject,
    pub case_type: CaseType,
    pub grid: GridCode,
    /// The maintenance firm responsible for the device, if any.
    pub firm: Option<String>,
    pub priority: Priority,
    /// When it was reported, ms since the Unix epoch: for an alert, the device time it
    /// was raised at.
    pub at: u64,
    /// When the system learned of it (ingest's clock when the alert arrived); `None`:
    /// at `at`. Later than `at` for data that arrived late.
    #[serde(default)]
    pub known_at: Option<u64>,
    pub description: String,
    /// Who reported: a user id, a caller's number, a system name.
    pub reporter: Option<String>,
    pub alert: Option<AlertRef>,
}

impl Report {
    /// Refuses a report with a field over `limits`, naming the field.
    pub fn check(&self, limits: &ReportLimits) -> Result<(), ReportTooLarge> {
        let fields = [
            ("description", Some(&self.description), limits.description_chars),
            ("reporter", self.reporter.as_ref(), limits.reporter_chars),
        ];
        for (field, text, max) in fields {
            let chars = text.map_or(0, |t| t.chars().count());
            if chars > max {
                return Err(ReportTooLarge { field, chars, max });
            }
        }
        Ok(())
    }

    /// Cuts every field to `limits` (reports made inside the system, which are not refused).
    fn bound(&mut self, limits: &ReportLimits) {
        truncate_chars(&mut self.description, limits.description_chars);
        if let Some(reporter) = &mut self.reporter {
            truncate_chars(reporter, limits.reporter_chars);
        }
    }
}

fn truncate_chars(text: &mut String, max: usize) {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
    }
}

/// Bounds on what one report may carry and how many reports a case keeps, so that no
/// caller can grow a case without limit (docs/api.md, "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportLimits {
    /// Characters of a report's description.
    pub description_chars: usize,
    /// Characters of a report's reporter (a user id, a caller's number, a name).
    pub reporter_chars: usize,
    /// Reports a case keeps; further reports merged into it are only counted
    /// ([`Case::extra_reports`]).
    pub reports_per_case: usize,
    /// Characters of a step's or a firm response's note.
    pub note_chars: usize,
    /// Pieces of evidence one step may carry.
    pub evidence_per_step: usize,
    /// Characters of one piece of evidence's reference.
    pub evidence_reference_chars: usize,
}

impl Default for ReportLimits {
    fn default() -> Self {
        Self {
            description_chars: 4_000,
            reporter_chars: 200,
            reports_per_case: 50,
            note_chars: 4_000,
            evidence_per_step: 20,
            evidence_reference_chars: 1_000,
        }
    }
}

/// A report with a field longer than [`ReportLimits`] allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {chars} characters, at most {max}")]
pub struct ReportTooLarge {
    pub field: &'static str,
    pub chars: usize,
    pub max: usize,
}

/// A step or firm response with a field over [`ReportLimits`]: its note, its number of
/// pieces of evidence, or one piece's reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {found} {unit}, at most {max}")]
pub struct StepTooLarge {
    /// `note`, `evidence` or `evidence[N].reference`.
    pub field: String,
    pub found: usize,
    /// `characters` or `items`.
    pub unit: &'static str,
    pub max: usize,
}

/// Refuses a note longer than `limits.note_chars`.
pub fn check_note(note: &str, limits: &ReportLimits) -> Result<(), StepTooLarge> {
    let chars = note.chars().count();
    if chars > limits.note_chars {
        return Err(StepTooLarge {
            field: "note".into(),
            found: chars,
            unit: "characters",
            max: limits.note_chars,
        });
    }
    Ok(())
}

/// Refuses more pieces of evidence than `limits.evidence_per_step`, or a reference
/// longer than `limits.evidence_reference_chars`.
pub fn check_evidence(evidence: &[Evidence], limits: &ReportLimits) -> Result<(), StepTooLarge> {
    if evidence.len() > limits.evidence_per_step {
        return Err(StepTooLarge {
            field: "evidence".into(),
            found: evidence.len(),
            unit: "items",
            max: limits.evidence_per_step,
        });
    }
    for (n, e) in evidence.iter().enumerate() {
        let chars = e.reference.chars().count();
        if chars > limits.evidence_reference_chars {
            return Err(StepTooLarge {
                field: format!("evidence[{n}].reference"),
                found: chars,
                unit: "characters",
                max: limits.evidence_reference_chars,
            });
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EvidenceKind {
    Photo,
    Attachment,
    Signature,
    /// An excerpt of the device's telemetry.
    Telemetry,
}

/// A reference to evidence stored elsewhere (a file id, a URL, a telemetry query).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evidence {
    pub kind: EvidenceKind,
    pub reference: String,
}

/// One step taken: who, in which role, when, what, with which evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = CaseStatus))]
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
#[serde(from = "StoredCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Case {
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub id: CaseId,
    pub case_type: CaseType,
    pub subject: Subject,
    pub grid: GridCode,
    pub firm: Option<String>,
    /// Raised to the highest priority of its reports.
    pub priority: Priority,
    /// Rural deadlines apply.
    pub rural: bool,
    /// When the problem was raised: the first report's `at` (an alert's device time).
    pub opened_at: u64,
    /// When the system learned of it: the first report's `known_at`. Deadlines count
    /// from here.
    pub known_at: u64,
    /// Known more than [`crate::CaseConfig::late_after_s`] after it was raised (data
    /// that reached ingest late).
    pub late: bool,
    pub(crate) reports: Vec<Report>,
    pub(crate) records: Vec<StepRecord>,
    pub(crate) escalations: Vec<Escalation>,
    /// The maintenance firm's responses (acknowledged, arrived on site), outside the loop.
    pub(crate) responses: Vec<ResponseRecord>,
    /// Reports merged into the case past [`ReportLimits::reports_per_case`]: counted, not kept.
    pub(crate) extra_reports: u64,
}

/// A case as stored: cases saved before `known_at`, `late` and `responses` existed load
/// as known when raised, not late, with no responses.
#[derive(Deserialize)]
struct StoredCase {
    id: CaseId,
    case_type: CaseType,
    subject: Subject,
    grid: GridCode,
    firm: Option<String>,
    priority: Priority,
    rural: bool,
    opened_at: u64,
    #[serde(default)]
    known_at: Option<u64>,
    #[serde(default)]
    late: bool,
    reports: Vec<Report>,
    records: Vec<StepRecord>,
    escalations: Vec<Escalation>,
    #[serde(default)]
    responses: Vec<ResponseRecord>,
    #[serde(default)]
    extra_reports: u64,
}

impl From<StoredCase> for Case {
    fn from(s: StoredCase) -> Case {
        Case {
            id: s.id,
            case_type: s.case_type,
            subject: s.subject,
            grid: s.grid,
            firm: s.firm,
            priority: s.priority,
            rural: s.rural,
            opened_at: s.opened_at,
            known_at: s.known_at.unwrap_or(s.opened_at),
            late: s.late,
            reports: s.reports,
            records: s.records,
            escalations: s.escalations,
            responses: s.responses,
            extra_reports: s.extra_reports,
        }
    }
}

impl Case {
    /// Opens a case from its first report, cut to `limits`; it is late when the report
    /// became known more than `late_after_ms` after it was raised.
    pub fn open(id: CaseId, mut report: Report, rural: bool, limits: &ReportLimits, late_after_ms: u64) -> Case {
        report.bound(limits);
        let known_at = report.known_at.unwrap_or(report.at);
        Case {
            id,
            case_type: report.case_type,
            subject: report.subject.clone(),
            grid: report.grid,
            firm: report.firm.clone(),
            priority: report.priority,
            rural,
            opened_at: report.at,
            known_at,
            late: known_at.saturating_sub(report.at) > late_after_ms,
            reports: vec![report],
            records: Vec::new(),
            escalations: Vec::new(),
            responses: Vec::new(),
            extra_reports: 0,
        }
    }

    /// The reports kept, oldest first: at most [`ReportLimits::reports_per_case`].
    pub fn reports(&self) -> &[Report] {
        &self.reports
    }

    /// Reports merged into the case beyond those kept.
    pub fn extra_reports(&self) -> u64 {
        self.extra_reports
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

    /// Attaches a further report about the same problem, cut to `limits`; past
    /// `limits.reports_per_case` it only counts it (its priority still counts). Returns
    /// false (and changes nothing) when the same alert was attached already.
    pub(crate) fn attach(&mut self, mut report: Report, limits: &ReportLimits) -> bool {
        if report.alert.is_some() && self.reports.iter().any(|r| r.alert == report.alert) {
            return false;
        }
        self.priority = self.priority.max(report.priority);
        if self.reports.len() >= limits.reports_per_case.max(1) {
            self.extra_reports += 1;
            return true;
        }
        report.bound(limits);
        self.reports.push(report);
        true
    }
}
