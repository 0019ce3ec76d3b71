//! The gateway's durable outbox (docs/gateway.md, "Durable outbox"):
//!
//! - kill -9 of the `gridwatch gateway` process while nodes publish and ingest is away:
//!   what the gateway acknowledged to a node was only on its disk, and after the restart
//!   every such reading is stored exactly once;
//! - the uplink down for six hours of device time with 50 devices' readings buffered,
//!   then restored: every reading arrives, in order per device, and a trapped passenger
//!   raised during the replay is stored (and alerted) before the replay's tail;
//! - kill -9 of the gateway while it polls Modbus slaves and relays nodes: every polled
//!   reading it had written to its outbox, and every node reading it acknowledged, is
//!   stored exactly once, and each start's polled seqs are stored without a hole.
mod common;
use common::faults::*;
use common::*;
use gridwatch_protocol::{DeviceId, Door, Envelope, LiftStatus, Motion, NodeAck};
use rumqttc::QoS;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_gateway_loses_and_doubles_nothing_it_acknowledged() {
    let bounds = Bounds {
        load_devices: 10,
        ..Bounds::from_env()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut system = System::start(dir.path(), None, "gw-durable", &dir.path().join("gateway"));
    let nodes = Nodes::start(&system, &bounds, 2).await;
    nodes.trap().await;
    nodes.run_for_acks(bounds.rate as u64).await;

    // Ingest away: from now on the gateway's disk is the only place the acked readings are.
    system.kill(Service::Ingest);
    nodes.run_for_acks(bounds.rate as u64).await;
    nodes.trap().await;
    nodes.run_for_acks(bounds.rate as u64 / 2).await;
    system.kill(Service::Gateway); // SIGKILL, mid-stream
    system.restart(Service::Gateway);
    nodes.run_for_acks(bounds.rate as u64 / 2).await; // acked by the restarted gateway alone
    system.restart(Service::Ingest);
    nodes.fault_cleared();
    let recovery = nodes.recovery().await;
    nodes.finish().await;
    let db = format!("sqlite://{}", dir.path().join("gridwatch.db").display());
    report(
        "kill -9 of the gateway, ingest away",
        outcome(&db, &nodes).await,
        &[recovery],
    );
}

/// Polled lift controllers in the kill test, and how often they are polled.
const SLAVES: usize = 20;
const POLL_MS: &str = "100";

/// (device, seq) of the polled readings in a stopped gateway's outbox: written there,
/// not yet deleted on ingest's `BatchAck`.
async fn polled_in_outbox(gateway_data: &std::path::Path) -> BTreeSet<(String, u64)> {
    let url = format!("sqlite://{}", gateway_data.join("outbox.db").display());
    let rows: Vec<(String, i64)> =
        common::faults::rows(&url, "SELECT device, seq FROM readings WHERE polled = 1").await;
    rows.into_iter().map(|(d, s)| (d, s as u64)).collect()
}

/// The polled readings stored: (device, seq) and how often each.
async fn polled_stored(db: &str) -> BTreeMap<(String, u64), i64> {
    let rows: Vec<(String, i64, i64)> = common::faults::rows(
        db,
        "SELECT device_id, seq, COUNT(*) FROM readings WHERE device_id LIKE 'sim-mb-%' GROUP BY device_id, seq",
    )
    .await;
    rows.into_iter().map(|(d, s, n)| ((d, s as u64), n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_gateway_polling_modbus_loses_and_doubles_nothing_it_took() {
    use gridwatch_protocol::clock::{Clock, SystemClock};
    use gridwatch_simulators::lift::{LiftEvent, LiftModel, LiftParams};
    use gridwatch_simulators::modbus::{Framing, ModbusSlave, SlaveModel};

    let bounds = Bounds {
        load_devices: 20,
        ..Bounds::from_env()
    };
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut slaves = Vec::new();
    for _ in 0..SLAVES {
        let model = SlaveModel::Lift(Box::new(LiftModel::new(LiftParams::default(), clock.now_ms())));
        let slave = ModbusSlave::start(model, clock.clone(), "127.0.0.1:0".parse().unwrap(), Framing::Tcp)
            .await
            .unwrap();
        slaves.push(slave);
    }
    let slaves = Arc::new(slaves);
    // Passengers call the lifts now and then: each trip is a run of changed readings.
    let traffic = {
        let slaves = slaves.clone();
        tokio::spawn(async move {
            let mut rng = seeded("modbus lift traffic");
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                let slave = &slaves[rng.usize(..SLAVES)];
                let (from, to) = (rng.i16(0..6), rng.i16(0..6));
                slave.with_model(|m| {
                    if let SlaveModel::Lift(lift) = m {
                        lift.apply(&LiftEvent::Call { from, to });
                    }
                });
            }
        })
    };
    let map = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway/maps/lift-lc3000.toml");
    let mut extra = vec!["--modbus-period-ms".to_string(), POLL_MS.to_string()];
    for (i, slave) in slaves.iter().enumerate() {
        extra.push("--modbus".into());
        extra.push(format!("sim-mb-{i:02}={}@tcp://{}", map.display(), slave.addr));
    }
    let gateway_data = dir.path().join("gateway");
    let mut system = System::start_with(dir.path(), None, "gw-mb-kill", &gateway_data, &extra);
    let db = format!("sqlite://{}", dir.path().join("gridwatch.db").display());
    let nodes = Nodes::start(&system, &bounds, 0).await;
    nodes.run_for_acks(bounds.rate as u64).await;
    eventually("every slave's first reading stored", || async {
        let devices: BTreeSet<String> = polled_stored(&db).await.into_keys().map(|(d, _)| d).collect();
        (devices.len() == SLAVES).then_some(())
    })
    .await;

    // Ingest away: what the gateway took is on its disk only, and each kill leaves all of
    // it there (nothing is deleted before ingest's `BatchAck`).
    system.kill(Service::Ingest);
    let mut on_disk = BTreeSet::new();
    for start in 1..=bounds.kills as u64 {
        nodes.run_for_acks(bounds.rate as u64 / 2).await;
        eventually("polled readings of this start in the outbox", || async {
            let this_start = polled_in_outbox(&gateway_data)
                .await
                .into_iter()
                .filter(|(_, seq)| seq >> 32 == start)
                .count();
            (this_start >= 2 * SLAVES).then_some(())
        })
        .await;
        system.kill(Service::Gateway); // SIGKILL, mid-stream
        on_disk.extend(polled_in_outbox(&gateway_data).await);
        system.restart(Service::Gateway);
    }
    nodes.run_for_acks(bounds.rate as u64 / 2).await;
    system.restart(Service::Ingest);
    let starts = bounds.kills as u64 + 1;
    eventually("readings of the last start stored for every slave", || async {
        let last: BTreeSet<String> = polled_stored(&db)
            .await
            .into_keys()
            .filter(|(_, seq)| seq >> 32 == starts)
            .map(|(d, _)| d)
            .collect();
        (last.len() == SLAVES).then_some(())
    })
    .await;
    nodes.finish().await;
    traffic.abort();
    report("kill -9 of the gateway polling Modbus", outcome(&db, &nodes).await, &[]);

    let stored = eventually("every polled reading that was on the gateway's disk stored", || async {
        let stored = polled_stored(&db).await;
        on_disk.iter().all(|k| stored.contains_key(k)).then_some(stored)
    })
    .await;
    let doubled: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "polled readings stored twice: {doubled:?}");
    // Per device and start, the seqs it assigned from 1: none may be missing below the
    // highest stored (the outbox commits in the order they were taken).
    let mut by_start: BTreeMap<(String, u64), Vec<u64>> = BTreeMap::new();
    for (device, seq) in stored.keys() {
        by_start
            .entry((device.clone(), seq >> 32))
            .or_default()
            .push(seq & 0xFFFF_FFFF);
    }
    for ((device, start), seqs) in &by_start {
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, &expected, "{device}, start {start}: a hole in its polled seqs");
    }
    let devices: BTreeSet<&String> = by_start.keys().map(|(d, _)| d).collect();
    assert_eq!(devices.len(), SLAVES);
    println!(
        "polled: {} readings stored over {} starts of {SLAVES} slaves; {} were in the outbox at the kills",
        stored.len(),
        starts,
        on_disk.len()
    );
}

const GATEWAY: &str = "gw-replay";
const DEVICES: u64 = 50;
/// One reading a minute for six hours of device time.
const PER_DEVICE: u64 = 360;
const MINUTE: u64 = 60_000;
/// Readings a node may hold unacknowledged in this test before it waits.
const WINDOW: u64 = 2_000;

fn lift(device: &str, seq: u64, ts: u64, status: LiftStatus) -> (String, Vec<u8>) {
    let id = DeviceId::try_from(device).unwrap();
    let payload = serde_json::to_vec(&Envelope::new(id, seq, ts, status)).unwrap();
    (format!("gw/{GATEWAY}/dev/{device}/lift"), payload)
}

fn trapped() -> LiftStatus {
    LiftStatus {
        motion: Motion::Stopped,
        door: Door::Closed,
        occupied: true,
        alarm: true,
        ..LiftStatus::at_rest(4)
    }
}

/// Every reading published, by device and seq, and the acks the gateway sent.
#[derive(Default)]
struct Sent {
    payloads: HashMap<String, BTreeMap<u64, (String, Vec<u8>)>>,
    acked: HashMap<String, u64>,
}

impl Sent {
    fn unacked(&self) -> u64 {
        let acked = |d: &String| self.acked.get(d).copied().unwrap_or(0);
        self.payloads
            .iter()
            .map(|(d, p)| p.range(acked(d) + 1..).count() as u64)
            .sum()
    }

    fn unacked_payloads(&self) -> Vec<(String, Vec<u8>)> {
        let acked = |d: &String| self.acked.get(d).copied().unwrap_or(0);
        let by_device = self.payloads.iter();
        by_device
            .flat_map(|(d, p)| p.range(acked(d) + 1..).map(|(_, m)| m.clone()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_six_hours_without_uplink_the_backlog_replays_in_order_and_a_live_trap_goes_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let clock = gridwatch_protocol::clock::ManualClock::new(T0);
    let mut config = gridwatch_ingest::IngestConfig::embedded(dir.path());
    config.clock = Arc::new(clock.clone());
    config.tick_every = Duration::from_secs(3600);
    let ingest = gridwatch_ingest::start(config).await.unwrap();

    // The uplink goes through a proxy that is down from the start.
    let mut proxy = Proxy::start(ingest.mqtt_addr).await;
    proxy.outage();
    let mut config = gridwatch_gateway::GatewayConfig::new(GATEWAY, proxy.addr.into(), dir.path().join("gateway"));
    config.linger = Duration::from_millis(5);
    // Small replay batches, one at a time: the replay lasts long enough to be overtaken.
    config.batch_max = 100;
    config.replay_in_flight = 1;
    let gateway = gridwatch_gateway::start(config).await.unwrap();

    let (node, mut acks) = mqtt_client(gateway.node_addr, "nodes").await;
    node.subscribe(format!("gw/{GATEWAY}/ack/+"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let sent = Arc::new(Mutex::new(Sent::default()));
    {
        let sent = sent.clone();
        tokio::spawn(async move {
            while let Some(p) = acks.recv().await {
                let ack: NodeAck = serde_json::from_slice(&p.payload).unwrap();
                let mut sent = sent.lock().unwrap();
                let mark = sent.acked.entry(ack.device.as_str().to_string()).or_default();
                *mark = (*mark).max(ack.seq);
            }
        });
    }
    // Six hours of readings, oldest first, round robin over the devices, as a node would:
    // at most WINDOW unacknowledged, resending what stays so.
    let start = T0 - PER_DEVICE * MINUTE;
    for seq in 1..=PER_DEVICE {
        for d in 0..DEVICES {
            let device = format!("L-{d:02}");
            let (topic, payload) = lift(&device, seq, start + (seq - 1) * MINUTE + d, LiftStatus::at_rest(1));
            sent.lock()
                .unwrap()
                .payloads
                .entry(device)
                .or_default()
                .insert(seq, (topic.clone(), payload.clone()));
            node.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
            let mut waited = 0;
            while sent.lock().unwrap().unacked() >= WINDOW {
                tokio::time::sleep(Duration::from_millis(20)).await;
                waited += 1;
                if waited % 100 == 0 {
                    let again = sent.lock().unwrap().unacked_payloads();
                    for (topic, payload) in again {
                        node.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
                    }
                }
            }
        }
    }
    let total = DEVICES * PER_DEVICE;
    eventually(
        "every reading acknowledged by the gateway with its uplink down",
        || async { (sent.lock().unwrap().unacked() == 0).then_some(()) },
    )
    .await;
    assert_eq!(
        gateway.outbox_stats().unacknowledged,
        total,
        "all of them held on the gateway's disk"
    );

    // Watch the batches arrive at ingest's broker, in order.
    let (watcher, mut batches) = mqtt_client(ingest.mqtt_addr, "watcher").await;
    watcher
        .subscribe(format!("gw/{GATEWAY}/batch"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let arrivals: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some(p) = batches.recv().await {
                let batch: gridwatch_protocol::batch::Batch = serde_json::from_slice(&p.payload).unwrap();
                let mut arrivals = arrivals.lock().unwrap();
                for r in batch.readings {
                    let r = gridwatch_protocol::batch::Reading::decode_tagged(r.get().as_bytes()).unwrap();
                    arrivals.push((r.device().to_string(), r.seq()));
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // the watcher's subscription settles
    proxy.restore().await;

    // Once the replay is under way, a passenger is trapped: a live reading.
    eventually("the replay under way", || async {
        (arrivals.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    let (topic, payload) = lift("L-live", 1, T0 - 2_000, LiftStatus::at_rest(1));
    node.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    let (topic, payload) = lift("L-live", 2, T0 - 1_000, trapped());
    node.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();

    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("gridwatch.db").display()))
        .await
        .unwrap();
    eventually("every reading stored", || async {
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM readings")
            .fetch_one(&db)
            .await
            .unwrap();
        (rows as u64 == total + 2).then_some(())
    })
    .await;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT device_id || '/' || seq) FROM readings")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        (rows, distinct),
        ((total + 2) as i64, (total + 2) as i64),
        "each reading once"
    );
    eventually("the watcher saw every batch", || async {
        (arrivals.lock().unwrap().len() as u64 >= total + 2).then_some(())
    })
    .await;

    let arrivals = arrivals.lock().unwrap().clone();
    // In order per device (a resend may repeat a batch: first arrivals count).
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut firsts = Vec::new();
    for (device, seq) in &arrivals {
        let previous = last.entry(device).or_default();
        if *seq > *previous {
            assert_eq!(*seq, *previous + 1, "{device}: seq {seq} arrived after {previous}");
            *previous = *seq;
            firsts.push((device.as_str(), *seq));
        }
    }
    let trap_at = firsts.iter().position(|&(d, s)| d == "L-live" && s == 2).unwrap();
    let backlog_after = firsts[trap_at..].iter().filter(|(d, _)| *d != "L-live").count();
    println!("the trapped passenger arrived with {backlog_after} backlog readings still behind it");
    assert!(
        backlog_after >= 1000,
        "the live reading went ahead of the replay's tail"
    );

    let trapped: Vec<(String,)> = sqlx::query_as("SELECT device_id FROM alerts WHERE kind = 'trapped_passenger'")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(trapped, vec![("L-live".to_string(),)]);
    assert_eq!(gateway.outbox_stats().unacknowledged, 0);
    gateway.stop().await;
}
