//! The ordering rule against poisoned input: a reading stamped far in the future, a seq
//! jumping absurdly, a clock corrected backwards, a node that lost its storage. No single
//! reading may freeze a device (docs/alerts.md, "Ordering and idempotence").
mod common;

use common::*;
use gridwatch_alerts::*;
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::{Birth, DeviceKind, Envelope, LiftStatus};

/// 2099-01-01T00:00:00Z.
const Y2099: u64 = 4_070_908_800_000;

fn raised(events: &[AlertEvent], kind: AlertKind) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.key.kind == kind && e.change == Change::Raised)
        .map(|e| e.raised_at)
        .collect()
}

fn enclosed() -> LiftStatus {
    LiftStatus {
        occupied: true,
        ..idle()
    }
}

fn birth(dev: &str, seq: u64, ts: u64, boots: u32) -> Reading {
    let body = Birth {
        device_kind: DeviceKind::Lift,
        fw: "1.0.0".try_into().unwrap(),
        boots,
    };
    Reading::Birth(Envelope::new(id(dev), seq, ts, body))
}

/// Applies `readings` and ticks at each one's time, as ingest does with its clock in step.
fn feed(e: &mut Engine, readings: &[Reading]) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    for r in readings {
        out.extend(e.apply(r, Some("GW1")));
    }
    out
}

#[test]
fn a_reading_stamped_2099_does_not_silence_a_trapped_passenger() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    let mut out = feed(
        &mut e,
        &[
            lift("L1", 1, t0, idle()),
            lift("L1", 2, Y2099, idle()),
            lift("L1", 3, t0 + 10 * S, enclosed()),
        ],
    );
    assert_eq!(e.monitor("L1").unwrap().last_reading, Some(t0 + 10 * S), "re-based");
    assert_eq!(e.monitor("L1").unwrap().anomalies.clock_rebases, 1);
    for t in (t0 + 20 * S..=t0 + 100 * S).step_by(10_000) {
        out.extend(e.tick(t));
    }
    assert_eq!(raised(&out, AlertKind::TrappedPassenger), [t0 + 100 * S]);
    // The gateway's last sign of life is no longer 2099: silence makes it offline.
    let later = e.tick(t0 + 10 * S + 6 * MIN);
    assert_eq!(raised(&later, AlertKind::GatewayOffline), [t0 + 10 * S + 6 * MIN]);
}

#[test]
fn a_seq_of_9e18_is_flagged_and_later_readings_apply() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    feed(&mut e, &[lift("L1", 1, t0, idle())]);
    let stray = lift(
        "L1",
        9_000_000_000_000_000_000,
        t0 + S,
        LiftStatus { fault: 3, ..idle() },
    );
    assert!(e.apply(&stray, Some("GW1")).is_empty(), "not obeyed");
    let m = e.monitor("L1").unwrap();
    assert_eq!((m.last_seq, m.anomalies.seq_jumps), (1, 1), "the bar stays");
    assert_eq!(e.take_anomalies().get("seq_jump"), Some(&1));
    let out = feed(&mut e, &[lift("L1", 2, t0 + 2 * S, LiftStatus { fault: 3, ..idle() })]);
    assert_eq!(raised(&out, AlertKind::Fault(3)), [t0 + 2 * S]);
    assert_eq!(e.monitor("L1").unwrap().last_seq, 2);
}

#[test]
fn a_seq_jump_the_node_could_have_made_applies_and_a_confirmed_one_too() {
    let cfg = AlertConfig::default();
    let mut e = Engine::new(cfg.clone());
    let t0 = DAY0 + 9 * HOUR;
    feed(&mut e, &[lift("L1", 1, t0, idle())]);
    // A week offline at up to 100 readings/s: a jump of 50 million is plausible.
    let back = t0 + 7 * 24 * HOUR;
    assert!(feed(&mut e, &[lift("L1", 50_000_000, back, idle())]).is_empty());
    assert_eq!(e.monitor("L1").unwrap().last_seq, 50_000_000);
    // Beyond the limit: flagged, then confirmed by the reading that continues from it.
    let far = 50_000_000 + cfg.readings.seq_slack + 1_000_000;
    feed(&mut e, &[lift("L1", far, back + S, idle())]);
    assert_eq!(e.monitor("L1").unwrap().last_seq, 50_000_000);
    let out = feed(
        &mut e,
        &[lift("L1", far + 1, back + 2 * S, LiftStatus { fault: 3, ..idle() })],
    );
    assert_eq!(raised(&out, AlertKind::Fault(3)), [back + 2 * S]);
    assert_eq!(e.monitor("L1").unwrap().last_seq, far + 1);
}

#[test]
fn rtc_back_one_hour_then_trapped_passenger_is_raised_after_90_s() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    feed(&mut e, &[lift("L1", 1, t0, idle()), lift("L1", 2, t0 + 10 * S, idle())]);
    // NTP corrects the node's clock back by an hour; ingest's clock follows the real time.
    let real = t0 + 20 * S - HOUR;
    let mut out = feed(
        &mut e,
        &[lift("L1", 3, real, idle()), lift("L1", 4, real + 10 * S, enclosed())],
    );
    for t in (real + 20 * S..=real + 110 * S).step_by(10_000) {
        out.extend(e.apply(&lift("L1", 5 + (t - real) / 10_000, t, enclosed()), Some("GW1")));
        out.extend(e.tick(t));
    }
    assert_eq!(raised(&out, AlertKind::TrappedPassenger), [real + 100 * S]);
}

#[test]
fn a_small_step_back_still_counts_at_the_later_time() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    feed(
        &mut e,
        &[lift("L1", 1, t0, idle()), lift("L1", 2, t0 - 5 * S, enclosed())],
    );
    let m = e.monitor("L1").unwrap();
    assert_eq!((m.last_reading, m.lift.enclosed_since), (Some(t0), Some(t0)));
    assert_eq!(m.anomalies.clock_rebases, 0);
}

#[test]
fn a_node_that_lost_its_storage_is_accepted_at_its_next_birth() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    feed(&mut e, &[birth("L1", 500, t0, 7), lift("L1", 501, t0 + S, idle())]);
    // Storage wiped: seq restarts at 1, boots at 1. Readings before the Birth are lost to
    // the engine (stored by ingest); the Birth re-bases the seq.
    let t1 = t0 + 10 * MIN;
    assert!(feed(&mut e, &[lift("L1", 1, t1, idle())]).is_empty());
    assert_eq!(e.monitor("L1").unwrap().last_seq, 501);
    feed(&mut e, &[birth("L1", 2, t1 + S, 1)]);
    assert_eq!(e.monitor("L1").unwrap().last_seq, 2);
    assert_eq!(e.take_anomalies().get("seq_reset"), Some(&1));
    let out = feed(&mut e, &[lift("L1", 3, t1 + 2 * S, LiftStatus { fault: 3, ..idle() })]);
    assert_eq!(raised(&out, AlertKind::Fault(3)), [t1 + 2 * S]);
    // A redelivered Birth of the old boot (earlier device time) is no reset.
    assert!(feed(&mut e, &[birth("L1", 500, t0, 7)]).is_empty());
    // Nor a redelivered Birth of the current boot.
    feed(&mut e, &[birth("L1", 2, t1 + S, 1)]);
    assert_eq!(e.monitor("L1").unwrap().last_seq, 3);
    assert_eq!(e.monitor("L1").unwrap().anomalies.resets, 1);
}

#[test]
fn replaying_a_reset_in_seq_order_ends_where_live_order_did() {
    let t0 = DAY0 + 9 * HOUR;
    let t1 = t0 + 10 * MIN;
    let old: Vec<Reading> = std::iter::once(birth("L1", 1, t0, 7))
        .chain((2..=10).map(|seq| lift("L1", seq, t0 + seq * S, idle())))
        .collect();
    let new = vec![
        lift("L1", 1, t1, idle()),
        birth("L1", 2, t1 + S, 1),
        lift("L1", 3, t1 + 2 * S, LiftStatus { fault: 3, ..idle() }),
        lift("L1", 4, t1 + 3 * S, LiftStatus { fault: 3, ..idle() }),
    ];
    let mut live = Engine::new(AlertConfig::default());
    feed(&mut live, &old[..5]);
    let checkpoint = live.state().clone();
    feed(&mut live, &old[5..]);
    feed(&mut live, &new);

    // After a restart, storage replays what came since the checkpoint ordered by seq:
    // the new boot's low seqs before the old boot's high ones.
    let mut replayed: Vec<Reading> = old[3..].iter().chain(&new).cloned().collect();
    replayed.sort_by_key(Reading::seq);
    let mut restarted = Engine::from_state(AlertConfig::default(), checkpoint);
    feed(&mut restarted, &replayed);
    let (a, b) = (live.monitor("L1").unwrap(), restarted.monitor("L1").unwrap());
    assert_eq!(
        (a.last_seq, a.last_reading, a.boots),
        (b.last_seq, b.last_reading, b.boots)
    );
    assert_eq!((b.last_seq, b.last_reading), (4, Some(t1 + 3 * S)));
    assert_eq!(a.lift, b.lift);
    assert_eq!(live.open_alerts(), restarted.open_alerts());
}
