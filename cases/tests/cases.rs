//! The case system on virtual time: opening from alerts and reports, merging, the closed
//! loop and its permissions, deadlines and escalation, statistics.
use gridwatch_alerts::{AlertEvent, AlertKey, AlertKind, Change, Details, Severity, TrappedReason};
use gridwatch_cases::stats::{count_cases, overdue_cases, rank_grids, timings_by_grid, to_csv};
use gridwatch_cases::*;

const T0: u64 = 1_795_536_000_000 + 9 * 3_600_000; // 2026-11-25 09:00 China time
const MIN: u64 = 60_000;
const LIFT: &str = "31103306242009000001";

fn registry() -> Registry {
    let csv = "设备类别,设备品种,设备注册代码,内部编号,制造单位,投用日期,使用单位,使用单位地址,使用单位联系电话,网格编码,维保单位编码,维保单位,维保周期(天),上次维保日期,下次检验日期,设备状态\n\
        电梯,曳引驱动乘客电梯,31103306242009000001,1#梯,西子,2009-05-20,鼓山商场,江滨路19号,0575-1,010101,MF04,示例丁,15,2026-11-13,2027-01-22,在用\n\
        电梯,曳引驱动乘客电梯,31103306242009000002,1#梯,三菱,2009-05-20,镜岭卫生院,镜屏路1号,0575-2,020301,MF01,示例甲,15,2026-11-13,2027-01-22,在用\n";
    import_register(csv.as_bytes()).unwrap()
}

fn user(id: &str, assignments: Vec<Assignment>) -> User {
    User {
        id: id.into(),
        name: id.into(),
        assignments,
    }
}

fn grid_role(role: Role, scope: &str) -> Assignment {
    Assignment::Grid {
        role,
        scope: GridScope::parse(scope).unwrap(),
    }
}

struct People {
    officer: User,
    inspector: User,
    supervisor: User,
    head: User,
    admin: User,
    firm: User,
    other_firm: User,
    far_supervisor: User,
}

fn people() -> People {
    People {
        officer: user("officer", vec![grid_role(Role::InformationOfficer, "010101")]),
        inspector: user("inspector", vec![grid_role(Role::Inspector, "0101")]),
        supervisor: user("supervisor", vec![grid_role(Role::Supervisor, "01")]),
        head: user("head", vec![grid_role(Role::GridHead, "01")]),
        admin: user(
            "admin",
            vec![
                grid_role(Role::GridAdministrator, "010101"),
                grid_role(Role::Supervisor, "010101"),
            ],
        ),
        firm: user("mf04-zhang", vec![Assignment::Firm { firm: "MF04".into() }]),
        other_firm: user("mf01-li", vec![Assignment::Firm { firm: "MF01".into() }]),
        far_supervisor: user("far", vec![grid_role(Role::Supervisor, "02")]),
    }
}

fn alert(kind: AlertKind, change: Change, severity: Severity, raised_at: u64, at: u64) -> AlertEvent {
    AlertEvent {
        key: AlertKey {
            device: LIFT.into(),
            kind,
        },
        change,
        severity,
        raised_at,
        at,
        revision: 0,
        acknowledged_by: None,
        details: Details::Trapped {
            floor: 3,
            reason: TrappedReason::DoorsClosedNotMoving,
        },
    }
}

fn hotline_report(at: u64) -> Report {
    Report {
        channel: Channel::Hotline96333,
        subject: Subject::Device { id: LIFT.into() },
        case_type: CaseType::TrappedPassenger,
        grid: GridCode::parse("010101").unwrap(),
        firm: Some("MF04".into()),
        priority: Priority::Urgent,
        at,
        known_at: None,
        description: "caller stuck between floors".into(),
        reporter: Some("138****0000".into()),
        alert: None,
    }
}

fn photo(reference: &str) -> Evidence {
    Evidence {
        kind: EvidenceKind::Photo,
        reference: reference.into(),
    }
}

/// Opens a trapped-passenger case from an alert.
fn trapped_case(book: &mut CaseBook, cfg: &CaseConfig) -> CaseId {
    let ev = alert(AlertKind::TrappedPassenger, Change::Raised, Severity::Critical, T0, T0);
    let report = report_from_alert(&ev, &registry(), &cfg.rules).unwrap().unwrap();
    book.submit(report, cfg).case()
}

#[test]
fn trapped_passenger_opens_an_urgent_case_and_other_channels_merge_into_it() {
    let cfg = CaseConfig::default();
    let reg = registry();
    let mut book = CaseBook::default();
    let raised = alert(AlertKind::TrappedPassenger, Change::Raised, Severity::Critical, T0, T0);
    let report = report_from_alert(&raised, &reg, &cfg.rules).unwrap().unwrap();
    assert_eq!(
        (report.case_type, report.priority),
        (CaseType::TrappedPassenger, Priority::Urgent)
    );
    assert_eq!(report.grid, GridCode::parse("010101").unwrap());
    let id = book.submit(report.clone(), &cfg);
    assert!(matches!(id, Intake::Opened(_)));
    // The same alert again (redelivered, or updated) changes nothing.
    assert_eq!(book.submit(report, &cfg), Intake::Duplicate(id.case()));
    let updated = alert(
        AlertKind::TrappedPassenger,
        Change::Updated,
        Severity::Critical,
        T0,
        T0 + MIN,
    );
    let again = report_from_alert(&updated, &reg, &cfg.rules).unwrap().unwrap();
    assert_eq!(book.submit(again, &cfg), Intake::Duplicate(id.case()));
    // The 96333 call and a patrol about the same lift and problem join the case.
    assert_eq!(
        book.submit(hotline_report(T0 + 2 * MIN), &cfg),
        Intake::Merged(id.case())
    );
    let patrol = Report {
        channel: Channel::Patrol,
        ..hotline_report(T0 + 3 * MIN)
    };
    assert_eq!(book.submit(patrol, &cfg), Intake::Merged(id.case()));
    assert_eq!(book.cases().count(), 1);
    assert_eq!(book.case(id.case()).unwrap().reports().len(), 3);
    // Another problem with the same lift is another case.
    let fault = alert(AlertKind::Fault(1), Change::Raised, Severity::Major, T0, T0);
    let fault_report = report_from_alert(&fault, &reg, &cfg.rules).unwrap().unwrap();
    assert_eq!(fault_report.case_type, CaseType::EquipmentFault);
    assert!(matches!(book.submit(fault_report, &cfg), Intake::Opened(other) if other != id.case()));
}

#[test]
fn only_configured_alerts_open_cases() {
    let cfg = CaseConfig::default();
    let reg = registry();
    let minor = alert(AlertKind::InspectionOverdue, Change::Raised, Severity::Minor, T0, T0);
    assert_eq!(report_from_alert(&minor, &reg, &cfg.rules).unwrap(), None);
    let major = alert(AlertKind::InspectionOverdue, Change::Updated, Severity::Major, T0, T0);
    let r = report_from_alert(&major, &reg, &cfg.rules).unwrap().unwrap();
    assert_eq!(r.case_type, CaseType::InspectionOverdue);
    let cleared = alert(AlertKind::TrappedPassenger, Change::Cleared, Severity::Critical, T0, T0);
    assert_eq!(report_from_alert(&cleared, &reg, &cfg.rules).unwrap(), None);
    let offline = alert(AlertKind::DeviceOffline, Change::Raised, Severity::Minor, T0, T0);
    assert_eq!(report_from_alert(&offline, &reg, &cfg.rules).unwrap(), None);
    // Trapped passengers open a case even with every rule removed.
    let none = CaseRules(vec![]);
    let trapped = alert(AlertKind::TrappedPassenger, Change::Raised, Severity::Critical, T0, T0);
    assert!(report_from_alert(&trapped, &reg, &none).unwrap().is_some());
    let mut unknown = trapped.clone();
    unknown.key.device = "NOT-REGISTERED".into();
    assert!(report_from_alert(&unknown, &reg, &cfg.rules).is_err());
}

#[test]
fn the_closed_loop_in_order_with_an_append_only_audit_record() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    let step = |s, m: u64, note: &str| StepInput::new(s, T0 + m * MIN, note);

    book.perform(id, &p.officer, step(Step::Accept, 1, "dispatched MF04"))
        .unwrap();
    book.perform(
        id,
        &p.inspector,
        step(Step::Verify, 8, "on site").with_evidence(photo("img/1.jpg")),
    )
    .unwrap();
    book.perform(
        id,
        &p.firm,
        step(Step::Handle, 14, "released passenger").with_evidence(photo("img/2.jpg")),
    )
    .unwrap();
    book.perform(id, &p.firm, step(Step::Feedback, 30, "brake adjusted"))
        .unwrap();
    let rec = book
        .perform(id, &p.supervisor, step(Step::Review, 60, "checked"))
        .unwrap();
    assert_eq!((rec.role, rec.actor.as_str()), (Role::Supervisor, "supervisor"));

    let case = book.case(id).unwrap();
    assert_eq!(case.status(), Status::Closed);
    let trail: Vec<(Step, &str, Role)> = case
        .records()
        .iter()
        .map(|r| (r.step, r.actor.as_str(), r.role))
        .collect();
    assert_eq!(
        trail,
        [
            (Step::Accept, "officer", Role::InformationOfficer),
            (Step::Verify, "inspector", Role::Inspector),
            (Step::Handle, "mf04-zhang", Role::MaintenanceFirm),
            (Step::Feedback, "mf04-zhang", Role::MaintenanceFirm),
            (Step::Review, "supervisor", Role::Supervisor),
        ]
    );
    assert_eq!(case.records()[1].evidence, [photo("img/1.jpg")]);
    assert_eq!(
        book.perform(id, &p.head, step(Step::Review, 61, "again")),
        Err(CaseError::Step(StepError::AlreadyClosed))
    );
    // A new report after closing opens a new case.
    assert!(matches!(book.submit(hotline_report(T0 + 90 * MIN), &cfg), Intake::Opened(n) if n != id));
}

#[test]
fn no_step_can_be_skipped_and_no_case_closed_without_review() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    let err = |r: Result<StepRecord, CaseError>| match r {
        Err(CaseError::Step(e)) => e,
        other => panic!("expected a step error, got {other:?}"),
    };
    // The command centre tries to close at once.
    let close = StepInput::new(Step::Review, T0 + MIN, "closed by phone");
    assert_eq!(
        err(book.perform(id, &p.head, close)),
        StepError::OutOfOrder {
            expected: Step::Accept,
            got: Step::Review
        }
    );
    book.perform(id, &p.officer, StepInput::new(Step::Accept, T0 + MIN, ""))
        .unwrap();
    let handle = StepInput::new(Step::Handle, T0 + 2 * MIN, "");
    assert_eq!(
        err(book.perform(id, &p.firm, handle)),
        StepError::OutOfOrder {
            expected: Step::Verify,
            got: Step::Handle
        }
    );
    let no_evidence = StepInput::new(Step::Verify, T0 + 2 * MIN, "looked");
    assert_eq!(
        err(book.perform(id, &p.inspector, no_evidence)),
        StepError::EvidenceRequired(Step::Verify)
    );
    let back_in_time = StepInput::new(Step::Verify, T0, "").with_evidence(photo("a"));
    assert!(matches!(
        err(book.perform(id, &p.inspector, back_in_time)),
        StepError::BeforePreviousRecord { .. }
    ));
    assert_eq!(
        book.case(id).unwrap().records().len(),
        1,
        "refused steps leave no record"
    );
}

#[test]
fn a_case_cannot_be_closed_by_its_handler() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    // The grid administrator (also a supervisor here) handles the case himself …
    book.perform(id, &p.admin, StepInput::new(Step::Accept, T0 + MIN, ""))
        .unwrap();
    book.perform(
        id,
        &p.admin,
        StepInput::new(Step::Verify, T0 + 2 * MIN, "").with_evidence(photo("p")),
    )
    .unwrap();
    book.perform(
        id,
        &p.admin,
        StepInput::new(Step::Handle, T0 + 3 * MIN, "reset the controller"),
    )
    .unwrap();
    book.perform(id, &p.admin, StepInput::new(Step::Feedback, T0 + 4 * MIN, "ok"))
        .unwrap();
    // … and may not review it, although he holds the supervisor role there.
    let review = StepInput::new(Step::Review, T0 + 5 * MIN, "fine");
    assert_eq!(
        book.perform(id, &p.admin, review.clone()),
        Err(CaseError::Step(StepError::ReviewerIsHandler))
    );
    assert!(book.case(id).unwrap().is_open());
    // The reviewer sends it back; it is handled again, by the firm, and then closed.
    book.perform(id, &p.supervisor, review.clone().return_for_rework())
        .unwrap();
    assert_eq!(book.case(id).unwrap().status(), Status::Verified);
    book.perform(
        id,
        &p.firm,
        StepInput::new(Step::Handle, T0 + 20 * MIN, "replaced relay"),
    )
    .unwrap();
    book.perform(id, &p.firm, StepInput::new(Step::Feedback, T0 + 21 * MIN, "ok"))
        .unwrap();
    assert_eq!(
        book.perform(id, &p.admin, StepInput::new(Step::Review, T0 + 22 * MIN, "")),
        Err(CaseError::Step(StepError::ReviewerIsHandler))
    );
    book.perform(
        id,
        &p.head,
        StepInput::new(Step::Review, T0 + 23 * MIN, "verified on site"),
    )
    .unwrap();
    let case = book.case(id).unwrap();
    assert_eq!((case.status(), case.records().len()), (Status::Closed, 8));
    assert_eq!(case.closed_at(), Some(T0 + 23 * MIN));
}

#[test]
fn each_step_only_for_its_roles_in_the_cases_grid() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    let accept = StepInput::new(Step::Accept, T0 + MIN, "");
    let e = book.perform(id, &p.firm, accept.clone()).unwrap_err();
    assert_eq!(
        e,
        CaseError::Step(StepError::WrongRole {
            step: Step::Accept,
            allowed: vec![Role::InformationOfficer, Role::GridAdministrator, Role::GridHead]
        })
    );
    book.perform(id, &p.head, accept).unwrap(); // a grid head of the area may accept
    let verify = StepInput::new(Step::Verify, T0 + 2 * MIN, "").with_evidence(photo("p"));
    let far = book.perform(id, &p.far_supervisor, verify.clone()).unwrap_err();
    assert_eq!(
        far,
        CaseError::Step(StepError::NotInGrid {
            step: Step::Verify,
            grid: GridCode::parse("010101").unwrap()
        })
    );
    book.perform(id, &p.supervisor, verify).unwrap();
    // Another firm's staff may not handle this firm's lift.
    let handle = StepInput::new(Step::Handle, T0 + 3 * MIN, "");
    assert!(matches!(
        book.perform(id, &p.other_firm, handle.clone()),
        Err(CaseError::Step(StepError::NotInGrid { .. }))
    ));
    book.perform(id, &p.firm, handle).unwrap();
    let bad = StepInput::new(Step::Feedback, T0 + 4 * MIN, "").return_for_rework();
    assert_eq!(
        book.perform(id, &p.firm, bad),
        Err(CaseError::Step(StepError::ReturnOutsideReview))
    );
}

#[test]
fn visibility_follows_grids_and_firms() {
    let cfg = CaseConfig::default();
    let p = people();
    let reg = registry();
    let mut book = CaseBook::default();
    trapped_case(&mut book, &cfg);
    let visible = |u: &User| reg.visible_devices(u).map(|d| d.id.clone()).collect::<Vec<_>>();
    assert_eq!(visible(&p.supervisor), [LIFT]);
    assert_eq!(visible(&p.far_supervisor), ["31103306242009000002"]);
    assert_eq!(visible(&p.firm), [LIFT]);
    assert_eq!(visible(&p.other_firm), ["31103306242009000002"]);
    assert_eq!(book.visible_cases(&p.firm).count(), 1);
    assert_eq!(book.visible_cases(&p.other_firm).count(), 0);
    assert_eq!(book.visible_cases(&p.far_supervisor).count(), 0);
}

#[test]
fn trapped_passenger_escalates_to_grid_head_then_96333_once_each() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    let levels = |esc: &[(CaseId, Escalation)]| esc.iter().map(|(_, e)| (e.level, e.step)).collect::<Vec<_>>();
    assert!(book.escalate_due(&cfg.deadlines, T0 + 5 * MIN - 1).is_empty());
    let first = book.escalate_due(&cfg.deadlines, T0 + 5 * MIN);
    assert_eq!(levels(&first), [(EscalationLevel::GridHead, Step::Accept)]);
    assert!(
        book.escalate_due(&cfg.deadlines, T0 + 6 * MIN).is_empty(),
        "each level once"
    );
    // Accepted late, rescue not on site after 30 min: the emergency service is called.
    book.perform(id, &p.officer, StepInput::new(Step::Accept, T0 + 7 * MIN, ""))
        .unwrap();
    let second = book.escalate_due(&cfg.deadlines, T0 + 30 * MIN);
    assert_eq!(levels(&second), [(EscalationLevel::EmergencyService, Step::Handle)]);
    assert!(book.escalate_due(&cfg.deadlines, T0 + 300 * MIN).is_empty());
    assert_eq!(book.case(id).unwrap().escalations().len(), 2);
    // Overdue statistics see the missed handling deadline.
    let overdue = overdue_cases(book.cases(), &cfg.deadlines, T0 + 40 * MIN);
    assert_eq!(
        (overdue.len(), overdue[0].step, overdue[0].overdue_s),
        (1, Step::Handle, 600)
    );
}

#[test]
fn rural_grids_get_the_rural_rescue_deadline_and_done_steps_do_not_escalate() {
    let cfg = CaseConfig {
        rural: vec![GridScope::parse("0203").unwrap()],
        ..CaseConfig::default()
    };
    let mut book = CaseBook::default();
    let rural = Report {
        subject: Subject::Device {
            id: "31103306242009000002".into(),
        },
        grid: GridCode::parse("020301").unwrap(),
        ..hotline_report(T0)
    };
    let id = book.submit(rural, &cfg).case();
    assert!(book.case(id).unwrap().rural);
    let case = book.case(id).unwrap();
    let levels = |now| {
        check_deadlines(case, &cfg.deadlines, now)
            .into_iter()
            .map(|e| e.level)
            .collect::<Vec<_>>()
    };
    assert_eq!(levels(T0 + 59 * MIN), [EscalationLevel::GridHead]);
    assert_eq!(
        levels(T0 + 60 * MIN),
        [EscalationLevel::GridHead, EscalationLevel::EmergencyService]
    );
    // A case whose steps were done in time never escalates.
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    book.perform(id, &p.officer, StepInput::new(Step::Accept, T0 + MIN, ""))
        .unwrap();
    book.perform(
        id,
        &p.inspector,
        StepInput::new(Step::Verify, T0 + 10 * MIN, "").with_evidence(photo("p")),
    )
    .unwrap();
    book.perform(id, &p.firm, StepInput::new(Step::Handle, T0 + 14 * MIN, ""))
        .unwrap();
    assert!(check_deadlines(book.case(id).unwrap(), &cfg.deadlines, T0 + 1000 * MIN).is_empty());
}

#[test]
fn statistics_by_grid_type_status_and_times_as_csv() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    book.perform(id, &p.officer, StepInput::new(Step::Accept, T0 + 2 * MIN, ""))
        .unwrap();
    book.perform(
        id,
        &p.inspector,
        StepInput::new(Step::Verify, T0 + 5 * MIN, "").with_evidence(photo("p")),
    )
    .unwrap();
    book.perform(id, &p.firm, StepInput::new(Step::Handle, T0 + 14 * MIN, ""))
        .unwrap();
    book.perform(id, &p.firm, StepInput::new(Step::Feedback, T0 + 15 * MIN, ""))
        .unwrap();
    book.perform(id, &p.supervisor, StepInput::new(Step::Review, T0 + 20 * MIN, ""))
        .unwrap();
    let other = Report {
        subject: Subject::Device {
            id: "31103306242009000002".into(),
        },
        grid: GridCode::parse("020301").unwrap(),
        case_type: CaseType::EquipmentFault,
        priority: Priority::High,
        ..hotline_report(T0)
    };
    book.submit(other, &cfg);

    let counts = count_cases(book.cases());
    assert_eq!(counts.len(), 2);
    assert_eq!(
        (counts[0].case_type, counts[0].status, counts[0].count),
        (CaseType::TrappedPassenger, Status::Closed, 1)
    );
    let csv = to_csv(&counts).unwrap();
    assert_eq!(
        csv,
        "grid,case_type,status,count\n010101,trapped_passenger,closed,1\n020301,equipment_fault,reported,1\n"
    );

    let times = timings_by_grid(book.cases());
    let all = times.last().unwrap();
    assert_eq!(
        (all.grid.as_str(), all.cases, all.accepted, all.closed),
        ("all", 2, 1, 1)
    );
    assert_eq!(
        (all.mean_response_s, all.p90_response_s, all.p90_close_s),
        (Some(120.0), Some(120), Some(1200))
    );
    let csv = to_csv(&times).unwrap();
    assert!(csv.starts_with("grid,cases,accepted,mean_response_s,p90_response_s,closed,mean_close_s,p90_close_s\n"));
    assert!(csv.contains("\n020301,1,0,,,0,,\n"), "{csv}");

    let ranking = rank_grids(book.cases(), &cfg.deadlines, T0 + 3 * 60 * MIN);
    assert_eq!(
        ranking.iter().map(|r| (r.rank, r.grid.to_string())).collect::<Vec<_>>(),
        [(1, "010101".into()), (2, "020301".into())]
    );
    assert_eq!((ranking[1].deadlines, ranking[1].deadlines_met), (1, 0));
}

#[test]
fn case_book_state_round_trips_through_json() {
    let cfg = CaseConfig::default();
    let mut book = CaseBook::default();
    trapped_case(&mut book, &cfg);
    book.escalate_due(&cfg.deadlines, T0 + 10 * MIN);
    let json = serde_json::to_string(&book).unwrap();
    assert_eq!(serde_json::from_str::<CaseBook>(&json).unwrap(), book);
    let cfg_json = serde_json::to_string(&cfg).unwrap();
    assert_eq!(serde_json::from_str::<CaseConfig>(&cfg_json).unwrap(), cfg);
    let partial: CaseConfig = serde_json::from_str(r#"{"rural": ["02"]}"#).unwrap();
    assert_eq!(partial.deadlines, DeadlineConfig::default());
}

/// Opens a trapped-passenger case from an alert raised at `raised` that arrived at `known`.
fn trapped_case_known_at(book: &mut CaseBook, cfg: &CaseConfig, raised: u64, known: u64) -> CaseId {
    let ev = alert(
        AlertKind::TrappedPassenger,
        Change::Raised,
        Severity::Critical,
        raised,
        raised,
    );
    let mut report = report_from_alert(&ev, &registry(), &cfg.rules).unwrap().unwrap();
    report.known_at = Some(known);
    book.submit(report, cfg).case()
}

#[test]
fn a_late_alert_opens_at_device_time_marked_late_with_deadlines_from_arrival() {
    let cfg = CaseConfig::default();
    let mut book = CaseBook::default();
    let id = trapped_case_known_at(&mut book, &cfg, T0, T0 + 25 * MIN);
    let case = book.case(id).unwrap();
    assert_eq!((case.opened_at, case.known_at, case.late), (T0, T0 + 25 * MIN, true));
    let due: Vec<u64> = case.deadlines(&cfg.deadlines).map(|d| d.due_at).collect();
    assert_eq!(due, [T0 + 30 * MIN, T0 + 55 * MIN], "counted from arrival");
    // Arriving 25 minutes late escalates nothing at once: the firm gets its full 5 minutes.
    assert!(book.escalate_due(&cfg.deadlines, T0 + 25 * MIN).is_empty());
    assert!(book.escalate_due(&cfg.deadlines, T0 + 30 * MIN - 1).is_empty());
    let first = book.escalate_due(&cfg.deadlines, T0 + 30 * MIN);
    assert_eq!(
        first.iter().map(|(_, e)| e.level).collect::<Vec<_>>(),
        [EscalationLevel::GridHead]
    );

    // Late is beyond the configured lateness (120 s by default), not at it.
    let mut book = CaseBook::default();
    let on_time = trapped_case_known_at(&mut book, &cfg, T0, T0 + 2 * MIN);
    assert!(!book.case(on_time).unwrap().late);
    let strict = CaseConfig {
        late_after_s: 60,
        ..CaseConfig::default()
    };
    let mut book = CaseBook::default();
    let late = trapped_case_known_at(&mut book, &strict, T0, T0 + 2 * MIN);
    assert!(book.case(late).unwrap().late);
    // A report without an arrival time is known when reported.
    let mut book = CaseBook::default();
    let id = book.submit(hotline_report(T0), &cfg).case();
    let case = book.case(id).unwrap();
    assert_eq!((case.known_at, case.late), (T0, false));
}

#[test]
fn firm_acknowledging_in_3_minutes_and_arriving_in_25_causes_no_escalation() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    let limits = &cfg.limits;
    let ack = book
        .respond(
            id,
            &p.firm,
            Response::Acknowledged,
            T0 + 3 * MIN,
            "on our way".into(),
            limits,
        )
        .unwrap();
    assert_eq!(
        (ack.actor.as_str(), ack.role, ack.at),
        ("mf04-zhang", Role::MaintenanceFirm, T0 + 3 * MIN)
    );
    assert!(book.escalate_due(&cfg.deadlines, T0 + 10 * MIN).is_empty());
    book.respond(
        id,
        &p.firm,
        Response::ArrivedOnSite,
        T0 + 25 * MIN,
        String::new(),
        limits,
    )
    .unwrap();
    assert!(book.escalate_due(&cfg.deadlines, T0 + 300 * MIN).is_empty());
    let case = book.case(id).unwrap();
    assert!(case.escalations().is_empty());
    assert_eq!(
        case.responses().iter().map(|r| (r.response, r.at)).collect::<Vec<_>>(),
        [
            (Response::Acknowledged, T0 + 3 * MIN),
            (Response::ArrivedOnSite, T0 + 25 * MIN)
        ]
    );
    let met: Vec<_> = case.deadlines(&cfg.deadlines).map(|d| d.done_at).collect();
    assert_eq!(met, [Some(T0 + 3 * MIN), Some(T0 + 25 * MIN)]);
    // The loop is the grid's: untouched by the responses, and the firm still cannot accept.
    assert_eq!((case.status(), case.records().len()), (Status::Reported, 0));
    assert!(matches!(
        book.perform(id, &p.firm, StepInput::new(Step::Accept, T0 + 26 * MIN, "")),
        Err(CaseError::Step(StepError::WrongRole { .. }))
    ));
    // Each response once.
    assert_eq!(
        book.respond(
            id,
            &p.firm,
            Response::Acknowledged,
            T0 + 27 * MIN,
            String::new(),
            limits
        ),
        Err(CaseError::Response(ResponseError::AlreadyRecorded {
            response: Response::Acknowledged,
            at: T0 + 3 * MIN
        }))
    );
}

#[test]
fn firm_acknowledging_in_7_minutes_still_escalates_to_the_grid_head() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    book.respond(
        id,
        &p.firm,
        Response::Acknowledged,
        T0 + 7 * MIN,
        String::new(),
        &cfg.limits,
    )
    .unwrap();
    // Met after it passed: the deadline was missed, even if no check ran in between.
    let first = book.escalate_due(&cfg.deadlines, T0 + 7 * MIN);
    assert_eq!(
        first.iter().map(|(_, e)| (e.level, e.step)).collect::<Vec<_>>(),
        [(EscalationLevel::GridHead, Step::Accept)]
    );
    // On site in 20 minutes: the rescue deadline holds, no emergency service.
    book.respond(
        id,
        &p.firm,
        Response::ArrivedOnSite,
        T0 + 20 * MIN,
        String::new(),
        &cfg.limits,
    )
    .unwrap();
    assert!(book.escalate_due(&cfg.deadlines, T0 + 300 * MIN).is_empty());
}

#[test]
fn arrival_alone_meets_the_acknowledgement_deadline_too() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    book.respond(
        id,
        &p.firm,
        Response::ArrivedOnSite,
        T0 + 4 * MIN,
        String::new(),
        &cfg.limits,
    )
    .unwrap();
    assert!(book.escalate_due(&cfg.deadlines, T0 + 300 * MIN).is_empty());
}

#[test]
fn resolution_meets_the_acceptance_and_rescue_deadlines_once_and_leaves_the_loop_to_the_grid() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    let resolved = book
        .respond(
            id,
            &p.firm,
            Response::Resolved,
            T0 + 4 * MIN,
            "passenger freed".into(),
            &cfg.limits,
        )
        .unwrap();
    assert_eq!((resolved.role, resolved.at), (Role::MaintenanceFirm, T0 + 4 * MIN));
    assert!(book.escalate_due(&cfg.deadlines, T0 + 300 * MIN).is_empty());
    let case = book.case(id).unwrap();
    let met: Vec<_> = case.deadlines(&cfg.deadlines).map(|d| d.done_at).collect();
    assert_eq!(met, [Some(T0 + 4 * MIN), Some(T0 + 4 * MIN)]);
    assert_eq!((case.status(), case.records().len()), (Status::Reported, 0));
    assert!(matches!(
        book.respond(
            id,
            &p.firm,
            Response::Resolved,
            T0 + 5 * MIN,
            String::new(),
            &cfg.limits
        ),
        Err(CaseError::Response(ResponseError::AlreadyRecorded { .. }))
    ));
}

#[test]
fn only_the_maintaining_firm_or_a_grid_administrator_responds() {
    let cfg = CaseConfig::default();
    let p = people();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    let respond = |book: &mut CaseBook, user: &User, response| {
        book.respond(id, user, response, T0 + MIN, String::new(), &cfg.limits)
    };
    assert_eq!(
        respond(&mut book, &p.other_firm, Response::Acknowledged),
        Err(CaseError::Response(ResponseError::NotInGrid {
            grid: GridCode::parse("010101").unwrap()
        }))
    );
    assert!(matches!(
        respond(&mut book, &p.supervisor, Response::ArrivedOnSite),
        Err(CaseError::Response(ResponseError::WrongRole { .. }))
    ));
    assert!(matches!(
        respond(&mut book, &p.head, Response::ArrivedOnSite),
        Err(CaseError::Response(ResponseError::WrongRole { .. }))
    ));
    let by_admin = respond(&mut book, &p.admin, Response::ArrivedOnSite).unwrap();
    assert_eq!(by_admin.role, Role::GridAdministrator);
    // Not before the case was known, and never on a closed case.
    assert_eq!(
        book.respond(id, &p.firm, Response::Acknowledged, T0 - 1, String::new(), &cfg.limits),
        Err(CaseError::Response(ResponseError::BeforeKnown { known_at: T0 }))
    );
    close(&mut book, id, &p);
    assert_eq!(
        respond(&mut book, &p.firm, Response::Acknowledged),
        Err(CaseError::Response(ResponseError::AlreadyClosed))
    );
}

/// Takes case `id` through the whole loop.
fn close(book: &mut CaseBook, id: CaseId, p: &People) {
    book.perform(id, &p.officer, StepInput::new(Step::Accept, T0 + 2 * MIN, ""))
        .unwrap();
    book.perform(
        id,
        &p.inspector,
        StepInput::new(Step::Verify, T0 + 3 * MIN, "").with_evidence(photo("p")),
    )
    .unwrap();
    book.perform(id, &p.firm, StepInput::new(Step::Handle, T0 + 4 * MIN, ""))
        .unwrap();
    book.perform(id, &p.firm, StepInput::new(Step::Feedback, T0 + 5 * MIN, ""))
        .unwrap();
    book.perform(id, &p.supervisor, StepInput::new(Step::Review, T0 + 6 * MIN, ""))
        .unwrap();
}

#[test]
fn step_notes_and_evidence_are_bounded_naming_the_limit() {
    let limits = ReportLimits::default();
    let step = |note: String| StepInput::new(Step::Verify, T0, note);
    assert_eq!(step("x".repeat(limits.note_chars)).check(&limits), Ok(()));
    let e = step("说".repeat(limits.note_chars + 1)).check(&limits).unwrap_err();
    assert_eq!(e.to_string(), "field note: 4001 characters, at most 4000");
    let mut many = step(String::new());
    many.evidence = vec![photo("p"); limits.evidence_per_step + 1];
    assert_eq!(
        many.check(&limits).unwrap_err().to_string(),
        "field evidence: 21 items, at most 20"
    );
    let long = step(String::new())
        .with_evidence(photo("p"))
        .with_evidence(photo(&"r".repeat(1_001)));
    assert_eq!(
        long.check(&limits).unwrap_err().to_string(),
        "field evidence[1].reference: 1001 characters, at most 1000"
    );
    // A response's note too.
    let cfg = CaseConfig::default();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    let refused = book.respond(
        id,
        &people().firm,
        Response::Acknowledged,
        T0,
        "x".repeat(4_001),
        &cfg.limits,
    );
    assert!(matches!(refused, Err(CaseError::TooLarge(StepTooLarge { ref field, .. })) if field == "note"));
    assert!(book.case(id).unwrap().responses().is_empty());
}

#[test]
fn a_case_stored_before_arrival_times_loads_as_known_when_raised() {
    let cfg = CaseConfig::default();
    let mut book = CaseBook::default();
    let id = trapped_case(&mut book, &cfg);
    let mut json = serde_json::to_value(book.case(id).unwrap()).unwrap();
    for field in ["known_at", "late", "responses"] {
        json.as_object_mut().unwrap().remove(field).unwrap();
    }
    let old: Case = serde_json::from_value(json).unwrap();
    assert_eq!((old.known_at, old.late), (old.opened_at, false));
    assert!(old.responses().is_empty());
    assert_eq!(&old, book.case(id).unwrap());
}
