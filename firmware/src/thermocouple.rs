//! MAX31855 cold-junction-compensated thermocouple-to-digital converter, read over
//! an `embedded_hal::spi::SpiDevice` (SPI mode 0, up to 5 MHz, read-only).
//!
//! Frame per the datasheet (32 bits, MSB first):
//!
//! | bits  | meaning |
//! |-------|---------|
//! | 31-18 | thermocouple temperature, 14-bit two's complement, 0.25 °C |
//! | 17    | reserved, always 0 |
//! | 16    | fault: set when any of bits 2-0 is set |
//! | 15-4  | internal (cold junction) temperature, 12-bit two's complement, 0.0625 °C |
//! | 3     | reserved, always 0 |
//! | 2     | SCV: thermocouple shorted to VCC |
//! | 1     | SCG: thermocouple shorted to GND |
//! | 0     | OC: thermocouple open (no connection) |
//!
//! The chip converts continuously (about 100 ms per conversion); reading more often
//! returns the same value, so the node's sample period, not a delay, paces reads.
use embedded_hal::spi::SpiDevice;

/// Why no temperature could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThermocoupleFault {
    OpenCircuit,
    ShortToGround,
    ShortToVcc,
    /// SPI error, or a frame that cannot come from the chip (reserved bits set, or all
    /// ones as from a floating MISO line).
    NoResponse,
}

/// Anything that measures the cabinet temperature.
pub trait TemperatureSensor {
    fn read_celsius(&mut self) -> Result<f32, ThermocoupleFault>;
}

/// One decoded frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Max31855Reading {
    pub thermocouple_c: f32,
    pub internal_c: f32,
}

pub struct Max31855<SPI> {
    spi: SPI,
}

impl<SPI: SpiDevice> Max31855<SPI> {
    pub const fn new(spi: SPI) -> Self {
        Self { spi }
    }

    pub fn read(&mut self) -> Result<Max31855Reading, ThermocoupleFault> {
        let mut frame = [0u8; 4];
        self.spi.read(&mut frame).map_err(|_| ThermocoupleFault::NoResponse)?;
        decode_frame(u32::from_be_bytes(frame))
    }

    pub fn release(self) -> SPI {
        self.spi
    }
}

impl<SPI: SpiDevice> TemperatureSensor for Max31855<SPI> {
    fn read_celsius(&mut self) -> Result<f32, ThermocoupleFault> {
        self.read().map(|r| r.thermocouple_c)
    }
}

const RESERVED_BITS: u32 = (1 << 17) | (1 << 3);
const FAULT: u32 = 1 << 16;
const SCV: u32 = 1 << 2;
const SCG: u32 = 1 << 1;
const OC: u32 = 1 << 0;

/// Decodes a raw 32-bit frame.
pub fn decode_frame(frame: u32) -> Result<Max31855Reading, ThermocoupleFault> {
    if frame & RESERVED_BITS != 0 {
        return Err(ThermocoupleFault::NoResponse);
    }
    if frame & FAULT != 0 {
        return Err(if frame & OC != 0 {
            ThermocoupleFault::OpenCircuit
        } else if frame & SCG != 0 {
            ThermocoupleFault::ShortToGround
        } else if frame & SCV != 0 {
            ThermocoupleFault::ShortToVcc
        } else {
            ThermocoupleFault::NoResponse
        });
    }
    // Arithmetic shifts of the sign-extended fields keep their two's complement sign.
    let thermocouple_quarters = (frame as i32) >> 18;
    let internal_sixteenths = ((frame as i32) << 16) >> 20;
    Ok(Max31855Reading {
        thermocouple_c: thermocouple_quarters as f32 * 0.25,
        internal_c: internal_sixteenths as f32 * 0.0625,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::spi::{Mock, Transaction};

    /// Builds a frame from the datasheet's fields.
    fn frame(thermocouple_quarters: i32, internal_sixteenths: i32, faults: u32) -> u32 {
        let fault = if faults != 0 { FAULT } else { 0 };
        ((thermocouple_quarters as u32 & 0x3FFF) << 18) | ((internal_sixteenths as u32 & 0xFFF) << 4) | fault | faults
    }

    #[test]
    fn datasheet_example_values() {
        // Datasheet table: +1600 °C = 0110 0100 0000 00, +100.75 °C = 0000 0110 0100 11,
        // -250 °C = 1111 0000 0110 00; internal +127 °C = 0111 1111 0000, -55 °C = 1100 1001 0000.
        let cases = [
            (0x1900, 0x7F0, 1600.0, 127.0),
            (0x193, 0xC90, 100.75, -55.0),
            (-1000, 0x190, -250.0, 25.0),
        ];
        for (tc, internal, want_tc, want_internal) in cases {
            let r = decode_frame(frame(tc, internal, 0)).unwrap();
            assert_eq!((r.thermocouple_c, r.internal_c), (want_tc, want_internal));
        }
    }

    #[test]
    fn fault_bits_and_impossible_frames() {
        assert_eq!(decode_frame(frame(0, 0, OC)), Err(ThermocoupleFault::OpenCircuit));
        assert_eq!(decode_frame(frame(0, 0, SCG)), Err(ThermocoupleFault::ShortToGround));
        assert_eq!(decode_frame(frame(0, 0, SCV)), Err(ThermocoupleFault::ShortToVcc));
        assert_eq!(
            decode_frame(0xFFFF_FFFF),
            Err(ThermocoupleFault::NoResponse),
            "floating MISO"
        );
        assert_eq!(
            decode_frame(frame(400, 0, 0) | (1 << 3)),
            Err(ThermocoupleFault::NoResponse)
        );
    }

    #[test]
    fn reads_four_bytes_in_one_transaction() {
        let bytes = frame(486, 400, 0).to_be_bytes().to_vec(); // 121.5 °C, 25 °C
        let spi = Mock::new(&[
            Transaction::transaction_start(),
            Transaction::read_vec(bytes),
            Transaction::transaction_end(),
        ]);
        let mut sensor = Max31855::new(spi);
        assert_eq!(sensor.read_celsius(), Ok(121.5));
        sensor.release().done();
    }
}
