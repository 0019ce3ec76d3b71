//! The TOML files ingest reads at start-up, as the types that read them.
//!
//! `DomainConfig` (gridwatch-domain) and the users file (gridwatch-web) live in
//! crates that pull in the storage and HTTP stacks; their shapes are repeated here
//! around the real field types, with the same serde attributes. Keep them in step
//! with `domain/src/lib.rs` and `web/src/auth.rs`.
use gridwatch_alerts::AlertConfig;
use gridwatch_cases::registry::InspectionSchedule;
use gridwatch_cases::{Assignment, CaseConfig};
use serde::{Deserialize, Serialize};

/// `gridwatch ingest --config FILE`: `[alerts]`, `[cases]` and `[register]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainConfig {
    pub alerts: AlertConfig,
    pub cases: CaseConfig,
    pub register: RegisterConfig,
}

/// `[register]` (gridwatch-domain's `RegisterConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterConfig {
    pub max_unconfirmed_removal_share: f64,
    pub inspection: InspectionSchedule,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        Self {
            max_unconfirmed_removal_share: 0.2,
            inspection: InspectionSchedule::default(),
        }
    }
}

/// `gridwatch ingest --users FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub user: Vec<UserEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub id: String,
    pub name: String,
    pub token_sha256: String,
    pub assignments: Vec<Assignment>,
}
