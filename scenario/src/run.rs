//! Running a scenario through the real services: ingest and one gateway per
//! `[[gateway]]` start in process on port 0 over a temporary data directory; every
//! device is a [`SimNode`] (real firmware over a physics model) connected to its
//! gateway's broker over MQTT; each gateway reaches ingest through a
//! [`CuttableLink`] so its uplink can fail.
//!
//! Time is virtual and runs in lock-step rounds of at most `step`:
//!
//! 1. every node runs its physics and firmware to the round's end `t` (scheduled
//!    equipment events happen at their exact times);
//! 2. the nodes deliver what they buffered, and the round waits until every node that
//!    can reach ingest has its readings acknowledged and the alert engine has applied
//!    them: it wakes at each ack a node receives and looks again, and fails only when
//!    nothing at all moves for [`RunOptions::stall_after`], naming what it waited for;
//! 3. the shared [`ManualClock`] moves to `t` and ingest runs its time-based rules once
//!    (`Ingest::tick`); ingest's own background tick is parked, so the engine never
//!    judges an instant whose readings are still on their way;
//! 4. network actions due at `t` (node network down/up, node reset, uplink down/up)
//!    take effect; a round always ends at such an action.
//!
//! A simulated day takes a few seconds of wall time: the rounds cost a delivery round
//! trip each, not the time they stand for.
use crate::check::{
    ActionOutcome, ActualAlert, ActualCase, ActualEvent, Comparison, compare, compare_events, compare_loop,
};
use crate::error::{AwaitedAck, EngineWait, RunError, ScenarioError, Stall};
use crate::parse::{Action, ApiCall, ModelSpec, OBSERVER, Scenario, format_offset};
use gridwatch_protocol::clock::ManualClock;
use gridwatch_simulators::node::{NodeConfig, SimNode};
use gridwatch_simulators::relay::CuttableLink;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long (wall time) delivery may make no progress at all before a run fails:
/// no reading reaches a gateway, no ack reaches a node, the alert engine applies
/// nothing. Well above the longest pause a healthy run has (a gateway resends a batch
/// whose ack was lost after 10 s), and well below nextest's slow-timeout bound, so a
/// stall ends in [`RunError::Stalled`] naming what was awaited.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(60);
/// Once every node is acknowledged, how often the runner looks whether the alert
/// engine has applied the readings (the acks go out just before it does).
const ENGINE_POLL: Duration = Duration::from_millis(1);
/// While nodes wait for acks the runner wakes at each one; between them it looks at
/// the gateways this often, to see progress that wakes nobody (readings arriving).
const PROGRESS_POLL: Duration = Duration::from_millis(100);
/// A round runs the nodes in slices of this much device time ...
const DELIVERY_SLICE_MS: u64 = 5_000;
/// ... and delivers as soon as this many readings are waiting. (The gateway's broker hands
/// its intake at most 200 messages at a time; see docs/simulators.md.)
const DELIVERY_BURST: usize = 128;
/// A wall-time period that never comes round in a run: ingest's own tick and
/// checkpoint timers are parked with it.
const PARKED: Duration = Duration::from_secs(365 * 86_400);

/// How a run behaves where wall time matters.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Fail when delivery makes no progress at all for this long (wall time).
    pub stall_after: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            stall_after: DEFAULT_STALL_AFTER,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub name: String,
    pub path: Option<PathBuf>,
    /// Device time simulated.
    pub simulated: Duration,
    /// Wall time it took.
    pub wall: Duration,
    pub rounds: u64,
    /// Where the wall time of the rounds went.
    pub phases: PhaseTimes,
    /// Readings the simulated firmware produced.
    pub readings: u64,
    pub actual: Vec<ActualAlert>,
    /// The cases at the end (read only when the scenario expects cases).
    pub cases: Vec<ActualCase>,
    /// The stored events of the devices the scenario expects events of.
    pub events: Vec<ActualEvent>,
    /// What the scenario's API actions got back.
    pub actions: Vec<ActionOutcome>,
    pub comparison: Comparison,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.comparison.passed()
    }

    /// The heading line, then the table of expected against actual alerts.
    pub fn render(&self) -> String {
        let verdict = match self.comparison.differences() {
            0 => "PASS".to_string(),
            1 => "FAIL: 1 difference".to_string(),
            n => format!("FAIL: {n} differences"),
        };
        let path = self
            .path
            .as_ref()
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default();
        let mut out = format!(
            "scenario {}{path}: {verdict}\n  {} of device time in {:.1} s wall ({:.1} s simulating, {:.1} s delivering), \
             {} rounds, {} readings, {} alerts\n",
            self.name,
            format_offset(self.simulated.as_millis() as i64).trim_start_matches('+'),
            self.wall.as_secs_f64(),
            self.phases.simulate.as_secs_f64(),
            self.phases.deliver.as_secs_f64(),
            self.rounds,
            self.readings,
            self.actual.len(),
        );
        out.push_str(&self.comparison.table());
        out
    }
}

/// Wall time spent in each phase of the rounds.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseTimes {
    /// Physics and firmware.
    pub simulate: Duration,
    /// Delivery through gateway and ingest, until acknowledged and applied.
    pub deliver: Duration,
    /// Ingest's time-based rules.
    pub tick: Duration,
}

struct GatewaySite {
    uplink: CuttableLink,
    gateway: gridwatch_gateway::Gateway,
}

/// Loads `path` and runs it.
pub async fn run_file(path: &Path) -> Result<RunReport, ScenarioError> {
    let scenario = crate::parse::load(path)?;
    run(&scenario).await
}

/// Runs `scenario` and compares the alerts with its expectations.
pub async fn run(scenario: &Scenario) -> Result<RunReport, ScenarioError> {
    run_with(scenario, &RunOptions::default()).await
}

/// [`run`] with `options`.
pub async fn run_with(scenario: &Scenario, options: &RunOptions) -> Result<RunReport, ScenarioError> {
    run_through(scenario, options, None)
        .await
        .map_err(|source| ScenarioError::Run {
            scenario: scenario.name.clone(),
            path: scenario.path.clone(),
            source: Box::new(source),
        })
}

/// Runs `scenario`; the gateways' uplinks lead to `uplink_to` instead of ingest's
/// broker when it is given (a test's listener that never answers).
async fn run_through(
    scenario: &Scenario,
    options: &RunOptions,
    uplink_to: Option<SocketAddr>,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let dir = data_dir().map_err(RunError::DataDir)?;
    let clock = ManualClock::new(scenario.start_ms);
    let services = Services::start(scenario, dir.path(), &clock, uplink_to).await?;
    let mut run = Runner {
        scenario,
        options,
        nodes: Vec::new(),
        services,
        clock: &clock,
        wake: Arc::new(Notify::new()),
        rounds: 0,
        wall: PhaseTimes::default(),
        http: reqwest::Client::new(),
        actions: Vec::new(),
    };
    // Whatever the outcome, the services stop before it is reported: a failed run must
    // not leave its brokers, links and tasks running in the caller's process.
    let played = run.play().await;
    let readings = run.nodes.iter().map(|n| n.stats().produced).sum();
    let Runner {
        nodes,
        services,
        rounds,
        wall: phases,
        actions,
        ..
    } = run;
    drop(nodes);
    services.stop().await;
    let Played {
        alerts: actual,
        cases,
        events,
    } = played?;
    let mut comparison = compare(scenario, &actual);
    compare_loop(scenario, &cases, &actions, &mut comparison);
    compare_events(scenario, &events, &mut comparison);
    Ok(RunReport {
        name: scenario.name.clone(),
        path: scenario.path.clone(),
        simulated: Duration::from_millis(scenario.end_ms - scenario.start_ms),
        wall: started.elapsed(),
        rounds,
        phases,
        readings,
        comparison,
        actual,
        cases,
        events,
        actions,
    })
}

/// A fresh data directory, in memory where the system has one (commits fsync).
fn data_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("gridwatch-scenario-");
        b
    };
    if shm.is_dir()
        && let Ok(dir) = builder().tempdir_in(shm)
    {
        return Ok(dir);
    }
    builder().tempdir()
}

/// The services of a run and the network segments between them.
struct Services {
    ingest: gridwatch_ingest::Ingest,
    sites: BTreeMap<String, GatewaySite>,
    /// Each node's own segment to its gateway, by device id, so it can fail on its own.
    node_links: BTreeMap<String, CuttableLink>,
    /// Every node's secret, by device id: the brokers run with credentials.
    secrets: BTreeMap<String, String>,
}

impl Services {
    /// Starts ingest (on `clock`, its own timers parked), the gateways and the relays.
    async fn start(
        scenario: &Scenario,
        dir: &Path,
        clock: &ManualClock,
        uplink_to: Option<SocketAddr>,
    ) -> Result<Services, RunError> {
        // Every gateway and node gets an identity, as in the field.
        let credentials_path = dir.join("credentials.toml");
        let mut file = gridwatch_ingest::CredentialsFile::default();
        let mut secrets = BTreeMap::new();
        let mut gateway_secrets = BTreeMap::new();
        let provision = |file: &mut gridwatch_ingest::CredentialsFile, id: &str, role, gw: Option<&str>| {
            file.add(id, role, gw, scenario.start_ms)
                .map_err(|e| RunError::Credentials(e.to_string()))
        };
        for id in &scenario.gateways {
            gateway_secrets.insert(
                id.clone(),
                provision(&mut file, id, gridwatch_ingest::Role::Gateway, None)?,
            );
        }
        for spec in &scenario.devices {
            let secret = provision(&mut file, &spec.id, gridwatch_ingest::Role::Node, Some(&spec.gateway))?;
            secrets.insert(spec.id.clone(), secret);
        }
        file.save(&credentials_path)
            .map_err(|e| RunError::Credentials(e.to_string()))?;
        let credentials = Arc::new(
            gridwatch_ingest::Credentials::open(&credentials_path).map_err(|e| RunError::Credentials(e.to_string()))?,
        );
        let guard = gridwatch_ingest::GuardConfig {
            auth: gridwatch_ingest::MqttAuth::Credentials {
                credentials,
                nodes_of: None,
            },
            ..gridwatch_ingest::GuardConfig::default()
        };
        let mut config = gridwatch_ingest::IngestConfig::embedded(dir);
        config.mqtt_guard = guard.clone();
        config.clock = Arc::new(clock.clone());
        // Only the runner ticks, after each round has been delivered.
        config.tick_every = PARKED;
        // Checkpoints serve a restart, which a run has none of; on their wall-time
        // timer they would take the engine's lock at moments no other run repeats.
        config.checkpoint_every = PARKED;
        config.pipeline.linger = Duration::ZERO;
        // Room for every ack of a round: an ack dropped by the broker's log is harmless
        // but costs the gateway's resend_after (10 s of wall time) before the round can
        // finish.
        config.broker_log.ack_log_bytes = 256 * 1024;
        if let Some(table) = &scenario.config {
            config.domain = toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e| RunError::Setup(format!("[config]: {e}")))?;
        }
        if !scenario.users.is_empty() {
            let mut users = gridwatch_ingest::Users::new();
            for u in &scenario.users {
                let user = serde_json::from_value(serde_json::json!({
                    "id": u.id,
                    "name": u.id,
                    "assignments": u.assignments,
                }))
                .map_err(|e| RunError::Setup(format!("[[user]] {}: {e}", u.id)))?;
                users.add(&token_of(&u.id), user);
            }
            config.users = users;
        }
        let ingest = gridwatch_ingest::start(config).await?;
        if let Some(csv) = &scenario.register_csv {
            ingest
                .import_register_csv(csv.as_bytes())
                .await
                .map_err(|e| RunError::Register(e.into()))?;
        }
        let mut sites = BTreeMap::new();
        for id in &scenario.gateways {
            let uplink = CuttableLink::start(uplink_to.unwrap_or(ingest.mqtt_addr)).await?;
            let mut config = gridwatch_gateway::GatewayConfig::new(id, uplink.addr.into(), dir.join(id));
            config.uplink = config.uplink.with_login(id, &gateway_secrets[id]);
            config.linger = Duration::ZERO;
            config.node_guard = guard.clone();
            let gateway = gridwatch_gateway::start(config)
                .await
                .map_err(|source| RunError::Gateway { id: id.clone(), source })?;
            sites.insert(id.clone(), GatewaySite { uplink, gateway });
        }
        let mut node_links = BTreeMap::new();
        for spec in &scenario.devices {
            let link = CuttableLink::start(sites[&spec.gateway].gateway.node_addr).await?;
            node_links.insert(spec.id.clone(), link);
        }
        Ok(Services {
            ingest,
            sites,
            node_links,
            secrets,
        })
    }

    async fn stop(self) {
        drop(self.node_links);
        for site in self.sites.into_values() {
            site.gateway.stop().await;
        }
        self.ingest.stop().await;
    }
}

/// The bearer token of a scenario's API user.
fn token_of(user: &str) -> String {
    format!("scenario-token-{user}")
}

struct Runner<'a> {
    http: reqwest::Client,
    /// What the API actions got back, in the order they ran.
    actions: Vec<ActionOutcome>,
    scenario: &'a Scenario,
    options: &'a RunOptions,
    nodes: Vec<SimNode>,
    services: Services,
    clock: &'a ManualClock,
    /// Told whenever something reaches a node (an ack, a dropped connection).
    wake: Arc<Notify>,
    rounds: u64,
    wall: PhaseTimes,
}

/// What ingest holds at the end of a run, read through its API.
struct Played {
    alerts: Vec<ActualAlert>,
    /// Read only when the scenario has case expectations.
    cases: Vec<ActualCase>,
    /// Read only for the devices of `[[expect_event]]`.
    events: Vec<ActualEvent>,
}

/// What the runner sees of delivery at one moment.
struct Observed {
    /// Nodes that can reach ingest and wait for acks.
    awaiting: Vec<AwaitedAck>,
    /// Counters that move whenever delivery does: every node's outbox and session, the
    /// readings every gateway holds.
    counters: Vec<u64>,
    /// Readings held by gateways whose uplink is up, by gateway.
    gateways: Vec<(String, usize)>,
    /// The last seq the alert engine applied, per node; `None` while its lock is held.
    applied: Option<Vec<u64>>,
}

impl Runner<'_> {
    /// Plays the whole scenario, round by round with its network actions, and returns
    /// the alerts ingest raised, its cases and device events (when the scenario checks them).
    async fn play(&mut self) -> Result<Played, RunError> {
        let scenario = self.scenario;
        for spec in &scenario.devices {
            let link = &self.services.node_links[&spec.id];
            let config = NodeConfig {
                heartbeat_ms: spec.heartbeat_ms,
                resend_after_ms: scenario.node_resend_after_ms as u32,
                secret: self.services.secrets.get(&spec.id).cloned(),
                ..NodeConfig::new(&spec.id, &spec.gateway, link.addr)
            };
            let wake = self.wake.clone();
            let node = match &spec.model {
                ModelSpec::Lift(p) => SimNode::lift(config, p.clone(), scenario.start_ms, wake),
                ModelSpec::Sterilizer(p) => SimNode::sterilizer(config, p.clone(), scenario.start_ms, wake),
            };
            self.nodes.push(node?);
        }
        let mut network = Vec::new();
        for event in &scenario.events {
            match &event.action {
                Action::Equipment { device, event: e } => self.node_mut(device)?.schedule(event.at_ms, e.clone()),
                _ => network.push(event.clone()),
            }
        }
        self.services.ingest.tick().await;
        let mut pending = network.into_iter().peekable();
        while let Some(e) = pending.next_if(|e| e.at_ms <= scenario.start_ms) {
            self.apply(&e.action).await?;
        }
        let mut t = scenario.start_ms;
        while t < scenario.end_ms {
            let next_action = pending.peek().map_or(u64::MAX, |e| e.at_ms);
            let next = (t + scenario.step_ms).min(scenario.end_ms).min(next_action);
            self.round(next).await?;
            while let Some(e) = pending.next_if(|e| e.at_ms <= next) {
                self.apply(&e.action).await?;
            }
            t = next;
        }
        let alerts = self
            .read_all::<ActualAlert>("/api/alerts?state=all&limit=1000")
            .await
            .map_err(|(url, source)| RunError::Alerts { url, source })?;
        let mut cases = Vec::new();
        if !scenario.expect_cases.is_empty() || !scenario.absent_cases.is_empty() {
            let summaries = self
                .read_all::<serde_json::Value>("/api/cases?limit=1000")
                .await
                .map_err(|(url, source)| RunError::Api { url, source })?;
            for summary in summaries {
                let id = summary["id"].as_u64().unwrap_or_default();
                let url = self.url(&format!("/api/cases/{id}"));
                let json: serde_json::Value = async { self.get(&url).send().await?.error_for_status()?.json().await }
                    .await
                    .map_err(|source| RunError::Api { url, source })?;
                cases.extend(ActualCase::from_json(json));
            }
        }
        let mut events = Vec::new();
        let devices: std::collections::BTreeSet<&str> =
            scenario.expect_events.iter().map(|e| e.device.as_str()).collect();
        for device in devices {
            let path = format!("/api/devices/{device}/events?limit=1000");
            let items = match self.read_all::<serde_json::Value>(&path).await {
                Ok(items) => items,
                // A device that never sent a reading has no events to list.
                Err((_, source)) if source.status() == Some(reqwest::StatusCode::NOT_FOUND) => Vec::new(),
                Err((url, source)) => return Err(RunError::Api { url, source }),
            };
            events.extend(
                items
                    .into_iter()
                    .filter_map(|json| ActualEvent::from_json(device, json)),
            );
        }
        Ok(Played { alerts, cases, events })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.services.ingest.http_addr)
    }

    /// A GET as the observer (with API users) or anonymously (open API).
    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.get(url);
        if self.scenario.users.is_empty() {
            request
        } else {
            request.bearer_auth(token_of(OBSERVER))
        }
    }

    /// Every page of a list (`x-next-cursor`), in arrival order.
    async fn read_all<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, (String, reqwest::Error)> {
        let mut rows = Vec::new();
        let mut url = self.url(path);
        loop {
            let page = async {
                let response = self.get(&url).send().await?.error_for_status()?;
                let next = response
                    .headers()
                    .get("x-next-cursor")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                Ok((response.json::<Vec<T>>().await?, next))
            };
            let (items, next) = page.await.map_err(|e| (url.clone(), e))?;
            rows.extend(items);
            match next {
                Some(cursor) => url = format!("{}&after={cursor}", self.url(path)),
                None => return Ok(rows),
            }
        }
    }

    /// Calls the API as `by` at device time `now`; records the status it answered.
    async fn call_api(
        &mut self,
        call: &ApiCall,
        by: &str,
        expect_status: Option<u16>,
        now: u64,
    ) -> Result<(), RunError> {
        let (path, body, what): (String, serde_json::Value, String) = match call {
            ApiCall::Acknowledge { device, kind } => (
                "/api/alerts/ack".into(),
                serde_json::json!({"device_id": device, "kind": kind}),
                format!("acknowledge {kind}"),
            ),
            ApiCall::CaseStep {
                device,
                case_type,
                body,
            } => {
                let id = self.case_of(device, case_type.as_deref(), now).await?;
                (
                    format!("/api/cases/{id}/steps"),
                    body.clone(),
                    format!("case_step {}", body["step"].as_str().unwrap_or_default()),
                )
            }
            ApiCall::CaseResponse {
                device,
                case_type,
                route,
                body,
            } => {
                let id = self.case_of(device, case_type.as_deref(), now).await?;
                (
                    format!("/api/cases/{id}/{route}"),
                    body.clone(),
                    call.name().to_string(),
                )
            }
            ApiCall::Report { body } => (
                "/api/cases".into(),
                body.clone(),
                format!("report {}", body["channel"].as_str().unwrap_or_default()),
            ),
            ApiCall::Inspection { device, body } => (
                format!("/api/equipment/{device}/inspections"),
                body.clone(),
                "inspection".into(),
            ),
            ApiCall::Maintenance { device, body } => (
                format!("/api/equipment/{device}/maintenance"),
                body.clone(),
                "maintenance".into(),
            ),
            ApiCall::RegisterImport { csv, .. } => (
                "/api/equipment/import".into(),
                serde_json::Value::String(csv.clone()),
                "register_change".into(),
            ),
        };
        let url = self.url(&path);
        let request = self.http.post(&url).bearer_auth(token_of(by));
        let request = match body {
            serde_json::Value::String(csv) => request.header("content-type", "text/csv").body(csv),
            json => request.json(&json),
        };
        let response = request.send().await.map_err(|source| RunError::Api {
            url: url.clone(),
            source,
        })?;
        let status = response.status().as_u16();
        let answer = response.text().await.unwrap_or_default();
        self.actions.push(ActionOutcome {
            at_ms: now,
            what: format!("{what} by {by}"),
            device: call.device().to_string(),
            expected: expect_status,
            status,
            answer,
        });
        Ok(())
    }

    /// The device's newest open case (of `case_type`), else its newest case.
    async fn case_of(&self, device: &str, case_type: Option<&str>, now: u64) -> Result<u64, RunError> {
        let summaries = self
            .read_all::<serde_json::Value>("/api/cases?limit=1000")
            .await
            .map_err(|(url, source)| RunError::Api { url, source })?;
        let of_device: Vec<&serde_json::Value> = summaries
            .iter()
            .filter(|c| c["subject"]["id"] == device && case_type.is_none_or(|t| c["case_type"] == t))
            .collect();
        of_device
            .iter()
            .rev()
            .find(|c| c["status"] != "closed")
            .or(of_device.last())
            .and_then(|c| c["id"].as_u64())
            .ok_or_else(|| RunError::NoCase {
                action: "case_step".into(),
                at: self.offset(now),
                device: device.to_string(),
            })
    }

    /// Publishes the device's acknowledged readings stamped within the window to ingest
    /// again, as the device, in their order or shuffled.
    async fn redeliver(&mut self, device: &str, window: (u64, u64), shuffle: Option<u64>) -> Result<(), RunError> {
        let now = self.clock_now();
        let node = self.node_mut(device)?;
        let gateway = node.gateway().to_string();
        let mut readings: Vec<(String, Vec<u8>, u64)> = node
            .acknowledged_readings()
            .filter(|r| (window.0..=window.1).contains(&r.ts_ms))
            .map(|r| (r.topic.clone(), r.payload.clone(), r.seq))
            .collect();
        if readings.is_empty() {
            return Err(RunError::NothingToRedeliver {
                at: self.offset(now),
                device: device.to_string(),
            });
        }
        if let Some(seed) = shuffle {
            crate::inject::shuffle(&mut readings, seed);
        }
        let messages = crate::inject::Messages {
            gateway: &gateway,
            device,
            secret: self.services.secrets.get(device).map(String::as_str),
            messages: readings,
        };
        crate::inject::publish_all(self.services.ingest.mqtt_addr, &messages, self.options.stall_after).await
    }

    /// One lock-step round to device time `t`.
    async fn round(&mut self, t: u64) -> Result<(), RunError> {
        // Real nodes deliver as they go; a round delivers in bursts of at most
        // `DELIVERY_BURST` readings, so that no round floods the brokers.
        let mut now = self.clock_now();
        while now < t {
            let next = (now + DELIVERY_SLICE_MS).min(t);
            let started = Instant::now();
            for node in &mut self.nodes {
                node.advance_to(next)?;
            }
            self.wall.simulate += started.elapsed();
            now = next;
            if now == t || self.deliverable() >= DELIVERY_BURST {
                let started = Instant::now();
                self.settle(now).await?;
                self.wall.deliver += started.elapsed();
            }
        }
        let started = Instant::now();
        self.clock.set(t);
        self.services.ingest.tick().await;
        self.wall.tick += started.elapsed();
        self.rounds += 1;
        Ok(())
    }

    /// Readings waiting in nodes that can deliver them now.
    fn deliverable(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.network_up() && self.uplink_up(n.gateway()))
            .map(|n| n.unacknowledged())
            .sum()
    }

    fn uplink_up(&self, gateway: &str) -> bool {
        self.services.sites.get(gateway).is_some_and(|s| s.uplink.is_up())
    }

    /// Delivers until every node that can reach ingest is acknowledged and the alert
    /// engine has applied what was acknowledged. Each look at the state is followed by
    /// a wait for the next thing to reach a node (or, once only the engine is awaited,
    /// a short poll); it fails when nothing moved for `stall_after`.
    async fn settle(&mut self, now: u64) -> Result<(), RunError> {
        // Heartbeats on the run's clock: one per round from every gateway that can reach
        // ingest (its own run on wall time, far slower than the rounds).
        for site in self.services.sites.values() {
            if site.uplink.is_up() {
                site.gateway.announce();
            }
        }
        let mut last: Option<(Vec<u64>, Vec<u64>)> = None;
        let mut applied = Vec::new();
        let mut since = Instant::now();
        loop {
            for node in &mut self.nodes {
                node.deliver(now).await;
            }
            let seen = self.observe();
            if seen.awaiting.is_empty()
                && let Some(a) = &seen.applied
                && self.behind(a).is_empty()
                && self.presence_applied()
            {
                return Ok(());
            }
            if let Some(a) = &seen.applied {
                applied.clone_from(a);
            }
            let progress = (seen.counters.clone(), applied.clone());
            if last.as_ref() != Some(&progress) {
                last = Some(progress);
                since = Instant::now();
            } else if since.elapsed() >= self.options.stall_after {
                return Err(RunError::Stalled(Box::new(self.stall(now, seen, since.elapsed()))));
            }
            let poll = if seen.awaiting.is_empty() {
                ENGINE_POLL
            } else {
                PROGRESS_POLL
            };
            // Woken at once by an ack; a wake-up that comes while the state is being
            // read is kept by the `Notify` for the next wait, and the state is read
            // again after every wait in any case.
            let _ = tokio::time::timeout(poll, self.wake.notified()).await;
        }
    }

    fn observe(&self) -> Observed {
        let mut counters = Vec::with_capacity(self.nodes.len() * 6 + self.services.sites.len());
        let mut awaiting = Vec::new();
        for n in &self.nodes {
            let s = n.stats();
            counters.extend([
                s.outbox.acked,
                s.outbox.next_seq,
                u64::from(s.session.connects),
                u64::from(s.session.published),
                u64::from(s.session.acks),
                u64::from(s.session.resends),
            ]);
            if n.awaiting_acks() && self.uplink_up(n.gateway()) {
                awaiting.push(AwaitedAck {
                    device: n.id().to_string(),
                    gateway: n.gateway().to_string(),
                    first_seq: s.outbox.acked + 1,
                    last_seq: s.outbox.next_seq - 1,
                    published: s.session.published,
                    acks: s.session.acks,
                    resends: s.session.resends,
                });
            }
        }
        let mut gateways = Vec::new();
        for (id, site) in &self.services.sites {
            let held = site.gateway.unacknowledged();
            counters.push(held as u64);
            if held > 0 && site.uplink.is_up() {
                gateways.push((id.clone(), held));
            }
        }
        // Not waited for: the lock is held while the engine saves, and a save that
        // never ends must end in a stall report, not in a wait without end.
        let applied = self.services.ingest.domain().try_lock().ok().map(|domain| {
            let engine = domain.engine();
            self.nodes
                .iter()
                .map(|n| engine.monitor(n.id()).map_or(0, |m| m.last_seq))
                .collect()
        });
        Observed {
            awaiting,
            counters,
            gateways,
            applied,
        }
    }

    /// Whether the engine has this round's presence heartbeat of every gateway that can
    /// reach ingest (ingest stamps it with the run's clock as it arrives).
    fn presence_applied(&self) -> bool {
        let Ok(domain) = self.services.ingest.domain().try_lock() else {
            return false;
        };
        let now = self.clock_now();
        let gateways = &domain.engine().state().gateways;
        self.services
            .sites
            .iter()
            .filter(|(_, site)| site.uplink.is_up())
            .all(|(id, _)| gateways.get(id).and_then(|g| g.presence_at).is_some_and(|at| at >= now))
    }

    /// Nodes whose acknowledged readings the alert engine has not applied (it applied
    /// up to `applied`, per node): (device, acknowledged, applied). A gateway acks its
    /// nodes once their readings are on its disk, so behind a cut uplink the engine
    /// cannot catch up until the uplink is back.
    fn behind(&self, applied: &[u64]) -> Vec<(String, u64, u64)> {
        self.nodes
            .iter()
            .zip(applied)
            .filter(|(n, _)| self.uplink_up(n.gateway()))
            .filter(|(n, applied)| n.acked_seq() > **applied)
            .map(|(n, applied)| (n.id().to_string(), n.acked_seq(), *applied))
            .collect()
    }

    fn stall(&self, now: u64, seen: Observed, idle: Duration) -> Stall {
        let engine = match &seen.applied {
            None => EngineWait::LockHeld,
            Some(applied) => match self.behind(applied) {
                behind if behind.is_empty() => EngineWait::CaughtUp,
                behind => EngineWait::Behind(behind),
            },
        };
        Stall {
            round: self.rounds + 1,
            at: self.offset(now),
            idle,
            nodes: seen.awaiting,
            gateways: seen.gateways,
            engine,
        }
    }

    fn offset(&self, t: u64) -> String {
        format_offset(t as i64 - self.scenario.start_ms as i64)
    }

    async fn apply(&mut self, action: &Action) -> Result<(), RunError> {
        let now = self.clock_now();
        match action {
            Action::Equipment { device, event } => self.node_mut(device)?.apply(event)?,
            Action::NetworkDown { device } => {
                self.node_link(device)?.cut();
                self.node_mut(device)?.set_network(false, now);
            }
            Action::NetworkUp { device } => {
                self.node_link(device)?.restore();
                self.node_mut(device)?.set_network(true, now);
            }
            Action::NodeReset { device } => self.node_mut(device)?.reset()?,
            Action::InjectReading { device, ts_ms, seq } => {
                let node = self.node_mut(device)?;
                let (gateway, kind) = (node.gateway().to_string(), node.equipment().kind());
                let seq = seq.unwrap_or(node.stats().outbox.next_seq);
                let injection = crate::inject::Injection {
                    gateway: &gateway,
                    device,
                    kind,
                    seq,
                    ts: *ts_ms,
                    secret: self.services.secrets.get(device).map(String::as_str),
                };
                crate::inject::inject(self.services.ingest.mqtt_addr, &injection, self.options.stall_after).await?;
            }
            Action::UplinkDown { gateway } => self.site(gateway)?.uplink.cut(),
            Action::UplinkUp { gateway } => self.site(gateway)?.uplink.restore(),
            Action::Redeliver {
                device,
                from_ms,
                to_ms,
                shuffle,
                seed,
            } => {
                self.redeliver(device, (*from_ms, *to_ms), shuffle.then_some(*seed))
                    .await?
            }
            Action::Api {
                call,
                by,
                expect_status,
            } => self.call_api(call, by, *expect_status, now).await?,
        }
        Ok(())
    }

    fn clock_now(&self) -> u64 {
        use gridwatch_protocol::clock::Clock;
        self.clock.now_ms()
    }

    fn node_mut(&mut self, id: &str) -> Result<&mut SimNode, RunError> {
        self.nodes
            .iter_mut()
            .find(|n| n.id() == id)
            .ok_or_else(|| RunError::NoDevice(id.to_string()))
    }

    fn node_link(&self, id: &str) -> Result<&CuttableLink, RunError> {
        self.services
            .node_links
            .get(id)
            .ok_or_else(|| RunError::NoDevice(id.to_string()))
    }

    fn site(&self, id: &str) -> Result<&GatewaySite, RunError> {
        self.services
            .sites
            .get(id)
            .ok_or_else(|| RunError::NoGateway(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway whose uplink leads to a listener that accepts and never answers (what
    /// a broker start mistaken for ingest's would give): the first round stalls, and the
    /// run fails naming the round, the node's seqs and the readings held at the gateway.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_round_fails_naming_what_it_awaited() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                open.push(stream);
            }
        });
        let scenario = crate::parse::parse(
            r#"
            start = "2026-11-25T09:00:00+08:00"
            duration = "2m"
            step = "30s"
            [[lift]]
            id = "L-1"
            "#,
            "stalls",
        )
        .unwrap();
        let options = RunOptions {
            stall_after: Duration::from_millis(500),
        };
        let started = Instant::now();
        let error = run_through(&scenario, &options, Some(silent_addr)).await.unwrap_err();
        held.abort();
        let RunError::Stalled(stall) = &error else {
            panic!("not a stall: {error}");
        };
        assert_eq!((stall.round, stall.at.as_str()), (1, "+30s"), "{error}");
        // The gateway acks its nodes once their readings are on its disk: what waits is
        // the gateway's batch and the engine.
        assert!(stall.nodes.is_empty(), "{error}");
        assert!(
            matches!(stall.gateways.as_slice(), [(gateway, held)] if gateway == "gw-1" && *held >= 1),
            "{error}"
        );
        assert!(stall.idle >= options.stall_after);
        let message = error.to_string();
        for part in ["round 1", "L-1's seq 1..", "held by gateway gw-1"] {
            assert!(message.contains(part), "{part:?} not in {message}");
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    }
}
