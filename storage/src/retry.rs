//! Retrying a store operation until it succeeds: what is in hand (a batch to
//! commit, alert events to save) is never dropped for a passing database fault.
use crate::Result;
use std::time::Duration;

/// Runs `op` until it succeeds, backing off from 50 ms to 5 s between tries; each
/// failure is logged and counted in `gridwatch_ingest_store_failures_total{op}`.
pub async fn retry<T, F, Fut>(what: &'static str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) => {
                metrics::counter!("gridwatch_ingest_store_failures_total", "op" => what).increment(1);
                tracing::error!(error = %e, op = what, retry_in = ?backoff, "store operation failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
