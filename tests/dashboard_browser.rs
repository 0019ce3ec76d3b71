//! The dashboard in a real browser: headless Chromium driven through chromedriver
//! (fantoccini), against a real ingest service (embedded broker, SQLite, port 0) with
//! the sample register and virtual time. Sign-in, a trapped passenger appearing live
//! without a reload, the case's closed loop taken step by step by the grid roles and the
//! firm through the page's forms, the walls between firms, the language switch, and
//! screenshots at 1280 and 390 px (saved under the target directory, paths printed).
//!
//! Needs `chromedriver` and `chromium` (Debian: `apt-get install chromium chromium-driver`,
//! scripts/test installs them); without chromedriver the test says so loudly and passes.
use fantoccini::{Client, ClientBuilder, Locator};
use gridwatch_cases::{Assignment, GridScope, Role, User};
use gridwatch_ingest::{Ingest, IngestConfig, Users};
use gridwatch_protocol::clock::ManualClock;
use rumqttc::{AsyncClient, QoS};
use serde_json::json;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// 2026-11-25 10:00 China time: the date of the sample register.
const NOW: u64 = 1_795_572_000_000;
/// A passenger lift of grid 010101 maintained by firm MF04 (first row of the sample).
const LIFT: &str = "31103306242009000001";
/// How long any one thing may take to show in the browser.
const DEADLINE: Duration = Duration::from_secs(30);

fn grid_user(id: &str, role: Role, scope: &str) -> User {
    User {
        id: id.into(),
        name: id.into(),
        assignments: vec![Assignment::Grid {
            role,
            scope: GridScope::parse(scope).unwrap(),
        }],
    }
}

fn firm_user(firm: &str) -> User {
    User {
        id: format!("firm-{firm}"),
        name: format!("维保 {firm}"),
        assignments: vec![Assignment::Firm { firm: firm.into() }],
    }
}

fn users() -> Users {
    let mut users = Users::new();
    users.add(
        "t-registrar",
        User {
            assignments: vec![
                Assignment::Grid {
                    role: Role::GridHead,
                    scope: GridScope::parse("01").unwrap(),
                },
                Assignment::Grid {
                    role: Role::GridHead,
                    scope: GridScope::parse("02").unwrap(),
                },
            ],
            ..grid_user("registrar", Role::GridHead, "01")
        },
    );
    users.add("t-officer", grid_user("officer", Role::InformationOfficer, "0101"));
    users.add("t-inspector", grid_user("inspector", Role::Inspector, "010101"));
    users.add("t-supervisor", grid_user("supervisor", Role::Supervisor, "0101"));
    users.add("t-mf04", firm_user("MF04"));
    users.add("t-mf01", firm_user("MF01"));
    users
}

async fn start(dir: &Path, clock: &ManualClock) -> Ingest {
    let mut config = IngestConfig::embedded(dir);
    config.clock = Arc::new(clock.clone());
    config.tick_every = Duration::from_secs(3600);
    config.users = users();
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    let register =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("simulators/data/registry-sample.csv")).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/equipment/import", ingest.http_addr))
        .bearer_auth("t-registrar")
        .body(register)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "register import: {}", resp.status());
    ingest
}

/// A lift that stopped with a passenger inside, as a smart node publishes it to ingest.
async fn trap(ingest: &Ingest, device: &str, from: u64) {
    let options = gridwatch_mqtt::client_options(&ingest.mqtt_addr.into(), "smart-node");
    let (client, mut events) = AsyncClient::new(options, 100);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    for (seq, ts) in [(1, from), (2, from + 50_000), (3, from + 100_000)] {
        let body = json!({"v":1,"device":device,"seq":seq,"ts":ts,"body":{"mode":"normal","motion":"stopped","door":"closed",
            "door_zone":true,"floor":3,"occupied":true,"alarm":false,"fault":0,"power":"mains","runs":10,"door_cycles":20}});
        client
            .publish(
                format!("gw/direct/dev/{device}/lift"),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .unwrap();
    }
}

/// chromedriver on a free port, ended when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<Driver> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("chromedriver").is_file()))
        .unwrap_or(false);
    if !found {
        return None;
    }
    // chromedriver cannot listen on port 0: take a free port from the OS, then hand it over.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    Some(Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

async fn browser(driver: &Driver) -> Client {
    let mut options = json!({"args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-dev-shm-usage", "--window-size=1280,900"]});
    if Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(client) => return client,
            // chromedriver is still starting: poll until it answers.
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Page {
    client: Client,
    base: String,
    shots: PathBuf,
}

impl Page {
    async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
    }

    async fn has(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        format!(
            "{}{}",
            url.path(),
            url.query().map(|q| format!("?{q}")).unwrap_or_default()
        )
    }

    async fn sign_in(&self, token: &str) {
        self.goto("/signin").await;
        self.wait("#token").await.send_keys(token).await.unwrap();
        self.wait("#signin").await.click().await.unwrap();
        self.wait("#who").await;
    }

    async fn sign_out(&self) {
        self.wait("#signout").await.click().await.unwrap();
        self.wait("#token").await;
    }

    /// Takes the case's next step through its form and waits for the flash message.
    async fn take_step(&self, case: &str, step: &str, note: &str, evidence: Option<&str>) {
        self.goto(&format!("/cases/{case}")).await;
        let button = self.wait(&format!("#take-step[data-step={step}]")).await;
        self.wait("#note").await.send_keys(note).await.unwrap();
        if let Some(evidence) = evidence {
            self.wait("#evidence").await.send_keys(evidence).await.unwrap();
        }
        button.click().await.unwrap();
        self.wait("#flash").await;
        assert!(
            self.has(&format!("#audit tr[data-step={step}]")).await,
            "{step} in the audit trail"
        );
    }

    /// Screenshots at 1280 and 390 px wide.
    async fn screenshots(&self, name: &str) {
        for (width, height) in [(1280, 900), (390, 844)] {
            self.client.set_window_size(width, height).await.unwrap();
            let png = self.client.screenshot().await.unwrap();
            let path = self.shots.join(format!("{name}-{width}.png"));
            std::fs::write(&path, png).unwrap();
            println!("screenshot: {}", path.display());
        }
        self.client.set_window_size(1280, 900).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_watch_a_trapped_passenger_live_and_close_its_case_in_chromium() {
    let Some(driver) = chromedriver() else {
        eprintln!(
            "\n!!! DASHBOARD BROWSER TEST SKIPPED: no chromedriver on PATH \
             (apt-get install chromium chromium-driver)\n"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let ingest = start(dir.path(), &clock).await;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let b = Page {
        client: browser(&driver).await,
        base: format!("http://{}", ingest.http_addr),
        shots,
    };

    // Not signed in: a page sends the browser to the sign-in form, in Chinese.
    b.goto("/cases").await;
    b.wait("#token").await;
    assert_eq!(b.path().await, "/signin?next=%2Fcases");
    let html = b.wait("html").await;
    assert_eq!(html.attr("lang").await.unwrap().as_deref(), Some("zh-CN"));
    let viewport = b.wait("meta[name=viewport]").await.attr("content").await.unwrap();
    assert_eq!(viewport.as_deref(), Some("width=device-width, initial-scale=1"));
    b.screenshots("signin").await;
    // A wrong token is refused with a message saying what to do.
    b.wait("#token").await.send_keys("not-a-token").await.unwrap();
    b.wait("#signin").await.click().await.unwrap();
    assert!(b.wait("#error").await.text().await.unwrap().contains("令牌"));

    // The information officer signs in and lands where they were going.
    b.wait("#token").await.send_keys("t-officer").await.unwrap();
    b.wait("#signin").await.click().await.unwrap();
    b.wait("#cases").await;
    assert_eq!(b.path().await, "/cases");

    // The overview follows the live feed: the trapped passenger appears without a reload.
    b.goto("/").await;
    b.wait("body[data-live=connected]").await;
    assert!(!b.has("#alerts tr.kind-trapped_passenger").await);
    b.client
        .execute("window.gridwatchNoReload = true", vec![])
        .await
        .unwrap();
    trap(&ingest, LIFT, NOW).await;
    let row = b.wait("#alerts tr.kind-trapped_passenger").await;
    assert!(row.text().await.unwrap().contains(LIFT));
    let same_page = b
        .client
        .execute("return window.gridwatchNoReload === true", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "the alert came in without a reload");
    // The device's badge and the grid tree follow too.
    b.wait(&format!("#devices tr.health-trapped[data-device=\"{LIFT}\"]"))
        .await;
    assert!(b.has("#grids .health-trapped").await);
    b.screenshots("overview").await;
    // People act a little after the alert (device second 100).
    clock.set(NOW + 120_000);

    // Its urgent case, first in the list.
    b.goto("/cases").await;
    let link = b.wait("#cases tr.prio-urgent td a").await;
    let case = link.text().await.unwrap().trim_start_matches('#').to_string();
    link.click().await.unwrap();
    b.wait("#case-status[data-status=reported]").await;
    b.take_step(&case, "accept", "已派单", None).await;
    b.sign_out().await;

    // The inspector verifies on site, with a photo.
    b.sign_in("t-inspector").await;
    b.take_step(&case, "verify", "现场核实", Some("photo-0001")).await;
    b.sign_out().await;

    // The lift's maintenance firm acknowledges, handles and feeds back.
    b.sign_in("t-mf04").await;
    b.goto(&format!("/cases/{case}")).await;
    b.wait("#respond-acknowledged").await.click().await.unwrap();
    b.wait("#flash").await;
    assert!(b.has("#responses").await);
    b.take_step(&case, "handle", "乘客已解救", None).await;
    b.take_step(&case, "feedback", "更换门继电器", None).await;
    b.sign_out().await;

    // The supervisor reviews and closes.
    b.sign_in("t-supervisor").await;
    b.take_step(&case, "review", "复核通过", None).await;
    b.wait("#case-status[data-status=closed]").await;
    b.wait("#closed").await;
    assert!(!b.has("#take-step").await, "no forms on a closed case");
    b.screenshots("case").await;
    // In English, by the link on every page (named in the language it switches to).
    let switch = b.wait("#lang-switch").await;
    assert_eq!(switch.text().await.unwrap(), "English");
    switch.click().await.unwrap();
    b.wait("html[lang=en]").await;
    assert_eq!(b.wait("#case-status").await.text().await.unwrap(), "Closed");
    assert_eq!(b.wait("#lang-switch").await.text().await.unwrap(), "中文");
    // The device page: state, alerts, the hourly chart.
    b.goto(&format!("/devices/{LIFT}")).await;
    b.wait("svg.chart.trips").await;
    b.screenshots("device").await;
    b.goto("/stats").await;
    b.wait("#stats-by-grid svg.chart").await;
    b.screenshots("stats").await;
    b.goto("/?lang=zh").await;
    b.wait("html[lang=zh-CN]").await;
    b.sign_out().await;

    // Another firm sees none of MF04's devices or cases.
    b.sign_in("t-mf01").await;
    b.goto("/").await;
    b.wait("#devices").await;
    let source = b.client.source().await.unwrap();
    assert!(!source.contains(LIFT), "MF01 sees an MF04 lift");
    assert!(b.has("#devices tbody tr").await, "MF01 sees its own devices");
    b.goto(&format!("/devices/{LIFT}")).await;
    b.wait("#error").await;
    b.goto(&format!("/cases/{case}")).await;
    b.wait("#error").await;
    b.goto("/cases?show=all").await;
    b.wait("#cases").await;
    assert!(!b.has(&format!("#cases tr[data-case=\"{case}\"]")).await);

    b.client.close().await.unwrap();
}
