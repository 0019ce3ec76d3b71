//! The set-up the web tests share: a SQLite store in a temporary directory, the domain
//! loaded from it, and the server on port 0 of 127.0.0.1. Each test file uses part of it.
#![allow(dead_code)]
use gridwatch_domain::Alerting;
use gridwatch_storage::Store;
use gridwatch_web::{AppState, HttpLimits, RateLimit, Users};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// 2026-11-25 10:00 China time: the date of the sample register.
pub(crate) const NOW: u64 = 1_795_572_000_000;

/// A store in a fresh temporary directory and the domain loaded from it.
pub(crate) async fn store() -> (tempfile::TempDir, Store, Alerting) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gridwatch.db").display());
    let store = Store::open(&url).await.unwrap();
    let alerting = gridwatch_domain::load(&store, gridwatch_domain::DomainConfig::default())
        .await
        .unwrap();
    (dir, store, alerting)
}

/// Serves the API and dashboard over `store` on port 0, the clock at [`NOW`].
pub(crate) async fn serve(
    store: Store,
    alerting: Alerting,
    users: Arc<Users>,
    limits: HttpLimits,
) -> (SocketAddr, AppState) {
    let state = AppState {
        store,
        metrics: gridwatch_web::metrics::handle(),
        alerting,
        clock: Arc::new(gridwatch_protocol::clock::ManualClock::new(NOW)),
        users,
        health: gridwatch_web::health::Health::new(1000),
        feed: gridwatch_web::Feed::default(),
        webhooks: gridwatch_web::webhooks::Webhooks::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gridwatch_web::serve(
        listener,
        state.clone(),
        limits,
        std::future::pending(),
    ));
    (addr, state)
}

/// Limits that stay out of the way of what a test does not look at.
pub(crate) fn roomy() -> HttpLimits {
    let plenty = RateLimit {
        every: Duration::from_millis(1),
        burst: 10_000,
    };
    HttpLimits {
        per_user: plenty,
        per_address: plenty,
        ..HttpLimits::default()
    }
}
