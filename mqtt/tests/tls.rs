//! `mqtts://` through the TLS bridge against the real embedded broker serving TLS: a
//! rumqttc client logs in with a password or with a client certificate alone, and a
//! broker whose certificate the client's CA did not sign is never reached.
use gridwatch_broker::{Auth, BrokerConfig, Credentials, CredentialsFile, EmbeddedBroker, GuardConfig, Role, TlsFiles};
use gridwatch_mqtt::{MqttUrl, TlsBridge, TlsClientFiles, client_config};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

struct Pki {
    ca: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        Pki {
            ca,
            issuer: rcgen::Issuer::new(params, ca_key),
        }
    }

    /// A certificate and key for `names` (server) or with subject CN `cn` (client), PEM.
    fn issue(&self, names: Vec<String>, cn: Option<&str>) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if let Some(cn) = cn {
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Whether the client gets its CONNACK and then the SUBACK of `topic`.
async fn round_trip(options: rumqttc::MqttOptions, topic: &str) -> bool {
    let (client, mut events) = AsyncClient::new(options, 10);
    let run = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => return true,
                Ok(_) => {}
                Err(e) => {
                    println!("{e}");
                    return false;
                }
            }
        }
    };
    tokio::time::timeout(DEADLINE, run).await.unwrap_or(false)
}

#[tokio::test]
async fn mqtts_reaches_the_broker_with_a_password_or_a_certificate_and_only_a_trusted_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (server_cert, server_key) = pki.issue(vec!["localhost".into()], None);
    let (client_cert, client_key) = pki.issue(Vec::new(), Some("reader"));
    let credentials_path = dir.path().join("credentials.toml");
    let mut file = CredentialsFile::default();
    let secret = file.add("reader", Role::Service, None, 1).unwrap();
    file.save(&credentials_path).unwrap();
    let config = BrokerConfig {
        guard: GuardConfig {
            auth: Auth::Credentials {
                credentials: Arc::new(Credentials::open(&credentials_path).unwrap()),
                nodes_of: None,
            },
            tls: Some(TlsFiles {
                cert_chain: write(dir.path(), "server.pem", &server_cert),
                key: write(dir.path(), "server.key", &server_key),
                client_ca: Some(write(dir.path(), "ca.pem", &pki.ca.pem())),
            }),
            ..GuardConfig::default()
        },
        ..BrokerConfig::default()
    };
    let broker = EmbeddedBroker::start("mqttstls", &config, &[]).unwrap();
    let url: MqttUrl = format!("mqtts://localhost:{}", broker.addr.port()).parse().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca.pem());

    let password = TlsBridge::start(
        &url,
        client_config(&TlsClientFiles {
            ca: ca.clone(),
            cert_and_key: None,
        })
        .unwrap(),
    )
    .unwrap();
    let login = url.clone().with_login("reader", &secret);
    assert!(round_trip(password.client_options(&login, "by-password"), "gw/x/batch").await);

    let files = TlsClientFiles {
        ca,
        cert_and_key: Some((
            write(dir.path(), "client.pem", &client_cert),
            write(dir.path(), "client.key", &client_key),
        )),
    };
    let certificate = TlsBridge::start(&url, client_config(&files).unwrap()).unwrap();
    assert!(round_trip(certificate.client_options(&url, "by-certificate"), "gw/y/batch").await);

    // A CA that did not sign the broker's certificate: the handshake fails, nothing is sent.
    let other = write(dir.path(), "other-ca.pem", &Pki::new().ca.pem());
    let untrusted = TlsBridge::start(
        &url,
        client_config(&TlsClientFiles {
            ca: other,
            cert_and_key: None,
        })
        .unwrap(),
    )
    .unwrap();
    assert!(!round_trip(untrusted.client_options(&login, "untrusting"), "gw/z/batch").await);
}

#[test]
fn unreadable_or_empty_pem_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let e = client_config(&TlsClientFiles {
        ca: missing,
        cert_and_key: None,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("nope.pem"), "{e}");
    let empty = write(dir.path(), "empty.pem", "");
    let e = client_config(&TlsClientFiles {
        ca: empty,
        cert_and_key: None,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty.pem") && e.contains("no certificate"), "{e}");
}
