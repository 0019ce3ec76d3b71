//! The write path: broker → [`intake`](crate::intake) → bounded queue → batch
//! writer → one transaction → acknowledgements → alert engine.
//!
//! Acks are published only after the commit returns (invariant 1). The queue is
//! bounded, so a slow database stops the reader instead of growing memory; a
//! failed commit is retried with back-off and never dropped.
use crate::alerting::Alerting;
use crate::intake::{Incoming, Source};
use crate::model::{Accepted, Refused};
use crate::store::Store;
use gridwatch_protocol::batch::BatchAck;
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{DeviceId, Kind, NodeAck, SCHEMA_VERSION, Topic};
use rumqttd::Notification;
use rumqttd::local::{LinkRx, LinkTx};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Commit once this many readings are gathered...
    pub batch_max: usize,
    /// ...or this long after the first one arrived.
    pub linger: Duration,
    /// Messages queued between the broker and the writer (the back-pressure bound).
    pub queue: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_max: 2000,
            linger: Duration::from_millis(20),
            queue: 256,
        }
    }
}

/// Reads the broker's local link and queues what must be stored.
pub async fn read_broker(mut link: LinkRx, queue: mpsc::Sender<Incoming>) {
    while let Ok(notification) = link.next().await {
        let Some(Notification::Forward(forward)) = notification else {
            continue;
        };
        let topic = String::from_utf8_lossy(&forward.publish.topic);
        if let Some(incoming) = crate::intake::classify(&topic, &forward.publish.payload)
            && queue.send(incoming).await.is_err()
        {
            return;
        }
    }
}

/// Gathers queued messages into transactions, then acknowledges and alerts.
pub async fn write(
    config: PipelineConfig,
    store: Store,
    mut link: LinkTx,
    mut queue: mpsc::Receiver<Incoming>,
    mut alerting: Alerting,
) {
    while let Some(first) = queue.recv().await {
        let deadline = Instant::now() + config.linger;
        let mut group = vec![first];
        let mut size = group[0].len();
        while size < config.batch_max {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(next)) => {
                    size += next.len();
                    group.push(next);
                }
                _ => break,
            }
        }
        let (accepted, refused, sources) = flatten(group);
        let new = commit_with_retry(&store, &accepted, &refused).await;
        metrics::counter!("gridwatch_ingest_readings_stored_total").increment(new.len() as u64);
        metrics::counter!("gridwatch_ingest_readings_duplicate_total").increment((accepted.len() - new.len()) as u64);
        acknowledge(&mut link, sources, &accepted);
        alerting.on_committed(&store, &accepted, new).await;
    }
}

type Sources = Vec<(Source, u32, u32)>;

fn flatten(group: Vec<Incoming>) -> (Vec<Accepted>, Vec<Refused>, Sources) {
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let mut sources = Vec::new();
    for incoming in group {
        sources.push((
            incoming.source,
            incoming.accepted.len() as u32,
            incoming.refused.len() as u32,
        ));
        accepted.extend(incoming.accepted);
        refused.extend(incoming.refused);
    }
    (accepted, refused, sources)
}

/// Runs `op` until it succeeds, backing off between failures: data in hand is never dropped.
pub(crate) async fn retry<T, F, Fut>(what: &'static str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) => {
                metrics::counter!("gridwatch_ingest_store_failures_total", "op" => what).increment(1);
                tracing::error!(error = %e, op = what, retry_in = ?backoff, "store operation failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn commit_with_retry(store: &Store, accepted: &[Accepted], refused: &[Refused]) -> Vec<usize> {
    let started = std::time::Instant::now();
    let committed = retry("commit", || store.commit(accepted, refused)).await;
    metrics::histogram!("gridwatch_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
    committed.new
}

/// Publishes acks for everything just committed (stored or quarantined).
fn acknowledge(link: &mut LinkTx, sources: Sources, accepted: &[Accepted]) {
    let mut node_tops: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut offset = 0;
    for (source, n_accepted, n_refused) in sources {
        let mine = &accepted[offset..offset + n_accepted as usize];
        offset += n_accepted as usize;
        match source {
            Source::Batch { gateway, batch } => {
                let ack = BatchAck {
                    v: SCHEMA_VERSION,
                    gateway: gateway.clone(),
                    batch,
                    stored: n_accepted,
                    rejected: n_refused,
                };
                let _ = link.publish(
                    Topic::BatchAck { gateway: &gateway }.write().to_string(),
                    json::encode(&ack),
                );
            }
            Source::Node { gateway, device } => {
                if let Some(top) = mine.iter().map(|a| a.reading.seq()).max() {
                    let entry = node_tops.entry((gateway, device)).or_default();
                    *entry = (*entry).max(top);
                }
            }
            Source::None => {}
        }
    }
    for ((gateway, device), seq) in node_tops {
        let Ok(id) = DeviceId::try_from(device.as_str()) else {
            continue;
        };
        let topic = Topic::Node {
            gateway: &gateway,
            device: &device,
            kind: Kind::Ack,
        }
        .write();
        let _ = link.publish(
            topic.to_string(),
            json::encode(&NodeAck {
                v: SCHEMA_VERSION,
                device: id,
                seq,
            }),
        );
    }
}
