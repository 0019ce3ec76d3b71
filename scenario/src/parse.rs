//! Reading a scenario file (TOML) into a checked [`Scenario`]: every field is
//! validated here, with the file's names in the error, so a run never starts on a
//! scenario that cannot mean anything. The format is documented in `docs/simulators.md`.
use crate::error::{Invalid, ScenarioError, Within};
use gridwatch_alerts::AlertKind;
use gridwatch_alerts::china::{self, ClockTime};
use gridwatch_protocol::{DeviceKind, Method};
use gridwatch_simulators::lift::{LiftEvent, LiftParams};
use gridwatch_simulators::node::EquipmentEvent;
use gridwatch_simulators::sterilizer::{SterilizerEvent, SterilizerParams};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

type Result<T, E = Invalid> = std::result::Result<T, E>;

/// Returns the mistake `format!(...)` describes (`in PLACE, ...;` first: found there,
/// outermost first).
macro_rules! bail {
    (in $($place:expr),+ ; $($arg:tt)+) => {
        return Err(Invalid {
            at: vec![$($place.to_string()),+],
            problem: format!($($arg)+),
            line: None,
        })
    };
    ($($arg:tt)+) => {
        return Err(Invalid::new(format!($($arg)+)))
    };
}

/// Returns the mistake `format!(...)` describes unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, in $($place:expr),+ ; $($arg:tt)+) => {
        if !$cond {
            bail!(in $($place),+ ; $($arg)+)
        }
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            bail!($($arg)+)
        }
    };
}

/// Default virtual time per lock-step round.
pub const DEFAULT_STEP_MS: u64 = 60_000;
/// Longest allowed round: a gateway's batches must reach ingest well within the alert
/// engine's 300 s gateway silence, or it would look offline between two rounds.
pub const MAX_STEP_MS: u64 = 240_000;
/// The gateway id used when a scenario names none.
pub const DEFAULT_GATEWAY: &str = "gw-1";

/// A scenario, checked and resolved to absolute device times (ms since the epoch).
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub path: Option<PathBuf>,
    pub start_ms: u64,
    pub end_ms: u64,
    pub step_ms: u64,
    /// Every actual alert must be expected (else it is a difference).
    pub strict: bool,
    /// Nodes send their unacknowledged readings again after this long without an ack.
    pub node_resend_after_ms: u64,
    pub gateways: Vec<String>,
    pub devices: Vec<DeviceSpec>,
    /// In time order (equal times keep their file order).
    pub events: Vec<ScheduledEvent>,
    pub expect: Vec<Expectation>,
    pub absent: Vec<Absence>,
    /// The register to import at the start, as the offices' CSV export.
    pub register_csv: Option<String>,
    /// `[config]`: the domain configuration (`DomainConfig`'s TOML shape), merged over
    /// the defaults field by field.
    pub config: Option<toml::Table>,
    /// API users (`[[user]]`, or the default ones): when there are any, the API runs
    /// with them and the run reads alerts and cases as [`OBSERVER`]; otherwise it is open.
    pub users: Vec<ApiUser>,
    pub expect_cases: Vec<CaseExpectation>,
    pub absent_cases: Vec<CaseAbsence>,
    pub expect_events: Vec<EventExpectation>,
}

/// The user the runner reads alerts and cases as when the API has users: a supervisor
/// over every area of the register, and staff of every maintenance firm in it.
pub const OBSERVER: &str = "scenario-observer";

/// An API user of a scenario: its id and assignments (the users file's shape).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiUser {
    pub id: String,
    /// `[{ type = "grid", role = "supervisor", scope = "01" }, { type = "firm", firm = "MF01" }]`.
    pub assignments: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub id: String,
    pub gateway: String,
    pub heartbeat_ms: u32,
    pub model: ModelSpec,
}

#[derive(Debug, Clone)]
pub enum ModelSpec {
    Lift(LiftParams),
    Sterilizer(SterilizerParams),
}

impl ModelSpec {
    pub fn kind(&self) -> DeviceKind {
        match self {
            ModelSpec::Lift(_) => DeviceKind::Lift,
            ModelSpec::Sterilizer(_) => DeviceKind::Sterilizer,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledEvent {
    pub at_ms: u64,
    pub action: Action,
}

/// What happens at a scheduled time.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Something happens to a device's equipment (physics, faults, people).
    Equipment {
        device: String,
        event: EquipmentEvent,
    },
    /// The node's network goes down / comes back.
    NetworkDown {
        device: String,
    },
    NetworkUp {
        device: String,
    },
    /// The node's MCU resets (its outbox survives in storage).
    NodeReset {
        device: String,
    },
    /// One raw status reading of the device, stamped `ts_ms` with `seq` (default: the
    /// node's next seq), published to ingest's broker as the device.
    InjectReading {
        device: String,
        ts_ms: u64,
        seq: Option<u64>,
    },
    /// The gateway's uplink to ingest goes down / comes back.
    UplinkDown {
        gateway: String,
    },
    UplinkUp {
        gateway: String,
    },
    /// The device's readings that were already acknowledged, stamped within
    /// `[from_ms, to_ms]`, published to ingest again as the device (in a shuffled order
    /// when `shuffle`, seeded by `seed`).
    Redeliver {
        device: String,
        from_ms: u64,
        to_ms: u64,
        shuffle: bool,
        seed: u64,
    },
    /// A call of the HTTP API by user `by`; `expect_status` (default: any 2xx) is checked.
    Api {
        call: ApiCall,
        by: String,
        expect_status: Option<u16>,
    },
}

/// What an API action does (the body of its request).
#[derive(Debug, Clone, PartialEq)]
pub enum ApiCall {
    /// `POST /api/alerts/ack`.
    Acknowledge { device: String, kind: String },
    /// `POST /api/cases/{id}/steps` on the device's newest open case (of `case_type`).
    CaseStep {
        device: String,
        case_type: Option<String>,
        body: serde_json::Value,
    },
    /// A firm response, `POST /api/cases/{id}/{route}` (`acknowledgement`, `arrival`) on
    /// the device's newest open case (of `case_type`).
    CaseResponse {
        device: String,
        case_type: Option<String>,
        route: &'static str,
        body: serde_json::Value,
    },
    /// `POST /api/cases`.
    Report { body: serde_json::Value },
    /// `POST /api/equipment/{device}/inspections`.
    Inspection { device: String, body: serde_json::Value },
    /// `POST /api/equipment/{device}/maintenance`.
    Maintenance { device: String, body: serde_json::Value },
    /// `POST /api/equipment/import` with the whole register after the change.
    RegisterImport { device: String, csv: String },
}

impl ApiCall {
    /// The action's name in a scenario file.
    pub fn name(&self) -> &'static str {
        match self {
            ApiCall::Acknowledge { .. } => "acknowledge",
            ApiCall::CaseStep { .. } => "case_step",
            ApiCall::CaseResponse { route: "arrival", .. } => "arrival",
            ApiCall::CaseResponse { .. } => "case_acknowledgement",
            ApiCall::Report { .. } => "report",
            ApiCall::Inspection { .. } => "inspection",
            ApiCall::Maintenance { .. } => "maintenance",
            ApiCall::RegisterImport { .. } => "register_change",
        }
    }

    pub fn device(&self) -> &str {
        match self {
            ApiCall::Acknowledge { device, .. }
            | ApiCall::CaseStep { device, .. }
            | ApiCall::CaseResponse { device, .. }
            | ApiCall::Inspection { device, .. }
            | ApiCall::Maintenance { device, .. }
            | ApiCall::RegisterImport { device, .. } => device,
            ApiCall::Report { body } => body["device_id"].as_str().unwrap_or_default(),
        }
    }
}

impl Action {
    /// Whether the action changes delivery: the runner ends a round at its time.
    pub fn is_network(&self) -> bool {
        !matches!(self, Action::Equipment { .. })
    }
}

/// An alert that must be raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// Any one of these kinds (`kind = "..."` or `kind = ["...", "..."]`).
    pub kinds: Vec<AlertKind>,
    /// The device id, or the gateway id for `gateway_offline`.
    pub device: String,
    /// Raised within `[from_ms, to_ms]` (absolute device time).
    pub from_ms: u64,
    pub to_ms: u64,
    /// How many such alerts (default 1).
    pub count: usize,
    /// Must the alert be cleared by the end (`Some(true)`), still open (`Some(false)`)?
    pub cleared: Option<bool>,
    /// Fields the alert's details must contain (a JSON subset).
    pub details: Option<serde_json::Value>,
    /// Cleared within this window (absolute device time); implies `cleared`.
    pub cleared_within: Option<(u64, u64)>,
    /// Last updated within this window.
    pub updated_within: Option<(u64, u64)>,
    /// Acknowledged by this user.
    pub acknowledged_by: Option<String>,
}

impl Expectation {
    /// `fault:1`, or `any of fault:801|cycle_under_temperature`.
    pub fn kind_text(&self) -> String {
        self.kinds.iter().map(ToString::to_string).collect::<Vec<_>>().join("|")
    }
}

/// A case that must be opened (reading `GET /api/cases` and `GET /api/cases/{id}`).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseExpectation {
    pub device: String,
    pub case_type: Option<String>,
    /// Opened within `[from_ms, to_ms]`.
    pub from_ms: u64,
    pub to_ms: u64,
    pub count: usize,
    pub priority: Option<String>,
    pub status: Option<String>,
    pub closed: Option<bool>,
    /// How many reports the case holds (merged channels included).
    pub reports: Option<usize>,
    /// Channels that must be among its reports.
    pub channels: Vec<String>,
    /// The steps taken, in order (`"accept"`, or `"accept:maintenance_firm"` with the role).
    pub steps: Option<Vec<String>>,
    /// The escalation levels, in order (`[]`: none).
    pub escalated_to: Option<Vec<String>>,
    /// Every escalation noticed within this window.
    pub escalated_within: Option<(u64, u64)>,
    /// The case's `late` flag.
    pub late: Option<bool>,
    /// The firm's responses, in order, each by whom and when.
    pub responses: Option<Vec<ResponseExpectation>>,
    /// Fields the case (`GET /api/cases/{id}`'s `case` object) must contain.
    pub details: Option<serde_json::Value>,
}

/// Stored device events that must be listed (reading `GET /api/devices/{id}/events`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventExpectation {
    pub device: String,
    /// Any one of these event kinds (the API's names: `alarm_button`, `power_lost`, …).
    pub kinds: Vec<String>,
    /// The event's device time within `[from_ms, to_ms]`.
    pub from_ms: u64,
    pub to_ms: u64,
    pub count: EventCount,
    /// Fields the event must contain (`{ code = 801 }`, `{ floor = 5 }`).
    pub details: Option<serde_json::Value>,
}

/// How many events an [`EventExpectation`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventCount {
    Exactly(usize),
    AtLeast(usize),
}

impl EventCount {
    pub fn fits(self, n: usize) -> bool {
        match self {
            EventCount::Exactly(want) => n == want,
            EventCount::AtLeast(want) => n >= want,
        }
    }
}

impl std::fmt::Display for EventCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventCount::Exactly(n) => write!(f, "exactly {n}"),
            EventCount::AtLeast(n) => write!(f, "at least {n}"),
        }
    }
}

/// The event kinds of `GET /api/devices/{id}/events` (docs/api.md, "Device events").
pub const EVENT_KINDS: &[&str] = &[
    "fault_raised",
    "fault_cleared",
    "alarm_button",
    "door_open_while_running",
    "stopped_outside_door_zone",
    "power_lost",
    "power_restored",
    "buffer_overflow",
    "birth",
    "door_opened",
    "door_closed",
];

/// A firm response a case must hold (`responses` of `GET /api/cases/{id}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseExpectation {
    /// `acknowledged` or `arrived_on_site`.
    pub response: String,
    /// The user who recorded it.
    pub by: Option<String>,
    /// Recorded within `[from_ms, to_ms]` (ingest's clock).
    pub from_ms: u64,
    pub to_ms: u64,
}

/// A case that must not be opened.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseAbsence {
    pub device: Option<String>,
    pub case_type: Option<String>,
    pub from_ms: u64,
    pub to_ms: u64,
}

/// An alert that must not be raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Absence {
    pub kind: AlertKind,
    /// Any device when `None`.
    pub device: Option<String>,
    pub from_ms: u64,
    pub to_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    #[serde(default)]
    description: String,
    start: String,
    duration: String,
    step: Option<String>,
    node_resend_after: Option<String>,
    #[serde(default = "yes")]
    strict: bool,
    #[serde(default)]
    gateway: Vec<GatewayEntry>,
    #[serde(default)]
    lift: Vec<toml::Table>,
    #[serde(default)]
    sterilizer: Vec<toml::Table>,
    #[serde(default)]
    event: Vec<toml::Table>,
    #[serde(default)]
    expect: Vec<ExpectEntry>,
    #[serde(default)]
    absent: Vec<AbsentEntry>,
    #[serde(default)]
    register: Vec<RegisterEntry>,
    config: Option<toml::Table>,
    #[serde(default)]
    user: Vec<UserEntry>,
    #[serde(default)]
    expect_case: Vec<ExpectCaseEntry>,
    #[serde(default)]
    absent_case: Vec<AbsentCaseEntry>,
    #[serde(default)]
    expect_event: Vec<ExpectEventEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectEventEntry {
    device: String,
    kind: OneOrMore,
    at: Option<String>,
    after: Option<String>,
    before: Option<String>,
    count: Option<usize>,
    at_least: Option<usize>,
    details: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    id: String,
    assignments: Vec<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectCaseEntry {
    device: String,
    case_type: Option<String>,
    opened_after: Option<String>,
    opened_before: Option<String>,
    #[serde(default = "one")]
    count: usize,
    priority: Option<String>,
    status: Option<String>,
    closed: Option<bool>,
    reports: Option<usize>,
    #[serde(default)]
    channels: Vec<String>,
    steps: Option<Vec<String>>,
    escalated_to: Option<Vec<String>>,
    escalated_after: Option<String>,
    escalated_before: Option<String>,
    late: Option<bool>,
    responses: Option<Vec<ResponseEntry>>,
    details: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseEntry {
    response: String,
    by: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AbsentCaseEntry {
    device: Option<String>,
    case_type: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

/// `kind = "fault:1"` or `kind = ["fault:801", "cycle_under_temperature"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMore {
    One(String),
    More(Vec<String>),
}

impl OneOrMore {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMore::One(s) => vec![s],
            OneOrMore::More(v) => v,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayEntry {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectEntry {
    kind: OneOrMore,
    device: String,
    after: Option<String>,
    before: Option<String>,
    #[serde(default = "one")]
    count: usize,
    cleared: Option<bool>,
    details: Option<toml::Table>,
    cleared_after: Option<String>,
    cleared_before: Option<String>,
    updated_after: Option<String>,
    updated_before: Option<String>,
    acknowledged_by: Option<String>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AbsentEntry {
    kind: String,
    device: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RegisterEntry {
    id: String,
    kind: DeviceKindName,
    /// The register's equipment type in Chinese; a default per kind/method otherwise.
    #[serde(rename = "type")]
    equipment_type: Option<String>,
    next_inspection_due: Option<String>,
    last_maintenance: Option<String>,
    maintenance_interval_days: Option<u32>,
    #[serde(default = "yes")]
    in_service: bool,
    #[serde(default = "default_grid")]
    grid: String,
}

fn default_grid() -> String {
    "010101".into()
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum DeviceKindName {
    Lift,
    Sterilizer,
}

/// Reads and checks the scenario in `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut scenario = parse(&text, &stem).map_err(|source| ScenarioError::Invalid {
        path: Some(path.to_path_buf()),
        source,
    })?;
    scenario.path = Some(path.to_path_buf());
    Ok(scenario)
}

/// The scenario files (`*.toml`) in `dir`, sorted by name.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ScenarioError::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses scenario text; `default_name` names it when the file does not. A mistake
/// says its line where the entry or field can be found in `text`.
pub fn parse(text: &str, default_name: &str) -> Result<Scenario> {
    parse_text(text, default_name).map_err(|mut e| {
        if e.line.is_none() {
            e.line = crate::locate::line_of(text, &e);
        }
        e
    })
}

fn parse_text(text: &str, default_name: &str) -> Result<Scenario> {
    let file: File = toml::from_str(text)?;
    let start_ms = parse_instant(&file.start).within("field start")?;
    let duration_ms = parse_duration(&file.duration).within("field duration")?;
    ensure!(duration_ms > 0, in "field duration"; "must be more than 0");
    let end_ms = start_ms + duration_ms;
    let step_ms = match &file.step {
        Some(s) => parse_duration(s).within("field step")?,
        None => DEFAULT_STEP_MS,
    };
    ensure!(
        (1_000..=MAX_STEP_MS).contains(&step_ms),
        in "field step";
        "must be 1s..{}s",
        MAX_STEP_MS / 1000
    );
    // A round delivers what it produced at its end: a node must not resend while its
    // round's acks are on their way (the firmware's 30 s plus two rounds).
    let node_resend_after_ms = match &file.node_resend_after {
        Some(s) => parse_duration(s).within("field node_resend_after")?,
        None => 2 * step_ms + 30_000,
    };
    ensure!(
        node_resend_after_ms > step_ms && node_resend_after_ms <= 86_400_000,
        in "field node_resend_after";
        "must be longer than step and at most 1d"
    );
    let at = |text: &str| resolve_time(text, start_ms);

    let mut gateways: Vec<String> = file.gateway.into_iter().map(|g| g.id).collect();
    if gateways.is_empty() {
        gateways.push(DEFAULT_GATEWAY.to_string());
    }
    for (i, g) in gateways.iter().enumerate() {
        ensure!(
            valid_id(g),
            in format!("gateway {g:?}");
            "ids are 1-32 characters of A-Z a-z 0-9 - _ ."
        );
        ensure!(!gateways[..i].contains(g), "gateway {g:?} is listed twice");
    }

    let mut devices = Vec::new();
    let mut events = Vec::new();
    for table in file.lift {
        let (spec, _) = device(table, &gateways, DeviceKind::Lift, start_ms, end_ms)?;
        devices.push(spec);
    }
    for table in file.sterilizer {
        let (spec, routine) = device(table, &gateways, DeviceKind::Sterilizer, start_ms, end_ms)?;
        events.extend(routine);
        devices.push(spec);
    }
    ensure!(
        !devices.is_empty(),
        "a scenario needs at least one [[lift]] or [[sterilizer]]"
    );
    let mut ids = BTreeSet::new();
    for d in &devices {
        ensure!(ids.insert(d.id.clone()), "device {:?} is listed twice", d.id);
    }

    let registered: Vec<String> = file.register.iter().map(|r| r.id.clone()).collect();
    for (i, table) in file.event.into_iter().enumerate() {
        let entry = || format!("[[event]] #{}", i + 1);
        let scheduled = scheduled_event(table, &devices, &gateways, &registered, &at).within_with(entry)?;
        for event in scheduled {
            ensure!(
                event.at_ms >= start_ms && event.at_ms <= end_ms,
                in entry();
                "at (and for) must lie within the scenario (0..{})",
                file.duration
            );
            events.push(event);
        }
    }
    events.sort_by_key(|e| e.at_ms);
    // Register changes add up in time order: each import is the whole register as it
    // then stands, with the inspection and maintenance records meant to succeed before it.
    let mut rows = file.register.clone();
    for event in &mut events {
        let Action::Api {
            call, expect_status, ..
        } = &mut event.action
        else {
            continue;
        };
        let succeeds = expect_status.is_none_or(|s| (200..300).contains(&s));
        let row_of = |rows: &mut Vec<RegisterEntry>, device: &str| {
            rows.iter_mut()
                .position(|r| r.id == device)
                .expect("checked in api_action")
        };
        match call {
            ApiCall::RegisterImport { device, csv } => {
                let changes: toml::Table = toml::from_str(csv).map_err(Invalid::from)?;
                let i = row_of(&mut rows, device);
                apply_register_change(&mut rows[i], changes)?;
                *csv = register_csv(&rows, &devices)?;
            }
            ApiCall::Inspection { device, body } if succeeds => {
                let i = row_of(&mut rows, device);
                rows[i].next_inspection_due = body["next_due"].as_str().map(str::to_string);
            }
            ApiCall::Maintenance { device, body } if succeeds => {
                let i = row_of(&mut rows, device);
                rows[i].last_maintenance = body["date"].as_str().map(str::to_string);
            }
            _ => {}
        }
    }

    let users = api_users(file.user, &events, &file.register)?;
    if !users.is_empty() {
        for d in &devices {
            ensure!(
                registered.contains(&d.id),
                "device {:?} must be in [[register]]: with API users the run reads alerts as a user, who sees registered devices only",
                d.id
            );
        }
    }

    let known =
        |id: &str| ids.contains(id) || gateways.iter().any(|g| g == id) || file.register.iter().any(|r| r.id == id);
    let window = |after: &Option<String>, before: &Option<String>| -> Result<(u64, u64)> {
        let from = after
            .as_deref()
            .map(at)
            .transpose()
            .within("field after")?
            .unwrap_or(start_ms);
        let to = before
            .as_deref()
            .map(at)
            .transpose()
            .within("field before")?
            .unwrap_or(end_ms);
        ensure!(from <= to, "after must not be later than before");
        ensure!(from <= end_ms, "after lies beyond the end of the scenario");
        Ok((from, to))
    };
    let mut expect = Vec::new();
    for (i, e) in file.expect.into_iter().enumerate() {
        let kinds_text = match &e.kind {
            OneOrMore::One(k) => k.clone(),
            OneOrMore::More(k) => k.join("|"),
        };
        let context = || format!("[[expect]] #{} ({} on {})", i + 1, kinds_text, e.device);
        let kinds: Vec<AlertKind> = e
            .kind
            .into_vec()
            .iter()
            .map(|k| k.parse().map_err(Invalid::new))
            .collect::<Result<_>>()
            .within("field kind")
            .within_with(context)?;
        ensure!(!kinds.is_empty(), in context(), "field kind"; "name at least one kind");
        ensure!(known(&e.device), in context(); "no device or gateway {:?}", e.device);
        ensure!(
            users.is_empty() || !kinds.contains(&AlertKind::GatewayOffline),
            in context();
            "gateway_offline cannot be expected with API users: a gateway is in no grid, so no user sees its alert"
        );
        ensure!(e.count >= 1, in context(); "count must be 1 or more");
        let (from_ms, to_ms) = window(&e.after, &e.before).within_with(context)?;
        let details = e
            .details
            .map(|t| serde_json::to_value(t).map_err(Invalid::new).within("field details"))
            .transpose()
            .within_with(context)?;
        let cleared_within = optional_window(&window, &e.cleared_after, &e.cleared_before).within_with(context)?;
        ensure!(
            cleared_within.is_none() || e.cleared != Some(false),
            in context();
            "cleared_after/cleared_before need the alert cleared, not cleared = false"
        );
        let updated_within = optional_window(&window, &e.updated_after, &e.updated_before).within_with(context)?;
        expect.push(Expectation {
            kinds,
            device: e.device,
            from_ms,
            to_ms,
            count: e.count,
            cleared: if cleared_within.is_some() {
                Some(true)
            } else {
                e.cleared
            },
            details,
            cleared_within,
            updated_within,
            acknowledged_by: e.acknowledged_by,
        });
    }
    let mut expect_cases = Vec::new();
    for (i, e) in file.expect_case.into_iter().enumerate() {
        let context = || format!("[[expect_case]] #{} (on {})", i + 1, e.device);
        ensure!(
            registered.contains(&e.device),
            in context(), "field device";
            "{:?} is not in [[register]]: only registered devices have cases",
            e.device
        );
        ensure!(e.count >= 1, in context(), "field count"; "must be 1 or more");
        let (from_ms, to_ms) = window(&e.opened_after, &e.opened_before).within_with(context)?;
        let escalated_within =
            optional_window(&window, &e.escalated_after, &e.escalated_before).within_with(context)?;
        let names = |field: &str, values: &[String], allowed: &[&str]| -> Result<()> {
            for v in values {
                let bare = v.split(':').next().unwrap_or_default();
                ensure!(
                    allowed.contains(&bare),
                    in format!("field {field}");
                    "{v:?} is not one of {}",
                    allowed.join(", ")
                );
            }
            Ok(())
        };
        names("case_type", e.case_type.as_slice(), CASE_TYPES).within_with(context)?;
        names("priority", e.priority.as_slice(), &["normal", "high", "urgent"]).within_with(context)?;
        names("status", e.status.as_slice(), STATUSES).within_with(context)?;
        names("channels", &e.channels, CHANNELS).within_with(context)?;
        names("steps", e.steps.as_deref().unwrap_or_default(), STEPS).within_with(context)?;
        names(
            "escalated_to",
            e.escalated_to.as_deref().unwrap_or_default(),
            &["grid_head", "emergency_service"],
        )
        .within_with(context)?;
        let details = e
            .details
            .map(|t| serde_json::to_value(t).map_err(Invalid::new).within("field details"))
            .transpose()
            .within_with(context)?;
        let responses = e
            .responses
            .map(|list| {
                list.into_iter()
                    .map(|r| {
                        ensure!(
                            RESPONSES.contains(&r.response.as_str()),
                            in "field responses";
                            "{:?} is not one of {}",
                            r.response,
                            RESPONSES.join(", ")
                        );
                        let (from_ms, to_ms) = window(&r.after, &r.before).within("field responses")?;
                        Ok(ResponseExpectation {
                            response: r.response,
                            by: r.by,
                            from_ms,
                            to_ms,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()
            .within_with(context)?;
        expect_cases.push(CaseExpectation {
            device: e.device,
            case_type: e.case_type,
            from_ms,
            to_ms,
            count: e.count,
            priority: e.priority,
            status: e.status,
            closed: e.closed,
            reports: e.reports,
            channels: e.channels,
            steps: e.steps,
            escalated_to: e.escalated_to,
            escalated_within,
            late: e.late,
            responses,
            details,
        });
    }
    let mut absent_cases = Vec::new();
    for (i, a) in file.absent_case.into_iter().enumerate() {
        let context = || format!("[[absent_case]] #{}", i + 1);
        if let Some(d) = &a.device {
            ensure!(registered.contains(d), in context(), "field device"; "{d:?} is not in [[register]]");
        }
        if let Some(t) = &a.case_type {
            ensure!(CASE_TYPES.contains(&t.as_str()), in context(), "field case_type"; "{t:?} is not one of {}", CASE_TYPES.join(", "));
        }
        let (from_ms, to_ms) = window(&a.after, &a.before).within_with(context)?;
        absent_cases.push(CaseAbsence {
            device: a.device,
            case_type: a.case_type,
            from_ms,
            to_ms,
        });
    }
    let mut expect_events = Vec::new();
    for (i, e) in file.expect_event.into_iter().enumerate() {
        let context = || format!("[[expect_event]] #{} (on {})", i + 1, e.device);
        ensure!(
            ids.contains(&e.device) || registered.contains(&e.device),
            in context(), "field device";
            "no device {:?} (events are a device's, simulated or registered)",
            e.device
        );
        ensure!(
            users.is_empty() || registered.contains(&e.device),
            in context(), "field device";
            "{:?} is not in [[register]]: with API users the run reads events as a user, who sees registered devices only",
            e.device
        );
        let kinds = e.kind.into_vec();
        ensure!(!kinds.is_empty(), in context(), "field kind"; "name at least one kind");
        for k in &kinds {
            ensure!(
                EVENT_KINDS.contains(&k.as_str()),
                in context(), "field kind";
                "{k:?} is not one of {}",
                EVENT_KINDS.join(", ")
            );
        }
        let (from_ms, to_ms) = match &e.at {
            Some(t) => {
                ensure!(
                    e.after.is_none() && e.before.is_none(),
                    in context(), "field at";
                    "at is an exact time: give either at or after/before"
                );
                let ms = at(t).within("field at").within_with(context)?;
                window(&Some(t.clone()), &Some(t.clone())).within_with(context)?;
                (ms, ms)
            }
            None => window(&e.after, &e.before).within_with(context)?,
        };
        let count = match (e.count, e.at_least) {
            (Some(_), Some(_)) => bail!(in context(), "field at_least"; "give either count (exact) or at_least"),
            (Some(n), None) => EventCount::Exactly(n),
            (None, Some(n)) => {
                ensure!(n >= 1, in context(), "field at_least"; "must be 1 or more (count = 0: none)");
                EventCount::AtLeast(n)
            }
            (None, None) => EventCount::AtLeast(1),
        };
        let details = e
            .details
            .map(|t| serde_json::to_value(t).map_err(Invalid::new).within("field details"))
            .transpose()
            .within_with(context)?;
        expect_events.push(EventExpectation {
            device: e.device,
            kinds,
            from_ms,
            to_ms,
            count,
            details,
        });
    }
    let config = file
        .config
        .map(|table| {
            toml::Value::Table(table.clone())
                .try_into::<gridwatch_ingest::DomainConfig>()
                .map(|_| table)
                .map_err(Invalid::from)
        })
        .transpose()
        .within("[config]")?;
    let mut absent = Vec::new();
    for (i, a) in file.absent.into_iter().enumerate() {
        let context = || format!("[[absent]] #{} ({})", i + 1, a.kind);
        let kind: AlertKind = a.kind.parse().map_err(Invalid::new).within_with(context)?;
        if let Some(d) = &a.device {
            ensure!(known(d), in context(); "no device or gateway {d:?}");
        }
        let (from_ms, to_ms) = window(&a.after, &a.before).within_with(context)?;
        absent.push(Absence {
            kind,
            device: a.device,
            from_ms,
            to_ms,
        });
    }
    let register_csv = if file.register.is_empty() {
        None
    } else {
        Some(register_csv(&file.register, &devices)?)
    };
    Ok(Scenario {
        name: file.name.unwrap_or_else(|| default_name.to_string()),
        description: file.description.trim().to_string(),
        path: None,
        start_ms,
        end_ms,
        step_ms,
        strict: file.strict,
        node_resend_after_ms,
        gateways,
        devices,
        events,
        expect,
        absent,
        register_csv,
        config,
        users,
        expect_cases,
        absent_cases,
        expect_events,
    })
}

const CASE_TYPES: &[&str] = &[
    "trapped_passenger",
    "equipment_fault",
    "inspection_overdue",
    "maintenance_overdue",
    "sterilizer_not_used",
    "sterilizer_misuse",
    "device_offline",
    "other",
];
const STATUSES: &[&str] = &["reported", "accepted", "verified", "handled", "fed_back", "closed"];
const CHANNELS: &[&str] = &["telemetry", "hotline12315", "hotline96333", "patrol", "api"];
const RESPONSES: &[&str] = &["acknowledged", "arrived_on_site"];
const STEPS: &[&str] = &["accept", "verify", "handle", "feedback", "review"];
/// Roles a default user is named after (one user per role, over every area of the register).
const GRID_ROLES: &[&str] = &[
    "grid_head",
    "grid_administrator",
    "information_officer",
    "supervisor",
    "inspector",
];
/// The default user of the maintenance firm the register rows name.
pub const FIRM_USER: &str = "firm";
/// The maintenance firm of registered lifts.
const LIFT_FIRM: &str = "MF01";

/// Resolves `after` / `before` to a window of absolute device times.
type WindowOf<'a> = dyn Fn(&Option<String>, &Option<String>) -> Result<(u64, u64)> + 'a;

/// A window given by two optional times; `None` when both are missing.
fn optional_window(
    window: &WindowOf<'_>,
    after: &Option<String>,
    before: &Option<String>,
) -> Result<Option<(u64, u64)>> {
    if after.is_none() && before.is_none() {
        return Ok(None);
    }
    window(after, before).map(Some)
}

/// The scenario's API users: its `[[user]]` entries, else (when an action calls the API)
/// one per grid role over every area of the register and [`FIRM_USER`]; and the
/// [`OBSERVER`] whenever there are users. Every action's `by` must name one.
fn api_users(declared: Vec<UserEntry>, events: &[ScheduledEvent], register: &[RegisterEntry]) -> Result<Vec<ApiUser>> {
    let by: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.action {
            Action::Api { by, .. } => Some(by.as_str()),
            _ => None,
        })
        .collect();
    if declared.is_empty() && by.is_empty() {
        return Ok(Vec::new());
    }
    let mut areas: Vec<String> = register.iter().map(|r| r.grid.chars().take(2).collect()).collect();
    areas.sort();
    areas.dedup();
    let over_areas = |role: &str| -> serde_json::Value {
        areas
            .iter()
            .map(|a| serde_json::json!({"type": "grid", "role": role, "scope": a}))
            .collect()
    };
    let mut users = Vec::new();
    if declared.is_empty() {
        for role in GRID_ROLES {
            users.push(ApiUser {
                id: role.to_string(),
                assignments: over_areas(role),
            });
        }
        users.push(ApiUser {
            id: FIRM_USER.to_string(),
            assignments: serde_json::json!([{"type": "firm", "firm": LIFT_FIRM}]),
        });
    }
    for (i, u) in declared.into_iter().enumerate() {
        let context = || format!("[[user]] #{} ({})", i + 1, u.id);
        ensure!(u.id != OBSERVER && !users.iter().any(|x: &ApiUser| x.id == u.id), in context(); "user {:?} is listed twice (or reserved)", u.id);
        ensure!(!u.assignments.is_empty(), in context(), "field assignments"; "a user needs at least one assignment");
        let assignments = serde_json::to_value(&u.assignments)
            .map_err(Invalid::new)
            .within("field assignments")
            .within_with(context)?;
        users.push(ApiUser { id: u.id, assignments });
    }
    let mut observer = over_areas("supervisor");
    if let serde_json::Value::Array(a) = &mut observer {
        a.push(serde_json::json!({"type": "firm", "firm": LIFT_FIRM}));
    }
    for (i, b) in by.iter().enumerate() {
        ensure!(
            users.iter().any(|u| u.id == *b),
            "[[event]] with by = {b:?} (API action {}): no such user (the users are {})",
            i + 1,
            users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    users.push(ApiUser {
        id: OBSERVER.to_string(),
        assignments: observer,
    });
    Ok(users)
}

/// Applies a `register_change`'s fields to its row.
fn apply_register_change(row: &mut RegisterEntry, mut changes: toml::Table) -> Result<()> {
    let context = || format!("register_change of {}", row.id);
    for key in ["next_inspection_due", "last_maintenance", "grid"] {
        if let Some(v) = take_str(&mut changes, key).within_with(context)? {
            match key {
                "next_inspection_due" => row.next_inspection_due = Some(v),
                "last_maintenance" => row.last_maintenance = Some(v),
                _ => row.grid = v,
            }
        }
    }
    match changes.remove("in_service") {
        None => {}
        Some(toml::Value::Boolean(b)) => row.in_service = b,
        Some(other) => bail!(in context(), "field in_service"; "expected true or false, found {other}"),
    }
    match changes.remove("maintenance_interval_days") {
        None => {}
        Some(toml::Value::Integer(n)) if n > 0 => row.maintenance_interval_days = Some(n as u32),
        Some(other) => {
            bail!(in context(), "field maintenance_interval_days"; "expected a positive integer, found {other}")
        }
    }
    if let Some(key) = changes.keys().next() {
        bail!(
            in context();
            "unknown field `{key}`, expected next_inspection_due, last_maintenance, maintenance_interval_days, in_service, grid"
        );
    }
    Ok(())
}

fn valid_id(id: &str) -> bool {
    gridwatch_protocol::validate::valid_device_id(id)
}

fn take_str(table: &mut toml::Table, key: &str) -> Result<Option<String>> {
    match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(other) => bail!(in format!("field {key}"); "expected a string, found {other}"),
    }
}

/// One `[[lift]]` / `[[sterilizer]]` table: id, gateway, heartbeat and the model's
/// parameters (a sterilizer's daily routine becomes scheduled events).
fn device(
    mut table: toml::Table,
    gateways: &[String],
    kind: DeviceKind,
    start_ms: u64,
    end_ms: u64,
) -> Result<(DeviceSpec, Vec<ScheduledEvent>)> {
    let section = if kind == DeviceKind::Lift {
        "[[lift]]"
    } else {
        "[[sterilizer]]"
    };
    let id = take_str(&mut table, "id")
        .within(section)?
        .ok_or_else(|| Invalid::new("field id is required").within(section))?;
    let context = || format!("{section} {id:?}");
    ensure!(
        valid_id(&id),
        in context();
        "ids are 1-32 characters of A-Z a-z 0-9 - _ ."
    );
    let gateway = match take_str(&mut table, "gateway").within_with(context)? {
        Some(g) => {
            ensure!(gateways.contains(&g), in context(); "no [[gateway]] {g:?}");
            g
        }
        None if gateways.len() == 1 => gateways[0].clone(),
        None => bail!(
            in context();
            "field gateway is required when there are several gateways"
        ),
    };
    let heartbeat_ms = match table.remove("heartbeat") {
        Some(toml::Value::String(s)) => parse_duration(&s).within("field heartbeat").within_with(context)? as u32,
        Some(other) => bail!(
            in context(), "field heartbeat";
            "expected a duration string, found {other}"
        ),
        None => 10_000,
    };
    let mut routine = Vec::new();
    let model = if kind == DeviceKind::Lift {
        let params: LiftParams = toml::Value::Table(table).try_into().within_with(context)?;
        params.validate().map_err(Invalid::new).within_with(context)?;
        ModelSpec::Lift(params)
    } else {
        let daily: Vec<String> = match table.remove("daily_cycles") {
            Some(v) => v.try_into().within("field daily_cycles").within_with(context)?,
            None => Vec::new(),
        };
        let unused: Vec<String> = match table.remove("unused_days") {
            Some(v) => v.try_into().within("field unused_days").within_with(context)?,
            None => Vec::new(),
        };
        let overrides: SterilizerOverrides = toml::Value::Table(table).try_into().within_with(context)?;
        let params = overrides.apply();
        params.validate().map_err(Invalid::new).within_with(context)?;
        routine = daily_routine(&id, &params, &daily, &unused, start_ms, end_ms).within_with(context)?;
        ModelSpec::Sterilizer(params)
    };
    Ok((
        DeviceSpec {
            id,
            gateway,
            heartbeat_ms,
            model,
        },
        routine,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SterilizerOverrides {
    method: Method,
    setpoint_c: Option<f64>,
    hold_s: Option<u64>,
    heat_rate_c_s: Option<f64>,
    cool_tau_s: Option<f64>,
    open_tau_s: Option<f64>,
    ambient_c: Option<f64>,
    max_heating_s: Option<u64>,
}

impl SterilizerOverrides {
    fn apply(self) -> SterilizerParams {
        let d = SterilizerParams::for_method(self.method);
        SterilizerParams {
            method: self.method,
            setpoint_c: self.setpoint_c.unwrap_or(d.setpoint_c),
            hold_s: self.hold_s.unwrap_or(d.hold_s),
            heat_rate_c_s: self.heat_rate_c_s.unwrap_or(d.heat_rate_c_s),
            cool_tau_s: self.cool_tau_s.unwrap_or(d.cool_tau_s),
            open_tau_s: self.open_tau_s.unwrap_or(d.open_tau_s),
            ambient_c: self.ambient_c.unwrap_or(d.ambient_c),
            max_heating_s: self.max_heating_s.unwrap_or(d.max_heating_s),
        }
    }
}

/// Kitchen staff's day: for each China-local time in `daily` on every day of the
/// scenario (except `unused` dates), the door opens 2 min before for loading, then
/// closes and a program starts; once any program would be over, the door opens for
/// unloading for 2 min.
fn daily_routine(
    device: &str,
    params: &SterilizerParams,
    daily: &[String],
    unused: &[String],
    start_ms: u64,
    end_ms: u64,
) -> Result<Vec<ScheduledEvent>> {
    let times: Vec<ClockTime> = daily
        .iter()
        .map(|t| ClockTime::parse(t).map_err(|e| Invalid::new(e).within("field daily_cycles")))
        .collect::<Result<_>>()?;
    let unused: Vec<china::Date> = unused
        .iter()
        .map(|d| {
            d.parse()
                .map_err(|e| Invalid::new(format!("{d:?} is not a date YYYY-MM-DD ({e})")).within("field unused_days"))
        })
        .collect::<Result<_>>()?;
    let program_ms = (params.max_heating_s + params.hold_s) * 1000;
    let mut events = Vec::new();
    let equipment = |event| Action::Equipment {
        device: device.to_string(),
        event: EquipmentEvent::Sterilizer(event),
    };
    let mut date = china::date_of(start_ms);
    while china::midnight(date) < end_ms {
        if !unused.contains(&date) {
            for time in &times {
                let at = china::at(date, *time);
                let steps = [
                    (at.saturating_sub(120_000), SterilizerEvent::OpenDoor),
                    (
                        at,
                        SterilizerEvent::StartCycle {
                            hold_s: None,
                            setpoint_c: None,
                        },
                    ),
                    (at + program_ms + 300_000, SterilizerEvent::OpenDoor),
                    (at + program_ms + 420_000, SterilizerEvent::CloseDoor),
                ];
                for (at_ms, event) in steps {
                    if (start_ms..=end_ms).contains(&at_ms) {
                        events.push(ScheduledEvent {
                            at_ms,
                            action: equipment(event),
                        });
                    }
                }
            }
        }
        date = china::add_days(date, 1);
    }
    Ok(events)
}

/// One `[[event]]`: usually one scheduled action; `outage` gives two (down, then up).
fn scheduled_event(
    mut table: toml::Table,
    devices: &[DeviceSpec],
    gateways: &[String],
    registered: &[String],
    at: &dyn Fn(&str) -> Result<u64>,
) -> Result<Vec<ScheduledEvent>> {
    let at_text = take_str(&mut table, "at")?.ok_or_else(|| Invalid::new("field at is required"))?;
    let at_ms = at(&at_text).within("field at")?;
    let action_name = match table.get("action") {
        Some(toml::Value::String(s)) => s.clone(),
        _ => bail!("field action is required (a string)"),
    };
    if API_ACTIONS.contains(&action_name.as_str()) {
        table.remove("action");
        let action = api_action(&action_name, table, registered, at_ms, at)?;
        return Ok(vec![ScheduledEvent { at_ms, action }]);
    }
    let device = take_str(&mut table, "device")?;
    let gateway = take_str(&mut table, "gateway")?;
    let one = |action| Ok(vec![ScheduledEvent { at_ms, action }]);
    match (device, gateway) {
        (Some(_), Some(_)) => bail!("give either device or gateway, not both"),
        (None, Some(gateway)) => {
            ensure!(gateways.contains(&gateway), "no [[gateway]] {gateway:?}");
            ensure!(
                table.len() == 1,
                "gateway actions take no fields besides at, gateway, action"
            );
            match action_name.as_str() {
                "uplink_down" => one(Action::UplinkDown { gateway }),
                "uplink_up" => one(Action::UplinkUp { gateway }),
                other => bail!("unknown gateway action {other:?} (uplink_down, uplink_up)"),
            }
        }
        (Some(device), None) => {
            let spec = devices
                .iter()
                .find(|d| d.id == device)
                .ok_or_else(|| Invalid::new(format!("no device {device:?}")))?;
            let node_action = match action_name.as_str() {
                "network_down" => Some(Action::NetworkDown { device: device.clone() }),
                "network_up" => Some(Action::NetworkUp { device: device.clone() }),
                "node_reset" => Some(Action::NodeReset { device: device.clone() }),
                "inject_reading" => Some(inject_reading(&mut table, &device, at)?),
                "redeliver" => Some(redeliver(&mut table, &device, at)?),
                "outage" => {
                    let lasts = take_str(&mut table, "for")?.ok_or_else(|| Invalid::new("field for is required"))?;
                    let lasts_ms = parse_duration(&lasts).within("field for")?;
                    ensure!(lasts_ms > 0, in "field for"; "must be more than 0");
                    ensure!(
                        table.len() == 1,
                        "outage takes no fields besides at, device, action, for"
                    );
                    return Ok(vec![
                        ScheduledEvent {
                            at_ms,
                            action: Action::NetworkDown { device: device.clone() },
                        },
                        ScheduledEvent {
                            at_ms: at_ms + lasts_ms,
                            action: Action::NetworkUp { device },
                        },
                    ]);
                }
                _ => None,
            };
            match node_action {
                Some(action) => {
                    ensure!(
                        table.len() == 1,
                        "{action_name} takes no fields besides at, device, action{}",
                        match action_name.as_str() {
                            "inject_reading" => ", ts, seq",
                            "redeliver" => ", from, to, shuffle, seed",
                            _ => "",
                        }
                    );
                    one(action)
                }
                None => {
                    let value = toml::Value::Table(table);
                    let event = match spec.model.kind() {
                        DeviceKind::Lift => EquipmentEvent::Lift(
                            value
                                .try_into::<LiftEvent>()
                                .within_with(|| format!("lift {device:?}, action {action_name:?}"))?,
                        ),
                        DeviceKind::Sterilizer => EquipmentEvent::Sterilizer(
                            value
                                .try_into::<SterilizerEvent>()
                                .within_with(|| format!("sterilizer {device:?}, action {action_name:?}"))?,
                        ),
                    };
                    one(Action::Equipment { device, event })
                }
            }
        }
        (None, None) => bail!("field device (or gateway) is required"),
    }
}

/// Actions that call the HTTP API as a user.
const API_ACTIONS: &[&str] = &[
    "acknowledge",
    "case_step",
    "case_acknowledgement",
    "arrival",
    "report",
    "inspection",
    "maintenance",
    "register_change",
];

/// The fields an API action takes besides `at`, `action`, `device`, `by`, `expect_status`.
fn api_fields(action: &str) -> &'static [&'static str] {
    match action {
        "acknowledge" => &["kind"],
        "case_step" => &["step", "note", "decision", "case_type", "evidence"],
        "case_acknowledgement" | "arrival" => &["note", "case_type"],
        "report" => &["channel", "case_type", "description", "priority", "reporter"],
        "inspection" => &["date", "next_due"],
        "maintenance" => &["date"],
        _ => &[
            "next_inspection_due",
            "last_maintenance",
            "maintenance_interval_days",
            "in_service",
            "grid",
        ],
    }
}

/// An API action: `device` (a registered device), `by` (a user; defaults per action),
/// `expect_status` and the action's own fields ([`api_fields`]).
fn api_action(
    name: &str,
    mut table: toml::Table,
    registered: &[String],
    at_ms: u64,
    at: &dyn Fn(&str) -> Result<u64>,
) -> Result<Action> {
    let device = take_str(&mut table, "device")?.ok_or_else(|| Invalid::new("field device is required"))?;
    ensure!(
        registered.contains(&device),
        in "field device";
        "{device:?} is not in [[register]]: the API acts on registered devices"
    );
    let default_by = match name {
        "acknowledge" | "maintenance" | "case_acknowledgement" | "arrival" => Some(FIRM_USER),
        "inspection" => Some("inspector"),
        "report" => Some("information_officer"),
        "register_change" => Some("grid_head"),
        _ => None,
    };
    let by = match take_str(&mut table, "by")? {
        Some(by) => by,
        None => default_by
            .ok_or_else(|| Invalid::new("field by is required (the user who acts)"))?
            .to_string(),
    };
    let expect_status = match table.remove("expect_status") {
        None => None,
        Some(toml::Value::Integer(n)) if (100..600).contains(&n) => Some(n as u16),
        Some(other) => bail!(in "field expect_status"; "expected an HTTP status (100..599), found {other}"),
    };
    if let Some(key) = table.keys().find(|k| !api_fields(name).contains(&k.as_str())) {
        bail!(
            "unknown field `{key}` for {name}, expected at, action, device, by, expect_status, {}",
            api_fields(name).join(", ")
        );
    }
    let body = serde_json::to_value(&table).map_err(Invalid::new)?;
    let text = |key: &str| body.get(key).and_then(|v| v.as_str()).map(str::to_string);
    for key in table.keys() {
        if !["maintenance_interval_days", "in_service", "evidence"].contains(&key.as_str()) && text(key).is_none() {
            bail!(in format!("field {key}"); "expected a string");
        }
    }
    let required = |key: &str| text(key).ok_or_else(|| Invalid::new(format!("field {key} is required")));
    let today = china::date_of(at_ms).to_string();
    let date = |key: &str| -> Result<String> {
        let d = text(key).unwrap_or_else(|| today.clone());
        d.parse::<china::Date>().map_err(|e| {
            Invalid::new(format!("{d:?} is not a date YYYY-MM-DD ({e})")).within(format!("field {key}"))
        })?;
        Ok(d)
    };
    let call = match name {
        "acknowledge" => {
            let kind = required("kind")?;
            kind.parse::<AlertKind>().map_err(Invalid::new).within("field kind")?;
            ApiCall::Acknowledge { device, kind }
        }
        "case_step" => {
            let step = required("step")?;
            ensure!(STEPS.contains(&step.as_str()), in "field step"; "{step:?} is not one of {}", STEPS.join(", "));
            let case_type = text("case_type");
            if let Some(t) = &case_type {
                ensure!(CASE_TYPES.contains(&t.as_str()), in "field case_type"; "{t:?} is not one of {}", CASE_TYPES.join(", "));
            }
            let mut step_body = serde_json::json!({
                "step": step,
                "note": text("note").unwrap_or_else(|| format!("{step} (scenario)")),
            });
            if let Some(d) = text("decision") {
                step_body["decision"] = d.into();
            }
            if let Some(evidence) = body.get("evidence") {
                ensure!(
                    evidence.as_array().is_some_and(|a| a.iter().all(|e| e["kind"].is_string() && e["reference"].is_string())),
                    in "field evidence";
                    "expected a list of {{ kind = \"photo\", reference = \"...\" }}"
                );
                step_body["evidence"] = evidence.clone();
            }
            ApiCall::CaseStep {
                device,
                case_type,
                body: step_body,
            }
        }
        "case_acknowledgement" | "arrival" => {
            let case_type = text("case_type");
            if let Some(t) = &case_type {
                ensure!(CASE_TYPES.contains(&t.as_str()), in "field case_type"; "{t:?} is not one of {}", CASE_TYPES.join(", "));
            }
            let mut response_body = serde_json::json!({});
            if let Some(note) = text("note") {
                response_body["note"] = note.into();
            }
            ApiCall::CaseResponse {
                device,
                case_type,
                route: if name == "arrival" {
                    "arrival"
                } else {
                    "acknowledgement"
                },
                body: response_body,
            }
        }
        "report" => {
            let channel = required("channel")?;
            ensure!(CHANNELS.contains(&channel.as_str()), in "field channel"; "{channel:?} is not one of {}", CHANNELS.join(", "));
            let case_type = required("case_type")?;
            ensure!(CASE_TYPES.contains(&case_type.as_str()), in "field case_type"; "{case_type:?} is not one of {}", CASE_TYPES.join(", "));
            let mut report = serde_json::json!({
                "channel": channel,
                "device_id": device,
                "case_type": case_type,
                "description": text("description").unwrap_or_else(|| "reported in a scenario".into()),
            });
            for key in ["priority", "reporter"] {
                if let Some(v) = text(key) {
                    report[key] = v.into();
                }
            }
            ApiCall::Report { body: report }
        }
        "inspection" => {
            let next_due = required("next_due")?;
            let next_due = match next_due.parse::<china::Date>() {
                Ok(_) => next_due,
                // An offset like "1d" or an instant: its China date.
                Err(_) => china::date_of(at(&next_due).within("field next_due")?).to_string(),
            };
            ApiCall::Inspection {
                device,
                body: serde_json::json!({"date": date("date")?, "next_due": next_due}),
            }
        }
        "maintenance" => ApiCall::Maintenance {
            device,
            body: serde_json::json!({"date": date("date")?}),
        },
        _ => ApiCall::RegisterImport {
            device,
            // The changes, until `parse` turns them into the whole register as it then stands.
            csv: toml::to_string(&table).map_err(Invalid::new)?,
        },
    };
    Ok(Action::Api {
        call,
        by,
        expect_status,
    })
}

/// `redeliver`'s fields: `from`, `to` (times like `at`: the readings' device times,
/// default all), `shuffle` (default false), `seed` (default 1).
fn redeliver(table: &mut toml::Table, device: &str, at: &dyn Fn(&str) -> Result<u64>) -> Result<Action> {
    let from_ms = take_str(table, "from")?
        .map(|t| at(&t).within("field from"))
        .transpose()?;
    let to_ms = take_str(table, "to")?.map(|t| at(&t).within("field to")).transpose()?;
    let shuffle = match table.remove("shuffle") {
        None => false,
        Some(toml::Value::Boolean(b)) => b,
        Some(other) => bail!(in "field shuffle"; "expected true or false, found {other}"),
    };
    let seed = match table.remove("seed") {
        None => 1,
        Some(toml::Value::Integer(n)) if n >= 0 => n as u64,
        Some(other) => bail!(in "field seed"; "expected a whole number, found {other}"),
    };
    let (from_ms, to_ms) = (from_ms.unwrap_or(0), to_ms.unwrap_or(u64::MAX));
    ensure!(from_ms <= to_ms, "from must not be later than to");
    Ok(Action::Redeliver {
        device: device.to_string(),
        from_ms,
        to_ms,
        shuffle,
        seed,
    })
}

/// `inject_reading`'s fields: `ts` (required, a time like `at`) and `seq` (optional).
fn inject_reading(table: &mut toml::Table, device: &str, at: &dyn Fn(&str) -> Result<u64>) -> Result<Action> {
    let ts = take_str(table, "ts")?.ok_or_else(|| Invalid::new("field ts is required"))?;
    let ts_ms = at(&ts).within("field ts")?;
    let seq = match table.remove("seq") {
        None => None,
        Some(toml::Value::Integer(n)) if n > 0 => Some(n as u64),
        Some(other) => bail!("field seq must be a positive integer, not {other}"),
    };
    Ok(Action::InjectReading {
        device: device.to_string(),
        ts_ms,
        seq,
    })
}

/// Builds the register export (the offices' CSV layout, see `simulators/data/README.md`).
fn register_csv(rows: &[RegisterEntry], devices: &[DeviceSpec]) -> Result<String> {
    let mut csv = String::from(
        "设备类别,设备品种,设备注册代码,内部编号,制造单位,投用日期,使用单位,使用单位地址,使用单位联系电话,\
         网格编码,维保单位编码,维保单位,维保周期(天),上次维保日期,下次检验日期,设备状态\n",
    );
    for (i, row) in rows.iter().enumerate() {
        let context = || format!("[[register]] #{} ({})", i + 1, row.id);
        for date in [&row.next_inspection_due, &row.last_maintenance].into_iter().flatten() {
            date.parse::<china::Date>()
                .map_err(|e| Invalid::new(format!("{date:?} is not a date YYYY-MM-DD ({e})")))
                .within_with(context)?;
        }
        let lift = row.kind == DeviceKindName::Lift;
        let method = devices.iter().find(|d| d.id == row.id).and_then(|d| match &d.model {
            ModelSpec::Sterilizer(p) => Some(p.method),
            ModelSpec::Lift(_) => None,
        });
        let default_type = match (lift, method) {
            (true, _) => "曳引驱动乘客电梯",
            (false, Some(Method::Steam)) => "蒸汽消毒柜",
            (false, Some(Method::Dishwasher)) => "商用洗碗机",
            (false, _) => "红外线消毒柜",
        };
        let (class, firm_id, firm) = if lift {
            ("电梯", "MF01", "示例维保有限公司")
        } else {
            ("餐具消毒设备", "", "")
        };
        let interval = row.maintenance_interval_days.or(lift.then_some(15));
        let fields = [
            class.to_string(),
            row.equipment_type.clone().unwrap_or_else(|| default_type.to_string()),
            row.id.clone(),
            format!("{}#", i + 1),
            "示例制造".to_string(),
            "2020-01-01".to_string(),
            format!("示例使用单位{}", i + 1),
            format!("示例路{}号", i + 1),
            "0575-00000000".to_string(),
            row.grid.clone(),
            firm_id.to_string(),
            firm.to_string(),
            interval.map(|d| d.to_string()).unwrap_or_default(),
            row.last_maintenance.clone().unwrap_or_default(),
            row.next_inspection_due.clone().unwrap_or_default(),
            if row.in_service { "在用" } else { "停用" }.to_string(),
        ];
        for field in &fields {
            ensure!(
                !field.contains([',', '"', '\n']),
                in context();
                "{field:?} may not hold , or \""
            );
        }
        csv.push_str(&fields.join(","));
        csv.push('\n');
    }
    Ok(csv)
}

/// `2026-11-25T09:00:00+08:00` (RFC 3339, with its offset) to ms since the epoch.
pub fn parse_instant(text: &str) -> Result<u64> {
    let ts: jiff::Timestamp = text
        .parse()
        .map_err(|e| Invalid::new(format!("{text:?} is not a time like 2026-11-25T09:00:00+08:00 ({e})")))?;
    u64::try_from(ts.as_millisecond()).map_err(|_| Invalid::new(format!("{text:?} is before 1970")))
}

/// A time in a scenario: an offset from its start (`"90s"`, `"1h30m"`) or an absolute
/// RFC 3339 time.
pub fn resolve_time(text: &str, start_ms: u64) -> Result<u64> {
    if text.contains('T') {
        parse_instant(text)
    } else {
        Ok(start_ms + parse_duration(text)?)
    }
}

/// `"90s"`, `"1h30m"`, `"2m 30s"`, `"1d"`, `"500ms"` to milliseconds.
pub fn parse_duration(text: &str) -> Result<u64> {
    let bad = || Invalid::new(format!("{text:?} is not a duration like 90s, 2m30s, 1h, 1d"));
    let s: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = s.as_str();
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        total = number
            .checked_mul(unit)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `+1h30m5s` for an offset of device time from the scenario's start.
pub fn format_offset(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "+" };
    let mut left = ms.unsigned_abs();
    let mut out = String::from(sign);
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if left >= size {
            out.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    if left > 0 || out.len() == 1 {
        out.push_str(&format!("{left}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_offsets_round_trip() {
        assert_eq!(parse_duration("90s").unwrap(), 90_000);
        assert_eq!(parse_duration("1h 30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("2m30s").unwrap(), 150_000);
        assert_eq!(parse_duration("1d").unwrap(), 86_400_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250);
        for bad in ["", "5", "s", "5x", "1.5h", "-3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_offset(5_400_000), "+1h30m");
        assert_eq!(format_offset(90_500), "+1m30s500ms");
        assert_eq!(format_offset(0), "+0ms");
        assert_eq!(format_offset(-60_000), "-1m");
        assert_eq!(
            parse_instant("2026-11-25T09:00:00+08:00").unwrap(),
            parse_instant("2026-11-25T01:00:00Z").unwrap()
        );
    }

    const MINIMAL: &str = r#"
        start = "2026-11-25T09:00:00+08:00"
        duration = "10m"
        [[lift]]
        id = "L-1"
        floors = 6
        [[sterilizer]]
        id = "S-1"
        method = "steam"
        daily_cycles = ["09:05"]
        [[event]]
        at = "1m"
        device = "L-1"
        action = "call"
        from = 1
        to = 5
        [[event]]
        at = "2m"
        gateway = "gw-1"
        action = "uplink_down"
        [[expect]]
        kind = "fault:1"
        device = "L-1"
        after = "1m"
        before = "3m"
        details = { code = 1 }
        [[absent]]
        kind = "device_offline"
    "#;

    #[test]
    fn a_minimal_scenario_resolves_times_devices_and_routines() {
        let s = parse(MINIMAL, "minimal").unwrap();
        assert_eq!(s.name, "minimal");
        assert_eq!(s.end_ms - s.start_ms, 600_000);
        assert_eq!(s.gateways, ["gw-1"]);
        assert_eq!(s.devices.len(), 2);
        let kinds: Vec<String> = s.events.iter().map(|e| format!("{:?}", e.action)).collect();
        // In time order: the call at +1m, the uplink at +2m, loading the cabinet at 09:03.
        assert!(
            kinds[0].contains("Call") && kinds[1].contains("UplinkDown"),
            "{kinds:?}"
        );
        assert!(
            kinds[2].contains("OpenDoor") && kinds[3].contains("StartCycle"),
            "{kinds:?}"
        );
        assert_eq!(s.expect[0].kinds, [AlertKind::Fault(1)]);
        assert_eq!(s.expect[0].from_ms - s.start_ms, 60_000);
        assert_eq!(s.absent[0].device, None);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (MINIMAL.replace("floors = 6", "floor = 6"), "unknown field `floor`"),
            (MINIMAL.replace("\"fault:1\"", "\"fault\""), "unknown alert kind"),
            (
                MINIMAL.replace("action = \"call\"", "action = \"fly\""),
                "unknown variant `fly`",
            ),
            (
                MINIMAL.replace("device = \"L-1\"\n        action", "device = \"L-9\"\n        action"),
                "no device \"L-9\"",
            ),
            (MINIMAL.replace("\"10m\"", "\"10 minutes\""), "field duration"),
            (MINIMAL.replace("\"09:05\"", "\"9:05\""), "HH:MM"),
        ];
        for (text, needle) in cases {
            let e = parse(&text, "x").unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
    }

    #[test]
    fn a_mistake_says_its_file_section_field_and_what_was_expected() {
        let e = parse(&MINIMAL.replace("at = \"1m\"", "at = \"1 minute\""), "x").unwrap_err();
        assert_eq!(e.at, ["[[event]] #1", "field at"]);
        assert_eq!(e.line, Some(12));
        assert_eq!(
            e.to_string(),
            "line 12: [[event]] #1: field at: \"1 minute\" is not a duration like 90s, 2m30s, 1h, 1d"
        );
        let e = parse(&MINIMAL.replace("before = \"3m\"", "before = \"30s\""), "x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 21: [[expect]] #1 (fault:1 on L-1): after must not be later than before"
        );
        let e = parse(&MINIMAL.replace("floors = 6", "floors = 6\nheartbeat = 5"), "x").unwrap_err();
        assert_eq!(e.at, ["[[lift]] \"L-1\"", "field heartbeat"]);
        assert_eq!(e.problem, "expected a duration string, found 5");
        assert_eq!(e.line, Some(7));
        let e = parse(&MINIMAL.replace("id = \"S-1\"", "id = 7"), "x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 8: [[sterilizer]]: field id: expected a string, found 7"
        );
        let e = parse(&MINIMAL.replace("floors = 6", "floor = 6"), "x").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 6: [[lift]] \"L-1\": unknown field `floor`"),
            "{e}"
        );
        // TOML syntax: the line and column.
        let e = parse("start = \"2026-11-25T09:00:00+08:00\"\nduration = 10m\n", "x").unwrap_err();
        assert!(e.to_string().contains("line 2, column 14"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, MINIMAL.replace("\"10m\"", "\"10 minutes\"")).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "in {}: line 3: field duration: \"10 minutes\" is not a duration like 90s, 2m30s, 1h, 1d",
                path.display()
            )
        );
        let e = load(&dir.path().join("missing.toml")).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("reading {}: ", dir.path().join("missing.toml").display())),
            "{e}"
        );
    }

    const LOOP: &str = r#"
        start = "2026-11-25T09:00:00+08:00"
        duration = "1h"
        [config.alerts.lift]
        trapped_after_s = 60
        [[lift]]
        id = "31103306242020000301"
        [[register]]
        id = "31103306242020000301"
        kind = "lift"
        [[event]]
        at = "2m"
        action = "acknowledge"
        device = "31103306242020000301"
        kind = "trapped_passenger"
        [[event]]
        at = "5m"
        action = "case_step"
        device = "31103306242020000301"
        step = "accept"
        by = "information_officer"
        [[event]]
        at = "20m"
        action = "register_change"
        device = "31103306242020000301"
        next_inspection_due = "2027-01-01"
        [[event]]
        at = "30m"
        action = "register_change"
        device = "31103306242020000301"
        in_service = false
        [[event]]
        at = "10m"
        device = "31103306242020000301"
        action = "outage"
        for = "5m"
        [[expect]]
        kind = ["fault:1", "trapped_passenger"]
        device = "31103306242020000301"
        cleared_after = "5m"
        cleared_before = "10m"
        acknowledged_by = "firm"
        [[expect_case]]
        device = "31103306242020000301"
        case_type = "trapped_passenger"
        steps = ["accept:information_officer"]
        escalated_to = []
    "#;

    #[test]
    fn actions_users_config_and_case_expectations_are_resolved() {
        let s = parse(LOOP, "loop").unwrap();
        assert_eq!(
            s.config.as_ref().unwrap()["alerts"]["lift"]["trapped_after_s"].as_integer(),
            Some(60)
        );
        let users: Vec<&str> = s.users.iter().map(|u| u.id.as_str()).collect();
        assert!(
            users.contains(&"firm") && users.contains(&"grid_head") && users.last() == Some(&OBSERVER),
            "{users:?}"
        );
        let actions: Vec<String> = s
            .events
            .iter()
            .map(|e| match &e.action {
                Action::Api { call, by, .. } => format!("{} {} by {by}", (e.at_ms - s.start_ms) / 60_000, call.name()),
                other => format!("{} {other:?}", (e.at_ms - s.start_ms) / 60_000)
                    .chars()
                    .take(20)
                    .collect(),
            })
            .collect();
        assert_eq!(actions[0], "2 acknowledge by firm");
        assert_eq!(actions[1], "5 case_step by information_officer");
        assert!(
            actions[2].starts_with("10 NetworkDown") && actions[3].starts_with("15 NetworkUp"),
            "{actions:?}"
        );
        // Register changes add up: the second import keeps the first change.
        let csvs: Vec<&str> = s
            .events
            .iter()
            .filter_map(|e| match &e.action {
                Action::Api {
                    call: ApiCall::RegisterImport { csv, .. },
                    ..
                } => Some(csv.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            csvs[0].contains("2027-01-01") && csvs[0].contains("在用"),
            "{}",
            csvs[0]
        );
        assert!(
            csvs[1].contains("2027-01-01") && csvs[1].contains("停用"),
            "{}",
            csvs[1]
        );
        let e = &s.expect[0];
        assert_eq!(e.kinds, [AlertKind::Fault(1), AlertKind::TrappedPassenger]);
        assert_eq!(e.cleared, Some(true));
        assert_eq!(
            e.cleared_within.map(|(a, b)| (a - s.start_ms, b - s.start_ms)),
            Some((300_000, 600_000))
        );
        assert_eq!(s.expect_cases[0].escalated_to, Some(vec![]));
    }

    #[test]
    fn mistakes_in_actions_config_and_cases_name_their_line_and_field() {
        let cases = [
            (
                LOOP.replace("trapped_after_s = 60", "trapped_after = 60"),
                "line 5: [config]: unknown field `trapped_after`",
            ),
            (
                LOOP.replace("by = \"information_officer\"", "by = \"nobody\""),
                "by = \"nobody\"",
            ),
            (
                LOOP.replace("step = \"accept\"", "step = \"approve\""),
                "line 20: [[event]] #2: field step: \"approve\" is not one of",
            ),
            (
                LOOP.replace("in_service = false", "in_service = \"no\""),
                "field in_service",
            ),
            (
                LOOP.replace("for = \"5m\"", "for = \"5 minutes\""),
                "line 36: [[event]] #5: field for",
            ),
            (
                LOOP.replace("steps = [\"accept:information_officer\"]", "steps = [\"approve\"]"),
                "line 46: [[expect_case]] #1 (on 31103306242020000301): field steps",
            ),
            (
                LOOP.replace("kind = \"lift\"", "kind = \"lift\"\n[[lift]]\nid = \"L-9\""),
                "device \"L-9\" must be in [[register]]",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(&text, "x").unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
    }

    const EVENTS: &str = r#"
        start = "2026-11-25T09:00:00+08:00"
        duration = "30m"
        [[lift]]
        id = "L-1"
        [[expect_event]]
        device = "L-1"
        kind = "alarm_button"
        after = "2m"
        before = "3m"
        [[expect_event]]
        device = "L-1"
        kind = ["power_lost", "power_restored"]
        count = 2
        [[expect_event]]
        device = "L-1"
        kind = "fault_raised"
        at = "5m"
        details = { code = 901 }
        [[expect_event]]
        device = "L-1"
        kind = "birth"
        at_least = 3
    "#;

    #[test]
    fn event_expectations_are_resolved() {
        let s = parse(EVENTS, "events").unwrap();
        let e = &s.expect_events;
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].kinds, ["alarm_button"]);
        assert_eq!((e[0].from_ms - s.start_ms, e[0].to_ms - s.start_ms), (120_000, 180_000));
        assert_eq!(e[0].count, EventCount::AtLeast(1));
        assert_eq!(e[1].kinds, ["power_lost", "power_restored"]);
        assert_eq!(e[1].count, EventCount::Exactly(2));
        assert_eq!((e[1].from_ms, e[1].to_ms), (s.start_ms, s.end_ms));
        assert_eq!((e[2].from_ms - s.start_ms, e[2].to_ms - s.start_ms), (300_000, 300_000));
        assert_eq!(e[2].details, Some(serde_json::json!({ "code": 901 })));
        assert_eq!(e[3].count, EventCount::AtLeast(3));
        let none = parse(&EVENTS.replace("count = 2", "count = 0"), "none").unwrap();
        assert_eq!(none.expect_events[1].count, EventCount::Exactly(0));
    }

    #[test]
    fn mistakes_in_event_expectations_name_their_line_and_field() {
        let cases = [
            (
                EVENTS.replace("kind = \"alarm_button\"", "kind = \"alarm\""),
                "line 8: [[expect_event]] #1 (on L-1): field kind: \"alarm\" is not one of fault_raised",
            ),
            (
                EVENTS.replace("kind = \"alarm_button\"", "kind = []"),
                "[[expect_event]] #1 (on L-1): field kind: name at least one kind",
            ),
            (
                EVENTS.replacen(
                    "device = \"L-1\"\n        kind = \"alarm_button\"",
                    "device = \"L-9\"\n        kind = \"alarm_button\"",
                    1,
                ),
                "[[expect_event]] #1 (on L-9): field device: no device \"L-9\"",
            ),
            (
                EVENTS.replace("at = \"5m\"", "at = \"5m\"\n        after = \"4m\""),
                "[[expect_event]] #3 (on L-1): field at: at is an exact time",
            ),
            (
                EVENTS.replace("at = \"5m\"", "at = \"5 minutes\""),
                "[[expect_event]] #3 (on L-1): field at",
            ),
            (
                EVENTS.replace("at = \"5m\"", "at = \"45m\""),
                "[[expect_event]] #3 (on L-1): after lies beyond the end",
            ),
            (
                EVENTS.replace("count = 2", "count = 2\n        at_least = 1"),
                "[[expect_event]] #2 (on L-1): field at_least: give either count (exact) or at_least",
            ),
            (
                EVENTS.replace("at_least = 3", "at_least = 0"),
                "[[expect_event]] #4 (on L-1): field at_least: must be 1 or more",
            ),
            (
                EVENTS.replace("before = \"3m\"", "before = \"1m\""),
                "[[expect_event]] #1 (on L-1): after must not be later than before",
            ),
            (EVENTS.replace("at_least = 3", "atleast = 3"), "unknown field `atleast`"),
        ];
        for (text, needle) in cases {
            let e = parse(&text, "x").unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
    }
}
