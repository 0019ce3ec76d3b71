//! The node's identity and MQTT login, kept in its persistent storage (the FRAM) in a block
//! of its own beside the outbox: a node keeps who it is and how it logs in across resets
//! and firmware updates, and sends that login on every connect.
//!
//! The first boot provisions the block from the image's factory values (on the board, the
//! build-time `GRIDWATCH_*` settings); every later boot reads it and ignores them, so an
//! image built for another node cannot change an installed node's identity. The block is
//! framed like the outbox's (length, postcard payload, CRC-32 with its own block type): a
//! torn write or erased memory reads as "not provisioned".
use crate::storage::{BlockType, read_block, write_block};
use embedded_storage::{ReadStorage, Storage};
use gridwatch_protocol::DeviceId;
use serde::{Deserialize, Serialize};

/// Bytes reserved for the identity block.
pub const IDENTITY_BYTES: usize = 192;

/// Longest MQTT secret a node keeps (`gridwatch devices add` makes 43-character ones).
pub const MAX_SECRET: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub gateway: DeviceId,
    pub device: DeviceId,
    /// The password sent with the device id as username; `None`: anonymous, which only an
    /// open broker accepts.
    pub secret: Option<heapless::String<MAX_SECRET>>,
}

impl NodeIdentity {
    /// The identity stored at `offset`, or `None` when the block is empty or damaged.
    pub fn load<S: ReadStorage>(storage: &mut S, offset: u32) -> Result<Option<Self>, S::Error> {
        read_block::<S, _, IDENTITY_BYTES>(storage, offset, BlockType::Identity)
    }

    pub fn store<S: Storage>(&self, storage: &mut S, offset: u32) -> Result<(), S::Error> {
        write_block::<S, _, IDENTITY_BYTES>(storage, offset, BlockType::Identity, self)
    }

    /// The stored identity; on a node never provisioned, `factory` stored and returned.
    pub fn load_or_provision<S: Storage>(
        storage: &mut S,
        offset: u32,
        factory: impl FnOnce() -> Self,
    ) -> Result<Self, S::Error> {
        if let Some(stored) = Self::load(storage, offset)? {
            return Ok(stored);
        }
        let identity = factory();
        identity.store(storage, offset)?;
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RamStorage;

    fn identity(device: &str, secret: Option<&str>) -> NodeIdentity {
        NodeIdentity {
            gateway: DeviceId::try_from("gw-01").unwrap(),
            device: DeviceId::try_from(device).unwrap(),
            secret: secret.map(|s| heapless::String::try_from(s).unwrap()),
        }
    }

    #[test]
    fn the_first_boot_provisions_and_later_boots_keep_the_stored_identity() {
        let mut fram = RamStorage::<1024>::new();
        let first = NodeIdentity::load_or_provision(&mut fram, 512, || identity("L-0001", Some("s3cret"))).unwrap();
        assert_eq!(first, identity("L-0001", Some("s3cret")));
        // An image built for another node does not change an installed one.
        let again = NodeIdentity::load_or_provision(&mut fram, 512, || identity("L-0002", None)).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn the_longest_ids_and_secret_fit_and_a_damaged_block_reads_as_unprovisioned() {
        let mut fram = RamStorage::<1024>::new();
        let longest = NodeIdentity {
            gateway: DeviceId::try_from("g".repeat(32).as_str()).unwrap(),
            device: DeviceId::try_from("d".repeat(32).as_str()).unwrap(),
            secret: Some(heapless::String::try_from("s".repeat(MAX_SECRET).as_str()).unwrap()),
        };
        longest.store(&mut fram, 0).unwrap();
        assert_eq!(NodeIdentity::load(&mut fram, 0).unwrap(), Some(longest));
        fram.bytes_mut()[10] ^= 0xff;
        assert_eq!(NodeIdentity::load(&mut fram, 0).unwrap(), None);
    }
}
