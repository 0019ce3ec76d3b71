//! The alert rules the walking skeleton needs: trapped passenger, on device time.
//!
//! Fed only readings that were new to the store (so redeliveries change nothing),
//! in `seq` order per device.
use crate::model::{Accepted, AlertChange, AlertKind};
use crate::pipeline::retry;
use crate::store::Store;
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::{Door, LiftStatus, Motion, ServiceMode};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// Doors closed, occupied and not moving for this long (device time) is a trapped passenger.
    pub trapped_after: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            trapped_after: Duration::from_secs(90),
        }
    }
}

#[derive(Default)]
struct LiftWatch {
    last_seq: u64,
    /// Device time at which the trapped condition began.
    trapped_since: Option<u64>,
    raised: bool,
}

pub struct Alerting {
    config: AlertConfig,
    lifts: HashMap<String, LiftWatch>,
}

fn trapped_condition(s: &LiftStatus) -> bool {
    s.mode == ServiceMode::Normal && s.door == Door::Closed && s.occupied && s.motion == Motion::Stopped
}

impl Alerting {
    pub fn new(config: AlertConfig) -> Self {
        Self {
            config,
            lifts: HashMap::new(),
        }
    }

    /// Feeds only the readings that were new to the store, in seq order per device,
    /// so a redelivered or replayed reading can never raise a second alert.
    pub async fn on_committed(&mut self, store: &Store, accepted: &[Accepted], mut new: Vec<usize>) {
        new.sort_by(|a, b| {
            let (ra, rb) = (&accepted[*a].reading, &accepted[*b].reading);
            (ra.device(), ra.seq()).cmp(&(rb.device(), rb.seq()))
        });
        let changes: Vec<_> = new.iter().filter_map(|i| self.observe(&accepted[*i].reading)).collect();
        if changes.is_empty() {
            return;
        }
        for change in &changes {
            tracing::info!(?change, "alert");
        }
        retry("apply_alerts", || store.apply_alerts(&changes)).await;
    }

    pub fn observe(&mut self, reading: &Reading) -> Option<AlertChange> {
        let Reading::Lift(e) = reading else { return None };
        let watch = self.lifts.entry(e.device.to_string()).or_default();
        if e.seq <= watch.last_seq {
            return None; // older than what we already applied
        }
        watch.last_seq = e.seq;
        if !trapped_condition(&e.body) {
            watch.trapped_since = None;
            if std::mem::take(&mut watch.raised) {
                return Some(AlertChange::Clear {
                    device: e.device.to_string(),
                    kind: AlertKind::TrappedPassenger,
                    at_ms: e.ts,
                });
            }
            return None;
        }
        let since = *watch.trapped_since.get_or_insert(e.ts);
        let trapped_for = e.ts.saturating_sub(since);
        if !watch.raised && trapped_for >= self.config.trapped_after.as_millis() as u64 {
            watch.raised = true;
            return Some(AlertChange::Raise {
                device: e.device.to_string(),
                kind: AlertKind::TrappedPassenger,
                severity: "critical",
                at_ms: e.ts,
                detail: format!(
                    "doors closed, passenger present, car stopped at floor {} for {} s",
                    e.body.floor,
                    trapped_for / 1000
                ),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_protocol::{DeviceId, Envelope, Power};

    fn lift(seq: u64, secs: u64, occupied: bool) -> Reading {
        let body = LiftStatus {
            mode: ServiceMode::Normal,
            motion: Motion::Stopped,
            door: Door::Closed,
            door_zone: false,
            floor: 3,
            occupied,
            alarm: false,
            fault: 0,
            power: Power::Mains,
            runs: 0,
            door_cycles: 0,
        };
        Reading::Lift(Envelope::new(
            DeviceId::try_from("L1").unwrap(),
            seq,
            1_764_061_200_000 + secs * 1000,
            body,
        ))
    }

    #[test]
    fn raises_once_after_threshold_on_device_time_and_clears() {
        let mut a = Alerting::new(AlertConfig::default());
        assert_eq!(a.observe(&lift(1, 0, true)), None);
        assert_eq!(a.observe(&lift(2, 89, true)), None);
        assert!(matches!(a.observe(&lift(3, 90, true)), Some(AlertChange::Raise { .. })));
        assert_eq!(a.observe(&lift(4, 100, true)), None, "one alert, not one per reading");
        assert_eq!(a.observe(&lift(3, 90, true)), None, "a redelivery changes nothing");
        assert!(matches!(
            a.observe(&lift(5, 110, false)),
            Some(AlertChange::Clear { .. })
        ));
    }

    #[test]
    fn an_empty_car_is_not_trapped() {
        let mut a = Alerting::new(AlertConfig::default());
        for (seq, secs) in [(1, 0), (2, 200)] {
            assert_eq!(a.observe(&lift(seq, secs, false)), None);
        }
    }
}
