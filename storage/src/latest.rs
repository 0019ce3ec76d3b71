//! The latest state per device (the `devices` table), written behind the readings.
//!
//! Readings are stored in their batch's transaction; their summary per device is
//! not. Written in every batch, it cost one row update per reading whenever a
//! batch held one reading per device (measured: as much database time as the
//! COPY of the readings themselves). Instead a commit leaves the newest state per
//! device here, and [`flush`] writes them all once per [`FLUSH_EVERY`], newest per
//! device, in one transaction that also records when (`store_meta`).
//!
//! - Reads ([`overlay`]) add what is not written yet, so they see every
//!   committed reading, as before.
//! - A crash loses only this summary, never a reading: start-up recomputes the
//!   states from the readings received since the last flush, less
//!   [`RECOVERY_MARGIN_MS`] (commits that started before a flush may end after it).
use crate::DeviceState;
use crate::Result;
use crate::model::{Accepted, DeviceRow, rfc3339};
use foldhash::HashMap;
use gridwatch_protocol::batch::Reading;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often pending states are written. A flush writes every device that
/// reported since the last one, so devices reporting faster than this cost one
/// upsert per interval, not one per reading: at once a second, 10,000 nodes
/// sending ten readings a second spent ~14 % of PostgreSQL's time on these
/// upserts (direct benchmark; 5 s: 76–108k → 103–125k msg/s). Reads never wait
/// for it ([`overlay`]); only SQL read straight from `devices` lags by up to this.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// How far before the last flush start-up looks for states to recompute: longer
/// than any one commit attempt takes (a retried commit stamps its rows anew).
pub(crate) const RECOVERY_MARGIN_MS: i64 = 5 * 60 * 1000;

/// The time (ingest clock, ms) of the last flush, in `store_meta`: read and
/// written with the same SQL on both backends.
pub(crate) const READ_FLUSHED_AT: &str = "SELECT value FROM store_meta WHERE key = 'device_states_flushed_at'";
pub(crate) const WRITE_FLUSHED_AT: &str = "UPDATE store_meta SET value = $1 WHERE key = 'device_states_flushed_at'";

/// How both backends write a state: an older reading never replaces a newer state.
pub(crate) const UPSERT_DEVICE: &str = "ON CONFLICT (device_id) DO UPDATE SET kind = excluded.kind, \
     gateway = excluded.gateway, last_seq = excluded.last_seq, last_ts = excluded.last_ts, \
     last_body = excluded.last_body, updated_at = excluded.updated_at \
     WHERE excluded.last_seq > devices.last_seq";

/// One device's newest state, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub device: String,
    pub kind: &'static str,
    pub gateway: String,
    pub seq: i64,
    pub ts: i64,
    /// The status body as JSON.
    pub body: String,
}

impl State {
    pub fn as_row(&self) -> DeviceState<'_> {
        DeviceState {
            device: &self.device,
            kind: self.kind,
            gateway: &self.gateway,
            seq: self.seq,
            ts: self.ts,
            body: Cow::Borrowed(&self.body),
        }
    }
}

/// The body of a status reading from its tagged JSON as ingest serialises it
/// (`{"kind":..,"v":..,"device":..,"seq":..,"ts":..,"body":{..}}`: the body is the
/// last field, and nothing before it can hold the text `"body":`).
fn status_body(reading_json: &str) -> Option<&str> {
    let start = reading_json.find("\"body\":")? + "\"body\":".len();
    let body = reading_json.get(start..reading_json.len().checked_sub(1)?)?;
    (body.starts_with('{') && body.ends_with('}')).then_some(body)
}

/// A status reading's body as JSON.
fn serialised_body(reading: &Reading) -> String {
    match reading {
        Reading::Lift(e) => serde_json::to_string(&e.body),
        Reading::Sterilizer(e) => serde_json::to_string(&e.body),
        _ => unreachable!("only status readings are states"),
    }
    .expect("status bodies always serialize")
}

/// States committed and not yet written, newest per device.
#[derive(Default)]
pub struct Pending {
    states: Mutex<HashMap<String, State>>,
    /// One flush at a time: a periodic one and one on shutdown may meet.
    flushing: tokio::sync::Mutex<()>,
}

impl Pending {
    /// Keeps the states that a committed batch's `new` readings show: the newest
    /// status reading (lift, sterilizer) per device; an older reading never
    /// replaces a newer state. `reading_json` may give a reading's JSON as already
    /// serialised for storing (see [`status_body`]), which spares serialising its
    /// body again.
    ///
    /// One map lookup per reading. The readings are taken newest first: a batch
    /// holds a device's readings in the order they arrived, so its older ones fail
    /// the seq test without their body being worked out (with a per-batch map of
    /// the newest reading per device first, these states took 8 % of ingest's CPU
    /// in the direct benchmark).
    pub fn merge<'a>(&self, accepted: &'a [Accepted], new: &[usize], reading_json: impl Fn(usize) -> Option<&'a str>) {
        let mut pending = self.states.lock().expect("pending states lock");
        for &i in new.iter().rev() {
            let a = &accepted[i];
            if !matches!(a.reading, Reading::Lift(_) | Reading::Sterilizer(_)) {
                continue;
            }
            let kind = a.reading.kind().as_str();
            let seq = a.reading.seq() as i64;
            let body = || match reading_json(i).and_then(status_body) {
                Some(body) => Cow::Borrowed(body),
                None => Cow::Owned(serialised_body(&a.reading)),
            };
            match pending.get_mut(a.reading.device()) {
                Some(known) if known.seq >= seq => {}
                Some(known) => {
                    known.kind = kind;
                    known.gateway.replace_range(.., &a.gateway);
                    known.seq = seq;
                    known.ts = a.reading.ts() as i64;
                    known.body.replace_range(.., &body());
                }
                None => {
                    let device = a.reading.device().to_string();
                    let state = State {
                        device: device.clone(),
                        kind,
                        gateway: a.gateway.clone(),
                        seq,
                        ts: a.reading.ts() as i64,
                        body: body().into_owned(),
                    };
                    pending.insert(device, state);
                }
            }
        }
        metrics::gauge!("gridwatch_ingest_device_states_pending").set(pending.len() as f64);
    }

    /// A copy of the pending states, for [`overlay`]. A read takes it *before* it
    /// reads the `devices` table: a state the flusher writes and then forgets
    /// meanwhile is in one or the other. (Taken after the read, it was for an
    /// instant in neither, and a device vanished from the list.)
    pub fn states(&self) -> Vec<State> {
        self.states
            .lock()
            .expect("pending states lock")
            .values()
            .cloned()
            .collect()
    }

    /// [`Pending::states`] of one device.
    pub fn state(&self, device: &str) -> Option<State> {
        self.states.lock().expect("pending states lock").get(device).cloned()
    }

    /// The pending states in device order (the lock order of the writing transaction).
    fn snapshot(&self) -> Vec<State> {
        let mut states = self.states();
        states.sort_unstable_by(|a, b| a.device.cmp(&b.device));
        states
    }

    /// Forgets written states, unless a newer one arrived meanwhile.
    fn written(&self, states: &[State]) {
        let mut pending = self.states.lock().expect("pending states lock");
        for s in states {
            if pending.get(&s.device).is_some_and(|p| p.seq <= s.seq) {
                pending.remove(&s.device);
            }
        }
        metrics::gauge!("gridwatch_ingest_device_states_pending").set(pending.len() as f64);
    }
}

/// Replaces rows read from the `devices` table by newer `pending` states (from
/// [`Pending::states`]), and adds devices not written yet; the result is in device order.
pub(crate) fn overlay(pending: Vec<State>, rows: &mut Vec<DeviceRow>) {
    if pending.is_empty() {
        return;
    }
    let mut merged: BTreeMap<String, DeviceRow> = rows.drain(..).map(|r| (r.device_id.clone(), r)).collect();
    for s in pending {
        if merged.get(&s.device).is_none_or(|row| row.last_seq < s.seq) {
            let row = DeviceRow {
                device_id: s.device.clone(),
                kind: s.kind.to_string(),
                gateway: s.gateway,
                last_seq: s.seq,
                last_seen: rfc3339(s.ts),
                last_state: serde_json::from_str(&s.body).unwrap_or_default(),
            };
            merged.insert(s.device, row);
        }
    }
    rows.extend(merged.into_values());
}

/// Writes every pending state with `write(states, flushed_at)`, which must store
/// them and `flushed_at` in one transaction. Nothing is forgotten when it fails.
pub(crate) async fn flush<F, Fut>(pending: &Pending, write: F) -> Result<()>
where
    F: FnOnce(Vec<State>, i64) -> Fut,
    Fut: Future<Output = Result<Vec<State>>>,
{
    let _one_at_a_time = pending.flushing.lock().await;
    // Stamped before the snapshot: every commit that ended before this is in it.
    let flushed_at = crate::model::now_ms();
    let states = pending.snapshot();
    let written = write(states, flushed_at).await?;
    pending.written(&written);
    Ok(())
}

/// Flushes `pending` with `write` on `pool` every [`FLUSH_EVERY`] until aborted;
/// failures are logged and retried at the next tick (the states stay pending).
pub(crate) fn spawn_flusher<P, W, Fut>(pending: Arc<Pending>, pool: P, write: W) -> tokio::task::JoinHandle<()>
where
    P: Clone + Send + Sync + 'static,
    W: Fn(P, Vec<State>, i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<State>>> + Send,
{
    tokio::spawn(async move {
        let mut every = tokio::time::interval(FLUSH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = flush(&pending, |states, at| write(pool.clone(), states, at)).await {
                metrics::counter!("gridwatch_ingest_store_failures_total", "op" => "device_states").increment(1);
                tracing::error!(error = %format!("{e:#}"), "writing device states failed; retrying");
            }
        }
    })
}

/// Aborts a background task when the last clone of its owner is dropped.
pub(crate) struct AbortOnDrop(pub Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// A shared [`AbortOnDrop`] for cloneable stores.
pub(crate) type Background = Arc<AbortOnDrop>;

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_protocol::{DeviceId, Door, Envelope, LiftStatus, Motion, Power, ServiceMode};

    fn lift_status(floor: i16) -> LiftStatus {
        LiftStatus {
            mode: ServiceMode::Normal,
            motion: Motion::Up,
            door: Door::Closed,
            door_zone: false,
            floor,
            occupied: true,
            alarm: false,
            fault: 7,
            power: Power::Battery,
            runs: 12,
            door_cycles: 34,
        }
    }

    /// A lift reading whose floor is its seq.
    fn lift(device: &str, seq: u64) -> Accepted {
        let device = DeviceId::try_from(device).unwrap();
        let reading = Reading::Lift(Envelope::new(device, seq, seq * 1000, lift_status(seq as i16)));
        Accepted {
            gateway: "gw".into(),
            reading,
        }
    }

    /// Merges all of `batch`, its bodies serialised anew.
    fn merge(pending: &Pending, batch: &[Accepted]) {
        let new: Vec<usize> = (0..batch.len()).collect();
        pending.merge(batch, &new, |_| None);
    }

    fn seqs(pending: &Pending) -> Vec<(String, i64)> {
        pending.snapshot().into_iter().map(|s| (s.device, s.seq)).collect()
    }

    #[test]
    fn the_newest_state_per_device_is_kept() {
        let pending = Pending::default();
        merge(&pending, &[lift("a", 5), lift("b", 1)]);
        merge(&pending, &[lift("a", 3), lift("b", 2)]);
        assert_eq!(seqs(&pending), vec![("a".into(), 5), ("b".into(), 2)]);
        assert_eq!(
            pending.snapshot()[1].body,
            serde_json::to_string(&lift_status(2)).unwrap()
        );
    }

    #[test]
    fn within_a_batch_the_highest_seq_wins_in_any_order() {
        let pending = Pending::default();
        merge(
            &pending,
            &[lift("a", 1), lift("b", 4), lift("a", 3), lift("b", 2), lift("a", 2)],
        );
        assert_eq!(seqs(&pending), vec![("a".into(), 3), ("b".into(), 4)]);
        let floors: Vec<String> = pending.snapshot().into_iter().map(|s| s.body).collect();
        let want = [lift_status(3), lift_status(4)].map(|s| serde_json::to_string(&s).unwrap());
        assert_eq!(floors, want);
    }

    #[test]
    fn only_the_new_readings_of_a_batch_count() {
        let pending = Pending::default();
        let batch = [lift("a", 1), lift("a", 9)];
        // seq 9 was a duplicate: not stored, so not a state.
        pending.merge(&batch, &[0], |_| None);
        assert_eq!(seqs(&pending), vec![("a".into(), 1)]);
    }

    #[test]
    fn bodies_are_cut_from_the_stored_json_when_given() {
        let pending = Pending::default();
        let batch = [lift("a", 1)];
        let stored = r#"{"kind":"lift","v":1,"device":"a","seq":1,"ts":1000,"body":{"as":"stored"}}"#;
        pending.merge(&batch, &[0], |_| Some(stored));
        assert_eq!(pending.snapshot()[0].body, r#"{"as":"stored"}"#);
    }

    #[test]
    fn a_state_newer_than_the_one_written_stays_pending() {
        let pending = Pending::default();
        merge(&pending, &[lift("a", 5)]);
        let snapshot = pending.snapshot();
        merge(&pending, &[lift("a", 6)]);
        pending.written(&snapshot);
        assert_eq!(pending.snapshot()[0].seq, 6);
        pending.written(&pending.snapshot());
        assert!(pending.snapshot().is_empty());
    }

    #[test]
    fn reads_see_pending_states_over_written_ones() {
        let pending = Pending::default();
        merge(&pending, &[lift("b", 7), lift("c", 1)]);
        let row = |device: &str, seq| DeviceRow {
            device_id: device.into(),
            kind: "lift".into(),
            gateway: "gw".into(),
            last_seq: seq,
            last_seen: rfc3339(0),
            last_state: serde_json::json!({}),
        };
        let mut rows = vec![row("a", 1), row("b", 9), row("c", 0)];
        overlay(pending.states(), &mut rows);
        let seen: Vec<(&str, i64)> = rows.iter().map(|r| (r.device_id.as_str(), r.last_seq)).collect();
        assert_eq!(seen, vec![("a", 1), ("b", 9), ("c", 1)]);
        assert_eq!(rows[2].last_state["floor"], 1);
    }

    #[test]
    fn the_status_body_is_cut_from_the_stored_json_exactly() {
        let reading = lift("L-1", 3).reading;
        let json = serde_json::to_string(&reading).unwrap();
        assert_eq!(
            status_body(&json),
            Some(serde_json::to_string(&lift_status(3)).unwrap().as_str())
        );
        assert_eq!(status_body("{\"kind\":\"lift\"}"), None);
    }
}
