//! Time-based debouncing: a new value is accepted only once the raw input has shown
//! it continuously for the configured time. Works for contacts (`bool`) and for
//! derived values such as the car's motion.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounced<T> {
    stable: T,
    candidate: T,
    candidate_since_ms: u64,
    settle_ms: u64,
}

impl<T: Copy + PartialEq> Debounced<T> {
    /// Starts stable at `initial`; `settle_ms` of 0 accepts every change at once.
    pub const fn new(initial: T, settle_ms: u32) -> Self {
        Self {
            stable: initial,
            candidate: initial,
            candidate_since_ms: 0,
            settle_ms: settle_ms as u64,
        }
    }

    /// Forgets history and takes `value` as stable (first sample after start).
    pub fn reset(&mut self, value: T, now_ms: u64) {
        self.stable = value;
        self.candidate = value;
        self.candidate_since_ms = now_ms;
    }

    /// Feeds one raw sample; returns the new stable value when it changed.
    pub fn update(&mut self, raw: T, now_ms: u64) -> Option<T> {
        if raw != self.candidate {
            self.candidate = raw;
            self.candidate_since_ms = now_ms;
        }
        let settled = now_ms.saturating_sub(self.candidate_since_ms) >= self.settle_ms;
        if settled && self.candidate != self.stable {
            self.stable = self.candidate;
            return Some(self.stable);
        }
        None
    }

    pub const fn value(&self) -> T {
        self.stable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounces_shorter_than_the_settle_time_are_ignored() {
        let mut d = Debounced::new(false, 50);
        d.reset(false, 0);
        assert_eq!(d.update(true, 10), None);
        assert_eq!(d.update(false, 20), None);
        assert_eq!(d.update(true, 30), None);
        assert_eq!(d.update(true, 70), None);
        assert_eq!(d.update(true, 80), Some(true));
        assert_eq!(d.update(true, 200), None);
        assert!(d.value());
    }

    #[test]
    fn zero_settle_time_follows_the_input() {
        let mut d = Debounced::new(1u8, 0);
        assert_eq!(d.update(2, 5), Some(2));
        assert_eq!(d.update(2, 6), None);
    }
}
