//! Gateway presence (`gw/{gw}/presence`: birth, heartbeat, last will) into the alert
//! engine, stamped with ingest's clock when it is taken in. Nothing of it is stored:
//! the engine keeps the latest state per gateway and judges heartbeat silence on its
//! ticks (`[alerts.offline] gateway_presence_after_s`).
use crate::intake::PresenceReport;
use gridwatch_domain::Alerting;
use gridwatch_protocol::clock::Clock;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Presence messages waiting for the domain's lock. Each gateway sends one every
/// heartbeat, so a full channel means the domain is stuck; the decoder then waits.
pub(crate) const PRESENCE_BACKLOG: usize = 1024;

pub(crate) async fn feed(mut reports: mpsc::Receiver<PresenceReport>, alerting: Alerting, clock: Arc<dyn Clock>) {
    metrics::describe_counter!(
        "gridwatch_ingest_gateway_presence_total",
        "Gateway presence messages taken in, by online (true: birth or heartbeat, false: last will)"
    );
    while let Some(report) = reports.recv().await {
        metrics::counter!("gridwatch_ingest_gateway_presence_total", "online" => report.online.to_string())
            .increment(1);
        let changed = alerting
            .domain
            .lock()
            .await
            .gateway_presence(&report.gateway, report.online, clock.now_ms());
        if changed {
            tracing::info!(gateway = %report.gateway, online = report.online, "gateway presence");
        } else {
            tracing::debug!(gateway = %report.gateway, online = report.online, "gateway heartbeat");
        }
    }
}
