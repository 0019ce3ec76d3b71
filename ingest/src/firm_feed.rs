//! The firms' feed over MQTT: every feed row with a firm wall is published on
//! `feed/firm/{firm}` of ingest's embedded broker, its payload the JSON that
//! `GET /api/feed` and webhooks send. Only a firm identity of that firm may subscribe
//! (`gridwatch_broker` ACL). Live only and at most once: rumqttd 0.20's local links
//! publish at QoS 0 only, and rows written while ingest was down, or while a
//! subscriber was away, are not published again; the live feed and webhooks resume.
use gridwatch_broker::{LinkReceiver, LinkSender};
use gridwatch_storage::Store;
use gridwatch_storage::feed::{self, Walls};
use std::time::Duration;
use tokio::sync::watch;

/// Rows read a time.
const PAGE_ROWS: i64 = 500;
/// Also read the table this often: rows other processes wrote wake nobody.
const POLL_EVERY: Duration = Duration::from_secs(5);

/// The topic of `firm`'s feed, or `None` when the firm is no topic segment.
pub(crate) fn topic(firm: &str) -> Option<String> {
    let segment = !firm.is_empty() && !firm.contains(['/', '+', '#', '\0']);
    segment.then(|| format!("feed/firm/{firm}"))
}

/// Publishes every row committed from now on, woken by `wake` (`Alerting::feed`).
pub(crate) async fn run(store: Store, mut wake: watch::Receiver<i64>, mut link: LinkSender, mut rx: LinkReceiver) {
    metrics::describe_counter!(
        "gridwatch_feed_mqtt_published_total",
        "Feed events published on feed/firm/{firm} of ingest's embedded broker"
    );
    let mut after = match feed::last_id(&store).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "firm feed over MQTT: reading the feed failed; not published");
            return;
        }
    };
    let mut poll = tokio::time::interval(POLL_EVERY);
    loop {
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { return },
            _ = poll.tick() => {}
            // The link subscribes to nothing; reading it notices a broker that is gone.
            delivered = rx.next() => if delivered.is_none() { return },
        }
        let upto = match feed::last_id(&store).await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "firm feed over MQTT: reading the feed failed; trying at the next wake-up");
                continue;
            }
        };
        while after < upto {
            let rows = match feed::page(&store, &Walls::All, after, upto, PAGE_ROWS).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "firm feed over MQTT: reading the feed failed; trying at the next wake-up");
                    break;
                }
            };
            let full = rows.len() as i64 >= PAGE_ROWS;
            for row in &rows {
                after = row.id;
                let Some(topic) = row.firm.as_deref().and_then(topic) else {
                    continue;
                };
                match link.publish(topic, row.data()) {
                    Ok(()) => metrics::counter!("gridwatch_feed_mqtt_published_total").increment(1),
                    Err(e) => tracing::warn!(error = %e, id = row.id, "firm feed over MQTT: not published"),
                }
            }
            if !full {
                after = upto;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firm_is_one_topic_segment() {
        assert_eq!(topic("MF04").as_deref(), Some("feed/firm/MF04"));
        assert_eq!(topic(""), None);
        assert_eq!(topic("MF/04"), None);
        assert_eq!(topic("MF+"), None);
    }
}
