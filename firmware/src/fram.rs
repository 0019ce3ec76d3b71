//! Fujitsu MB85RS-series SPI FRAM (e.g. MB85RS64V, 8 KiB) as an
//! [`embedded_storage::Storage`]: byte-addressable, no erase, ~10^12 write cycles,
//! so the outbox can rewrite its state on every ack without wearing it out.
//!
//! Datasheet commands used: WREN 0x06 (own chip-select frame, sets the write-enable
//! latch, which every WRITE clears), WRITE 0x02 + 16-bit address + data, READ 0x03 +
//! 16-bit address; the address auto-increments and wraps at the end of the array.
use embedded_hal::spi::{Operation, SpiDevice};
use embedded_storage::{ReadStorage, Storage};

const WREN: u8 = 0x06;
const WRITE: u8 = 0x02;
const READ: u8 = 0x03;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramError<E> {
    Spi(E),
    /// The access runs past the end of the memory (it would wrap around on the chip).
    OutOfBounds,
}

pub struct Mb85rs<SPI> {
    spi: SPI,
    capacity: usize,
}

impl<SPI: SpiDevice> Mb85rs<SPI> {
    /// `capacity` in bytes, at most 64 KiB (16-bit addressing), e.g. 8192 for MB85RS64V.
    pub const fn new(spi: SPI, capacity: usize) -> Self {
        assert!(
            capacity <= 1 << 16,
            "MB85RS parts with 16-bit addresses hold at most 64 KiB"
        );
        Self { spi, capacity }
    }

    pub fn release(self) -> SPI {
        self.spi
    }

    fn command(&self, opcode: u8, offset: u32, len: usize) -> Result<[u8; 3], FramError<SPI::Error>> {
        let end = (offset as usize).checked_add(len).ok_or(FramError::OutOfBounds)?;
        if end > self.capacity {
            return Err(FramError::OutOfBounds);
        }
        let [hi, lo] = (offset as u16).to_be_bytes();
        Ok([opcode, hi, lo])
    }
}

impl<SPI: SpiDevice> ReadStorage for Mb85rs<SPI> {
    type Error = FramError<SPI::Error>;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let command = self.command(READ, offset, bytes.len())?;
        self.spi
            .transaction(&mut [Operation::Write(&command), Operation::Read(bytes)])
            .map_err(FramError::Spi)
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<SPI: SpiDevice> Storage for Mb85rs<SPI> {
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let command = self.command(WRITE, offset, bytes.len())?;
        self.spi.write(&[WREN]).map_err(FramError::Spi)?;
        self.spi
            .transaction(&mut [Operation::Write(&command), Operation::Write(bytes)])
            .map_err(FramError::Spi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::spi::{Mock, Transaction};

    #[test]
    fn write_sets_the_latch_then_writes_at_the_address() {
        let spi = Mock::new(&[
            Transaction::transaction_start(),
            Transaction::write_vec(vec![WREN]),
            Transaction::transaction_end(),
            Transaction::transaction_start(),
            Transaction::write_vec(vec![WRITE, 0x1F, 0xFE]),
            Transaction::write_vec(vec![0xAB, 0xCD]),
            Transaction::transaction_end(),
        ]);
        let mut fram = Mb85rs::new(spi, 8192);
        fram.write(0x1FFE, &[0xAB, 0xCD]).unwrap();
        fram.release().done();
    }

    #[test]
    fn read_sends_the_address_then_clocks_data_in() {
        let spi = Mock::new(&[
            Transaction::transaction_start(),
            Transaction::write_vec(vec![READ, 0x00, 0x80]),
            Transaction::read_vec(vec![1, 2, 3]),
            Transaction::transaction_end(),
        ]);
        let mut fram = Mb85rs::new(spi, 8192);
        let mut bytes = [0; 3];
        fram.read(0x80, &mut bytes).unwrap();
        assert_eq!(bytes, [1, 2, 3]);
        fram.release().done();
    }

    #[test]
    fn accesses_past_the_end_never_reach_the_bus() {
        let spi = Mock::new(&[]);
        let mut fram = Mb85rs::new(spi, 8192);
        assert_eq!(fram.write(8191, &[0, 0]), Err(FramError::OutOfBounds));
        assert_eq!(fram.read(8192, &mut [0]), Err(FramError::OutOfBounds));
        fram.release().done();
    }
}
