//! `gridwatch db ...`: database administration.
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum DbCommand {
    /// Create or upgrade the database schema, then exit.
    Migrate {
        /// Database URL: `sqlite://PATH` or `postgres://user@host/db` (over the Unix socket:
        /// `postgres:///db?host=/var/run/postgresql`).
        #[arg(long, env = "GRIDWATCH_DB", default_value_t = super::defaults::database())]
        db: String,
    },
}

pub(crate) async fn run(command: DbCommand) -> Result<()> {
    match command {
        DbCommand::Migrate { db } => {
            let store = gridwatch_storage::Store::open(&db).await?;
            println!(
                "database {} ({}) is migrated",
                gridwatch_storage::redact_url(&db),
                store.backend()
            );
            Ok(())
        }
    }
}
