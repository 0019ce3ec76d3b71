//! Everything the engine keeps about one device, and the ordering rule for its readings.
//!
//! Readings of a device are applied in `seq` order: a reading whose `seq` is not above the
//! last applied one is a redelivery (or too late) and changes nothing. Gaps are allowed.
//! No single reading can freeze a device (docs/alerts.md, "Ordering and idempotence"):
//!
//! - **Seq jumps.** A `seq` further above the last applied one than the node could have
//!   produced in the device time between them (`readings.seq_slack` plus
//!   `readings.max_per_s` per second; before the first reading, since 2020-01-01, the
//!   protocol's earliest time) is not applied and does not raise the bar: it is recorded
//!   ([`Verdict::SeqJump`], [`DeviceMonitor::seq_jump`]). The next reading that continues
//!   from it within the same limit, not earlier in device time, confirms the jump and
//!   is applied.
//! - **Clock steps back.** A reading stamped up to `readings.clock_back_s` earlier than the
//!   last applied one counts at the later time (jitter). A larger step back re-bases the
//!   device's clock ([`Verdict::Rebased`]): the reading counts at its own time, and every
//!   instant the device's state holds that lies after it (the start of a timed condition,
//!   a clear timer) moves back to it, so a duration is never counted across the step. A
//!   step back of more than a day also re-opens meal-period judging from the new time.
//! - **Resets.** The firmware never reuses a `seq` (it is persisted), so a seq that goes
//!   back means the node lost its storage: its next `Birth` then comes with a seq at or
//!   below the bar, stamped after the last applied reading, with a `boots` other than
//!   the last Birth's. That Birth is accepted as a reset ([`Verdict::Reset`]): the bar
//!   drops to its seq. Readings stamped before it come from before the reset and are
//!   ignored ([`Verdict::BeforeReset`]) until device time is [`RESET_GUARD_MS`] past it.
//!
//! Every decision depends only on the device's state and the reading, so a replay of
//! stored readings decides the same.
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

/// After a reset, readings stamped before its Birth are ignored until device time is
/// this far past it: long enough for any replay of stored readings (which come in seq
/// order, the old high seqs after the new low ones) to have passed.
pub const RESET_GUARD_MS: u64 = 3_600_000;

/// A step back in device time this large also re-opens meal-period judging: no clock
/// correction is that large, it undoes a jump forward that never happened.
const MEAL_REBASE_MS: u64 = 86_400_000;

/// The earliest device time the protocol accepts (2020-01-01): the base of the seq limit
/// for a device's first reading.
const EARLIEST_TS: u64 = *gridwatch_protocol::validate::TS_RANGE_MS.start();

/// What the ordering rule did with a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Applied.
    Applied,
    /// Applied after a step back in device time that re-based the device's clock.
    Rebased,
    /// A `Birth` that restarted the seq (the node lost its storage), applied.
    Reset,
    /// At or below the last applied `seq`: a redelivery; nothing changes.
    Redelivered,
    /// Its `seq` jumped implausibly far: not applied, the bar stays.
    SeqJump,
    /// Stamped before the Birth that reset the device: not applied.
    BeforeReset,
}

impl Verdict {
    pub fn applied(self) -> bool {
        matches!(self, Verdict::Applied | Verdict::Rebased | Verdict::Reset)
    }

    /// The anomaly this verdict records, as a stable name (a metric label); `None` for
    /// ordinary readings and redeliveries.
    pub fn anomaly(self) -> Option<&'static str> {
        match self {
            Verdict::Applied | Verdict::Redelivered => None,
            Verdict::Rebased => Some("clock_rebased"),
            Verdict::Reset => Some("seq_reset"),
            Verdict::SeqJump => Some("seq_jump"),
            Verdict::BeforeReset => Some("before_reset"),
        }
    }
}

/// A reading's `seq` and device time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqMark {
    pub seq: u64,
    pub ts: u64,
}

/// How often the ordering rule distrusted this device's readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomalies {
    pub seq_jumps: u64,
    pub clock_rebases: u64,
    pub resets: u64,
    pub before_reset: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceMonitor {
    /// From the register when known, else from the readings.
    pub kind: Option<DeviceKind>,
    pub profile: Option<DeviceProfile>,
    /// The gateway the device's readings last came through.
    pub gateway: Option<String>,
    /// Highest `seq` applied; anything at or below it is ignored.
    pub last_seq: u64,
    /// Device time of the last applied reading (decreasing only when the clock re-bases).
    pub last_reading: Option<u64>,
    /// `boots` of the last `Birth` applied.
    #[serde(default)]
    pub boots: Option<u32>,
    /// The last reading whose `seq` jumped too far, not applied: a reading continuing
    /// from it confirms the jump.
    #[serde(default)]
    pub seq_jump: Option<SeqMark>,
    /// Device time of the `Birth` of the last reset, while readings stamped before it
    /// are ignored.
    #[serde(default)]
    pub reset_at: Option<u64>,
    #[serde(default)]
    pub anomalies: Anomalies,
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

    /// Applies one reading and evaluates the device at its time, following the ordering
    /// rule (module doc). Emits nothing unless the verdict is [`Verdict::applied`].
    pub fn apply(&mut self, reading: &Reading, cfg: &AlertConfig, out: &mut Vec<AlertEvent>) -> Verdict {
        let (seq, ts) = (reading.seq(), reading.ts());
        let mut verdict = Verdict::Applied;
        if seq <= self.last_seq {
            if !self.is_reset(reading) {
                return Verdict::Redelivered;
            }
            self.anomalies.resets += 1;
            self.reset_at = Some(ts);
            self.seq_jump = None;
            verdict = Verdict::Reset;
        } else if self.reset_at.is_some_and(|r| ts < r) {
            self.anomalies.before_reset += 1;
            return Verdict::BeforeReset;
        } else if !self.plausible_seq(seq, ts, cfg) {
            self.anomalies.seq_jumps += 1;
            self.seq_jump = Some(SeqMark { seq, ts });
            return Verdict::SeqJump;
        }
        self.last_seq = seq;
        let at = match self.last_reading {
            Some(last) if ts.saturating_add(cfg.readings.clock_back_s * 1000) < last => {
                self.rebase(ts, last);
                verdict = Verdict::Rebased;
                ts
            }
            Some(last) => last.max(ts),
            None => ts,
        };
        self.last_reading = Some(at);
        if self.reset_at.is_some_and(|r| at >= r.saturating_add(RESET_GUARD_MS)) {
            self.reset_at = None;
        }
        if let Reading::Birth(b) = reading {
            self.boots = Some(b.body.boots);
        }
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
        verdict
    }

    /// A `Birth` at or below the bar that is no redelivery: stamped after the last applied
    /// reading, from another boot than the last Birth. The firmware persists `seq`, so
    /// only a node that lost its storage sends one.
    fn is_reset(&self, reading: &Reading) -> bool {
        let Reading::Birth(b) = reading else { return false };
        self.last_reading.is_none_or(|last| b.ts > last) && self.boots != Some(b.body.boots)
    }

    /// Whether `seq` is a step above the bar the node could have made by device time `ts`
    /// (or continues a recorded jump, which it then confirms).
    fn plausible_seq(&mut self, seq: u64, ts: u64, cfg: &AlertConfig) -> bool {
        let within = |from: SeqMark| {
            let elapsed_s = ts.saturating_sub(from.ts) / 1000;
            let limit = cfg
                .readings
                .seq_slack
                .saturating_add(cfg.readings.max_per_s.saturating_mul(elapsed_s));
            seq - from.seq <= limit
        };
        let bar = SeqMark {
            seq: self.last_seq,
            ts: self.last_reading.unwrap_or(EARLIEST_TS),
        };
        if within(bar) {
            return true;
        }
        let confirmed = self.seq_jump.is_some_and(|j| seq > j.seq && ts >= j.ts && within(j));
        if confirmed {
            self.seq_jump = None;
        }
        confirmed
    }

    /// The device's clock went back from `last` to `ts`: instants of its state after `ts`
    /// move back to `ts`, so no duration is counted across the step.
    fn rebase(&mut self, ts: u64, last: u64) {
        self.anomalies.clock_rebases += 1;
        let clamp = |t: &mut Option<u64>| {
            if let Some(t) = t.as_mut() {
                *t = (*t).min(ts);
            }
        };
        let lift = &mut self.lift;
        for t in [
            &mut lift.enclosed_since,
            &mut lift.outside_zone_since,
            &mut lift.outside_zone_occupied_since,
            &mut lift.alarm_latched_at,
            &mut lift.door_open_running_event_at,
        ] {
            clamp(t);
        }
        self.alerts.rebase(ts);
        let meals = &mut self.sterilizer.meals;
        clamp(&mut meals.watch_from);
        if last - ts > MEAL_REBASE_MS {
            meals.judged_until = meals.judged_until.min(ts);
            meals.good_cycles.retain(|&t| t <= ts);
            if meals.missed.as_ref().is_some_and(|m| m.end > ts) {
                meals.missed = None;
            }
        }
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
