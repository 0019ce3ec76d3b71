//! The node's MQTT link on the board: the crate's [`MqttClient`] (rust-mqtt, MQTT 5)
//! over one embassy-net TCP socket to the broker in [`settings::BROKER`], logging in
//! with the secret of the node's persistent identity (`crate::identity`).
use super::settings;
use crate::mqtt_client::{MqttClient, RECEIVE_BUFFER};
use crate::session::{ConnectRequest, Publish};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Stack};
use embassy_time::Duration;
use rust_mqtt::buffer::BumpBuffer;
use rust_mqtt::header::FixedHeader;
use static_cell::StaticCell;

pub use crate::mqtt_client::LinkDown;

/// Socket buffers: one reading (at most 512 bytes) plus headers fits either way.
const SOCKET_BUFFER: usize = 1024;

pub struct MqttLink {
    client: MqttClient<'static, TcpSocket<'static>>,
    /// The TCP socket while the client does not hold it (between connections).
    idle_socket: Option<TcpSocket<'static>>,
}

impl MqttLink {
    /// Creates the link; call once (its buffers are static).
    pub fn new(stack: Stack<'static>) -> Self {
        static RX: StaticCell<[u8; SOCKET_BUFFER]> = StaticCell::new();
        static TX: StaticCell<[u8; SOCKET_BUFFER]> = StaticCell::new();
        static MQTT: StaticCell<[u8; RECEIVE_BUFFER]> = StaticCell::new();
        static BUMP: StaticCell<BumpBuffer<'static>> = StaticCell::new();
        let socket = TcpSocket::new(stack, RX.init([0; SOCKET_BUFFER]), TX.init([0; SOCKET_BUFFER]));
        let buffer = BUMP.init(BumpBuffer::new(MQTT.init([0; RECEIVE_BUFFER])));
        Self {
            client: MqttClient::new(buffer),
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
        let connected = self.client.connect(socket, request).await;
        if connected.is_err() {
            self.drop_connection().await;
        }
        connected
    }

    pub async fn subscribe(&mut self, topic: &str) -> Result<(), LinkDown> {
        self.client.subscribe(topic).await
    }

    pub async fn publish(&mut self, message: &Publish<'_>) -> Result<(), LinkDown> {
        self.client.publish(message).await
    }

    pub async fn ping(&mut self) -> Result<(), LinkDown> {
        self.client.ping().await
    }

    /// Waits for the next packet from the broker. Cancel-safe: the caller races it
    /// against its timer.
    pub async fn next_header(&mut self) -> Result<FixedHeader, LinkDown> {
        self.client.next_header().await
    }

    /// Reads the packet `header` announced; hands a PUBLISH to `on_message`.
    pub async fn read_packet(
        &mut self,
        header: FixedHeader,
        on_message: impl FnOnce(&str, &[u8]),
    ) -> Result<(), LinkDown> {
        self.client.read_packet(header, on_message).await
    }

    /// Takes the socket back from the client after a failure, so the next connect can
    /// reuse it. Harmless when already disconnected.
    pub async fn drop_connection(&mut self) {
        if self.idle_socket.is_some() {
            return;
        }
        // Without its socket the link cannot come back; a reset restores it.
        let socket = self.client.drop_connection().await;
        self.idle_socket = Some(socket.expect("the MQTT client returns its socket"));
    }
}
