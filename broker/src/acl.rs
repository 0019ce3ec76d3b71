//! What an identity may publish and subscribe to, from its role (the gridwatch
//! topic scheme, docs/protocol.md "Identity and access"):
//!
//! | role | publish | subscribe |
//! |---|---|---|
//! | node of gateway G | `gw/G/dev/{id}/+` | `gw/G/ack/{id}` |
//! | direct node (no gateway) | `gw/+/dev/{id}/+` | `gw/+/ack/{id}` |
//! | gateway | `gw/{id}/batch`, `gw/{id}/presence` (also its will) | `gw/{id}/ack` |
//! | service | nothing | any filter under `gw/` |
//! | load with prefix P (gateway G) | as every node and gateway whose id starts with P, through G or its own gateways | their acks |
//! | firm F | nothing | `feed/firm/F` (ingest publishes the firm's feed events there) |
//!
//! No network client may publish an ack: ingest and the gateway publish them
//! through local links, which do not pass the guard. Nobody may subscribe to `#`
//! or to anyone else's topics.
use crate::credentials::{Identity, Role};
use rumqttc::mqttbytes::matches;

/// The topics one connection may use.
#[derive(Debug, Clone)]
pub(crate) enum Acl {
    /// An open broker (`--allow-anonymous`): every topic.
    Open,
    Rules {
        publish: Vec<String>,
        subscribe: Vec<String>,
        /// Any filter under `gw/` (services).
        subscribe_under_gw: bool,
    },
    /// A load identity: the nodes and gateways whose ids start with `prefix`, through
    /// `gateway` or through gateways it plays itself.
    Load { prefix: String, gateway: Option<String> },
}

impl Acl {
    pub(crate) fn for_identity(identity: &Identity) -> Self {
        let id = &identity.id;
        match identity.role {
            Role::Node => {
                let gw = identity.gateway.as_deref().unwrap_or("+");
                Acl::Rules {
                    publish: vec![format!("gw/{gw}/dev/{id}/+")],
                    subscribe: vec![format!("gw/{gw}/ack/{id}")],
                    subscribe_under_gw: false,
                }
            }
            Role::Gateway => Acl::Rules {
                publish: vec![format!("gw/{id}/batch"), format!("gw/{id}/presence")],
                subscribe: vec![format!("gw/{id}/ack")],
                subscribe_under_gw: false,
            },
            Role::Service => Acl::Rules {
                publish: Vec::new(),
                subscribe: Vec::new(),
                subscribe_under_gw: true,
            },
            Role::Firm => Acl::Rules {
                publish: Vec::new(),
                // Unreachable without one: the credentials file refuses a firm identity
                // without its firm.
                subscribe: identity
                    .firm
                    .as_deref()
                    .map(|firm| vec![format!("feed/firm/{firm}")])
                    .unwrap_or_default(),
                subscribe_under_gw: false,
            },
            Role::Load => Acl::Load {
                // Unreachable without one: the credentials file refuses a load identity
                // without a prefix; an empty prefix would cover everyone.
                prefix: identity.prefix.clone().unwrap_or_else(|| "\u{0}".into()),
                gateway: identity.gateway.clone(),
            },
        }
    }

    pub(crate) fn may_publish(&self, topic: &str) -> bool {
        match self {
            Acl::Open => true,
            Acl::Rules { publish, .. } => {
                // A topic with wildcards is no topic (rumqttd would take it as one).
                !topic.contains(['+', '#']) && publish.iter().any(|allowed| matches(topic, allowed))
            }
            Acl::Load { prefix, gateway } => {
                let covered = |id: &str| !id.is_empty() && id.starts_with(prefix.as_str());
                let through = |gw: &str| covered(gw) || gateway.as_deref() == Some(gw);
                let segments: Vec<&str> = topic.split('/').collect();
                !topic.contains(['+', '#'])
                    && match segments.as_slice() {
                        ["gw", gw, "dev", device, leaf] => through(gw) && covered(device) && !leaf.is_empty(),
                        ["gw", gw, "batch"] => covered(gw),
                        _ => false,
                    }
            }
        }
    }

    /// A filter is allowed if it is one of the identity's filters, or a plain topic
    /// (no wildcards) that one of them matches.
    pub(crate) fn may_subscribe(&self, filter: &str) -> bool {
        match self {
            Acl::Open => true,
            Acl::Rules {
                subscribe,
                subscribe_under_gw,
                ..
            } => {
                if *subscribe_under_gw {
                    return filter.strip_prefix("gw/").is_some_and(|rest| !rest.is_empty());
                }
                subscribe
                    .iter()
                    .any(|allowed| filter == allowed || (!filter.contains(['+', '#']) && matches(filter, allowed)))
            }
            Acl::Load { prefix, gateway } => {
                let covered = |id: &str| !id.contains(['+', '#']) && !id.is_empty() && id.starts_with(prefix.as_str());
                match filter.split('/').collect::<Vec<_>>().as_slice() {
                    // All acks of a gateway it plays itself.
                    ["gw", gw, "ack"] | ["gw", gw, "ack", "+"] => covered(gw),
                    // One of its devices' acks, through its gateway or one it plays.
                    ["gw", gw, "ack", device] => covered(device) && (covered(gw) || gateway.as_deref() == Some(*gw)),
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: &str, role: Role, gateway: Option<&str>) -> Identity {
        Identity {
            id: id.into(),
            role,
            gateway: gateway.map(Into::into),
            secret_sha256: String::new(),
            created_ms: 0,
            revoked: false,
            prefix: (role == Role::Load).then(|| "ld".into()),
            firm: (role == Role::Firm).then(|| "MF04".into()),
        }
    }

    #[test]
    fn a_firm_reads_its_own_feed_topic_only() {
        let acl = Acl::for_identity(&identity("mf04-erp", Role::Firm, None));
        assert!(acl.may_subscribe("feed/firm/MF04"));
        for filter in [
            "feed/firm/MF01",
            "feed/firm/+",
            "feed/#",
            "#",
            "gw/+/batch",
            "feed/firm/MF04/#",
        ] {
            assert!(!acl.may_subscribe(filter), "{filter}");
        }
        assert!(!acl.may_publish("feed/firm/MF04"), "only ingest publishes the feed");
        assert!(!acl.may_publish("gw/gw-1/batch"));
    }

    #[test]
    fn a_node_uses_only_its_own_topics() {
        let acl = Acl::for_identity(&identity("L-1", Role::Node, Some("gw-1")));
        assert!(acl.may_publish("gw/gw-1/dev/L-1/lift"));
        assert!(acl.may_publish("gw/gw-1/dev/L-1/presence"));
        assert!(!acl.may_publish("gw/gw-1/dev/L-2/lift"), "another node");
        assert!(!acl.may_publish("gw/gw-2/dev/L-1/lift"), "another gateway");
        assert!(!acl.may_publish("gw/gw-1/ack/L-1"), "an ack");
        assert!(!acl.may_publish("gw/gw-1/ack"), "a batch ack");
        assert!(!acl.may_publish("gw/gw-1/batch"));
        assert!(!acl.may_publish("gw/gw-1/dev/L-1/+"));
        assert!(acl.may_subscribe("gw/gw-1/ack/L-1"));
        for filter in [
            "#",
            "gw/#",
            "gw/gw-1/ack/+",
            "gw/gw-1/ack/L-2",
            "gw/+/ack/L-1",
            "gw/gw-1/dev/L-1/lift",
        ] {
            assert!(!acl.may_subscribe(filter), "{filter}");
        }
    }

    #[test]
    fn a_direct_node_names_any_gateway_but_only_its_own_device() {
        let acl = Acl::for_identity(&identity("L-9", Role::Node, None));
        assert!(acl.may_publish("gw/site-3/dev/L-9/lift"));
        assert!(!acl.may_publish("gw/site-3/dev/L-8/lift"));
        assert!(acl.may_subscribe("gw/site-3/ack/L-9"));
        assert!(acl.may_subscribe("gw/+/ack/L-9"));
        assert!(!acl.may_subscribe("gw/+/ack/+"));
    }

    #[test]
    fn a_gateway_uses_only_its_batches_presence_and_acks() {
        let acl = Acl::for_identity(&identity("gw-1", Role::Gateway, None));
        assert!(acl.may_publish("gw/gw-1/batch"));
        assert!(!acl.may_publish("gw/gw-2/batch"));
        assert!(acl.may_publish("gw/gw-1/presence"));
        assert!(!acl.may_publish("gw/gw-2/presence"), "another gateway's presence");
        assert!(!acl.may_publish("gw/gw-1/ack"));
        assert!(!acl.may_publish("gw/gw-1/dev/L-1/lift"));
        assert!(acl.may_subscribe("gw/gw-1/ack"));
        assert!(!acl.may_subscribe("gw/gw-2/ack"));
        assert!(!acl.may_subscribe("gw/gw-1/#"));
        assert!(!acl.may_subscribe("#"));
    }

    #[test]
    fn a_service_reads_under_gw_and_publishes_nothing() {
        let acl = Acl::for_identity(&identity("monitor", Role::Service, None));
        assert!(acl.may_subscribe("gw/+/batch"));
        assert!(!acl.may_subscribe("#"));
        assert!(!acl.may_subscribe("gw/"));
        assert!(!acl.may_publish("gw/gw-1/ack"));
    }

    #[test]
    fn a_load_plays_the_nodes_and_gateways_of_its_prefix_and_nobody_else() {
        let acl = Acl::for_identity(&identity("bench", Role::Load, Some("gw-1")));
        assert!(
            acl.may_publish("gw/gw-1/dev/ld000001/lift"),
            "its node behind its gateway"
        );
        assert!(
            acl.may_publish("gw/ld-gw0001/dev/ld000001/lift"),
            "its node behind a gateway it plays"
        );
        assert!(acl.may_publish("gw/ld-gw0001/batch"), "a gateway it plays");
        assert!(!acl.may_publish("gw/gw-1/batch"), "the real gateway's batches");
        assert!(!acl.may_publish("gw/gw-1/dev/L-1/lift"), "a real node");
        assert!(!acl.may_publish("gw/gw-2/dev/ld000001/lift"), "another real gateway");
        assert!(!acl.may_publish("gw/ld-gw0001/ack"), "an ack");
        assert!(!acl.may_publish("gw/ld-gw0001/ack/ld000001"), "a node ack");
        assert!(!acl.may_publish("gw/gw-1/dev/ld000001/"));
        assert!(acl.may_subscribe("gw/ld-gw0001/ack/+"));
        assert!(acl.may_subscribe("gw/ld-gw0001/ack"));
        assert!(acl.may_subscribe("gw/gw-1/ack/ld000001"));
        for filter in [
            "#",
            "gw/gw-1/ack/+",
            "gw/gw-1/ack",
            "gw/+/ack/ld000001",
            "gw/gw-1/ack/L-1",
            "gw/ld-gw0001/#",
        ] {
            assert!(!acl.may_subscribe(filter), "{filter}");
        }
    }
}
