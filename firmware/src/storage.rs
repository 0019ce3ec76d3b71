//! Persistent layout of the outbox on any byte-addressable
//! [`embedded_storage::Storage`] (FRAM or EEPROM on a board, [`RamStorage`] in tests
//! and simulators).
//!
//! ```text
//! base + 0                  state copy A   (STATE_BYTES)
//! base + STATE_BYTES        state copy B   (STATE_BYTES)
//! base + 2 * STATE_BYTES    slot 0 .. slot N-1 (SLOT_BYTES each); record `seq` lives in slot (seq - 1) % N
//! ```
//!
//! Every block is framed as `[len][payload][crc32]` with the block type mixed into the
//! CRC, so a torn write, erased memory or a slot read as a state block is rejected.
//! The two state copies alternate by generation: a torn state write leaves the
//! previous copy intact.
use crate::record::Record;
use embedded_storage::{ReadStorage, Storage};
use serde::{Deserialize, Serialize};

/// Bytes reserved for one buffered record.
pub const SLOT_BYTES: usize = 64;
/// Bytes reserved for one copy of the persisted state.
pub const STATE_BYTES: usize = 64;
const FRAME_OVERHEAD: usize = 1 + 4;

/// Storage bytes an outbox of `capacity` records needs.
pub const fn storage_bytes(capacity: usize) -> usize {
    2 * STATE_BYTES + capacity * SLOT_BYTES
}

/// Counters that must survive a reset. `next_seq` is the reserved seq high-water
/// mark; the slots hold every seq issued since, so recovery takes the larger of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PersistedState {
    /// Increases with every state write; picks the newer of the two copies.
    pub generation: u32,
    pub next_seq: u64,
    /// Highest seq acknowledged by the gateway.
    pub acked: u64,
    pub boots: u32,
    /// Records dropped because the buffer was full, since installation.
    pub dropped_total: u32,
    /// Dropped records not yet announced with a `BufferOverflow` event.
    pub dropped_unreported: u32,
}

#[derive(Clone, Copy)]
pub(crate) enum BlockType {
    State = 0x53,
    Record = 0x52,
    /// The node's identity and login (`crate::identity`).
    Identity = 0x49,
}

/// Where the outbox's blocks live in a storage device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub base: u32,
    pub capacity: usize,
}

impl Layout {
    fn state_offset(&self, generation: u32) -> u32 {
        self.base + (generation % 2) * STATE_BYTES as u32
    }

    fn slot_offset(&self, slot: usize) -> u32 {
        self.base + (2 * STATE_BYTES + slot * SLOT_BYTES) as u32
    }

    /// The slot that holds record `seq` (seq starts at 1).
    pub fn slot_of(&self, seq: u64) -> usize {
        ((seq - 1) % self.capacity as u64) as usize
    }

    /// Reads both state copies and returns the newest valid one.
    pub fn read_state<S: ReadStorage>(&self, storage: &mut S) -> Result<Option<PersistedState>, S::Error> {
        let mut newest: Option<PersistedState> = None;
        for copy in 0..2 {
            let found: Option<PersistedState> =
                read_block::<S, _, STATE_BYTES>(storage, self.state_offset(copy), BlockType::State)?;
            if let Some(state) = found.filter(|s| newest.is_none_or(|n| s.generation > n.generation)) {
                newest = Some(state);
            }
        }
        Ok(newest)
    }

    /// Writes `state` into the copy its generation selects.
    pub fn write_state<S: Storage>(&self, storage: &mut S, state: &PersistedState) -> Result<(), S::Error> {
        write_block::<S, _, STATE_BYTES>(storage, self.state_offset(state.generation), BlockType::State, state)
    }

    pub fn read_slot<S: ReadStorage>(&self, storage: &mut S, slot: usize) -> Result<Option<Record>, S::Error> {
        read_block::<S, _, SLOT_BYTES>(storage, self.slot_offset(slot), BlockType::Record)
    }

    pub fn write_record<S: Storage>(&self, storage: &mut S, record: &Record) -> Result<(), S::Error> {
        let offset = self.slot_offset(self.slot_of(record.seq));
        write_block::<S, _, SLOT_BYTES>(storage, offset, BlockType::Record, record)
    }
}

pub(crate) fn read_block<S, T, const BYTES: usize>(
    storage: &mut S,
    offset: u32,
    kind: BlockType,
) -> Result<Option<T>, S::Error>
where
    S: ReadStorage,
    T: for<'de> Deserialize<'de>,
{
    let mut buf = [0u8; BYTES];
    storage.read(offset, &mut buf)?;
    let len = buf[0] as usize;
    if len + FRAME_OVERHEAD > buf.len() {
        return Ok(None);
    }
    let (framed, rest) = buf.split_at(1 + len);
    let stored_crc = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    if crc32(kind as u8, framed) != stored_crc {
        return Ok(None);
    }
    Ok(postcard::from_bytes(&framed[1..]).ok())
}

pub(crate) fn write_block<S, T, const BYTES: usize>(
    storage: &mut S,
    offset: u32,
    kind: BlockType,
    value: &T,
) -> Result<(), S::Error>
where
    S: Storage,
    T: Serialize,
{
    let mut buf = [0u8; BYTES];
    let len = postcard::to_slice(value, &mut buf[1..BYTES - 4])
        .expect("every block's largest value fits it (checked by the max_size tests)")
        .len();
    buf[0] = len as u8;
    let crc = crc32(kind as u8, &buf[..1 + len]);
    buf[1 + len..FRAME_OVERHEAD + len].copy_from_slice(&crc.to_le_bytes());
    storage.write(offset, &buf[..FRAME_OVERHEAD + len])
}

/// CRC-32 (IEEE, bitwise: no table in flash) seeded with the block type.
fn crc32(block_type: u8, bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in core::iter::once(&block_type).chain(bytes) {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A storage device in RAM for tests and simulators. It keeps its bytes when the
/// outbox that used it is dropped, which is how a node reset is simulated.
#[derive(Clone)]
pub struct RamStorage<const BYTES: usize> {
    bytes: [u8; BYTES],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds;

impl<const BYTES: usize> RamStorage<BYTES> {
    /// Fresh memory, all 0xFF like erased EEPROM.
    pub const fn new() -> Self {
        Self { bytes: [0xFF; BYTES] }
    }

    /// Raw access, e.g. to corrupt a block in a test.
    pub fn bytes_mut(&mut self) -> &mut [u8; BYTES] {
        &mut self.bytes
    }

    fn range(&self, offset: u32, len: usize) -> Result<core::ops::Range<usize>, OutOfBounds> {
        let start = offset as usize;
        let end = start.checked_add(len).filter(|&end| end <= BYTES).ok_or(OutOfBounds)?;
        Ok(start..end)
    }
}

impl<const BYTES: usize> Default for RamStorage<BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BYTES: usize> ReadStorage for RamStorage<BYTES> {
    type Error = OutOfBounds;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let range = self.range(offset, bytes.len())?;
        bytes.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        BYTES
    }
}

impl<const BYTES: usize> Storage for RamStorage<BYTES> {
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let range = self.range(offset, bytes.len())?;
        self.bytes[range].copy_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NodeMessage;
    use gridwatch_protocol::*;

    const LAYOUT: Layout = Layout { base: 16, capacity: 4 };

    fn largest_records() -> [Record; 5] {
        let (seq, ts) = (u64::MAX, u64::MAX);
        let lift = LiftStatus {
            mode: ServiceMode::OutOfService,
            motion: Motion::Down,
            door: Door::Closed,
            door_zone: true,
            floor: i16::MIN,
            occupied: true,
            alarm: true,
            fault: u16::MAX,
            power: Power::Battery,
            runs: u32::MAX,
            door_cycles: u32::MAX,
        };
        let sterilizer = SterilizerStatus {
            method: Method::Dishwasher,
            temp_c: f32::MAX,
            door: Door::Open,
            heating: true,
            power: true,
            in_cycle: true,
        };
        let cycle = CycleReport {
            method: Method::Infrared,
            started: u64::MAX,
            peak_c: Some(f32::MAX),
            hold_s: u32::MAX,
            outcome: CycleOutcome::Aborted,
        };
        let birth = Birth {
            device_kind: DeviceKind::Sterilizer,
            fw: heapless::String::try_from("0123456789abcdef").unwrap(),
            boots: u32::MAX,
        };
        let event = NodeEvent {
            event: EventKind::BufferOverflow,
            code: u16::MAX,
        };
        [
            NodeMessage::Lift(lift),
            NodeMessage::Sterilizer(sterilizer),
            NodeMessage::Cycle(cycle),
            NodeMessage::Birth(birth),
            NodeMessage::Event(event),
        ]
        .map(|message| Record { seq, ts, message })
    }

    #[test]
    fn the_largest_record_of_every_kind_fits_a_slot() {
        let mut storage = RamStorage::<{ 16 + storage_bytes(4) }>::new();
        for record in largest_records() {
            LAYOUT.write_record(&mut storage, &record).unwrap();
            let read = LAYOUT.read_slot(&mut storage, LAYOUT.slot_of(record.seq)).unwrap();
            assert_eq!(read, Some(record));
        }
    }

    #[test]
    fn the_largest_state_fits_and_the_newest_copy_wins() {
        let mut storage = RamStorage::<{ 16 + storage_bytes(4) }>::new();
        assert_eq!(LAYOUT.read_state(&mut storage).unwrap(), None);
        let older = PersistedState {
            generation: u32::MAX - 1,
            next_seq: u64::MAX,
            acked: u64::MAX,
            boots: u32::MAX,
            dropped_total: u32::MAX,
            dropped_unreported: u32::MAX,
        };
        let newer = PersistedState {
            generation: u32::MAX,
            acked: 7,
            ..older
        };
        LAYOUT.write_state(&mut storage, &older).unwrap();
        LAYOUT.write_state(&mut storage, &newer).unwrap();
        assert_eq!(LAYOUT.read_state(&mut storage).unwrap(), Some(newer));
    }

    #[test]
    fn a_torn_state_write_falls_back_to_the_other_copy() {
        let mut storage = RamStorage::<{ 16 + storage_bytes(4) }>::new();
        let first = PersistedState {
            generation: 1,
            next_seq: 10,
            ..Default::default()
        };
        let second = PersistedState {
            generation: 2,
            next_seq: 20,
            ..Default::default()
        };
        LAYOUT.write_state(&mut storage, &first).unwrap();
        LAYOUT.write_state(&mut storage, &second).unwrap();
        // Corrupt one payload byte of the generation-2 copy (copy A at the base).
        storage.bytes_mut()[16 + 3] ^= 0x40;
        assert_eq!(LAYOUT.read_state(&mut storage).unwrap(), Some(first));
    }

    #[test]
    fn a_slot_is_never_read_as_state() {
        let mut storage = RamStorage::<{ 16 + storage_bytes(4) }>::new();
        let record = largest_records()[4].clone();
        let mut copy = [0u8; SLOT_BYTES];
        LAYOUT.write_record(&mut storage, &record).unwrap();
        storage
            .read(LAYOUT.slot_offset(LAYOUT.slot_of(record.seq)), &mut copy)
            .unwrap();
        storage.write(LAYOUT.state_offset(0), &copy).unwrap();
        assert_eq!(LAYOUT.read_state(&mut storage).unwrap(), None);
    }

    #[test]
    fn out_of_bounds_access_is_an_error() {
        let mut storage = RamStorage::<8>::new();
        assert_eq!(storage.write(4, &[0; 8]), Err(OutOfBounds));
        assert_eq!(storage.read(u32::MAX, &mut [0; 1]), Err(OutOfBounds));
    }
}
