//! A device's health badge, from its open alerts: the worst one decides. The open
//! alerts come from the alert engine's memory: read under the domain's lock it is what
//! the store holds, since every change is saved under that lock.
use super::i18n::serde_name;
use gridwatch_alerts::{Alert, AlertKind, DeviceMonitor};
use std::cmp::Reverse;

/// Worst first: the order badges and lists sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Health {
    Trapped,
    Fault,
    Offline,
    Overdue,
    DueSoon,
    Ok,
}

impl Health {
    /// The health an open alert of `kind` means.
    pub(crate) fn of_kind(kind: &AlertKind) -> Health {
        match kind {
            AlertKind::TrappedPassenger => Health::Trapped,
            AlertKind::DeviceOffline | AlertKind::GatewayOffline => Health::Offline,
            AlertKind::InspectionOverdue | AlertKind::MaintenanceOverdue => Health::Overdue,
            AlertKind::InspectionDueSoon | AlertKind::MaintenanceDueSoon => Health::DueSoon,
            _ => Health::Fault,
        }
    }

    /// The worst health of a device's open alerts; a device the engine does not know,
    /// or without open alerts, is [`Health::Ok`].
    pub(crate) fn of_device(monitor: Option<&DeviceMonitor>) -> Health {
        monitor
            .into_iter()
            .flat_map(|m| m.alerts.iter())
            .map(|a| Health::of_kind(&a.key.kind))
            .min()
            .unwrap_or(Health::Ok)
    }

    /// Its label key and CSS class.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Health::Trapped => "trapped",
            Health::Fault => "fault",
            Health::Offline => "offline",
            Health::Overdue => "overdue",
            Health::DueSoon => "due_soon",
            Health::Ok => "ok",
        }
    }

    pub(crate) fn badge(self, lang: super::Lang) -> maud::Markup {
        maud::html! { span class={ "badge health-" (self.key()) } { (lang.t(&format!("health.{}", self.key()))) } }
    }
}

/// How urgent an open alert is: trapped passengers first, then faults, then by
/// severity, then the newest.
pub(crate) fn urgency(alert: &Alert) -> (Health, Reverse<gridwatch_alerts::Severity>, Reverse<u64>) {
    (
        Health::of_kind(&alert.key.kind),
        Reverse(alert.severity),
        Reverse(alert.raised_at),
    )
}

/// An open alert as a page lists it, taken from the engine while its lock is held.
pub(crate) struct OpenAlert {
    /// As stored: `trapped_passenger`, `fault:301`...
    pub(crate) kind: String,
    pub(crate) device: String,
    pub(crate) severity: String,
    /// `raised` or `acknowledged`.
    pub(crate) state: &'static str,
    /// Device time.
    pub(crate) raised_at_ms: i64,
    pub(crate) health: Health,
}

impl OpenAlert {
    pub(crate) fn of(alert: &Alert) -> OpenAlert {
        OpenAlert {
            kind: alert.key.kind.to_string(),
            device: alert.key.device.clone(),
            severity: serde_name(&alert.severity),
            state: if alert.acknowledged_by.is_some() {
                "acknowledged"
            } else {
                "raised"
            },
            raised_at_ms: alert.raised_at as i64,
            health: Health::of_kind(&alert.key.kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_alert_decides() {
        assert!(Health::Trapped < Health::Fault && Health::DueSoon < Health::Ok);
        assert_eq!(Health::of_kind(&AlertKind::Fault(301)), Health::Fault);
        assert_eq!(Health::of_kind(&AlertKind::CycleAborted), Health::Fault);
        assert_eq!(Health::of_kind(&AlertKind::MaintenanceDueSoon), Health::DueSoon);
        assert_eq!(Health::of_device(None), Health::Ok);
    }
}
