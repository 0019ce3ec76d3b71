//! The lift node on the target: its contacts on fake pins, the car's height from the
//! real TF-Luna driver over a fake I2C bus, polled on virtual time as the board's loop
//! does (sleep until `next_poll_ms`).
use crate::fakes::{Pin, Produced, T0, TfLunaBus, VirtualClock, assert_wire_form, events, keep};
use core::cell::Cell;
use gridwatch_firmware::clock::Clock;
use gridwatch_firmware::input::Contact;
use gridwatch_firmware::lift::{LiftConfig, LiftInputs, LiftNode};
use gridwatch_firmware::position::LandingTable;
use gridwatch_firmware::rangefinder::{DEFAULT_ADDRESS, TfLuna};
use gridwatch_firmware::record::NodeMessage;
use gridwatch_firmware::report::Node;
use gridwatch_protocol::{Door, EventKind, LiftStatus, Motion, NodeEvent};

const FLOOR_MM: u32 = 3_000;
/// The rangefinder sits in the pit, this far below the lowest sill.
const SENSOR_BELOW_SILL_MM: u32 = 200;
const GOOD_SIGNAL: u16 = 1_200;
const WEAK_SIGNAL: u16 = 40;

/// The car's world: contacts and what the rangefinder sees.
pub(crate) struct Shaft {
    pub(crate) door_closed: Cell<bool>,
    pub(crate) door_zone: Cell<bool>,
    pub(crate) occupied: Cell<bool>,
    pub(crate) alarm: Cell<bool>,
    pub(crate) mains: Cell<bool>,
    pub(crate) inspection: Cell<bool>,
    pub(crate) distance_cm: Cell<u16>,
    pub(crate) amplitude: Cell<u16>,
    pub(crate) nack: Cell<bool>,
}

pub(crate) type Car<'a> = LiftNode<Pin<'a>, TfLuna<TfLunaBus<'a>>>;

impl Shaft {
    /// Parked at floor 1 of B1..10 (landing 2, 6 m up), doors closed, in the door zone, on mains.
    pub(crate) fn parked() -> Self {
        let shaft = Self {
            door_closed: Cell::new(true),
            door_zone: Cell::new(true),
            occupied: Cell::new(false),
            alarm: Cell::new(false),
            mains: Cell::new(true),
            inspection: Cell::new(false),
            distance_cm: Cell::new(0),
            amplitude: Cell::new(GOOD_SIGNAL),
            nack: Cell::new(false),
        };
        shaft.set_height(2 * FLOOR_MM);
        shaft
    }

    pub(crate) fn set_height(&self, height_mm: u32) {
        self.distance_cm.set(((height_mm + SENSOR_BELOW_SILL_MM) / 10) as u16);
    }

    fn height(&self) -> u32 {
        u32::from(self.distance_cm.get()) * 10 - SENSOR_BELOW_SILL_MM
    }

    /// A lift node wired to this shaft with the default configuration.
    pub(crate) fn node(&self) -> Car<'_> {
        let inputs = LiftInputs {
            door_closed: Contact::active_high(Pin(&self.door_closed)),
            door_zone: Contact::active_high(Pin(&self.door_zone)),
            occupied: Contact::active_high(Pin(&self.occupied)),
            alarm: Contact::active_high(Pin(&self.alarm)),
            mains: Contact::active_high(Pin(&self.mains)),
            inspection: Contact::active_high(Pin(&self.inspection)),
        };
        let bus = TfLunaBus {
            distance_cm: &self.distance_cm,
            amplitude: &self.amplitude,
            nack: &self.nack,
            reads: 0,
        };
        let rangefinder = TfLuna::new(bus, DEFAULT_ADDRESS, -(SENSOR_BELOW_SILL_MM as i32));
        let landings = LandingTable::uniform(-1, 12, FLOOR_MM).expect("a valid landing table");
        LiftNode::new(LiftConfig::new(landings), inputs, rangefinder)
    }
}

/// Polls `car` for `ms` of device time, sleeping until each next sample; `world` moves
/// the shaft first (it gets the time since the start of the stretch).
fn run(car: &mut Car<'_>, clock: &mut VirtualClock, ms: u64, mut world: impl FnMut(u64)) -> Produced {
    let start = clock.now_ms();
    let mut produced = Produced::new();
    while clock.now_ms() < start + ms {
        let now = clock.now_ms();
        world(now - start);
        keep(&mut produced, now, car.poll(now));
        clock.sleep_until(car.next_poll_ms());
    }
    for (_, message) in &produced {
        assert_wire_form("L-0001", message);
    }
    produced
}

fn statuses(produced: &Produced) -> heapless::Vec<LiftStatus, 512> {
    produced
        .iter()
        .filter_map(|(_, m)| match m {
            NodeMessage::Lift(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn event_kinds(produced: &Produced) -> heapless::Vec<EventKind, 16> {
    events(produced).iter().map(|(_, e)| e.event).collect()
}

/// A passenger rides from floor 1, the car stops between floors with the doors closed,
/// and the passenger presses the alarm: the node reports the facts the alert engine
/// turns into a trapped-passenger alert (occupied, stopped outside the door zone after
/// 5 s, alarm button), each once.
pub(crate) fn trapped_passenger_is_reported() {
    let shaft = Shaft::parked();
    let mut car = shaft.node();
    let mut clock = VirtualClock::new(T0);
    let first = statuses(&run(&mut car, &mut clock, 1_000, |_| {}));
    assert_eq!(
        first[..],
        [LiftStatus::at_rest(1)],
        "one status at start, from the rangefinder's floor"
    );

    shaft.occupied.set(true);
    let boarded = statuses(&run(&mut car, &mut clock, 1_000, |_| {}));
    assert!(boarded.last().is_some_and(|s| s.occupied), "{boarded:?}");

    // Up at 1 m/s from 6.0 m; the car stops at 7.2 m, between floors 1 and 2.
    let (from_mm, to_mm) = (2 * FLOOR_MM, 2 * FLOOR_MM + 1_200);
    let trip = run(&mut car, &mut clock, 2_000, |t| {
        let height = from_mm + (t as u32).min(to_mm - from_mm);
        shaft.set_height(height);
        shaft.door_zone.set(height % FLOOR_MM < 50);
    });
    assert!(statuses(&trip).iter().any(|s| s.motion == Motion::Up && !s.door_zone));
    let stopped_at = clock.now_ms() - 800; // the height stopped changing 800 ms ago
    assert_eq!(shaft.height(), to_mm);

    let stuck = run(&mut car, &mut clock, 10_000, |_| {});
    let stuck_events = events(&stuck);
    let [(reported_at, event)] = stuck_events[..] else {
        panic!("expected one event, got {stuck_events:?}")
    };
    assert_eq!(event.event, EventKind::StoppedOutsideDoorZone);
    let after_ms = reported_at - stopped_at;
    // 5 s once the node sees the car stopped, which takes 1-1.5 s here: motion is measured
    // over 500 ms windows and debounced for another 500 ms.
    assert!(
        (6_000..=6_500).contains(&after_ms),
        "reported {after_ms} ms after the stop, configured 5 s"
    );
    let last = *statuses(&stuck).last().expect("a status after the stop");
    assert_eq!(
        (
            last.motion,
            last.door,
            last.door_zone,
            last.occupied,
            last.floor,
            last.runs
        ),
        (Motion::Stopped, Door::Closed, false, true, 1, 1)
    );

    shaft.alarm.set(true);
    let alarm = run(&mut car, &mut clock, 1_000, |_| {});
    assert_eq!(event_kinds(&alarm)[..], [EventKind::AlarmButton]);
    assert!(statuses(&alarm).last().is_some_and(|s| s.alarm && s.occupied));
    let held = run(&mut car, &mut clock, 15_000, |_| {});
    assert!(event_kinds(&held).is_empty(), "a held button is one event");
    assert_eq!(
        statuses(&held).len(),
        1,
        "only the 10 s heartbeat while nothing changes"
    );
}

/// The rangefinder's signal turns weak, then the bus stops answering: after 1 s the
/// node raises fault 901 (once, whatever the cause), and clears it when readings return.
pub(crate) fn rangefinder_fault_raised_and_cleared() {
    let shaft = Shaft::parked();
    let mut car = shaft.node();
    let mut clock = VirtualClock::new(T0);
    run(&mut car, &mut clock, 1_000, |_| {});

    shaft.amplitude.set(WEAK_SIGNAL);
    let dropout = run(&mut car, &mut clock, 500, |_| {});
    assert!(events(&dropout).is_empty(), "a short dropout is not a fault yet");
    let failing = run(&mut car, &mut clock, 1_000, |t| shaft.nack.set(t >= 500));
    let raised = NodeEvent {
        event: EventKind::FaultRaised,
        code: 901,
    };
    assert_eq!(event_kinds(&failing)[..], [EventKind::FaultRaised]);
    assert_eq!(events(&failing)[0].1, raised);
    assert_eq!(statuses(&failing).last().map(|s| s.fault), Some(901));
    assert!(event_kinds(&run(&mut car, &mut clock, 3_000, |_| {})).is_empty());

    shaft.nack.set(false);
    shaft.amplitude.set(GOOD_SIGNAL);
    let recovered = run(&mut car, &mut clock, 2_000, |_| {});
    let cleared = NodeEvent {
        event: EventKind::FaultCleared,
        code: 901,
    };
    assert_eq!(
        events(&recovered)
            .iter()
            .map(|(_, e)| *e)
            .collect::<heapless::Vec<_, 4>>()[..],
        [cleared]
    );
    let last = statuses(&recovered).last().copied().expect("a status after recovery");
    assert_eq!((last.fault, last.floor), (0, 1));

    let (_, rangefinder) = car.release();
    // 75 samples at 100 ms; 35 of them found no chip on the bus.
    assert_eq!(rangefinder.release().reads, 75 - 35);
}
