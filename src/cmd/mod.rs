//! One module per subcommand: its options (clap) and its handler.
pub mod bench;
pub mod db;
pub mod demo;
pub mod equipment;
pub mod gateway;
pub mod ingest;
pub mod sim;
