//! Recognises a disinfection cycle from door, power, heater and temperature samples.
//!
//! - start: heater on with the door closed and power present;
//! - temperature reached / hold: time at or above the method's target is tracked; the
//!   report's `hold_s` is the longest continuous stretch at or above the target;
//! - end (`Completed`): the heater stays off for `end_after_heater_off_ms` (the
//!   program ended), or the door opens or power drops once the hold requirement was
//!   met; an under-temperature cycle still "completes" and its `hold_s` tells;
//! - `Aborted`: the door opens or power drops before the hold requirement was met;
//! - a cycle without a single valid temperature sample (the sensor faulty throughout)
//!   reports no peak (`peak_c: None`): the sensor fault explains it, there is nothing
//!   to judge it by.
use gridwatch_protocol::{CycleOutcome, CycleReport, Method};

/// The health rule for one method: hold at least `target_c` for `hold_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleRule {
    pub target_c: f32,
    pub hold_s: u32,
}

impl CycleRule {
    /// Public guidance, as defaults (domain notes): steam/boiling 100 °C for 10 min,
    /// infrared/hot air 120 °C for 10 min, dishwasher final rinse 82 °C for 40 s.
    pub const fn for_method(method: Method) -> Self {
        match method {
            Method::Steam => Self {
                target_c: 100.0,
                hold_s: 600,
            },
            Method::Infrared => Self {
                target_c: 120.0,
                hold_s: 600,
            },
            Method::Dishwasher => Self {
                target_c: 82.0,
                hold_s: 40,
            },
        }
    }
}

/// One sample of the cabinet; `temp_c` is `None` while the sensor is faulty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleSample {
    pub temp_c: Option<f32>,
    pub door_closed: bool,
    pub power: bool,
    pub heater: bool,
}

/// Where a cycle is, for status and simulators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CyclePhase {
    Idle,
    /// Running, below the target temperature.
    Heating,
    /// Running, at or above the target.
    Holding,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Running {
    started_ms: u64,
    /// `None` until the first valid sample.
    peak_c: Option<f32>,
    at_target_since_ms: Option<u64>,
    longest_hold_ms: u64,
    heater_off_since_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleTracker {
    method: Method,
    rule: CycleRule,
    end_after_heater_off_ms: u64,
    running: Option<Running>,
}

impl CycleTracker {
    pub const fn new(method: Method, rule: CycleRule, end_after_heater_off_ms: u32) -> Self {
        Self {
            method,
            rule,
            end_after_heater_off_ms: end_after_heater_off_ms as u64,
            running: None,
        }
    }

    pub fn phase(&self) -> CyclePhase {
        match self.running {
            None => CyclePhase::Idle,
            Some(Running {
                at_target_since_ms: Some(_),
                ..
            }) => CyclePhase::Holding,
            Some(_) => CyclePhase::Heating,
        }
    }

    /// Feeds one sample; returns the report when a cycle ended with it.
    pub fn update(&mut self, s: CycleSample, now_ms: u64) -> Option<CycleReport> {
        let Some(mut run) = self.running else {
            if s.heater && s.door_closed && s.power {
                self.running = Some(Running {
                    started_ms: now_ms,
                    peak_c: s.temp_c,
                    at_target_since_ms: s.temp_c.filter(|&t| t >= self.rule.target_c).map(|_| now_ms),
                    longest_hold_ms: 0,
                    heater_off_since_ms: None,
                });
            }
            return None;
        };
        if let Some(t) = s.temp_c {
            run.peak_c = Some(run.peak_c.map_or(t, |p| p.max(t)));
        }
        match (
            s.temp_c.is_some_and(|t| t >= self.rule.target_c),
            run.at_target_since_ms,
        ) {
            (true, None) => run.at_target_since_ms = Some(now_ms),
            (true, Some(since)) => run.longest_hold_ms = run.longest_hold_ms.max(now_ms - since),
            (false, _) => run.at_target_since_ms = None,
        }
        run.heater_off_since_ms = if s.heater {
            None
        } else {
            run.heater_off_since_ms.or(Some(now_ms))
        };

        let hold_met = run.longest_hold_ms >= u64::from(self.rule.hold_s) * 1000;
        let program_ended = run
            .heater_off_since_ms
            .is_some_and(|off| now_ms - off >= self.end_after_heater_off_ms);
        let interrupted = !s.door_closed || !s.power;
        let outcome = match (interrupted, program_ended) {
            (true, _) if !hold_met => CycleOutcome::Aborted,
            (true, _) | (false, true) => CycleOutcome::Completed,
            (false, false) => {
                self.running = Some(run);
                return None;
            }
        };
        self.running = None;
        Some(CycleReport {
            method: self.method,
            started: run.started_ms,
            // A sensor that failed for the whole cycle leaves no peak: say so rather than
            // invent a temperature the engine would judge as under temperature.
            peak_c: run.peak_c,
            hold_s: (run.longest_hold_ms / 1000) as u32,
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(temp_c: Option<f32>, heater: bool) -> CycleSample {
        CycleSample {
            temp_c,
            door_closed: true,
            power: true,
            heater,
        }
    }

    /// Runs a heater-on stretch of `on_s` seconds then heater off until the report.
    fn run(tracker: &mut CycleTracker, temp_at: impl Fn(u64) -> Option<f32>, on_s: u64) -> CycleReport {
        (0..10_000)
            .find_map(|s| tracker.update(sample(temp_at(s), s < on_s), s * 1000))
            .expect("the cycle ends")
    }

    fn dishwasher() -> CycleTracker {
        CycleTracker::new(Method::Dishwasher, CycleRule::for_method(Method::Dishwasher), 10_000)
    }

    #[test]
    fn a_cycle_without_a_valid_reading_reports_no_peak() {
        let report = run(&mut dishwasher(), |_| None, 120);
        assert_eq!((report.peak_c, report.hold_s), (None, 0));
        assert_eq!(report.outcome, CycleOutcome::Completed);
    }

    #[test]
    fn one_valid_reading_is_enough_for_a_peak() {
        let report = run(&mut dishwasher(), |s| (s == 30).then_some(60.0), 120);
        assert_eq!(report.peak_c, Some(60.0));
        let report = run(&mut dishwasher(), |s| Some(70.0 + (s.min(60) as f32) / 10.0), 120);
        assert_eq!((report.peak_c, report.hold_s), (Some(76.0), 0));
    }
}
