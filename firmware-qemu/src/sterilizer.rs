//! The sterilizer node on the target: door, power and heater contacts on fake pins,
//! the cabinet temperature from the real MAX31855 driver over a fake SPI device
//! (0.25 °C steps, as the chip reports them), polled on virtual time.
use crate::fakes::{Max31855Chip, Pin, Produced, T0, VirtualClock, assert_wire_form, events, keep, max31855_frame};
use core::cell::Cell;
use gridwatch_firmware::clock::Clock;
use gridwatch_firmware::cycle::CyclePhase;
use gridwatch_firmware::input::Contact;
use gridwatch_firmware::record::NodeMessage;
use gridwatch_firmware::report::Node;
use gridwatch_firmware::sterilizer::{SterilizerConfig, SterilizerInputs, SterilizerNode};
use gridwatch_firmware::thermocouple::Max31855;
use gridwatch_protocol::{CycleOutcome, CycleReport, Door, EventKind, Method, NodeEvent, SterilizerStatus};

const MINUTE: u64 = 60_000;

struct Kitchen {
    door_closed: Cell<bool>,
    power: Cell<bool>,
    heater: Cell<bool>,
    frame: Cell<u32>,
}

type Cabinet<'a> = SterilizerNode<Pin<'a>, Max31855<Max31855Chip<'a>>>;

impl Kitchen {
    /// Cold (25 °C), door closed, powered, heater off.
    fn new() -> Self {
        Self {
            door_closed: Cell::new(true),
            power: Cell::new(true),
            heater: Cell::new(false),
            frame: Cell::new(max31855_frame(25.0)),
        }
    }

    fn set_temp(&self, celsius: f32) {
        self.frame.set(max31855_frame(celsius));
    }

    /// An infrared cabinet (120 °C held for 10 min).
    fn cabinet(&self) -> Cabinet<'_> {
        let inputs = SterilizerInputs {
            door_closed: Contact::active_high(Pin(&self.door_closed)),
            power: Contact::active_high(Pin(&self.power)),
            heater: Contact::active_high(Pin(&self.heater)),
        };
        let sensor = Max31855::new(Max31855Chip { frame: &self.frame });
        SterilizerNode::new(SterilizerConfig::new(Method::Infrared), inputs, sensor)
    }
}

/// Polls for `ms`, sleeping until each next sample; `world` (given the time since the
/// start of the stretch) sets the inputs first.
fn run(cabinet: &mut Cabinet<'_>, clock: &mut VirtualClock, ms: u64, mut world: impl FnMut(u64)) -> Produced {
    let start = clock.now_ms();
    let mut produced = Produced::new();
    while clock.now_ms() < start + ms {
        let now = clock.now_ms();
        world(now - start);
        keep(&mut produced, now, cabinet.poll(now));
        clock.sleep_until(cabinet.next_poll_ms());
    }
    for (_, message) in &produced {
        assert_wire_form("S-0001", message);
    }
    produced
}

fn cycles(produced: &Produced) -> heapless::Vec<CycleReport, 4> {
    produced
        .iter()
        .filter_map(|(_, m)| match m {
            NodeMessage::Cycle(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn statuses(produced: &Produced) -> heapless::Vec<SterilizerStatus, 512> {
    produced
        .iter()
        .filter_map(|(_, m)| match m {
            NodeMessage::Sterilizer(s) => Some(*s),
            _ => None,
        })
        .collect()
}

/// Heats 25 → `peak` °C in 5 min, holds it for `hold_ms` with the thermostat switching
/// the heater every 30 s, then switches off and cools by 1 °C/s.
fn program(
    kitchen: &Kitchen,
    cabinet: &mut Cabinet<'_>,
    clock: &mut VirtualClock,
    peak: f32,
    hold_ms: u64,
) -> Produced {
    let ramp = 5 * MINUTE;
    run(cabinet, clock, ramp + hold_ms + 3 * MINUTE, |t| {
        let (temp, heater) = if t < ramp {
            (25.0 + (peak - 25.0) * t as f32 / ramp as f32, true)
        } else if t < ramp + hold_ms {
            (peak, (t / 30_000) % 2 == 0)
        } else {
            (peak - (t - ramp - hold_ms) as f32 / 1_000.0, false)
        };
        kitchen.set_temp(temp);
        kitchen.heater.set(heater);
    })
}

/// A full infrared program at 125 °C for 11 min: one `Completed` report with the
/// start, the peak and the time at or above 120 °C.
pub(crate) fn good_cycle_completes() {
    let kitchen = Kitchen::new();
    let mut cabinet = kitchen.cabinet();
    let mut clock = VirtualClock::new(T0);
    run(&mut cabinet, &mut clock, 10_000, |_| {});
    let started = clock.now_ms() + 1_000; // the heater contact settles after one more sample
    let produced = program(&kitchen, &mut cabinet, &mut clock, 125.0, 11 * MINUTE);
    let [report] = cycles(&produced)[..] else {
        panic!("expected one cycle, got {:?}", cycles(&produced))
    };
    assert_eq!(report.outcome, CycleOutcome::Completed);
    assert_eq!(report.started, started);
    assert_eq!(report.peak_c, Some(125.0));
    // At or above 120 °C from ~4.8 min into the ramp until ~5 s into the cool-down.
    assert!((670..=700).contains(&report.hold_s), "hold {} s", report.hold_s);
    assert!(statuses(&produced).iter().any(|s| s.in_cycle && s.heating));
    assert!(!statuses(&produced).last().expect("statuses").in_cycle);
    assert_eq!(cabinet.cycle_phase(), CyclePhase::Idle);
    assert!(events(&produced).is_empty());
}

/// The door opens 9 min into a program, before the 10 min hold: `Aborted`, with the
/// hold time it had.
pub(crate) fn door_opened_early_aborts() {
    let kitchen = Kitchen::new();
    let mut cabinet = kitchen.cabinet();
    let mut clock = VirtualClock::new(T0);
    run(&mut cabinet, &mut clock, 5_000, |_| {});
    run(&mut cabinet, &mut clock, 9 * MINUTE, |t| {
        kitchen.heater.set(true);
        kitchen.set_temp((25.0 + t as f32 / 1_000.0).min(125.0));
    });
    assert_eq!(cabinet.cycle_phase(), CyclePhase::Holding);
    kitchen.door_closed.set(false);
    let produced = run(&mut cabinet, &mut clock, 5_000, |_| {});
    let [report] = cycles(&produced)[..] else {
        panic!("expected one cycle, got {produced:?}")
    };
    assert_eq!(report.outcome, CycleOutcome::Aborted);
    // 120 °C reached after 95 s of the 9 min; the door counts once debounced (1 s).
    assert!((440..=450).contains(&report.hold_s), "hold {} s", report.hold_s);
    assert_eq!(statuses(&produced).last().map(|s| s.door), Some(Door::Open));
}

/// The thermocouple opens: after 3 s one `FaultRaised` 801 (the status keeps the last
/// good temperature); when it reads again, `FaultCleared` 801.
pub(crate) fn thermocouple_fault_reported() {
    let kitchen = Kitchen::new();
    let mut cabinet = kitchen.cabinet();
    let mut clock = VirtualClock::new(T0);
    run(&mut cabinet, &mut clock, 5_000, |_| {});
    // Fault bit 16 with OC (bit 0): the datasheet's open-circuit frame.
    kitchen.frame.set((1 << 16) | 1);
    let broken = run(&mut cabinet, &mut clock, 10_000, |_| {});
    let raised = events(&broken);
    let [(raised_at, event)] = raised[..] else {
        panic!("expected one event, got {raised:?}")
    };
    assert_eq!(
        event,
        NodeEvent {
            event: EventKind::FaultRaised,
            code: 801
        }
    );
    assert_eq!(
        raised_at - (clock.now_ms() - 10_000),
        3_000,
        "raised once it persisted 3 s"
    );
    assert!(
        statuses(&broken).iter().all(|s| s.temp_c == 25.0),
        "the last good temperature is kept"
    );

    kitchen.set_temp(26.5);
    let recovered = run(&mut cabinet, &mut clock, 5_000, |_| {});
    let cleared = events(&recovered);
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert_eq!(
        cleared[0].1,
        NodeEvent {
            event: EventKind::FaultCleared,
            code: 801
        }
    );
    assert_eq!(statuses(&recovered).last().map(|s| s.temp_c), Some(26.5));
}
