//! `GET/POST /signin` and `POST /signout`. A user pastes their API token; the token is
//! checked against the users file and a session opened ([`super::session`]). The
//! sign-in form has no session yet, so its CSRF token is double-submitted: a random
//! value in a SameSite=Strict cookie and the same in a hidden field.
use super::session::{self, CSRF_FIELD, SESSION_COOKIE, SIGNIN_CSRF_COOKIE, Sessions};
use super::{Viewer, is_https, lang_of, layout};
use crate::http::AppState;
use crate::users_file::token_digest;
use axum::Extension;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use maud::html;
use serde::Deserialize;
use std::time::Instant;

#[derive(Deserialize, Default)]
pub(super) struct Next {
    next: Option<String>,
}

/// Only a path of this site: never `//host` or `https://…` (no open redirect).
fn local(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_string(),
        _ => "/".to_string(),
    }
}

fn cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build()
}

fn viewer(parts: &Parts) -> Viewer {
    Viewer {
        user: None,
        signed: None,
        lang: lang_of(parts),
        path: super::path_without_lang(parts),
    }
}

/// The form, with a fresh double-submit token; `error` says what to fix.
fn render(v: &Viewer, jar: CookieJar, secure: bool, next: &str, status: StatusCode, error: Option<&str>) -> Response {
    let csrf = session::random_token();
    let jar = jar.add(cookie(SIGNIN_CSRF_COOKIE, csrf.clone(), secure));
    let content = html! {
        h1 { (v.t("signin.title")) }
        @if let Some(error) = error { p.error #error { (error) } }
        form.signin method="post" action="/signin" {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            input type="hidden" name="next" value=(next);
            label for="token" { (v.t("signin.token")) }
            input #token type="password" name="token" autocomplete="off" required;
            p.help { (v.t("signin.help")) }
            button #signin type="submit" { (v.t("signin.submit")) }
        }
    };
    (
        status,
        jar,
        Html(layout(v, &v.t("signin.title"), content).into_string()),
    )
        .into_response()
}

pub(super) async fn form(State(s): State<AppState>, parts: Parts, jar: CookieJar, Query(q): Query<Next>) -> Response {
    if s.users.is_open() {
        return Redirect::to("/").into_response();
    }
    let v = viewer(&parts);
    render(
        &v,
        jar,
        is_https(&parts.headers),
        &local(q.next.as_deref()),
        StatusCode::OK,
        None,
    )
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

fn counted(result: &'static str) {
    metrics::counter!("gridwatch_dashboard_signins_total", "result" => result).increment(1);
}

pub(super) async fn submit(
    State(s): State<AppState>,
    parts: Parts,
    Extension(sessions): Extension<Sessions>,
    jar: CookieJar,
    Form(form): Form<SignIn>,
) -> Response {
    if s.users.is_open() {
        return Redirect::to("/").into_response();
    }
    let v = viewer(&parts);
    let secure = is_https(&parts.headers);
    let next = local(form.next.as_deref());
    let expected = jar.get(SIGNIN_CSRF_COOKIE).map(|c| c.value().to_string());
    if !expected.is_some_and(|e| session::same_secret(&e, &form.csrf)) {
        counted("bad_form");
        return render(
            &v,
            jar,
            secure,
            &next,
            StatusCode::FORBIDDEN,
            Some(&v.t("signin.bad_form")),
        );
    }
    let token = form.token.trim();
    if s.users.by_token(token).is_none() {
        counted("bad_token");
        tracing::info!("dashboard sign-in refused: unknown or revoked token");
        return render(
            &v,
            jar,
            secure,
            &next,
            StatusCode::UNAUTHORIZED,
            Some(&v.t("signin.bad_token")),
        );
    }
    match sessions.open(token_digest(token), Instant::now()) {
        Ok((id, _csrf)) => {
            counted("ok");
            let jar = jar
                .remove(Cookie::build(SIGNIN_CSRF_COOKIE).path("/"))
                .add(cookie(SESSION_COOKIE, id, secure));
            (jar, Redirect::to(&next)).into_response()
        }
        Err(session::OpenError::Full) => {
            counted("full");
            tracing::warn!("dashboard sign-in refused: the session limit is reached");
            render(
                &v,
                jar,
                secure,
                &next,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&v.t("signin.full")),
            )
        }
    }
}

#[derive(Deserialize)]
pub(super) struct SignOut {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn sign_out(
    v: Viewer,
    Extension(sessions): Extension<Sessions>,
    jar: CookieJar,
    Form(form): Form<SignOut>,
) -> Response {
    let signed = match super::check_csrf(&v, &form.csrf) {
        Ok(signed) => signed,
        Err(refused) => return *refused,
    };
    sessions.close(&signed.id);
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    (jar, Redirect::to("/signin")).into_response()
}
