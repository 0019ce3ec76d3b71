//! Time as a parameter. Node logic never reads a clock itself: the caller passes
//! `now_ms` (device time, ms since the Unix epoch) so the same code runs on a board,
//! in a simulator with virtual time, and in tests that never sleep.

/// A source of device time for the code that drives the nodes (board or simulator).
pub trait Clock {
    /// Milliseconds since the Unix epoch, UTC, on the device's clock.
    fn now_ms(&mut self) -> u64;
}

/// A fixed-period schedule that never busy-waits: callers ask whether it is due and
/// when it will next be due, and sleep in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periodic {
    period_ms: u64,
    next_ms: u64,
}

impl Periodic {
    /// Due at once, then every `period_ms`.
    pub const fn new(period_ms: u32) -> Self {
        Self {
            period_ms: period_ms as u64,
            next_ms: 0,
        }
    }

    /// True when the period has elapsed; moves the schedule on. Missed periods are
    /// skipped rather than replayed so a stalled caller does not get a burst.
    pub fn due(&mut self, now_ms: u64) -> bool {
        if now_ms < self.next_ms {
            return false;
        }
        let late_by = (now_ms - self.next_ms) % self.period_ms.max(1);
        self.next_ms = now_ms - late_by + self.period_ms;
        true
    }

    /// Starts the period again from `now_ms` (e.g. a status just went out for another reason).
    pub fn restart(&mut self, now_ms: u64) {
        self.next_ms = now_ms + self.period_ms;
    }

    /// When [`Periodic::due`] will next return true.
    pub const fn next_ms(&self) -> u64 {
        self.next_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_once_then_each_period_and_skips_missed_periods() {
        let mut p = Periodic::new(100);
        assert!(p.due(1_000));
        assert!(!p.due(1_099));
        assert!(p.due(1_100));
        // Stalled for 3.5 periods: one tick, and the phase is kept.
        assert!(p.due(1_450));
        assert_eq!(p.next_ms(), 1_500);
        p.restart(1_460);
        assert_eq!(p.next_ms(), 1_560);
    }
}
