//! Engine scenarios on virtual time: no sleeping, no wall clock.
mod common;

use common::*;
use gridwatch_alerts::*;
use gridwatch_protocol::{CycleOutcome, DeviceKind, Door, EventKind, LiftStatus, Motion};

fn changes(events: &[AlertEvent]) -> Vec<(String, AlertKind, Change)> {
    events
        .iter()
        .map(|e| (e.key.device.clone(), e.key.kind, e.change))
        .collect()
}

fn ev(dev: &str, kind: AlertKind, change: Change) -> (String, AlertKind, Change) {
    (dev.to_string(), kind, change)
}

#[test]
fn trapped_passenger_is_raised_by_a_tick_when_no_new_reading_comes() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    e.tick(t0);
    assert!(
        e.apply(
            &lift(
                "L1",
                1,
                t0,
                LiftStatus {
                    occupied: true,
                    ..idle()
                }
            ),
            None
        )
        .is_empty()
    );
    assert!(e.tick(t0 + 89 * S).is_empty());
    let raised = e.tick(t0 + 90 * S);
    assert_eq!(
        changes(&raised),
        [ev("L1", AlertKind::TrappedPassenger, Change::Raised)]
    );
    assert_eq!(raised[0].severity, Severity::Critical);
    assert_eq!(raised[0].raised_at, t0 + 90 * S);
    // Doors open at t0+120 s: the alert clears 60 s (min clear) later, on device time.
    e.apply(
        &lift(
            "L1",
            2,
            t0 + 120 * S,
            LiftStatus {
                occupied: true,
                door: Door::Open,
                ..idle()
            },
        ),
        None,
    );
    assert!(e.tick(t0 + 179 * S).is_empty());
    assert_eq!(
        changes(&e.tick(t0 + 180 * S)),
        [ev("L1", AlertKind::TrappedPassenger, Change::Cleared)]
    );
}

#[test]
fn redelivered_and_late_readings_change_nothing() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    let fault = lift("L1", 5, t0, LiftStatus { fault: 1, ..idle() });
    assert_eq!(
        changes(&e.apply(&fault, None)),
        [ev("L1", AlertKind::Fault(1), Change::Raised)]
    );
    let state = e.state().clone();
    assert!(e.apply(&fault, None).is_empty());
    // seq 4 arrives after seq 5: too late, ignored (it is still stored by ingest).
    assert!(e.apply(&lift("L1", 4, t0 - S, idle()), None).is_empty());
    assert_eq!(e.state(), &state);
    let details = &e.open_alerts()[0].details;
    assert_eq!(
        details,
        &Details::Fault {
            code: 1,
            name: "safety circuit open".into()
        }
    );
}

#[test]
fn flapping_fault_updates_one_alert() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    let mut all = Vec::new();
    for i in 0..10u64 {
        let fault = if i % 2 == 0 { 7 } else { 0 };
        all.extend(e.apply(
            &lift("L1", i + 1, t0 + i * 10 * S, LiftStatus { fault, ..idle() }),
            None,
        ));
    }
    let c = changes(&all);
    assert_eq!(c[0], ev("L1", AlertKind::Fault(7), Change::Raised));
    assert!(c[1..].iter().all(|x| x.2 == Change::Updated), "{c:?}");
    assert_eq!(e.open_alerts()[0].flaps, 4);
    all = e.tick(t0 + 90 * S + 60 * S);
    assert_eq!(changes(&all), [ev("L1", AlertKind::Fault(7), Change::Cleared)]);
}

#[test]
fn inspection_mode_raises_nothing() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    let bad = LiftStatus {
        mode: gridwatch_protocol::ServiceMode::Inspection,
        occupied: true,
        door_zone: false,
        fault: 1,
        ..idle()
    };
    assert!(e.apply(&lift("L1", 1, t0, bad), None).is_empty());
    assert!(
        e.tick(t0 + 10 * MIN)
            .iter()
            .all(|x| x.key.kind == AlertKind::DeviceOffline)
    );
}

#[test]
fn node_events_raise_alarm_and_power_alerts() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    e.apply(&lift("L1", 1, t0, idle()), None);
    let got = e.apply(&event("L1", 2, t0 + S, EventKind::PowerLost, 0), None);
    assert_eq!(changes(&got), [ev("L1", AlertKind::PowerLoss, Change::Raised)]);
    let got = e.apply(&event("L1", 3, t0 + 2 * S, EventKind::AlarmButton, 0), None);
    assert_eq!(changes(&got), [ev("L1", AlertKind::TrappedPassenger, Change::Raised)]);
    assert!(matches!(
        got[0].details,
        Details::Trapped {
            reason: TrappedReason::AlarmButton,
            floor: 3
        }
    ));
}

#[test]
fn one_gateway_alert_instead_of_one_per_device() {
    let cfg = AlertConfig::default();
    let mut e = Engine::new(cfg);
    let t0 = DAY0 + 9 * HOUR;
    let batch: Vec<_> = (0..50).map(|i| lift(&format!("L{i}"), 1, t0, idle())).collect();
    e.apply_batch("GW1", t0, &batch);
    e.tick(t0 + S);
    // The gateway goes silent: after 5 min it is offline; its devices raise nothing.
    let got = e.tick(t0 + 5 * MIN);
    assert_eq!(changes(&got), [ev("GW1", AlertKind::GatewayOffline, Change::Raised)]);
    assert_eq!(got[0].details, Details::GatewayOffline { devices: 50 });
    assert!(e.tick(t0 + 20 * MIN).is_empty());
    // Back, with the buffered readings of all but L7.
    let back = t0 + 21 * MIN;
    let batch: Vec<_> = (0..50)
        .filter(|&i| i != 7)
        .map(|i| lift(&format!("L{i}"), 2, back, idle()))
        .collect();
    e.apply_batch("GW1", back, &batch);
    // The gateway is alive and delivered its buffer without L7: L7 is offline. The
    // gateway's alert clears after the minimum clear time.
    let got = e.tick(back + S);
    assert_eq!(changes(&got), [ev("L7", AlertKind::DeviceOffline, Change::Raised)]);
    let got = e.tick(back + 61 * S);
    assert_eq!(changes(&got), [ev("GW1", AlertKind::GatewayOffline, Change::Cleared)]);
}

#[test]
fn device_offline_when_its_gateway_is_alive() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    e.apply_batch("GW1", t0, &[lift("L1", 1, t0, idle()), lift("L2", 1, t0, idle())]);
    let mut got = Vec::new();
    // L2 keeps reporting every 30 s; L1 is silent.
    for (seq, t) in (2..).zip((t0 + 30 * S..=t0 + 6 * MIN).step_by(30_000)) {
        got.extend(e.apply_batch("GW1", t, &[lift("L2", seq, t, idle())]));
        got.extend(e.tick(t));
    }
    assert_eq!(changes(&got), [ev("L1", AlertKind::DeviceOffline, Change::Raised)]);
    assert_eq!(got[0].at, t0 + 5 * MIN);
    // Presence says the gateway is gone: the device alert clears, the gateway's is raised.
    e.gateway_presence("GW1", false, t0 + 6 * MIN + S);
    let got = e.tick(t0 + 7 * MIN);
    assert_eq!(changes(&got), [ev("GW1", AlertKind::GatewayOffline, Change::Raised)]);
    let got = e.tick(t0 + 8 * MIN);
    assert_eq!(changes(&got), [ev("L1", AlertKind::DeviceOffline, Change::Cleared)]);
}

fn lift_profile(next_inspection_due: Date, in_service: bool) -> DeviceProfile {
    DeviceProfile {
        kind: DeviceKind::Lift,
        in_service,
        next_inspection_due: Some(next_inspection_due),
        last_maintenance: None,
        maintenance_interval_days: Some(15),
    }
}

#[test]
fn due_dates_warn_then_alert_once_per_stage_and_idempotently() {
    let mut e = Engine::new(AlertConfig::default());
    let noon = DAY0 + 12 * HOUR; // 2026-11-25
    let due = Date::constant(2026, 12, 20);
    let got = e.set_profile("L1", lift_profile(due, true), noon);
    assert_eq!(changes(&got), [ev("L1", AlertKind::InspectionDueSoon, Change::Raised)]);
    assert!(e.set_profile("L1", lift_profile(due, true), noon).is_empty());
    assert!(e.tick(noon).is_empty()); // the same day, evaluated again
    assert!(e.evaluate_due(Date::constant(2026, 11, 25), noon + S).is_empty());
    let mut per_day = Vec::new();
    for day in 1..=40 {
        per_day.push((day, changes(&e.tick(noon + day * 24 * HOUR))));
    }
    let nonempty: Vec<_> = per_day.into_iter().filter(|(_, c)| !c.is_empty()).collect();
    assert_eq!(
        nonempty,
        [
            (18, vec![ev("L1", AlertKind::InspectionDueSoon, Change::Updated)]), // 7 days left
            (
                26, // 2026-12-21, the first day overdue
                vec![
                    ev("L1", AlertKind::InspectionOverdue, Change::Raised),
                    ev("L1", AlertKind::InspectionDueSoon, Change::Cleared)
                ]
            ),
            (33, vec![ev("L1", AlertKind::InspectionOverdue, Change::Updated)]), // beyond grace
        ]
    );
    assert_eq!(
        e.open_alerts().iter().map(|a| a.severity).collect::<Vec<_>>(),
        [Severity::Major]
    );
    // Out of service: the due alert clears at once.
    let got = e.set_profile("L1", lift_profile(due, false), noon + 41 * 24 * HOUR);
    assert_eq!(changes(&got), [ev("L1", AlertKind::InspectionOverdue, Change::Cleared)]);
}

#[test]
fn sterilizer_meal_period_without_cycle_is_checked_at_its_end_by_tick() {
    let mut cfg = AlertConfig::default();
    cfg.offline.sterilizer_after_s = 30 * 24 * 3600; // keep offline out of this test
    let mut e = Engine::new(cfg);
    e.apply(&steriliser_status("S1", 1, DAY0 + 9 * HOUR), None);
    assert!(e.tick(DAY0 + 13 * HOUR + 29 * MIN).is_empty());
    let got = e.tick(DAY0 + 13 * HOUR + 30 * MIN);
    assert_eq!(
        changes(&got),
        [ev("S1", AlertKind::NoCycleInMealPeriod, Change::Raised)]
    );
    assert!(matches!(&got[0].details, Details::MealPeriod { period, missed_in_a_row: 1, .. } if period == "lunch"));
    let got = e.apply(
        &cycle("S1", 2, DAY0 + 17 * HOUR, 90.0, 900, CycleOutcome::Completed),
        None,
    );
    assert_eq!(
        changes(&got),
        [ev("S1", AlertKind::CycleUnderTemperature, Change::Raised)]
    );
    assert!(
        e.apply(
            &cycle("S1", 3, DAY0 + 18 * HOUR, 125.0, 900, CycleOutcome::Completed),
            None
        )
        .is_empty()
    );
    let got = e.tick(DAY0 + 18 * HOUR + MIN);
    assert_eq!(
        changes(&got),
        [ev("S1", AlertKind::CycleUnderTemperature, Change::Cleared)]
    );
    // The dinner period had a good cycle: judged at 20:00, cleared a minute later.
    assert!(e.tick(DAY0 + 20 * HOUR).is_empty());
    let got = e.tick(DAY0 + 20 * HOUR + MIN);
    assert_eq!(
        changes(&got),
        [ev("S1", AlertKind::NoCycleInMealPeriod, Change::Cleared)]
    );
}

#[test]
fn sterilizer_offline_only_counts_operating_hours() {
    let mut e = Engine::new(AlertConfig::default());
    let evening = DAY0 + 21 * HOUR;
    e.apply(&steriliser_status("S1", 1, evening), None);
    assert!(e.tick(evening + 2 * HOUR).is_empty());
    let next_day = DAY0 + 24 * HOUR;
    assert!(e.tick(next_day + 10 * HOUR + 4 * MIN).is_empty());
    let got = e.tick(next_day + 10 * HOUR + 5 * MIN);
    assert_eq!(changes(&got), [ev("S1", AlertKind::DeviceOffline, Change::Raised)]);
}

#[test]
fn acknowledge_then_clear() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    e.apply(
        &lift(
            "L1",
            1,
            t0,
            LiftStatus {
                motion: Motion::Up,
                door: Door::Open,
                ..idle()
            },
        ),
        None,
    );
    let key = AlertKey {
        device: "L1".into(),
        kind: AlertKind::DoorOpenWhileRunning,
    };
    let ack = e.acknowledge(&key, "mf-wang", t0 + S).unwrap();
    assert_eq!((ack.change, ack.revision), (Change::Acknowledged, 1));
    assert!(e.acknowledge(&key, "mf-wang", t0 + 2 * S).is_none());
    e.apply(&lift("L1", 2, t0 + 2 * S, idle()), None);
    let got = e.tick(t0 + 62 * S);
    assert_eq!(
        (got[0].change, got[0].revision, got[0].acknowledged_by.as_deref()),
        (Change::Cleared, 2, Some("mf-wang"))
    );
}

#[test]
fn state_survives_serialization_and_another_instance_continues() {
    let t0 = DAY0 + 9 * HOUR;
    let mut a = Engine::new(AlertConfig::default());
    a.apply(
        &lift(
            "L1",
            1,
            t0,
            LiftStatus {
                occupied: true,
                ..idle()
            },
        ),
        Some("GW1"),
    );
    a.tick(t0 + 30 * S);
    let saved = serde_json::to_string(a.state()).unwrap();
    let mut b = Engine::from_state(AlertConfig::default(), serde_json::from_str(&saved).unwrap());
    assert_eq!(a.tick(t0 + 90 * S), b.tick(t0 + 90 * S));
    assert_eq!(a.state(), b.state());
    // Per-device takeover: only L1's monitor moves.
    let m = b.remove_monitor("L1").unwrap();
    let json = serde_json::to_string(&m).unwrap();
    let mut c = Engine::new(AlertConfig::default());
    c.insert_monitor("L1".into(), serde_json::from_str(&json).unwrap());
    let next = lift(
        "L1",
        2,
        t0 + 100 * S,
        LiftStatus {
            door: Door::Open,
            ..idle()
        },
    );
    assert_eq!(a.apply(&next, None), c.apply(&next, None));
}

#[test]
fn changed_ids_name_what_to_persist() {
    let t0 = DAY0 + 9 * HOUR;
    let mut e = Engine::new(AlertConfig::default());
    e.apply_batch("GW1", t0, &[lift("L1", 1, t0, idle()), lift("L2", 1, t0, idle())]);
    let ch = e.take_changes();
    assert_eq!(ch.devices.into_iter().collect::<Vec<_>>(), ["L1", "L2"]);
    assert_eq!(ch.gateways.into_iter().collect::<Vec<_>>(), ["GW1"]);
    e.apply(&lift("L1", 1, t0, idle()), None); // redelivery
    assert_eq!(e.take_changes(), Changes::default());
}

/// A gateway with one lift behind it that heartbeats every 30 s from `from` to `until`
/// (ingest time), ticking after each heartbeat; returns the events of the ticks.
fn heartbeat(e: &mut Engine, from: u64, until: u64) -> Vec<AlertEvent> {
    let mut got = Vec::new();
    for t in (from..=until).step_by(30_000) {
        e.gateway_presence("GW1", true, t);
        got.extend(e.tick(t));
    }
    got
}

#[test]
fn a_present_gateway_whose_only_node_goes_quiet_reports_the_node_not_itself() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    e.gateway_presence("GW1", true, t0);
    e.apply_batch("GW1", t0, &[lift("L1", 1, t0, idle())]);
    // No batch after t0, but the gateway keeps heartbeating: L1 is the one that is quiet.
    let got = heartbeat(&mut e, t0 + 30 * S, t0 + 20 * MIN);
    assert_eq!(changes(&got), [ev("L1", AlertKind::DeviceOffline, Change::Raised)]);
    assert_eq!(got[0].at, t0 + 5 * MIN);
    assert_eq!(got[0].details, Details::Offline { last_reading_ts: t0 });
}

#[test]
fn heartbeat_silence_takes_the_gateway_offline_and_it_explains_its_node() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    e.gateway_presence("GW1", true, t0);
    e.apply_batch("GW1", t0, &[lift("L1", 1, t0, idle())]);
    // Gateway and node stop together after t0 + 1 min: the last heartbeat is then.
    assert!(heartbeat(&mut e, t0 + 30 * S, t0 + MIN).is_empty());
    let mut got = Vec::new();
    for t in (t0 + MIN + S..=t0 + 20 * MIN).step_by(1_000) {
        got.extend(e.tick(t));
    }
    // 90 s of heartbeat silence: the gateway is offline, and L1 raises nothing of its own.
    assert_eq!(changes(&got), [ev("GW1", AlertKind::GatewayOffline, Change::Raised)]);
    assert_eq!(got[0].at, t0 + MIN + 90 * S);
    assert_eq!(got[0].details, Details::GatewayOffline { devices: 1 });
}

#[test]
fn a_gateways_last_will_takes_it_offline_at_once_and_its_quiet_node_alert_clears() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    e.gateway_presence("GW1", true, t0);
    e.apply_batch("GW1", t0, &[lift("L1", 1, t0, idle())]);
    let got = heartbeat(&mut e, t0 + 30 * S, t0 + 6 * MIN);
    assert_eq!(changes(&got), [ev("L1", AlertKind::DeviceOffline, Change::Raised)]);
    // The gateway's connection dies: its will arrives, long before 90 s of silence.
    e.gateway_presence("GW1", false, t0 + 6 * MIN + S);
    let got = e.tick(t0 + 6 * MIN + 2 * S);
    assert_eq!(changes(&got), [ev("GW1", AlertKind::GatewayOffline, Change::Raised)]);
    let got = e.tick(t0 + 7 * MIN + 2 * S);
    assert_eq!(changes(&got), [ev("L1", AlertKind::DeviceOffline, Change::Cleared)]);
    // Its birth after a reconnect brings it back; L1, still quiet, is reported again.
    e.gateway_presence("GW1", true, t0 + 10 * MIN);
    let got = e.tick(t0 + 10 * MIN);
    assert_eq!(changes(&got), [ev("L1", AlertKind::DeviceOffline, Change::Raised)]);
    let got = heartbeat(&mut e, t0 + 10 * MIN + 30 * S, t0 + 12 * MIN);
    assert_eq!(changes(&got), [ev("GW1", AlertKind::GatewayOffline, Change::Cleared)]);
}

#[test]
fn without_presence_a_gateway_is_judged_by_its_batches_alone() {
    let mut e = Engine::new(AlertConfig::default());
    let t0 = DAY0 + 9 * HOUR;
    e.apply_batch("GW1", t0, &[lift("L1", 1, t0, idle())]);
    let mut got = Vec::new();
    for t in (t0 + 30 * S..=t0 + 20 * MIN).step_by(30_000) {
        got.extend(e.tick(t));
    }
    // A gateway that sends no presence cannot be told from its quiet node.
    assert_eq!(changes(&got), [ev("GW1", AlertKind::GatewayOffline, Change::Raised)]);
    assert_eq!(got[0].at, t0 + 5 * MIN);
}
