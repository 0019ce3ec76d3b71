//! Where deliveries may go. By default only to public addresses: an endpoint's URL is a
//! firm's input, and without this check it could make the server send requests into its
//! own network (loopback, private, link-local and other special ranges: server-side
//! request forgery). Names are checked on every resolution ([`PublicOnly`]), so a name
//! that later resolves to a private address is refused too; literal addresses by
//! [`refused_literal`]. `WebhookConfig::allow_private_hosts` lifts both, for endpoints on
//! one's own network.
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether a delivery may go to `ip`: not loopback, private, link-local, shared (CGNAT),
/// unspecified, multicast, broadcast, documentation or unique-local.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b);
    let this_network = a == 0;
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || shared
        || this_network)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local())
}

/// Why a URL whose host is a literal address may not be delivered to, if it may not.
pub(crate) fn refused_literal(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?;
    // IPv6 hosts come in brackets; a name does not parse as an address.
    let ip: IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    (!is_public(ip)).then(|| refusal(&ip.to_string()))
}

fn refusal(what: &str) -> String {
    format!(
        "refused: {what} is not a public address; an operator may allow private endpoints with `gridwatch ingest --webhooks-allow-private-hosts`"
    )
}

/// The system's resolver with every non-public address dropped; a name left with none
/// fails with [`refusal`]'s reason.
pub(crate) struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() && !all.is_empty() {
                let addresses: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
                return Err(refusal(&format!("{host} ({})", addresses.join(", "))).into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_and_names_left_to_the_resolver() {
        assert!(
            refused_literal("http://127.0.0.1:8080/h")
                .unwrap()
                .contains("127.0.0.1")
        );
        assert!(refused_literal("http://[::1]/h").is_some());
        assert!(refused_literal("https://8.8.8.8/h").is_none());
        assert!(refused_literal("https://hooks.example/h").is_none());
    }

    #[tokio::test]
    async fn a_name_resolving_only_to_loopback_is_refused() {
        let name: Name = "localhost".parse().unwrap();
        let error = match PublicOnly.resolve(name).await {
            Ok(_) => panic!("localhost resolved"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("not a public address"), "{error}");
    }
}
