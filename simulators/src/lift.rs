//! A lift as a physics model: car kinematics (trapezoidal speed profile), a door
//! operator, a simple collective controller, passengers arriving at landings and
//! leaving at their floors, and faults that can be injected.
//!
//! The model drives the car's hardware ([`LiftHardware`]): dry contacts and the pit
//! rangefinder that the firmware's `LiftNode` reads through embedded-hal. It never
//! reports a status itself: what the node sees is what the node reports.
use crate::hal::{ContactLine, Rangefinder};
use crate::rng::Rng;
use serde::Deserialize;

/// The installation and its traffic. Every field has a default (see [`Default`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiftParams {
    /// Number shown at the lowest landing (−1 for a basement).
    pub lowest_floor: i16,
    pub floors: u16,
    pub floor_height_mm: u32,
    /// Rated speed and acceleration of the car.
    pub speed_mm_s: f64,
    pub accel_mm_s2: f64,
    /// Speed when re-levelling to a landing after an emergency stop.
    pub levelling_speed_mm_s: f64,
    /// Time for the doors to open or close fully.
    pub door_time_ms: u64,
    /// How long the doors stay open at a stop.
    pub dwell_ms: u64,
    /// The doors start to open this long after the car stopped (brake set).
    pub door_open_delay_ms: u64,
    /// Half-height of the door (unlocking) zone around each sill.
    pub door_zone_mm: u32,
    /// The rangefinder sits this far below the lowest sill, in the pit.
    pub pit_mm: u32,
    pub start_floor: i16,
    /// Where most trips start and end (the lobby); defaults to `start_floor`.
    pub main_floor: Option<i16>,
    /// Passengers arriving per hour at random landings (0: only scheduled calls).
    pub traffic_per_hour: f64,
    pub capacity: usize,
    pub seed: u64,
}

impl Default for LiftParams {
    fn default() -> Self {
        Self {
            lowest_floor: 1,
            floors: 10,
            floor_height_mm: 3_000,
            speed_mm_s: 1_000.0,
            accel_mm_s2: 600.0,
            levelling_speed_mm_s: 150.0,
            door_time_ms: 2_500,
            dwell_ms: 4_000,
            door_open_delay_ms: 1_000,
            door_zone_mm: 100,
            pit_mm: 1_200,
            start_floor: 1,
            main_floor: None,
            traffic_per_hour: 0.0,
            capacity: 8,
            seed: 1,
        }
    }
}

impl LiftParams {
    pub fn highest_floor(&self) -> i16 {
        self.lowest_floor + self.floors as i16 - 1
    }

    pub fn sill_mm(&self, floor: i16) -> f64 {
        f64::from((floor - self.lowest_floor).max(0) as u32 * self.floor_height_mm)
    }

    /// Checks the numbers make a lift.
    pub fn validate(&self) -> Result<(), String> {
        let floors = self.lowest_floor..=self.highest_floor();
        if self.floors < 2 || self.floors > 64 {
            return Err(format!("floors must be 2..=64, not {}", self.floors));
        }
        if !floors.contains(&self.start_floor) {
            return Err(format!("start_floor {} is not one of {floors:?}", self.start_floor));
        }
        if self.main_floor.is_some_and(|f| !floors.contains(&f)) {
            return Err(format!("main_floor {:?} is not one of {floors:?}", self.main_floor));
        }
        if self.speed_mm_s <= 0.0 || self.accel_mm_s2 <= 0.0 || self.levelling_speed_mm_s <= 0.0 {
            return Err("speeds and acceleration must be positive".into());
        }
        if self.door_zone_mm * 4 >= self.floor_height_mm {
            return Err("door_zone_mm must be well below a quarter of floor_height_mm".into());
        }
        Ok(())
    }
}

/// What can happen to a lift, scheduled by a scenario or injected by hand.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum LiftEvent {
    /// A passenger arrives at `from` and wants to go to `to`.
    Call {
        from: i16,
        to: i16,
    },
    /// A passenger presses the alarm button in the car (a press of about 2 s).
    PressAlarm,
    /// The doors cannot close (a door operator or obstruction fault).
    DoorStuckOpen,
    /// The doors cannot open (passengers inside stay inside).
    DoorStuckClosed,
    /// The door lock circuit is bridged: the car leaves before its doors are shut.
    DoorLockBypass,
    /// The safety circuit opens: emergency stop where the car is, reported as a fault code.
    SafetyCircuitOpen,
    /// The drive stops the car at the next point between two landings and it stays there.
    StopBetweenFloors,
    /// Mains power fails: the car stops where it is; the node runs on its backup supply.
    PowerOff,
    PowerOn,
    /// The pit rangefinder loses its signal (dirty lens, target lost).
    PositionSensorFault,
    /// A technician switches the controller to inspection (maintenance) operation.
    InspectionOn,
    InspectionOff,
    /// A worn or loose contact chatters: its input toggles every `period_ms` (1 ms to 65 s)
    /// whatever the car does (the physics go on as before). `repair` ends it.
    ContactChatter {
        contact: LiftContact,
        #[serde(default = "default_chatter_ms")]
        period_ms: u64,
    },
    /// Every injected fault of the lift is repaired (mains and the inspection switch stay
    /// as they are); a car stopped between floors re-levels and opens.
    Repair,
}

/// A lift input that a sensor-level fault can take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiftContact {
    DoorClosed,
    DoorZone,
    Occupied,
    SafetyCircuit,
}

fn default_chatter_ms() -> u64 {
    500
}

/// The lift's hardware as the firmware sees it.
#[derive(Debug, Clone)]
pub struct LiftHardware {
    pub door_closed: ContactLine,
    pub door_zone: ContactLine,
    pub occupied: ContactLine,
    pub alarm: ContactLine,
    pub mains: ContactLine,
    pub inspection: ContactLine,
    /// Voltage sense across the safety chain: active while the circuit is closed.
    pub safety_circuit: ContactLine,
    pub rangefinder: Rangefinder,
}

impl LiftHardware {
    fn new() -> Self {
        Self {
            door_closed: ContactLine::active_low(),
            door_zone: ContactLine::active_high(),
            occupied: ContactLine::active_high(),
            alarm: ContactLine::active_low(),
            mains: ContactLine::active_high(),
            inspection: ContactLine::active_low(),
            safety_circuit: ContactLine::active_high(),
            rangefinder: Rangefinder::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Drive {
    /// At a landing, levelled; after a rescue everybody gets out.
    Parked {
        floor: i16,
        evacuate: bool,
    },
    Running {
        target: i16,
    },
    /// Stopped by a fault, power loss or the safety circuit, wherever the car was.
    Halted,
    /// Creeping to the nearest landing after a stop between floors.
    Levelling {
        target: i16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DoorCommand {
    Open,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Faults {
    door_stuck_open: bool,
    door_stuck_closed: bool,
    door_lock_bypass: bool,
    safety_open: bool,
    stop_between_floors_armed: bool,
    drive_fault: bool,
    mains_off: bool,
    position_sensor: bool,
    inspection: bool,
    /// A chattering contact and its half-period (ms; u16 keeps the model small).
    chatter: Option<(LiftContact, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Passenger {
    from: i16,
    to: i16,
}

/// Sub-step of the integration, in ms.
const MAX_STEP_MS: u64 = 50;
/// Length of an alarm button press.
const ALARM_PRESS_MS: u64 = 2_000;

#[derive(Debug, Clone)]
pub struct LiftModel {
    params: LiftParams,
    hw: LiftHardware,
    now_ms: u64,
    height_mm: f64,
    speed_mm_s: f64,
    /// 0.0 = closed and locked, 1.0 = fully open.
    door: f64,
    door_command: DoorCommand,
    /// When the doors close again (set when they are fully open).
    dwell_until_ms: Option<u64>,
    /// When the doors start to open after the car stopped at a landing.
    open_at_ms: Option<u64>,
    drive: Drive,
    going_up: bool,
    inside: Vec<Passenger>,
    waiting: Vec<Passenger>,
    faults: Faults,
    alarm_until_ms: u64,
    rng: Rng,
    next_arrival_ms: Option<u64>,
    /// Passengers delivered, for tests and summaries.
    pub delivered: u64,
}

impl LiftModel {
    /// A car parked at `start_floor` with its doors closed, at device time `now_ms`.
    pub fn new(params: LiftParams, now_ms: u64) -> Self {
        let height_mm = params.sill_mm(params.start_floor);
        let mut rng = Rng::new(params.seed);
        let next_arrival_ms =
            (params.traffic_per_hour > 0.0).then(|| now_ms + rng.exponential_ms(3_600_000.0 / params.traffic_per_hour));
        let mut model = Self {
            drive: Drive::Parked {
                floor: params.start_floor,
                evacuate: false,
            },
            hw: LiftHardware::new(),
            now_ms,
            height_mm,
            speed_mm_s: 0.0,
            door: 0.0,
            door_command: DoorCommand::Close,
            dwell_until_ms: None,
            open_at_ms: None,
            going_up: true,
            inside: Vec::new(),
            waiting: Vec::new(),
            faults: Faults::default(),
            alarm_until_ms: 0,
            rng,
            next_arrival_ms,
            delivered: 0,
            params,
        };
        model.wire();
        model
    }

    pub fn params(&self) -> &LiftParams {
        &self.params
    }

    pub fn hardware(&self) -> &LiftHardware {
        &self.hw
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn height_mm(&self) -> f64 {
        self.height_mm
    }

    pub fn passengers(&self) -> usize {
        self.inside.len()
    }

    pub fn is_moving(&self) -> bool {
        self.speed_mm_s.abs() > 1.0
    }

    pub fn doors_closed(&self) -> bool {
        self.door <= 0.0
    }

    /// The landing nearest to the car.
    pub fn nearest_floor(&self) -> i16 {
        let p = &self.params;
        let index = (self.height_mm / f64::from(p.floor_height_mm)).round() as i16;
        (p.lowest_floor + index).clamp(p.lowest_floor, p.highest_floor())
    }

    pub fn in_door_zone(&self) -> bool {
        (self.height_mm - self.params.sill_mm(self.nearest_floor())).abs() <= f64::from(self.params.door_zone_mm)
    }

    pub fn apply(&mut self, event: &LiftEvent) {
        let f = &mut self.faults;
        match *event {
            LiftEvent::Call { from, to } => {
                let floors = self.params.lowest_floor..=self.params.highest_floor();
                if floors.contains(&from) && floors.contains(&to) && from != to {
                    self.waiting.push(Passenger { from, to });
                }
            }
            LiftEvent::PressAlarm => self.alarm_until_ms = self.now_ms + ALARM_PRESS_MS,
            LiftEvent::DoorStuckOpen => f.door_stuck_open = true,
            LiftEvent::DoorStuckClosed => f.door_stuck_closed = true,
            LiftEvent::DoorLockBypass => f.door_lock_bypass = true,
            LiftEvent::SafetyCircuitOpen => f.safety_open = true,
            LiftEvent::StopBetweenFloors => f.stop_between_floors_armed = true,
            LiftEvent::PowerOff => f.mains_off = true,
            LiftEvent::PowerOn => f.mains_off = false,
            LiftEvent::PositionSensorFault => f.position_sensor = true,
            LiftEvent::InspectionOn => f.inspection = true,
            LiftEvent::InspectionOff => f.inspection = false,
            LiftEvent::ContactChatter { contact, period_ms } => {
                f.chatter = Some((contact, period_ms.clamp(1, u64::from(u16::MAX)) as u16))
            }
            LiftEvent::Repair => {
                *f = Faults {
                    mains_off: f.mains_off,
                    inspection: f.inspection,
                    ..Faults::default()
                }
            }
        }
        self.wire();
    }

    /// Advances the model to device time `t_ms`.
    pub fn advance_to(&mut self, t_ms: u64) {
        while self.now_ms < t_ms {
            let dt_ms = (t_ms - self.now_ms).min(MAX_STEP_MS);
            self.now_ms += dt_ms;
            self.step(dt_ms as f64 / 1000.0);
        }
        self.wire();
    }

    fn can_run(&self) -> bool {
        let f = &self.faults;
        !(f.mains_off || f.safety_open || f.drive_fault || f.inspection)
    }

    fn step(&mut self, dt_s: f64) {
        self.arrivals();
        self.move_doors(dt_s);
        if !self.can_run() {
            if matches!(self.drive, Drive::Running { .. } | Drive::Levelling { .. }) {
                // Emergency stop: the brake holds the car where it is.
                self.drive = Drive::Halted;
                self.speed_mm_s = 0.0;
            }
            return;
        }
        match self.drive {
            Drive::Halted => {
                let target = self.nearest_floor();
                self.drive = if self.in_door_zone() {
                    self.height_mm = self.params.sill_mm(target);
                    self.arrive(target, true);
                    self.drive
                } else {
                    Drive::Levelling { target }
                };
            }
            Drive::Levelling { target } => {
                if self.travel(target, self.params.levelling_speed_mm_s, dt_s) {
                    self.arrive(target, true);
                }
            }
            Drive::Running { target } => {
                if self.faults.stop_between_floors_armed && self.between_floors() {
                    self.faults.stop_between_floors_armed = false;
                    self.faults.drive_fault = true;
                    self.drive = Drive::Halted;
                    self.speed_mm_s = 0.0;
                    return;
                }
                if self.travel(target, self.params.speed_mm_s, dt_s) {
                    self.arrive(target, false);
                }
            }
            Drive::Parked { floor, .. } => self.dispatch(floor),
        }
    }

    /// Well away from any landing: the point where a drive fault leaves a car.
    fn between_floors(&self) -> bool {
        let off = (self.height_mm - self.params.sill_mm(self.nearest_floor())).abs();
        off > f64::from(self.params.floor_height_mm) / 3.0
    }

    fn move_doors(&mut self, dt_s: f64) {
        let rate = 1000.0 / self.params.door_time_ms.max(1) as f64;
        let powered = !self.faults.mains_off;
        match self.door_command {
            DoorCommand::Open if powered && !self.faults.door_stuck_closed && self.door < 1.0 => {
                self.door = (self.door + rate * dt_s).min(1.0);
                if self.door >= 1.0 {
                    self.doors_fully_open();
                }
            }
            DoorCommand::Close if powered && !self.faults.door_stuck_open && self.door > 0.0 => {
                self.door = (self.door - rate * dt_s).max(0.0);
            }
            _ => {}
        }
    }

    fn doors_fully_open(&mut self) {
        self.dwell_until_ms = Some(self.now_ms + self.params.dwell_ms);
        let Drive::Parked { floor, evacuate } = self.drive else {
            return;
        };
        let before = self.inside.len();
        self.inside.retain(|p| p.to != floor && !evacuate);
        self.drive = Drive::Parked { floor, evacuate: false };
        self.delivered += (before - self.inside.len()) as u64;
        let capacity = self.params.capacity;
        let mut i = 0;
        while i < self.waiting.len() && self.inside.len() < capacity {
            if self.waiting[i].from == floor {
                let p = self.waiting.remove(i);
                self.inside.push(p);
            } else {
                i += 1;
            }
        }
    }

    fn arrive(&mut self, floor: i16, evacuate: bool) {
        self.drive = Drive::Parked { floor, evacuate };
        self.speed_mm_s = 0.0;
        self.dwell_until_ms = None;
        self.open_at_ms = Some(self.now_ms + self.params.door_open_delay_ms);
    }

    /// The controller at a landing: close after the dwell, then run to the next stop.
    fn dispatch(&mut self, floor: i16) {
        if let Some(at) = self.open_at_ms {
            if self.now_ms >= at {
                self.open_at_ms = None;
                self.door_command = DoorCommand::Open;
            }
            return;
        }
        // Someone waiting here while the doors are shut (or closing): open for them.
        let call_here = self.waiting.iter().any(|p| p.from == floor) && self.inside.len() < self.params.capacity;
        if call_here && self.door_command == DoorCommand::Close {
            self.door_command = DoorCommand::Open;
            self.dwell_until_ms = None;
            return;
        }
        if self.door_command == DoorCommand::Open {
            match self.dwell_until_ms {
                Some(until) if self.now_ms >= until => self.door_command = DoorCommand::Close,
                _ => return,
            }
        }
        // A bridged lock circuit tells the controller the doors are locked as soon as
        // they are told to close.
        let locked = self.door <= 0.0 || self.faults.door_lock_bypass;
        if !locked {
            return;
        }
        if let Some(target) = self.next_stop(floor) {
            self.going_up = target > floor;
            self.drive = Drive::Running { target };
        }
    }

    /// The nearest stop ahead in the current direction, else the nearest behind.
    fn next_stop(&self, floor: i16) -> Option<i16> {
        let stops = self
            .inside
            .iter()
            .map(|p| p.to)
            .chain(self.waiting.iter().map(|p| p.from))
            .filter(|&f| f != floor);
        let (mut ahead, mut behind): (Option<i16>, Option<i16>) = (None, None);
        for stop in stops {
            let is_ahead = (stop > floor) == self.going_up;
            let slot = if is_ahead { &mut ahead } else { &mut behind };
            if slot.is_none_or(|s| stop.abs_diff(floor) < s.abs_diff(floor)) {
                *slot = Some(stop);
            }
        }
        ahead.or(behind)
    }

    /// Moves toward `target`'s sill with a trapezoidal profile; true on arrival.
    fn travel(&mut self, target: i16, max_speed: f64, dt_s: f64) -> bool {
        let goal = self.params.sill_mm(target);
        let remaining = goal - self.height_mm;
        if remaining.abs() < 1.0 {
            self.height_mm = goal;
            return true;
        }
        let a = self.params.accel_mm_s2;
        let braking = (2.0 * a * remaining.abs()).sqrt().max(20.0);
        let wanted = max_speed.min(braking);
        let current = self.speed_mm_s.abs();
        let speed = if current < wanted {
            (current + a * dt_s).min(wanted)
        } else {
            wanted
        };
        let step = speed * dt_s;
        if step >= remaining.abs() {
            self.height_mm = goal;
            self.speed_mm_s = 0.0;
            return true;
        }
        self.height_mm += step * remaining.signum();
        self.speed_mm_s = speed * remaining.signum();
        false
    }

    fn arrivals(&mut self) {
        while let Some(at) = self.next_arrival_ms.filter(|&at| at <= self.now_ms) {
            let p = &self.params;
            let main = p.main_floor.unwrap_or(p.start_floor);
            let random_floor = |rng: &mut Rng| p.lowest_floor + rng.below(u64::from(p.floors)) as i16;
            let from = if self.rng.chance(0.5) {
                main
            } else {
                random_floor(&mut self.rng)
            };
            let mut to = if from != main && self.rng.chance(0.6) {
                main
            } else {
                random_floor(&mut self.rng)
            };
            if to == from {
                to = if from == p.highest_floor() { from - 1 } else { from + 1 };
            }
            self.waiting.push(Passenger { from, to });
            let mean_ms = 3_600_000.0 / self.params.traffic_per_hour;
            self.next_arrival_ms = Some(at + self.rng.exponential_ms(mean_ms).max(1));
        }
    }

    /// Writes the model's state to the hardware the node reads.
    fn wire(&mut self) {
        let hw = &self.hw;
        hw.door_closed.set(self.door <= 0.0);
        hw.door_zone.set(self.in_door_zone());
        hw.occupied.set(!self.inside.is_empty());
        hw.alarm.set(self.now_ms < self.alarm_until_ms);
        hw.mains.set(!self.faults.mains_off);
        hw.inspection.set(self.faults.inspection);
        hw.safety_circuit.set(!self.faults.safety_open);
        hw.rangefinder.set_weak_signal(self.faults.position_sensor);
        hw.rangefinder
            .set_distance_mm((self.height_mm + f64::from(self.params.pit_mm)).round() as u32);
        if let Some((contact, period_ms)) = self.faults.chatter {
            let line = match contact {
                LiftContact::DoorClosed => &hw.door_closed,
                LiftContact::DoorZone => &hw.door_zone,
                LiftContact::Occupied => &hw.occupied,
                LiftContact::SafetyCircuit => &hw.safety_circuit,
            };
            line.set((self.now_ms / u64::from(period_ms)).is_multiple_of(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::TfLunaChip;
    use gridwatch_firmware::position::PositionSensor;
    use gridwatch_firmware::rangefinder::TfLuna;

    const T0: u64 = 1_764_061_200_000;

    fn run(model: &mut LiftModel, secs: u64, mut each: impl FnMut(&LiftModel)) {
        let end = model.now_ms() + secs * 1000;
        while model.now_ms() < end {
            let next = model.now_ms() + 100;
            model.advance_to(next);
            each(model);
        }
    }

    #[test]
    fn a_call_is_served_with_doors_shut_while_moving() {
        let mut lift = LiftModel::new(LiftParams::default(), T0);
        lift.apply(&LiftEvent::Call { from: 3, to: 8 });
        let mut max_speed: f64 = 0.0;
        run(&mut lift, 60, |m| {
            max_speed = max_speed.max(m.speed_mm_s.abs());
            assert!(!(m.is_moving() && m.door > 0.0), "doors open while running");
            assert_eq!(m.hardware().door_closed.is_active(), m.door <= 0.0);
        });
        assert_eq!(lift.delivered, 1);
        assert_eq!(lift.nearest_floor(), 8);
        assert!(lift.in_door_zone() && lift.doors_closed());
        assert!((max_speed - 1_000.0).abs() < 1.0, "{max_speed}");
        let mut sensor = TfLuna::new(lift.hardware().rangefinder.bus(), TfLunaChip::ADDRESS, -1_200);
        assert_eq!(
            sensor.read_height_mm().ok(),
            Some(21_000),
            "floor 8, through the firmware driver"
        );
    }

    #[test]
    fn a_stop_between_floors_keeps_the_passenger_inside_until_repaired() {
        let mut lift = LiftModel::new(LiftParams::default(), T0);
        lift.apply(&LiftEvent::Call { from: 1, to: 6 });
        lift.apply(&LiftEvent::StopBetweenFloors);
        run(&mut lift, 60, |_| {});
        assert!(!lift.in_door_zone() && !lift.is_moving() && lift.passengers() == 1);
        lift.apply(&LiftEvent::Repair);
        run(&mut lift, 30, |_| {});
        assert!(lift.in_door_zone());
        assert_eq!(lift.passengers(), 0, "let out at the nearest landing");
    }

    #[test]
    fn a_bypassed_door_lock_runs_with_the_doors_open() {
        let mut lift = LiftModel::new(LiftParams::default(), T0);
        lift.apply(&LiftEvent::DoorLockBypass);
        lift.apply(&LiftEvent::Call { from: 1, to: 4 });
        let mut open_while_running = false;
        run(&mut lift, 40, |m| open_while_running |= m.is_moving() && m.door > 0.3);
        assert!(open_while_running);
    }

    #[test]
    fn traffic_is_deterministic_and_keeps_the_car_busy() {
        let params = LiftParams {
            traffic_per_hour: 120.0,
            seed: 7,
            ..LiftParams::default()
        };
        let (mut a, mut b) = (LiftModel::new(params.clone(), T0), LiftModel::new(params, T0));
        run(&mut a, 1_800, |_| {});
        run(&mut b, 1_800, |_| {});
        assert!(a.delivered > 30, "{}", a.delivered);
        assert_eq!((a.delivered, a.height_mm), (b.delivered, b.height_mm));
    }

    #[test]
    fn power_loss_stops_the_car_and_power_return_levels_it() {
        let mut lift = LiftModel::new(LiftParams::default(), T0);
        lift.apply(&LiftEvent::Call { from: 1, to: 10 });
        run(&mut lift, 12, |_| {});
        assert!(lift.is_moving());
        lift.apply(&LiftEvent::PowerOff);
        run(&mut lift, 5, |m| assert!(!m.is_moving()));
        assert!(!lift.hardware().mains.is_active());
        lift.apply(&LiftEvent::PowerOn);
        run(&mut lift, 60, |_| {});
        assert!(lift.in_door_zone() && lift.passengers() == 0);
    }

    #[test]
    fn a_chattering_door_zone_contact_toggles_until_repaired() {
        let mut lift = LiftModel::new(LiftParams::default(), T0);
        lift.apply(&LiftEvent::ContactChatter {
            contact: LiftContact::DoorZone,
            period_ms: 500,
        });
        let mut seen = Vec::new();
        run(&mut lift, 3, |m| seen.push(m.hardware().door_zone.is_active()));
        let toggles = seen.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(toggles >= 4, "{seen:?}");
        assert!(lift.in_door_zone(), "the car itself stays at its landing");
        lift.apply(&LiftEvent::Repair);
        run(&mut lift, 2, |m| assert!(m.hardware().door_zone.is_active()));
    }
}
