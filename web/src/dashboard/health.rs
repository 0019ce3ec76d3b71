//! A device's health badge, from its open alerts: the worst one decides.
use gridwatch_storage::model::AlertView;

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
    pub(crate) fn of_alert(kind: &str) -> Health {
        match kind {
            "trapped_passenger" => Health::Trapped,
            "device_offline" | "gateway_offline" => Health::Offline,
            "inspection_overdue" | "maintenance_overdue" => Health::Overdue,
            "inspection_due_soon" | "maintenance_due_soon" => Health::DueSoon,
            _ => Health::Fault,
        }
    }

    /// The worst health of these open alerts; none is [`Health::Ok`].
    pub(crate) fn of_alerts<'a>(alerts: impl IntoIterator<Item = &'a AlertView>) -> Health {
        alerts
            .into_iter()
            .map(|a| Health::of_alert(&a.kind))
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

/// How urgent an open alert is: trapped passengers first, then faults, then by severity.
pub(crate) fn urgency(alert: &AlertView) -> (Health, u8) {
    let severity = match alert.severity.as_str() {
        "critical" => 0,
        "major" => 1,
        "minor" => 2,
        _ => 3,
    };
    (Health::of_alert(&alert.kind), severity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_alert_decides() {
        assert!(Health::Trapped < Health::Fault && Health::DueSoon < Health::Ok);
        assert_eq!(Health::of_alert("fault:301"), Health::Fault);
        assert_eq!(Health::of_alert("cycle_aborted"), Health::Fault);
        assert_eq!(Health::of_alert("maintenance_due_soon"), Health::DueSoon);
        assert_eq!(Health::of_alerts([]), Health::Ok);
    }
}
