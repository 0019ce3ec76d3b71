//! Webhook endpoints of maintenance firms: register, list, remove; the delivery log and
//! the redrive of a parked delivery (docs/api.md, "Webhooks"). Only a firm's own staff
//! manage its endpoints: grid roles get 403, since an endpoint carries the firm's
//! events out to the firm's own systems. Open mode may list, not change.
use super::{PageQuery, page_response};
use crate::error::{Json, Path, Query};
use crate::http::{ApiError, AppState, Caller};
use crate::webhooks::{MAX_ENDPOINTS_PER_FIRM, Secret, check_url};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwatch_cases::User;
use gridwatch_storage::webhooks::{self as store, Endpoint, NewEndpoint, Status};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddBody {
    url: String,
    /// `whsec_<base64>`; generated (and shown once) when absent.
    #[serde(default)]
    secret: Option<String>,
    /// Needed only by staff of more than one firm.
    #[serde(default)]
    firm: Option<String>,
}

fn unprocessable(message: String) -> ApiError {
    metrics::counter!("gridwatch_api_rejected_total", "reason" => "webhook_invalid").increment(1);
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// The firms whose endpoints the caller manages; 403 for callers who are no firm's staff.
fn firms_of(user: &User) -> Result<Vec<&str>, ApiError> {
    let firms = user.firms();
    if firms.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "webhooks are registered by a maintenance firm's staff for their firm; grid roles follow GET /api/feed",
        ));
    }
    Ok(firms)
}

/// The endpoint `id` if the caller may see it (a firm's staff: their firm's; open mode: any).
async fn visible(s: &AppState, caller: &Caller, id: i64) -> Result<Endpoint, ApiError> {
    let firms = match &caller.user {
        Some(user) => Some(firms_of(user)?),
        None => None,
    };
    store::endpoint(&s.store, id)
        .await?
        .filter(|e| firms.as_ref().is_none_or(|f| f.contains(&e.firm.as_str())))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no webhook endpoint {id}")))
}

/// A registered endpoint as its registration answers it: [`Endpoint`]'s fields, and the
/// secret when it was generated.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Created {
    id: i64,
    firm: String,
    url: String,
    /// ms since the epoch.
    created_at: i64,
    created_by: String,
    /// Feed rows up to this id are queued for it, or not its firm's.
    feed_cursor: i64,
    /// `whsec_<base64>`: shown this once, and only when it was generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

/// `POST /api/webhooks`: 201 with the endpoint, and its secret when it was generated.
#[utoipa::path(post, operation_id = "webhooks_add", path = "/api/webhooks", tag = "webhooks", request_body = AddBody,
    responses(
        (status = 201, description = "The endpoint, with `secret` when it was generated (shown once)", body = Created),
        (status = 403, description = "Not a maintenance firm's staff, or not of the firm named", body = crate::error::ErrorBody),
        (status = 409, description = "The firm has the most endpoints it may", body = crate::error::ErrorBody),
        (status = 422, description = "A URL or secret that is refused, naming why", body = crate::error::ErrorBody),
    ))]
pub(super) async fn add(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<AddBody>,
) -> Result<Response, ApiError> {
    let user = caller.writer()?;
    let firms = firms_of(user)?;
    let firm = match (&body.firm, firms.as_slice()) {
        (Some(firm), _) if firms.contains(&firm.as_str()) => firm.clone(),
        (Some(firm), _) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("firm {firm:?}: you are staff of {} only", firms.join(", ")),
            ));
        }
        (None, [only]) => only.to_string(),
        (None, _) => {
            return Err(unprocessable(format!(
                "field firm: you are staff of {}; say which firm the endpoint is for",
                firms.join(", ")
            )));
        }
    };
    let url = check_url(&body.url).map_err(unprocessable)?;
    let (secret, generated) = match &body.secret {
        Some(text) => (Secret::parse(text).map_err(|e| unprocessable(e.to_string()))?, false),
        None => (
            Secret::generate().map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
            true,
        ),
    };
    if store::endpoints(&s.store, Some(&firm)).await?.len() >= MAX_ENDPOINTS_PER_FIRM {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("firm {firm} has {MAX_ENDPOINTS_PER_FIRM} webhook endpoints, the most it may; remove one first"),
        ));
    }
    let endpoint = store::add_endpoint(
        &s.store,
        &NewEndpoint {
            firm: &firm,
            url: url.as_str(),
            secret: secret.as_str(),
            created_by: &user.id,
            at: s.clock.now_ms() as i64,
        },
    )
    .await?;
    s.webhooks.kick();
    tracing::info!(endpoint = endpoint.id, firm = %firm, url = %endpoint.url, by = %user.id, "webhook endpoint registered");
    let shown = Created {
        secret: generated.then(|| secret.as_str().to_string()),
        id: endpoint.id,
        firm: endpoint.firm,
        url: endpoint.url,
        created_at: endpoint.created_at,
        created_by: endpoint.created_by,
        feed_cursor: endpoint.feed_cursor,
    };
    Ok((StatusCode::CREATED, Json(crate::times::json(&shown))).into_response())
}

/// `GET /api/webhooks`: the caller's firms' endpoints (every one in open mode), by id.
/// A firm has at most [`MAX_ENDPOINTS_PER_FIRM`]: one answer, no pages.
#[utoipa::path(get, operation_id = "webhooks_list", path = "/api/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "Endpoints by id", body = [Endpoint]),
        (status = 403, description = "Not a maintenance firm's staff", body = crate::error::ErrorBody),
    ))]
pub(super) async fn list(State(s): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    let all = store::endpoints(&s.store, None).await?;
    let shown: Vec<Endpoint> = match &caller.user {
        None => all,
        Some(user) => {
            let firms = firms_of(user)?;
            all.into_iter().filter(|e| firms.contains(&e.firm.as_str())).collect()
        }
    };
    Ok(Json(crate::times::json(&shown)))
}

/// `DELETE /api/webhooks/{id}`: 204; the endpoint and its delivery log go.
#[utoipa::path(delete, operation_id = "webhooks_remove", path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint id")),
    responses(
        (status = 204, description = "Removed, with its delivery log"),
        (status = 403, description = "Not a maintenance firm's staff", body = crate::error::ErrorBody),
        (status = 404, description = "No such endpoint of the caller's firms", body = crate::error::ErrorBody),
    ))]
pub(super) async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let user = caller.writer()?;
    visible(&s, &caller, id).await?;
    store::remove_endpoint(&s.store, id).await?;
    s.webhooks.kick();
    tracing::info!(endpoint = id, by = %user.id, "webhook endpoint removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeliveriesQuery {
    /// `pending`, `delivered` or `parked`; none: all.
    status: Option<String>,
    /// The previous page's `x-next-cursor`; none: from the start.
    after: Option<String>,
    /// Rows per page: 1 to 1000, default 200.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// `GET /api/webhooks/{id}/deliveries?status=&after=&limit=`: the delivery log in queue order.
#[utoipa::path(get, operation_id = "webhooks_deliveries", path = "/api/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint id"), DeliveriesQuery),
    responses(
        (status = 200, description = "Deliveries in queue order", body = [store::Delivery],
            headers(("x-next-cursor" = String, description = "The cursor of the next page, when there is one"),
                    ("link" = String, description = "`<URL of the next page>; rel=\"next\"`, when there is one"))),
        (status = 400, description = "A status, cursor or limit that does not parse", body = crate::error::ErrorBody),
        (status = 403, description = "Not a maintenance firm's staff", body = crate::error::ErrorBody),
        (status = 404, description = "No such endpoint of the caller's firms", body = crate::error::ErrorBody),
    ))]
pub(super) async fn deliveries(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Response, ApiError> {
    let (after, limit) = PageQuery {
        after: q.after,
        limit: q.limit,
    }
    .parse()?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(Status::parse(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("status={text:?}: expected pending, delivered or parked"),
            )
        })?),
    };
    visible(&s, &caller, id).await?;
    let rows = store::deliveries(&s.store, id, status, after, limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|d| d.id))
        .flatten();
    let path = match status {
        Some(status) => format!("/api/webhooks/{id}/deliveries?status={}", status.as_str()),
        None => format!("/api/webhooks/{id}/deliveries"),
    };
    Ok(page_response(&rows, next, &path, limit))
}

/// `POST /api/webhooks/{id}/deliveries/{delivery}/redrive`: a parked delivery is queued
/// again with a fresh budget, ahead of the endpoint's later ones.
#[utoipa::path(post, operation_id = "webhooks_redrive", path = "/api/webhooks/{id}/deliveries/{delivery}/redrive", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint id"), ("delivery" = i64, Path, description = "The parked delivery's id")),
    responses(
        (status = 202, description = "Queued again with a fresh budget"),
        (status = 403, description = "Not a maintenance firm's staff", body = crate::error::ErrorBody),
        (status = 404, description = "No such endpoint of the caller's firms", body = crate::error::ErrorBody),
        (status = 409, description = "No parked delivery of that id", body = crate::error::ErrorBody),
    ))]
pub(super) async fn redrive(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    let user = caller.writer()?;
    visible(&s, &caller, id).await?;
    if !store::redrive(&s.store, id, delivery, s.clock.now_ms() as i64).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("endpoint {id} has no parked delivery {delivery}: only parked deliveries are redriven"),
        ));
    }
    s.webhooks.kick();
    tracing::info!(endpoint = id, delivery, by = %user.id, "webhook delivery redriven");
    Ok(StatusCode::ACCEPTED)
}
