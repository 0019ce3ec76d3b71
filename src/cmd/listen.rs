//! Listen addresses given as `HOST:PORT`: an IP address or a host name, resolved at start.
use anyhow::{Context, Result, anyhow};
use std::net::SocketAddr;

/// `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080`. The shape is checked when the
/// options are parsed, the name resolved by [`HostPort::resolve`] when the command starts.
#[derive(Debug, Clone)]
pub(crate) struct HostPort(String);

impl std::str::FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.parse::<SocketAddr>().is_ok() {
            return Ok(Self(text.to_string()));
        }
        let expected = || format!("{text:?}: expected HOST:PORT, e.g. 127.0.0.1:8080, [::1]:8080 or localhost:8080");
        let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
        let name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if host.is_empty() || !host.chars().all(name) || port.parse::<u16>().is_err() {
            return Err(expected());
        }
        Ok(Self(text.to_string()))
    }
}

impl HostPort {
    /// The address to bind: the IP given, or the first address the host name resolves to
    /// (in the order the system's resolver prefers).
    pub(crate) async fn resolve(&self, option: &str) -> Result<SocketAddr> {
        if let Ok(addr) = self.0.parse::<SocketAddr>() {
            return Ok(addr);
        }
        let hint = "give an IP address (127.0.0.1:8080) or a host name this machine resolves";
        let mut addrs = tokio::net::lookup_host(&self.0)
            .await
            .with_context(|| format!("{option} {}: the host name does not resolve; {hint}", self.0))?;
        let addr = addrs
            .next()
            .ok_or_else(|| anyhow!("{option} {}: the host name resolves to no address; {hint}", self.0))?;
        tracing::info!(option, host = %self.0, %addr, "listen address resolved");
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::HostPort;

    #[test]
    fn addresses_and_host_names_with_a_port_parse_and_others_say_what_is_expected() {
        for ok in ["127.0.0.1:8080", "[::1]:0", "localhost:8080", "api.example.org:443"] {
            assert!(ok.parse::<HostPort>().is_ok(), "{ok}");
        }
        for bad in [
            "localhost",
            "localhost:http",
            ":8080",
            "local host:80",
            "127.0.0.1:99999",
        ] {
            let e = bad.parse::<HostPort>().unwrap_err();
            assert!(e.contains("expected HOST:PORT"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn localhost_resolves_to_a_loopback_address() {
        let addr = "localhost:0"
            .parse::<HostPort>()
            .unwrap()
            .resolve("--http")
            .await
            .unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        let e = "no-such-host.invalid:80"
            .parse::<HostPort>()
            .unwrap()
            .resolve("--http")
            .await
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("--http no-such-host.invalid:80") && e.contains("does not resolve"),
            "{e}"
        );
    }
}
