//! The delivery buffer: every reading gets the next per-device `seq` and waits here,
//! mirrored to persistent storage, until the gateway acknowledges it.
//!
//! Policy:
//! - `seq` starts at 1 and never repeats or goes back, across resets too: recovery
//!   takes the larger of the reserved high-water mark in the state block and the
//!   highest seq found in the slots, and a record is written before it can be sent.
//! - `NodeAck { seq }` drops every record `<= seq` (the ack is clamped to what exists).
//! - When the buffer is full, the oldest record is dropped and counted; when an ack
//!   makes room again, a `NodeEvent { BufferOverflow, code: n }` reports the n drops.
//! - A storage failure never blocks delivery: the record stays in RAM and the failure
//!   is counted in [`OutboxStats::storage_errors`].
use crate::record::{NodeMessage, Record};
use crate::storage::{Layout, PersistedState, storage_bytes};
use embedded_storage::Storage;
use gridwatch_protocol::{EventKind, NodeEvent};
use heapless::Deque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxError<E> {
    Storage(E),
    /// The storage device is smaller than `base + Outbox::STORAGE_BYTES`.
    StorageTooSmall {
        needed: usize,
        capacity: usize,
    },
}

/// Counters for diagnostics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStats {
    pub len: usize,
    pub capacity: usize,
    pub next_seq: u64,
    pub acked: u64,
    pub boots: u32,
    pub dropped_total: u32,
    pub dropped_unreported: u32,
    /// Unreadable live records found at recovery (also counted as dropped).
    pub lost_at_recovery: u32,
    pub storage_errors: u32,
}

/// A ring of at most `N` unacknowledged records, persisted in `S`.
pub struct Outbox<S, const N: usize> {
    storage: S,
    layout: Layout,
    ring: Deque<Record, N>,
    state: PersistedState,
    lost_at_recovery: u32,
    storage_errors: u32,
}

impl<S: Storage, const N: usize> Outbox<S, N> {
    /// Bytes of storage the outbox occupies from its base offset.
    pub const STORAGE_BYTES: usize = storage_bytes(N);
    // A torn write destroys the slot being overwritten; with N >= 2 the newest
    // issued seq always survives in another slot.
    const CAPACITY_OK: () = assert!(N >= 2, "an outbox needs room for at least two records");

    /// Recovers the buffer from `storage` at offset `base` (fresh memory gives an empty
    /// buffer starting at seq 1) and counts one more boot.
    pub fn open(mut storage: S, base: u32) -> Result<Self, OutboxError<S::Error>> {
        let () = Self::CAPACITY_OK;
        let needed = base as usize + Self::STORAGE_BYTES;
        if storage.capacity() < needed {
            return Err(OutboxError::StorageTooSmall {
                needed,
                capacity: storage.capacity(),
            });
        }
        let layout = Layout { base, capacity: N };
        let mut state = layout
            .read_state(&mut storage)
            .map_err(OutboxError::Storage)?
            .unwrap_or_default();
        let mut live: heapless::Vec<Record, N> = heapless::Vec::new();
        let mut highest_seq = state.next_seq.saturating_sub(1);
        for slot in 0..N {
            let Some(record) = layout.read_slot(&mut storage, slot).map_err(OutboxError::Storage)? else {
                continue;
            };
            highest_seq = highest_seq.max(record.seq);
            if record.seq > state.acked && layout.slot_of(record.seq) == slot {
                // One record per slot, so `live` cannot overflow.
                let _ = live.push(record);
            }
        }
        state.next_seq = highest_seq + 1;
        // Only the newest N unacked records can still be in the buffer.
        let oldest_live = state.next_seq.saturating_sub(N as u64).max(state.acked + 1);
        live.retain(|r| r.seq >= oldest_live);
        live.sort_unstable_by_key(|r| r.seq);
        let lost = (state.next_seq - oldest_live) as u32 - live.len() as u32;
        state.dropped_total = state.dropped_total.saturating_add(lost);
        state.dropped_unreported = state.dropped_unreported.saturating_add(lost);
        state.boots = state.boots.saturating_add(1);

        let mut ring = Deque::new();
        for record in live {
            let _ = ring.push_back(record);
        }
        let mut outbox = Self {
            storage,
            layout,
            ring,
            state,
            lost_at_recovery: lost,
            storage_errors: 0,
        };
        outbox.persist_state();
        Ok(outbox)
    }

    /// Buffers `message` with the next seq and returns that seq.
    pub fn push(&mut self, ts: u64, message: NodeMessage) -> u64 {
        let seq = self.state.next_seq;
        self.state.next_seq += 1;
        let overflowed = self.ring.is_full();
        if overflowed {
            self.ring.pop_front();
            self.state.dropped_total = self.state.dropped_total.saturating_add(1);
            self.state.dropped_unreported = self.state.dropped_unreported.saturating_add(1);
        }
        let record = Record { seq, ts, message };
        // Written before it can be sent, so a reset cannot reissue a seq already seen upstream.
        if self.layout.write_record(&mut self.storage, &record).is_err() {
            self.storage_errors = self.storage_errors.saturating_add(1);
        }
        if overflowed {
            self.persist_state();
        }
        // Cannot fail: room was made above.
        let _ = self.ring.push_back(record);
        seq
    }

    /// Applies `NodeAck { seq }`: drops every record `<= seq`. Returns how many were
    /// dropped. When room returns after an overflow, queues the `BufferOverflow` event.
    pub fn ack(&mut self, seq: u64, now_ms: u64) -> usize {
        let seq = seq.min(self.state.next_seq - 1);
        if seq <= self.state.acked {
            return 0;
        }
        self.state.acked = seq;
        let mut dropped = 0;
        while self.ring.front().is_some_and(|r| r.seq <= seq) {
            self.ring.pop_front();
            dropped += 1;
        }
        if self.state.dropped_unreported > 0 && !self.ring.is_full() {
            let reported = self.state.dropped_unreported.min(u16::MAX as u32);
            let event = NodeEvent {
                event: EventKind::BufferOverflow,
                code: reported as u16,
            };
            // The event is stored before the state forgets the count: a reset in
            // between reports the drops twice rather than never.
            self.push(now_ms, NodeMessage::Event(event));
            self.state.dropped_unreported -= reported;
        }
        self.persist_state();
        dropped
    }

    /// Unacknowledged records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.ring.iter()
    }

    /// The oldest record with a seq above `seq` (the replay cursor).
    pub fn first_after(&self, seq: u64) -> Option<&Record> {
        self.ring.iter().find(|r| r.seq > seq)
    }

    /// The newest record still in storage (acknowledged or not) that `matches`, e.g. the
    /// last lift status to restore wear counters after a reset.
    pub fn newest_stored(&mut self, matches: impl Fn(&NodeMessage) -> bool) -> Option<Record> {
        let newest = self.state.next_seq - 1;
        let oldest = newest.saturating_sub(N as u64 - 1).max(1);
        (oldest..=newest).rev().find_map(|seq| {
            let record = self
                .layout
                .read_slot(&mut self.storage, self.layout.slot_of(seq))
                .ok()??;
            (record.seq == seq && matches(&record.message)).then_some(record)
        })
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub const fn boots(&self) -> u32 {
        self.state.boots
    }

    pub fn stats(&self) -> OutboxStats {
        OutboxStats {
            len: self.ring.len(),
            capacity: N,
            next_seq: self.state.next_seq,
            acked: self.state.acked,
            boots: self.state.boots,
            dropped_total: self.state.dropped_total,
            dropped_unreported: self.state.dropped_unreported,
            lost_at_recovery: self.lost_at_recovery,
            storage_errors: self.storage_errors,
        }
    }

    /// Gives the storage back, e.g. to simulate a reset by opening a new outbox on it.
    pub fn into_storage(self) -> S {
        self.storage
    }

    fn persist_state(&mut self) {
        self.state.generation = self.state.generation.wrapping_add(1);
        if self.layout.write_state(&mut self.storage, &self.state).is_err() {
            self.storage_errors = self.storage_errors.saturating_add(1);
        }
    }
}
