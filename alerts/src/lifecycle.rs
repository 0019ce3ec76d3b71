//! The life of one alert: raised → (updated, acknowledged) → cleared, with a minimum clear
//! time so that a flapping condition updates one alert instead of raising many.
use crate::alert::{AlertEvent, AlertKey, AlertKind, Change, Details, Severity};
use crate::config::AlertConfig;
use serde::{Deserialize, Serialize};

/// A condition a rule finds present at some instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub kind: AlertKind,
    pub severity: Severity,
    pub details: Details,
}

/// An open (raised, not yet cleared) alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub key: AlertKey,
    pub severity: Severity,
    pub raised_at: u64,
    pub updated_at: u64,
    pub revision: u32,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<u64>,
    /// Since when the condition has been absent; the alert clears `min_clear` later.
    pub absent_since: Option<u64>,
    /// How often the condition came back while the alert was waiting to clear.
    pub flaps: u32,
    pub details: Details,
}

impl Alert {
    fn event(&self, change: Change, at: u64) -> AlertEvent {
        AlertEvent {
            key: self.key.clone(),
            change,
            severity: self.severity,
            raised_at: self.raised_at,
            at,
            revision: self.revision,
            acknowledged_by: self.acknowledged_by.clone(),
            details: self.details.clone(),
        }
    }

    /// When this alert will clear if its condition stays absent.
    pub fn clears_at(&self, cfg: &AlertConfig) -> Option<u64> {
        self.absent_since.map(|t| t + cfg.min_clear_ms(self.key.kind))
    }
}

/// The open alerts of one device or gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpenAlerts(Vec<Alert>);

impl OpenAlerts {
    pub fn iter(&self) -> impl Iterator<Item = &Alert> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, kind: AlertKind) -> Option<&Alert> {
        self.0.iter().find(|a| a.key.kind == kind)
    }

    /// Brings the alerts whose kind is `in_scope` in line with the conditions present at
    /// `now`: raises new ones, updates changed or returning ones, and clears those absent
    /// for the minimum clear time. Evaluating twice at the same `now` emits nothing new.
    pub fn reconcile(
        &mut self,
        subject: &str,
        present: &[Condition],
        in_scope: impl Fn(AlertKind) -> bool,
        now: u64,
        cfg: &AlertConfig,
        out: &mut Vec<AlertEvent>,
    ) {
        for cond in present {
            match self.0.iter_mut().find(|a| a.key.kind == cond.kind) {
                None => {
                    let alert = Alert {
                        key: AlertKey {
                            device: subject.to_string(),
                            kind: cond.kind,
                        },
                        severity: cond.severity,
                        raised_at: now,
                        updated_at: now,
                        revision: 0,
                        acknowledged_by: None,
                        acknowledged_at: None,
                        absent_since: None,
                        flaps: 0,
                        details: cond.details.clone(),
                    };
                    out.push(alert.event(Change::Raised, now));
                    self.0.push(alert);
                }
                Some(alert) => {
                    let returned = alert.absent_since.take().is_some();
                    if returned {
                        alert.flaps += 1;
                    }
                    let changed = alert.severity != cond.severity || alert.details != cond.details;
                    if changed {
                        alert.severity = cond.severity;
                        alert.details = cond.details.clone();
                    }
                    if returned || changed {
                        alert.revision += 1;
                        // Never before its own last change: a node's replay can bring
                        // device times older than an alert raised on the ingest clock.
                        alert.updated_at = now.max(alert.updated_at);
                        out.push(alert.event(Change::Updated, alert.updated_at));
                    }
                }
            }
        }
        self.0.retain_mut(|alert| {
            let kind = alert.key.kind;
            if !in_scope(kind) || present.iter().any(|c| c.kind == kind) {
                return true;
            }
            // Absence counts from the alert's last change at the earliest, so an alert
            // never clears at a time before it was raised or updated.
            let since = *alert.absent_since.get_or_insert(now.max(alert.updated_at));
            if now.saturating_sub(since) < cfg.min_clear_ms(kind) {
                return true;
            }
            alert.revision += 1;
            out.push(alert.event(Change::Cleared, now));
            false
        });
    }

    /// Records who acknowledged the alert; `None` when it is not open or already acknowledged.
    pub fn acknowledge(&mut self, kind: AlertKind, by: &str, at: u64) -> Option<AlertEvent> {
        let alert = self.0.iter_mut().find(|a| a.key.kind == kind)?;
        if alert.acknowledged_by.is_some() {
            return None;
        }
        alert.acknowledged_by = Some(by.to_string());
        alert.acknowledged_at = Some(at);
        alert.revision += 1;
        Some(alert.event(Change::Acknowledged, at))
    }

    /// The subject's clock went back to `ts`: clear timers started after it restart there.
    pub fn rebase(&mut self, ts: u64) {
        for alert in &mut self.0 {
            if let Some(t) = alert.absent_since.as_mut() {
                *t = (*t).min(ts);
            }
        }
    }

    /// The earliest instant an open alert clears if nothing changes.
    pub fn next_clear(&self, cfg: &AlertConfig) -> Option<u64> {
        self.0.iter().filter_map(|a| a.clears_at(cfg)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(kind: AlertKind, floor: i16) -> Condition {
        Condition {
            kind,
            severity: kind.default_severity(),
            details: Details::Lift { floor },
        }
    }

    fn run(alerts: &mut OpenAlerts, present: &[Condition], now: u64) -> Vec<Change> {
        let mut out = Vec::new();
        alerts.reconcile("L1", present, |_| true, now, &AlertConfig::default(), &mut out);
        out.into_iter().map(|e| e.change).collect()
    }

    #[test]
    fn an_alert_never_clears_before_it_was_raised_when_device_time_goes_back() {
        let k = AlertKind::PowerLoss;
        let min_clear = AlertConfig::default().min_clear_ms(k);
        let mut a = OpenAlerts::default();
        let raised = 10 * 60_000;
        assert_eq!(run(&mut a, &[cond(k, 1)], raised), [Change::Raised]);
        // A replay brings readings from five minutes before the raise, condition absent.
        let mut out = Vec::new();
        let cfg = AlertConfig::default();
        a.reconcile("L1", &[], |_| true, raised - 5 * 60_000, &cfg, &mut out);
        a.reconcile("L1", &[], |_| true, raised - 5 * 60_000 + min_clear, &cfg, &mut out);
        assert!(out.is_empty(), "absent since the raise at the earliest");
        a.reconcile("L1", &[], |_| true, raised + min_clear, &cfg, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].change, out[0].at), (Change::Cleared, raised + min_clear));
    }

    #[test]
    fn flapping_condition_updates_one_alert_and_clears_after_min_clear() {
        let k = AlertKind::PowerLoss;
        let mut a = OpenAlerts::default();
        assert_eq!(run(&mut a, &[cond(k, 1)], 0), [Change::Raised]);
        assert_eq!(run(&mut a, &[cond(k, 1)], 1_000), []);
        assert_eq!(run(&mut a, &[], 2_000), []); // absent: clear timer starts
        assert_eq!(run(&mut a, &[cond(k, 1)], 30_000), [Change::Updated]); // came back: flap
        assert_eq!(a.get(k).unwrap().flaps, 1);
        assert_eq!(run(&mut a, &[], 40_000), []);
        assert_eq!(run(&mut a, &[], 99_999), []);
        assert_eq!(run(&mut a, &[], 100_000), [Change::Cleared]);
        assert!(a.is_empty());
        assert_eq!(run(&mut a, &[cond(k, 1)], 200_000), [Change::Raised]);
    }

    #[test]
    fn detail_or_severity_change_is_an_update_and_repeat_is_silent() {
        let k = AlertKind::StoppedOutsideDoorZone;
        let mut a = OpenAlerts::default();
        run(&mut a, &[cond(k, 1)], 0);
        assert_eq!(run(&mut a, &[cond(k, 2)], 5), [Change::Updated]);
        assert_eq!(run(&mut a, &[cond(k, 2)], 5), []);
        let mut worse = cond(k, 2);
        worse.severity = Severity::Critical;
        assert_eq!(run(&mut a, &[worse], 6), [Change::Updated]);
        assert_eq!(a.get(k).unwrap().revision, 2);
    }

    #[test]
    fn out_of_scope_alerts_are_left_alone() {
        let mut a = OpenAlerts::default();
        run(&mut a, &[cond(AlertKind::InspectionOverdue, 0)], 0);
        let mut out = Vec::new();
        a.reconcile(
            "L1",
            &[],
            |k| !k.is_due_date(),
            1_000_000,
            &AlertConfig::default(),
            &mut out,
        );
        assert!(out.is_empty() && !a.is_empty());
    }

    #[test]
    fn acknowledgement_is_recorded_once() {
        let k = AlertKind::PowerLoss;
        let mut a = OpenAlerts::default();
        run(&mut a, &[cond(k, 1)], 0);
        let ev = a.acknowledge(k, "mf-zhang", 10).unwrap();
        assert_eq!(
            (ev.change, ev.revision, ev.acknowledged_by.as_deref()),
            (Change::Acknowledged, 1, Some("mf-zhang"))
        );
        assert!(a.acknowledge(k, "mf-li", 11).is_none());
        assert!(a.acknowledge(AlertKind::DeviceOffline, "mf-li", 11).is_none());
    }
}
