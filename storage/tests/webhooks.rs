//! The webhook outbox on every backend: an endpoint starts at the newest feed row, queues
//! only its firm's rows, each once, in feed order and a page at a time; attempts move a
//! delivery to delivered or parked, never back but by a redrive; removing an endpoint
//! takes its log with it.
mod common;

use common::{Backend, T0, TestDb};
use gridwatch_alerts::{AlertEvent, AlertKey, AlertKind, Change, Details, Severity};
use gridwatch_storage::Store;
use gridwatch_storage::domain::{DomainChanges, save};
use gridwatch_storage::feed::{self, Place};
use gridwatch_storage::webhooks::{self as hooks, Attempt, NewEndpoint, Status};
use std::collections::HashMap;

conformance!(
    an_endpoint_queues_its_firms_rows_once_in_order_from_when_it_was_added,
    attempts_deliver_or_park_and_only_a_redrive_brings_a_parked_one_back,
    removing_an_endpoint_takes_its_deliveries_and_stops_its_queue,
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Saves a raised fault alert of `device`, placed with `firm`; returns its feed id.
async fn raise(store: &Store, device: &str, firm: &str, at: u64) -> i64 {
    let events = [AlertEvent {
        key: AlertKey {
            device: device.into(),
            kind: AlertKind::Fault(7),
        },
        change: Change::Raised,
        severity: Severity::Major,
        raised_at: at,
        at,
        revision: 0,
        acknowledged_by: None,
        details: Details::Fault {
            code: 7,
            name: "safety circuit open".into(),
        },
    }];
    let places = HashMap::from([(
        device.to_string(),
        Place {
            grid: "010101".into(),
            firm: Some(firm.into()),
        },
    )]);
    let saved = save(
        &store.clone(),
        &DomainChanges {
            events: &events,
            places,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    saved.feed_last.unwrap()
}

async fn add(store: &Store, firm: &str) -> hooks::Endpoint {
    hooks::add_endpoint(
        store,
        &NewEndpoint {
            firm,
            url: "https://mf.example/hooks",
            secret: SECRET,
            created_by: "mf-zhang",
            at: T0 as i64,
        },
    )
    .await
    .unwrap()
}

async fn feed_ids(store: &Store, endpoint: i64, status: Option<Status>) -> Vec<i64> {
    hooks::deliveries(store, endpoint, status, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|d| d.feed_id)
        .collect()
}

async fn an_endpoint_queues_its_firms_rows_once_in_order_from_when_it_was_added(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let before = raise(&store, "L-1", "MF04", T0).await;
    let endpoint = add(&store, "MF04").await;
    assert_eq!(
        endpoint.feed_cursor, before,
        "a new endpoint gets what happens from now"
    );
    assert_eq!(
        hooks::endpoints(&store, Some("MF04")).await.unwrap(),
        std::slice::from_ref(&endpoint)
    );
    assert!(hooks::endpoints(&store, Some("MF01")).await.unwrap().is_empty());

    let a = raise(&store, "L-1", "MF04", T0 + 1).await;
    let other = raise(&store, "L-9", "MF01", T0 + 2).await;
    let b = raise(&store, "L-2", "MF04", T0 + 3).await;
    let c = raise(&store, "L-3", "MF04", T0 + 4).await;
    let upto = feed::last_id(&store).await.unwrap();
    assert_eq!(upto, c);

    // Two a page: the cursor stops at the page's last row, then passes the rest.
    let now = T0 as i64 + 10;
    assert_eq!(
        hooks::enqueue(&store, endpoint.id, upto, 2, now).await.unwrap(),
        Some(2)
    );
    assert_eq!(feed_ids(&store, endpoint.id, None).await, [a, b]);
    assert_eq!(
        hooks::enqueue(&store, endpoint.id, upto, 2, now).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        hooks::enqueue(&store, endpoint.id, upto, 2, now).await.unwrap(),
        Some(0)
    );
    assert_eq!(
        feed_ids(&store, endpoint.id, None).await,
        [a, b, c],
        "never another firm's {other}"
    );
    assert_eq!(
        hooks::endpoint(&store, endpoint.id).await.unwrap().unwrap().feed_cursor,
        upto
    );

    let next = hooks::next_pending(&store, endpoint.id).await.unwrap().unwrap();
    assert_eq!(
        (next.feed_id, next.status, next.attempts, next.next_at),
        (a, Status::Pending, 0, now)
    );
    let payload: serde_json::Value = serde_json::from_str(&next.payload()).unwrap();
    assert_eq!(
        (payload["id"].as_i64(), &payload["firm"]),
        (Some(a), &serde_json::json!("MF04"))
    );
    assert_eq!(payload["type"], "alert.raised");
}

async fn attempts_deliver_or_park_and_only_a_redrive_brings_a_parked_one_back(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let endpoint = add(&store, "MF04").await;
    let a = raise(&store, "L-1", "MF04", T0).await;
    let b = raise(&store, "L-1", "MF04", T0 + 1).await;
    let now = T0 as i64;
    let upto = feed::last_id(&store).await.unwrap();
    hooks::enqueue(&store, endpoint.id, upto, 100, now).await.unwrap();

    let first = hooks::next_pending(&store, endpoint.id).await.unwrap().unwrap();
    let retry = Attempt::Retry {
        at: now + 1,
        status: Some(500),
        error: "HTTP 500 Internal Server Error".into(),
        next_at: now + 5_000,
    };
    assert!(hooks::record(&store, first.id, &retry).await.unwrap());
    let again = hooks::next_pending(&store, endpoint.id).await.unwrap().unwrap();
    assert_eq!(
        (again.id, again.attempts, again.next_at),
        (first.id, 1, now + 5_000),
        "it holds the line"
    );
    assert_eq!(
        (again.last_status, again.last_error.as_deref()),
        (Some(500), Some("HTTP 500 Internal Server Error"))
    );

    let parked = Attempt::Parked {
        at: now + 6_000,
        status: None,
        error: "timed out".into(),
    };
    assert!(hooks::record(&store, first.id, &parked).await.unwrap());
    assert_eq!(hooks::parked(&store).await.unwrap(), 1);
    assert_eq!(feed_ids(&store, endpoint.id, Some(Status::Parked)).await, [a]);
    // Parked, the endpoint moves on.
    let second = hooks::next_pending(&store, endpoint.id).await.unwrap().unwrap();
    assert_eq!(second.feed_id, b);
    let delivered = Attempt::Delivered {
        at: now + 7_000,
        status: 204,
    };
    assert!(hooks::record(&store, second.id, &delivered).await.unwrap());
    assert!(
        !hooks::record(&store, second.id, &delivered).await.unwrap(),
        "a delivered one is never tried again"
    );
    assert!(hooks::next_pending(&store, endpoint.id).await.unwrap().is_none());

    // A redrive: pending again, a fresh budget, due now; only a parked one.
    assert!(
        !hooks::redrive(&store, endpoint.id, second.id, now + 8_000)
            .await
            .unwrap()
    );
    assert!(
        !hooks::redrive(&store, endpoint.id + 1, first.id, now + 8_000)
            .await
            .unwrap()
    );
    assert!(
        hooks::redrive(&store, endpoint.id, first.id, now + 8_000)
            .await
            .unwrap()
    );
    let back = hooks::next_pending(&store, endpoint.id).await.unwrap().unwrap();
    assert_eq!(
        (back.id, back.attempts, back.queued_at, back.next_at),
        (first.id, 0, now + 8_000, now + 8_000)
    );
    assert_eq!(hooks::parked(&store).await.unwrap(), 0);

    // The log pages by delivery id; delivered ones are pruned after a while, nothing else.
    let page = hooks::deliveries(&store, endpoint.id, None, 0, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    let rest = hooks::deliveries(&store, endpoint.id, None, page[0].id, 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(hooks::prune_delivered(&store, now + 7_000, 100).await.unwrap(), 0);
    assert_eq!(hooks::prune_delivered(&store, now + 7_001, 100).await.unwrap(), 1);
    assert_eq!(feed_ids(&store, endpoint.id, None).await, [a]);
}

async fn removing_an_endpoint_takes_its_deliveries_and_stops_its_queue(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let endpoint = add(&store, "MF04").await;
    let kept = add(&store, "MF04").await;
    raise(&store, "L-1", "MF04", T0).await;
    let upto = feed::last_id(&store).await.unwrap();
    hooks::enqueue(&store, endpoint.id, upto, 100, T0 as i64).await.unwrap();
    hooks::enqueue(&store, kept.id, upto, 100, T0 as i64).await.unwrap();
    assert!(hooks::remove_endpoint(&store, endpoint.id).await.unwrap());
    assert!(!hooks::remove_endpoint(&store, endpoint.id).await.unwrap());
    assert!(hooks::endpoint(&store, endpoint.id).await.unwrap().is_none());
    assert!(feed_ids(&store, endpoint.id, None).await.is_empty());
    assert_eq!(
        hooks::enqueue(&store, endpoint.id, upto, 100, T0 as i64).await.unwrap(),
        None
    );
    assert_eq!(
        feed_ids(&store, kept.id, None).await.len(),
        1,
        "the other endpoint keeps its own"
    );
    let again = add(&store, "MF04").await;
    assert!(again.id > kept.id, "ids are never given twice");
}
