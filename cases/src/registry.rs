//! The equipment register: using units, maintenance firms and devices, with the
//! inspection and maintenance records that move their due dates.
use crate::grid::{GridCode, GridScope};
use crate::roles::{Placement, Role, User};
use gridwatch_alerts::{Date, DeviceProfile, KitchenSchedule};
use gridwatch_protocol::{DeviceKind, Method};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A using unit (使用单位) is known by its name and address together: names repeat.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitKey {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsingUnit {
    pub key: UnitKey,
    pub phone: String,
    pub grid: GridCode,
    /// The kitchen's own calendar (meal periods, operating days, opening hours) its
    /// sterilizers are judged by; `None`: the global `[alerts.sterilizer]` one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<KitchenSchedule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceFirm {
    pub id: String,
    pub name: String,
}

/// 设备品种: the equipment type as registers name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EquipmentType {
    TractionPassengerLift,
    TractionFreightLift,
    HydraulicLift,
    Escalator,
    MovingWalk,
    InfraredCabinet,
    SteamCabinet,
    CommercialDishwasher,
}

impl EquipmentType {
    pub const ALL: [EquipmentType; 8] = [
        EquipmentType::TractionPassengerLift,
        EquipmentType::TractionFreightLift,
        EquipmentType::HydraulicLift,
        EquipmentType::Escalator,
        EquipmentType::MovingWalk,
        EquipmentType::InfraredCabinet,
        EquipmentType::SteamCabinet,
        EquipmentType::CommercialDishwasher,
    ];

    pub const fn chinese(self) -> &'static str {
        match self {
            EquipmentType::TractionPassengerLift => "曳引驱动乘客电梯",
            EquipmentType::TractionFreightLift => "曳引驱动载货电梯",
            EquipmentType::HydraulicLift => "液压驱动电梯",
            EquipmentType::Escalator => "自动扶梯",
            EquipmentType::MovingWalk => "自动人行道",
            EquipmentType::InfraredCabinet => "红外线消毒柜",
            EquipmentType::SteamCabinet => "蒸汽消毒柜",
            EquipmentType::CommercialDishwasher => "商用洗碗机",
        }
    }

    pub fn from_chinese(name: &str) -> Option<EquipmentType> {
        EquipmentType::ALL.into_iter().find(|t| t.chinese() == name)
    }

    /// Lifts (electric lifts, escalators, moving walks are all 电梯 in the registers) or sterilizers.
    pub const fn kind(self) -> DeviceKind {
        match self {
            EquipmentType::InfraredCabinet | EquipmentType::SteamCabinet | EquipmentType::CommercialDishwasher => {
                DeviceKind::Sterilizer
            }
            _ => DeviceKind::Lift,
        }
    }

    /// The disinfection method of a sterilizer type.
    pub const fn method(self) -> Option<Method> {
        match self {
            EquipmentType::InfraredCabinet => Some(Method::Infrared),
            EquipmentType::SteamCabinet => Some(Method::Steam),
            EquipmentType::CommercialDishwasher => Some(Method::Dishwasher),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeviceStatus {
    /// 在用
    InUse,
    /// 停用
    OutOfService,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InspectionRecord {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub date: Date,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub next_due: Date,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceRecord {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub date: Date,
}

/// One piece of equipment. Its id is the registration code (设备注册代码), which is also
/// the device id its monitoring node uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    pub id: String,
    pub kind: DeviceKind,
    pub equipment_type: EquipmentType,
    /// The using unit's own label (内部编号, e.g. 1#梯).
    pub label: String,
    pub manufacturer: String,
    /// Not in the county register layout; filled from other sources when known.
    pub model: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub installed: Option<Date>,
    pub unit: UnitKey,
    /// Maintenance firm id; sterilizers usually have none.
    pub firm: Option<String>,
    pub maintenance_interval_days: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub last_maintenance: Option<Date>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub next_inspection_due: Option<Date>,
    pub status: DeviceStatus,
    /// Append-only records entered after the import.
    pub inspections: Vec<InspectionRecord>,
    pub maintenance: Vec<MaintenanceRecord>,
}

impl Device {
    /// What the alert engine needs of this device.
    pub fn profile(&self) -> DeviceProfile {
        DeviceProfile {
            kind: self.kind,
            in_service: self.status == DeviceStatus::InUse,
            next_inspection_due: self.next_inspection_due,
            last_maintenance: self.last_maintenance,
            maintenance_interval_days: self.maintenance_interval_days,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("no device with registration code {0:?}")]
    UnknownDevice(String),
    #[error("no using unit {:?} at {:?}", .0.name, .0.address)]
    UnknownUnit(UnitKey),
    #[error("no maintenance firm {0:?}")]
    UnknownFirm(String),
    #[error("device {0:?} is registered already")]
    DuplicateDevice(String),
    #[error("using unit {:?} at {:?} is registered already with other details", .0.name, .0.address)]
    UnitConflict(UnitKey),
    #[error("maintenance firm {0:?} is registered already with another name")]
    FirmConflict(String),
    #[error("the next inspection due date {next_due} must be after the inspection date {date}")]
    NextDueNotAfterInspection { date: Date, next_due: Date },
    #[error(
        "field next_due: {next_due} is outside the allowed range {earliest} to {latest} \
         (after the inspection on {date}, within the periodic inspection interval of {years} year(s))"
    )]
    NextDueOutOfRange {
        date: Date,
        next_due: Date,
        earliest: Date,
        latest: Date,
        years: u32,
    },
    #[error("field date: {date} is in the future (today is {today})")]
    DateInFuture { date: Date, today: Date },
    #[error("recording {record} for device {device:?} is for {allowed} of its grid{}", if *.record == RecordKind::Maintenance { " or its own maintenance firm" } else { "" })]
    NotAllowed {
        record: RecordKind,
        device: String,
        allowed: String,
    },
    #[error("device {device:?} is registered in grid {grid}, outside the import's scope")]
    DeviceOutsideScope { device: String, grid: GridCode },
    #[error("setting the kitchen schedule of {:?} at {:?} is for {allowed} of its grid", .unit.name, .unit.address)]
    ScheduleNotAllowed { unit: UnitKey, allowed: String },
    #[error(transparent)]
    BadSchedule(#[from] gridwatch_alerts::config::ScheduleError),
}

/// What a record is about: who may enter it differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Inspection,
    Maintenance,
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordKind::Inspection => "an inspection",
            RecordKind::Maintenance => "maintenance",
        })
    }
}

/// Grid roles that may record a periodic inspection (检验 is the inspection body's and the
/// market-supervision inspector's; grid offices enter it from the new label). A maintenance
/// firm may not: it is the party the inspection checks.
pub const INSPECTION_RECORDERS: [Role; 3] = [Role::Inspector, Role::GridHead, Role::GridAdministrator];

/// Grid roles that may record maintenance; the device's own maintenance firm may too.
pub const MAINTENANCE_RECORDERS: [Role; 3] = [Role::Inspector, Role::GridHead, Role::GridAdministrator];

/// Grid roles that may set a using unit's kitchen schedule: those who keep the register of
/// its grid. A maintenance firm may not: the calendar decides when the kitchen is judged.
pub const SCHEDULE_SETTERS: [Role; 3] = [Role::Inspector, Role::GridHead, Role::GridAdministrator];

/// A role as the users file and the API spell it.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::GridHead => "grid_head",
        Role::GridAdministrator => "grid_administrator",
        Role::InformationOfficer => "information_officer",
        Role::Supervisor => "supervisor",
        Role::Inspector => "inspector",
        Role::MaintenanceFirm => "maintenance_firm",
    }
}

/// The periodic inspection schedule (TSG T7001-2023) as data: how far ahead an inspection
/// may set the next one. Every number is configurable (`[register.inspection]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InspectionSchedule {
    /// Years after installation in which a lift is inspected (self-tests in the other years).
    pub lift_inspection_years: Vec<u32>,
    /// Between inspections of a lift older than the last listed year, or of unknown age.
    pub lift_interval_years_after: u32,
    /// Between inspections of a sterilizer (not special equipment: a policy default).
    pub sterilizer_interval_years: u32,
}

impl Default for InspectionSchedule {
    fn default() -> Self {
        Self {
            lift_inspection_years: vec![1, 4, 7, 9, 11, 13, 15],
            lift_interval_years_after: 1,
            sterilizer_interval_years: 1,
        }
    }
}

impl InspectionSchedule {
    /// Years an inspection of `device` on `date` may set the next one ahead: for a lift, the
    /// gap in the schedule at its age rounded to the nearest anniversary (an inspection done
    /// a little early or late counts for its scheduled year).
    pub fn interval_years(&self, device: &Device, date: Date) -> u32 {
        if device.kind != DeviceKind::Lift {
            return self.sterilizer_interval_years.max(1);
        }
        let after = self.lift_interval_years_after.max(1);
        let Some(installed) = device.installed else {
            return after;
        };
        let half_year_on = date.saturating_add(jiff::Span::new().months(6));
        let age = installed
            .until((jiff::Unit::Year, half_year_on))
            .map_or(0, |span| span.get_years().max(0) as u32);
        let mut years = self.lift_inspection_years.clone();
        years.sort_unstable();
        let previous = years.iter().copied().filter(|y| *y <= age).max().unwrap_or(0);
        match years.iter().copied().find(|y| *y > previous) {
            Some(next) => next - previous,
            None => after,
        }
    }

    /// The next-due dates an inspection of `device` on `date` may set: from the day after
    /// to the end of the interval.
    pub fn allowed_next_due(&self, device: &Device, date: Date) -> (Date, Date, u32) {
        let years = self.interval_years(device, date);
        let earliest = date.tomorrow().unwrap_or(date);
        let latest = date.saturating_add(jiff::Span::new().years(i64::from(years)));
        (earliest, latest, years)
    }
}

/// A register after a scoped import: the devices it removed and how many were in scope.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub registry: Registry,
    /// Devices in scope before the import and absent from it.
    pub removed: Vec<String>,
    /// Devices in scope before the import.
    pub in_scope_before: usize,
    /// Devices outside the scope, kept as they were.
    pub kept_outside: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    #[serde(with = "units_as_list")]
    units: BTreeMap<UnitKey, UsingUnit>,
    firms: BTreeMap<String, MaintenanceFirm>,
    devices: BTreeMap<String, Device>,
}

impl Registry {
    /// Adds a using unit; adding the same one again is fine, a different one under the
    /// same name and address is a conflict.
    pub fn add_unit(&mut self, unit: UsingUnit) -> Result<(), RegistryError> {
        match self.units.get(&unit.key) {
            Some(known) if *known == unit => Ok(()),
            Some(_) => Err(RegistryError::UnitConflict(unit.key)),
            None => {
                self.units.insert(unit.key.clone(), unit);
                Ok(())
            }
        }
    }

    pub fn add_firm(&mut self, firm: MaintenanceFirm) -> Result<(), RegistryError> {
        match self.firms.get(&firm.id) {
            Some(known) if *known == firm => Ok(()),
            Some(_) => Err(RegistryError::FirmConflict(firm.id)),
            None => {
                self.firms.insert(firm.id.clone(), firm);
                Ok(())
            }
        }
    }

    /// Adds a device whose using unit and firm are registered already.
    pub fn add_device(&mut self, device: Device) -> Result<(), RegistryError> {
        if self.devices.contains_key(&device.id) {
            return Err(RegistryError::DuplicateDevice(device.id));
        }
        if !self.units.contains_key(&device.unit) {
            return Err(RegistryError::UnknownUnit(device.unit));
        }
        if let Some(firm) = device.firm.as_ref().filter(|f| !self.firms.contains_key(*f)) {
            return Err(RegistryError::UnknownFirm(firm.clone()));
        }
        self.devices.insert(device.id.clone(), device);
        Ok(())
    }

    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.get(id)
    }

    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    pub fn units(&self) -> impl Iterator<Item = &UsingUnit> {
        self.units.values()
    }

    pub fn unit(&self, key: &UnitKey) -> Option<&UsingUnit> {
        self.units.get(key)
    }

    pub fn firms(&self) -> impl Iterator<Item = &MaintenanceFirm> {
        self.firms.values()
    }

    pub fn firm(&self, id: &str) -> Option<&MaintenanceFirm> {
        self.firms.get(id)
    }

    /// The grid of a device: its using unit's grid.
    pub fn grid_of(&self, device: &Device) -> GridCode {
        self.units[&device.unit].grid
    }

    pub fn placement<'a>(&self, device: &'a Device) -> Placement<'a> {
        Placement {
            grid: self.grid_of(device),
            firm: device.firm.as_deref(),
        }
    }

    /// The devices `user` may see: those in their grids and those of their firm.
    pub fn visible_devices<'a>(&'a self, user: &'a User) -> impl Iterator<Item = &'a Device> + 'a {
        self.devices.values().filter(move |d| user.can_see(self.placement(d)))
    }

    /// The kitchen schedule of `device`'s using unit, if it has its own.
    pub fn kitchen_schedule(&self, device: &Device) -> Option<&KitchenSchedule> {
        self.units.get(&device.unit)?.schedule.as_ref()
    }

    /// Every sterilizer whose using unit has its own kitchen schedule, with it: what the
    /// alert engine needs of the schedules.
    pub fn kitchen_schedules(&self) -> impl Iterator<Item = (&str, &KitchenSchedule)> {
        self.devices
            .values()
            .filter(|d| d.kind == DeviceKind::Sterilizer)
            .filter_map(|d| Some((d.id.as_str(), self.kitchen_schedule(d)?)))
    }

    /// Sets (or with `None` removes) a using unit's kitchen schedule, if `user` holds one
    /// of [`SCHEDULE_SETTERS`] over its grid and the schedule is a calendar. Returns the
    /// unit's sterilizers, whose schedule changed.
    pub fn set_kitchen_schedule(
        &mut self,
        user: &User,
        unit: &UnitKey,
        schedule: Option<KitchenSchedule>,
    ) -> Result<Vec<String>, RegistryError> {
        let u = self
            .units
            .get_mut(unit)
            .ok_or_else(|| RegistryError::UnknownUnit(unit.clone()))?;
        let place = Placement {
            grid: u.grid,
            firm: None,
        };
        if !user.roles_at(place).any(|r| SCHEDULE_SETTERS.contains(&r)) {
            return Err(RegistryError::ScheduleNotAllowed {
                unit: unit.clone(),
                allowed: SCHEDULE_SETTERS
                    .iter()
                    .map(|r| role_name(*r))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let schedule = schedule.filter(|s| !s.is_empty());
        if let Some(s) = &schedule {
            s.check()?;
        }
        u.schedule = schedule;
        Ok(self
            .devices
            .values()
            .filter(|d| d.unit == *unit && d.kind == DeviceKind::Sterilizer)
            .map(|d| d.id.clone())
            .collect())
    }

    /// Gives a unit without a schedule the one a later row of the import named.
    pub(crate) fn fill_schedule(&mut self, unit: &UnitKey, schedule: KitchenSchedule) {
        if let Some(u) = self.units.get_mut(unit).filter(|u| u.schedule.is_none()) {
            u.schedule = Some(schedule);
        }
    }

    fn device_mut(&mut self, id: &str) -> Result<&mut Device, RegistryError> {
        self.devices
            .get_mut(id)
            .ok_or_else(|| RegistryError::UnknownDevice(id.to_string()))
    }

    /// The role under which `user` may enter a `record` for `device`: for an inspection one
    /// of [`INSPECTION_RECORDERS`] over its grid; for maintenance one of
    /// [`MAINTENANCE_RECORDERS`] over its grid, or staff of its own maintenance firm.
    pub fn recorder_role(&self, user: &User, device: &str, record: RecordKind) -> Result<Role, RegistryError> {
        let d = self
            .device(device)
            .ok_or_else(|| RegistryError::UnknownDevice(device.to_string()))?;
        let allowed: &[Role] = match record {
            RecordKind::Inspection => &INSPECTION_RECORDERS,
            RecordKind::Maintenance => &MAINTENANCE_RECORDERS,
        };
        let firm_may = record == RecordKind::Maintenance;
        user.roles_at(self.placement(d))
            .find(|r| allowed.contains(r) || (firm_may && *r == Role::MaintenanceFirm))
            .ok_or_else(|| RegistryError::NotAllowed {
                record,
                device: device.to_string(),
                allowed: allowed.iter().map(|r| role_name(*r)).collect::<Vec<_>>().join(", "),
            })
    }

    /// Records a periodic inspection on `date` and the next due date it set, which must lie
    /// within `schedule`'s interval. A record entered late (older than the latest one) is
    /// kept but moves no due date.
    pub fn record_inspection(
        &mut self,
        device: &str,
        date: Date,
        next_due: Date,
        schedule: &InspectionSchedule,
    ) -> Result<(), RegistryError> {
        if next_due <= date {
            return Err(RegistryError::NextDueNotAfterInspection { date, next_due });
        }
        let d = self.device_mut(device)?;
        let (earliest, latest, years) = schedule.allowed_next_due(d, date);
        if next_due < earliest || next_due > latest {
            return Err(RegistryError::NextDueOutOfRange {
                date,
                next_due,
                earliest,
                latest,
                years,
            });
        }
        let latest = d.inspections.iter().map(|r| r.date).max();
        d.inspections.push(InspectionRecord { date, next_due });
        if latest.is_none_or(|l| date >= l) {
            d.next_inspection_due = Some(next_due);
        }
        Ok(())
    }

    /// Records a maintenance visit; the next one is due an interval after the latest.
    pub fn record_maintenance(&mut self, device: &str, date: Date) -> Result<(), RegistryError> {
        let d = self.device_mut(device)?;
        d.maintenance.push(MaintenanceRecord { date });
        d.last_maintenance = Some(d.last_maintenance.map_or(date, |l| l.max(date)));
        Ok(())
    }

    pub fn set_status(&mut self, device: &str, status: DeviceStatus) -> Result<(), RegistryError> {
        self.device_mut(device)?.status = status;
        Ok(())
    }

    /// This register with the part within `scope` replaced by `incoming` (`None`: all of
    /// it). A using unit that `incoming` lists without a kitchen schedule keeps the one it
    /// had. Devices, using units and firms outside the scope are kept as they are; a device
    /// of `incoming` registered outside the scope is refused. Firms are shared across grids:
    /// `incoming`'s name of a firm wins.
    pub fn replace_within(
        &self,
        scope: Option<&[GridScope]>,
        incoming: Registry,
    ) -> Result<Replacement, RegistryError> {
        let in_scope = |grid: GridCode| scope.is_none_or(|s| s.iter().any(|s| s.contains(grid)));
        let mut next = incoming;
        let mut removed = Vec::new();
        let mut in_scope_before = 0;
        let mut kept_outside = 0;
        for unit in self.units.values().filter(|u| !in_scope(u.grid)) {
            next.add_unit(unit.clone())?;
        }
        // A file without schedule cells keeps the schedules set before (through the API).
        for unit in self.units.values().filter(|u| in_scope(u.grid)) {
            if let Some(schedule) = &unit.schedule {
                next.fill_schedule(&unit.key, schedule.clone());
            }
        }
        for device in self.devices.values() {
            let grid = self.grid_of(device);
            if in_scope(grid) {
                in_scope_before += 1;
                if !next.devices.contains_key(&device.id) {
                    removed.push(device.id.clone());
                }
                continue;
            }
            if next.devices.contains_key(&device.id) {
                return Err(RegistryError::DeviceOutsideScope {
                    device: device.id.clone(),
                    grid,
                });
            }
            if let Some(firm) = device.firm.as_ref().and_then(|f| self.firms.get(f))
                && !next.firms.contains_key(&firm.id)
            {
                next.firms.insert(firm.id.clone(), firm.clone());
            }
            next.devices.insert(device.id.clone(), device.clone());
            kept_outside += 1;
        }
        Ok(Replacement {
            registry: next,
            removed,
            in_scope_before,
            kept_outside,
        })
    }
}

/// Units keyed by (name, address) are stored as a plain list: JSON map keys must be strings.
mod units_as_list {
    use super::{UnitKey, UsingUnit};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub(super) fn serialize<S: Serializer>(units: &BTreeMap<UnitKey, UsingUnit>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(units.values())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<UnitKey, UsingUnit>, D::Error> {
        let list = Vec::<UsingUnit>::deserialize(d)?;
        Ok(list.into_iter().map(|u| (u.key.clone(), u)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Registry {
        let mut r = Registry::default();
        let key = UnitKey {
            name: "鼓山商场".into(),
            address: "江滨路19号".into(),
        };
        let grid = GridCode::parse("010101").unwrap();
        r.add_unit(UsingUnit {
            key: key.clone(),
            phone: "0575-1".into(),
            grid,
            schedule: None,
        })
        .unwrap();
        r.add_firm(MaintenanceFirm {
            id: "MF01".into(),
            name: "甲".into(),
        })
        .unwrap();
        r.add_device(Device {
            id: "31103306242009000001".into(),
            kind: DeviceKind::Lift,
            equipment_type: EquipmentType::TractionPassengerLift,
            label: "1#梯".into(),
            manufacturer: "西子".into(),
            model: None,
            installed: Some(Date::constant(2009, 5, 20)),
            unit: key,
            firm: Some("MF01".into()),
            maintenance_interval_days: Some(15),
            last_maintenance: Some(Date::constant(2026, 11, 13)),
            next_inspection_due: Some(Date::constant(2027, 1, 22)),
            status: DeviceStatus::InUse,
            inspections: vec![],
            maintenance: vec![],
        })
        .unwrap();
        r
    }

    #[test]
    fn records_move_due_dates_forward_only() {
        let mut r = sample();
        let id = "31103306242009000001";
        let schedule = InspectionSchedule::default();
        r.record_inspection(id, Date::constant(2027, 1, 10), Date::constant(2028, 1, 10), &schedule)
            .unwrap();
        r.record_inspection(id, Date::constant(2026, 1, 10), Date::constant(2027, 1, 10), &schedule)
            .unwrap(); // late entry
        assert_eq!(
            r.device(id).unwrap().next_inspection_due,
            Some(Date::constant(2028, 1, 10))
        );
        assert_eq!(r.device(id).unwrap().inspections.len(), 2);
        r.record_maintenance(id, Date::constant(2026, 11, 27)).unwrap();
        r.record_maintenance(id, Date::constant(2026, 11, 20)).unwrap();
        let p = r.device(id).unwrap().profile();
        assert_eq!(p.next_maintenance_due(), Some(Date::constant(2026, 12, 12)));
        let bad = r.record_inspection(id, Date::constant(2027, 1, 10), Date::constant(2027, 1, 10), &schedule);
        assert!(matches!(bad, Err(RegistryError::NextDueNotAfterInspection { .. })));
        assert_eq!(
            r.record_maintenance("nope", Date::constant(2026, 1, 1)),
            Err(RegistryError::UnknownDevice("nope".into()))
        );
    }

    #[test]
    fn conflicting_and_dangling_entries_are_refused() {
        let mut r = sample();
        let d = r.device("31103306242009000001").unwrap().clone();
        assert_eq!(
            r.add_device(d.clone()),
            Err(RegistryError::DuplicateDevice(d.id.clone()))
        );
        let orphan = Device {
            id: "X".into(),
            firm: Some("MF99".into()),
            ..d.clone()
        };
        assert_eq!(r.add_device(orphan), Err(RegistryError::UnknownFirm("MF99".into())));
        assert_eq!(
            r.add_firm(MaintenanceFirm {
                id: "MF01".into(),
                name: "乙".into()
            }),
            Err(RegistryError::FirmConflict("MF01".into()))
        );
        let unit = r.unit(&d.unit).unwrap().clone();
        assert!(r.add_unit(unit.clone()).is_ok());
        assert!(
            r.add_unit(UsingUnit {
                phone: "other".into(),
                ..unit
            })
            .is_err()
        );
    }

    fn lift_installed(installed: Date) -> Device {
        let mut d = sample().device("31103306242009000001").unwrap().clone();
        d.installed = Some(installed);
        d
    }

    #[test]
    fn the_schedule_bounds_the_next_due_date_by_the_lifts_age() {
        let s = InspectionSchedule::default();
        let on = Date::constant(2026, 11, 25);
        // Age at the inspection, rounded to the nearest anniversary -> years to the next one.
        for (installed, years) in [
            (Date::constant(2026, 8, 1), 1),   // months old: next in year 1
            (Date::constant(2026, 1, 10), 3),  // year 1 (a little early) -> year 4
            (Date::constant(2025, 11, 1), 3),  // year 1 -> year 4
            (Date::constant(2022, 12, 20), 3), // year 4 (a little early) -> year 7
            (Date::constant(2019, 11, 25), 2), // year 7 -> year 9
            (Date::constant(2011, 11, 25), 1), // year 15 -> yearly
            (Date::constant(2009, 5, 20), 1),  // older: yearly
        ] {
            assert_eq!(s.interval_years(&lift_installed(installed), on), years, "{installed}");
        }
        let mut unknown = lift_installed(on);
        unknown.installed = None;
        assert_eq!(s.interval_years(&unknown, on), 1);

        let mut r = sample();
        let id = "31103306242009000001";
        let far = r.record_inspection(id, on, Date::constant(2099, 1, 1), &s);
        assert!(
            matches!(far, Err(RegistryError::NextDueOutOfRange { latest, .. }) if latest == Date::constant(2027, 11, 25)),
            "{far:?}"
        );
        assert!(
            far.unwrap_err()
                .to_string()
                .contains("allowed range 2026-11-26 to 2027-11-25")
        );
        r.record_inspection(id, on, Date::constant(2027, 11, 25), &s).unwrap();
    }

    #[test]
    fn only_inspectors_and_grid_offices_record_inspections_and_firms_their_own_maintenance() {
        let r = sample();
        let id = "31103306242009000001";
        let grid = |role, scope: &str| User {
            id: "u".into(),
            name: "u".into(),
            assignments: vec![crate::Assignment::Grid {
                role,
                scope: GridScope::parse(scope).unwrap(),
            }],
        };
        let firm = |f: &str| User {
            id: "f".into(),
            name: "f".into(),
            assignments: vec![crate::Assignment::Firm { firm: f.into() }],
        };
        let inspection = RecordKind::Inspection;
        let maintenance = RecordKind::Maintenance;
        assert_eq!(
            r.recorder_role(&grid(Role::Inspector, "0101"), id, inspection),
            Ok(Role::Inspector)
        );
        assert_eq!(
            r.recorder_role(&grid(Role::GridHead, "01"), id, inspection),
            Ok(Role::GridHead)
        );
        assert!(r.recorder_role(&grid(Role::Inspector, "02"), id, inspection).is_err());
        assert!(r.recorder_role(&grid(Role::Supervisor, "01"), id, inspection).is_err());
        assert!(r.recorder_role(&firm("MF01"), id, inspection).is_err());
        assert_eq!(
            r.recorder_role(&firm("MF01"), id, maintenance),
            Ok(Role::MaintenanceFirm)
        );
        assert!(r.recorder_role(&firm("MF02"), id, maintenance).is_err());
        assert!(
            r.recorder_role(&grid(Role::InformationOfficer, "01"), id, maintenance)
                .is_err()
        );
    }

    #[test]
    fn a_scoped_replacement_keeps_what_lies_outside_the_scope() {
        let mut old = sample();
        let key = UnitKey {
            name: "外区".into(),
            address: "二区路1号".into(),
        };
        old.add_unit(UsingUnit {
            key: key.clone(),
            phone: "2".into(),
            grid: GridCode::parse("020101").unwrap(),
            schedule: None,
        })
        .unwrap();
        let mut other = old.device("31103306242009000001").unwrap().clone();
        other.id = "31103306242009000002".into();
        other.unit = key;
        old.add_device(other.clone()).unwrap();

        let area01 = [GridScope::parse("01").unwrap()];
        let emptied = old.replace_within(Some(&area01), Registry::default()).unwrap();
        assert_eq!(emptied.removed, ["31103306242009000001"]);
        assert_eq!((emptied.in_scope_before, emptied.kept_outside), (1, 1));
        assert_eq!(emptied.registry.device(&other.id), Some(&other));
        assert!(emptied.registry.firm("MF01").is_some(), "the kept device's firm stays");

        // The file may not take over a device registered in another area.
        let mut taking = sample();
        let mut moved = other.clone();
        moved.unit = sample().device("31103306242009000001").unwrap().unit.clone();
        taking.add_device(moved).unwrap();
        assert!(matches!(
            old.replace_within(Some(&area01), taking),
            Err(RegistryError::DeviceOutsideScope { .. })
        ));
        let whole = old.replace_within(None, sample()).unwrap();
        assert_eq!(whole.removed, [other.id.as_str()]);
    }

    #[test]
    fn registry_round_trips_through_json() {
        let r = sample();
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("schedule"), "no schedule, no field: {json}");
        assert_eq!(serde_json::from_str::<Registry>(&json).unwrap(), r);
    }

    fn with_sterilizer() -> Registry {
        let mut r = sample();
        let mut d = r.device("31103306242009000001").unwrap().clone();
        d.id = "S-0001".into();
        d.kind = DeviceKind::Sterilizer;
        d.equipment_type = EquipmentType::CommercialDishwasher;
        d.firm = None;
        r.add_device(d).unwrap();
        r
    }

    #[test]
    fn a_units_kitchen_schedule_is_set_by_its_grid_and_survives_a_save() {
        let mut r = with_sterilizer();
        let unit = r.device("S-0001").unwrap().unit.clone();
        let grid = |role, scope: &str| User {
            id: "u".into(),
            name: "u".into(),
            assignments: vec![crate::Assignment::Grid {
                role,
                scope: GridScope::parse(scope).unwrap(),
            }],
        };
        let closed_sundays = KitchenSchedule {
            operating_days: Some(vec![1, 2, 3, 4, 5, 6]),
            ..KitchenSchedule::default()
        };
        for outsider in [grid(Role::GridHead, "02"), grid(Role::InformationOfficer, "01")] {
            let refused = r.set_kitchen_schedule(&outsider, &unit, Some(closed_sundays.clone()));
            assert!(
                matches!(refused, Err(RegistryError::ScheduleNotAllowed { .. })),
                "{refused:?}"
            );
        }
        let admin = grid(Role::GridAdministrator, "0101");
        let bad = KitchenSchedule {
            operating_days: Some(vec![8]),
            ..KitchenSchedule::default()
        };
        assert!(matches!(
            r.set_kitchen_schedule(&admin, &unit, Some(bad)),
            Err(RegistryError::BadSchedule(_))
        ));
        let changed = r
            .set_kitchen_schedule(&admin, &unit, Some(closed_sundays.clone()))
            .unwrap();
        assert_eq!(changed, ["S-0001"], "the lift of the same unit has no kitchen schedule");
        assert_eq!(r.kitchen_schedules().collect::<Vec<_>>(), [("S-0001", &closed_sundays)]);
        let saved: Registry = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(saved, r);
        assert_eq!(saved.kitchen_schedules().count(), 1);
        r.set_kitchen_schedule(&admin, &unit, None).unwrap();
        assert_eq!(r.kitchen_schedules().count(), 0);
    }
}
