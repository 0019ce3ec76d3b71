//! Readings stamped too far ahead of ingest's clock are quarantined (`clock_ahead`):
//! a node whose clock jumped (an RTC glitch) or a stranger's reading must not reach
//! the alert engine or the latest-state table, where one reading stamped 2099 would
//! stand for the device's time. The check runs on ingest's injected clock (virtual
//! time in tests) when the pipeline takes a message in. Readings before 2020 are
//! refused earlier, by protocol validation (`timestamp_out_of_range`); late but
//! plausible readings (a replay of hours or days) pass.
use crate::intake::{Incoming, Source};
use gridwatch_protocol::clock::{Clock, SystemClock};
use gridwatch_storage::model::Refused;
use std::sync::Arc;
use std::time::Duration;

/// The quarantine reason.
pub const CLOCK_AHEAD: &str = "clock_ahead";

/// The default skew: far above NTP-synchronised clocks' (milliseconds) and a gateway's
/// delivery delay, far below any clock fault worth catching.
pub const DEFAULT_MAX_AHEAD: Duration = Duration::from_secs(300);

/// The receiving clock and how far ahead of it a reading may be stamped.
#[derive(Clone)]
pub struct ClockCheck {
    clock: Arc<dyn Clock>,
    max_ahead_ms: u64,
}

impl ClockCheck {
    pub fn new(clock: Arc<dyn Clock>, max_ahead: Duration) -> Self {
        Self {
            clock,
            max_ahead_ms: u64::try_from(max_ahead.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The wall clock with [`DEFAULT_MAX_AHEAD`].
    pub fn system() -> Self {
        Self::new(Arc::new(SystemClock), DEFAULT_MAX_AHEAD)
    }

    /// The same skew on `clock`.
    pub fn on(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    pub fn max_ahead(&self) -> Duration {
        Duration::from_millis(self.max_ahead_ms)
    }

    /// Moves the readings of `incoming` stamped more than the skew ahead of the clock to
    /// its refusals (counted in `gridwatch_ingest_rejected_total{reason="clock_ahead"}`).
    /// They are acknowledged as handled, like every refusal in a gateway batch; for a
    /// direct node, whose refusals are not acknowledged, the reading's (gateway, device,
    /// seq) is returned, to be acknowledged as if stored: the node would otherwise resend
    /// it for ever.
    pub(crate) fn quarantine_ahead(&self, incoming: &mut Incoming) -> Option<(String, String, u64)> {
        let limit = self.clock.now_ms().saturating_add(self.max_ahead_ms);
        if incoming.accepted.iter().all(|a| a.reading.ts() <= limit) {
            return None;
        }
        let mut handled = None;
        let (keep, ahead): (Vec<_>, Vec<_>) = std::mem::take(&mut incoming.accepted)
            .into_iter()
            .partition(|a| a.reading.ts() <= limit);
        incoming.accepted = keep;
        for a in ahead {
            let r = &a.reading;
            metrics::counter!("gridwatch_ingest_rejected_total", "reason" => CLOCK_AHEAD).increment(1);
            if incoming.source == Source::Node {
                handled = Some((a.gateway.clone(), r.device().to_string(), r.seq()));
            }
            incoming.refused.push(Refused {
                source: format!("gw/{}/dev/{}/{}", a.gateway, r.device(), r.kind().as_str()),
                reason: CLOCK_AHEAD,
                detail: format!(
                    "ts {} ms is {} ms ahead of ingest's clock (at most {} ms allowed)",
                    r.ts(),
                    r.ts() - (limit - self.max_ahead_ms),
                    self.max_ahead_ms
                ),
                payload: serde_json::to_vec(r).unwrap_or_default(),
            });
        }
        handled
    }
}

impl std::fmt::Debug for ClockCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockCheck")
            .field("now_ms", &self.clock.now_ms())
            .field("max_ahead_ms", &self.max_ahead_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_protocol::clock::ManualClock;

    const NOW: u64 = 1_764_061_200_000;

    fn batch(ts: &[u64]) -> Incoming {
        let readings: Vec<String> = ts
            .iter()
            .enumerate()
            .map(|(i, ts)| {
                format!(
                    r#"{{"kind":"event","v":1,"device":"L-1","seq":{},"ts":{ts},"body":{{"event":"alarm_button","code":0}}}}"#,
                    i + 1
                )
            })
            .collect();
        let payload = format!(
            r#"{{"v":1,"gateway":"gw1","batch":3,"readings":[{}]}}"#,
            readings.join(",")
        );
        crate::intake::classify("gw/gw1/batch", payload.as_bytes()).unwrap()
    }

    #[test]
    fn readings_beyond_the_skew_are_refused_and_late_ones_kept() {
        let check = ClockCheck::new(Arc::new(ManualClock::new(NOW)), Duration::from_secs(300));
        let year_2099 = 4_070_908_800_000;
        let mut incoming = batch(&[NOW - 3 * 86_400_000, NOW + 300_000, NOW + 300_001, year_2099]);
        assert_eq!(
            check.quarantine_ahead(&mut incoming),
            None,
            "a batch's refusals are acked with it"
        );
        let kept: Vec<u64> = incoming.accepted.iter().map(|a| a.reading.seq()).collect();
        assert_eq!(kept, [1, 2], "three days late and exactly at the skew are kept");
        let reasons: Vec<&str> = incoming.refused.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, [CLOCK_AHEAD, CLOCK_AHEAD]);
        assert_eq!(incoming.refused[0].source, "gw/gw1/dev/L-1/event");
    }

    #[test]
    fn a_direct_node_reading_ahead_is_handed_back_for_its_ack() {
        let check = ClockCheck::new(Arc::new(ManualClock::new(NOW)), Duration::from_secs(300));
        let payload = format!(
            r#"{{"v":1,"device":"L-1","seq":7,"ts":{},"body":{{"event":"alarm_button","code":0}}}}"#,
            NOW + 3_600_000
        );
        let mut incoming = crate::intake::classify("gw/gw1/dev/L-1/event", payload.as_bytes()).unwrap();
        assert_eq!(
            check.quarantine_ahead(&mut incoming),
            Some(("gw1".to_string(), "L-1".to_string(), 7))
        );
        assert!(incoming.accepted.is_empty());
        assert_eq!(incoming.refused[0].reason, CLOCK_AHEAD);
    }
}
