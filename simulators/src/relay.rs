//! A TCP relay that can be cut: a simulated network segment. A node's link to its
//! gateway and a gateway's uplink to ingest run through one each, so a scenario can
//! take them down (open connections drop without an MQTT DISCONNECT, new ones are
//! refused) and bring them back.
//!
//! The relay also keeps small MQTT packets from waiting: it sets `TCP_NODELAY` on both
//! sides and acknowledges every read at once (`TCP_QUICKACK`). Without that, a broker
//! that writes a PUBACK and then, milliseconds later, an application ack holds the
//! second packet for the peer's delayed ACK (Nagle's algorithm), about 40 ms per hop:
//! lock-step rounds would cost a multiple of that each.
use crate::{Error, Result};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

pub struct CuttableLink {
    /// Where to connect instead of the target.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    relays: Arc<Mutex<Vec<AbortHandle>>>,
    acceptor: JoinHandle<()>,
}

impl CuttableLink {
    /// Relays connections on a loopback port (any free one) to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let relay_error = |source| Error::Relay { target, source };
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(relay_error)?;
        let addr = listener.local_addr().map_err(relay_error)?;
        let up = Arc::new(AtomicBool::new(true));
        let relays: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let acceptor = {
            let (up, relays) = (up.clone(), relays.clone());
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the peer sees the connection close at once
                    }
                    let relay = tokio::spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(target).await {
                            relay(inbound, outbound).await;
                        }
                    });
                    let mut relays = relays.lock().expect("relay list");
                    relays.retain(|r| !r.is_finished());
                    relays.push(relay.abort_handle());
                }
            })
        };
        Ok(Self {
            addr,
            up,
            relays,
            acceptor,
        })
    }

    /// Drops every open connection and refuses new ones until [`CuttableLink::restore`].
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for relay in self.relays.lock().expect("relay list").drain(..) {
            relay.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
}

impl Drop for CuttableLink {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

async fn relay(a: TcpStream, b: TcpStream) {
    let _ = (a.set_nodelay(true), b.set_nodelay(true));
    let (a_read, a_write) = a.into_split();
    let (b_read, b_write) = b.into_split();
    // Either direction ending ends both: the peers see the connection drop.
    tokio::select! {
        _ = pump(a_read, b_write) => {}
        _ = pump(b_read, a_write) => {}
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        quick_ack(&from);
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(target_os = "linux")]
fn quick_ack(stream: &OwnedReadHalf) {
    let _ = socket2::SockRef::from(stream.as_ref()).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn quick_ack(_: &OwnedReadHalf) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_until_cut_and_refuses_while_down() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let link = CuttableLink::start(target).await.unwrap();
        let mut client = TcpStream::connect(link.addr).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        link.cut();
        assert_eq!(client.read(&mut buf).await.unwrap_or(0), 0, "the open connection drops");
        let mut refused = TcpStream::connect(link.addr).await.unwrap();
        assert_eq!(refused.read(&mut buf).await.unwrap_or(0), 0, "new ones close at once");

        link.restore();
        let mut again = TcpStream::connect(link.addr).await.unwrap();
        again.write_all(b"pong").await.unwrap();
        again.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }
}
