//! The guard in front of rumqttd: the public listener is ours, rumqttd listens on
//! loopback behind it and takes only the guard's own login.
//!
//! rumqttd 0.20 has a login hook but no topic ACLs, keeps retained publishes,
//! kicks the older connection when a client id is reused, closes the socket
//! silently on a failed login and panics when a client refused by its
//! `max_connections` reconnects. So for every connection the guard:
//! 1. counts it against [`GuardConfig::max_clients`] (refused over it with CONNACK
//!    "server unavailable", well before rumqttd's own limit);
//! 2. optionally completes a TLS handshake (a client certificate's CN is an identity);
//! 3. reads the CONNECT within [`GuardConfig::connect_timeout`] with rumqttc's codec
//!    for its protocol level: 4 (MQTT 3.1.1, `mqttbytes::v4`) or 5 (MQTT 5,
//!    `v5::mqttbytes::v5`); the same listener serves both;
//! 4. authenticates it (CONNACK "bad user name or password" / "not authorized"),
//!    checks its will against the ACL and refuses a client id already connected
//!    (CONNACK "identifier rejected", MQTT 5 "client identifier not valid") instead of
//!    letting rumqttd kick the first; an MQTT 5 CONNECT asking for enhanced
//!    authentication gets "bad authentication method";
//! 5. opens a connection to rumqttd's listener for that protocol, sends the CONNECT
//!    with the internal login, the client id prefixed by the identity
//!    (`{identity}:{client id}`, so no identity can take over another's persistent
//!    session) and the will's retain flag cleared, then relays bytes both ways.
//!
//! Only client→broker packets are read, with one exception: rumqttd's MQTT 5 CONNACK
//! offers 4096 topic aliases, and the guard removes that offer (none, then), because
//! a PUBLISH that names its topic only by an alias cannot be checked against the ACL
//! without keeping every client's alias table. An MQTT 5 PUBLISH carrying a topic
//! alias closes the connection.
//!
//! A PUBLISH outside the identity's ACL or a SUBSCRIBE with a filter outside it
//! closes the connection: MQTT 3.1.1 has no per-publish refusal (a server must either
//! acknowledge or close, [MQTT-3.3.5-2]), and granting a subset would mean rewriting
//! the broker's SUBACKs on the way back, parsing every broker→client packet on the hot
//! path; MQTT 5 clients are held to the same rule. A retained PUBLISH is forwarded
//! with its retain flag cleared (one bit of the first byte, in both protocols):
//! nothing is ever stored for later subscribers, and the firmware's retained presence
//! still arrives live. Everything else is forwarded as it came.
use crate::Internal;
use crate::acl::Acl;
use crate::credentials::{Credentials, Identity, Refusal, Role};
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::mqttbytes::{Error as CodecError, PacketType, check};
use rumqttc::v5::mqttbytes::v5;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Who may connect.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Anyone, with any topic: an open broker (`--allow-anonymous`).
    Anonymous,
    /// The identities of a credentials file.
    Credentials {
        credentials: Arc<Credentials>,
        /// Only nodes of this gateway (and services) may connect: a gateway's own
        /// broker. `None` admits every identity (ingest's broker).
        nodes_of: Option<String>,
    },
}

/// TLS on the public listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM.
    pub cert_chain: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// CA certificates (PEM) that sign client certificates. With it a client may log
    /// in with a certificate whose subject CN is its identity id, instead of a password.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct GuardConfig {
    pub auth: Auth,
    pub tls: Option<TlsFiles>,
    /// Simultaneous connections, counted from accept: beyond it connections are refused.
    pub max_clients: usize,
    /// A connection must complete its TLS handshake and send its CONNECT within this.
    pub connect_timeout: Duration,
    /// How often the credentials file is checked for changes, to close the
    /// connections of revoked identities (every CONNECT checks it too).
    pub reload_every: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            auth: Auth::Anonymous,
            tls: None,
            max_clients: 10_000,
            connect_timeout: Duration::from_secs(10),
            reload_every: Duration::from_secs(1),
        }
    }
}

/// A client that sends keep-alive 0 (no keep-alive) is given this one, so that a
/// silent connection is closed by rumqttd after 1.5 times it.
pub(crate) const KEEP_ALIVE_FOR_NONE: u16 = 600;
/// Connections beyond `max_clients` that are still answered with a CONNACK; past
/// them a connection is closed at once.
const REFUSING_AT_MOST: usize = 64;
/// Bound on the refusal handshake of a connection over the limit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait between accept attempts after accept errors (EMFILE...).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this interval for each kind of repeated event.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The login the guard uses on rumqttd's internal listener.
#[derive(Clone)]
pub(crate) struct InternalLogin {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl InternalLogin {
    pub(crate) fn random() -> Result<Self, crate::credentials::CredentialsError> {
        Ok(Self {
            username: "gridwatch-guard".into(),
            password: crate::credentials::new_secret()?,
        })
    }
}

/// A log line that writes itself at most once per interval and counts what it held back.
pub(crate) struct RateLimitedLog {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedLog {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Calls `log` with the number of lines suppressed since the last one, if the
    /// interval has passed; otherwise counts this one as suppressed.
    pub(crate) fn log(&self, log: impl FnOnce(u64)) {
        let mut state = self.state.lock().expect("log lock");
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.interval => state.1 += 1,
            _ => {
                let suppressed = std::mem::take(&mut state.1);
                state.0 = Some(now);
                drop(state);
                log(suppressed);
            }
        }
    }
}

/// Why a connection was refused or closed: the `reason` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    BadCredentials,
    NotAuthorized,
    ClientIdInUse,
    BadClientId,
    ConnectionLimit,
    ConnectTimeout,
    Malformed,
    PublishDenied,
    SubscribeDenied,
    TopicAlias,
    Revoked,
    BrokerUnavailable,
    KeepAlive,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::BadCredentials => "bad_credentials",
            Reason::NotAuthorized => "not_authorized",
            Reason::ClientIdInUse => "client_id_in_use",
            Reason::BadClientId => "bad_client_id",
            Reason::ConnectionLimit => "connection_limit",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::Malformed => "malformed",
            Reason::PublishDenied => "publish_denied",
            Reason::SubscribeDenied => "subscribe_denied",
            Reason::TopicAlias => "topic_alias",
            Reason::Revoked => "revoked",
            Reason::BrokerUnavailable => "broker_unavailable",
            Reason::KeepAlive => "keep_alive",
        }
    }
}

pub(crate) const REFUSED: &str = "gridwatch_broker_connections_refused_total";
pub(crate) const CLOSED: &str = "gridwatch_broker_connections_closed_total";
pub(crate) const RETAIN_CLEARED: &str = "gridwatch_broker_retain_cleared_total";
pub(crate) const ACCEPT_ERRORS: &str = "gridwatch_broker_accept_errors_total";
pub(crate) const CONNECTIONS: &str = "gridwatch_broker_connections";
pub(crate) const ANONYMOUS: &str = "gridwatch_broker_anonymous";

fn describe_metrics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(
            REFUSED,
            "MQTT connections refused by the broker's guard, by broker and reason (bad_credentials, \
             not_authorized, client_id_in_use, bad_client_id, connection_limit, connect_timeout, malformed, \
             broker_unavailable)"
        );
        metrics::describe_counter!(
            CLOSED,
            "MQTT connections closed by the broker's guard after login, by broker and reason \
             (publish_denied, subscribe_denied, topic_alias, revoked, malformed, keep_alive)"
        );
        metrics::describe_counter!(
            RETAIN_CLEARED,
            "Retained publishes and wills forwarded without their retain flag (nothing is retained)"
        );
        metrics::describe_counter!(
            ACCEPT_ERRORS,
            "Errors accepting MQTT connections (e.g. out of file handles), by broker"
        );
        metrics::describe_counter!(
            crate::hub::DROPPED,
            "Messages to a client of the hub dropped because its queue was full, by broker (node acks: \
             the next one repeats them)"
        );
        metrics::describe_gauge!(CONNECTIONS, "Open MQTT connections through the guard, by broker");
        metrics::describe_gauge!(
            ANONYMOUS,
            "1 when the broker accepts anonymous clients with every topic (--allow-anonymous)"
        );
    });
}

struct Live {
    serial: u64,
    identity: Option<Identity>,
    close: Arc<Notify>,
}

/// What serves a client once the guard let it in.
pub(crate) enum Backend {
    /// rumqttd, on loopback listeners that take only the guard's login.
    Rumqttd { internal: Internal, login: InternalLogin },
    /// The guard itself ([`crate::hub`]).
    Hub(Arc<crate::hub::Hub>),
}

struct Shared {
    name: String,
    config: GuardConfig,
    backend: Backend,
    max_packet: usize,
    clients: AtomicUsize,
    serials: AtomicU64,
    live: Mutex<HashMap<String, Live>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    accept_log: RateLimitedLog,
    refusal_log: RateLimitedLog,
}

impl Shared {
    fn refused(&self, reason: Reason, peer: SocketAddr, client_id: &str) {
        metrics::counter!(REFUSED, "broker" => self.name.clone(), "reason" => reason.label()).increment(1);
        self.refusal_log.log(|suppressed| {
            tracing::warn!(broker = %self.name, %peer, client_id, reason = reason.label(), suppressed,
                "MQTT connection refused")
        });
    }

    fn closed(&self, reason: Reason, session: &str, detail: &str) {
        metrics::counter!(CLOSED, "broker" => self.name.clone(), "reason" => reason.label()).increment(1);
        self.refusal_log.log(|suppressed| {
            tracing::warn!(broker = %self.name, session, reason = reason.label(), detail, suppressed,
                "MQTT connection closed")
        });
    }
}

/// Why the guard could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("TLS file {}: {detail}", path.display())]
    TlsFile { path: PathBuf, detail: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Starts the guard on its own threads (`{name}-guard`), accepting on `public`
/// and handing each client to `backend`.
pub(crate) fn start(
    name: &str,
    public: std::net::TcpListener,
    backend: Backend,
    max_packet: usize,
    config: GuardConfig,
) -> Result<(), crate::BrokerError> {
    describe_metrics();
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let anonymous = matches!(config.auth, Auth::Anonymous);
    metrics::gauge!(ANONYMOUS, "broker" => name.to_string()).set(if anonymous { 1.0 } else { 0.0 });
    let shared = Arc::new(Shared {
        name: name.to_string(),
        config,
        backend,
        max_packet,
        clients: AtomicUsize::new(0),
        serials: AtomicU64::new(0),
        live: Mutex::new(HashMap::new()),
        tls,
        accept_log: RateLimitedLog::new(LOG_INTERVAL),
        refusal_log: RateLimitedLog::new(LOG_INTERVAL),
    });
    let thread_name = format!("{name}-guard");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(thread_name.clone())
        .enable_all()
        .build()
        .map_err(|source| crate::BrokerError::Thread {
            name: name.to_string(),
            source,
        })?;
    public
        .set_nonblocking(true)
        .map_err(|source| crate::BrokerError::Bind {
            addr: public.local_addr().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            source,
        })?;
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(public) {
                    Ok(listener) => listener,
                    Err(e) => {
                        tracing::error!(error = %e, "MQTT guard cannot listen");
                        return;
                    }
                };
                if let Auth::Credentials { .. } = shared.config.auth {
                    tokio::spawn(watch_credentials(shared.clone()));
                }
                accept_loop(listener, shared).await;
            })
        })
        .map_err(|source| crate::BrokerError::Thread {
            name: name.to_string(),
            source,
        })?;
    Ok(())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let _ = stream.set_nodelay(true);
                let before = shared.clients.fetch_add(1, Ordering::Relaxed);
                let slot = Slot(shared.clone());
                if before >= shared.config.max_clients + REFUSING_AT_MOST {
                    shared.refused(Reason::ConnectionLimit, peer, "");
                    drop(stream);
                    drop(slot);
                    continue;
                }
                let over = before >= shared.config.max_clients;
                tokio::spawn(serve(shared.clone(), stream, peer, over, slot));
            }
            Err(e) => {
                // Out of file handles (EMFILE) and friends: every retry fails at once
                // until a handle is freed, so wait, and say so once per interval.
                metrics::counter!(ACCEPT_ERRORS, "broker" => shared.name.clone()).increment(1);
                shared.accept_log.log(|suppressed| {
                    tracing::error!(broker = %shared.name, error = %e, suppressed, retry_in = ?backoff,
                        "accepting MQTT connections")
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// One counted connection; uncounted when dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, over_limit: bool, slot: Slot) {
    let _slot = slot;
    metrics::gauge!(CONNECTIONS, "broker" => shared.name.clone()).increment(1.0);
    let timeout = if over_limit {
        REFUSAL_TIMEOUT
    } else {
        shared.config.connect_timeout
    };
    let deadline = tokio::time::Instant::now() + timeout;
    match &shared.tls {
        None => handle(&shared, stream, peer, None, over_limit, deadline).await,
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let cert_id = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|cert| common_name(cert.as_ref()));
                handle(&shared, tls, peer, cert_id, over_limit, deadline).await
            }
            Ok(Err(_)) => shared.refused(Reason::Malformed, peer, ""),
            Err(_) => shared.refused(Reason::ConnectTimeout, peer, ""),
        },
    }
    metrics::gauge!(CONNECTIONS, "broker" => shared.name.clone()).decrement(1.0);
}

/// The subject CN of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// The MQTT version a client speaks, from its CONNECT's protocol level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5 (protocol level 5).
    V5,
}

/// A client's CONNECT, in its own protocol.
#[derive(Debug)]
enum ClientConnect {
    V4(v4::Connect),
    V5(Box<V5Connect>),
}

/// What rumqttc's v5 codec reads of a CONNECT.
#[derive(Debug)]
struct V5Connect {
    connect: v5::Connect,
    will: Option<v5::LastWill>,
    login: Option<v5::Login>,
}

impl ClientConnect {
    fn version(&self) -> Version {
        match self {
            ClientConnect::V4(_) => Version::V4,
            ClientConnect::V5(_) => Version::V5,
        }
    }

    fn client_id(&self) -> &str {
        match self {
            ClientConnect::V4(connect) => &connect.client_id,
            ClientConnect::V5(v5) => &v5.connect.client_id,
        }
    }

    /// User name and password.
    fn login(&self) -> Option<(&str, &str)> {
        match self {
            ClientConnect::V4(connect) => connect.login.as_ref().map(|l| (&*l.username, &*l.password)),
            ClientConnect::V5(v5) => v5.login.as_ref().map(|l| (&*l.username, &*l.password)),
        }
    }

    /// The will's topic; a topic that is not UTF-8 is `""`, which no ACL grants.
    fn will_topic(&self) -> Option<&str> {
        match self {
            ClientConnect::V4(connect) => connect.last_will.as_ref().map(|w| &*w.topic),
            ClientConnect::V5(v5) => v5.will.as_ref().map(|w| std::str::from_utf8(&w.topic).unwrap_or("")),
        }
    }

    fn keep_alive(&self) -> u16 {
        match self {
            ClientConnect::V4(connect) => connect.keep_alive,
            ClientConnect::V5(v5) => v5.connect.keep_alive,
        }
    }

    /// Clean session (MQTT 3.1.1) or clean start (MQTT 5).
    fn clean(&self) -> bool {
        match self {
            ClientConnect::V4(connect) => connect.clean_session,
            ClientConnect::V5(v5) => v5.connect.clean_start,
        }
    }

    /// The will's topic and payload.
    fn will(&self) -> Option<(String, Bytes)> {
        let topic = self.will_topic()?.to_string();
        let payload = match self {
            ClientConnect::V4(connect) => connect.last_will.as_ref()?.message.clone(),
            ClientConnect::V5(v5) => v5.will.as_ref()?.message.clone(),
        };
        Some((topic, payload))
    }

    /// MQTT 5 enhanced authentication (an AUTH exchange), which the guard does not offer.
    fn wants_enhanced_auth(&self) -> bool {
        match self {
            ClientConnect::V4(_) => false,
            ClientConnect::V5(v5) => v5
                .connect
                .properties
                .as_ref()
                .is_some_and(|p| p.authentication_method.is_some()),
        }
    }

    /// The CONNECT rumqttd gets: the session's id, the internal login, a keep-alive
    /// and no retained will: its bytes and whether a retain flag was cleared, or
    /// `None` when it cannot be encoded.
    fn forwarded(self, session: &str, login: &InternalLogin) -> Option<(BytesMut, bool)> {
        let mut out = BytesMut::new();
        let mut retain_cleared = false;
        match self {
            ClientConnect::V4(mut connect) => {
                connect.client_id = session.to_string();
                connect.set_login(login.username.clone(), login.password.clone());
                if connect.keep_alive == 0 {
                    connect.keep_alive = KEEP_ALIVE_FOR_NONE;
                }
                if let Some(will) = &mut connect.last_will {
                    retain_cleared = std::mem::take(&mut will.retain);
                }
                connect.write(&mut out).ok()?;
            }
            ClientConnect::V5(v5) => {
                let V5Connect {
                    mut connect, mut will, ..
                } = *v5;
                connect.client_id = session.to_string();
                if connect.keep_alive == 0 {
                    connect.keep_alive = KEEP_ALIVE_FOR_NONE;
                }
                if let Some(will) = &mut will {
                    retain_cleared = std::mem::take(&mut will.retain);
                }
                let login = Some(v5::Login::new(login.username.clone(), login.password.clone()));
                connect.write(&will, &login, &mut out).ok()?;
            }
        }
        Some((out, retain_cleared))
    }
}

/// The protocol level byte of the CONNECT `frame`: after the fixed header (a type
/// byte and 1-4 bytes of remaining length) and the protocol name ("MQTT").
fn protocol_level(frame: &[u8]) -> Option<u8> {
    let length_bytes = frame.get(1..)?.iter().take(4).position(|b| b & 0x80 == 0)? + 1;
    let name_at = 1 + length_bytes;
    let name_len = u16::from_be_bytes([*frame.get(name_at)?, *frame.get(name_at + 1)?]) as usize;
    frame.get(name_at + 2 + name_len).copied()
}

/// Reads one CONNECT into `buf`, leaving whatever followed it there.
async fn read_connect<S: Stream>(stream: &mut S, buf: &mut BytesMut, max: usize) -> Option<ClientConnect> {
    loop {
        match check(buf.iter(), max) {
            Ok(header) => {
                if header.packet_type().ok()? != PacketType::Connect {
                    return None;
                }
                let frame = buf.split_to(header.frame_length()).freeze();
                return parse_connect(header, frame);
            }
            Err(CodecError::InsufficientBytes(_)) => {
                if stream.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

/// A CONNECT frame, with the codec of its protocol level.
fn parse_connect(header: rumqttc::mqttbytes::FixedHeader, frame: Bytes) -> Option<ClientConnect> {
    match protocol_level(&frame)? {
        5 => {
            let header = v5::check(frame.iter(), None).ok()?;
            let (connect, will, login) = v5::Connect::read(header, frame).ok()?;
            Some(ClientConnect::V5(Box::new(V5Connect { connect, will, login })))
        }
        4 => v4::Connect::read(header, frame).ok().map(ClientConnect::V4),
        _ => None,
    }
}

/// Why a CONNECT is refused: one CONNACK code per protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectRefusal {
    BadCredentials,
    BadAuthenticationMethod,
    NotAuthorized,
    BadClientId,
    Unavailable,
}

impl ConnectRefusal {
    fn connack(self, version: Version) -> BytesMut {
        let mut out = BytesMut::new();
        let written = match version {
            Version::V4 => {
                let code = match self {
                    ConnectRefusal::BadCredentials | ConnectRefusal::BadAuthenticationMethod => {
                        v4::ConnectReturnCode::BadUserNamePassword
                    }
                    ConnectRefusal::NotAuthorized => v4::ConnectReturnCode::NotAuthorized,
                    ConnectRefusal::BadClientId => v4::ConnectReturnCode::BadClientId,
                    ConnectRefusal::Unavailable => v4::ConnectReturnCode::ServiceUnavailable,
                };
                v4::ConnAck::new(code, false).write(&mut out).is_ok()
            }
            Version::V5 => {
                let code = match self {
                    ConnectRefusal::BadCredentials => v5::ConnectReturnCode::BadUserNamePassword,
                    ConnectRefusal::BadAuthenticationMethod => v5::ConnectReturnCode::BadAuthenticationMethod,
                    ConnectRefusal::NotAuthorized => v5::ConnectReturnCode::NotAuthorized,
                    ConnectRefusal::BadClientId => v5::ConnectReturnCode::ClientIdentifierNotValid,
                    ConnectRefusal::Unavailable => v5::ConnectReturnCode::ServerUnavailable,
                };
                let connack = v5::ConnAck {
                    session_present: false,
                    code,
                    properties: None,
                };
                connack.write(&mut out).is_ok()
            }
        };
        if !written {
            out.clear();
        }
        out
    }
}

async fn refuse<S: Stream>(stream: &mut S, version: Version, why: ConnectRefusal) {
    let connack = why.connack(version);
    if !connack.is_empty() {
        let _ = stream.write_all(&connack).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
}

async fn handle<S: Stream>(
    shared: &Arc<Shared>,
    mut stream: S,
    peer: SocketAddr,
    cert_id: Option<String>,
    over_limit: bool,
    deadline: tokio::time::Instant,
) {
    let mut buf = BytesMut::with_capacity(4096);
    let connect = match tokio::time::timeout_at(deadline, read_connect(&mut stream, &mut buf, shared.max_packet)).await
    {
        Ok(Some(connect)) => connect,
        Ok(None) => return shared.refused(Reason::Malformed, peer, ""),
        Err(_) => return shared.refused(Reason::ConnectTimeout, peer, ""),
    };
    let version = connect.version();
    let client_id = connect.client_id().to_string();
    if over_limit {
        shared.refused(Reason::ConnectionLimit, peer, &client_id);
        return refuse(&mut stream, version, ConnectRefusal::Unavailable).await;
    }
    if connect.wants_enhanced_auth() {
        shared.refused(Reason::BadCredentials, peer, &client_id);
        return refuse(&mut stream, version, ConnectRefusal::BadAuthenticationMethod).await;
    }
    let (identity, acl) = match authenticate(shared, connect.login(), cert_id.as_deref()) {
        Ok(found) => found,
        Err(Refusal::BadCredentials) => {
            shared.refused(Reason::BadCredentials, peer, &client_id);
            return refuse(&mut stream, version, ConnectRefusal::BadCredentials).await;
        }
        Err(Refusal::NotAuthorized) => {
            shared.refused(Reason::NotAuthorized, peer, &client_id);
            return refuse(&mut stream, version, ConnectRefusal::NotAuthorized).await;
        }
    };
    if let Some(topic) = connect.will_topic()
        && !acl.may_publish(topic)
    {
        shared.refused(Reason::NotAuthorized, peer, &client_id);
        return refuse(&mut stream, version, ConnectRefusal::NotAuthorized).await;
    }
    if client_id.is_empty() {
        shared.refused(Reason::BadClientId, peer, &client_id);
        return refuse(&mut stream, version, ConnectRefusal::BadClientId).await;
    }
    let session = match &identity {
        Some(identity) => format!("{}:{client_id}", identity.id),
        None => client_id.clone(),
    };
    let close = Arc::new(Notify::new());
    let serial = shared.serials.fetch_add(1, Ordering::Relaxed);
    let taken = {
        let mut live = shared.live.lock().expect("live lock");
        let taken = live.contains_key(&session);
        if !taken {
            live.insert(
                session.clone(),
                Live {
                    serial,
                    identity: identity.clone(),
                    close: close.clone(),
                },
            );
        }
        taken
    };
    if taken {
        shared.refused(Reason::ClientIdInUse, peer, &client_id);
        return refuse(&mut stream, version, ConnectRefusal::BadClientId).await;
    }
    let _registered = Registered {
        shared: shared.clone(),
        session: session.clone(),
        serial,
    };
    let (internal, login) = match &shared.backend {
        Backend::Rumqttd { internal, login } => (internal, login),
        Backend::Hub(hub) => {
            let start = crate::hub::Start {
                version,
                session: &session,
                acl: &acl,
                close: &close,
                keep_alive: connect.keep_alive(),
                clean: connect.clean(),
                will: connect.will(),
                max_packet: shared.max_packet,
            };
            if let Some((reason, detail)) = crate::hub::serve(hub, stream, buf, start).await {
                shared.closed(reason, &session, &detail);
            }
            return;
        }
    };
    let internal = match version {
        Version::V4 => internal.v4,
        Version::V5 => internal.v5,
    };
    let mut broker = match TcpStream::connect(internal).await {
        Ok(broker) => broker,
        Err(_) => {
            shared.refused(Reason::BrokerUnavailable, peer, &client_id);
            return refuse(&mut stream, version, ConnectRefusal::Unavailable).await;
        }
    };
    let _ = broker.set_nodelay(true);
    let forwarded = connect.forwarded(&session, login);
    let sent = match &forwarded {
        Some((out, _)) => broker.write_all(out).await.is_ok(),
        None => false,
    };
    if !sent {
        shared.refused(Reason::BrokerUnavailable, peer, &client_id);
        return refuse(&mut stream, version, ConnectRefusal::Unavailable).await;
    }
    if let Some((_, true)) = forwarded {
        metrics::counter!(RETAIN_CLEARED, "broker" => shared.name.clone()).increment(1);
    }
    let link = Link {
        version,
        acl: &acl,
        close: &close,
        session: &session,
    };
    if let Some(reason) = relay(shared, stream, broker, buf, link).await {
        let detail = match reason {
            Reason::Revoked => "identity revoked",
            _ => "",
        };
        shared.closed(reason, &session, detail);
    }
}

/// Removes a connection from the live table when it ends (if it is still the one there).
struct Registered {
    shared: Arc<Shared>,
    session: String,
    serial: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut live = self.shared.live.lock().expect("live lock");
        if live.get(&self.session).is_some_and(|l| l.serial == self.serial) {
            live.remove(&self.session);
        }
    }
}

/// The identity of a client that logged in with `login` (user name, password) or the
/// certificate naming `cert_id`, and its ACL.
fn authenticate(
    shared: &Shared,
    login: Option<(&str, &str)>,
    cert_id: Option<&str>,
) -> Result<(Option<Identity>, Acl), Refusal> {
    let Auth::Credentials { credentials, nodes_of } = &shared.config.auth else {
        return Ok((None, Acl::Open));
    };
    if let Err(e) = credentials.refresh() {
        shared
            .refusal_log
            .log(|suppressed| tracing::error!(error = %e, suppressed, "credentials file; using the last good one"));
    }
    let identity = match (cert_id, login) {
        // A verified client certificate names the identity; a username, if any, must agree.
        (Some(cn), login) => {
            if login.is_some_and(|(username, _)| !username.is_empty() && username != cn) {
                return Err(Refusal::NotAuthorized);
            }
            match credentials.identity(cn) {
                Some(identity) if !identity.revoked => identity,
                _ => return Err(Refusal::BadCredentials),
            }
        }
        (None, Some((username, password))) => credentials.authenticate(username, password)?,
        (None, None) => return Err(Refusal::BadCredentials),
    };
    if let Some(gateway) = nodes_of {
        let admitted = match identity.role {
            Role::Node | Role::Load => identity.gateway.as_deref() == Some(gateway.as_str()),
            Role::Service => true,
            Role::Gateway | Role::Firm => false,
        };
        if !admitted {
            return Err(Refusal::NotAuthorized);
        }
    }
    let acl = Acl::for_identity(&identity);
    Ok((Some(identity), acl))
}

/// Closes the connections of identities that were revoked or removed, whenever
/// the credentials file changes.
async fn watch_credentials(shared: Arc<Shared>) {
    let Auth::Credentials { credentials, .. } = &shared.config.auth else {
        return;
    };
    let mut every = tokio::time::interval(shared.config.reload_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match credentials.refresh() {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                shared.refusal_log.log(
                    |suppressed| tracing::error!(error = %e, suppressed, "credentials file; using the last good one"),
                );
                continue;
            }
        }
        let live = shared.live.lock().expect("live lock");
        for connection in live.values() {
            if let Some(identity) = &connection.identity
                && !credentials.still_valid(identity)
            {
                connection.close.notify_one();
            }
        }
    }
}

/// What a relayed connection is held to.
struct Link<'a> {
    version: Version,
    acl: &'a Acl,
    close: &'a Notify,
    session: &'a str,
}

/// Relays until either side closes; returns why the guard closed it, if it did.
async fn relay<S: Stream>(
    shared: &Shared,
    client: S,
    broker: TcpStream,
    mut pending: BytesMut,
    link: Link<'_>,
) -> Option<Reason> {
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut broker_rd, mut broker_wr) = broker.into_split();
    let version = link.version;
    let down = async {
        if version == Version::V5 {
            connack_without_topic_aliases(&mut broker_rd, &mut client_wr, shared.max_packet).await?;
        }
        tokio::io::copy(&mut broker_rd, &mut client_wr).await
    };
    let up = async {
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            let verdict = inspect(shared, version, &mut pending, &mut out, link.acl);
            if !out.is_empty() {
                broker_wr.write_all(&out).await.ok()?;
                out.clear();
            }
            if let Err((reason, detail)) = verdict {
                shared.closed(reason, link.session, &detail);
                return None;
            }
            pending.reserve(4096);
            if client_rd.read_buf(&mut pending).await.ok()? == 0 {
                return None;
            }
        }
    };
    tokio::select! {
        reason = up => reason,
        _ = down => None,
        _ = link.close.notified() => Some(Reason::Revoked),
    }
}

/// Passes rumqttd's MQTT 5 CONNACK (its first packet) to the client without its
/// offer of topic aliases, and whatever came after it as it came.
async fn connack_without_topic_aliases<R, W>(broker: &mut R, client: &mut W, max: usize) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let bad = |detail: String| std::io::Error::new(std::io::ErrorKind::InvalidData, detail);
    let mut buf = BytesMut::with_capacity(256);
    let header = loop {
        match v5::check(buf.iter(), Some(max as u32)) {
            Ok(header) => break header,
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                if broker.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            Err(e) => return Err(bad(e.to_string())),
        }
    };
    let frame = buf.split_to(header.frame_length()).freeze();
    let mut out = BytesMut::new();
    match header.packet_type() {
        Ok(v5::PacketType::ConnAck) => {
            let mut connack = v5::ConnAck::read(header, frame).map_err(|e| bad(e.to_string()))?;
            if let Some(properties) = &mut connack.properties {
                properties.topic_alias_max = None;
            }
            connack.write(&mut out).map_err(|e| bad(e.to_string()))?;
        }
        _ => out.extend_from_slice(&frame),
    }
    out.extend_from_slice(&buf);
    client.write_all(&out).await
}

const RETAIN: u8 = 0x01;

/// What the guard looks at in one client→broker packet.
enum Packet {
    Publish {
        topic: Result<String, String>,
        retain: bool,
        topic_alias: bool,
    },
    Subscribe {
        filters: Vec<String>,
    },
    Connect,
    Other,
}

/// The packet at the front of `pending`, split off with its frame, or `None` while it
/// is incomplete.
fn next_packet(
    version: Version,
    pending: &mut BytesMut,
    max: usize,
) -> Result<Option<(Packet, Bytes)>, (Reason, String)> {
    let malformed = |e: &dyn std::fmt::Display| (Reason::Malformed, e.to_string());
    match version {
        Version::V4 => {
            let header = match check(pending.iter(), max) {
                Ok(header) => header,
                Err(CodecError::InsufficientBytes(_)) => return Ok(None),
                Err(e) => return Err(malformed(&e)),
            };
            let frame = pending.split_to(header.frame_length()).freeze();
            let packet = match header.packet_type().map_err(|e| malformed(&e))? {
                PacketType::Publish => {
                    let publish = v4::Publish::read(header, frame.clone()).map_err(|e| malformed(&e))?;
                    Packet::Publish {
                        topic: Ok(publish.topic),
                        retain: publish.retain,
                        topic_alias: false,
                    }
                }
                PacketType::Subscribe => {
                    let subscribe = v4::Subscribe::read(header, frame.clone()).map_err(|e| malformed(&e))?;
                    Packet::Subscribe {
                        filters: subscribe.filters.into_iter().map(|f| f.path).collect(),
                    }
                }
                PacketType::Connect => Packet::Connect,
                _ => Packet::Other,
            };
            Ok(Some((packet, frame)))
        }
        Version::V5 => {
            let header = match v5::check(pending.iter(), Some(max as u32)) {
                Ok(header) => header,
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
                Err(e) => return Err(malformed(&e)),
            };
            let frame = pending.split_to(header.frame_length()).freeze();
            // An AUTH packet (type 15) is no packet type here: re-authentication is not offered.
            let packet = match header.packet_type().map_err(|e| malformed(&e))? {
                v5::PacketType::Publish => {
                    let publish = v5::Publish::read(header, frame.clone()).map_err(|e| malformed(&e))?;
                    Packet::Publish {
                        topic: String::from_utf8(publish.topic.to_vec())
                            .map_err(|_| "a topic that is not UTF-8".into()),
                        retain: publish.retain,
                        topic_alias: publish.properties.is_some_and(|p| p.topic_alias.is_some()),
                    }
                }
                v5::PacketType::Subscribe => {
                    let subscribe = v5::Subscribe::read(header, frame.clone()).map_err(|e| malformed(&e))?;
                    Packet::Subscribe {
                        filters: subscribe.filters.into_iter().map(|f| f.path).collect(),
                    }
                }
                v5::PacketType::Connect => Packet::Connect,
                _ => Packet::Other,
            };
            Ok(Some((packet, frame)))
        }
    }
}

/// Moves every complete packet at the front of `pending` that the ACL allows to
/// `out`; stops at the first one it refuses.
fn inspect(
    shared: &Shared,
    version: Version,
    pending: &mut BytesMut,
    out: &mut BytesMut,
    acl: &Acl,
) -> Result<(), (Reason, String)> {
    while let Some((packet, frame)) = next_packet(version, pending, shared.max_packet)? {
        match packet {
            Packet::Publish {
                topic,
                retain,
                topic_alias,
            } => {
                if topic_alias {
                    return Err((Reason::TopicAlias, "a PUBLISH with a topic alias".into()));
                }
                let topic = topic.map_err(|detail| (Reason::Malformed, detail))?;
                if !acl.may_publish(&topic) {
                    return Err((Reason::PublishDenied, topic));
                }
                let start = out.len();
                out.extend_from_slice(&frame);
                if retain {
                    out[start] &= !RETAIN;
                    metrics::counter!(RETAIN_CLEARED, "broker" => shared.name.clone()).increment(1);
                }
            }
            Packet::Subscribe { filters } => {
                if let Some(denied) = filters.into_iter().find(|f| !acl.may_subscribe(f)) {
                    return Err((Reason::SubscribeDenied, denied));
                }
                out.extend_from_slice(&frame);
            }
            Packet::Connect => return Err((Reason::Malformed, "a second CONNECT".into())),
            Packet::Other => out.extend_from_slice(&frame),
        }
    }
    Ok(())
}

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, GuardError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &PathBuf, e: &dyn std::fmt::Display| GuardError::TlsFile {
        path: path.clone(),
        detail: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_chain)
        .map_err(|e| bad(&files.cert_chain, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&files.cert_chain, &e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| GuardError::Tls(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(ca, &e))? {
                roots.add(cert.map_err(|e| bad(ca, &e))?).map_err(|e| bad(ca, &e))?;
            }
            // Optional: a client without a certificate logs in with its password.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| GuardError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| GuardError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_connect(client_id: &str) -> BytesMut {
        let mut out = BytesMut::new();
        v4::Connect::new(client_id).write(&mut out).unwrap();
        out
    }

    fn v5_connect(client_id: &str) -> BytesMut {
        let connect = v5::Connect {
            keep_alive: 30,
            client_id: client_id.to_string(),
            clean_start: true,
            properties: None,
        };
        let mut out = BytesMut::new();
        let login = Some(v5::Login::new("L-1", "secret"));
        connect.write(&None, &login, &mut out).unwrap();
        out
    }

    #[test]
    fn the_protocol_level_tells_mqtt5_from_3_1_1_whatever_the_length_of_the_connect() {
        // 200 bytes of client id: two bytes of remaining length.
        let long = "x".repeat(200);
        for id in ["L-1", long.as_str()] {
            assert_eq!(protocol_level(&v4_connect(id)), Some(4));
            assert_eq!(protocol_level(&v5_connect(id)), Some(5));
        }
        assert_eq!(protocol_level(&[0x10, 0x05, 0, 4, b'M']), None, "cut short");
        assert_eq!(protocol_level(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]), None);
    }

    #[test]
    fn a_connect_is_parsed_with_the_codec_of_its_protocol_level() {
        let parse = |bytes: BytesMut| {
            let header = check(bytes.iter(), 1 << 16).unwrap();
            parse_connect(header, bytes.freeze())
        };
        let v4 = parse(v4_connect("L-1")).unwrap();
        assert_eq!((v4.version(), v4.client_id(), v4.login()), (Version::V4, "L-1", None));
        let v5 = parse(v5_connect("L-1")).unwrap();
        assert_eq!(
            (v5.version(), v5.client_id(), v5.login()),
            (Version::V5, "L-1", Some(("L-1", "secret")))
        );
        // MQTT 3.1 (level 3, "MQIsdp") is neither.
        let mut v3 = v4_connect("L-1").to_vec();
        v3[2..9].copy_from_slice(&[0, 6, b'M', b'Q', b'I', b's', b'd']);
        assert!(parse(BytesMut::from(&v3[..])).is_none());
    }

    #[test]
    fn an_mqtt5_refusal_carries_its_mqtt5_reason_code() {
        let code = |why: ConnectRefusal, version| {
            let connack = why.connack(version);
            assert_eq!(connack[0], 0x20, "a CONNACK");
            connack[3]
        };
        assert_eq!(code(ConnectRefusal::BadCredentials, Version::V5), 0x86);
        assert_eq!(code(ConnectRefusal::NotAuthorized, Version::V5), 0x87);
        assert_eq!(code(ConnectRefusal::BadClientId, Version::V5), 0x85);
        assert_eq!(code(ConnectRefusal::Unavailable, Version::V5), 0x88);
        assert_eq!(code(ConnectRefusal::BadAuthenticationMethod, Version::V5), 0x8C);
        // MQTT 3.1.1 return codes 1-5.
        assert_eq!(code(ConnectRefusal::BadCredentials, Version::V4), 4);
        assert_eq!(code(ConnectRefusal::NotAuthorized, Version::V4), 5);
        assert_eq!(code(ConnectRefusal::BadClientId, Version::V4), 2);
        assert_eq!(code(ConnectRefusal::Unavailable, Version::V4), 3);
    }

    #[tokio::test]
    async fn the_mqtt5_connack_loses_its_topic_alias_offer_and_nothing_else() {
        let connack = v5::ConnAck {
            session_present: false,
            code: v5::ConnectReturnCode::Success,
            properties: Some(v5::ConnAckProperties {
                session_expiry_interval: None,
                receive_max: None,
                max_qos: Some(1),
                retain_available: None,
                max_packet_size: None,
                assigned_client_identifier: None,
                topic_alias_max: Some(4096),
                reason_string: None,
                user_properties: Vec::new(),
                wildcard_subscription_available: None,
                subscription_identifiers_available: None,
                shared_subscription_available: None,
                server_keep_alive: None,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            }),
        };
        let mut from_broker = BytesMut::new();
        connack.write(&mut from_broker).unwrap();
        // What follows the CONNACK in the same read passes as it came.
        let ping = [0xD0, 0x00];
        from_broker.extend_from_slice(&ping);
        let mut to_client = Vec::new();
        connack_without_topic_aliases(&mut &from_broker[..], &mut to_client, 1 << 16)
            .await
            .unwrap();
        let mut received = BytesMut::from(&to_client[..]);
        let v5::Packet::ConnAck(seen) = v5::Packet::read(&mut received, None).unwrap() else {
            panic!("not a CONNACK")
        };
        let properties = seen.properties.unwrap();
        assert_eq!((properties.topic_alias_max, properties.max_qos), (None, Some(1)));
        assert_eq!(&received[..], &ping);
    }

    #[test]
    fn a_rate_limited_log_writes_once_per_interval_and_counts_the_rest() {
        let log = RateLimitedLog::new(Duration::from_secs(3600));
        let mut written = Vec::new();
        for _ in 0..1000 {
            log.log(|suppressed| written.push(suppressed));
        }
        assert_eq!(written, vec![0]);
        let log = RateLimitedLog::new(Duration::ZERO);
        let mut written = Vec::new();
        for _ in 0..3 {
            log.log(|suppressed| written.push(suppressed));
        }
        assert_eq!(written, vec![0, 0, 0]);
    }
}
