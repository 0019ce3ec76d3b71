//! glibc malloc settings for a long-running, multi-threaded service.
//!
//! glibc returns free memory at the top of a heap to the system once more than
//! `M_TRIM_THRESHOLD` is free there. That threshold starts at 128 KiB but grows
//! (to twice the largest block it has freed from an mmap, up to 64 MiB) unless
//! it is set explicitly, and ingest's batches and buffers grow it to megabytes.
//! Setting it keeps it at 128 KiB.
//! Measured with `gridwatch bench ingest --mode direct --messages 500000`, two
//! runs each: glibc defaults 129-130 MiB peak RSS, 113-114k msg/s; a 128 KiB
//! trim threshold 107-108 MiB, 109-110k msg/s; fewer arenas on top of it
//! (`M_ARENA_MAX` 2) saved nothing more and cost 8 % of throughput in lock
//! contention, so arenas are left alone. Settings given in the environment
//! (`MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES`) win.
pub fn tune() {
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
