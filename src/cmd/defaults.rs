//! Defaults the commands share, each written once. Settings of a library crate
//! default there (`PipelineConfig`, `BrokerLog`, `GatewayConfig`...), and the
//! options read them from it, so `--help` shows the values the code uses.
use std::path::Path;

/// The HTTP API and dashboard of `ingest` and `demo`.
pub(super) const HTTP: &str = "127.0.0.1:8080";
/// Ingest's embedded broker, where gateways and smart nodes publish.
pub(super) const INGEST_MQTT: &str = "127.0.0.1:1884";
/// A gateway's embedded broker, where its nodes publish.
pub(super) const GATEWAY_MQTT: &str = "127.0.0.1:1883";
/// Where `ingest` and `demo` keep their data.
pub(super) const DATA_DIR: &str = "data";
/// Where `gateway` keeps its data.
pub(super) const GATEWAY_DATA_DIR: &str = "data/gateway";
/// Simulated equipment of `demo` and `sim fleet`.
pub(super) const LIFTS: usize = 4;
pub(super) const STERILIZERS: usize = 2;

/// The database `ingest` uses under [`DATA_DIR`], for the commands that open it
/// while ingest is stopped (`db migrate`, `equipment import`).
pub(super) fn database() -> String {
    gridwatch_ingest::IngestConfig::embedded(Path::new(DATA_DIR)).database
}
/// Simulated devices of `sim load` and `bench ingest`.
pub(super) const LOAD_DEVICES: usize = 10_000;
/// Readings per message of the load in gateway mode, as a gateway batches them.
pub(super) const LOAD_BATCH: usize = 500;
