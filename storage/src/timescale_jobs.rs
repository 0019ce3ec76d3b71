//! The health of TimescaleDB's background jobs on `readings` (compression,
//! retention, the refresh of `readings_hourly`), and gridwatch running them
//! itself where the scheduler's runs fail.
//!
//! The scheduler records each run in `timescaledb_information.job_stats` and each
//! failure in `job_errors`, then backs off. A run may fail after doing its work
//! (PostgreSQL 15.20 with TimescaleDB 2.28.3: every run ends with `cannot drop
//! portal "" while it is being set up`) or before; other versions fail other ways.
//! So every `check_every` gridwatch reads the jobs, exports their state as metrics
//! and in `/healthz/ready`, logs each new failure once with the server's message
//! and, by [`JobRuns`], runs a job itself with `CALL run_job(id)` from a session
//! (which works where the scheduler's runs fail), once per the job's own schedule
//! interval.
use crate::error::{Doing, Result};
use crate::model::rfc3339;
use serde::Serialize;
use sqlx::{PgPool, Row};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Whether gridwatch runs the TimescaleDB jobs itself (`gridwatch ingest --timescale-jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum JobRuns {
    /// A job whose last scheduled run failed, once per its schedule interval,
    /// until the scheduler's runs succeed again.
    #[default]
    Auto,
    /// Every job, once per its schedule interval, whatever the scheduler does
    /// (e.g. with TimescaleDB's background workers turned off).
    Always,
    /// None: the scheduler alone; failures are still reported.
    Never,
}

impl std::str::FromStr for JobRuns {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => Err(format!("{s:?}: expected auto, always or never")),
        }
    }
}

impl std::fmt::Display for JobRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Always => "always",
            Self::Never => "never",
        })
    }
}

/// How often the jobs are read by default.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// The jobs' state, as `/healthz/ready` shows it under `storage.timescale_jobs`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyHealth {
    /// Every job's maintenance last succeeded (by the scheduler or by gridwatch).
    pub ok: bool,
    pub checked_at: String,
    pub runs: JobRuns,
    pub jobs: Vec<JobHealth>,
    /// Reading the jobs failed (the state above is then the last one read).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobHealth {
    pub job_id: i32,
    /// `policy_compression`, `policy_retention`, `policy_refresh_continuous_aggregate`.
    pub job: String,
    pub schedule_interval_seconds: f64,
    /// `Success` or `Failed`; none before the scheduler first ran it.
    pub scheduler_last_status: Option<String>,
    pub scheduler_runs: i64,
    pub scheduler_failures: i64,
    /// The server's message of the job's latest failure (`job_errors`).
    pub scheduler_last_error: Option<String>,
    pub gridwatch_runs: u64,
    pub gridwatch_failures: u64,
    pub gridwatch_last_run: Option<String>,
    /// The server's message when gridwatch's last run failed.
    pub gridwatch_last_error: Option<String>,
    /// The last run (gridwatch's if it ran the job, else the scheduler's) succeeded.
    pub ok: bool,
}

/// One job as the server reports it.
#[derive(Debug, Clone)]
struct Job {
    id: i32,
    proc_name: String,
    interval_ms: i64,
    last_status: Option<String>,
    runs: i64,
    failures: i64,
    last_error: Option<String>,
}

impl Job {
    fn scheduler_failed(&self) -> bool {
        self.last_status.as_deref() == Some("Failed")
    }
}

/// What gridwatch did with one job.
#[derive(Debug, Default, Clone)]
struct Own {
    runs: u64,
    failures: u64,
    last_run_ms: Option<i64>,
    last_error: Option<String>,
    /// The scheduler's failure message last logged, so each is logged once.
    logged: Option<String>,
}

/// Watches the jobs of one database. Shared by the store's clones.
#[derive(Debug)]
pub struct JobWatch {
    runs: JobRuns,
    own: Mutex<HashMap<i32, Own>>,
    health: Mutex<Option<PolicyHealth>>,
}

/// Whether gridwatch runs a job now.
pub(crate) fn due(
    runs: JobRuns,
    scheduler_failed: bool,
    last_own_ms: Option<i64>,
    interval_ms: i64,
    now_ms: i64,
) -> bool {
    let wanted = match runs {
        JobRuns::Never => false,
        JobRuns::Auto => scheduler_failed,
        JobRuns::Always => true,
    };
    wanted && last_own_ms.is_none_or(|last| now_ms - last >= interval_ms)
}

impl JobWatch {
    pub fn new(runs: JobRuns) -> Self {
        describe();
        Self {
            runs,
            own: Mutex::default(),
            health: Mutex::default(),
        }
    }

    /// The state after the last check; `None` before the first.
    pub fn health(&self) -> Option<PolicyHealth> {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the jobs, runs those due at `now_ms`, exports and logs what changed.
    pub async fn check(&self, pool: &PgPool, now_ms: i64) -> PolicyHealth {
        let jobs = match read_jobs(pool).await {
            Ok(jobs) => jobs,
            Err(e) => {
                metrics::counter!("gridwatch_timescale_job_checks_failed_total").increment(1);
                tracing::warn!(error = %format!("{e:#}"), "could not read TimescaleDB's jobs");
                let mut health = self.health().unwrap_or(PolicyHealth {
                    ok: false,
                    checked_at: String::new(),
                    runs: self.runs,
                    jobs: Vec::new(),
                    error: None,
                });
                health.checked_at = rfc3339(now_ms);
                health.error = Some(format!("{e:#}"));
                *self.health.lock().unwrap_or_else(|e| e.into_inner()) = Some(health.clone());
                return health;
            }
        };
        for job in &jobs {
            let last_own = self.own(job.id).last_run_ms;
            if due(self.runs, job.scheduler_failed(), last_own, job.interval_ms, now_ms) {
                let ran = run_job(pool, job.id).await;
                let mut own = self.own_mut(job.id, |own| {
                    own.runs += 1;
                    own.last_run_ms = Some(now_ms);
                    own.clone()
                });
                let result = match ran {
                    Ok(()) => {
                        if own.last_error.is_some() {
                            tracing::info!(job_id = job.id, job = %job.proc_name, "gridwatch's run of a TimescaleDB job succeeded again");
                        }
                        own.last_error = None;
                        "ok"
                    }
                    Err(e) => {
                        let message = format!("{e:#}");
                        if own.last_error.as_ref() != Some(&message) {
                            tracing::error!(job_id = job.id, job = %job.proc_name, error = %message, "gridwatch's run of a TimescaleDB job failed");
                        }
                        own.failures += 1;
                        own.last_error = Some(message);
                        "failed"
                    }
                };
                self.own_mut(job.id, |o| *o = own);
                metrics::counter!("gridwatch_timescale_job_runs_total", "job_id" => job.id.to_string(), "job" => job.proc_name.clone(), "result" => result).increment(1);
            }
            self.log_scheduler(job);
        }
        let health = self.report(&jobs, now_ms);
        for (job, reported) in jobs.iter().zip(&health.jobs) {
            let labels = [("job_id", job.id.to_string()), ("job", job.proc_name.clone())];
            metrics::gauge!("gridwatch_timescale_job_ok", &labels).set(if reported.ok { 1.0 } else { 0.0 });
            metrics::gauge!("gridwatch_timescale_job_scheduler_failed", &labels).set(if job.scheduler_failed() {
                1.0
            } else {
                0.0
            });
            metrics::counter!("gridwatch_timescale_job_scheduler_failures_total", &labels)
                .absolute(job.failures.max(0) as u64);
        }
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = Some(health.clone());
        health
    }

    fn own(&self, id: i32) -> Own {
        self.own
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    fn own_mut<T>(&self, id: i32, f: impl FnOnce(&mut Own) -> T) -> T {
        f(self
            .own
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default())
    }

    /// Logs a scheduler failure once per distinct message, and the recovery once.
    fn log_scheduler(&self, job: &Job) {
        let runs = self.runs;
        self.own_mut(job.id, |own| {
            if job.scheduler_failed() {
                let message = job.last_error.clone().unwrap_or_else(|| "no message in job_errors".into());
                if own.logged.as_ref() != Some(&message) {
                    tracing::error!(
                        job_id = job.id, job = %job.proc_name, error = %message, failures = job.failures, gridwatch_runs = %runs,
                        "TimescaleDB's scheduler failed to run a job (timescaledb_information.job_errors)"
                    );
                    own.logged = Some(message);
                }
            } else if job.last_status.is_some() && own.logged.take().is_some() {
                tracing::info!(job_id = job.id, job = %job.proc_name, "TimescaleDB's scheduler runs the job successfully again");
            }
        });
    }

    fn report(&self, jobs: &[Job], now_ms: i64) -> PolicyHealth {
        let own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        let jobs: Vec<JobHealth> = jobs
            .iter()
            .map(|job| {
                let mine = own.get(&job.id).cloned().unwrap_or_default();
                let ok = if mine.runs > 0 {
                    mine.last_error.is_none()
                } else {
                    !job.scheduler_failed()
                };
                JobHealth {
                    job_id: job.id,
                    job: job.proc_name.clone(),
                    schedule_interval_seconds: job.interval_ms as f64 / 1000.0,
                    scheduler_last_status: job.last_status.clone(),
                    scheduler_runs: job.runs,
                    scheduler_failures: job.failures,
                    scheduler_last_error: job.last_error.clone(),
                    gridwatch_runs: mine.runs,
                    gridwatch_failures: mine.failures,
                    gridwatch_last_run: mine.last_run_ms.map(rfc3339),
                    gridwatch_last_error: mine.last_error,
                    ok,
                }
            })
            .collect();
        PolicyHealth {
            ok: jobs.iter().all(|j| j.ok),
            checked_at: rfc3339(now_ms),
            runs: self.runs,
            jobs,
            error: None,
        }
    }
}

/// The policies of `readings` and of its continuous aggregate, with their last
/// scheduled run and latest failure.
async fn read_jobs(pool: &PgPool) -> Result<Vec<Job>> {
    let rows = sqlx::query(
        "SELECT j.job_id, j.proc_name::text AS proc_name, \
                (extract(epoch FROM j.schedule_interval) * 1000)::int8 AS interval_ms, \
                s.last_run_status::text AS last_status, coalesce(s.total_runs, 0)::int8 AS runs, \
                coalesce(s.total_failures, 0)::int8 AS failures, \
                (SELECT e.err_message::text FROM timescaledb_information.job_errors e \
                 WHERE e.job_id = j.job_id ORDER BY e.finish_time DESC NULLS LAST LIMIT 1) AS last_error \
         FROM timescaledb_information.jobs j \
         LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id \
         WHERE j.hypertable_schema = current_schema() AND (j.hypertable_name = 'readings' \
            OR j.hypertable_name IN (SELECT materialization_hypertable_name FROM timescaledb_information.continuous_aggregates \
                                     WHERE view_schema = current_schema() AND view_name = $1) \
            OR j.hypertable_name = $1) \
         ORDER BY j.job_id",
    )
    .bind(crate::history::HOURLY_VIEW)
    .fetch_all(pool)
    .await
    .doing("reading timescaledb_information.jobs")?;
    Ok(rows
        .iter()
        .map(|r| Job {
            id: r.get("job_id"),
            proc_name: r.get("proc_name"),
            interval_ms: r.get::<Option<i64>, _>("interval_ms").unwrap_or(0),
            last_status: r.get("last_status"),
            runs: r.get("runs"),
            failures: r.get("failures"),
            last_error: r.get("last_error"),
        })
        .collect())
}

/// Runs a job in this session: the simple protocol, outside any transaction, as
/// a policy commits between its steps.
async fn run_job(pool: &PgPool, id: i32) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CALL run_job({id})")))
        .execute(pool)
        .await
        .doing_with(|| format!("CALL run_job({id})"))?;
    Ok(())
}

/// Checks the jobs every `every` (wall time), the first `every` after the start
/// (the scheduler runs new jobs at once), until dropped with the store.
pub(crate) fn spawn(watch: std::sync::Arc<JobWatch>, pool: PgPool, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            watch.check(&pool, crate::model::now_ms()).await;
        }
    })
}

/// The HELP texts, once per process.
fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_gauge!(
            "gridwatch_timescale_job_ok",
            "1 while a TimescaleDB job's last run (gridwatch's where it runs the job, else the scheduler's) succeeded"
        );
        metrics::describe_gauge!(
            "gridwatch_timescale_job_scheduler_failed",
            "1 while TimescaleDB's scheduler's last run of the job failed (timescaledb_information.job_stats)"
        );
        metrics::describe_counter!(
            "gridwatch_timescale_job_scheduler_failures_total",
            "Failed scheduler runs of a TimescaleDB job, as the server counts them (job_stats.total_failures)"
        );
        metrics::describe_counter!(
            "gridwatch_timescale_job_runs_total",
            "TimescaleDB jobs run by gridwatch itself (CALL run_job), by result"
        );
        metrics::describe_counter!(
            "gridwatch_timescale_job_checks_failed_total",
            "Reads of timescaledb_information.jobs that failed"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn auto_runs_a_job_only_after_the_scheduler_failed_and_once_per_its_interval() {
        assert!(!due(JobRuns::Auto, false, None, HOUR, 0), "the scheduler succeeds");
        assert!(due(JobRuns::Auto, true, None, HOUR, 0));
        assert!(!due(JobRuns::Auto, true, Some(0), HOUR, HOUR - 1));
        assert!(due(JobRuns::Auto, true, Some(0), HOUR, HOUR));
    }

    #[test]
    fn always_and_never_ignore_the_scheduler() {
        assert!(due(JobRuns::Always, false, None, HOUR, 0));
        assert!(!due(JobRuns::Always, false, Some(10), HOUR, HOUR));
        assert!(!due(JobRuns::Never, true, None, HOUR, 0));
        assert_eq!("never".parse::<JobRuns>(), Ok(JobRuns::Never));
        assert!("sometimes".parse::<JobRuns>().is_err());
    }
}
