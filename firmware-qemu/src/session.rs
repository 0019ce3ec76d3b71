//! The MQTT session on the target over a fake broker connection and a virtual clock:
//! connect with the will, birth, resend after the timeout, back-off, acks; then the
//! whole node loop (lift node, outbox in FRAM, session) as the board runs it.
use crate::fakes::{FRAM_BYTES, FakeBroker, FramChip, Sent, T0, Text, VirtualClock};
use crate::lift::Shaft;
use core::fmt::Write;
use gridwatch_firmware::backoff::BackoffConfig;
use gridwatch_firmware::clock::Clock;
use gridwatch_firmware::fram::Mb85rs;
use gridwatch_firmware::outbox::Outbox;
use gridwatch_firmware::record::NodeMessage;
use gridwatch_firmware::report::Node;
use gridwatch_firmware::session::{Action, Received, Session, SessionConfig};
use gridwatch_firmware::storage::{RamStorage, storage_bytes};
use gridwatch_protocol::{DeviceKind, EventKind, Kind, NodeEvent};

const GW: &str = "gw-01";
const DEV: &str = "L-0001";
const CAPACITY: usize = 8;
type RamOutbox = Outbox<RamStorage<{ storage_bytes(CAPACITY) }>, CAPACITY>;

/// The session of lift `L-0001` under gateway `gw-01`, back-off without jitter.
pub(crate) fn config() -> SessionConfig {
    let mut config = SessionConfig::new(GW, DEV, DeviceKind::Lift).expect("valid ids");
    config.backoff = BackoffConfig {
        initial_ms: 1_000,
        max_ms: 8_000,
        jitter_permille: 0,
    };
    config
}

fn outbox() -> RamOutbox {
    Outbox::open(RamStorage::new(), 0).expect("a fresh outbox")
}

fn event(code: u16) -> NodeMessage {
    NodeMessage::Event(NodeEvent {
        event: EventKind::FaultRaised,
        code,
    })
}

/// The first service connects with the presence will, subscribes to the node's ack
/// topic, announces presence (retained) and sends the birth as seq 1.
pub(crate) fn connect_will_subscribe_presence_birth() {
    let mut session = Session::new(config());
    let mut outbox = outbox();
    let mut broker = FakeBroker::new(GW, DEV);
    session.service(&mut broker, &mut outbox, T0);
    assert!(session.is_connected());
    let sent = broker.take_sent();
    assert_eq!(
        sent[..],
        [
            Sent::Connect,
            Sent::Subscribe(broker.ack_topic()),
            Sent::Presence { online: true },
            Sent::Reading {
                kind: Kind::Birth,
                seq: 1,
                ts: T0
            },
        ]
    );
    let birth = broker.last_birth.expect("a birth");
    assert_eq!((birth.device_kind, birth.boots), (DeviceKind::Lift, 1));
    assert_eq!(birth.fw.as_str(), env!("CARGO_PKG_VERSION"));
    let stats = session.stats();
    assert_eq!((stats.connects, stats.published, stats.connect_failures), (1, 1, 0));
}

/// With no ack, the node pings at half the keep-alive and, 30 s after the last ack
/// (or connect), sends everything unacknowledged again, oldest first.
pub(crate) fn resends_after_the_timeout() {
    let mut session = Session::new(config());
    let mut outbox = outbox();
    let mut broker = FakeBroker::new(GW, DEV);
    let mut clock = VirtualClock::new(T0);
    outbox.push(T0, event(1));
    let wake = session.service(&mut broker, &mut outbox, clock.now_ms());
    assert_eq!(broker.readings()[..], [1, 2]);
    assert_eq!(wake, T0 + 15_000, "a ping is due at half the keep-alive");
    broker.sent.clear();

    clock.sleep_until(wake);
    let wake = session.service(&mut broker, &mut outbox, clock.now_ms());
    assert_eq!(broker.take_sent()[..], [Sent::Ping]);
    assert_eq!(wake, T0 + 30_000, "the resend is due 30 s after the connect");

    clock.sleep_until(wake);
    let wake = session.service(&mut broker, &mut outbox, clock.now_ms());
    assert_eq!(
        broker.take_sent()[..],
        [reading(1, T0), reading(2, T0)],
        "everything unacked, again"
    );
    assert_eq!(session.stats().resends, 1);
    assert_eq!(wake, T0 + 45_000, "then a ping 15 s after the last send");

    clock.sleep_until(wake);
    let wake = session.service(&mut broker, &mut outbox, clock.now_ms());
    assert_eq!(broker.take_sent()[..], [Sent::Ping]);
    assert_eq!(wake, T0 + 60_000, "and the next resend 30 s after the last one");
    clock.sleep_until(wake);
    let wake = session.service(&mut broker, &mut outbox, clock.now_ms());
    assert_eq!(broker.readings()[..], [1, 2]);
    assert_eq!(session.stats().resends, 2);
    broker.sent.clear();

    broker.ack(2);
    clock.sleep_until(T0 + 61_000);
    let wake_after_ack = session.service(&mut broker, &mut outbox, clock.now_ms());
    assert!(outbox.is_empty());
    assert!(broker.readings().is_empty());
    assert_eq!(wake_after_ack, wake, "with nothing to resend, only the ping is due");
    assert_eq!(session.stats().resends, 2);
}

fn reading(seq: u64, ts: u64) -> Sent {
    let kind = if seq == 2 { Kind::Birth } else { Kind::Event };
    Sent::Reading { kind, seq, ts }
}

/// Refused connects are retried after 1, 2, 4, 8, 8 s (cap 8 s, no jitter); a
/// connect resets the delay; with the default ±20 % jitter every delay stays in its band.
pub(crate) fn backs_off_and_resets() {
    let mut session = Session::new(config());
    let mut outbox = outbox();
    let mut broker = FakeBroker::new(GW, DEV);
    broker.refuse_connects = true;
    let mut clock = VirtualClock::new(T0);
    let mut attempts = heapless::Vec::<u64, 8>::new();
    while attempts.len() < 6 {
        let before = broker.sent.len();
        let wake = session.service(&mut broker, &mut outbox, clock.now_ms());
        if broker.sent.len() > before {
            attempts.push(clock.now_ms() - T0).expect("6 attempts");
        }
        clock.sleep_until(wake);
    }
    assert_eq!(attempts[..], [0, 1_000, 3_000, 7_000, 15_000, 23_000]);
    assert_eq!(session.stats().connect_failures, 6);
    assert_eq!(
        session.next_action(clock.now_ms() - 1, &outbox),
        Action::Wait {
            until_ms: clock.now_ms()
        }
    );

    broker.refuse_connects = false;
    let wake = session.service(&mut broker, &mut outbox, clock.now_ms());
    assert!(session.is_connected());
    broker.up = false; // the link drops
    let retry = session.service(&mut broker, &mut outbox, wake);
    assert!(!session.is_connected());
    assert_eq!(retry, wake + 1_000, "after a good connection, the initial delay again");

    let mut jittered = config();
    jittered.backoff = BackoffConfig::default();
    let mut session = Session::new(jittered);
    let mut broker = FakeBroker::new(GW, DEV);
    broker.refuse_connects = true;
    let mut now = T0;
    for nominal in [1_000u64, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000] {
        let retry = session.service(&mut broker, &mut outbox, now);
        let delay = retry - now;
        assert!(
            delay >= nominal * 4 / 5 && delay <= (nominal * 6 / 5).min(60_000),
            "delay {delay} ms for a nominal {nominal} ms"
        );
        now = retry;
    }
}

/// An ack on the node's topic drops what it covers; acks for another device or
/// malformed ones are rejected and counted; other topics are ignored; an ack beyond
/// the last seq only drops what exists.
pub(crate) fn acks_and_rejects() {
    let mut session = Session::new(config());
    let mut outbox = outbox();
    let mut broker = FakeBroker::new(GW, DEV);
    for code in 1..=3 {
        outbox.push(T0, event(code));
    }
    session.service(&mut broker, &mut outbox, T0);
    assert_eq!(outbox.len(), 4);
    broker.ack(2);
    session.service(&mut broker, &mut outbox, T0 + 10);
    assert_eq!(
        outbox.records().map(|r| r.seq).collect::<heapless::Vec<_, 4>>()[..],
        [3, 4]
    );

    let ack_topic = broker.ack_topic();
    let other = br#"{"v":1,"device":"L-0002","seq":4}"#;
    assert_eq!(
        session.received(&ack_topic, other, T0, &mut outbox),
        Received::Rejected(None)
    );
    assert!(matches!(
        session.received(&ack_topic, b"{\"v\":1,", T0, &mut outbox),
        Received::Rejected(Some(_))
    ));
    let mut lift_topic = Text::new();
    write!(lift_topic, "gw/{GW}/dev/{DEV}/lift").expect("64 bytes");
    assert_eq!(session.received(&lift_topic, b"{}", T0, &mut outbox), Received::Ignored);
    assert_eq!(session.stats().rejected, 2);
    assert_eq!(outbox.len(), 2);
    let ahead = br#"{"v":1,"device":"L-0001","seq":99}"#;
    assert_eq!(
        session.received(&ack_topic, ahead, T0, &mut outbox),
        Received::Ack { seq: 99, dropped: 2 }
    );
    assert_eq!(
        outbox.push(T0, event(1)),
        5,
        "seq goes on after the last issued, not after 99"
    );
}

/// The board's loop on virtual time: a lift node polled when due, every reading into
/// an outbox in FRAM, the session serviced over a broker whose gateway acks the highest
/// contiguous seq it has; the link is down for 20 s in the middle. Every seq reaches
/// the gateway, in order per connection, and everything is acked at the end.
pub(crate) fn node_loop_lift_fram_session() {
    let shaft = Shaft::parked();
    let mut car = shaft.node();
    let mut outbox: Outbox<_, 32> =
        Outbox::open(Mb85rs::new(FramChip::new(), FRAM_BYTES), 0).expect("the outbox opens on the FRAM");
    let mut session = Session::new(config());
    let mut broker = FakeBroker::new(GW, DEV);
    let mut clock = VirtualClock::new(T0);
    let mut received = [false; 64];
    let mut contiguous = 0u64;
    let mut last_on_link = 0u64;
    let end = T0 + 90_000;
    let outage = T0 + 30_000..T0 + 50_000;
    while clock.now_ms() < end {
        let now = clock.now_ms();
        let t = now - T0;
        // Something to report: the alarm button at 10 s and during the outage, mains
        // lost at 20 s and back at 60 s.
        shaft
            .alarm
            .set((10_000..12_000).contains(&t) || (35_000..37_000).contains(&t));
        shaft.mains.set(!(20_000..60_000).contains(&t));
        let link_down = outage.contains(&now);
        broker.refuse_connects = link_down;
        if link_down {
            broker.up = false;
        }

        for message in car.poll(now) {
            outbox.push(now, message);
        }
        let wake = session.service(&mut broker, &mut outbox, now);

        // The gateway stores what arrived and acks the highest seq with no gap before it.
        for sent in broker.take_sent() {
            match sent {
                Sent::Connect => last_on_link = 0,
                Sent::Reading { seq, .. } => {
                    assert!(seq > last_on_link, "seq {seq} after {last_on_link} on one connection");
                    last_on_link = seq;
                    received[seq as usize] = true;
                }
                _ => {}
            }
        }
        let before = contiguous;
        while received[contiguous as usize + 1] {
            contiguous += 1;
        }
        if contiguous > before && broker.up {
            broker.ack(contiguous);
        }
        clock.sleep_until(wake.min(car.next_poll_ms()));
    }

    // The last ack is still on its way: one more service takes it in.
    session.service(&mut broker, &mut outbox, clock.now_ms());
    let last_seq = outbox.stats().next_seq - 1;
    assert!(last_seq >= 8, "statuses, events and two births: {last_seq} readings");
    assert!(
        received[1..=last_seq as usize].iter().all(|&r| r),
        "every seq reached the gateway"
    );
    assert_eq!(contiguous, last_seq);
    assert!(outbox.is_empty(), "everything acked: {:?}", outbox.stats());
    let stats = session.stats();
    assert_eq!((stats.connects, stats.disconnects, stats.resends), (2, 1, 0));
    assert_eq!(outbox.stats().storage_errors, 0);
    assert_eq!(outbox.into_storage().release().refused_bytes, 0);
}
