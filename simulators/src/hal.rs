//! Simulated hardware behind the embedded-hal 1.0 traits, so the firmware reads a
//! physics model exactly as it reads a board:
//!
//! | part | trait the firmware uses | simulated by |
//! |---|---|---|
//! | dry contacts (door, door zone, occupancy, alarm, mains, inspection, safety circuit, heater) | `digital::InputPin` | [`SimPin`] on a [`Wire`] |
//! | car position: Benewake TF-Luna rangefinder in the pit | `i2c::I2c` (the firmware's `TfLuna` driver) | [`TfLunaChip`] |
//! | cabinet temperature: MAX31855 thermocouple converter | `spi::SpiDevice` (the firmware's `Max31855` driver) | [`Max31855Chip`] |
//!
//! The physics model owns the other end of each part (a [`Wire`], a [`Rangefinder`],
//! a [`Thermocouple`]) and writes electrical levels and raw register contents; the
//! firmware drivers decode them. Every handle is `Send` (atomics), so a simulated node
//! can live in any task.
use embedded_hal::digital::{ErrorType as PinErrorType, InputPin};
use embedded_hal::i2c::{self, I2c, NoAcknowledgeSource, Operation as I2cOperation};
use embedded_hal::spi::{self, Operation as SpiOperation, SpiDevice};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

/// One signal line: its electrical level, set by the model, read by a [`SimPin`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Wire(Arc<AtomicBool>);

impl Wire {
    pub(crate) fn set_high(&self, high: bool) {
        self.0.store(high, Ordering::Relaxed);
    }

    pub(crate) fn is_high(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a contact is wired: which level means "active". The model sets the
/// meaning ([`ContactLine::set`]); the node reads the level with the same polarity.
#[derive(Debug, Clone)]
pub struct ContactLine {
    wire: Wire,
    active_low: bool,
}

impl ContactLine {
    /// A dry contact to ground with a pull-up: active when low (doors, alarm, inspection).
    pub fn active_low() -> Self {
        let contact = Self {
            wire: Wire::default(),
            active_low: true,
        };
        contact.set(false);
        contact
    }

    /// A voltage-sense input: active when high (mains, safety circuit, heater current).
    pub fn active_high() -> Self {
        Self {
            wire: Wire::default(),
            active_low: false,
        }
    }

    pub fn set(&self, active: bool) {
        self.wire.set_high(active != self.active_low);
    }

    pub fn is_active(&self) -> bool {
        self.wire.is_high() != self.active_low
    }

    /// The firmware's view of this contact: a GPIO input with the same polarity.
    pub fn firmware_input(&self) -> gridwatch_firmware::input::Contact<SimPin> {
        let pin = SimPin(self.wire.clone());
        if self.active_low {
            gridwatch_firmware::input::Contact::active_low(pin)
        } else {
            gridwatch_firmware::input::Contact::active_high(pin)
        }
    }
}

/// A GPIO input reading a [`Wire`].
#[derive(Debug, Clone)]
pub struct SimPin(Wire);

impl PinErrorType for SimPin {
    type Error = Infallible;
}

impl InputPin for SimPin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.is_high())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0.is_high())
    }
}

/// The rangefinder as the model sees it: the distance it measures and whether its
/// signal is good (a dirty lens or a misaligned target gives a weak signal).
#[derive(Debug, Clone, Default)]
pub struct Rangefinder {
    distance_mm: Arc<AtomicU32>,
    weak_signal: Arc<AtomicBool>,
    unplugged: Arc<AtomicBool>,
}

impl Rangefinder {
    pub fn set_distance_mm(&self, mm: u32) {
        self.distance_mm.store(mm, Ordering::Relaxed);
    }

    /// A weak or overexposed return: the chip still answers, with an amplitude the
    /// driver rejects.
    pub fn set_weak_signal(&self, weak: bool) {
        self.weak_signal.store(weak, Ordering::Relaxed);
    }

    /// The chip stops acknowledging its address (cable cut).
    pub fn set_unplugged(&self, unplugged: bool) {
        self.unplugged.store(unplugged, Ordering::Relaxed);
    }

    /// The I2C bus with the chip on it, for the firmware's `TfLuna` driver.
    pub fn bus(&self) -> TfLunaChip {
        TfLunaChip {
            state: self.clone(),
            pointer: 0,
        }
    }
}

/// A Benewake TF-Luna on an I2C bus at address 0x10 (register map of its manual:
/// 0x00/0x01 distance in cm, 0x02/0x03 amplitude, 0x04/0x05 chip temperature in
/// 0.01 °C, little-endian, auto-incrementing). Unlike the real part it has no 8 m range
/// limit, standing in for the longer-range sensor a tall shaft needs.
#[derive(Debug, Clone)]
pub struct TfLunaChip {
    state: Rangefinder,
    pointer: u8,
}

/// Errors of the simulated buses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusError {
    NoAcknowledge,
    Other,
}

impl i2c::Error for BusError {
    fn kind(&self) -> i2c::ErrorKind {
        match self {
            BusError::NoAcknowledge => i2c::ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            BusError::Other => i2c::ErrorKind::Other,
        }
    }
}

impl spi::Error for BusError {
    fn kind(&self) -> spi::ErrorKind {
        spi::ErrorKind::Other
    }
}

impl i2c::ErrorType for TfLunaChip {
    type Error = BusError;
}

impl TfLunaChip {
    pub const ADDRESS: u8 = gridwatch_firmware::rangefinder::DEFAULT_ADDRESS;

    fn registers(&self) -> [u8; 6] {
        let distance_cm = (self.state.distance_mm.load(Ordering::Relaxed) / 10).min(u16::MAX as u32) as u16;
        let amplitude: u16 = if self.state.weak_signal.load(Ordering::Relaxed) {
            40
        } else {
            1_800
        };
        let chip_temp: i16 = 3_150;
        let [d0, d1] = distance_cm.to_le_bytes();
        let [a0, a1] = amplitude.to_le_bytes();
        let [t0, t1] = chip_temp.to_le_bytes();
        [d0, d1, a0, a1, t0, t1]
    }
}

impl I2c for TfLunaChip {
    fn transaction(&mut self, address: u8, operations: &mut [I2cOperation<'_>]) -> Result<(), BusError> {
        if address != Self::ADDRESS || self.state.unplugged.load(Ordering::Relaxed) {
            return Err(BusError::NoAcknowledge);
        }
        let registers = self.registers();
        for op in operations {
            match op {
                I2cOperation::Write(bytes) => {
                    if let Some(&register) = bytes.first() {
                        self.pointer = register;
                    }
                }
                I2cOperation::Read(buf) => {
                    for byte in buf.iter_mut() {
                        *byte = registers.get(self.pointer as usize).copied().unwrap_or(0);
                        self.pointer = self.pointer.wrapping_add(1);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A thermocouple fault as the MAX31855 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeFault {
    OpenCircuit,
    ShortToGround,
    ShortToVcc,
    /// The converter does not answer: MISO floats high (all ones).
    NoResponse,
}

/// The thermocouple as the model sees it: the junction temperature and its faults.
#[derive(Debug, Clone, Default)]
pub struct Thermocouple {
    /// Quarter degrees, two's complement, as the chip converts them.
    quarters: Arc<AtomicU32>,
    /// 0 = healthy, else `ProbeFault as u8 + 1`.
    fault: Arc<AtomicU8>,
}

impl Thermocouple {
    pub fn set_celsius(&self, celsius: f64) {
        let quarters = (celsius * 4.0).round().clamp(-8192.0, 8191.0) as i32;
        self.quarters.store(quarters as u32, Ordering::Relaxed);
    }

    pub fn set_fault(&self, fault: Option<ProbeFault>) {
        self.fault.store(fault.map_or(0, |f| f as u8 + 1), Ordering::Relaxed);
    }

    /// The SPI device with the converter on it, for the firmware's `Max31855` driver.
    pub fn device(&self) -> Max31855Chip {
        Max31855Chip { state: self.clone() }
    }

    /// The 32-bit frame the converter would shift out now (datasheet layout).
    pub fn frame(&self) -> u32 {
        const INTERNAL_SIXTEENTHS: u32 = 25 * 16;
        let fault_bits = match self.fault.load(Ordering::Relaxed) {
            0 => 0,
            1 => 1 << 0,
            2 => 1 << 1,
            3 => 1 << 2,
            _ => return u32::MAX,
        };
        let quarters = self.quarters.load(Ordering::Relaxed) & 0x3FFF;
        let fault = if fault_bits != 0 { 1 << 16 } else { 0 };
        (quarters << 18) | ((INTERNAL_SIXTEENTHS & 0xFFF) << 4) | fault | fault_bits
    }
}

/// A MAX31855 on its own chip select: every read shifts out the current frame.
#[derive(Debug, Clone)]
pub struct Max31855Chip {
    state: Thermocouple,
}

impl spi::ErrorType for Max31855Chip {
    type Error = BusError;
}

impl SpiDevice for Max31855Chip {
    fn transaction(&mut self, operations: &mut [SpiOperation<'_, u8>]) -> Result<(), BusError> {
        let frame = self.state.frame().to_be_bytes();
        let mut shifted = 0;
        for op in operations {
            match op {
                SpiOperation::Read(buf) => {
                    for byte in buf.iter_mut() {
                        *byte = frame.get(shifted).copied().unwrap_or(0);
                        shifted += 1;
                    }
                }
                SpiOperation::Transfer(read, _) => {
                    for byte in read.iter_mut() {
                        *byte = frame.get(shifted).copied().unwrap_or(0);
                        shifted += 1;
                    }
                }
                SpiOperation::TransferInPlace(buf) => {
                    for byte in buf.iter_mut() {
                        *byte = frame.get(shifted).copied().unwrap_or(0);
                        shifted += 1;
                    }
                }
                SpiOperation::Write(_) | SpiOperation::DelayNs(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_firmware::position::PositionSensor;
    use gridwatch_firmware::rangefinder::TfLuna;
    use gridwatch_firmware::thermocouple::{Max31855, TemperatureSensor, ThermocoupleFault};

    #[test]
    fn contacts_keep_their_polarity_through_the_firmware_input() {
        for contact in [ContactLine::active_low(), ContactLine::active_high()] {
            let mut input = contact.firmware_input();
            assert!(!input.is_active());
            contact.set(true);
            assert!(input.is_active() && contact.is_active());
        }
        let door = ContactLine::active_low();
        door.set(true);
        assert!(!door.wire.is_high(), "an active dry contact pulls the line low");
    }

    #[test]
    fn the_firmware_rangefinder_driver_reads_the_simulated_chip() {
        let rangefinder = Rangefinder::default();
        rangefinder.set_distance_mm(7_230);
        let mut sensor = TfLuna::new(rangefinder.bus(), TfLunaChip::ADDRESS, -1_200);
        assert_eq!(sensor.read_height_mm().ok(), Some(6_030));
        rangefinder.set_weak_signal(true);
        assert!(sensor.read_height_mm().is_err());
        rangefinder.set_weak_signal(false);
        rangefinder.set_unplugged(true);
        assert!(sensor.read_height_mm().is_err());
    }

    #[test]
    fn the_firmware_thermocouple_driver_reads_the_simulated_chip() {
        let probe = Thermocouple::default();
        probe.set_celsius(121.3);
        let mut sensor = Max31855::new(probe.device());
        assert_eq!(sensor.read_celsius(), Ok(121.25));
        probe.set_celsius(-12.0);
        assert_eq!(sensor.read_celsius(), Ok(-12.0));
        let faults = [
            (ProbeFault::OpenCircuit, ThermocoupleFault::OpenCircuit),
            (ProbeFault::ShortToGround, ThermocoupleFault::ShortToGround),
            (ProbeFault::ShortToVcc, ThermocoupleFault::ShortToVcc),
            (ProbeFault::NoResponse, ThermocoupleFault::NoResponse),
        ];
        for (simulated, reported) in faults {
            probe.set_fault(Some(simulated));
            assert_eq!(sensor.read_celsius(), Err(reported));
        }
    }
}
