//! `gridwatch gateway`: an edge gateway on its own.
use anyhow::Result;
use gridwatch_mqtt::MqttUrl;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct GatewayArgs {
    /// Gateway id: the `{gateway}` segment of its topics (A-Z a-z 0-9 - _ ., at most 32).
    #[arg(long)]
    id: String,
    /// The ingest service's broker, e.g. mqtt://127.0.0.1:1884.
    #[arg(long)]
    uplink: MqttUrl,
    /// Address of the embedded broker nodes connect to.
    #[arg(long, default_value = super::defaults::GATEWAY_MQTT)]
    listen: SocketAddr,
    /// Directory for the gateway's quarantine.
    #[arg(long, default_value = super::defaults::GATEWAY_DATA_DIR)]
    data: PathBuf,
}

pub(crate) async fn run(args: GatewayArgs) -> Result<()> {
    let mut config = gridwatch_gateway::GatewayConfig::new(&args.id, args.uplink, args.data);
    config.listen = args.listen;
    Ok(gridwatch_gateway::run(config).await?)
}
