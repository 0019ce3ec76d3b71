//! A simulated node's network connection: one rumqttc client per connection,
//! opened and closed when the firmware's `Session` says so.
//!
//! rumqttc reconnects by itself; a node must not (its session owns the policy:
//! back-off, will, replay), so each connection is a fresh client whose event loop
//! stops at the first error. Cutting the network drops the TCP connection without an
//! MQTT DISCONNECT, so the broker publishes the node's last will, as it would when a
//! real node loses its uplink.
use gridwatch_firmware::session::{ConnectRequest, Publish};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a connection attempt may take (wall time) before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection could not be made or used (the node logs it and tries again
/// when its session says so).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("connection to {broker} refused")]
    Refused { broker: SocketAddr },
    #[error("no CONNACK from {broker} within {timeout:?}")]
    NoConnAck { broker: SocketAddr, timeout: Duration },
    #[error("not connected")]
    NotConnected,
    #[error("subscribing")]
    Subscribe(#[source] rumqttc::ClientError),
    #[error("publishing")]
    Publish(#[source] rumqttc::ClientError),
}

/// Something that arrived on the connection.
#[derive(Debug)]
pub(crate) enum Incoming {
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    /// The connection is gone (broker closed it, or an I/O error).
    Closed,
}

struct Connection {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The node's side of the network.
pub(crate) struct Link {
    broker: SocketAddr,
    connection: Option<Connection>,
    /// Notified whenever something arrives, so a runner can wait for any node.
    wake: Arc<Notify>,
}

impl Link {
    pub(crate) fn new(broker: SocketAddr, wake: Arc<Notify>) -> Self {
        Self {
            broker,
            connection: None,
            wake,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.connection.is_some()
    }

    /// Opens a clean MQTT session with the request's client id, keep-alive and will,
    /// and returns once the broker accepted it (CONNACK).
    pub(crate) async fn connect(&mut self, request: &ConnectRequest<'_>) -> Result<(), LinkError> {
        self.close();
        let mut options = MqttOptions::new(request.client_id, self.broker.ip().to_string(), self.broker.port());
        options.set_keep_alive(Duration::from_secs(u64::from(request.keep_alive_s.max(5))));
        options.set_clean_session(true);
        // The login the node keeps in its persistent identity, on every connect.
        if let Some(password) = request.password {
            options.set_credentials(request.client_id, password);
        }
        options.set_last_will(LastWill::new(
            request.will.topic,
            request.will.payload.to_vec(),
            QoS::AtLeastOnce,
            request.will.retain,
        ));
        let (client, mut events) = AsyncClient::new(options, 1024);
        // A node's packets are small: they must not wait for Nagle's algorithm.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        events.set_network_options(network);
        let (tx, incoming) = mpsc::unbounded_channel();
        let (connected_tx, connected) = oneshot::channel();
        let wake = self.wake.clone();
        let task = tokio::spawn(async move {
            let mut connected_tx = Some(connected_tx);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = connected_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Incoming::Message {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                        });
                        wake.notify_one();
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _ = tx.send(Incoming::Closed);
                        wake.notify_one();
                        return;
                    }
                }
            }
        });
        let connection = Connection { client, incoming, task };
        match tokio::time::timeout(CONNECT_TIMEOUT, connected).await {
            Ok(Ok(())) => {
                self.connection = Some(connection);
                Ok(())
            }
            Ok(Err(_)) => Err(LinkError::Refused { broker: self.broker }),
            Err(_) => Err(LinkError::NoConnAck {
                broker: self.broker,
                timeout: CONNECT_TIMEOUT,
            }),
        }
    }

    pub(crate) async fn subscribe(&mut self, topic: &str) -> Result<(), LinkError> {
        let connection = self.connection.as_ref().ok_or(LinkError::NotConnected)?;
        connection
            .client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(LinkError::Subscribe)
    }

    pub(crate) async fn publish(&mut self, message: &Publish<'_>) -> Result<(), LinkError> {
        let connection = self.connection.as_ref().ok_or(LinkError::NotConnected)?;
        connection
            .client
            .publish(
                message.topic,
                QoS::AtLeastOnce,
                message.retain,
                message.payload.to_vec(),
            )
            .await
            .map_err(LinkError::Publish)
    }

    /// Everything that arrived since the last call. A closed connection is reported
    /// once as [`Incoming::Closed`] and forgotten.
    pub(crate) fn drain(&mut self) -> Vec<Incoming> {
        let mut out = Vec::new();
        let Some(connection) = self.connection.as_mut() else {
            return out;
        };
        while let Ok(item) = connection.incoming.try_recv() {
            let closed = matches!(item, Incoming::Closed);
            out.push(item);
            if closed {
                self.connection = None;
                break;
            }
        }
        out
    }

    /// Drops the connection at once, without an MQTT DISCONNECT (the will is published).
    pub(crate) fn close(&mut self) {
        self.connection = None;
    }
}
