//! gridwatch grid case system: the grid, roles, the equipment register and the closed-loop
//! case workflow (发现受理 → 核查取证 → 处置上报 → 结果反馈 → 复核办结).
//!
//! Pure and synchronous: no I/O, no wall clock; times are ms since the Unix epoch passed
//! in by the caller, so deadlines run on virtual time in tests. All state is serde
//! serializable. Rules and tables are documented in `docs/cases.md`.
//!
//! Modules, one concern each:
//! - [`grid`]: grid codes and the area → unit → grid tree;
//! - [`roles`]: users, roles per grid, visibility;
//! - [`registry`]: using units, maintenance firms, devices, inspection/maintenance records;
//! - [`import`]: the register CSV layout with Chinese headers;
//! - [`case`]: cases, reports, the audit record;
//! - [`workflow`]: the five steps, who may take them, step errors;
//! - [`response`]: the maintenance firm's responses (acknowledged, arrived on site);
//! - [`deadline`]: deadlines and escalation;
//! - [`rules`]: which alerts open cases;
//! - [`book`]: the case book and the merge rule;
//! - [`stats`]: statistics rows and CSV.
pub mod book;
pub mod case;
pub mod deadline;
pub mod grid;
pub mod import;
pub mod registry;
pub mod response;
pub mod roles;
pub mod rules;
pub mod stats;
pub mod workflow;

pub use book::{CaseBook, CaseConfig, CaseError, Intake, find_open_case};
pub use case::{
    AlertRef, Case, CaseId, CaseType, Channel, Evidence, EvidenceKind, Priority, Report, ReportLimits, ReportTooLarge,
    Status, StepRecord, StepTooLarge, Subject,
};
pub use deadline::{DeadlineConfig, DeadlineRule, Escalation, EscalationLevel, check_deadlines, escalate};
pub use grid::{GridCode, GridCodeError, GridLevel, GridScope};
pub use import::{ParsedRegister, RowError, import_register, parse_register};
pub use registry::{Device, DeviceStatus, EquipmentType, MaintenanceFirm, Registry, RegistryError, UnitKey, UsingUnit};
pub use response::{RESPONDERS, Response, ResponseError, ResponseRecord};
pub use roles::{Assignment, Placement, Role, User};
pub use rules::{AlertPattern, CaseRule, CaseRules, report_from_alert};
pub use workflow::{Decision, STEP_ROLES, Step, StepError, StepInput};
