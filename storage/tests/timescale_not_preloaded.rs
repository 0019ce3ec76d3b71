//! A database that has the TimescaleDB extension, on a server that no longer preloads its
//! library (a PostgreSQL upgrade or a config change): opening it must fail with an error
//! that names the cause and the fix, not with a lost connection. Runs on a private
//! PostgreSQL instance made by ../shared/tools/timescaledb.sh (or the script named by
//! `GRIDWATCH_TIMESCALEDB_SH`), started with the preload and again without it; without
//! the script or the installed extension the test says it is skipped.
use gridwatch_storage::{Store, StoreOptions, TimescaleMode};
use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> Option<PathBuf> {
    let path = std::env::var_os("GRIDWATCH_TIMESCALEDB_SH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/timescaledb.sh"));
    let installed = path.is_file() && Command::new(&path).arg("installed").status().is_ok_and(|s| s.success());
    if !installed {
        eprintln!(
            "SKIPPED a database with TimescaleDB on a server that does not preload it: no installed \
             TimescaleDB and script at {} (set GRIDWATCH_TIMESCALEDB_SH)",
            path.display()
        );
        return None;
    }
    Some(path)
}

/// A private instance in `dir`, stopped when dropped.
struct Instance<'a> {
    script: &'a Path,
    dir: &'a Path,
}

impl Instance<'_> {
    /// Starts it on `port` and returns its URL without a database.
    fn start(&self, port: u16) -> String {
        let out = Command::new(self.script)
            .args(["start", &port.to_string()])
            .arg(self.dir)
            .output()
            .expect("running timescaledb.sh");
        assert!(
            out.status.success(),
            "timescaledb.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap();
        url.trim().trim_end_matches("/postgres").to_string()
    }

    fn stop(&self) {
        let _ = Command::new(self.script).arg("stop").arg(self.dir).output();
    }
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_database_with_timescaledb_on_a_server_that_does_not_preload_it_is_refused_naming_the_fix() {
    let Some(script) = script() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let instance = Instance {
        script: &script,
        dir: dir.path(),
    };
    let port = free_port();
    let server = instance.start(port);
    let admin = format!("{server}/postgres");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.unwrap();
    sqlx::query("CREATE DATABASE readings_hypertable")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let url = format!("{server}/readings_hypertable");
    let options = StoreOptions {
        timescale: TimescaleMode::On,
        ..StoreOptions::default()
    };
    let store = Store::open_with(&url, &options)
        .await
        .expect("a hypertable on the preloading server");
    drop(store);

    // The same data, the server started again without the preload.
    instance.stop();
    let conf = dir.path().join("data/postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\nshared_preload_libraries = ''\n");
    std::fs::write(&conf, text).unwrap();
    instance.start(port);

    let error = match Store::open_with(&url, &StoreOptions::default()).await {
        Ok(_) => panic!("opened a TimescaleDB database on a server that does not preload it"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("does not preload") && error.contains("shared_preload_libraries") && error.contains("restart"),
        "{error}"
    );
}
