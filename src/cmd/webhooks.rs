//! `gridwatch webhooks ...`: maintenance firms' webhook endpoints in the database. A
//! running ingest picks up an endpoint added or removed here within its poll
//! (`--webhook-poll-ms`, 5 s by default): no restart.
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use gridwatch_ingest::webhooks::{Secret, check_url};
use gridwatch_protocol::clock::{Clock, SystemClock};
use gridwatch_storage::Store;
use gridwatch_storage::webhooks::{self as store, NewEndpoint};

#[derive(clap::Args)]
pub(crate) struct DbArg {
    /// Database URL (`sqlite://PATH` or `postgres://...`), the one ingest uses.
    #[arg(long, env = "GRIDWATCH_DB", default_value_t = super::defaults::database())]
    db: String,
}

#[derive(Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Register an endpoint for a firm and print its secret (shown this once if generated).
    /// It gets the firm's feed events from now on.
    Add {
        #[command(flatten)]
        db: DbArg,
        /// The firm (the register's 维保单位编码, e.g. MF04).
        #[arg(long)]
        firm: String,
        /// Where deliveries are POSTed: http or https.
        #[arg(long)]
        url: String,
        /// The signing secret, `whsec_<base64 of 24 to 64 bytes>`; generated when absent.
        #[arg(long, env = "GRIDWATCH_WEBHOOK_SECRET")]
        secret: Option<String>,
    },
    /// List endpoints (never their secrets), with their pending and parked deliveries.
    List {
        #[command(flatten)]
        db: DbArg,
        /// Only this firm's.
        #[arg(long)]
        firm: Option<String>,
    },
    /// Remove an endpoint and its delivery log.
    Remove {
        #[command(flatten)]
        db: DbArg,
        /// The endpoint's id, as `list` shows it.
        id: i64,
    },
}

pub(crate) async fn run(command: WebhooksCommand) -> Result<()> {
    match command {
        WebhooksCommand::Add { db, firm, url, secret } => {
            let firm = firm.trim();
            if firm.is_empty() || firm.contains(char::is_whitespace) {
                bail!("--firm {firm:?}: expected the firm's code from the register, e.g. MF04");
            }
            let url = check_url(&url).map_err(|e| anyhow::anyhow!("--{e}"))?;
            let (secret, generated) = match secret {
                Some(text) => (Secret::parse(&text)?, false),
                None => (Secret::generate()?, true),
            };
            let store = open(&db).await?;
            if store::endpoints(&store, Some(firm)).await?.len() >= gridwatch_ingest::webhooks::MAX_ENDPOINTS_PER_FIRM {
                bail!(
                    "firm {firm} has {} webhook endpoints, the most it may; remove one first",
                    gridwatch_ingest::webhooks::MAX_ENDPOINTS_PER_FIRM
                );
            }
            let login = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let endpoint = store::add_endpoint(
                &store,
                &NewEndpoint {
                    firm,
                    url: url.as_str(),
                    secret: secret.as_str(),
                    created_by: &format!("cli:{login}"),
                    at: SystemClock.now_ms() as i64,
                },
            )
            .await?;
            eprintln!("webhook endpoint {} for firm {firm}: {}", endpoint.id, endpoint.url);
            if generated {
                eprintln!("its signing secret (shown this once):");
                println!("{}", secret.as_str());
            }
            Ok(())
        }
        WebhooksCommand::List { db, firm } => {
            let store = open(&db).await?;
            println!("{:<6} {:<10} {:>8} {:>7}  url", "id", "firm", "pending", "parked");
            for e in store::endpoints(&store, firm.as_deref()).await? {
                let pending = count(&store, e.id, store::Status::Pending).await?;
                let parked = count(&store, e.id, store::Status::Parked).await?;
                println!("{:<6} {:<10} {pending:>8} {parked:>7}  {}", e.id, e.firm, e.url);
            }
            Ok(())
        }
        WebhooksCommand::Remove { db, id } => {
            let store = open(&db).await?;
            if !store::remove_endpoint(&store, id).await? {
                bail!("no webhook endpoint {id} (see `gridwatch webhooks list`)");
            }
            eprintln!("webhook endpoint {id} removed; a running ingest stops delivering to it within seconds");
            Ok(())
        }
    }
}

/// How many of the endpoint's deliveries have `status` (the log is pruned, so this stays small).
async fn count(store: &Store, id: i64, status: store::Status) -> Result<usize> {
    Ok(store::deliveries(store, id, Some(status), 0, i64::MAX).await?.len())
}

async fn open(db: &DbArg) -> Result<Store> {
    Store::open(&db.db)
        .await
        .with_context(|| format!("opening {}", gridwatch_storage::redact_url(&db.db)))
}
