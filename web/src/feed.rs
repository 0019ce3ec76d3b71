//! `GET /api/feed`: the live feed as Server-Sent Events (docs/api.md, "Live feed").
//!
//! Every subscriber has a task of its own that reads the feed in id order within the
//! caller's walls and hands the events to its connection through a small bounded
//! queue. The task reads again when the domain commits feed rows (`Alerting::feed`, a
//! `watch` set after the commit), and every [`FeedConfig::poll_every`] for rows other
//! processes wrote. Subscribers at the head of the feed read the newest rows from a
//! [`Tail`] shared by all (read from the table once per commit, however many
//! subscribers: with a thousand, reading the table each would be a thousand queries
//! per commit); one behind the tail (resuming, or slow) reads the table itself, a page
//! at a time (`gridwatch_storage::feed`), until it reaches the tail. So a slow
//! subscriber holds at most a page and its queue, and slows nobody else.
//! One whose queue stays full for [`FeedConfig::slow_after`] is cut off: its
//! connection is closed (counted, `reason="slow"`), and it resumes with
//! `Last-Event-ID` when it reconnects.
use crate::error::Query;
use crate::http::{ApiError, AppState, Caller};
use crate::limits::CloseConnection;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use gridwatch_storage::Store;
use gridwatch_storage::feed::{self, FeedRow, Walls};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, watch};

/// The live feed's limits.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// Subscribers served at once; one more is answered `503`.
    pub max_subscribers: usize,
    /// Rows one read of the table returns at most.
    pub page_rows: i64,
    /// Pieces waiting to be written, per subscriber: each the events of one read, at most
    /// [`CHUNK_EVENTS`].
    pub queue_chunks: usize,
    /// A subscriber whose queue stays full this long is cut off (it stopped reading, or
    /// reads slower than events come).
    pub slow_after: Duration,
    /// A comment line is sent after this long without an event, so proxies and clients
    /// see the connection alive.
    pub keep_alive: Duration,
    /// Also read the table this often: rows another process wrote (a register import
    /// from the command line) wake nobody.
    pub poll_every: Duration,
    /// The newest rows kept in memory for every subscriber ([`Tail`]).
    pub tail_rows: usize,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            max_subscribers: 128,
            page_rows: 500,
            queue_chunks: 16,
            slow_after: Duration::from_secs(10),
            keep_alive: Duration::from_secs(15),
            poll_every: Duration::from_secs(5),
            tail_rows: 4096,
        }
    }
}

/// The feed's limits and its subscriber slots, shared by every request.
#[derive(Debug, Clone)]
pub struct Feed {
    config: Arc<FeedConfig>,
    slots: Arc<Semaphore>,
    tail: Arc<Mutex<Tail>>,
}

impl Feed {
    pub fn new(config: FeedConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_subscribers));
        let tail = Arc::new(Mutex::new(Tail::new(config.tail_rows)));
        Self {
            config: Arc::new(config),
            slots,
            tail,
        }
    }
}

/// The newest feed rows, every row with `floor < id <= through` (walls not applied),
/// read from the table once for all subscribers. It starts empty at the head of the
/// feed when first used, and again whenever the head moved further than it holds in
/// one step; it keeps at most `capacity` rows, the oldest dropped first.
#[derive(Debug)]
pub(crate) struct Tail {
    floor: Option<i64>,
    through: i64,
    rows: VecDeque<Arc<TailRow>>,
    capacity: usize,
}

/// A row of the tail with its event as written to every subscriber, formatted once.
#[derive(Debug)]
pub(crate) struct TailRow {
    row: FeedRow,
    sse: Bytes,
}

impl Tail {
    fn new(capacity: usize) -> Self {
        Self {
            floor: None,
            through: 0,
            rows: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Reads the rows up to `upto` (a committed id) into the tail.
    async fn extend_to(&mut self, store: &Store, upto: i64, page_rows: i64) -> gridwatch_storage::Result<()> {
        if self.floor.is_none() || upto - self.through > self.capacity as i64 {
            // Ids are about as many as rows: too far to read into the tail. Start over
            // at the head; readers behind it read the table.
            self.rows.clear();
            self.floor = Some(upto);
            self.through = upto;
            return Ok(());
        }
        while self.through < upto {
            let rows = feed::page(store, &Walls::All, self.through, upto, page_rows).await?;
            let full = rows.len() as i64 >= page_rows;
            self.through = if full { rows.last().map_or(upto, |r| r.id) } else { upto };
            self.rows.extend(rows.into_iter().map(|row| {
                let sse = sse_event(&row);
                Arc::new(TailRow { row, sse })
            }));
        }
        while self.rows.len() > self.capacity {
            if let Some(oldest) = self.rows.pop_front() {
                self.floor = Some(oldest.row.id);
            }
        }
        Ok(())
    }

    /// The rows after `after` that `walls` let through, and the id they reach; `None`
    /// when `after` is behind the tail.
    fn after(&self, after: i64, walls: &Walls) -> Option<(Vec<Arc<TailRow>>, i64)> {
        if after < self.floor? {
            return None;
        }
        let from = self.rows.partition_point(|r| r.row.id <= after);
        let rows = self
            .rows
            .range(from..)
            .filter(|r| walls.admits(r.row.grid.as_deref(), r.row.firm.as_deref()))
            .cloned()
            .collect();
        Some((rows, self.through.max(after)))
    }
}

impl Default for Feed {
    fn default() -> Self {
        Self::new(FeedConfig::default())
    }
}

fn describe() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_gauge!("gridwatch_feed_subscribers", "Live feed subscribers connected now");
        metrics::describe_counter!(
            "gridwatch_feed_disconnects_total",
            "Live feed subscriptions ended, by reason: slow (its queue stayed full, cut off), closed (the client went away), storage (reading the feed failed), shutdown"
        );
        metrics::describe_counter!(
            "gridwatch_feed_refused_total",
            "Live feed subscriptions refused with 503: the subscriber limit was reached"
        );
        metrics::describe_counter!("gridwatch_feed_events_total", "Live feed events queued for subscribers");
    });
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedQuery {
    /// Resume after this event id (`Last-Event-ID` takes precedence).
    after: Option<String>,
}

/// Where to start: after the `Last-Event-ID` header's id, else after `?after=`, else
/// from the oldest event kept.
fn resume_after(headers: &HeaderMap, after: Option<&str>) -> Result<i64, ApiError> {
    let header = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let (name, text) = match (header, after) {
        (Some(text), _) if !text.trim().is_empty() => ("Last-Event-ID", text.trim()),
        (_, Some(text)) if !text.trim().is_empty() => ("after", text.trim()),
        _ => return Ok(0),
    };
    text.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name}={text:?}: expected the id of an event of this feed (a whole number, 0 or more)"),
        )
    })
}

/// `GET /api/feed`: the caller's events after the resume point, as they commit.
#[utoipa::path(get, operation_id = "feed", path = "/api/feed", tag = "alerts", params(
        FeedQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (wins over `after`)"),
    ),
    responses(
        (status = 200, description = "Alert and case events as Server-Sent Events, in commit order (docs/api.md, \"Live feed\")", content_type = "text/event-stream"),
        (status = 400, description = "A resume id that is not a whole number", body = crate::error::ErrorBody),
        (status = 503, description = "Too many subscribers; Retry-After says when to try again (`unavailable`)", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn stream(
    State(s): State<AppState>,
    caller: Caller,
    close: Option<Extension<CloseConnection>>,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Result<Response, ApiError> {
    describe();
    let after = resume_after(&headers, q.after.as_deref())?;
    let walls = match &caller.user {
        None => Walls::All,
        Some(user) => Walls::Only {
            grids: user.visible_scopes().iter().map(ToString::to_string).collect(),
            firms: user.firms().into_iter().map(str::to_string).collect(),
        },
    };
    let config = s.feed.config.clone();
    let Ok(permit) = s.feed.slots.clone().try_acquire_owned() else {
        metrics::counter!("gridwatch_feed_refused_total").increment(1);
        let mut refused = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many live feed subscribers: at most {} at once (FeedConfig::max_subscribers); retry later",
                config.max_subscribers
            ),
        )
        .into_response();
        refused.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(5));
        return Ok(refused);
    };
    let (tx, rx) = mpsc::channel(config.queue_chunks.max(1));
    let subscription = Subscription {
        store: s.store.clone(),
        tail: s.feed.tail.clone(),
        walls,
        after,
        wake: s.alerting.feed(),
        tx,
        close: close.map(|Extension(c)| c),
        _slot: Slot::new(permit),
        config: config.clone(),
    };
    tokio::spawn(subscription.run());
    // Each item is up to CHUNK_EVENTS events of one read, written in one piece; a comment
    // line after `keep_alive` without one keeps proxies and clients from closing the connection.
    let keep_alive = config.keep_alive;
    let events = futures_util::stream::unfold(rx, move |mut rx| async move {
        let chunk = match tokio::time::timeout(keep_alive, rx.recv()).await {
            Ok(chunk) => chunk?,
            Err(_) => Bytes::from_static(b":\n\n"),
        };
        Some((Ok::<_, Infallible>(chunk), rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // Proxies that buffer responses (nginx) would hold events back.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        axum::body::Body::from_stream(events),
    )
        .into_response())
}

/// A subscriber's slot, counted in `gridwatch_feed_subscribers` while held.
struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("gridwatch_feed_subscribers").increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("gridwatch_feed_subscribers").decrement(1.0);
    }
}

/// What a subscriber's task woke up to.
#[derive(Debug, Clone, Copy)]
enum Woken {
    /// This process committed feed rows (`Alerting::feed`): read up to the id it names.
    Signal,
    /// The start, or the poll: read up to the newest id in the table.
    Table,
}

/// Why a subscription ended: the `reason` label of `gridwatch_feed_disconnects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Slow,
    Closed,
    Storage,
    Shutdown,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::Slow => "slow",
            End::Closed => "closed",
            End::Storage => "storage",
            End::Shutdown => "shutdown",
        }
    }
}

/// One subscriber's reader: from `after` on, what `walls` let through.
struct Subscription {
    store: Store,
    tail: Arc<Mutex<Tail>>,
    walls: Walls,
    /// The highest id this subscriber is past (sent, or not for it).
    after: i64,
    wake: watch::Receiver<i64>,
    tx: mpsc::Sender<Bytes>,
    close: Option<CloseConnection>,
    config: Arc<FeedConfig>,
    _slot: Slot,
}

impl Subscription {
    async fn run(mut self) {
        let end = self.serve().await;
        metrics::counter!("gridwatch_feed_disconnects_total", "reason" => end.label()).increment(1);
        match end {
            End::Slow => {
                tracing::info!(after = self.after, slow_after = ?self.config.slow_after, "live feed subscriber cut off: it stopped reading");
                // Its response cannot be written any further: close the socket, or the
                // connection would hold its buffers for as long as the client stays silent.
                if let Some(close) = &self.close {
                    close.close();
                }
            }
            End::Storage | End::Closed | End::Shutdown => {
                tracing::debug!(after = self.after, end = end.label(), "live feed subscription ended")
            }
        }
    }

    async fn serve(&mut self) -> End {
        let mut poll = tokio::time::interval(self.config.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.reset();
        let mut woken = Woken::Table;
        loop {
            if let Err(end) = self.catch_up(woken).await {
                return end;
            }
            woken = tokio::select! {
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        return End::Shutdown;
                    }
                    Woken::Signal
                }
                _ = poll.tick() => Woken::Table,
                () = self.tx.closed() => return End::Closed,
            };
        }
    }

    /// Sends every row past `after` up to the newest committed, a page at a time, of
    /// those the walls let through.
    async fn catch_up(&mut self, woken: Woken) -> Result<(), End> {
        // Seen before the read: a commit after this wakes the next wait.
        let signalled = *self.wake.borrow_and_update();
        // Ids commit in order: every row up to a committed id is visible once it is
        // known. The signal names one; the table knows those of other processes too.
        let upto = match woken {
            Woken::Signal => signalled,
            Woken::Table => feed::last_id(&self.store).await.map_err(storage_failed)?,
        };
        let page_rows = self.config.page_rows.max(1);
        while self.after < upto {
            let shared = {
                let mut tail = self.tail.lock().await;
                tail.extend_to(&self.store, upto, page_rows)
                    .await
                    .map_err(storage_failed)?;
                tail.after(self.after, &self.walls)
            };
            if let Some((rows, through)) = shared {
                let events: Vec<Bytes> = rows.iter().map(|r| r.sse.clone()).collect();
                self.send(&events).await?;
                self.after = through;
                continue;
            }
            // Behind the tail: a page from the table.
            let rows = feed::page(&self.store, &self.walls, self.after, upto, page_rows)
                .await
                .map_err(storage_failed)?;
            let full = rows.len() as i64 >= page_rows;
            let events: Vec<Bytes> = rows.iter().map(sse_event).collect();
            self.send(&events).await?;
            if let Some(last) = rows.last() {
                self.after = last.id;
            }
            if !full {
                // Nothing else up to `upto` is for this subscriber.
                self.after = upto;
            }
        }
        Ok(())
    }

    /// Queues `events` (each formatted by [`sse_event`]) for the connection, in pieces of
    /// at most [`CHUNK_EVENTS`].
    async fn send(&self, events: &[Bytes]) -> Result<(), End> {
        for piece in events.chunks(CHUNK_EVENTS) {
            let mut chunk = BytesMut::with_capacity(piece.iter().map(Bytes::len).sum());
            for event in piece {
                chunk.extend_from_slice(event);
            }
            let count = piece.len() as u64;
            match self.tx.send_timeout(chunk.freeze(), self.config.slow_after).await {
                Ok(()) => metrics::counter!("gridwatch_feed_events_total").increment(count),
                Err(SendTimeoutError::Timeout(_)) => return Err(End::Slow),
                Err(SendTimeoutError::Closed(_)) => return Err(End::Closed),
            }
        }
        Ok(())
    }
}

/// Events written to a connection in one piece at most: what a subscriber holds waiting
/// is bounded by [`FeedConfig::queue_chunks`] times this.
pub(crate) const CHUNK_EVENTS: usize = 16;

/// A row as a Server-Sent Event: its id, its type, its data (one `data:` line per line).
fn sse_event(row: &FeedRow) -> Bytes {
    let data = row.data();
    let mut out = BytesMut::with_capacity(data.len() + row.event.len() + 40);
    out.extend_from_slice(format!("id: {}\nevent: {}\n", row.id, row.event).as_bytes());
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

fn storage_failed(e: gridwatch_storage::Error) -> End {
    tracing::warn!(error = %e, "live feed: reading the feed failed; the subscriber resumes when it reconnects");
    End::Storage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, grid: &str) -> Arc<TailRow> {
        let row = FeedRow {
            id,
            event: "alert.raised".into(),
            body: "{}".into(),
            grid: Some(grid.into()),
            firm: None,
        };
        let sse = sse_event(&row);
        Arc::new(TailRow { row, sse })
    }

    #[test]
    fn an_event_is_its_id_type_and_data_lines() {
        let row = FeedRow {
            id: 7,
            event: "case.opened".into(),
            body: "{\"a\":1}".into(),
            grid: None,
            firm: None,
        };
        assert_eq!(
            &sse_event(&row)[..],
            b"id: 7\nevent: case.opened\ndata: {\"id\":7,\"a\":1}\n\n"
        );
    }

    #[test]
    fn the_tail_serves_only_readers_within_it_and_applies_their_walls() {
        let mut tail = Tail::new(4);
        assert!(tail.after(0, &Walls::All).is_none(), "not started");
        tail.floor = Some(10);
        tail.through = 14;
        tail.rows
            .extend([row(11, "010101"), row(13, "020101"), row(14, "010102")]);
        assert!(tail.after(9, &Walls::All).is_none(), "behind the tail: the table");
        let ids =
            |(rows, through): (Vec<Arc<TailRow>>, i64)| (rows.iter().map(|r| r.row.id).collect::<Vec<_>>(), through);
        assert_eq!(ids(tail.after(10, &Walls::All).unwrap()), (vec![11, 13, 14], 14));
        assert_eq!(ids(tail.after(11, &Walls::All).unwrap()), (vec![13, 14], 14));
        let area01 = Walls::Only {
            grids: vec!["01".into()],
            firms: vec![],
        };
        assert_eq!(ids(tail.after(10, &area01).unwrap()), (vec![11, 14], 14));
        assert_eq!(ids(tail.after(14, &area01).unwrap()), (vec![], 14));
        assert_eq!(ids(tail.after(20, &area01).unwrap()), (vec![], 20), "never backwards");
    }

    #[test]
    fn the_header_wins_over_the_query_and_bad_ids_are_named() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_after(&headers, None).unwrap(), 0);
        assert_eq!(resume_after(&headers, Some("17")).unwrap(), 17);
        headers.insert("last-event-id", HeaderValue::from_static("42"));
        assert_eq!(resume_after(&headers, Some("17")).unwrap(), 42);
        headers.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(resume_after(&headers, Some("17")).unwrap(), 17);
        headers.insert("last-event-id", HeaderValue::from_static("x1"));
        let e = resume_after(&headers, None).unwrap_err();
        assert!(
            e.message.contains("Last-Event-ID") && e.message.contains("x1"),
            "{}",
            e.message
        );
        assert!(resume_after(&HeaderMap::new(), Some("-3")).is_err());
    }
}
