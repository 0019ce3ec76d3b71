//! Native time partitioning of `readings`, the PostgreSQL path without
//! TimescaleDB: one partition per UTC day, named `readings_YYYYMMDD`, created a
//! few days ahead at start-up and then every hour; a default partition
//! (from the migration) takes rows of any other day, so a write never fails
//! for want of a partition. Partitions older than the retention are dropped.
//!
//! A day's partition cannot be created while the default partition holds rows
//! of that day (PostgreSQL refuses, SQLSTATE 23514): such days stay in the
//! default partition, with a warning, until an operator moves them.
use crate::error::{Doing, Result};
use sqlx::{PgPool, Row};
use std::time::Duration;

/// Which days to keep partitions for, relative to today (UTC).
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Days before today to create partitions for (for replays of recent data).
    pub back_days: i32,
    /// Days after today to create partitions for.
    pub ahead_days: i32,
    /// Drop day partitions that ended longer ago than this.
    pub retention: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            back_days: 7,
            ahead_days: 7,
            retention: crate::timescale::Policies::default().retention,
        }
    }
}

/// What one maintenance run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub created: Vec<String>,
    /// Days whose rows sit in the default partition, so no partition could be made.
    pub blocked: Vec<String>,
    pub dropped: Vec<String>,
}

/// Creates the missing day partitions of the plan's window and drops expired ones.
pub(crate) async fn maintain(pool: &PgPool, plan: &Plan) -> Result<Report> {
    let mut report = Report::default();
    let days = sqlx::query(
        "SELECT to_char(d, 'YYYYMMDD') AS name, to_char(d, 'YYYY-MM-DD') AS from_day, \
                to_char(d + 1, 'YYYY-MM-DD') AS to_day \
         FROM (SELECT (now() AT TIME ZONE 'UTC')::date + k AS d FROM generate_series(-$1::int, $2::int) AS k) AS days \
         WHERE to_regclass('readings_' || to_char(d, 'YYYYMMDD')) IS NULL",
    )
    .bind(plan.back_days)
    .bind(plan.ahead_days)
    .fetch_all(pool)
    .await
    .doing("listing missing partitions of readings")?;
    for day in days {
        let (name, from, to): (String, String, String) = (day.get("name"), day.get("from_day"), day.get("to_day"));
        // The names and bounds come from to_char of dates: digits and dashes only.
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS readings_{name} PARTITION OF readings \
             FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00')"
        );
        match sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await {
            Ok(_) => report.created.push(format!("readings_{name}")),
            // Another process made it in the meantime.
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P07" | "23505")) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514") => {
                tracing::warn!(
                    day = %from,
                    "readings of this day are in the default partition; its own partition cannot be created"
                );
                report.blocked.push(format!("readings_{name}"));
            }
            Err(e) => return Err(e).doing_with(|| format!("creating partition readings_{name}")),
        }
    }

    let retention_days = (plan.retention.as_secs() / 86_400) as i32;
    let expired: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_[0-9]{8}$' \
           AND to_date(substr(c.relname, 10), 'YYYYMMDD') + 1 < (now() AT TIME ZONE 'UTC')::date - $1 \
         ORDER BY 1",
    )
    .bind(retention_days)
    .fetch_all(pool)
    .await
    .doing("listing expired partitions of readings")?;
    for name in expired {
        // Names matched ^readings_[0-9]{8}$ above.
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
            .execute(pool)
            .await
            .doing_with(|| format!("dropping expired partition {name}"))?;
        tracing::info!(partition = %name, "dropped a partition older than the retention");
        report.dropped.push(name);
    }
    if !report.created.is_empty() {
        tracing::info!(created = ?report.created, "created partitions of readings");
    }
    Ok(report)
}
