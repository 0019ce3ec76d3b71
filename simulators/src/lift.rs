//! A lift car as a small physics model: it shuttles between floors with
//! passengers, and can be told to trap a passenger between floors.
use gridwatch_protocol::{Door, LiftStatus, Motion, Power, ServiceMode};

/// Seconds per floor travelled and seconds the doors stay open.
const SECONDS_PER_FLOOR: u64 = 2;
const DOOR_OPEN_SECONDS: u64 = 6;

#[derive(Debug, Clone)]
pub struct SimLift {
    floors: i16,
    floor: i16,
    target: i16,
    door_open_until: u64,
    next_floor_at: u64,
    occupied: bool,
    trapped: bool,
    runs: u32,
    door_cycles: u32,
    /// Deterministic source of destinations.
    rng: u64,
}

impl SimLift {
    pub fn new(floors: i16, seed: u64) -> Self {
        Self {
            floors,
            floor: 1,
            target: 1,
            door_open_until: 0,
            next_floor_at: 0,
            occupied: false,
            trapped: false,
            runs: 0,
            door_cycles: 0,
            rng: seed | 1,
        }
    }

    fn random(&mut self, n: u64) -> u64 {
        // xorshift64: enough for varied, repeatable traffic.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    /// Stops the car between floors with doors closed and a passenger inside.
    pub fn trap_passenger(&mut self) {
        self.trapped = true;
        self.occupied = true;
    }

    pub fn release(&mut self) {
        self.trapped = false;
    }

    /// Advances the model to device time `now_s` (seconds).
    pub fn step(&mut self, now_s: u64) {
        if self.trapped || now_s < self.door_open_until || now_s < self.next_floor_at {
            return;
        }
        if self.floor == self.target {
            // Arrived: open doors, passengers leave or board, pick the next call.
            self.door_open_until = now_s + DOOR_OPEN_SECONDS;
            self.door_cycles += 1;
            self.occupied = self.random(3) > 0;
            self.target = 1 + self.random(self.floors as u64) as i16;
            if self.target != self.floor {
                self.runs += 1;
            }
            self.next_floor_at = self.door_open_until + SECONDS_PER_FLOOR;
        } else {
            self.floor += (self.target - self.floor).signum();
            self.next_floor_at = now_s + SECONDS_PER_FLOOR;
        }
    }

    pub fn status(&self, now_s: u64) -> LiftStatus {
        let doors_open = !self.trapped && now_s < self.door_open_until;
        let moving = !self.trapped && !doors_open && self.floor != self.target;
        LiftStatus {
            mode: ServiceMode::Normal,
            motion: match (moving, self.target > self.floor) {
                (false, _) => Motion::Stopped,
                (true, true) => Motion::Up,
                (true, false) => Motion::Down,
            },
            door: if doors_open { Door::Open } else { Door::Closed },
            door_zone: !self.trapped && !moving,
            floor: self.floor,
            occupied: self.occupied,
            alarm: false,
            fault: 0,
            power: Power::Mains,
            runs: self.runs,
            door_cycles: self.door_cycles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trapped_car_stays_closed_occupied_and_still() {
        let mut lift = SimLift::new(10, 7);
        for t in 0..300 {
            lift.step(t);
        }
        lift.trap_passenger();
        for t in 300..500 {
            lift.step(t);
            let s = lift.status(t);
            assert_eq!(
                (s.door, s.motion, s.occupied, s.door_zone),
                (Door::Closed, Motion::Stopped, true, false)
            );
        }
    }

    #[test]
    fn a_working_lift_moves_and_opens_doors() {
        let mut lift = SimLift::new(10, 7);
        let mut seen_moving = false;
        let mut seen_open = false;
        for t in 0..600 {
            lift.step(t);
            let s = lift.status(t);
            seen_moving |= s.motion != Motion::Stopped;
            seen_open |= s.door == Door::Open;
            assert!(
                !(s.door == Door::Open && s.motion != Motion::Stopped),
                "doors open while running at {t}"
            );
        }
        assert!(seen_moving && seen_open);
    }
}
