//! Why a scenario could not be read or run: [`ScenarioError`], with [`Invalid`] for a
//! mistake in a scenario's text and [`RunError`] for a run that could not finish.
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a scenario could not be read, checked or run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file or directory could not be read.
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The text is not a valid scenario (`path` when it came from a file).
    #[error("{}{source}", path.as_ref().map(|p| format!("in {}: ", p.display())).unwrap_or_default())]
    Invalid { path: Option<PathBuf>, source: Invalid },
    /// The scenario is valid but its run could not finish.
    #[error("running {}: {source}", path.as_ref().map_or_else(|| scenario.clone(), |p| p.display().to_string()))]
    Run {
        /// The scenario's name.
        scenario: String,
        path: Option<PathBuf>,
        source: Box<RunError>,
    },
}

impl From<Invalid> for ScenarioError {
    fn from(source: Invalid) -> Self {
        ScenarioError::Invalid { path: None, source }
    }
}

/// A mistake in a scenario's text: where it is, outermost first (`[[event]] #2`,
/// `field at`), and what is wrong, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct Invalid {
    /// Section, entry and field, outermost first; empty for the file as a whole.
    pub at: Vec<String>,
    /// What is wrong, and what was expected (for a TOML syntax error, its line and column).
    pub problem: String,
    /// The line (from 1) of the entry or field, where it can be found in the text.
    pub line: Option<usize>,
}

impl Invalid {
    pub(crate) fn new(problem: impl fmt::Display) -> Self {
        Self {
            at: Vec::new(),
            problem: problem.to_string(),
            line: None,
        }
    }

    /// The same mistake, found inside `place`.
    pub(crate) fn within(mut self, place: impl Into<String>) -> Self {
        self.at.insert(0, place.into());
        self
    }

    fn render(&self) -> String {
        let mut out = self.line.map(|l| format!("line {l}: ")).unwrap_or_default();
        for place in &self.at {
            out.push_str(place);
            out.push_str(": ");
        }
        out.push_str(&self.problem);
        out
    }
}

impl From<toml::de::Error> for Invalid {
    fn from(e: toml::de::Error) -> Self {
        Invalid::new(e)
    }
}

/// Says where a mistake was found.
pub(crate) trait Within<T> {
    /// In `place` (a section, an entry, a field).
    fn within(self, place: &str) -> Result<T, Invalid>;
    /// In the place `place()` names (built only for a mistake).
    fn within_with(self, place: impl FnOnce() -> String) -> Result<T, Invalid>;
}

impl<T, E: Into<Invalid>> Within<T> for Result<T, E> {
    fn within(self, place: &str) -> Result<T, Invalid> {
        self.map_err(|e| e.into().within(place))
    }

    fn within_with(self, place: impl FnOnce() -> String) -> Result<T, Invalid> {
        self.map_err(|e| e.into().within(place()))
    }
}

/// Why a valid scenario's run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("creating the run's data directory: {0}")]
    DataDir(std::io::Error),
    #[error("starting ingest: {0}")]
    Ingest(#[from] gridwatch_ingest::IngestError),
    /// Ingest refused the register the scenario's `[[register]]` rows make (the
    /// domain's `RegisterRejected`; this crate stays off the domain crate).
    #[error("importing the scenario's [[register]]: {0}")]
    Register(Box<dyn std::error::Error + Send + Sync>),
    #[error("provisioning the run's MQTT credentials: {0}")]
    Credentials(String),
    #[error("starting gateway {id}: {source}")]
    Gateway {
        id: String,
        source: gridwatch_gateway::GatewayError,
    },
    /// A simulated node or network segment failed.
    #[error("simulation: {}", with_causes(.0))]
    Simulation(#[from] gridwatch_simulators::Error),
    #[error("no device {0:?}")]
    NoDevice(String),
    /// An `inject_reading` action could not be delivered to ingest.
    #[error("injecting a reading of {device}: {why}")]
    Inject { device: String, why: String },
    #[error("no gateway {0:?}")]
    NoGateway(String),
    /// Delivery made no progress at all for [`crate::RunOptions::stall_after`].
    #[error("{0}")]
    Stalled(Box<Stall>),
    #[error("reading the alerts from {url}: {source}")]
    Alerts { url: String, source: reqwest::Error },
    /// The scenario's `[config]` or `[[user]]` could not be given to ingest.
    #[error("setting up ingest: {0}")]
    Setup(String),
    /// An API call could not be made at all (its status is checked, not this).
    #[error("calling {url}: {source}")]
    Api { url: String, source: reqwest::Error },
    /// A `case_step` found no case of its device to act on.
    #[error("{action} at {at}: no case of device {device}")]
    NoCase { action: String, at: String, device: String },
    /// A `redeliver` of a device whose node has published nothing acknowledged in the window.
    #[error("redeliver at {at}: {device} has no acknowledged reading in the window")]
    NothingToRedeliver { at: String, device: String },
}

/// `error` and its causes, `: `-separated (the simulators' errors keep the error they
/// wrap out of their message).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = e.source();
    }
    out
}

/// What a round was waiting for when its delivery stopped making progress: no reading
/// reached a gateway, no ack reached a node and the alert engine applied nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The round, 1 for the first.
    pub round: u64,
    /// The device time being delivered, as an offset from the scenario's start.
    pub at: String,
    /// How long (wall time) nothing changed.
    pub idle: Duration,
    /// Nodes waiting for the ack of readings they published.
    pub nodes: Vec<AwaitedAck>,
    /// Readings each gateway holds that ingest has not acknowledged, by gateway.
    pub gateways: Vec<(String, usize)>,
    /// What the alert engine had applied.
    pub engine: EngineWait,
}

/// A node waiting for the ack of seqs `first_seq..=last_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitedAck {
    pub device: String,
    pub gateway: String,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The node's session counters: messages published, acks received, resends.
    pub published: u32,
    pub acks: u32,
    pub resends: u32,
}

/// The alert engine's part in a stall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineWait {
    /// It had applied everything acknowledged.
    CaughtUp,
    /// Its lock stayed held (a domain save that does not end).
    LockHeld,
    /// Devices whose acknowledged readings it had not applied: (device, acknowledged
    /// up to seq, applied up to seq).
    Behind(Vec<(String, u64, u64)>),
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "round {} (delivering device time {}): no progress for {:.1} s of wall time, waiting for",
            self.round,
            self.at,
            self.idle.as_secs_f64()
        )?;
        let mut first = true;
        let mut item = |f: &mut fmt::Formatter<'_>, text: String| {
            let sep = if first { " " } else { "; " };
            first = false;
            write!(f, "{sep}{text}")
        };
        for n in &self.nodes {
            item(
                f,
                format!(
                    "the ack of {}'s seq {}..{} from gateway {} ({} published, {} acks, {} resends)",
                    n.device, n.first_seq, n.last_seq, n.gateway, n.published, n.acks, n.resends
                ),
            )?;
        }
        for (gateway, readings) in &self.gateways {
            item(
                f,
                format!("ingest's ack of {readings} readings held by gateway {gateway}"),
            )?;
        }
        match &self.engine {
            EngineWait::CaughtUp => {}
            EngineWait::LockHeld => item(
                f,
                "the alert engine's lock, held all that time (a domain save that does not end?)".to_string(),
            )?,
            EngineWait::Behind(devices) => {
                for (device, acked, applied) in devices {
                    item(
                        f,
                        format!(
                            "the alert engine to apply {device}'s seq {}..{acked} (acknowledged)",
                            applied + 1
                        ),
                    )?;
                }
            }
        }
        if first {
            write!(f, " nothing it could name")?;
        }
        Ok(())
    }
}
