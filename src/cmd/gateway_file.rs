//! `gridwatch gateway --config FILE`: the whole gateway in one TOML file (docs/gateway.md,
//! "Configuration file"). Relative paths in it are relative to the file's directory, so a
//! gateway's directory can move as a whole.
use super::devices::MqttAccessArgs;
use anyhow::{Context, Result};
use gridwatch_gateway::modbus::{ModbusDevice, PollConfig, Transport, map::RegisterMap};
use gridwatch_mqtt::MqttUrl;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayFile {
    /// The `{gateway}` segment of its topics.
    id: String,
    /// The node broker's address.
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default = "default_data")]
    data: PathBuf,
    uplink: UplinkSection,
    nodes: NodesSection,
    #[serde(default)]
    outbox: OutboxSection,
    #[serde(default)]
    modbus: ModbusSection,
}

fn default_listen() -> SocketAddr {
    super::defaults::GATEWAY_MQTT.parse().expect("a valid default")
}

fn default_data() -> PathBuf {
    PathBuf::from(super::defaults::GATEWAY_DATA_DIR)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UplinkSection {
    /// `mqtt://ID:SECRET@host:port` or `mqtts://...`.
    url: String,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Who may use the node broker: as the command line's --credentials and friends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesSection {
    credentials: Option<PathBuf>,
    #[serde(default)]
    allow_anonymous: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    max_connections: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OutboxSection {
    max_readings: Option<u64>,
    max_mib: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ModbusSection {
    period_ms: Option<u64>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    device: Vec<ModbusEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModbusEntry {
    id: String,
    map: PathBuf,
    /// `tcp://HOST:PORT` or `rtu+tcp://HOST:PORT`.
    url: String,
    unit_id: Option<u8>,
    period_ms: Option<u64>,
}

/// The gateway's configuration from `path`; errors name the file, the key and what was expected.
pub(crate) fn load(path: &Path) -> Result<gridwatch_gateway::GatewayConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading gateway config {}", path.display()))?;
    let file: GatewayFile = toml::from_str(&text).with_context(|| format!("gateway config {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let at = |p: &Path| base.join(p);
    let problem = |key: &str, what: String| anyhow::anyhow!("gateway config {}: {key}: {what}", path.display());

    let uplink: MqttUrl = file.uplink.url.parse().map_err(|e| {
        problem(
            "uplink.url",
            format!("expected mqtt://ID:SECRET@HOST:PORT or mqtts://...: {e}"),
        )
    })?;
    let mut config = gridwatch_gateway::GatewayConfig::new(&file.id, uplink, at(&file.data));
    config.listen = file.listen;
    config.uplink_tls = match (file.uplink.ca, file.uplink.cert, file.uplink.key) {
        (Some(ca), cert, key) => {
            let cert_and_key = match (cert, key) {
                (Some(cert), Some(key)) => Some((at(&cert), at(&key))),
                (None, None) => None,
                _ => return Err(problem("uplink.cert", "expected both cert and key, or neither".into())),
            };
            Some(gridwatch_mqtt::TlsClientFiles {
                ca: at(&ca),
                cert_and_key,
            })
        }
        (None, None, None) => None,
        _ => {
            return Err(problem(
                "uplink.ca",
                "expected with uplink.cert and uplink.key (mqtts://)".into(),
            ));
        }
    };
    let nodes = file.nodes;
    config.node_guard = MqttAccessArgs::new(
        nodes.credentials.map(|p| at(&p)),
        nodes.allow_anonymous,
        nodes.tls_cert.map(|p| at(&p)),
        nodes.tls_key.map(|p| at(&p)),
        nodes.tls_client_ca.map(|p| at(&p)),
        nodes.max_connections,
    )
    .guard()
    .with_context(|| format!("gateway config {}: [nodes]", path.display()))?;
    if let Some(max) = file.outbox.max_readings {
        config.outbox_budget.max_readings = max;
    }
    if let Some(mib) = file.outbox.max_mib {
        config.outbox_budget.max_bytes = mib << 20;
    }
    let defaults = PollConfig::default();
    let poll = PollConfig {
        period: file
            .modbus
            .period_ms
            .map_or(defaults.period, |ms| Duration::from_millis(ms.max(1))),
        timeout: file
            .modbus
            .timeout_ms
            .map_or(defaults.timeout, |ms| Duration::from_millis(ms.max(1))),
        ..defaults
    };
    for (i, entry) in file.modbus.device.into_iter().enumerate() {
        let key = |field: &str| format!("modbus.device[{i}] ({}).{field}", entry.id);
        let transport = transport(&entry.url).ok_or_else(|| {
            problem(
                &key("url"),
                format!("expected tcp://HOST:PORT or rtu+tcp://HOST:PORT, found {:?}", entry.url),
            )
        })?;
        let map = RegisterMap::load(&at(&entry.map))
            .with_context(|| format!("gateway config {}: {}", path.display(), key("map")))?;
        let mut device_poll = poll.clone();
        if let Some(ms) = entry.period_ms {
            device_poll.period = Duration::from_millis(ms.max(1));
        }
        config.modbus.devices.push(ModbusDevice {
            device: entry.id,
            map: Arc::new(map),
            transport,
            unit_id: entry.unit_id,
            poll: device_poll,
        });
    }
    Ok(config)
}

/// `tcp://HOST:PORT` or `rtu+tcp://HOST:PORT`.
pub(crate) fn transport(url: &str) -> Option<Transport> {
    match url.split_once("://")? {
        ("tcp", addr) => Some(Transport::Tcp(addr.parse().ok()?)),
        ("rtu+tcp", addr) => Some(Transport::RtuOverTcp(addr.parse().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const MINIMAL: &str =
        "id = \"gw-01\"\n[uplink]\nurl = \"mqtt://gw-01:s3cret@127.0.0.1:1884\"\n[nodes]\nallow_anonymous = true\n";

    #[test]
    fn a_minimal_file_gives_the_defaults_and_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(&write(dir.path(), &format!("{MINIMAL}[outbox]\nmax_mib = 64\n"))).unwrap();
        assert_eq!(config.id, "gw-01");
        assert_eq!(config.outbox_budget.max_bytes, 64 << 20);
        assert_eq!(
            config.data_dir,
            dir.path().join(super::super::defaults::GATEWAY_DATA_DIR)
        );
    }

    #[test]
    fn errors_name_the_file_the_key_and_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (format!("{MINIMAL}[outbox]\nmax_mb = 64\n"), "max_mb"),
            (MINIMAL.replace("mqtt://gw-01", "http://gw-01"), "uplink.url"),
            (
                format!("{MINIMAL}[[modbus.device]]\nid = \"L-1\"\nmap = \"m.toml\"\nurl = \"udp://1.2.3.4:502\"\n"),
                "modbus.device[0] (L-1).url",
            ),
            (MINIMAL.replace("allow_anonymous = true\n", ""), "--credentials"),
            (format!("{MINIMAL}[broker]\nlog_mib = 1\n"), "broker"),
        ];
        for (text, key) in cases {
            let e = format!("{:#}", load(&write(dir.path(), &text)).expect_err(key));
            assert!(e.contains("gateway.toml") && e.contains(key), "{key}: {e}");
        }
    }
}
