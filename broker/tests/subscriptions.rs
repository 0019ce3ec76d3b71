//! The filters the services subscribe to instead of `#`, checked with the
//! broker's own matcher: every topic but node acks reaches exactly one of them
//! (none twice, which would deliver it twice), and node acks reach none (which
//! would hand every ack back to the service that published it).
use gridwatch_protocol::{ALL_BUT_NODE_ACKS, GW_BUT_NODE_ACKS, Topic};
use proptest::prelude::*;
use rumqttd::protocol::matches;

fn matching(filters: &[&str], topic: &str) -> usize {
    filters.iter().filter(|filter| matches(topic, filter)).count()
}

/// Four-level topics whose third level is not `dev` share the node acks' shape:
/// no filter can tell them apart (MQTT filters cannot exclude).
fn in_the_ack_shape(levels: &[&str]) -> bool {
    levels.len() == 4 && levels[2] != "dev"
}

#[test]
fn node_acks_reach_no_subscription_and_every_other_gridwatch_topic_one() {
    let ack = Topic::NodeAck {
        gateway: "gw-1",
        device: "L-1",
    };
    assert_eq!(matching(&ALL_BUT_NODE_ACKS, &ack.write()), 0);
    assert_eq!(matching(&GW_BUT_NODE_ACKS, &ack.write()), 0);
    for topic in [
        "gw/gw-1/dev/L-1/lift",
        "gw/gw-1/dev/L-1/teleport",
        "gw/gw-1/dev/L-1/ack",
        "gw/gw-1/dev/L-1",
        "gw/gw-1/batch",
        "gw/gw-1/ack",
        "gw/gw-1",
        "gw",
        "gw/gw-1/dev/L-1/lift/extra/more",
    ] {
        assert_eq!(matching(&ALL_BUT_NODE_ACKS, topic), 1, "{topic}");
        assert_eq!(matching(&GW_BUT_NODE_ACKS, topic), 1, "{topic}");
    }
    // A broker shared with other applications: theirs are not ours.
    assert_eq!(matching(&GW_BUT_NODE_ACKS, "plant/line-2/temperature"), 0);
    assert_eq!(matching(&ALL_BUT_NODE_ACKS, "plant/line-2/temperature"), 1);
}

proptest! {
    #[test]
    fn every_topic_outside_the_ack_shape_reaches_exactly_one_filter(
        levels in prop::collection::vec(prop::sample::select(vec!["gw", "dev", "ack", "lift", "x", ""]), 1..9)
    ) {
        let topic = levels.join("/");
        let expected = usize::from(!in_the_ack_shape(&levels));
        prop_assert_eq!(matching(&ALL_BUT_NODE_ACKS, &topic), expected, "{}", topic);
        let ours = levels[0] == "gw";
        prop_assert_eq!(matching(&GW_BUT_NODE_ACKS, &topic), expected * usize::from(ours), "{}", topic);
    }
}
