//! One module per subcommand: its options (clap) and its handler.
pub(crate) mod bench;
pub(crate) mod db;
mod defaults;
pub(crate) mod demo;
pub(crate) mod equipment;
pub(crate) mod gateway;
pub(crate) mod ingest;
pub(crate) mod sim;
