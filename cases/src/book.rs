//! The case book: all cases, with the merge rule — a report about the same subject and
//! case type as an open case joins that case instead of opening another.
use crate::case::{Case, CaseId, CaseType, Report, ReportLimits, StepRecord, StepTooLarge, Subject, check_note};
use crate::deadline::{DeadlineConfig, Escalation, escalate};
use crate::grid::GridScope;
use crate::response::{Response, ResponseError, ResponseRecord};
use crate::roles::User;
use crate::rules::CaseRules;
use crate::workflow::{StepError, StepInput};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything the case system is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaseConfig {
    /// Grids (or units, areas) where rural deadlines apply.
    pub rural: Vec<GridScope>,
    pub deadlines: DeadlineConfig,
    pub rules: CaseRules,
    /// How large a report or step may be and how many reports a case keeps.
    pub limits: ReportLimits,
    /// A case that became known more than this many seconds after it was raised is
    /// marked late ([`Case::late`]). A policy default: 120.
    pub late_after_s: u64,
}

impl Default for CaseConfig {
    fn default() -> Self {
        Self {
            rural: Vec::new(),
            deadlines: DeadlineConfig::default(),
            rules: CaseRules::default(),
            limits: ReportLimits::default(),
            late_after_s: 120,
        }
    }
}

impl CaseConfig {
    pub fn is_rural(&self, report: &Report) -> bool {
        self.rural.iter().any(|s| s.contains(report.grid))
    }
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "case", rename_all = "snake_case")]
pub enum Intake {
    /// A new case.
    Opened(CaseId),
    /// Attached to this open case about the same subject and problem.
    Merged(CaseId),
    /// The same alert was attached to this case already: nothing changed.
    Duplicate(CaseId),
}

/// `{"outcome": "opened" | "merged" | "duplicate", "case": ID}`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Intake {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .property(
                "outcome",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["opened", "merged", "duplicate"]))
                    .description(Some("A new case, attached to an open case about the same subject and problem, or the same alert attached already (nothing changed)")),
            )
            .property("case", ObjectBuilder::new().schema_type(Type::Integer).format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64))).minimum(Some(0)))
            .required("outcome")
            .required("case")
            .description(Some("What became of a report"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Intake {}

impl Intake {
    pub fn case(self) -> CaseId {
        match self {
            Intake::Opened(id) | Intake::Merged(id) | Intake::Duplicate(id) => id,
        }
    }
}

/// The open case a report about `subject` and `case_type` belongs to (for callers that keep
/// cases in a database: query the candidates, then pick with this).
pub fn find_open_case<'a>(
    cases: impl IntoIterator<Item = &'a Case>,
    subject: &Subject,
    case_type: CaseType,
) -> Option<&'a Case> {
    cases
        .into_iter()
        .find(|c| c.is_open() && c.case_type == case_type && c.subject == *subject)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error("no case {0}")]
    UnknownCase(CaseId),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Response(#[from] ResponseError),
    #[error(transparent)]
    TooLarge(#[from] StepTooLarge),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseBook {
    next_id: CaseId,
    cases: BTreeMap<CaseId, Case>,
}

impl CaseBook {
    /// Rebuilds a book from stored cases; new ids continue after the highest.
    pub fn from_cases(cases: impl IntoIterator<Item = Case>) -> CaseBook {
        let cases: BTreeMap<CaseId, Case> = cases.into_iter().map(|c| (c.id, c)).collect();
        let next_id = cases.keys().next_back().copied().unwrap_or(0);
        CaseBook { next_id, cases }
    }

    /// Takes in a report: merges it into the matching open case or opens a new one.
    pub fn submit(&mut self, report: Report, cfg: &CaseConfig) -> Intake {
        let open = find_open_case(self.cases.values(), &report.subject, report.case_type).map(|c| c.id);
        if let Some(id) = open {
            let case = self.cases.get_mut(&id).expect("found above");
            return if case.attach(report, &cfg.limits) {
                Intake::Merged(id)
            } else {
                Intake::Duplicate(id)
            };
        }
        self.next_id += 1;
        let id = self.next_id;
        let rural = cfg.is_rural(&report);
        let late_after_ms = cfg.late_after_s.saturating_mul(1000);
        self.cases
            .insert(id, Case::open(id, report, rural, &cfg.limits, late_after_ms));
        Intake::Opened(id)
    }

    pub fn case(&self, id: CaseId) -> Option<&Case> {
        self.cases.get(&id)
    }

    pub fn cases(&self) -> impl Iterator<Item = &Case> {
        self.cases.values()
    }

    /// The cases `user` may see: in their grids, or of their firm.
    pub fn visible_cases<'a>(&'a self, user: &'a User) -> impl Iterator<Item = &'a Case> + 'a {
        self.cases.values().filter(|c| user.can_see(c.placement()))
    }

    /// Takes a step of case `id` for `user`.
    pub fn perform(&mut self, id: CaseId, user: &User, input: StepInput) -> Result<StepRecord, CaseError> {
        let case = self.cases.get_mut(&id).ok_or(CaseError::UnknownCase(id))?;
        Ok(case.perform(user, input)?.clone())
    }

    /// Records the firm's `response` to case `id` for `user` (see [`Case::respond`]); the
    /// note is bounded by `limits`.
    pub fn respond(
        &mut self,
        id: CaseId,
        user: &User,
        response: Response,
        at: u64,
        note: String,
        limits: &ReportLimits,
    ) -> Result<ResponseRecord, CaseError> {
        check_note(&note, limits)?;
        let case = self.cases.get_mut(&id).ok_or(CaseError::UnknownCase(id))?;
        Ok(case.respond(user, response, at, note)?.clone())
    }

    /// The open case that holds a report of alert `key`.
    pub fn open_case_of_alert(&self, key: &gridwatch_alerts::AlertKey) -> Option<CaseId> {
        self.cases
            .values()
            .find(|c| {
                c.is_open()
                    && c.reports()
                        .iter()
                        .any(|r| r.alert.as_ref().is_some_and(|a| a.key == *key))
            })
            .map(|c| c.id)
    }

    /// Escalates every open case whose deadline passed by `now`; each level once per case.
    pub fn escalate_due(&mut self, cfg: &DeadlineConfig, now: u64) -> Vec<(CaseId, Escalation)> {
        let mut out = Vec::new();
        for (id, case) in self.cases.iter_mut().filter(|(_, c)| c.is_open()) {
            out.extend(escalate(case, cfg, now).into_iter().map(|e| (*id, e)));
        }
        out
    }
}
