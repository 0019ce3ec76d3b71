//! Hardware simulators that run the real node firmware: simulated hardware behind
//! the embedded-hal traits (`hal`), physics models of lifts ([`lift`]) and
//! sterilizers ([`sterilizer`]), simulated nodes that wrap the firmware's node logic,
//! outbox and MQTT session ([`node`], `link`), a fleet on a scaled wall clock
//! ([`fleet`], for `gridwatch demo`) and a load generator ([`load`]). Scenario
//! files are run by `gridwatch-scenario`, above the services. See `docs/simulators.md`.
//! Simulators know nothing of the gateway, ingest or storage: they speak MQTT.
//! Their errors are an [`Error`].
// Public: the modules other crates use. The rest are the simulators' own.
mod clock;
mod error;
pub mod fleet;
mod hal;
pub mod lift;
mod link;
pub mod load;
pub mod modbus;
pub mod node;
pub mod relay;
mod rng;
pub mod sterilizer;

pub use error::{Error, LoadConnectionError, Result};
