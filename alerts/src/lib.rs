//! gridwatch alert engine: turns lift and sterilizer readings, time ticks and register
//! entries into alert events (raised, updated, acknowledged, cleared).
//!
//! Pure and synchronous: no I/O, no wall clock. Every rule runs on device time (the
//! readings' `ts`) or on the time a tick gives, so tests drive virtual time, late data
//! gives the alerts live data would, and state can be saved and resumed anywhere.
//! Rules, defaults and the ordering rule are documented in `docs/alerts.md`.
//!
//! Modules, one concern each:
//! - [`alert`]: alert kinds, severities, keys, details and events;
//! - [`config`]: every threshold, with defaults;
//! - [`lifecycle`]: raise / update / acknowledge / clear with a minimum clear time;
//! - [`lift`], [`sterilizer`], [`due`], [`offline`]: the rules;
//! - [`monitor`]: one device's state and the reading-order rule (seq jumps, clock steps
//!   back, resets);
//! - [`engine`]: all devices and gateways, ticks, change tracking;
//! - [`china`]: China-local dates and times of day.
pub mod alert;
pub mod china;
pub mod config;
pub mod due;
pub mod engine;
pub mod lifecycle;
pub mod lift;
pub mod monitor;
pub mod offline;
pub mod sterilizer;

pub use alert::{AlertEvent, AlertKey, AlertKind, Change, Details, DueStage, Severity, TrappedReason};
pub use china::{ClockTime, Date};
pub use config::{AlertConfig, KitchenSchedule, ReadingsConfig};
pub use due::{DeviceProfile, DueKind, DueState, evaluate_due};
pub use engine::{Changes, Engine, EngineState};
pub use lifecycle::Alert;
pub use monitor::{Anomalies, DeviceMonitor, SeqMark, Verdict};
