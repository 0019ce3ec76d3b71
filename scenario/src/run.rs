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
//! 2. the nodes deliver what they buffered, and the round waits (wall time, with a
//!    deadline) until every node that can reach ingest has its readings acknowledged
//!    and the alert engine has applied them;
//! 3. the shared [`ManualClock`] moves to `t` and ingest runs its time-based rules once
//!    (`Ingest::tick`); ingest's own background tick is parked, so the engine never
//!    judges an instant whose readings are still on their way;
//! 4. network actions due at `t` (node network down/up, node reset, uplink down/up)
//!    take effect; a round always ends at such an action.
//!
//! A simulated day takes a few seconds of wall time: the rounds cost a delivery round
//! trip each, not the time they stand for.
use crate::check::{ActualAlert, Comparison, compare};
use crate::parse::{Action, ModelSpec, Scenario, ScheduledEvent, format_offset};
use anyhow::{Context, Result, anyhow, bail};
use gridwatch_protocol::clock::ManualClock;
use gridwatch_simulators::node::{NodeConfig, SimNode};
use gridwatch_simulators::relay::CuttableLink;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long (wall time) one round may wait for its readings to be acknowledged.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A round runs the nodes in slices of this much device time ...
const DELIVERY_SLICE_MS: u64 = 5_000;
/// ... and delivers as soon as this many readings are waiting. (The gateway's broker hands
/// its intake at most 200 messages at a time; see docs/simulators.md.)
const DELIVERY_BURST: usize = 128;

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
    id: String,
    uplink: CuttableLink,
    gateway: gridwatch_gateway::Gateway,
}

/// Loads `path` and runs it.
pub async fn run_file(path: &std::path::Path) -> Result<RunReport> {
    let scenario = crate::parse::load(path)?;
    run(&scenario)
        .await
        .with_context(|| format!("running {}", path.display()))
}

/// Runs `scenario` and compares the alerts with its expectations.
pub async fn run(scenario: &Scenario) -> Result<RunReport> {
    let started = Instant::now();
    let dir = data_dir()?;
    let clock = ManualClock::new(scenario.start_ms);

    let mut config = gridwatch_ingest::IngestConfig::embedded(dir.path());
    config.clock = Arc::new(clock.clone());
    // Only the runner ticks (after each round has been delivered).
    config.tick_every = Duration::from_secs(365 * 86_400);
    config.pipeline.linger = Duration::from_millis(0);
    // Room for every ack of a round: an ack dropped by the broker's log is harmless but costs
    // the gateway's resend_after (10 s of wall time) before the round can finish.
    config.broker_log.ack_log_bytes = 256 * 1024;
    let ingest = gridwatch_ingest::start(config).await.context("starting ingest")?;
    if let Some(csv) = &scenario.register_csv {
        ingest
            .import_register_csv(csv.as_bytes())
            .await
            .context("importing the scenario's [[register]]")?;
    }

    let mut sites = BTreeMap::new();
    for id in &scenario.gateways {
        let uplink = CuttableLink::start(ingest.mqtt_addr).await?;
        let mut config = gridwatch_gateway::GatewayConfig::new(id, uplink.addr.into(), dir.path().join(id));
        config.linger = Duration::from_millis(0);
        let gateway = gridwatch_gateway::start(config)
            .await
            .with_context(|| format!("starting gateway {id}"))?;
        sites.insert(
            id.clone(),
            GatewaySite {
                id: id.clone(),
                uplink,
                gateway,
            },
        );
    }

    let wake = Arc::new(Notify::new());
    let mut nodes = Vec::new();
    let mut node_links = BTreeMap::new();
    for spec in &scenario.devices {
        // The node's own network segment, so it can fail on its own.
        let link = CuttableLink::start(sites[&spec.gateway].gateway.node_addr).await?;
        let config = NodeConfig {
            heartbeat_ms: spec.heartbeat_ms,
            resend_after_ms: scenario.node_resend_after_ms as u32,
            ..NodeConfig::new(&spec.id, &spec.gateway, link.addr)
        };
        node_links.insert(spec.id.clone(), link);
        let node = match &spec.model {
            ModelSpec::Lift(p) => SimNode::lift(config, p.clone(), scenario.start_ms, wake.clone())?,
            ModelSpec::Sterilizer(p) => SimNode::sterilizer(config, p.clone(), scenario.start_ms, wake.clone())?,
        };
        nodes.push(node);
    }
    let mut network = Vec::new();
    for event in &scenario.events {
        match &event.action {
            Action::Equipment { device, event: e } => node_mut(&mut nodes, device)?.schedule(event.at_ms, e.clone()),
            _ => network.push(event.clone()),
        }
    }

    let mut run = Runner {
        scenario,
        nodes,
        sites,
        node_links,
        ingest: &ingest,
        clock: &clock,
        wake,
        rounds: 0,
        wall: PhaseTimes::default(),
    };
    // Whatever the outcome, the services stop before it is reported: a failed run must
    // not leave its brokers, links and tasks running in the caller's process.
    let played = run.play(network).await;
    let readings = run.nodes.iter().map(|n| n.stats().produced).sum();
    let (rounds, phases) = (run.rounds, run.wall);
    drop(run.nodes);
    for site in run.sites.into_values() {
        site.gateway.stop().await;
    }
    ingest.stop().await;
    let actual = played?;
    Ok(RunReport {
        name: scenario.name.clone(),
        path: scenario.path.clone(),
        simulated: Duration::from_millis(scenario.end_ms - scenario.start_ms),
        wall: started.elapsed(),
        rounds,
        phases,
        readings,
        comparison: compare(scenario, &actual),
        actual,
    })
}

/// A fresh data directory, in memory where the system has one (commits fsync).
fn data_dir() -> Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
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
    Ok(builder().tempdir()?)
}

fn node_mut<'a>(nodes: &'a mut [SimNode], id: &str) -> Result<&'a mut SimNode> {
    nodes
        .iter_mut()
        .find(|n| n.id() == id)
        .ok_or_else(|| anyhow!("no device {id:?}"))
}

struct Runner<'a> {
    scenario: &'a Scenario,
    nodes: Vec<SimNode>,
    sites: BTreeMap<String, GatewaySite>,
    node_links: BTreeMap<String, CuttableLink>,
    ingest: &'a gridwatch_ingest::Ingest,
    clock: &'a ManualClock,
    wake: Arc<Notify>,
    rounds: u64,
    wall: PhaseTimes,
}

impl Runner<'_> {
    /// Plays the whole scenario, round by round with its network actions, and returns
    /// the alerts ingest raised.
    async fn play(&mut self, network: Vec<ScheduledEvent>) -> Result<Vec<ActualAlert>> {
        let scenario = self.scenario;
        self.ingest.tick().await;
        let mut pending = network.into_iter().peekable();
        while let Some(e) = pending.next_if(|e| e.at_ms <= scenario.start_ms) {
            self.apply(&e.action)?;
        }
        let mut t = scenario.start_ms;
        while t < scenario.end_ms {
            let next_action = pending.peek().map_or(u64::MAX, |e| e.at_ms);
            let next = (t + scenario.step_ms).min(scenario.end_ms).min(next_action);
            self.round(next).await?;
            while let Some(e) = pending.next_if(|e| e.at_ms <= next) {
                self.apply(&e.action)?;
            }
            t = next;
        }
        let url = format!("http://{}/api/alerts?state=all", self.ingest.http_addr);
        reqwest::get(&url)
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("GET {url}"))?
            .json()
            .await
            .with_context(|| format!("reading the alerts from {url}"))
    }

    /// One lock-step round to device time `t`.
    async fn round(&mut self, t: u64) -> Result<()> {
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
        self.ingest.tick().await;
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
        self.sites.get(gateway).is_some_and(|s| s.uplink.is_up())
    }

    /// Delivers until every node that can reach ingest is acknowledged and the alert
    /// engine has applied what was acknowledged.
    async fn settle(&mut self, now: u64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            for node in &mut self.nodes {
                node.deliver(now).await;
            }
            let waiting: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.awaiting_acks() && self.uplink_up(n.gateway()))
                .map(|n| {
                    let s = n.stats();
                    format!(
                        "{} (seq {}..{} unacknowledged; {} published, {} acks, {} resends)",
                        n.id(),
                        s.outbox.acked + 1,
                        s.outbox.next_seq - 1,
                        s.session.published,
                        s.session.acks,
                        s.session.resends
                    )
                })
                .collect();
            if waiting.is_empty() {
                // The domain lock is held while the alert engine saves; bounded, so a
                // save that never ends fails the run with a reason instead of hanging it.
                let Ok(behind) = tokio::time::timeout_at(deadline, self.engine_behind()).await else {
                    bail!(
                        "at {}: the alert engine's lock was not free within {:?} (a domain save stuck?)",
                        self.offset(now),
                        SETTLE_TIMEOUT
                    );
                };
                if behind.is_empty() {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "at {}: the alert engine has not applied acknowledged readings of {}",
                        self.offset(now),
                        behind.join(", ")
                    );
                }
                // Acks go out just before the engine applies the batch: poll briefly.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            if tokio::time::timeout_at(deadline, self.wake.notified()).await.is_err() {
                let unacked: usize = self.sites.values().map(|s| s.gateway.unacknowledged()).sum();
                bail!(
                    "at {}: no ack for {:?}: {}; readings waiting at the gateways: {unacked}",
                    self.offset(now),
                    SETTLE_TIMEOUT,
                    waiting.join(", ")
                );
            }
        }
    }

    /// Nodes whose acknowledged readings the alert engine has not applied yet.
    async fn engine_behind(&self) -> Vec<String> {
        let domain = self.ingest.domain().lock().await;
        let engine = domain.engine();
        self.nodes
            .iter()
            .filter(|n| n.acked_seq() > engine.monitor(n.id()).map_or(0, |m| m.last_seq))
            .map(|n| n.id().to_string())
            .collect()
    }

    fn offset(&self, t: u64) -> String {
        format_offset(t as i64 - self.scenario.start_ms as i64)
    }

    fn apply(&mut self, action: &Action) -> Result<()> {
        let now = self.clock_now();
        match action {
            Action::Equipment { device, event } => node_mut(&mut self.nodes, device)?.apply(event)?,
            Action::NetworkDown { device } => {
                self.node_links[device].cut();
                node_mut(&mut self.nodes, device)?.set_network(false, now);
            }
            Action::NetworkUp { device } => {
                self.node_links[device].restore();
                node_mut(&mut self.nodes, device)?.set_network(true, now);
            }
            Action::NodeReset { device } => node_mut(&mut self.nodes, device)?.reset()?,
            Action::UplinkDown { gateway } => self.site(gateway)?.uplink.cut(),
            Action::UplinkUp { gateway } => self.site(gateway)?.uplink.restore(),
        }
        Ok(())
    }

    fn clock_now(&self) -> u64 {
        use gridwatch_protocol::clock::Clock;
        self.clock.now_ms()
    }

    fn site(&self, id: &str) -> Result<&GatewaySite> {
        self.sites
            .values()
            .find(|s| s.id == id)
            .ok_or_else(|| anyhow!("no gateway {id:?}"))
    }
}
