//! Webhook endpoints of maintenance firms and their delivery outbox.
//!
//! Each endpoint keeps a cursor into the [`crate::feed`] table: [`enqueue`] copies the
//! firm's feed rows past it into `webhook_deliveries` (status `pending`) and moves it on,
//! in one transaction, so a row is queued once whatever crashes. A delivery then
//! becomes `delivered` or, after its retry budget, `parked`; only a redrive
//! ([`redrive`]) makes a parked one pending again. Nothing here knows HTTP or the
//! retry schedule: the caller says what an attempt gave ([`Attempt`]).
use crate::{Result, Store};
use serde::Serialize;
use sqlx::Row;

/// One registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Endpoint {
    pub id: i64,
    pub firm: String,
    pub url: String,
    /// `whsec_<base64>`; never shown after it was made.
    #[serde(skip)]
    pub secret: String,
    /// ms since the epoch.
    pub created_at: i64,
    pub created_by: String,
    /// Feed rows up to this id are queued for it, or not its firm's.
    pub feed_cursor: i64,
}

/// An endpoint to register.
#[derive(Debug, Clone)]
pub struct NewEndpoint<'a> {
    pub firm: &'a str,
    pub url: &'a str,
    pub secret: &'a str,
    pub created_by: &'a str,
    pub at: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = DeliveryStatus))]
pub enum Status {
    Pending,
    Delivered,
    Parked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Parked => "parked",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "pending" => Some(Status::Pending),
            "delivered" => Some(Status::Delivered),
            "parked" => Some(Status::Parked),
            _ => None,
        }
    }
}

/// One feed row on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub id: i64,
    pub endpoint_id: i64,
    /// The feed row's id: the `webhook-id` header.
    pub feed_id: i64,
    pub event: String,
    /// The feed row's body, without the id.
    #[serde(skip)]
    pub body: String,
    pub status: Status,
    pub attempts: i64,
    pub queued_at: i64,
    pub next_at: i64,
    pub last_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

impl Delivery {
    /// The JSON the endpoint receives: the feed row as `GET /api/feed` sends it.
    pub fn payload(&self) -> String {
        crate::feed::data(self.feed_id, &self.body)
    }
}

/// What one attempt gave, as the caller judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Delivered (a 2xx): never sent again.
    Delivered { at: i64, status: i64 },
    /// Failed; tried again at `next_at`.
    Retry {
        at: i64,
        status: Option<i64>,
        error: String,
        next_at: i64,
    },
    /// Failed, and the budget is spent: parked until a redrive.
    Parked {
        at: i64,
        status: Option<i64>,
        error: String,
    },
}

const ENDPOINT_COLUMNS: &str = "id, firm, url, secret, created_at, created_by, feed_cursor";
const DELIVERY_COLUMNS: &str =
    "id, endpoint_id, feed_id, event, body, status, attempts, queued_at, next_at, last_at, last_status, last_error";

fn endpoint_of(r: &impl EndpointRow) -> Endpoint {
    r.endpoint()
}

/// Reads an endpoint out of a row of either backend.
trait EndpointRow {
    fn endpoint(&self) -> Endpoint;
}

macro_rules! rows_of {
    ($row:ty) => {
        impl EndpointRow for $row {
            fn endpoint(&self) -> Endpoint {
                Endpoint {
                    id: self.get(0),
                    firm: self.get(1),
                    url: self.get(2),
                    secret: self.get(3),
                    created_at: self.get(4),
                    created_by: self.get(5),
                    feed_cursor: self.get(6),
                }
            }
        }

        impl DeliveryRow for $row {
            fn delivery(&self) -> Result<Delivery> {
                let status: String = self.get(5);
                Ok(Delivery {
                    id: self.get(0),
                    endpoint_id: self.get(1),
                    feed_id: self.get(2),
                    event: self.get(3),
                    body: self.get(4),
                    status: Status::parse(&status).ok_or_else(|| {
                        crate::Error::Layout(format!(
                            "webhook_deliveries.status {status:?} is none of pending, delivered, parked"
                        ))
                    })?,
                    attempts: self.get(6),
                    queued_at: self.get(7),
                    next_at: self.get(8),
                    last_at: self.get(9),
                    last_status: self.get(10),
                    last_error: self.get(11),
                })
            }
        }
    };
}

/// Reads a delivery out of a row of either backend.
trait DeliveryRow {
    fn delivery(&self) -> Result<Delivery>;
}

rows_of!(sqlx::sqlite::SqliteRow);
rows_of!(sqlx::postgres::PgRow);

/// Registers an endpoint; it starts at the newest feed row (it gets what happens from now).
pub async fn add_endpoint(store: &Store, new: &NewEndpoint<'_>) -> Result<Endpoint> {
    let sql = format!(
        "INSERT INTO webhook_endpoints (firm, url, secret, created_at, created_by, feed_cursor) \
         VALUES ($1, $2, $3, $4, $5, (SELECT coalesce(max(id), 0) FROM feed)) RETURNING {ENDPOINT_COLUMNS}"
    );
    Ok(with_pool!(store, writer, |pool| {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(new.firm)
            .bind(new.url)
            .bind(new.secret)
            .bind(new.at)
            .bind(new.created_by)
            .fetch_one(pool)
            .await?;
        endpoint_of(&row)
    }))
}

/// The endpoints of `firm` (every firm's with `None`), by id.
pub async fn endpoints(store: &Store, firm: Option<&str>) -> Result<Vec<Endpoint>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE $1 IS NULL OR firm = $1 ORDER BY id");
    Ok(with_pool!(store, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(firm)
            .fetch_all(pool)
            .await?
            .iter()
            .map(endpoint_of)
            .collect()
    }))
}

pub async fn endpoint(store: &Store, id: i64) -> Result<Option<Endpoint>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
    Ok(with_pool!(store, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(endpoint_of)
    }))
}

/// Removes an endpoint and its delivery log; `false` when there was none.
pub async fn remove_endpoint(store: &Store, id: i64) -> Result<bool> {
    Ok(with_pool!(store, writer, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        gone == 1
    }))
}

/// Queues the endpoint's firm's feed rows with `cursor < id <= upto` (at most `limit`)
/// as pending deliveries, due at `now`, and moves the cursor past them, in one
/// transaction. Returns how many were queued, or `None` when the endpoint is gone.
pub async fn enqueue(store: &Store, endpoint_id: i64, upto: i64, limit: i64, now: i64) -> Result<Option<u64>> {
    Ok(with_pool!(store, writer, |pool| {
        let mut tx = pool.begin().await?;
        let found = sqlx::query("SELECT firm, feed_cursor FROM webhook_endpoints WHERE id = $1")
            .bind(endpoint_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(found) = found else {
            return Ok(None);
        };
        let (firm, cursor): (String, i64) = (found.get(0), found.get(1));
        if cursor >= upto {
            return Ok(Some(0));
        }
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM feed WHERE id > $1 AND id <= $2 AND firm = $3 ORDER BY id LIMIT $4")
                .bind(cursor)
                .bind(upto)
                .bind(&firm)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
        // A short page holds every row of the firm up to `upto`: the cursor passes them all.
        let moved_to = if ids.len() as i64 >= limit {
            *ids.last().unwrap_or(&upto)
        } else {
            upto
        };
        let queued = sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, feed_id, event, body, status, attempts, queued_at, next_at) \
             SELECT $1, id, event, body, 'pending', 0, $2, $2 FROM feed \
             WHERE id > $3 AND id <= $4 AND firm = $5 ON CONFLICT DO NOTHING",
        )
        .bind(endpoint_id)
        .bind(now)
        .bind(cursor)
        .bind(moved_to)
        .bind(&firm)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE webhook_endpoints SET feed_cursor = $1 WHERE id = $2")
            .bind(moved_to)
            .bind(endpoint_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Some(queued)
    }))
}

/// The endpoint's pending delivery of the lowest feed id: the next to try, in order.
pub async fn next_pending(store: &Store, endpoint_id: i64) -> Result<Option<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending' \
         ORDER BY feed_id LIMIT 1"
    );
    with_pool!(store, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(endpoint_id)
            .fetch_optional(pool)
            .await?
            .map(|r| r.delivery())
            .transpose()
    })
}

/// Records an attempt at the pending delivery `id`; `false` when it is no longer
/// pending (removed with its endpoint).
pub async fn record(store: &Store, id: i64, attempt: &Attempt) -> Result<bool> {
    let (status, at, http, error, next_at) = match attempt {
        Attempt::Delivered { at, status } => (Status::Delivered, *at, Some(*status), None, None),
        Attempt::Retry {
            at,
            status,
            error,
            next_at,
        } => (Status::Pending, *at, *status, Some(error.as_str()), Some(*next_at)),
        Attempt::Parked { at, status, error } => (Status::Parked, *at, *status, Some(error.as_str()), None),
    };
    Ok(with_pool!(store, writer, |pool| {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_at = $2, last_status = $3, \
             last_error = $4, next_at = coalesce($5, next_at) WHERE id = $6 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(at)
        .bind(http)
        .bind(error)
        .bind(next_at)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
            == 1
    }))
}

/// The endpoint's deliveries with ids above `after` (of `status` if given), by id, at
/// most `limit`.
pub async fn deliveries(
    store: &Store,
    endpoint_id: i64,
    status: Option<Status>,
    after: i64,
    limit: i64,
) -> Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 AND id > $2 \
         AND ($3 IS NULL OR status = $3) ORDER BY id LIMIT $4"
    );
    with_pool!(store, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(endpoint_id)
            .bind(after)
            .bind(status.map(Status::as_str))
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.delivery())
            .collect()
    })
}

/// Makes the parked delivery `id` of the endpoint pending again with a fresh budget,
/// due at `now`; `false` when there is no such parked delivery.
pub async fn redrive(store: &Store, endpoint_id: i64, id: i64, now: i64) -> Result<bool> {
    Ok(with_pool!(store, writer, |pool| {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, queued_at = $1, next_at = $1 \
             WHERE id = $2 AND endpoint_id = $3 AND status = 'parked'",
        )
        .bind(now)
        .bind(id)
        .bind(endpoint_id)
        .execute(pool)
        .await?
        .rows_affected()
            == 1
    }))
}

/// Parked deliveries of every endpoint.
pub async fn parked(store: &Store) -> Result<i64> {
    Ok(with_pool!(store, |pool| {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_deliveries WHERE status = 'parked'")
            .fetch_one(pool)
            .await?
    }))
}

/// Deletes up to `step_rows` delivered deliveries last tried before `cutoff_ms`: the
/// delivery log of what arrived is kept for a while, not for ever.
pub async fn prune_delivered(store: &Store, cutoff_ms: i64, step_rows: i64) -> Result<u64> {
    Ok(with_pool!(store, writer, |pool| {
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE status = 'delivered' AND last_at < $1 ORDER BY id LIMIT $2)",
        )
        .bind(cutoff_ms)
        .bind(step_rows)
        .execute(pool)
        .await?
        .rows_affected()
    }))
}
