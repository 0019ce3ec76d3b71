//! A tableware sterilizer (infrared / hot-air cabinet, steam cabinet or a commercial
//! dishwasher's final rinse) as a physics model: a first-order thermal model
//! (heater power against losses to the kitchen, faster with the door open), the
//! cabinet's own program controller (heat to the set point, hold, stop), door, mains,
//! and faults that can be injected.
//!
//! The model drives the cabinet's hardware ([`SterilizerHardware`]): door, mains and
//! heater-current contacts and a MAX31855 thermocouple converter that the firmware's
//! `SterilizerNode` reads through embedded-hal.
use crate::hal::{ContactLine, ProbeFault, Thermocouple};
use gridwatch_protocol::Method;
use serde::Deserialize;

/// The cabinet. Defaults depend on the method ([`SterilizerParams::for_method`]); a
/// scenario overrides single fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SterilizerParams {
    pub method: Method,
    /// The program's set point and hold time (a normal program passes the health rule).
    pub setpoint_c: f64,
    pub hold_s: u64,
    /// Heating rate at full power with the cabinet at kitchen temperature.
    pub heat_rate_c_s: f64,
    /// Time constant of the losses with the door closed and open.
    pub cool_tau_s: f64,
    pub open_tau_s: f64,
    pub ambient_c: f64,
    /// A program that has not reached its set point after this long stops heating anyway
    /// (what real controllers do; the cycle then completes under temperature).
    pub max_heating_s: u64,
}

impl SterilizerParams {
    pub fn for_method(method: Method) -> Self {
        let (setpoint_c, hold_s, heat_rate_c_s, cool_tau_s, open_tau_s, max_heating_s) = match method {
            // Hot-air cabinets commonly run 125 °C for 15 min.
            Method::Infrared => (125.0, 900, 0.15, 1_500.0, 240.0, 2_400),
            // Steam at atmospheric pressure: just above 100 °C.
            Method::Steam => (101.0, 900, 0.25, 1_200.0, 200.0, 1_800),
            // The final rinse: a small mass of water, heated fast.
            Method::Dishwasher => (85.0, 60, 1.5, 400.0, 120.0, 300),
        };
        Self {
            method,
            setpoint_c,
            hold_s,
            heat_rate_c_s,
            cool_tau_s,
            open_tau_s,
            ambient_c: 22.0,
            max_heating_s,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.heat_rate_c_s <= 0.0 || self.cool_tau_s <= 0.0 || self.open_tau_s <= 0.0 {
            return Err("heat_rate_c_s, cool_tau_s and open_tau_s must be positive".into());
        }
        let ceiling = self.ambient_c + self.heat_rate_c_s * self.cool_tau_s;
        if ceiling <= self.setpoint_c {
            return Err(format!(
                "the heater cannot reach {} °C (at most {ceiling:.0} °C with these numbers)",
                self.setpoint_c
            ));
        }
        Ok(())
    }
}

/// What can happen to a sterilizer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum SterilizerEvent {
    /// Staff close the door and start a program; `hold_s` overrides the program's hold
    /// time (a short program), `setpoint_c` its set point.
    StartCycle {
        #[serde(default)]
        hold_s: Option<u64>,
        #[serde(default)]
        setpoint_c: Option<f64>,
    },
    /// The door opens (loading, unloading, or interrupting a program: the interlock
    /// cuts the heater).
    OpenDoor,
    CloseDoor,
    /// Mains fails at the cabinet (the program is lost) / returns.
    PowerOff,
    PowerOn,
    /// The heating element delivers only this fraction of its power (ageing element,
    /// a failed tube): programs stall below their set point.
    WeakHeater {
        power: f64,
    },
    /// The thermocouple fails.
    ProbeFault {
        fault: ProbeFault,
    },
    /// The probe reads `temp_c` whatever the cabinet's temperature, with no fault bit
    /// set (a thermocouple shorted further along its cable, a converter gone wrong).
    /// `repair` ends it.
    ProbeReads {
        temp_c: f64,
    },
    /// Every injected fault is repaired.
    Repair,
}

/// The cabinet's hardware as the firmware sees it.
#[derive(Debug, Clone)]
pub struct SterilizerHardware {
    pub door_closed: ContactLine,
    pub power: ContactLine,
    /// Heater relay / element current sense.
    pub heater: ContactLine,
    pub probe: Thermocouple,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Program {
    Idle,
    Heating { since_ms: u64 },
    Holding { until_ms: u64 },
}

const MAX_STEP_MS: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct SterilizerModel {
    params: SterilizerParams,
    hw: SterilizerHardware,
    now_ms: u64,
    temp_c: f64,
    door_open: bool,
    mains: bool,
    heater_power: f64,
    probe_fault: Option<ProbeFault>,
    /// What the probe reads instead of the cabinet's temperature.
    probe_reads: Option<f64>,
    program: Program,
    /// Set point and hold of the running program.
    setpoint_c: f64,
    hold_s: u64,
    /// Programs started, for tests and summaries.
    pub cycles_started: u64,
}

impl SterilizerModel {
    /// A cold cabinet at kitchen temperature, door closed, on mains.
    pub fn new(params: SterilizerParams, now_ms: u64) -> Self {
        let hw = SterilizerHardware {
            door_closed: ContactLine::active_low(),
            power: ContactLine::active_high(),
            heater: ContactLine::active_high(),
            probe: Thermocouple::default(),
        };
        let mut model = Self {
            hw,
            now_ms,
            temp_c: params.ambient_c,
            door_open: false,
            mains: true,
            heater_power: 1.0,
            probe_fault: None,
            probe_reads: None,
            program: Program::Idle,
            setpoint_c: params.setpoint_c,
            hold_s: params.hold_s,
            cycles_started: 0,
            params,
        };
        model.wire();
        model
    }

    pub fn params(&self) -> &SterilizerParams {
        &self.params
    }

    pub fn hardware(&self) -> &SterilizerHardware {
        &self.hw
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn temp_c(&self) -> f64 {
        self.temp_c
    }

    pub fn running(&self) -> bool {
        self.program != Program::Idle
    }

    pub fn apply(&mut self, event: &SterilizerEvent) {
        match *event {
            SterilizerEvent::StartCycle { hold_s, setpoint_c } => {
                self.door_open = false;
                if self.mains {
                    self.setpoint_c = setpoint_c.unwrap_or(self.params.setpoint_c);
                    self.hold_s = hold_s.unwrap_or(self.params.hold_s);
                    self.program = Program::Heating { since_ms: self.now_ms };
                    self.cycles_started += 1;
                }
            }
            SterilizerEvent::OpenDoor => {
                self.door_open = true;
                // The door interlock stops the program.
                self.program = Program::Idle;
            }
            SterilizerEvent::CloseDoor => self.door_open = false,
            SterilizerEvent::PowerOff => {
                self.mains = false;
                self.program = Program::Idle;
            }
            SterilizerEvent::PowerOn => self.mains = true,
            SterilizerEvent::WeakHeater { power } => self.heater_power = power.clamp(0.0, 1.0),
            SterilizerEvent::ProbeFault { fault } => self.probe_fault = Some(fault),
            SterilizerEvent::ProbeReads { temp_c } => self.probe_reads = Some(temp_c),
            SterilizerEvent::Repair => {
                self.heater_power = 1.0;
                self.probe_fault = None;
                self.probe_reads = None;
            }
        }
        self.wire();
    }

    pub fn advance_to(&mut self, t_ms: u64) {
        while self.now_ms < t_ms {
            let dt_ms = (t_ms - self.now_ms).min(MAX_STEP_MS);
            self.now_ms += dt_ms;
            self.step(dt_ms as f64 / 1000.0);
        }
        self.wire();
    }

    fn step(&mut self, dt_s: f64) {
        let p = &self.params;
        let full_power = p.heat_rate_c_s * self.heater_power;
        let tau = if self.door_open { p.open_tau_s } else { p.cool_tau_s };
        // Controller output: full power below the set point, then just enough to cover
        // the losses (with a little proportional correction) while holding.
        let drive = match self.program {
            Program::Idle => 0.0,
            Program::Heating { .. } => 1.0,
            Program::Holding { .. } => {
                let hold = (self.setpoint_c - p.ambient_c) / (tau * p.heat_rate_c_s);
                (hold + (self.setpoint_c - self.temp_c) * 0.5).clamp(0.0, 1.0)
            }
        };
        let d_temp = drive * full_power - (self.temp_c - p.ambient_c) / tau;
        self.temp_c += d_temp * dt_s;
        match self.program {
            Program::Heating { .. } if self.temp_c >= self.setpoint_c - 0.2 => {
                self.program = Program::Holding {
                    until_ms: self.now_ms + self.hold_s * 1000,
                };
            }
            Program::Heating { since_ms } if self.now_ms - since_ms >= p.max_heating_s * 1000 => {
                self.program = Program::Idle;
            }
            Program::Holding { until_ms } if self.now_ms >= until_ms => self.program = Program::Idle,
            _ => {}
        }
    }

    fn wire(&mut self) {
        let hw = &self.hw;
        hw.door_closed.set(!self.door_open);
        hw.power.set(self.mains);
        hw.heater
            .set(self.program != Program::Idle && self.mains && !self.door_open);
        hw.probe.set_celsius(self.probe_reads.unwrap_or(self.temp_c));
        hw.probe.set_fault(self.probe_fault);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_061_200_000;

    fn peak_over(model: &mut SterilizerModel, secs: u64) -> f64 {
        let mut peak: f64 = model.temp_c();
        for _ in 0..secs {
            let next = model.now_ms() + 1_000;
            model.advance_to(next);
            peak = peak.max(model.temp_c());
        }
        peak
    }

    #[test]
    fn every_method_reaches_its_set_point_holds_and_cools() {
        for method in [Method::Infrared, Method::Steam, Method::Dishwasher] {
            let params = SterilizerParams::for_method(method);
            params.validate().unwrap();
            let mut cabinet = SterilizerModel::new(params.clone(), T0);
            cabinet.apply(&SterilizerEvent::StartCycle {
                hold_s: None,
                setpoint_c: None,
            });
            let peak = peak_over(&mut cabinet, params.max_heating_s + params.hold_s);
            assert!((peak - params.setpoint_c).abs() < 1.0, "{method:?}: {peak}");
            assert!(!cabinet.running());
            let warm = cabinet.temp_c();
            peak_over(&mut cabinet, 600);
            assert!(cabinet.temp_c() < warm - 5.0, "{method:?} cools");
        }
    }

    #[test]
    fn a_weak_heater_stalls_below_the_set_point_and_the_program_gives_up() {
        let params = SterilizerParams::for_method(Method::Infrared);
        let mut cabinet = SterilizerModel::new(params.clone(), T0);
        cabinet.apply(&SterilizerEvent::WeakHeater { power: 0.4 });
        cabinet.apply(&SterilizerEvent::StartCycle {
            hold_s: None,
            setpoint_c: None,
        });
        let peak = peak_over(&mut cabinet, params.max_heating_s + 10);
        assert!(peak < 110.0 && peak > 80.0, "{peak}");
        assert!(!cabinet.running());
    }

    #[test]
    fn opening_the_door_stops_the_heater() {
        let mut cabinet = SterilizerModel::new(SterilizerParams::for_method(Method::Steam), T0);
        cabinet.apply(&SterilizerEvent::StartCycle {
            hold_s: None,
            setpoint_c: None,
        });
        peak_over(&mut cabinet, 60);
        assert!(cabinet.hardware().heater.is_active());
        cabinet.apply(&SterilizerEvent::OpenDoor);
        assert!(!cabinet.hardware().heater.is_active() && !cabinet.hardware().door_closed.is_active());
    }

    #[test]
    fn a_probe_reading_a_fixed_value_sets_no_fault_bit_until_repaired() {
        let mut cabinet = SterilizerModel::new(SterilizerParams::for_method(Method::Steam), T0);
        cabinet.apply(&SterilizerEvent::ProbeReads { temp_c: 1_500.0 });
        cabinet.advance_to(T0 + 10_000);
        let frame = cabinet.hardware().probe.frame();
        assert_eq!(frame & 0x1_0007, 0, "no fault bit: {frame:#x}");
        assert_eq!((frame >> 18) as i32, 6_000, "1500 °C in quarter degrees");
        cabinet.apply(&SterilizerEvent::Repair);
        assert_eq!(
            (cabinet.hardware().probe.frame() >> 18) as i32,
            (cabinet.temp_c() * 4.0).round() as i32
        );
    }
}
