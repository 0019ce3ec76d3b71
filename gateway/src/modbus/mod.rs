//! Controllers without a node, polled by the gateway over Modbus (TCP, or RTU through
//! an RTU-over-TCP converter). Each device's register map ([`map`]) says where its
//! status fields are; each device is polled on its own task ([`poll`]); its values
//! become the same readings a node would send ([`status`]) and enter the outbox like
//! node readings. See docs/gateway.md.
pub mod map;
mod poll;
mod status;

use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::clock::{Clock, SystemClock};
use map::RegisterMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How a device's slave is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP (MBAP framing).
    Tcp(SocketAddr),
    /// Modbus RTU frames (CRC, no MBAP header) through a serial-to-TCP converter.
    RtuOverTcp(SocketAddr),
}

/// When and how patiently a device is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollConfig {
    pub period: Duration,
    /// Longest wait for one answer (and for a connect).
    pub timeout: Duration,
    /// New connections tried within one poll after a failed one.
    pub retries: u32,
    /// Longest wait between attempts while a slave does not answer.
    pub backoff_max: Duration,
    /// A status reading at least this often, changed or not.
    pub heartbeat: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            retries: 1,
            backoff_max: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// One controller the gateway polls.
#[derive(Debug, Clone)]
pub struct ModbusDevice {
    /// The device id its readings carry (a node of this gateway, like any other).
    pub device: String,
    pub map: Arc<RegisterMap>,
    pub transport: Transport,
    /// Overrides the map's unit id (several controllers behind one converter).
    pub unit_id: Option<u8>,
    pub poll: PollConfig,
}

/// The gateway's Modbus devices and the clock that stamps their readings.
#[derive(Clone)]
pub struct ModbusConfig {
    pub devices: Vec<ModbusDevice>,
    pub clock: Arc<dyn Clock>,
}

impl Default for ModbusConfig {
    fn default() -> Self {
        Self {
            devices: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for ModbusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModbusConfig")
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

/// Why the pollers could not start.
#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    #[error("modbus device id {0:?} must be 1-32 characters of A-Z a-z 0-9 - _ .")]
    BadDevice(String),
    #[error("modbus device {0:?} is listed twice")]
    Duplicate(String),
    #[error("modbus start counter {}: {source}", path.display())]
    Epoch { path: PathBuf, source: std::io::Error },
}

/// File in the data dir counting the gateway's starts: the high half of every
/// polled reading's seq.
const EPOCH_FILE: &str = "modbus-starts";

/// Starts one poller per device on `tasks`; every reading goes to `sink`.
pub(crate) fn spawn(
    config: &ModbusConfig,
    data_dir: &Path,
    sink: Arc<dyn Fn(Reading) + Send + Sync>,
    tasks: &mut JoinSet<()>,
) -> Result<(), ModbusError> {
    if config.devices.is_empty() {
        return Ok(());
    }
    describe_metrics();
    let mut seen = std::collections::HashSet::new();
    for d in &config.devices {
        if !gridwatch_protocol::validate::valid_device_id(&d.device) {
            return Err(ModbusError::BadDevice(d.device.clone()));
        }
        if !seen.insert(d.device.as_str()) {
            return Err(ModbusError::Duplicate(d.device.clone()));
        }
    }
    let epoch = next_epoch(data_dir)?;
    for d in &config.devices {
        let id = gridwatch_protocol::DeviceId::try_from(d.device.as_str()).expect("validated above");
        let heartbeat_ms = u64::try_from(d.poll.heartbeat.as_millis()).unwrap_or(u64::MAX);
        let tracker = status::Tracker::new(
            id,
            d.map.kind,
            d.map.method,
            status::SeqSource::new(epoch),
            heartbeat_ms,
        );
        tracing::info!(device = %d.device, model = %d.map.model, transport = ?d.transport, epoch, "polling modbus device");
        tasks.spawn(poll::run(d.clone(), tracker, config.clock.clone(), sink.clone()));
    }
    Ok(())
}

/// Counts this start in the data dir and returns its number (1 for the first). Written
/// to a temporary file and renamed, so a crash leaves the old count or the new one.
fn next_epoch(data_dir: &Path) -> Result<u32, ModbusError> {
    let path = data_dir.join(EPOCH_FILE);
    let err = |source| ModbusError::Epoch {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u32>()
            .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(err(e)),
    };
    let epoch = previous
        .checked_add(1)
        .ok_or_else(|| err(std::io::Error::other("more than 2^32 starts")))?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp).map_err(err)?;
        writeln!(file, "{epoch}").map_err(err)?;
        file.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, &path).map_err(err)?;
    std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(err)?;
    Ok(epoch)
}

fn describe_metrics() {
    metrics::describe_histogram!(
        "gridwatch_gateway_modbus_poll_seconds",
        metrics::Unit::Seconds,
        "Time for one answered Modbus poll of a device (all its register blocks), per device."
    );
    metrics::describe_counter!(
        "gridwatch_gateway_modbus_timeouts_total",
        "Modbus requests or connects of a device that got no answer within its timeout."
    );
    metrics::describe_counter!(
        "gridwatch_gateway_modbus_exceptions_total",
        "Modbus exception responses of a device, by exception code."
    );
    metrics::describe_counter!(
        "gridwatch_gateway_modbus_connect_errors_total",
        "Connections to a device's Modbus slave that were refused or failed."
    );
    metrics::describe_counter!(
        "gridwatch_gateway_modbus_decode_errors_total",
        "Modbus answers that did not fit the device's register map (e.g. an unlabelled value)."
    );
    metrics::describe_gauge!(
        "gridwatch_gateway_modbus_up",
        "1 while a device's last Modbus poll was answered, 0 during an outage."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_counter_grows_by_one_per_start_and_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_epoch(dir.path()).unwrap(), 1);
        assert_eq!(next_epoch(dir.path()).unwrap(), 2);
        std::fs::write(dir.path().join(EPOCH_FILE), "garbage").unwrap();
        let err = next_epoch(dir.path()).unwrap_err().to_string();
        assert!(err.contains(EPOCH_FILE), "{err}");
    }
}
