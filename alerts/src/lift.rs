//! Lift rules: what a lift's last known state says at a given instant.
//!
//! The tracker keeps the last status plus, for each timed rule, the device time since
//! which its condition has held; [`LiftTracker::conditions`] then decides at any `now`.
use crate::alert::{AlertKind, Details, TrappedReason};
use crate::config::AlertConfig;
use crate::lifecycle::Condition;
use gridwatch_protocol::{Door, EventKind, LiftStatus, Motion, NodeEvent, Power, ServiceMode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiftTracker {
    pub status: Option<LiftStatus>,
    /// Normal service, stopped, doors closed, passenger inside.
    pub enclosed_since: Option<u64>,
    /// Normal service, stopped outside the door zone.
    pub outside_zone_since: Option<u64>,
    /// Normal service, stopped outside the door zone, passenger inside.
    pub outside_zone_occupied_since: Option<u64>,
    /// Alarm pressed while stopped with doors closed; released when the doors open or the car moves.
    pub alarm_latched_at: Option<u64>,
    /// A door-open-while-running event from the node: present at that instant only.
    pub door_open_running_event_at: Option<u64>,
}

fn hold_since(since: &mut Option<u64>, holds: bool, at: u64) {
    match (holds, *since) {
        (true, None) => *since = Some(at),
        (false, Some(_)) => *since = None,
        _ => {}
    }
}

impl LiftTracker {
    pub fn apply_status(&mut self, s: LiftStatus, at: u64) {
        let normal = s.mode == ServiceMode::Normal;
        let stopped = s.motion == Motion::Stopped;
        let closed = s.door == Door::Closed;
        hold_since(&mut self.enclosed_since, normal && stopped && closed && s.occupied, at);
        hold_since(&mut self.outside_zone_since, normal && stopped && !s.door_zone, at);
        hold_since(
            &mut self.outside_zone_occupied_since,
            normal && stopped && !s.door_zone && s.occupied,
            at,
        );
        if !(normal && stopped && closed) {
            self.alarm_latched_at = None;
        } else if s.alarm && self.alarm_latched_at.is_none() {
            self.alarm_latched_at = Some(at);
        }
        self.status = Some(s);
    }

    /// Events the node detected at the edge update the same state a status would.
    pub fn apply_event(&mut self, e: NodeEvent, at: u64) {
        let Some(mut s) = self.status else {
            // Without a status there is no state to amend; the next status brings it.
            if e.event == EventKind::DoorOpenWhileRunning {
                self.door_open_running_event_at = Some(at);
            }
            return;
        };
        match e.event {
            EventKind::FaultRaised => s.fault = e.code,
            EventKind::FaultCleared if e.code == 0 || e.code == s.fault => s.fault = 0,
            EventKind::FaultCleared => {}
            EventKind::AlarmButton => s.alarm = true,
            EventKind::DoorOpenWhileRunning => self.door_open_running_event_at = Some(at),
            EventKind::StoppedOutsideDoorZone => {
                s.motion = Motion::Stopped;
                s.door_zone = false;
            }
            EventKind::PowerLost => s.power = Power::Battery,
            EventKind::PowerRestored => s.power = Power::Mains,
            EventKind::BufferOverflow => {}
        }
        self.apply_status(s, at);
        if e.event == EventKind::AlarmButton {
            // A press is momentary; the latch keeps it, the status must not.
            if let Some(st) = self.status.as_mut() {
                st.alarm = false;
            }
        }
    }

    /// The lift conditions present at `now`. Inspection and out-of-service modes raise
    /// nothing; fire service keeps only faults and power loss (firefighters drive the car).
    pub fn conditions(&self, now: u64, cfg: &AlertConfig, out: &mut Vec<Condition>) {
        let Some(s) = self.status else {
            if self.door_open_running_event_at.is_some_and(|t| now <= t) {
                out.push(cond(cfg, AlertKind::DoorOpenWhileRunning, Details::Lift { floor: 0 }));
            }
            return;
        };
        if matches!(s.mode, ServiceMode::Inspection | ServiceMode::OutOfService) {
            return;
        }
        let floor = Details::Lift { floor: s.floor };
        if s.fault != 0 {
            let details = Details::Fault {
                code: s.fault,
                name: cfg.faults.name(s.fault),
            };
            out.push(cond(cfg, AlertKind::Fault(s.fault), details));
        }
        if s.power == Power::Battery {
            out.push(cond(cfg, AlertKind::PowerLoss, floor.clone()));
        }
        if s.mode != ServiceMode::Normal {
            return;
        }
        let elapsed = |since: Option<u64>, after_s: u64| since.is_some_and(|t| now >= t + after_s * 1000);
        let running_open = s.motion != Motion::Stopped && s.door == Door::Open;
        if running_open || self.door_open_running_event_at.is_some_and(|t| now <= t) {
            out.push(cond(cfg, AlertKind::DoorOpenWhileRunning, floor.clone()));
        }
        if elapsed(self.outside_zone_since, cfg.lift.stopped_outside_zone_after_s) {
            out.push(cond(cfg, AlertKind::StoppedOutsideDoorZone, floor));
        }
        let reason = if self.alarm_latched_at.is_some() {
            Some(TrappedReason::AlarmButton)
        } else if elapsed(self.outside_zone_occupied_since, cfg.lift.trapped_outside_zone_after_s) {
            Some(TrappedReason::StoppedOutsideDoorZone)
        } else if elapsed(self.enclosed_since, cfg.lift.trapped_after_s) {
            Some(TrappedReason::DoorsClosedNotMoving)
        } else {
            None
        };
        if let Some(reason) = reason {
            out.push(cond(
                cfg,
                AlertKind::TrappedPassenger,
                Details::Trapped { floor: s.floor, reason },
            ));
        }
    }

    /// The next instant after `after` at which a timed lift rule can start to hold.
    pub fn next_deadline(&self, after: u64, cfg: &AlertConfig) -> Option<u64> {
        let l = &cfg.lift;
        [
            self.enclosed_since.map(|t| t + l.trapped_after_s * 1000),
            self.outside_zone_since
                .map(|t| t + l.stopped_outside_zone_after_s * 1000),
            self.outside_zone_occupied_since
                .map(|t| t + l.trapped_outside_zone_after_s * 1000),
            // The instant after a momentary event, so that its alert starts to clear.
            self.door_open_running_event_at.map(|t| t + 1),
        ]
        .into_iter()
        .flatten()
        .filter(|&t| t > after)
        .min()
    }
}

fn cond(cfg: &AlertConfig, kind: AlertKind, details: Details) -> Condition {
    Condition {
        kind,
        severity: cfg.severity_of(kind),
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn idle() -> LiftStatus {
        LiftStatus::at_rest(3)
    }

    fn kinds(t: &LiftTracker, now: u64) -> Vec<AlertKind> {
        let mut out = Vec::new();
        t.conditions(now, &AlertConfig::default(), &mut out);
        out.into_iter().map(|c| c.kind).collect()
    }

    fn trapped_reason(t: &LiftTracker, now: u64) -> Option<TrappedReason> {
        let mut out = Vec::new();
        t.conditions(now, &AlertConfig::default(), &mut out);
        out.into_iter().find_map(|c| match c.details {
            Details::Trapped { reason, .. } => Some(reason),
            _ => None,
        })
    }

    #[test]
    fn passenger_behind_closed_doors_is_trapped_after_90_s() {
        let mut t = LiftTracker::default();
        t.apply_status(
            LiftStatus {
                occupied: true,
                ..idle()
            },
            1_000,
        );
        assert_eq!(trapped_reason(&t, 90_999), None);
        assert_eq!(trapped_reason(&t, 91_000), Some(TrappedReason::DoorsClosedNotMoving));
        assert_eq!(t.next_deadline(1_000, &AlertConfig::default()), Some(91_000));
        // A heartbeat with the same state keeps the original start.
        t.apply_status(
            LiftStatus {
                occupied: true,
                ..idle()
            },
            60_000,
        );
        assert_eq!(trapped_reason(&t, 91_000), Some(TrappedReason::DoorsClosedNotMoving));
        t.apply_status(
            LiftStatus {
                occupied: true,
                door: Door::Open,
                ..idle()
            },
            95_000,
        );
        assert_eq!(trapped_reason(&t, 200_000), None);
    }

    #[test]
    fn stopped_outside_door_zone_alerts_after_45_s_and_traps_a_passenger() {
        let mut t = LiftTracker::default();
        t.apply_status(
            LiftStatus {
                door_zone: false,
                door: Door::Open,
                ..idle()
            },
            0,
        );
        assert_eq!(kinds(&t, 44_999), []);
        assert_eq!(kinds(&t, 45_000), [AlertKind::StoppedOutsideDoorZone]);
        t.apply_status(
            LiftStatus {
                door_zone: false,
                door: Door::Open,
                occupied: true,
                ..idle()
            },
            50_000,
        );
        assert_eq!(trapped_reason(&t, 94_999), None);
        assert_eq!(trapped_reason(&t, 95_000), Some(TrappedReason::StoppedOutsideDoorZone));
    }

    #[test]
    fn alarm_while_stopped_with_doors_closed_traps_at_once_until_doors_open() {
        let mut t = LiftTracker::default();
        t.apply_status(idle(), 0);
        t.apply_event(
            NodeEvent {
                event: EventKind::AlarmButton,
                code: 0,
            },
            5_000,
        );
        assert_eq!(trapped_reason(&t, 5_000), Some(TrappedReason::AlarmButton));
        t.apply_status(idle(), 6_000); // button released: still latched
        assert_eq!(trapped_reason(&t, 6_000), Some(TrappedReason::AlarmButton));
        t.apply_status(
            LiftStatus {
                door: Door::Open,
                ..idle()
            },
            7_000,
        );
        assert_eq!(trapped_reason(&t, 7_000), None);
        // Pressed with the doors open: not trapped.
        t.apply_status(
            LiftStatus {
                door: Door::Open,
                alarm: true,
                ..idle()
            },
            8_000,
        );
        assert_eq!(trapped_reason(&t, 8_000), None);
    }

    #[test]
    fn door_open_while_running_from_status_or_event() {
        let mut t = LiftTracker::default();
        t.apply_status(
            LiftStatus {
                motion: Motion::Up,
                door: Door::Open,
                ..idle()
            },
            0,
        );
        assert_eq!(kinds(&t, 0), [AlertKind::DoorOpenWhileRunning]);
        t.apply_status(
            LiftStatus {
                motion: Motion::Up,
                ..idle()
            },
            1_000,
        );
        assert_eq!(kinds(&t, 1_000), []);
        t.apply_event(
            NodeEvent {
                event: EventKind::DoorOpenWhileRunning,
                code: 0,
            },
            2_000,
        );
        assert_eq!(kinds(&t, 2_000), [AlertKind::DoorOpenWhileRunning]);
        assert_eq!(kinds(&t, 2_001), []);
        assert_eq!(t.next_deadline(2_000, &AlertConfig::default()), Some(2_001));
    }

    #[test]
    fn faults_and_power_loss_from_status_and_events() {
        let mut t = LiftTracker::default();
        t.apply_status(LiftStatus { fault: 1, ..idle() }, 0);
        assert_eq!(kinds(&t, 0), [AlertKind::Fault(1)]);
        t.apply_event(
            NodeEvent {
                event: EventKind::FaultCleared,
                code: 1,
            },
            1,
        );
        t.apply_event(
            NodeEvent {
                event: EventKind::FaultRaised,
                code: 4711,
            },
            2,
        );
        t.apply_event(
            NodeEvent {
                event: EventKind::PowerLost,
                code: 0,
            },
            3,
        );
        let mut out = Vec::new();
        t.conditions(3, &AlertConfig::default(), &mut out);
        assert_eq!(
            out[0].details,
            Details::Fault {
                code: 4711,
                name: "fault code 4711".into()
            }
        );
        assert_eq!(out[1].kind, AlertKind::PowerLoss);
        t.apply_event(
            NodeEvent {
                event: EventKind::PowerRestored,
                code: 0,
            },
            4,
        );
        assert_eq!(kinds(&t, 4), [AlertKind::Fault(4711)]);
    }

    #[test]
    fn inspection_and_out_of_service_raise_nothing_fire_keeps_faults() {
        let mut t = LiftTracker::default();
        let bad = LiftStatus {
            fault: 1,
            occupied: true,
            door_zone: false,
            power: Power::Battery,
            ..idle()
        };
        for mode in [ServiceMode::Inspection, ServiceMode::OutOfService] {
            t.apply_status(LiftStatus { mode, ..bad }, 0);
            assert_eq!(kinds(&t, 1_000_000), [], "{mode:?}");
        }
        t.apply_status(
            LiftStatus {
                mode: ServiceMode::Fire,
                ..bad
            },
            0,
        );
        assert_eq!(kinds(&t, 1_000_000), [AlertKind::Fault(1), AlertKind::PowerLoss]);
    }
}
