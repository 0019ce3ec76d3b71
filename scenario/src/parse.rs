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
    /// The gateway's uplink to ingest goes down / comes back.
    UplinkDown {
        gateway: String,
    },
    UplinkUp {
        gateway: String,
    },
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
    pub kind: AlertKind,
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
    kind: String,
    device: String,
    after: Option<String>,
    before: Option<String>,
    #[serde(default = "one")]
    count: usize,
    cleared: Option<bool>,
    details: Option<toml::Table>,
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

#[derive(Deserialize)]
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

/// Parses scenario text; `default_name` names it when the file does not.
pub fn parse(text: &str, default_name: &str) -> Result<Scenario> {
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

    for (i, table) in file.event.into_iter().enumerate() {
        let event = scheduled_event(table, &devices, &gateways, &at).within_with(|| format!("[[event]] #{}", i + 1))?;
        ensure!(
            event.at_ms >= start_ms && event.at_ms <= end_ms,
            in format!("[[event]] #{}", i + 1);
            "at must lie within the scenario (0..{})",
            file.duration
        );
        events.push(event);
    }
    events.sort_by_key(|e| e.at_ms);

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
        let context = || format!("[[expect]] #{} ({} on {})", i + 1, e.kind, e.device);
        let kind: AlertKind = e.kind.parse().map_err(Invalid::new).within_with(context)?;
        ensure!(known(&e.device), in context(); "no device or gateway {:?}", e.device);
        ensure!(e.count >= 1, in context(); "count must be 1 or more");
        let (from_ms, to_ms) = window(&e.after, &e.before).within_with(context)?;
        let details = e
            .details
            .map(|t| serde_json::to_value(t).map_err(Invalid::new).within("field details"))
            .transpose()
            .within_with(context)?;
        expect.push(Expectation {
            kind,
            device: e.device,
            from_ms,
            to_ms,
            count: e.count,
            cleared: e.cleared,
            details,
        });
    }
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
    })
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

fn scheduled_event(
    mut table: toml::Table,
    devices: &[DeviceSpec],
    gateways: &[String],
    at: &dyn Fn(&str) -> Result<u64>,
) -> Result<ScheduledEvent> {
    let at_text = take_str(&mut table, "at")?.ok_or_else(|| Invalid::new("field at is required"))?;
    let at_ms = at(&at_text).within("field at")?;
    let action_name = match table.get("action") {
        Some(toml::Value::String(s)) => s.clone(),
        _ => bail!("field action is required (a string)"),
    };
    let device = take_str(&mut table, "device")?;
    let gateway = take_str(&mut table, "gateway")?;
    let action = match (device, gateway) {
        (Some(_), Some(_)) => bail!("give either device or gateway, not both"),
        (None, Some(gateway)) => {
            ensure!(gateways.contains(&gateway), "no [[gateway]] {gateway:?}");
            ensure!(
                table.len() == 1,
                "gateway actions take no fields besides at, gateway, action"
            );
            match action_name.as_str() {
                "uplink_down" => Action::UplinkDown { gateway },
                "uplink_up" => Action::UplinkUp { gateway },
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
                _ => None,
            };
            match node_action {
                Some(action) => {
                    ensure!(
                        table.len() == 1,
                        "{action_name} takes no fields besides at, device, action"
                    );
                    action
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
                    Action::Equipment { device, event }
                }
            }
        }
        (None, None) => bail!("field device (or gateway) is required"),
    };
    Ok(ScheduledEvent { at_ms, action })
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
        assert_eq!(s.expect[0].kind, AlertKind::Fault(1));
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
        assert_eq!(
            e.to_string(),
            "[[event]] #1: field at: \"1 minute\" is not a duration like 90s, 2m30s, 1h, 1d"
        );
        let e = parse(&MINIMAL.replace("before = \"3m\"", "before = \"30s\""), "x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "[[expect]] #1 (fault:1 on L-1): after must not be later than before"
        );
        let e = parse(&MINIMAL.replace("floors = 6", "floors = 6\nheartbeat = 5"), "x").unwrap_err();
        assert_eq!(e.at, ["[[lift]] \"L-1\"", "field heartbeat"]);
        assert_eq!(e.problem, "expected a duration string, found 5");
        let e = parse(&MINIMAL.replace("id = \"S-1\"", "id = 7"), "x").unwrap_err();
        assert_eq!(e.to_string(), "[[sterilizer]]: field id: expected a string, found 7");
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
                "in {}: field duration: \"10 minutes\" is not a duration like 90s, 2m30s, 1h, 1d",
                path.display()
            )
        );
        let e = load(&dir.path().join("missing.toml")).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("reading {}: ", dir.path().join("missing.toml").display())),
            "{e}"
        );
    }
}
