pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("starting broker {name}: {source}")]
    Thread { name: String, source: std::io::Error },
    #[error("broker {name} could not listen on {addr} (is the address in use?)")]
    AddressInUse { name: String, addr: std::net::SocketAddr },
    #[error("broker {name} did not start listening on {addr} within 10 s")]
    NotListening { name: String, addr: std::net::SocketAddr },
    #[error("opening local link {id} on broker {name}: {detail}")]
    OpenLink { name: String, id: String, detail: String },
    #[error("no local link named {0} (already taken?)")]
    NoLink(String),
    #[error("broker guard: {0}")]
    Guard(#[from] crate::guard::GuardError),
    #[error("{0}")]
    Credentials(#[from] crate::credentials::CredentialsError),
    /// The broker is gone, or refused a subscription or publish on a local link.
    #[error("local link: {0}")]
    Link(String),
}
