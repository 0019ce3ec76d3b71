//! One module per subcommand: its options (clap) and its handler.
pub(crate) mod bench;
pub(crate) mod db;
mod defaults;
pub(crate) mod demo;
pub(crate) mod devices;
pub(crate) mod equipment;
pub(crate) mod gateway;
mod gateway_file;
pub(crate) mod ingest;
mod listen;
pub(crate) mod sim;
pub(crate) mod users;
pub(crate) mod webhooks;
