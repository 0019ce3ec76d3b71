//! Memory allocators for a long-running, multi-threaded service.
//!
//! Rust's allocations go to jemalloc, configured by [`MALLOC_CONF`]; C code
//! (SQLite) still calls glibc malloc, tuned by [`tune`].
//!
//! Measured with `gridwatch bench ingest --mode direct` (docs/benchmarks.md),
//! against glibc malloc with the trim threshold below:
//! ingest's CPU per million direct readings fell by 10-25 % (SQLite 15-18 s to
//! 13-14 s; PostgreSQL 7.2-7.7 s to 6.8-7.2 s), and SQLite direct rose from
//! 70-81k to 87-90k msg/s at the same peak RSS.
//!
//! - `narenas:2`, `tcache_max:1024`: one arena per core, and small thread caches.
//! - `oversize_threshold:1048576`: buffers of 1 MiB and more (batches, SQL text,
//!   COPY data) come from an arena that returns them to the system at once. With
//!   the default (8 MiB) freed batch buffers lingered and peak RSS was
//!   133-142 MiB. At 256 KiB the broker's growing
//!   vectors (log segments, per-connection ack and packet queues) were faulted in
//!   afresh every time: page faults were 17 % of ingest's CPU in the direct
//!   PostgreSQL benchmark, 10 % at 1 MiB (ingest 6.8 -> 6.2 s per million
//!   readings; peak RSS 107 -> 114 MiB on PostgreSQL, 116 -> 120 MiB on SQLite).
//! - `dirty_decay_ms:100`, `muzzy_decay_ms:0`, `background_thread:true`: other
//!   freed pages go back within about 100 ms, purged by jemalloc's own thread
//!   rather than in the middle of an allocation (0 ms: 124 MiB but 40 % more CPU).
//!
//! `_RJEM_MALLOC_CONF` in the environment overrides these at run time.
#[cfg(unix)]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol (`malloc_conf`, prefixed as
/// tikv-jemalloc-sys builds it) when it first allocates.
#[cfg(unix)]
#[used]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: ConfString = ConfString(
    c"background_thread:true,narenas:2,tcache_max:1024,oversize_threshold:1048576,dirty_decay_ms:100,muzzy_decay_ms:0"
        .as_ptr(),
);

/// A C string pointer that may be a `static` (it points to a literal).
#[cfg(unix)]
#[repr(transparent)]
struct ConfString(*const std::ffi::c_char);

// SAFETY: the pointer is to an immutable 'static literal.
#[cfg(unix)]
unsafe impl Sync for ConfString {}

/// glibc malloc, used by C code: glibc returns free memory at the top of a
/// heap to the system once more than `M_TRIM_THRESHOLD` is free there. That
/// threshold starts at 128 KiB but grows (to twice the largest block it has
/// freed from an mmap, up to 64 MiB) unless it is set explicitly. Setting it
/// keeps it at 128 KiB (before jemalloc, when all of ingest used glibc: peak RSS
/// 129-130 → 107-108 MiB). Settings given in the environment
/// (`MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES`) win.
pub(crate) fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let given = ["MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        if !given {
            // SAFETY: mallopt only changes allocator parameters; called before any
            // other thread exists.
            unsafe {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
            }
        }
    }
}
