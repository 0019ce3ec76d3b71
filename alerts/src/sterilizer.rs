//! Sterilizer rules: bad cycles (aborted, under temperature, too short a hold) and
//! meal periods of an operating day without one complete good cycle.
//!
//! One bad cycle is one finding: aborted if it stopped early; else under temperature if
//! its peak never reached the target (hold time counts only at the target, so such a
//! cycle is not "too short" as well); else too short if it held the target too briefly.
//! A cycle with no valid reading, or that ends while a sensor fault is open, is not
//! judged: the sensor fault (its own alert) explains it. A probe value no kitchen cabinet
//! can reach is such a sensor fault too, found by the engine ([`IMPLAUSIBLE_FAULT`]): a
//! broken probe reading 1,500 °C must not pass a cold cycle as hot.
use crate::alert::{AlertKind, Details};
use crate::china::{self, Date};
use crate::config::{AlertConfig, CycleRule, SterilizerConfig};
use crate::lifecycle::Condition;
use gridwatch_protocol::{CycleOutcome, CycleReport, EventKind, Method, NodeEvent, SterilizerStatus};
use serde::{Deserialize, Serialize};

/// Cabinet temperatures a working probe can report, °C: kitchens are indoors, and no
/// sterilizing method runs a cabinet above about 150 °C.
pub const PLAUSIBLE_C: std::ops::RangeInclusive<f32> = -20.0..=250.0;

/// The fault code the engine raises for a probe value outside [`PLAUSIBLE_C`] (the
/// firmware's own probe faults are 801–804).
pub const IMPLAUSIBLE_FAULT: u16 = 805;

fn plausible(temp_c: f32) -> bool {
    PLAUSIBLE_C.contains(&temp_c)
}

/// Meal periods further back than this are not judged after a long gap: only the
/// latest verdict matters for the alert.
const MAX_CATCH_UP_DAYS: i64 = 7;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SterilizerTracker {
    pub status: Option<SterilizerStatus>,
    /// Bad cycles since the last good one, per finding; a good cycle resets all three.
    pub aborted: Option<CycleFinding>,
    pub under_temperature: Option<CycleFinding>,
    pub short_hold: Option<CycleFinding>,
    /// Sensor fault code reported by a fault event, 0 when none.
    pub fault: u16,
    pub meals: MealTracker,
    /// The latest cycle left unjudged because of the sensor, and how many were.
    #[serde(default)]
    pub unjudged: Option<UnjudgedCycle>,
    /// The latest status's temperature when it was outside [`PLAUSIBLE_C`].
    #[serde(default)]
    pub implausible_c: Option<f32>,
}

/// The latest cycle that broke a rule, and how many did since the last good cycle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CycleFinding {
    pub method: Method,
    pub peak_c: f32,
    pub hold_s: u32,
    pub count: u32,
}

/// Why a cycle was not judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unjudged {
    /// The node had no valid temperature reading during the whole cycle.
    NoValidReading,
    /// A sensor fault was open when the cycle ended: its readings cannot be trusted.
    SensorFaultOpen,
    /// The cycle's peak, or the probe's latest value, is outside [`PLAUSIBLE_C`].
    ImplausibleReading,
}

/// A cycle the sensor fault explains: recorded, not judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnjudgedCycle {
    /// Device time the cycle ended.
    pub ended: u64,
    pub why: Unjudged,
    /// The sensor fault open at the time, 0 if none was reported.
    pub fault: u16,
    /// Cycles left unjudged so far.
    pub count: u32,
}

/// Why a finding's cycle is bad, in words, for the alert's details.
fn reason(kind: AlertKind, f: &CycleFinding, rule: CycleRule) -> String {
    let (target, hold) = (rule.min_temp_c, rule.min_hold_s);
    match kind {
        AlertKind::CycleAborted => {
            format!("stopped (door opened or power lost) before holding {target} °C for {hold} s")
        }
        AlertKind::CycleUnderTemperature => format!(
            "peak {} °C never reached the {target} °C target; hold time counts only at the target, \
             so the cycle is under temperature, not also too short",
            f.peak_c
        ),
        _ => format!(
            "reached the {target} °C target (peak {} °C) but held it {} s of the {hold} s required",
            f.peak_c, f.hold_s
        ),
    }
}

impl SterilizerTracker {
    pub fn apply_status(&mut self, s: SterilizerStatus) {
        self.implausible_c = (!plausible(s.temp_c)).then_some(s.temp_c);
        self.status = Some(s);
    }

    /// Fault events carry the node's sensor faults (a broken thermocouple).
    pub fn apply_event(&mut self, e: NodeEvent) {
        match e.event {
            EventKind::FaultRaised => self.fault = e.code,
            EventKind::FaultCleared if e.code == 0 || e.code == self.fault => self.fault = 0,
            _ => {}
        }
    }

    /// Judges one cycle report; `ended` is its device time (the envelope's `ts`).
    pub fn apply_cycle(&mut self, c: &CycleReport, ended: u64, cfg: &SterilizerConfig) {
        let why = match c.peak_c {
            None => Some(Unjudged::NoValidReading),
            Some(_) if self.fault != 0 => Some(Unjudged::SensorFaultOpen),
            Some(peak) if !plausible(peak) || self.implausible_c.is_some() => Some(Unjudged::ImplausibleReading),
            Some(_) => None,
        };
        if let Some(why) = why {
            self.unjudged = Some(UnjudgedCycle {
                ended,
                why,
                fault: match why {
                    Unjudged::ImplausibleReading => IMPLAUSIBLE_FAULT,
                    _ => self.fault,
                },
                count: self.unjudged.map_or(1, |u| u.count + 1),
            });
            // The kitchen did run the sterilizer: the period was not "unused".
            self.meals.good_cycle(ended);
            return;
        }
        let peak_c = c.peak_c.unwrap_or_default();
        let rule = cfg.rule(c.method);
        let finding = |prev: Option<CycleFinding>| {
            Some(CycleFinding {
                method: c.method,
                peak_c,
                hold_s: c.hold_s,
                count: prev.map_or(1, |f| f.count + 1),
            })
        };
        if c.outcome == CycleOutcome::Aborted {
            self.aborted = finding(self.aborted);
            return;
        }
        let hot_enough = peak_c >= rule.min_temp_c;
        let long_enough = c.hold_s >= rule.min_hold_s;
        if !hot_enough {
            self.under_temperature = finding(self.under_temperature);
        } else if !long_enough {
            self.short_hold = finding(self.short_hold);
        } else {
            self.aborted = None;
            self.under_temperature = None;
            self.short_hold = None;
            self.meals.good_cycle(ended);
        }
    }

    pub fn conditions(&self, cfg: &AlertConfig, out: &mut Vec<Condition>) {
        let implausible = self.implausible_c.is_some() && self.fault != IMPLAUSIBLE_FAULT;
        for code in [self.fault, if implausible { IMPLAUSIBLE_FAULT } else { 0 }] {
            if code == 0 {
                continue;
            }
            let kind = AlertKind::Fault(code);
            let details = Details::Fault {
                code,
                name: cfg.faults.name(code),
            };
            out.push(Condition {
                kind,
                severity: cfg.severity_of(kind),
                details,
            });
        }
        let findings = [
            (AlertKind::CycleAborted, self.aborted),
            (AlertKind::CycleUnderTemperature, self.under_temperature),
            (AlertKind::CycleHoldTooShort, self.short_hold),
        ];
        for (kind, finding) in findings {
            if let Some(f) = finding {
                let rule = cfg.sterilizer.rule(f.method);
                let details = Details::Cycle {
                    method: f.method,
                    peak_c: f.peak_c,
                    hold_s: f.hold_s,
                    required_c: rule.min_temp_c,
                    required_hold_s: rule.min_hold_s,
                    bad_cycles: f.count,
                    reason: reason(kind, &f, rule),
                };
                out.push(Condition {
                    kind,
                    severity: cfg.severity_of(kind),
                    details,
                });
            }
        }
        if let Some(m) = &self.meals.missed {
            let kind = AlertKind::NoCycleInMealPeriod;
            let details = Details::MealPeriod {
                date: m.date,
                period: m.period.clone(),
                missed_in_a_row: m.in_a_row,
            };
            out.push(Condition {
                kind,
                severity: cfg.severity_of(kind),
                details,
            });
        }
    }
}

/// Judges each meal period once, when its end has passed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MealTracker {
    /// Periods that started before this were not watched from their start: never judged.
    pub watch_from: Option<u64>,
    /// Every period ending at or before this instant has been judged.
    pub judged_until: u64,
    /// End times of recent good cycles, for periods not yet judged and for late proof.
    pub good_cycles: Vec<u64>,
    /// The latest judged period, when it had no good cycle.
    pub missed: Option<MissedMeal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedMeal {
    pub date: Date,
    pub period: String,
    pub start: u64,
    pub end: u64,
    pub in_a_row: u32,
}

/// One meal period on one date, as instants.
struct PeriodSlot {
    date: Date,
    index: usize,
    start: u64,
    end: u64,
}

/// Meal periods on operating days ending in `(after, until]`, oldest first.
fn periods_ending(after: u64, until: u64, cfg: &SterilizerConfig) -> impl Iterator<Item = PeriodSlot> + '_ {
    let first = china::epoch_day(after);
    let last = china::epoch_day(until);
    (first..=last).flat_map(move |day| {
        let date = china::date_from_epoch_day(day);
        let operating = cfg.operates_on(china::iso_weekday(date));
        cfg.meal_periods.iter().enumerate().filter_map(move |(index, p)| {
            let (start, end) = (china::at(date, p.start), china::at(date, p.end));
            (operating && end > after && end <= until).then_some(PeriodSlot {
                date,
                index,
                start,
                end,
            })
        })
    })
}

impl MealTracker {
    /// Starts watching at `now` if not watching yet: only periods that start later are judged.
    pub fn watch(&mut self, now: u64) {
        if self.watch_from.is_none() {
            self.watch_from = Some(now);
            self.judged_until = now;
        }
    }

    fn good_cycle(&mut self, ended: u64) {
        self.good_cycles.push(ended);
        // A late reading may prove that the missed period did have its cycle.
        if self.missed.as_ref().is_some_and(|m| (m.start..m.end).contains(&ended)) {
            self.missed = None;
        }
    }

    /// Judges every period that ended by `now`. Periods while `active` is false (out of
    /// service, never reported) pass without a verdict.
    pub fn judge_until(&mut self, now: u64, active: bool, cfg: &SterilizerConfig) {
        let Some(watch_from) = self.watch_from else { return };
        if now <= self.judged_until {
            return;
        }
        let from = self
            .judged_until
            .max(now.saturating_sub(MAX_CATCH_UP_DAYS as u64 * china::DAY_MS));
        for slot in periods_ending(from, now, cfg) {
            if !active || slot.start < watch_from {
                continue;
            }
            if self.good_cycles.iter().any(|t| (slot.start..slot.end).contains(t)) {
                self.missed = None;
            } else {
                let in_a_row = self.missed.as_ref().map_or(1, |m| m.in_a_row + 1);
                let period = cfg.meal_periods[slot.index].name.clone();
                self.missed = Some(MissedMeal {
                    date: slot.date,
                    period,
                    start: slot.start,
                    end: slot.end,
                    in_a_row,
                });
            }
        }
        self.judged_until = now;
        // Keep only cycles that can still matter: the periods of the last day.
        let keep_from = now.saturating_sub(china::DAY_MS);
        self.good_cycles.retain(|&t| t >= keep_from);
    }

    /// The end of the next period to judge.
    pub fn next_deadline(&self, cfg: &SterilizerConfig) -> Option<u64> {
        self.watch_from?;
        let horizon = self.judged_until + 8 * china::DAY_MS;
        periods_ending(self.judged_until, horizon, cfg).next().map(|s| s.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WED: Date = Date::constant(2026, 11, 25);

    fn at(h: u16, m: u16) -> u64 {
        china::at(WED, china::ClockTime::hm(h, m))
    }

    fn cycle(method: Method, peak_c: f32, hold_s: u32, outcome: CycleOutcome) -> CycleReport {
        CycleReport {
            method,
            started: at(10, 0),
            peak_c: Some(peak_c),
            hold_s,
            outcome,
        }
    }

    fn kinds(t: &SterilizerTracker) -> Vec<AlertKind> {
        let mut out = Vec::new();
        t.conditions(&AlertConfig::default(), &mut out);
        out.into_iter().map(|c| c.kind).collect()
    }

    #[test]
    fn cycle_rules_per_method() {
        let cfg = SterilizerConfig::default();
        let cases = [
            (Method::Steam, 100.0, 600, vec![]),
            (Method::Steam, 99.5, 600, vec![AlertKind::CycleUnderTemperature]),
            (Method::Infrared, 125.0, 599, vec![AlertKind::CycleHoldTooShort]),
            (Method::Infrared, 110.0, 10, vec![AlertKind::CycleUnderTemperature]),
            (Method::Dishwasher, 82.0, 40, vec![]),
            (Method::Dishwasher, 85.0, 39, vec![AlertKind::CycleHoldTooShort]),
        ];
        for (method, peak, hold, expected) in cases {
            let mut t = SterilizerTracker::default();
            t.apply_cycle(&cycle(method, peak, hold, CycleOutcome::Completed), at(11, 0), &cfg);
            assert_eq!(kinds(&t), expected, "{method:?} {peak} {hold}");
        }
    }

    #[test]
    fn bad_cycles_count_until_a_good_cycle_resets_them() {
        let cfg = SterilizerConfig::default();
        let mut t = SterilizerTracker::default();
        t.apply_cycle(
            &cycle(Method::Steam, 101.0, 100, CycleOutcome::Aborted),
            at(11, 0),
            &cfg,
        );
        t.apply_cycle(
            &cycle(Method::Steam, 90.0, 700, CycleOutcome::Completed),
            at(11, 20),
            &cfg,
        );
        t.apply_cycle(
            &cycle(Method::Steam, 90.0, 700, CycleOutcome::Completed),
            at(11, 40),
            &cfg,
        );
        assert_eq!(t.aborted.unwrap().count, 1);
        assert_eq!(t.under_temperature.unwrap().count, 2);
        assert_eq!(kinds(&t), [AlertKind::CycleAborted, AlertKind::CycleUnderTemperature]);
        t.apply_cycle(
            &cycle(Method::Steam, 101.0, 700, CycleOutcome::Completed),
            at(12, 0),
            &cfg,
        );
        assert_eq!(kinds(&t), []);
    }

    fn details(t: &SterilizerTracker) -> Vec<Details> {
        let mut out = Vec::new();
        t.conditions(&AlertConfig::default(), &mut out);
        out.into_iter().map(|c| c.details).collect()
    }

    #[test]
    fn a_cold_rinse_is_under_temperature_only_and_says_why() {
        let cfg = SterilizerConfig::default();
        let mut t = SterilizerTracker::default();
        // 78 °C rinse: never at the 82 °C target, so no time counted at it either.
        t.apply_cycle(
            &cycle(Method::Dishwasher, 78.0, 0, CycleOutcome::Completed),
            at(11, 0),
            &cfg,
        );
        assert_eq!(kinds(&t), [AlertKind::CycleUnderTemperature]);
        let [Details::Cycle { reason, .. }] = &details(&t)[..] else {
            panic!()
        };
        assert!(reason.contains("never reached the 82 °C target"), "{reason}");
        assert!(reason.contains("not also too short"), "{reason}");
        // At the target but briefly: too short only.
        let mut t = SterilizerTracker::default();
        t.apply_cycle(
            &cycle(Method::Dishwasher, 83.0, 20, CycleOutcome::Completed),
            at(11, 0),
            &cfg,
        );
        assert_eq!(kinds(&t), [AlertKind::CycleHoldTooShort]);
        let [Details::Cycle { reason, .. }] = &details(&t)[..] else {
            panic!()
        };
        assert!(reason.contains("held it 20 s of the 40 s required"), "{reason}");
    }

    #[test]
    fn a_cycle_the_sensor_fault_explains_is_not_judged() {
        let cfg = SterilizerConfig::default();
        let no_reading = CycleReport {
            peak_c: None,
            ..cycle(Method::Dishwasher, 0.0, 0, CycleOutcome::Completed)
        };
        let mut t = SterilizerTracker::default();
        t.meals.watch(at(8, 0));
        t.apply_event(NodeEvent {
            event: EventKind::FaultRaised,
            code: 801,
        });
        t.apply_cycle(&no_reading, at(11, 0), &cfg);
        assert_eq!(
            kinds(&t),
            [AlertKind::Fault(801)],
            "the fault alone, no under-temperature"
        );
        let u = t.unjudged.unwrap();
        assert_eq!((u.why, u.fault, u.count), (Unjudged::NoValidReading, 801, 1));
        // A reading taken while the fault is open (a flaky probe) is not trusted either.
        t.apply_cycle(
            &cycle(Method::Dishwasher, 60.0, 0, CycleOutcome::Completed),
            at(12, 0),
            &cfg,
        );
        assert_eq!(kinds(&t), [AlertKind::Fault(801)]);
        assert_eq!(t.unjudged.unwrap().why, Unjudged::SensorFaultOpen);
        // The kitchen used the sterilizer: the lunch period is not "unused".
        t.meals.judge_until(at(14, 0), true, &cfg);
        assert!(t.meals.missed.is_none());
        // Once the sensor is back, cycles are judged again.
        t.apply_event(NodeEvent {
            event: EventKind::FaultCleared,
            code: 801,
        });
        t.apply_cycle(
            &cycle(Method::Dishwasher, 60.0, 0, CycleOutcome::Completed),
            at(15, 0),
            &cfg,
        );
        assert_eq!(kinds(&t), [AlertKind::CycleUnderTemperature]);
    }

    #[test]
    fn an_implausible_probe_value_is_a_sensor_fault_and_its_cycle_is_not_judged() {
        let cfg = SterilizerConfig::default();
        let status = |temp_c| SterilizerStatus {
            method: Method::Steam,
            temp_c,
            door: gridwatch_protocol::Door::Closed,
            heating: true,
            power: true,
            in_cycle: true,
        };
        let mut t = SterilizerTracker::default();
        t.apply_status(status(1500.0));
        assert_eq!(kinds(&t), [AlertKind::Fault(IMPLAUSIBLE_FAULT)]);
        // The broken probe's 1,500 °C peak must not pass the cycle as hot.
        t.apply_cycle(
            &cycle(Method::Steam, 1500.0, 900, CycleOutcome::Completed),
            at(11, 0),
            &cfg,
        );
        let u = t.unjudged.unwrap();
        assert_eq!((u.why, u.fault), (Unjudged::ImplausibleReading, IMPLAUSIBLE_FAULT));
        // A plausible value clears it; an implausible peak alone is not judged either.
        t.apply_status(status(104.0));
        assert_eq!(kinds(&t), []);
        t.apply_cycle(
            &cycle(Method::Steam, -60.0, 0, CycleOutcome::Completed),
            at(12, 0),
            &cfg,
        );
        assert_eq!(t.unjudged.unwrap().count, 2);
        assert_eq!(kinds(&t), [], "no under-temperature from a probe reading -60 °C");
    }

    #[test]
    fn sensor_fault_events_raise_a_fault_alert() {
        let mut t = SterilizerTracker::default();
        t.apply_event(NodeEvent {
            event: EventKind::FaultRaised,
            code: 801,
        });
        let mut out = Vec::new();
        t.conditions(&AlertConfig::default(), &mut out);
        assert_eq!(
            out[0].details,
            Details::Fault {
                code: 801,
                name: "thermocouple open circuit".into()
            }
        );
        t.apply_event(NodeEvent {
            event: EventKind::FaultCleared,
            code: 801,
        });
        assert_eq!(kinds(&t), []);
    }

    #[test]
    fn meal_period_without_good_cycle_is_missed_at_its_end() {
        let cfg = SterilizerConfig::default();
        let mut t = SterilizerTracker::default();
        t.meals.watch(at(8, 0));
        assert_eq!(t.meals.next_deadline(&cfg), Some(at(13, 30)));
        t.meals.judge_until(at(13, 29), true, &cfg);
        assert_eq!(kinds(&t), []);
        t.meals.judge_until(at(13, 30), true, &cfg);
        assert_eq!(kinds(&t), [AlertKind::NoCycleInMealPeriod]);
        assert_eq!(t.meals.next_deadline(&cfg), Some(at(20, 0)));
        // A good cycle in the dinner period: judged good at its end, the alert goes.
        t.apply_cycle(
            &cycle(Method::Infrared, 125.0, 900, CycleOutcome::Completed),
            at(17, 0),
            &cfg,
        );
        assert_eq!(kinds(&t), [AlertKind::NoCycleInMealPeriod]);
        t.meals.judge_until(at(20, 0), true, &cfg);
        assert_eq!(kinds(&t), []);
    }

    #[test]
    fn late_cycle_inside_the_missed_period_proves_it_was_used() {
        let cfg = SterilizerConfig::default();
        let mut t = SterilizerTracker::default();
        t.meals.watch(at(8, 0));
        t.meals.judge_until(at(14, 0), true, &cfg);
        assert_eq!(t.meals.missed.as_ref().unwrap().period, "lunch");
        t.apply_cycle(
            &cycle(Method::Steam, 101.0, 700, CycleOutcome::Completed),
            at(12, 0),
            &cfg,
        );
        assert!(t.meals.missed.is_none());
    }

    #[test]
    fn periods_not_watched_from_their_start_or_inactive_or_closed_days_pass() {
        let mut cfg = SterilizerConfig::default();
        let mut t = SterilizerTracker::default();
        t.meals.watch(at(11, 0)); // lunch had begun already
        t.meals.judge_until(at(14, 0), true, &cfg);
        assert!(t.meals.missed.is_none());
        t.meals.judge_until(at(21, 0), false, &cfg); // out of service at dinner
        assert!(t.meals.missed.is_none());
        cfg.operating_days = vec![1, 2, 4, 5]; // closed on Wednesdays (and weekends)
        let mut t = SterilizerTracker::default();
        t.meals.watch(at(0, 0));
        assert_eq!(t.meals.next_deadline(&cfg), Some(at(13, 30) + china::DAY_MS));
        t.meals.judge_until(at(23, 0), true, &cfg);
        assert!(t.meals.missed.is_none());
        t.meals.judge_until(at(23, 0) + china::DAY_MS, true, &cfg);
        let missed = t.meals.missed.as_ref().unwrap();
        assert_eq!((missed.period.as_str(), missed.in_a_row), ("dinner", 2));
    }
}
