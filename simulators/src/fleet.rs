//! A fleet of simulated nodes (real firmware over physics models), each its own
//! MQTT client, publishing to a gateway's broker on a scaled wall clock: what
//! `gridwatch demo` and `gridwatch sim fleet` run.
use crate::clock::ScaledClock;
use crate::lift::{LiftEvent, LiftParams};
use crate::node::{EquipmentEvent, NodeConfig, SimNode};
use crate::sterilizer::{SterilizerEvent, SterilizerParams};
use crate::{Error, Result};
use gridwatch_mqtt::MqttUrl;
use gridwatch_protocol::Method;
use gridwatch_protocol::clock::Clock;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub gateway: String,
    /// The gateway's broker.
    pub broker: MqttUrl,
    pub lifts: usize,
    pub sterilizers: usize,
    /// Device ids to use, in order (e.g. registration codes from the register); lifts and
    /// sterilizers beyond these are named `lift-NNN` and `sterilizer-NNN`.
    pub lift_ids: Vec<String>,
    pub sterilizer_ids: Vec<String>,
    /// Device time starts this far in the past...
    pub behind: Duration,
    /// ...and runs this many times faster than wall time until it reaches now.
    pub speed: f64,
    /// Trap a passenger in the first lift (stopped between floors) after this much device time.
    pub trap_after: Option<Duration>,
    /// Wall time between two runs of the nodes (each run catches up with the clock).
    pub sample_every: Duration,
    /// Node heartbeat, device time.
    pub heartbeat: Duration,
    /// Passengers arriving per hour at each lift.
    pub traffic_per_hour: f64,
    /// Device id → secret, for brokers with credentials; a node without one
    /// connects anonymously.
    pub secrets: std::collections::HashMap<String, String>,
}

impl FleetConfig {
    pub fn demo(gateway: &str, broker: MqttUrl) -> Self {
        Self {
            gateway: gateway.to_string(),
            broker,
            lifts: 4,
            sterilizers: 2,
            lift_ids: Vec::new(),
            sterilizer_ids: Vec::new(),
            behind: Duration::from_secs(100),
            speed: 4.0,
            trap_after: Some(Duration::from_secs(20)),
            sample_every: Duration::from_millis(250),
            heartbeat: Duration::from_secs(10),
            traffic_per_hour: 90.0,
            secrets: std::collections::HashMap::new(),
        }
    }
}

impl FleetConfig {
    /// The device ids of the fleet's nodes, lifts first, as [`nodes`] names them.
    pub fn device_ids(&self) -> Vec<String> {
        let lifts = (0..self.lifts).map(|i| {
            self.lift_ids
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("lift-{:03}", i + 1))
        });
        let sterilizers = (0..self.sterilizers).map(|i| {
            self.sterilizer_ids
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("sterilizer-{:03}", i + 1))
        });
        lifts.chain(sterilizers).collect()
    }
}

fn resolve(url: &MqttUrl) -> Result<SocketAddr> {
    (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|source| Error::Resolve {
            broker: url.clone(),
            source,
        })?
        .next()
        .ok_or_else(|| Error::Unresolved { broker: url.clone() })
}

/// The fleet's nodes, with what the demo schedules for them.
pub fn nodes(config: &FleetConfig, start_ms: u64, wake: &Arc<Notify>) -> Result<Vec<SimNode>> {
    let broker = resolve(&config.broker)?;
    let node_config = |device: String| NodeConfig {
        heartbeat_ms: config.heartbeat.as_millis() as u32,
        secret: config.secrets.get(&device).cloned(),
        ..NodeConfig::new(&device, &config.gateway, broker)
    };
    let mut nodes = Vec::new();
    for i in 0..config.lifts {
        let params = LiftParams {
            floors: 12,
            traffic_per_hour: config.traffic_per_hour,
            seed: 0x5eed + i as u64,
            ..LiftParams::default()
        };
        let mut node = SimNode::lift(
            node_config(
                config
                    .lift_ids
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("lift-{:03}", i + 1)),
            ),
            params,
            start_ms,
            wake.clone(),
        )?;
        if let (0, Some(after)) = (i, config.trap_after) {
            // Somebody rides to the top and the drive stops the car between floors.
            let at = start_ms + after.as_millis() as u64;
            node.schedule(at, EquipmentEvent::Lift(LiftEvent::Call { from: 1, to: 12 }));
            node.schedule(at, EquipmentEvent::Lift(LiftEvent::StopBetweenFloors));
        }
        nodes.push(node);
    }
    let methods = [Method::Infrared, Method::Steam, Method::Dishwasher];
    for i in 0..config.sterilizers {
        let params = SterilizerParams::for_method(methods[i % methods.len()]);
        let mut node = SimNode::sterilizer(
            node_config(
                config
                    .sterilizer_ids
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("sterilizer-{:03}", i + 1)),
            ),
            params,
            start_ms,
            wake.clone(),
        )?;
        // A program soon after start, so the dashboard shows a cabinet heating.
        let at = start_ms + 30_000 * (i as u64 + 1);
        node.schedule(
            at,
            EquipmentEvent::Sterilizer(SterilizerEvent::StartCycle {
                hold_s: None,
                setpoint_c: None,
            }),
        );
        nodes.push(node);
    }
    Ok(nodes)
}

/// Runs the fleet until the returned set is dropped or aborted.
pub fn start(config: &FleetConfig) -> Result<JoinSet<()>> {
    let clock = Arc::new(ScaledClock::catching_up(config.behind, config.speed));
    let mut tasks = JoinSet::new();
    for node in nodes(config, clock.now_ms(), &Arc::new(Notify::new()))? {
        tasks.spawn(run_node(node, clock.clone(), config.sample_every));
    }
    Ok(tasks)
}

async fn run_node(mut node: SimNode, clock: Arc<ScaledClock>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = clock.now_ms().max(node.now_ms());
        if let Err(e) = node.advance_to(now) {
            tracing::error!(device = node.id(), error = %e, "simulated node stopped");
            return;
        }
        node.deliver(now).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_fleet_has_its_trap_and_its_programs_scheduled() {
        let config = FleetConfig::demo("gw-demo", "mqtt://127.0.0.1:1".parse().unwrap());
        let nodes = nodes(&config, 1_764_061_200_000, &Arc::new(Notify::new())).unwrap();
        let ids: Vec<&str> = nodes.iter().map(|n| n.id()).collect();
        assert_eq!(
            ids,
            [
                "lift-001",
                "lift-002",
                "lift-003",
                "lift-004",
                "sterilizer-001",
                "sterilizer-002"
            ]
        );
    }
}
