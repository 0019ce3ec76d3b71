//! Modbus at the gateway, over real sockets: simulated controllers polled by a gateway
//! whose readings ingest stores; slaves that die, hang, answer slowly or with garbage
//! delay nobody else, and are polled again when they come back.
mod common;
use common::*;
use gridwatch_gateway::modbus::map::RegisterMap;
use gridwatch_gateway::modbus::{ModbusConfig, ModbusDevice, PollConfig, Transport};
use gridwatch_ingest::Role;
use gridwatch_protocol::clock::{Clock, ManualClock};
use gridwatch_simulators::lift::{LiftEvent, LiftModel, LiftParams};
use gridwatch_simulators::modbus::{Fault, Framing, ModbusSlave, SlaveModel};
use gridwatch_simulators::sterilizer::{SterilizerModel, SterilizerParams};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ANY_PORT: &str = "127.0.0.1:0";

fn map(file: &str) -> Arc<RegisterMap> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway/maps").join(file);
    Arc::new(RegisterMap::load(&path).unwrap())
}

fn lift(clock: &ManualClock) -> SlaveModel {
    SlaveModel::Lift(Box::new(LiftModel::new(LiftParams::default(), clock.now_ms())))
}

async fn lift_slave(clock: &ManualClock, framing: Framing) -> ModbusSlave {
    ModbusSlave::start(lift(clock), Arc::new(clock.clone()), ANY_PORT.parse().unwrap(), framing)
        .await
        .unwrap()
}

fn device(id: &str, file: &str, transport: Transport, poll: &PollConfig) -> ModbusDevice {
    ModbusDevice {
        device: id.to_string(),
        map: map(file),
        transport,
        unit_id: None,
        poll: poll.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_lift_and_dishwasher_readings_are_stored_by_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path(), "gw-a").await;
    let gw_secret = stack.provision("gw-mb", Role::Gateway, None);
    for node in ["L-TCP", "L-RTU", "S-TCP"] {
        stack.provision(node, Role::Node, Some("gw-mb"));
    }
    let clock = stack.clock.clone();
    let tcp_lift = lift_slave(&clock, Framing::Tcp).await;
    let rtu_lift = lift_slave(&clock, Framing::RtuOverTcp).await;
    let dishwasher = ModbusSlave::start(
        SlaveModel::Sterilizer(Box::new(SterilizerModel::new(
            SterilizerParams::for_method(gridwatch_protocol::Method::Dishwasher),
            clock.now_ms(),
        ))),
        Arc::new(clock.clone()),
        ANY_PORT.parse().unwrap(),
        Framing::Tcp,
    )
    .await
    .unwrap();

    let poll = PollConfig {
        period: Duration::from_millis(50),
        ..PollConfig::default()
    };
    let uplink = gridwatch_mqtt::MqttUrl::from(stack.ingest.mqtt_addr).with_login("gw-mb", &gw_secret);
    let mut config = gridwatch_gateway::GatewayConfig::new("gw-mb", uplink, dir.path().join("gw-mb"));
    config.linger = Duration::from_millis(5);
    config.node_guard = guard_with(stack.credentials.as_ref().unwrap());
    config.modbus = ModbusConfig {
        devices: vec![
            device("L-TCP", "lift-lc3000.toml", Transport::Tcp(tcp_lift.addr), &poll),
            device("L-RTU", "lift-lc3000.toml", Transport::RtuOverTcp(rtu_lift.addr), &poll),
            device("S-TCP", "dishwasher-dw500.toml", Transport::Tcp(dishwasher.addr), &poll),
        ],
        clock: Arc::new(clock.clone()),
    };
    let gateway = gridwatch_gateway::start(config).await.unwrap();

    let history = |device: &'static str| {
        let store = stack.ingest.store.clone();
        async move { store.history(device, 0, i64::MAX, 100).await.unwrap() }
    };
    for device in ["L-TCP", "L-RTU", "S-TCP"] {
        eventually(&format!("{device}'s first status stored"), || async {
            (!history(device).await.is_empty()).then_some(())
        })
        .await;
    }
    let first = history("L-RTU").await;
    assert_eq!(first[0].kind, "lift");
    assert_eq!(first[0].reading["body"]["floor"], 1);
    assert_eq!(first[0].reading["body"]["door"], "closed");
    assert_eq!(first[0].ts_ms as u64, T0, "stamped on the gateway's clock");
    assert_eq!(
        (first[0].seq as u64) >> 32,
        1,
        "the first start numbers seqs in epoch 1"
    );
    let washer = history("S-TCP").await;
    assert_eq!(washer[0].reading["body"]["method"], "dishwasher");
    assert_eq!(washer[0].reading["body"]["temp_c"], 22.0);

    // The alarm button: an event on its rising edge, and the status saying so.
    rtu_lift.with_model(|m| match m {
        SlaveModel::Lift(lift) => lift.apply(&LiftEvent::PressAlarm),
        SlaveModel::Sterilizer(_) => unreachable!(),
    });
    let readings = eventually("the alarm event stored", || async {
        let readings = history("L-RTU").await;
        readings
            .iter()
            .any(|r| r.kind == "event" && r.reading["body"]["event"] == "alarm_button")
            .then_some(readings)
    })
    .await;
    assert!(
        readings
            .iter()
            .any(|r| r.kind == "lift" && r.reading["body"]["alarm"] == true),
        "{readings:?}"
    );
    gateway.stop().await;

    // After a restart the seqs continue in a new epoch: nothing is numbered twice.
    let uplink = gridwatch_mqtt::MqttUrl::from(stack.ingest.mqtt_addr).with_login("gw-mb", &gw_secret);
    let mut config = gridwatch_gateway::GatewayConfig::new("gw-mb", uplink, dir.path().join("gw-mb"));
    config.node_guard = guard_with(stack.credentials.as_ref().unwrap());
    config.modbus = ModbusConfig {
        devices: vec![device(
            "L-TCP",
            "lift-lc3000.toml",
            Transport::Tcp(tcp_lift.addr),
            &poll,
        )],
        clock: Arc::new(clock.clone()),
    };
    let _gateway = gridwatch_gateway::start(config).await.unwrap();
    eventually("a reading of the second start stored", || async {
        history("L-TCP")
            .await
            .iter()
            .any(|r| (r.seq as u64) >> 32 == 2)
            .then_some(())
    })
    .await;
}

/// Mean interval between the requests a slave received after `from`.
fn mean_period(slave: &ModbusSlave, from: tokio::time::Instant, until: tokio::time::Instant) -> Duration {
    let times: Vec<_> = slave
        .requests()
        .into_iter()
        .filter(|t| *t >= from && *t < until)
        .collect();
    assert!(times.len() >= 10, "only {} requests in the window", times.len());
    (times[times.len() - 1] - times[0]) / (times.len() as u32 - 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_a_hung_a_slow_and_a_garbling_slave_leave_the_others_poll_periods_alone() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut slaves = Vec::new();
    for _ in 0..6 {
        slaves.push(lift_slave(&clock, Framing::Tcp).await);
    }
    let addrs: Vec<SocketAddr> = slaves.iter().map(|s| s.addr).collect();
    let poll = PollConfig {
        period: Duration::from_millis(100),
        timeout: Duration::from_millis(250),
        retries: 1,
        backoff_max: Duration::from_millis(400),
        heartbeat: Duration::from_secs(10),
    };
    // Ingest is not needed to poll: the uplink may stay down.
    let mut config = gridwatch_gateway::GatewayConfig::new(
        "gw-p",
        gridwatch_mqtt::MqttUrl::from("127.0.0.1:9".parse::<SocketAddr>().unwrap()),
        dir.path().to_path_buf(),
    );
    config.modbus = ModbusConfig {
        devices: addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| device(&format!("L-{i}"), "lift-lc3000.toml", Transport::Tcp(*addr), &poll))
            .collect(),
        clock: Arc::new(clock.clone()),
    };
    let gateway = gridwatch_gateway::start(config).await.unwrap();

    // Settle, then measure the healthy slaves' periods before and during the faults.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let faults_at = tokio::time::Instant::now();
    let mut slaves = slaves.into_iter();
    let (healthy_a, healthy_b) = (slaves.next().unwrap(), slaves.next().unwrap());
    let (hung, slow, garbling, dead) = (
        slaves.next().unwrap(),
        slaves.next().unwrap(),
        slaves.next().unwrap(),
        slaves.next().unwrap(),
    );
    let dead_addr = dead.addr;
    hung.set_fault(Fault::NoAnswer);
    slow.set_fault(Fault::Slow(Duration::from_millis(200)));
    garbling.set_fault(Fault::Garbage);
    dead.stop();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let after = tokio::time::Instant::now();
    for healthy in [&healthy_a, &healthy_b] {
        let calm = mean_period(healthy, before, faults_at).as_secs_f64();
        let stormy = mean_period(healthy, faults_at, after).as_secs_f64();
        assert!(
            (stormy - calm).abs() / calm < 0.10,
            "period moved from {calm:.4} s to {stormy:.4} s"
        );
    }

    // The hung slave answers again and the dead one is switched on again at its
    // address: both are polled again, without anyone restarting the gateway.
    hung.set_fault(Fault::None);
    let reborn = ModbusSlave::start(lift(&clock), Arc::new(clock.clone()), dead_addr, Framing::Tcp)
        .await
        .unwrap();
    let recovered = tokio::time::Instant::now();
    eventually("the dead slave polled again", || async {
        (reborn.requests().len() >= 3).then_some(())
    })
    .await;
    eventually("the hung slave polled again on its period", || async {
        let times: Vec<_> = hung.requests().into_iter().filter(|t| *t >= recovered).collect();
        (times.len() >= 5).then_some(())
    })
    .await;
    drop((slow, garbling));
    gateway.stop().await;
}

#[test]
fn a_bad_map_file_stops_the_gateway_with_the_file_the_key_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("broken.toml");
    let good =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway/maps/lift-lc3000.toml")).unwrap();
    std::fs::write(&map, good.replacen("type = \"u16\"", "type = \"word\"", 1)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args([
            "gateway",
            "--id",
            "gw-x",
            "--uplink",
            "mqtt://127.0.0.1:9",
            "--allow-anonymous",
        ])
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .arg("--modbus")
        .arg(format!("L-1={}@tcp://127.0.0.1:502", map.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("broken.toml") && stderr.contains("register[1].type: expected one of u16, i16"),
        "{stderr}"
    );
}
