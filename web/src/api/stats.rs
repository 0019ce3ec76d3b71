//! `GET /api/stats/{name}[?format=csv]`: the statistics the grid offices ask for,
//! over the cases and devices the caller may see.
use crate::error::{Json, Path, Query};
use crate::http::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gridwatch_cases::{Case, stats};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Format {
    /// `json` (default) or `csv`.
    format: Option<String>,
}

const NAMES: &str = "cases, overdue, timings, devices-due, ranking";

#[utoipa::path(get, path = "/api/stats/{name}", tag = "statistics", params(
        ("name" = String, Path, description = "`cases`, `overdue`, `timings`, `devices-due` or `ranking`"),
        Format,
    ),
    responses(
        (status = 200, description = "The statistics' rows over what the caller sees, as JSON or CSV", content(([Object] = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A format other than json or csv", body = crate::error::ErrorBody),
        (status = 404, description = "No statistics of that name", body = crate::error::ErrorBody),
    ))]
pub(super) async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<Format>,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("format={other:?}: expected json or csv"),
            ));
        }
    };
    let now = s.clock.now_ms();
    let domain = s.alerting.domain.lock().await;
    let deadlines = &domain.config().cases.deadlines;
    let cases: Vec<&Case> = domain
        .book()
        .cases()
        .filter(|c| caller.can_see(Some(c.placement())))
        .collect();
    match name.as_str() {
        "cases" => render(&stats::count_cases(cases), csv),
        "overdue" => render(&stats::overdue_cases(cases, deadlines, now), csv),
        "timings" => render(&stats::timings_by_grid(cases), csv),
        "ranking" => render(&stats::rank_grids(cases, deadlines, now), csv),
        "devices-due" => {
            let registry = domain.registry();
            let today = gridwatch_alerts::china::date_of(now);
            let rows = stats::devices_due_by_grid(registry, today, &domain.config().alerts.due);
            let visible: Vec<_> = match &caller.user {
                None => rows,
                Some(user) => rows
                    .into_iter()
                    .filter(|r| user.visible_scopes().iter().any(|scope| scope.contains(r.grid)))
                    .collect(),
            };
            render(&visible, csv)
        }
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no statistics {other:?}; there are: {NAMES}"),
        )),
    }
}

fn render<T: Serialize>(rows: &[T], csv: bool) -> Result<Response, ApiError> {
    if !csv {
        return Ok(Json(crate::times::json(&rows)).into_response());
    }
    let text = stats::to_csv(rows).map_err(|e| {
        tracing::error!(error = %e, "statistics as CSV");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "statistics could not be written as CSV",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response())
}
