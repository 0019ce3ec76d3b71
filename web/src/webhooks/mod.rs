//! Webhooks: a maintenance firm's feed rows POSTed to the URLs it registered, signed per
//! Standard Webhooks, from a durable outbox in the database (`gridwatch_storage::webhooks`;
//! docs/api.md, "Webhooks").
//!
//! [`run`] keeps one task per endpoint ([`endpoint`]): it queues the firm's new feed
//! rows, then delivers its pending deliveries one at a time in feed order, retrying on
//! the [`Schedule`] and parking a delivery whose budget is spent. Each endpoint waits
//! only on itself, so a failing or hanging receiver delays no other; at most
//! [`WebhookConfig::concurrency`] requests are in flight at once. Tasks wake when the
//! domain commits feed rows (`Alerting::feed`), when the API changes an endpoint or
//! redrives a delivery ([`Webhooks::kick`]), at a retry's time, and every
//! [`WebhookConfig::poll_every`] for what other processes wrote (`gridwatch webhooks`).
mod endpoint;
mod hosts;
pub mod schedule;
mod sign;

pub use schedule::Schedule;
pub use sign::{Secret, SecretError, sign};

use gridwatch_protocol::clock::Clock;
use gridwatch_storage::Store;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// How deliveries are made and retried.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// One request's limit, connecting included.
    pub timeout: Duration,
    /// Requests in flight at once, over every endpoint.
    pub concurrency: usize,
    pub schedule: Schedule,
    /// Also look at the database this often: endpoints added and feed rows written by
    /// other processes, and retries on a clock that jumps (virtual time in tests).
    pub poll_every: Duration,
    /// Feed rows queued for an endpoint per read of the feed.
    pub page_rows: i64,
    /// Delivered deliveries stay in the log this long (on the clock).
    pub keep_delivered: Duration,
    /// Also deliver to loopback, private and other non-public addresses ([`hosts`]).
    pub allow_private_hosts: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            concurrency: 32,
            schedule: Schedule::default(),
            poll_every: Duration::from_secs(5),
            page_rows: 100,
            keep_delivered: Duration::from_secs(30 * 24 * 3600),
            allow_private_hosts: false,
        }
    }
}

/// Endpoints a firm may register: each is a task and a stream of requests.
pub const MAX_ENDPOINTS_PER_FIRM: usize = 10;
/// The longest URL taken.
pub const MAX_URL_BYTES: usize = 2048;

/// The handle the API uses to wake the worker after it changed an endpoint or redrove a
/// delivery.
#[derive(Debug, Clone)]
pub struct Webhooks {
    kick: Arc<watch::Sender<u64>>,
}

impl Default for Webhooks {
    fn default() -> Self {
        Self {
            kick: Arc::new(watch::channel(0).0),
        }
    }
}

impl Webhooks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes every endpoint's task and the supervisor, to look at the database again.
    pub fn kick(&self) {
        self.kick.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.kick.subscribe()
    }
}

/// Checks an endpoint URL: absolute http or https with a host, no user or password (it
/// would be shown in every list), at most [`MAX_URL_BYTES`]; the error says what to fix.
pub fn check_url(text: &str) -> Result<reqwest::Url, String> {
    if text.len() > MAX_URL_BYTES {
        return Err(format!("url: {} bytes; at most {MAX_URL_BYTES}", text.len()));
    }
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| format!("url {text:?}: {e}; expected an absolute URL such as https://example.com/hooks"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "url {text:?}: scheme {:?}; expected http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("url {text:?}: no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "url {text:?}: has a user or password; remove it (deliveries are signed with the endpoint's secret)"
        ));
    }
    Ok(url)
}

pub(crate) fn describe() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_counter!(
            "gridwatch_webhook_attempts_total",
            "Webhook delivery attempts, by outcome: delivered (2xx), retry (failed, tried again later), parked (failed, budget spent)"
        );
        metrics::describe_gauge!(
            "gridwatch_webhook_parked",
            "Webhook deliveries parked after their retry budget, waiting for a redrive"
        );
        metrics::describe_histogram!(
            "gridwatch_webhook_attempt_seconds",
            metrics::Unit::Seconds,
            "Time of one webhook delivery attempt, until the receiver's status or the failure"
        );
        metrics::describe_gauge!("gridwatch_webhook_endpoints", "Webhook endpoints delivered to by this process");
        metrics::describe_counter!(
            "gridwatch_api_rejected_total",
            "API requests refused, by reason: bad_token (unknown bearer token), webhook_invalid (a webhook endpoint's url, secret or firm to fix, 422)"
        );
    });
}

/// What every endpoint's task shares.
#[derive(Clone)]
struct Shared {
    store: Store,
    clock: Arc<dyn Clock>,
    config: Arc<WebhookConfig>,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    feed: watch::Receiver<i64>,
    kick: watch::Receiver<u64>,
}

/// Runs the deliveries until aborted: one task per registered endpoint, started and
/// stopped as endpoints come and go. `feed` is `Alerting::feed()`.
pub async fn run(
    store: Store,
    feed: watch::Receiver<i64>,
    clock: Arc<dyn Clock>,
    config: WebhookConfig,
    webhooks: Webhooks,
) {
    describe();
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        // A redirect is a failure to fix at the endpoint, not a place to send signed events.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gridwatch-webhooks/", env!("CARGO_PKG_VERSION")));
    if config.allow_private_hosts {
        tracing::warn!(
            "webhooks: deliveries may go to private and loopback addresses (--webhooks-allow-private-hosts)"
        );
    } else {
        builder = builder.dns_resolver(Arc::new(hosts::PublicOnly));
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: no HTTP client; nothing is delivered");
            return;
        }
    };
    let mut kick = webhooks.subscribe();
    let shared = Shared {
        store,
        clock,
        client,
        slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
        config: Arc::new(config),
        feed,
        kick: kick.clone(),
    };
    // The set aborts every endpoint's task when this one is aborted (ingest's stop).
    let mut set = tokio::task::JoinSet::new();
    let mut tasks: HashMap<i64, tokio::task::AbortHandle> = HashMap::new();
    let mut poll = tokio::time::interval(shared.config.poll_every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = 0u64;
    loop {
        match gridwatch_storage::webhooks::endpoints(&shared.store, None).await {
            Ok(endpoints) => {
                let ids: Vec<i64> = endpoints.iter().map(|e| e.id).collect();
                tasks.retain(|id, task| {
                    let keep = ids.contains(id) && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                while set.try_join_next().is_some() {}
                for e in endpoints {
                    tasks
                        .entry(e.id)
                        .or_insert_with(|| set.spawn(endpoint::run(shared.clone(), e.id)));
                }
                metrics::gauge!("gridwatch_webhook_endpoints").set(tasks.len() as f64);
            }
            Err(e) => tracing::warn!(error = %e, "webhooks: reading the endpoints failed; trying again"),
        }
        let now = shared.clock.now_ms();
        if now.saturating_sub(last_prune) >= 3_600_000 {
            last_prune = now;
            prune(&shared, now).await;
        }
        refresh_parked(&shared.store).await;
        tokio::select! {
            changed = kick.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = poll.tick() => {}
        }
    }
    set.shutdown().await;
}

/// Deletes delivered deliveries older than [`WebhookConfig::keep_delivered`], in steps.
async fn prune(shared: &Shared, now: u64) {
    let cutoff = now.saturating_sub(shared.config.keep_delivered.as_millis() as u64) as i64;
    loop {
        match gridwatch_storage::webhooks::prune_delivered(&shared.store, cutoff, 1000).await {
            Ok(1000) => continue,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: pruning the delivery log failed; trying in an hour");
                return;
            }
        }
    }
}

/// Sets `gridwatch_webhook_parked` from the database.
async fn refresh_parked(store: &Store) {
    if let Ok(n) = gridwatch_storage::webhooks::parked(store).await {
        metrics::gauge!("gridwatch_webhook_parked").set(n as f64);
    }
}
