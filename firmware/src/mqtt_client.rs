//! Carries out the session's [`Action`](crate::session::Action)s with rust-mqtt (MQTT 5)
//! over any `embedded_io_async::{Read, Write}` transport: an embassy-net TCP socket on
//! the board (`board::mqtt`), a tokio `TcpStream` behind `embedded-io-adapters` in the
//! host tests against a real gateway (`gateway/tests/mqtt5_node.rs`). Feature
//! `mqtt-client`; the board feature turns it on.
//!
//! Readings go out at QoS 0: delivery is guaranteed by the gateway's application-level
//! acks and the session's replay/resend, and QoS 1 would only add a second in-flight
//! window that a replay of the whole buffer would have to respect. The ack
//! subscription is QoS 1, and the will is retained.
use crate::session::{ConnectRequest, Publish};
use core::num::NonZero;
use rust_mqtt::Bytes;
use rust_mqtt::client::event::Event;
use rust_mqtt::client::options::{
    ConnectOptions, DisconnectOptions, PublicationOptions, SubscriptionOptions, TopicReference, WillOptions,
};
use rust_mqtt::client::{Client, MqttError};
use rust_mqtt::config::KeepAlive;
use rust_mqtt::header::FixedHeader;
use rust_mqtt::io::Transport;
use rust_mqtt::types::{MqttBinary, MqttString, TopicFilter, TopicName};

/// The buffer incoming packets are parsed into ([`MqttClient::new`]).
pub use rust_mqtt::buffer::BumpBuffer;

/// One subscription, a few incoming QoS 1 acks in flight, no outgoing QoS 1, and no
/// topic aliases, user properties or subscription identifiers.
type Inner<'b, T> = Client<'static, 'b, T, BumpBuffer<'b>, 1, 4, 1, 0, 0, 0, 0>;

/// Incoming packets are acks of ~60 bytes; 512 leaves room for a retained surprise.
pub const RECEIVE_BUFFER: usize = 512;

/// The link failed; the session reconnects after its back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDown;

/// The node's MQTT 5 client over the transport `T`.
pub struct MqttClient<'b, T: Transport> {
    client: Inner<'b, T>,
    /// Whether rust-mqtt holds a transport (from a connect until
    /// [`MqttClient::drop_connection`]).
    holds_transport: bool,
    /// Whether the connection is up and no call failed beyond recovery: it then ends
    /// with a DISCONNECT; otherwise rust-mqtt's `abort` ends it.
    healthy: bool,
    /// A transport that a connect did not get to use (its request was invalid).
    unused: Option<T>,
    /// The CONNACK reason code of the last connect the broker refused.
    refusal: Option<u8>,
}

impl<'b, T: Transport> MqttClient<'b, T> {
    /// A disconnected client that parses incoming packets into `buffer` (at least
    /// [`RECEIVE_BUFFER`] bytes).
    pub fn new(buffer: &'b mut BumpBuffer<'b>) -> Self {
        Self {
            client: Client::new(buffer),
            holds_transport: false,
            healthy: false,
            unused: None,
            refusal: None,
        }
    }

    /// Sends the CONNECT over `transport` (already connected) and waits for the
    /// CONNACK. The request's password is the node's secret; its user name is its client
    /// id (the device id). Without it the node connects anonymously, which only an open
    /// broker accepts. After a failure the client still holds the transport:
    /// [`MqttClient::drop_connection`] hands it back.
    pub async fn connect(&mut self, transport: T, request: &ConnectRequest<'_>) -> Result<(), LinkDown> {
        self.refusal = None;
        let Ok((options, client_id)) = connect_options(request) else {
            self.unused = Some(transport);
            return Err(LinkDown);
        };
        self.holds_transport = true;
        match self.client.connect(transport, &options, Some(client_id)).await {
            Ok(_) => {
                self.healthy = true;
                Ok(())
            }
            Err(e) => {
                if let MqttError::Disconnect { reason, .. } = e {
                    self.refusal = Some(reason.value());
                }
                Err(LinkDown)
            }
        }
    }

    /// The CONNACK reason code of the last connect, if the broker refused it
    /// (MQTT 5: 0x86 bad user name or password, 0x87 not authorized, ...).
    pub const fn refusal(&self) -> Option<u8> {
        self.refusal
    }

    pub async fn subscribe(&mut self, topic: &str) -> Result<(), LinkDown> {
        let filter = TopicFilter::new(MqttString::from_str(topic).map_err(|_| LinkDown)?).ok_or(LinkDown)?;
        let outcome = self
            .client
            .subscribe(filter, &SubscriptionOptions::new().at_least_once())
            .await;
        self.checked(outcome).map(drop)
    }

    pub async fn publish(&mut self, message: &Publish<'_>) -> Result<(), LinkDown> {
        let mut options = PublicationOptions::new(TopicReference::Name(topic_name(message.topic)?));
        if message.retain {
            options = options.retain();
        }
        let outcome = self.client.publish(&options, Bytes::from(message.payload)).await;
        self.checked(outcome).map(drop)
    }

    pub async fn ping(&mut self) -> Result<(), LinkDown> {
        let outcome = self.client.ping().await;
        self.checked(outcome)
    }

    /// Waits for the next packet from the broker. Cancel-safe: the caller races it
    /// against its timer.
    pub async fn next_header(&mut self) -> Result<FixedHeader, LinkDown> {
        let outcome = self.client.poll_header().await;
        self.checked(outcome)
    }

    /// Reads the packet `header` announced; hands a PUBLISH to `on_message`.
    pub async fn read_packet(
        &mut self,
        header: FixedHeader,
        on_message: impl FnOnce(&str, &[u8]),
    ) -> Result<(), LinkDown> {
        let result = match self.client.poll_body(header).await {
            Ok(Event::Publish(publish)) => {
                if let Some(topic) = publish.topic.name() {
                    on_message(topic.as_ref().as_ref(), publish.message.as_bytes());
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => {
                self.healthy &= e.is_recoverable();
                Err(LinkDown)
            }
        };
        // SAFETY: the event and everything borrowed from the buffer were dropped above.
        unsafe { self.client.buffer_mut().reset() };
        result
    }

    /// Ends the connection after a failure (or on purpose) and hands the transport
    /// back, so that the caller can close or reuse it. `None` when not connected.
    pub async fn drop_connection(&mut self) -> Option<T> {
        if let Some(transport) = self.unused.take() {
            return Some(transport);
        }
        if !core::mem::replace(&mut self.holds_transport, false) {
            return None;
        }
        if core::mem::replace(&mut self.healthy, false) {
            match self.client.disconnect(&DisconnectOptions::new()).await {
                Ok(transport) => return Some(transport),
                // Recoverable: nothing was sent, and the connection is still up.
                Err(e) if e.is_recoverable() => {}
                // The DISCONNECT failed: the client is in its error state, which abort ends.
                Err(_) => return self.client.abort().await.ok(),
            }
        }
        self.client.abort().await.ok()
    }

    /// `outcome` without its error, which marks the connection broken unless
    /// rust-mqtt says it is recoverable.
    fn checked<R>(&mut self, outcome: Result<R, MqttError<'_, 0>>) -> Result<R, LinkDown> {
        outcome.map_err(|e| {
            self.healthy &= e.is_recoverable();
            LinkDown
        })
    }
}

/// A clean session with the session's will; user name and password when the request has one.
fn connect_options<'r>(request: &ConnectRequest<'r>) -> Result<(ConnectOptions<'r>, MqttString<'r>), LinkDown> {
    let will = WillOptions::new(topic_name(request.will.topic)?, binary(request.will.payload)?)
        .retain()
        .at_least_once();
    let keep_alive = NonZero::new(request.keep_alive_s).map_or(KeepAlive::Infinite, KeepAlive::Seconds);
    let mut options = ConnectOptions::new().clean_start().keep_alive(keep_alive).will(will);
    let client_id = MqttString::from_str(request.client_id).map_err(|_| LinkDown)?;
    if let Some(secret) = request.password {
        options = options
            .user_name(client_id.clone())
            .password(binary(secret.as_bytes())?);
    }
    Ok((options, client_id))
}

fn topic_name(topic: &str) -> Result<TopicName<'_>, LinkDown> {
    TopicName::new(MqttString::from_str(topic).map_err(|_| LinkDown)?).ok_or(LinkDown)
}

fn binary(bytes: &[u8]) -> Result<MqttBinary<'_>, LinkDown> {
    MqttBinary::from_slice(bytes).map_err(|_| LinkDown)
}
