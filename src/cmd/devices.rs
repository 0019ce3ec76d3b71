//! `gridwatch devices ...`: provisioning MQTT identities in a credentials file, and
//! the MQTT access options `ingest` and `gateway` share.
use anyhow::{Context, Result, bail};
use gridwatch_broker::{Auth, Credentials, CredentialsFile, GuardConfig, Role, TlsFiles};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Subcommand)]
pub(crate) enum DevicesCommand {
    /// Provision an identity and print its secret (shown this once; only its SHA-256 is kept).
    Add(AddArgs),
    /// Revoke an identity: brokers refuse it and close its connections, without a restart.
    Revoke(RevokeArgs),
    /// List the identities (never their secrets).
    List(FileArgs),
}

#[derive(clap::Args)]
pub(crate) struct FileArgs {
    /// The credentials file (TOML, docs/protocol.md "Identity and access"); created by the first `add`.
    #[arg(long, env = "GRIDWATCH_CREDENTIALS")]
    credentials: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct AddArgs {
    /// The identity: a device id (nodes), a gateway id, a service name, or a firm system's name.
    id: String,
    #[arg(long, value_parser = ["node", "gateway", "service", "load", "firm"])]
    role: String,
    /// The gateway a node belongs to (omit for a node that talks to ingest directly);
    /// for a load identity, the real gateway its simulated nodes connect to.
    #[arg(long)]
    gateway: Option<String>,
    /// Load identities only: it speaks for every device and gateway whose id starts with this.
    #[arg(long, required_if_eq("role", "load"))]
    prefix: Option<String>,
    /// Firm identities only: the firm (the register's 维保单位编码, e.g. MF04) whose feed it
    /// reads on feed/firm/FIRM.
    #[arg(long, required_if_eq("role", "firm"))]
    firm: Option<String>,
    #[command(flatten)]
    file: FileArgs,
}

#[derive(clap::Args)]
pub(crate) struct RevokeArgs {
    id: String,
    #[command(flatten)]
    file: FileArgs,
}

pub(crate) async fn run(command: DevicesCommand) -> Result<()> {
    match command {
        DevicesCommand::Add(args) => {
            let path = &args.file.credentials;
            let mut file = CredentialsFile::load_or_empty(path)?;
            let role: Role = args.role.parse().map_err(anyhow::Error::msg)?;
            let secret = match (role, args.firm.as_deref()) {
                (Role::Firm, Some(firm)) if args.gateway.is_none() && args.prefix.is_none() => {
                    file.add_firm(&args.id, firm, now_ms())?
                }
                (Role::Firm, _) => anyhow::bail!("a firm identity takes --firm only (no --gateway, no --prefix)"),
                (_, Some(_)) => anyhow::bail!("--firm is for --role firm only"),
                (_, None) => file.add_with_prefix(
                    &args.id,
                    role,
                    args.gateway.as_deref(),
                    args.prefix.as_deref(),
                    now_ms(),
                )?,
            };
            file.save(path)?;
            println!("{secret}");
            eprintln!(
                "{} {} added to {}; the secret above is shown only now: connect as mqtt://{}:SECRET@HOST:PORT",
                role.as_str(),
                args.id,
                path.display(),
                args.id
            );
        }
        DevicesCommand::Revoke(args) => {
            let path = &args.file.credentials;
            let mut file = CredentialsFile::load_or_empty(path)?;
            file.revoke(&args.id)?;
            file.save(path)?;
            eprintln!("{} revoked in {}", args.id, path.display());
        }
        DevicesCommand::List(args) => {
            let file = CredentialsFile::load_or_empty(&args.credentials)?;
            println!(
                "{:<32} {:<8} {:<32} {:<32} {:>14} state",
                "id", "role", "gateway", "prefix or firm", "created_ms"
            );
            for i in &file.identity {
                println!(
                    "{:<32} {:<8} {:<32} {:<32} {:>14} {}",
                    i.id,
                    i.role.as_str(),
                    i.gateway.as_deref().unwrap_or("-"),
                    i.prefix.as_deref().or(i.firm.as_deref()).unwrap_or("-"),
                    i.created_ms,
                    if i.revoked { "revoked" } else { "active" }
                );
            }
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Who may use a service's embedded MQTT broker.
#[derive(clap::Args)]
pub(crate) struct MqttAccessArgs {
    /// Credentials file of the MQTT identities (`gridwatch devices add`); re-read when it
    /// changes. Required unless --allow-anonymous.
    // Not a clap requirement: the error below names both ways and what to run first.
    #[arg(long, env = "GRIDWATCH_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// Run the MQTT broker open: anyone who reaches it may publish and read every topic.
    /// Logs a warning and sets gridwatch_broker_anonymous to 1.
    #[arg(long, conflicts_with = "credentials")]
    allow_anonymous: bool,
    /// TLS on the MQTT listener: the server's certificate chain (PEM)...
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// ...and its private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) of client certificates: a client may log in with a certificate whose CN
    /// is its identity instead of a secret.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Simultaneous MQTT connections; more are refused (CONNACK "server unavailable").
    #[arg(long, default_value_t = GuardConfig::default().max_clients)]
    max_mqtt_connections: usize,
}

impl MqttAccessArgs {
    /// The same choices from a configuration file (`gridwatch gateway --config`).
    pub(crate) fn new(
        credentials: Option<PathBuf>,
        allow_anonymous: bool,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        tls_client_ca: Option<PathBuf>,
        max_connections: Option<usize>,
    ) -> Self {
        Self {
            credentials,
            allow_anonymous,
            tls_cert,
            tls_key,
            tls_client_ca,
            max_mqtt_connections: max_connections.unwrap_or(GuardConfig::default().max_clients),
        }
    }

    pub(crate) fn guard(&self) -> Result<GuardConfig> {
        let auth = match (&self.credentials, self.allow_anonymous) {
            (Some(path), false) => Auth::Credentials {
                credentials: Arc::new(Credentials::open(path).with_context(|| {
                    format!(
                        "provision identities first: gridwatch devices add ID --role gateway --credentials {}",
                        path.display()
                    )
                })?),
                nodes_of: None,
            },
            (None, true) => Auth::Anonymous,
            _ => bail!(
                "the MQTT broker needs --credentials FILE (identities made with `gridwatch devices add`) \
                 or, for an open broker, --allow-anonymous"
            ),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert_chain), Some(key)) => Some(TlsFiles {
                cert_chain: cert_chain.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            }),
            _ => None,
        };
        Ok(GuardConfig {
            auth,
            tls,
            max_clients: self.max_mqtt_connections,
            ..GuardConfig::default()
        })
    }
}
