//! Every shipped scenario (`simulators/scenarios/*.toml`) runs through the real gateway and
//! ingest, in process on port 0, with simulated nodes running the real firmware on virtual
//! time, and must raise exactly the alerts it expects: `gridwatch sim run FILE --check` as a
//! library call. A scenario that fails prints its table of expected against actual alerts.
use gridwatch_scenario::{self as scenario, AlertKind, RunReport};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Scenarios run side by side: each waits mostly on delivery round trips, not on the CPU.
const PARALLEL: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_scenario_raises_exactly_its_expected_alerts() {
    let started = Instant::now();
    let files = scenario::files_in(&scenario::shipped_dir()).expect("the scenario directory");
    // Every alert kind of the engine has a scenario that expects it.
    let mut covered = std::collections::BTreeSet::new();
    for file in &files {
        let s = scenario::load(file).unwrap_or_else(|e| panic!("{e:#}"));
        covered.extend(s.expect.iter().map(|e| e.kind));
    }
    let missing: Vec<AlertKind> = AlertKind::SIMPLE.into_iter().filter(|k| !covered.contains(k)).collect();
    assert!(missing.is_empty(), "no shipped scenario expects {missing:?}");
    assert!(
        covered.iter().any(|k| matches!(k, AlertKind::Fault(_))),
        "no scenario expects a fault code"
    );
    // Local tasks: a run's future is not `Send` (ingest's futures borrow across awaits);
    // the services it starts still run on the runtime's worker threads.
    let local = tokio::task::LocalSet::new();
    let results = local
        .run_until(async {
            let limit = Arc::new(Semaphore::new(PARALLEL));
            let runs: Vec<_> = files
                .into_iter()
                .map(|file| {
                    let limit = limit.clone();
                    tokio::task::spawn_local(async move {
                        let _permit = limit.acquire_owned().await.expect("semaphore");
                        let report = scenario::run_file(&file).await;
                        (file, report)
                    })
                })
                .collect();
            let mut results = Vec::new();
            for run in runs {
                results.push(run.await.expect("a scenario task panicked"));
            }
            results
        })
        .await;
    let mut reports: Vec<RunReport> = Vec::new();
    let mut errors = Vec::new();
    for (file, report) in results {
        match report {
            Ok(r) => reports.push(r),
            Err(e) => errors.push(format!("{}: {e:#}", file.display())),
        }
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    for r in &reports {
        println!(
            "{:<32} {:<4} {:>9} device time in {:>5.1} s",
            r.name,
            if r.passed() { "ok" } else { "FAIL" },
            scenario::parse::format_offset(r.simulated.as_millis() as i64),
            r.wall.as_secs_f64()
        );
    }
    println!(
        "{} scenarios in {:.1} s",
        reports.len() + errors.len(),
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<String> = reports.iter().filter(|r| !r.passed()).map(RunReport::render).collect();
    assert!(
        errors.is_empty() && failed.is_empty(),
        "scenarios that could not run:\n{}\n\nscenarios whose alerts differ:\n{}",
        errors.join("\n"),
        failed.join("\n")
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
    let report = scenario::run(&scenario::parse(&wrong, "wrong").unwrap()).await.unwrap();
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
}
