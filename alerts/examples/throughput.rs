//! Single-core throughput of the alert engine: 100,000 devices (lifts and sterilizers),
//! heartbeat readings with occasional trouble, a tick every round.
//!
//! `cargo run --release -p gridwatch-alerts --example throughput [devices] [rounds]`
use gridwatch_alerts::{AlertConfig, Engine};
use gridwatch_protocol::batch::Reading;
use gridwatch_protocol::*;
use std::time::Instant;

const DAY0: u64 = 1_795_536_000_000 + 9 * 3_600_000; // 2026-11-25 09:00 China time

fn lift(i: usize, round: u64) -> LiftStatus {
    // Every 50th lift carries a passenger with the doors closed; every 97th has a fault.
    LiftStatus {
        mode: ServiceMode::Normal,
        motion: if round.is_multiple_of(3) {
            Motion::Up
        } else {
            Motion::Stopped
        },
        door: Door::Closed,
        door_zone: true,
        floor: (i % 20) as i16,
        occupied: i.is_multiple_of(50),
        alarm: false,
        fault: if i.is_multiple_of(97) && round.is_multiple_of(2) {
            7
        } else {
            0
        },
        power: Power::Mains,
        runs: round as u32,
        door_cycles: round as u32,
    }
}

fn reading(i: usize, round: u64, ts: u64) -> Reading {
    let device = DeviceId::try_from(format!("dev-{i:06}").as_str()).unwrap();
    let seq = round + 1;
    if i % 10 == 9 {
        let body = SterilizerStatus {
            method: Method::Infrared,
            temp_c: 40.0,
            door: Door::Closed,
            heating: false,
            power: true,
            in_cycle: false,
        };
        Reading::Sterilizer(Envelope::new(device, seq, ts, body))
    } else {
        Reading::Lift(Envelope::new(device, seq, ts, lift(i, round)))
    }
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a number"));
    let devices = args.next().unwrap_or(100_000);
    let rounds = args.next().unwrap_or(10) as u64;
    let mut engine = Engine::new(AlertConfig::default());
    let mut total = 0u64;
    let mut events = 0usize;
    let mut apply_time = std::time::Duration::ZERO;
    let mut first_tick = std::time::Duration::ZERO;
    let mut tick_time = std::time::Duration::ZERO;
    for round in 0..rounds {
        let now = DAY0 + round * 10_000;
        let batch: Vec<Reading> = (0..devices).map(|i| reading(i, round, now)).collect();
        let gateways: Vec<String> = (0..devices / 200 + 1).map(|g| format!("gw-{g:04}")).collect();
        let start = Instant::now();
        let mut out = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            engine.apply_into(r, Some(&gateways[i / 200]), &mut out);
        }
        apply_time += start.elapsed();
        let start = Instant::now();
        events += out.len() + engine.tick(now + 9_000).len();
        // The first tick evaluates every device once (their gateways come online).
        if round == 0 {
            first_tick = start.elapsed();
        } else {
            tick_time += start.elapsed();
        }
        engine.take_changes();
        total += devices as u64;
    }
    let secs = apply_time.as_secs_f64();
    println!(
        "{total} readings from {devices} devices in {secs:.3} s: {:.0} readings/s; \
         first tick {:.1} ms, later ticks {:.2} ms each; {events} alert events",
        total as f64 / secs,
        first_tick.as_secs_f64() * 1000.0,
        tick_time.as_secs_f64() * 1000.0 / (rounds.max(2) - 1) as f64,
    );
}
