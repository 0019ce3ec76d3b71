//! Retrying a store operation: what is in hand (a batch to commit, alert events
//! to save) is never dropped for a passing database fault.
//!
//! Every try is a fresh transaction: a store operation begins its own, and a
//! failed one is rolled back when dropped. A connection whose transaction could
//! not be rolled back, or that is broken, is closed when it returns to its pool
//! (see [`crate::sqlite`] and [`crate::postgres`]), so the next try runs on a
//! fresh connection. The error's class ([`ErrorClass`]) decides what happens next.
use crate::error::{ErrorClass, Verdict};
use crate::{Error, Result};
use std::time::Duration;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const LAST_BACKOFF: Duration = Duration::from_secs(5);

/// Tries of an operation failing with [`ErrorClass::Other`] before
/// [`retry_classified`] gives up: a few, in case it was a passing fault after all.
pub const OTHER_TRIES: u32 = 5;

/// One failed try, as [`retry_classified`] reports it to its observer.
#[derive(Debug)]
pub struct Retried<'a> {
    pub error: &'a Error,
    pub class: ErrorClass,
    /// Tries so far, this one included.
    pub tries: u32,
}

/// Runs `op` until it succeeds, whatever the error, backing off from 50 ms to
/// 5 s between tries: for what must not be dropped and has nowhere else to go.
/// Each failure is logged and counted in `gridwatch_ingest_store_failures_total{op}`
/// and `gridwatch_storage_errors_total{op,class}`.
pub async fn retry<T, F, Fut>(what: &'static str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut tries = 0;
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) => {
                tries += 1;
                let class = e.class();
                count(what, class);
                tracing::error!(error = %e, op = what, %class, tries, retry_in = ?backoff, "store operation failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(LAST_BACKOFF);
            }
        }
    }
}

/// Runs `op` as its errors' classes say ([`ErrorClass::verdict`]): a full disk,
/// a lost connection or a lock is retried until it passes (backing off from 50
/// ms to 5 s); data the database refuses is returned at once, for the caller to
/// quarantine; any other error is returned after [`OTHER_TRIES`] tries.
/// `failed` sees every failed try (counted and logged here too).
pub async fn retry_classified<T, F, Fut>(
    what: &'static str,
    mut failed: impl FnMut(Retried<'_>),
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut tries = 0;
    loop {
        let e = match op().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        tries += 1;
        let class = e.class();
        count(what, class);
        failed(Retried {
            error: &e,
            class,
            tries,
        });
        match class.verdict() {
            Verdict::Quarantine => {
                tracing::warn!(error = %e, op = what, %class, "the database refused the data");
                return Err(e);
            }
            Verdict::Fail if tries >= OTHER_TRIES => {
                tracing::error!(error = %e, op = what, %class, tries, "store operation failed; giving up");
                return Err(e);
            }
            Verdict::Retry | Verdict::Fail => {
                tracing::error!(error = %e, op = what, %class, tries, retry_in = ?backoff, "store operation failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LAST_BACKOFF);
    }
}

/// Whether a connection returning to its pool may be used again: not if it is
/// still inside a transaction. SQLite rolls a transaction back by itself on some
/// errors (`SQLITE_FULL` among them); sqlx's `ROLLBACK` then fails and its count
/// of open transactions stays at one, so every later `BEGIN` on that connection
/// would fail ("begin_with at non-zero transaction depth"). Closed instead, the
/// pool opens a fresh one. The ping first runs the rollback a dropped
/// transaction queued.
pub(crate) async fn usable_after_release<C: sqlx::Connection>(conn: &mut C) -> Result<bool, sqlx::Error> {
    conn.ping().await?;
    if conn.is_in_transaction() {
        describe();
        metrics::counter!("gridwatch_storage_connections_discarded_total").increment(1);
        tracing::warn!("a database connection left inside a failed transaction is closed; the pool opens a fresh one");
        return Ok(false);
    }
    Ok(true)
}

fn count(what: &'static str, class: ErrorClass) {
    describe();
    metrics::counter!("gridwatch_ingest_store_failures_total", "op" => what).increment(1);
    metrics::counter!("gridwatch_storage_errors_total", "op" => what, "class" => class.as_str()).increment(1);
}

/// The HELP texts of the retry metrics, once per process.
fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(
            "gridwatch_ingest_store_failures_total",
            "Failed tries of a store operation, by operation"
        );
        metrics::describe_counter!(
            "gridwatch_storage_errors_total",
            "Failed tries of a store operation, by operation and error class (full, connection, busy, constraint, other)"
        );
        metrics::describe_counter!(
            "gridwatch_storage_connections_discarded_total",
            "Database connections closed on their return to the pool because a failed transaction was still open on them"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(class_of: std::io::ErrorKind) -> Error {
        Error::Database(sqlx::Error::Io(std::io::Error::from(class_of)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_disk_is_retried_until_it_passes() {
        let mut tries = 0;
        let mut seen = Vec::new();
        let done = retry_classified(
            "test",
            |r| seen.push(r.class),
            || {
                tries += 1;
                let fail = tries < 4;
                async move {
                    if fail {
                        Err(failing(std::io::ErrorKind::StorageFull))
                    } else {
                        Ok(7)
                    }
                }
            },
        )
        .await;
        assert_eq!(done.unwrap(), 7);
        assert_eq!(seen, [ErrorClass::Full; 3]);
    }

    #[tokio::test]
    async fn refused_data_comes_back_at_once() {
        let db = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .execute(&db)
            .await
            .unwrap();
        let mut tries = 0;
        let refused = retry_classified(
            "test",
            |_| {},
            || {
                tries += 1;
                let db = db.clone();
                async move { Ok(sqlx::query("INSERT INTO t VALUES (1), (1)").execute(&db).await?) }
            },
        )
        .await;
        assert_eq!(refused.unwrap_err().class(), ErrorClass::Constraint);
        assert_eq!(tries, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_come_back_after_a_few_tries() {
        let mut tries = 0;
        let other: Result<()> = retry_classified(
            "test",
            |_| {},
            || {
                tries += 1;
                async { Err(Error::Layout("not ours".into())) }
            },
        )
        .await;
        assert_eq!(other.unwrap_err().class(), ErrorClass::Other);
        assert_eq!(tries, OTHER_TRIES);
    }
}
