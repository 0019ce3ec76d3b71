//! The engine's per-device state changes with every reading, so it is saved by
//! periodic checkpoints rather than with every change. A checkpoint goes out in
//! pieces of [`CHECKPOINT_PIECE_ROWS`] rows, each in its own transaction: ten
//! thousand changed devices serialised at once were ~10 MB of JSON, 20 MB of
//! ingest's peak memory in the SQLite direct benchmark. Pieces may land apart, and
//! a device's row may be newer than the `engine` row's replay point: the engine
//! ignores readings it has applied, so that only replays more.
use crate::Domain;
use gridwatch_alerts::Changes;
use gridwatch_storage::domain::{CHECKPOINT_PIECE_ROWS, engine_meta_row, engine_state_rows};
use std::collections::{BTreeSet, VecDeque};

/// What one checkpoint saves: the engine state changed since the last one, in
/// pieces of at most [`CHECKPOINT_PIECE_ROWS`] devices or gateways, then the
/// `engine` row, taken when the checkpoint began.
pub(crate) struct Checkpoint {
    pieces: VecDeque<Changes>,
    meta: (String, String),
}

impl Checkpoint {
    /// Takes the changes out of `domain`. `replay_from` is the ingest-clock time
    /// from which readings must be replayed after a restart.
    pub(crate) fn begin(domain: &mut Domain, replay_from: i64) -> gridwatch_storage::Result<Checkpoint> {
        let meta = engine_meta_row(domain.engine.state(), replay_from)?;
        // Taken here, not after every batch: the engine's set holds each changed
        // id once however many readings changed it, while merging it into an
        // ordered set per batch was ~2.5 % of ingest's CPU samples (perf, direct benchmark).
        let engine = domain.engine.take_changes();
        domain.mark_unsaved(engine);
        let changes = std::mem::take(&mut domain.unsaved_engine);
        let devices = in_pieces(changes.devices).map(|devices| Changes {
            devices,
            ..Default::default()
        });
        let gateways = in_pieces(changes.gateways).map(|gateways| Changes {
            gateways,
            ..Default::default()
        });
        let pieces = devices.chain(gateways).collect();
        Ok(Checkpoint { pieces, meta })
    }

    /// The next piece to write.
    pub(crate) fn next_piece(&mut self) -> Option<Changes> {
        self.pieces.pop_front()
    }

    /// Hands what was not written back to the domain, for the next checkpoint.
    pub(crate) fn abandon(self, domain: &mut Domain) {
        for piece in self.pieces {
            domain.mark_unsaved(piece);
        }
    }

    /// The `engine` row, written after every piece.
    pub(crate) fn meta(&self) -> &(String, String) {
        &self.meta
    }
}

fn in_pieces(ids: BTreeSet<String>) -> impl Iterator<Item = BTreeSet<String>> {
    let mut ids = ids.into_iter().peekable();
    std::iter::from_fn(move || {
        ids.peek()?;
        Some(ids.by_ref().take(CHECKPOINT_PIECE_ROWS).collect())
    })
}

/// Serialises the current state of the devices and gateways in `piece`.
pub(crate) fn state_rows(domain: &Domain, piece: &Changes) -> gridwatch_storage::Result<Vec<(String, String)>> {
    engine_state_rows(domain.engine.state(), &piece.devices, &piece.gateways)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainConfig;
    use gridwatch_alerts::Engine;
    use gridwatch_cases::{CaseBook, Registry};
    use gridwatch_protocol::batch::Reading;
    use gridwatch_protocol::{DeviceId, Envelope, LiftStatus};

    fn lift(device: &str, seq: u64) -> Reading {
        let body = LiftStatus::at_rest(1);
        Reading::Lift(Envelope::new(
            DeviceId::try_from(device).unwrap(),
            seq,
            seq * 1000,
            body,
        ))
    }

    fn devices_of(checkpoint: &mut Checkpoint) -> Vec<String> {
        std::iter::from_fn(|| checkpoint.next_piece())
            .flat_map(|piece| piece.devices)
            .collect()
    }

    #[test]
    fn a_checkpoint_takes_what_changed_since_the_last_and_what_a_failed_one_left() {
        let config = DomainConfig::default();
        let engine = Engine::new(config.alerts.clone());
        let mut domain = Domain::new(config, engine, Registry::default(), CaseBook::from_cases(vec![]));
        let readings = [lift("L-1", 1), lift("L-2", 1), lift("L-1", 2)];
        domain.on_readings(readings.iter().map(|r| (r, "gw")));

        let mut first = Checkpoint::begin(&mut domain, 0).unwrap();
        assert_eq!(devices_of(&mut first), ["L-1", "L-2"], "each changed device once");
        let mut nothing_new = Checkpoint::begin(&mut domain, 0).unwrap();
        assert!(devices_of(&mut nothing_new).is_empty());

        // A checkpoint that fails hands its pieces back; the next one takes them
        // together with what changed meanwhile.
        domain.on_readings([(&lift("L-2", 2), "gw")]);
        let failed = Checkpoint::begin(&mut domain, 0).unwrap();
        failed.abandon(&mut domain);
        domain.on_readings([(&lift("L-3", 1), "gw")]);
        let mut next = Checkpoint::begin(&mut domain, 0).unwrap();
        assert_eq!(devices_of(&mut next), ["L-2", "L-3"]);
    }
}
