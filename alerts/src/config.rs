//! Every threshold of the alert rules, with the defaults documented in `docs/alerts.md`.
//! Deserializable (every field optional) so it can be loaded from TOML.
use crate::alert::{AlertKind, Severity};
use crate::china::ClockTime;
use gridwatch_protocol::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// A condition must stay absent this long (device time) before its alert clears.
    pub min_clear_s: u64,
    pub lift: LiftConfig,
    pub sterilizer: SterilizerConfig,
    pub offline: OfflineConfig,
    pub due: DueConfig,
    /// Fault codes of lift controllers and node sensors.
    pub faults: FaultTable,
    /// Severity overrides by alert kind (`"power_loss" = "critical"`); fault codes take
    /// theirs from the fault table.
    pub severity: BTreeMap<AlertKind, Severity>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            min_clear_s: 60,
            lift: LiftConfig::default(),
            sterilizer: SterilizerConfig::default(),
            offline: OfflineConfig::default(),
            due: DueConfig::default(),
            faults: FaultTable::default(),
            severity: BTreeMap::new(),
        }
    }
}

impl AlertConfig {
    pub fn severity_of(&self, kind: AlertKind) -> Severity {
        if let AlertKind::Fault(code) = kind {
            return self.faults.severity(code);
        }
        self.severity.get(&kind).copied().unwrap_or(kind.default_severity())
    }

    /// How long a condition must stay absent before its alert clears. Due-date alerts
    /// clear at once: a new inspection record does not flap.
    pub fn min_clear_ms(&self, kind: AlertKind) -> u64 {
        if kind.is_due_date() { 0 } else { self.min_clear_s * 1000 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiftConfig {
    /// Doors closed + passenger + not moving in normal service for this long: trapped.
    pub trapped_after_s: u64,
    /// Stopped outside the door zone with a passenger for this long: trapped.
    pub trapped_outside_zone_after_s: u64,
    /// Stopped outside the door zone (with or without passenger) for this long: alert.
    pub stopped_outside_zone_after_s: u64,
}

impl Default for LiftConfig {
    fn default() -> Self {
        LiftConfig {
            trapped_after_s: 90,
            trapped_outside_zone_after_s: 45,
            stopped_outside_zone_after_s: 45,
        }
    }
}

/// Known fault codes. Codes not listed still alert, as "fault code N".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultTable {
    pub codes: Vec<FaultCode>,
    pub unknown_severity: Severity,
}

impl Default for FaultTable {
    fn default() -> Self {
        FaultTable {
            codes: default_fault_codes(),
            unknown_severity: Severity::Major,
        }
    }
}

impl FaultTable {
    pub fn get(&self, code: u16) -> Option<&FaultCode> {
        self.codes.iter().find(|f| f.code == code)
    }

    pub fn name(&self, code: u16) -> String {
        self.get(code)
            .map_or_else(|| format!("fault code {code}"), |f| f.name.clone())
    }

    pub fn severity(&self, code: u16) -> Severity {
        self.get(code).map_or(self.unknown_severity, |f| f.severity)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultCode {
    pub code: u16,
    pub name: String,
    pub severity: Severity,
}

/// The fault classes of monitoring practice (codes 1–9 of our own choosing) and the
/// sensor faults the gridwatch node firmware reports; a deployment replaces this table
/// with its controllers' codes.
pub fn default_fault_codes() -> Vec<FaultCode> {
    use Severity::*;
    [
        (1, "safety circuit open", Major),
        (2, "door lock circuit fault", Major),
        (3, "overspeed", Critical),
        (4, "unintended car movement with doors open", Critical),
        (5, "car over top floor", Critical),
        (6, "car below bottom floor", Critical),
        (7, "door fails to open", Major),
        (8, "door fails to close", Major),
        (9, "controller fault", Major),
        // Sensor faults of the gridwatch nodes (firmware defaults): monitoring is blind.
        (801, "thermocouple open circuit", Minor),
        (802, "thermocouple short to ground", Minor),
        (803, "thermocouple short to supply", Minor),
        (804, "thermocouple not responding", Minor),
        (901, "car position sensor fault", Minor),
    ]
    .into_iter()
    .map(|(code, name, severity)| FaultCode {
        code,
        name: name.to_string(),
        severity,
    })
    .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SterilizerConfig {
    pub steam: CycleRule,
    pub infrared: CycleRule,
    pub dishwasher: CycleRule,
    /// A complete, good cycle is expected in each of these on every operating day.
    pub meal_periods: Vec<MealPeriod>,
    /// ISO weekdays the kitchens operate: 1 = Monday … 7 = Sunday.
    pub operating_days: Vec<u8>,
    /// Offline is judged only within these hours of operating days.
    pub opens: ClockTime,
    pub closes: ClockTime,
}

impl Default for SterilizerConfig {
    fn default() -> Self {
        SterilizerConfig {
            steam: CycleRule {
                min_temp_c: 100.0,
                min_hold_s: 600,
            },
            infrared: CycleRule {
                min_temp_c: 120.0,
                min_hold_s: 600,
            },
            dishwasher: CycleRule {
                min_temp_c: 82.0,
                min_hold_s: 40,
            },
            meal_periods: vec![
                MealPeriod {
                    name: "lunch".into(),
                    start: ClockTime::hm(10, 30),
                    end: ClockTime::hm(13, 30),
                },
                MealPeriod {
                    name: "dinner".into(),
                    start: ClockTime::hm(16, 30),
                    end: ClockTime::hm(20, 0),
                },
            ],
            operating_days: vec![1, 2, 3, 4, 5, 6, 7],
            opens: ClockTime::hm(10, 0),
            closes: ClockTime::hm(20, 30),
        }
    }
}

impl SterilizerConfig {
    pub fn rule(&self, method: Method) -> CycleRule {
        match method {
            Method::Steam => self.steam,
            Method::Infrared => self.infrared,
            Method::Dishwasher => self.dishwasher,
        }
    }

    pub fn operates_on(&self, iso_weekday: u8) -> bool {
        self.operating_days.contains(&iso_weekday)
    }
}

/// A disinfection cycle is good when its peak reaches `min_temp_c` and it held the
/// target temperature at least `min_hold_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleRule {
    pub min_temp_c: f32,
    pub min_hold_s: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MealPeriod {
    pub name: String,
    pub start: ClockTime,
    pub end: ClockTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineConfig {
    /// A lift with no reading for this long is offline.
    pub lift_after_s: u64,
    /// A sterilizer silent for this long within operating hours is offline.
    pub sterilizer_after_s: u64,
    /// A gateway with no batch for this long (and no presence saying it is online) is offline.
    pub gateway_after_s: u64,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            lift_after_s: 300,
            sterilizer_after_s: 300,
            gateway_after_s: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DueConfig {
    /// Warn when a due date is this many days away or fewer; each threshold crossed
    /// updates the warning.
    pub warn_days: Vec<u32>,
    /// Overdue this many days: the overdue alert escalates from minor to major.
    pub inspection_grace_days: u32,
    pub maintenance_grace_days: u32,
}

impl Default for DueConfig {
    fn default() -> Self {
        DueConfig {
            warn_days: vec![30, 7],
            inspection_grace_days: 7,
            maintenance_grace_days: 7,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_config_keeps_the_other_defaults() {
        let cfg: AlertConfig = serde_json::from_str(
            r#"{"min_clear_s": 30, "lift": {"trapped_after_s": 120},
                "severity": {"power_loss": "critical"},
                "sterilizer": {"meal_periods": [{"name": "breakfast", "start": "06:30", "end": "09:00"}]}}"#,
        )
        .unwrap();
        assert_eq!(cfg.min_clear_s, 30);
        assert_eq!(cfg.lift.trapped_after_s, 120);
        assert_eq!(cfg.lift.trapped_outside_zone_after_s, 45);
        assert_eq!(cfg.severity_of(AlertKind::PowerLoss), Severity::Critical);
        assert_eq!(cfg.severity_of(AlertKind::Fault(3)), Severity::Critical);
        assert_eq!(cfg.severity_of(AlertKind::Fault(999)), Severity::Major);
        assert_eq!(cfg.sterilizer.meal_periods[0].start, ClockTime::hm(6, 30));
        assert_eq!(cfg.sterilizer.steam.min_temp_c, 100.0);
    }

    #[test]
    fn loads_from_toml() {
        let cfg: AlertConfig = toml::from_str(
            r#"
            min_clear_s = 120

            [lift]
            trapped_after_s = 60

            [sterilizer]
            operating_days = [1, 2, 3, 4, 5]
            dishwasher = { min_temp_c = 85.0, min_hold_s = 45 }

            [[faults.codes]]
            code = 12
            name = "brake fault"
            severity = "critical"

            [severity]
            device_offline = "major"
            "#,
        )
        .unwrap();
        assert_eq!((cfg.min_clear_s, cfg.lift.trapped_after_s), (120, 60));
        assert_eq!(cfg.sterilizer.rule(Method::Dishwasher).min_hold_s, 45);
        assert!(!cfg.sterilizer.operates_on(6));
        assert_eq!(cfg.severity_of(AlertKind::Fault(12)), Severity::Critical);
        assert_eq!(
            cfg.faults.name(1),
            "fault code 1",
            "a table given replaces the default one"
        );
        assert_eq!(cfg.severity_of(AlertKind::DeviceOffline), Severity::Major);
        assert!(
            toml::from_str::<AlertConfig>("min_clear = 1").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn unknown_fault_codes_get_a_generic_name() {
        let table = FaultTable::default();
        assert_eq!(table.name(1), "safety circuit open");
        assert_eq!(table.name(4711), "fault code 4711");
    }
}
