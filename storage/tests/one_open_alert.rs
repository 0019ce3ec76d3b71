//! Invariant 4 in the database: one open alert per device and kind (the partial
//! unique index `alerts_one_open`), on SQLite and on PostgreSQL, each test in a
//! fresh database as in `storage_conformance.rs` (PostgreSQL from
//! `GRIDWATCH_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`; never skipped).
mod common;

use common::{Backend, T0, TestDb, alerting_on, execute, lift_at};
use gridwatch_alerts::{AlertEvent, AlertKey, AlertKind, Change, Details, Severity};
use gridwatch_storage::Store;
use gridwatch_storage::model::Accepted;
use std::time::Duration;

const MINUTE: u64 = 60_000;

conformance!(
    a_second_open_alert_of_a_device_and_kind_is_refused,
    saved_events_keep_one_open_alert_through_a_clear_and_a_replay,
    a_restart_without_a_checkpoint_knows_the_alerts_a_tick_raised,
    an_open_alert_the_engine_does_not_know_is_closed_when_it_is_raised_again,
    the_migration_closes_all_but_the_newest_of_duplicate_open_alerts,
);

/// The migration that creates `alerts_one_open` on `backend`.
fn index_migration(backend: Backend) -> i64 {
    match backend {
        Backend::Sqlite => 104,
        Backend::Postgres | Backend::Timescale => 103,
    }
}

/// Inserts an alert row directly, as any writer of the table could.
async fn insert(store: &Store, device: &str, kind: &str, raised_at: u64, state: &str) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO alerts (device_id, kind, raised_at, severity, state, revision, updated_at, cleared_at, details) \
               VALUES ($1, $2, $3, 'major', $4, 0, $3, CASE WHEN $4 = 'cleared' THEN $3 END, '{}')";
    on_pool!(store, |pool| sqlx::query(sql)
        .bind(device)
        .bind(kind)
        .bind(raised_at as i64)
        .bind(state)
        .execute(pool)
        .await
        .map(|_| ()))
}

/// `(device_id, kind, raised_at, state, cleared_at)` of every alert, in that order.
type Row = (String, String, i64, String, Option<i64>);

async fn alerts(store: &Store) -> Vec<Row> {
    let sql = "SELECT device_id, kind, raised_at, state, cleared_at FROM alerts ORDER BY device_id, kind, raised_at";
    on_pool!(store, |pool| sqlx::query_as(sql).fetch_all(pool).await.unwrap())
}

fn row(device: &str, kind: &str, raised_at: u64, state: &str, cleared_at: Option<u64>) -> Row {
    (
        device.into(),
        kind.into(),
        raised_at as i64,
        state.into(),
        cleared_at.map(|t| t as i64),
    )
}

/// The refusal is the one-open index's, not the (device, kind, raised_at) key's.
fn assert_one_open_refusal(result: Result<(), sqlx::Error>, what: &str) {
    let Err(sqlx::Error::Database(e)) = result else {
        panic!("{what}: expected a unique violation, got {result:?}");
    };
    assert!(e.is_unique_violation(), "{what}: {e}");
    match e.constraint() {
        // PostgreSQL names the index.
        Some(name) => assert_eq!(name, "alerts_one_open", "{what}"),
        // SQLite names the columns.
        None => assert!(
            e.message().ends_with("alerts.device_id, alerts.kind"),
            "{what}: {}",
            e.message()
        ),
    }
}

// ---------------------------------------------------------------- tests

async fn a_second_open_alert_of_a_device_and_kind_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    insert(&store, "L-1", "power_loss", T0, "raised").await.unwrap();
    assert_one_open_refusal(
        insert(&store, "L-1", "power_loss", T0 + 1000, "raised").await,
        "a second raised alert",
    );
    assert_one_open_refusal(
        insert(&store, "L-1", "power_loss", T0 + 2000, "acknowledged").await,
        "an acknowledged alert is open too",
    );
    // Another kind, another device: their own alerts.
    insert(&store, "L-1", "trapped_passenger", T0 + 1000, "raised")
        .await
        .unwrap();
    insert(&store, "L-2", "power_loss", T0 + 1000, "acknowledged")
        .await
        .unwrap();
    // Cleared alerts are history, as many as there were; once the open one is
    // cleared a new one may open.
    insert(&store, "L-1", "power_loss", T0 - 2000, "cleared").await.unwrap();
    insert(&store, "L-1", "power_loss", T0 - 1000, "cleared").await.unwrap();
    execute(
        &store,
        "UPDATE alerts SET state = 'cleared', cleared_at = raised_at + 500 \
         WHERE device_id = 'L-1' AND kind = 'power_loss' AND state <> 'cleared'",
    )
    .await;
    insert(&store, "L-1", "power_loss", T0 + 3000, "raised").await.unwrap();
    assert_one_open_refusal(
        insert(&store, "L-1", "power_loss", T0 + 4000, "raised").await,
        "a second alert after the new one",
    );
    let open: Vec<Row> = alerts(&store).await.into_iter().filter(|r| r.3 != "cleared").collect();
    assert_eq!(
        open,
        [
            row("L-1", "power_loss", T0 + 3000, "raised", None),
            row("L-1", "trapped_passenger", T0 + 1000, "raised", None),
            row("L-2", "power_loss", T0 + 1000, "acknowledged", None),
        ]
    );
}

fn event(device: &str, kind: AlertKind, change: Change, raised_at: u64, at: u64, revision: u32) -> AlertEvent {
    AlertEvent {
        key: AlertKey {
            device: device.into(),
            kind,
        },
        change,
        severity: Severity::Major,
        raised_at,
        at,
        revision,
        acknowledged_by: (change == Change::Acknowledged).then(|| "mf-zhang".to_string()),
        details: Details::Offline { last_reading_ts: T0 },
    }
}

async fn save(store: &Store, events: &[AlertEvent]) {
    let changes = gridwatch_storage::domain::DomainChanges {
        events,
        ..Default::default()
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        gridwatch_storage::domain::save(store, &changes),
    )
    .await
    .expect("save returns")
    .unwrap_or_else(|e| panic!("saving {events:?}: {e}"));
}

/// What the engine emits through `save`: raised, cleared, raised again, and the
/// same events once more (a replay after a restart, as `gridwatch_domain::load`
/// saves them): the first alert's raise, already stored and cleared, must not
/// collide with the open second one.
async fn saved_events_keep_one_open_alert_through_a_clear_and_a_replay(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let kind = AlertKind::PowerLoss;
    let (t1, t2) = (T0, T0 + 10 * MINUTE);
    let history = [
        event("L-1", kind, Change::Raised, t1, t1, 0),
        event("L-1", kind, Change::Acknowledged, t1, t1 + 1000, 1),
        event("L-1", kind, Change::Cleared, t1, t1 + MINUTE, 2),
        event("L-1", kind, Change::Raised, t2, t2, 0),
    ];
    save(&store, &history).await;
    let expected = [
        row("L-1", "power_loss", t1, "cleared", Some(t1 + MINUTE)),
        row("L-1", "power_loss", t2, "raised", None),
    ];
    assert_eq!(alerts(&store).await, expected);
    for e in &history {
        save(&store, std::slice::from_ref(e)).await;
    }
    save(&store, &history).await;
    assert_eq!(alerts(&store).await, expected, "a replay changes nothing");
    save(&store, &[event("L-1", kind, Change::Acknowledged, t2, t2 + 1000, 1)]).await;
    assert_eq!(alerts(&store).await[1].3, "acknowledged");
}

/// A lift's status at `ts`, through gateway gw-1.
fn lift(device: &str, seq: u64, ts: u64) -> Accepted {
    Accepted {
        gateway: "gw-1".into(),
        reading: lift_at(device, seq, ts).reading,
    }
}

/// Alerts raised on the ingest clock (here the gateway going silent) cannot be
/// raised again by replaying readings. The engine's state of what an alert is about
/// is saved with the alert, so ingest killed between two checkpoints restarts
/// knowing the alert is open and raises nothing twice.
async fn a_restart_without_a_checkpoint_knows_the_alerts_a_tick_raised(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let first = raise_gateway_offline(&store).await;
    let alerting = alerting_on(&store).await;
    alerting.tick(first + MINUTE).await;
    assert_eq!(
        alerts(&store).await,
        [row("gw-1", "gateway_offline", first, "raised", None)]
    );
}

/// An open alert that the engine's saved state does not know (a database written
/// before the engine's state was saved with its alerts) is raised again with a new
/// raised_at. The save must not fail on the index for ever (it retries under the
/// domain lock): the alert the engine no longer knows is closed.
async fn an_open_alert_the_engine_does_not_know_is_closed_when_it_is_raised_again(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let before = alerting_on(&store).await;
    before.on_committed(&[lift("L-1", 1, T0)], vec![0]).await;
    before.checkpoint(T0 as i64).await;
    let unaware = gateway_state(&store).await;
    let first = T0 + 10 * MINUTE;
    before.tick(first).await;
    // The gateway's state as it was before the alert, as such a database holds it.
    on_pool!(&store, |pool| sqlx::query(
        "UPDATE engine_state SET body = $1 WHERE key = 'gateway/gw-1'"
    )
    .bind(&unaware)
    .execute(pool)
    .await
    .map(|_| ()))
    .unwrap();
    let alerting = alerting_on(&store).await;
    let again = first + MINUTE;
    tokio::time::timeout(Duration::from_secs(30), alerting.tick(again))
        .await
        .expect("the tick's save is not refused for ever");
    assert_eq!(
        alerts(&store).await,
        [
            row("gw-1", "gateway_offline", first, "cleared", Some(again)),
            row("gw-1", "gateway_offline", again, "raised", None),
        ]
    );
}

async fn gateway_state(store: &Store) -> String {
    let sql = "SELECT body FROM engine_state WHERE key = 'gateway/gw-1'";
    on_pool!(store, |pool| sqlx::query_scalar(sql).fetch_one(pool).await).unwrap()
}

/// A lift reports through gw-1, a checkpoint is taken, and ten minutes later a tick
/// raises gateway_offline; ingest then stops without another checkpoint. Returns
/// when the alert was raised.
async fn raise_gateway_offline(store: &Store) -> u64 {
    let alerting = alerting_on(store).await;
    alerting.on_committed(&[lift("L-1", 1, T0)], vec![0]).await;
    alerting.checkpoint(T0 as i64).await;
    let raised = T0 + 10 * MINUTE;
    alerting.tick(raised).await;
    assert_eq!(
        alerts(store).await,
        [row("gw-1", "gateway_offline", raised, "raised", None)]
    );
    raised
}

/// A database from before the index, holding duplicate open alerts (two
/// `gridwatch equipment import`s without the engine's state): the migration
/// closes all but the newest of each, as of their last update, and the index holds.
async fn the_migration_closes_all_but_the_newest_of_duplicate_open_alerts(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    execute(&store, "DROP INDEX alerts_one_open").await;
    for (device, kind, raised_at, state) in [
        ("L-1", "inspection_overdue", T0, "raised"),
        ("L-1", "inspection_overdue", T0 + MINUTE, "acknowledged"),
        ("L-1", "inspection_overdue", T0 + 2 * MINUTE, "raised"),
        ("L-1", "inspection_overdue", T0 - MINUTE, "cleared"),
        ("L-1", "maintenance_overdue", T0, "raised"),
        ("L-2", "inspection_overdue", T0 + MINUTE, "raised"),
    ] {
        insert(&store, device, kind, raised_at, state).await.unwrap();
    }
    let version = index_migration(backend);
    // Forget that the index's migration ran: the next open runs it again.
    on_pool!(&store, |pool| sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = $1"
    )
    .bind(version)
    .execute(pool)
    .await
    .map(|_| ()))
    .unwrap();
    drop(store);

    let store = db.open().await;
    assert_eq!(
        alerts(&store).await,
        [
            row("L-1", "inspection_overdue", T0 - MINUTE, "cleared", Some(T0 - MINUTE)),
            // updated_at = raised_at in these rows: closed as of their last update.
            row("L-1", "inspection_overdue", T0, "cleared", Some(T0)),
            row("L-1", "inspection_overdue", T0 + MINUTE, "cleared", Some(T0 + MINUTE)),
            row("L-1", "inspection_overdue", T0 + 2 * MINUTE, "raised", None),
            row("L-1", "maintenance_overdue", T0, "raised", None),
            row("L-2", "inspection_overdue", T0 + MINUTE, "raised", None),
        ]
    );
    assert_one_open_refusal(
        insert(&store, "L-1", "maintenance_overdue", T0 + MINUTE, "raised").await,
        "after the migration",
    );
}
