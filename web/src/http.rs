//! The HTTP side: router, shared state, caller identity and error mapping. The
//! endpoints live in [`crate::api`] by concern; the pages in [`crate::dashboard`].
use crate::auth::Users;
use crate::error::Query;
use crate::openapi;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use gridwatch_cases::{Placement, User};
use gridwatch_domain::Alerting;
use gridwatch_protocol::clock::Clock;
use gridwatch_storage::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: PrometheusHandle,
    pub alerting: Alerting,
    pub clock: Arc<dyn Clock>,
    pub users: Arc<Users>,
    /// The write path's state, for `/healthz/ready`.
    pub health: crate::health::Health,
    /// The live feed's limits and subscriber slots (`GET /api/feed`).
    pub feed: crate::feed::Feed,
    /// Wakes the webhook deliveries after the API changed an endpoint or redrove one.
    pub webhooks: crate::webhooks::Webhooks,
}

/// Every route, each registered with its OpenAPI operation in one call (`routes!`), the
/// document served at `/api/openapi.json`, and JSON fallbacks for unknown paths and methods.
/// Adding a route: docs/api.md, "Adding a route".
pub fn router(state: AppState) -> Router {
    crate::error::describe();
    let (router, doc) = routes().split_for_parts();
    let doc = Arc::new(crate::openapi::complete(doc));
    router
        // HTML pages for browsers: outside the API's document.
        .merge(crate::dashboard::routes())
        .fallback(crate::error::not_found)
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .layer(axum::Extension(doc))
        .with_state(state)
        // The dashboard's sign-in sessions, for its pages and for `Caller` (a session
        // cookie identifies its user on GETs of the API, e.g. the live feed).
        .layer(axum::Extension(crate::dashboard::DashboardSessions::default()))
}

/// The routes of the whole HTTP side with their documentation.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(quarantine))
        .routes(routes!(metrics))
        .routes(routes!(openapi::serve))
        .merge(crate::health::routes())
        .merge(crate::api::routes())
}

pub(crate) use crate::error::ApiError;

/// Who is calling. With a users file every request needs `Authorization: Bearer TOKEN`,
/// or, for a GET, the dashboard's session cookie (the browser's EventSource sends no
/// header); without one ingest is open for reading and `user` is `None`.
pub(crate) struct Caller {
    pub user: Option<User>,
}

impl Caller {
    /// Whether the caller may see something placed at `place` (open mode sees everything).
    pub(crate) fn can_see(&self, place: Option<Placement<'_>>) -> bool {
        match (&self.user, place) {
            (None, _) => true,
            (Some(user), Some(place)) => user.can_see(place),
            // Devices outside the register belong to no grid: only the open mode shows them.
            (Some(_), None) => false,
        }
    }

    /// The user, for actions that change something; open mode may not write.
    pub(crate) fn writer(&self) -> Result<&User, ApiError> {
        self.user.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this action needs a user: start ingest with --users and send a bearer token",
            )
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.users.is_open() {
            return Ok(Caller { user: None });
        }
        let header = parts.headers.get(axum::http::header::AUTHORIZATION);
        // Only reads: a cookie rides along with any cross-site form, a bearer header never does.
        let reading = parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD;
        if header.is_none()
            && reading
            && let Some(signed) = crate::dashboard::signed_in(parts, state)
        {
            return Ok(Caller {
                user: Some(signed.user),
            });
        }
        let token = header
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing header Authorization: Bearer TOKEN"))?;
        let user = state.users.by_token(token).ok_or_else(|| {
            metrics::counter!("gridwatch_api_rejected_total", "reason" => "bad_token").increment(1);
            ApiError::new(StatusCode::UNAUTHORIZED, "unknown token")
        })?;
        Ok(Caller { user: Some(user) })
    }
}

/// Quarantine rows per page unless `limit` says otherwise, and the most it may say.
const QUARANTINE_PAGE: i64 = 100;
const QUARANTINE_PAGE_MAX: i64 = 500;
/// Bytes of each payload a page shows; `payload_bytes` gives the whole length.
const QUARANTINE_PAYLOAD_BYTES: i32 = 4096;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct QuarantinePage {
    /// The previous page's `x-next-cursor`: rows older than it.
    after: Option<String>,
    /// Rows per page: 1 to 500, default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// Refused input, newest first, in pages like the other lists (docs/api.md, "Lists").
#[utoipa::path(get, operation_id = "quarantine", path = "/api/quarantine", tag = "devices", params(QuarantinePage),
    responses(
        (status = 200, description = "Quarantined input, newest first", body = [gridwatch_storage::model::QuarantineRow],
            headers(("x-next-cursor" = String, description = "The cursor of the next page, when there is one"))),
        (status = 400, description = "A cursor or limit that does not parse", body = crate::error::ErrorBody),
        (status = 403, description = "Not a grid head", body = crate::error::ErrorBody),
    ))]
async fn quarantine(
    State(s): State<AppState>,
    caller: Caller,
    Query(page): Query<QuarantinePage>,
) -> Result<Response, ApiError> {
    // Quarantined input may come from anyone's devices: operators (open mode or grid heads) only.
    if let Some(user) = &caller.user
        && !user.has_role(gridwatch_cases::Role::GridHead)
    {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the quarantine is for grid heads"));
    }
    let bad = |what: String| ApiError::new(StatusCode::BAD_REQUEST, what);
    let after = match page.after.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            bad(format!(
                "after={text:?}: expected a cursor from a previous page's {} header",
                crate::api::NEXT_CURSOR
            ))
        })?),
    };
    let limit = match page.limit.as_deref() {
        None | Some("") => QUARANTINE_PAGE,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=QUARANTINE_PAGE_MAX).contains(l))
            .ok_or_else(|| bad(format!("limit={text:?}: expected 1 to {QUARANTINE_PAGE_MAX}")))?,
    };
    let items = s.store.quarantine(after, limit, QUARANTINE_PAYLOAD_BYTES).await?;
    // A full page may have more behind it; a short one is the last.
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|r| r.id))
        .flatten();
    Ok(crate::api::page_response(&items, next, "/api/quarantine", limit))
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Every metric with its HELP", content_type = "text/plain")))]
async fn metrics(State(s): State<AppState>) -> String {
    s.metrics.render()
}
