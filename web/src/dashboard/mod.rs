//! The dashboard for inspectors, grid offices and maintenance firms: server-rendered
//! pages (maud templates, escaped by default), one page per module, a style sheet and one
//! small script served as static files, and a strict Content-Security-Policy ([`CSP`]).
//!
//! Who signs in and how: [`session`]. Languages: [`i18n`]. Pages: [`overview`] (`/`),
//! [`device`] (`/devices/{id}`), [`cases`] (`/cases`, `/cases/{id}` and its forms),
//! [`stats`] (`/stats`, `/stats.csv`). Charts are SVG drawn on the server ([`chart`]).
//! Every page reads through storage and the domain as the API handlers do, within the
//! same walls (`User::can_see`).
mod cases;
mod chart;
mod device;
mod health;
mod i18n;
mod overview;
pub(crate) mod session;
mod signin;
mod stats;

use crate::http::AppState;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use gridwatch_cases::User;
use i18n::{LANG_COOKIE, Lang};
use maud::{DOCTYPE, Markup, html};
use session::{SESSION_COOKIE, Sessions, Signed};
use std::time::Instant;

pub(crate) use session::Sessions as DashboardSessions;

/// Where the style sheet and the script are served.
const STYLE_PATH: &str = "/dashboard.css";
const SCRIPT_PATH: &str = "/dashboard.js";

/// Pages load their own style sheet and script and nothing else; the script may read the
/// live feed and pages of this origin; forms post only here; nothing may frame them.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const STYLE: &str = include_str!("dashboard.css");
const SCRIPT: &str = include_str!("dashboard.js");

/// The dashboard's routes, merged into the server's router by `http::router`. HTML pages
/// for browsers, not the JSON API: the OpenAPI document does not list them, so the rule
/// that routes go through `routes!` (clippy.toml) does not hold here.
#[allow(clippy::disallowed_methods)]
pub(crate) fn routes() -> Router<AppState> {
    session::describe();
    Router::new()
        .route("/", get(overview::page))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::sign_out))
        .route("/devices/{id}", get(device::page))
        .route("/cases", get(cases::list))
        .route("/cases/{id}", get(cases::page))
        .route("/cases/{id}/steps", post(cases::step))
        .route("/cases/{id}/responses", post(cases::respond))
        .route("/stats", get(stats::page))
        .route("/stats.csv", get(stats::csv))
        .layer(axum::middleware::from_fn(remember_lang))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .route(STYLE_PATH, get(style))
        .route(SCRIPT_PATH, get(script))
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT)
}

/// `?lang=en` on any page switches the language and keeps it in a cookie.
async fn remember_lang(request: Request, next: Next) -> Response {
    let chosen = query_param(request.uri().query(), "lang").and_then(|l| Lang::parse(&l));
    let secure = is_https(request.headers());
    let mut response = next.run(request).await;
    if let Some(lang) = chosen {
        let cookie = Cookie::build((LANG_COOKIE, lang.code()))
            .path("/")
            .same_site(SameSite::Lax)
            .secure(secure)
            .permanent()
            .build();
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// One parameter of a query string.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Whether the browser reached us over HTTPS (through a proxy that says so): cookies
/// are marked `Secure` then.
fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Who looks at a page, in which language. Open mode (`--open-api`) shows every page
/// read-only without signing in; otherwise a request without a live session is sent
/// to the sign-in page (303).
pub(crate) struct Viewer {
    pub(crate) user: Option<User>,
    pub(crate) signed: Option<Signed>,
    pub(crate) lang: Lang,
    /// The page's path and query without `lang`, for the language switch.
    pub(crate) path: String,
}

impl Viewer {
    /// Whether the viewer may see something placed at `place` (as `Caller::can_see`).
    pub(crate) fn can_see(&self, place: Option<gridwatch_cases::Placement<'_>>) -> bool {
        match (&self.user, place) {
            (None, _) => true,
            (Some(user), Some(place)) => user.can_see(place),
            (Some(_), None) => false,
        }
    }

    pub(crate) fn t(&self, key: &str) -> String {
        self.lang.t(key)
    }
}

/// The page's path and query without `lang` (the language link adds its own).
fn path_without_lang(parts: &Parts) -> String {
    let path = parts.uri.path();
    let pairs: Vec<(String, String)> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let kept: Vec<_> = pairs.into_iter().filter(|(k, _)| k != "lang").collect();
    match serde_urlencoded::to_string(&kept) {
        Ok(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_string(),
    }
}

/// The same page in `lang`.
fn switch_href(path: &str, lang: Lang) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}lang={}", lang.code())
}

fn lang_of(parts: &Parts) -> Lang {
    query_param(parts.uri.query(), "lang")
        .and_then(|l| Lang::parse(&l))
        .or_else(|| {
            CookieJar::from_headers(&parts.headers)
                .get(LANG_COOKIE)
                .and_then(|c| Lang::parse(c.value()))
        })
        .unwrap_or_default()
}

/// The live session of a request, if any.
pub(crate) fn signed_in(parts: &Parts, state: &AppState) -> Option<Signed> {
    let sessions = parts.extensions.get::<Sessions>()?;
    let jar = CookieJar::from_headers(&parts.headers);
    sessions.get(jar.get(SESSION_COOKIE)?.value(), &state.users, Instant::now())
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let lang = lang_of(parts);
        let path = path_without_lang(parts);
        if state.users.is_open() {
            return Ok(Viewer {
                user: None,
                signed: None,
                lang,
                path,
            });
        }
        match signed_in(parts, state) {
            Some(signed) => Ok(Viewer {
                user: Some(signed.user.clone()),
                signed: Some(signed),
                lang,
                path,
            }),
            None => {
                let back = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let query = serde_urlencoded::to_string([("next", back)]).unwrap_or_default();
                Err(Redirect::to(&format!("/signin?{query}")).into_response())
            }
        }
    }
}

/// A time as Beijing time (China has one zone, UTC+8, and no daylight saving).
pub(crate) fn china_time(ms: i64) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else {
        return ms.to_string();
    };
    jiff::tz::offset(8)
        .to_datetime(ts)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A stored RFC 3339 time as Beijing time; text that is not one shows as it is.
pub(crate) fn china_time_text(text: &str) -> String {
    text.parse::<jiff::Timestamp>()
        .map_or_else(|_| text.to_string(), |t| china_time(t.as_millisecond()))
}

/// The page around every page's content: language, viewport, navigation, who is signed
/// in and the sign-out form.
pub(crate) fn layout(v: &Viewer, title: &str, content: Markup) -> Markup {
    let other = v.lang.other();
    html! {
        (DOCTYPE)
        html lang=(v.lang.html()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (v.t("app.title")) }
                link rel="stylesheet" href=(STYLE_PATH);
                script src=(SCRIPT_PATH) defer {}
            }
            body {
                header.top {
                    nav {
                        a.brand href="/" { (v.t("app.title")) }
                        a href="/" { (v.t("nav.overview")) }
                        a href="/cases" { (v.t("nav.cases")) }
                        a href="/stats" { (v.t("nav.stats")) }
                        a #lang-switch href=(switch_href(&v.path, other)) lang=(other.html()) { (v.t("lang.switch")) }
                    }
                    div.who {
                        @if let Some(signed) = &v.signed {
                            span #who { (v.t("signin.as")) ": " (signed.user.name) }
                            form.inline method="post" action="/signout" {
                                input type="hidden" name=(session::CSRF_FIELD) value=(signed.csrf);
                                button type="submit" #signout { (v.t("nav.signout")) }
                            }
                        } @else {
                            span.badge.open { (v.t("nav.open_mode")) }
                        }
                    }
                }
                main #main { (content) }
            }
        }
    }
}

/// A page as a response.
pub(crate) fn page(v: &Viewer, title: &str, content: Markup) -> Response {
    axum::response::Html(layout(v, title, content).into_string()).into_response()
}

/// A clear error page: what went wrong and a way back.
pub(crate) fn error_page(v: &Viewer, status: StatusCode, message: &str) -> Response {
    let content = html! {
        h1 { (v.t("error.title")) }
        p.error #error { (message) }
        p { a href="/" { (v.t("error.back")) } }
    };
    (
        status,
        axum::response::Html(layout(v, &v.t("error.title"), content).into_string()),
    )
        .into_response()
}

/// The CSRF token of a form matches the session's; open mode has no forms.
pub(crate) fn check_csrf<'a>(v: &'a Viewer, given: &str) -> Result<&'a Signed, Box<Response>> {
    let Some(signed) = &v.signed else {
        return Err(Box::new(error_page(v, StatusCode::FORBIDDEN, &v.t("error.read_only"))));
    };
    if session::same_secret(&signed.csrf, given) {
        Ok(signed)
    } else {
        metrics::counter!("gridwatch_dashboard_forms_refused_total", "reason" => "csrf").increment(1);
        Err(Box::new(error_page(v, StatusCode::FORBIDDEN, &v.t("error.csrf"))))
    }
}

/// Links to the other pages of a list: "page N of M" with previous and next.
pub(crate) fn pager(v: &Viewer, base: &str, page: usize, pages: usize, total: usize) -> Markup {
    let sep = if base.contains('?') { '&' } else { '?' };
    html! {
        @if pages > 1 {
            nav.pager {
                @if page > 1 { a rel="prev" href={ (base) (sep) "page=" (page - 1) } { (v.t("page.prev")) } " " }
                span { (page) " / " (pages) " " (v.t("page.of")) " " (total) }
                @if page < pages { " " a rel="next" href={ (base) (sep) "page=" (page + 1) } { (v.t("page.next")) } }
            }
        }
    }
}

/// `?page=N` (from 1), within the pages there are.
pub(crate) fn page_of(requested: Option<usize>, total: usize, per_page: usize) -> (usize, usize) {
    let pages = total.div_ceil(per_page).max(1);
    (requested.unwrap_or(1).clamp(1, pages), pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_in_beijing_time() {
        // 2025-11-25T09:00:00Z is 17:00 in Beijing.
        assert_eq!(china_time(1_764_061_200_000), "2025-11-25 17:00:00");
        assert_eq!(china_time_text("2025-11-25T09:00:00Z"), "2025-11-25 17:00:00");
        assert_eq!(china_time_text("garbage"), "garbage");
    }

    #[test]
    fn the_language_link_keeps_the_other_parameters() {
        let parts = |uri: &str| axum::http::Request::get(uri).body(()).unwrap().into_parts().0;
        assert_eq!(path_without_lang(&parts("/cases?show=all&lang=en")), "/cases?show=all");
        assert_eq!(path_without_lang(&parts("/?lang=en")), "/");
        assert_eq!(switch_href("/cases?show=all", Lang::En), "/cases?show=all&lang=en");
        assert_eq!(switch_href("/stats", Lang::Zh), "/stats?lang=zh");
    }

    #[test]
    fn pages_are_clamped() {
        assert_eq!(page_of(None, 0, 100), (1, 1));
        assert_eq!(page_of(Some(9), 250, 100), (3, 3));
        assert_eq!(page_of(Some(0), 250, 100), (1, 3));
    }
}
