//! The outbox on the target, persisted through the real MB85RS driver into a fake FRAM
//! chip: records survive a reboot (a new driver and outbox on the same chip after a
//! power cycle) and leave oldest first.
use crate::fakes::{FRAM_BYTES, FakeBroker, FramChip, Sent, T0};
use crate::session::config;
use gridwatch_firmware::fram::Mb85rs;
use gridwatch_firmware::outbox::Outbox;
use gridwatch_firmware::record::NodeMessage;
use gridwatch_firmware::session::Session;
use gridwatch_protocol::{EventKind, Kind, NodeEvent};

/// The outbox lives here in the FRAM, after room for a config block.
const BASE: u32 = 512;

type FramOutbox<const N: usize> = Outbox<Mb85rs<FramChip>, N>;

fn open<const N: usize>(chip: FramChip) -> FramOutbox<N> {
    Outbox::open(Mb85rs::new(chip, FRAM_BYTES), BASE).expect("the outbox opens on the FRAM")
}

/// Power off and on: the FRAM keeps its bytes, the node starts from them.
fn reboot<const N: usize>(outbox: FramOutbox<N>) -> FramOutbox<N> {
    let mut chip = outbox.into_storage().release();
    chip.power_cycle();
    open(chip)
}

fn event(code: u16) -> NodeMessage {
    NodeMessage::Event(NodeEvent {
        event: EventKind::FaultRaised,
        code,
    })
}

fn seqs<const N: usize>(outbox: &FramOutbox<N>) -> heapless::Vec<u64, N> {
    outbox.records().map(|r| r.seq).collect()
}

/// Six readings, two acked, a reboot: the four others come back in order with their
/// times and bodies, seq continues at 7, and a session on the rebooted node publishes
/// them oldest first, then its birth. Nothing is written outside the outbox's region.
pub(crate) fn replays_oldest_first_after_reboot() {
    let mut outbox = open::<16>(FramChip::new());
    assert_eq!((outbox.stats().boots, outbox.stats().next_seq, outbox.len()), (1, 1, 0));
    for code in 1..=6u16 {
        let seq = outbox.push(T0 + u64::from(code) * 1_000, event(code));
        assert_eq!(seq, u64::from(code));
    }
    assert_eq!(outbox.ack(2, T0 + 7_000), 2);

    let mut outbox = reboot(outbox);
    assert_eq!(seqs(&outbox)[..], [3, 4, 5, 6]);
    for (record, code) in outbox.records().zip(3u16..) {
        assert_eq!(
            (record.ts, &record.message),
            (T0 + u64::from(code) * 1_000, &event(code))
        );
    }
    let stats = outbox.stats();
    assert_eq!(
        (
            stats.boots,
            stats.next_seq,
            stats.acked,
            stats.lost_at_recovery,
            stats.storage_errors
        ),
        (2, 7, 2, 0, 0)
    );

    let mut session = Session::new(config());
    let mut broker = FakeBroker::new("gw-01", "L-0001");
    session.service(&mut broker, &mut outbox, T0 + 60_000);
    assert_eq!(broker.readings()[..], [3, 4, 5, 6, 7], "oldest first, then the birth");
    assert_eq!(broker.last_birth.as_ref().map(|b| b.boots), Some(2));
    assert!(matches!(
        broker.sent.last(),
        Some(Sent::Reading {
            kind: Kind::Birth,
            seq: 7,
            ..
        })
    ));

    // A second reboot before any ack: the birth is kept too.
    let outbox = reboot(outbox);
    assert_eq!(seqs(&outbox)[..], [3, 4, 5, 6, 7]);
    assert_eq!(outbox.stats().boots, 3);

    let chip = outbox.into_storage().release();
    assert_eq!(chip.refused_bytes, 0, "every write set the latch first");
    let region = BASE as usize..BASE as usize + FramOutbox::<16>::STORAGE_BYTES;
    let memory = chip.memory();
    assert!(
        memory[..region.start].iter().all(|&b| b == 0),
        "nothing below the outbox"
    );
    assert!(memory[region.end..].iter().all(|&b| b == 0), "nothing above the outbox");
}

/// A full buffer drops its oldest record and counts it; the `BufferOverflow` event
/// goes out once an ack makes room, and the counts survive a reboot.
pub(crate) fn overflow_reported_when_room_returns() {
    let mut outbox = open::<4>(FramChip::new());
    for code in 1..=7u16 {
        outbox.push(T0, event(code));
    }
    assert_eq!(seqs(&outbox)[..], [4, 5, 6, 7]);
    assert_eq!(outbox.stats().dropped_total, 3);
    assert_eq!(outbox.ack(3, T0), 0, "acking only dropped records makes no room");
    assert_eq!(outbox.stats().dropped_unreported, 3);
    assert_eq!(outbox.ack(5, T0 + 1), 2);
    let last = outbox.records().last().expect("the overflow event");
    let overflow = NodeMessage::Event(NodeEvent {
        event: EventKind::BufferOverflow,
        code: 3,
    });
    assert_eq!((last.seq, last.ts, &last.message), (8, T0 + 1, &overflow));

    let outbox = reboot(outbox);
    assert_eq!(seqs(&outbox)[..], [6, 7, 8]);
    let stats = outbox.stats();
    assert_eq!(
        (stats.dropped_total, stats.dropped_unreported, stats.next_seq),
        (3, 0, 9)
    );
}
