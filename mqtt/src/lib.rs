//! MQTT client plumbing shared by the gateway, ingest and the simulators:
//! `mqtt://[user:password@]host:port` URLs, as given on the command line, and the
//! rumqttc options they make. It knows nothing of the embedded broker.
use rumqttc::MqttOptions;
use std::time::Duration;

mod tls;
pub use tls::{TlsBridge, TlsClientFiles, TlsError, client_config};

#[derive(Clone, PartialEq, Eq)]
pub struct MqttUrl {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    /// `mqtts://`: MQTT over TLS ([`TlsBridge`]).
    pub tls: bool,
}

// Never print the password.
impl std::fmt::Debug for MqttUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for MqttUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        match &self.credentials {
            Some((user, _)) => write!(f, "{scheme}://{user}:***@{}:{}", self.host, self.port),
            None => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

/// An MQTT URL that could not be read; the message says what was expected.
#[derive(Debug, thiserror::Error)]
#[error("MQTT URL {url:?}: {problem}")]
pub struct BadMqttUrl {
    url: String,
    problem: &'static str,
}

impl std::str::FromStr for MqttUrl {
    type Err = BadMqttUrl;

    fn from_str(s: &str) -> Result<Self, BadMqttUrl> {
        // Never echo a password back: the URL in errors is the redacted one.
        let bad = |problem| BadMqttUrl {
            url: match s.rsplit_once('@') {
                Some((_, hostport)) => format!("mqtt://***@{hostport}"),
                None => s.to_string(),
            },
            problem,
        };
        let (tls, rest) = match (s.strip_prefix("mqtt://"), s.strip_prefix("mqtts://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => {
                return Err(bad("must start with mqtt:// or mqtts://, e.g. mqtt://127.0.0.1:1883"));
            }
        };
        let (credentials, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                let (user, password) = userinfo
                    .split_once(':')
                    .ok_or_else(|| bad("credentials must be user:password"))?;
                (Some((user.to_string(), password.to_string())), hostport)
            }
            None => (None, rest),
        };
        let hostport = hostport.trim_end_matches('/');
        let default_port = if tls { "8883" } else { "1883" };
        let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, default_port));
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let port = port.parse().map_err(|_| bad("the port is not a number 1-65535"))?;
        Ok(MqttUrl {
            host: host.to_string(),
            port,
            credentials,
            tls,
        })
    }
}

impl MqttUrl {
    /// The same broker, logging in as `id` with `secret` (an identity of the
    /// brokers' credentials file).
    pub fn with_login(mut self, id: &str, secret: &str) -> Self {
        self.credentials = Some((id.to_string(), secret.to_string()));
        self
    }
}

impl From<std::net::SocketAddr> for MqttUrl {
    fn from(addr: std::net::SocketAddr) -> Self {
        MqttUrl {
            host: addr.ip().to_string(),
            port: addr.port(),
            credentials: None,
            tls: false,
        }
    }
}

/// Client options for `url` with a persistent session: the broker keeps our
/// subscriptions and queued QoS 1 messages across reconnects.
pub fn client_options(url: &MqttUrl, client_id: &str) -> MqttOptions {
    options_at(url.host.clone(), url.port, url, client_id)
}

/// [`client_options`] with the connection made to `host` (or a Unix socket's path).
fn options_at(host: String, port: u16, url: &MqttUrl, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_keep_alive(Duration::from_secs(15));
    options.set_clean_session(false);
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    if let Some((user, password)) = &url.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_hides_passwords() {
        let url: MqttUrl = "mqtt://gw1:s3cret@127.0.0.1:1884".parse().unwrap();
        assert_eq!(url.port, 1884);
        assert_eq!(url.credentials, Some(("gw1".into(), "s3cret".into())));
        assert_eq!(format!("{url:?}"), "mqtt://gw1:***@127.0.0.1:1884");
        assert_eq!("mqtt://localhost".parse::<MqttUrl>().unwrap().port, 1883);
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let url = MqttUrl::from(addr).with_login("L-1", "abc");
        assert_eq!(url, "mqtt://L-1:abc@127.0.0.1:9".parse().unwrap());
        let url: MqttUrl = "mqtts://gw1:s3cret@ingest.example".parse().unwrap();
        assert!(url.tls);
        assert_eq!(url.port, 8883);
        assert_eq!(url.to_string(), "mqtts://gw1:***@ingest.example:8883");
    }

    #[test]
    fn bad_urls_say_what_was_expected() {
        let e = "http://x:1".parse::<MqttUrl>().unwrap_err().to_string();
        assert!(e.contains("must start with mqtt://"), "{e}");
        let e = "mqtt://x:port".parse::<MqttUrl>().unwrap_err().to_string();
        assert!(e.contains("not a number"), "{e}");
    }
}
