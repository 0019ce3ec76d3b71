//! Node acks, at most one per node per interval.
//!
//! A `NodeAck` is cumulative (the highest committed seq), so a node sending
//! faster than the interval loses nothing by hearing one ack per interval
//! instead of one per batch; with one reading per message, an ack per batch
//! would double the broker's work. A node not acked within the last interval is
//! acked at once, so a node sending slower than that sees no delay. Each node
//! keeps its own phase (the time of its last ack): acks, and the sends they
//! release, stay spread out instead of arriving all at once on a common tick.
//!
//! Time is a parameter: the pipeline passes `Instant::now()`, tests pass their own.
use foldhash::HashMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub(crate) struct AckPacer {
    interval: Duration,
    /// Nodes acked within the last interval, by device id (unique across gateways).
    cooling: HashMap<String, Cooling>,
    /// When each of them may be acked again, in order (the interval is constant).
    due: VecDeque<(Instant, String)>,
}

struct Cooling {
    /// The route its latest message came by: the embedded or an external broker, and the gateway.
    external: bool,
    gateway: String,
    /// Committed since its last ack, to be acked when the interval is over.
    pending: Option<u64>,
}

impl AckPacer {
    /// Zero: every commit is acked at once.
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            cooling: HashMap::default(),
            due: VecDeque::new(),
        }
    }

    /// `device` has everything up to `seq` committed; `ack(external, gateway,
    /// device, seq)` is called now if the node may be acked now.
    pub(crate) fn committed(
        &mut self,
        now: Instant,
        external: bool,
        gateway: &str,
        device: &str,
        seq: u64,
        mut ack: impl FnMut(bool, &str, &str, u64),
    ) {
        if let Some(node) = self.cooling.get_mut(device) {
            // Acks are cumulative: the newest route carries the highest seq.
            if node.external != external || node.gateway != gateway {
                node.external = external;
                node.gateway = gateway.to_string();
            }
            node.pending = node.pending.max(Some(seq));
            return;
        }
        ack(external, gateway, device, seq);
        if !self.interval.is_zero() {
            let node = Cooling {
                external,
                gateway: gateway.to_string(),
                pending: None,
            };
            self.cooling.insert(device.to_string(), node);
            self.due.push_back((now + self.interval, device.to_string()));
        }
    }

    /// When [`AckPacer::release`] next has something to do.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.due.front().map(|(at, _)| *at)
    }

    /// Acks the nodes whose interval is over and that committed more since their
    /// last ack (they cool down again); the others may be acked at once again.
    pub(crate) fn release(&mut self, now: Instant, mut ack: impl FnMut(bool, &str, &str, u64)) {
        while let Some((at, _)) = self.due.front() {
            if *at > now {
                break;
            }
            let (_, device) = self.due.pop_front().expect("front exists");
            let Some(node) = self.cooling.get_mut(&device) else {
                continue;
            };
            match node.pending.take() {
                Some(seq) => {
                    ack(node.external, &node.gateway, &device, seq);
                    self.due.push_back((now + self.interval, device));
                }
                None => {
                    self.cooling.remove(&device);
                }
            }
        }
    }

    /// Acks everything pending now (the pipeline is stopping).
    pub(crate) fn flush(&mut self, mut ack: impl FnMut(bool, &str, &str, u64)) {
        for (device, node) in self.cooling.drain() {
            if let Some(seq) = node.pending {
                ack(node.external, &node.gateway, &device, seq);
            }
        }
        self.due.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sent = Vec<(bool, String, String, u64)>;

    fn recorder(sent: &mut Sent) -> impl FnMut(bool, &str, &str, u64) + '_ {
        |external, gateway, device, seq| sent.push((external, gateway.into(), device.into(), seq))
    }

    fn ack(gateway: &str, device: &str, seq: u64) -> (bool, String, String, u64) {
        (false, gateway.into(), device.into(), seq)
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_slow_node_is_acked_at_once_every_time() {
        let mut pacer = AckPacer::new(SECOND);
        let start = Instant::now();
        let mut sent = Sent::new();
        for seq in 1..=3 {
            let now = start + 2 * SECOND * seq as u32;
            pacer.release(now, recorder(&mut sent));
            pacer.committed(now, false, "gw1", "dev1", seq, recorder(&mut sent));
        }
        assert_eq!(
            sent,
            vec![ack("gw1", "dev1", 1), ack("gw1", "dev1", 2), ack("gw1", "dev1", 3)]
        );
    }

    #[test]
    fn a_fast_node_gets_one_cumulative_ack_per_interval() {
        let mut pacer = AckPacer::new(SECOND);
        let start = Instant::now();
        let mut sent = Sent::new();
        // A commit every 100 ms for 2.5 s.
        for seq in 1..=25u64 {
            let now = start + Duration::from_millis(100 * (seq - 1));
            pacer.release(now, recorder(&mut sent));
            pacer.committed(now, false, "gw1", "dev1", seq, recorder(&mut sent));
        }
        assert_eq!(
            sent,
            vec![ack("gw1", "dev1", 1), ack("gw1", "dev1", 10), ack("gw1", "dev1", 20)]
        );
        assert_eq!(pacer.next_due(), Some(start + 3 * SECOND));
        // The rest goes out when its interval is over, and nothing is left after that.
        pacer.release(start + 3 * SECOND, recorder(&mut sent));
        assert_eq!(sent.last(), Some(&ack("gw1", "dev1", 25)));
        pacer.release(start + 4 * SECOND, recorder(&mut sent));
        assert_eq!(sent.len(), 4);
        assert_eq!(pacer.next_due(), None);
    }

    #[test]
    fn nodes_keep_their_own_phase() {
        let mut pacer = AckPacer::new(SECOND);
        let start = Instant::now();
        let mut sent = Sent::new();
        pacer.committed(start, false, "gw1", "a", 1, recorder(&mut sent));
        pacer.committed(start + SECOND / 2, false, "gw1", "b", 1, recorder(&mut sent));
        pacer.committed(start + SECOND / 2, false, "gw1", "a", 2, recorder(&mut sent));
        pacer.committed(start + SECOND * 3 / 4, false, "gw1", "b", 2, recorder(&mut sent));
        assert_eq!(sent.len(), 2);
        pacer.release(start + SECOND, recorder(&mut sent));
        assert_eq!(sent[2..], [ack("gw1", "a", 2)]);
        pacer.release(start + SECOND * 3 / 2, recorder(&mut sent));
        assert_eq!(sent[3..], [ack("gw1", "b", 2)]);
    }

    #[test]
    fn the_ack_goes_by_the_newest_route_and_never_backwards() {
        let mut pacer = AckPacer::new(SECOND);
        let start = Instant::now();
        let mut sent = Sent::new();
        pacer.committed(start, false, "gw1", "dev1", 5, recorder(&mut sent));
        pacer.committed(start, true, "gw2", "dev1", 9, recorder(&mut sent));
        pacer.committed(start, true, "gw2", "dev1", 7, recorder(&mut sent));
        pacer.release(start + SECOND, recorder(&mut sent));
        assert_eq!(
            sent,
            vec![ack("gw1", "dev1", 5), (true, "gw2".into(), "dev1".into(), 9)]
        );
    }

    #[test]
    fn a_zero_interval_acks_every_commit_and_flush_sends_what_waits() {
        let start = Instant::now();
        let mut sent = Sent::new();
        let mut unpaced = AckPacer::new(Duration::ZERO);
        unpaced.committed(start, false, "gw1", "dev1", 1, recorder(&mut sent));
        unpaced.committed(start, false, "gw1", "dev1", 2, recorder(&mut sent));
        assert_eq!(sent.len(), 2);
        assert_eq!(unpaced.next_due(), None);

        let mut paced = AckPacer::new(SECOND);
        paced.committed(start, false, "gw1", "dev1", 1, recorder(&mut sent));
        paced.committed(start, false, "gw1", "dev1", 2, recorder(&mut sent));
        paced.flush(recorder(&mut sent));
        assert_eq!(sent[2..], [ack("gw1", "dev1", 1), ack("gw1", "dev1", 2)]);
        assert_eq!(paced.next_due(), None);
    }
}
