//! The kitchen sterilizer node: cabinet temperature from a thermocouple, door, power
//! and heater contacts; recognises disinfection cycles and reports `CycleReport`s,
//! and `SterilizerStatus` on change (temperature with a dead band) plus a heartbeat.
use crate::clock::Periodic;
use crate::cycle::{CyclePhase, CycleRule, CycleSample, CycleTracker};
use crate::debounce::Debounced;
use crate::input::Contact;
use crate::record::NodeMessage;
use crate::report::{Node, Outgoing, StatusReporter, power_event, push_event};
use crate::thermocouple::{TemperatureSensor, ThermocoupleFault};
use embedded_hal::digital::InputPin;
use gridwatch_protocol::validate::TEMP_RANGE_C;
use gridwatch_protocol::{Door, EventKind, Method, SterilizerStatus};

/// Fault codes reported for thermocouple faults (a site table; defaults here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThermocoupleFaultCodes {
    pub open_circuit: u16,
    pub short_to_ground: u16,
    pub short_to_vcc: u16,
    pub no_response: u16,
}

impl ThermocoupleFaultCodes {
    pub const fn code(&self, fault: ThermocoupleFault) -> u16 {
        match fault {
            ThermocoupleFault::OpenCircuit => self.open_circuit,
            ThermocoupleFault::ShortToGround => self.short_to_ground,
            ThermocoupleFault::ShortToVcc => self.short_to_vcc,
            ThermocoupleFault::NoResponse => self.no_response,
        }
    }
}

impl Default for ThermocoupleFaultCodes {
    fn default() -> Self {
        Self {
            open_circuit: 801,
            short_to_ground: 802,
            short_to_vcc: 803,
            no_response: 804,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SterilizerConfig {
    pub method: Method,
    pub rule: CycleRule,
    pub sample_period_ms: u32,
    pub heartbeat_ms: u32,
    pub contact_settle_ms: u32,
    /// A temperature change smaller than this is not worth a status of its own.
    pub report_delta_c: f32,
    /// The program has ended when the heater stayed off this long.
    pub end_after_heater_off_ms: u32,
    /// A thermocouple fault must persist (or clear) this long before an event.
    pub fault_settle_ms: u32,
    pub fault_codes: ThermocoupleFaultCodes,
}

impl SterilizerConfig {
    /// Defaults: the method's rule, sample every second, heartbeat 10 s, debounce 1 s,
    /// temperature dead band 1 °C, program end after 60 s of heater off.
    pub fn new(method: Method) -> Self {
        Self {
            method,
            rule: CycleRule::for_method(method),
            sample_period_ms: 1_000,
            heartbeat_ms: 10_000,
            contact_settle_ms: 1_000,
            report_delta_c: 1.0,
            end_after_heater_off_ms: 60_000,
            fault_settle_ms: 3_000,
            fault_codes: ThermocoupleFaultCodes::default(),
        }
    }
}

pub struct SterilizerInputs<P> {
    pub door_closed: Contact<P>,
    /// Mains present at the cabinet.
    pub power: Contact<P>,
    /// Heater relay or element current sense.
    pub heater: Contact<P>,
}

pub struct SterilizerNode<P, T> {
    config: SterilizerConfig,
    inputs: SterilizerInputs<P>,
    sensor: T,
    door_closed: Debounced<bool>,
    power: Debounced<bool>,
    heater: Debounced<bool>,
    fault: Debounced<Option<ThermocoupleFault>>,
    temp_c: Option<f32>,
    cycle: CycleTracker,
    sampling: Periodic,
    reporter: StatusReporter<SterilizerStatus>,
    started: bool,
}

impl<P: InputPin, T: TemperatureSensor> SterilizerNode<P, T> {
    pub fn new(config: SterilizerConfig, inputs: SterilizerInputs<P>, sensor: T) -> Self {
        let contact = Debounced::new(false, config.contact_settle_ms);
        Self {
            door_closed: contact,
            power: contact,
            heater: contact,
            fault: Debounced::new(None, config.fault_settle_ms),
            temp_c: None,
            cycle: CycleTracker::new(config.method, config.rule, config.end_after_heater_off_ms),
            sampling: Periodic::new(config.sample_period_ms),
            reporter: StatusReporter::new(config.heartbeat_ms),
            started: false,
            config,
            inputs,
            sensor,
        }
    }

    pub fn status(&self) -> SterilizerStatus {
        SterilizerStatus {
            method: self.config.method,
            // Last good reading, kept in the protocol's valid range; faults go out as events.
            temp_c: self
                .temp_c
                .unwrap_or(*TEMP_RANGE_C.start())
                .clamp(*TEMP_RANGE_C.start(), *TEMP_RANGE_C.end()),
            door: if self.door_closed.value() {
                Door::Closed
            } else {
                Door::Open
            },
            heating: self.heater.value(),
            power: self.power.value(),
            in_cycle: self.cycle.phase() != CyclePhase::Idle,
        }
    }

    pub fn cycle_phase(&self) -> CyclePhase {
        self.cycle.phase()
    }

    pub fn release(self) -> (SterilizerInputs<P>, T) {
        (self.inputs, self.sensor)
    }

    fn sample(&mut self, now_ms: u64, out: &mut Outgoing) {
        let door_closed = self.inputs.door_closed.is_active();
        let power = self.inputs.power.is_active();
        let heater = self.inputs.heater.is_active();
        let reading = self.sensor.read_celsius();
        if let Ok(t) = reading {
            self.temp_c = Some(t);
        }
        if !self.started {
            self.started = true;
            self.door_closed.reset(door_closed, now_ms);
            self.power.reset(power, now_ms);
            self.heater.reset(heater, now_ms);
            // The fault debouncer starts healthy so a sensor broken at boot is reported.
            return;
        }
        self.door_closed.update(door_closed, now_ms);
        self.heater.update(heater, now_ms);
        if let Some(mains_on) = self.power.update(power, now_ms) {
            push_event(out, power_event(mains_on), 0);
        }
        let previous_fault = self.fault.value();
        match (self.fault.update(reading.err(), now_ms), previous_fault) {
            (Some(Some(fault)), _) => push_event(out, EventKind::FaultRaised, self.config.fault_codes.code(fault)),
            (Some(None), Some(fault)) => push_event(out, EventKind::FaultCleared, self.config.fault_codes.code(fault)),
            _ => {}
        }
        let sample = CycleSample {
            temp_c: reading.ok(),
            door_closed: self.door_closed.value(),
            power: self.power.value(),
            heater: self.heater.value(),
        };
        if let Some(report) = self.cycle.update(sample, now_ms) {
            let _ = out.push(NodeMessage::Cycle(report));
        }
    }
}

impl<P: InputPin, T: TemperatureSensor> Node for SterilizerNode<P, T> {
    fn poll(&mut self, now_ms: u64) -> Outgoing {
        let mut out = Outgoing::new();
        if !self.sampling.due(now_ms) {
            return out;
        }
        let mut events = Outgoing::new();
        self.sample(now_ms, &mut events);
        let status = self.status();
        let delta_c = self.config.report_delta_c;
        let significant = |last: &SterilizerStatus, new: &SterilizerStatus| {
            (last.temp_c - new.temp_c).abs() >= delta_c
                || SterilizerStatus {
                    temp_c: new.temp_c,
                    ..*last
                } != *new
        };
        if self.reporter.should_send(&status, now_ms, significant) {
            let _ = out.push(NodeMessage::Sterilizer(status));
        }
        for event in events {
            let _ = out.push(event);
        }
        out
    }

    fn next_poll_ms(&self) -> u64 {
        self.sampling.next_ms()
    }
}
