//! When a failed delivery is tried again, and when it is parked: exponential back-off
//! with full jitter, within a budget of attempts and of age. Pure: time and the random
//! draw are parameters, so the schedule is tested without waiting.
use std::time::Duration;

/// The retry budget and the back-off's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The ceiling of the first retry's delay; each later one is `factor` times the last.
    pub first: Duration,
    pub factor: u32,
    /// No delay's ceiling exceeds this.
    pub max_delay: Duration,
    /// Attempts in all before a delivery is parked.
    pub attempts: u32,
    /// A delivery queued this long ago is parked at its next failure.
    pub max_age: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        // Ceilings 5 s, 25 s, ~2 min, ~10 min, ~52 min, then 1 h: a receiver down for a
        // day is tried some 20 times.
        Self {
            first: Duration::from_secs(5),
            factor: 5,
            max_delay: Duration::from_secs(3600),
            attempts: 20,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time, ms.
    RetryAt(u64),
    Park,
}

impl Schedule {
    /// The ceiling of the delay after failed attempt `n` (1 for the first).
    pub fn ceiling(&self, n: u32) -> Duration {
        let mut delay = self.first;
        for _ in 1..n {
            delay = delay.saturating_mul(self.factor.max(1));
            if delay >= self.max_delay {
                return self.max_delay;
            }
        }
        delay.min(self.max_delay)
    }

    /// After failed attempt `n` at `now` of a delivery queued at `queued_at` (ms):
    /// park it once the budget is spent, else retry after a delay drawn uniformly from
    /// zero to the ceiling (`draw` in `[0, 1)`: full jitter, so receivers that failed
    /// together are not all retried together).
    pub fn after_failure(&self, n: u32, queued_at: u64, now: u64, draw: f64) -> AfterFailure {
        let age = Duration::from_millis(now.saturating_sub(queued_at));
        if n >= self.attempts || age >= self.max_age {
            return AfterFailure::Park;
        }
        let delay = self.ceiling(n).mul_f64(draw.clamp(0.0, 1.0));
        AfterFailure::RetryAt(now + delay.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_grow_by_the_factor_up_to_the_cap() {
        let s = Schedule::default();
        let secs: Vec<u64> = (1..=7).map(|n| s.ceiling(n).as_secs()).collect();
        assert_eq!(secs, [5, 25, 125, 625, 3125, 3600, 3600]);
        assert_eq!(s.ceiling(1000), Duration::from_secs(3600));
    }

    #[test]
    fn full_jitter_draws_between_now_and_the_ceiling() {
        let s = Schedule::default();
        let now = 1_000_000;
        assert_eq!(s.after_failure(1, now, now, 0.0), AfterFailure::RetryAt(now));
        assert_eq!(s.after_failure(1, now, now, 0.5), AfterFailure::RetryAt(now + 2_500));
        assert_eq!(
            s.after_failure(3, now, now, 0.999_999),
            AfterFailure::RetryAt(now + 124_999)
        );
    }

    #[test]
    fn the_budget_of_attempts_or_age_parks_it() {
        let s = Schedule {
            attempts: 3,
            ..Schedule::default()
        };
        let t0 = 5_000_000;
        assert!(matches!(
            s.after_failure(2, t0, t0 + 30_000, 0.3),
            AfterFailure::RetryAt(_)
        ));
        assert_eq!(s.after_failure(3, t0, t0 + 60_000, 0.3), AfterFailure::Park);
        let day = 24 * 3600 * 1000;
        assert!(matches!(
            s.after_failure(1, t0, t0 + day - 1, 0.3),
            AfterFailure::RetryAt(_)
        ));
        assert_eq!(s.after_failure(1, t0, t0 + day, 0.3), AfterFailure::Park);
    }
}
