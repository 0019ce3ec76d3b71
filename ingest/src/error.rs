/// Why the ingest service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Storage(#[from] gridwatch_storage::Error),
    #[error("loading alerts, cases and register: {0}")]
    LoadDomain(gridwatch_storage::Error),
    #[error("embedded broker: {0}")]
    Broker(#[from] gridwatch_broker::BrokerError),
    #[error("binding HTTP on {addr}: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("waiting for SIGTERM or Ctrl-C: {0}")]
    Signal(std::io::Error),
    #[error("{0} during the stop: exited without finishing it")]
    StopAbandoned(&'static str),
    #[error("the stop took longer than {0:?}: exited without finishing it")]
    StopTimedOut(std::time::Duration),
    #[error("the write path stopped on a storage error retrying cannot fix (see the log)")]
    WritePathStopped,
}
