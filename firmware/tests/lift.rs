//! The elevator node on virtual time: debouncing, status on change and heartbeat,
//! edge events, and service modes that silence maintenance work.
mod common;

use common::*;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cTx};
use gridwatch_firmware::input::Contact;
use gridwatch_firmware::lift::{LiftConfig, LiftInputs, LiftNode, WearCounters};
use gridwatch_firmware::position::LandingTable;
use gridwatch_firmware::rangefinder::{DEFAULT_ADDRESS, TfLuna};
use gridwatch_firmware::record::{NodeMessage, Record};
use gridwatch_firmware::report::Node;
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{
    DeviceId, Door, Envelope, EventKind, LiftStatus, MAX_MESSAGE_BYTES, Motion, NodeEvent, Power, ServiceMode,
};

const FLOOR_MM: u32 = 3_000;

struct Car {
    door_closed: Level,
    door_zone: Level,
    occupied: Level,
    alarm: Level,
    mains: Level,
    inspection: Level,
    height: Height,
    node: LiftNode<Level, Height>,
    now: u64,
}

impl Car {
    /// Parked at floor 1 (of B1..10), doors closed, in the door zone, on mains.
    fn new() -> Self {
        let levels: [Level; 6] = Default::default();
        let [door_closed, door_zone, occupied, alarm, mains, inspection] = levels;
        let height = Height::default();
        let inputs = LiftInputs {
            door_closed: Contact::active_high(door_closed.clone()),
            door_zone: Contact::active_high(door_zone.clone()),
            occupied: Contact::active_high(occupied.clone()),
            alarm: Contact::active_high(alarm.clone()),
            mains: Contact::active_high(mains.clone()),
            inspection: Contact::active_high(inspection.clone()),
        };
        let config = LiftConfig::new(LandingTable::uniform(-1, 12, FLOOR_MM).unwrap());
        let node = LiftNode::new(config, inputs, height.clone());
        let car = Self {
            door_closed,
            door_zone,
            occupied,
            alarm,
            mains,
            inspection,
            height,
            node,
            now: T0,
        };
        car.door_closed.set(true);
        car.door_zone.set(true);
        car.mains.set(true);
        car.height.0.set(Some(2 * FLOOR_MM));
        car
    }

    /// Polls every 100 ms for `ms`, letting `world` move the inputs first.
    fn run(&mut self, ms: u64, mut world: impl FnMut(&Self, u64)) -> Vec<NodeMessage> {
        let end = self.now + ms;
        let mut out = Vec::new();
        while self.now < end {
            world(self, self.now);
            out.extend(self.node.poll(self.now));
            self.now += 100;
        }
        out.iter().for_each(check_wire_form);
        out
    }

    fn idle(&mut self, ms: u64) -> Vec<NodeMessage> {
        self.run(ms, |_, _| {})
    }

    /// Moves the car at 1 m/s to `to_mm`, door zone off between landings.
    fn travel(&mut self, to_mm: u32) -> Vec<NodeMessage> {
        let from_mm = self.height.0.get().unwrap();
        let start = self.now;
        let duration = u64::from(from_mm.abs_diff(to_mm));
        self.run(duration + 2_000, |car, now| {
            let t = (now - start).min(duration) as u32;
            let h = if to_mm > from_mm { from_mm + t } else { from_mm - t };
            car.height.0.set(Some(h));
            car.door_zone.set(h % FLOOR_MM < 50 || h % FLOOR_MM > FLOOR_MM - 50);
        })
    }
}

fn check_wire_form(message: &NodeMessage) {
    let record = Record {
        seq: 1,
        ts: T0,
        message: message.clone(),
    };
    let mut buf = [0u8; MAX_MESSAGE_BYTES];
    let len = record
        .encode_envelope(&DeviceId::try_from("L-0001").unwrap(), &mut buf)
        .unwrap();
    match message {
        NodeMessage::Lift(_) => drop(json::decode::<Envelope<LiftStatus>>(&buf[..len], MAX_MESSAGE_BYTES).unwrap()),
        NodeMessage::Event(_) => drop(json::decode::<Envelope<NodeEvent>>(&buf[..len], MAX_MESSAGE_BYTES).unwrap()),
        other => panic!("a lift node sent {other:?}"),
    }
}

fn statuses(out: &[NodeMessage]) -> Vec<LiftStatus> {
    out.iter()
        .filter_map(|m| if let NodeMessage::Lift(s) = m { Some(*s) } else { None })
        .collect()
}

fn events(out: &[NodeMessage]) -> Vec<EventKind> {
    out.iter()
        .filter_map(|m| {
            if let NodeMessage::Event(e) = m {
                Some(e.event)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn reports_once_at_start_then_only_heartbeats_while_nothing_changes() {
    let mut car = Car::new();
    let out = car.idle(25_000);
    let s = statuses(&out);
    assert_eq!(s.len(), 3, "start, +10 s, +20 s");
    assert_eq!(s[0], LiftStatus::at_rest(1));
    assert!(events(&out).is_empty());
    assert_eq!(car.node.next_poll_ms(), car.now);
    car.occupied.set(true);
    assert!(statuses(&car.idle(1_000))[0].occupied, "a passenger is a change");
}

#[test]
fn contact_bounces_are_ignored_and_a_real_door_cycle_is_counted() {
    let mut car = Car::new();
    car.idle(1_000);
    let out = car.run(1_000, |car, now| car.door_closed.set(now % 200 != 0));
    assert!(statuses(&out).is_empty(), "a bouncing contact changes nothing");
    car.door_closed.set(false);
    let out = car.idle(1_000);
    assert_eq!(statuses(&out).last().unwrap().door, Door::Open);
    car.door_closed.set(true);
    let out = car.idle(1_000);
    let closed = statuses(&out)[0];
    assert_eq!((closed.door, closed.door_cycles), (Door::Closed, 1));
}

#[test]
fn a_trip_reports_motion_floor_and_counts_one_run() {
    let mut car = Car::new();
    car.idle(1_000);
    let out = car.travel(7 * FLOOR_MM);
    let s = statuses(&out);
    assert!(s.iter().any(|s| s.motion == Motion::Up && !s.door_zone));
    let last = s.last().unwrap();
    assert_eq!(
        (last.motion, last.floor, last.door_zone, last.runs),
        (Motion::Stopped, 6, true, 1)
    );
    assert!(events(&out).is_empty(), "a normal trip raises no event");
    let out = car.travel(0);
    let last = *statuses(&out).last().unwrap();
    assert_eq!((last.floor, last.runs), (-1, 2));
}

#[test]
fn door_open_while_running_is_raised_once_in_normal_service_only() {
    let mut car = Car::new();
    car.idle(1_000);
    car.door_closed.set(false);
    car.idle(500);
    let out = car.travel(3 * FLOOR_MM);
    assert_eq!(events(&out), [EventKind::DoorOpenWhileRunning]);

    car.inspection.set(true);
    car.idle(1_000);
    let out = car.travel(FLOOR_MM);
    assert!(
        events(&out).is_empty(),
        "inspection travel with doors open is maintenance work"
    );
    assert!(statuses(&out).iter().all(|s| s.mode == ServiceMode::Inspection));
}

#[test]
fn stopping_outside_the_door_zone_is_reported_after_the_configured_time() {
    let mut car = Car::new();
    car.idle(1_000);
    car.travel(2 * FLOOR_MM + 1_500); // stops half-way between floors
    let out = car.idle(10_000);
    assert_eq!(events(&out), [EventKind::StoppedOutsideDoorZone]);

    let mut car = Car::new();
    car.node.set_service_mode(ServiceMode::OutOfService);
    car.idle(1_000);
    car.travel(2 * FLOOR_MM + 1_500);
    let out = car.idle(10_000);
    assert!(events(&out).is_empty());
    assert_eq!(statuses(&out)[0].mode, ServiceMode::OutOfService);
}

#[test]
fn alarm_button_and_power_loss_are_events_but_not_during_maintenance() {
    let mut car = Car::new();
    car.idle(1_000);
    car.alarm.set(true);
    car.mains.set(false);
    let out = car.idle(1_000);
    assert_eq!(events(&out), [EventKind::AlarmButton, EventKind::PowerLost]);
    let s = statuses(&out)[0];
    assert!(s.alarm && s.power == Power::Battery);
    car.mains.set(true);
    assert_eq!(events(&car.idle(1_000)), [EventKind::PowerRestored]);

    car.inspection.set(true);
    car.idle(1_000);
    car.alarm.set(false);
    car.idle(1_000);
    car.alarm.set(true);
    car.mains.set(false);
    assert!(events(&car.idle(1_000)).is_empty());
}

#[test]
fn a_failing_position_sensor_raises_and_clears_a_fault() {
    let mut car = Car::new();
    car.idle(1_000);
    car.height.0.set(None);
    let out = car.idle(500);
    assert!(events(&out).is_empty(), "a short dropout is not a fault yet");
    let out = car.idle(1_000);
    assert_eq!(out.iter().filter(|m| matches!(m, NodeMessage::Event(_))).count(), 1);
    assert!(out.contains(&NodeMessage::Event(NodeEvent {
        event: EventKind::FaultRaised,
        code: 901
    })));
    assert_eq!(statuses(&out).last().unwrap().fault, 901);
    car.height.0.set(Some(2 * FLOOR_MM));
    let out = car.idle(2_000);
    assert!(out.contains(&NodeMessage::Event(NodeEvent {
        event: EventKind::FaultCleared,
        code: 901
    })));
    assert_eq!(statuses(&out).last().unwrap().fault, 0);
}

#[test]
fn an_open_safety_circuit_is_a_fault_in_every_mode() {
    let safety = Level::default();
    safety.set(true);
    let mut car = Car::new();
    let placeholder = Car::new().node;
    car.node = std::mem::replace(&mut car.node, placeholder).with_safety_circuit(Contact::active_high(safety.clone()));
    car.idle(1_000);
    safety.set(false);
    let out = car.idle(1_000);
    assert_eq!(events(&out), [EventKind::FaultRaised]);
    assert!(out.contains(&NodeMessage::Event(NodeEvent {
        event: EventKind::FaultRaised,
        code: 1
    })));
    assert_eq!(statuses(&out).last().unwrap().fault, 1);
    car.inspection.set(true);
    safety.set(true);
    let out = car.idle(1_000);
    assert!(out.contains(&NodeMessage::Event(NodeEvent {
        event: EventKind::FaultCleared,
        code: 1
    })));
    assert_eq!(statuses(&out).last().unwrap().fault, 0);
}

#[test]
fn wear_counters_continue_after_a_reset() {
    let mut car = Car::new();
    car.node.resume_counters(WearCounters {
        runs: 41,
        door_cycles: 7,
    });
    car.idle(1_000);
    let out = car.travel(4 * FLOOR_MM);
    assert_eq!(statuses(&out).last().unwrap().runs, 42);
}

#[test]
fn drives_real_drivers_through_embedded_hal_mocks() {
    // Two samples: every contact is read twice, the rangefinder once per sample.
    let pin = |first: State, second: State| PinMock::new(&[PinTx::get(first), PinTx::get(second)]);
    let inputs = LiftInputs {
        door_closed: Contact::active_low(pin(State::Low, State::Low)),
        door_zone: Contact::active_low(pin(State::Low, State::Low)),
        occupied: Contact::active_high(pin(State::High, State::High)),
        alarm: Contact::active_low(pin(State::High, State::Low)),
        mains: Contact::active_high(pin(State::High, State::High)),
        inspection: Contact::active_high(pin(State::Low, State::Low)),
    };
    // 912 cm from a sensor 20 cm below the lowest sill: 9.32 m, floor 3 of 0..9 at 3.1 m.
    let frame = vec![0x90, 0x03, 0xE8, 0x03, 0x00, 0x10];
    let i2c = I2cMock::new(&[
        I2cTx::write_read(DEFAULT_ADDRESS, vec![0x00], frame.clone()),
        I2cTx::write_read(DEFAULT_ADDRESS, vec![0x00], frame),
    ]);
    let mut config = LiftConfig::new(LandingTable::uniform(0, 10, 3_100).unwrap());
    config.contact_settle_ms = 0;
    let mut node = LiftNode::new(config, inputs, TfLuna::new(i2c, DEFAULT_ADDRESS, 200));
    let first = node.poll(T0);
    let NodeMessage::Lift(status) = first[0] else {
        panic!("{first:?}")
    };
    assert_eq!(
        (status.floor, status.door, status.occupied, status.alarm),
        (3, Door::Closed, true, false)
    );
    let second = node.poll(T0 + 100);
    assert!(second.contains(&NodeMessage::Event(NodeEvent {
        event: EventKind::AlarmButton,
        code: 0
    })));

    let (inputs, sensor) = node.release();
    for contact in [
        inputs.door_closed,
        inputs.door_zone,
        inputs.occupied,
        inputs.alarm,
        inputs.mains,
        inputs.inspection,
    ] {
        contact.release().done();
    }
    sensor.release().done();
}
