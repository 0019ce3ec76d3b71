//! Deadlines per case type and step, and the escalation when one passes: the maintenance
//! firm has the case first, then the grid head, then the emergency service (96333).
//! Deadlines count from when the case became known ([`Case::known_at`]), and a deadline is
//! met by its step of the loop or by the firm's response that answers it
//! ([`crate::Response::answers`]).
use crate::case::{Case, CaseType};
use crate::response::Response;
use crate::workflow::Step;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who a case goes up to when a deadline passes; the firm holds it before any escalation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EscalationLevel {
    GridHead,
    /// 96333 lift emergency service / fire brigade.
    EmergencyService,
}

/// `step` must be done within `within_s` of the case becoming known (`rural_within_s` in
/// rural grids), or the case escalates to `escalate_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineRule {
    pub step: Step,
    pub within_s: u64,
    #[serde(default)]
    pub rural_within_s: Option<u64>,
    pub escalate_to: EscalationLevel,
}

impl DeadlineRule {
    pub fn due_at(&self, case: &Case) -> u64 {
        let within = if case.rural {
            self.rural_within_s.unwrap_or(self.within_s)
        } else {
            self.within_s
        };
        case.known_at + within * 1000
    }

    /// When the deadline was met: the earliest of its step done and a firm response
    /// that answers it.
    pub fn met_at(&self, case: &Case) -> Option<u64> {
        let by_firm = Response::ALL
            .into_iter()
            .filter(|r| r.answers(self.step))
            .filter_map(|r| case.responded_at(r));
        case.completed_at(self.step).into_iter().chain(by_firm).min()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeadlineConfig(pub BTreeMap<CaseType, Vec<DeadlineRule>>);

const MIN: u64 = 60;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

impl Default for DeadlineConfig {
    /// Trapped passenger: accepted within 5 min, rescued on site (handled) within 30 min,
    /// 60 min in rural grids. Other types: policy defaults of a working office, see docs/cases.md.
    fn default() -> Self {
        use EscalationLevel::*;
        let rule = |step, within_s, rural_within_s, escalate_to| DeadlineRule {
            step,
            within_s,
            rural_within_s,
            escalate_to,
        };
        let office = |accept_s, handle_s| {
            vec![
                rule(Step::Accept, accept_s, None, GridHead),
                rule(Step::Handle, handle_s, None, GridHead),
            ]
        };
        DeadlineConfig(BTreeMap::from([
            (
                CaseType::TrappedPassenger,
                vec![
                    rule(Step::Accept, 5 * MIN, None, GridHead),
                    rule(Step::Handle, 30 * MIN, Some(60 * MIN), EmergencyService),
                ],
            ),
            (CaseType::EquipmentFault, office(2 * HOUR, DAY)),
            (CaseType::InspectionOverdue, office(DAY, 30 * DAY)),
            (CaseType::MaintenanceOverdue, office(DAY, 7 * DAY)),
            (CaseType::SterilizerNotUsed, office(DAY, 3 * DAY)),
            (CaseType::SterilizerMisuse, office(DAY, 3 * DAY)),
            (CaseType::DeviceOffline, office(DAY, 3 * DAY)),
            (CaseType::Other, office(DAY, 15 * DAY)),
        ]))
    }
}

impl DeadlineConfig {
    pub fn rules(&self, case_type: CaseType) -> &[DeadlineRule] {
        self.0.get(&case_type).map_or(&[], Vec::as_slice)
    }
}

/// A deadline that passed and where the case went because of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Escalation {
    pub level: EscalationLevel,
    /// The step that was not done in time.
    pub step: Step,
    pub deadline_at: u64,
    /// When the passing was noticed.
    pub at: u64,
}

/// The escalations due at `now` that the case has not had yet: each level at most once,
/// none for a deadline met in time (by its step or the firm's response) and none on a
/// closed case. A deadline met only after it passed still escalates. Pure: record them with
/// [`Case::record_escalations`] (or use [`escalate`]).
pub fn check_deadlines(case: &Case, cfg: &DeadlineConfig, now: u64) -> Vec<Escalation> {
    if !case.is_open() {
        return Vec::new();
    }
    let mut due: Vec<Escalation> = Vec::new();
    for rule in cfg.rules(case.case_type) {
        let deadline_at = rule.due_at(case);
        let reached = |level| {
            case.escalations
                .iter()
                .chain(&due)
                .any(|e: &Escalation| e.level == level)
        };
        let met_in_time = rule.met_at(case).is_some_and(|at| at <= deadline_at);
        if now >= deadline_at && !met_in_time && !reached(rule.escalate_to) {
            due.push(Escalation {
                level: rule.escalate_to,
                step: rule.step,
                deadline_at,
                at: now,
            });
        }
    }
    due
}

impl Case {
    /// Appends escalations to the case's record (those from [`check_deadlines`]).
    pub fn record_escalations(&mut self, escalations: &[Escalation]) {
        self.escalations.extend_from_slice(escalations);
    }

    /// The deadlines of this case with when each is due and when it was met (by its step or
    /// the firm's response), if it was.
    pub fn deadlines<'a>(&'a self, cfg: &'a DeadlineConfig) -> impl Iterator<Item = DeadlineStatus> + 'a {
        cfg.rules(self.case_type).iter().map(|rule| DeadlineStatus {
            step: rule.step,
            due_at: rule.due_at(self),
            done_at: rule.met_at(self),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadlineStatus {
    pub step: Step,
    pub due_at: u64,
    pub done_at: Option<u64>,
}

impl DeadlineStatus {
    /// Missed: done late, or not done and past due at `now`.
    pub fn missed(&self, now: u64) -> bool {
        match self.done_at {
            Some(done) => done > self.due_at,
            None => now > self.due_at,
        }
    }
}

/// Checks and records in one go; returns what was newly escalated.
pub fn escalate(case: &mut Case, cfg: &DeadlineConfig, now: u64) -> Vec<Escalation> {
    let due = check_deadlines(case, cfg, now);
    case.record_escalations(&due);
    due
}
