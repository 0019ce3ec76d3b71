//! Scenarios: TOML files under `simulators/scenarios/` that say which devices run,
//! what happens to them when (events and faults, on device time), and which alerts
//! must and must not follow. [`run()`] plays one through the real gateway and ingest
//! in process on virtual time; [`check`] compares the alerts. The file format and the
//! shipped scenarios are described in `docs/simulators.md`.
//!
//! ```no_run
//! # async fn example() -> Result<(), gridwatch_scenario::ScenarioError> {
//! let report = gridwatch_scenario::run_file("simulators/scenarios/trapped_alarm_button.toml".as_ref()).await?;
//! print!("{}", report.render());
//! assert!(report.passed());
//! # Ok(()) }
//! ```
pub mod check;
pub mod error;
mod inject;
mod locate;
pub mod parse;
pub mod run;

pub use check::{ActualAlert, Comparison, Verdict};
pub use error::{Invalid, RunError, ScenarioError, Stall};
/// The alert kinds scenarios name (`kind = "..."`), from the alert engine.
pub use gridwatch_alerts::AlertKind;
pub use parse::{Scenario, files_in, load, parse};
pub use run::{RunOptions, RunReport, run, run_file, run_with};

/// The directory of the shipped scenarios (beside the simulators they drive).
pub fn shipped_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../simulators/scenarios")
}
