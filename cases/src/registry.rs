//! The equipment register: using units, maintenance firms and devices, with the
//! inspection and maintenance records that move their due dates.
use crate::grid::GridCode;
use crate::roles::{Placement, User};
use gridwatch_alerts::{Date, DeviceProfile};
use gridwatch_protocol::{DeviceKind, Method};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A using unit (使用单位) is known by its name and address together: names repeat.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnitKey {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsingUnit {
    pub key: UnitKey,
    pub phone: String,
    pub grid: GridCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceFirm {
    pub id: String,
    pub name: String,
}

/// 设备品种: the equipment type as registers name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
pub enum DeviceStatus {
    /// 在用
    InUse,
    /// 停用
    OutOfService,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectionRecord {
    pub date: Date,
    pub next_due: Date,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceRecord {
    pub date: Date,
}

/// One piece of equipment. Its id is the registration code (设备注册代码), which is also
/// the device id its monitoring node uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub kind: DeviceKind,
    pub equipment_type: EquipmentType,
    /// The using unit's own label (内部编号, e.g. 1#梯).
    pub label: String,
    pub manufacturer: String,
    /// Not in the county register layout; filled from other sources when known.
    pub model: Option<String>,
    pub installed: Option<Date>,
    pub unit: UnitKey,
    /// Maintenance firm id; sterilizers usually have none.
    pub firm: Option<String>,
    pub maintenance_interval_days: Option<u32>,
    pub last_maintenance: Option<Date>,
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

    fn device_mut(&mut self, id: &str) -> Result<&mut Device, RegistryError> {
        self.devices
            .get_mut(id)
            .ok_or_else(|| RegistryError::UnknownDevice(id.to_string()))
    }

    /// Records a periodic inspection on `date` and the next due date it set. A record
    /// entered late (older than the latest one) is kept but moves no due date.
    pub fn record_inspection(&mut self, device: &str, date: Date, next_due: Date) -> Result<(), RegistryError> {
        if next_due <= date {
            return Err(RegistryError::NextDueNotAfterInspection { date, next_due });
        }
        let d = self.device_mut(device)?;
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
        r.record_inspection(id, Date::constant(2027, 1, 10), Date::constant(2028, 1, 10))
            .unwrap();
        r.record_inspection(id, Date::constant(2026, 1, 10), Date::constant(2027, 1, 10))
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
        let bad = r.record_inspection(id, Date::constant(2027, 1, 10), Date::constant(2027, 1, 10));
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

    #[test]
    fn registry_round_trips_through_json() {
        let r = sample();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Registry>(&json).unwrap(), r);
    }
}
