//! `gridwatch db ...`: database administration.
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum DbCommand {
    /// Create or upgrade the database schema, then exit.
    Migrate {
        /// Database URL (`sqlite://PATH`).
        #[arg(long, env = "GRIDWATCH_DB", default_value = "sqlite://data/gridwatch.db")]
        db: String,
    },
}

pub async fn run(command: DbCommand) -> Result<()> {
    match command {
        DbCommand::Migrate { db } => {
            gridwatch_ingest::store::Store::open(&db).await?;
            println!("database {db} is migrated");
            Ok(())
        }
    }
}
