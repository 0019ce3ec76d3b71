//! Car position: a distance sensor in the shaft gives the car's height; a landing
//! table turns height into a floor number, and the height's change over a window
//! gives the car's motion.
use gridwatch_protocol::Motion;

/// Anything that measures the car's height above the pit, in millimetres.
pub trait PositionSensor {
    type Error;
    fn read_height_mm(&mut self) -> Result<u32, Self::Error>;
}

/// Most landings a table holds.
pub const MAX_LANDINGS: usize = 64;

/// One landing: the floor number shown to passengers and its sill height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landing {
    pub floor: i16,
    pub height_mm: u32,
}

/// Landings of one installation, from its survey; floor numbers may skip (no 4th or
/// 13th floor) and start below zero.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LandingTable {
    landings: heapless::Vec<Landing, MAX_LANDINGS>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandingTableError {
    Empty,
    TooMany,
    /// Heights must increase with the floor order given.
    NotAscending,
}

impl LandingTable {
    pub fn new(landings: &[Landing]) -> Result<Self, LandingTableError> {
        if landings.is_empty() {
            return Err(LandingTableError::Empty);
        }
        if landings.windows(2).any(|w| w[1].height_mm <= w[0].height_mm) {
            return Err(LandingTableError::NotAscending);
        }
        let landings = heapless::Vec::from_slice(landings).map_err(|_| LandingTableError::TooMany)?;
        Ok(Self { landings })
    }

    /// Evenly spaced landings, e.g. `uniform(-1, 12, 3_000)` for B1..11.
    pub fn uniform(lowest_floor: i16, count: usize, spacing_mm: u32) -> Result<Self, LandingTableError> {
        let mut landings = heapless::Vec::<Landing, MAX_LANDINGS>::new();
        for i in 0..count {
            let landing = Landing {
                floor: lowest_floor + i as i16,
                height_mm: i as u32 * spacing_mm,
            };
            landings.push(landing).map_err(|_| LandingTableError::TooMany)?;
        }
        Self::new(&landings)
    }

    /// The floor whose landing is nearest to `height_mm`.
    pub fn nearest_floor(&self, height_mm: u32) -> i16 {
        self.landings
            .iter()
            .min_by_key(|l| l.height_mm.abs_diff(height_mm))
            .map_or(0, |l| l.floor)
    }

    pub fn landings(&self) -> &[Landing] {
        &self.landings
    }
}

/// Motion from the height change over a window, long enough to average out the
/// sensor's noise (a few cm) and short enough to see a start within a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MotionEstimator {
    window_ms: u64,
    threshold_mm_s: u32,
    anchor: Option<(u64, u32)>,
    motion: Motion,
}

impl MotionEstimator {
    pub const fn new(window_ms: u32, threshold_mm_s: u32) -> Self {
        Self {
            window_ms: window_ms as u64,
            threshold_mm_s,
            anchor: None,
            motion: Motion::Stopped,
        }
    }

    /// Feeds one height sample; returns the motion over the last complete window.
    pub fn update(&mut self, height_mm: u32, now_ms: u64) -> Motion {
        let Some((since_ms, from_mm)) = self.anchor else {
            self.anchor = Some((now_ms, height_mm));
            return self.motion;
        };
        let elapsed_ms = now_ms.saturating_sub(since_ms);
        if elapsed_ms >= self.window_ms.max(1) {
            let speed_mm_s = u64::from(height_mm.abs_diff(from_mm)) * 1000 / elapsed_ms;
            self.motion = if speed_mm_s < u64::from(self.threshold_mm_s) {
                Motion::Stopped
            } else if height_mm > from_mm {
                Motion::Up
            } else {
                Motion::Down
            };
            self.anchor = Some((now_ms, height_mm));
        }
        self.motion
    }

    /// Forget the last sample (after a sensor failure), keeping the last motion.
    pub fn restart(&mut self) {
        self.anchor = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_floor_handles_skipped_numbers_and_basements() {
        let table = LandingTable::new(&[
            Landing {
                floor: -1,
                height_mm: 0,
            },
            Landing {
                floor: 1,
                height_mm: 3_500,
            },
            Landing {
                floor: 2,
                height_mm: 6_500,
            },
            Landing {
                floor: 5,
                height_mm: 9_500,
            },
        ])
        .unwrap();
        assert_eq!(table.nearest_floor(0), -1);
        assert_eq!(table.nearest_floor(3_000), 1);
        assert_eq!(table.nearest_floor(9_000), 5);
        assert_eq!(table.nearest_floor(60_000), 5);
        assert_eq!(LandingTable::new(&[]), Err(LandingTableError::Empty));
        let descending = [
            Landing {
                floor: 1,
                height_mm: 10,
            },
            Landing { floor: 2, height_mm: 5 },
        ];
        assert_eq!(LandingTable::new(&descending), Err(LandingTableError::NotAscending));
    }

    #[test]
    fn motion_needs_a_full_window_and_ignores_noise() {
        let mut m = MotionEstimator::new(500, 100);
        assert_eq!(m.update(1_000, 0), Motion::Stopped);
        assert_eq!(m.update(1_030, 250), Motion::Stopped);
        // 30 mm in 500 ms = 60 mm/s: noise, not motion.
        assert_eq!(m.update(1_030, 500), Motion::Stopped);
        assert_eq!(m.update(1_530, 1_000), Motion::Up);
        assert_eq!(m.update(1_030, 1_500), Motion::Down);
        assert_eq!(m.update(1_040, 2_000), Motion::Stopped);
    }
}
