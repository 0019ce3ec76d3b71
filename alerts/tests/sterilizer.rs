//! Sterilizer fidelity through the engine on virtual time: a broken thermocouple does
//! not accuse the kitchen, one bad cycle raises one alert, and each site is judged by its
//! own kitchen calendar.
mod common;

use common::*;
use gridwatch_alerts::config::MealPeriod;
use gridwatch_alerts::sterilizer::Unjudged;
use gridwatch_alerts::{AlertConfig, AlertEvent, AlertKind, Change, ClockTime, Details, Engine, KitchenSchedule};
use gridwatch_protocol::EventKind;

fn kinds(events: &[AlertEvent]) -> Vec<(String, AlertKind, Change)> {
    events
        .iter()
        .map(|e| (e.key.device.clone(), e.key.kind, e.change))
        .collect()
}

fn raised(dev: &str, kind: AlertKind) -> (String, AlertKind, Change) {
    (dev.to_string(), kind, Change::Raised)
}

/// An engine that leaves offline out of the picture.
fn engine() -> Engine {
    let mut cfg = AlertConfig::default();
    cfg.offline.sterilizer_after_s = 30 * 24 * 3600;
    Engine::new(cfg)
}

#[test]
fn an_open_thermocouple_explains_the_cycle_instead_of_an_under_temperature_alert() {
    let mut e = engine();
    let t = DAY0 + 11 * HOUR;
    e.apply(&steriliser_status("S1", 1, t), None);
    let got = e.apply(&event("S1", 2, t + MIN, EventKind::FaultRaised, 801), None);
    assert_eq!(kinds(&got), [raised("S1", AlertKind::Fault(801))]);
    // The rinse the node could not measure: no peak.
    let got = e.apply(&rinse("S1", 3, t + 5 * MIN, None, 0), None);
    assert_eq!(kinds(&got), [], "no cycle_under_temperature, no cycle_hold_too_short");
    let unjudged = e.monitor("S1").unwrap().sterilizer.unjudged.unwrap();
    assert_eq!((unjudged.why, unjudged.fault), (Unjudged::NoValidReading, 801));
    // Nor does the lunch period count as "not used".
    assert_eq!(kinds(&e.tick(DAY0 + 13 * HOUR + 30 * MIN)), []);
}

#[test]
fn a_cold_rinse_raises_one_alert_that_says_why() {
    let mut e = engine();
    let t = DAY0 + 11 * HOUR;
    e.apply(&steriliser_status("S1", 1, t), None);
    // 78 °C, needs 82 °C for 40 s: never at the target, so no time at it either.
    let got = e.apply(&rinse("S1", 2, t + 5 * MIN, Some(78.0), 0), None);
    assert_eq!(kinds(&got), [raised("S1", AlertKind::CycleUnderTemperature)]);
    let Details::Cycle { reason, required_c, .. } = &got[0].details else {
        panic!("{:?}", got[0].details)
    };
    assert_eq!(*required_c, 82.0);
    assert!(reason.contains("never reached the 82 °C target"), "{reason}");
    // Hot enough but held too briefly: too short, and only that.
    let got = e.apply(&rinse("S1", 3, t + 10 * MIN, Some(84.0), 25), None);
    assert_eq!(kinds(&got), [raised("S1", AlertKind::CycleHoldTooShort)]);
}

fn canteen() -> KitchenSchedule {
    KitchenSchedule {
        operating_days: Some(vec![1, 2, 3, 4, 5, 6]),
        ..KitchenSchedule::default()
    }
}

#[test]
fn each_site_is_judged_by_its_own_calendar() {
    let mut global = AlertConfig::default();
    global.offline.sterilizer_after_s = 30 * 24 * 3600;
    global.sterilizer.operating_days = vec![1, 2, 3, 4, 5]; // the default: weekdays
    let mut e = Engine::new(global);
    let restaurant = KitchenSchedule {
        operating_days: Some(vec![1, 2, 3, 4, 5, 6, 7]),
        meal_periods: Some(vec![MealPeriod {
            name: "lunch".into(),
            start: ClockTime::hm(11, 0),
            end: ClockTime::hm(14, 0),
        }]),
        ..KitchenSchedule::default()
    };
    let school = canteen();
    e.replace_kitchen_schedules([("CANTEEN", &school), ("RESTAURANT", &restaurant)]);
    assert_eq!(e.kitchen_schedule("CANTEEN"), Some(&school));
    assert_eq!(e.kitchen_schedule("OFFICE"), None);
    // Saturday 2026-11-28, the three kitchens report in the morning; nobody runs a cycle.
    let sat = DAY0 + 3 * 24 * HOUR;
    for dev in ["CANTEEN", "RESTAURANT", "OFFICE"] {
        e.apply(&steriliser_status(dev, 1, sat + 8 * HOUR), None);
    }
    let got = e.tick(sat + 13 * HOUR + 30 * MIN);
    assert_eq!(kinds(&got), [raised("CANTEEN", AlertKind::NoCycleInMealPeriod)]);
    let got = e.tick(sat + 14 * HOUR);
    assert_eq!(kinds(&got), [raised("RESTAURANT", AlertKind::NoCycleInMealPeriod)]);
    let dinner = [("CANTEEN".to_string(), AlertKind::NoCycleInMealPeriod, Change::Updated)];
    assert_eq!(
        kinds(&e.tick(sat + 21 * HOUR)),
        dinner,
        "the restaurant has no dinner period"
    );
    // Sunday: the canteen is closed and the office kitchen (global: weekdays) too; the
    // restaurant is open and misses again.
    let sun = sat + 24 * HOUR;
    let got = e.tick(sun + 23 * HOUR);
    let open: Vec<_> = got
        .iter()
        .filter(|ev| ev.key.kind == AlertKind::NoCycleInMealPeriod && ev.change == Change::Updated)
        .map(|ev| ev.key.device.as_str())
        .collect();
    assert_eq!(open, ["RESTAURANT"], "{got:?}");
    let missed = &e.monitor("CANTEEN").unwrap().sterilizer.meals.missed;
    assert_eq!(
        missed.as_ref().map(|m| m.in_a_row),
        Some(2),
        "Saturday's lunch and dinner only"
    );
}

#[test]
fn a_site_without_a_schedule_falls_back_to_the_global_one() {
    let mut e = engine();
    e.set_kitchen_schedule("S1", Some(&canteen()));
    e.set_kitchen_schedule("S1", None);
    assert_eq!(e.kitchen_schedule("S1"), None);
    // Sunday 2026-11-29: the global calendar operates every day.
    let sun = DAY0 + 4 * 24 * HOUR;
    e.apply(&steriliser_status("S1", 1, sun + 8 * HOUR), None);
    let got = e.tick(sun + 13 * HOUR + 30 * MIN);
    assert_eq!(kinds(&got), [raised("S1", AlertKind::NoCycleInMealPeriod)]);
    // Replacing the schedules without S1 leaves it on the global calendar.
    e.replace_kitchen_schedules([("S2", &canteen())]);
    assert_eq!(e.kitchen_schedule("S1"), None);
}
