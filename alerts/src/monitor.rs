//! Everything the engine keeps about one device, and the ordering rule for its readings.
//!
//! Readings of a device are applied in `seq` order: a reading whose `seq` is not above the
//! last applied one is a redelivery (or too late) and changes nothing. Gaps are allowed.
//! The device's time only moves forward: a reading stamped earlier than one already applied
//! is taken to happen at the later time.
use crate::alert::{AlertEvent, AlertKind, Details};
use crate::china::Date;
use crate::config::AlertConfig;
use crate::due::{DeviceProfile, DueState, evaluate_due};
use crate::lifecycle::{Condition, OpenAlerts};
use crate::lift::LiftTracker;
use crate::offline::{GatewayView, OfflineVerdict, offline_deadline, offline_verdict};
use crate::sterilizer::SterilizerTracker;
use gridwatch_protocol::DeviceKind;
use gridwatch_protocol::batch::Reading;
use serde::{Deserialize, Serialize};

/// No pending deadline.
pub const NEVER: u64 = u64::MAX;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceMonitor {
    /// From the register when known, else from the readings.
    pub kind: Option<DeviceKind>,
    pub profile: Option<DeviceProfile>,
    /// The gateway the device's readings last came through.
    pub gateway: Option<String>,
    /// Highest `seq` applied; anything at or below it is ignored.
    pub last_seq: u64,
    /// Device time of the last applied reading (never decreasing).
    pub last_reading: Option<u64>,
    /// The instant of the last evaluation.
    pub evaluated_at: u64,
    /// The next instant at which a tick may change something; [`NEVER`] if none.
    pub next_deadline: u64,
    /// Silent, waiting for the gateway to show it is alive (re-checked every tick).
    pub offline_pending: bool,
    pub lift: LiftTracker,
    pub sterilizer: SterilizerTracker,
    pub due: Vec<DueState>,
    pub alerts: OpenAlerts,
}

impl DeviceMonitor {
    fn in_service(&self) -> bool {
        self.profile.as_ref().is_none_or(|p| p.in_service)
    }

    /// Offline and meal-period rules watch only devices in service that have reported:
    /// a registered device without a node is not "offline".
    fn watched(&self) -> bool {
        self.in_service() && self.last_reading.is_some()
    }

    /// Applies one reading and evaluates the device at its time. Returns false (and emits
    /// nothing) for a reading at or below the last applied `seq`.
    pub fn apply(&mut self, reading: &Reading, cfg: &AlertConfig, out: &mut Vec<AlertEvent>) -> bool {
        let seq = reading.seq();
        if seq <= self.last_seq {
            return false;
        }
        self.last_seq = seq;
        let ts = reading.ts();
        let at = self.last_reading.map_or(ts, |last| last.max(ts));
        self.last_reading = Some(at);
        if self.profile.is_none() {
            self.kind = match reading {
                Reading::Lift(_) => Some(DeviceKind::Lift),
                Reading::Sterilizer(_) | Reading::Cycle(_) => Some(DeviceKind::Sterilizer),
                Reading::Birth(b) => Some(b.body.device_kind),
                Reading::Event(_) => self.kind,
            };
        }
        if self.kind == Some(DeviceKind::Sterilizer) {
            self.sterilizer.meals.watch(at);
            // Periods that ended before this reading are judged on what came before it.
            self.sterilizer
                .meals
                .judge_until(at, self.in_service(), &cfg.sterilizer);
        }
        match reading {
            Reading::Lift(e) => self.lift.apply_status(e.body, at),
            Reading::Event(e) if self.kind == Some(DeviceKind::Sterilizer) => self.sterilizer.apply_event(e.body),
            Reading::Event(e) => self.lift.apply_event(e.body, at),
            Reading::Sterilizer(e) => self.sterilizer.apply_status(e.body),
            Reading::Cycle(e) => self.sterilizer.apply_cycle(&e.body, e.ts, &cfg.sterilizer),
            Reading::Birth(_) => {}
        }
        // The device just spoke, so its gateway's state cannot make it offline.
        self.evaluate(reading.device(), at, at, None, cfg, out);
        true
    }

    /// Evaluates the device at `now` without a new reading. The last known lift state is
    /// trusted only up to the offline horizon: beyond it the device is offline and its
    /// state unknown, so timed lift rules are evaluated at most there.
    pub fn tick(
        &mut self,
        device: &str,
        now: u64,
        gateway: Option<GatewayView>,
        cfg: &AlertConfig,
        out: &mut Vec<AlertEvent>,
    ) {
        let Some(last) = self.last_reading else {
            // Nothing reported: only alerts waiting to clear can change.
            self.evaluate(device, now, now, gateway, cfg, out);
            return;
        };
        if self.kind == Some(DeviceKind::Sterilizer) {
            self.sterilizer
                .meals
                .judge_until(now, self.in_service(), &cfg.sterilizer);
        }
        let lift_now = now.min(last + cfg.offline.lift_after_s * 1000).max(last);
        self.evaluate(device, now, lift_now, gateway, cfg, out);
    }

    fn evaluate(
        &mut self,
        device: &str,
        now: u64,
        lift_now: u64,
        gateway: Option<GatewayView>,
        cfg: &AlertConfig,
        out: &mut Vec<AlertEvent>,
    ) {
        let mut present: Vec<Condition> = Vec::new();
        self.lift.conditions(lift_now, cfg, &mut present);
        self.sterilizer.conditions(cfg, &mut present);
        self.offline_pending = false;
        if self.watched() {
            let deadline = self
                .kind
                .zip(self.last_reading)
                .and_then(|(k, t)| offline_deadline(k, t, cfg));
            match offline_verdict(deadline, now, gateway) {
                OfflineVerdict::Offline => present.push(Condition {
                    kind: AlertKind::DeviceOffline,
                    severity: cfg.severity_of(AlertKind::DeviceOffline),
                    details: Details::Offline {
                        last_reading_ts: self.last_reading.unwrap_or_default(),
                    },
                }),
                OfflineVerdict::Pending => self.offline_pending = true,
                OfflineVerdict::Online | OfflineVerdict::BehindOfflineGateway => {}
            }
        } else {
            present.retain(|c| c.kind != AlertKind::NoCycleInMealPeriod);
        }
        self.alerts
            .reconcile(device, &present, |k| !k.is_due_date(), now, cfg, out);
        self.evaluated_at = now;
        self.next_deadline = self.compute_next_deadline(cfg);
    }

    /// Re-evaluates the due dates for `today`; emits only what changed since the last time.
    pub fn evaluate_due(&mut self, device: &str, today: Date, now: u64, cfg: &AlertConfig, out: &mut Vec<AlertEvent>) {
        self.due = self
            .profile
            .as_ref()
            .map_or_else(Vec::new, |p| evaluate_due(p, today, &cfg.due));
        let present: Vec<Condition> = self.due.iter().map(|d| d.condition(cfg)).collect();
        self.alerts
            .reconcile(device, &present, AlertKind::is_due_date, now, cfg, out);
    }

    pub fn set_profile(&mut self, profile: DeviceProfile) {
        self.kind = Some(profile.kind);
        if !profile.in_service {
            self.sterilizer.meals.missed = None;
        }
        self.profile = Some(profile);
    }

    /// The earliest instant after the last evaluation at which a tick can change anything.
    pub fn compute_next_deadline(&self, cfg: &AlertConfig) -> u64 {
        let after = self.evaluated_at;
        let mut next = NEVER;
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t.filter(|&t| t > after) {
                next = next.min(t);
            }
        };
        consider(self.lift.next_deadline(after, cfg));
        consider(self.alerts.next_clear(cfg));
        if self.watched() {
            if self.offline_pending {
                consider(Some(after + 1));
            } else if self.alerts.get(AlertKind::DeviceOffline).is_none() {
                consider(
                    self.kind
                        .zip(self.last_reading)
                        .and_then(|(k, t)| offline_deadline(k, t, cfg)),
                );
            }
            if self.kind == Some(DeviceKind::Sterilizer) {
                consider(self.sterilizer.meals.next_deadline(&cfg.sterilizer));
            }
        }
        next
    }
}
