//! The live domain: the alert engine, the equipment register and the case book,
//! held in memory behind one lock ([`Alerting`]) and saved through
//! `gridwatch-storage` after every change; the engine's state is checkpointed in
//! pieces ([`checkpoint`]) and replayed from the stored readings on start-up.
//! The pure logic lives in `gridwatch-alerts` and `gridwatch-cases`; this crate
//! only routes inputs to it and collects what must be saved.
mod checkpoint;
mod register;
mod shared;

pub use register::{
    ImportError, ImportOptions, ImportSummary, RegisterRejected, import_register, import_register_with,
};
pub use shared::{Alerting, SharedDomain, load, run_ticks};

use gridwatch_alerts::{AlertConfig, AlertEvent, AlertKey, Date, Engine};
use gridwatch_cases::registry::{InspectionSchedule, RecordKind};
use gridwatch_cases::{
    CaseBook, CaseConfig, CaseError, CaseId, Intake, Registry, RegistryError, Report, Response, ResponseRecord,
    StepInput, StepRecord, User, report_from_alert,
};
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::clock::Clock;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The `--config` file: `[alerts]`, `[cases]` and `[register]`, every field optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainConfig {
    pub alerts: AlertConfig,
    pub cases: CaseConfig,
    pub register: RegisterConfig,
}

/// `[register]`: limits on changes to the equipment register.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterConfig {
    /// An import may remove up to this share of the devices in the importer's scope
    /// without confirmation (0.2: a fifth); more needs `confirm_removals`.
    #[serde(deserialize_with = "finite_share")]
    pub max_unconfirmed_removal_share: f64,
    /// `[register.inspection]`: how far ahead an inspection may set the next one.
    pub inspection: InspectionSchedule,
}

/// Refuses NaN and infinities: a NaN share compares false with everything, so every
/// import would pass unconfirmed.
fn finite_share<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = <f64 as serde::Deserialize>::deserialize(d)?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format_args!(
            "field max_unconfirmed_removal_share: expected a finite number, found {value}"
        )))
    }
}

impl Default for RegisterConfig {
    fn default() -> Self {
        Self {
            max_unconfirmed_removal_share: 0.2,
            inspection: InspectionSchedule::default(),
        }
    }
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

/// A record dated after today (China time at `now`) is refused.
fn not_after_today(date: Date, now: u64) -> Result<(), RegistryError> {
    let today = gridwatch_alerts::china::date_of(now);
    if date > today {
        return Err(RegistryError::DateInFuture { date, today });
    }
    Ok(())
}

pub struct Domain {
    config: DomainConfig,
    engine: Engine,
    registry: Registry,
    book: CaseBook,
    /// Audit records and escalations already saved, per case: only later ones are appended.
    saved: HashMap<CaseId, gridwatch_storage::domain::SavedUpTo>,
    /// Engine state whose checkpoint failed, to save at the next one (the engine
    /// itself keeps what changed since the last checkpoint began, and
    /// [`checkpoint::Checkpoint::begin`] adds it here before taking both).
    unsaved_engine: gridwatch_alerts::Changes,
    /// Ingest's clock: when readings arrive, what time the domain learns of their
    /// alerts (a case's `known_at`). Without one, alerts are known at their device time.
    clock: Option<Arc<dyn Clock>>,
}

/// What one change produced and must be saved (see [`Domain::changes`]).
#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<AlertEvent>,
    pub cases: BTreeSet<CaseId>,
    pub register_changed: bool,
}

impl Domain {
    pub fn new(config: DomainConfig, mut engine: Engine, registry: Registry, book: CaseBook) -> Self {
        // Site schedules live in the register (saved with it): the engine gets them here.
        engine.replace_kitchen_schedules(registry.kitchen_schedules());
        let saved = book
            .cases()
            .map(|c| (c.id, gridwatch_storage::domain::SavedUpTo::all_of(c)))
            .collect();
        Self {
            config,
            engine,
            registry,
            book,
            saved,
            unsaved_engine: Default::default(),
            clock: None,
        }
    }

    /// Sets the clock that stamps when alerts from readings become known (ingest's).
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = Some(clock);
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

    /// What `fx` asks to save, for `gridwatch_storage::domain::save`: its events with
    /// where their devices stand in the register, its cases with what of each is saved
    /// already, and the register if it changed.
    pub fn changes<'a>(
        &'a self,
        fx: &'a Effects,
    ) -> gridwatch_storage::Result<gridwatch_storage::domain::DomainChanges<'a>> {
        let about: BTreeSet<String> = fx.events.iter().map(|e| e.key.device.clone()).collect();
        // An alert's key names a device, or a gateway for gateway_offline: the rows of
        // whichever the engine holds under that id.
        let engine = gridwatch_storage::domain::engine_state_rows(self.engine.state(), &about, &about)?;
        let places = about
            .iter()
            .filter_map(|id| {
                let device = self.registry.device(id)?;
                let place = gridwatch_storage::feed::Place {
                    grid: self.registry.grid_of(device).to_string(),
                    firm: device.firm.clone(),
                };
                Some((id.clone(), place))
            })
            .collect();
        Ok(gridwatch_storage::domain::DomainChanges {
            events: &fx.events,
            engine,
            places,
            cases: fx
                .cases
                .iter()
                .filter_map(|id| self.book.case(*id))
                .map(|case| (case, self.saved.get(&case.id).copied().unwrap_or_default()))
                .collect(),
            register: fx.register_changed.then_some(&self.registry),
        })
    }

    /// Records that the cases of `fx` are saved up to their current audit record and escalation.
    pub fn mark_saved(&mut self, fx: &Effects) {
        for id in &fx.cases {
            if let Some(case) = self.book.case(*id) {
                self.saved
                    .insert(*id, gridwatch_storage::domain::SavedUpTo::all_of(case));
            }
        }
    }

    /// Applies readings new to the store, each with the gateway it came through.
    pub fn on_readings<'a>(&mut self, readings: impl IntoIterator<Item = (&'a Reading, &'a str)>) -> Effects {
        let mut events = Vec::new();
        for (reading, gateway) in readings {
            self.engine.apply_into(reading, Some(gateway), &mut events);
        }
        // Readings the engine's ordering rule distrusted (seq jumps, clock steps back,
        // resets): see gridwatch_alerts::monitor.
        static DESCRIBED: std::sync::Once = std::sync::Once::new();
        DESCRIBED.call_once(|| {
            metrics::describe_counter!(
                "gridwatch_alerts_reading_anomalies_total",
                "Readings the alert engine distrusted or re-based on, by anomaly (seq_jump, clock_rebased, seq_reset, before_reset)"
            );
        });
        for (anomaly, n) in self.engine.take_anomalies() {
            metrics::counter!("gridwatch_alerts_reading_anomalies_total", "anomaly" => anomaly).increment(n);
        }
        // Known when they arrive: a replayed episode is known now, not at its device time.
        let known = self.clock.as_ref().map(|c| c.now_ms());
        self.after_events(events, known)
    }

    /// A gateway's presence message (birth or heartbeat `online`, or its last will),
    /// received at `at` on the ingest clock; it takes effect at the next tick and is
    /// saved with the next checkpoint. Returns whether it changed the gateway's
    /// announced state (a first birth, a will, a birth after a will): worth a log line.
    pub fn gateway_presence(&mut self, gateway: &str, online: bool, at: u64) -> bool {
        let before = self.engine.state().gateways.get(gateway).and_then(|g| g.presence);
        self.engine.gateway_presence(gateway, online, at);
        before != Some(online)
    }

    /// Time-based rules (trapped without new readings, offline, meal periods, due dates)
    /// and case deadlines, at `now` on the ingest clock.
    pub fn tick(&mut self, now: u64) -> Effects {
        let events = self.engine.tick(now);
        let mut fx = self.after_events(events, Some(now));
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
        self.engine.replace_kitchen_schedules(registry.kitchen_schedules());
        for device in registry.devices() {
            events.extend(self.engine.set_profile(&device.id, device.profile(), now));
        }
        self.registry = registry;
        let mut fx = self.after_events(events, Some(now));
        fx.register_changed = true;
        fx
    }

    /// An inspection record by `user`, which moves the next inspection due date. Only an
    /// inspector or a grid office over the device's grid may enter one
    /// ([`gridwatch_cases::registry::INSPECTION_RECORDERS`]); the date may not be after
    /// today (China time at `now`) and the next due date must lie within the schedule's
    /// interval (`[register.inspection]`).
    pub fn record_inspection(
        &mut self,
        user: &User,
        device: &str,
        date: Date,
        next_due: Date,
        now: u64,
    ) -> Result<Effects, RegistryError> {
        self.registry.recorder_role(user, device, RecordKind::Inspection)?;
        not_after_today(date, now)?;
        self.registry
            .record_inspection(device, date, next_due, &self.config.register.inspection)?;
        Ok(self.profile_changed(device, now))
    }

    /// A maintenance record by `user`, which restarts the maintenance interval. Only the
    /// device's own maintenance firm or a grid role of
    /// [`gridwatch_cases::registry::MAINTENANCE_RECORDERS`] over its grid may enter one;
    /// the date may not be after today.
    pub fn record_maintenance(
        &mut self,
        user: &User,
        device: &str,
        date: Date,
        now: u64,
    ) -> Result<Effects, RegistryError> {
        self.registry.recorder_role(user, device, RecordKind::Maintenance)?;
        not_after_today(date, now)?;
        self.registry.record_maintenance(device, date)?;
        Ok(self.profile_changed(device, now))
    }

    /// Sets (or with `None` removes) a using unit's kitchen schedule: its sterilizers are
    /// judged by it from now on. Only a grid role of
    /// [`gridwatch_cases::registry::SCHEDULE_SETTERS`] over the unit's grid may.
    pub fn set_kitchen_schedule(
        &mut self,
        user: &User,
        unit: &gridwatch_cases::UnitKey,
        schedule: Option<gridwatch_alerts::KitchenSchedule>,
    ) -> Result<Effects, RegistryError> {
        let devices = self.registry.set_kitchen_schedule(user, unit, schedule)?;
        let schedule = self.registry.unit(unit).and_then(|u| u.schedule.as_ref());
        for device in &devices {
            self.engine.set_kitchen_schedule(device, schedule);
        }
        Ok(Effects {
            register_changed: true,
            ..Effects::default()
        })
    }

    fn profile_changed(&mut self, device: &str, now: u64) -> Effects {
        let profile = self.registry.device(device).expect("just recorded").profile();
        let events = self.engine.set_profile(device, profile, now);
        let mut fx = self.after_events(events, Some(now));
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

    /// Takes a step of the loop; a note or evidence over `[cases.limits]` is refused.
    pub fn perform(&mut self, case: CaseId, user: &User, input: StepInput) -> Result<(StepRecord, Effects), CaseError> {
        input.check(&self.config.cases.limits)?;
        let record = self.book.perform(case, user, input)?;
        let mut fx = Effects::default();
        fx.cases.insert(case);
        Ok((record, fx))
    }

    /// Records the maintenance firm's response to a case (acknowledged, arrived on site),
    /// which stops the deadlines it answers.
    pub fn respond(
        &mut self,
        case: CaseId,
        user: &User,
        response: Response,
        note: String,
        at: u64,
    ) -> Result<(ResponseRecord, Effects), CaseError> {
        let record = self
            .book
            .respond(case, user, response, at, note, &self.config.cases.limits)?;
        tracing::info!(case, ?response, actor = %user.id, "case response");
        let mut fx = Effects::default();
        fx.cases.insert(case);
        Ok((record, fx))
    }

    /// Acknowledges an open alert for `user`. The open case the alert opened is
    /// acknowledged with it when `user` may respond to that case (its firm, a grid
    /// administrator) and it has no acknowledgement yet.
    pub fn acknowledge(&mut self, key: &AlertKey, user: &User, at: u64) -> Option<Effects> {
        let event = self.engine.acknowledge(key, &user.id, at)?;
        let mut fx = self.after_events(vec![event], Some(at));
        let case = self.book.open_case_of_alert(key);
        if let Some(id) = case.filter(|id| {
            self.book
                .case(*id)
                .is_some_and(|c| c.responded_at(Response::Acknowledged).is_none())
        }) {
            let note = format!("acknowledged alert {}", key.kind);
            match self.respond(id, user, Response::Acknowledged, note, at) {
                Ok((_, more)) => fx.cases.extend(more.cases),
                // A grid role that acknowledges the alert is not the firm: the case waits.
                Err(e) => tracing::debug!(case = id, error = %e, "alert acknowledged, case not"),
            }
        }
        Some(fx)
    }

    /// Opens or extends cases for events that call for one; `known` is when the domain
    /// learned of them on ingest's clock (`None`: at each event's device time).
    fn after_events(&mut self, events: Vec<AlertEvent>, known: Option<u64>) -> Effects {
        let mut fx = Effects {
            events,
            ..Effects::default()
        };
        for event in &fx.events {
            metrics::counter!("gridwatch_alert_events_total", "change" => format!("{:?}", event.change)).increment(1);
            match report_from_alert(event, &self.registry, &self.config.cases.rules) {
                Ok(Some(mut report)) => {
                    report.known_at = known;
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
