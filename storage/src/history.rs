//! One device's history in whole UTC hours, for charts: a lift's floors, trips and
//! door cycles, a sterilizer's temperature and cycles, per hour.
//!
//! On TimescaleDB it reads the continuous aggregate [`HOURLY_VIEW`] (real-time
//! aggregation on, so the hours not materialized yet come from the readings); on
//! plain PostgreSQL and SQLite it aggregates the readings in the query, which is why
//! a request covers at most [`MAX_RANGE_MS`]. Both give the same per-hour parts
//! (the same column names), turned into buckets here: trips and door cycles are
//! differences of the lift's wear counters, which only grow (a node replaced
//! restarts them).
use crate::model::rfc3339;
use crate::postgres::Layout;
use crate::{Result, Store};
use serde::Serialize;
use sqlx::Row;

pub const HOUR_MS: i64 = 3_600_000;
/// The longest window one request may cover: raw readings are aggregated per request
/// on SQLite and plain PostgreSQL (31 days of a 5-second heartbeat: ~535,000 readings).
pub const MAX_RANGE_MS: i64 = 31 * 24 * HOUR_MS;
/// How far before the window the lift's counters are looked up, so that the first
/// hour's trips count from the last reading before it.
pub const BASE_LOOKBACK_MS: i64 = 24 * HOUR_MS;

/// The continuous aggregate on TimescaleDB (created by [`set_up_hourly`]).
pub const HOURLY_VIEW: &str = "readings_hourly";

/// Where the buckets came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = HistorySource))]
pub enum Source {
    /// Aggregated from the readings in the query.
    Readings,
    /// TimescaleDB's continuous aggregate (and the readings after its last refresh).
    ContinuousAggregate,
}

/// A window the history cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("from={from_ms} to={to_ms}: the window is empty (from must be before to)")]
    Empty { from_ms: i64, to_ms: i64 },
    #[error("from={from_ms} to={to_ms}: at most 31 days per request; ask for the rest in further requests")]
    TooLong { from_ms: i64, to_ms: i64 },
}

/// `from_ms..to_ms` widened to whole hours (buckets are whole hours on every backend),
/// or why it cannot be served.
pub fn hour_window(from_ms: i64, to_ms: i64) -> std::result::Result<(i64, i64), WindowError> {
    if from_ms >= to_ms {
        return Err(WindowError::Empty { from_ms, to_ms });
    }
    let from = from_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let to = to_ms.saturating_add(HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
    if to - from > MAX_RANGE_MS {
        return Err(WindowError::TooLong { from_ms, to_ms });
    }
    Ok((from, to))
}

/// One hour of one device. Hours without a reading are left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HourBucket {
    /// The hour's start, ms since the epoch and RFC 3339 (UTC).
    pub start_ms: i64,
    pub start: String,
    /// `lift` or `sterilizer`.
    pub kind: &'static str,
    /// Status readings in the hour.
    pub readings: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_max: Option<i64>,
    /// Runs the lift's counter gained since the previous reading before the hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trips: Option<i64>,
    /// Door cycles gained, the same way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub door_cycles: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_min_c: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_max_c: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_mean_c: Option<f64>,
    /// Cycle reports (completed or aborted) that ended in the hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cycles: Option<i64>,
}

/// The buckets of one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hourly {
    pub source: Source,
    pub buckets: Vec<HourBucket>,
}

/// One backend row: one kind's aggregates in one hour.
#[derive(Debug, Default, Clone)]
struct Part {
    bucket_ms: i64,
    kind: String,
    readings: i64,
    floor_min: Option<i64>,
    floor_max: Option<i64>,
    runs_min: Option<i64>,
    runs_max: Option<i64>,
    doors_min: Option<i64>,
    doors_max: Option<i64>,
    temp_min: Option<f64>,
    temp_max: Option<f64>,
    temp_sum: Option<f64>,
    temp_n: i64,
}

/// The aggregates of a group of readings, in PostgreSQL; the continuous aggregate has
/// the same columns. Each reads `body::jsonb` again (see docs/storage.md for its cost).
const PG_AGGREGATES: &str = "count(*)::int8 AS readings, \
     min(((body::jsonb) -> 'body' ->> 'floor')::int8) AS floor_min, \
     max(((body::jsonb) -> 'body' ->> 'floor')::int8) AS floor_max, \
     min(((body::jsonb) -> 'body' ->> 'runs')::int8) AS runs_min, \
     max(((body::jsonb) -> 'body' ->> 'runs')::int8) AS runs_max, \
     min(((body::jsonb) -> 'body' ->> 'door_cycles')::int8) AS doors_min, \
     max(((body::jsonb) -> 'body' ->> 'door_cycles')::int8) AS doors_max, \
     min(((body::jsonb) -> 'body' ->> 'temp_c')::float8) AS temp_min, \
     max(((body::jsonb) -> 'body' ->> 'temp_c')::float8) AS temp_max, \
     sum(((body::jsonb) -> 'body' ->> 'temp_c')::float8) AS temp_sum, \
     count((body::jsonb) -> 'body' ->> 'temp_c')::int8 AS temp_n";

/// The same in SQLite.
const SQLITE_AGGREGATES: &str = "count(*) AS readings, \
     min(CAST(json_extract(body, '$.body.floor') AS INTEGER)) AS floor_min, \
     max(CAST(json_extract(body, '$.body.floor') AS INTEGER)) AS floor_max, \
     min(CAST(json_extract(body, '$.body.runs') AS INTEGER)) AS runs_min, \
     max(CAST(json_extract(body, '$.body.runs') AS INTEGER)) AS runs_max, \
     min(CAST(json_extract(body, '$.body.door_cycles') AS INTEGER)) AS doors_min, \
     max(CAST(json_extract(body, '$.body.door_cycles') AS INTEGER)) AS doors_max, \
     min(CAST(json_extract(body, '$.body.temp_c') AS REAL)) AS temp_min, \
     max(CAST(json_extract(body, '$.body.temp_c') AS REAL)) AS temp_max, \
     sum(CAST(json_extract(body, '$.body.temp_c') AS REAL)) AS temp_sum, \
     count(json_extract(body, '$.body.temp_c')) AS temp_n";

/// The kinds a history is made of: status readings and cycle reports.
const KINDS: &str = "('lift', 'sterilizer', 'cycle')";

/// The hourly history of `device` over `hour_window(from_ms, to_ms)` (call that first:
/// the window is used as given).
pub async fn hourly(store: &Store, device: &str, from_ms: i64, to_ms: i64) -> Result<Hourly> {
    let base_from = from_ms.saturating_sub(BASE_LOOKBACK_MS);
    let (source, parts, base) = match store {
        Store::Sqlite(s) => {
            let parts = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT (ts / {HOUR_MS}) * {HOUR_MS} AS bucket_ms, kind, {SQLITE_AGGREGATES} FROM readings \
                 WHERE device_id = ? AND kind IN {KINDS} AND ts >= ? AND ts < ? \
                 GROUP BY bucket_ms, kind ORDER BY bucket_ms, kind"
            )))
            .bind(device)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(s.pool())
            .await?;
            let base = sqlx::query(
                "SELECT max(CAST(json_extract(body, '$.body.runs') AS INTEGER)) AS runs, \
                 max(CAST(json_extract(body, '$.body.door_cycles') AS INTEGER)) AS doors FROM readings \
                 WHERE device_id = ? AND kind = 'lift' AND ts >= ? AND ts < ?",
            )
            .bind(device)
            .bind(base_from)
            .bind(from_ms)
            .fetch_one(s.pool())
            .await?;
            (Source::Readings, parts.iter().map(part).collect(), counters(&base))
        }
        Store::Postgres(p) => {
            let aggregate = p.layout() == Layout::Hypertable && has_hourly_view(p.pool()).await?;
            let (source, parts_sql, base_sql) = if aggregate {
                (
                    Source::ContinuousAggregate,
                    format!(
                        "SELECT (extract(epoch FROM bucket) * 1000)::int8 AS bucket_ms, kind, readings, \
                         floor_min, floor_max, runs_min, runs_max, doors_min, doors_max, \
                         temp_min, temp_max, temp_sum, temp_n FROM {HOURLY_VIEW} \
                         WHERE device_id = $1 AND kind IN {KINDS} \
                           AND bucket >= timestamptz 'epoch' + $2 * interval '1 millisecond' \
                           AND bucket < timestamptz 'epoch' + $3 * interval '1 millisecond' \
                         ORDER BY bucket_ms, kind"
                    ),
                    format!(
                        "SELECT max(runs_max) AS runs, max(doors_max) AS doors FROM {HOURLY_VIEW} \
                         WHERE device_id = $1 AND kind = 'lift' \
                           AND bucket >= timestamptz 'epoch' + $2 * interval '1 millisecond' \
                           AND bucket < timestamptz 'epoch' + $3 * interval '1 millisecond'"
                    ),
                )
            } else {
                (
                    Source::Readings,
                    format!(
                        "SELECT (extract(epoch FROM date_bin('1 hour', ts, timestamptz 'epoch')) * 1000)::int8 \
                         AS bucket_ms, kind, {PG_AGGREGATES} FROM readings \
                         WHERE device_id = $1 AND kind IN {KINDS} \
                           AND ts >= timestamptz 'epoch' + $2 * interval '1 millisecond' \
                           AND ts < timestamptz 'epoch' + $3 * interval '1 millisecond' \
                         GROUP BY bucket_ms, kind ORDER BY bucket_ms, kind"
                    ),
                    "SELECT max(((body::jsonb) -> 'body' ->> 'runs')::int8) AS runs, \
                     max(((body::jsonb) -> 'body' ->> 'door_cycles')::int8) AS doors FROM readings \
                     WHERE device_id = $1 AND kind = 'lift' \
                       AND ts >= timestamptz 'epoch' + $2 * interval '1 millisecond' \
                       AND ts < timestamptz 'epoch' + $3 * interval '1 millisecond'"
                        .to_string(),
                )
            };
            let parts = sqlx::query(sqlx::AssertSqlSafe(parts_sql))
                .bind(device)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(p.pool())
                .await?;
            let base = sqlx::query(sqlx::AssertSqlSafe(base_sql))
                .bind(device)
                .bind(base_from)
                .bind(from_ms)
                .fetch_one(p.pool())
                .await?;
            (source, parts.iter().map(part).collect(), counters(&base))
        }
    };
    let parts: Vec<Part> = parts;
    Ok(Hourly {
        source,
        buckets: buckets(&parts, base),
    })
}

/// The lift's counters before the window: (runs, door cycles).
fn counters<R: Row>(r: &R) -> (Option<i64>, Option<i64>)
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    (r.get("runs"), r.get("doors"))
}

fn part<R: Row>(r: &R) -> Part
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<f64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Part {
        bucket_ms: r.get("bucket_ms"),
        kind: r.get("kind"),
        readings: r.get("readings"),
        floor_min: r.get("floor_min"),
        floor_max: r.get("floor_max"),
        runs_min: r.get("runs_min"),
        runs_max: r.get("runs_max"),
        doors_min: r.get("doors_min"),
        doors_max: r.get("doors_max"),
        temp_min: r.get("temp_min"),
        temp_max: r.get("temp_max"),
        temp_sum: r.get("temp_sum"),
        temp_n: r.get("temp_n"),
    }
}

/// What a counter gained in an hour: from the last value before it (`before`) to the
/// hour's highest; from the hour's lowest when nothing came before or the counter
/// restarted (a node replaced).
fn gained(before: &mut Option<i64>, min: Option<i64>, max: Option<i64>) -> Option<i64> {
    let (min, max) = (min?, max?);
    let from = match *before {
        Some(b) if b <= min => b,
        _ => min,
    };
    *before = Some(max);
    Some(max - from)
}

/// Buckets from the per-hour parts (in hour order), the lift's counters counting on
/// from `base` (runs, door cycles before the window).
fn buckets(parts: &[Part], base: (Option<i64>, Option<i64>)) -> Vec<HourBucket> {
    let (mut runs, mut doors) = base;
    let mut out: Vec<HourBucket> = Vec::new();
    for p in parts {
        let kind = if p.kind == "lift" { "lift" } else { "sterilizer" };
        if out.last().is_none_or(|b| b.start_ms != p.bucket_ms) {
            out.push(HourBucket {
                start_ms: p.bucket_ms,
                start: rfc3339(p.bucket_ms),
                kind,
                readings: 0,
                floor_min: None,
                floor_max: None,
                trips: None,
                door_cycles: None,
                temp_min_c: None,
                temp_max_c: None,
                temp_mean_c: None,
                cycles: None,
            });
        }
        let b = out.last_mut().expect("pushed above");
        match p.kind.as_str() {
            "lift" => {
                b.kind = "lift";
                b.readings = p.readings;
                b.floor_min = p.floor_min;
                b.floor_max = p.floor_max;
                b.trips = gained(&mut runs, p.runs_min, p.runs_max);
                b.door_cycles = gained(&mut doors, p.doors_min, p.doors_max);
            }
            "sterilizer" => {
                b.readings = p.readings;
                b.temp_min_c = p.temp_min;
                b.temp_max_c = p.temp_max;
                b.temp_mean_c = p.temp_sum.filter(|_| p.temp_n > 0).map(|s| s / p.temp_n as f64);
                b.cycles.get_or_insert(0);
            }
            _ => b.cycles = Some(p.readings),
        }
    }
    out
}

/// Whether the continuous aggregate exists with this module's columns (an older
/// definition lacks them: then the readings are aggregated instead).
async fn has_hourly_view(pool: &sqlx::PgPool) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'runs_max')",
    )
    .bind(HOURLY_VIEW)
    .fetch_one(pool)
    .await?)
}

/// Creates the continuous aggregate behind [`hourly`] on a hypertable `readings`, or
/// replaces an older definition (then materializes everything before the current hour
/// once: the policy only refreshes recent days). Real-time aggregation is on, so the
/// hours after the last refresh are read from the readings. Idempotent.
pub(crate) async fn set_up_hourly(pool: &sqlx::PgPool) -> Result<()> {
    use crate::error::Doing;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(HOURLY_VIEW)
        .fetch_one(pool)
        .await?;
    let current = has_hourly_view(pool).await?;
    if exists && !current {
        tracing::info!(
            view = HOURLY_VIEW,
            "replacing the continuous aggregate with typed hourly columns"
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP MATERIALIZED VIEW {HOURLY_VIEW}")))
            .execute(pool)
            .await
            .doing_with(|| format!("dropping the old continuous aggregate {HOURLY_VIEW}"))?;
    }
    if !current {
        // WITH NO DATA: creating with data fails inside a transaction.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {HOURLY_VIEW} \
             WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS \
             SELECT device_id, kind, time_bucket(INTERVAL '1 hour', ts) AS bucket, {PG_AGGREGATES} \
             FROM readings GROUP BY device_id, kind, bucket WITH NO DATA"
        )))
        .execute(pool)
        .await
        .doing_with(|| format!("creating continuous aggregate {HOURLY_VIEW}"))?;
        if exists {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CALL refresh_continuous_aggregate('{HOURLY_VIEW}', NULL, date_trunc('hour', now()))"
            )))
            .execute(pool)
            .await
            .doing_with(|| format!("materializing {HOURLY_VIEW}"))?;
        }
    }
    // The last three days every 30 minutes, never the unfinished hour (real-time
    // aggregation covers it).
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT add_continuous_aggregate_policy('{HOURLY_VIEW}', start_offset => INTERVAL '3 days', \
         end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE)"
    )))
    .execute(pool)
    .await
    .doing_with(|| format!("add_continuous_aggregate_policy({HOURLY_VIEW})"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lift(bucket_ms: i64, runs: (i64, i64), doors: (i64, i64)) -> Part {
        Part {
            bucket_ms,
            kind: "lift".into(),
            readings: 2,
            runs_min: Some(runs.0),
            runs_max: Some(runs.1),
            doors_min: Some(doors.0),
            doors_max: Some(doors.1),
            ..Part::default()
        }
    }

    #[test]
    fn windows_widen_to_whole_hours_and_stop_at_31_days() {
        assert_eq!(hour_window(HOUR_MS + 1, 2 * HOUR_MS + 1), Ok((HOUR_MS, 3 * HOUR_MS)));
        assert_eq!(hour_window(0, MAX_RANGE_MS), Ok((0, MAX_RANGE_MS)));
        assert!(matches!(
            hour_window(0, MAX_RANGE_MS + 1),
            Err(WindowError::TooLong { .. })
        ));
        assert!(matches!(hour_window(5, 5), Err(WindowError::Empty { .. })));
    }

    #[test]
    fn counters_count_on_from_the_hour_before_and_restart_with_a_new_node() {
        let parts = [
            lift(0, (10, 14), (20, 30)),
            lift(HOUR_MS, (15, 15), (31, 33)),
            lift(2 * HOUR_MS, (0, 3), (0, 1)),
        ];
        let b = buckets(&parts, (Some(8), None));
        let trips: Vec<_> = b.iter().map(|b| b.trips).collect();
        let doors: Vec<_> = b.iter().map(|b| b.door_cycles).collect();
        assert_eq!(trips, [Some(6), Some(1), Some(3)]);
        assert_eq!(doors, [Some(10), Some(3), Some(1)]);
    }
}
