//! Fault injection against the real `gridwatch` processes and services, under steady
//! load from simulated lift nodes (tests/common/faults.rs): kill -9 of ingest and the
//! gateway at random points, PostgreSQL refusing connections, a full disk under SQLite,
//! forged acks, and a flood of fake devices. After each: every reading acknowledged to
//! a node is in the database once, every trapped passenger raised one alert, and the
//! recovery time is printed as a row of docs/reliability.md's table.
//!
//! `GRIDWATCH_FAULTS_LONG=1` runs the lengths that table states; `GRIDWATCH_FAULTS_SEED`
//! replays a run's random fault points (each test prints its seed).
mod common;
use common::faults::*;
use gridwatch_protocol::batch::{Batch, BatchAck};
use gridwatch_protocol::{DeviceId, Envelope, LiftStatus, NodeAck, SCHEMA_VERSION};
use rumqttc::{AsyncClient, QoS};
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_ingest_and_gateway_at_random_points_loses_and_doubles_nothing() {
    let bounds = Bounds::from_env();
    let mut rng = seeded("kill -9");
    let dir = tempfile::tempdir().unwrap();
    let mut system = System::start(dir.path(), None, "gw-kill", &dir.path().join("gateway"));
    let mut victims: Vec<Service> = [Service::Ingest, Service::Gateway]
        .into_iter()
        .cycle()
        .take(2 * bounds.kills)
        .collect();
    rng.shuffle(&mut victims);
    let nodes = Nodes::start(&system, &bounds, 2 * victims.len() + 1).await;
    nodes.trap().await;

    let mut recoveries = Vec::new();
    for victim in victims {
        // A random point in the stream: up to two seconds of load on.
        nodes.run_for_acks(rng.u64(1..=2 * bounds.rate as u64)).await;
        nodes.trap().await; // in flight at the kill
        system.kill(victim);
        nodes.trap().await; // sent while it is down
        system.restart(victim);
        nodes.fault_cleared();
        let recovery = nodes.recovery().await;
        println!("kill -9 {victim:?}: {recovery}");
        recoveries.push(recovery);
    }
    nodes.finish().await;
    let db = format!("sqlite://{}", dir.path().join("gridwatch.db").display());
    report("kill -9 ingest / gateway", outcome(&db, &nodes).await, &recoveries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_refusing_connections_loses_and_doubles_nothing() {
    let bounds = Bounds::from_env();
    let pg = PgDatabase::create().await;
    let mut proxy = Proxy::start(pg.server).await;
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(
        dir.path(),
        Some(&pg.url_via(proxy.addr)),
        "gw-pg",
        &dir.path().join("gateway"),
    );
    let nodes = Nodes::start(&system, &bounds, 3).await;
    nodes.trap().await;
    nodes.run_for_acks(bounds.rate as u64).await;

    let failures = system.counter(STORE_FAILURES).await;
    proxy.outage();
    nodes.trap().await;
    common::eventually("ingest to fail a commit", || async {
        (system.counter(STORE_FAILURES).await > failures).then_some(())
    })
    .await;
    system.wait_ready_status(503).await;
    // The fault lasts its stated time, whatever happens meanwhile.
    tokio::time::sleep(bounds.pg_outage).await;
    nodes.trap().await;
    proxy.restore().await;
    nodes.fault_cleared();
    let recovery = nodes.recovery().await;
    system.wait_ready_status(200).await;
    println!("PostgreSQL away {:?}: {recovery}", bounds.pg_outage);
    nodes.finish().await;
    let fault = format!("PostgreSQL refuses connections for {} s", bounds.pg_outage.as_secs());
    report(&fault, outcome(pg.url(), &nodes).await, &[recovery]);
}

/// Prometheus counter of failed storage operations, each retried (docs/storage.md).
const STORE_FAILURES: &str = "gridwatch_ingest_store_failures_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_under_sqlite_loses_and_doubles_nothing() {
    let bounds = Bounds::from_env();
    let disk = match Tmpfs::mount(64) {
        Ok(disk) => disk,
        Err(why) => {
            println!("full disk: SKIPPED, {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(disk.path(), None, "gw-disk", &dir.path().join("gateway"));
    let nodes = Nodes::start(&system, &bounds, 3).await;
    nodes.trap().await;
    nodes.run_for_acks(bounds.rate as u64).await;

    let failures = system.counter(STORE_FAILURES).await;
    let ballast = disk.fill();
    nodes.trap().await;
    common::eventually("SQLite to hit the full disk", || async {
        (system.counter(STORE_FAILURES).await > failures).then_some(())
    })
    .await;
    println!("full disk: {} MiB of ballast", ballast >> 20);
    // The fault lasts its stated time, whatever happens meanwhile.
    tokio::time::sleep(bounds.disk_full).await;
    nodes.trap().await;
    disk.free();
    nodes.fault_cleared();
    let recovery = nodes.recovery().await;
    println!("disk full for {:?}: {recovery}", bounds.disk_full);
    nodes.finish().await;
    let db = format!("sqlite://{}", disk.path().join("gridwatch.db").display());
    let fault = format!("disk full under SQLite for {} s", bounds.disk_full.as_secs());
    report(&fault, outcome(&db, &nodes).await, &[recovery]);
}

/// Forgers on both brokers: a stranger without credentials, and a thief with a real
/// node's stolen secret. Each tries to ack every batch it sees on ingest's broker
/// (`BatchAck`, retained) and to send the alert devices a retained `NodeAck` for a seq
/// far ahead on the gateway's. While PostgreSQL is away nothing is committed, so only
/// forged acks could release readings; ingest is then killed with what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_acks_lose_nothing() {
    let bounds = Bounds::from_env();
    let pg = PgDatabase::create().await;
    let mut proxy = Proxy::start(pg.server).await;
    let dir = tempfile::tempdir().unwrap();
    let mut system = System::start(
        dir.path(),
        Some(&pg.url_via(proxy.addr)),
        "gw-forged",
        &dir.path().join("gateway"),
    );
    let alert_devices = 3;
    let nodes = Nodes::start(&system, &bounds, alert_devices).await;
    nodes.trap().await;
    nodes.run_for_acks(bounds.rate as u64).await;

    let thief_secret = common::provision(
        &system.credentials,
        "sim-thief",
        gridwatch_ingest::Role::Node,
        Some(&system.gateway_id),
    );
    let logins = [("stranger", None), ("sim-thief", Some(thief_secret.as_str()))];
    let url = |addr: &str, login: Option<&str>| {
        let url = gridwatch_mqtt::MqttUrl::from(addr.parse::<SocketAddr>().unwrap());
        match login {
            Some(secret) => url.with_login("sim-thief", secret),
            None => url,
        }
    };

    proxy.outage();
    let mut forgers = Vec::new();
    for (who, login) in logins {
        forgers.push(forge_batch_acks(&url(&system.ingest_mqtt, login), who, &system.gateway_id).await);
    }
    nodes.trap().await;
    for (who, login) in logins {
        forge_node_acks(&url(&system.node_addr, login), who, &system.gateway_id, alert_devices).await;
    }
    tokio::time::sleep(bounds.pg_outage).await;
    system.kill(Service::Ingest);
    proxy.restore().await;
    system.restart(Service::Ingest);
    nodes.fault_cleared();
    nodes.trap().await;
    let recovery = nodes.recovery().await;
    println!("forged acks: {recovery}");
    nodes.finish().await;
    drop(forgers);
    report(
        "forged BatchAck / NodeAck (retained)",
        outcome(pg.url(), &nodes).await,
        &[recovery],
    );
}

/// A forger's MQTT client, or `None` when the broker refuses it.
async fn forger(
    url: &gridwatch_mqtt::MqttUrl,
    who: &str,
) -> Option<(AsyncClient, tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>)> {
    let id = url.credentials.as_ref().map_or(who, |(user, _)| user.as_str());
    try_mqtt_client(url, id, Duration::from_secs(5)).await
}

/// Acks every batch of `gateway` published on ingest's broker, as ingest would after a commit.
async fn forge_batch_acks(
    ingest: &gridwatch_mqtt::MqttUrl,
    who: &str,
    gateway: &str,
) -> Option<tokio::task::JoinHandle<()>> {
    let Some((client, mut batches)) = forger(ingest, who).await else {
        println!("forged acks: ingest's broker refused the {who}");
        return None;
    };
    let _ = client.subscribe(format!("gw/{gateway}/batch"), QoS::AtLeastOnce).await;
    let topic = format!("gw/{gateway}/ack");
    Some(tokio::spawn(async move {
        while let Some(p) = batches.recv().await {
            let Ok(batch) = serde_json::from_slice::<Batch>(&p.payload) else {
                continue;
            };
            let ack = BatchAck {
                v: SCHEMA_VERSION,
                gateway: batch.gateway,
                batch: batch.batch,
                stored: batch.readings.len() as u32,
                rejected: 0,
            };
            let payload = serde_json::to_vec(&ack).unwrap();
            let _ = client.publish(&topic, QoS::AtLeastOnce, true, payload).await;
        }
    }))
}

/// A retained `NodeAck` far ahead for each alert device, on the gateway's broker.
async fn forge_node_acks(gateway_broker: &gridwatch_mqtt::MqttUrl, who: &str, gateway: &str, alert_devices: usize) {
    let Some((client, _)) = forger(gateway_broker, who).await else {
        println!("forged acks: the gateway's broker refused the {who}");
        return;
    };
    for i in 0..alert_devices {
        let device = format!("sim-lift-{i:03}");
        let ack = NodeAck {
            v: SCHEMA_VERSION,
            device: DeviceId::try_from(device.as_str()).unwrap(),
            seq: 1_000_000,
        };
        let payload = serde_json::to_vec(&ack).unwrap();
        let _ = client
            .publish(format!("gw/{gateway}/ack/{device}"), QoS::AtLeastOnce, true, payload)
            .await;
    }
}

/// 2099-01-01T00:00:00Z.
const YEAR_2099: u64 = 4_070_908_800_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_fake_devices_from_2099_hides_and_loses_nothing() {
    let bounds = Bounds::from_env();
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(dir.path(), None, "gw-flood", &dir.path().join("gateway"));
    let traps = 5;
    let nodes = Nodes::start(&system, &bounds, traps).await;
    nodes.trap().await;
    nodes.run_for_acks(bounds.rate as u64).await;

    // Unknown devices straight on ingest's broker, each trapped in 2099, from a leaked
    // load identity (a stranger without one is refused at the door, tests/mqtt_access.rs).
    let flood_secret = {
        let mut file = gridwatch_ingest::CredentialsFile::load_or_empty(&system.credentials).unwrap();
        let secret = file
            .add_with_prefix("flood", gridwatch_ingest::Role::Load, None, Some("fake-"), 0)
            .unwrap();
        file.save(&system.credentials).unwrap();
        secret
    };
    let url = gridwatch_mqtt::MqttUrl::from(system.ingest_mqtt.parse::<SocketAddr>().unwrap())
        .with_login("flood", &flood_secret);
    let (stranger, _) = try_mqtt_client(&url, "flood", Duration::from_secs(5))
        .await
        .expect("a provisioned load identity connects");
    let mut status = LiftStatus::at_rest(4);
    (status.occupied, status.alarm, status.door_zone) = (true, true, false);
    for i in 0..bounds.fake_devices {
        let device = format!("fake-{i:05}");
        let reading = Envelope::new(DeviceId::try_from(device.as_str()).unwrap(), 1, YEAR_2099, status);
        let payload = serde_json::to_vec(&reading).unwrap();
        stranger
            .publish(
                format!("gw/fake-gw/dev/{device}/lift"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
        if i % (bounds.fake_devices / (traps - 1)).max(1) == 0 {
            nodes.trap().await;
        }
    }
    nodes.fault_cleared();
    let recovery = nodes.recovery().await;
    println!("{} fake devices: {recovery}", bounds.fake_devices);
    nodes.finish().await;
    let db = format!("sqlite://{}", dir.path().join("gridwatch.db").display());
    let outcome = outcome(&db, &nodes).await;

    // Every real trapped passenger is on the open-alert list that users see, page by page.
    let mut listed = Vec::new();
    let mut url = format!("{}/api/alerts", system.http);
    loop {
        let response = reqwest::get(&url).await.unwrap().error_for_status().unwrap();
        let next = response
            .headers()
            .get("x-next-cursor")
            .map(|c| c.to_str().unwrap().to_string());
        listed.extend(response.json::<Vec<serde_json::Value>>().await.unwrap());
        match next {
            Some(cursor) => url = format!("{}/api/alerts?after={cursor}", system.http),
            None => break,
        }
    }
    let hidden = (0..outcome.alerts)
        .map(|i| format!("sim-lift-{i:03}"))
        .filter(|d| {
            !listed
                .iter()
                .any(|a| a["device_id"] == *d && a["kind"] == "trapped_passenger")
        })
        .count();
    println!(
        "fake-device flood: {hidden} of {} real alerts missing from /api/alerts",
        outcome.alerts
    );
    let fault = format!("{} fake devices stamped 2099", bounds.fake_devices);
    report(&fault, outcome, &[recovery]);
    assert_eq!(hidden, 0, "real alerts hidden from /api/alerts by the flood");
}
