//! Modbus slaves in front of the physics models: a lift controller and a commercial
//! dishwasher as the gateway polls them, with the register layouts of the shipped maps
//! `gateway/maps/lift-lc3000.toml` and `gateway/maps/dishwasher-dw500.toml`, and faults
//! that can be injected: no answer, slow answers, exception responses, garbage frames.
//!
//! The model advances to the slave's clock on every request: what a poll reads is the
//! physics at that moment.
use crate::lift::LiftModel;
use crate::sterilizer::SterilizerModel;
use gridwatch_protocol::clock::Clock;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_modbus::{ExceptionCode, Request, Response};

/// The model behind a slave.
#[derive(Debug)]
pub enum SlaveModel {
    Lift(Box<LiftModel>),
    Sterilizer(Box<SterilizerModel>),
}

/// What a slave does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Reads every request and answers none (a hung controller).
    NoAnswer,
    /// Answers each request this late.
    Slow(Duration),
    /// Answers every request with this exception code (e.g. 0x06, server busy).
    Exception(u8),
    /// Answers with bytes that are no Modbus frame.
    Garbage,
}

impl std::str::FromStr for Fault {
    type Err = String;

    /// `none`, `no-answer`, `slow:MS`, `exception:CODE` or `garbage`.
    fn from_str(s: &str) -> Result<Self, String> {
        let expected = || format!("{s:?}: expected none, no-answer, slow:MS, exception:CODE or garbage");
        Ok(match s.split_once(':') {
            None if s == "none" => Fault::None,
            None if s == "no-answer" => Fault::NoAnswer,
            None if s == "garbage" => Fault::Garbage,
            Some(("slow", ms)) => Fault::Slow(Duration::from_millis(ms.parse().map_err(|_| expected())?)),
            Some(("exception", code)) => Fault::Exception(code.parse().map_err(|_| expected())?),
            _ => return Err(expected()),
        })
    }
}

/// How requests are framed on the slave's TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Tcp,
    /// RTU frames over TCP, as behind a serial-to-Ethernet converter.
    RtuOverTcp,
}

/// The four Modbus tables of a slave at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    pub input: Vec<u16>,
    pub holding: Vec<u16>,
    pub coils: Vec<bool>,
    pub discrete: Vec<bool>,
}

struct State {
    model: SlaveModel,
    clock: Arc<dyn Clock>,
    fault: Fault,
    /// When each request arrived, for measuring poll periods.
    requests: Vec<Instant>,
    /// The car's height at the previous request: its direction of travel.
    last_height_mm: Option<f64>,
}

const MAX_LOGGED_REQUESTS: usize = 100_000;

impl State {
    fn tables(&mut self) -> Tables {
        let now = self.clock.now_ms();
        match &mut self.model {
            SlaveModel::Lift(m) => {
                m.advance_to(now.max(m.now_ms()));
                let motion = match self.last_height_mm.replace(m.height_mm()) {
                    _ if !m.is_moving() => 0,
                    Some(before) if m.height_mm() > before => 1,
                    Some(before) if m.height_mm() < before => 2,
                    _ => 0,
                };
                lift_tables(m, motion)
            }
            SlaveModel::Sterilizer(m) => {
                m.advance_to(now.max(m.now_ms()));
                sterilizer_tables(m)
            }
        }
    }
}

/// The LC-3000 layout (gateway/maps/lift-lc3000.toml).
fn lift_tables(m: &LiftModel, motion: u16) -> Tables {
    let hw = m.hardware();
    let door = if m.doors_closed() { 0 } else { 2 };
    // 75 kg a passenger on the load cell.
    let load = (m.passengers() as u16).saturating_mul(75);
    let fault = if hw.safety_circuit.is_active() { 0 } else { 1 };
    let mode = if hw.inspection.is_active() { 1 } else { 0 };
    let power = if hw.mains.is_active() { 0 } else { 1 };
    Tables {
        input: vec![
            m.nearest_floor() as u16,
            motion,
            door,
            load,
            fault,
            mode,
            power,
            0,
            0,
            0,
            0,
            0,
        ],
        holding: Vec::new(),
        coils: Vec::new(),
        discrete: vec![hw.door_zone.is_active(), hw.alarm.is_active()],
    }
}

/// The DW-500 layout (gateway/maps/dishwasher-dw500.toml).
fn sterilizer_tables(m: &SterilizerModel) -> Tables {
    let hw = m.hardware();
    let heating = hw.heater.is_active();
    let state = match (m.running(), heating) {
        (false, _) => 0,
        (true, true) => 2,
        (true, false) => 3,
    };
    Tables {
        input: vec![(m.temp_c() * 10.0).round() as i16 as u16],
        holding: vec![state, u16::from(!hw.door_closed.is_active())],
        coils: vec![heating, hw.power.is_active()],
        discrete: Vec::new(),
    }
}

fn answer(tables: &Tables, request: &Request<'_>) -> Result<Response, ExceptionCode> {
    fn slice<T: Clone>(table: &[T], address: u16, count: u16) -> Result<Vec<T>, ExceptionCode> {
        let (start, end) = (usize::from(address), usize::from(address) + usize::from(count));
        table
            .get(start..end)
            .map(<[T]>::to_vec)
            .ok_or(ExceptionCode::IllegalDataAddress)
    }
    match *request {
        Request::ReadInputRegisters(a, n) => slice(&tables.input, a, n).map(Response::ReadInputRegisters),
        Request::ReadHoldingRegisters(a, n) => slice(&tables.holding, a, n).map(Response::ReadHoldingRegisters),
        Request::ReadCoils(a, n) => slice(&tables.coils, a, n).map(Response::ReadCoils),
        Request::ReadDiscreteInputs(a, n) => slice(&tables.discrete, a, n).map(Response::ReadDiscreteInputs),
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

#[derive(Clone)]
struct Service {
    state: Arc<Mutex<State>>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for Service {
    type Request = Request<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Answer;

    fn call(&self, request: Request<'static>) -> Answer {
        let (fault, result) = {
            let mut state = self.state.lock().expect("slave state");
            if state.requests.len() < MAX_LOGGED_REQUESTS {
                state.requests.push(Instant::now());
            }
            let tables = state.tables();
            (state.fault, answer(&tables, &request))
        };
        Box::pin(async move {
            match fault {
                Fault::None | Fault::Garbage => result.map(Some),
                Fault::NoAnswer => Ok(None),
                Fault::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    result.map(Some)
                }
                Fault::Exception(code) => Err(ExceptionCode::new(code)),
            }
        })
    }
}

/// A transport that overwrites what the slave sends while the fault is [`Fault::Garbage`].
struct Garbling<T> {
    inner: T,
    state: Arc<Mutex<State>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Garbling<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Garbling<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.state.lock().expect("slave state").fault == Fault::Garbage {
            let garbage = vec![0xA5; buf.len()];
            return Pin::new(&mut self.inner).poll_write(cx, &garbage);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A running slave. Dropping it closes its port (connections already open keep
/// being served until their client closes them; [`ModbusSlave::stop`] ends them too).
pub struct ModbusSlave {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl ModbusSlave {
    /// Serves `model` on `listen` (port 0 picks one), its time read from `clock`.
    pub async fn start(
        model: SlaveModel,
        clock: Arc<dyn Clock>,
        listen: SocketAddr,
        framing: Framing,
    ) -> io::Result<ModbusSlave> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            model,
            clock,
            fault: Fault::None,
            requests: Vec::new(),
            last_height_mm: None,
        }));
        let server = tokio::spawn(serve(listener, framing, state.clone()));
        Ok(ModbusSlave { addr, state, server })
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.lock().expect("slave state").fault = fault;
    }

    /// Changes the model, e.g. applies a lift or sterilizer event.
    pub fn with_model<R>(&self, change: impl FnOnce(&mut SlaveModel) -> R) -> R {
        change(&mut self.state.lock().expect("slave state").model)
    }

    /// The tables as a poll would read them now.
    pub fn tables(&self) -> Tables {
        self.state.lock().expect("slave state").tables()
    }

    /// When each request so far arrived.
    pub fn requests(&self) -> Vec<Instant> {
        self.state.lock().expect("slave state").requests.clone()
    }

    /// Closes the port and every open connection: a slave switched off.
    pub fn stop(self) {
        self.server.abort();
    }
}

impl Drop for ModbusSlave {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(listener: tokio::net::TcpListener, framing: Framing, state: Arc<Mutex<State>>) {
    let on_connected = |stream: tokio::net::TcpStream, _peer: SocketAddr| {
        let _ = stream.set_nodelay(true);
        let transport = Garbling {
            inner: stream,
            state: state.clone(),
        };
        let service = Service { state: state.clone() };
        async move { Ok(Some((service, transport))) }
    };
    let on_error = |why: io::Error| tracing::debug!(%why, "modbus slave: connection ended");
    // The servers end their connections when this future is dropped (stop, drop).
    let result = match framing {
        Framing::Tcp => {
            tokio_modbus::server::tcp::Server::new(listener)
                .serve(&on_connected, on_error)
                .await
        }
        Framing::RtuOverTcp => {
            tokio_modbus::server::rtu_over_tcp::Server::new(listener)
                .serve(&on_connected, on_error)
                .await
        }
    };
    if let Err(why) = result {
        tracing::warn!(%why, "modbus slave stopped");
    }
}
