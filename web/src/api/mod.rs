//! The JSON API by concern: alerts, cases, statistics, equipment.
mod alerts;
mod cases;
mod equipment;
mod stats;

use crate::http::AppState;
use axum::Router;
use axum::routing::{get, post};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/alerts", get(alerts::list))
        .route("/api/alerts/ack", post(alerts::acknowledge))
        .route("/api/cases", get(cases::list).post(cases::report))
        .route("/api/cases/{id}", get(cases::show))
        .route("/api/cases/{id}/steps", post(cases::step))
        .route("/api/stats/{name}", get(stats::show))
        .route("/api/equipment", get(equipment::list))
        .route("/api/equipment/import", post(equipment::import))
        .route("/api/equipment/{id}/inspections", post(equipment::inspection))
        .route("/api/equipment/{id}/maintenance", post(equipment::maintenance))
}
