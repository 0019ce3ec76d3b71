//! `gridwatch equipment ...`: the equipment register.
use anyhow::{Context, Result};
use clap::Subcommand;
use gridwatch_ingest::domain::{DomainConfig, RegisterRejected, persist};
use gridwatch_ingest::store::Store;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum EquipmentCommand {
    /// Replace the register with an office export (CSV, Chinese headers as exported; see
    /// shared/data/README.md) and evaluate every device's due dates. Nothing changes if any
    /// row is bad: every bad row is listed with its line and column. Use it while ingest is
    /// stopped; a running ingest takes the same file at POST /api/equipment/import.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Database URL (`sqlite://PATH` or `postgres://...`).
        #[arg(long, env = "GRIDWATCH_DB", default_value = "sqlite://data/gridwatch.db")]
        db: String,
    },
}

pub async fn run(command: EquipmentCommand) -> Result<()> {
    match command {
        EquipmentCommand::Import { file, db } => import(file, db).await,
    }
}

async fn import(file: PathBuf, db: String) -> Result<()> {
    let csv = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let registry = match gridwatch_cases::import_register(csv.as_slice()) {
        Ok(registry) => registry,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: {e}", file.display());
            }
            return Err(RegisterRejected { errors }.into());
        }
    };
    let store = Store::open(&db).await?;
    let mut domain = persist::load(&store, DomainConfig::default()).await?;
    let now = gridwatch_protocol::clock::Clock::now_ms(&gridwatch_protocol::clock::SystemClock);
    let devices = registry.devices().count();
    let fx = domain.replace_register(registry, now);
    persist::save(&store, &domain, &fx).await?;
    println!(
        "{}: imported {devices} devices; {} alert events from due dates",
        file.display(),
        fx.events.len()
    );
    Ok(())
}
