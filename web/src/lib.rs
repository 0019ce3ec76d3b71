//! The HTTP side of gridwatch: the API ([`api`] by concern), users and tokens
//! ([`auth`], the file in [`users_file`]), the live feed (`feed`, Server-Sent Events), the
//! dashboard page, the Prometheus endpoint, and the webhook deliveries ([`webhooks`]). It reads through
//! `gridwatch-storage` and changes the domain through `gridwatch-domain`; it knows
//! nothing of MQTT or of how readings arrive.
mod api;
pub mod auth;
mod dashboard;
mod error;
mod feed;
pub mod health;
mod http;
mod limits;
pub mod metrics;
mod openapi;
mod times;
pub mod users_file;
pub mod webhooks;

pub use auth::Users;
pub use feed::{Feed, FeedConfig};
pub use http::{AppState, router};
pub use limits::{HttpLimits, RateLimit, app, serve};
pub use users_file::{UsersFile, UsersFileError};
