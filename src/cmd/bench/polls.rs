//! Modbus poll timing seen from the slaves: when each poll started, and how far each
//! start lay from its slot on the poller's fixed grid (`gateway/src/modbus/poll.rs`).
use std::time::Duration;
use tokio::time::Instant;

/// The starts of the polls in one slave's request times: polls start at most once a
/// period (the grid), and a poll's requests follow its first closely, so a request
/// half a period or more after the last start begins the next poll.
pub(super) fn starts(requests: &[Instant], period: Duration) -> Vec<Instant> {
    let mut starts: Vec<Instant> = Vec::new();
    for &at in requests {
        if starts.last().is_none_or(|&s| at.duration_since(s) >= period / 2) {
            starts.push(at);
        }
    }
    starts
}

/// How late each poll started against its slot: slot k is the first start plus k
/// periods (a poll that overran skips slots), and the least late poll is taken as on
/// time, so what it measures is the spread, not the network's constant latency.
pub(super) fn lateness(starts: &[Instant], period: Duration) -> Vec<Duration> {
    let Some(&first) = starts.first() else {
        return Vec::new();
    };
    let period_s = period.as_secs_f64();
    let offsets: Vec<f64> = starts
        .iter()
        .map(|s| {
            let since = s.duration_since(first).as_secs_f64();
            since - (since / period_s).round() * period_s
        })
        .collect();
    let least = offsets.iter().copied().fold(f64::INFINITY, f64::min);
    offsets
        .into_iter()
        .map(|o| Duration::from_micros(((o - least) * 1e6).round() as u64))
        .collect()
}

/// The `q`-quantile (0..=1) of sorted values.
pub(super) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_one_poll_make_one_start_and_lateness_is_against_the_grid() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let period = Duration::from_millis(1000);
        // Two requests a poll; the third poll 30 ms late, the fourth slot skipped.
        // A busy slave may see a poll's second request late (1300).
        let requests = [ms(5), ms(6), ms(1005), ms(1300), ms(2035), ms(2036), ms(4005), ms(4006)];
        let starts = starts(&requests, period);
        assert_eq!(starts, vec![ms(5), ms(1005), ms(2035), ms(4005)]);
        let mut late = lateness(&starts, period);
        assert_eq!(late[2], Duration::from_millis(30));
        late.sort();
        assert_eq!(quantile(&late, 0.5), Duration::ZERO);
        assert_eq!(quantile(&late, 1.0), Duration::from_millis(30));
        assert_eq!(quantile(&[], 0.99), Duration::ZERO);
    }
}
