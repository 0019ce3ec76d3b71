//! The elevator node: samples the car's contacts and position on a schedule,
//! debounces them, detects local events at the edge and reports status on change
//! plus a heartbeat.
//!
//! Local events (only in `Normal` service, so maintenance raises no false alarms):
//! door open while running, stopped outside the door zone (for a configurable time),
//! alarm button, mains lost/restored. Sensor faults are reported in every mode.
use crate::clock::Periodic;
use crate::debounce::Debounced;
use crate::input::Contact;
use crate::position::{LandingTable, MotionEstimator, PositionSensor};
use crate::record::NodeMessage;
use crate::report::{Node, Outgoing, StatusReporter, power_event, push_event};
use embedded_hal::digital::InputPin;
use gridwatch_protocol::{Door, EventKind, LiftStatus, Motion, Power, ServiceMode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiftConfig {
    pub sample_period_ms: u32,
    pub heartbeat_ms: u32,
    /// A contact must hold a new level this long to count (debounce).
    pub contact_settle_ms: u32,
    /// Motion is measured over this window ...
    pub motion_window_ms: u32,
    /// ... and the car counts as moving above this speed.
    pub motion_threshold_mm_s: u32,
    /// A stop outside the door zone is reported after this long.
    pub stopped_outside_zone_ms: u32,
    /// The position sensor must fail (or recover) this long before a fault event.
    pub fault_settle_ms: u32,
    /// Fault code reported while the position sensor fails (codes are a site table).
    pub position_fault_code: u16,
    /// Fault code reported while the safety circuit is open (see [`LiftNode::with_safety_circuit`]).
    pub safety_circuit_fault_code: u16,
    pub landings: LandingTable,
}

impl LiftConfig {
    /// Defaults: sample every 100 ms, heartbeat 10 s, debounce 200 ms, motion over
    /// 500 ms above 100 mm/s, stop outside the door zone reported after 5 s.
    pub fn new(landings: LandingTable) -> Self {
        Self {
            sample_period_ms: 100,
            heartbeat_ms: 10_000,
            contact_settle_ms: 200,
            motion_window_ms: 500,
            motion_threshold_mm_s: 100,
            stopped_outside_zone_ms: 5_000,
            fault_settle_ms: 1_000,
            position_fault_code: 901,
            safety_circuit_fault_code: 1,
            landings,
        }
    }
}

/// The car's digital inputs. One pin type for all, as HALs and simulators provide.
pub struct LiftInputs<P> {
    pub door_closed: Contact<P>,
    /// Levelling sensor: the car is in a landing's door (unlocking) zone.
    pub door_zone: Contact<P>,
    /// Presence sensor in the car.
    pub occupied: Contact<P>,
    pub alarm: Contact<P>,
    /// Mains present (else the node runs on its backup supply).
    pub mains: Contact<P>,
    /// Controller's inspection switch (car top or machine room).
    pub inspection: Contact<P>,
}

/// Wear counters since installation; restored after a reset from the last stored status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WearCounters {
    pub runs: u32,
    pub door_cycles: u32,
}

impl From<&LiftStatus> for WearCounters {
    fn from(status: &LiftStatus) -> Self {
        Self {
            runs: status.runs,
            door_cycles: status.door_cycles,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Contacts {
    door_closed: Debounced<bool>,
    door_zone: Debounced<bool>,
    occupied: Debounced<bool>,
    alarm: Debounced<bool>,
    mains: Debounced<bool>,
    inspection: Debounced<bool>,
}

pub struct LiftNode<P, S> {
    config: LiftConfig,
    inputs: LiftInputs<P>,
    position: S,
    contacts: Contacts,
    motion: Debounced<Motion>,
    estimator: MotionEstimator,
    position_ok: Debounced<bool>,
    /// Optional safety-circuit monitor input (active = circuit closed) and its debounced state.
    safety: Option<Contact<P>>,
    safety_ok: Debounced<bool>,
    floor: i16,
    commanded_mode: ServiceMode,
    counters: WearCounters,
    sampling: Periodic,
    reporter: StatusReporter<LiftStatus>,
    door_open_while_running: bool,
    stopped_outside_since_ms: Option<u64>,
    stopped_outside_reported: bool,
    started: bool,
}

impl<P: InputPin, S: PositionSensor> LiftNode<P, S> {
    pub fn new(config: LiftConfig, inputs: LiftInputs<P>, position: S) -> Self {
        let settle = config.contact_settle_ms;
        let contact = Debounced::new(false, settle);
        Self {
            contacts: Contacts {
                door_closed: contact,
                door_zone: contact,
                occupied: contact,
                alarm: contact,
                mains: contact,
                inspection: contact,
            },
            motion: Debounced::new(Motion::Stopped, config.motion_window_ms),
            estimator: MotionEstimator::new(config.motion_window_ms, config.motion_threshold_mm_s),
            position_ok: Debounced::new(true, config.fault_settle_ms),
            safety: None,
            safety_ok: Debounced::new(true, settle),
            floor: config.landings.nearest_floor(0),
            commanded_mode: ServiceMode::Normal,
            counters: WearCounters::default(),
            sampling: Periodic::new(config.sample_period_ms),
            reporter: StatusReporter::new(config.heartbeat_ms),
            door_open_while_running: false,
            stopped_outside_since_ms: None,
            stopped_outside_reported: false,
            started: false,
            config,
            inputs,
            position,
        }
    }

    /// Adds a safety-circuit monitor input (a voltage-sense contact across the safety
    /// chain, active while the circuit is closed). While it is open the status reports
    /// `safety_circuit_fault_code`, with `FaultRaised` / `FaultCleared` events, in every mode.
    pub fn with_safety_circuit(mut self, closed: Contact<P>) -> Self {
        self.safety = Some(closed);
        self
    }

    /// Continues the wear counters from before a reset.
    pub fn resume_counters(&mut self, counters: WearCounters) {
        self.counters = counters;
    }

    /// Mode set by the maintenance firm or the platform (e.g. `OutOfService`, `Fire`);
    /// the inspection switch overrides it while active.
    pub fn set_service_mode(&mut self, mode: ServiceMode) {
        self.commanded_mode = mode;
    }

    /// The status as of the last sample.
    pub fn status(&self) -> LiftStatus {
        let c = &self.contacts;
        LiftStatus {
            mode: self.mode(),
            motion: self.motion.value(),
            door: if c.door_closed.value() {
                Door::Closed
            } else {
                Door::Open
            },
            door_zone: c.door_zone.value(),
            floor: self.floor,
            occupied: c.occupied.value(),
            alarm: c.alarm.value(),
            fault: if !self.safety_ok.value() {
                self.config.safety_circuit_fault_code
            } else if self.position_ok.value() {
                0
            } else {
                self.config.position_fault_code
            },
            power: if c.mains.value() { Power::Mains } else { Power::Battery },
            runs: self.counters.runs,
            door_cycles: self.counters.door_cycles,
        }
    }

    /// Gives the inputs and the position sensor back (tests check their mocks).
    pub fn release(self) -> (LiftInputs<P>, S) {
        (self.inputs, self.position)
    }

    fn mode(&self) -> ServiceMode {
        if self.contacts.inspection.value() {
            ServiceMode::Inspection
        } else {
            self.commanded_mode
        }
    }

    fn sample(&mut self, now_ms: u64, out: &mut Outgoing) {
        let i = &mut self.inputs;
        let raw = [
            i.door_closed.is_active(),
            i.door_zone.is_active(),
            i.occupied.is_active(),
            i.alarm.is_active(),
            i.mains.is_active(),
            i.inspection.is_active(),
        ];
        let height = self.position.read_height_mm().ok();
        let safety_closed = self.safety.as_mut().map(|c| c.is_active());
        let c = &mut self.contacts;
        let contacts = [
            &mut c.door_closed,
            &mut c.door_zone,
            &mut c.occupied,
            &mut c.alarm,
            &mut c.mains,
            &mut c.inspection,
        ];
        let mut changes = [None; 6];
        for ((contact, level), change) in contacts.into_iter().zip(raw).zip(&mut changes) {
            if self.started {
                *change = contact.update(level, now_ms);
            } else {
                contact.reset(level, now_ms);
            }
        }
        if !self.started {
            self.started = true;
            if let Some(height) = height {
                self.floor = self.config.landings.nearest_floor(height);
                self.estimator.update(height, now_ms);
            }
            return;
        }
        let [door_closed, _, _, alarm, mains, _] = changes;

        let was_moving = self.motion.value() != Motion::Stopped;
        match height {
            Some(height) => {
                self.floor = self.config.landings.nearest_floor(height);
                self.motion.update(self.estimator.update(height, now_ms), now_ms);
            }
            // Without a position the car's motion is unknown: keep the last value.
            None => self.estimator.restart(),
        }
        let code = self.config.safety_circuit_fault_code;
        match safety_closed.and_then(|closed| self.safety_ok.update(closed, now_ms)) {
            Some(false) => push_event(out, EventKind::FaultRaised, code),
            Some(true) => push_event(out, EventKind::FaultCleared, code),
            None => {}
        }
        match self.position_ok.update(height.is_some(), now_ms) {
            Some(false) => push_event(out, EventKind::FaultRaised, self.config.position_fault_code),
            Some(true) => push_event(out, EventKind::FaultCleared, self.config.position_fault_code),
            None => {}
        }

        // Wear counts in every mode.
        let moving = self.motion.value() != Motion::Stopped;
        if moving && !was_moving {
            self.counters.runs = self.counters.runs.wrapping_add(1);
        }
        if door_closed == Some(true) {
            self.counters.door_cycles = self.counters.door_cycles.wrapping_add(1);
        }

        if self.mode() != ServiceMode::Normal {
            self.door_open_while_running = false;
            self.stopped_outside_since_ms = None;
            self.stopped_outside_reported = false;
            return;
        }
        if alarm == Some(true) {
            push_event(out, EventKind::AlarmButton, 0);
        }
        if let Some(mains_on) = mains {
            push_event(out, power_event(mains_on), 0);
        }
        let door_open_while_running = moving && !self.contacts.door_closed.value();
        if door_open_while_running && !self.door_open_while_running {
            push_event(out, EventKind::DoorOpenWhileRunning, 0);
        }
        self.door_open_while_running = door_open_while_running;
        self.check_stopped_outside_zone(!moving && !self.contacts.door_zone.value(), now_ms, out);
    }

    fn check_stopped_outside_zone(&mut self, stopped_outside: bool, now_ms: u64, out: &mut Outgoing) {
        if !stopped_outside {
            self.stopped_outside_since_ms = None;
            self.stopped_outside_reported = false;
            return;
        }
        let since_ms = *self.stopped_outside_since_ms.get_or_insert(now_ms);
        let long_enough = now_ms - since_ms >= u64::from(self.config.stopped_outside_zone_ms);
        if long_enough && !self.stopped_outside_reported {
            self.stopped_outside_reported = true;
            push_event(out, EventKind::StoppedOutsideDoorZone, 0);
        }
    }
}

impl<P: InputPin, S: PositionSensor> Node for LiftNode<P, S> {
    fn poll(&mut self, now_ms: u64) -> Outgoing {
        let mut out = Outgoing::new();
        if !self.sampling.due(now_ms) {
            return out;
        }
        let mut events = Outgoing::new();
        self.sample(now_ms, &mut events);
        let status = self.status();
        if self.reporter.should_send(&status, now_ms, |last, new| last != new) {
            let _ = out.push(NodeMessage::Lift(status));
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
