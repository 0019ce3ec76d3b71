//! The embedded MQTT broker (rumqttd) that the gateway offers to nodes and the
//! ingest service offers to gateways and direct nodes.
//!
//! It exists as its own crate so both services start rumqttd the same way, with
//! the same guards against rumqttd 0.20's known failure modes:
//! - rumqttd binds its own socket from a fixed address, so port 0 is resolved here
//!   first (bind, read the port, release; another try if someone took it in
//!   between) and readiness, a listening socket of this process, is polled with a
//!   deadline;
//! - a client rejected by `max_connections` that reconnects with the same id panics
//!   the router, so the limit is set far above what we accept (see [`BrokerConfig`]);
//! - a failed login closes the socket silently and an oversized publish resets the
//!   connection: clients must check sizes before publishing (protocol limits are
//!   well below `max_payload`).
//!
//! In-process consumers use rumqttd's local links, which skip the TCP stack
//! entirely (and the guard), and rumqttd's cap of 100 unacknowledged QoS 1 messages
//! per TCP subscriber.
//!
//! Network clients never reach rumqttd directly: the public listener is the
//! [`guard`]'s, which authenticates every client against the [`credentials`] file,
//! applies the [`acl`] of its identity and relays to rumqttd on loopback; rumqttd
//! takes only the guard's random per-process login. The one public listener serves
//! MQTT 3.1.1 and MQTT 5 (the CONNECT's protocol level says which); rumqttd serves
//! them on two internal listeners (`[v4.1]` and `[v5.1]`) of one router.
//!
//! [`EmbeddedBroker::start_hub`] starts the guard without rumqttd: the guard serves its
//! clients itself ([`hub`]) for a broker with one in-process reader (the gateway's node
//! side), without rumqttd's fixed per-connection queues.
mod acl;
pub mod credentials;
mod error;
mod guard;
mod hub;
mod link;

pub use credentials::{Credentials, CredentialsError, CredentialsFile, Identity, Membership, Role};
pub use error::{BrokerError, Result};
pub use guard::{Auth, GuardConfig, GuardError, TlsFiles};
pub use link::{Delivered, LinkReceiver, LinkSender};

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where MQTT clients connect (the guard's listener, MQTT 3.1.1 and MQTT 5); port 0
    /// picks a free port.
    pub listen: SocketAddr,
    /// Largest publish accepted, in bytes. Larger ones reset the connection (rumqttd).
    pub max_payload: usize,
    /// rumqttd's own limit on simultaneous connections; the guard's
    /// (`guard.max_clients`, far lower) is what clients meet.
    pub max_connections: usize,
    /// Per-connection QoS 1 messages in flight.
    pub max_inflight: usize,
    /// Most messages the router hands a QoS 0 subscriber per round. A local link
    /// reading `#` (ingest) is refilled once per router round, which also takes in
    /// what every connection published: at rumqttd's 200 a round, ingest fell
    /// behind the publishers with its own queues empty until the log dropped
    /// messages.
    pub max_outgoing_packets: usize,
    /// Who may connect and what each may do; TLS; the connection limit.
    pub guard: GuardConfig,
    /// Size and count of the router's in-memory log segments: the memory bound.
    pub segment_size: usize,
    pub segment_count: usize,
    /// Smaller (or larger) logs for the subscription filters matching a pattern.
    /// rumqttd keeps one log per distinct filter, each filling up to its limit
    /// and staying there, so many subscribers (e.g. one ack filter per node)
    /// need small ones.
    pub filter_logs: Vec<FilterLog>,
}

/// Log limits for subscription filters matching `pattern` (itself a topic filter).
#[derive(Debug, Clone)]
pub struct FilterLog {
    pub pattern: String,
    /// At least 1024 bytes (rumqttd's minimum).
    pub segment_size: usize,
    /// At least 1.
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
            max_outgoing_packets: 2000,
            guard: GuardConfig::default(),
            segment_size: 16 * 1024 * 1024,
            segment_count: 4,
            filter_logs: Vec::new(),
        }
    }
}

/// A running broker and the in-process links that were asked for at start.
pub struct EmbeddedBroker {
    /// The address clients connect to, with the real port.
    pub addr: SocketAddr,
    links: HashMap<String, (LinkSender, LinkReceiver)>,
}

impl EmbeddedBroker {
    /// Starts the broker on its own threads and opens one local link per name in `links`.
    /// Returns once this process's listener accepts connections.
    ///
    /// rumqttd's two loopback ports are chosen before it binds them (see `free_ports`);
    /// should another process take one in between, rumqttd's bind fails and fresh
    /// ports are tried (the failed attempt's router thread, and its other listener,
    /// stay behind: rumqttd cannot stop them). Until it is ours, a socket listening on
    /// a port proves nothing: the services would otherwise report a broker that is
    /// someone else's.
    pub fn start(name: &str, config: &BrokerConfig, links: &[&str]) -> Result<Self> {
        const ATTEMPTS: usize = 5;
        let bind = |source| BrokerError::Bind {
            addr: config.listen,
            source,
        };
        let public = TcpListener::bind(config.listen).map_err(bind)?;
        let addr = public.local_addr().map_err(bind)?;
        let login = guard::InternalLogin::random()?;
        let mut failure = None;
        for _ in 0..ATTEMPTS {
            let internal = free_ports()?;
            match Self::start_on(name, internal, &login, config, links)? {
                Ok(links) => {
                    // rumqttd checks sizes on payloads, the guard on whole packets.
                    let max_packet = config.max_payload + 1024;
                    let backend = guard::Backend::Rumqttd { internal, login };
                    guard::start(name, public, backend, max_packet, config.guard.clone())?;
                    announce(name, addr, config);
                    let links = links
                        .into_iter()
                        .map(|(id, (tx, rx))| (id, (LinkSender::new(tx), LinkReceiver::new(rx))))
                        .collect();
                    return Ok(Self { addr, links });
                }
                Err(e) => {
                    tracing::warn!(v4 = %internal.v4, v5 = %internal.v5, broker = name, "{e}");
                    failure = Some(e);
                }
            }
        }
        Err(failure.expect("at least one attempt"))
    }

    /// Starts the guard alone, serving its clients itself ([`hub`]), with one
    /// in-process link named `link`: for a broker whose only reader is in this
    /// process (the gateway's node side), at a fraction of rumqttd's memory per
    /// connection. `config`'s rumqttd settings (logs, in-flight, outgoing) do not apply.
    pub fn start_hub(name: &str, config: &BrokerConfig, link: &str) -> Result<Self> {
        let bind = |source| BrokerError::Bind {
            addr: config.listen,
            source,
        };
        let public = TcpListener::bind(config.listen).map_err(bind)?;
        let addr = public.local_addr().map_err(bind)?;
        let (hub, delivered) = hub::Hub::new(name);
        let hub = std::sync::Arc::new(hub);
        let max_packet = config.max_payload + 1024;
        guard::start(
            name,
            public,
            guard::Backend::Hub(hub.clone()),
            max_packet,
            config.guard.clone(),
        )?;
        announce(name, addr, config);
        let links = HashMap::from([(link.to_string(), (LinkSender::hub(hub), LinkReceiver::hub(delivered)))]);
        Ok(Self { addr, links })
    }

    /// One start of rumqttd on `internal`: the outer error is fatal, the inner one
    /// says the broker could not take one of the addresses.
    fn start_on(
        name: &str,
        internal: Internal,
        login: &guard::InternalLogin,
        config: &BrokerConfig,
        links: &[&str],
    ) -> Result<Result<HashMap<String, (LinkTx, LinkRx)>>> {
        let mut broker = Broker::new(rumqttd_config(name, internal, login, config));
        let links = links
            .iter()
            .map(|id| {
                let link = broker.link(id).map_err(|e| BrokerError::OpenLink {
                    name: name.to_string(),
                    id: id.to_string(),
                    detail: e.to_string(),
                })?;
                Ok((id.to_string(), link))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        // rumqttd's start returns only once its listener threads have ended: at once
        // when both binds failed. When one failed, the other listens alone.
        let running = std::thread::Builder::new()
            .name(format!("{name}-broker"))
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded broker stopped");
                }
            })
            .map_err(|source| BrokerError::Thread {
                name: name.to_string(),
                source,
            })?;
        let in_use = |addr| {
            Ok(Err(BrokerError::AddressInUse {
                name: name.to_string(),
                addr,
            }))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Once one listener is up, how long the other may take before its bind is
        // taken to have failed.
        let mut other_by = None;
        loop {
            let up = [(internal.v4, 4), (internal.v5, 5)].map(|(addr, level)| (addr, level, listening_here(addr)));
            if up.iter().all(|(_, _, listening)| *listening) {
                // Another listener of this process may hold a port that was free
                // a moment ago (rumqttd's bind then failed): only our broker answers
                // an MQTT CONNECT with our login.
                if let Some((addr, _, _)) = up.iter().find(|(addr, level, _)| !answers_mqtt(*addr, *level, login)) {
                    return in_use(*addr);
                }
                return Ok(Ok(links));
            }
            if let Some((addr, _, _)) = up.iter().find(|(_, _, listening)| !listening) {
                let now = Instant::now();
                if running.is_finished() || other_by.is_some_and(|by| now >= by) {
                    return in_use(*addr);
                }
                if other_by.is_none() && up.iter().any(|(_, _, listening)| *listening) {
                    other_by = Some(now + Duration::from_secs(2));
                }
                if now >= deadline {
                    return Err(BrokerError::NotListening {
                        name: name.to_string(),
                        addr: *addr,
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Takes the local link opened at start under `id`.
    pub fn take_link(&mut self, id: &str) -> Result<(LinkSender, LinkReceiver)> {
        self.links.remove(id).ok_or_else(|| BrokerError::NoLink(id.to_string()))
    }
}

fn announce(name: &str, addr: SocketAddr, config: &BrokerConfig) {
    if matches!(config.guard.auth, Auth::Anonymous) {
        tracing::warn!(%addr, broker = name,
            "MQTT broker open to anonymous clients: anyone who can reach it may publish and read every topic");
    }
    tracing::info!(%addr, broker = name, tls = config.guard.tls.is_some(), "embedded MQTT broker listening");
}

/// rumqttd's id for the brokers started here; its router thread is named after it.
const ROUTER_ID: usize = 0;

/// rumqttd's listeners on loopback, behind the guard: MQTT 3.1.1 and MQTT 5.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Internal {
    pub(crate) v4: SocketAddr,
    pub(crate) v5: SocketAddr,
}

/// Whether a thread, by the name Linux shows for it (its first 15 bytes), is one
/// of the threads a broker started by [`EmbeddedBroker::start`] as `name` runs on:
/// the thread that starts it, rumqttd's router (`router-{id}`) and its listeners
/// (`{name}-v4`, `{name}-v5`), and the guard's (`{name}-guard`). The benchmark counts
/// their CPU as the broker's.
pub fn is_broker_thread(name: &str, thread: &str) -> bool {
    const LINUX_NAME_BYTES: usize = 15;
    let shown = |full: String| full.as_bytes()[..full.len().min(LINUX_NAME_BYTES)] == *thread.as_bytes();
    shown(format!("{name}-broker"))
        || shown(format!("{name}-v4"))
        || shown(format!("{name}-v5"))
        || shown(format!("{name}-guard"))
        || shown(format!("router-{ROUTER_ID}"))
}

fn rumqttd_config(name: &str, internal: Internal, login: &guard::InternalLogin, config: &BrokerConfig) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: config.max_payload,
        max_inflight_count: config.max_inflight,
        // Only the guard logs in to rumqttd.
        auth: Some(HashMap::from([(login.username.clone(), login.password.clone())])),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |version: &str, listen| ServerSettings {
        name: format!("{name}-{version}"),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: connections.clone(),
    };
    Config {
        id: ROUTER_ID,
        router: RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: config.max_outgoing_packets as u64,
            max_segment_size: config.segment_size,
            max_segment_count: config.segment_count,
            custom_segment: (!config.filter_logs.is_empty()).then(|| {
                config
                    .filter_logs
                    .iter()
                    .map(|log| {
                        let limits = rumqttd::SegmentConfig {
                            max_segment_size: log.segment_size.max(1024),
                            max_segment_count: log.segment_count.max(1),
                        };
                        (log.pattern.clone(), limits)
                    })
                    .collect()
            }),
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server("v4", internal.v4))])),
        v5: Some(HashMap::from([("1".to_string(), server("v5", internal.v5))])),
        ..Config::default()
    }
}

/// rumqttd binds by address only, so its two loopback listeners get free ports
/// chosen here: bound together (so they differ), then released for rumqttd to bind.
/// The window is tiny and only matters when something else grabs ports at random in
/// between.
fn free_ports() -> Result<Internal> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let bind = |source| BrokerError::Bind { addr: any, source };
    let v4 = TcpListener::bind(any).map_err(bind)?;
    let v5 = TcpListener::bind(any).map_err(bind)?;
    Ok(Internal {
        v4: v4.local_addr().map_err(bind)?,
        v5: v5.local_addr().map_err(bind)?,
    })
}

/// Whether a socket of this process listens on `addr`'s port, read from the
/// kernel's socket table rather than probed with a connection (rumqttd logs an
/// error for every connection that goes away early). Where there is no /proc,
/// whether anything accepts a connection there.
fn listening_here(addr: SocketAddr) -> bool {
    let Some(listeners) = listening_sockets() else {
        return std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
    };
    let inodes: Vec<&str> = listeners
        .iter()
        .filter(|(port, _)| *port == addr.port())
        .map(|(_, inode)| inode.as_str())
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .is_some_and(|inode| inodes.contains(&inode))
        })
    })
}

/// Whether our rumqttd answers at `addr` in MQTT protocol `level` (4 or 5): a
/// CONNECT with the guard's login (rumqttd closes the socket silently on a failed
/// login) gets a CONNACK. The session ends with a DISCONNECT, so the broker logs no
/// lost connection.
fn answers_mqtt(addr: SocketAddr, level: u8, login: &guard::InternalLogin) -> bool {
    use std::io::{Read, Write};
    const CONNACK: u8 = 0x20;
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let login = Some((&login.username, &login.password));
    let mut connack = [0u8; 2];
    let answered = stream
        .write_all(&connect_packet("gridwatch-readiness-probe", level, login))
        .is_ok()
        && stream.read_exact(&mut connack).is_ok()
        && connack[0] == CONNACK;
    // DISCONNECT
    let _ = stream.write_all(&[0xE0, 0x00]);
    answered
}

/// A CONNECT with a clean session, MQTT 3.1.1 (`level` 4) or MQTT 5 (5, no properties).
fn connect_packet(client_id: &str, level: u8, login: Option<(&String, &String)>) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    const CLEAN_SESSION: u8 = 0x02;
    const USERNAME_AND_PASSWORD: u8 = 0xC0;
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(level);
    body.push(CLEAN_SESSION | if login.is_some() { USERNAME_AND_PASSWORD } else { 0 });
    body.extend_from_slice(&10u16.to_be_bytes()); // keep-alive, s
    if level == 5 {
        body.push(0); // no properties
    }
    string(&mut body, client_id);
    if let Some((user, password)) = login {
        string(&mut body, user);
        string(&mut body, password);
    }
    let mut packet = vec![0x10];
    let mut remaining = body.len();
    loop {
        let byte = (remaining % 128) as u8;
        remaining /= 128;
        packet.push(if remaining > 0 { byte | 0x80 } else { byte });
        if remaining == 0 {
            break;
        }
    }
    packet.extend(body);
    packet
}

/// (port, socket inode) of every socket in the LISTEN state, from
/// /proc/net/tcp{,6}; `None` where there is no /proc.
fn listening_sockets() -> Option<Vec<(u16, String)>> {
    const LISTEN: &str = "0A";
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else {
                continue;
            };
            if *state == LISTEN
                && let Some(port) = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                ports.push((port, inode.to_string()));
            }
        }
    }
    if ports.is_empty() && !std::path::Path::new("/proc/net/tcp").exists() {
        None
    } else {
        Some(ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run by [`a_port_held_by_another_process_is_an_error_not_a_broker`] in a
    /// child process: holds a listening port until its stdin closes.
    #[test]
    #[ignore = "a helper process for another test"]
    fn hold_a_port_until_stdin_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        println!("HOLDING={}", listener.local_addr().unwrap().port());
        let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
    }

    #[test]
    fn a_port_held_by_another_process_is_an_error_not_a_broker() {
        use std::io::BufRead;
        let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::hold_a_port_until_stdin_closes"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let port: u16 = std::io::BufReader::new(holder.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            // libtest prints the test's name on the same line.
            .find_map(|line| line.split_once("HOLDING=").map(|(_, p)| p.trim().parse().unwrap()))
            .expect("the helper prints its port");
        let config = BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            ..BrokerConfig::default()
        };
        let started = EmbeddedBroker::start("held", &config, &[]);
        drop(holder.stdin.take());
        holder.wait().unwrap();
        let e = started.err().expect("someone else's listener is not our broker");
        assert!(e.to_string().contains("binding"), "{e}");
    }

    #[test]
    fn a_port_held_by_another_listener_of_this_process_is_an_error_not_a_broker() {
        // Holds the port, as another service of the same process would.
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = BrokerConfig {
            listen: held.local_addr().unwrap(),
            ..BrokerConfig::default()
        };
        let e = EmbeddedBroker::start("shared", &config, &[])
            .err()
            .expect("our own other listener is not our broker");
        assert!(e.to_string().contains("binding"), "{e}");
    }

    #[test]
    fn the_threads_a_broker_starts_are_known_as_the_brokers() {
        // Longer than Linux's 15 bytes once suffixed: the names are compared as shown.
        let name = "threadprobe";
        let config = BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..BrokerConfig::default()
        };
        let _broker = EmbeddedBroker::start(name, &config, &[]).unwrap();
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|comm| comm.trim_end().to_string())
                .collect()
        };
        // A new thread names itself once it runs.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut threads = names();
        while !threads.iter().any(|t| t == "threadprobe-gua") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            threads = names();
        }
        for started in [
            "threadprobe-bro",
            "threadprobe-v4",
            "threadprobe-v5",
            "threadprobe-gua",
            "router-0",
        ] {
            assert!(threads.iter().any(|t| t == started), "{started} in {threads:?}");
            assert!(is_broker_thread(name, started), "{started}");
        }
        for other in ["tokio-rt-worker", "sqlite-writer", "router-1", "threadprobe"] {
            assert!(!is_broker_thread(name, other), "{other}");
        }
    }

    #[test]
    fn readiness_follows_this_process_listening_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(listening_here(addr));
        drop(listener);
        assert!(!listening_here(addr));
    }
}
