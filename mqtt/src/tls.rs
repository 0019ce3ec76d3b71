//! `mqtts://` for gridwatch's own clients (the gateway's uplink to ingest).
//!
//! rumqttc's TLS feature brings rustls-webpki 0.102 and rustls-pemfile, both under
//! RustSec advisories (docs/reliability.md, Supply chain). So the TLS is rustls 0.23
//! through tokio-rustls, as the brokers' own: rumqttc speaks plain MQTT to a private
//! Unix socket, and each connection on it is carried over a fresh TLS connection to the
//! broker. A refused or failed TLS connection closes the socket's connection, and
//! rumqttc reconnects as it would after any network error.
use crate::{MqttUrl, options_at};
use rumqttc::{MqttOptions, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpStream, UnixListener, UnixStream};

/// The PEM files of a TLS client: whom it trusts, and optionally who it is.
#[derive(Debug, Clone, Default)]
pub struct TlsClientFiles {
    /// CA certificates the broker's certificate must chain to.
    pub ca: PathBuf,
    /// A client certificate and its key: the broker takes the certificate's subject CN
    /// as the identity, instead of a password.
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {detail}", path.display())]
    Pem { path: PathBuf, detail: String },
    #[error("TLS client settings: {0}")]
    Config(#[from] rustls::Error),
    #[error("{host:?} is not a name or address a certificate can name")]
    ServerName { host: String },
    #[error("opening the local socket for TLS: {0}")]
    Socket(std::io::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            detail: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The rustls client settings for `files` (ring, as the brokers).
pub fn client_config(files: &TlsClientFiles) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&files.ca)? {
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match &files.cert_and_key {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let key_pem = read(key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
                path: key.clone(),
                detail: e.to_string(),
            })?;
            builder.with_client_auth_cert(certificates(cert)?, key_der)?
        }
    };
    Ok(Arc::new(config))
}

/// A private Unix socket whose connections are carried over TLS to one broker; the
/// bridge stops when this is dropped.
pub struct TlsBridge {
    socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for TlsBridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsBridge {
    /// Starts the bridge to `url`'s broker, whose certificate must name `url.host`.
    /// Needs a Tokio runtime.
    pub fn start(url: &MqttUrl, config: Arc<rustls::ClientConfig>) -> Result<Self, TlsError> {
        let name =
            ServerName::try_from(url.host.clone()).map_err(|_| TlsError::ServerName { host: url.host.clone() })?;
        // A directory only this user can enter: nobody else can reach the socket.
        let dir = tempfile::Builder::new()
            .prefix("gridwatch-mqtts-")
            .tempdir()
            .map_err(TlsError::Socket)?;
        let socket = dir.path().join("broker.sock");
        let listener = UnixListener::bind(&socket).map_err(TlsError::Socket)?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let broker = (url.host.clone(), url.port);
        let task = tokio::spawn(async move {
            loop {
                let Ok((local, _)) = listener.accept().await else {
                    continue;
                };
                let (connector, name, broker) = (connector.clone(), name.clone(), broker.clone());
                tokio::spawn(async move {
                    if let Err(e) = carry(local, &broker, connector, name).await {
                        tracing::warn!(broker = %format!("{}:{}", broker.0, broker.1), error = %e, "mqtts connection ended");
                    }
                });
            }
        });
        Ok(Self {
            socket,
            task,
            _dir: dir,
        })
    }

    /// [`crate::client_options`] for `url` through this bridge: rumqttc connects to the socket.
    pub fn client_options(&self, url: &MqttUrl, client_id: &str) -> MqttOptions {
        let mut options = options_at(self.socket.to_string_lossy().into_owned(), 0, url, client_id);
        options.set_transport(Transport::Unix);
        options
    }
}

/// One MQTT connection: the local socket's bytes over a new TLS connection and back.
async fn carry(
    mut local: UnixStream,
    broker: &(String, u16),
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
) -> std::io::Result<()> {
    let tcp = TcpStream::connect((broker.0.as_str(), broker.1)).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name, tcp).await?;
    tokio::io::copy_bidirectional(&mut local, &mut tls).await?;
    Ok(())
}
