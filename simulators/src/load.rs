//! Load mode: many simulated devices publishing QoS 1 readings to a broker as
//! fast as allowed, counting application acks (`NodeAck`/`BatchAck`, sent by
//! ingest after its commit) and the publish-to-ack latency.
//!
//! Two shapes, as the two kinds of senders publish:
//! - direct: one reading per message on `gw/{gw}/dev/{device}/lift`, as smart
//!   nodes publish;
//! - gateway: batches of readings per message on `gw/{gw}/batch` (the
//!   protocol's `Batch`), as gateways forward.
//!
//! Many devices share one connection (one gateway id per connection), so 100,000
//! devices need only about a thousand sockets. The MQTT side is written by hand
//! (CONNECT, SUBSCRIBE, PUBLISH at QoS 1, PUBACK, PINGREQ: a few dozen lines)
//! rather than with rumqttc, whose per-message channel hop costs a few µs: the
//! load generator shares the machine with what it measures and must stay cheap.
//!
//! Flow control is by application acks, as a real node's finite buffer would do
//! it: at most `window` readings are unacknowledged at once. Each simulated
//! sender keeps its own resend timer, as the firmware does: a device (direct) or
//! a batch (gateway) that has heard no ack releasing any of its readings for
//! [`LoadConfig::resend_after`] is published again, oldest first (duplicates are
//! harmless). Per sender, not per connection: after the broker dropped some
//! messages, the few devices missing them are held back by ingest while the
//! connection's other devices go on being acked, and a connection-wide timer
//! would then never fire while those devices slowly filled the whole window.
use crate::{Error, LoadConnectionError, Result};
use gridwatch_mqtt::MqttUrl;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, Notify};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One reading per message, on the device's own topic.
    Direct,
    /// Batches of readings per message, on the gateway's batch topic.
    Gateway,
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub broker: MqttUrl,
    pub mode: Mode,
    /// Simulated devices (device ids `{prefix}000000`, `{prefix}000001`, ...).
    pub devices: usize,
    /// Connections the devices are spread over (one gateway id each).
    pub connections: usize,
    /// Stop after this many readings...
    pub readings: Option<u64>,
    /// ...or after this long, whichever comes first.
    pub duration: Option<Duration>,
    /// Readings per second over all connections; `None` is as fast as acks allow.
    pub rate: Option<f64>,
    /// Readings per message in gateway mode.
    pub batch: usize,
    /// Readings unacknowledged at once, over all connections (each gets its share,
    /// at least one message). Direct nodes keep few (their buffers are small, and
    /// the broker's log must hold what ingest has not read yet); gateways keep
    /// many batches in flight. See [`LoadConfig::default_window`].
    pub window: usize,
    /// How long to wait for the last acks after the last publish.
    pub drain: Duration,
    /// A sender that heard no ack releasing any of its readings for this long
    /// publishes its unacknowledged readings again.
    pub resend_after: Duration,
    /// Prefix of device and gateway ids: distinct runs against one database use distinct prefixes.
    pub prefix: String,
    /// Every connection speaks for this one gateway's nodes (a load on a gateway's node
    /// broker, which admits only its own), each subscribing to its devices' own ack
    /// topics as nodes do; `None`: a gateway id per connection (`{prefix}-gw0000`, ...).
    pub gateway: Option<String>,
    /// Print a progress line on stderr every second.
    pub progress: bool,
}

impl LoadConfig {
    pub fn new(broker: MqttUrl, mode: Mode, devices: usize) -> Self {
        Self {
            broker,
            mode,
            devices,
            // Many devices per connection: each connection subscribes to the acks of
            // its devices, and every subscription costs the broker a log.
            connections: devices.div_ceil(1000).clamp(1, 1000),
            readings: None,
            duration: None,
            rate: None,
            batch: 500,
            window: Self::default_window(mode),
            drain: Duration::from_secs(60),
            resend_after: RESEND_AFTER,
            prefix: "ld".to_string(),
            gateway: None,
            progress: false,
        }
    }

    /// 36,000 readings for direct nodes; 60,000 (120 batches of 500) for gateways.
    /// What ingest holds unread must fit its pipeline and its broker's log (by
    /// default 64 queued messages, nine batches of 5,000 and 8 MiB of log, about
    /// 36,000 node messages between acks or 90,000 gateway readings); with 100,000
    /// the broker dropped batches now and then, and their resends put seconds on
    /// the p99. Ingest acks a node at most every 200 ms, and a node
    /// that used its window waits for that ack: 36,000 readings in flight is at most
    /// about 160,000 a second (36,000 / (200 ms + the commit)).
    pub fn default_window(mode: Mode) -> usize {
        match mode {
            Mode::Direct => 36_000,
            Mode::Gateway => 60_000,
        }
    }

    pub fn device_id(&self, index: usize) -> String {
        format!("{}{index:06}", self.prefix)
    }

    pub fn gateway_id(&self, connection: usize) -> String {
        match &self.gateway {
            Some(gateway) => gateway.clone(),
            None => format!("{}-gw{connection:04}", self.prefix),
        }
    }

    fn connection_error(&self, connection: usize, source: LoadConnectionError) -> Error {
        Error::LoadConnection {
            connection,
            broker: self.broker.clone(),
            source,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub mode: Mode,
    pub devices: usize,
    pub connections: usize,
    /// MQTT publishes sent (readings in direct mode, batches in gateway mode).
    pub messages_sent: u64,
    pub readings_sent: u64,
    /// PUBACKs from the broker (only "in the broker's memory").
    pub pubacks: u64,
    /// Readings covered by an application ack: committed by ingest.
    pub readings_acked: u64,
    /// Readings published again after their sender's acks stopped coming.
    pub readings_resent: u64,
    /// Wall time (Unix ms) of the first publish and of the last application ack.
    pub first_publish_unix_ms: u64,
    pub last_ack_unix_ms: u64,
    /// First publish to last application ack, seconds.
    pub seconds: f64,
    /// Readings acked per second over `seconds`.
    pub acked_per_second: f64,
    /// Publish-to-application-ack latency, ms (per message: per reading when
    /// direct, per batch in gateway mode).
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut micros: Vec<u32>) -> Self {
        if micros.is_empty() {
            return Self::default();
        }
        micros.sort_unstable();
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Counters shared by every connection, for the progress line and the report.
#[derive(Default)]
struct Totals {
    messages_sent: AtomicU64,
    readings_sent: AtomicU64,
    pubacks: AtomicU64,
    readings_acked: AtomicU64,
    readings_resent: AtomicU64,
    first_publish_unix_ms: AtomicU64,
    last_ack_unix_ms: AtomicU64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Runs the load to completion and reports.
pub async fn run(config: LoadConfig) -> Result<LoadReport> {
    if config.devices == 0 || config.connections == 0 {
        return Err(Error::LoadDevices);
    }
    if config.readings.is_none() && config.duration.is_none() {
        return Err(Error::LoadUnbounded);
    }
    if config.mode == Mode::Gateway && !(1..=1000).contains(&config.batch) {
        return Err(Error::LoadBatch { batch: config.batch });
    }
    let connections = config.connections.min(config.devices);
    // Each connection's share; a gateway batch must fit in it, or nothing would ever be sent.
    let per_message = if config.mode == Mode::Gateway { config.batch } else { 1 };
    let window = (config.window / connections).max(per_message);
    let config = Arc::new(LoadConfig {
        connections,
        window,
        ..config
    });
    let totals = Arc::new(Totals::default());
    let started = Instant::now();

    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..connections {
        let connection = Connection::open(&config, index)
            .await
            .map_err(|source| config.connection_error(index, source))?;
        tasks.spawn(connection.run(config.clone(), totals.clone(), started));
    }
    let progress = config.progress.then(|| {
        let totals = totals.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            let mut last = (Instant::now(), 0u64);
            loop {
                every.tick().await;
                let sent = totals.readings_sent.load(Ordering::Relaxed);
                let acked = totals.readings_acked.load(Ordering::Relaxed);
                let rate = (sent - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), sent);
                eprintln!(
                    "load: {:>6.1} s  sent {sent:>10}  {rate:>9.0}/s  acked {acked:>10}  waiting {:>7}",
                    started.elapsed().as_secs_f64(),
                    sent - acked
                );
            }
        })
    });
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.map_err(Error::LoadTask)??);
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    let first = totals.first_publish_unix_ms.load(Ordering::Relaxed);
    let last = totals.last_ack_unix_ms.load(Ordering::Relaxed).max(first);
    let seconds = (last - first) as f64 / 1000.0;
    let acked = totals.readings_acked.load(Ordering::Relaxed);
    Ok(LoadReport {
        mode: config.mode,
        devices: config.devices,
        connections,
        messages_sent: totals.messages_sent.load(Ordering::Relaxed),
        readings_sent: totals.readings_sent.load(Ordering::Relaxed),
        pubacks: totals.pubacks.load(Ordering::Relaxed),
        readings_acked: acked,
        readings_resent: totals.readings_resent.load(Ordering::Relaxed),
        first_publish_unix_ms: first,
        last_ack_unix_ms: last,
        seconds,
        acked_per_second: if seconds > 0.0 { acked as f64 / seconds } else { 0.0 },
        latency_ms: Percentiles::of(latencies),
    })
}

impl LoadReport {
    /// One line of JSON, as `gridwatch sim load --json` prints it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("reports serialize")
    }

    pub fn from_json(line: &str) -> Result<Self> {
        serde_json::from_str(line).map_err(|source| Error::LoadReport {
            line: line.to_string(),
            source,
        })
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:?} load: {} devices on {} connections",
            self.mode, self.devices, self.connections
        )?;
        writeln!(
            f,
            "  sent     {} messages, {} readings ({} PUBACKs, {} readings resent)",
            self.messages_sent, self.readings_sent, self.pubacks, self.readings_resent
        )?;
        writeln!(
            f,
            "  acked    {} readings in {:.2} s: {:.0} readings/s, {:.0} messages/s",
            self.readings_acked,
            self.seconds,
            self.acked_per_second,
            if self.seconds > 0.0 {
                self.messages_sent as f64 / self.seconds
            } else {
                0.0
            }
        )?;
        write!(
            f,
            "  latency  publish to application ack: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latency_ms.p50, self.latency_ms.p90, self.latency_ms.p99, self.latency_ms.max
        )
    }
}

// ---------------------------------------------------------------- one connection

/// Readings sent and not yet acknowledged by the application.
#[derive(Default)]
struct Pending {
    /// Direct: per local device.
    devices: Vec<DeviceQueue>,
    /// Gateway: oldest first.
    batches: VecDeque<SentBatch>,
    /// Readings awaiting an application ack.
    outstanding: usize,
    /// Readings acknowledged so far (the window opens with them, see [`slow_start`]).
    acked: usize,
    /// Publishes awaiting a PUBACK (packet ids must not be reused before it).
    unpubacked: usize,
    latencies: Vec<u32>,
    failed: Option<Lost>,
}

/// Why the reading side gave up on the connection.
#[derive(Debug, Clone, Copy)]
enum Lost {
    Closed,
    Unreadable(&'static str),
}

impl From<Lost> for LoadConnectionError {
    fn from(lost: Lost) -> Self {
        match lost {
            Lost::Closed => LoadConnectionError::Closed,
            Lost::Unreadable(problem) => LoadConnectionError::Unreadable { problem },
        }
    }
}

/// A direct device's unacknowledged readings.
#[derive(Clone, Default)]
struct DeviceQueue {
    /// (seq, ts, first sent) oldest first.
    readings: VecDeque<(u64, u64, Instant)>,
    /// When they go again unless an ack releases some first; `None` when empty.
    resend_at: Option<Instant>,
}

/// A gateway batch awaiting its `BatchAck`.
struct SentBatch {
    number: u64,
    readings: u32,
    /// First sent (for the latency), and when it goes again.
    sent: Instant,
    resend_at: Instant,
    payload: Vec<u8>,
}

struct Connection {
    index: usize,
    gateway: String,
    /// Global device indices served here.
    devices: Vec<usize>,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
}

const KEEP_ALIVE_SECS: u16 = 60;

impl Connection {
    /// Connects, says CONNECT and SUBSCRIBE to its ack topic, and waits for both acks.
    async fn open(config: &LoadConfig, index: usize) -> Result<Connection, LoadConnectionError> {
        let gateway = config.gateway_id(index);
        let devices: Vec<usize> = (index..config.devices).step_by(config.connections).collect();
        let stream = TcpStream::connect((config.broker.host.as_str(), config.broker.port))
            .await
            .map_err(LoadConnectionError::Connect)?;
        stream.set_nodelay(true).map_err(LoadConnectionError::Connect)?;
        let (mut reader, mut writer) = stream.into_split();
        let mut out = Vec::with_capacity(256);
        let client_id = match config.gateway {
            Some(_) => format!("{gateway}-load{index:04}"),
            None => format!("{gateway}-load"),
        };
        mqtt::connect(
            &mut out,
            &client_id,
            KEEP_ALIVE_SECS,
            config.broker.credentials.as_ref(),
        );
        let filters: Vec<String> = match (config.mode, &config.gateway) {
            // Connections share the gateway: each hears only its own devices' acks.
            (Mode::Direct, Some(_)) => devices
                .iter()
                .map(|&d| format!("gw/{gateway}/ack/{}", config.device_id(d)))
                .collect(),
            (Mode::Direct, None) => vec![format!("gw/{gateway}/ack/+")],
            (Mode::Gateway, _) => vec![format!("gw/{gateway}/ack")],
        };
        for (pkid, filter) in filters.iter().enumerate() {
            mqtt::subscribe(&mut out, pkid as u16 + 1, filter);
        }
        writer.write_all(&out).await.map_err(LoadConnectionError::Login)?;
        let mut buf = Vec::with_capacity(64);
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut connacked, mut subacked) = (false, 0);
        while !(connacked && subacked == filters.len()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 64];
            let n = tokio::time::timeout(left, reader.read(&mut chunk))
                .await
                .map_err(|_| LoadConnectionError::LoginTimeout)?
                .map_err(LoadConnectionError::Login)?;
            if n == 0 {
                return Err(LoadConnectionError::ClosedAtLogin);
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some((packet, used)) =
                mqtt::parse(&buf).map_err(|problem| LoadConnectionError::Unreadable { problem })?
            {
                match packet {
                    mqtt::Packet::ConnAck { code: 0 } => connacked = true,
                    mqtt::Packet::ConnAck { code } => return Err(LoadConnectionError::Refused { code }),
                    mqtt::Packet::SubAck => subacked += 1,
                    _ => {}
                }
                buf.drain(..used);
            }
        }
        Ok(Connection {
            index,
            gateway,
            devices,
            reader,
            writer,
        })
    }

    /// Publishes this connection's share, then waits for the last acks. Returns the latencies (µs).
    async fn run(self, config: Arc<LoadConfig>, totals: Arc<Totals>, started: Instant) -> Result<Vec<u32>> {
        let pending = Arc::new(Mutex::new(Pending {
            devices: vec![DeviceQueue::default(); self.devices.len()],
            ..Pending::default()
        }));
        let room = Arc::new(Notify::new());
        let reader = tokio::spawn(read_acks(
            self.reader,
            config.clone(),
            pending.clone(),
            room.clone(),
            totals.clone(),
        ));
        let mut publisher = Publisher {
            writer: self.writer,
            gateway: self.gateway.clone(),
            device_ids: self.devices.iter().map(|&d| config.device_id(d)).collect(),
            pkid: 1,
            out: Vec::with_capacity(64 * 1024),
            body: Vec::with_capacity(512),
            last_write: Instant::now(),
            next_resend_check: Instant::now(),
        };
        let written = publish(&mut publisher, self.index, &config, &pending, &room, &totals, started).await;
        // Drain: wait for the last acks, within the drain time, resending what is overdue.
        let drained = match written {
            Ok(()) => {
                tokio::time::timeout(config.drain, async {
                    loop {
                        let notified = room.notified();
                        {
                            let p = pending.lock().await;
                            if p.outstanding == 0 || p.failed.is_some() {
                                return Ok(());
                            }
                        }
                        let _ = tokio::time::timeout_at(publisher.next_resend_check.into(), notified).await;
                        publisher.resend_overdue(&config, &pending, &totals).await?;
                    }
                })
                .await
            }
            Err(e) => Ok(Err(e)),
        };
        reader.abort();
        let _ = publisher.writer.write_all(&mqtt::DISCONNECT).await;
        let mut p = pending.lock().await;
        if let Some(why) = p.failed.take() {
            return Err(config.connection_error(self.index, why.into()));
        }
        let drained = match drained {
            Ok(result) => {
                result.map_err(|source| config.connection_error(self.index, source))?;
                Ok(())
            }
            Err(timeout) => Err(timeout),
        };
        if drained.is_err() {
            tracing::warn!(
                connection = self.index,
                unacked = p.outstanding,
                "load: readings still unacknowledged after the drain time"
            );
        }
        Ok(std::mem::take(&mut p.latencies))
    }
}

/// How many readings each device sends when `config.readings` are sent in all
/// (device `d` is on connection `d % connections`; a connection sends round robin
/// over its devices).
pub fn readings_per_device(config: &LoadConfig) -> Vec<u64> {
    let total = config.readings.unwrap_or(0);
    let connections = config.connections.min(config.devices).max(1);
    let mut counts = vec![0u64; config.devices];
    for c in 0..connections {
        let mine: Vec<usize> = (c..config.devices).step_by(connections).collect();
        let sent = share(total, connections, c);
        let n = mine.len() as u64;
        for (local, &d) in mine.iter().enumerate() {
            counts[d] = sent / n + u64::from((local as u64) < sent % n);
        }
    }
    counts
}

/// The readings a run sends, as (gateway, reading JSON as a node publishes it),
/// in about the order they are sent: seq by seq across all devices.
pub fn planned_readings(config: &LoadConfig, ts: u64) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    let counts = readings_per_device(config);
    let rounds = counts.iter().copied().max().unwrap_or(0);
    let connections = config.connections.min(config.devices).max(1);
    (1..=rounds).flat_map(move |seq| {
        let counts = counts.clone();
        (0..config.devices).filter(move |&d| seq <= counts[d]).map(move |d| {
            let mut json = Vec::with_capacity(256);
            lift_reading(&mut json, false, &config.device_id(d), seq, ts);
            (config.gateway_id(d % connections), json)
        })
    })
}

/// How many readings this connection sends when the total is `readings`.
fn share(readings: u64, connections: usize, index: usize) -> u64 {
    let base = readings / connections as u64;
    base + u64::from((index as u64) < readings % connections as u64)
}

/// The window a connection may use after `acked` readings were acknowledged: an
/// eighth of it at first, growing by each ack (doubling per round trip), as TCP
/// does. Thousands of devices sending their whole window at the same instant is
/// an artefact of starting them together, and would overflow the broker's log
/// (see [`LoadConfig::default_window`]).
fn slow_start(window: usize, acked: usize) -> usize {
    window.min((window / 8).max(1).saturating_add(acked))
}

/// The default [`LoadConfig::resend_after`]: several times the p99 latency of a
/// loaded ingest, far below a real node's 30 s (the benchmark should not wait long
/// for a reading the broker dropped).
pub const RESEND_AFTER: Duration = Duration::from_secs(2);

/// Checks for overdue senders this many times per `resend_after`: a sender goes
/// again at most a quarter of it late.
const RESEND_CHECKS: u32 = 4;

/// The sending half of a connection and what it needs to write messages.
struct Publisher {
    writer: OwnedWriteHalf,
    gateway: String,
    /// Device ids by local index.
    device_ids: Vec<String>,
    pkid: u16,
    out: Vec<u8>,
    body: Vec<u8>,
    last_write: Instant,
    /// When to look for senders whose resend time has come.
    next_resend_check: Instant,
}

impl Publisher {
    fn next_pkid(&mut self) -> u16 {
        let pkid = self.pkid;
        self.pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
        pkid
    }

    fn topic(&self, device: usize) -> String {
        format!("gw/{}/dev/{}/lift", self.gateway, self.device_ids[device])
    }

    /// Publishes again the unacknowledged readings of every sender whose resend
    /// time has come, oldest first per device (as a node replays), and restarts
    /// their timers. Does nothing before [`Publisher::next_resend_check`].
    async fn resend_overdue(
        &mut self,
        config: &LoadConfig,
        pending: &Mutex<Pending>,
        totals: &Totals,
    ) -> Result<(), LoadConnectionError> {
        let now = Instant::now();
        if now < self.next_resend_check {
            return Ok(());
        }
        self.next_resend_check = now + config.resend_after / RESEND_CHECKS;
        let again = now + config.resend_after;
        self.out.clear();
        let (mut messages, mut readings) = (0usize, 0u64);
        {
            let mut p = pending.lock().await;
            let Pending { devices, batches, .. } = &mut *p;
            match config.mode {
                Mode::Direct => {
                    for (d, device) in devices.iter_mut().enumerate() {
                        if device.resend_at.is_none_or(|at| at > now) {
                            continue;
                        }
                        device.resend_at = Some(again);
                        let topic = self.topic(d);
                        for &(seq, ts, _) in &device.readings {
                            self.body.clear();
                            lift_reading(&mut self.body, false, &self.device_ids[d], seq, ts);
                            let pkid = self.next_pkid();
                            mqtt::publish(&mut self.out, &topic, pkid, &self.body);
                            messages += 1;
                            readings += 1;
                        }
                    }
                }
                Mode::Gateway => {
                    let topic = format!("gw/{}/batch", self.gateway);
                    for batch in batches.iter_mut().filter(|b| b.resend_at <= now) {
                        batch.resend_at = again;
                        let pkid = self.next_pkid();
                        mqtt::publish(&mut self.out, &topic, pkid, &batch.payload);
                        messages += 1;
                        readings += u64::from(batch.readings);
                    }
                }
            }
            p.unpubacked += messages;
        }
        if messages > 0 {
            tracing::debug!(gateway = %self.gateway, readings, "no acks for a while: publishing the unacknowledged readings again");
            self.writer
                .write_all(&self.out)
                .await
                .map_err(LoadConnectionError::Resend)?;
            self.last_write = Instant::now();
            totals.readings_resent.fetch_add(readings, Ordering::Relaxed);
        }
        Ok(())
    }
}

async fn publish(
    publisher: &mut Publisher,
    index: usize,
    config: &LoadConfig,
    pending: &Mutex<Pending>,
    room: &Notify,
    totals: &Totals,
    started: Instant,
) -> Result<(), LoadConnectionError> {
    let my_readings = config.readings.map(|r| share(r, config.connections, index));
    let my_rate = config.rate.map(|r| r / config.connections as f64);
    let per_message = match config.mode {
        Mode::Direct => 1,
        Mode::Gateway => config.batch,
    };
    let devices = publisher.device_ids.len();
    let topics: Vec<String> = (0..devices).map(|d| publisher.topic(d)).collect();
    let batch_topic = format!("gw/{}/batch", publisher.gateway);
    let mut seqs = vec![0u64; devices];
    let mut next_device = 0usize;
    let mut batch_number = 0u64;
    let mut sent: u64 = 0;
    loop {
        if my_readings.is_some_and(|n| sent >= n) || config.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        publisher.resend_overdue(config, pending, totals).await?;
        // How many readings may go now: the window, the rate and the total allow.
        let mut allowed = match my_readings {
            Some(n) => (n - sent) as usize,
            None => usize::MAX,
        };
        if let Some(rate) = my_rate {
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            if due <= sent {
                let wait = Duration::from_secs_f64((sent + 1) as f64 / rate).saturating_sub(started.elapsed());
                tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                // Slow rates: keep the connection alive for the broker (keep-alive 60 s).
                if publisher.last_write.elapsed() > Duration::from_secs(30) {
                    publisher
                        .writer
                        .write_all(&mqtt::PINGREQ)
                        .await
                        .map_err(LoadConnectionError::Ping)?;
                    publisher.last_write = Instant::now();
                }
                continue;
            }
            allowed = allowed.min((due - sent) as usize);
        }
        let notified = room.notified();
        let free = {
            let p = pending.lock().await;
            if let Some(why) = p.failed {
                return Err(why.into());
            }
            let pkids_free = 60_000usize.saturating_sub(p.unpubacked);
            slow_start(config.window, p.acked)
                .saturating_sub(p.outstanding)
                .min(pkids_free.saturating_mul(per_message))
        };
        allowed = allowed.min(free).min(64 * per_message);
        if allowed < per_message.min(my_readings.map_or(usize::MAX, |n| (n - sent) as usize)) {
            // Wait for acks, or until it is time to resend what is overdue (which
            // also keeps the connection alive for the broker).
            let _ = tokio::time::timeout_at(publisher.next_resend_check.into(), notified).await;
            continue;
        }

        // Encode the messages that may go now, register them, write them in one go.
        publisher.out.clear();
        let ts = unix_ms();
        let now = Instant::now();
        let mut messages = 0u64;
        let mut readings = 0usize;
        let mut registered: Vec<(usize, u64)> = Vec::with_capacity(64);
        let mut batches: Vec<(u64, u32, Vec<u8>)> = Vec::new();
        while readings + per_message <= allowed || (readings == 0 && allowed > 0) {
            let pkid = publisher.next_pkid();
            let Publisher {
                out,
                body,
                device_ids,
                gateway,
                ..
            } = &mut *publisher;
            match config.mode {
                Mode::Direct => {
                    let d = next_device;
                    next_device = (next_device + 1) % devices;
                    seqs[d] += 1;
                    body.clear();
                    lift_reading(body, false, &device_ids[d], seqs[d], ts);
                    mqtt::publish(out, &topics[d], pkid, body);
                    registered.push((d, seqs[d]));
                    readings += 1;
                }
                Mode::Gateway => {
                    let n = per_message.min(allowed - readings);
                    batch_number += 1;
                    body.clear();
                    body.extend_from_slice(b"{\"v\":1,\"gateway\":\"");
                    body.extend_from_slice(gateway.as_bytes());
                    body.extend_from_slice(b"\",\"batch\":");
                    push_u64(body, batch_number);
                    body.extend_from_slice(b",\"readings\":[");
                    for i in 0..n {
                        let d = next_device;
                        next_device = (next_device + 1) % devices;
                        seqs[d] += 1;
                        if i > 0 {
                            body.push(b',');
                        }
                        lift_reading(body, true, &device_ids[d], seqs[d], ts);
                    }
                    body.extend_from_slice(b"]}");
                    mqtt::publish(out, &batch_topic, pkid, body);
                    batches.push((batch_number, n as u32, body.clone()));
                    readings += n;
                }
            }
            messages += 1;
            if my_readings.is_some_and(|total| sent + readings as u64 >= total) {
                break;
            }
        }
        {
            let mut p = pending.lock().await;
            let resend_at = now + config.resend_after;
            for (d, seq) in registered {
                let device = &mut p.devices[d];
                device.readings.push_back((seq, ts, now));
                device.resend_at.get_or_insert(resend_at);
            }
            for (number, count, payload) in batches {
                p.batches.push_back(SentBatch {
                    number,
                    readings: count,
                    sent: now,
                    resend_at,
                    payload,
                });
            }
            p.outstanding += readings;
            p.unpubacked += messages as usize;
        }
        if totals.first_publish_unix_ms.load(Ordering::Relaxed) == 0 {
            let _ = totals
                .first_publish_unix_ms
                .compare_exchange(0, unix_ms(), Ordering::Relaxed, Ordering::Relaxed);
        }
        publisher
            .writer
            .write_all(&publisher.out)
            .await
            .map_err(LoadConnectionError::Publish)?;
        publisher.last_write = Instant::now();
        sent += readings as u64;
        totals.messages_sent.fetch_add(messages, Ordering::Relaxed);
        totals.readings_sent.fetch_add(readings as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// A lift status reading as JSON; `tagged` adds the `kind` a batch needs. About
/// 200 bytes, with a body that changes with every reading (as a moving lift's does).
fn lift_reading(out: &mut Vec<u8>, tagged: bool, device: &str, seq: u64, ts: u64) {
    const MOTION: [&str; 3] = ["up", "stopped", "down"];
    out.extend_from_slice(if tagged {
        b"{\"kind\":\"lift\",\"v\":1,\"device\":\""
    } else {
        b"{\"v\":1,\"device\":\""
    });
    out.extend_from_slice(device.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    push_u64(out, seq);
    out.extend_from_slice(b",\"ts\":");
    push_u64(out, ts);
    out.extend_from_slice(b",\"body\":{\"mode\":\"normal\",\"motion\":\"");
    out.extend_from_slice(MOTION[(seq % 3) as usize].as_bytes());
    out.extend_from_slice(b"\",\"door\":\"closed\",\"door_zone\":false,\"floor\":");
    push_u64(out, seq % 30);
    out.extend_from_slice(b",\"occupied\":true,\"alarm\":false,\"fault\":0,\"power\":\"mains\",\"runs\":");
    push_u64(out, seq);
    out.extend_from_slice(b",\"door_cycles\":");
    push_u64(out, seq * 2);
    out.extend_from_slice(b"}}");
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[derive(Deserialize)]
struct AppAck<'a> {
    #[serde(borrow)]
    device: Option<&'a str>,
    seq: Option<u64>,
    batch: Option<u64>,
}

/// Reads PUBACKs and application acks, releasing window room.
async fn read_acks(
    mut reader: OwnedReadHalf,
    config: Arc<LoadConfig>,
    pending: Arc<Mutex<Pending>>,
    room: Arc<Notify>,
    totals: Arc<Totals>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let prefix_len = config.prefix.len();
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                pending.lock().await.failed = Some(Lost::Closed);
                room.notify_waiters();
                return;
            }
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let now = Instant::now();
        let mut p = pending.lock().await;
        let mut consumed = 0;
        let mut acked = 0u64;
        loop {
            let packet = match mqtt::parse(&buf[consumed..]) {
                Ok(Some((packet, used))) => {
                    consumed += used;
                    packet
                }
                Ok(None) => break,
                Err(problem) => {
                    p.failed = Some(Lost::Unreadable(problem));
                    room.notify_waiters();
                    return;
                }
            };
            match packet {
                mqtt::Packet::PubAck => {
                    p.unpubacked = p.unpubacked.saturating_sub(1);
                    totals.pubacks.fetch_add(1, Ordering::Relaxed);
                }
                mqtt::Packet::Publish { payload, .. } => {
                    let Ok(ack) = serde_json::from_slice::<AppAck>(payload) else {
                        continue;
                    };
                    match (config.mode, ack.device, ack.seq, ack.batch) {
                        (Mode::Direct, Some(device), Some(seq), _) => {
                            // Local index of a device id `{prefix}{global index}`.
                            let Some(global) = device.get(prefix_len..).and_then(|n| n.parse::<usize>().ok()) else {
                                continue;
                            };
                            let Some(device) = p.devices.get_mut(global / config.connections) else {
                                continue;
                            };
                            let mut released = Vec::new();
                            while device.readings.front().is_some_and(|(s, _, _)| *s <= seq) {
                                let (_, _, sent) = device.readings.pop_front().expect("checked");
                                released.push(now.duration_since(sent).as_micros() as u32);
                            }
                            if !released.is_empty() {
                                // Heard from ingest: the rest may wait a full interval again.
                                device.resend_at = (!device.readings.is_empty()).then(|| now + config.resend_after);
                            }
                            acked += released.len() as u64;
                            p.outstanding -= released.len();
                            p.acked += released.len();
                            p.latencies.extend(released);
                        }
                        (Mode::Gateway, _, _, Some(number)) => {
                            // A BatchAck covers its own batch only (an earlier one may have been
                            // lost on the way and must be sent again).
                            if let Some(at) = p.batches.iter().position(|b| b.number == number) {
                                let batch = p.batches.remove(at).expect("found");
                                let n = batch.readings as usize;
                                acked += n as u64;
                                p.outstanding -= n;
                                p.acked += n;
                                p.latencies.push(now.duration_since(batch.sent).as_micros() as u32);
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        drop(p);
        buf.drain(..consumed);
        if acked > 0 {
            totals.readings_acked.fetch_add(acked, Ordering::Relaxed);
            totals.last_ack_unix_ms.fetch_max(unix_ms(), Ordering::Relaxed);
        }
        room.notify_waiters();
    }
}

/// The few MQTT 3.1.1 packets the load generator needs (OASIS MQTT 3.1.1, section 3).
mod mqtt {
    pub(super) const DISCONNECT: [u8; 2] = [0xe0, 0];
    pub(super) const PINGREQ: [u8; 2] = [0xc0, 0];

    pub(super) enum Packet<'a> {
        ConnAck { code: u8 },
        SubAck,
        PubAck,
        Publish { payload: &'a [u8] },
        Other,
    }

    fn remaining_length(out: &mut Vec<u8>, mut len: usize) {
        loop {
            let mut byte = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                byte |= 0x80;
            }
            out.push(byte);
            if len == 0 {
                break;
            }
        }
    }

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }

    /// CONNECT with a clean session.
    pub(super) fn connect(out: &mut Vec<u8>, client_id: &str, keep_alive: u16, login: Option<&(String, String)>) {
        let mut body = Vec::with_capacity(64);
        string(&mut body, b"MQTT");
        body.push(4); // protocol level 3.1.1
        let mut flags = 0x02; // clean session
        if login.is_some() {
            flags |= 0xc0; // user name and password
        }
        body.push(flags);
        body.extend_from_slice(&keep_alive.to_be_bytes());
        string(&mut body, client_id.as_bytes());
        if let Some((user, password)) = login {
            string(&mut body, user.as_bytes());
            string(&mut body, password.as_bytes());
        }
        out.push(0x10);
        remaining_length(out, body.len());
        out.extend_from_slice(&body);
    }

    /// SUBSCRIBE to one filter at QoS 0 (acks may be lost: the sender resends, which is harmless).
    pub(super) fn subscribe(out: &mut Vec<u8>, pkid: u16, filter: &str) {
        out.push(0x82);
        remaining_length(out, 2 + 2 + filter.len() + 1);
        out.extend_from_slice(&pkid.to_be_bytes());
        string(out, filter.as_bytes());
        out.push(0);
    }

    /// PUBLISH at QoS 1.
    pub(super) fn publish(out: &mut Vec<u8>, topic: &str, pkid: u16, payload: &[u8]) {
        out.push(0x32);
        remaining_length(out, 2 + topic.len() + 2 + payload.len());
        string(out, topic.as_bytes());
        out.extend_from_slice(&pkid.to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// One packet from the front of `buf` and its length, or `None` if incomplete;
    /// the error says what is wrong with it.
    pub(super) fn parse(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>, &'static str> {
        let Some(&first) = buf.first() else { return Ok(None) };
        let mut len = 0usize;
        let mut shift = 0;
        let mut at = 1;
        loop {
            let Some(&byte) = buf.get(at) else { return Ok(None) };
            len |= ((byte & 0x7f) as usize) << shift;
            at += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return Err("malformed remaining length");
            }
        }
        let end = at + len;
        if buf.len() < end {
            return Ok(None);
        }
        let body = &buf[at..end];
        let packet = match first >> 4 {
            2 => Packet::ConnAck {
                code: body.get(1).copied().unwrap_or(0xff),
            },
            9 => Packet::SubAck,
            4 => Packet::PubAck,
            3 => {
                if body.len() < 2 {
                    return Err("short PUBLISH");
                }
                let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
                let qos = (first >> 1) & 3;
                let payload_at = 2 + topic_len + if qos > 0 { 2 } else { 0 };
                if body.len() < payload_at {
                    return Err("short PUBLISH");
                }
                Packet::Publish {
                    payload: &body[payload_at..],
                }
            }
            _ => Packet::Other,
        };
        Ok(Some((packet, end)))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn publish_round_trips_through_parse() {
            let mut out = Vec::new();
            let payload = vec![b'x'; 300]; // two-byte remaining length
            publish(&mut out, "gw/g/dev/d/lift", 7, &payload);
            let (packet, used) = parse(&out).unwrap().unwrap();
            assert_eq!(used, out.len());
            let Packet::Publish { payload: p } = packet else {
                panic!("not a publish")
            };
            assert_eq!(p, payload.as_slice());
            assert!(parse(&out[..out.len() - 1]).unwrap().is_none(), "incomplete");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_opens_with_the_acks() {
        assert_eq!(slow_start(8000, 0), 1000);
        assert_eq!(slow_start(8000, 1000), 2000);
        assert_eq!(slow_start(8000, 7000), 8000);
        assert_eq!(slow_start(8000, 1_000_000), 8000);
        // A window smaller than eight still lets one reading go.
        assert_eq!(slow_start(3, 0), 1);
    }

    #[test]
    fn readings_are_valid_protocol_messages_of_about_200_bytes() {
        let mut out = Vec::new();
        lift_reading(&mut out, false, "ld000042", 1234, 1_764_061_200_000);
        // A full lift status with realistic counters: the "~200 bytes".
        assert!((190..=240).contains(&out.len()), "{} bytes", out.len());
        let reading = gridwatch_protocol::batch::Reading::decode(gridwatch_protocol::Kind::Lift, &out).unwrap();
        assert_eq!((reading.device(), reading.seq()), ("ld000042", 1234));
        out.clear();
        lift_reading(&mut out, true, "ld000042", 1, 1_764_061_200_000);
        gridwatch_protocol::batch::Reading::decode_tagged(&out).unwrap();
    }

    #[test]
    fn the_plan_matches_what_connections_send() {
        let mut config = LoadConfig::new("mqtt://127.0.0.1:1".parse().unwrap(), Mode::Direct, 7);
        config.connections = 3;
        config.readings = Some(20);
        let counts = readings_per_device(&config);
        assert_eq!(counts.iter().sum::<u64>(), 20);
        // Connection 0 has devices 0, 3, 6 and sends 7: 3, 2, 2.
        assert_eq!((counts[0], counts[3], counts[6]), (3, 2, 2));
        assert_eq!(planned_readings(&config, 1_764_061_200_000).count(), 20);
    }

    #[test]
    fn shares_add_up() {
        assert_eq!((0..7).map(|i| share(100, 7, i)).sum::<u64>(), 100);
        assert_eq!(share(5, 10, 9), 0);
    }

    #[test]
    fn percentiles() {
        let p = Percentiles::of((1..=100).map(|ms| ms * 1000).collect());
        assert_eq!((p.p50, p.p99, p.max), (51.0, 99.0, 100.0));
    }
}
