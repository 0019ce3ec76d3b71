//! The embedded MQTT broker (rumqttd) that the gateway offers to nodes and the
//! ingest service offers to gateways and direct nodes.
//!
//! It exists as its own crate so both services start rumqttd the same way, with
//! the same guards against rumqttd 0.20's known failure modes:
//! - rumqttd binds its own socket from a fixed address, so port 0 is resolved here
//!   first (bind, read the port, release) and readiness is polled with a deadline;
//! - a client rejected by `max_connections` that reconnects with the same id panics
//!   the router, so the limit is set far above what we accept (see [`BrokerConfig`]);
//! - a failed login closes the socket silently and an oversized publish resets the
//!   connection: clients must check sizes before publishing (protocol limits are
//!   well below `max_payload`).
//!
//! In-process consumers use rumqttd's local links, which skip the TCP stack
//! entirely (the largest single throughput win measured; see docs/benchmarks.md).
use anyhow::{Context, Result};
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where MQTT clients connect; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Largest publish accepted, in bytes. Larger ones reset the connection (rumqttd).
    pub max_payload: usize,
    /// Upper bound on simultaneous connections.
    pub max_connections: usize,
    /// Per-connection QoS 1 messages in flight.
    pub max_inflight: usize,
    /// username → password for MQTT logins; `None` accepts anonymous clients.
    pub credentials: Option<HashMap<String, String>>,
    /// Size and count of the router's in-memory log segments: the memory bound.
    pub segment_size: usize,
    pub segment_count: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_payload: 1024 * 1024,
            // Far above real use: rumqttd panics when a client refused for this limit reconnects.
            max_connections: 200_000,
            max_inflight: 100,
            credentials: None,
            segment_size: 16 * 1024 * 1024,
            segment_count: 4,
        }
    }
}

/// A running broker and the in-process links that were asked for at start.
pub struct EmbeddedBroker {
    /// The address clients connect to, with the real port.
    pub addr: SocketAddr,
    links: HashMap<String, (LinkTx, LinkRx)>,
}

impl EmbeddedBroker {
    /// Starts the broker on its own threads and opens one local link per name in `links`.
    /// Returns once the listener accepts connections.
    pub fn start(name: &str, config: &BrokerConfig, links: &[&str]) -> Result<Self> {
        let addr = resolve_port(config.listen)?;
        let mut broker = Broker::new(rumqttd_config(name, addr, config));
        let links = links
            .iter()
            .map(|id| {
                let link = broker
                    .link(id)
                    .with_context(|| format!("opening local link {id} on broker {name}"))?;
                Ok((id.to_string(), link))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        std::thread::Builder::new()
            .name(format!("{name}-broker"))
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded broker stopped");
                }
            })?;
        wait_until_listening(addr, Duration::from_secs(10))
            .with_context(|| format!("broker {name} did not start listening on {addr}"))?;
        tracing::info!(%addr, broker = name, "embedded MQTT broker listening");
        Ok(Self { addr, links })
    }

    /// Takes the local link opened at start under `id`.
    pub fn take_link(&mut self, id: &str) -> Result<(LinkTx, LinkRx)> {
        self.links
            .remove(id)
            .with_context(|| format!("no local link named {id} (already taken?)"))
    }
}

fn rumqttd_config(name: &str, addr: SocketAddr, config: &BrokerConfig) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: config.max_payload,
        max_inflight_count: config.max_inflight,
        auth: config.credentials.clone(),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: format!("{name}-v4"),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: config.segment_size,
            max_segment_count: config.segment_count,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    }
}

/// rumqttd binds by address only, so a port of 0 is turned into a free port here.
/// The port is released before rumqttd binds it; the window is tiny and only
/// matters when something else grabs ports at random in between.
fn resolve_port(listen: SocketAddr) -> Result<SocketAddr> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    let probe = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    Ok(probe.local_addr()?)
}

/// Polls until `addr` answers an MQTT CONNECT, or fails after `timeout`.
///
/// A bare TCP connect would do, but rumqttd logs an error for every socket that
/// closes before CONNECT; the probe says hello and goodbye properly instead.
pub fn wait_until_listening(addr: SocketAddr, timeout: Duration) -> Result<()> {
    // CONNECT, MQTT 3.1.1, clean session, keep-alive 10 s, client id "probe".
    const CONNECT: [u8; 19] = [
        0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 5, b'p', b'r', b'o', b'b', b'e',
    ];
    const DISCONNECT: [u8; 2] = [0xe0, 0];
    let deadline = Instant::now() + timeout;
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(mut socket) => {
                use std::io::{Read, Write};
                socket.set_read_timeout(Some(Duration::from_secs(2)))?;
                socket.write_all(&CONNECT)?;
                // CONNACK, or a closed socket where logins are required: either way it is serving.
                let mut connack = [0u8; 4];
                let _ = socket.read(&mut connack);
                let _ = socket.write_all(&DISCONNECT);
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
