//! The guard's rules for MQTT 5 clients, on the same listener as MQTT 3.1.1 ones:
//! the same login, ACL, retain, client-id and limit rules as `tests/guard.rs`, with
//! MQTT 5 CONNACK reason codes, and topic aliases neither offered nor accepted.
//! Real rumqttc v5 clients, and a bare client over rumqttc's v5 codec where the
//! test needs exact packets.
//!
//! The same cases run against the hub in `tests/hub_v5.rs`.

fn start_broker(
    name: &str,
    config: &gridwatch_broker::BrokerConfig,
    links: &[&str],
) -> gridwatch_broker::EmbeddedBroker {
    gridwatch_broker::EmbeddedBroker::start(name, config, links).unwrap()
}

include!("guard_cases/v5.rs");
