//! What a node hands out per poll, and the rule "status on change, else a heartbeat".
use crate::clock::Periodic;
use crate::record::NodeMessage;
use gridwatch_protocol::{EventKind, NodeEvent};

/// Most messages one poll can produce (a status and a few events).
pub const MAX_PER_POLL: usize = 8;
/// The messages one poll produced, in the order they should get their seq.
pub type Outgoing = heapless::Vec<NodeMessage, MAX_PER_POLL>;

/// A sensor node: sample when due, return what to send.
pub trait Node {
    /// Samples the inputs if a sample is due at `now_ms` and returns the messages that
    /// result (none when nothing is due or nothing changed).
    fn poll(&mut self, now_ms: u64) -> Outgoing;
    /// When the next sample is due; the caller may sleep until then.
    fn next_poll_ms(&self) -> u64;
}

/// Sends a status when it changed significantly, or when the heartbeat is due.
#[derive(Debug, Clone)]
pub struct StatusReporter<T> {
    heartbeat: Periodic,
    last_sent: Option<T>,
}

impl<T: Clone> StatusReporter<T> {
    pub const fn new(heartbeat_ms: u32) -> Self {
        Self {
            heartbeat: Periodic::new(heartbeat_ms),
            last_sent: None,
        }
    }

    /// Whether `status` must go out now; `significant(last, new)` says whether a
    /// change is worth a message of its own.
    pub fn should_send(&mut self, status: &T, now_ms: u64, significant: impl Fn(&T, &T) -> bool) -> bool {
        let changed = self.last_sent.as_ref().is_none_or(|last| significant(last, status));
        let heartbeat = self.heartbeat.due(now_ms);
        if changed || heartbeat {
            self.heartbeat.restart(now_ms);
            self.last_sent = Some(status.clone());
        }
        changed || heartbeat
    }
}

/// Pushes an event, dropping it only if a poll somehow produced more than
/// [`MAX_PER_POLL`] messages (each node emits at most a status and six events).
pub fn push_event(out: &mut Outgoing, event: EventKind, code: u16) {
    let _ = out.push(NodeMessage::Event(NodeEvent { event, code }));
}

/// The event for a mains change.
pub const fn power_event(mains_on: bool) -> EventKind {
    if mains_on {
        EventKind::PowerRestored
    } else {
        EventKind::PowerLost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_status_then_changes_then_heartbeat() {
        let mut r = StatusReporter::new(10_000);
        let differs = |a: &i32, b: &i32| a != b;
        assert!(r.should_send(&1, 0, differs));
        assert!(!r.should_send(&1, 5_000, differs));
        assert!(r.should_send(&2, 6_000, differs));
        assert!(!r.should_send(&2, 15_999, differs), "a change restarts the heartbeat");
        assert!(r.should_send(&2, 16_000, differs));
    }
}
