//! The load generator resends per sender, as nodes do: a device whose acks stop
//! (ingest holds them after the broker dropped one of its readings) replays its
//! readings while the connection's other devices go on being acked.
//!
//! A real embedded broker; in place of ingest, an in-process acker on a local
//! link that acks every device cumulatively, but never hears one device's first
//! reading the first time it is sent (as if the broker had dropped it).
use gridwatch_broker::{BrokerConfig, EmbeddedBroker};
use gridwatch_mqtt::MqttUrl;
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{DeviceId, NodeAck, SCHEMA_VERSION, Topic};
use gridwatch_simulators::load::{self, LoadConfig, Mode};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEVICES: usize = 20;
const READINGS: u64 = 2_000;

#[derive(serde::Deserialize)]
struct Reading {
    device: String,
    seq: u64,
}

/// Readings as the acker received them, in order: (device, seq).
type Seen = Arc<Mutex<Vec<(String, u64)>>>;

fn ack_all_but_the_first_reading_of(mut broker: EmbeddedBroker, lost_device: String, seen: Seen) {
    let (mut tx, mut rx) = broker.take_link("acker").expect("link");
    tx.subscribe("gw/+/dev/+/lift").expect("subscribe");
    tokio::spawn(async move {
        let _broker = broker;
        let mut contiguous: HashMap<String, u64> = HashMap::new();
        let mut lost = false;
        while let Some(delivered) = rx.next().await {
            let reading: Reading = serde_json::from_slice(&delivered.payload).expect("a reading");
            seen.lock().unwrap().push((reading.device.clone(), reading.seq));
            if reading.device == lost_device && reading.seq == 1 && !lost {
                lost = true;
                continue;
            }
            let top = contiguous.entry(reading.device.clone()).or_default();
            if reading.seq == *top + 1 {
                *top = reading.seq;
            }
            if *top > 0 {
                let topic = String::from_utf8_lossy(&delivered.topic);
                let Ok(Topic::Node { gateway, device, .. }) = Topic::parse(&topic) else {
                    panic!("a node topic: {topic}");
                };
                let ack_topic = Topic::NodeAck { gateway, device };
                let ack = NodeAck {
                    v: SCHEMA_VERSION,
                    device: DeviceId::try_from(device).expect("a device id"),
                    seq: *top,
                };
                tx.publish(ack_topic.write().to_string(), json::encode(&ack))
                    .expect("ack");
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_acks_stop_replays_while_the_others_go_on() {
    let broker = EmbeddedBroker::start("load-resend", &BrokerConfig::default(), &["acker"]).expect("broker");
    let url: MqttUrl = format!("mqtt://{}", broker.addr).parse().expect("url");
    let mut config = LoadConfig::new(url, Mode::Direct, DEVICES);
    config.connections = 1;
    config.readings = Some(READINGS);
    // About two seconds of sending, so that the load is still sending when the device's timer runs out.
    config.rate = Some(1_000.0);
    config.window = 400;
    config.resend_after = Duration::from_millis(300);
    config.drain = Duration::from_secs(30);
    let lost_device = config.device_id(3);
    let seen = Seen::default();
    ack_all_but_the_first_reading_of(broker, lost_device.clone(), seen.clone());

    let report = load::run(config).await.expect("the load completes");
    assert_eq!(
        report.readings_acked, READINGS,
        "every reading acked in the end: {report:?}"
    );
    assert!(report.readings_resent > 0, "{report:?}");

    // After the lost reading came again, the other devices still sent new readings:
    // the device replayed on its own timer, not once the whole connection fell silent.
    let seen = seen.lock().unwrap().clone();
    let replayed_at = seen
        .iter()
        .enumerate()
        .filter(|(_, (device, seq))| *device == lost_device && *seq == 1)
        .nth(1)
        .map(|(at, _)| at)
        .expect("the lost reading was sent again");
    let earlier: HashSet<&(String, u64)> = seen[..replayed_at].iter().collect();
    let new_after = seen[replayed_at..]
        .iter()
        .filter(|reading| reading.0 != lost_device && !earlier.contains(reading))
        .count();
    assert!(
        new_after > 0,
        "no new reading followed the replay at {replayed_at} of {} received",
        seen.len()
    );
}
