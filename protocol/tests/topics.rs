use gridwatch_protocol::*;
use proptest::prelude::*;

#[test]
fn node_topic_round_trips() {
    let t = Topic::Node {
        gateway: "gw-01",
        device: "L-0001",
        kind: Kind::Lift,
    };
    assert_eq!(t.write().as_str(), "gw/gw-01/dev/L-0001/lift");
    assert_eq!(Topic::parse("gw/gw-01/dev/L-0001/lift"), Ok(t));
    assert_eq!(Topic::parse("gw/gw-01/batch"), Ok(Topic::Batch { gateway: "gw-01" }));
    assert_eq!(Topic::parse("gw/gw-01/ack"), Ok(Topic::BatchAck { gateway: "gw-01" }));
    let ack = Topic::NodeAck {
        gateway: "gw-01",
        device: "L-0001",
    };
    assert_eq!(ack.write().as_str(), "gw/gw-01/ack/L-0001");
    assert_eq!(Topic::parse("gw/gw-01/ack/L-0001"), Ok(ack));
    let presence = Topic::GatewayPresence { gateway: "gw-01" };
    assert_eq!(presence.write().as_str(), "gw/gw-01/presence");
    assert_eq!(Topic::parse("gw/gw-01/presence"), Ok(presence));
    // A node's presence stays under its device.
    assert!(matches!(
        Topic::parse("gw/gw-01/dev/L-0001/presence"),
        Ok(Topic::Node {
            kind: Kind::Presence,
            ..
        })
    ));
}

#[test]
fn bad_topics_are_refused_with_reasons() {
    assert_eq!(
        Topic::parse("gw/gw-01/dev/L-0001/teleport"),
        Err(TopicError::UnknownKind)
    );
    assert_eq!(Topic::parse("gw/gw-01/dev//lift"), Err(TopicError::BadSegment));
    // Node acks moved to `gw/{gateway}/ack/{device}`: the old place is not a kind.
    assert_eq!(Topic::parse("gw/gw-01/dev/L-0001/ack"), Err(TopicError::UnknownKind));
    assert_eq!(Topic::parse("gw/gw-01/ack/"), Err(TopicError::BadSegment));
    assert_eq!(Topic::parse("elsewhere/x"), Err(TopicError::UnknownTopic));
    assert_eq!(Topic::parse("gw/+/presence"), Err(TopicError::BadSegment));
    assert_eq!(Topic::parse("gw/gw-01/presence/x"), Err(TopicError::UnknownTopic));
    assert_eq!(
        Topic::parse("gw/gw-01/dev/L-0001/lift/extra"),
        Err(TopicError::UnknownTopic)
    );
}

proptest! {
    #[test]
    fn any_valid_node_topic_round_trips(gw in "[a-z0-9_.-]{1,32}", dev in "[A-Za-z0-9_.-]{1,32}", k in 0usize..Kind::ALL.len()) {
        let t = Topic::Node { gateway: &gw, device: &dev, kind: Kind::ALL[k] };
        let text = t.write();
        prop_assert_eq!(Topic::parse(&text), Ok(t));
    }

    #[test]
    fn lift_status_round_trips_through_both_codecs(
        seq in 1u64..u64::MAX, ts in 1_577_836_800_000u64..4_102_444_800_000, floor in -9i16..=200,
        occupied: bool, alarm: bool, fault: u16, runs: u32,
    ) {
        let body = LiftStatus {
            mode: ServiceMode::Normal, motion: Motion::Up, door: Door::Closed, door_zone: true, floor,
            occupied, alarm, fault, power: Power::Battery, runs, door_cycles: runs / 2,
        };
        let m = Envelope::new(DeviceId::try_from("L-1").unwrap(), seq, ts, body);
        let mut buf = [0u8; MAX_MESSAGE_BYTES];
        let n = encode(&m, &mut buf).unwrap();
        prop_assert_eq!(&buf[..n], &codec::json::encode(&m)[..]);
        let back: Envelope<LiftStatus> = decode(&buf[..n]).unwrap();
        prop_assert_eq!(back, m);
    }
}
