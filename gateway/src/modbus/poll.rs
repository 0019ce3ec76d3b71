//! One device's poll loop, on its own task: a dead or slow slave delays only itself.
//!
//! Every `period` the loop reads the map's blocks. A request that takes longer than
//! `timeout`, or fails on the connection, drops the connection (a late answer must not
//! be taken for the next request's) and is tried again on a new one up to `retries`
//! times. A poll that gets no answer at all starts an outage: the next attempt comes
//! after a back-off that doubles up to `backoff_max` and never gives up; the first
//! answer ends it and the schedule restarts from then.
use super::map::{Block, Data, Function, RegisterMap};
use super::status::Tracker;
use super::{ModbusDevice, Transport};
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::clock::Clock;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::{ExceptionCode, Slave};

/// Why a poll got no data.
enum Failure {
    /// The slave answered with an exception: it is alive, the poll is lost.
    Exception(ExceptionCode),
    /// No (usable) answer: connection refused or lost, a garbled frame...
    NoAnswer,
    /// ...or none within the timeout.
    TimedOut,
}

pub(crate) async fn run(
    device: ModbusDevice,
    mut tracker: Tracker,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn Fn(Reading) + Send + Sync>,
) {
    let name = device.device.clone();
    let mut context: Option<Context> = None;
    let mut failures: u32 = 0;
    let mut next = Instant::now();
    metrics::gauge!("gridwatch_gateway_modbus_up", "device" => name.clone()).set(0.0);
    loop {
        sleep_until(next).await;
        let started = Instant::now();
        match poll_with_retries(&device, &mut context).await {
            Ok(data) => {
                metrics::histogram!("gridwatch_gateway_modbus_poll_seconds", "device" => name.clone())
                    .record(started.elapsed().as_secs_f64());
                if failures > 0 {
                    tracing::info!(device = %name, after = failures, "modbus slave answers again");
                    next = started;
                }
                failures = 0;
                metrics::gauge!("gridwatch_gateway_modbus_up", "device" => name.clone()).set(1.0);
                match device.map.decode(&data) {
                    Ok(values) => {
                        for reading in tracker.update(&values, clock.now_ms()) {
                            sink(reading);
                        }
                    }
                    Err(why) => {
                        metrics::counter!("gridwatch_gateway_modbus_decode_errors_total", "device" => name.clone())
                            .increment(1);
                        tracing::warn!(device = %name, %why, "modbus answer does not fit the map");
                    }
                }
                next = next_tick(next, device.poll.period);
            }
            Err(Failure::Exception(code)) => {
                metrics::counter!(
                    "gridwatch_gateway_modbus_exceptions_total",
                    "device" => name.clone(),
                    "code" => format!("{:#04x}", u8::from(code)),
                )
                .increment(1);
                tracing::debug!(device = %name, ?code, "modbus exception");
                failures = 0;
                next = next_tick(next, device.poll.period);
            }
            Err(Failure::NoAnswer | Failure::TimedOut) => {
                if failures == 0 {
                    tracing::warn!(device = %name, "modbus slave does not answer; retrying with back-off");
                }
                failures = failures.saturating_add(1);
                metrics::gauge!("gridwatch_gateway_modbus_up", "device" => name.clone()).set(0.0);
                next = Instant::now() + backoff(&device, failures);
            }
        }
    }
}

/// The next slot on the period's grid after now: a slow poll skips slots instead of
/// bunching the ones it missed.
fn next_tick(previous: Instant, period: Duration) -> Instant {
    let mut next = previous + period;
    let now = Instant::now();
    if next <= now {
        let behind = now.duration_since(next).as_nanos() / period.as_nanos().max(1);
        next += period * (behind as u32 + 1);
    }
    next
}

/// The wait after the `failures`-th poll without an answer: one period, doubling, capped.
fn backoff(device: &ModbusDevice, failures: u32) -> Duration {
    let doubled = device.poll.period.saturating_mul(1u32 << (failures - 1).min(16));
    doubled.min(device.poll.backoff_max)
}

async fn poll_with_retries(device: &ModbusDevice, context: &mut Option<Context>) -> Result<Vec<Data>, Failure> {
    for attempt in 0..=device.poll.retries {
        if context.is_none() {
            match timeout(device.poll.timeout, connect(device)).await {
                Ok(Ok(c)) => *context = Some(c),
                Ok(Err(why)) => {
                    metrics::counter!("gridwatch_gateway_modbus_connect_errors_total", "device" => device.device.clone())
                        .increment(1);
                    tracing::debug!(device = %device.device, attempt, %why, "modbus connect failed");
                    continue;
                }
                Err(_) => {
                    count_timeout(device);
                    continue;
                }
            }
        }
        let ctx = context.as_mut().expect("connected above");
        match read_all(ctx, &device.map, device.poll.timeout).await {
            Ok(data) => return Ok(data),
            Err(Failure::Exception(code)) => return Err(Failure::Exception(code)),
            Err(Failure::TimedOut) => {
                count_timeout(device);
                *context = None;
            }
            Err(Failure::NoAnswer) => *context = None,
        }
    }
    Err(Failure::NoAnswer)
}

fn count_timeout(device: &ModbusDevice) {
    metrics::counter!("gridwatch_gateway_modbus_timeouts_total", "device" => device.device.clone()).increment(1);
}

async fn connect(device: &ModbusDevice) -> std::io::Result<Context> {
    let slave = Slave(device.unit_id.unwrap_or(device.map.unit_id));
    match &device.transport {
        Transport::Tcp(addr) => tokio_modbus::client::tcp::connect_slave(*addr, slave).await,
        Transport::RtuOverTcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            Ok(tokio_modbus::client::rtu::attach_slave(stream, slave))
        }
    }
}

async fn read_all(ctx: &mut Context, map: &RegisterMap, limit: Duration) -> Result<Vec<Data>, Failure> {
    let mut data = Vec::with_capacity(map.blocks.len());
    for block in &map.blocks {
        let answer = match timeout(limit, read(ctx, block)).await {
            Ok(answer) => answer,
            Err(_) => return Err(Failure::TimedOut),
        };
        match answer {
            Ok(Ok(d)) => data.push(d),
            Ok(Err(code)) => return Err(Failure::Exception(code)),
            Err(why) => {
                tracing::debug!(%why, "modbus request failed");
                return Err(Failure::NoAnswer);
            }
        }
    }
    Ok(data)
}

async fn read(ctx: &mut Context, block: &Block) -> tokio_modbus::Result<Data> {
    let (address, count) = (block.address, block.count);
    Ok(match block.function {
        Function::Holding => ctx.read_holding_registers(address, count).await?.map(Data::Words),
        Function::Input => ctx.read_input_registers(address, count).await?.map(Data::Words),
        Function::Coil => ctx.read_coils(address, count).await?.map(Data::Bits),
        Function::Discrete => ctx.read_discrete_inputs(address, count).await?.map(Data::Bits),
    })
}
