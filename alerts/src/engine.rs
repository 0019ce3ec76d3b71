//! The alert engine: device monitors and gateways by id, driven by readings and ticks.
//!
//! Synchronous and deterministic: the same inputs (readings, ticks, gateway reports,
//! profiles) in the same order give the same events. Time comes only from the inputs.
use crate::alert::{AlertEvent, AlertKey, AlertKind, Details};
use crate::china::{self, Date};
use crate::config::{AlertConfig, KitchenSchedule};
use crate::due::DeviceProfile;
use crate::lifecycle::{Alert, Condition};
use crate::monitor::{DeviceMonitor, Verdict};
use crate::offline::{GatewayMonitor, GatewayView};
use foldhash::{HashMap, HashSet};
use gridwatch_protocol::batch::Reading;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Everything the engine knows; serializable so another ingest instance can take over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    pub devices: HashMap<String, DeviceMonitor>,
    pub gateways: BTreeMap<String, GatewayMonitor>,
    /// The latest tick; older or repeated ticks are ignored.
    pub last_tick: u64,
    /// The China-local date due dates were last evaluated for.
    pub due_date: Option<Date>,
}

/// Ids whose state changed since the last [`Engine::take_changes`]: what to persist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub devices: BTreeSet<String>,
    pub gateways: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Engine {
    config: AlertConfig,
    state: EngineState,
    changed_devices: HashSet<String>,
    changed_gateways: BTreeSet<String>,
    /// Readings the ordering rule distrusted since the last [`Engine::take_anomalies`].
    anomalies: BTreeMap<&'static str, u64>,
    /// Test aid: evaluate every device on every tick instead of only those whose
    /// deadline has come. The events must be the same either way.
    evaluate_all_on_tick: bool,
    /// Devices whose site has its own kitchen schedule, with the config they are judged
    /// by. Not part of the state: the register holds the schedules and hands them over
    /// ([`Engine::replace_kitchen_schedules`]) whenever it is loaded or changed.
    schedules: HashMap<String, SiteConfig>,
}

/// A site's kitchen schedule and the config it makes (shared by the site's devices).
#[derive(Debug, Clone)]
struct SiteConfig {
    schedule: KitchenSchedule,
    config: Arc<AlertConfig>,
}

/// The config `device` is judged by: the global one, or its site's.
fn config_of<'a>(schedules: &'a HashMap<String, SiteConfig>, global: &'a AlertConfig, device: &str) -> &'a AlertConfig {
    schedules.get(device).map_or(global, |s| &s.config)
}

impl Engine {
    pub fn new(config: AlertConfig) -> Engine {
        Engine::from_state(config, EngineState::default())
    }

    /// Resumes from a saved state (possibly saved under another config).
    pub fn from_state(config: AlertConfig, mut state: EngineState) -> Engine {
        for m in state.devices.values_mut() {
            m.next_deadline = m.compute_next_deadline(&config);
        }
        Engine {
            config,
            state,
            changed_devices: HashSet::default(),
            changed_gateways: BTreeSet::new(),
            anomalies: BTreeMap::new(),
            evaluate_all_on_tick: false,
            schedules: HashMap::default(),
        }
    }

    #[doc(hidden)]
    pub fn evaluate_all_on_tick(mut self, yes: bool) -> Engine {
        self.evaluate_all_on_tick = yes;
        self
    }

    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    pub fn state(&self) -> &EngineState {
        &self.state
    }

    pub fn into_state(self) -> EngineState {
        self.state
    }

    pub fn monitor(&self, device: &str) -> Option<&DeviceMonitor> {
        self.state.devices.get(device)
    }

    /// Adopts a device's saved state (taking the device over from another instance).
    pub fn insert_monitor(&mut self, device: String, mut monitor: DeviceMonitor) {
        monitor.next_deadline = monitor.compute_next_deadline(config_of(&self.schedules, &self.config, &device));
        self.state.devices.insert(device, monitor);
    }

    /// Hands a device's state over (to persist it or to another instance).
    pub fn remove_monitor(&mut self, device: &str) -> Option<DeviceMonitor> {
        self.changed_devices.remove(device);
        self.state.devices.remove(device)
    }

    pub fn take_changes(&mut self) -> Changes {
        Changes {
            devices: self.changed_devices.drain().collect(),
            gateways: std::mem::take(&mut self.changed_gateways),
        }
    }

    /// How many readings the ordering rule distrusted since the last call, by anomaly
    /// ([`crate::monitor::Verdict::anomaly`]): what to count as metrics.
    pub fn take_anomalies(&mut self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut self.anomalies)
    }

    fn mark_device(&mut self, device: &str) {
        if !self.changed_devices.contains(device) {
            self.changed_devices.insert(device.to_string());
        }
    }

    /// Applies one reading (see [`crate::monitor`] for the ordering rule). `gateway` is the
    /// gateway it came through, if any; it counts as a sign of life of that gateway at the
    /// reading's device time.
    pub fn apply(&mut self, reading: &Reading, gateway: Option<&str>) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        self.apply_into(reading, gateway, &mut out);
        out
    }

    /// Like [`Engine::apply`], appending to `out` (saves an allocation per reading).
    pub fn apply_into(&mut self, reading: &Reading, gateway: Option<&str>, out: &mut Vec<AlertEvent>) {
        let id = reading.device();
        let monitor = match self.state.devices.get_mut(id) {
            Some(m) => m,
            None => self.state.devices.entry(id.to_string()).or_default(),
        };
        let before = monitor.last_reading;
        let verdict = monitor.apply(reading, config_of(&self.schedules, &self.config, id), out);
        if let Some(anomaly) = verdict.anomaly() {
            *self.anomalies.entry(anomaly).or_default() += 1;
        }
        if !verdict.applied() {
            if verdict.anomaly().is_some() {
                // Recorded in the device's state, which is saved with it.
                self.mark_device(id);
            }
            return;
        }
        if let Some(g) = gateway {
            if monitor.gateway.as_deref() != Some(g) {
                monitor.gateway = Some(g.to_string());
            }
            let at = monitor.last_reading.unwrap_or_default();
            if verdict == Verdict::Rebased
                && let Some(before) = before
            {
                self.gateway_rebased(g, before);
            }
            self.gateway_mut(g).seen(at);
        }
        self.mark_device(id);
    }

    /// A device behind `gateway` re-based its clock from `before`: if that time was the
    /// gateway's last sign of life, it came from a clock now known to be wrong, and the
    /// gateway's last sign of life is the latest of its devices' times.
    fn gateway_rebased(&mut self, gateway: &str, before: u64) {
        if self.state.gateways.get(gateway).and_then(|g| g.last_seen) != Some(before) {
            return;
        }
        let latest = self
            .state
            .devices
            .values()
            .filter(|m| m.gateway.as_deref() == Some(gateway))
            .filter_map(|m| m.last_reading)
            .max();
        self.gateway_mut(gateway).last_seen = latest;
    }

    /// Applies a gateway's batch received at `received_at` (ingest time).
    pub fn apply_batch(&mut self, gateway: &str, received_at: u64, readings: &[Reading]) -> Vec<AlertEvent> {
        self.gateway_seen(gateway, received_at);
        let mut out = Vec::new();
        for r in readings {
            self.apply_into(r, Some(gateway), &mut out);
        }
        out
    }

    fn gateway_mut(&mut self, gateway: &str) -> &mut GatewayMonitor {
        if !self.changed_gateways.contains(gateway) {
            self.changed_gateways.insert(gateway.to_string());
        }
        if !self.state.gateways.contains_key(gateway) {
            self.state
                .gateways
                .insert(gateway.to_string(), GatewayMonitor::default());
        }
        self.state.gateways.get_mut(gateway).expect("inserted above")
    }

    /// The gateway delivered something at `now`. Takes effect at the next tick.
    pub fn gateway_seen(&mut self, gateway: &str, now: u64) {
        self.gateway_mut(gateway).seen(now);
    }

    /// The gateway's presence at `at` (ingest time): its birth or a heartbeat (`online`),
    /// or its MQTT last will. Takes effect at the next tick; heartbeat silence longer than
    /// `gateway_presence_after_s` is judged by the ticks.
    pub fn gateway_presence(&mut self, gateway: &str, online: bool, at: u64) {
        self.gateway_mut(gateway).presence(online, at);
    }

    /// Sets a device's register entry and evaluates its due dates for the day of `now`
    /// (China time) and its other rules at `now`.
    pub fn set_profile(&mut self, device: &str, profile: DeviceProfile, now: u64) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        let view = self.gateway_view_of(device, now);
        let m = self.state.devices.entry(device.to_string()).or_default();
        m.set_profile(profile);
        m.evaluate_due(device, china::date_of(now), now, &self.config, &mut out);
        m.tick(
            device,
            now,
            view,
            config_of(&self.schedules, &self.config, device),
            &mut out,
        );
        self.mark_device(device);
        out
    }

    /// The kitchen schedule `device` is judged by, when its site has its own.
    pub fn kitchen_schedule(&self, device: &str) -> Option<&KitchenSchedule> {
        self.schedules.get(device).map(|s| &s.schedule)
    }

    /// Sets (or, with `None`, removes) the kitchen schedule of `device`'s site: its meal
    /// periods, operating days and opening hours from now on. Periods judged already
    /// keep their verdicts.
    pub fn set_kitchen_schedule(&mut self, device: &str, schedule: Option<&KitchenSchedule>) {
        let known: Vec<SiteConfig> = self.schedules.values().cloned().collect();
        self.put_schedule(device, schedule, &known);
    }

    /// Replaces every site schedule with `schedules` (device id, its site's schedule):
    /// devices not listed are judged by the global schedule.
    pub fn replace_kitchen_schedules<'a>(
        &mut self,
        schedules: impl IntoIterator<Item = (&'a str, &'a KitchenSchedule)>,
    ) {
        let old = std::mem::take(&mut self.schedules);
        let mut distinct: Vec<SiteConfig> = Vec::new();
        for (device, schedule) in schedules {
            if let Some(site) = self.put_schedule(device, Some(schedule), &distinct) {
                distinct.push(site);
            }
        }
        for device in old.keys().filter(|d| !self.schedules.contains_key(*d)) {
            if let Some(m) = self.state.devices.get_mut(device) {
                m.next_deadline = m.compute_next_deadline(&self.config);
            }
        }
    }

    /// Sets `device`'s schedule, sharing the config of an equal one in `known`; returns
    /// the site config when it is a new one.
    fn put_schedule(
        &mut self,
        device: &str,
        schedule: Option<&KitchenSchedule>,
        known: &[SiteConfig],
    ) -> Option<SiteConfig> {
        let mut new = None;
        match schedule.filter(|s| !s.is_empty()) {
            Some(schedule) => {
                let site = known
                    .iter()
                    .find(|s| s.schedule == *schedule)
                    .cloned()
                    .unwrap_or_else(|| {
                        let config = AlertConfig {
                            sterilizer: self.config.sterilizer.with_schedule(schedule),
                            ..self.config.clone()
                        };
                        let site = SiteConfig {
                            schedule: schedule.clone(),
                            config: Arc::new(config),
                        };
                        new = Some(site.clone());
                        site
                    });
                self.schedules.insert(device.to_string(), site);
            }
            None => {
                self.schedules.remove(device);
            }
        }
        let cfg = config_of(&self.schedules, &self.config, device);
        if let Some(m) = self.state.devices.get_mut(device) {
            m.next_deadline = m.compute_next_deadline(cfg);
        }
        new
    }

    /// Records an operator's acknowledgement; `None` if the alert is not open or was
    /// acknowledged already.
    pub fn acknowledge(&mut self, key: &AlertKey, by: &str, at: u64) -> Option<AlertEvent> {
        let event = if key.kind == AlertKind::GatewayOffline {
            self.state
                .gateways
                .get_mut(&key.device)?
                .alerts
                .acknowledge(key.kind, by, at)?
        } else {
            self.state
                .devices
                .get_mut(&key.device)?
                .alerts
                .acknowledge(key.kind, by, at)?
        };
        if key.kind == AlertKind::GatewayOffline {
            self.changed_gateways.insert(key.device.clone());
        } else {
            self.mark_device(&key.device);
        }
        Some(event)
    }

    /// Every open alert, gateways first, then devices in id order.
    pub fn open_alerts(&self) -> Vec<&Alert> {
        let mut devices: Vec<&Alert> = self.state.devices.values().flat_map(|m| m.alerts.iter()).collect();
        devices.sort_by(|a, b| a.key.cmp(&b.key));
        self.state
            .gateways
            .values()
            .flat_map(|g| g.alerts.iter())
            .chain(devices)
            .collect()
    }

    fn gateway_view_of(&self, device: &str, now: u64) -> Option<GatewayView> {
        let gateway = self.state.devices.get(device)?.gateway.as_ref()?;
        Some(self.state.gateways.get(gateway)?.view(now, &self.config))
    }

    /// Advances time to `now` (device-time scale, from the caller's clock): evaluates due
    /// dates when the China-local date changed, gateways, and every device with a deadline
    /// at or before `now`. A tick not later than the last one does nothing.
    pub fn tick(&mut self, now: u64) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        if now <= self.state.last_tick {
            return out;
        }
        self.state.last_tick = now;
        let today = china::date_of(now);
        if self.state.due_date != Some(today) {
            self.state.due_date = Some(today);
            self.evaluate_due_all(today, now, &mut out);
        }
        let flipped = self.tick_gateways(now, &mut out);
        let mut due: Vec<&String> = self
            .state
            .devices
            .iter()
            .filter(|(_, m)| {
                self.evaluate_all_on_tick
                    || m.next_deadline <= now
                    || m.gateway.as_ref().is_some_and(|g| flipped.contains(g))
            })
            .map(|(id, _)| id)
            .collect();
        due.sort();
        let due: Vec<String> = due.into_iter().cloned().collect();
        for id in &due {
            let view = self.gateway_view_of(id, now);
            let m = self.state.devices.get_mut(id).expect("listed above");
            m.tick(id, now, view, config_of(&self.schedules, &self.config, id), &mut out);
            // Evaluating moves the device's deadline: that is state to persist too.
            self.mark_device(id);
        }
        out
    }

    fn evaluate_due_all(&mut self, today: Date, now: u64, out: &mut Vec<AlertEvent>) {
        let mut ids: Vec<&String> = self
            .state
            .devices
            .iter()
            .filter(|(_, m)| m.profile.is_some())
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        let ids: Vec<String> = ids.into_iter().cloned().collect();
        for id in ids {
            let m = self.state.devices.get_mut(&id).expect("listed above");
            let before = out.len();
            m.evaluate_due(&id, today, now, &self.config, out);
            if out.len() != before {
                self.mark_device(&id);
            }
        }
    }

    /// Evaluates every gateway; returns those whose online state flipped.
    fn tick_gateways(&mut self, now: u64, out: &mut Vec<AlertEvent>) -> BTreeSet<String> {
        let mut flipped = BTreeSet::new();
        let cfg = &self.config;
        for (id, g) in self.state.gateways.iter_mut() {
            let view = g.view(now, cfg);
            let mut present = Vec::new();
            if !view.online && (g.last_seen.is_some() || g.presence.is_some()) {
                let kind = AlertKind::GatewayOffline;
                // Counted when raised only: a changing count is not worth an update.
                let details = match g.alerts.get(kind) {
                    Some(open) => open.details.clone(),
                    None => {
                        let behind = self
                            .state
                            .devices
                            .values()
                            .filter(|m| m.gateway.as_ref() == Some(id))
                            .count();
                        Details::GatewayOffline { devices: behind as u32 }
                    }
                };
                present.push(Condition {
                    kind,
                    severity: cfg.severity_of(kind),
                    details,
                });
            }
            let before = out.len();
            g.alerts.reconcile(id, &present, |_| true, now, cfg, out);
            if view.online != g.was_online {
                g.was_online = view.online;
                flipped.insert(id.clone());
            }
            if out.len() != before || flipped.contains(id) {
                self.changed_gateways.insert(id.clone());
            }
        }
        flipped
    }

    /// Re-evaluates the due dates of every device with a profile for `today` (normally
    /// done by the first tick of each China-local day).
    pub fn evaluate_due(&mut self, today: Date, now: u64) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        self.state.due_date = Some(today);
        self.evaluate_due_all(today, now, &mut out);
        out
    }
}
