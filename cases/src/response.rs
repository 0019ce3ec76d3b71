//! The maintenance firm's responses to a case: it acknowledged the alarm, it arrived on
//! site, it resolved the fault. Recorded outside the five-step loop (which stays with the grid roles), each
//! with who and when, append-only; each stops the deadlines it answers
//! ([`Response::answers`]), so the rescue clock stops when the firm acts.
use crate::case::Case;
use crate::grid::GridCode;
use crate::roles::{Role, User};
use crate::workflow::Step;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = FirmResponse))]
pub enum Response {
    /// The firm took the alarm (its alert acknowledgement, or the API).
    Acknowledged,
    /// The firm's staff are at the device (the rescue is on site).
    ArrivedOnSite,
    /// The firm says the fault is fixed (the passenger freed, the device working); the
    /// grid still checks and closes the case in its loop.
    Resolved,
}

/// Who may record a response, in the order a role is picked: staff of the case's own
/// firm, or a grid administrator over the case's grid.
pub const RESPONDERS: [Role; 2] = [Role::MaintenanceFirm, Role::GridAdministrator];

impl Response {
    /// Every response, in the order they usually come.
    pub const ALL: [Response; 3] = [Response::Acknowledged, Response::ArrivedOnSite, Response::Resolved];

    /// The deadlines of the loop this response meets: arriving on site, or resolving
    /// the fault, also shows the alarm was taken.
    pub const fn answers(self, step: Step) -> bool {
        matches!(
            (self, step),
            (Response::Acknowledged, Step::Accept)
                | (
                    Response::ArrivedOnSite | Response::Resolved,
                    Step::Accept | Step::Handle
                )
        )
    }
}

/// One response recorded: what, who, in which role, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResponseRecord {
    pub response: Response,
    pub actor: String,
    pub role: Role,
    pub at: u64,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the case is closed already")]
    AlreadyClosed,
    #[error("{response:?} was recorded already at {at} ms")]
    AlreadyRecorded { response: Response, at: u64 },
    #[error("a response may be recorded only by {allowed:?}")]
    WrongRole { allowed: Vec<Role> },
    #[error("the user holds a role for responses, but not for grid {grid} (or not for this case's firm)")]
    NotInGrid { grid: GridCode },
    #[error("a response cannot be dated before the case became known ({known_at} ms)")]
    BeforeKnown { known_at: u64 },
}

impl Case {
    /// The firm's responses, oldest first. Only ever appended to.
    pub fn responses(&self) -> &[ResponseRecord] {
        &self.responses
    }

    /// When `response` was recorded.
    pub fn responded_at(&self, response: Response) -> Option<u64> {
        self.responses.iter().find(|r| r.response == response).map(|r| r.at)
    }

    /// Records `response` for `user` at `at`: once per response, on an open case, by a
    /// role of [`RESPONDERS`] for this case.
    pub fn respond(
        &mut self,
        user: &User,
        response: Response,
        at: u64,
        note: impl Into<String>,
    ) -> Result<&ResponseRecord, ResponseError> {
        if !self.is_open() {
            return Err(ResponseError::AlreadyClosed);
        }
        if let Some(at) = self.responded_at(response) {
            return Err(ResponseError::AlreadyRecorded { response, at });
        }
        let held: Vec<Role> = user.roles_at(self.placement()).collect();
        let Some(role) = RESPONDERS.iter().copied().find(|r| held.contains(r)) else {
            return Err(if RESPONDERS.iter().any(|r| user.has_role(*r)) {
                ResponseError::NotInGrid { grid: self.grid }
            } else {
                ResponseError::WrongRole {
                    allowed: RESPONDERS.to_vec(),
                }
            });
        };
        // Device clocks may run a little ahead: the earlier of raised and known.
        let known_at = self.known_at.min(self.opened_at);
        if at < known_at {
            return Err(ResponseError::BeforeKnown { known_at });
        }
        self.responses.push(ResponseRecord {
            response,
            actor: user.id.clone(),
            role,
            at,
            note: note.into(),
        });
        Ok(self.responses.last().expect("just pushed"))
    }
}
