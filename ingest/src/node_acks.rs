//! How far a directly connected node may be acknowledged after the embedded
//! broker dropped messages.
//!
//! A `NodeAck` carries the highest committed `seq` and the node then forgets
//! everything up to it. That is safe while every message a node sent reaches
//! ingest. The embedded rumqttd, though, drops the oldest part of its log when
//! ingest falls too far behind (it acknowledges publishes on arrival and cannot
//! push back); the pipeline sees that as a gap in the log's offsets. After such
//! a drop, a node whose next message skips seqs may have lost some in the
//! broker: its acks are held at the last seq that arrived without a gap until
//! the missing ones arrive, which they do when the node reconnects and replays
//! what is unacknowledged, oldest first. If the replay starts above the gap, the
//! node no longer has those readings (its buffer overflowed) and nothing more
//! can come: the hold ends there.
//!
//! Gaps without a broker drop are the node's own (its buffer overflowed and it
//! reported so) and hold nothing. A node first heard of after a drop may have
//! lost earlier readings in it, and which is unknown: it gets no ack at all
//! (unless its first seq is 1) until its replay shows where it starts.
use crate::pipeline::AckCeiling;
use foldhash::HashMap;

/// Held: readings are missing between the last seq that arrived without a gap and a later one.
const GAP: &str = "gap_after_broker_drop";
/// Held: a node first heard of after a drop, whose earlier readings may be in it.
const UNKNOWN_START: &str = "start_unknown_after_broker_drop";

#[derive(Default)]
pub(crate) struct NodeAcks {
    /// By device id (unique across gateways; a device heard through another gateway starts afresh).
    devices: HashMap<String, Seen>,
    /// Broker drops seen so far.
    drops: u64,
}

struct Seen {
    gateway: String,
    /// Highest seq with no unexplained gap below it.
    contiguous: u64,
    max: u64,
    held: bool,
    /// Why it is held.
    reason: &'static str,
    /// While held: a replay (a seq at or below `max`) has begun since the last new seq.
    replaying: bool,
    /// `drops` when this device was last seen.
    drops: u64,
}

impl NodeAcks {
    /// The broker dropped messages (of unknown devices).
    pub(crate) fn broker_dropped(&mut self) {
        self.drops += 1;
    }

    /// Notes `seq` arriving from `device` under `gateway`; returns the highest
    /// seq it may be acknowledged up to, if limited.
    pub(crate) fn arrived(&mut self, gateway: &str, device: &str, seq: u64) -> Option<AckCeiling> {
        let drops = self.drops;
        // Looked up by &str: this runs for every message of a direct node.
        let Some(seen) = self.devices.get_mut(device).filter(|seen| seen.gateway == gateway) else {
            let held = drops > 0 && seq > 1;
            let contiguous = if held { 0 } else { seq };
            self.devices.insert(
                device.to_string(),
                Seen {
                    gateway: gateway.to_string(),
                    contiguous,
                    max: seq,
                    held,
                    reason: UNKNOWN_START,
                    replaying: false,
                    drops,
                },
            );
            return held.then_some(AckCeiling {
                seq: contiguous,
                reason: UNKNOWN_START,
            });
        };
        if seen.held {
            let replayed = seq <= seen.max;
            if seq == seen.contiguous + 1 {
                seen.contiguous = seq; // the replay fills the gap
            } else if replayed && !seen.replaying && seq > seen.contiguous + 1 && seen.drops == drops {
                // The first message of a replay, above the gap: the node lost those
                // readings. Only the first (later ones skip what the broker may have
                // dropped again), and not when the broker dropped messages since this
                // node's previous one (the start of the replay may be what it dropped).
                seen.contiguous = seq;
            }
            // A new seq ends a replay; a replayed one starts or continues it.
            seen.replaying = replayed;
            if seen.contiguous >= seen.max.max(seq) {
                seen.held = false;
                tracing::debug!(
                    gateway,
                    device,
                    seq,
                    "node acks resume: the gap after a broker drop is closed"
                );
            }
        } else if seq > seen.max + 1 && seen.drops != drops {
            seen.held = true;
            seen.reason = GAP;
            seen.replaying = false;
            seen.contiguous = seen.max;
            // Per device at debug: one broker drop holds thousands of devices at once
            // (the drop is logged once, at error, with its count; every ack held is
            // counted where it is held, in `pipeline::acknowledge`).
            tracing::debug!(
                gateway,
                device,
                from = seen.max + 1,
                to = seq - 1,
                "readings missing after a broker drop: node acks held until the node replays them"
            );
        } else if seq > seen.contiguous {
            seen.contiguous = seq;
        }
        seen.max = seen.max.max(seq);
        seen.drops = drops;
        seen.held.then_some(AckCeiling {
            seq: seen.contiguous,
            reason: seen.reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl NodeAcks {
        /// The ceiling's seq alone.
        fn seq(&mut self, gateway: &str, device: &str, seq: u64) -> Option<u64> {
            self.arrived(gateway, device, seq).map(|c| c.seq)
        }
    }

    #[test]
    fn a_gap_without_a_broker_drop_is_the_nodes_own() {
        let mut acks = NodeAcks::default();
        assert_eq!(acks.seq("g", "d", 1), None);
        assert_eq!(acks.seq("g", "d", 5), None, "the node overflowed: nothing to wait for");
    }

    #[test]
    fn a_gap_after_a_broker_drop_holds_acks_until_the_replay_fills_it() {
        let mut acks = NodeAcks::default();
        acks.seq("g", "d", 1);
        acks.seq("g", "d", 2);
        acks.broker_dropped();
        assert_eq!(acks.seq("g", "d", 5), Some(2), "3 and 4 were in the dropped part");
        assert_eq!(acks.seq("g", "d", 6), Some(2));
        // The node reconnects and replays 3, 4, 5, 6 (and goes on with 7).
        assert_eq!(acks.seq("g", "d", 3), Some(3));
        assert_eq!(acks.seq("g", "d", 4), Some(4));
        assert_eq!(acks.seq("g", "d", 5), Some(5));
        assert_eq!(acks.seq("g", "d", 6), None);
        assert_eq!(acks.seq("g", "d", 7), None);
    }

    #[test]
    fn a_replay_that_starts_above_the_gap_ends_the_hold() {
        let mut acks = NodeAcks::default();
        acks.seq("g", "d", 1);
        acks.broker_dropped();
        assert_eq!(acks.seq("g", "d", 4), Some(1));
        // The node no longer has 2 and 3: its replay starts at 4.
        assert_eq!(acks.seq("g", "d", 4), None);
    }

    #[test]
    fn a_replay_cut_by_another_broker_drop_keeps_the_hold() {
        let mut acks = NodeAcks::default();
        acks.seq("g", "d", 1);
        acks.broker_dropped();
        assert_eq!(acks.seq("g", "d", 5), Some(1));
        // The replay's 2 and 3 are dropped by the broker too; 4 arrives.
        acks.broker_dropped();
        assert_eq!(acks.seq("g", "d", 4), Some(1), "2 and 3 may still be at the node");
        assert_eq!(acks.seq("g", "d", 2), Some(2));
        assert_eq!(acks.seq("g", "d", 3), Some(3));
        assert_eq!(acks.seq("g", "d", 4), Some(4));
        assert_eq!(acks.seq("g", "d", 5), None);
    }

    #[test]
    fn a_replay_whose_start_the_broker_dropped_keeps_the_hold() {
        let mut acks = NodeAcks::default();
        acks.seq("g", "d", 2);
        acks.broker_dropped();
        assert_eq!(acks.seq("g", "d", 7), Some(2), "3 to 6 dropped");
        assert_eq!(acks.seq("g", "d", 8), Some(2));
        // The node replays 3..8; the broker drops 3 and 4 this time.
        acks.broker_dropped();
        assert_eq!(acks.seq("g", "d", 5), Some(2));
        assert_eq!(
            acks.seq("g", "d", 6),
            Some(2),
            "not the start of the replay: 3 and 4 may be at the node"
        );
        assert_eq!(acks.seq("g", "d", 7), Some(2));
        assert_eq!(acks.seq("g", "d", 8), Some(2));
        assert_eq!(acks.seq("g", "d", 9), Some(2), "new readings go on, still held");
        // The next replay brings them.
        for seq in 3..=9 {
            acks.seq("g", "d", seq);
        }
        assert_eq!(acks.seq("g", "d", 10), None);
    }

    #[test]
    fn a_node_first_heard_of_after_a_drop_is_held_until_its_replay() {
        let mut acks = NodeAcks::default();
        acks.seq("g", "a", 1);
        acks.broker_dropped();
        assert_eq!(acks.seq("g", "new", 1), None, "seq 1: nothing can be missing");
        assert_eq!(
            acks.seq("g", "late", 7),
            Some(0),
            "1 to 6 may have been dropped: no ack"
        );
        assert_eq!(acks.seq("g", "late", 8), Some(0));
        // The node replays from its oldest unacknowledged reading, 5.
        assert_eq!(acks.seq("g", "late", 5), Some(5));
        assert_eq!(acks.seq("g", "late", 6), Some(6));
        assert_eq!(acks.seq("g", "late", 7), Some(7));
        assert_eq!(acks.seq("g", "late", 8), None);
    }

    #[test]
    fn a_held_ack_says_why() {
        let mut acks = NodeAcks::default();
        acks.arrived("g", "a", 1);
        acks.broker_dropped();
        assert_eq!(acks.arrived("g", "a", 3).map(|c| c.reason), Some(GAP));
        assert_eq!(acks.arrived("g", "late", 7).map(|c| c.reason), Some(UNKNOWN_START));
    }

    #[test]
    fn devices_not_seen_since_the_drop_are_judged_by_their_own_gap() {
        let mut acks = NodeAcks::default();
        acks.seq("g", "a", 1);
        acks.seq("g", "b", 1);
        acks.broker_dropped();
        assert_eq!(acks.seq("g", "a", 2), None, "no gap");
        assert_eq!(acks.seq("g", "b", 3), Some(1));
    }
}
