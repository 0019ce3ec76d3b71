//! What can go wrong at the simulators' API: [`Error`], and for the load generator's
//! connections [`LoadConnectionError`]. The underlying I/O error of a variant is its
//! [`source`](std::error::Error::source), not part of its message.
use crate::node::{EquipmentEvent, OutOfBounds};
use gridwatch_firmware::outbox::OutboxError;
use gridwatch_firmware::session::ConfigError;
use gridwatch_mqtt::MqttUrl;
use std::net::SocketAddr;

/// A simulators' result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A [`CuttableLink`](crate::relay::CuttableLink) could not listen on loopback.
    #[error("starting a relay to {target}")]
    Relay {
        target: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// [`LiftParams::validate`](crate::lift::LiftParams::validate) refused a node's lift.
    #[error("lift {device}: {problem}")]
    LiftParams { device: String, problem: String },
    /// [`SterilizerParams::validate`](crate::sterilizer::SterilizerParams::validate)
    /// refused a node's cabinet.
    #[error("sterilizer {device}: {problem}")]
    SterilizerParams { device: String, problem: String },
    /// The firmware's session refused the node's device or gateway id.
    #[error("device {device:?} on gateway {gateway:?}: {problem:?}")]
    NodeIds {
        device: String,
        gateway: String,
        problem: ConfigError,
    },
    /// The firmware could not open the node's outbox on its simulated storage.
    #[error("opening the node outbox of {device}: {problem:?}")]
    Outbox {
        device: String,
        problem: OutboxError<OutOfBounds>,
    },
    #[error("node {device}: its MQTT secret is longer than the {max} characters a node keeps")]
    SecretTooLong { device: String, max: usize },
    /// An event for one kind of equipment was given to a node watching the other.
    #[error("{event:?} does not apply to {device}")]
    WrongEquipment { device: String, event: EquipmentEvent },

    /// Looking up a fleet's broker failed.
    #[error("resolving {broker:?}")]
    Resolve {
        broker: MqttUrl,
        #[source]
        source: std::io::Error,
    },
    /// A fleet's broker has no address.
    #[error("{broker:?} does not resolve")]
    Unresolved { broker: MqttUrl },

    /// [`LoadConfig::devices`](crate::load::LoadConfig::devices) or
    /// [`LoadConfig::connections`](crate::load::LoadConfig::connections) is 0.
    #[error("load: --devices and --connections must be at least 1")]
    LoadDevices,
    /// Neither [`LoadConfig::readings`](crate::load::LoadConfig::readings) nor
    /// [`LoadConfig::duration`](crate::load::LoadConfig::duration) ends the load.
    #[error("load: give a number of readings (--messages) or a --duration")]
    LoadUnbounded,
    /// [`LoadConfig::batch`](crate::load::LoadConfig::batch) is not 1-1000 in gateway mode.
    #[error("load: --batch must be 1-1000 readings (a gateway batch is at most 256 KiB), not {batch}")]
    LoadBatch { batch: usize },
    /// One of the load generator's connections failed (connecting, or later).
    #[error("connection {connection} to {broker}")]
    LoadConnection {
        connection: usize,
        broker: MqttUrl,
        #[source]
        source: LoadConnectionError,
    },
    /// A load connection's task panicked (or was cancelled).
    #[error("a load connection panicked")]
    LoadTask(#[source] tokio::task::JoinError),
    /// [`LoadReport::from_json`](crate::load::LoadReport::from_json) got something else.
    #[error("not a load report: {line:?}")]
    LoadReport {
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What went wrong on one of the load generator's connections
/// (in [`Error::LoadConnection`]).
#[derive(Debug, thiserror::Error)]
pub enum LoadConnectionError {
    #[error("connecting")]
    Connect(#[source] std::io::Error),
    /// Writing CONNECT and SUBSCRIBE, or reading their acks.
    #[error("logging in")]
    Login(#[source] std::io::Error),
    #[error("no CONNACK/SUBACK within 10 s")]
    LoginTimeout,
    #[error("the broker closed the connection (refused login?)")]
    ClosedAtLogin,
    #[error("CONNACK refused the connection, code {code}")]
    Refused { code: u8 },
    /// The broker closed the connection, or reading from it failed, after the login.
    #[error("the broker closed the connection")]
    Closed,
    #[error("unreadable packet from the broker: {problem}")]
    Unreadable { problem: &'static str },
    #[error("publishing")]
    Publish(#[source] std::io::Error),
    /// Publishing unacknowledged readings again.
    #[error("publishing again")]
    Resend(#[source] std::io::Error),
    /// Keeping a slow connection alive.
    #[error("sending PINGREQ")]
    Ping(#[source] std::io::Error),
}
