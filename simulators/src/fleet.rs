//! A fleet of simulated nodes, each its own MQTT client, publishing to a
//! gateway's broker on a scaled clock: what `gridwatch demo` runs.
use crate::clock::{Clock, ScaledClock};
use crate::lift::SimLift;
use crate::node::{Message, SimNode};
use crate::sterilizer::SimSterilizer;
use gridwatch_mqtt::{MqttUrl, client_options};
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{DeviceId, Kind, Method, NodeAck, Presence, SCHEMA_VERSION, Topic};
use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub gateway: String,
    /// The gateway's broker.
    pub broker: MqttUrl,
    pub lifts: usize,
    pub sterilizers: usize,
    /// Device time starts this far in the past...
    pub behind: Duration,
    /// ...and runs this many times faster than wall time until it reaches now.
    pub speed: f64,
    /// Trap a passenger in the first lift after this much device time.
    pub trap_after: Option<Duration>,
    /// Wall time between samples.
    pub sample_every: Duration,
    /// Node heartbeat, device time.
    pub heartbeat: Duration,
}

impl FleetConfig {
    pub fn demo(gateway: &str, broker: MqttUrl) -> Self {
        Self {
            gateway: gateway.to_string(),
            broker,
            lifts: 4,
            sterilizers: 2,
            behind: Duration::from_secs(100),
            speed: 4.0,
            trap_after: Some(Duration::from_secs(20)),
            sample_every: Duration::from_millis(250),
            heartbeat: Duration::from_secs(10),
        }
    }
}

enum Model {
    Lift(SimLift, Option<u64>),
    Sterilizer(SimSterilizer),
}

impl Model {
    fn sample(&mut self, node: &mut SimNode, now_ms: u64, start_ms: u64) -> Option<Message> {
        let t = (now_ms - start_ms) / 1000;
        match self {
            Model::Lift(lift, trap_at) => {
                if trap_at.is_some_and(|at| t >= at) {
                    lift.trap_passenger();
                    *trap_at = None;
                }
                lift.step(t);
                node.report(now_ms, lift.status(t))
            }
            Model::Sterilizer(s) => {
                s.step(t);
                node.report(now_ms, s.status())
            }
        }
    }
}

/// Runs the fleet until the returned set is dropped or aborted.
pub fn start(config: &FleetConfig) -> JoinSet<()> {
    let clock = Arc::new(ScaledClock::catching_up(config.behind, config.speed));
    let mut tasks = JoinSet::new();
    for i in 0..config.lifts {
        let trap = if i == 0 {
            config.trap_after.map(|d| d.as_secs())
        } else {
            None
        };
        let model = Model::Lift(SimLift::new(12, 0x5eed + i as u64), trap);
        tasks.spawn(run_device(
            config.clone(),
            format!("lift-{:03}", i + 1),
            model,
            clock.clone(),
        ));
    }
    let methods = [Method::Infrared, Method::Steam, Method::Dishwasher];
    for i in 0..config.sterilizers {
        let model = Model::Sterilizer(SimSterilizer::new(methods[i % methods.len()], 4 * 3600));
        tasks.spawn(run_device(
            config.clone(),
            format!("sterilizer-{:03}", i + 1),
            model,
            clock.clone(),
        ));
    }
    tasks
}

async fn run_device(config: FleetConfig, device: String, mut model: Model, clock: Arc<ScaledClock>) {
    let node = Arc::new(Mutex::new(SimNode::new(
        &device,
        &config.gateway,
        config.heartbeat.as_millis() as u64,
    )));
    let mut options = client_options(&config.broker, &device);
    let id = DeviceId::try_from(device.as_str()).expect("valid id");
    let will_topic = Topic::Node {
        gateway: &config.gateway,
        device: &device,
        kind: Kind::Presence,
    }
    .write()
    .to_string();
    let will = json::encode(&Presence {
        v: SCHEMA_VERSION,
        device: id,
        online: false,
    });
    options.set_last_will(LastWill::new(will_topic, will, QoS::AtLeastOnce, false));
    let (client, mut events) = AsyncClient::new(options, 64);
    let ack_topic = node.lock().expect("node lock").ack_topic();

    let connection = {
        let (client, node) = (client.clone(), node.clone());
        async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.subscribe(ack_topic.clone(), QoS::AtLeastOnce).await;
                        // Replay what was never acknowledged, oldest first.
                        let pending = node.lock().expect("node lock").unacked();
                        for (topic, payload) in pending {
                            let _ = client.publish(topic, QoS::AtLeastOnce, false, payload).await;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                        if let Ok(ack) = json::decode::<NodeAck>(&p.payload, 256) {
                            node.lock().expect("node lock").ack(ack.seq);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
    };
    let sampling = async move {
        let start_ms = clock.now_ms();
        let mut tick = tokio::time::interval(config.sample_every);
        loop {
            tick.tick().await;
            let message = model.sample(&mut node.lock().expect("node lock"), clock.now_ms(), start_ms);
            if let Some((topic, payload)) = message
                && client.publish(topic, QoS::AtLeastOnce, false, payload).await.is_err()
            {
                return;
            }
        }
    };
    tokio::select! {
        _ = connection => {}
        _ = sampling => {}
    }
}
