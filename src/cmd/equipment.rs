//! `gridwatch equipment ...`: the equipment register.
use anyhow::{Context, Result};
use clap::Subcommand;
use gridwatch_domain::DomainConfig;
use gridwatch_protocol::clock::{Clock, SystemClock};
use gridwatch_storage::Store;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum EquipmentCommand {
    /// Replace the register with an office export (CSV, Chinese headers as exported; see
    /// simulators/data/README.md) and evaluate every device's due dates. Nothing changes if any
    /// row is bad: every bad row is listed with its line and column. Use it while ingest is
    /// stopped; a running ingest takes the same file at POST /api/equipment/import.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Database URL (`sqlite://PATH` or `postgres://...`).
        #[arg(long, env = "GRIDWATCH_DB", default_value_t = super::defaults::database())]
        db: String,
    },
}

pub(crate) async fn run(command: EquipmentCommand) -> Result<()> {
    match command {
        EquipmentCommand::Import { file, db } => import(file, db).await,
    }
}

async fn import(file: PathBuf, db: String) -> Result<()> {
    let csv = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let store = Store::open(&db).await?;
    let alerting = gridwatch_domain::load(&store, DomainConfig::default()).await?;
    let summary = match gridwatch_domain::import_register(&alerting, &csv, SystemClock.now_ms()).await {
        Ok(summary) => summary,
        Err(rejected) => {
            for e in &rejected.errors {
                eprintln!("{}: {e}", file.display());
            }
            return Err(rejected.into());
        }
    };
    // The engine's state goes with the alerts it raised: without it the next import
    // or `gridwatch ingest` would not know those alerts are open, raise them again,
    // and never clear them.
    alerting
        .try_checkpoint(gridwatch_storage::model::now_ms())
        .await
        .context("saving the alert engine's state")?;
    println!(
        "{}: imported {} devices; {} alert events from due dates",
        file.display(),
        summary.devices,
        summary.alert_events
    );
    Ok(())
}
