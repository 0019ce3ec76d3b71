//! Benewake TF-Luna time-of-flight rangefinder over I2C, mounted in the pit and aimed
//! at the car's underside, as the car position sensor.
//!
//! Datasheet facts used (TF-Luna product manual, I2C mode): default address 0x10;
//! registers 0x00/0x01 distance (cm, little-endian), 0x02/0x03 signal amplitude,
//! 0x04/0x05 chip temperature (0.01 °C); a burst read auto-increments the register.
//! A reading is unreliable when the amplitude is below 100 or is 0xFFFF (overexposed).
//! Range 0.2-8 m: enough for a low-rise shaft; taller shafts use a longer-range sensor
//! behind the same [`PositionSensor`] trait.
use crate::position::PositionSensor;
use embedded_hal::i2c::I2c;

pub const DEFAULT_ADDRESS: u8 = 0x10;
const REG_DIST_LOW: u8 = 0x00;
const MIN_AMPLITUDE: u16 = 100;
const OVEREXPOSED: u16 = 0xFFFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TfLunaError<E> {
    I2c(E),
    /// Signal too weak or overexposed: the distance is not to be trusted.
    Unreliable {
        amplitude: u16,
    },
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub distance_mm: u32,
    pub amplitude: u16,
    /// Chip temperature in hundredths of °C.
    pub chip_temp_centi_c: i16,
}

pub struct TfLuna<I> {
    i2c: I,
    address: u8,
    /// Height of the sensor's zero above the lowest landing's sill level, in mm
    /// (negative when the sensor sits below it, as in a pit).
    offset_mm: i32,
}

impl<I: I2c> TfLuna<I> {
    pub const fn new(i2c: I, address: u8, offset_mm: i32) -> Self {
        Self {
            i2c,
            address,
            offset_mm,
        }
    }

    /// Reads distance, amplitude and chip temperature in one burst.
    pub fn measure(&mut self) -> Result<Range, TfLunaError<I::Error>> {
        let mut frame = [0u8; 6];
        self.i2c
            .write_read(self.address, &[REG_DIST_LOW], &mut frame)
            .map_err(TfLunaError::I2c)?;
        let distance_cm = u16::from_le_bytes([frame[0], frame[1]]);
        let amplitude = u16::from_le_bytes([frame[2], frame[3]]);
        if amplitude < MIN_AMPLITUDE || amplitude == OVEREXPOSED {
            return Err(TfLunaError::Unreliable { amplitude });
        }
        Ok(Range {
            distance_mm: u32::from(distance_cm) * 10,
            amplitude,
            chip_temp_centi_c: i16::from_le_bytes([frame[4], frame[5]]),
        })
    }

    pub fn release(self) -> I {
        self.i2c
    }
}

impl<I: I2c> PositionSensor for TfLuna<I> {
    type Error = TfLunaError<I::Error>;

    fn read_height_mm(&mut self) -> Result<u32, Self::Error> {
        let range = self.measure()?;
        Ok((range.distance_mm as i32 + self.offset_mm).max(0) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    fn frame(distance_cm: u16, amplitude: u16, temp: i16) -> std::vec::Vec<u8> {
        [distance_cm.to_le_bytes(), amplitude.to_le_bytes(), temp.to_le_bytes()].concat()
    }

    #[test]
    fn reads_a_burst_and_applies_the_mount_offset() {
        let i2c = Mock::new(&[Transaction::write_read(0x10, vec![0x00], frame(523, 1_200, 4_150))]);
        let mut sensor = TfLuna::new(i2c, DEFAULT_ADDRESS, -300);
        assert_eq!(sensor.read_height_mm(), Ok(4_930));
        sensor.release().done();
    }

    #[test]
    fn weak_or_overexposed_signal_is_an_error() {
        let i2c = Mock::new(&[
            Transaction::write_read(0x10, vec![0x00], frame(0, 40, 0)),
            Transaction::write_read(0x10, vec![0x00], frame(900, 0xFFFF, 0)),
            Transaction::write_read(0x10, vec![0x00], frame(900, 100, -250)),
        ]);
        let mut sensor = TfLuna::new(i2c, DEFAULT_ADDRESS, 0);
        assert_eq!(sensor.measure(), Err(TfLunaError::Unreliable { amplitude: 40 }));
        assert_eq!(sensor.measure(), Err(TfLunaError::Unreliable { amplitude: 0xFFFF }));
        assert_eq!(
            sensor.measure(),
            Ok(Range {
                distance_mm: 9_000,
                amplitude: 100,
                chip_temp_centi_c: -250
            })
        );
        sensor.release().done();
    }

    #[test]
    fn bus_errors_are_passed_on() {
        let i2c = Mock::new(&[Transaction::write_read(0x10, vec![0x00], vec![0; 6]).with_error(ErrorKind::Other)]);
        let mut sensor = TfLuna::new(i2c, DEFAULT_ADDRESS, 0);
        assert_eq!(sensor.read_height_mm(), Err(TfLunaError::I2c(ErrorKind::Other)));
        sensor.release().done();
    }
}
