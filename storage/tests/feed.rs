//! The feed table on every backend: `domain::save` writes one row per alert event new
//! to the store, per case opened, audit record, escalation and firm response, in the
//! save's transaction; a replay writes none; walls read the grid and firm kept in each
//! row; ids are never given twice and commit in order; retention prunes by event time.
mod common;

use common::{Backend, T0, TestDb, alerting_on};
use gridwatch_alerts::{AlertEvent, AlertKey, AlertKind, Change, Details, Severity};
use gridwatch_cases::{
    Assignment, CaseType, Channel, Decision, Evidence, EvidenceKind, GridCode, GridScope, Priority, Report, Response,
    Role, Step, StepInput, Subject, User,
};
use gridwatch_storage::Store;
use gridwatch_storage::domain::{DomainChanges, save};
use gridwatch_storage::feed::{self, FeedRow, Place, Walls};
use gridwatch_storage::retention::{Retention, prune};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

conformance!(
    every_saved_change_has_one_feed_row_and_a_replay_none,
    a_case_feeds_its_opening_escalations_responses_and_steps,
    feed_ids_commit_in_order_under_concurrent_writers,
    retention_prunes_the_feed_by_event_time_and_ids_are_never_reused,
);

const MINUTE: u64 = 60_000;
const DAY: u64 = 86_400_000;

fn alert(device: &str, change: Change, revision: u32, at: u64) -> AlertEvent {
    AlertEvent {
        key: AlertKey {
            device: device.into(),
            kind: AlertKind::Fault(7),
        },
        change,
        severity: Severity::Major,
        raised_at: T0,
        at,
        revision,
        acknowledged_by: (change == Change::Acknowledged).then(|| "firm-MF04".to_string()),
        details: Details::Fault {
            code: 7,
            name: "safety circuit open".into(),
        },
    }
}

fn placed(device: &str, grid: &str, firm: Option<&str>) -> HashMap<String, Place> {
    HashMap::from([(
        device.to_string(),
        Place {
            grid: grid.into(),
            firm: firm.map(str::to_string),
        },
    )])
}

/// The rows `walls` let through, read with the walls in SQL; checked against every row
/// filtered in memory by `Walls::admits` (the live feed's shared tail filters that way).
async fn all_rows(store: &Store, walls: &Walls) -> Vec<FeedRow> {
    let upto = feed::last_id(store).await.unwrap();
    let rows = feed::page(store, walls, 0, upto, 10_000).await.unwrap();
    let mut admitted = feed::page(store, &Walls::All, 0, upto, 10_000).await.unwrap();
    admitted.retain(|r| walls.admits(r.grid.as_deref(), r.firm.as_deref()));
    assert_eq!(
        rows, admitted,
        "Walls::admits lets through what the SQL does ({walls:?})"
    );
    rows
}

fn types(rows: &[FeedRow]) -> Vec<&str> {
    rows.iter().map(|r| r.event.as_str()).collect()
}

fn json(row: &FeedRow) -> Value {
    let v: Value = serde_json::from_str(&row.data()).unwrap();
    assert_eq!(v["id"], row.id, "{v}");
    assert_eq!(v["type"], row.event.as_str(), "{v}");
    v
}

fn only(grids: &[&str], firms: &[&str]) -> Walls {
    Walls::Only {
        grids: grids.iter().map(|g| g.to_string()).collect(),
        firms: firms.iter().map(|f| f.to_string()).collect(),
    }
}

async fn every_saved_change_has_one_feed_row_and_a_replay_none(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    assert_eq!(feed::last_id(&store).await.unwrap(), 0);

    // A registered lift of firm MF04 in grid 010101, and a device outside the register.
    let events = [
        alert("L-1", Change::Raised, 0, T0),
        alert("L-1", Change::Acknowledged, 1, T0 + MINUTE),
    ];
    let changes = DomainChanges {
        events: &events,
        places: placed("L-1", "010101", Some("MF04")),
        ..Default::default()
    };
    let saved = save(&store, &changes).await.unwrap();
    let stranger = [alert("X-9", Change::Raised, 0, T0 + 2 * MINUTE)];
    save(
        &store,
        &DomainChanges {
            events: &stranger,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let rows = all_rows(&store, &Walls::All).await;
    assert_eq!(types(&rows), ["alert.raised", "alert.acknowledged", "alert.raised"]);
    assert_eq!(saved.feed_last, Some(rows[1].id), "save names the last id it wrote");
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));

    let raised = json(&rows[0]);
    assert_eq!(raised["device_id"], "L-1");
    assert_eq!(raised["grid"], "010101");
    assert_eq!(raised["firm"], "MF04");
    assert_eq!(raised["at_ms"], T0);
    assert_eq!(raised["at"], "2025-11-25T09:00:00.000Z");
    assert_eq!(raised["alert"]["kind"], "fault:7");
    assert_eq!(raised["alert"]["revision"], 0);
    assert_eq!(raised["alert"]["raised_at_ms"], T0);
    assert_eq!(raised["alert"]["raised_at"], "2025-11-25T09:00:00.000Z");
    assert_eq!(raised["alert"]["details"]["code"], 7);
    assert_eq!(json(&rows[1])["alert"]["acknowledged_by"], "firm-MF04");
    assert_eq!(json(&rows[2])["grid"], Value::Null);

    // The same events again (a replay after a restart): the store has them, the feed too.
    let again = save(&store, &changes).await.unwrap();
    assert_eq!(again.feed_last, None);
    assert_eq!(all_rows(&store, &Walls::All).await, rows);

    // Walls: by grid scope, by firm; a device outside the register only in open mode.
    let ids = |rows: Vec<FeedRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    let lift = vec![rows[0].id, rows[1].id];
    assert_eq!(ids(all_rows(&store, &only(&["01"], &[])).await), lift);
    assert_eq!(ids(all_rows(&store, &only(&["010101"], &[])).await), lift);
    assert_eq!(ids(all_rows(&store, &only(&[], &["MF04"])).await), lift);
    assert!(all_rows(&store, &only(&["02", "0102"], &["MF01"])).await.is_empty());
    assert!(all_rows(&store, &only(&[], &[])).await.is_empty());

    // Pages: bounded by `limit` and by `upto`, resumed after an id.
    let first = feed::page(&store, &Walls::All, 0, rows[2].id, 1).await.unwrap();
    assert_eq!(ids(first), [rows[0].id]);
    let rest = feed::page(&store, &Walls::All, rows[0].id, rows[1].id, 10)
        .await
        .unwrap();
    assert_eq!(ids(rest), [rows[1].id]);
}

fn grid_user(id: &str, role: Role) -> User {
    User {
        id: id.into(),
        name: id.into(),
        assignments: vec![Assignment::Grid {
            role,
            scope: GridScope::parse("0101").unwrap(),
        }],
    }
}

async fn a_case_feeds_its_opening_escalations_responses_and_steps(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let alerting = alerting_on(&store).await;
    let mut domain = alerting.domain.lock().await;
    let wake = alerting.feed();
    let report = Report {
        channel: Channel::Hotline96333,
        subject: Subject::Device { id: "L-1".into() },
        case_type: CaseType::TrappedPassenger,
        grid: GridCode::parse("010101").unwrap(),
        firm: Some("MF04".into()),
        priority: Priority::Urgent,
        at: T0,
        known_at: None,
        description: "caller stuck in lift".into(),
        reporter: Some("96333".into()),
        alert: None,
    };
    let (intake, fx) = domain.report(report);
    alerting.save(&mut domain, fx).await;
    assert!(
        wake.has_changed().unwrap(),
        "a save that wrote feed rows wakes subscribers"
    );
    let id = intake.case();

    // Nobody answers for two hours: the deadlines escalate it.
    let fx = domain.tick(T0 + 120 * MINUTE);
    alerting.save(&mut domain, fx).await;
    let escalations = domain.book().case(id).unwrap().escalations().len();
    assert!(escalations > 0);
    // Ticking again escalates nothing twice, and feeds nothing.
    let fx = domain.tick(T0 + 121 * MINUTE);
    alerting.save(&mut domain, fx).await;

    let firm = User {
        id: "firm-MF04".into(),
        name: "MF04".into(),
        assignments: vec![Assignment::Firm { firm: "MF04".into() }],
    };
    let at = T0 + 122 * MINUTE;
    let (_, fx) = domain
        .respond(id, &firm, Response::Acknowledged, "on our way".into(), at)
        .unwrap();
    alerting.save(&mut domain, fx).await;
    let evidence = vec![Evidence {
        kind: EvidenceKind::Photo,
        reference: "file://evidence/1.jpg".into(),
    }];
    let steps = [
        (Step::Accept, grid_user("officer", Role::InformationOfficer), vec![]),
        (Step::Verify, grid_user("inspector", Role::Inspector), evidence),
        (Step::Handle, firm.clone(), vec![]),
        (Step::Feedback, firm.clone(), vec![]),
        (Step::Review, grid_user("supervisor", Role::Supervisor), vec![]),
    ];
    for (n, (step, user, evidence)) in steps.into_iter().enumerate() {
        let input = StepInput {
            step,
            decision: Decision::Proceed,
            at: at + (n as u64 + 1) * MINUTE,
            note: format!("step {n}"),
            evidence,
        };
        let (_, fx) = domain.perform(id, &user, input).unwrap();
        alerting.save(&mut domain, fx).await;
    }
    drop(domain);

    let rows = all_rows(&store, &Walls::All).await;
    let mut expected = vec!["case.opened"];
    expected.extend(std::iter::repeat_n("case.escalated", escalations));
    expected.extend([
        "case.acknowledged",
        "case.step",
        "case.step",
        "case.step",
        "case.step",
        "case.closed",
    ]);
    assert_eq!(types(&rows), expected);
    assert_eq!(*alerting.feed().borrow(), rows.last().unwrap().id);
    for row in &rows {
        let v = json(row);
        assert_eq!(v["case_id"], id, "{v}");
        assert_eq!((v["grid"].as_str(), v["firm"].as_str()), (Some("010101"), Some("MF04")));
        assert_eq!(v["device_id"], "L-1");
        assert_eq!(v["case_type"], "trapped_passenger");
    }
    let opened = json(&rows[0]);
    assert_eq!(opened["case"]["description"], "caller stuck in lift");
    assert_eq!(opened["case"]["channel"], "hotline96333");
    assert_eq!(opened["case"]["opened_at_ms"], T0);
    let escalated = json(&rows[1]);
    assert_eq!(escalated["escalation"]["n"], 0);
    assert!(escalated["escalation"]["deadline_at_ms"].as_u64().unwrap() > T0);
    let acknowledged = json(&rows[1 + escalations]);
    assert_eq!(acknowledged["response"]["actor"], "firm-MF04");
    assert_eq!(acknowledged["at_ms"], at);
    let verify = json(&rows[3 + escalations]);
    assert_eq!(verify["step"]["step"], "verify");
    assert_eq!(verify["step"]["n"], 1);
    assert_eq!(verify["step"]["evidence"][0]["reference"], "file://evidence/1.jpg");
    let closed = json(rows.last().unwrap());
    assert_eq!(
        (closed["step"]["step"].as_str(), closed["step"]["n"].as_u64()),
        (Some("review"), Some(4))
    );

    // A restart loads the cases as stored: nothing of them is fed again.
    let reloaded = alerting_on(&store).await;
    let mut domain = reloaded.domain.lock().await;
    let fx = domain.tick(T0 + 300 * MINUTE);
    reloaded.save(&mut domain, fx).await;
    assert_eq!(all_rows(&store, &Walls::All).await, rows);
}

/// Saves from two stores on one database (two processes) at once while a reader checks
/// that once it has seen id `n`, no row at or below `n` appears later.
async fn feed_ids_commit_in_order_under_concurrent_writers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (a, b) = (db.open().await, db.open().await);
    const SAVES: u64 = 120;
    let writer = |store: Store, device: &'static str| async move {
        for i in 0..SAVES {
            let events = [
                alert(device, Change::Raised, 0, T0 + i),
                alert(device, Change::Updated, 1, T0 + i),
            ];
            let events: Vec<AlertEvent> = events
                .into_iter()
                .map(|mut e| {
                    e.raised_at = T0 + i;
                    e
                })
                .collect();
            let changes = DomainChanges {
                events: &events,
                ..Default::default()
            };
            save(&store, &changes).await.unwrap();
        }
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let reader = async {
        let mut checks = 0u32;
        let mut seen: Vec<FeedRow> = Vec::new();
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst);
            let upto = feed::last_id(&a).await.unwrap();
            let now = feed::page(&a, &Walls::All, 0, upto, 100_000).await.unwrap();
            // What was visible up to an earlier `upto` is exactly what is visible now below it.
            let before: Vec<&FeedRow> = now.iter().filter(|r| r.id <= seen.last().map_or(0, |l| l.id)).collect();
            assert_eq!(before.len(), seen.len(), "a row appeared below an id already seen");
            seen = now;
            checks += 1;
            if finished {
                return checks;
            }
        }
    };
    let writers = async {
        tokio::join!(writer(a.clone(), "L-a"), writer(b.clone(), "L-b"));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let (checks, ()) = tokio::join!(reader, writers);
    assert!(checks > 1);
    let rows = all_rows(&a, &Walls::All).await;
    assert_eq!(rows.len() as u64, 4 * SAVES);
}

async fn retention_prunes_the_feed_by_event_time_and_ids_are_never_reused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let now = T0 + 100 * DAY;
    let retention = Retention {
        step_rows: 3,
        pause: Duration::ZERO,
        ..Retention::days(90)
    };
    let cutoff = retention.cutoff_ms(now as i64) as u64;
    // 7 events before the cutoff, one exactly at it, 2 after; the newest id an old one.
    let mut times: Vec<u64> = (0..7).map(|i| T0 + i * MINUTE).collect();
    times.extend([cutoff, cutoff + MINUTE, cutoff + 2 * MINUTE]);
    times.push(T0 + DAY);
    for (i, at) in times.iter().enumerate() {
        let mut event = alert("L-1", Change::Raised, 0, *at);
        event.raised_at = T0 + i as u64;
        save(
            &store,
            &DomainChanges {
                events: &[event],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let before = all_rows(&store, &Walls::All).await;
    let newest = before.last().unwrap().id;
    let pass = prune(&store, &retention, now as i64).await.unwrap();
    assert_eq!(pass.feed_pruned, 8, "{pass:?}");
    let kept: Vec<u64> = all_rows(&store, &Walls::All)
        .await
        .iter()
        .map(|r| json(r)["at_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [cutoff, cutoff + MINUTE, cutoff + 2 * MINUTE]);
    // The newest row went: the next id is still above it, so a Last-Event-ID stays valid.
    assert!(feed::last_id(&store).await.unwrap() < newest);
    let later = [alert("L-2", Change::Raised, 0, now)];
    let saved = save(
        &store,
        &DomainChanges {
            events: &later,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(saved.feed_last.unwrap() > newest, "{saved:?} after {newest}");
    assert_eq!(prune(&store, &retention, now as i64).await.unwrap().feed_pruned, 0);
}
