//! Readings waiting to be committed upstream, grouped into numbered batches.
//!
//! A reading stays here from the moment a node hands it over until ingest says
//! the batch holding it is committed; only then is the node told (per device,
//! the highest `seq` below which nothing is pending) that it may forget it.
//! Batches not acknowledged in time are sent again with the same number, which
//! ingest handles idempotently.
use gridwatch_protocol::batch::Reading;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct Outbox {
    waiting: VecDeque<Reading>,
    in_flight: BTreeMap<u64, InFlight>,
    next_batch: u64,
    devices: HashMap<String, DeviceState>,
}

struct InFlight {
    readings: Vec<Reading>,
    /// `None` once the connection was lost: due for resending at once.
    sent_at: Option<Instant>,
}

#[derive(Default)]
struct DeviceState {
    pending: BTreeSet<u64>,
    /// Highest seq acknowledged to the node.
    acked: u64,
    /// Highest seq committed upstream; may run ahead of `acked` while an
    /// earlier batch is still in flight.
    committed: u64,
}

/// What happened to a reading a node handed over.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Accepted {
    Queued,
    /// Already waiting here: a node resend.
    AlreadyPending,
    /// Already committed upstream: the node missed our ack, so repeat it.
    AlreadyAcked(u64),
}

impl Outbox {
    pub(crate) fn push(&mut self, reading: Reading) -> Accepted {
        let device = self.devices.entry(reading.device().to_string()).or_default();
        let seq = reading.seq();
        if seq <= device.acked {
            return Accepted::AlreadyAcked(device.acked);
        }
        if !device.pending.insert(seq) {
            return Accepted::AlreadyPending;
        }
        self.waiting.push_back(reading);
        Accepted::Queued
    }

    /// Readings not yet sent.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Readings sent or waiting but not yet committed upstream.
    pub(crate) fn unacknowledged(&self) -> usize {
        self.waiting.len() + self.in_flight.values().map(|b| b.readings.len()).sum::<usize>()
    }

    /// Takes up to `max` waiting readings into a new numbered batch.
    pub(crate) fn next_batch(&mut self, max: usize, now: Instant) -> Option<(u64, &[Reading])> {
        if self.waiting.is_empty() {
            return None;
        }
        let take = max.min(self.waiting.len());
        let readings: Vec<Reading> = self.waiting.drain(..take).collect();
        self.next_batch += 1;
        let batch = self.next_batch;
        let entry = self.in_flight.entry(batch).or_insert(InFlight {
            readings,
            sent_at: Some(now),
        });
        Some((batch, &entry.readings))
    }

    /// Batches sent longer than `after` ago (or all, after a reconnect) to send again.
    pub(crate) fn due_for_resend(&mut self, after: Duration, now: Instant) -> Vec<(u64, Vec<Reading>)> {
        self.in_flight
            .iter_mut()
            .filter(|(_, b)| b.sent_at.is_none_or(|at| now.duration_since(at) >= after))
            .map(|(id, b)| {
                b.sent_at = Some(now);
                (*id, b.readings.clone())
            })
            .collect()
    }

    /// After a reconnect nothing in flight can be trusted to arrive: send it all again.
    pub(crate) fn mark_all_for_resend(&mut self) {
        for batch in self.in_flight.values_mut() {
            batch.sent_at = None;
        }
    }

    /// Ingest committed `batch`: returns the new per-device acks for the nodes.
    pub(crate) fn ack(&mut self, batch: u64) -> Vec<(String, u64)> {
        let Some(done) = self.in_flight.remove(&batch) else {
            return Vec::new(); // a repeated ack
        };
        let mut touched = BTreeSet::new();
        for r in &done.readings {
            let device = self
                .devices
                .get_mut(r.device())
                .expect("pending readings have a device");
            device.pending.remove(&r.seq());
            device.committed = device.committed.max(r.seq());
            touched.insert(r.device());
        }
        let mut acks = Vec::new();
        for name in touched {
            let device = self.devices.get_mut(name).expect("touched devices exist");
            // Never acknowledge past a reading that is still pending.
            let below_pending = device.pending.first().map_or(u64::MAX, |p| p - 1);
            let ack = device.committed.min(below_pending);
            if ack > device.acked {
                device.acked = ack;
                acks.push((name.to_string(), ack));
            }
        }
        acks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_protocol::{DeviceId, Envelope, EventKind, NodeEvent};

    fn reading(device: &str, seq: u64) -> Reading {
        let body = NodeEvent {
            event: EventKind::AlarmButton,
            code: 0,
        };
        Reading::Event(Envelope::new(
            DeviceId::try_from(device).unwrap(),
            seq,
            1_764_061_200_000 + seq,
            body,
        ))
    }

    #[test]
    fn node_is_acked_only_after_commit_and_never_past_a_pending_reading() {
        let mut outbox = Outbox::default();
        let now = Instant::now();
        for seq in 1..=4 {
            assert_eq!(outbox.push(reading("L1", seq)), Accepted::Queued);
        }
        let (first, _) = outbox.next_batch(2, now).unwrap();
        let (second, _) = outbox.next_batch(2, now).unwrap();
        // The later batch commits first: seqs 1-2 are still pending, so no ack yet.
        assert_eq!(outbox.ack(second), vec![]);
        assert_eq!(outbox.ack(first), vec![("L1".to_string(), 4)]);
        assert_eq!(outbox.unacknowledged(), 0);
        assert_eq!(outbox.push(reading("L1", 3)), Accepted::AlreadyAcked(4));
    }

    #[test]
    fn resends_are_deduplicated_and_unacked_batches_come_back() {
        let mut outbox = Outbox::default();
        let now = Instant::now();
        outbox.push(reading("L1", 1));
        assert_eq!(outbox.push(reading("L1", 1)), Accepted::AlreadyPending);
        let (id, _) = outbox.next_batch(10, now).unwrap();
        assert!(outbox.due_for_resend(Duration::from_secs(5), now).is_empty());
        let again = outbox.due_for_resend(Duration::from_secs(5), now + Duration::from_secs(6));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, id);
        assert_eq!(outbox.ack(id), vec![("L1".to_string(), 1)]);
        assert_eq!(outbox.ack(id), vec![], "a repeated ack changes nothing");
    }
}
