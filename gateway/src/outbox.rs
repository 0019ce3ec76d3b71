//! Readings on their way to ingest: the in-memory side of the durable outbox.
//!
//! A reading handed over (a node's, through [`Outbox::relay`], or one the gateway polled,
//! through [`Outbox::push`]) waits here until the writer has put it on disk
//! ([`crate::store`]); only then is its node told (per device, the highest `seq` below
//! which nothing waits for the disk) that it may forget it. On disk it stays until ingest
//! says the batch holding it is committed. Batches not acknowledged in time are sent
//! again with the same number, which ingest handles idempotently.
//!
//! Readings written while the uplink is up go out from memory (the live queue); readings
//! written while it is down, left from a previous run, or beyond the live queue's length
//! form the backlog, read back from disk oldest first. Live batches go first; the backlog
//! uses at most `replay_in_flight` batches and only when no live reading waits, so a
//! replay never holds back a live reading.
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

use gridwatch_protocol::batch::Reading;

/// How much the outbox may hold on disk. Node readings are refused at nine tenths of
/// either limit (their nodes keep them), so that the last tenth is for polled readings,
/// which nobody else holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBudget {
    pub max_readings: u64,
    /// Bytes of the readings' JSON (the database file is larger by SQLite's pages and indexes).
    pub max_bytes: u64,
}

impl Default for OutboxBudget {
    /// A million readings or 256 MiB: about six hours of 50 devices each reporting every second.
    fn default() -> Self {
        Self {
            max_readings: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

impl OutboxBudget {
    fn relay_share(limit: u64) -> u64 {
        limit - limit / 10
    }
}

/// What the outbox has done so far, for tests and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Readings handed over and not yet committed upstream (on disk or about to be).
    pub unacknowledged: u64,
    /// Bytes of their JSON.
    pub bytes: u64,
    /// Node readings refused because the outbox was at its relay share of the budget.
    pub refused: u64,
    /// Polled readings dropped because the outbox was at its budget.
    pub dropped: u64,
}

/// How the outbox sends: batch sizes and how many may be unacknowledged at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    pub(crate) batch_max: usize,
    /// Batches sent and not acknowledged, live and replay together.
    pub(crate) max_in_flight: usize,
    /// ...of which replay batches.
    pub(crate) replay_in_flight: usize,
    /// Rows kept in memory for live sending; more go to the backlog.
    pub(crate) live_max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Relayed,
    Polled,
}

/// A reading waiting for the disk.
pub(crate) struct Incoming {
    pub(crate) origin: Origin,
    pub(crate) device: String,
    pub(crate) seq: u64,
    pub(crate) json: Box<RawValue>,
}

/// The rows of one write: taken by the writer, given back with [`Outbox::written`] or
/// [`Outbox::not_written`].
pub(crate) struct Write {
    pub(crate) first_id: i64,
    pub(crate) rows: Vec<Incoming>,
    pub(crate) delete: Vec<i64>,
    /// Node acks sent since the last write, kept on disk for the next start.
    pub(crate) marks: Vec<(String, u64)>,
}

/// A reading on disk, in memory for sending.
struct Row {
    id: i64,
    json: Box<RawValue>,
}

struct InFlight {
    ids: Vec<i64>,
    json: Vec<Box<RawValue>>,
    bytes: u64,
    replay: bool,
    /// `None` once the connection was lost: due for resending at once.
    sent_at: Option<Instant>,
}

#[derive(Default)]
struct DeviceState {
    /// Seqs waiting for the disk.
    incoming: BTreeSet<u64>,
    /// Highest seq on disk.
    stored: u64,
    /// Highest seq acknowledged to the node: every relayed seq up to it is on disk.
    acked: u64,
    /// Relayed seqs on disk above a gap after `acked`, and since when the gap is open.
    above: BTreeSet<u64>,
    gap_since: Option<Instant>,
    /// The node sent again a seq above the open gap. A node resends everything it
    /// holds oldest first, so the gap's seqs are not in its buffer: it dropped them
    /// (or this gateway is new to it and they were acknowledged elsewhere).
    resent_past_gap: bool,
}

/// Most node readings waiting for the outbox's next transaction: beyond, the intake
/// stops reading the hub, whose queue is bounded, so a burst or a slow disk waits in the
/// nodes (which keep what was not acknowledged), not in the gateway's memory. 2,000
/// rather than 10,000: gateway peak RSS with 1,000 nodes 77-81 -> 60.5 MiB at the same
/// rate (docs/benchmarks.md, "Gateway").
pub(crate) const WAITING_MAX: usize = 2_000;

/// How long a gap in a node's seqs holds its acks back at least. A cumulative ack past
/// a gap makes the node forget the missing seqs, so it is sent only once the node's own
/// resend went past the gap without them, and never before this.
pub(crate) const GAP_WAIT: Duration = Duration::from_secs(10);

/// What happened to a reading handed over.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Accepted {
    Queued,
    /// Already here: a node resend.
    AlreadyPending,
    /// Already on disk and acknowledged: the node missed our ack, so repeat it.
    AlreadyAcked(u64),
    /// A node reading over the relay share of the budget: not acknowledged, the node keeps it.
    Refused,
    /// A polled reading over the budget: dropped, counted and logged.
    Dropped,
}

pub(crate) struct Outbox {
    budget: OutboxBudget,
    pacing: Pacing,
    incoming: Vec<Incoming>,
    incoming_bytes: u64,
    /// Taken by the writer, not yet on disk.
    writing: (u64, u64),
    /// Rows on disk, not acknowledged: readings and bytes.
    stored: (u64, u64),
    next_id: i64,
    live: VecDeque<Row>,
    /// Rows on disk, not in memory, not sent: id ranges by start.
    backlog: BTreeMap<i64, i64>,
    in_flight: BTreeMap<u64, InFlight>,
    next_batch: u64,
    devices: HashMap<String, DeviceState>,
    /// Rows committed upstream, to delete.
    delete: Vec<i64>,
    /// Node acks not yet on disk.
    marks: Vec<(String, u64)>,
    /// Whether batches can go out: rows written meanwhile are live, otherwise backlog.
    uplink_up: bool,
    refused: u64,
    dropped: u64,
    /// Wakes the writer.
    writer: Arc<Notify>,
}

impl Outbox {
    /// An outbox over what a previous run left on disk.
    pub(crate) fn new(budget: OutboxBudget, pacing: Pacing, loaded: crate::store::Loaded, writer: Arc<Notify>) -> Self {
        let devices = loaded
            .devices
            .into_iter()
            .map(|(d, seq)| {
                let state = DeviceState {
                    stored: seq,
                    acked: seq,
                    ..DeviceState::default()
                };
                (d, state)
            })
            .collect();
        let mut backlog = BTreeMap::new();
        if !loaded.ids.is_empty() {
            backlog.insert(loaded.ids.start, loaded.ids.end);
        }
        Self {
            budget,
            pacing,
            incoming: Vec::new(),
            incoming_bytes: 0,
            writing: (0, 0),
            stored: (loaded.readings, loaded.bytes),
            next_id: loaded.ids.end.max(1),
            live: VecDeque::new(),
            backlog,
            in_flight: BTreeMap::new(),
            next_batch: (loaded.run & 0xffff_ffff) << 32,
            devices,
            delete: Vec::new(),
            marks: Vec::new(),
            uplink_up: false,
            refused: 0,
            dropped: 0,
            writer,
        }
    }

    /// A reading the gateway originates (a polled one). Over the budget it is dropped,
    /// counted in `gridwatch_gateway_outbox_overflow_total{origin="polled"}`.
    /// Readings handed over and not yet in a transaction: the intake takes in no more
    /// node messages while there are [`WAITING_MAX`].
    pub(crate) fn waiting_for_disk(&self) -> usize {
        self.incoming.len()
    }

    pub(crate) fn push(&mut self, reading: Reading) -> Accepted {
        self.accept(reading, Origin::Polled)
    }

    /// A node's reading. Over the relay share of the budget it is refused (not
    /// acknowledged: the node keeps it and sends it again).
    pub(crate) fn relay(&mut self, reading: Reading) -> Accepted {
        self.accept(reading, Origin::Relayed)
    }

    fn accept(&mut self, reading: Reading, origin: Origin) -> Accepted {
        let (readings, held) = self.held();
        let device = self.devices.entry(reading.device().to_string()).or_default();
        let seq = reading.seq();
        if seq <= device.acked {
            return Accepted::AlreadyAcked(device.acked);
        }
        // Relayed seqs between `acked` and `stored` that are not on disk are a gap being
        // filled; polled seqs come from this gateway's own counter, without gaps.
        let pending = match origin {
            Origin::Relayed => device.above.contains(&seq),
            Origin::Polled => seq <= device.stored,
        };
        if pending || device.incoming.contains(&seq) {
            if device.gap_since.is_some() && device.above.first().is_some_and(|&first| seq >= first) {
                device.resent_past_gap = true;
            }
            return Accepted::AlreadyPending;
        }
        let json = serde_json::value::to_raw_value(&reading).expect("readings serialize");
        let bytes = json.get().len() as u64;
        let (max_readings, max_bytes) = match origin {
            Origin::Relayed => (
                OutboxBudget::relay_share(self.budget.max_readings),
                OutboxBudget::relay_share(self.budget.max_bytes),
            ),
            Origin::Polled => (self.budget.max_readings, self.budget.max_bytes),
        };
        if readings + 1 > max_readings || held + bytes > max_bytes {
            return match origin {
                Origin::Relayed => {
                    self.refused += 1;
                    metrics::counter!("gridwatch_gateway_outbox_overflow_total", "origin" => "relayed", "action" => "refused").increment(1);
                    Accepted::Refused
                }
                Origin::Polled => {
                    self.dropped += 1;
                    metrics::counter!("gridwatch_gateway_outbox_overflow_total", "origin" => "polled", "action" => "dropped").increment(1);
                    tracing::error!(device = reading.device(), seq, "outbox full: polled reading dropped");
                    Accepted::Dropped
                }
            };
        }
        device.incoming.insert(seq);
        self.incoming_bytes += bytes;
        self.incoming.push(Incoming {
            origin,
            device: reading.device().to_string(),
            seq,
            json,
        });
        self.writer.notify_one();
        Accepted::Queued
    }

    /// A node's reading that failed its checks and is kept in quarantine: the node is
    /// acknowledged past it as if it were on disk (sent again, it would only be refused
    /// again, and it would hold back every later ack). Returns the node's ack when it moved.
    pub(crate) fn quarantined(&mut self, device: &str, seq: u64, now: Instant) -> Option<u64> {
        let state = self.devices.entry(device.to_string()).or_default();
        if seq <= state.acked {
            return Some(state.acked);
        }
        state.above.insert(seq);
        self.advance_acks(BTreeSet::from([device.to_string()]), now)
            .pop()
            .map(|(_, acked)| acked)
    }

    /// Readings and bytes held: waiting for the disk, being written, or on disk unacknowledged.
    fn held(&self) -> (u64, u64) {
        (
            self.incoming.len() as u64 + self.writing.0 + self.stored.0,
            self.incoming_bytes + self.writing.1 + self.stored.1,
        )
    }

    pub(crate) fn stats(&self) -> OutboxStats {
        let (unacknowledged, bytes) = self.held();
        OutboxStats {
            unacknowledged,
            bytes,
            refused: self.refused,
            dropped: self.dropped,
        }
    }

    /// Readings handed over and not yet committed upstream.
    pub(crate) fn unacknowledged(&self) -> usize {
        self.held().0 as usize
    }

    /// Up to `max` waiting readings and every committed row, for one transaction.
    pub(crate) fn take_write(&mut self, max: usize) -> Option<Write> {
        if self.incoming.is_empty() && self.delete.is_empty() && self.marks.is_empty() {
            return None;
        }
        let take = max.min(self.incoming.len());
        let rows: Vec<Incoming> = self.incoming.drain(..take).collect();
        let bytes: u64 = rows.iter().map(|r| r.json.get().len() as u64).sum();
        self.incoming_bytes -= bytes;
        self.writing = (rows.len() as u64, bytes);
        let first_id = self.next_id;
        self.next_id += rows.len() as i64;
        Some(Write {
            first_id,
            rows,
            delete: std::mem::take(&mut self.delete),
            marks: std::mem::take(&mut self.marks),
        })
    }

    /// The write failed: its rows wait again, first, and its deletes are retried.
    pub(crate) fn not_written(&mut self, write: Write) {
        self.incoming_bytes += self.writing.1;
        self.writing = (0, 0);
        self.incoming.splice(..0, write.rows);
        self.delete.extend(write.delete);
        self.marks.extend(write.marks);
    }

    /// The write is on disk: its rows join the live queue (or the backlog), and the
    /// node acks it allows are returned: per device, up to the highest seq with every
    /// seq before it on disk (or a gap older than [`GAP_WAIT`]).
    pub(crate) fn written(&mut self, write: Write, now: Instant) -> Vec<(String, u64)> {
        self.stored.0 += self.writing.0;
        self.stored.1 += self.writing.1;
        self.writing = (0, 0);
        let mut touched = BTreeSet::new();
        for (id, row) in (write.first_id..).zip(write.rows) {
            let device = self
                .devices
                .get_mut(&row.device)
                .expect("waiting readings have a device");
            device.incoming.remove(&row.seq);
            device.stored = device.stored.max(row.seq);
            if self.uplink_up && self.live.len() < self.pacing.live_max {
                self.live.push_back(Row { id, json: row.json });
            } else {
                insert_range(&mut self.backlog, id..id + 1);
            }
            if row.origin == Origin::Relayed {
                device.above.insert(row.seq);
                touched.insert(row.device);
            }
        }
        // Devices with a gap open are looked at again on every write.
        touched.extend(self.gapped());
        self.advance_acks(touched, now)
    }

    /// Node acks that gaps older than [`GAP_WAIT`] now allow. The writer asks every
    /// second while a gap is open: a node that waits for its ack sends nothing new, so
    /// no write would come to close it.
    pub(crate) fn expire_gaps(&mut self, now: Instant) -> Vec<(String, u64)> {
        let gapped = self.gapped();
        self.advance_acks(gapped, now)
    }

    fn gapped(&self) -> BTreeSet<String> {
        self.devices
            .iter()
            .filter(|(_, d)| d.gap_since.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Per device of `names`, the ack up to the highest seq with every seq before it on
    /// disk, or past a gap older than [`GAP_WAIT`].
    fn advance_acks(&mut self, names: BTreeSet<String>, now: Instant) -> Vec<(String, u64)> {
        let mut acks = Vec::new();
        for name in names {
            let device = self.devices.get_mut(&name).expect("touched devices exist");
            let before = device.acked;
            loop {
                while device.above.first() == Some(&(device.acked + 1)) {
                    device.acked += 1;
                    device.above.pop_first();
                }
                let Some(&next) = device.above.first() else {
                    device.gap_since = None;
                    device.resent_past_gap = false;
                    break;
                };
                let since = *device.gap_since.get_or_insert(now);
                // A reading still waiting for the disk fills the gap soon.
                let waiting = device.incoming.first().is_some_and(|&s| s < next);
                if waiting || !device.resent_past_gap || now.duration_since(since) < GAP_WAIT {
                    break;
                }
                tracing::warn!(device = %name, from = device.acked + 1, to = next - 1, "seqs the node no longer holds: acknowledged past them");
                metrics::counter!("gridwatch_gateway_node_seqs_skipped_total").increment(next - 1 - device.acked);
                device.acked = next - 1;
                device.gap_since = None;
                device.resent_past_gap = false;
            }
            if device.acked > before {
                acks.push((name.clone(), device.acked));
                self.marks.push((name, device.acked));
            }
        }
        acks
    }

    /// The uplink came up (batches may go out) or went down: rows in memory not yet sent
    /// join the backlog, to go out oldest first after the reconnect.
    pub(crate) fn set_uplink(&mut self, up: bool) {
        self.uplink_up = up;
        if !up {
            for row in self.live.drain(..) {
                insert_range(&mut self.backlog, row.id..row.id + 1);
            }
        }
    }

    /// Batches sent longer than `after` ago (or all, after a reconnect) to send again.
    pub(crate) fn due_for_resend(&mut self, after: Duration, now: Instant) -> Vec<(u64, Vec<Box<RawValue>>)> {
        self.in_flight
            .iter_mut()
            .filter(|(_, b)| b.sent_at.is_none_or(|at| now.duration_since(at) >= after))
            .map(|(id, b)| {
                b.sent_at = Some(now);
                (*id, b.json.clone())
            })
            .collect()
    }

    /// After a reconnect nothing in flight can be trusted to arrive: send it all again.
    pub(crate) fn mark_all_for_resend(&mut self) {
        for batch in self.in_flight.values_mut() {
            batch.sent_at = None;
        }
    }

    /// A batch of live rows, while the window has room.
    pub(crate) fn next_live_batch(&mut self, now: Instant) -> Option<(u64, &[Box<RawValue>])> {
        if self.live.is_empty() || self.in_flight.len() >= self.pacing.max_in_flight {
            return None;
        }
        let take = self.pacing.batch_max.min(self.live.len());
        let (ids, json): (Vec<i64>, Vec<Box<RawValue>>) = self.live.drain(..take).map(|r| (r.id, r.json)).unzip();
        Some(self.open_batch(ids, json, false, now))
    }

    fn open_batch(
        &mut self,
        ids: Vec<i64>,
        json: Vec<Box<RawValue>>,
        replay: bool,
        now: Instant,
    ) -> (u64, &[Box<RawValue>]) {
        self.next_batch += 1;
        let bytes = json.iter().map(|j| j.get().len() as u64).sum();
        let batch = self.next_batch;
        let entry = self.in_flight.entry(batch).or_insert(InFlight {
            ids,
            json,
            bytes,
            replay,
            sent_at: Some(now),
        });
        (batch, &entry.json)
    }

    /// The backlog's oldest ids, when a replay batch may go out: nothing live waits and
    /// fewer than `replay_in_flight` replay batches (and `max_in_flight` in all) are out.
    pub(crate) fn replay_wanted(&self) -> Option<Range<i64>> {
        let replaying = self.in_flight.values().filter(|b| b.replay).count();
        if !self.live.is_empty()
            || replaying >= self.pacing.replay_in_flight
            || self.in_flight.len() >= self.pacing.max_in_flight
        {
            return None;
        }
        self.backlog.first_key_value().map(|(&start, &end)| start..end)
    }

    /// The rows read from disk for `wanted` (at most `batch_max`, oldest first) become a
    /// replay batch; the ids they cover leave the backlog. Rows that cannot be read as
    /// JSON are deleted with an error logged.
    pub(crate) fn replay_batch(
        &mut self,
        wanted: Range<i64>,
        rows: Vec<(i64, String)>,
        now: Instant,
    ) -> Option<(u64, &[Box<RawValue>])> {
        let covered_to = if rows.len() < self.pacing.batch_max {
            wanted.end
        } else {
            rows.last().map_or(wanted.end, |(id, _)| id + 1)
        };
        remove_range(&mut self.backlog, wanted.start..covered_to);
        let (mut ids, mut json) = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
        for (id, body) in rows {
            match RawValue::from_string(body) {
                Ok(j) => {
                    ids.push(id);
                    json.push(j);
                }
                Err(e) => {
                    tracing::error!(id, error = %e, "unreadable reading in the outbox: deleted");
                    self.stored.0 = self.stored.0.saturating_sub(1);
                    self.delete.push(id);
                }
            }
        }
        if ids.is_empty() {
            return None;
        }
        Some(self.open_batch(ids, json, true, now))
    }

    /// Ingest committed `batch`: its rows are to be deleted. Returns whether it was in flight.
    pub(crate) fn ack(&mut self, batch: u64) -> bool {
        let Some(done) = self.in_flight.remove(&batch) else {
            return false; // a repeated ack
        };
        self.stored.0 -= done.ids.len() as u64;
        self.stored.1 = self.stored.1.saturating_sub(done.bytes);
        self.delete.extend(done.ids);
        self.writer.notify_one();
        true
    }
}

/// Adds `ids` to a set of disjoint ranges keyed by start, merging neighbours.
fn insert_range(set: &mut BTreeMap<i64, i64>, ids: Range<i64>) {
    let (mut start, mut end) = (ids.start, ids.end);
    if let Some((&s, &e)) = set.range(..=start).next_back()
        && e >= start
    {
        start = s;
        end = end.max(e);
        set.remove(&s);
    }
    while let Some((&s, &e)) = set.range(start..).next()
        && s <= end
    {
        end = end.max(e);
        set.remove(&s);
    }
    set.insert(start, end);
}

/// Takes `ids` out of a set of disjoint ranges keyed by start.
fn remove_range(set: &mut BTreeMap<i64, i64>, ids: Range<i64>) {
    let overlapping: Vec<(i64, i64)> = set
        .range(..ids.end)
        .filter(|&(_, &e)| e > ids.start)
        .map(|(&s, &e)| (s, e))
        .collect();
    for (s, e) in overlapping {
        set.remove(&s);
        if s < ids.start {
            set.insert(s, ids.start);
        }
        if e > ids.end {
            set.insert(ids.end, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Loaded;
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

    const PACING: Pacing = Pacing {
        batch_max: 2,
        max_in_flight: 4,
        replay_in_flight: 1,
        live_max: 100,
    };

    fn outbox(budget: OutboxBudget, loaded: Loaded) -> Outbox {
        Outbox::new(budget, PACING, loaded, Arc::new(Notify::new()))
    }

    /// Writes everything waiting, as the writer does after a successful transaction.
    fn write_all(outbox: &mut Outbox) -> Vec<(String, u64)> {
        let write = outbox.take_write(usize::MAX).unwrap();
        outbox.written(write, Instant::now())
    }

    fn devices_and_seqs(batch: &[Box<RawValue>]) -> Vec<(String, u64)> {
        batch
            .iter()
            .map(|j| {
                let r = Reading::decode_tagged(j.get().as_bytes()).unwrap();
                (r.device().to_string(), r.seq())
            })
            .collect()
    }

    #[test]
    fn a_node_is_acked_once_its_reading_is_on_disk_and_never_past_one_that_is_not() {
        let mut outbox = outbox(OutboxBudget::default(), Loaded::default());
        outbox.set_uplink(true);
        for seq in 1..=3 {
            assert_eq!(outbox.relay(reading("L1", seq)), Accepted::Queued);
        }
        let first = outbox.take_write(2).unwrap();
        assert_eq!(outbox.relay(reading("L1", 4)), Accepted::Queued);
        // Seq 3 still waits for the disk: the ack stops below it.
        assert_eq!(outbox.written(first, Instant::now()), vec![("L1".to_string(), 2)]);
        assert_eq!(write_all(&mut outbox), vec![("L1".to_string(), 4)]);
        assert_eq!(outbox.relay(reading("L1", 3)), Accepted::AlreadyAcked(4));
        // Polled readings are on disk too, but there is no node to acknowledge.
        assert_eq!(outbox.push(reading("P1", 1)), Accepted::Queued);
        assert_eq!(write_all(&mut outbox), vec![]);
        assert_eq!(outbox.unacknowledged(), 5, "on disk until ingest commits them");
    }

    #[test]
    fn a_late_seq_fills_its_gap_and_an_ack_passes_a_gap_only_after_the_node_resent_past_it() {
        let mut outbox = outbox(OutboxBudget::default(), Loaded::default());
        let start = Instant::now();
        for seq in [1, 3, 4] {
            outbox.relay(reading("L1", seq));
        }
        let write = outbox.take_write(usize::MAX).unwrap();
        assert_eq!(outbox.written(write, start), vec![("L1".to_string(), 1)]);
        // Seq 2 comes late (lost on the way, resent): it is stored, not taken for a resend.
        assert_eq!(outbox.relay(reading("L1", 2)), Accepted::Queued);
        let write = outbox.take_write(usize::MAX).unwrap();
        assert_eq!(outbox.written(write, start), vec![("L1".to_string(), 4)]);

        // Seq 5 never comes; 6 does.
        outbox.relay(reading("L1", 6));
        write_all(&mut outbox);
        let later = start + GAP_WAIT * 3;
        assert_eq!(
            outbox.expire_gaps(later),
            vec![],
            "old, but the node may still hold seq 5"
        );
        // The node's resend, oldest first, starts at 6: it no longer holds 5.
        assert_eq!(outbox.relay(reading("L1", 6)), Accepted::AlreadyPending);
        assert_eq!(outbox.expire_gaps(later), vec![("L1".to_string(), 6)]);
    }

    #[test]
    fn a_quarantined_reading_counts_as_kept_for_the_node_s_ack() {
        let mut outbox = outbox(OutboxBudget::default(), Loaded::default());
        let now = Instant::now();
        outbox.relay(reading("L1", 1));
        assert_eq!(outbox.quarantined("L1", 2, now), None, "seq 1 still waits for the disk");
        assert_eq!(write_all(&mut outbox), vec![("L1".to_string(), 2)]);
        assert_eq!(outbox.quarantined("L1", 3, now), Some(3));
        assert_eq!(outbox.quarantined("L1", 3, now), Some(3), "sent again: acked again");
    }

    #[test]
    fn a_first_contact_above_seq_1_waits_for_the_node_s_resend_before_the_first_ack() {
        let mut outbox = outbox(OutboxBudget::default(), Loaded::default());
        let start = Instant::now();
        outbox.relay(reading("L1", 41));
        let write = outbox.take_write(usize::MAX).unwrap();
        assert_eq!(outbox.written(write, start), vec![]);
        // Seq 40 in flight from before a reconnect arrives after 41: stored, not dropped.
        assert_eq!(outbox.relay(reading("L1", 40)), Accepted::Queued);
        write_all(&mut outbox);
        assert_eq!(outbox.expire_gaps(start + GAP_WAIT), vec![]);
        assert_eq!(outbox.relay(reading("L1", 40)), Accepted::AlreadyPending);
        assert_eq!(outbox.expire_gaps(start + GAP_WAIT / 2), vec![], "not before GAP_WAIT");
        assert_eq!(outbox.expire_gaps(start + GAP_WAIT), vec![("L1".to_string(), 41)]);
    }

    #[test]
    fn rows_leave_only_when_ingest_commits_their_batch_and_resends_keep_the_number() {
        let mut outbox = outbox(OutboxBudget::default(), Loaded::default());
        outbox.set_uplink(true);
        outbox.relay(reading("L1", 1));
        assert_eq!(outbox.relay(reading("L1", 1)), Accepted::AlreadyPending);
        write_all(&mut outbox);
        let now = Instant::now();
        let (id, _) = outbox.next_live_batch(now).unwrap();
        assert!(outbox.due_for_resend(Duration::from_secs(5), now).is_empty());
        let again = outbox.due_for_resend(Duration::from_secs(5), now + Duration::from_secs(6));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, id);
        assert_eq!(outbox.unacknowledged(), 1);
        assert!(outbox.ack(id));
        assert!(!outbox.ack(id), "a repeated ack changes nothing");
        assert_eq!(outbox.unacknowledged(), 0);
        let write = outbox.take_write(usize::MAX).unwrap();
        assert_eq!(write.delete, vec![1], "the committed row is deleted from disk");
    }

    #[test]
    fn node_readings_are_refused_at_the_relay_share_and_polled_ones_dropped_at_the_budget() {
        let budget = OutboxBudget {
            max_readings: 10,
            max_bytes: u64::MAX,
        };
        let mut outbox = outbox(budget, Loaded::default());
        for seq in 1..=9 {
            assert_eq!(outbox.relay(reading("L1", seq)), Accepted::Queued);
        }
        assert_eq!(outbox.relay(reading("L1", 10)), Accepted::Refused);
        write_all(&mut outbox);
        assert_eq!(outbox.relay(reading("L1", 10)), Accepted::Refused, "on disk counts too");
        assert_eq!(
            outbox.push(reading("P1", 1)),
            Accepted::Queued,
            "the last tenth is for polled readings"
        );
        assert_eq!(outbox.push(reading("P1", 2)), Accepted::Dropped);
        let stats = outbox.stats();
        assert_eq!((stats.unacknowledged, stats.refused, stats.dropped), (10, 2, 1));
    }

    #[test]
    fn live_batches_go_ahead_of_the_backlog_which_goes_oldest_first_one_at_a_time() {
        let mut outbox = outbox(OutboxBudget::default(), Loaded::default());
        // Uplink down: everything written goes to the backlog.
        for seq in 1..=5 {
            outbox.push(reading("P1", seq));
        }
        write_all(&mut outbox);
        assert!(outbox.next_live_batch(Instant::now()).is_none());
        outbox.set_uplink(true);
        let now = Instant::now();
        let wanted = outbox.replay_wanted().unwrap();
        assert_eq!(wanted, 1..6);
        let rows: Vec<(i64, String)> = (1..=2)
            .map(|seq| (seq, serde_json::to_string(&reading("P1", seq as u64)).unwrap()))
            .collect();
        let (first, batch) = outbox.replay_batch(wanted, rows, now).unwrap();
        assert_eq!(devices_and_seqs(batch), [("P1".into(), 1), ("P1".into(), 2)]);
        assert_eq!(outbox.replay_wanted(), None, "one replay batch at a time here");

        // A live reading arrives during the replay: it goes at once.
        outbox.push(reading("L9", 1));
        write_all(&mut outbox);
        assert_eq!(outbox.replay_wanted(), None);
        let (_, live) = outbox.next_live_batch(now).unwrap();
        assert_eq!(devices_and_seqs(live), [("L9".into(), 1)]);
        outbox.ack(first);
        assert_eq!(
            outbox.replay_wanted(),
            Some(3..6),
            "the backlog goes on where it stopped"
        );
    }

    #[test]
    fn unsent_live_rows_join_the_backlog_when_the_uplink_goes_down() {
        let mut outbox = outbox(OutboxBudget::default(), Loaded::default());
        outbox.set_uplink(true);
        for seq in 1..=3 {
            outbox.push(reading("P1", seq));
        }
        write_all(&mut outbox);
        let (_, sent) = outbox.next_live_batch(Instant::now()).unwrap();
        assert_eq!(sent.len(), 2);
        outbox.set_uplink(false);
        assert_eq!(outbox.backlog, BTreeMap::from([(3, 4)]));
    }

    #[test]
    fn a_restart_replays_what_was_left_and_still_knows_each_device_s_seq() {
        let loaded = Loaded {
            devices: HashMap::from([("L1".to_string(), 7)]),
            readings: 3,
            bytes: 300,
            ids: 40..47,
            run: 3,
        };
        let mut outbox = outbox(OutboxBudget::default(), loaded);
        assert_eq!(outbox.unacknowledged(), 3);
        assert_eq!(outbox.relay(reading("L1", 7)), Accepted::AlreadyAcked(7));
        outbox.set_uplink(true);
        let wanted = outbox.replay_wanted().unwrap();
        assert_eq!(wanted, 40..47);
        // Holes: rows deleted out of order before the restart.
        let rows = vec![(41, serde_json::to_string(&reading("L1", 6)).unwrap())];
        let (batch, _) = outbox.replay_batch(wanted, rows, Instant::now()).unwrap();
        assert_eq!(
            batch >> 32,
            3,
            "batch numbers of this run: a late ack for an earlier run's matches none"
        );
        assert!(outbox.backlog.is_empty());
        assert_eq!(outbox.relay(reading("L1", 8)), Accepted::Queued);
        let write = outbox.take_write(usize::MAX).unwrap();
        assert_eq!(write.first_id, 47, "new rows are numbered after the old");
    }

    #[test]
    fn ranges_merge_and_split() {
        let mut set = BTreeMap::new();
        insert_range(&mut set, 1..2);
        insert_range(&mut set, 3..4);
        insert_range(&mut set, 2..3);
        assert_eq!(set, BTreeMap::from([(1, 4)]));
        remove_range(&mut set, 2..3);
        assert_eq!(set, BTreeMap::from([(1, 2), (3, 4)]));
        insert_range(&mut set, 10..12);
        remove_range(&mut set, 0..11);
        assert_eq!(set, BTreeMap::from([(11, 12)]));
    }
}
