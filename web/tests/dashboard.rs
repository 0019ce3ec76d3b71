//! The dashboard's sign-in over real HTTP (port 0): the redirect to `/signin`, the cookie
//! flags, CSRF on every form, the session cookie on API reads (never writes), sign-out,
//! a revoked user losing their session, the language switch, and open mode read-only.
//! The pages in a browser: tests/dashboard_browser.rs at the workspace root.
mod common;

use common::NOW;
use gridwatch_cases::{Assignment, GridScope, Role};
use gridwatch_web::{Users, UsersFile};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use std::net::SocketAddr;
use std::sync::Arc;

async fn start(users: Arc<Users>) -> (SocketAddr, tempfile::TempDir) {
    let (dir, store, alerting) = common::store().await;
    let (addr, _) = common::serve(store, alerting, users, common::roomy()).await;
    (addr, dir)
}

/// A server with the register `csv` imported at `NOW`, and its store.
async fn start_with_register(
    users: Arc<Users>,
    csv: &[u8],
) -> (SocketAddr, tempfile::TempDir, gridwatch_storage::Store) {
    let (dir, store, alerting) = common::store().await;
    gridwatch_domain::import_register(&alerting, csv, NOW).await.unwrap();
    let (addr, _) = common::serve(store.clone(), alerting, users, common::roomy()).await;
    (addr, dir, store)
}

async fn page_text(addr: SocketAddr, path: &str) -> String {
    let resp = client().get(format!("http://{addr}{path}")).send().await.unwrap();
    resp.text().await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `Set-Cookie` header that sets `name`.
fn set_cookie(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie {name}: {:?}", resp.headers()))
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

/// The hidden `csrf` field of a page's form.
fn csrf_field(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

/// Signs in with `token`: the session cookie (`gw_session=…`).
async fn sign_in(http: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    let form = http.get(format!("{base}/signin?next=/cases")).send().await.unwrap();
    let pre = cookie_value(&set_cookie(&form, "gw_signin"));
    let csrf = csrf_field(&form.text().await.unwrap());
    http.post(format!("{base}/signin"))
        .header(COOKIE, pre)
        .form(&[("csrf", csrf.as_str()), ("token", token), ("next", "/cases")])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sessions_csrf_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    let mut file = UsersFile::load_or_empty(&path).unwrap();
    let scope = GridScope::parse("0101").unwrap();
    let officer = file
        .add(
            "officer",
            "王 officer",
            vec![Assignment::Grid {
                role: Role::InformationOfficer,
                scope,
            }],
        )
        .unwrap();
    let other = file
        .add(
            "other",
            "Other",
            vec![Assignment::Grid {
                role: Role::Supervisor,
                scope,
            }],
        )
        .unwrap();
    file.save(&path).unwrap();
    let users = Arc::new(Users::load(&path).unwrap());
    let (addr, _db) = start(users.clone()).await;
    let base = format!("http://{addr}");
    let http = client();

    // A page without a session: 303 to the sign-in form, which comes back after.
    let resp = http.get(format!("{base}/cases?show=all")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/signin?next=%2Fcases%3Fshow%3Dall");
    // The API without either still says what it needs.
    let resp = http.get(format!("{base}/api/alerts")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // The sign-in form's CSRF: without the cookie's token the form is refused.
    let resp = http
        .post(format!("{base}/signin"))
        .form(&[("csrf", "forged"), ("token", officer.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("表单已过期"));
    // A wrong token: 401 with the reason, no session.
    let resp = sign_in(&http, &base, "wrong").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()
            .get_all(SET_COOKIE)
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("gw_session"))
    );

    // The right token: a session cookie, HttpOnly and SameSite=Strict, not the token.
    let resp = sign_in(&http, &base, &officer).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/cases");
    let session = set_cookie(&resp, "gw_session");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    assert!(!session.contains(&officer));
    let cookie = cookie_value(&session);
    // Behind an HTTPS proxy the cookie is Secure.
    let form = http
        .get(format!("{base}/signin"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&form, "gw_signin").contains("Secure"));

    let page = http
        .get(format!("{base}/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("<html lang=\"zh-CN\">"), "{html}");
    assert!(html.contains("name=\"viewport\" content=\"width=device-width, initial-scale=1\""));
    assert!(html.contains("王 officer"), "{html}");
    let csrf = csrf_field(&html);

    // The cookie reads the API (the live feed's EventSource) but never writes.
    let resp = http
        .get(format!("{base}/api/alerts"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http
        .post(format!("{base}/api/alerts/ack"))
        .header(COOKIE, &cookie)
        .json(&serde_json::json!({"device_id": "x", "kind": "power_loss"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A case form without the session's CSRF token is refused.
    let resp = http
        .post(format!("{base}/cases/1/steps"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", "forged"), ("step", "accept")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // With it, an unknown case is a clear 404 page.
    let resp = http
        .post(format!("{base}/cases/1/steps"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str()), ("step", "accept")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("没有这个案件"));

    // English on request, remembered in a cookie.
    let resp = http
        .get(format!("{base}/stats?lang=en"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&resp, "lang").starts_with("lang=en"));
    assert!(resp.text().await.unwrap().contains("<html lang=\"en\">"));
    let resp = http
        .get(format!("{base}/stats"))
        .header(COOKIE, format!("{cookie}; lang=en"))
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains("Statistics"));

    // Sign-out needs the CSRF token too, then the session is gone.
    let resp = http
        .post(format!("{base}/signout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http
        .post(format!("{base}/signout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let resp = http
        .get(format!("{base}/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    // A user revoked in the users file loses their session at the next reload.
    let cookie = cookie_value(&set_cookie(&sign_in(&http, &base, &other).await, "gw_session"));
    let resp = http
        .get(format!("{base}/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut file = UsersFile::load(&path).unwrap();
    file.revoke("other").unwrap();
    file.save(&path).unwrap();
    assert!(users.refresh().unwrap());
    let resp = http
        .get(format!("{base}/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let resp = http
        .get(format!("{base}/api/alerts"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_shows_pages_without_sign_in_and_changes_nothing() {
    let (addr, _db) = start(Arc::new(Users::open())).await;
    let base = format!("http://{addr}");
    let http = client();
    for path in ["/", "/cases", "/stats", "/stats.csv?name=timings"] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    let resp = http.get(format!("{base}/signin")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let html = http.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("开放模式") && !html.contains("<form"), "{html}");
    let resp = http
        .post(format!("{base}/cases/1/steps"))
        .form(&[("csrf", ""), ("step", "accept")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http.get(format!("{base}/stats.csv?name=nope")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("cases, overdue"));
}

/// The overview draws from the domain's memory, not the alerts table: the two must agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_every_open_alert_stored_urgent_first_and_every_registered_device() {
    let csv = include_bytes!("../../simulators/data/registry-sample.csv");
    let (addr, _db, store) = start_with_register(Arc::new(Users::open()), csv).await;
    let stored =
        gridwatch_storage::query::alerts_page(&store, true, gridwatch_storage::query::Devices::All, 0, 100_000)
            .await
            .unwrap()
            .items;
    assert!(
        stored.len() > 50,
        "the sample register raises due-date alerts: {}",
        stored.len()
    );
    let html = page_text(addr, "/?alerts=all").await;
    let count = |pattern: &str| html.matches(pattern).count();
    assert!(
        html.contains(&format!(
            r#"<span class="count" id="alert-count">{}</span>"#,
            stored.len()
        )),
        "{html}"
    );
    assert_eq!(count(r#"<tr class="sev-"#), stored.len());
    for alert in &stored {
        assert!(html.contains(&format!("kind-{}\">", alert.kind)), "{}", alert.kind);
    }
    // Overdue before due soon, in the alerts and in the device list.
    let first = |of: &str| html.find(of).unwrap_or(usize::MAX);
    assert!(first("kind-inspection_overdue") < first("kind-inspection_due_soon"));
    assert!(first("health-overdue\" data-device") < first("health-ok\" data-device"));
    let registered = csv.iter().filter(|&&b| b == b'\n').count() - 1;
    assert!(
        html.contains(&format!(r#"<span class="count">{registered}</span></h2>"#)),
        "{registered} devices"
    );
    // Without `alerts=all`, 50 rows and the link to the rest.
    let html = page_text(addr, "/").await;
    assert_eq!(html.matches(r#"<tr class="sev-"#).count(), 50);
    assert!(html.contains(r#"href="/?alerts=all">"#));
}
