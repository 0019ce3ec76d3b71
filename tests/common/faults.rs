//! The fault-injection suite's parts (tests/faults.rs): the real `gridwatch`
//! processes, killed with SIGKILL and restarted; a TCP proxy in front of PostgreSQL
//! that takes the database away as its clients see it; a tmpfs to fill; and nodes
//! that keep every reading until acknowledged and remember what was acknowledged,
//! to compare with the database by (device, seq).
use super::DEADLINE;
use gridwatch_protocol::{DeviceId, Door, Envelope, LiftStatus, Motion, NodeAck};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------- bounds

/// How long and how hard each fault is: short by default (part of `./scripts/test`),
/// the lengths the reliability table states with `GRIDWATCH_FAULTS_LONG=1`.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    pub(crate) long: bool,
    /// Readings per second over all load devices.
    pub(crate) rate: f64,
    pub(crate) load_devices: usize,
    /// SIGKILLs per process.
    pub(crate) kills: usize,
    pub(crate) pg_outage: Duration,
    pub(crate) disk_full: Duration,
    pub(crate) fake_devices: usize,
}

impl Bounds {
    pub(crate) fn from_env() -> Bounds {
        let long = std::env::var("GRIDWATCH_FAULTS_LONG").is_ok_and(|v| v == "1");
        if long {
            Bounds {
                long,
                rate: 1000.0,
                load_devices: 100,
                kills: 6,
                pg_outage: Duration::from_secs(30),
                disk_full: Duration::from_secs(15),
                fake_devices: 1000,
            }
        } else {
            Bounds {
                long,
                rate: 300.0,
                load_devices: 30,
                kills: 2,
                pg_outage: Duration::from_secs(5),
                disk_full: Duration::from_secs(3),
                fake_devices: 1000,
            }
        }
    }
}

/// A generator seeded from `GRIDWATCH_FAULTS_SEED`, or from the clock; the seed is
/// printed so that a failure can be replayed.
pub(crate) fn seeded(test: &str) -> fastrand::Rng {
    let seed = std::env::var("GRIDWATCH_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    println!("{test}: seed {seed} (replay with GRIDWATCH_FAULTS_SEED={seed})");
    fastrand::Rng::with_seed(seed)
}

// ---------------------------------------------------------------- processes

/// A child process killed (SIGKILL) when dropped, so a failed test leaves nothing behind.
pub(crate) struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gridwatch ARGS` and returns it with the first stdout line that starts with `prefix`.
pub(crate) fn spawn(args: &[&str], prefix: &str) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        // Warnings go to the test's output, which nextest shows when the test fails.
        .env("RUST_LOG", std::env::var("GRIDWATCH_TEST_LOG").unwrap_or("warn".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning gridwatch");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no {prefix} line"));
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), line)
}

/// The `host:port` of the first `scheme://` address in a start-up line.
pub(crate) fn addr_in(line: &str, scheme: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(scheme))
        .map(|a| a.trim_end_matches('/').to_string())
        .unwrap_or_else(|| panic!("a {scheme} address in {line:?}"))
}

pub(crate) fn mqtt_addr(line: &str) -> String {
    addr_in(line, "mqtt://")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Ingest,
    Gateway,
}

/// A `gridwatch ingest` and a `gridwatch gateway` process linked to it, restarted on
/// the addresses of their first start.
pub(crate) struct System {
    pub(crate) gateway_id: String,
    /// The credentials file both brokers use: the gateway, and the simulated fleet as a
    /// load identity ([`FLEET`]) speaking for every `sim-` device behind the gateway.
    pub(crate) credentials: std::path::PathBuf,
    pub(crate) fleet_secret: String,
    /// The gateway's broker, for nodes.
    pub(crate) node_addr: String,
    pub(crate) ingest_mqtt: String,
    pub(crate) http: String,
    ingest_args: Vec<String>,
    gateway_args: Vec<String>,
    ingest: Option<Proc>,
    gateway: Option<Proc>,
}

fn run(args: &[String], prefix: &str) -> (Proc, String) {
    spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), prefix)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl System {
    /// Ingest with its data under `data` (and the database at `db`, SQLite under
    /// `data` when `None`), and a gateway `gateway_id` with its data under `gateway_data`.
    pub(crate) fn start(data: &Path, db: Option<&str>, gateway_id: &str, gateway_data: &Path) -> System {
        Self::start_with(data, db, gateway_id, gateway_data, &[])
    }

    /// [`System::start`] with more options for the gateway (e.g. its Modbus devices),
    /// kept for its restarts.
    pub(crate) fn start_with(
        data: &Path,
        db: Option<&str>,
        gateway_id: &str,
        gateway_data: &Path,
        gateway_extra: &[String],
    ) -> System {
        let credentials = data.join("credentials.toml");
        let gateway_secret = super::provision(&credentials, gateway_id, gridwatch_ingest::Role::Gateway, None);
        let fleet_secret = {
            let mut file = gridwatch_ingest::CredentialsFile::load_or_empty(&credentials).unwrap();
            let secret = file
                .add_with_prefix(FLEET, gridwatch_ingest::Role::Load, Some(gateway_id), Some("sim-"), 0)
                .unwrap();
            file.save(&credentials).unwrap();
            secret
        };
        let credentials_arg = credentials.to_str().unwrap();
        let data = data.to_str().unwrap();
        let mut ingest_args = args(&["ingest", "--open-api", "--credentials", credentials_arg, "--data", data]);
        if let Some(db) = db {
            ingest_args.extend(args(&["--db", db]));
        }
        let mut first = ingest_args.clone();
        first.extend(args(&["--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"]));
        let (ingest, line) = run(&first, "ingest:");
        let (http, ingest_mqtt) = (addr_in(&line, "http://"), mqtt_addr(&line));
        ingest_args.extend(args(&["--http", &http, "--mqtt", &ingest_mqtt]));
        let uplink = format!("mqtt://{gateway_id}:{gateway_secret}@{ingest_mqtt}");
        let gateway_data = gateway_data.to_str().unwrap();
        let mut gateway_args = args(&[
            "gateway",
            "--id",
            gateway_id,
            "--uplink",
            &uplink,
            "--data",
            gateway_data,
            "--credentials",
            credentials_arg,
        ]);
        gateway_args.extend(gateway_extra.iter().cloned());
        let mut first = gateway_args.clone();
        first.extend(args(&["--listen", "127.0.0.1:0"]));
        let (gateway, line) = run(&first, "gateway:");
        let node_addr = mqtt_addr(&line);
        gateway_args.extend(args(&["--listen", &node_addr]));
        System {
            gateway_id: gateway_id.to_string(),
            credentials,
            fleet_secret,
            node_addr,
            ingest_mqtt,
            http: format!("http://{http}"),
            ingest_args,
            gateway_args,
            ingest: Some(ingest),
            gateway: Some(gateway),
        }
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self, service: Service) {
        let proc = match service {
            Service::Ingest => self.ingest.take(),
            Service::Gateway => self.gateway.take(),
        };
        drop(proc.expect("killing a running service"));
    }

    pub(crate) fn restart(&mut self, service: Service) {
        match service {
            Service::Ingest => self.ingest = Some(run(&self.ingest_args, "ingest:").0),
            Service::Gateway => self.gateway = Some(run(&self.gateway_args, "gateway:").0),
        }
    }

    /// The sum of a Prometheus counter over its labels on ingest's `/metrics`.
    pub(crate) async fn counter(&self, name: &str) -> f64 {
        super::get_text(&format!("{}/metrics", self.http))
            .await
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until `GET /healthz/ready` answers `status` (503 while writes fail, 200 once
    /// one succeeds again).
    pub(crate) async fn wait_ready_status(&self, status: u16) {
        let url = format!("{}/healthz/ready", self.http);
        super::eventually(&format!("/healthz/ready to answer {status}"), || async {
            let got = reqwest::get(&url).await.ok()?.status().as_u16();
            (got == status).then_some(())
        })
        .await;
    }
}

/// The identity of the simulated fleet, a load identity for the ids starting `sim-`.
pub(crate) const FLEET: &str = "sim-fleet";

/// An MQTT client as [`super::mqtt_client`] makes, logged in at `url`, or `None` when
/// the broker has not accepted it `within` (a broker refuses strangers).
pub(crate) async fn try_mqtt_client(
    url: &gridwatch_mqtt::MqttUrl,
    id: &str,
    within: Duration,
) -> Option<(AsyncClient, tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>)> {
    let (client, events) = AsyncClient::new(gridwatch_mqtt::client_options(url, id), 1000);
    let (connected, mut connack) = tokio::sync::mpsc::unbounded_channel();
    let (publishes, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(super::drive(events, connected, publishes));
    tokio::time::timeout(within, connack.recv()).await.ok()??;
    Some((client, received))
}

// ---------------------------------------------------------------- PostgreSQL

#[path = "../../storage/tests/common/mod.rs"]
pub(crate) mod storage_common;

/// A fresh PostgreSQL database on the real server, dropped with this value.
pub(crate) struct PgDatabase {
    db: storage_common::TestDb,
    pub(crate) server: SocketAddr,
}

impl PgDatabase {
    pub(crate) async fn create() -> PgDatabase {
        let db = storage_common::TestDb::new(storage_common::Backend::Postgres).await;
        let server = storage_common::pg_server();
        let host = server.rsplit('@').next().unwrap().trim_start_matches("postgres://");
        let server = tokio::net::lookup_host(host)
            .await
            .unwrap()
            .next()
            .expect("the PostgreSQL server's address");
        PgDatabase { db, server }
    }

    /// Its URL through another address (a [`Proxy`]).
    pub(crate) fn url_via(&self, addr: SocketAddr) -> String {
        let name = self.db.url.rsplit('/').next().unwrap();
        format!("postgres://postgres@{addr}/{name}")
    }

    pub(crate) fn url(&self) -> &str {
        &self.db.url
    }
}

/// A TCP proxy to a server; [`Proxy::outage`] closes its port and every
/// connection through it, which is all a client can tell of a server gone away.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    upstream: SocketAddr,
    accepting: Option<JoinHandle<()>>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(0);
        let accepting = Some(tokio::spawn(accept(listener, upstream, cut.subscribe())));
        Proxy {
            addr,
            upstream,
            accepting,
            cut,
        }
    }

    /// Refuses new connections and closes the open ones.
    pub(crate) fn outage(&mut self) {
        if let Some(accepting) = self.accepting.take() {
            accepting.abort();
        }
        self.cut.send_modify(|n| *n += 1);
    }

    /// Listens again on the same port.
    pub(crate) async fn restore(&mut self) {
        // The aborted task drops its listener when it is next polled: retry the bind until then.
        let deadline = Instant::now() + DEADLINE;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) => assert!(Instant::now() < deadline, "binding {} again: {e}", self.addr),
            }
            tokio::task::yield_now().await;
        };
        self.accepting = Some(tokio::spawn(accept(listener, self.upstream, self.cut.subscribe())));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.outage();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, cut: watch::Receiver<u64>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let mut cut = cut.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.changed() => {}
            }
        });
    }
}

// ---------------------------------------------------------------- full disk

/// A small tmpfs mounted on a temporary directory, unmounted when dropped.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
    ballast: PathBuf,
}

impl Tmpfs {
    /// Mounts `mib` MiB; `Err` says why it cannot (not root, or mounting refused).
    pub(crate) fn mount(mib: u64) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("mounting a tmpfs needs root".into());
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let ballast = dir.path().join("ballast");
        Ok(Tmpfs { dir, ballast })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a ballast file until the file system is full; returns its size.
    pub(crate) fn fill(&self) -> u64 {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.ballast)
            .unwrap();
        let block = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", self.ballast.display()),
            }
        }
        let _ = file.sync_all();
        written
    }

    pub(crate) fn free(&self) {
        std::fs::remove_file(&self.ballast).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process killed a moment ago may still hold files open.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

// ---------------------------------------------------------------- nodes

/// A lift at rest in the door zone: raises nothing.
fn at_rest() -> LiftStatus {
    LiftStatus::at_rest(1)
}

/// A passenger pressed the alarm button in a lift stopped with its doors closed:
/// a trapped-passenger alert at once (docs/alerts.md).
fn trapped() -> LiftStatus {
    LiftStatus {
        motion: Motion::Stopped,
        door: Door::Closed,
        occupied: true,
        alarm: true,
        ..LiftStatus::at_rest(4)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// One simulated node, as the firmware behaves: every reading kept until a
/// `NodeAck` covers it.
struct Device {
    id: String,
    next_seq: u64,
    last_ts: u64,
    unacked: BTreeMap<u64, Vec<u8>>,
    /// Seqs an ack released (the node forgets them): what must be in the database.
    acked: Vec<u64>,
    /// The oldest unacked seq at the last resend check.
    oldest_at_check: Option<u64>,
}

/// When a fault was cleared, and how the backlog drained after it.
struct Mark {
    at: Instant,
    /// Per device, the last seq sent before the fault cleared.
    targets: Vec<u64>,
    first_commit: Option<Instant>,
    drained: Option<Instant>,
}

struct Fleet {
    devices: Vec<Device>,
    load_devices: usize,
    /// Alert devices trapped so far (the next one is `load_devices + trapped`).
    trapped: usize,
    acked: u64,
    mark: Option<Mark>,
}

impl Fleet {
    /// The next reading of device `d`, kept until acknowledged.
    fn next(&mut self, d: usize, gateway: &str, status: LiftStatus) -> (String, Vec<u8>) {
        let device = &mut self.devices[d];
        let seq = device.next_seq;
        device.next_seq += 1;
        device.last_ts = unix_ms().max(device.last_ts + 1);
        let id = DeviceId::try_from(device.id.as_str()).unwrap();
        let payload = serde_json::to_vec(&Envelope::new(id, seq, device.last_ts, status)).unwrap();
        device.unacked.insert(seq, payload.clone());
        (format!("gw/{gateway}/dev/{}/lift", device.id), payload)
    }

    fn ack(&mut self, device: &str, seq: u64) {
        let Some(d) = self.devices.iter().position(|d| d.id == device) else {
            return;
        };
        let dev = &mut self.devices[d];
        let kept = dev.unacked.split_off(&(seq + 1));
        let released = std::mem::replace(&mut dev.unacked, kept);
        if released.is_empty() {
            return;
        }
        self.acked += released.len() as u64;
        dev.acked.extend(released.into_keys());
        let now = Instant::now();
        if let Some(mark) = &mut self.mark {
            mark.first_commit.get_or_insert(now);
            let drained = self
                .devices
                .iter()
                .zip(&mark.targets)
                .all(|(d, &target)| d.unacked.first_key_value().is_none_or(|(&s, _)| s > target));
            if drained {
                mark.drained.get_or_insert(now);
            }
        }
    }

    fn unacked(&self) -> usize {
        self.devices.iter().map(|d| d.unacked.len()).sum()
    }

    /// Payloads of every unacked reading of devices that heard no ack since the last check.
    fn overdue(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for d in &mut self.devices {
            let oldest = d.unacked.keys().next().copied();
            if oldest.is_some() && oldest == d.oldest_at_check {
                out.extend(d.unacked.values().map(|p| (d.id.clone(), p.clone())));
            }
            d.oldest_at_check = oldest;
        }
        out
    }

    fn all_unacked(&self) -> Vec<(String, Vec<u8>)> {
        let devices = self.devices.iter();
        devices
            .flat_map(|d| d.unacked.values().map(|p| (d.id.clone(), p.clone())))
            .collect()
    }
}

/// How long the system took to recover from a fault.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recovery {
    /// From the fault cleared to the first reading acknowledged after it.
    pub(crate) first_commit: Duration,
    /// ...to every reading sent before it acknowledged.
    pub(crate) drained: Duration,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "first commit {:.2} s, backlog drained {:.2} s",
            self.first_commit.as_secs_f64(),
            self.drained.as_secs_f64()
        )
    }
}

/// Simulated lift nodes on one MQTT connection to a gateway's broker: load devices
/// publishing at a steady rate, and alert devices that each trap a passenger once
/// when told to. A node resends what stays unacknowledged (every 3 s, as the
/// firmware does after its resend time) and everything after a reconnect.
pub(crate) struct Nodes {
    client: AsyncClient,
    gateway: String,
    fleet: Arc<Mutex<Fleet>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Readings a device may hold unacknowledged before it stops sending (its buffer).
const WINDOW: usize = 20_000;
const RESEND_AFTER: Duration = Duration::from_secs(3);

impl Nodes {
    /// Connects to `system`'s gateway and starts `bounds.load_devices` load devices at
    /// `bounds.rate`; `alert_devices` wait for [`Nodes::trap`].
    pub(crate) async fn start(system: &System, bounds: &Bounds, alert_devices: usize) -> Nodes {
        let gateway = system.gateway_id.clone();
        let ids = (0..bounds.load_devices)
            .map(|i| format!("sim-load-{i:03}"))
            .chain((0..alert_devices).map(|i| format!("sim-lift-{i:03}")));
        let devices = ids
            .map(|id| Device {
                id,
                next_seq: 1,
                last_ts: 0,
                unacked: BTreeMap::new(),
                acked: Vec::new(),
                oldest_at_check: None,
            })
            .collect();
        let fleet = Arc::new(Mutex::new(Fleet {
            devices,
            load_devices: bounds.load_devices,
            trapped: 0,
            acked: 0,
            mark: None,
        }));
        let url = format!("mqtt://{FLEET}:{}@{}", system.fleet_secret, system.node_addr)
            .parse()
            .unwrap();
        let mut options = gridwatch_mqtt::client_options(&url, &format!("{gateway}-nodes"));
        options.set_inflight(1000);
        let (client, events) = AsyncClient::new(options, 10_000);
        let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut nodes = Nodes {
            client: client.clone(),
            gateway,
            fleet,
            stop,
            tasks: Vec::new(),
        };
        nodes.tasks.push(tokio::spawn(receive(
            events,
            client,
            nodes.gateway.clone(),
            nodes.fleet.clone(),
            subscribed_tx,
        )));
        tokio::time::timeout(DEADLINE, subscribed.recv())
            .await
            .expect("the nodes subscribed to their acks");
        // Every alert device reports once at rest, so that its trap is a change.
        for d in bounds.load_devices..bounds.load_devices + alert_devices {
            let (topic, payload) = nodes.fleet.lock().unwrap().next(d, &nodes.gateway, at_rest());
            nodes.publish(topic, payload).await;
        }
        nodes.tasks.push(tokio::spawn(pace(nodes.clone_parts(), bounds.rate)));
        nodes.tasks.push(tokio::spawn(resend(nodes.clone_parts())));
        nodes
    }

    fn clone_parts(&self) -> Parts {
        Parts {
            client: self.client.clone(),
            gateway: self.gateway.clone(),
            fleet: self.fleet.clone(),
            stop: self.stop.clone(),
        }
    }

    async fn publish(&self, topic: String, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// The next alert device traps a passenger; each does so once.
    pub(crate) async fn trap(&self) {
        let (topic, payload) = {
            let mut fleet = self.fleet.lock().unwrap();
            let d = fleet.load_devices + fleet.trapped;
            assert!(d < fleet.devices.len(), "more traps than alert devices");
            fleet.trapped += 1;
            fleet.next(d, &self.gateway, trapped())
        };
        self.publish(topic, payload).await;
    }

    /// Readings acknowledged so far.
    pub(crate) fn acked(&self) -> u64 {
        self.fleet.lock().unwrap().acked
    }

    /// Waits until `more` readings beyond those acknowledged now are acknowledged.
    pub(crate) async fn run_for_acks(&self, more: u64) {
        let target = self.acked() + more;
        super::eventually(&format!("{target} readings acknowledged"), || async {
            (self.acked() >= target).then_some(())
        })
        .await;
    }

    /// The fault is cleared now: [`Nodes::recovery`] measures from here.
    pub(crate) fn fault_cleared(&self) {
        let mut fleet = self.fleet.lock().unwrap();
        let targets = fleet.devices.iter().map(|d| d.next_seq - 1).collect();
        fleet.mark = Some(Mark {
            at: Instant::now(),
            targets,
            first_commit: None,
            drained: None,
        });
    }

    /// Waits for the backlog from before [`Nodes::fault_cleared`] to be acknowledged.
    pub(crate) async fn recovery(&self) -> Recovery {
        super::eventually("the backlog acknowledged after the fault", || async {
            let fleet = self.fleet.lock().unwrap();
            let mark = fleet.mark.as_ref().unwrap();
            Some(Recovery {
                first_commit: mark.first_commit?.saturating_duration_since(mark.at),
                drained: mark.drained?.saturating_duration_since(mark.at),
            })
        })
        .await
    }

    /// Stops the load and waits until every reading sent is acknowledged.
    pub(crate) async fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        super::eventually("every reading acknowledged", || async {
            (self.fleet.lock().unwrap().unacked() == 0).then_some(())
        })
        .await;
    }

    /// (device, seq) of every reading acknowledged to a node, and the alert devices trapped.
    fn acknowledged(&self) -> (BTreeSet<(String, u64)>, Vec<String>) {
        let fleet = self.fleet.lock().unwrap();
        let acked = fleet
            .devices
            .iter()
            .flat_map(|d| d.acked.iter().map(|&s| (d.id.clone(), s)))
            .collect();
        let trapped = fleet.devices[fleet.load_devices..][..fleet.trapped]
            .iter()
            .map(|d| d.id.clone())
            .collect();
        (acked, trapped)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Parts {
    client: AsyncClient,
    gateway: String,
    fleet: Arc<Mutex<Fleet>>,
    stop: Arc<AtomicBool>,
}

impl Parts {
    async fn replay(&self, readings: Vec<(String, Vec<u8>)>) {
        for (device, payload) in readings {
            let topic = format!("gw/{}/dev/{device}/lift", self.gateway);
            if self
                .client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Drives the connection: subscribes to the acks after each connect, replays
/// everything unacked once subscribed, and applies the acks.
async fn receive(
    mut events: rumqttc::EventLoop,
    client: AsyncClient,
    gateway: String,
    fleet: Arc<Mutex<Fleet>>,
    subscribed: tokio::sync::mpsc::UnboundedSender<()>,
) {
    let parts = Parts {
        client: client.clone(),
        gateway: gateway.clone(),
        fleet: fleet.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // In its own task: this one must keep polling to drain the request queue.
                // One filter per device: a load identity may not read the gateway's other acks.
                let filters: Vec<_> = fleet
                    .lock()
                    .unwrap()
                    .devices
                    .iter()
                    .map(|d| rumqttc::SubscribeFilter::new(format!("gw/{gateway}/ack/{}", d.id), QoS::AtLeastOnce))
                    .collect();
                let client = client.clone();
                tokio::spawn(async move { client.subscribe_many(filters).await });
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                let _ = subscribed.send(());
                let parts = parts.clone();
                let pending = fleet.lock().unwrap().all_unacked();
                tokio::spawn(async move { parts.replay(pending).await });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Ok(ack) = serde_json::from_slice::<NodeAck>(&p.payload) {
                    fleet.lock().unwrap().ack(ack.device.as_str(), ack.seq);
                }
            }
            Ok(_) => {}
            // Reconnect back-off, as a node's.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Publishes the load devices' readings round robin at `rate` per second.
async fn pace(parts: Parts, rate: f64) {
    let mut every = tokio::time::interval(Duration::from_millis(20));
    let started = Instant::now();
    let (mut sent, mut next) = (0u64, 0usize);
    while !parts.stop.load(Ordering::Relaxed) {
        every.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due && !parts.stop.load(Ordering::Relaxed) {
            let reading = {
                let mut fleet = parts.fleet.lock().unwrap();
                let d = next % fleet.load_devices;
                next += 1;
                // A node whose buffer is full waits for acks.
                (fleet.devices[d].unacked.len() < WINDOW).then(|| fleet.next(d, &parts.gateway, at_rest()))
            };
            sent += 1;
            if let Some((topic, payload)) = reading
                && parts
                    .client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
            {
                return;
            }
        }
    }
}

/// Resends the unacked readings of every device that heard no ack for [`RESEND_AFTER`].
async fn resend(parts: Parts) {
    let mut every = tokio::time::interval(RESEND_AFTER);
    loop {
        every.tick().await;
        let overdue = parts.fleet.lock().unwrap().overdue();
        parts.replay(overdue).await;
    }
}

// ---------------------------------------------------------------- the verdict

/// What a fault cost, by (device, seq) and by alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) acked: usize,
    pub(crate) lost: usize,
    pub(crate) duplicated: usize,
    pub(crate) alerts: usize,
    pub(crate) alerts_missed: usize,
    pub(crate) alerts_doubled: usize,
}

impl Outcome {
    pub(crate) fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.alerts_missed == 0 && self.alerts_doubled == 0
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} readings acknowledged: lost {}, duplicated {}; {} alerts: missed {}, doubled {}",
            self.acked, self.lost, self.duplicated, self.alerts, self.alerts_missed, self.alerts_doubled
        )
    }
}

/// Rows of a query on either backend.
pub(crate) async fn rows<T>(url: &str, sql: &'static str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    }
}

/// Compares what the nodes were told is stored with the database at `db` (read
/// directly, not through ingest), and counts the trapped-passenger alerts of the
/// alert devices: one each. Call after [`Nodes::finish`].
pub(crate) async fn outcome(db: &str, nodes: &Nodes) -> Outcome {
    let (acked, trapped) = nodes.acknowledged();
    // A node is acknowledged once its reading is on the gateway's disk; ingest stores it
    // after: wait for it up to the deadline.
    let deadline = Instant::now() + DEADLINE;
    let (duplicated, lost) = loop {
        let stored: Vec<(String, i64, i64)> = rows(
            db,
            "SELECT device_id, seq, COUNT(*) FROM readings \
             WHERE device_id LIKE 'sim-%' GROUP BY device_id, seq",
        )
        .await;
        let duplicated: usize = stored.iter().map(|(_, _, n)| (*n - 1) as usize).sum();
        let stored: BTreeSet<(String, u64)> = stored.into_iter().map(|(d, s, _)| (d, s as u64)).collect();
        let lost = acked.difference(&stored).count();
        if lost == 0 || Instant::now() >= deadline {
            break (duplicated, lost);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Alerts follow the commit: wait for the expected ones, then count.
    let count = || async {
        let alerts: Vec<(String, i64)> = rows(
            db,
            "SELECT device_id, COUNT(*) FROM alerts \
             WHERE kind = 'trapped_passenger' AND device_id LIKE 'sim-lift-%' GROUP BY device_id",
        )
        .await;
        alerts.into_iter().collect::<BTreeMap<_, _>>()
    };
    let deadline = Instant::now() + DEADLINE;
    let mut alerts = count().await;
    while trapped.iter().any(|d| !alerts.contains_key(d)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        alerts = count().await;
    }
    let alerts_missed = trapped.iter().filter(|d| !alerts.contains_key(*d)).count();
    let expected: BTreeSet<&String> = trapped.iter().collect();
    let alerts_doubled = alerts
        .iter()
        .map(|(d, &n)| {
            if expected.contains(d) {
                (n - 1) as usize
            } else {
                n as usize
            }
        })
        .sum();
    Outcome {
        acked: acked.len(),
        lost,
        duplicated,
        alerts: trapped.len(),
        alerts_missed,
        alerts_doubled,
    }
}

/// Prints the fault's line of the reliability table and asserts that it cost nothing.
pub(crate) fn report(fault: &str, outcome: Outcome, recoveries: &[Recovery]) {
    let worst = recoveries.iter().map(|r| r.drained).max().unwrap_or_default();
    let first = recoveries.iter().map(|r| r.first_commit).max().unwrap_or_default();
    println!(
        "| {fault} | {} | {} | {} / {} | {:.2} s / {:.2} s |",
        outcome.lost,
        outcome.duplicated,
        outcome.alerts_missed,
        outcome.alerts_doubled,
        first.as_secs_f64(),
        worst.as_secs_f64()
    );
    println!("{fault}: {outcome}");
    assert!(outcome.clean(), "{fault}: {outcome}");
}
