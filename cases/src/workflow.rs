//! The closed loop: five steps strictly in order, each allowed only to its roles in the
//! case's grid (or a wider scope), the reviewer never the handler, every step appended
//! to the case's audit record.
use crate::case::{Case, Evidence, ReportLimits, Status, StepRecord, StepTooLarge, check_evidence, check_note};
use crate::grid::GridCode;
use crate::roles::{Role, User};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Step {
    /// 发现受理: discover and accept.
    Accept,
    /// 核查取证: verify and collect evidence.
    Verify,
    /// 处置上报: handle and report.
    Handle,
    /// 结果反馈: feed back the result.
    Feedback,
    /// 复核办结: review and close.
    Review,
}

/// Who may take each step, in the order a role is picked when a user holds several.
pub const STEP_ROLES: [(Step, &[Role]); 5] = [
    (
        Step::Accept,
        &[Role::InformationOfficer, Role::GridAdministrator, Role::GridHead],
    ),
    (
        Step::Verify,
        &[Role::Supervisor, Role::Inspector, Role::GridAdministrator],
    ),
    (Step::Handle, &[Role::MaintenanceFirm, Role::GridAdministrator]),
    (Step::Feedback, &[Role::MaintenanceFirm, Role::GridAdministrator]),
    (Step::Review, &[Role::Supervisor, Role::GridHead]),
];

impl Step {
    pub const ALL: [Step; 5] = [Step::Accept, Step::Verify, Step::Handle, Step::Feedback, Step::Review];

    pub const fn chinese(self) -> &'static str {
        match self {
            Step::Accept => "发现受理",
            Step::Verify => "核查取证",
            Step::Handle => "处置上报",
            Step::Feedback => "结果反馈",
            Step::Review => "复核办结",
        }
    }

    pub fn allowed_roles(self) -> &'static [Role] {
        STEP_ROLES
            .iter()
            .find(|(s, _)| *s == self)
            .map_or(&[], |(_, roles)| roles)
    }

    /// The step a case in `status` waits for; `None` once closed.
    pub const fn next_for(status: Status) -> Option<Step> {
        match status {
            Status::Reported => Some(Step::Accept),
            Status::Accepted => Some(Step::Verify),
            Status::Verified => Some(Step::Handle),
            Status::Handled => Some(Step::Feedback),
            Status::FedBack => Some(Step::Review),
            Status::Closed => None,
        }
    }
}

/// A review either closes the case or sends it back to be handled again; every other
/// step just proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Decision {
    #[default]
    Proceed,
    ReturnForRework,
}

/// What a user submits to take a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInput {
    pub step: Step,
    pub decision: Decision,
    /// ms since the Unix epoch.
    pub at: u64,
    pub note: String,
    pub evidence: Vec<Evidence>,
}

impl StepInput {
    pub fn new(step: Step, at: u64, note: impl Into<String>) -> StepInput {
        StepInput {
            step,
            decision: Decision::Proceed,
            at,
            note: note.into(),
            evidence: Vec::new(),
        }
    }

    pub fn with_evidence(mut self, evidence: Evidence) -> StepInput {
        self.evidence.push(evidence);
        self
    }

    /// Refuses a note or evidence over `limits`, naming the field and the limit.
    pub fn check(&self, limits: &ReportLimits) -> Result<(), StepTooLarge> {
        check_note(&self.note, limits)?;
        check_evidence(&self.evidence, limits)
    }

    /// A review that sends the case back to be handled again instead of closing it.
    pub fn return_for_rework(mut self) -> StepInput {
        self.decision = Decision::ReturnForRework;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("the case is closed already")]
    AlreadyClosed,
    #[error("step {got:?} is out of order: the case waits for {expected:?}")]
    OutOfOrder { expected: Step, got: Step },
    #[error("step {step:?} may be taken only by {allowed:?}")]
    WrongRole { step: Step, allowed: Vec<Role> },
    #[error("the user holds a role for step {step:?}, but not for grid {grid} (or not for this case's firm)")]
    NotInGrid { step: Step, grid: GridCode },
    #[error("the reviewer handled the case: someone else must review it")]
    ReviewerIsHandler,
    #[error("step {0:?} needs at least one piece of evidence")]
    EvidenceRequired(Step),
    #[error("a step cannot be dated before the previous record ({previous} ms)")]
    BeforePreviousRecord { previous: u64 },
    #[error("only a review can return a case for rework")]
    ReturnOutsideReview,
}

impl Case {
    /// Takes the next step of the loop for `user`, appending it to the audit record.
    pub fn perform(&mut self, user: &User, input: StepInput) -> Result<&StepRecord, StepError> {
        let expected = Step::next_for(self.status()).ok_or(StepError::AlreadyClosed)?;
        if input.step != expected {
            return Err(StepError::OutOfOrder {
                expected,
                got: input.step,
            });
        }
        if input.decision == Decision::ReturnForRework && input.step != Step::Review {
            return Err(StepError::ReturnOutsideReview);
        }
        let role = role_for(self, user, input.step)?;
        if input.step == Step::Review
            && self
                .records
                .iter()
                .any(|r| r.step == Step::Handle && r.actor == user.id)
        {
            return Err(StepError::ReviewerIsHandler);
        }
        if input.step == Step::Verify && input.evidence.is_empty() {
            return Err(StepError::EvidenceRequired(Step::Verify));
        }
        // Device clocks may run a little ahead: the first step may come before the
        // device time the case was raised at, not before it became known.
        let previous = self.records.last().map_or(self.opened_at.min(self.known_at), |r| r.at);
        if input.at < previous {
            return Err(StepError::BeforePreviousRecord { previous });
        }
        self.records.push(StepRecord {
            step: input.step,
            decision: input.decision,
            actor: user.id.clone(),
            role,
            at: input.at,
            note: input.note,
            evidence: input.evidence,
        });
        Ok(self.records.last().expect("just pushed"))
    }
}

/// The role `user` takes `step` of `case` in: the first allowed role they hold there.
fn role_for(case: &Case, user: &User, step: Step) -> Result<Role, StepError> {
    let allowed = step.allowed_roles();
    let held: Vec<Role> = user.roles_at(case.placement()).collect();
    if let Some(role) = allowed.iter().find(|r| held.contains(r)) {
        return Ok(*role);
    }
    if allowed.iter().any(|r| user.has_role(*r)) {
        return Err(StepError::NotInGrid { step, grid: case.grid });
    }
    Err(StepError::WrongRole {
        step,
        allowed: allowed.to_vec(),
    })
}
