//! An `mqtts://` uplink: the gateway reaches ingest's broker serving TLS, logs in with
//! a client certificate whose CN is its id (no secret in the URL), and its presence
//! arrives; without a CA file it refuses to start.
use gridwatch_broker::{Auth, BrokerConfig, Credentials, CredentialsFile, EmbeddedBroker, GuardConfig, Role, TlsFiles};
use gridwatch_gateway::{GatewayConfig, GatewayError};
use gridwatch_mqtt::{MqttUrl, TlsClientFiles};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const GATEWAY: &str = "gw-tls";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn an_mqtts_uplink_with_a_client_certificate_reaches_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let issue = |names: Vec<String>, cn: Option<&str>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if let Some(cn) = cn {
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = issue(vec!["localhost".into()], None);
    let (client_cert, client_key) = issue(Vec::new(), Some(GATEWAY));
    let ca_path = write(dir.path(), "ca.pem", &ca.pem());

    let credentials = dir.path().join("credentials.toml");
    let mut file = CredentialsFile::default();
    file.add(GATEWAY, Role::Gateway, None, 1).unwrap();
    file.save(&credentials).unwrap();
    let config = BrokerConfig {
        guard: GuardConfig {
            auth: Auth::Credentials {
                credentials: Arc::new(Credentials::open(&credentials).unwrap()),
                nodes_of: None,
            },
            tls: Some(TlsFiles {
                cert_chain: write(dir.path(), "server.pem", &server_cert),
                key: write(dir.path(), "server.key", &server_key),
                client_ca: Some(ca_path.clone()),
            }),
            ..GuardConfig::default()
        },
        ..BrokerConfig::default()
    };
    let mut ingest = EmbeddedBroker::start("ingesttls", &config, &["probe"]).unwrap();
    let (mut tx, mut rx) = ingest.take_link("probe").unwrap();
    tx.subscribe("gw/+/presence").unwrap();

    let uplink: MqttUrl = format!("mqtts://localhost:{}", ingest.addr.port()).parse().unwrap();
    let mut gateway = GatewayConfig::new(GATEWAY, uplink.clone(), dir.path().join("gw"));
    gateway.uplink_tls = Some(TlsClientFiles {
        ca: ca_path,
        cert_and_key: Some((
            write(dir.path(), "gw.pem", &client_cert),
            write(dir.path(), "gw.key", &client_key),
        )),
    });
    let _gateway = gridwatch_gateway::start(gateway).await.unwrap();
    let birth = tokio::time::timeout(Duration::from_secs(20), rx.next())
        .await
        .expect("the gateway's birth over TLS")
        .unwrap();
    assert_eq!(&birth.topic[..], format!("gw/{GATEWAY}/presence").as_bytes());

    let without_ca = GatewayConfig::new("gw-tls-2", uplink, dir.path().join("gw2"));
    assert!(matches!(
        gridwatch_gateway::start(without_ca).await,
        Err(GatewayError::UplinkCaMissing)
    ));
}
