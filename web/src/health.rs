//! Health endpoints: alive (the process answers) and ready (its writes succeed,
//! its broker takes messages and its backlog is within bounds).
//!
//! - `GET /healthz/live` and `GET /healthz`: 200 `ok` while the process serves HTTP.
//! - `GET /healthz/ready`: 200 when ready, 503 when not, with a JSON [`Report`].
//!
//! The state comes from the write path through [`Health`], which the pipeline
//! updates after every commit and message; this module only reads it.
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this module, with their documentation.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(live))
        .routes(routes!(ready))
}

/// Liveness, as `/healthz/live`.
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "`ok` while the process answers", content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, operation_id = "healthz_live", path = "/healthz/live", tag = "operations", security(()),
    responses((status = 200, description = "`ok` while the process answers", content_type = "text/plain")))]
async fn live() -> &'static str {
    "ok"
}

/// Readiness: its answer is the report, not an error body, also with 503.
#[utoipa::path(get, operation_id = "healthz_ready", path = "/healthz/ready", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready (docs/reliability.md)", body = Report),
        (status = 503, description = "Not ready: the same report, saying why", body = Report),
    ))]
async fn ready(State(s): State<AppState>) -> Response {
    let mut report = s.health.report();
    report.storage.timescale_jobs = s.store.policy_health();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// What the write path reports about itself, shared between the pipeline (which
/// writes it) and the health endpoint (which reads it). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Health(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    storage: Mutex<Storage>,
    /// Whether the embedded broker's link is delivering (or no broker is used).
    broker_up: AtomicBool,
    broker_dropped: AtomicU64,
    /// Messages taken from the broker and not yet committed or refused.
    backlog: AtomicU64,
    /// Above this backlog, ingest is not ready for more.
    backlog_limit: u64,
    /// Set once a stop has begun.
    stopping: AtomicBool,
    /// Told when the write path gives up.
    gave_up: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Storage {
    last_commit: Option<(Instant, SystemTime)>,
    /// The first failure since the last success, and the latest one.
    failing: Option<Failing>,
    /// Set when the write path gave up: it stopped, nothing more is committed.
    gave_up: bool,
}

#[derive(Debug)]
struct Failing {
    since: Instant,
    since_wall: SystemTime,
    class: &'static str,
    error: String,
    tries: u64,
}

impl Default for Health {
    fn default() -> Self {
        Self::new(u64::MAX)
    }
}

impl Health {
    /// Ready while at most `backlog_limit` messages wait.
    pub fn new(backlog_limit: u64) -> Self {
        Self(Arc::new(Inner {
            storage: Mutex::default(),
            broker_up: AtomicBool::new(true),
            broker_dropped: AtomicU64::new(0),
            backlog: AtomicU64::new(0),
            backlog_limit,
            stopping: AtomicBool::new(false),
            gave_up: tokio::sync::Notify::new(),
        }))
    }

    fn storage(&self) -> std::sync::MutexGuard<'_, Storage> {
        self.0.storage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A batch was committed: storage writes succeed.
    pub fn commit_succeeded(&self) {
        let mut s = self.storage();
        s.last_commit = Some((Instant::now(), SystemTime::now()));
        s.failing = None;
    }

    /// A try to commit failed with an error of `class` (see `gridwatch_storage::ErrorClass`).
    pub fn commit_failed(&self, class: &'static str, error: &dyn std::fmt::Display) {
        let mut s = self.storage();
        match &mut s.failing {
            Some(f) => {
                f.class = class;
                f.error = error.to_string();
                f.tries += 1;
            }
            None => {
                s.failing = Some(Failing {
                    since: Instant::now(),
                    since_wall: SystemTime::now(),
                    class,
                    error: error.to_string(),
                    tries: 1,
                })
            }
        }
    }

    /// The write path gave up on an error retrying cannot fix, and stopped.
    pub fn gave_up(&self) {
        self.storage().gave_up = true;
        self.0.gave_up.notify_waiters();
    }

    /// Completes once the write path has given up.
    pub async fn given_up(&self) {
        loop {
            let told = self.0.gave_up.notified();
            if self.has_given_up() {
                return;
            }
            told.await;
        }
    }

    /// Whether the write path gave up ([`Health::gave_up`]).
    pub fn has_given_up(&self) -> bool {
        self.storage().gave_up
    }

    /// The embedded broker's link delivers (`true`) or has closed.
    pub fn set_broker_up(&self, up: bool) {
        self.0.broker_up.store(up, Ordering::Relaxed);
    }

    /// The embedded broker dropped `messages` before ingest read them.
    pub fn broker_dropped(&self, messages: u64) {
        self.0.broker_dropped.fetch_add(messages, Ordering::Relaxed);
    }

    /// Messages dropped by the broker so far ([`Health::broker_dropped`]).
    pub fn broker_drops(&self) -> u64 {
        self.0.broker_dropped.load(Ordering::Relaxed)
    }

    pub fn set_backlog(&self, messages: u64) {
        self.0.backlog.store(messages, Ordering::Relaxed);
    }

    /// A stop has begun: not ready for more.
    pub fn stopping(&self) {
        self.0.stopping.store(true, Ordering::Relaxed);
    }

    /// The state now, and whether it is ready.
    pub fn report(&self) -> Report {
        let (storage, storage_ok) = {
            let s = self.storage();
            let ok = s.failing.is_none() && !s.gave_up;
            let report = StorageReport {
                ok,
                gave_up: s.gave_up,
                last_commit: s.last_commit.map(|(_, wall)| rfc3339(wall)),
                seconds_since_commit: s.last_commit.map(|(at, _)| secs(at.elapsed())),
                failing_since: s.failing.as_ref().map(|f| rfc3339(f.since_wall)),
                seconds_failing: s.failing.as_ref().map(|f| secs(f.since.elapsed())),
                error_class: s.failing.as_ref().map(|f| f.class),
                error: s.failing.as_ref().map(|f| f.error.clone()),
                failed_tries: s.failing.as_ref().map_or(0, |f| f.tries),
                timescale_jobs: None,
            };
            (report, ok)
        };
        let broker = BrokerReport {
            accepting: self.0.broker_up.load(Ordering::Relaxed),
            dropped: self.0.broker_dropped.load(Ordering::Relaxed),
        };
        let messages = self.0.backlog.load(Ordering::Relaxed);
        let backlog = BacklogReport {
            messages,
            limit: (self.0.backlog_limit != u64::MAX).then_some(self.0.backlog_limit),
            ok: messages <= self.0.backlog_limit,
        };
        let stopping = self.0.stopping.load(Ordering::Relaxed);
        Report {
            ready: storage_ok && broker.accepting && backlog.ok && !stopping,
            stopping,
            storage,
            broker,
            backlog,
        }
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    gridwatch_storage::model::rfc3339(ms)
}

/// The body of `/healthz/ready`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ReadyReport)]
pub struct Report {
    pub ready: bool,
    /// A stop has begun (SIGTERM): not taking more.
    pub stopping: bool,
    pub storage: StorageReport,
    pub broker: BrokerReport,
    pub backlog: BacklogReport,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StorageReport {
    /// No commit has failed since the last one succeeded.
    pub ok: bool,
    /// The write path met an error retrying cannot fix and stopped.
    pub gave_up: bool,
    pub last_commit: Option<String>,
    pub seconds_since_commit: Option<f64>,
    pub failing_since: Option<String>,
    pub seconds_failing: Option<f64>,
    /// `full`, `connection`, `busy`, `constraint` or `other`.
    #[schema(value_type = Option<String>)]
    pub error_class: Option<&'static str>,
    pub error: Option<String>,
    pub failed_tries: u64,
    /// TimescaleDB's jobs (compression, retention, aggregate refresh) and gridwatch's
    /// own runs of them; only on a hypertable. Informational: not part of `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timescale_jobs: Option<gridwatch_storage::PolicyHealth>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BrokerReport {
    /// The embedded broker delivers to ingest.
    pub accepting: bool,
    /// Messages it dropped before ingest read them, since the start.
    pub dropped: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BacklogReport {
    /// Messages read from the broker and not yet stored.
    pub messages: u64,
    pub limit: Option<u64>,
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_while_commits_fail_ready_after_one_succeeds() {
        let health = Health::new(10);
        assert!(health.report().ready, "nothing has failed yet");
        health.commit_failed("full", &"database or disk is full");
        health.commit_failed("full", &"database or disk is full");
        let report = health.report();
        assert!(!report.ready);
        assert_eq!(report.storage.error_class, Some("full"));
        assert_eq!(report.storage.failed_tries, 2);
        health.commit_succeeded();
        let report = health.report();
        assert!(report.ready);
        assert!(report.storage.last_commit.is_some());
        health.set_backlog(11);
        assert!(!health.report().ready, "backlog above its limit");
        health.set_backlog(3);
        health.set_broker_up(false);
        assert!(!health.report().ready, "broker down");
        health.set_broker_up(true);
        health.stopping();
        assert!(!health.report().ready, "stopping");
    }
}
