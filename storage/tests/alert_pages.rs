//! Alert lists for the API: the caller's walls apply in the query, before the page
//! limit, and pages follow the arrival order (the row id), on every backend.
mod common;

use common::{Backend, T0, TestDb};
use gridwatch_alerts::{AlertEvent, AlertKey, AlertKind, Change, Details, Severity};
use gridwatch_storage::Store;
use gridwatch_storage::domain::{DomainChanges, save};
use gridwatch_storage::query::{Devices, alerts_page};

/// 2099-01-01T00:00:00Z: a device clock far ahead.
const Y2099: u64 = 4_070_908_800_000;

fn event(device: &str, change: Change, raised_at: u64, revision: u32) -> AlertEvent {
    AlertEvent {
        key: AlertKey {
            device: device.into(),
            kind: AlertKind::Fault(7),
        },
        change,
        severity: Severity::Major,
        raised_at,
        at: raised_at + u64::from(revision),
        revision,
        acknowledged_by: None,
        details: Details::Fault {
            code: 7,
            name: "safety circuit open".into(),
        },
    }
}

async fn store(store: &Store, events: &[AlertEvent]) {
    let changes = DomainChanges {
        events,
        ..Default::default()
    };
    save(store, &changes).await.unwrap();
}

/// Every page of `devices`' alerts, `limit` at a time: (ids per page, device ids in order).
async fn all_pages(s: &Store, open_only: bool, devices: Devices<'_>, limit: i64) -> (Vec<Vec<i64>>, Vec<String>) {
    let (mut pages, mut order, mut after) = (Vec::new(), Vec::new(), 0);
    loop {
        let page = alerts_page(s, open_only, devices, after, limit).await.unwrap();
        assert!(page.items.len() as i64 <= limit);
        pages.push(page.items.iter().map(|a| a.id).collect());
        order.extend(page.items.iter().map(|a| a.device_id.clone()));
        match page.next {
            Some(next) => after = next,
            None => return (pages, order),
        }
        assert!(pages.len() < 10_000, "paging does not end");
    }
}

async fn foreign_far_future_alerts_hide_none_of_the_callers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.open().await;
    let mine: Vec<String> = (0..5).map(|i| format!("mine-{i}")).collect();
    let events: Vec<AlertEvent> = mine.iter().map(|d| event(d, Change::Raised, T0, 0)).collect();
    store(&s, &events).await;
    let foreign: Vec<AlertEvent> = (0..1000)
        .map(|i| event(&format!("fake-{i:04}"), Change::Raised, Y2099 + i, 0))
        .collect();
    store(&s, &foreign).await;

    let page = alerts_page(&s, true, Devices::Only(&mine), 0, 1000).await.unwrap();
    let seen: Vec<&str> = page.items.iter().map(|a| a.device_id.as_str()).collect();
    assert_eq!(seen, mine, "the caller's open alerts, none of the 1,000 foreign ones");
    assert_eq!(page.next, None);
    // Open mode sees everything, a page at a time, and is told there is more.
    let first = alerts_page(&s, true, Devices::All, 0, 1000).await.unwrap();
    assert_eq!(first.items.len(), 1000);
    assert_eq!(first.next, Some(first.items[999].id));
    let rest = alerts_page(&s, true, Devices::All, first.next.unwrap(), 1000)
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 5);
    assert_eq!(rest.next, None);
}

async fn cursor_pages_hold_every_alert_once_in_arrival_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.open().await;
    // Device times out of order (a far-future one among them): arrival order must win.
    let times = [T0 + 50, Y2099, T0, T0 + 7, T0 - 1000, T0 + 3, Y2099 - 1, T0 + 1];
    let mut arrived = Vec::new();
    for round in 0..4 {
        for (i, ts) in times.iter().enumerate() {
            let device = format!("{}-{round}-{i}", if i % 2 == 0 { "mine" } else { "theirs" });
            store(&s, &[event(&device, Change::Raised, *ts, 0)]).await;
            arrived.push(device);
        }
    }
    // Later events of early alerts move nothing; a cleared one leaves the open list.
    store(&s, &[event("mine-0-0", Change::Updated, times[0], 1)]).await;
    store(&s, &[event("mine-0-2", Change::Cleared, times[2], 1)]).await;

    let mine: Vec<String> = arrived.iter().filter(|d| d.starts_with("mine")).cloned().collect();
    for limit in [1, 3, 4, 16, 1000] {
        let (pages, order) = all_pages(&s, false, Devices::Only(&mine), limit).await;
        assert_eq!(order, mine, "limit {limit}: every alert once, in arrival order");
        let ids: Vec<i64> = pages.concat();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "limit {limit}: {ids:?}");
        let (_, everything) = all_pages(&s, false, Devices::All, limit).await;
        assert_eq!(everything, arrived, "limit {limit}");
    }
    let open: Vec<String> = mine.iter().filter(|d| *d != "mine-0-2").cloned().collect();
    let (_, order) = all_pages(&s, true, Devices::Only(&mine), 3).await;
    assert_eq!(order, open);
    let none = alerts_page(&s, false, Devices::Only(&[]), 0, 10).await.unwrap();
    assert!(none.items.is_empty() && none.next.is_none());
}

conformance!(
    foreign_far_future_alerts_hide_none_of_the_callers,
    cursor_pages_hold_every_alert_once_in_arrival_order,
);
