//! A full disk heals: SQLite on a real full file system (a 2 MiB tmpfs) refuses
//! commits while it is full, and once space is freed the next retry commits on a
//! fresh transaction, without a restart, and nothing committed before is lost.
mod common;

use common::*;
use gridwatch_storage::{ErrorClass, Store};
use std::path::{Path, PathBuf};

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `Err` with the reason when this process may not mount (not root, no
    /// CAP_SYS_ADMIN, a container without mount rights).
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system at `dir` with one file until the disk is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0xA5u8; 4096];
    loop {
        match file.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = file.sync_all();
    path
}

/// `ENOSPC` on Linux.
const ENOSPC: i32 = 28;

/// Readings `from..to` of `devices` devices.
fn batch(devices: usize, from: u64, to: u64) -> Vec<gridwatch_storage::model::Accepted> {
    (from..to)
        .flat_map(|seq| (0..devices).map(move |d| lift(&format!("L-{d:04}"), seq)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_again_once_a_full_disk_has_space() {
    let disk = match Tmpfs::mount("2m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED sqlite_commits_again_once_a_full_disk_has_space: {why}");
            return;
        }
    };
    let url = format!("sqlite://{}", disk.path().join("gridwatch.db").display());
    let store = Store::open(&url).await.expect("opening on the tmpfs");

    // Acknowledged before the disk fills.
    let mut acknowledged = 0usize;
    let first = batch(50, 1, 3);
    store.commit(&first, &[]).await.expect("a commit with space");
    acknowledged += first.len();

    let filler = fill(disk.path());
    let mut seq = 3;
    let mut full = None;
    // Batches until one fails for want of space (the WAL may still hold a little).
    for _ in 0..200 {
        let next = batch(50, seq, seq + 4);
        match store.commit(&next, &[]).await {
            Ok(_) => {
                acknowledged += next.len();
                seq += 4;
            }
            Err(e) => {
                full = Some((e, next));
                break;
            }
        }
    }
    let (error, refused) = full.expect("the full disk refuses a commit");
    assert_eq!(error.class(), ErrorClass::Full, "classified as a full disk: {error:#}");
    // While full, a retry fails the same way (not with a broken transaction).
    let again = store.commit(&refused, &[]).await.expect_err("still full");
    assert_eq!(again.class(), ErrorClass::Full, "still full, not broken: {again:#}");

    std::fs::remove_file(filler).unwrap();
    // Space is back: the same store commits again, without a restart.
    store
        .commit(&refused, &[])
        .await
        .unwrap_or_else(|e| panic!("a commit after space returned: {e:#}"));
    acknowledged += refused.len();
    let after = batch(50, seq + 4, seq + 6);
    store.commit(&after, &[]).await.expect("and the next one");
    acknowledged += after.len();

    assert_eq!(
        store.reading_count().await.unwrap() as usize,
        acknowledged,
        "nothing acknowledged is lost"
    );
    drop(store);
    // And on reopening, everything acknowledged is there.
    let reopened = Store::open(&url).await.unwrap();
    assert_eq!(reopened.reading_count().await.unwrap() as usize, acknowledged);
}
