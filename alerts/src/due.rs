//! Inspection and maintenance due dates: warnings before, alerts after (a pure function of
//! the device's register entry and the China-local date).
use crate::alert::{AlertKind, Details, DueStage, Severity};
use crate::china::{self, Date};
use crate::config::{AlertConfig, DueConfig};
use crate::lifecycle::Condition;
use gridwatch_protocol::DeviceKind;
use serde::{Deserialize, Serialize};

/// What the alert engine needs to know about a device from the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProfile {
    pub kind: DeviceKind,
    /// False for a device out of service (停用): no overdue, offline or meal-period alerts.
    pub in_service: bool,
    pub next_inspection_due: Option<Date>,
    pub last_maintenance: Option<Date>,
    pub maintenance_interval_days: Option<u32>,
}

impl DeviceProfile {
    /// The date maintenance is next due: the last one plus the interval.
    pub fn next_maintenance_due(&self) -> Option<Date> {
        Some(china::add_days(
            self.last_maintenance?,
            self.maintenance_interval_days? as i64,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DueKind {
    Inspection,
    Maintenance,
}

/// Where one due date stands on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueState {
    pub kind: DueKind,
    pub due: Date,
    /// Days from today to the due date: negative once overdue.
    pub days_left: i64,
    pub stage: DueStage,
}

impl DueState {
    pub fn alert_kind(&self) -> AlertKind {
        match (self.kind, self.stage) {
            (DueKind::Inspection, DueStage::Upcoming { .. }) => AlertKind::InspectionDueSoon,
            (DueKind::Inspection, DueStage::Overdue { .. }) => AlertKind::InspectionOverdue,
            (DueKind::Maintenance, DueStage::Upcoming { .. }) => AlertKind::MaintenanceDueSoon,
            (DueKind::Maintenance, DueStage::Overdue { .. }) => AlertKind::MaintenanceOverdue,
        }
    }

    /// Overdue alerts escalate from minor to major when the grace period is over.
    pub fn condition(&self, cfg: &AlertConfig) -> Condition {
        let kind = self.alert_kind();
        let severity = match self.stage {
            DueStage::Overdue { beyond_grace: true } => cfg.severity_of(kind).max(Severity::Major),
            _ => cfg.severity_of(kind),
        };
        Condition {
            kind,
            severity,
            details: Details::Due {
                due: self.due,
                stage: self.stage,
            },
        }
    }
}

/// The due dates of `device` that need a warning or an alert on `today`. The due date
/// itself is the last good day: the first overdue day is the day after.
pub fn evaluate_due(device: &DeviceProfile, today: Date, cfg: &DueConfig) -> Vec<DueState> {
    if !device.in_service {
        return Vec::new();
    }
    let dates = [
        (
            DueKind::Inspection,
            device.next_inspection_due,
            cfg.inspection_grace_days,
        ),
        (
            DueKind::Maintenance,
            device.next_maintenance_due(),
            cfg.maintenance_grace_days,
        ),
    ];
    dates
        .into_iter()
        .filter_map(|(kind, due, grace)| {
            let due = due?;
            let days_left = china::days_between(today, due);
            let stage = if days_left < 0 {
                DueStage::Overdue {
                    beyond_grace: -days_left > grace as i64,
                }
            } else {
                let within_days = cfg.warn_days.iter().copied().filter(|&d| days_left <= d as i64).min()?;
                DueStage::Upcoming { within_days }
            };
            Some(DueState {
                kind,
                due,
                days_left,
                stage,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lift(next_inspection: Date, last_maintenance: Date) -> DeviceProfile {
        DeviceProfile {
            kind: DeviceKind::Lift,
            in_service: true,
            next_inspection_due: Some(next_inspection),
            last_maintenance: Some(last_maintenance),
            maintenance_interval_days: Some(15),
        }
    }

    fn stages(d: &DeviceProfile, today: Date) -> Vec<(DueKind, DueStage)> {
        evaluate_due(d, today, &DueConfig::default())
            .into_iter()
            .map(|s| (s.kind, s.stage))
            .collect()
    }

    #[test]
    fn inspection_warns_at_30_and_7_days_and_alerts_the_day_after() {
        let due = Date::constant(2026, 12, 31);
        let d = lift(due, Date::constant(2026, 12, 20));
        let insp = |today| {
            stages(&d, today)
                .into_iter()
                .find(|s| s.0 == DueKind::Inspection)
                .map(|s| s.1)
        };
        assert_eq!(insp(Date::constant(2026, 11, 30)), None); // 31 days left
        assert_eq!(
            insp(Date::constant(2026, 12, 1)),
            Some(DueStage::Upcoming { within_days: 30 })
        );
        assert_eq!(
            insp(Date::constant(2026, 12, 23)),
            Some(DueStage::Upcoming { within_days: 30 })
        );
        assert_eq!(
            insp(Date::constant(2026, 12, 24)),
            Some(DueStage::Upcoming { within_days: 7 })
        );
        assert_eq!(insp(due), Some(DueStage::Upcoming { within_days: 7 }));
        assert_eq!(
            insp(Date::constant(2027, 1, 1)),
            Some(DueStage::Overdue { beyond_grace: false })
        );
        assert_eq!(
            insp(Date::constant(2027, 1, 7)),
            Some(DueStage::Overdue { beyond_grace: false })
        );
        assert_eq!(
            insp(Date::constant(2027, 1, 8)),
            Some(DueStage::Overdue { beyond_grace: true })
        );
    }

    #[test]
    fn maintenance_is_due_interval_days_after_the_last() {
        let d = lift(Date::constant(2030, 1, 1), Date::constant(2026, 11, 1));
        assert_eq!(d.next_maintenance_due(), Some(Date::constant(2026, 11, 16)));
        let today = Date::constant(2026, 11, 17);
        assert_eq!(
            stages(&d, today),
            [(DueKind::Maintenance, DueStage::Overdue { beyond_grace: false })]
        );
        let cond = evaluate_due(&d, today, &DueConfig::default())[0].condition(&AlertConfig::default());
        assert_eq!(
            (cond.kind, cond.severity),
            (AlertKind::MaintenanceOverdue, Severity::Minor)
        );
        let later = evaluate_due(&d, Date::constant(2026, 12, 1), &DueConfig::default());
        assert_eq!(later[0].condition(&AlertConfig::default()).severity, Severity::Major);
    }

    #[test]
    fn out_of_service_or_unknown_dates_give_nothing() {
        let mut d = lift(Date::constant(2026, 1, 1), Date::constant(2026, 1, 1));
        d.in_service = false;
        assert_eq!(stages(&d, Date::constant(2026, 11, 25)), []);
        d = DeviceProfile {
            in_service: true,
            next_inspection_due: None,
            last_maintenance: None,
            ..d
        };
        assert_eq!(stages(&d, Date::constant(2026, 11, 25)), []);
    }
}
