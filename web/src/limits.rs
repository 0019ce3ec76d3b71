//! Limits on what anyone who reaches the HTTP port can send, and the serving loop that
//! applies them ([`serve`]):
//!
//! - a header-read timeout: a connection that has not sent a whole request head within
//!   it is closed; hyper starts the timer whenever a connection waits for a request, so
//!   it also closes idle kept-alive connections;
//! - a cap on simultaneous connections: past it the loop stops accepting and further
//!   connections wait in the kernel's listen backlog until a slot frees;
//! - an accept loop that survives running out of file handles (back-off, a log line that
//!   rate-limits itself);
//! - a request body limit (413) and a per-request timeout (408);
//! - rate limits per API user and, for callers without a valid token, per client
//!   address (429 with `Retry-After`);
//! - security headers on every response.
use crate::http::{AppState, router};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// The HTTP server's limits (docs/api.md, "Limits").
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A connection must send a whole request head within this after it connects or
    /// after its previous response; otherwise it is closed (slow or idle clients).
    pub header_read_timeout: Duration,
    /// A request must be answered within this, its body read included (408).
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request body, in bytes (413).
    pub body_bytes: usize,
    /// Largest request head (request line and headers), in bytes.
    pub head_bytes: usize,
    /// Requests per API user (a valid bearer token).
    pub per_user: RateLimit,
    /// Requests per client address for callers without a valid token (IPv6 per /64).
    pub per_address: RateLimit,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            // A register export of about 40,000 devices.
            body_bytes: 4 * 1024 * 1024,
            head_bytes: 64 * 1024,
            per_user: RateLimit {
                every: Duration::from_millis(10),
                burst: 200,
            },
            per_address: RateLimit {
                every: Duration::from_millis(20),
                burst: 100,
            },
        }
    }
}

/// A token bucket: `burst` requests at once, refilled by one every `every`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub every: Duration,
    pub burst: u32,
}

impl RateLimit {
    fn quota(self) -> Quota {
        let every = self.every.max(Duration::from_nanos(1));
        Quota::with_period(every)
            .expect("a non-zero period")
            .allow_burst(NonZeroU32::new(self.burst.max(1)).expect("at least 1"))
    }
}

/// Past this many tracked callers, the limiters forget those with a full bucket.
const TRACKED_CALLERS: usize = 10_000;

/// The longest pause between accept attempts while the process is out of file handles.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

fn describe() {
    metrics::describe_gauge!("gridwatch_http_connections", "HTTP connections being served");
    metrics::describe_counter!(
        "gridwatch_http_accept_errors_total",
        "failed accepts on the HTTP port (out of file handles, memory, or a connection reset before accept)"
    );
    metrics::describe_counter!(
        "gridwatch_http_rate_limited_total",
        "HTTP requests refused with 429, by who: user (per token) or address (no valid token)"
    );
}

/// The router with every limit and header layered on: what [`serve`] serves.
pub fn app(state: AppState, limits: &HttpLimits) -> Router {
    let limiter = Arc::new(Limiter {
        users: RateLimiter::keyed(limits.per_user.quota()),
        addresses: RateLimiter::keyed(limits.per_address.quota()),
        per_user: limits.per_user,
        per_address: limits.per_address,
        state: state.clone(),
    });
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    let (body_bytes, request_timeout) = (limits.body_bytes, limits.request_timeout);
    router(state)
        // axum's own 2 MB extractor limit would otherwise apply below this one.
        .layer(axum::extract::DefaultBodyLimit::max(limits.body_bytes))
        .layer(RequestBodyLimitLayer::new(limits.body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(limiter, rate_limit))
        // The body limit's and the timeout's answers in the one error shape.
        .layer(axum::middleware::map_response(move |response| {
            crate::error::json_errors(body_bytes, request_timeout, response)
        }))
        // Outermost, so 408, 413 and 429 carry them too. The dashboard sets its own policy.
        .layer(header(header::CONTENT_SECURITY_POLICY, API_CSP))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
}

/// JSON answers load nothing and are never framed.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Serves `state`'s API and dashboard on `listener` with `limits` until `shutdown`
/// completes; then stops accepting, lets requests in flight finish (at most
/// `request_timeout`) and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    describe();
    let app = app(state, &limits);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.head_bytes.max(8192));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (close_tx, close_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accept = AcceptErrors::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: at the cap, connections stay in the backlog, holding no file handle here.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => {
                accept.succeeded();
                accepted
            }
            Err(e) => {
                drop(slot);
                let pause = accept.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        while connections.try_join_next().is_some() {}
        let (app, http, close) = (app.clone(), http.clone(), close_rx.clone());
        connections.spawn(async move {
            let _slot = slot;
            metrics::gauge!("gridwatch_http_connections").increment(1.0);
            serve_connection(stream, remote, app, http, close).await;
            metrics::gauge!("gridwatch_http_connections").decrement(1.0);
        });
    }
    drop(listener);
    let _ = close_tx.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.request_timeout, drained).await.is_err() {
        tracing::warn!(
            left = connections.len(),
            "HTTP connections still open at shutdown are dropped"
        );
    }
}

/// Closes the connection a request came on at once, response or not: how the live feed
/// cuts off a subscriber that stopped reading, whose response hyper can no longer write.
/// In the extensions of every request [`serve`] serves.
#[derive(Clone, Default)]
pub(crate) struct CloseConnection(Arc<tokio::sync::Notify>);

impl CloseConnection {
    pub(crate) fn close(&self) {
        self.0.notify_one();
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    app: Router,
    http: hyper::server::conn::http1::Builder,
    mut close: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let closer = CloseConnection::default();
    let close_now = closer.0.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(closer.clone());
        app.clone().oneshot(request)
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        // A dropped sender is a shutdown too.
        _ = async { close.wait_for(|closing| *closing).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        // Dropping the connection closes its socket, whatever is left unwritten.
        () = close_now.notified() => {
            tracing::debug!(%remote, "HTTP connection closed by its handler");
            return;
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and malformed requests: the client's problem, not ours.
        tracing::debug!(%remote, error = %e, "HTTP connection ended");
    }
}

/// Accept failures: a back-off while the process is out of file handles or memory, and
/// a log line at most every 10 s that says how many failures it stands for.
struct AcceptErrors {
    pause: Duration,
    log: governor::DefaultDirectRateLimiter,
    unlogged: u64,
}

impl AcceptErrors {
    fn new() -> Self {
        Self {
            pause: Duration::ZERO,
            log: RateLimiter::direct(Quota::with_period(Duration::from_secs(10)).expect("non-zero")),
            unlogged: 0,
        }
    }

    fn succeeded(&mut self) {
        self.pause = Duration::ZERO;
    }

    /// How long to wait before the next accept.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        metrics::counter!("gridwatch_http_accept_errors_total").increment(1);
        use std::io::ErrorKind::*;
        // One client's connection gone before it was accepted: take the next at once.
        let exhausted = !matches!(
            e.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
        );
        if exhausted {
            self.pause = (self.pause * 2).clamp(Duration::from_millis(10), ACCEPT_BACKOFF_MAX);
        }
        self.unlogged += 1;
        if self.log.check().is_ok() {
            tracing::error!(
                error = %e,
                failures = self.unlogged,
                pause = ?self.pause,
                "cannot accept HTTP connections (failures counted since the last such line)"
            );
            self.unlogged = 0;
        }
        if exhausted { self.pause } else { Duration::ZERO }
    }
}

struct Limiter {
    users: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    per_user: RateLimit,
    per_address: RateLimit,
    state: AppState,
}

/// Counts the request against its user's bucket (a valid bearer token) or its client
/// address's, and answers 429 when the bucket is empty.
async fn rate_limit(State(limiter): State<Arc<Limiter>>, request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| limiter.state.users.by_token(token))
        .map(|user| user.id);
    let (refused, limit, who) = match user {
        Some(id) => {
            let refused = limiter.users.check_key(&id).err();
            forget_idle(&limiter.users);
            (refused, limiter.per_user, "user")
        }
        None => {
            let address = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| network(c.0.ip()));
            let refused = limiter.addresses.check_key(&address).err();
            forget_idle(&limiter.addresses);
            (refused, limiter.per_address, "address")
        }
    };
    let Some(refused) = refused else {
        return next.run(request).await;
    };
    metrics::counter!("gridwatch_http_rate_limited_total", "who" => who).increment(1);
    let wait = refused.wait_time_from(limiter.addresses.clock().now());
    // Whole seconds, rounded up: Retry-After has no fractions.
    let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let retry_after = retry_after.max(1);
    let mut response = crate::error::ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many requests: at most {} at once and one more every {} ms per {who}; retry after {retry_after} s",
            limit.burst,
            limit.every.as_millis()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

fn forget_idle<K: std::hash::Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>) {
    if limiter.len() > TRACKED_CALLERS {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

/// The bucket key of a client address: IPv6 clients get a /64 each, as one host does.
fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network(a), network(b));
        assert_ne!(network(a), network(c));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(network(mapped), "10.0.0.7".parse::<IpAddr>().unwrap());
    }
}
