//! The one loop every node image runs: sample when due, buffer what the node says,
//! let the session send it, and sleep until the next sample, the session's next
//! deadline or an incoming packet, whichever comes first.
use super::mqtt::{LinkDown, MqttLink};
use super::network::Network;
use super::settings;
use crate::clock::Clock;
use crate::outbox::Outbox;
use crate::report::Node;
use crate::session::{Action, Session};
use embassy_futures::select::{Either, select};
use embassy_time::{Instant, Timer};
use embedded_storage::Storage;

/// How often the clock is set again from NTP.
const RESYNC_MS: u64 = 6 * 3_600_000;
const NTP_RETRY_MS: u64 = 10_000;

/// Unix time from NTP plus the monotonic uptime since.
pub struct EpochClock {
    /// Unix ms at uptime 0.
    offset_ms: u64,
}

impl Clock for EpochClock {
    fn now_ms(&mut self) -> u64 {
        self.offset_ms + Instant::now().as_millis()
    }
}

impl EpochClock {
    /// Waits for the network and a first NTP answer: readings need real device time
    /// (the gateway rejects timestamps before 2020).
    async fn synchronise(network: &Network) -> Self {
        network.stack.wait_config_up().await;
        loop {
            if let Some(unix_ms) = network.unix_time_ms(settings::NTP_SERVER).await {
                return Self {
                    offset_ms: unix_ms - Instant::now().as_millis(),
                };
            }
            Timer::after_millis(NTP_RETRY_MS).await;
        }
    }

    fn instant_at(&self, unix_ms: u64) -> Instant {
        Instant::from_millis(unix_ms.saturating_sub(self.offset_ms))
    }
}

pub async fn run<N: Node, S: Storage, const CAPACITY: usize>(
    mut node: N,
    mut outbox: Outbox<S, CAPACITY>,
    mut session: Session,
    network: Network,
) -> ! {
    let mut clock = EpochClock::synchronise(&network).await;
    let mut next_resync_ms = clock.now_ms() + RESYNC_MS;
    let mut link = MqttLink::new(network.stack);
    loop {
        let now_ms = clock.now_ms();
        if now_ms >= next_resync_ms {
            if let Some(unix_ms) = network.unix_time_ms(settings::NTP_SERVER).await {
                clock.offset_ms = unix_ms - Instant::now().as_millis();
            }
            next_resync_ms = now_ms + RESYNC_MS;
        }
        for message in node.poll(now_ms) {
            outbox.push(now_ms, message);
        }
        let session_wake_ms = drive_session(&mut session, &mut link, &mut outbox, &mut clock).await;
        let sleep_until = clock.instant_at(session_wake_ms.min(node.next_poll_ms()));
        if !session.is_connected() {
            Timer::at(sleep_until).await;
            continue;
        }
        let incoming = match select(Timer::at(sleep_until), link.next_header()).await {
            Either::First(()) => Ok(()),
            Either::Second(Ok(header)) => {
                let now_ms = clock.now_ms();
                link.read_packet(header, |topic, payload| {
                    session.received(topic, payload, now_ms, &mut outbox);
                })
                .await
            }
            Either::Second(Err(e)) => Err(e),
        };
        if incoming.is_err() {
            link.drop_connection().await;
            session.disconnected(clock.now_ms());
        }
    }
}

/// Performs the session's actions until it has nothing to do; returns its wake time.
async fn drive_session<S: Storage, const CAPACITY: usize>(
    session: &mut Session,
    link: &mut MqttLink,
    outbox: &mut Outbox<S, CAPACITY>,
    clock: &mut EpochClock,
) -> u64 {
    loop {
        let now_ms = clock.now_ms();
        let outcome: Result<bool, LinkDown> = match session.next_action(now_ms, outbox) {
            Action::Wait { until_ms } => return until_ms,
            Action::Connect(request) => link.connect(&request).await.map(|()| true),
            Action::Subscribe { topic } => link.subscribe(topic).await.map(|()| false),
            Action::Publish(message) => link.publish(&message).await.map(|()| false),
            Action::Ping => link.ping().await.map(|()| false),
        };
        match outcome {
            Ok(true) => session.connected(now_ms, outbox),
            Ok(false) => session.sent(now_ms),
            Err(LinkDown) => {
                link.drop_connection().await;
                session.disconnected(now_ms);
            }
        }
    }
}
