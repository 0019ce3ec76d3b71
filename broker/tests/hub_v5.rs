//! The guard's MQTT 5 cases (`tests/guard_v5.rs`) with the guard serving its clients
//! itself, as the gateway's node side does (the hub), instead of relaying to rumqttd.

/// The hub has one in-process link; cases that ask for none get one they do not use.
fn start_broker(
    name: &str,
    config: &gridwatch_broker::BrokerConfig,
    links: &[&str],
) -> gridwatch_broker::EmbeddedBroker {
    gridwatch_broker::EmbeddedBroker::start_hub(name, config, links.first().copied().unwrap_or("unused")).unwrap()
}

include!("guard_cases/v5.rs");
