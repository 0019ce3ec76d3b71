//! One endpoint's deliveries, in feed order: queue the firm's new feed rows, then try
//! the oldest pending delivery until it is delivered or parked, then the next. A
//! delivery due later holds the ones behind it (per-device order), and holds only this
//! endpoint.
use super::Shared;
use super::schedule::AfterFailure;
use gridwatch_storage::webhooks::{self as store, Attempt, Delivery};
use std::time::{Duration, Instant};

/// Bytes of a failure's text kept in the delivery log.
const ERROR_BYTES: usize = 500;

/// After a storage failure, wait this long before trying again.
const STORAGE_PAUSE: Duration = Duration::from_secs(1);

pub(super) async fn run(mut shared: Shared, id: i64) {
    tracing::debug!(endpoint = id, "webhooks: delivering");
    loop {
        match step(&shared, id).await {
            Ok(Next::Again) => continue,
            Ok(Next::Wait(until)) => wait(&mut shared, until).await,
            Ok(Next::Gone) => {
                tracing::debug!(endpoint = id, "webhooks: endpoint removed");
                return;
            }
            Err(e) => {
                tracing::warn!(endpoint = id, error = %e, "webhooks: storage failed; trying again");
                tokio::time::sleep(STORAGE_PAUSE).await;
            }
        }
    }
}

/// What the endpoint's task does after a step.
enum Next {
    Again,
    /// Nothing to do before this time (ms on the clock), or a wake-up (`None`: no time).
    Wait(Option<u64>),
    Gone,
}

async fn step(shared: &Shared, id: i64) -> gridwatch_storage::Result<Next> {
    let now = shared.clock.now_ms();
    if let Some(delivery) = store::next_pending(&shared.store, id).await? {
        if delivery.next_at as u64 > now {
            return Ok(Next::Wait(Some(delivery.next_at as u64)));
        }
        let Some(endpoint) = store::endpoint(&shared.store, id).await? else {
            return Ok(Next::Gone);
        };
        attempt(shared, &endpoint, &delivery).await?;
        return Ok(Next::Again);
    }
    // Ids commit in order: every row up to the newest is there to read.
    let upto = gridwatch_storage::feed::last_id(&shared.store).await?;
    match store::enqueue(&shared.store, id, upto, shared.config.page_rows.max(1), now as i64).await? {
        None => Ok(Next::Gone),
        Some(0) => Ok(Next::Wait(None)),
        Some(_) => Ok(Next::Again),
    }
}

/// Waits for a wake-up: a commit of feed rows, the API's kick, the poll, or `until`.
async fn wait(shared: &mut Shared, until: Option<u64>) {
    let mut nap = shared.config.poll_every;
    if let Some(until) = until {
        // The clock may be virtual: never nap past the poll, and look at it again then.
        nap = nap.min(Duration::from_millis(until.saturating_sub(shared.clock.now_ms())));
    }
    let closed = tokio::select! {
        changed = shared.feed.changed(), if until.is_none() => changed.is_err(),
        changed = shared.kick.changed() => changed.is_err(),
        () = tokio::time::sleep(nap) => false,
    };
    if closed {
        // Shutting down: the task is aborted soon; don't spin meanwhile.
        tokio::time::sleep(nap).await;
    }
}

/// One POST of `delivery` to `endpoint`, and its outcome written down.
async fn attempt(shared: &Shared, endpoint: &store::Endpoint, delivery: &Delivery) -> gridwatch_storage::Result<()> {
    let body = delivery.payload();
    let webhook_id = delivery.feed_id.to_string();
    let _slot = shared.slots.acquire().await;
    let sent_at = shared.clock.now_ms();
    let timestamp = (sent_at / 1000) as i64;
    let started = Instant::now();
    // Names are checked by the client's resolver (`hosts::PublicOnly`), literal addresses here.
    let refused = match shared.config.allow_private_hosts {
        true => None,
        false => super::hosts::refused_literal(&endpoint.url),
    };
    let answer = match (refused, super::sign(&endpoint.secret, &webhook_id, timestamp, &body)) {
        (Some(reason), _) => Err(reason),
        (None, Err(e)) => Err(format!("the endpoint's secret is unusable: {e}")),
        (None, Ok(signature)) => shared
            .client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map(|r| r.status())
            .map_err(|e| describe_error(&e)),
    };
    metrics::histogram!("gridwatch_webhook_attempt_seconds").record(started.elapsed().as_secs_f64());
    let now = shared.clock.now_ms();
    let (status, error) = match answer {
        Ok(status) if status.is_success() => {
            store::record(
                &shared.store,
                delivery.id,
                &Attempt::Delivered {
                    at: now as i64,
                    status: i64::from(status.as_u16()),
                },
            )
            .await?;
            metrics::counter!("gridwatch_webhook_attempts_total", "outcome" => "delivered").increment(1);
            tracing::debug!(
                endpoint = endpoint.id,
                feed_id = delivery.feed_id,
                "webhooks: delivered"
            );
            return Ok(());
        }
        Ok(status) => (Some(i64::from(status.as_u16())), format!("HTTP {status}")),
        Err(error) => (None, error),
    };
    let error: String = error.chars().take(ERROR_BYTES).collect();
    let n = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
    let after = shared
        .config
        .schedule
        .after_failure(n, delivery.queued_at as u64, now, fastrand::f64());
    let outcome = match after {
        AfterFailure::RetryAt(next_at) => {
            tracing::info!(endpoint = endpoint.id, feed_id = delivery.feed_id, attempt = n, %error, retry_in_ms = next_at - now, "webhooks: delivery failed; retrying");
            Attempt::Retry {
                at: now as i64,
                status,
                error,
                next_at: next_at as i64,
            }
        }
        AfterFailure::Park => {
            tracing::warn!(endpoint = endpoint.id, feed_id = delivery.feed_id, attempts = n, %error, "webhooks: delivery parked after its retry budget; the endpoint moves on (redrive it through the API)");
            Attempt::Parked {
                at: now as i64,
                status,
                error,
            }
        }
    };
    store::record(&shared.store, delivery.id, &outcome).await?;
    let label = if matches!(outcome, Attempt::Parked { .. }) {
        "parked"
    } else {
        "retry"
    };
    metrics::counter!("gridwatch_webhook_attempts_total", "outcome" => label).increment(1);
    if label == "parked" {
        super::refresh_parked(&shared.store).await;
    }
    Ok(())
}

/// A failed request as the delivery log says it: what kind of failure, and the cause.
fn describe_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
