//! `gridwatch equipment ...`: the equipment register.
use anyhow::{Context, Result};
use clap::Subcommand;
use gridwatch_cases::GridScope;
use gridwatch_domain::{DomainConfig, ImportError, ImportOptions};
use gridwatch_protocol::clock::{Clock, SystemClock};
use gridwatch_storage::Store;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum EquipmentCommand {
    /// Replace the register (or the part of it within --scope) with an office export (CSV,
    /// Chinese headers as exported; see simulators/data/README.md) and evaluate every device's
    /// due dates. Nothing changes if any row is bad or outside --scope, if the file has no
    /// device row, or if it would remove more than the configured share of the devices in
    /// scope (default a fifth) without --confirm-removals. Use it while ingest is stopped; a
    /// running ingest takes the same file at POST /api/equipment/import.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Database URL (`sqlite://PATH` or `postgres://...`).
        #[arg(long, env = "GRIDWATCH_DB", default_value_t = super::defaults::database())]
        db: String,
        /// Replace only the devices within this grid scope (2, 4 or 6 digits; repeatable);
        /// devices outside it are kept and rows outside it refused. Default: the whole register.
        #[arg(long, value_parser = parse_scope)]
        scope: Vec<GridScope>,
        /// Confirm removing up to this many devices (the number a refused import named).
        #[arg(long)]
        confirm_removals: Option<usize>,
        /// TOML file with `[register]` limits (docs/cases.md); the same file as ingest's --config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn parse_scope(text: &str) -> Result<GridScope, String> {
    GridScope::parse(text).map_err(|e| e.to_string())
}

pub(crate) async fn run(command: EquipmentCommand) -> Result<()> {
    match command {
        EquipmentCommand::Import {
            file,
            db,
            scope,
            confirm_removals,
            config,
        } => {
            let config = match config {
                Some(path) => DomainConfig::load(&path)?,
                None => DomainConfig::default(),
            };
            let options = ImportOptions {
                scope: (!scope.is_empty()).then_some(scope),
                confirm_removals,
            };
            import(file, db, config, options).await
        }
    }
}

async fn import(file: PathBuf, db: String, config: DomainConfig, options: ImportOptions) -> Result<()> {
    let csv = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let store = Store::open(&db).await?;
    let alerting = gridwatch_domain::load(&store, config).await?;
    let summary = match gridwatch_domain::import_register_with(&alerting, &csv, SystemClock.now_ms(), &options).await {
        Ok(summary) => summary,
        Err(ImportError::Rejected(rejected)) => {
            for e in &rejected.errors {
                eprintln!("{}: {e}", file.display());
            }
            return Err(rejected.into());
        }
        Err(e) => return Err(e).with_context(|| format!("{}: nothing imported", file.display())),
    };
    // The engine's state goes with the alerts it raised: without it the next import
    // or `gridwatch ingest` would not know those alerts are open, raise them again,
    // and never clear them.
    alerting
        .try_checkpoint(gridwatch_storage::model::now_ms())
        .await
        .context("saving the alert engine's state")?;
    println!(
        "{}: imported {} devices ({} removed, {} outside the scope kept); {} alert events from due dates",
        file.display(),
        summary.devices,
        summary.removed,
        summary.kept_outside_scope,
        summary.alert_events
    );
    Ok(())
}
