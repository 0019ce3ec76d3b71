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
    /// How far a device's `seq` and clock may jump before the engine distrusts them.
    pub readings: ReadingsConfig,
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
            readings: ReadingsConfig::default(),
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
        // Raised by the engine, not a node: a probe value no cabinet can reach.
        (805, "temperature reading implausible", Minor),
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

    /// This config with a site's own calendar over the global one: each field the
    /// schedule sets replaces the global value, the cycle rules stay.
    pub fn with_schedule(&self, schedule: &KitchenSchedule) -> SterilizerConfig {
        SterilizerConfig {
            meal_periods: schedule
                .meal_periods
                .clone()
                .unwrap_or_else(|| self.meal_periods.clone()),
            operating_days: schedule
                .operating_days
                .clone()
                .unwrap_or_else(|| self.operating_days.clone()),
            opens: schedule.opens.unwrap_or(self.opens),
            closes: schedule.closes.unwrap_or(self.closes),
            ..self.clone()
        }
    }
}

/// A kitchen's own calendar (a using unit's, from the register): a school canteen closed
/// at weekends, a restaurant open every day. A field left out keeps the global
/// `[alerts.sterilizer]` value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KitchenSchedule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meal_periods: Option<Vec<MealPeriod>>,
    /// ISO weekdays the kitchen operates: 1 = Monday … 7 = Sunday.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operating_days: Option<Vec<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens: Option<ClockTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes: Option<ClockTime>,
}

/// A kitchen schedule that cannot be a calendar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("field operating_days: {0} is not an ISO weekday (1 = Monday … 7 = Sunday)")]
    Weekday(u8),
    #[error("field meal_periods: period {name:?} must end after it starts ({start}-{end})")]
    EmptyPeriod {
        name: String,
        start: ClockTime,
        end: ClockTime,
    },
    #[error("field meal_periods: a period needs a name")]
    UnnamedPeriod,
    #[error("fields opens/closes: the kitchen must close after it opens ({opens}-{closes})")]
    Hours { opens: ClockTime, closes: ClockTime },
}

impl KitchenSchedule {
    /// Whether the schedule sets nothing (the global one applies in full).
    pub fn is_empty(&self) -> bool {
        *self == KitchenSchedule::default()
    }

    /// Refuses weekdays outside 1–7, periods that end before they start, and closing
    /// before opening.
    pub fn check(&self) -> Result<(), ScheduleError> {
        if let Some(&day) = self.operating_days.iter().flatten().find(|d| !(1..=7).contains(*d)) {
            return Err(ScheduleError::Weekday(day));
        }
        for p in self.meal_periods.iter().flatten() {
            if p.name.trim().is_empty() {
                return Err(ScheduleError::UnnamedPeriod);
            }
            if p.end <= p.start {
                return Err(ScheduleError::EmptyPeriod {
                    name: p.name.clone(),
                    start: p.start,
                    end: p.end,
                });
            }
        }
        if let (Some(opens), Some(closes)) = (self.opens, self.closes)
            && closes <= opens
        {
            return Err(ScheduleError::Hours { opens, closes });
        }
        Ok(())
    }
}

/// A disinfection cycle is good when its peak reaches `min_temp_c` and it held the
/// target temperature at least `min_hold_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleRule {
    #[serde(deserialize_with = "finite_min_temp_c")]
    pub min_temp_c: f32,
    pub min_hold_s: u32,
}

/// Refuses NaN and infinities: every comparison with NaN is false, so a NaN target
/// would pass every cycle.
fn finite_min_temp_c<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    let value = f32::deserialize(d)?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format_args!(
            "field min_temp_c: expected a finite number of °C, found {value}"
        )))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// A gateway whose presence said online counts as present for this long after its
    /// last presence message: three of the gateway's default 30 s heartbeats.
    pub gateway_presence_after_s: u64,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            lift_after_s: 300,
            sterilizer_after_s: 300,
            gateway_after_s: 300,
            gateway_presence_after_s: 90,
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

/// The ordering rule's limits (see [`crate::monitor`] and `docs/alerts.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadingsConfig {
    /// The most readings a node can produce per second of device time. The firmware
    /// samples a lift every 100 ms and queues at most 8 messages per sample: 80/s.
    pub max_per_s: u64,
    /// A `seq` may always advance this much, whatever the device time says.
    pub seq_slack: u64,
    /// Device time going back by more than this re-bases the device's clock; smaller
    /// steps back count at the later time.
    pub clock_back_s: u64,
}

impl Default for ReadingsConfig {
    fn default() -> Self {
        ReadingsConfig {
            max_per_s: 100,
            seq_slack: 10_000,
            clock_back_s: 10,
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
    fn non_finite_thresholds_are_refused_naming_the_field() {
        for value in ["nan", "inf", "-inf"] {
            let text = format!("[sterilizer]\nsteam = {{ min_temp_c = {value}, min_hold_s = 600 }}\n");
            let err = toml::from_str::<AlertConfig>(&text).unwrap_err().to_string();
            assert!(
                err.contains("field min_temp_c: expected a finite number"),
                "{value}: {err}"
            );
        }
        let ok = "[sterilizer]\nsteam = { min_temp_c = 99.5, min_hold_s = 600 }\n";
        assert_eq!(
            toml::from_str::<AlertConfig>(ok).unwrap().sterilizer.steam.min_temp_c,
            99.5
        );
    }

    #[test]
    fn a_site_schedule_overrides_only_what_it_sets() {
        let global = SterilizerConfig::default();
        let canteen: KitchenSchedule = toml::from_str("operating_days = [1, 2, 3, 4, 5, 6]").unwrap();
        let site = global.with_schedule(&canteen);
        assert!(!site.operates_on(7) && site.operates_on(6));
        assert_eq!(
            (site.meal_periods.clone(), site.opens),
            (global.meal_periods.clone(), global.opens)
        );
        assert_eq!(global.with_schedule(&KitchenSchedule::default()), global);
        assert!(KitchenSchedule::default().is_empty() && !canteen.is_empty());
        assert_eq!(canteen.check(), Ok(()));
        let bad = KitchenSchedule {
            operating_days: Some(vec![0]),
            ..KitchenSchedule::default()
        };
        assert_eq!(bad.check(), Err(ScheduleError::Weekday(0)));
        let backwards = KitchenSchedule {
            meal_periods: Some(vec![MealPeriod {
                name: "lunch".into(),
                start: ClockTime::hm(13, 0),
                end: ClockTime::hm(11, 0),
            }]),
            ..KitchenSchedule::default()
        };
        assert!(matches!(backwards.check(), Err(ScheduleError::EmptyPeriod { .. })));
    }

    #[test]
    fn unknown_fault_codes_get_a_generic_name() {
        let table = FaultTable::default();
        assert_eq!(table.name(1), "safety circuit open");
        assert_eq!(table.name(4711), "fault code 4711");
    }
}
