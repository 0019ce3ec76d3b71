//! Property tests: redelivery changes nothing, deadline-driven ticks miss nothing, and a
//! saved state resumes exactly.
mod common;

use common::*;
use gridwatch_alerts::*;
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::*;
use proptest::prelude::*;

/// One recorded input to the engine.
#[derive(Debug, Clone)]
enum Input {
    Reading(Reading, Option<&'static str>),
    Tick(u64),
    GatewaySeen(&'static str, u64),
}

const LIFTS: [&str; 3] = ["L1", "L2", "L3"];
const STERILIZER: &str = "S1";

#[derive(Debug, Clone)]
enum Action {
    Lift { dev: usize, status: LiftStatus },
    LiftEvent { dev: usize, event: EventKind, code: u16 },
    Cycle { peak_c: f32, hold_s: u32, aborted: bool },
    SterilizerStatus,
    SterilizerFault { raised: bool, code: u16 },
    Tick,
    GatewaySeen,
}

fn lift_status() -> impl Strategy<Value = LiftStatus> {
    let modes = prop_oneof![
        6 => Just(ServiceMode::Normal),
        1 => Just(ServiceMode::Inspection),
        1 => Just(ServiceMode::Fire),
        1 => Just(ServiceMode::OutOfService),
    ];
    let motion = prop_oneof![3 => Just(Motion::Stopped), 1 => Just(Motion::Up), 1 => Just(Motion::Down)];
    let door = prop_oneof![Just(Door::Closed), Just(Door::Open)];
    let fault = prop_oneof![6 => Just(0u16), 1 => Just(1u16), 1 => Just(7u16), 1 => Just(4711u16)];
    let power = prop_oneof![5 => Just(Power::Mains), 1 => Just(Power::Battery)];
    (
        modes,
        motion,
        door,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.1),
        fault,
        power,
    )
        .prop_map(
            |(mode, motion, door, door_zone, occupied, alarm, fault, power)| LiftStatus {
                mode,
                motion,
                door,
                door_zone,
                floor: 2,
                occupied,
                alarm,
                fault,
                power,
                runs: 0,
                door_cycles: 0,
            },
        )
}

fn action() -> impl Strategy<Value = Action> {
    let events = prop_oneof![
        Just(EventKind::FaultRaised),
        Just(EventKind::FaultCleared),
        Just(EventKind::AlarmButton),
        Just(EventKind::DoorOpenWhileRunning),
        Just(EventKind::StoppedOutsideDoorZone),
        Just(EventKind::PowerLost),
        Just(EventKind::PowerRestored),
    ];
    prop_oneof![
        8 => (0..LIFTS.len(), lift_status()).prop_map(|(dev, status)| Action::Lift { dev, status }),
        2 => (0..LIFTS.len(), events, 0u16..10).prop_map(|(dev, event, code)| Action::LiftEvent { dev, event, code }),
        2 => (80.0f32..130.0, 0u32..900, prop::bool::weighted(0.2))
            .prop_map(|(peak_c, hold_s, aborted)| Action::Cycle { peak_c, hold_s, aborted }),
        1 => Just(Action::SterilizerStatus),
        1 => (any::<bool>(), 801u16..803).prop_map(|(raised, code)| Action::SterilizerFault { raised, code }),
        5 => Just(Action::Tick),
        2 => Just(Action::GatewaySeen),
    ]
}

/// Time steps: mostly seconds to a few minutes, sometimes hours (meal periods, days).
fn step() -> impl Strategy<Value = u64> {
    prop_oneof![
        10 => 0u64..120_000,
        3 => 120_000u64..900_000,
        1 => 3_600_000u64..30_000_000,
    ]
}

/// Turns actions into a clean recorded stream: per device increasing `seq` with gaps,
/// device timestamps that sometimes go back a little.
fn record(plan: &[(u64, Action, u64, u64)]) -> Vec<Input> {
    let mut now = DAY0 + 9 * HOUR;
    let mut seqs = [0u64; 4];
    let mut out = Vec::new();
    for (dt, action, gap, jitter) in plan {
        now += dt;
        let ts = now - jitter;
        let mut next_seq = |dev: usize| {
            seqs[dev] += 1 + gap;
            seqs[dev]
        };
        let via = |dev: usize| if dev == 2 { None } else { Some("GW1") };
        out.push(match action {
            Action::Lift { dev, status } => Input::Reading(lift(LIFTS[*dev], next_seq(*dev), ts, *status), via(*dev)),
            Action::LiftEvent { dev, event: ev, code } => {
                Input::Reading(event(LIFTS[*dev], next_seq(*dev), ts, *ev, *code), via(*dev))
            }
            Action::Cycle {
                peak_c,
                hold_s,
                aborted,
            } => {
                let outcome = if *aborted {
                    CycleOutcome::Aborted
                } else {
                    CycleOutcome::Completed
                };
                Input::Reading(
                    cycle(STERILIZER, next_seq(3), ts, *peak_c, *hold_s, outcome),
                    Some("GW1"),
                )
            }
            Action::SterilizerStatus => Input::Reading(steriliser_status(STERILIZER, next_seq(3), ts), Some("GW1")),
            Action::SterilizerFault { raised, code } => {
                let kind = if *raised {
                    EventKind::FaultRaised
                } else {
                    EventKind::FaultCleared
                };
                Input::Reading(event(STERILIZER, next_seq(3), ts, kind, *code), Some("GW1"))
            }
            Action::Tick => Input::Tick(now),
            Action::GatewaySeen => Input::GatewaySeen("GW1", now),
        });
    }
    out
}

fn new_engine() -> Engine {
    let mut e = Engine::new(AlertConfig::default());
    let profile = DeviceProfile {
        kind: DeviceKind::Lift,
        in_service: true,
        next_inspection_due: Some(Date::constant(2026, 12, 1)),
        last_maintenance: Some(Date::constant(2026, 11, 20)),
        maintenance_interval_days: Some(15),
    };
    e.set_profile("L1", profile, DAY0);
    e
}

fn run(engine: &mut Engine, inputs: &[Input]) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    for input in inputs {
        match input {
            Input::Reading(r, via) => out.extend(engine.apply(r, *via)),
            Input::Tick(t) => out.extend(engine.tick(*t)),
            Input::GatewaySeen(g, t) => engine.gateway_seen(g, *t),
        }
    }
    out
}

fn plan() -> impl Strategy<Value = Vec<(u64, Action, u64, u64)>> {
    let gap = prop_oneof![9 => Just(0u64), 1 => 1u64..5];
    let jitter = prop_oneof![9 => Just(0u64), 1 => 0u64..5_000];
    prop::collection::vec((step(), action(), gap, jitter), 1..120)
}

/// Inserts redeliveries into `clean`: single items re-sent later, and whole prefixes
/// re-sent after a reconnect. Only readings and ticks are redelivered.
fn redeliver(clean: &[Input], singles: &[(usize, usize)], prefixes: &[(usize, usize)]) -> Vec<Input> {
    let n = clean.len();
    let mut after: Vec<Vec<Input>> = vec![Vec::new(); n];
    let repeatable = |i: &Input| !matches!(i, Input::GatewaySeen(..));
    for &(a, b) in singles {
        let (src, at) = (a % n, (a % n).max(b % n));
        if repeatable(&clean[src]) {
            after[at].push(clean[src].clone());
        }
    }
    for &(a, b) in prefixes {
        let (len, at) = (a % n + 1, (a % n).max(b % n));
        after[at].extend(clean[..len].iter().filter(|i| repeatable(i)).cloned());
    }
    clean
        .iter()
        .zip(after)
        .flat_map(|(item, dups)| std::iter::once(item.clone()).chain(dups))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn redelivery_gives_exactly_the_clean_events(
        plan in plan(),
        singles in prop::collection::vec((any::<usize>(), any::<usize>()), 0..40),
        prefixes in prop::collection::vec((any::<usize>(), any::<usize>()), 0..3),
    ) {
        let clean = record(&plan);
        let dirty = redeliver(&clean, &singles, &prefixes);
        let mut a = new_engine();
        let mut b = new_engine();
        let expected = run(&mut a, &clean);
        let got = run(&mut b, &dirty);
        prop_assert_eq!(got, expected);
        prop_assert_eq!(a.state(), b.state());
    }

    #[test]
    fn deadline_driven_ticks_equal_evaluating_every_device(plan in plan()) {
        let clean = record(&plan);
        let mut a = new_engine();
        let mut b = new_engine().evaluate_all_on_tick(true);
        prop_assert_eq!(run(&mut a, &clean), run(&mut b, &clean));
    }

    #[test]
    fn saved_state_resumes_exactly(plan in plan(), cut in any::<usize>()) {
        let clean = record(&plan);
        let cut = cut % (clean.len() + 1);
        let mut a = new_engine();
        let expected = run(&mut a, &clean);
        let mut b = new_engine();
        let mut got = run(&mut b, &clean[..cut]);
        let saved = serde_json::to_string(b.state()).unwrap();
        let mut c = Engine::from_state(AlertConfig::default(), serde_json::from_str(&saved).unwrap());
        got.extend(run(&mut c, &clean[cut..]));
        prop_assert_eq!(got, expected);
    }
}
