//! Every shipped scenario (`simulators/scenarios/*.toml`) runs through the real gateway and
//! ingest, in process on port 0, with simulated nodes running the real firmware on virtual
//! time, and must raise exactly the alerts it expects: `gridwatch sim run FILE --check` as a
//! library call. One test per file, named after it, so that nextest runs them side by side
//! and names the one that fails; a failing one prints its table of expected against actual
//! alerts.
use gridwatch_scenario::{self as scenario, AlertKind};
use std::collections::BTreeSet;

/// One test per shipped scenario file (its name without `.toml`). A file without a
/// test here fails [`every_shipped_scenario_file_has_a_test`].
macro_rules! shipped_scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                runs_as_expected(stringify!($name)).await;
            }
        )*
        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

shipped_scenarios!(
    alarm_button_event_listed,
    broken_probe_no_false_alert,
    canteen_closed_sunday,
    case_closed_loop,
    case_escalation_config,
    clock_glitch_2099,
    cycle_aborted,
    cycle_hold_too_short,
    cycle_under_temperature,
    device_offline,
    door_open_while_running,
    firm_acknowledges_in_time,
    gateway_alive_node_quiet,
    gateway_offline,
    inspection_maintenance_due,
    late_trapped_case,
    maintenance_inspection,
    no_cycle_in_meal_period,
    outage_replay,
    power_loss,
    quiet_kitchen_day,
    quiet_lift_day,
    records_and_register_changes,
    redelivered_shuffled,
    rinse_78c_one_alert,
    safety_circuit_open,
    sensor_faults,
    sensor_level_faults,
    stopped_outside_door_zone,
    trapped_alarm_button,
    trapped_between_floors,
    trapped_doors_closed,
);

/// Runs `simulators/scenarios/{name}.toml` and fails with its table unless it raised
/// exactly the alerts it expects.
async fn runs_as_expected(name: &str) {
    let path = scenario::shipped_dir().join(format!("{name}.toml"));
    let report = scenario::run_file(&path).await.unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{} {} device time in {:.1} s ({} rounds, {} readings)",
        report.name,
        scenario::parse::format_offset(report.simulated.as_millis() as i64),
        report.wall.as_secs_f64(),
        report.rounds,
        report.readings
    );
    assert!(report.passed(), "{}", report.render());
}

fn shipped_files() -> Vec<std::path::PathBuf> {
    scenario::files_in(&scenario::shipped_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// A scenario file cannot be forgotten: every file in the directory has its test above,
/// and every test its file.
#[test]
fn every_shipped_scenario_file_has_a_test() {
    let files: BTreeSet<String> = shipped_files()
        .iter()
        .map(|p| p.file_stem().expect("a file name").to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = LISTED.iter().map(|s| s.to_string()).collect();
    let untested: Vec<&String> = files.difference(&listed).collect();
    let missing: Vec<&String> = listed.difference(&files).collect();
    assert!(
        untested.is_empty() && missing.is_empty(),
        "scenario files without a test (add them to shipped_scenarios! in tests/scenarios.rs): {untested:?}; \
         tests without a file: {missing:?}"
    );
}

/// Every alert kind of the engine has a shipped scenario that expects it.
#[test]
fn every_alert_kind_is_expected_by_a_shipped_scenario() {
    let mut covered = BTreeSet::new();
    for file in shipped_files() {
        let s = scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        covered.extend(s.expect.iter().flat_map(|e| e.kinds.iter().copied()));
    }
    let missing: Vec<AlertKind> = AlertKind::SIMPLE.into_iter().filter(|k| !covered.contains(k)).collect();
    assert!(missing.is_empty(), "no shipped scenario expects {missing:?}");
    assert!(
        covered.iter().any(|k| matches!(k, AlertKind::Fault(_))),
        "no scenario expects a fault code"
    );
}

/// The check is not vacuous: a scenario whose expectations are wrong fails, naming each difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expectation_is_reported_as_a_difference() {
    let path = scenario::shipped_dir().join("trapped_alarm_button.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let wrong = format!(
        "{text}\n[[expect]]\nkind = \"power_loss\"\ndevice = \"L-0003\"\n\n[[absent]]\nkind = \"trapped_passenger\"\nbefore = \"2m\"\n"
    );
    let report = scenario::run(&scenario::parse(&wrong, "wrong").unwrap())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let verdicts: Vec<(scenario::Verdict, &str)> = report
        .comparison
        .lines
        .iter()
        .map(|l| (l.verdict, l.kind.as_str()))
        .collect();
    assert_eq!(
        verdicts,
        [
            (scenario::Verdict::Ok, "trapped_passenger"),
            (scenario::Verdict::Missing, "power_loss"),
            // Expected and forbidden at once: the absence wins.
            (scenario::Verdict::Forbidden, "trapped_passenger"),
        ],
        "{}",
        report.render()
    );
    assert!(!report.passed());
    assert!(report.render().contains("FAIL: 2 differences"), "{}", report.render());
}
