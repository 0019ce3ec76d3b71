//! Offline rules: when a silent device counts as offline, and gateways, whose loss is
//! one alert for the gateway rather than one per device behind it.
use crate::china;
use crate::config::{AlertConfig, SterilizerConfig};
use crate::lifecycle::OpenAlerts;
use gridwatch_protocol::DeviceKind;
use serde::{Deserialize, Serialize};

/// The instant a device silent since `last_reading` becomes offline: lifts after a fixed
/// silence; sterilizers after that much silence within operating hours.
pub fn offline_deadline(kind: DeviceKind, last_reading: u64, cfg: &AlertConfig) -> Option<u64> {
    match kind {
        DeviceKind::Lift => Some(last_reading + cfg.offline.lift_after_s * 1000),
        DeviceKind::Sterilizer => {
            operating_deadline(last_reading, cfg.offline.sterilizer_after_s * 1000, &cfg.sterilizer)
        }
    }
}

/// The earliest instant by which `need_ms` of operating time (opening hours of operating
/// days) has passed since `from`; `None` if the kitchen never operates.
pub fn operating_deadline(from: u64, need_ms: u64, cfg: &SterilizerConfig) -> Option<u64> {
    let mut left = need_ms;
    let first = china::epoch_day(from);
    for day in first..first + 8 {
        let date = china::date_from_epoch_day(day);
        if !cfg.operates_on(china::iso_weekday(date)) {
            continue;
        }
        let opens = china::at(date, cfg.opens).max(from);
        let closes = china::at(date, cfg.closes);
        if closes <= opens {
            continue;
        }
        if closes - opens >= left {
            return Some(opens + left);
        }
        left -= closes - opens;
    }
    None
}

/// What the engine knows about a gateway at an instant, as a device behind it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayView {
    pub online: bool,
    /// The gateway's presence says it is connected, and its last heartbeat is recent:
    /// a silent device behind it is silent itself.
    pub present: bool,
    pub last_seen: Option<u64>,
}

/// Whether a silent device is offline at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineVerdict {
    Online,
    Offline,
    /// Silent, but its gateway has not delivered anything since the device's deadline:
    /// the gateway may be the one that is down, so wait for its verdict.
    Pending,
    /// Silent behind an offline gateway: the gateway's alert stands for it.
    BehindOfflineGateway,
}

pub fn offline_verdict(deadline: Option<u64>, now: u64, gateway: Option<GatewayView>) -> OfflineVerdict {
    let Some(deadline) = deadline.filter(|&d| now >= d) else {
        return OfflineVerdict::Online;
    };
    match gateway {
        None => OfflineVerdict::Offline,
        Some(g) if !g.online => OfflineVerdict::BehindOfflineGateway,
        Some(g) if g.present || g.last_seen.is_some_and(|t| t >= deadline) => OfflineVerdict::Offline,
        Some(_) => OfflineVerdict::Pending,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayMonitor {
    /// Ingest time of the gateway's last batch.
    pub last_seen: Option<u64>,
    /// The last presence message (`online`), when the caller reports presence.
    pub presence: Option<bool>,
    /// Ingest time of the last presence message (birth, heartbeat or will).
    #[serde(default)]
    pub presence_at: Option<u64>,
    /// Online at the last evaluation; a change re-evaluates the devices behind it.
    pub was_online: bool,
    pub alerts: OpenAlerts,
}

impl GatewayMonitor {
    pub fn seen(&mut self, now: u64) {
        self.last_seen = Some(self.last_seen.map_or(now, |t| t.max(now)));
        if self.presence == Some(false) && self.presence_at.is_none_or(|t| now > t) {
            // A batch proves it is back, even if its presence message is still to come;
            // readings from before its will do not.
            self.presence = None;
        }
    }

    /// A presence message at `at`: birth or heartbeat (`online`), or the last will.
    pub fn presence(&mut self, online: bool, at: u64) {
        self.presence = Some(online);
        self.presence_at = Some(self.presence_at.map_or(at, |t| t.max(at)));
    }

    /// An offline presence decides at once. A gateway whose presence says online is
    /// online (and present) until `gateway_presence_after_s` after its last sign of
    /// life, a heartbeat or a batch; one that never sent presence, until
    /// `gateway_after_s` after its last batch.
    pub fn view(&self, now: u64, cfg: &AlertConfig) -> GatewayView {
        let online = self.next_deadline(cfg).is_some_and(|t| now < t);
        GatewayView {
            online,
            present: online && self.presence == Some(true),
            last_seen: self.last_seen,
        }
    }

    /// When the gateway goes offline by silence, if nothing else happens.
    pub fn next_deadline(&self, cfg: &AlertConfig) -> Option<u64> {
        match self.presence {
            Some(false) => None,
            Some(true) => {
                let last_sign = self.presence_at.max(self.last_seen)?;
                Some(last_sign + cfg.offline.gateway_presence_after_s * 1000)
            }
            None => self.last_seen.map(|t| t + cfg.offline.gateway_after_s * 1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::china::{ClockTime, Date};

    #[test]
    fn sterilizer_silence_counts_only_within_operating_hours() {
        let cfg = SterilizerConfig::default(); // 10:00–20:30 every day
        let wed = Date::constant(2026, 11, 25);
        let night = china::at(wed, ClockTime::hm(22, 0));
        let next_morning = china::at(china::add_days(wed, 1), ClockTime::hm(10, 5));
        assert_eq!(operating_deadline(night, 300_000, &cfg), Some(next_morning));
        let noon = china::at(wed, ClockTime::hm(12, 0));
        assert_eq!(operating_deadline(noon, 300_000, &cfg), Some(noon + 300_000));
        // 10 min before closing, 15 min needed: 5 min more the next morning.
        let late = china::at(wed, ClockTime::hm(20, 20));
        assert_eq!(operating_deadline(late, 900_000, &cfg), Some(next_morning));
        let closed = SterilizerConfig {
            operating_days: vec![],
            ..cfg
        };
        assert_eq!(operating_deadline(noon, 1, &closed), None);
    }

    #[test]
    fn device_offline_waits_for_its_gateway() {
        let view = |online, present, last_seen| {
            Some(GatewayView {
                online,
                present,
                last_seen,
            })
        };
        assert_eq!(offline_verdict(Some(100), 99, None), OfflineVerdict::Online);
        assert_eq!(offline_verdict(Some(100), 100, None), OfflineVerdict::Offline);
        assert_eq!(
            offline_verdict(Some(100), 150, view(true, false, Some(90))),
            OfflineVerdict::Pending
        );
        assert_eq!(
            offline_verdict(Some(100), 150, view(true, false, Some(120))),
            OfflineVerdict::Offline
        );
        assert_eq!(
            offline_verdict(Some(100), 150, view(true, true, Some(10))),
            OfflineVerdict::Offline
        );
        assert_eq!(
            offline_verdict(Some(100), 150, view(false, false, Some(120))),
            OfflineVerdict::BehindOfflineGateway
        );
        assert_eq!(offline_verdict(None, 150, None), OfflineVerdict::Online);
    }

    #[test]
    fn gateway_presence_decides_and_a_batch_overrides_an_old_offline() {
        let cfg = AlertConfig::default();
        let mut g = GatewayMonitor::default();
        g.seen(1_000);
        assert!(g.view(300_999, &cfg).online);
        assert!(!g.view(301_000, &cfg).online);
        g.presence(true, 10_000);
        assert!(g.view(99_999, &cfg).present);
        g.presence(false, 2_000);
        assert!(!g.view(2_000, &cfg).online, "the will decides at once");
        g.seen(3_000);
        assert!(!g.view(3_000, &cfg).online, "a reading from before the will");
        g.seen(10_001);
        assert!(g.view(10_001, &cfg).online, "a batch after the will");
    }

    #[test]
    fn heartbeats_keep_a_gateway_present_and_their_silence_takes_it_offline() {
        let cfg = AlertConfig::default(); // heartbeat silence 90 s, batch silence 300 s
        let mut g = GatewayMonitor::default();
        g.seen(0);
        g.presence(true, 0);
        for at in (30_000..=600_000).step_by(30_000) {
            g.presence(true, at);
            let view = g.view(at + 1, &cfg);
            assert!(view.online && view.present, "no batch since 0, but heartbeats: {at}");
        }
        assert_eq!(g.next_deadline(&cfg), Some(690_000));
        let silent = g.view(690_000, &cfg);
        assert!(!silent.online && !silent.present);
        // A batch is a sign of life too, for as long as a heartbeat.
        g.seen(700_000);
        assert!(g.view(789_999, &cfg).present);
        assert!(!g.view(790_000, &cfg).online);
        // Without presence, batches alone: 300 s.
        let mut quiet = GatewayMonitor::default();
        quiet.seen(700_000);
        let view = quiet.view(999_999, &cfg);
        assert!(view.online && !view.present);
        assert!(!quiet.view(1_000_000, &cfg).online);
    }
}
