//! SQLite's one writer thread is ingest's critical path: every other thread's
//! work can wait a little, while the writer's holds up every commit and so every
//! acknowledgement. In a direct benchmark on two busy cores it was ready to run
//! for 71 % of the run but ran for 54 %, waiting for a core the rest. So ingest
//! gives it a higher priority (a lower nice value) where the process may: as
//! root, with `CAP_SYS_NICE`, or within `RLIMIT_NICE` (systemd's `LimitNICE=`).
//! Elsewhere it keeps the default priority, and says so once.
use std::sync::atomic::{AtomicBool, Ordering};

/// The writer's nice value: -10 made the direct SQLite benchmark 56.9-68.3k →
/// 69.6-79.7k msg/s in alternating runs (docs/benchmarks.md); every other thread
/// at +10 instead gave nothing.
pub const WRITER_NICE: i32 = -10;

/// The ids of this process's threads named `name` (as Linux shows a name: its
/// first 15 bytes).
pub fn threads_named(name: &str) -> std::io::Result<Vec<libc::id_t>> {
    Ok(std::fs::read_dir("/proc/self/task")?
        .flatten()
        // A thread that ended meanwhile has no name to read.
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim_end() == name))
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect())
}

/// Sets the nice value of every thread of this process named `name`. Returns
/// how many threads were set.
pub fn renice_threads(name: &str, nice: i32) -> std::io::Result<usize> {
    let threads = threads_named(name)?;
    for &tid in &threads {
        // SAFETY: setpriority takes plain integers; on Linux PRIO_PROCESS with a
        // thread id sets that one thread's nice value.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(threads.len())
}

/// Raises the SQLite writer's priority (see the module's doc); called whenever
/// the writer connection, and so its thread, is (re)established.
pub fn raise_writer(thread: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    match renice_threads(thread, WRITER_NICE) {
        Ok(threads) => tracing::debug!(threads, nice = WRITER_NICE, "SQLite writer priority raised"),
        Err(e) if !SAID.swap(true, Ordering::Relaxed) => tracing::info!(
            error = %e,
            "the SQLite writer keeps the default priority: raising it needs root, CAP_SYS_NICE or RLIMIT_NICE (docs/storage.md)"
        ),
        Err(_) => {}
    }
}

/// The nice value of this process's thread `tid`, from /proc (field 19 of its stat).
pub fn nice_of(tid: libc::id_t) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_thread_gets_the_nice_value_and_others_keep_theirs() {
        // SAFETY: gettid has no arguments and cannot fail.
        let this_thread = || unsafe { libc::gettid() } as libc::id_t;
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let probe = std::thread::Builder::new()
            .name("gw-nice-probe".into())
            .spawn(move || {
                tid_tx.send(this_thread()).unwrap();
                let _ = done_rx.recv();
            })
            .unwrap();
        let tid = tid_rx.recv().unwrap();
        assert_eq!(threads_named("gw-nice-probe").unwrap(), [tid]);
        let mine = nice_of(this_thread());
        // A higher nice value (a lower priority) needs no privilege.
        assert_eq!(renice_threads("gw-nice-probe", 5).unwrap(), 1);
        assert_eq!(nice_of(tid), Some(5));
        assert_eq!(nice_of(this_thread()), mine);
        assert_eq!(renice_threads("gw-no-such-thread", 5).unwrap(), 0);
        drop(done_tx);
        probe.join().unwrap();
    }
}
