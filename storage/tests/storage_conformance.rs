//! One storage suite for every backend: each test below runs once against SQLite
//! and once against PostgreSQL, each time in its own fresh database (a temporary
//! file; a `gridwatch_test_<unique>` database on the local server, dropped
//! afterwards, also when the test fails).
//!
//! PostgreSQL comes from `GRIDWATCH_TEST_PG` (a server URL without a database,
//! default `postgres://postgres@127.0.0.1:5432`); when it cannot be reached the
//! PostgreSQL tests fail saying so: they are never skipped. The external-broker
//! tests need the Mosquitto of `GRIDWATCH_TEST_MQTT` (default
//! `mqtt://127.0.0.1:1883`) and fail the same way without it.
mod common;

use common::{Backend, T0, TestDb, alerting_on, execute, id, lift, lift_at, unique};
use gridwatch_ingest::pipeline::{self, Acks, Delivery, PipelineConfig, Via};
use gridwatch_ingest::{ExternalConfig, IngestConfig, intake};
use gridwatch_protocol::batch::{Batch, BatchAck, Reading};
use gridwatch_protocol::{Birth, Envelope, EventKind, NodeAck, NodeEvent};
use gridwatch_storage::model::{Accepted, Refused};
use gridwatch_storage::postgres::Layout;
use gridwatch_storage::{Committed, Store};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(30);

conformance!(
    migrations_run_from_empty_and_again,
    redelivery_changes_nothing,
    a_key_twice_in_one_batch_is_new_once,
    a_large_batch_of_old_and_new_readings_reports_exactly_the_new,
    out_of_order_arrival_is_stored_and_never_rolls_state_back,
    refused_and_unstorable_readings_are_quarantined_without_blocking_their_batch,
    latest_state_per_device_is_the_newest_status,
    device_states_are_written_behind_and_recomputed_after_a_crash,
    history_of_one_device_is_a_time_range_in_order,
    counts_per_kind,
    the_quarantine_pages_once_over_every_row_with_bounded_payloads_and_keeps_its_bound,
    acks_are_published_only_after_the_commit,
    a_fast_node_gets_cumulative_acks_paced_by_the_interval,
    a_slow_database_stops_intake_at_the_queue_bound,
    an_engine_checkpoint_of_many_devices_is_saved_in_pieces_and_loads_back,
    external_broker_messages_are_acked_after_the_commit_and_kept_while_down,
);

// ---------------------------------------------------------------- readings

fn event(device: &str, seq: u64) -> Accepted {
    let body = NodeEvent {
        event: EventKind::AlarmButton,
        code: 0,
    };
    Accepted {
        gateway: "gw-t".into(),
        reading: Reading::Event(Envelope::new(id(device), seq, T0 + seq * 1000, body)),
    }
}

fn birth(device: &str, seq: u64) -> Accepted {
    let body: Birth =
        serde_json::from_value(serde_json::json!({"device_kind": "lift", "fw": "1.0.0", "boots": 1})).unwrap();
    Accepted {
        gateway: "gw-t".into(),
        reading: Reading::Birth(Envelope::new(id(device), seq, T0 + seq * 1000, body)),
    }
}

async fn commit(store: &Store, accepted: &[Accepted]) -> Committed {
    store.commit(accepted, &[]).await.unwrap()
}

/// Polls `check` until it returns `Some`, or panics after [`DEADLINE`] naming `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- the suite

async fn migrations_run_from_empty_and_again(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    assert_eq!(
        store.backend(),
        if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    assert_eq!(store.reading_count().await.unwrap(), 0);
    assert!(store.devices().await.unwrap().is_empty());
    commit(&store, &[lift("L-1", 1)]).await;
    drop(store);

    // Again on the migrated database: nothing to do, nothing lost.
    let store = db.open().await;
    assert_eq!(store.reading_count().await.unwrap(), 1);
    let Store::Postgres(pg) = &store else { return };
    // The layout is the store's to say (the server decides it): checked as it is.
    match pg.layout() {
        Layout::Partitioned => {
            let today: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass \
                 AND inhrelid = to_regclass('readings_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD'))",
            )
            .fetch_one(pg.pool())
            .await
            .unwrap();
            assert_eq!(today, 1, "today's partition exists");
        }
        Layout::Hypertable => {
            let chunks: i64 = sqlx::query_scalar(
                "SELECT num_chunks FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'",
            )
            .fetch_one(pg.pool())
            .await
            .unwrap();
            assert_eq!(chunks, 1, "the reading's day is one chunk");
        }
        Layout::Plain => panic!("readings is a plain table on a fresh database"),
    }
    if backend == Backend::Timescale {
        assert_eq!(pg.layout(), Layout::Hypertable, "a server that preloads TimescaleDB");
    }
}

async fn redelivery_changes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let batch = [lift("L-1", 1), lift("L-1", 2), event("L-2", 1)];
    assert_eq!(commit(&store, &batch).await.new, [0, 1, 2]);
    assert_eq!(
        commit(&store, &batch).await.new,
        Vec::<usize>::new(),
        "a full redelivery is not new"
    );
    // Half old, half new: only the new half is reported.
    let mixed = [lift("L-1", 2), lift("L-1", 3)];
    assert_eq!(commit(&store, &mixed).await.new, [1]);
    assert_eq!(store.reading_count().await.unwrap(), 4);
    let devices = store.devices().await.unwrap();
    assert_eq!(devices.len(), 1, "an event is not a device state");
    assert_eq!(devices[0].last_seq, 3);
}

async fn a_key_twice_in_one_batch_is_new_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let committed = commit(&store, &[lift("L-1", 1), lift("L-1", 1), lift("L-1", 2)]).await;
    assert_eq!(committed.new, [0, 2]);
    assert_eq!(store.reading_count().await.unwrap(), 2);
}

/// More readings than one INSERT statement takes, from several devices, in no
/// key order: a redelivery mixed with new readings (and a new key twice) reports
/// exactly the new ones, by their index in the batch.
async fn a_large_batch_of_old_and_new_readings_reports_exactly_the_new(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let first: Vec<Accepted> = (0..1200u64).map(|n| lift(&format!("L-{}", n % 7), n / 7 + 1)).collect();
    assert_eq!(commit(&store, &first).await.new, (0..1200).collect::<Vec<_>>());
    let (mut second, mut expected) = (Vec::new(), Vec::new());
    for n in 0..1200u64 {
        if n % 2 == 1 {
            expected.push(second.len());
            second.push(lift(&format!("L-{}", n % 7), 1000 + n));
        } else {
            second.push(lift(&format!("L-{}", n % 7), n / 7 + 1));
        }
    }
    expected.push(second.len());
    second.push(lift("L-0", 5000));
    second.push(lift("L-0", 5000));
    assert_eq!(commit(&store, &second).await.new, expected);
    assert_eq!(
        commit(&store, &second).await.new,
        Vec::<usize>::new(),
        "all of it again"
    );
    assert_eq!(store.reading_count().await.unwrap(), 1200 + 600 + 1);
}

async fn out_of_order_arrival_is_stored_and_never_rolls_state_back(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    assert_eq!(commit(&store, &[lift("L-1", 5)]).await.new, [0]);
    assert_eq!(commit(&store, &[lift("L-1", 3), lift("L-1", 1)]).await.new, [0, 1]);
    assert_eq!(commit(&store, &[lift("L-1", 4), lift("L-1", 2)]).await.new, [0, 1]);
    let devices = store.devices().await.unwrap();
    assert_eq!(devices[0].last_seq, 5, "late readings do not replace a newer state");
    assert_eq!(devices[0].last_state["floor"], 5);
    let seqs: Vec<i64> = store
        .history("L-1", 0, i64::MAX, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

async fn refused_and_unstorable_readings_are_quarantined_without_blocking_their_batch(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let refused = Refused {
        source: "gw/gw-t/dev/L-9/lift".into(),
        reason: "malformed",
        detail: "expected value at line 1 column 1".into(),
        payload: b"{not json".to_vec(),
    };
    // seq is any u64 in the protocol, but no database column holds more than i64::MAX.
    let batch = [lift("L-1", 1), lift_at("L-1", 1 << 63, T0), lift("L-1", 2)];
    let committed = store.commit(&batch, &[refused]).await.unwrap();
    assert_eq!(committed.new, [0, 2], "the neighbours are stored");
    assert_eq!(committed.quarantined, [1]);
    assert_eq!(store.reading_count().await.unwrap(), 2);

    let kept = store.quarantine(None, 10, 4096).await.unwrap();
    let mut reasons: Vec<&str> = kept.iter().map(|q| q.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(reasons, ["malformed", "unstorable"]);
    let unstorable = kept.iter().find(|q| q.reason == "unstorable").unwrap();
    assert!(
        unstorable.detail.contains("9223372036854775808"),
        "{}",
        unstorable.detail
    );
    assert_eq!(unstorable.source, "gw/gw-t/dev/L-1/lift");
    assert!(
        unstorable.payload.contains("\"seq\":9223372036854775808"),
        "{}",
        unstorable.payload
    );
    assert!(kept.iter().any(|q| q.payload == "{not json"));
}

async fn latest_state_per_device_is_the_newest_status(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    commit(
        &store,
        &[birth("L-2", 1), lift("L-2", 2), lift("L-1", 1), lift("L-1", 2)],
    )
    .await;
    commit(&store, &[event("L-2", 3), birth("L-1", 3)]).await;
    let devices = store.devices().await.unwrap();
    let summary: Vec<(&str, &str, i64)> = devices
        .iter()
        .map(|d| (d.device_id.as_str(), d.kind.as_str(), d.last_seq))
        .collect();
    assert_eq!(
        summary,
        [("L-1", "lift", 2), ("L-2", "lift", 2)],
        "births and events are not states"
    );
    assert_eq!(devices[0].gateway, "gw-t");
    assert_eq!(devices[0].last_state["floor"], 2);
    assert_eq!(devices[0].last_seen, "2025-11-25T09:00:02.000Z");
}

async fn device_states_are_written_behind_and_recomputed_after_a_crash(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    // Recent device times: start-up recomputes states from the last days' readings only.
    let t = gridwatch_storage::model::now_ms() as u64 / 1000 * 1000 - 60_000;
    commit(&store, &[lift_at("L-1", 1, t), lift_at("L-2", 1, t), event("L-2", 2)]).await;
    store.flush_states().await.unwrap();
    commit(&store, &[lift_at("L-1", 2, t + 1000), lift_at("L-1", 3, t + 2000)]).await;
    // A crash: the process ends before the states reach `devices` (here they are
    // removed, so the flusher cannot have won the race either).
    drop(store);
    execute(&db.open().await, "DELETE FROM devices").await;

    let store = db.open().await;
    let devices = store.devices().await.unwrap();
    let summary: Vec<(&str, i64)> = devices.iter().map(|d| (d.device_id.as_str(), d.last_seq)).collect();
    assert_eq!(summary, [("L-1", 3), ("L-2", 1)], "recomputed from the readings");
    assert_eq!(devices[0].last_state["floor"], 3);
    assert_eq!(
        devices[0].last_seen,
        gridwatch_storage::model::rfc3339((t + 2000) as i64)
    );
    assert_eq!(devices[0].gateway, "gw-t");
}

async fn history_of_one_device_is_a_time_range_in_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let mut batch: Vec<Accepted> = (1..=10).rev().map(|seq| lift("L-1", seq)).collect();
    batch.push(lift("L-2", 5));
    commit(&store, &batch).await;
    // [T0 + 3 s, T0 + 7 s): seqs 3 to 6 of L-1 only.
    let rows = store
        .history("L-1", (T0 + 3000) as i64, (T0 + 7000) as i64, 100)
        .await
        .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [3, 4, 5, 6]);
    assert_eq!(rows[0].ts_ms, (T0 + 3000) as i64);
    assert_eq!(rows[0].kind, "lift");
    assert_eq!(rows[0].gateway, "gw-t");
    assert_eq!(rows[0].reading["kind"], "lift", "the whole reading is kept");
    assert_eq!(rows[0].reading["body"]["floor"], 3);
    let limited = store.history("L-1", 0, i64::MAX, 2).await.unwrap();
    assert_eq!(limited.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
}

async fn counts_per_kind(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    commit(
        &store,
        &[
            lift("L-1", 1),
            lift("L-1", 2),
            event("L-1", 3),
            birth("L-2", 1),
            lift("L-2", 4),
        ],
    )
    .await;
    let counts: Vec<(String, i64)> = store
        .counts_per_kind(0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, c.readings))
        .collect();
    assert_eq!(counts, [("birth".into(), 1), ("event".into(), 1), ("lift".into(), 3)]);
    let recent = store.counts_per_kind((T0 + 3000) as i64).await.unwrap();
    assert_eq!(recent.iter().map(|c| c.readings).sum::<i64>(), 2, "seq 3 and 4 only");
}

async fn the_quarantine_pages_once_over_every_row_with_bounded_payloads_and_keeps_its_bound(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let refused = |i: usize, payload: Vec<u8>| Refused {
        source: format!("gw/gw-t/dev/J-{i}/lift"),
        reason: "malformed",
        detail: "junk".into(),
        payload,
    };
    let junk: Vec<Refused> = (0..25).map(|i| refused(i, vec![b'x'; 10_000 + i])).collect();
    store.commit(&[], &junk).await.unwrap();

    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let page = store.quarantine(after, 10, 100).await.unwrap();
        assert!(page.len() <= 10);
        for row in &page {
            assert_eq!(row.payload.len(), 100, "only the head of each payload");
            assert!(row.payload_truncated);
            let i: usize = row
                .source
                .trim_start_matches("gw/gw-t/dev/J-")
                .trim_end_matches("/lift")
                .parse()
                .unwrap();
            assert_eq!(row.payload_bytes, 10_000 + i as i64, "the whole length");
            seen.push(i);
        }
        if page.len() < 10 {
            break;
        }
        after = page.last().map(|r| r.id);
    }
    assert_eq!(seen, (0..25).rev().collect::<Vec<_>>(), "every row once, newest first");
    let whole = store.quarantine(None, 1, 1_000_000).await.unwrap();
    assert!(!whole[0].payload_truncated);
    assert_eq!(whole[0].payload.len(), 10_024);

    // Bounded by rows: the oldest go first.
    assert_eq!(store.bound_quarantine_to(20, i64::MAX).await.unwrap(), 5);
    let kept = store.quarantine(None, 100, 0).await.unwrap();
    assert_eq!(kept.len(), 20);
    assert!(kept.iter().all(|r| r.source != "gw/gw-t/dev/J-4/lift"));
    assert!(kept.iter().any(|r| r.source == "gw/gw-t/dev/J-5/lift"));
    // And by payload bytes: 10,024 + 10,023 fit in 20,050, a third does not.
    assert_eq!(store.bound_quarantine_to(100, 20_050).await.unwrap(), 18);
    let kept = store.quarantine(None, 100, 0).await.unwrap();
    let sources: Vec<&str> = kept.iter().map(|r| r.source.as_str()).collect();
    assert_eq!(sources, ["gw/gw-t/dev/J-24/lift", "gw/gw-t/dev/J-23/lift"]);
    assert_eq!(store.bound_quarantine_to(100, 20_050).await.unwrap(), 0);
}

/// Holds the database's write lock from outside ingest until released.
enum WriteLock {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl WriteLock {
    async fn take(store: &Store) -> WriteLock {
        match store {
            Store::Sqlite(s) => {
                let mut conn = s.pool().acquire().await.unwrap();
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.unwrap();
                WriteLock::Sqlite(conn)
            }
            Store::Postgres(p) => {
                let mut tx = p.pool().begin().await.unwrap();
                sqlx::query("LOCK TABLE readings IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                WriteLock::Postgres(tx)
            }
        }
    }

    /// Waits until a commit of ingest is stuck behind this lock.
    async fn wait_for_blocked_commit(&self, store: &Store) {
        match store {
            // A blocked writer waits on its busy timeout, fails, and is retried: one failure proves it.
            Store::Sqlite(_) => {
                eventually("a commit failing on the locked SQLite database", || async {
                    let metrics = gridwatch_web::metrics::handle().render();
                    metrics
                        .lines()
                        .any(|l| l.starts_with("gridwatch_ingest_store_failures_total{op=\"commit\"}"))
                        .then_some(())
                })
                .await
            }
            Store::Postgres(p) => {
                eventually("a commit waiting for the lock on readings", || async {
                    let waiting: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                         AND wait_event_type = 'Lock' AND application_name = 'gridwatch'",
                    )
                    .fetch_one(p.pool())
                    .await
                    .unwrap();
                    (waiting > 0).then_some(())
                })
                .await
            }
        }
    }

    async fn release(self) {
        match self {
            WriteLock::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
            }
            WriteLock::Postgres(tx) => tx.rollback().await.unwrap(),
        }
    }
}

/// An MQTT test client: its publishes arrive on `publishes`; ConnAck and SubAck
/// on `confirmations`.
struct Client {
    client: AsyncClient,
    publishes: mpsc::UnboundedReceiver<rumqttc::Publish>,
    confirmations: mpsc::UnboundedReceiver<()>,
}

impl Client {
    /// Connects (clean session) and returns once the broker said ConnAck.
    async fn connect(url: gridwatch_mqtt::MqttUrl, client_id: &str) -> Client {
        let mut options = gridwatch_mqtt::client_options(&url, client_id);
        options.set_clean_session(true);
        let (client, mut events) = AsyncClient::new(options, 100);
        let (confirm_tx, mut confirmations) = mpsc::unbounded_channel();
        let (publish_tx, publishes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_) | Packet::SubAck(_))) => {
                        let _ = confirm_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = publish_tx.send(p);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(DEADLINE, confirmations.recv())
            .await
            .unwrap_or_else(|_| panic!("no MQTT broker answered at {url}"));
        Client {
            client,
            publishes,
            confirmations,
        }
    }

    /// Subscribes and waits for the SubAck, so nothing published after is missed.
    async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(DEADLINE, self.confirmations.recv())
            .await
            .unwrap_or_else(|_| panic!("SubAck for {filter} timed out"));
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    async fn next(&mut self, what: &str) -> rumqttc::Publish {
        tokio::time::timeout(DEADLINE, self.publishes.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap()
    }
}

fn node_payload(device: &str, seq: u64) -> Vec<u8> {
    let Reading::Lift(envelope) = lift(device, seq).reading else {
        unreachable!()
    };
    serde_json::to_vec(&envelope).unwrap()
}

/// Ingest with its embedded broker on `db`, data under `dir`, batches closing after 5 ms.
fn ingest_config(db: &TestDb, dir: &std::path::Path) -> IngestConfig {
    let mut config = IngestConfig::embedded(dir);
    config.database = db.url.clone();
    config.pipeline.linger = Duration::from_millis(5);
    config
}

async fn acks_are_published_only_after_the_commit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let ingest = gridwatch_ingest::start(ingest_config(&db, dir.path())).await.unwrap();
    let mut node = Client::connect(ingest.mqtt_addr.into(), "L-1").await;
    node.subscribe("gw/gw-t/ack/L-1").await;

    let lock = WriteLock::take(&ingest.store).await;
    node.publish("gw/gw-t/dev/L-1/lift", node_payload("L-1", 1)).await;
    lock.wait_for_blocked_commit(&ingest.store).await;
    assert!(
        node.publishes.try_recv().is_err(),
        "no ack while the commit cannot happen"
    );
    lock.release().await;

    let ack = node.next("the node ack").await;
    let ack: NodeAck = serde_json::from_slice(&ack.payload).unwrap();
    assert_eq!(ack.seq, 1);
    // The ack says committed: the reading must be visible now, without waiting.
    assert_eq!(ingest.store.history("L-1", 0, i64::MAX, 10).await.unwrap().len(), 1);
    ingest.stop().await;
}

async fn a_fast_node_gets_cumulative_acks_paced_by_the_interval(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ingest_config(&db, dir.path());
    let interval = Duration::from_secs(1);
    config.pipeline.node_ack_interval = interval;
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let mut node = Client::connect(ingest.mqtt_addr.into(), "L-1").await;
    node.subscribe("gw/gw-t/ack/L-1").await;
    let seq_of = |publish: rumqttc::Publish| serde_json::from_slice::<NodeAck>(&publish.payload).unwrap().seq;

    // A node not acked lately is acked at once.
    node.publish("gw/gw-t/dev/L-1/lift", node_payload("L-1", 1)).await;
    assert_eq!(seq_of(node.next("the first ack").await), 1);
    // Then more, each committed on its own: one cumulative ack when the interval
    // is over, not one per commit.
    let started = std::time::Instant::now();
    for seq in 2..=20u64 {
        node.publish("gw/gw-t/dev/L-1/lift", node_payload("L-1", seq)).await;
        eventually("the reading committed", || async {
            (ingest.store.reading_count().await.unwrap() == seq as i64).then_some(())
        })
        .await;
    }
    let intervals = (started.elapsed().as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
    let mut acked = Vec::new();
    while acked.last() != Some(&20) {
        acked.push(seq_of(node.next("the ack of the burst").await));
    }
    assert!(acked.is_sorted(), "acks never go backwards: {acked:?}");
    assert!(
        acked.len() <= intervals + 1,
        "one ack per interval, not one per commit: {acked:?} for 19 commits in {intervals} intervals"
    );
    ingest.stop().await;
}

/// More changed devices than fit one checkpoint piece: every one is saved, and a
/// fresh load has them all from the checkpoint alone (their readings were never
/// stored, so nothing could be replayed).
async fn an_engine_checkpoint_of_many_devices_is_saved_in_pieces_and_loads_back(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let alerting = alerting_on(&store).await;
    let devices = 2 * gridwatch_storage::domain::CHECKPOINT_PIECE_ROWS + 1;
    let accepted: Vec<Accepted> = (0..devices).map(|i| lift(&format!("L-{i:04}"), 7)).collect();
    alerting.on_committed(&accepted, (0..devices).collect()).await;
    alerting.checkpoint(T0 as i64).await;

    let loaded = alerting_on(&store).await;
    let loaded = loaded.domain.lock().await;
    let monitors = &loaded.engine().state().devices;
    assert_eq!(monitors.len(), devices);
    assert!(
        monitors.values().all(|m| m.last_seq == 7),
        "every device's state is the newest"
    );
    // Nothing changed since: the next checkpoint adds no rows.
    let before = engine_rows(&store).await;
    alerting.checkpoint(T0 as i64 + 1000).await;
    assert_eq!(engine_rows(&store).await, before);

    // A checkpoint that cannot be written hands every change back for the next one.
    let newer: Vec<Accepted> = (0..devices).map(|i| lift(&format!("L-{i:04}"), 8)).collect();
    alerting.on_committed(&newer, (0..devices).collect()).await;
    execute(&store, "ALTER TABLE engine_state RENAME TO engine_state_away").await;
    alerting.checkpoint(T0 as i64 + 2000).await;
    execute(&store, "ALTER TABLE engine_state_away RENAME TO engine_state").await;
    alerting.checkpoint(T0 as i64 + 3000).await;
    let loaded = alerting_on(&store).await;
    assert!(
        loaded
            .domain
            .lock()
            .await
            .engine()
            .state()
            .devices
            .values()
            .all(|m| m.last_seq == 8)
    );
}

async fn engine_rows(store: &Store) -> i64 {
    let sql = "SELECT count(*) FROM engine_state";
    match store {
        Store::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
        Store::Postgres(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
    }
}

async fn a_slow_database_stops_intake_at_the_queue_bound(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let alerting = alerting_on(&store).await;
    let config = PipelineConfig {
        batch_max: 10,
        linger: Duration::from_millis(1),
        queue: 16,
        commits_in_flight: 2,
        node_ack_interval: Duration::ZERO,
        ..PipelineConfig::default()
    };
    let queue_size = config.queue;
    let in_flight = config.commits_in_flight.min(store.max_concurrent_commits());
    // The queue, the commits in flight, formed batches waiting, one being formed.
    let bound = config.queue + config.batch_max * (in_flight + pipeline::BATCHES_WAITING + 1);
    let mut tasks = tokio::task::JoinSet::new();
    let queue = pipeline::spawn(&mut tasks, config, store.clone(), Acks::default(), alerting);

    let lock = WriteLock::take(&store).await;
    let delivery = |seq: u64| Delivery {
        incoming: intake::classify("gw/gw-t/dev/L-1/lift", &node_payload("L-1", seq)).unwrap(),
        via: Via::Embedded,
        ack_ceiling: None,
    };
    // Feed until the pipeline refuses more, which it must do within the bound.
    let mut taken = 0u64;
    let mut refused_in_a_row = 0;
    while refused_in_a_row < 20 {
        match queue.try_send(delivery(taken + 1)) {
            Ok(()) => {
                taken += 1;
                refused_in_a_row = 0;
                assert!(
                    taken as usize <= bound,
                    "took {taken} messages with the database blocked (bound {bound})"
                );
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                refused_in_a_row += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("pipeline stopped: {e}"),
        }
    }
    assert!(taken as usize >= queue_size, "took only {taken}");
    lock.release().await;
    // Released: everything taken is committed, and the pipeline takes more again.
    eventually("all taken readings committed", || async {
        (store.reading_count().await.unwrap() == taken as i64).then_some(())
    })
    .await;
    queue.send(delivery(taken + 1)).await.unwrap();
    eventually("the pipeline taking more", || async {
        (store.reading_count().await.unwrap() == taken as i64 + 1).then_some(())
    })
    .await;
    tasks.shutdown().await;
}

async fn external_broker_messages_are_acked_after_the_commit_and_kept_while_down(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let broker: gridwatch_mqtt::MqttUrl = std::env::var("GRIDWATCH_TEST_MQTT")
        .unwrap_or_else(|_| "mqtt://127.0.0.1:1883".to_string())
        .parse()
        .unwrap();
    // Unique topics and client ids: the broker is shared.
    let gateway = unique("gwx").replace('_', "-");
    let ingest_id = unique("ingest");
    let config = || {
        let mut config = ingest_config(&db, dir.path());
        let mut external = ExternalConfig::new(broker.clone(), &ingest_id);
        external.filters = vec![format!("gw/{gateway}/#")];
        config.external = Some(external);
        config
    };
    let batch = |number: u64, seqs: std::ops::RangeInclusive<u64>| {
        let readings = seqs
            .map(|seq| serde_json::value::to_raw_value(&lift("L-x1", seq).reading).unwrap())
            .collect();
        let batch = Batch {
            v: 1,
            gateway: gateway.clone(),
            batch: number,
            readings,
        };
        serde_json::to_vec(&batch).unwrap()
    };
    let topic = format!("gw/{gateway}/batch");
    let mut sender = Client::connect(broker.clone(), &unique("sender")).await;
    sender.subscribe(&format!("gw/{gateway}/ack")).await;
    /// The next ack of batch `number` (earlier batches may be acked again: redeliveries).
    async fn ack_of(sender: &mut Client, number: u64, wait: Duration) -> Option<BatchAck> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let publish = tokio::time::timeout_at(deadline, sender.publishes.recv())
                .await
                .ok()??;
            let ack: BatchAck = serde_json::from_slice(&publish.payload).unwrap();
            if ack.batch == number {
                return Some(ack);
            }
        }
    }

    let ingest = gridwatch_ingest::start(config()).await.unwrap();
    // Ingest subscribes after its ConnAck; until the broker has the subscription it
    // drops what is published. Repeat batch 1 (harmless: duplicates) until it is acked.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let ack = loop {
        sender.publish(&topic, batch(1, 1..=3)).await;
        if let Some(ack) = ack_of(&mut sender, 1, Duration::from_millis(500)).await {
            break ack;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest never subscribed on the external broker"
        );
    };
    assert_eq!((ack.stored, ack.rejected), (3, 0));
    assert_eq!(ingest.store.reading_count().await.unwrap(), 3, "acked means committed");
    ingest.stop().await;

    // While ingest is down, the broker keeps what arrives for its persistent session.
    sender.publish(&topic, batch(2, 4..=6)).await;
    let ingest = gridwatch_ingest::start(config()).await.unwrap();
    let ack = ack_of(&mut sender, 2, DEADLINE)
        .await
        .expect("the ack of the batch sent while ingest was down");
    assert_eq!(ack.stored, 3);
    assert_eq!(ingest.store.reading_count().await.unwrap(), 6);
    ingest.stop().await;

    // Leave no session behind on the shared broker.
    drop(Client::connect(broker, &ingest_id).await);
}

/// PostgreSQL refuses data SQLite takes (a NUL in text): the data-error path,
/// where a refused batch is redone row by row and only the bad row is quarantined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_only_a_row_the_database_refuses_is_quarantined_alone() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.open().await;
    let mut bad = lift("L-1", 2);
    bad.gateway = "gw\0t".into();
    let committed = commit(&store, &[lift("L-1", 1), bad, lift("L-1", 3)]).await;
    assert_eq!(committed.new, [0, 2]);
    assert_eq!(committed.quarantined, [1]);
    let kept = store.quarantine(None, 10, 4096).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].reason, "unstorable");
    assert!(
        kept[0].detail.contains("the database refused this reading"),
        "{}",
        kept[0].detail
    );
    assert_eq!(store.reading_count().await.unwrap(), 2);
    assert_eq!(store.devices().await.unwrap()[0].last_seq, 3);
}

/// Device ids compare byte by byte in the telemetry tables (migration 0102): the
/// database's own collation made every key comparison of every insert a strcoll.
/// Native partitions and hypertable chunks made later inherit it.
async fn device_ids_compare_byte_by_byte(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    commit(&store, &[lift("L-1", 1)]).await;
    let Store::Postgres(pg) = &store else { unreachable!() };
    let collation = |table: &'static str| async move {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT collation_name::text FROM information_schema.columns \
             WHERE column_name = 'device_id' AND table_schema = 'public' AND table_name = $1",
        )
        .bind(table)
        .fetch_one(pg.pool())
        .await
        .unwrap()
    };
    assert_eq!(collation("devices").await.as_deref(), Some("C"));
    assert_eq!(collation("readings").await.as_deref(), Some("C"));
    let (parts, parts_in_c): (i64, i64) = match pg.layout() {
        Layout::Partitioned => {
            assert_eq!(collation("readings_default").await.as_deref(), Some("C"));
            sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE collation_name = 'C') FROM information_schema.columns \
                 WHERE column_name = 'device_id' AND table_name ~ '^readings_[0-9]{8}$'",
            )
            .fetch_one(pg.pool())
            .await
            .unwrap()
        }
        Layout::Hypertable => sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE a.attcollation = 'pg_catalog.\"C\"'::regcollation) \
             FROM show_chunks('readings') c JOIN pg_attribute a ON a.attrelid = c AND a.attname = 'device_id'",
        )
        .fetch_one(pg.pool())
        .await
        .unwrap(),
        Layout::Plain => panic!("readings is a plain table on a fresh database"),
    };
    assert!(parts > 0, "no partition or chunk of readings");
    assert_eq!(parts_in_c, parts, "every partition or chunk has device_id in \"C\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_only_device_ids_compare_byte_by_byte() {
    device_ids_compare_byte_by_byte(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_only_device_ids_compare_byte_by_byte() {
    if common::timescale_server("timescale_only_device_ids_compare_byte_by_byte").is_some() {
        device_ids_compare_byte_by_byte(Backend::Timescale).await
    }
}

/// SQLite keeps new readings in `readings_recent` and moves them into
/// `readings_settled` in pieces after commits (`store::settle`): with small
/// limits, every commit below crosses them. A key is in one table or the
/// other, never both; a redelivery of a moved reading is no more new than one
/// still recent, also after a restart; reads see both tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_only_readings_move_to_the_settled_table_in_pieces_without_loss_or_double() {
    use gridwatch_storage::settle::SettleLimits;
    let metrics = gridwatch_web::metrics::handle();
    let db = TestDb::new(Backend::Sqlite).await;
    let path = db.url.trim_start_matches("sqlite://");
    let limits = SettleLimits {
        settle_at: 40,
        piece_rows: 15,
    };
    let sqlite = gridwatch_storage::sqlite::SqliteStore::open_with(std::path::Path::new(path), limits)
        .await
        .unwrap();
    let store = Store::Sqlite(sqlite.clone());
    let tables = || async {
        let count = |table: &'static str| {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(sqlite.pool())
        };
        let both: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM readings_recent r JOIN readings_settled s USING (device_id, ts, seq)",
        )
        .fetch_one(sqlite.pool())
        .await
        .unwrap();
        assert_eq!(both, 0, "a key in both tables");
        (
            count("readings_recent").await.unwrap(),
            count("readings_settled").await.unwrap(),
        )
    };

    // Five devices, 30 readings a batch; each batch also brings back the one before.
    let batch = |n: u64| -> Vec<Accepted> {
        (0..30)
            .map(|i| lift(&format!("L-{}", i % 5), n * 6 + i / 5 + 1))
            .collect()
    };
    let mut stored = 0;
    for n in 0..8u64 {
        let mut readings = batch(n);
        if n > 0 {
            readings.extend(batch(n - 1));
        }
        let committed = commit(&store, &readings).await;
        assert_eq!(
            committed.new,
            (0..30).collect::<Vec<_>>(),
            "batch {n}: only its own 30 are new"
        );
        stored += 30;
        let (recent, settled) = tables().await;
        assert_eq!(recent + settled, stored, "batch {n}");
        assert!(recent < 40, "batch {n}: {recent} recent readings, the limit is 40");
    }
    let (_, settled) = tables().await;
    assert!(settled >= 150, "pieces moved readings: {settled} settled");

    // Every batch again: nothing is new, wherever its readings are now.
    let all: Vec<Accepted> = (0..8).flat_map(batch).collect();
    assert!(commit(&store, &all).await.new.is_empty());
    sqlite.settle_all().await.unwrap();
    assert_eq!(tables().await, (0, 240), "all moved");
    assert!(
        commit(&store, &all).await.new.is_empty(),
        "and still not new once settled"
    );
    assert_eq!(store.reading_count().await.unwrap(), 240);

    // A new reading after the moves: reads see it with the settled ones, in order.
    assert_eq!(commit(&store, &[lift("L-0", 49)]).await.new, [0]);
    let history = store.history("L-0", 0, i64::MAX, 100).await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=49).collect::<Vec<_>>()
    );
    let counted: i64 = store.counts_per_kind(0).await.unwrap().iter().map(|c| c.readings).sum();
    assert_eq!(counted, 241);
    let rendered = metrics.render();
    assert!(
        rendered.contains("gridwatch_ingest_settled_readings_total 240"),
        "{rendered}"
    );
    assert!(rendered.contains("gridwatch_ingest_recent_readings 1"), "{rendered}");

    // After a restart (the moves' cursor and counts start over): still nothing new twice.
    drop((store, sqlite));
    let reopened = gridwatch_storage::sqlite::SqliteStore::open_with(std::path::Path::new(path), limits)
        .await
        .unwrap();
    let store = Store::Sqlite(reopened);
    assert!(commit(&store, &all).await.new.is_empty(), "after a restart");
    assert_eq!(commit(&store, &[lift("L-0", 50)]).await.new, [0]);
    assert_eq!(store.reading_count().await.unwrap(), 242);
}

/// A commit skips the `readings_settled` lookup for readings above every settled
/// key of their device (`store::settled_tops`). That must hold when someone else
/// moves readings too: here a second store on the same file (as another process
/// would) settles readings the first one committed, and the first must notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_only_readings_moved_by_another_writer_are_still_not_new_twice() {
    use gridwatch_storage::settle::SettleLimits;
    use gridwatch_storage::sqlite::SqliteStore;
    let db = TestDb::new(Backend::Sqlite).await;
    let path = std::path::Path::new(db.url.trim_start_matches("sqlite://"));
    // This one never moves readings by itself.
    let never = SettleLimits {
        settle_at: u64::MAX,
        piece_rows: 15,
    };
    let first = Store::Sqlite(SqliteStore::open_with(path, never).await.unwrap());
    let readings: Vec<Accepted> = (1..=10).map(|seq| lift("L-1", seq)).collect();
    assert_eq!(commit(&first, &readings).await.new.len(), 10);
    // Nothing of L-1 is settled yet, as the first store has seen.
    assert!(commit(&first, &readings).await.new.is_empty());

    let second = SqliteStore::open_with(path, never).await.unwrap();
    second.settle_all().await.unwrap();
    assert!(
        commit(&first, &readings).await.new.is_empty(),
        "readings another writer settled are redeliveries"
    );

    // The first store's own moves keep its view: above the top is new, below
    // it what was never stored is new, and what was stored is not.
    let Store::Sqlite(sqlite) = &first else { unreachable!() };
    assert_eq!(commit(&first, &[lift("L-1", 11)]).await.new, [0]);
    sqlite.settle_all().await.unwrap();
    let late = lift_at("L-1", 12, T0 + 500);
    assert_eq!(
        commit(&first, &[lift("L-1", 11), late.clone(), lift("L-1", 13)])
            .await
            .new,
        [1, 2]
    );
    sqlite.settle_all().await.unwrap();
    assert!(
        commit(&first, &[late, lift("L-1", 13), lift("L-1", 5)])
            .await
            .new
            .is_empty()
    );
    assert_eq!(first.reading_count().await.unwrap(), 13);
}

/// `gridwatch bench` finds the SQLite writer's CPU by its thread's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_only_the_writer_runs_on_a_thread_named_for_the_benchmark() {
    use gridwatch_storage::sqlite::WRITER_THREAD;
    use gridwatch_storage::thread_priority::threads_named;
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.open().await;
    commit(&store, &[lift("L-1", 1)]).await;
    assert!(
        !threads_named(WRITER_THREAD).unwrap().is_empty(),
        "no thread named {WRITER_THREAD}"
    );
}

/// The writer thread runs at a higher priority where the process may raise it
/// (CI and the benchmark run as root), and at the default one elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_only_the_writer_thread_gets_a_higher_priority_where_allowed() {
    use gridwatch_storage::sqlite::WRITER_THREAD;
    use gridwatch_storage::thread_priority::{WRITER_NICE, nice_of, threads_named};
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.open().await;
    commit(&store, &[lift("L-1", 1)]).await;
    let writers: Vec<i32> = threads_named(WRITER_THREAD)
        .unwrap()
        .into_iter()
        .filter_map(nice_of)
        .collect();
    assert!(!writers.is_empty());
    // SAFETY: geteuid has no arguments and cannot fail.
    let expected = if unsafe { libc::geteuid() } == 0 {
        WRITER_NICE
    } else {
        0
    };
    assert!(
        writers.iter().all(|&nice| nice == expected),
        "{writers:?}, expected {expected}"
    );
}
