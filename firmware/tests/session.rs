//! The MQTT session over a recording transport: will, birth, replay, back-off,
//! acks, resend and keep-alive, all on virtual time.
mod common;

use common::*;
use gridwatch_firmware::backoff::BackoffConfig;
use gridwatch_firmware::outbox::Outbox;
use gridwatch_firmware::record::NodeMessage;
use gridwatch_firmware::session::{Action, Received, Session, SessionConfig};
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{Birth, DeviceKind, Envelope, EventKind, MAX_MESSAGE_BYTES, NodeEvent, Presence};

const GW: &str = "gw-01";
const DEV: &str = "L-0001";

fn config() -> SessionConfig {
    let mut config = SessionConfig::new(GW, DEV, DeviceKind::Lift).unwrap();
    config.backoff = BackoffConfig {
        initial_ms: 1_000,
        max_ms: 8_000,
        jitter_permille: 0,
    };
    config
}

fn outbox() -> Outbox<Storage, CAPACITY> {
    Outbox::open(Storage::new(), 0).unwrap()
}

fn event(code: u16) -> NodeMessage {
    NodeMessage::Event(NodeEvent {
        event: EventKind::FaultRaised,
        code,
    })
}

fn topic(kind: &str) -> String {
    format!("gw/{GW}/dev/{DEV}/{kind}")
}

fn ack_topic() -> String {
    format!("gw/{GW}/ack/{DEV}")
}

#[test]
fn connect_sets_the_will_then_subscribes_announces_and_sends_the_birth() {
    let mut session = Session::new(config());
    let mut outbox = outbox();
    let mut transport = MockTransport::default();
    session.service(&mut transport, &mut outbox, T0);

    let sent = transport.take_sent();
    let offline = r#"{"v":1,"device":"L-0001","online":false}"#;
    let online = r#"{"v":1,"device":"L-0001","online":true}"#;
    assert_eq!(
        sent[..3],
        [
            Sent::Connect {
                client_id: DEV.into(),
                will_topic: topic("presence"),
                will_payload: offline.into(),
                will_retain: true
            },
            Sent::Subscribe(ack_topic()),
            Sent::Publish {
                topic: topic("presence"),
                payload: online.into(),
                retain: true
            },
        ]
    );
    json::decode::<Presence>(offline.as_bytes(), MAX_MESSAGE_BYTES).unwrap();
    let Sent::Publish {
        topic: birth_topic,
        payload,
        retain: false,
    } = &sent[3]
    else {
        panic!("{:?}", sent[3])
    };
    assert_eq!(birth_topic, &topic("birth"));
    let birth: Envelope<Birth> = json::decode(payload.as_bytes(), MAX_MESSAGE_BYTES).unwrap();
    assert_eq!((birth.seq, birth.ts, birth.body.boots), (1, T0, 1));
    assert_eq!(birth.body.fw.as_str(), env!("CARGO_PKG_VERSION"));
    assert_eq!(sent.len(), 4);
}

#[test]
fn reconnects_back_off_exponentially_and_reset_after_success() {
    let mut session = Session::new(config());
    let mut outbox = outbox();
    let mut transport = MockTransport {
        refuse_connects: true,
        ..MockTransport::default()
    };
    let mut attempts = Vec::new();
    let mut now = T0;
    while attempts.len() < 6 {
        let before = transport.sent.len();
        let wake = session.service(&mut transport, &mut outbox, now);
        if transport.sent.len() > before {
            attempts.push(now - T0);
        }
        assert!(wake > now, "never asks to be woken in the past");
        now = wake;
    }
    assert_eq!(attempts, [0, 1_000, 3_000, 7_000, 15_000, 23_000]);
    assert_eq!(session.stats().connect_failures, 6);

    transport.refuse_connects = false;
    let wake = session.service(&mut transport, &mut outbox, now);
    assert!(session.is_connected());
    // Drop the link: the first retry is back at the initial delay.
    transport.up = false;
    let retry = session.service(&mut transport, &mut outbox, wake);
    assert!(!session.is_connected());
    assert_eq!(retry, wake + 1_000);
    assert_eq!(session.next_action(wake, &outbox), Action::Wait { until_ms: retry });
}

#[test]
fn a_dropped_link_replays_from_the_oldest_unacked_record() {
    let mut session = Session::new(config());
    let mut outbox = outbox();
    let mut transport = MockTransport::default();
    for code in 0..4 {
        outbox.push(T0, event(code));
    }
    // Records 1-4, then the birth (5); the link dies after two readings went out.
    transport.publishes_before_failure = Some(3); // presence + two readings
    session.service(&mut transport, &mut outbox, T0);
    assert_eq!(transport.published_seqs(), [1, 2]);
    assert!(!session.is_connected());

    // The gateway had stored 1 and acks it while we reconnect.
    let now = T0 + 1_000;
    outbox.ack(1, now);
    transport.sent.clear();
    session.service(&mut transport, &mut outbox, now);
    assert_eq!(
        transport.published_seqs(),
        [2, 3, 4, 5, 6],
        "oldest first, then the new birth"
    );

    transport.ack(GW, DEV, 6);
    transport.sent.clear();
    session.service(&mut transport, &mut outbox, now + 10);
    assert!(outbox.is_empty());
    assert_eq!(transport.published_seqs(), Vec::<u64>::new());
}

#[test]
fn new_readings_go_out_as_they_are_buffered() {
    let mut session = Session::new(config());
    let mut outbox = outbox();
    let mut transport = MockTransport::default();
    session.service(&mut transport, &mut outbox, T0);
    transport.sent.clear();
    outbox.push(T0 + 5, event(9));
    session.service(&mut transport, &mut outbox, T0 + 5);
    let [Sent::Publish { topic: t, payload, .. }] = transport.sent.as_slice() else {
        panic!("{:?}", transport.sent)
    };
    assert_eq!(t, &topic("event"));
    let event: Envelope<NodeEvent> = json::decode(payload.as_bytes(), MAX_MESSAGE_BYTES).unwrap();
    assert_eq!((event.seq, event.ts, event.body.code), (2, T0 + 5, 9));
}

#[test]
fn silence_from_the_gateway_makes_the_node_send_everything_unacked_again() {
    let mut session = Session::new(config());
    let mut outbox = outbox();
    let mut transport = MockTransport::default();
    outbox.push(T0, event(1));
    let wake = session.service(&mut transport, &mut outbox, T0);
    assert_eq!(transport.published_seqs(), [1, 2]);
    // Pings keep the link alive in between, without resending.
    assert_eq!(wake, T0 + 15_000);
    transport.sent.clear();
    let wake = session.service(&mut transport, &mut outbox, wake);
    assert_eq!(transport.take_sent(), [Sent::Ping]);
    assert_eq!(wake, T0 + 30_000);
    session.service(&mut transport, &mut outbox, wake);
    assert_eq!(transport.published_seqs(), [1, 2]);
    assert_eq!(session.stats().resends, 1);
}

#[test]
fn acks_for_other_devices_or_malformed_are_rejected_and_counted() {
    let mut session = Session::new(config());
    let mut outbox = outbox();
    let mut transport = MockTransport::default();
    session.service(&mut transport, &mut outbox, T0);
    let ack_topic = ack_topic();
    let other = br#"{"v":1,"device":"L-0002","seq":1}"#;
    assert_eq!(
        session.received(&ack_topic, other, T0, &mut outbox),
        Received::Rejected(None)
    );
    assert!(matches!(
        session.received(&ack_topic, b"{", T0, &mut outbox),
        Received::Rejected(Some(_))
    ));
    assert_eq!(
        session.received("gw/gw-01/dev/L-0001/lift", b"{}", T0, &mut outbox),
        Received::Ignored
    );
    assert_eq!(session.stats().rejected, 2);
    assert_eq!(outbox.len(), 1);
    // An ack beyond anything issued only drops what exists.
    let ahead = br#"{"v":1,"device":"L-0001","seq":99}"#;
    assert_eq!(
        session.received(&ack_topic, ahead, T0, &mut outbox),
        Received::Ack { seq: 99, dropped: 1 }
    );
    assert_eq!(outbox.push(T0, event(1)), 2);
}

#[test]
fn bad_ids_are_refused() {
    assert!(SessionConfig::new("gw/01", DEV, DeviceKind::Lift).is_err());
    assert!(SessionConfig::new(GW, "", DeviceKind::Lift).is_err());
    assert!(SessionConfig::new(GW, "L+1", DeviceKind::Lift).is_err());
}
