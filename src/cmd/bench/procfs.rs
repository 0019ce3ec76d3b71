//! Process statistics from Linux's /proc: the benchmark's memory and CPU figures.
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Peak resident set size (VmHWM) of a process, KiB.
pub(super) fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")
}

/// User plus system CPU time of a process (all its threads), seconds.
pub(super) fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_seconds(&stat).context("malformed /proc/PID/stat")
}

/// User plus system CPU time of each thread of a process, seconds, summed by
/// thread name (as Linux shows it: the first 15 bytes). A thread that has ended
/// is no longer counted, so compare two readings only for threads that live on.
pub(super) fn thread_cpu_seconds(pid: u32) -> Result<HashMap<String, f64>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("listing /proc/{pid}/task"))?;
    let mut by_name = HashMap::new();
    for task in tasks.flatten() {
        // A thread may end between the listing and this read.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let (Some(name), Some(seconds)) = (command_name(&stat), parse_cpu_seconds(&stat)) {
            *by_name.entry(name.to_string()).or_default() += seconds;
        }
    }
    Ok(by_name)
}

/// User plus system CPU time of this process's children that have ended and been
/// waited for, seconds (`getrusage(RUSAGE_CHILDREN)`): how a child that is gone
/// from /proc is measured.
pub(super) fn waited_children_cpu_seconds() -> Result<f64> {
    // SAFETY: getrusage writes only into the struct it is given, which is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage(RUSAGE_CHILDREN)");
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// The command (a thread's name) in a /proc stat line: between the first `(`
/// and the last `)`, since it may hold either.
fn command_name(stat: &str) -> Option<&str> {
    Some(stat.split_once('(')?.1.rsplit_once(')')?.0)
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces) in parentheses;
    // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The CPU time PostgreSQL's backends spend serving one database, when the server
/// runs on this machine: each backend names its database in its process title
/// (`postgres: 15/main: USER DATABASE [local] COPY`). A thread samples every
/// backend of that database every 100 ms, so a backend that ends between samples
/// loses at most 100 ms of its time; the ones the benchmark measures live
/// throughout.
pub(super) struct DatabaseCpu {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<HashMap<u32, (f64, f64)>>,
}

const SAMPLE_EVERY: Duration = Duration::from_millis(100);

impl DatabaseCpu {
    /// Starts counting from now: time a backend had used before this call is not counted.
    pub(super) fn start(database: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let title = format!(" {database} ");
        let stopping = stop.clone();
        let sampler = std::thread::spawn(move || {
            // pid → (CPU seconds when first seen, CPU seconds when last seen)
            let mut backends: HashMap<u32, (f64, f64)> = backends_of(&title).map(|(p, s)| (p, (s, s))).collect();
            let sample = |backends: &mut HashMap<u32, (f64, f64)>| {
                for (pid, seconds) in backends_of(&title) {
                    // A backend that started after `start` had used nothing before it.
                    backends.entry(pid).or_insert((0.0, 0.0)).1 = seconds;
                }
            };
            while !stopping.load(Ordering::Relaxed) {
                std::thread::sleep(SAMPLE_EVERY);
                sample(&mut backends);
            }
            sample(&mut backends); // the time since the last sample
            backends
        });
        Self { stop, sampler }
    }

    /// Seconds of CPU used since [`start`](Self::start), or `None` when no backend
    /// was ever seen (a server on another machine).
    pub(super) fn finish(self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let backends = self.sampler.join().ok()?;
        (!backends.is_empty()).then(|| backends.values().map(|(first, last)| last - first).sum())
    }
}

/// (pid, CPU seconds) of every PostgreSQL process whose title holds `title`.
fn backends_of(title: &str) -> impl Iterator<Item = (u32, f64)> + '_ {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(move |pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            if !cmdline.starts_with("postgres:") || !cmdline.contains(title) {
                return None;
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_cpu_seconds(&stat)?))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_after_a_command_name_with_spaces() {
        let stat = "42 (tokio rt) S 1 42 42 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_seconds(stat), Some(3.8));
        assert_eq!(parse_cpu_seconds("42 (short) S 1"), None);
        assert_eq!(command_name(stat), Some("tokio rt"));
        assert_eq!(command_name("7 (a (b)) c) S 1"), Some("a (b)) c"));
    }

    #[test]
    fn a_busy_thread_is_counted_under_its_name() {
        let busy = std::thread::Builder::new()
            .name("gw-busy-probe".into())
            .spawn(|| {
                let started = std::time::Instant::now();
                let mut sum = 0u64;
                // Long enough to pass one clock tick (10 ms) of CPU time.
                while started.elapsed() < Duration::from_millis(100) {
                    sum = std::hint::black_box(sum.wrapping_add(1));
                }
                thread_cpu_seconds(std::process::id()).unwrap()
            })
            .unwrap();
        let threads = busy.join().unwrap();
        assert!(threads["gw-busy-probe"] > 0.0, "{threads:?}");
    }

    #[test]
    fn a_busy_child_is_counted_once_it_has_been_waited_for() {
        let before = waited_children_cpu_seconds().unwrap();
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(waited_children_cpu_seconds().unwrap() > before);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let seconds = cpu_seconds(std::process::id()).unwrap();
        assert!(seconds >= 0.0);
        assert!(peak_rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn a_database_nobody_serves_reports_none() {
        let cpu = DatabaseCpu::start("gridwatch_no_such_database_anywhere");
        assert_eq!(cpu.finish(), None);
    }
}
