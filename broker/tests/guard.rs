//! The guard in front of rumqttd, against real rumqttc clients on port 0: who may
//! connect, what each identity may publish and subscribe to, and the limits.
//!
//! The same cases run against the hub in `tests/hub.rs`.

fn start_broker(
    name: &str,
    config: &gridwatch_broker::BrokerConfig,
    links: &[&str],
) -> gridwatch_broker::EmbeddedBroker {
    gridwatch_broker::EmbeddedBroker::start(name, config, links).unwrap()
}

include!("guard_cases/v4.rs");
