//! The live domain: the alert engine, the equipment register and the case book,
//! held in memory behind one lock ([`Alerting`]) and saved through
//! `gridwatch-storage` after every change; the engine's state is checkpointed in
//! pieces ([`checkpoint`]) and replayed from the stored readings on start-up.
//! The pure logic lives in `gridwatch-alerts` and `gridwatch-cases`; this crate
//! only routes inputs to it and collects what must be saved.
mod checkpoint;
mod register;
mod shared;

pub use register::{ImportSummary, RegisterRejected, import_register};
pub use shared::{Alerting, SharedDomain, load, run_ticks};

use gridwatch_alerts::{AlertConfig, AlertEvent, AlertKey, Date, Engine};
use gridwatch_cases::{
    CaseBook, CaseConfig, CaseError, CaseId, Intake, Registry, RegistryError, Report, StepInput, StepRecord, User,
    report_from_alert,
};
use gridwatch_protocol::batch::Reading;
use std::collections::{BTreeSet, HashMap};

/// The `--config` file: `[alerts]` and `[cases]`, every field optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainConfig {
    pub alerts: AlertConfig,
    pub cases: CaseConfig,
}

impl DomainConfig {
    /// Reads the TOML file; errors name the file and the field.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A `--config` file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {source}", path.display())]
    Parse {
        path: std::path::PathBuf,
        source: toml::de::Error,
    },
}

pub struct Domain {
    config: DomainConfig,
    engine: Engine,
    registry: Registry,
    book: CaseBook,
    /// Audit records already saved, per case: only later ones are appended.
    saved_records: HashMap<CaseId, usize>,
    /// Engine state whose checkpoint failed, to save at the next one (the engine
    /// itself keeps what changed since the last checkpoint began, and
    /// [`checkpoint::Checkpoint::begin`] adds it here before taking both).
    unsaved_engine: gridwatch_alerts::Changes,
}

/// What one change produced and must be saved (see [`Domain::changes`]).
#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<AlertEvent>,
    pub cases: BTreeSet<CaseId>,
    pub register_changed: bool,
}

impl Domain {
    pub fn new(config: DomainConfig, engine: Engine, registry: Registry, book: CaseBook) -> Self {
        let saved_records = book.cases().map(|c| (c.id, c.records().len())).collect();
        Self {
            config,
            engine,
            registry,
            book,
            saved_records,
            unsaved_engine: Default::default(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn book(&self) -> &CaseBook {
        &self.book
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &DomainConfig {
        &self.config
    }

    /// What `fx` asks to save, for `gridwatch_storage::domain::save`: its events, its
    /// cases with the audit records already saved, and the register if it changed.
    pub fn changes<'a>(
        &'a self,
        fx: &'a Effects,
    ) -> gridwatch_storage::Result<gridwatch_storage::domain::DomainChanges<'a>> {
        let about: BTreeSet<String> = fx.events.iter().map(|e| e.key.device.clone()).collect();
        // An alert's key names a device, or a gateway for gateway_offline: the rows of
        // whichever the engine holds under that id.
        let engine = gridwatch_storage::domain::engine_state_rows(self.engine.state(), &about, &about)?;
        Ok(gridwatch_storage::domain::DomainChanges {
            events: &fx.events,
            engine,
            cases: fx
                .cases
                .iter()
                .filter_map(|id| self.book.case(*id))
                .map(|case| (case, self.saved_records.get(&case.id).copied().unwrap_or(0)))
                .collect(),
            register: fx.register_changed.then_some(&self.registry),
        })
    }

    /// Records that the cases of `fx` are saved up to their current audit record.
    pub fn mark_saved(&mut self, fx: &Effects) {
        for id in &fx.cases {
            if let Some(case) = self.book.case(*id) {
                self.saved_records.insert(*id, case.records().len());
            }
        }
    }

    /// Applies readings new to the store, each with the gateway it came through.
    pub fn on_readings<'a>(&mut self, readings: impl IntoIterator<Item = (&'a Reading, &'a str)>) -> Effects {
        let mut events = Vec::new();
        for (reading, gateway) in readings {
            self.engine.apply_into(reading, Some(gateway), &mut events);
        }
        self.after_events(events)
    }

    /// Time-based rules (trapped without new readings, offline, meal periods, due dates)
    /// and case deadlines, at `now` on the ingest clock.
    pub fn tick(&mut self, now: u64) -> Effects {
        let events = self.engine.tick(now);
        let mut fx = self.after_events(events);
        for (id, escalation) in self.book.escalate_due(&self.config.cases.deadlines, now) {
            tracing::warn!(case = id, ?escalation, "case deadline passed: escalated");
            metrics::counter!("gridwatch_case_escalations_total").increment(1);
            fx.cases.insert(id);
        }
        fx
    }

    /// Replaces the register and re-evaluates every device's due dates.
    pub fn replace_register(&mut self, registry: Registry, now: u64) -> Effects {
        let mut events = Vec::new();
        for device in registry.devices() {
            events.extend(self.engine.set_profile(&device.id, device.profile(), now));
        }
        self.registry = registry;
        let mut fx = self.after_events(events);
        fx.register_changed = true;
        fx
    }

    /// An inspection record moves the next inspection due date.
    pub fn record_inspection(
        &mut self,
        device: &str,
        date: Date,
        next_due: Date,
        now: u64,
    ) -> Result<Effects, RegistryError> {
        self.registry.record_inspection(device, date, next_due)?;
        Ok(self.profile_changed(device, now))
    }

    /// A maintenance record restarts the maintenance interval.
    pub fn record_maintenance(&mut self, device: &str, date: Date, now: u64) -> Result<Effects, RegistryError> {
        self.registry.record_maintenance(device, date)?;
        Ok(self.profile_changed(device, now))
    }

    fn profile_changed(&mut self, device: &str, now: u64) -> Effects {
        let profile = self.registry.device(device).expect("just recorded").profile();
        let events = self.engine.set_profile(device, profile, now);
        let mut fx = self.after_events(events);
        fx.register_changed = true;
        fx
    }

    /// A report from another channel (hotline, patrol, API).
    pub fn report(&mut self, report: Report) -> (Intake, Effects) {
        let intake = self.book.submit(report, &self.config.cases);
        let mut fx = Effects::default();
        fx.cases.insert(intake.case());
        (intake, fx)
    }

    pub fn perform(&mut self, case: CaseId, user: &User, input: StepInput) -> Result<(StepRecord, Effects), CaseError> {
        let record = self.book.perform(case, user, input)?;
        let mut fx = Effects::default();
        fx.cases.insert(case);
        Ok((record, fx))
    }

    pub fn acknowledge(&mut self, key: &AlertKey, by: &str, at: u64) -> Option<Effects> {
        let event = self.engine.acknowledge(key, by, at)?;
        Some(self.after_events(vec![event]))
    }

    /// Opens or extends cases for events that call for one.
    fn after_events(&mut self, events: Vec<AlertEvent>) -> Effects {
        let mut fx = Effects {
            events,
            ..Effects::default()
        };
        for event in &fx.events {
            metrics::counter!("gridwatch_alert_events_total", "change" => format!("{:?}", event.change)).increment(1);
            match report_from_alert(event, &self.registry, &self.config.cases.rules) {
                Ok(Some(report)) => {
                    let intake = self.book.submit(report, &self.config.cases);
                    tracing::info!(alert = %event.key.kind, device = %event.key.device, ?intake, "case from alert");
                    fx.cases.insert(intake.case());
                }
                Ok(None) => {}
                // Devices outside the register have no grid: their alerts stand without a case.
                Err(e) => tracing::debug!(error = %e, "no case for alert"),
            }
        }
        fx
    }

    /// Adds engine state to what the next checkpoint saves: what a failed checkpoint
    /// handed back, and what the engine changed, taken at [`checkpoint::Checkpoint::begin`].
    pub(crate) fn mark_unsaved(&mut self, changes: gridwatch_alerts::Changes) {
        self.unsaved_engine.devices.extend(changes.devices);
        self.unsaved_engine.gateways.extend(changes.gateways);
    }
}
