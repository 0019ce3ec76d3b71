//! The sterilizer node on virtual time: cycle recognition (completed, aborted,
//! under-temperature), sensor faults, and status with a temperature dead band.
mod common;

use common::*;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as SpiTx};
use gridwatch_firmware::cycle::CyclePhase;
use gridwatch_firmware::input::Contact;
use gridwatch_firmware::record::{NodeMessage, Record};
use gridwatch_firmware::report::Node;
use gridwatch_firmware::sterilizer::{SterilizerConfig, SterilizerInputs, SterilizerNode};
use gridwatch_firmware::thermocouple::{Max31855, ThermocoupleFault};
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{
    CycleOutcome, CycleReport, DeviceId, Door, Envelope, EventKind, MAX_MESSAGE_BYTES, Method, NodeEvent,
    SterilizerStatus,
};
use std::cell::Cell;
use std::rc::Rc;

const MINUTE: u64 = 60_000;

struct Cabinet {
    door_closed: Level,
    power: Level,
    heater: Level,
    temp: Rc<Cell<Result<f32, ThermocoupleFault>>>,
    node: SterilizerNode<Level, Thermometer>,
    now: u64,
}

impl Cabinet {
    /// An infrared cabinet (120 °C for 10 min), cold, door closed, powered, heater off.
    fn new() -> Self {
        let (door_closed, power, heater) = (Level::default(), Level::default(), Level::default());
        let temp = Rc::new(Cell::new(Ok(25.0)));
        let inputs = SterilizerInputs {
            door_closed: Contact::active_high(door_closed.clone()),
            power: Contact::active_high(power.clone()),
            heater: Contact::active_high(heater.clone()),
        };
        let node = SterilizerNode::new(
            SterilizerConfig::new(Method::Infrared),
            inputs,
            Thermometer(temp.clone()),
        );
        door_closed.set(true);
        power.set(true);
        Self {
            door_closed,
            power,
            heater,
            temp,
            node,
            now: T0,
        }
    }

    /// Polls every second for `ms`; `world` sets the inputs before each poll.
    fn run(&mut self, ms: u64, mut world: impl FnMut(&Self, u64)) -> Vec<NodeMessage> {
        let (start, end) = (self.now, self.now + ms);
        let mut out = Vec::new();
        while self.now < end {
            world(self, self.now - start);
            out.extend(self.node.poll(self.now));
            self.now += 1_000;
        }
        out.iter().for_each(check_wire_form);
        out
    }

    fn idle(&mut self, ms: u64) -> Vec<NodeMessage> {
        self.run(ms, |_, _| {})
    }

    /// Heats 25 → `peak` °C in 5 min, holds with the thermostat cycling, then switches
    /// the heater off and cools.
    fn program(&mut self, peak: f32, hold_ms: u64) -> Vec<NodeMessage> {
        let ramp = 5 * MINUTE;
        self.run(ramp + hold_ms + 3 * MINUTE, |c, t| {
            let (temp, heater) = if t < ramp {
                (25.0 + (peak - 25.0) * t as f32 / ramp as f32, true)
            } else if t < ramp + hold_ms {
                (peak, (t / 30_000) % 2 == 0)
            } else {
                (peak - (t - ramp - hold_ms) as f32 / 1_000.0, false)
            };
            c.temp.set(Ok(temp));
            c.heater.set(heater);
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
        .encode_envelope(&DeviceId::try_from("S-0001").unwrap(), &mut buf)
        .unwrap();
    let bytes = &buf[..len];
    match message {
        NodeMessage::Sterilizer(_) => {
            drop(json::decode::<Envelope<SterilizerStatus>>(bytes, MAX_MESSAGE_BYTES).unwrap())
        }
        NodeMessage::Cycle(_) => drop(json::decode::<Envelope<CycleReport>>(bytes, MAX_MESSAGE_BYTES).unwrap()),
        NodeMessage::Event(_) => drop(json::decode::<Envelope<NodeEvent>>(bytes, MAX_MESSAGE_BYTES).unwrap()),
        other => panic!("a sterilizer node sent {other:?}"),
    }
}

fn cycles(out: &[NodeMessage]) -> Vec<CycleReport> {
    out.iter()
        .filter_map(|m| if let NodeMessage::Cycle(c) = m { Some(*c) } else { None })
        .collect()
}

fn statuses(out: &[NodeMessage]) -> Vec<SterilizerStatus> {
    out.iter()
        .filter_map(|m| {
            if let NodeMessage::Sterilizer(s) = m {
                Some(*s)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn a_full_program_completes_with_its_hold_time_and_peak() {
    let mut cab = Cabinet::new();
    cab.idle(10_000);
    let started = cab.now + 1_000; // the heater contact settles after one more sample
    let out = cab.program(125.0, 11 * MINUTE);
    let [report] = cycles(&out)[..] else {
        panic!("{:?}", cycles(&out))
    };
    assert_eq!(report.outcome, CycleOutcome::Completed);
    assert_eq!(report.started, started);
    assert_eq!(report.peak_c, Some(125.0));
    // At or above 120 °C from ~4.7 min into the ramp until ~5 s into the cool-down.
    assert!((670..=700).contains(&report.hold_s), "hold {} s", report.hold_s);
    assert!(statuses(&out).iter().any(|s| s.in_cycle));
    assert!(!statuses(&out).last().unwrap().in_cycle);
    assert_eq!(cab.node.cycle_phase(), CyclePhase::Idle);
}

#[test]
fn opening_the_door_before_the_hold_time_aborts_the_cycle() {
    let mut cab = Cabinet::new();
    cab.idle(5_000);
    cab.run(9 * MINUTE, |c, t| {
        c.heater.set(true);
        c.temp.set(Ok((25.0 + t as f32 / 1_000.0).min(125.0)));
    });
    assert_eq!(cab.node.cycle_phase(), CyclePhase::Holding);
    cab.door_closed.set(false);
    let out = cab.idle(5_000);
    let [report] = cycles(&out)[..] else { panic!("{out:?}") };
    assert_eq!(report.outcome, CycleOutcome::Aborted);
    assert!((440..=450).contains(&report.hold_s), "hold {} s", report.hold_s);
    assert_eq!(statuses(&out).last().unwrap().door, Door::Open);
}

#[test]
fn power_loss_aborts_and_is_an_event() {
    let mut cab = Cabinet::new();
    cab.idle(5_000);
    cab.heater.set(true);
    cab.temp.set(Ok(90.0));
    cab.idle(MINUTE);
    cab.power.set(false);
    cab.heater.set(false);
    let out = cab.idle(5_000);
    assert_eq!(cycles(&out)[0].outcome, CycleOutcome::Aborted);
    assert!(out.contains(&NodeMessage::Event(NodeEvent {
        event: EventKind::PowerLost,
        code: 0
    })));
    assert!(!statuses(&out).last().unwrap().power);
}

#[test]
fn an_under_temperature_program_completes_with_no_hold_time() {
    let mut cab = Cabinet::new();
    cab.idle(5_000);
    let out = cab.program(110.0, 15 * MINUTE);
    let [report] = cycles(&out)[..] else { panic!("{out:?}") };
    assert_eq!(
        (report.outcome, report.hold_s, report.peak_c),
        (CycleOutcome::Completed, 0, Some(110.0))
    );
}

#[test]
fn a_program_run_with_a_broken_thermocouple_reports_no_peak_and_the_fault() {
    let mut cab = Cabinet::new();
    cab.idle(5_000);
    cab.temp.set(Err(ThermocoupleFault::OpenCircuit));
    // The whole program with no valid reading: the heater runs, the node sees nothing.
    let out = cab.run(20 * MINUTE, |c, t| c.heater.set(t < 15 * MINUTE));
    assert!(out.contains(&NodeMessage::Event(NodeEvent {
        event: EventKind::FaultRaised,
        code: 801
    })));
    let [report] = cycles(&out)[..] else { panic!("{out:?}") };
    assert_eq!(
        (report.outcome, report.hold_s, report.peak_c),
        (CycleOutcome::Completed, 0, None),
        "no invented -40 °C peak"
    );
    let fault_at = out.iter().position(|m| matches!(m, NodeMessage::Event(_))).unwrap();
    let cycle_at = out.iter().position(|m| matches!(m, NodeMessage::Cycle(_))).unwrap();
    assert!(fault_at < cycle_at, "the fault that explains the cycle comes first");
}

#[test]
fn a_thermocouple_fault_is_raised_after_it_persists_and_cleared_after_recovery() {
    let mut cab = Cabinet::new();
    cab.idle(5_000);
    cab.temp.set(Err(ThermocoupleFault::OpenCircuit));
    let out = cab.idle(10_000);
    let events: Vec<_> = out.iter().filter(|m| matches!(m, NodeMessage::Event(_))).collect();
    assert_eq!(
        events,
        [&NodeMessage::Event(NodeEvent {
            event: EventKind::FaultRaised,
            code: 801
        })]
    );
    assert_eq!(statuses(&out)[0].temp_c, 25.0, "the last good temperature is kept");
    cab.temp.set(Ok(26.0));
    let out = cab.idle(10_000);
    assert!(out.contains(&NodeMessage::Event(NodeEvent {
        event: EventKind::FaultCleared,
        code: 801
    })));
}

#[test]
fn small_temperature_changes_wait_for_the_heartbeat() {
    let mut cab = Cabinet::new();
    assert_eq!(statuses(&cab.idle(1_000)).len(), 1);
    cab.temp.set(Ok(25.6));
    assert!(statuses(&cab.idle(5_000)).is_empty());
    cab.temp.set(Ok(26.0));
    let s = statuses(&cab.idle(1_000));
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].temp_c, 26.0);
    assert_eq!(statuses(&cab.idle(10_000)).len(), 1, "then the 10 s heartbeat");
}

#[test]
fn drives_the_max31855_driver_through_embedded_hal_mocks() {
    let pin = |level: State| PinMock::new(&[PinTx::get(level), PinTx::get(level)]);
    let inputs = SterilizerInputs {
        door_closed: Contact::active_low(pin(State::Low)),
        power: Contact::active_high(pin(State::High)),
        heater: Contact::active_high(pin(State::High)),
    };
    let frame = |quarters: u32| vec![(quarters >> 6) as u8, (quarters << 2) as u8, 0x19, 0x00];
    let spi = SpiMock::new(&[
        SpiTx::transaction_start(),
        SpiTx::read_vec(frame(486)), // 121.5 °C
        SpiTx::transaction_end(),
        SpiTx::transaction_start(),
        SpiTx::read_vec(vec![0x00, 0x01, 0x19, 0x01]), // fault bit 16 + OC bit 0: open circuit
        SpiTx::transaction_end(),
    ]);
    let mut config = SterilizerConfig::new(Method::Infrared);
    config.fault_settle_ms = 0;
    let mut node = SterilizerNode::new(config, inputs, Max31855::new(spi));
    let first = node.poll(T0);
    let NodeMessage::Sterilizer(status) = first[0] else {
        panic!("{first:?}")
    };
    assert_eq!(
        (status.temp_c, status.door, status.heating, status.power),
        (121.5, Door::Closed, true, true)
    );
    let second = node.poll(T0 + 1_000);
    assert!(second.contains(&NodeMessage::Event(NodeEvent {
        event: EventKind::FaultRaised,
        code: 801
    })));
    let (inputs, sensor) = node.release();
    for contact in [inputs.door_closed, inputs.power, inputs.heater] {
        contact.release().done();
    }
    sensor.release().done();
}

#[test]
fn a_sensor_broken_at_boot_is_reported() {
    let mut cab = Cabinet::new();
    cab.temp.set(Err(ThermocoupleFault::NoResponse));
    let out = cab.idle(5_000);
    assert!(out.contains(&NodeMessage::Event(NodeEvent {
        event: EventKind::FaultRaised,
        code: 804
    })));
}
