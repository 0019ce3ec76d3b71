//! From decoded field values to the protocol's readings, the way a node reports:
//! a status reading on change (beyond a field's deadband) and as a heartbeat, and
//! events on edges (alarm pressed, fault raised or cleared, power lost or restored).
use super::map::{Meaning, Value};
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::{
    DeviceId, DeviceKind, Door, Envelope, EventKind, LiftStatus, Method, Motion, NodeEvent, Power, ServiceMode,
    SterilizerStatus,
};

/// Numbers a device's readings: the gateway's start count in the high 32 bits, a
/// counter from 1 in the low ones, so no seq is reused after a restart.
#[derive(Debug)]
pub(crate) struct SeqSource {
    epoch: u32,
    next: u32,
}

impl SeqSource {
    pub(crate) fn new(epoch: u32) -> Self {
        Self { epoch, next: 1 }
    }

    fn next(&mut self) -> u64 {
        let seq = (u64::from(self.epoch) << 32) | u64::from(self.next);
        self.next = self
            .next
            .checked_add(1)
            .expect("fewer than 2^32 readings per device and start");
        seq
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    Lift(LiftStatus),
    Sterilizer(SterilizerStatus),
}

pub(crate) struct Tracker {
    device: DeviceId,
    kind: DeviceKind,
    method: Method,
    seq: SeqSource,
    heartbeat_ms: u64,
    last: Option<(Status, u64)>,
}

impl Tracker {
    pub(crate) fn new(
        device: DeviceId,
        kind: DeviceKind,
        method: Option<Method>,
        seq: SeqSource,
        heartbeat_ms: u64,
    ) -> Self {
        Self {
            device,
            kind,
            method: method.unwrap_or(Method::Dishwasher),
            seq,
            heartbeat_ms,
            last: None,
        }
    }

    /// The readings one poll's values make at gateway time `now_ms`.
    pub(crate) fn update(&mut self, values: &[(Meaning, Value, f64)], now_ms: u64) -> Vec<Reading> {
        let status = self.status_of(values);
        let previous = self.last.map(|(s, _)| s);
        let due = match self.last {
            None => true,
            Some((last, sent_ms)) => {
                changed(&last, &status, values) || now_ms.saturating_sub(sent_ms) >= self.heartbeat_ms
            }
        };
        let mut readings = Vec::new();
        if due {
            let seq = self.seq.next();
            let device = self.device.clone();
            readings.push(match status {
                Status::Lift(s) => Reading::Lift(Envelope::new(device, seq, now_ms, s)),
                Status::Sterilizer(s) => Reading::Sterilizer(Envelope::new(device, seq, now_ms, s)),
            });
            self.last = Some((status, now_ms));
        }
        for (event, code) in edges(previous.as_ref(), &status) {
            let seq = self.seq.next();
            readings.push(Reading::Event(Envelope::new(
                self.device.clone(),
                seq,
                now_ms,
                NodeEvent { event, code },
            )));
        }
        readings
    }

    fn status_of(&self, values: &[(Meaning, Value, f64)]) -> Status {
        match self.kind {
            DeviceKind::Lift => {
                let mut s = LiftStatus::at_rest(0);
                for (meaning, value, _) in values {
                    apply_lift(&mut s, *meaning, *value);
                }
                Status::Lift(s)
            }
            DeviceKind::Sterilizer => {
                let mut s = SterilizerStatus {
                    method: self.method,
                    temp_c: 0.0,
                    door: Door::Closed,
                    heating: false,
                    power: true,
                    in_cycle: false,
                };
                for (meaning, value, _) in values {
                    apply_sterilizer(&mut s, *meaning, *value);
                }
                Status::Sterilizer(s)
            }
        }
    }
}

fn number(value: Value) -> f64 {
    match value {
        Value::Number(n) => n,
        Value::Flag(b) => f64::from(u8::from(b)),
        Value::Label(_) => 0.0,
    }
}

fn flag(value: Value) -> bool {
    match value {
        Value::Flag(b) => b,
        other => number(other) != 0.0,
    }
}

fn label(value: Value) -> &'static str {
    match value {
        Value::Label(l) => l,
        _ => "",
    }
}

fn door(value: Value) -> Door {
    if label(value) == "open" {
        Door::Open
    } else {
        Door::Closed
    }
}

fn apply_lift(s: &mut LiftStatus, meaning: Meaning, value: Value) {
    // `as` saturates: a value outside the field's range reads as its nearest bound.
    match meaning {
        Meaning::Floor => s.floor = number(value).round() as i16,
        Meaning::Motion => {
            s.motion = match label(value) {
                "up" => Motion::Up,
                "down" => Motion::Down,
                _ => Motion::Stopped,
            }
        }
        Meaning::Door => s.door = door(value),
        Meaning::DoorZone => s.door_zone = flag(value),
        Meaning::Occupied => s.occupied = flag(value),
        Meaning::Alarm => s.alarm = flag(value),
        Meaning::Fault => s.fault = number(value).round() as u16,
        Meaning::Mode => {
            s.mode = match label(value) {
                "inspection" => ServiceMode::Inspection,
                "fire" => ServiceMode::Fire,
                "out_of_service" => ServiceMode::OutOfService,
                _ => ServiceMode::Normal,
            }
        }
        Meaning::Power => {
            s.power = if label(value) == "battery" {
                Power::Battery
            } else {
                Power::Mains
            }
        }
        Meaning::Runs => s.runs = number(value).round() as u32,
        Meaning::DoorCycles => s.door_cycles = number(value).round() as u32,
        Meaning::TempC | Meaning::Heating | Meaning::InCycle => {}
    }
}

fn apply_sterilizer(s: &mut SterilizerStatus, meaning: Meaning, value: Value) {
    match meaning {
        Meaning::TempC => s.temp_c = number(value) as f32,
        Meaning::Door => s.door = door(value),
        Meaning::Heating => s.heating = flag(value),
        Meaning::Power => s.power = flag(value),
        Meaning::InCycle => s.in_cycle = flag(value),
        _ => {}
    }
}

/// Whether `new` differs from `last` by more than the deadbands of the fields' sources.
fn changed(last: &Status, new: &Status, values: &[(Meaning, Value, f64)]) -> bool {
    let deadband = |m: Meaning| {
        values
            .iter()
            .filter(|(meaning, _, _)| *meaning == m)
            .map(|(_, _, d)| *d)
            .fold(0.0, f64::max)
    };
    match (last, new) {
        (Status::Lift(a), Status::Lift(b)) => a != b,
        (Status::Sterilizer(a), Status::Sterilizer(b)) => {
            let band = deadband(Meaning::TempC);
            let temp_moved = if band > 0.0 {
                f64::from((a.temp_c - b.temp_c).abs()) >= band
            } else {
                a.temp_c != b.temp_c
            };
            temp_moved || SterilizerStatus { temp_c: 0.0, ..*a } != SterilizerStatus { temp_c: 0.0, ..*b }
        }
        _ => true,
    }
}

/// The events between two consecutive statuses (none for the first one).
fn edges(previous: Option<&Status>, new: &Status) -> Vec<(EventKind, u16)> {
    let mut events = Vec::new();
    match (previous, new) {
        (Some(Status::Lift(a)), Status::Lift(b)) => {
            if b.alarm && !a.alarm {
                events.push((EventKind::AlarmButton, 0));
            }
            if a.fault != b.fault {
                if a.fault != 0 {
                    events.push((EventKind::FaultCleared, a.fault));
                }
                if b.fault != 0 {
                    events.push((EventKind::FaultRaised, b.fault));
                }
            }
            match (a.power, b.power) {
                (Power::Mains, Power::Battery) => events.push((EventKind::PowerLost, 0)),
                (Power::Battery, Power::Mains) => events.push((EventKind::PowerRestored, 0)),
                _ => {}
            }
        }
        (Some(Status::Sterilizer(a)), Status::Sterilizer(b)) => match (a.power, b.power) {
            (true, false) => events.push((EventKind::PowerLost, 0)),
            (false, true) => events.push((EventKind::PowerRestored, 0)),
            _ => {}
        },
        _ => {}
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lift(tracker: &mut Tracker, alarm: bool, fault: f64, now_ms: u64) -> Vec<Reading> {
        let values = [
            (Meaning::Floor, Value::Number(3.0), 0.0),
            (Meaning::Door, Value::Label("closed"), 0.0),
            (Meaning::Alarm, Value::Flag(alarm), 0.0),
            (Meaning::Fault, Value::Number(fault), 0.0),
        ];
        tracker.update(&values, now_ms)
    }

    fn events(readings: &[Reading]) -> Vec<(EventKind, u16)> {
        readings
            .iter()
            .filter_map(|r| match r {
                Reading::Event(e) => Some((e.body.event, e.body.code)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn status_on_change_and_heartbeat_events_on_edges_seq_in_the_epoch() {
        let device = DeviceId::try_from("L-7").unwrap();
        let mut t = Tracker::new(device, DeviceKind::Lift, None, SeqSource::new(5), 10_000);
        let first = lift(&mut t, false, 0.0, 0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].seq(), (5 << 32) | 1);
        assert!(lift(&mut t, false, 0.0, 1_000).is_empty(), "nothing changed");
        let pressed = lift(&mut t, true, 0.0, 2_000);
        assert_eq!(events(&pressed), vec![(EventKind::AlarmButton, 0)]);
        let faulted = lift(&mut t, true, 31.0, 3_000);
        assert_eq!(events(&faulted), vec![(EventKind::FaultRaised, 31)]);
        let changed = lift(&mut t, true, 32.0, 4_000);
        assert_eq!(
            events(&changed),
            vec![(EventKind::FaultCleared, 31), (EventKind::FaultRaised, 32)]
        );
        let heartbeat = lift(&mut t, true, 32.0, 14_000);
        assert_eq!(heartbeat.len(), 1, "a heartbeat status after 10 s");
        let seqs: Vec<u64> = [first, pressed, faulted, changed, heartbeat]
            .iter()
            .flatten()
            .map(|r| r.seq() & 0xffff_ffff)
            .collect();
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    }

    #[test]
    fn temperature_moves_within_the_deadband_make_no_reading() {
        let device = DeviceId::try_from("S-1").unwrap();
        let mut t = Tracker::new(
            device,
            DeviceKind::Sterilizer,
            Some(Method::Dishwasher),
            SeqSource::new(1),
            60_000,
        );
        let at = |temp: f64| {
            [
                (Meaning::TempC, Value::Number(temp), 1.0),
                (Meaning::Door, Value::Label("closed"), 0.0),
            ]
        };
        assert_eq!(t.update(&at(60.0), 0).len(), 1);
        assert!(t.update(&at(60.8), 1_000).is_empty());
        assert_eq!(t.update(&at(61.5), 2_000).len(), 1);
    }
}
