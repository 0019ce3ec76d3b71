//! Where committed readings meet the domain: the alert engine, cases, and the
//! periodic tick for time-based rules. Only readings new to the store are fed
//! in, in seq order per device, so a redelivered or replayed reading can never
//! raise a second alert.
use crate::domain::{Domain, Effects, persist};
use crate::model::Accepted;
use crate::store::Store;
use anyhow::Context;
use gridwatch_protocol::clock::Clock;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

pub type SharedDomain = Arc<Mutex<Domain>>;

#[derive(Clone)]
pub struct Alerting {
    pub domain: SharedDomain,
    pub store: Store,
}

impl Alerting {
    pub async fn on_committed(&mut self, _store: &Store, accepted: &[Accepted], mut new: Vec<usize>) {
        if new.is_empty() {
            return;
        }
        new.sort_by(|a, b| {
            let (ra, rb) = (&accepted[*a].reading, &accepted[*b].reading);
            (ra.device(), ra.seq()).cmp(&(rb.device(), rb.seq()))
        });
        let mut domain = self.domain.lock().await;
        let fx = domain.on_readings(
            new.iter()
                .map(|i| (&accepted[*i].reading, accepted[*i].gateway.as_str())),
        );
        self.save(&mut domain, fx).await;
    }

    /// Runs the time-based rules and case deadlines at the clock's `now`.
    pub async fn tick(&self, now: u64) {
        let mut domain = self.domain.lock().await;
        let fx = domain.tick(now);
        self.save(&mut domain, fx).await;
    }

    /// Saves what a change produced, retrying until it is stored: events in hand are never dropped.
    pub async fn save(&self, domain: &mut Domain, fx: Effects) {
        for e in &fx.events {
            tracing::info!(device = %e.key.device, kind = %e.key.kind, change = ?e.change, severity = ?e.severity, "alert");
        }
        let snapshot: &Domain = domain;
        crate::pipeline::retry("save_domain", || persist::save(&self.store, snapshot, &fx)).await;
        domain.mark_saved(&fx);
    }

    /// Saves the engine state changed since the last checkpoint, piece by piece
    /// ([`persist::CHECKPOINT_PIECE_ROWS`]). The domain is locked to take the
    /// changes and to serialise each piece, not while pieces are written.
    pub async fn checkpoint(&self, clock_now_ms: i64) {
        if let Err(e) = self.write_checkpoint(clock_now_ms).await {
            tracing::error!(error = %format!("{e:#}"), "engine checkpoint failed; will retry at the next one");
        }
    }

    async fn write_checkpoint(&self, clock_now_ms: i64) -> anyhow::Result<()> {
        let mut checkpoint = persist::Checkpoint::begin(&mut *self.domain.lock().await, clock_now_ms)?;
        while let Some(piece) = checkpoint.next_piece() {
            let rows = persist::state_rows(&*self.domain.lock().await, &piece);
            let written = match rows {
                Ok(rows) => persist::write_state_rows(&self.store, &rows).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                let mut domain = self.domain.lock().await;
                domain.mark_unsaved(piece);
                checkpoint.abandon(&mut domain);
                return Err(e);
            }
        }
        // Every device is saved by now: a missing replay point only replays more.
        let meta = std::slice::from_ref(checkpoint.meta());
        persist::write_state_rows(&self.store, meta)
            .await
            .context("saving the replay point (a restart replays more)")
    }
}

/// Ticks the engine every `every` (wall time) at `clock.now_ms()`, and checkpoints
/// the engine state every `checkpoint_every`.
pub async fn run_ticks(alerting: Alerting, clock: Arc<dyn Clock>, every: Duration, checkpoint_every: Duration) {
    let mut tick = tokio::time::interval(every);
    let mut checkpoint = tokio::time::interval(checkpoint_every);
    loop {
        tokio::select! {
            _ = tick.tick() => alerting.tick(clock.now_ms()).await,
            _ = checkpoint.tick() => alerting.checkpoint(crate::model::now_ms()).await,
        }
    }
}
