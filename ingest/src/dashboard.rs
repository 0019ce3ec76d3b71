//! The dashboard page at `/`: devices and open alerts, rendered on the server.
use crate::http::{ApiError, AppState, html, page_data};
use axum::extract::State;
use axum::response::Html;
use std::fmt::Write;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub async fn page(State(s): State<AppState>) -> Result<Html<String>, ApiError> {
    let (devices, alerts) = page_data(&s).await?;
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>gridwatch</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.3em .6em}.critical{background:#fdd}</style></head><body><h1>gridwatch</h1>",
    );
    let _ = write!(
        out,
        "<h2>Open alerts ({})</h2><table id=\"alerts\"><tr><th>raised</th><th>kind</th><th>device</th><th>severity</th><th>detail</th></tr>",
        alerts.len()
    );
    for a in &alerts {
        let _ = write!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.severity),
            escape(&a.raised_at),
            escape(&a.kind),
            escape(&a.device_id),
            escape(&a.severity),
            escape(&a.detail)
        );
    }
    let _ = write!(
        out,
        "</table><h2>Devices ({})</h2><table id=\"devices\"><tr><th>device</th><th>kind</th><th>gateway</th><th>last seen</th><th>state</th></tr>",
        devices.len()
    );
    for d in &devices {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&d.device_id),
            escape(&d.kind),
            escape(&d.gateway),
            escape(&d.last_seen),
            escape(&d.last_state.to_string())
        );
    }
    out.push_str("</table></body></html>");
    Ok(html(out))
}
