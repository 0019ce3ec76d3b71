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
    /// The gateway's presence says it is connected.
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
    /// Online at the last evaluation; a change re-evaluates the devices behind it.
    pub was_online: bool,
    pub alerts: OpenAlerts,
}

impl GatewayMonitor {
    pub fn seen(&mut self, now: u64) {
        self.last_seen = Some(self.last_seen.map_or(now, |t| t.max(now)));
        if self.presence == Some(false) {
            // A batch proves it is back, even if its presence message is still to come.
            self.presence = None;
        }
    }

    /// Presence, when known, decides; otherwise the time since the last batch.
    pub fn view(&self, now: u64, cfg: &AlertConfig) -> GatewayView {
        let recent = self
            .last_seen
            .is_some_and(|t| now < t + cfg.offline.gateway_after_s * 1000);
        GatewayView {
            online: self.presence.unwrap_or(recent),
            present: self.presence == Some(true),
            last_seen: self.last_seen,
        }
    }

    /// When the gateway goes offline by silence, if nothing else happens.
    pub fn next_deadline(&self, cfg: &AlertConfig) -> Option<u64> {
        match self.presence {
            Some(_) => None,
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
        g.presence = Some(true);
        assert!(g.view(10_000_000, &cfg).online);
        g.presence = Some(false);
        assert!(!g.view(2_000, &cfg).online);
        g.seen(3_000);
        assert!(g.view(3_000, &cfg).online);
    }
}
