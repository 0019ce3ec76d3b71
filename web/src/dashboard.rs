//! The dashboard page at `/`: open alerts, open cases and devices, rendered on the
//! server and refreshed every 5 s. Shows what the caller may see. The page runs no
//! script and has no inline style: its style sheet is served at [`STYLE_PATH`], so its
//! Content-Security-Policy ([`CSP`]) allows nothing else.
use crate::http::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use gridwatch_storage::query;
use std::fmt::Write;

/// Where the page's style sheet is served.
pub(crate) const STYLE_PATH: &str = "/dashboard.css";

/// The page may load its own style sheet and nothing else, and may not be framed.
pub(crate) const CSP: &str =
    "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const STYLE: &str = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.3em .6em;font-size:90%}\n";

pub(crate) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(out: &mut String, id: &str, title: &str, headers: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<h2>{title} ({})</h2><table id=\"{id}\"><tr>", rows.len());
    for h in headers {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// Open alerts the page shows, oldest first (the API pages through all of them).
const DASHBOARD_ALERTS: i64 = 200;

pub(crate) async fn page(State(s): State<AppState>, caller: Caller) -> Result<Html<String>, ApiError> {
    // The walls go into the query, before its limit: strangers' alerts cannot crowd out
    // the caller's own.
    let visible: Option<Vec<String>> = match &caller.user {
        None => None,
        Some(user) => {
            let domain = s.alerting.domain.lock().await;
            Some(domain.registry().visible_devices(user).map(|d| d.id.clone()).collect())
        }
    };
    let walled = visible.as_deref().map_or(query::Devices::All, query::Devices::Only);
    let alerts = query::alerts_page(&s.store, true, walled, 0, DASHBOARD_ALERTS)
        .await?
        .items;
    let devices = s.store.devices().await?;
    let domain = s.alerting.domain.lock().await;
    let registry = domain.registry();
    let place = |id: &str| registry.device(id).map(|d| registry.placement(d));
    let alert_rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            vec![
                a.raised_at.clone(),
                a.kind.clone(),
                a.device_id.clone(),
                a.severity.clone(),
                a.state.clone(),
                a.details.to_string(),
            ]
        })
        .collect();
    let case_rows: Vec<Vec<String>> = domain
        .book()
        .cases()
        .filter(|c| c.is_open() && caller.can_see(Some(c.placement())))
        .map(|c| {
            let subject = serde_json::to_value(&c.subject).unwrap_or_default();
            vec![
                c.id.to_string(),
                format!("{:?}", c.case_type),
                c.grid.to_string(),
                format!("{:?}", c.priority),
                format!("{:?}", c.status()),
                subject["id"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    let device_rows: Vec<Vec<String>> = devices
        .iter()
        .filter(|d| caller.can_see(place(&d.device_id)))
        .map(|d| {
            vec![
                d.device_id.clone(),
                d.kind.clone(),
                d.gateway.clone(),
                d.last_seen.clone(),
                d.last_state.to_string(),
            ]
        })
        .collect();

    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>gridwatch</title><link rel=\"stylesheet\" href=\"/dashboard.css\"></head><body><h1>gridwatch</h1>",
    );
    table(
        &mut out,
        "alerts",
        "Open alerts",
        &["raised", "kind", "device", "severity", "state", "details"],
        &alert_rows,
    );
    table(
        &mut out,
        "cases",
        "Open cases",
        &["case", "type", "grid", "priority", "status", "device"],
        &case_rows,
    );
    table(
        &mut out,
        "devices",
        "Devices",
        &["device", "kind", "gateway", "last seen", "state"],
        &device_rows,
    );
    out.push_str("</body></html>");
    Ok(Html(out))
}
