//! Builders for readings on virtual time.
#![allow(dead_code)]
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::*;

/// 2026-11-25 00:00 China time (a Wednesday).
pub(crate) const DAY0: u64 = 1_795_536_000_000;
pub(crate) const S: u64 = 1_000;
pub(crate) const MIN: u64 = 60 * S;
pub(crate) const HOUR: u64 = 60 * MIN;

pub(crate) fn id(s: &str) -> DeviceId {
    DeviceId::try_from(s).unwrap()
}

pub(crate) fn idle() -> LiftStatus {
    LiftStatus::at_rest(3)
}

pub(crate) fn lift(dev: &str, seq: u64, ts: u64, body: LiftStatus) -> Reading {
    Reading::Lift(Envelope::new(id(dev), seq, ts, body))
}

pub(crate) fn event(dev: &str, seq: u64, ts: u64, event: EventKind, code: u16) -> Reading {
    Reading::Event(Envelope::new(id(dev), seq, ts, NodeEvent { event, code }))
}

pub(crate) fn steriliser_status(dev: &str, seq: u64, ts: u64) -> Reading {
    let body = SterilizerStatus {
        method: Method::Infrared,
        temp_c: 25.0,
        door: Door::Closed,
        heating: false,
        power: true,
        in_cycle: false,
    };
    Reading::Sterilizer(Envelope::new(id(dev), seq, ts, body))
}

pub(crate) fn cycle(dev: &str, seq: u64, ended: u64, peak_c: f32, hold_s: u32, outcome: CycleOutcome) -> Reading {
    let body = CycleReport {
        method: Method::Infrared,
        started: ended - 20 * MIN,
        peak_c: Some(peak_c),
        hold_s,
        outcome,
    };
    Reading::Cycle(Envelope::new(id(dev), seq, ended, body))
}

/// A dishwasher rinse of 2 minutes ending at `ended`; `peak_c: None` when the node had no
/// valid reading.
pub(crate) fn rinse(dev: &str, seq: u64, ended: u64, peak_c: Option<f32>, hold_s: u32) -> Reading {
    let body = CycleReport {
        method: Method::Dishwasher,
        started: ended - 2 * MIN,
        peak_c,
        hold_s,
        outcome: CycleOutcome::Completed,
    };
    Reading::Cycle(Envelope::new(id(dev), seq, ended, body))
}
