//! Device time for simulated nodes. A simulated day can run in seconds: device
//! time advances `speed` times faster than wall time from a chosen start.
use std::time::Instant;

use gridwatch_protocol::clock::Clock;

/// Wall time, scaled: `start_ms + speed × elapsed`, optionally never ahead of
/// the wall clock (a fleet that starts in the past and catches up with now).
#[derive(Debug, Clone)]
pub(crate) struct ScaledClock {
    start_ms: u64,
    started: Instant,
    speed: f64,
    cap_at_wall: bool,
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl ScaledClock {
    pub(crate) fn new(start_ms: u64, speed: f64) -> Self {
        Self {
            start_ms,
            started: Instant::now(),
            speed,
            cap_at_wall: false,
        }
    }

    /// Starts `behind` in the past and runs `speed` times faster until it reaches
    /// the wall clock, then follows it: timestamps are never in the future.
    pub(crate) fn catching_up(behind: std::time::Duration, speed: f64) -> Self {
        Self {
            cap_at_wall: true,
            ..Self::new(wall_ms() - behind.as_millis() as u64, speed)
        }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> u64 {
        let scaled = self.start_ms + (self.started.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64;
        if self.cap_at_wall {
            scaled.min(wall_ms())
        } else {
            scaled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catching_up_clock_starts_in_the_past_and_is_never_ahead_of_the_wall() {
        let clock = ScaledClock::catching_up(std::time::Duration::from_secs(100), 4.0);
        let behind = wall_ms() - clock.now_ms();
        assert!((99_000..=100_000).contains(&behind), "{behind}");
        let fast = ScaledClock {
            cap_at_wall: true,
            ..ScaledClock::new(wall_ms(), 1e9)
        };
        assert!(fast.now_ms() <= wall_ms());
    }
}
