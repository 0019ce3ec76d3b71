//! Exponential reconnect back-off with deterministic jitter: time is a parameter, and
//! the jitter comes from the device id so a fleet that lost its gateway at once does
//! not reconnect in lock-step, while tests stay reproducible.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first retry.
    pub initial_ms: u32,
    /// Upper bound of the delay.
    pub max_ms: u32,
    /// Spread of the delay, in thousandths of it (±); 0 disables jitter.
    pub jitter_permille: u16,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            max_ms: 60_000,
            jitter_permille: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    seed: u32,
}

impl Backoff {
    /// `seed` makes the jitter differ between devices (e.g. a hash of the device id).
    pub const fn new(config: BackoffConfig, seed: u32) -> Self {
        Self {
            config,
            failures: 0,
            seed,
        }
    }

    /// The delay before the next attempt after one more failure.
    pub fn next_delay_ms(&mut self) -> u64 {
        let exponent = self.failures.min(31);
        self.failures = self.failures.saturating_add(1);
        let base = (self.config.initial_ms as u64)
            .saturating_mul(1u64 << exponent)
            .min(self.config.max_ms as u64);
        let spread = base * self.config.jitter_permille as u64 / 1000;
        if spread == 0 {
            return base;
        }
        let noise = xorshift(self.seed ^ self.failures.wrapping_mul(0x9E37_79B9)) as u64 % (2 * spread + 1);
        (base + noise).saturating_sub(spread).min(self.config.max_ms as u64)
    }

    /// A connection succeeded: start again from the initial delay.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub const fn failures(&self) -> u32 {
        self.failures
    }
}

fn xorshift(mut x: u32) -> u32 {
    x |= 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// FNV-1a of `bytes`: a stable per-device jitter seed.
pub fn seed_from(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811C_9DC5, |h, &b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let config = BackoffConfig {
            initial_ms: 1_000,
            max_ms: 10_000,
            jitter_permille: 0,
        };
        let mut b = Backoff::new(config, 1);
        let delays: [u64; 6] = core::array::from_fn(|_| b.next_delay_ms());
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        b.reset();
        assert_eq!(b.next_delay_ms(), 1_000);
    }

    #[test]
    fn jitter_stays_within_its_band_and_never_exceeds_the_cap() {
        let config = BackoffConfig {
            initial_ms: 1_000,
            max_ms: 8_000,
            jitter_permille: 250,
        };
        for device in 0..200u32 {
            let mut b = Backoff::new(config, seed_from(&device.to_le_bytes()));
            for nominal in [1_000u64, 2_000, 4_000, 8_000, 8_000] {
                let d = b.next_delay_ms();
                assert!(
                    d >= nominal * 3 / 4 && d <= (nominal * 5 / 4).min(8_000),
                    "{d} vs {nominal}"
                );
            }
        }
    }

    #[test]
    fn different_devices_get_different_delays() {
        let config = BackoffConfig::default();
        let first = |id: &[u8]| Backoff::new(config, seed_from(id)).next_delay_ms();
        assert_ne!(first(b"L-0001"), first(b"L-0002"));
    }
}
