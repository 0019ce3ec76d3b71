//! MQTT plumbing shared by the gridwatch services: the embedded broker
//! ([`broker`]) and client options built from `mqtt://` URLs ([`url`]).
pub mod broker;
pub mod url;

pub use broker::{BrokerConfig, EmbeddedBroker, FilterLog, is_broker_thread, next_forward};
pub use url::{MqttUrl, client_options};
