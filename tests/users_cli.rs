//! `gridwatch users add | list | revoke` as an operator runs them, and a running
//! `gridwatch ingest` following the users file without a restart.
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn gridwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running gridwatch")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `users add` and returns the token it printed.
fn add(users: &Path, id: &str, assignments: &[&str]) -> String {
    let mut args = vec![
        "users",
        "add",
        "--users",
        users.to_str().unwrap(),
        "--id",
        id,
        "--name",
        id,
    ];
    args.extend_from_slice(assignments);
    let out = gridwatch(&args);
    assert!(out.status.success(), "users add {id}: {}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    assert_eq!(token.len(), 64, "one token on stdout: {token:?}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    token
}

/// Fails with `says` in the message, and leaves the users file as it was.
fn refused(users: &Path, args: &[&str], says: &str) {
    let before = std::fs::read(users).ok();
    let out = gridwatch(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{args:?} printed {}", stdout(&out));
    assert_eq!(std::fs::read(users).ok(), before, "{args:?} changed the users file");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn users_add_list_and_revoke_keep_only_digests_and_refuse_mistakes_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("etc").join("users.toml");
    let file = users.to_str().unwrap();

    let out = gridwatch(&[
        "users",
        "add",
        "--users",
        file,
        "--id",
        "li.na",
        "--name",
        "李娜",
        "--grid",
        "supervisor:0501",
        "--firm",
        "MF04",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let li_na = stdout(&out).trim().to_string();
    assert!(
        stderr(&out).contains("shown only now and is not stored"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mode(&users), 0o600, "the users file is the owner's only");
    let wang = add(
        &users,
        "wang",
        &["--grid", "inspector:050101", "--grid", "grid_head:06"],
    );
    assert_ne!(li_na, wang);

    let text = std::fs::read_to_string(&users).unwrap();
    assert!(
        !text.contains(&li_na) && !text.contains(&wang),
        "a token itself is never stored"
    );
    assert!(text.contains(&gridwatch_ingest::users_file::token_digest(&li_na)));

    // A token file instead of stdout: a new file, 0600.
    let token_file = dir.path().join("zhao.token");
    let out = gridwatch(&[
        "users",
        "add",
        "--users",
        file,
        "--id",
        "zhao",
        "--name",
        "赵",
        "--firm",
        "MF01",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "the token goes to the file only");
    assert_eq!(mode(&token_file), 0o600);
    let zhao = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    assert_eq!(zhao.len(), 64);
    refused(
        &users,
        &[
            "users",
            "add",
            "--users",
            file,
            "--id",
            "qian",
            "--name",
            "钱",
            "--firm",
            "MF01",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        "an existing file is never replaced",
    );

    // Mistakes: each refused with what to fix, the file untouched.
    let base = |id: &'static str, more: &[&'static str]| {
        let mut args = vec!["users", "add", "--users", file, "--id", id, "--name", "N"];
        args.extend_from_slice(more);
        args
    };
    refused(
        &users,
        &base("wang", &["--grid", "supervisor:05"]),
        "user \"wang\" exists already",
    );
    refused(
        &users,
        &base("sun", &["--grid", "boss:05"]),
        "unknown role \"boss\": expected one of grid_head",
    );
    refused(
        &users,
        &base("sun", &["--grid", "supervisor:5"]),
        "--grid \"supervisor:5\": scope",
    );
    refused(&users, &base("sun", &["--grid", "supervisor:0500"]), "not 00");
    refused(&users, &base("sun", &["--grid", "supervisor"]), "expected ROLE:SCOPE");
    refused(&users, &base("sun", &["--grid", "maintenance_firm:05"]), "--firm FIRM");
    refused(
        &users,
        &base("sun", &[]),
        "at least one --grid ROLE:SCOPE or --firm FIRM",
    );
    refused(&users, &base("s u n", &["--firm", "MF01"]), "--id \"s u n\"");

    // The list: ids, names, assignments; never a digest.
    let out = gridwatch(&["users", "list", "--users", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&out);
    assert!(
        list.contains("li.na") && list.contains("李娜") && list.contains("supervisor:0501 firm:MF04"),
        "{list}"
    );
    assert!(list.contains("inspector:050101 grid_head:06"), "{list}");
    assert!(list.contains("zhao") && list.contains("firm:MF01"), "{list}");
    for token in [&li_na, &wang, &zhao] {
        assert!(
            !list.contains(&gridwatch_ingest::users_file::token_digest(token)),
            "{list}"
        );
    }

    // Revoke: unknown ids and the last user are refused.
    refused(
        &users,
        &["users", "revoke", "--users", file, "--id", "nobody"],
        "no user \"nobody\"",
    );
    for id in ["li.na", "zhao"] {
        let out = gridwatch(&["users", "revoke", "--users", file, "--id", id]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    refused(
        &users,
        &["users", "revoke", "--users", file, "--id", "wang"],
        "is the last user",
    );
    let list = stdout(&gridwatch(&["users", "list", "--users", file]));
    assert!(
        list.contains("wang") && !list.contains("li.na") && !list.contains("zhao"),
        "{list}"
    );
    assert_eq!(mode(&users), 0o600);

    let missing = dir.path().join("nope.toml");
    let out = gridwatch(&["users", "list", "--users", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not exist") && stderr(&out).contains("users add"),
        "{}",
        stderr(&out)
    );
}

/// `gridwatch ingest --users FILE`, and the address of its API once it is up.
fn start_ingest(dir: &Path, users: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridwatch"))
        .args([
            "ingest",
            "--allow-anonymous",
            "--http",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir)
        .arg("--users")
        .arg(users)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting gridwatch ingest");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ingest: http://") {
                let _ = tx.send(rest.split('/').next().unwrap().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("ingest did not start within 60 s");
    (child, addr)
}

async fn status(http: &reqwest::Client, url: &str, token: &str) -> u16 {
    http.get(url).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// Polls until `token` gets `want` from `url`; returns how long that took.
async fn until_status(http: &reqwest::Client, url: &str, token: &str, want: u16, what: &str) -> Duration {
    let since = Instant::now();
    common::eventually(what, || async {
        (status(http, url, token).await == want).then_some(())
    })
    .await;
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_ingest_follows_the_users_file_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let first = add(&users, "first", &["--grid", "supervisor:0501"]);
    let second = add(&users, "second", &["--firm", "MF04"]);
    let (mut ingest, addr) = start_ingest(dir.path(), &users);
    let http = reqwest::Client::new();
    let cases = format!("http://{addr}/api/cases");
    assert_eq!(status(&http, &cases, &first).await, 200);
    assert_eq!(status(&http, &cases, &second).await, 200);

    let file = users.to_str().unwrap();
    let out = gridwatch(&["users", "revoke", "--users", file, "--id", "first"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let took = until_status(&http, &cases, &first, 401, "the revoked token refused").await;
    eprintln!("revoked token refused {took:?} after `users revoke`");
    assert!(took < Duration::from_secs(5), "revocation took {took:?}");
    assert_eq!(status(&http, &cases, &second).await, 200, "the other user stays");

    let third = add(&users, "third", &["--grid", "inspector:050101"]);
    let took = until_status(&http, &cases, &third, 200, "the new user signed in").await;
    eprintln!("new user signed in {took:?} after `users add`");

    // A broken file is not applied: the users before it stay, and the error is counted.
    std::fs::write(&users, "[[user]]\nid = \"half-written").unwrap();
    let metrics = format!("http://{addr}/metrics");
    common::eventually("the users file error counted", || async {
        let text = common::get_text(&metrics).await;
        text.lines()
            .any(|l| l.starts_with("gridwatch_api_users_file_errors_total ") && !l.ends_with(" 0"))
            .then_some(())
    })
    .await;
    assert_eq!(status(&http, &cases, &second).await, 200);
    assert_eq!(status(&http, &cases, &third).await, 200);
    assert_eq!(status(&http, &cases, &first).await, 401);
    let text = common::get_text(&metrics).await;
    assert!(text.contains("# HELP gridwatch_api_users_file_errors_total"), "{text}");
    assert!(text.contains("gridwatch_api_users 2"), "{text}");

    let killed = Command::new("kill")
        .args(["-TERM", &ingest.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = common::eventually("ingest to exit after SIGTERM", || {
        let exited = ingest.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success(), "exit status {status} after SIGTERM");
}
