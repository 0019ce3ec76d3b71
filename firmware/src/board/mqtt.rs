//! Carries out the session's [`Action`](crate::session::Action)s with rust-mqtt
//! (MQTT 5) over an embassy-net TCP socket.
//!
//! Readings go out at QoS 0: delivery is guaranteed by the gateway's application-level
//! acks and the session's replay/resend, and QoS 1 would only add a second in-flight
//! window that a replay of the whole buffer would have to respect. The ack
//! subscription is QoS 1, and the will is retained.
use super::settings;
use crate::session::{ConnectRequest, Publish};
use core::num::NonZero;
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Stack};
use embassy_time::Duration;
use rust_mqtt::Bytes;
use rust_mqtt::buffer::BumpBuffer;
use rust_mqtt::client::Client;
use rust_mqtt::client::event::Event;
use rust_mqtt::client::options::{
    ConnectOptions, DisconnectOptions, PublicationOptions, SubscriptionOptions, TopicReference, WillOptions,
};
use rust_mqtt::config::KeepAlive;
use rust_mqtt::header::FixedHeader;
use rust_mqtt::types::{MqttBinary, MqttString, TopicFilter, TopicName};
use static_cell::StaticCell;

/// One subscription, a few incoming QoS 1 acks in flight, no outgoing QoS 1, and no
/// topic aliases, user properties or subscription identifiers.
type MqttClient = Client<'static, 'static, TcpSocket<'static>, BumpBuffer<'static>, 1, 4, 1, 0, 0, 0, 0>;

/// Socket buffers: one reading (at most 512 bytes) plus headers fits either way.
const SOCKET_BUFFER: usize = 1024;
/// Incoming packets are acks of ~60 bytes; 512 leaves room for a retained surprise.
const MQTT_BUFFER: usize = 512;

/// The link failed; the session reconnects after its back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDown;

pub struct MqttLink {
    client: MqttClient,
    /// The TCP socket while the client does not hold it (between connections).
    idle_socket: Option<TcpSocket<'static>>,
}

impl MqttLink {
    /// Creates the link; call once (its buffers are static).
    pub fn new(stack: Stack<'static>) -> Self {
        static RX: StaticCell<[u8; SOCKET_BUFFER]> = StaticCell::new();
        static TX: StaticCell<[u8; SOCKET_BUFFER]> = StaticCell::new();
        static MQTT: StaticCell<[u8; MQTT_BUFFER]> = StaticCell::new();
        static BUMP: StaticCell<BumpBuffer<'static>> = StaticCell::new();
        let socket = TcpSocket::new(stack, RX.init([0; SOCKET_BUFFER]), TX.init([0; SOCKET_BUFFER]));
        let buffer = BUMP.init(BumpBuffer::new(MQTT.init([0; MQTT_BUFFER])));
        Self {
            client: Client::new(buffer),
            idle_socket: Some(socket),
        }
    }

    pub async fn connect(&mut self, request: &ConnectRequest<'_>) -> Result<(), LinkDown> {
        let mut socket = self.idle_socket.take().ok_or(LinkDown)?;
        socket.abort();
        // A silent broker must fail the link within 1.5 keep-alive periods.
        socket.set_timeout(Some(Duration::from_millis(u64::from(request.keep_alive_s) * 1_500)));
        let (address, port) = settings::BROKER;
        if socket.connect((Ipv4Address::from(address), port)).await.is_err() {
            self.idle_socket = Some(socket);
            return Err(LinkDown);
        }
        let will = WillOptions::new(topic_name(request.will.topic)?, binary(request.will.payload)?)
            .retain()
            .at_least_once();
        let keep_alive = NonZero::new(request.keep_alive_s).map_or(KeepAlive::Infinite, KeepAlive::Seconds);
        let options = ConnectOptions::new().clean_start().keep_alive(keep_alive).will(will);
        let client_id = MqttString::from_str(request.client_id).map_err(|_| LinkDown)?;
        match self.client.connect(socket, &options, Some(client_id)).await {
            Ok(_) => Ok(()),
            Err(_) => {
                self.drop_connection().await;
                Err(LinkDown)
            }
        }
    }

    pub async fn subscribe(&mut self, topic: &str) -> Result<(), LinkDown> {
        let filter = TopicFilter::new(MqttString::from_str(topic).map_err(|_| LinkDown)?).ok_or(LinkDown)?;
        self.client
            .subscribe(filter, &SubscriptionOptions::new().at_least_once())
            .await
            .map_err(|_| LinkDown)?;
        Ok(())
    }

    pub async fn publish(&mut self, message: &Publish<'_>) -> Result<(), LinkDown> {
        let mut options = PublicationOptions::new(TopicReference::Name(topic_name(message.topic)?));
        if message.retain {
            options = options.retain();
        }
        self.client
            .publish(&options, Bytes::from(message.payload))
            .await
            .map_err(|_| LinkDown)?;
        Ok(())
    }

    pub async fn ping(&mut self) -> Result<(), LinkDown> {
        self.client.ping().await.map_err(|_| LinkDown)
    }

    /// Waits for the next packet from the broker. Cancel-safe: the caller races it
    /// against its timer.
    pub async fn next_header(&mut self) -> Result<FixedHeader, LinkDown> {
        self.client.poll_header().await.map_err(|_| LinkDown)
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
            Err(_) => Err(LinkDown),
        };
        // SAFETY: the event and everything borrowed from the buffer were dropped above.
        unsafe { self.client.buffer_mut().reset() };
        result
    }

    /// Takes the socket back from the client after a failure, so the next connect can
    /// reuse it. Harmless when already disconnected.
    pub async fn drop_connection(&mut self) {
        if self.idle_socket.is_some() {
            return;
        }
        let socket = match self.client.abort().await {
            Ok(socket) => Some(socket),
            // The protocol is healthy (e.g. a refused topic): close it properly.
            Err(_) => self.client.disconnect(&DisconnectOptions::new()).await.ok(),
        };
        // Without its socket the link cannot come back; a reset restores it.
        self.idle_socket = Some(socket.expect("the MQTT client returns its socket"));
    }
}

fn topic_name(topic: &str) -> Result<TopicName<'_>, LinkDown> {
    TopicName::new(MqttString::from_str(topic).map_err(|_| LinkDown)?).ok_or(LinkDown)
}

fn binary(bytes: &[u8]) -> Result<MqttBinary<'_>, LinkDown> {
    MqttBinary::from_slice(bytes).map_err(|_| LinkDown)
}
