//! The HTTP side of gridwatch: the API ([`api`] by concern), users and tokens
//! ([`auth`]), the dashboard page, and the Prometheus endpoint. It reads through
//! `gridwatch-storage` and changes the domain through `gridwatch-domain`; it knows
//! nothing of MQTT or of how readings arrive.
mod api;
pub mod auth;
mod dashboard;
mod http;
pub mod metrics;

pub use auth::Users;
pub use http::{AppState, router};
