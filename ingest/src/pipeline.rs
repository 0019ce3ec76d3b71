//! The write path: broker → [`intake`](crate::intake) → bounded queue → batcher →
//! commits (one transaction per batch) → acknowledgements → alert engine.
//!
//! - Acks are published only after the commit returns (invariant 1), and in the
//!   order the batches were formed, even when several batches commit at once: a
//!   sender never hears "committed" for a reading while an earlier one of its
//!   readings may still be lost. A node is acked at most once per interval
//!   ([`crate::ack_pacing`]); acks are cumulative, so that loses nothing.
//! - The queue is bounded, so a slow database stops the readers instead of
//!   growing memory: at most `queue` messages wait, plus `commits_in_flight +
//!   BATCHES_WAITING + 1` batches of `batch_max` readings (committing, formed
//!   and waiting, forming).
//! - A failed commit is retried with back-off, each try on a fresh transaction,
//!   as its error's class says (`gridwatch_storage::ErrorClass`): a full disk, a
//!   lost connection or a lock until it passes; a batch the database refuses for
//!   its data goes to the quarantine whole; after an error of no known class
//!   ([`gridwatch_storage::OTHER_TRIES`] tries) the write path stops, acking
//!   nothing more, and reports so ([`Health`]). Never is a batch dropped and a later
//!   one acknowledged: node acks are cumulative.
//! - Every commit's outcome, the broker's state and the backlog are reported to
//!   [`Health`], which `/healthz/ready` reads.
use crate::ack_pacing::AckPacer;
use crate::device_clock::ClockCheck;
use crate::intake::{Incoming, Source};
use foldhash::HashMap;
use gridwatch_broker::{Delivered, LinkReceiver, LinkSender};
use gridwatch_domain::Alerting;
use gridwatch_protocol::batch::BatchAck;
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{DeviceId, NodeAck, SCHEMA_VERSION, Topic};
use gridwatch_storage::model::{Accepted, Refused};
use gridwatch_storage::{Committed, ErrorClass, Store, retry, retry_classified};
use gridwatch_web::health::Health;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Commit once this many readings (and refusals) are gathered...
    pub batch_max: usize,
    /// ...or this long after the first one arrived.
    pub linger: Duration,
    /// Messages queued between the broker and the batcher (the back-pressure bound).
    pub queue: usize,
    /// Batches committing at once (on SQLite 1, see [`Store::max_concurrent_commits`]).
    pub commits_in_flight: usize,
    /// A node is acked at most once per this interval (zero: after every commit
    /// of its readings); see [`crate::ack_pacing`].
    pub node_ack_interval: Duration,
    /// Readings stamped further ahead of this clock than its skew are quarantined
    /// (`clock_ahead`, see [`crate::device_clock`]); ingest sets its own clock here.
    pub device_clock: ClockCheck,
}

impl PipelineConfig {
    /// The defaults for the database at `url`. SQLite has one writer, and every
    /// commit writes each index page it touched to the WAL: with readings arriving
    /// round-robin from many devices that is a page per reading, unless a batch
    /// holds several readings of each device. So SQLite batches may be larger
    /// (direct benchmark: 50k msg/s at 5,000, 82-90k at 20,000). They grow while
    /// the writer is busy (see [`gather`]), so the linger is PostgreSQL's: it only
    /// bounds the wait when the writer is idle.
    pub fn for_database(url: &str) -> Self {
        if gridwatch_storage::is_sqlite(url) {
            Self {
                batch_max: 20_000,
                ..Self::default()
            }
        } else {
            Self::default()
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_max: 5000,
            linger: Duration::from_millis(20),
            // Messages, and a gateway's may hold 500 readings: small, the batcher
            // drains it as fast as it fills.
            queue: 64,
            commits_in_flight: 4,
            // Far below any sender's resend timeout (a node's is 30 s). Longer
            // saves acks, each of which costs the broker and ingest about what a
            // reading does (direct benchmark, 10,000 nodes: 12 s of ingest CPU per
            // million readings at 150 ms, 8 s at 250 ms), but a fast sender needs
            // a larger buffer. 250 ms capped the direct benchmark's 36,000 readings
            // in flight at ~130k/s with the cores 84 % busy; 200 ms: 139-147k/s.
            node_ack_interval: Duration::from_millis(200),
            device_clock: ClockCheck::system(),
        }
    }
}

/// The embedded broker's in-memory log per subscription filter (rumqttd keeps
/// `segment_count` segments, the one being written included, and drops the
/// oldest when a new one starts: what a subscriber had not read of it is gone). It bounds the broker's memory, and how far ingest may fall behind
/// the publishers before the broker drops messages it has not forwarded yet
/// (those are unacknowledged, so their senders still hold and resend them).
///
/// Every subscription to an ack topic has a log of its own (one per distinct
/// filter), which fills up to its limit and stays there, so those are kept small:
/// enough for the acks of a few batches (a gateway's, or a load connection's
/// many devices), at most `3 × ack_log_bytes` counted (about 5× that in memory).
/// An ack a slow subscriber misses is harmless (acks are cumulative per node; a
/// gateway resends an unacknowledged batch, and duplicates change nothing), but
/// delays the sender's release of its readings.
#[derive(Debug, Clone)]
pub struct BrokerLog {
    pub segment_size: usize,
    pub segment_count: usize,
    /// Log per ack subscription (`gw/+/ack`, `gw/+/ack/+`), bytes.
    pub ack_log_bytes: usize,
}

impl Default for BrokerLog {
    fn default() -> Self {
        Self {
            // 8 MiB counted: about 30,000 node messages ingest may fall behind by
            // (a fraction of a second at full load) within the memory target.
            segment_size: 2 * 1024 * 1024,
            segment_count: 4,
            ack_log_bytes: 64 * 1024,
        }
    }
}

impl BrokerLog {
    /// The broker's log limits for ack subscriptions.
    pub fn ack_filter_logs(&self) -> Vec<gridwatch_broker::FilterLog> {
        ["gw/+/ack", "gw/+/ack/+"]
            .into_iter()
            .map(|pattern| gridwatch_broker::FilterLog {
                pattern: pattern.to_string(),
                segment_size: self.ack_log_bytes,
                // Two full segments besides the one being written: a subscriber
                // just behind a segment change loses nothing.
                segment_count: 3,
            })
            .collect()
    }
}

/// One message taken in, and the broker to acknowledge it on.
#[derive(Debug)]
pub struct Delivery {
    pub incoming: Incoming,
    pub via: Via,
    /// The highest seq its node may be acknowledged up to, when limited (see [`crate::node_acks`]).
    pub ack_ceiling: Option<AckCeiling>,
}

/// How far a node may be acknowledged for now, and why no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckCeiling {
    /// 0: no ack at all for now.
    pub seq: u64,
    /// The `reason` label of `gridwatch_ingest_node_acks_held_total`.
    pub reason: &'static str,
}

/// Which broker a message came through.
#[derive(Debug, Clone)]
pub enum Via {
    /// The embedded broker, through its local link.
    Embedded,
    /// An external broker; the publish (header only) to MQTT-ack after the commit.
    /// Boxed: every reading of a batch keeps its `Via` until the acks, and most
    /// come through the embedded broker.
    External(Box<rumqttc::Publish>),
}

/// Where acknowledgements go: application acks on the broker each message came
/// through, and MQTT acks for messages from an external broker.
#[derive(Default)]
pub struct Acks {
    pub embedded: Option<LinkSender>,
    pub external: Option<rumqttc::AsyncClient>,
}

/// Formed batches that may wait for a commit slot. Only full ones wait: a batch
/// closes before `batch_max` only when a commit can start on it (see
/// [`gather`]). What ingest does not hold waits unread in the embedded broker's
/// log, which drops it when full: ingest should hold what its senders may have
/// in flight. (Their windows bound the memory, not this.)
pub const BATCHES_WAITING: usize = 4;

/// Starts the batcher and the committer; returns the queue to feed.
pub fn spawn(
    tasks: &mut tokio::task::JoinSet<()>,
    config: PipelineConfig,
    store: Store,
    acks: Acks,
    alerting: Alerting,
) -> mpsc::Sender<Delivery> {
    spawn_reporting(tasks, config, store, acks, alerting, Health::default())
}

/// [`spawn`], reporting every commit's outcome to `health`.
pub fn spawn_reporting(
    tasks: &mut tokio::task::JoinSet<()>,
    config: PipelineConfig,
    store: Store,
    acks: Acks,
    alerting: Alerting,
    health: Health,
) -> mpsc::Sender<Delivery> {
    describe();
    let (queue_tx, queue_rx) = mpsc::channel(config.queue.max(1));
    // Formed batches wait while others commit, and the batcher keeps gathering.
    let (batch_tx, batch_rx) = mpsc::channel(BATCHES_WAITING);
    let slots = Arc::new(CommitSlots::new(
        config.commits_in_flight.clamp(1, store.max_concurrent_commits()),
    ));
    tasks.spawn(gather(config.clone(), queue_rx, batch_tx, slots.clone()));
    tasks.spawn(commit_in_order(
        store,
        batch_rx,
        acks,
        alerting,
        config.node_ack_interval,
        slots,
        health,
    ));
    queue_tx
}

/// Messages waiting between the broker and the batcher above which ingest is
/// not ready (`/healthz/ready`): the reader stops at [`UNDECODED_BACKLOG`], and
/// from there the broker's log fills.
pub const READY_BACKLOG: u64 = UNDECODED_BACKLOG as u64;

/// The HELP texts of the pipeline's metrics, once per process.
fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(
            "gridwatch_ingest_broker_dropped_total",
            "Messages the embedded broker dropped from a subscription's log before ingest read them"
        );
        metrics::describe_counter!(
            "gridwatch_ingest_node_acks_held_total",
            "Node acks held back after a broker drop (an ack not sent, or sent below the committed seq), by reason"
        );
        metrics::describe_counter!(
            "gridwatch_ingest_batches_quarantined_total",
            "Batches the database refused for their data as a whole, kept in the quarantine instead"
        );
        metrics::describe_counter!(
            "gridwatch_ingest_write_path_stopped_total",
            "Times the write path stopped on a storage error retrying cannot fix"
        );
    });
}

/// Commits running, as the committer counts them and the batcher reads them.
struct CommitSlots {
    limit: usize,
    busy: std::sync::atomic::AtomicUsize,
    /// Told whenever `busy` changes.
    changed: tokio::sync::Notify,
}

impl CommitSlots {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            busy: 0.into(),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn set_busy(&self, busy: usize) {
        self.busy.store(busy, std::sync::atomic::Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Whether a batch closed now would start committing at once.
    fn would_start(&self, batches: &mpsc::Sender<Batch>) -> bool {
        self.busy.load(std::sync::atomic::Ordering::Acquire) < self.limit
            && batches.capacity() == batches.max_capacity()
    }
}

/// Messages read off the embedded broker's link and not decoded yet, at most...
/// The broker drops what ingest has not read once its log is full, and it fills
/// fastest in bursts (senders released by acks, reconnecting nodes replaying),
/// when decoding one message at a time fell behind even with the pipeline idle.
/// Reading only moves each message here; decoding runs on another worker.
pub const UNDECODED_BACKLOG: usize = 32_768;
/// ...and bytes of topic and payload (a gateway's message may hold 500
/// readings): beyond them the reader stops, and the broker's log takes the rest.
pub const UNDECODED_BYTES: usize = 8 * 1024 * 1024;

/// A message read off the link, holding its share of [`UNDECODED_BYTES`] until decoded.
pub struct Undecoded {
    delivered: Delivered,
    _bytes: OwnedSemaphorePermit,
}

/// The byte bound of the undecoded messages.
#[derive(Clone)]
pub struct ByteBudget {
    free: Arc<Semaphore>,
    size: u32,
}

impl ByteBudget {
    pub fn new(bytes: usize) -> Self {
        let size = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        Self {
            free: Arc::new(Semaphore::new(size as usize)),
            size,
        }
    }

    /// Waits until `bytes` are free (a message larger than the whole budget waits
    /// for all of it) and holds them until the permit is dropped.
    async fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.size);
        self.free.clone().acquire_many_owned(bytes).await.ok()
    }
}

/// Reads the embedded broker's local link as fast as it forwards, into `undecoded`,
/// within `budget`; `health` hears when the link closes.
pub async fn read_broker(
    mut link: LinkReceiver,
    undecoded: mpsc::Sender<Undecoded>,
    budget: ByteBudget,
    health: Health,
) {
    health.set_broker_up(true);
    // Down when this returns: the link closed or ingest is stopping.
    let _down = BrokerDown(health);
    while let Some(delivered) = link.next().await {
        let size = delivered.topic.len() + delivered.payload.len();
        let Some(bytes) = budget.reserve(size).await else {
            return;
        };
        if undecoded
            .send(Undecoded {
                delivered,
                _bytes: bytes,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

struct BrokerDown(Health);

impl Drop for BrokerDown {
    fn drop(&mut self) {
        self.0.set_broker_up(false);
    }
}

/// Decodes what [`read_broker`] read, in the broker's order, and queues what must
/// be stored, gateway presence to `presence`; reports broker drops and the backlog
/// to `health`.
pub async fn decode_broker(
    mut undecoded: mpsc::Receiver<Undecoded>,
    queue: mpsc::Sender<Delivery>,
    presence: mpsc::Sender<crate::intake::PresenceReport>,
    health: Health,
) {
    // Offset of the last message read from each subscription's log: the next one
    // of that log must follow it. Each filter has a log of its own, with offsets
    // of its own: only offsets of one log compare.
    let mut last_offsets: HashMap<Option<usize>, u64> = HashMap::default();
    let mut node_acks = crate::node_acks::NodeAcks::default();
    while let Some(Undecoded { delivered, _bytes }) = undecoded.recv().await {
        let waiting = undecoded.len() + (queue.max_capacity() - queue.capacity());
        health.set_backlog(waiting as u64);
        let mut dropped = 0;
        if let Some(offset) = delivered.offset {
            let last = last_offsets.insert(delivered.subscription, offset);
            dropped = note_broker_drops(last, offset, undecoded.len(), queue.capacity());
            if dropped > 0 {
                health.broker_dropped(dropped);
            }
        }
        let topic = String::from_utf8_lossy(&delivered.topic);
        let incoming = match crate::intake::classify_message(&topic, &delivered.payload) {
            crate::intake::Message::Store(incoming) => incoming,
            crate::intake::Message::Presence(report) => {
                let _ = presence.send(report).await;
                continue;
            }
            crate::intake::Message::Ignored => continue,
        };
        // Each topic matches one subscription: a gap in a log of node messages
        // may have taken direct nodes' readings; one in the batches' log did not
        // (a gateway resends an unacknowledged batch).
        if dropped > 0 && matches!(incoming.source, Source::Node) {
            node_acks.broker_dropped();
        }
        let ack_ceiling = match (&incoming.source, incoming.accepted.first()) {
            (Source::Node, Some(a)) => node_acks.arrived(&a.gateway, a.reading.device(), a.reading.seq()),
            _ => None,
        };
        let delivery = Delivery {
            incoming,
            via: Via::Embedded,
            ack_ceiling,
        };
        if queue.send(delivery).await.is_err() {
            return;
        }
    }
}

/// The broker drops the oldest part of its log when ingest falls that far behind
/// (rumqttd cannot push back on publishers). Dropped messages were never
/// acknowledged by ingest, but they are gone from here: count them, loudly.
/// `undecoded` and `queue_free` tell where ingest was behind: reading, decoding
/// (`undecoded` high) or storing (no `queue_free`).
/// Returns how many were dropped between `last` and `offset` (of one log).
fn note_broker_drops(last: Option<u64>, offset: u64, undecoded: usize, queue_free: usize) -> u64 {
    let Some(last) = last else { return 0 };
    if offset > last + 1 {
        let dropped = offset - last - 1;
        metrics::counter!("gridwatch_ingest_broker_dropped_total").increment(dropped);
        tracing::error!(
            dropped,
            undecoded,
            queue_free,
            "the embedded broker dropped messages before ingest read them (ingest fell behind by more \
             than its log holds); their senders still hold them unacknowledged"
        );
        return dropped;
    }
    0
}

/// Readings of one batch, flattened for the store, and where each delivery's part is.
#[derive(Default)]
struct Batch {
    accepted: Vec<Accepted>,
    refused: Vec<Refused>,
    origins: Vec<Origin>,
}

struct Origin {
    source: Source,
    via: Via,
    ack_ceiling: Option<AckCeiling>,
    accepted: usize,
    refused: usize,
    /// A direct node's reading quarantined as `clock_ahead`: (gateway, device, seq), acked
    /// as if stored.
    clock_ahead: Option<(String, String, u64)>,
}

impl Batch {
    /// Adds `delivery`, its readings stamped too far ahead of `clock` turned into refusals.
    fn add(&mut self, delivery: Delivery, clock: &ClockCheck) {
        let Delivery {
            mut incoming,
            via,
            ack_ceiling,
        } = delivery;
        let clock_ahead = clock.quarantine_ahead(&mut incoming);
        self.origins.push(Origin {
            source: incoming.source,
            via,
            ack_ceiling,
            accepted: incoming.accepted.len(),
            refused: incoming.refused.len(),
            clock_ahead,
        });
        self.accepted.extend(incoming.accepted);
        self.refused.extend(incoming.refused);
    }

    fn len(&self) -> usize {
        self.accepted.len() + self.refused.len()
    }
}

/// Forms batches: up to `batch_max` readings, or what arrived within `linger` of
/// the first, and more while no commit could start on it: a batch closed then
/// would only wait, and a larger one costs the database less per reading (on
/// SQLite, several readings of a device per commit).
async fn gather(
    config: PipelineConfig,
    mut queue: mpsc::Receiver<Delivery>,
    batches: mpsc::Sender<Batch>,
    slots: Arc<CommitSlots>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = Batch::default();
        batch.add(first, &config.device_clock);
        let linger = tokio::time::sleep_until(Instant::now() + config.linger);
        tokio::pin!(linger);
        while batch.len() < config.batch_max {
            // What is queued already costs no timer.
            if let Ok(next) = queue.try_recv() {
                batch.add(next, &config.device_clock);
                continue;
            }
            tokio::select! {
                biased;
                next = queue.recv() => match next {
                    Some(next) => batch.add(next, &config.device_clock),
                    None => break,
                },
                () = &mut linger => break,
            }
        }
        while batch.len() < config.batch_max {
            let changed = slots.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if slots.would_start(&batches) {
                break;
            }
            tokio::select! {
                biased;
                () = &mut changed => {}
                next = queue.recv() => match next {
                    Some(next) => batch.add(next, &config.device_clock),
                    None => break,
                },
            }
        }
        metrics::histogram!("gridwatch_ingest_batch_readings").record(batch.len() as f64);
        if batches.send(batch).await.is_err() {
            return;
        }
    }
}

/// A commit running in its own task; aborted if the pipeline stops first (nothing
/// is acknowledged then, so the senders keep and resend the readings).
struct CommitTask(JoinHandle<(Batch, gridwatch_storage::Result<Committed>)>);

impl Future for CommitTask {
    type Output = Result<(Batch, gridwatch_storage::Result<Committed>), tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for CommitTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Commits up to `commits_in_flight` batches at once, then acknowledges and
/// alerts strictly in batch order. A node is acked at most once per
/// `node_ack_interval`. Stops, acking nothing more, when a commit fails for good.
async fn commit_in_order(
    store: Store,
    mut batches: mpsc::Receiver<Batch>,
    mut acks: Acks,
    alerting: Alerting,
    node_ack_interval: Duration,
    slots: Arc<CommitSlots>,
    health: Health,
) {
    let limit = slots.limit;
    let mut in_flight: VecDeque<CommitTask> = VecDeque::with_capacity(limit);
    let mut pacer = AckPacer::new(node_ack_interval);
    let mut open = true;
    while open || !in_flight.is_empty() {
        let next_due = pacer.next_due();
        tokio::select! {
            biased;
            done = async { in_flight.front_mut().expect("guarded by the condition").await }, if !in_flight.is_empty() => {
                in_flight.pop_front();
                slots.set_busy(in_flight.len());
                match done {
                    Ok((batch, Ok(committed))) => finish(&mut acks, &mut pacer, &alerting, batch, committed).await,
                    Ok((_, Err(e))) => {
                        // Later batches may hold later seqs of the same nodes, and node acks
                        // are cumulative: nothing after this batch may be acknowledged.
                        metrics::counter!("gridwatch_ingest_write_path_stopped_total").increment(1);
                        tracing::error!(error = %e, class = %e.class(), "storing a batch failed for good: the write path stops; its readings and everything after them stay unacknowledged");
                        health.gave_up();
                        break;
                    }
                    Err(e) => tracing::error!(error = %e, "a commit task failed; its readings stay unacknowledged"),
                }
            }
            () = tokio::time::sleep_until(next_due.map_or_else(Instant::now, Instant::from_std)), if next_due.is_some() => {
                let mut out = AckMessages::default();
                pacer.release(Instant::now().into_std(), |external, gateway, device, seq| out.node_ack(external, gateway, device, seq));
                out.publish(&mut acks, std::iter::empty()).await;
            }
            next = batches.recv(), if open && in_flight.len() < limit => match next {
                Some(batch) => {
                    let (store, health) = (store.clone(), health.clone());
                    in_flight.push_back(CommitTask(tokio::spawn(async move {
                        let committed = commit_with_retry(&store, &batch.accepted, &batch.refused, &health).await;
                        (batch, committed)
                    })));
                    slots.set_busy(in_flight.len());
                }
                None => open = false,
            },
        }
    }
    let mut out = AckMessages::default();
    pacer.flush(|external, gateway, device, seq| out.node_ack(external, gateway, device, seq));
    out.publish(&mut acks, std::iter::empty()).await;
}

async fn finish(acks: &mut Acks, pacer: &mut AckPacer, alerting: &Alerting, batch: Batch, committed: Committed) {
    let stored = batch.accepted.len() - committed.quarantined.len();
    metrics::counter!("gridwatch_ingest_readings_stored_total").increment(committed.new.len() as u64);
    metrics::counter!("gridwatch_ingest_readings_duplicate_total").increment((stored - committed.new.len()) as u64);
    acknowledge(acks, pacer, &batch, &committed.quarantined).await;
    let Batch { accepted, .. } = batch;
    alerting.on_committed(&accepted, committed.new).await;
}

/// Commits a batch as the class of its errors says (see the module doc), telling
/// `health` how each try went.
async fn commit_with_retry(
    store: &Store,
    accepted: &[Accepted],
    refused: &[Refused],
    health: &Health,
) -> gridwatch_storage::Result<Committed> {
    let started = std::time::Instant::now();
    let failed = |r: gridwatch_storage::Retried<'_>| health.commit_failed(r.class.as_str(), r.error);
    let committed = match retry_classified("commit", failed, || store.commit(accepted, refused)).await {
        Err(e) if e.class() == ErrorClass::Constraint => quarantine_batch(store, accepted, refused, &e).await,
        done => done,
    };
    if committed.is_ok() {
        health.commit_succeeded();
    }
    metrics::histogram!("gridwatch_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
    committed
}

/// A batch the database refuses for its data even row by row (the backends split
/// a refused batch themselves; this is what is left): every reading goes into the
/// quarantine with the database's reason, and the batch is acknowledged as rejected.
async fn quarantine_batch(
    store: &Store,
    accepted: &[Accepted],
    refused: &[Refused],
    error: &gridwatch_storage::Error,
) -> gridwatch_storage::Result<Committed> {
    metrics::counter!("gridwatch_ingest_batches_quarantined_total").increment(1);
    let why = format!("the database refused this batch: {error}");
    let all: Vec<Refused> = refused
        .iter()
        .cloned()
        .chain(
            accepted
                .iter()
                .map(|a| gridwatch_storage::quarantine_entry(a, why.clone())),
        )
        .collect();
    // The quarantine holds any bytes; should even that fail, it is retried as a write.
    retry("quarantine_batch", || store.commit(&[], &all)).await;
    Ok(Committed {
        new: Vec::new(),
        quarantined: (0..accepted.len()).collect(),
    })
}

/// One application ack to publish: topic and payload.
type AckMessage = (String, Vec<u8>);

/// After a commit: publishes the batch acks of gateway batches and MQTT-acks
/// external deliveries at once; node acks go out as the pacer allows.
async fn acknowledge(acks: &mut Acks, pacer: &mut AckPacer, batch: &Batch, quarantined: &[usize]) {
    let mut out = AckMessages::default();
    // (external?, gateway, device) → highest committed seq in this batch.
    let mut node_tops: HashMap<(bool, &str, &str), u64> = HashMap::default();
    let mut offset = 0;
    for origin in &batch.origins {
        let mine = offset..offset + origin.accepted;
        offset += origin.accepted;
        let is_external = matches!(origin.via, Via::External(_));
        match &origin.source {
            Source::Batch { gateway, batch: number } => {
                let lost_to_quarantine = quarantined.iter().filter(|i| mine.contains(i)).count() as u32;
                let ack = BatchAck {
                    v: SCHEMA_VERSION,
                    gateway: gateway.clone(),
                    batch: *number,
                    stored: origin.accepted as u32 - lost_to_quarantine,
                    rejected: origin.refused as u32 + lost_to_quarantine,
                };
                out.push(
                    is_external,
                    (Topic::BatchAck { gateway }.write().to_string(), json::encode(&ack)),
                );
            }
            Source::Node => {
                let readings = &batch.accepted[mine];
                let handled = origin.clock_ahead.as_ref();
                let committed = readings
                    .iter()
                    .map(|a| a.reading.seq())
                    .chain(handled.map(|h| h.2))
                    .max();
                if let (Some(top), Some(ceiling)) = (committed, origin.ack_ceiling)
                    && ceiling.seq < top
                {
                    metrics::counter!("gridwatch_ingest_node_acks_held_total", "reason" => ceiling.reason).increment(1);
                }
                // A ceiling of 0 means no ack at all for now.
                let sender = readings
                    .first()
                    .map(|f| (f.gateway.as_str(), f.reading.device()))
                    .or(handled.map(|h| (h.0.as_str(), h.1.as_str())));
                if let (Some((gateway, device)), Some(top)) = (
                    sender,
                    committed
                        .map(|top| origin.ack_ceiling.map_or(top, |c| top.min(c.seq)))
                        .filter(|&t| t > 0),
                ) {
                    let key = (is_external, gateway, device);
                    let entry = node_tops.entry(key).or_default();
                    *entry = (*entry).max(top);
                }
            }
            Source::None => {}
        }
    }
    let now = Instant::now().into_std();
    for ((is_external, gateway, device), seq) in node_tops {
        pacer.committed(
            now,
            is_external,
            gateway,
            device,
            seq,
            |external, gateway, device, seq| out.node_ack(external, gateway, device, seq),
        );
    }
    out.publish(acks, batch.origins.iter().map(|o| &o.via)).await;
}

/// Application acks to publish, by the broker they go to.
#[derive(Default)]
struct AckMessages {
    embedded: Vec<AckMessage>,
    external: Vec<AckMessage>,
    node_acks: u64,
}

impl AckMessages {
    fn push(&mut self, external: bool, message: AckMessage) {
        if external {
            &mut self.external
        } else {
            &mut self.embedded
        }
        .push(message);
    }

    fn node_ack(&mut self, external: bool, gateway: &str, device: &str, seq: u64) {
        if let Some(message) = node_ack(gateway, device, seq) {
            self.push(external, message);
            self.node_acks += 1;
        }
    }

    /// Publishes each on its broker, then MQTT-acks the external deliveries in `vias`.
    async fn publish<'a>(self, acks: &mut Acks, vias: impl Iterator<Item = &'a Via>) {
        if self.node_acks > 0 {
            metrics::counter!("gridwatch_ingest_node_acks_total").increment(self.node_acks);
        }
        if let Some(link) = acks.embedded.as_mut()
            && let Err(e) = link.publish_all(self.embedded).await
        {
            tracing::error!(error = %e, "publishing acks on the embedded broker failed");
        }
        if let Some(client) = acks.external.as_ref() {
            crate::external::acknowledge(client, self.external, vias);
        }
    }
}

/// The `NodeAck` of `device` up to `seq`, on its ack topic.
fn node_ack(gateway: &str, device: &str, seq: u64) -> Option<AckMessage> {
    let id = DeviceId::try_from(device).ok()?;
    let topic = Topic::NodeAck { gateway, device }.write().to_string();
    let payload = json::encode(&NodeAck {
        v: SCHEMA_VERSION,
        device: id,
        seq,
    });
    Some((topic, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn undecoded_messages_hold_their_bytes_until_dropped() {
        let budget = ByteBudget::new(1000);
        let first = budget.reserve(600).await.unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(600).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "600 + 600 bytes exceed the budget of 1000");
        drop(first);
        waiting.await.unwrap().expect("room once the first is decoded");
        // A message larger than the whole budget still goes, alone.
        assert!(budget.reserve(5000).await.is_some());
    }

    #[test]
    fn sqlite_batches_may_be_larger() {
        let sqlite = PipelineConfig::for_database("sqlite://data/gridwatch.db");
        let postgres = PipelineConfig::for_database("postgres:///gridwatch?host=/var/run/postgresql");
        assert_eq!((sqlite.batch_max, sqlite.linger), (20_000, Duration::from_millis(20)));
        assert_eq!((postgres.batch_max, postgres.linger), (5000, Duration::from_millis(20)));
        assert_eq!(sqlite.node_ack_interval, postgres.node_ack_interval);
    }

    fn reading(seq: u64) -> Delivery {
        let payload = format!(
            r#"{{"v":1,"device":"L-1","seq":{seq},"ts":1764061201000,"body":{{"event":"alarm_button","code":0}}}}"#
        );
        let incoming = crate::intake::classify("gw/gw-1/dev/L-1/event", payload.as_bytes()).expect("to store");
        assert_eq!(incoming.accepted.len(), 1);
        Delivery {
            incoming,
            via: Via::Embedded,
            ack_ceiling: None,
        }
    }

    /// Node messages and gateway batches arrive through two subscriptions of the
    /// embedded broker, each with a log (and offsets) of its own: interleaved,
    /// they must not look like a broker drop, nor hold any node's acks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mixed_node_and_gateway_traffic_is_no_broker_drop() {
        let config = gridwatch_broker::BrokerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..gridwatch_broker::BrokerConfig::default()
        };
        let mut broker =
            gridwatch_broker::EmbeddedBroker::start("mixed-test", &config, &["ingest", "senders"]).unwrap();
        let (mut ingest_tx, ingest_rx) = broker.take_link("ingest").unwrap();
        for filter in gridwatch_protocol::ALL_BUT_NODE_ACKS {
            ingest_tx.subscribe(filter).unwrap();
        }
        let (mut senders, _senders_rx) = broker.take_link("senders").unwrap();
        let health = Health::default();
        let (undecoded_tx, undecoded_rx) = mpsc::channel(UNDECODED_BACKLOG);
        let (queue_tx, mut queue) = mpsc::channel(1024);
        tokio::spawn(read_broker(
            ingest_rx,
            undecoded_tx,
            ByteBudget::new(UNDECODED_BYTES),
            health.clone(),
        ));
        let (presence_tx, _presence_rx) = mpsc::channel(1);
        tokio::spawn(decode_broker(undecoded_rx, queue_tx, presence_tx, health.clone()));

        // A direct node, and a gateway sending a batch after every fourth of its
        // messages: the two logs' offsets drift apart. In rounds, each taken in
        // before the next is sent, so the broker goes from one log to the other.
        let message = |seq: u64| {
            let ts = 1_764_061_200_000 + seq * 1000;
            let node = (
                "gw/direct/dev/L-1/event".to_string(),
                format!(r#"{{"v":1,"device":"L-1","seq":{seq},"ts":{ts},"body":{{"event":"alarm_button","code":0}}}}"#)
                    .into_bytes(),
            );
            let batch = (
                "gw/gw-1/batch".to_string(),
                format!(
                    r#"{{"v":1,"gateway":"gw-1","batch":{seq},"readings":[{{"kind":"event","v":1,"device":"L-2","seq":{seq},"ts":{ts},"body":{{"event":"alarm_button","code":0}}}}]}}"#
                )
                .into_bytes(),
            );
            (node, batch)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let (mut nodes, mut batches) = (0u64, 0u64);
        for round in 0..10u64 {
            let mut messages = Vec::new();
            for seq in round * 20 + 1..=round * 20 + 20 {
                let (node, batch) = message(seq);
                messages.push(node);
                if seq % 4 == 0 {
                    messages.push(batch);
                }
            }
            let expected = messages.len() as u64;
            senders.publish_all(messages).await.unwrap();
            for _ in 0..expected {
                let delivery = tokio::time::timeout_at(deadline, queue.recv())
                    .await
                    .expect("every message within the deadline")
                    .expect("the decoder runs");
                match delivery.incoming.source {
                    Source::Node => nodes += 1,
                    Source::Batch { .. } => batches += 1,
                    Source::None => panic!("unexpected: {:?}", delivery.incoming),
                }
                assert_eq!(delivery.ack_ceiling, None, "no node ack may be held");
            }
        }
        assert_eq!((nodes, batches), (200, 50));
        assert_eq!(health.broker_drops(), 0, "no broker drop");
    }

    /// Virtual time: the linger passes without waiting for it.
    #[tokio::test(start_paused = true)]
    async fn a_batch_grows_past_its_linger_while_no_commit_could_start() {
        let config = PipelineConfig {
            batch_max: 3,
            ..PipelineConfig::default()
        };
        let linger = config.linger;
        let (queue, queue_rx) = mpsc::channel(8);
        let (batch_tx, mut batches) = mpsc::channel(BATCHES_WAITING);
        let slots = Arc::new(CommitSlots::new(1));
        tokio::spawn(gather(config, queue_rx, batch_tx, slots.clone()));

        // A slot is free: the batch closes at its linger.
        queue.send(reading(1)).await.unwrap();
        let first = batches.recv().await.expect("a batch");
        assert_eq!(first.len(), 1);

        // The one slot is busy: past its linger the batch waits and grows...
        slots.set_busy(1);
        queue.send(reading(2)).await.unwrap();
        tokio::time::sleep(linger * 5).await;
        assert!(
            batches.try_recv().is_err(),
            "closed although no commit could start on it"
        );
        queue.send(reading(3)).await.unwrap();
        tokio::time::sleep(linger).await;
        assert!(batches.try_recv().is_err());
        // ...and closes once a commit can start on it.
        slots.set_busy(0);
        assert_eq!(batches.recv().await.expect("a batch").len(), 2);

        // At `batch_max` it closes whatever the slots say (and waits in the channel).
        slots.set_busy(1);
        for seq in 4..7 {
            queue.send(reading(seq)).await.unwrap();
        }
        assert_eq!(batches.recv().await.expect("a full batch").len(), 3);
    }
}
