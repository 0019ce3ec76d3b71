//! A sterilizer cabinet: heats to its target, holds, cools; runs a cycle at
//! each scheduled start.
use gridwatch_protocol::{Door, Method, SterilizerStatus};

#[derive(Debug, Clone)]
pub struct SimSterilizer {
    method: Method,
    target_c: f32,
    hold_s: u64,
    temp_c: f32,
    cycle_started: Option<u64>,
    last_step: u64,
    /// A cycle starts every `period_s` seconds of device time.
    period_s: u64,
}

const AMBIENT_C: f32 = 22.0;
const HEAT_C_PER_S: f32 = 0.25;
const COOL_FRACTION_PER_S: f32 = 0.004;

impl SimSterilizer {
    pub fn new(method: Method, period_s: u64) -> Self {
        let (target_c, hold_s) = match method {
            Method::Steam => (102.0, 600),
            Method::Infrared => (125.0, 900),
            Method::Dishwasher => (85.0, 60),
        };
        Self {
            method,
            target_c,
            hold_s,
            temp_c: AMBIENT_C,
            cycle_started: None,
            last_step: 0,
            period_s,
        }
    }

    pub fn step(&mut self, now_s: u64) {
        let dt = now_s.saturating_sub(self.last_step) as f32;
        self.last_step = now_s;
        if self.cycle_started.is_none() && now_s % self.period_s < 5 {
            self.cycle_started = Some(now_s);
        }
        match self.cycle_started {
            Some(start) if now_s - start > self.heating_time() + self.hold_s => self.cycle_started = None,
            Some(_) => self.temp_c = (self.temp_c + HEAT_C_PER_S * dt).min(self.target_c),
            None => self.temp_c = AMBIENT_C + (self.temp_c - AMBIENT_C) * (1.0 - COOL_FRACTION_PER_S).powf(dt),
        }
    }

    fn heating_time(&self) -> u64 {
        ((self.target_c - AMBIENT_C) / HEAT_C_PER_S) as u64
    }

    pub fn status(&self) -> SterilizerStatus {
        let in_cycle = self.cycle_started.is_some();
        SterilizerStatus {
            method: self.method,
            // Reported to a tenth of a degree, as real controllers do; keeps heartbeats stable.
            temp_c: (self.temp_c * 10.0).round() / 10.0,
            door: Door::Closed,
            heating: in_cycle && self.temp_c < self.target_c,
            power: true,
            in_cycle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_reaches_and_holds_its_target_then_cools() {
        let mut s = SimSterilizer::new(Method::Infrared, 7200);
        let mut peak: f32 = 0.0;
        for t in 0..3000 {
            s.step(t);
            peak = peak.max(s.status().temp_c);
        }
        assert_eq!(peak, 125.0);
        assert!(!s.status().in_cycle);
        assert!(s.status().temp_c < 125.0);
    }
}
