//! Sterilizer rules: bad cycles (aborted, under temperature, too short a hold) and
//! meal periods of an operating day without one complete good cycle.
use crate::alert::{AlertKind, Details};
use crate::china::{self, Date};
use crate::config::{AlertConfig, SterilizerConfig};
use crate::lifecycle::Condition;
use gridwatch_protocol::{CycleOutcome, CycleReport, EventKind, Method, NodeEvent, SterilizerStatus};
use serde::{Deserialize, Serialize};

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
}

/// The latest cycle that broke a rule, and how many did since the last good cycle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CycleFinding {
    pub method: Method,
    pub peak_c: f32,
    pub hold_s: u32,
    pub count: u32,
}

impl SterilizerTracker {
    pub fn apply_status(&mut self, s: SterilizerStatus) {
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
        let rule = cfg.rule(c.method);
        let finding = |prev: Option<CycleFinding>| {
            Some(CycleFinding {
                method: c.method,
                peak_c: c.peak_c,
                hold_s: c.hold_s,
                count: prev.map_or(1, |f| f.count + 1),
            })
        };
        if c.outcome == CycleOutcome::Aborted {
            self.aborted = finding(self.aborted);
            return;
        }
        let hot_enough = c.peak_c >= rule.min_temp_c;
        let long_enough = c.hold_s >= rule.min_hold_s;
        if hot_enough && long_enough {
            self.aborted = None;
            self.under_temperature = None;
            self.short_hold = None;
            self.meals.good_cycle(ended);
            return;
        }
        if !hot_enough {
            self.under_temperature = finding(self.under_temperature);
        }
        if !long_enough {
            self.short_hold = finding(self.short_hold);
        }
    }

    pub fn conditions(&self, cfg: &AlertConfig, out: &mut Vec<Condition>) {
        if self.fault != 0 {
            let kind = AlertKind::Fault(self.fault);
            let details = Details::Fault {
                code: self.fault,
                name: cfg.faults.name(self.fault),
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
            peak_c,
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
            (
                Method::Infrared,
                110.0,
                10,
                vec![AlertKind::CycleUnderTemperature, AlertKind::CycleHoldTooShort],
            ),
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
