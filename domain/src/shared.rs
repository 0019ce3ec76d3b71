//! The domain shared by the write path and the API: one [`Domain`] behind an
//! async lock, with the store it is saved to. Only readings new to the store are
//! fed in, in seq order per device, so a redelivered or replayed reading can never
//! raise a second alert.
use crate::checkpoint::{Checkpoint, state_rows};
use crate::{Domain, DomainConfig, Effects};
use gridwatch_alerts::Engine;
use gridwatch_cases::CaseBook;
use gridwatch_protocol::clock::Clock;
use gridwatch_storage::model::Accepted;
use gridwatch_storage::{Store, domain as tables, retry};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

pub type SharedDomain = Arc<Mutex<Domain>>;

#[derive(Clone)]
pub struct Alerting {
    pub domain: SharedDomain,
    pub store: Store,
    /// The highest feed id this process has committed, set after each commit that
    /// wrote feed rows: what wakes the live feed's subscribers ([`Alerting::feed`]).
    feed: tokio::sync::watch::Sender<i64>,
}

impl Alerting {
    /// Feeds the readings of `accepted` that `new` names (those new to the store) to the engine.
    pub async fn on_committed(&self, accepted: &[Accepted], mut new: Vec<usize>) {
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

    /// Saves what a change produced, retrying until it is stored: events in hand are never
    /// dropped. Every caller holds the domain's lock (`domain` is borrowed from it), so
    /// saves never overlap within a process; then wakes the feed's subscribers.
    pub async fn save(&self, domain: &mut Domain, fx: Effects) {
        for e in &fx.events {
            tracing::info!(device = %e.key.device, kind = %e.key.kind, change = ?e.change, severity = ?e.severity, "alert");
        }
        let snapshot: &Domain = domain;
        let saved = retry("save_domain", || async {
            tables::save(&self.store, &snapshot.changes(&fx)?).await
        })
        .await;
        domain.mark_saved(&fx);
        if let Some(last) = saved.feed_last {
            self.feed.send_if_modified(|known| {
                let newer = last > *known;
                if newer {
                    *known = last;
                }
                newer
            });
        }
    }

    /// The highest feed id committed through this `Alerting`, changed after every commit
    /// that wrote feed rows (rows other processes write are not signalled here).
    pub fn feed(&self) -> tokio::sync::watch::Receiver<i64> {
        self.feed.subscribe()
    }

    /// Saves the engine state changed since the last checkpoint, piece by piece
    /// ([`tables::CHECKPOINT_PIECE_ROWS`]). The domain is locked to take the
    /// changes and to serialise each piece, not while pieces are written.
    pub async fn checkpoint(&self, clock_now_ms: i64) {
        if let Err(e) = self.try_checkpoint(clock_now_ms).await {
            tracing::error!(error = %e, "engine checkpoint failed; will retry at the next one");
        }
    }

    /// [`Alerting::checkpoint`], failing with the store's error.
    pub async fn try_checkpoint(&self, clock_now_ms: i64) -> gridwatch_storage::Result<()> {
        let mut checkpoint = Checkpoint::begin(&mut *self.domain.lock().await, clock_now_ms)?;
        while let Some(piece) = checkpoint.next_piece() {
            let rows = state_rows(&*self.domain.lock().await, &piece);
            let written = match rows {
                Ok(rows) => tables::write_state_rows(&self.store, &rows).await,
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
        tables::write_state_rows(&self.store, std::slice::from_ref(checkpoint.meta())).await
    }
}

/// Loads the register, the cases and the engine checkpoint from `store`, then
/// replays the readings stored since the checkpoint; events they produce are
/// saved idempotently (an alert already stored is not stored twice).
pub async fn load(store: &Store, config: DomainConfig) -> gridwatch_storage::Result<Alerting> {
    let stored = tables::load(store).await?;
    let engine = Engine::from_state(config.alerts.clone(), stored.engine);
    let mut domain = Domain::new(config, engine, stored.registry, CaseBook::from_cases(stored.cases));
    let readings = tables::readings_since(store, stored.replay_from).await?;
    let fx = domain.on_readings(readings.iter().map(|(r, g)| (r, g.as_str())));
    tables::save(store, &domain.changes(&fx)?).await?;
    domain.mark_saved(&fx);
    let (feed, _) = tokio::sync::watch::channel(gridwatch_storage::feed::last_id(store).await?);
    tracing::info!(
        replayed = readings.len(),
        devices = domain.engine().state().devices.len(),
        cases = domain.book().cases().count(),
        "domain loaded"
    );
    Ok(Alerting {
        domain: Arc::new(Mutex::new(domain)),
        store: store.clone(),
        feed,
    })
}

/// Ticks the engine every `every` (wall time) at `clock.now_ms()`, and checkpoints
/// the engine state every `checkpoint_every`.
pub async fn run_ticks(alerting: Alerting, clock: Arc<dyn Clock>, every: Duration, checkpoint_every: Duration) {
    let mut tick = tokio::time::interval(every);
    let mut checkpoint = tokio::time::interval(checkpoint_every);
    loop {
        tokio::select! {
            _ = tick.tick() => alerting.tick(clock.now_ms()).await,
            _ = checkpoint.tick() => alerting.checkpoint(gridwatch_storage::model::now_ms()).await,
        }
    }
}
