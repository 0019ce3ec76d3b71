//! What an alert is: its kind, key, severity, details, and the events the engine emits.
use crate::china::Date;
use gridwatch_protocol::Method;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The problem an alert is about. Together with the device id it is the alert's key:
/// at most one alert per (device, kind) is open at a time.
///
/// Written as a stable string (`"trapped_passenger"`, `"fault:12"`), so it can serve as a
/// database key and a TOML map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AlertKind {
    /// A controller fault code (reported in the status or by a fault event).
    Fault(u16),
    DoorOpenWhileRunning,
    StoppedOutsideDoorZone,
    /// The node runs on its backup supply: mains power is lost.
    PowerLoss,
    TrappedPassenger,
    CycleAborted,
    CycleUnderTemperature,
    CycleHoldTooShort,
    NoCycleInMealPeriod,
    InspectionDueSoon,
    InspectionOverdue,
    MaintenanceDueSoon,
    MaintenanceOverdue,
    DeviceOffline,
    /// Keyed by the gateway id instead of a device id.
    GatewayOffline,
}

impl AlertKind {
    /// Every kind but `Fault`, which is parameterised by its code.
    pub const SIMPLE: [AlertKind; 14] = [
        AlertKind::DoorOpenWhileRunning,
        AlertKind::StoppedOutsideDoorZone,
        AlertKind::PowerLoss,
        AlertKind::TrappedPassenger,
        AlertKind::CycleAborted,
        AlertKind::CycleUnderTemperature,
        AlertKind::CycleHoldTooShort,
        AlertKind::NoCycleInMealPeriod,
        AlertKind::InspectionDueSoon,
        AlertKind::InspectionOverdue,
        AlertKind::MaintenanceDueSoon,
        AlertKind::MaintenanceOverdue,
        AlertKind::DeviceOffline,
        AlertKind::GatewayOffline,
    ];

    fn simple_name(self) -> Option<&'static str> {
        Some(match self {
            AlertKind::Fault(_) => return None,
            AlertKind::DoorOpenWhileRunning => "door_open_while_running",
            AlertKind::StoppedOutsideDoorZone => "stopped_outside_door_zone",
            AlertKind::PowerLoss => "power_loss",
            AlertKind::TrappedPassenger => "trapped_passenger",
            AlertKind::CycleAborted => "cycle_aborted",
            AlertKind::CycleUnderTemperature => "cycle_under_temperature",
            AlertKind::CycleHoldTooShort => "cycle_hold_too_short",
            AlertKind::NoCycleInMealPeriod => "no_cycle_in_meal_period",
            AlertKind::InspectionDueSoon => "inspection_due_soon",
            AlertKind::InspectionOverdue => "inspection_overdue",
            AlertKind::MaintenanceDueSoon => "maintenance_due_soon",
            AlertKind::MaintenanceOverdue => "maintenance_overdue",
            AlertKind::DeviceOffline => "device_offline",
            AlertKind::GatewayOffline => "gateway_offline",
        })
    }

    /// Alerts about due dates: evaluated per China-local day, not on device time.
    pub const fn is_due_date(self) -> bool {
        matches!(
            self,
            AlertKind::InspectionDueSoon
                | AlertKind::InspectionOverdue
                | AlertKind::MaintenanceDueSoon
                | AlertKind::MaintenanceOverdue
        )
    }

    /// The severity used when neither the fault table nor the config says otherwise.
    pub const fn default_severity(self) -> Severity {
        match self {
            AlertKind::TrappedPassenger => Severity::Critical,
            AlertKind::Fault(_)
            | AlertKind::DoorOpenWhileRunning
            | AlertKind::StoppedOutsideDoorZone
            | AlertKind::PowerLoss
            | AlertKind::GatewayOffline => Severity::Major,
            AlertKind::CycleUnderTemperature
            | AlertKind::CycleHoldTooShort
            | AlertKind::NoCycleInMealPeriod
            | AlertKind::InspectionOverdue
            | AlertKind::MaintenanceOverdue
            | AlertKind::DeviceOffline => Severity::Minor,
            AlertKind::CycleAborted | AlertKind::InspectionDueSoon | AlertKind::MaintenanceDueSoon => Severity::Warning,
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertKind::Fault(code) => write!(f, "fault:{code}"),
            other => f.write_str(other.simple_name().unwrap_or_default()),
        }
    }
}

impl FromStr for AlertKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(code) = s.strip_prefix("fault:") {
            return code
                .parse()
                .map(AlertKind::Fault)
                .map_err(|_| format!("expected fault:<code 0-65535>, found {s:?}"));
        }
        AlertKind::SIMPLE
            .into_iter()
            .find(|k| k.simple_name() == Some(s))
            .ok_or_else(|| format!("unknown alert kind {s:?}"))
    }
}

impl TryFrom<String> for AlertKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<AlertKind> for String {
    fn from(k: AlertKind) -> String {
        k.to_string()
    }
}

/// A kind is written as its name, or `fault:<code>` for a controller fault.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for AlertKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names: Vec<&str> = AlertKind::SIMPLE.iter().filter_map(|k| k.simple_name()).collect();
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "An alert kind: one of the names, or `fault:<code>` for a controller fault code",
            ))
            .pattern(Some(format!("^({}|fault:[0-9]{{1,5}})$", names.join("|"))))
            .examples(["trapped_passenger", "fault:31"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for AlertKind {}

/// Ordered from least to most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Severity {
    Warning,
    Minor,
    Major,
    Critical,
}

/// Identifies one alert: the device (or, for `GatewayOffline`, the gateway) and the kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertKey {
    pub device: String,
    pub kind: AlertKind,
}

/// Why a trapped-passenger alert holds, in the order the engine checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TrappedReason {
    /// Alarm button pressed while stopped with the doors closed.
    AlarmButton,
    /// Stopped outside the door zone with a passenger.
    StoppedOutsideDoorZone,
    /// Doors closed, passenger inside, car not moving, normal service.
    DoorsClosedNotMoving,
}

/// Where a due-date alert stands. Days left are not part of it, so the alert changes
/// only when a threshold is crossed, not every day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DueStage {
    /// Due within `within_days` (one of the configured warning thresholds).
    Upcoming { within_days: u32 },
    /// Past the due date; `beyond_grace` once the grace period is over as well.
    Overdue { beyond_grace: bool },
}

/// Facts about an alert, for people and for case rules. Compared to decide whether an
/// open alert changed, so it holds only values that change when the situation does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AlertDetails))]
pub enum Details {
    Fault {
        code: u16,
        name: String,
    },
    Lift {
        floor: i16,
    },
    Trapped {
        floor: i16,
        reason: TrappedReason,
    },
    Cycle {
        method: Method,
        peak_c: f32,
        hold_s: u32,
        required_c: f32,
        required_hold_s: u32,
        bad_cycles: u32,
        /// Why the cycle is bad, in words (which rule it broke and why not another).
        #[serde(default)]
        reason: String,
    },
    MealPeriod {
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
        date: Date,
        period: String,
        missed_in_a_row: u32,
    },
    Due {
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
        due: Date,
        stage: DueStage,
    },
    Offline {
        last_reading_ts: u64,
    },
    GatewayOffline {
        devices: u32,
    },
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AlertChange))]
pub enum Change {
    Raised,
    /// Severity or details changed, or the condition came back before the alert cleared.
    Updated,
    Acknowledged,
    Cleared,
}

/// One change to one alert. `(key, raised_at, revision)` identifies it, so a consumer can
/// store events idempotently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertEvent {
    pub key: AlertKey,
    pub change: Change,
    pub severity: Severity,
    /// Device time (ms) the alert was raised.
    pub raised_at: u64,
    /// Device time (ms) of this change.
    pub at: u64,
    /// 0 for `Raised`, then +1 for every later event of the same alert.
    pub revision: u32,
    pub acknowledged_by: Option<String>,
    pub details: Details,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_string_form() {
        let mut all = AlertKind::SIMPLE.to_vec();
        all.push(AlertKind::Fault(12));
        for k in all {
            let s = k.to_string();
            assert_eq!(s.parse::<AlertKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{s}\""));
        }
        assert!("fault:x".parse::<AlertKind>().is_err());
        assert!("flood".parse::<AlertKind>().is_err());
    }

    #[test]
    fn severity_orders_by_urgency() {
        assert!(Severity::Critical > Severity::Major && Severity::Minor > Severity::Warning);
    }
}
