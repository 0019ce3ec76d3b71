//! `/cases` and `/cases/{id}`: the cases the viewer may see, one case's deadlines,
//! escalations, firm responses and audit trail, and forms for exactly the next steps the
//! signed-in user's roles may take there (`STEP_ROLES`, `RESPONDERS`). A form performs
//! its step through `Alerting` as `POST /api/cases/{id}/steps` does, then redirects back
//! (303) with a flash message, or shows a page saying why it was refused.
use super::i18n::serde_name;
use super::session::CSRF_FIELD;
use super::{Viewer, check_csrf, china_time, error_page, page_of, pager};
use crate::http::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use gridwatch_cases::{
    Case, CaseError, CaseId, Decision, Evidence, EvidenceKind, RESPONDERS, Response as FirmResponse, ResponseError,
    Step, StepError, StepInput, Subject, User,
};
use maud::{Markup, html};
use serde::Deserialize;

const CASES_PER_PAGE: usize = 100;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    page: Option<usize>,
    /// `all`: closed cases too.
    show: Option<String>,
}

fn case_link(case: &Case) -> Markup {
    html! {
        @match &case.subject {
            Subject::Device { id } => a href={ "/devices/" (id) } { (id) },
            Subject::Unit { unit } => (unit.name),
        }
    }
}

pub(super) async fn list(State(s): State<AppState>, v: Viewer, Query(q): Query<ListQuery>) -> Response {
    let all = q.show.as_deref() == Some("all");
    let domain = s.alerting.domain.lock().await;
    let mut cases: Vec<&Case> = domain
        .book()
        .cases()
        .filter(|c| v.can_see(Some(c.placement())) && (all || c.is_open()))
        .collect();
    // Urgent first, then the newest.
    cases.sort_by(|a, b| b.priority.cmp(&a.priority).then(b.id.cmp(&a.id)));
    let (page, pages) = page_of(q.page, cases.len(), CASES_PER_PAGE);
    let base = if all { "/cases?show=all" } else { "/cases" };
    let content = html! {
        h1 { (v.t("cases.title")) " " span.count { (cases.len()) } }
        p.tabs {
            a href="/cases" class=[(!all).then_some("current")] { (v.t("cases.open")) }
            " · "
            a href="/cases?show=all" class=[all.then_some("current")] { (v.t("cases.all")) }
        }
        div.scroll {
            table #cases {
                thead { tr {
                    th { (v.t("col.case")) } th { (v.t("col.kind")) } th { (v.t("col.device")) } th { (v.t("col.grid")) }
                    th { (v.t("col.priority")) } th { (v.t("col.status")) } th { (v.t("col.opened")) }
                } }
                tbody {
                    @for c in cases.iter().skip((page - 1) * CASES_PER_PAGE).take(CASES_PER_PAGE) {
                        tr class={ "prio-" (serde_name(&c.priority)) } data-case=(c.id) {
                            td { a href={ "/cases/" (c.id) } { "#" (c.id) } }
                            td { (v.lang.of("case_type", &c.case_type)) }
                            td { (case_link(c)) }
                            td { (c.grid.to_string()) }
                            td { (v.lang.of("priority", &c.priority)) }
                            td { (v.lang.of("status", &c.status())) }
                            td { (china_time(c.opened_at as i64)) }
                        }
                    }
                }
            }
        }
        (pager(&v, base, page, pages, cases.len()))
    };
    super::page(&v, &v.t("cases.title"), content)
}

#[derive(Deserialize)]
pub(super) struct Flash {
    /// Set by the redirect after a form: `step` or `response`.
    done: Option<String>,
}

/// The step of the loop `user` may take on `case` now, if any.
fn next_step_for(case: &Case, user: &User) -> Option<Step> {
    let step = Step::next_for(case.status())?;
    let held: Vec<_> = user.roles_at(case.placement()).collect();
    step.allowed_roles().iter().any(|r| held.contains(r)).then_some(step)
}

/// The firm responses `user` may record on `case` now.
fn responses_for(case: &Case, user: &User) -> Vec<FirmResponse> {
    if !case.is_open() || !user.roles_at(case.placement()).any(|r| RESPONDERS.contains(&r)) {
        return Vec::new();
    }
    [FirmResponse::Acknowledged, FirmResponse::ArrivedOnSite]
        .into_iter()
        .filter(|r| case.responded_at(*r).is_none())
        .collect()
}

pub(super) async fn page(
    State(s): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    Query(flash): Query<Flash>,
) -> Response {
    let now = s.clock.now_ms();
    let domain = s.alerting.domain.lock().await;
    let Some(case) = id
        .parse::<CaseId>()
        .ok()
        .and_then(|id| domain.book().case(id))
        .filter(|c| v.can_see(Some(c.placement())))
    else {
        return error_page(&v, StatusCode::NOT_FOUND, &v.t("case.not_found"));
    };
    let deadlines: Vec<_> = case.deadlines(&domain.config().cases.deadlines).collect();
    let next = Step::next_for(case.status());
    let mine = v.user.as_ref().and_then(|u| next_step_for(case, u));
    let responses = v.user.as_ref().map(|u| responses_for(case, u)).unwrap_or_default();
    let csrf = v.signed.as_ref().map(|s| s.csrf.clone()).unwrap_or_default();
    let lang = v.lang;
    let flash = match flash.done.as_deref() {
        Some("step") => Some(v.t("flash.step")),
        Some("response") => Some(v.t("flash.response")),
        _ => None,
    };
    let content = html! {
        @if let Some(flash) = flash { p.flash #flash { (flash) } }
        h1 { (v.t("col.case")) " #" (case.id) " " (lang.of("case_type", &case.case_type)) }
        dl.facts {
            dt { (v.t("col.device")) } dd { (case_link(case)) }
            dt { (v.t("col.grid")) } dd { (case.grid.to_string()) }
            @if let Some(firm) = &case.firm { dt { (v.t("col.firm")) } dd { (firm) } }
            dt { (v.t("col.priority")) } dd class={ "prio-" (serde_name(&case.priority)) } { (lang.of("priority", &case.priority)) }
            dt { (v.t("col.status")) } dd #case-status data-status=(serde_name(&case.status())) { (lang.of("status", &case.status())) }
            dt { (v.t("col.opened")) } dd { (china_time(case.opened_at as i64)) @if case.late { " " span.badge.late { (v.t("case.late")) } } }
        }
        section #next {
            h2 { (v.t("case.next")) }
            @match (next, mine) {
                (None, _) => p #closed { (v.t("case.closed")) },
                (Some(step), Some(_)) => (step_form(&v, case.id, step, &csrf)),
                (Some(step), None) => p { (lang.of("step", &step)) ": " (v.t("case.none_for_you")) },
            }
            @for response in &responses {
                form.response method="post" action={ "/cases/" (case.id) "/responses" } {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    input type="hidden" name="response" value=(serde_name(response));
                    button type="submit" id={ "respond-" (serde_name(response)) } { (v.t("case.record")) ": " (lang.of("response", response)) }
                }
            }
        }
        section {
            h2 { (v.t("case.deadlines")) }
            div.scroll { table #deadlines {
                thead { tr { th { (v.t("col.step")) } th { (v.t("col.due")) } th { (v.t("col.done")) } } }
                tbody { @for d in &deadlines {
                    tr class=[d.missed(now).then_some("missed")] {
                        td { (lang.of("step", &d.step)) }
                        td { (china_time(d.due_at as i64)) @if d.missed(now) { " " span.badge.missed { (v.t("case.missed")) } } }
                        td { @if let Some(done) = d.done_at { (china_time(done as i64)) } @else { "—" } }
                    }
                } }
            } }
        }
        @if !case.escalations().is_empty() {
            section {
                h2 { (v.t("case.escalations")) }
                div.scroll { table #escalations {
                    thead { tr { th { (v.t("col.at")) } th { (v.t("col.step")) } th { (v.t("col.level")) } } }
                    tbody { @for e in case.escalations() {
                        tr { td { (china_time(e.at as i64)) } td { (lang.of("step", &e.step)) } td { (lang.of("escalation", &e.level)) } }
                    } }
                } }
            }
        }
        @if !case.responses().is_empty() {
            section {
                h2 { (v.t("case.responses")) }
                div.scroll { table #responses {
                    thead { tr { th { (v.t("col.at")) } th { (v.t("col.kind")) } th { (v.t("col.actor")) } th { (v.t("col.role")) } th { (v.t("col.note")) } } }
                    tbody { @for r in case.responses() {
                        tr { td { (china_time(r.at as i64)) } td { (lang.of("response", &r.response)) } td { (r.actor) } td { (lang.of("role", &r.role)) } td { (r.note) } }
                    } }
                } }
            }
        }
        section {
            h2 { (v.t("case.audit")) }
            div.scroll { table #audit {
                thead { tr { th { (v.t("col.at")) } th { (v.t("col.step")) } th { (v.t("col.actor")) } th { (v.t("col.role")) } th { (v.t("col.note")) } } }
                tbody { @for r in case.records() {
                    tr data-step=(serde_name(&r.step)) {
                        td { (china_time(r.at as i64)) }
                        td { (lang.of("step", &r.step)) @if r.decision == Decision::ReturnForRework { " (" (lang.of("decision", &r.decision)) ")" } }
                        td { (r.actor) }
                        td { (lang.of("role", &r.role)) }
                        td { (r.note) @for e in &r.evidence { br; small { (serde_name(&e.kind)) ": " (e.reference) } } }
                    }
                } }
            } }
        }
    };
    let title = format!("{} #{}", v.t("col.case"), case.id);
    drop(domain);
    super::page(&v, &title, content)
}

fn step_form(v: &Viewer, id: CaseId, step: Step, csrf: &str) -> Markup {
    html! {
        form.step method="post" action={ "/cases/" (id) "/steps" } {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            input type="hidden" name="step" value=(serde_name(&step));
            h3 { (v.lang.of("step", &step)) }
            label for="note" { (v.t("col.note")) }
            textarea #note name="note" rows="3" {}
            label for="evidence" { (v.t("case.evidence")) }
            input #evidence type="text" name="evidence" autocomplete="off";
            @if step == Step::Review {
                label for="decision" { (v.lang.of("step", &step)) }
                select #decision name="decision" {
                    option value="proceed" selected { (v.lang.of("decision", &Decision::Proceed)) }
                    option value="return_for_rework" { (v.lang.of("decision", &Decision::ReturnForRework)) }
                }
            }
            button #take-step type="submit" data-step=(serde_name(&step)) { (v.t("case.take_step")) ": " (v.lang.of("step", &step)) }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct StepForm {
    #[serde(default)]
    csrf: String,
    step: Step,
    #[serde(default)]
    note: String,
    /// One reference (a photo number, a link): recorded as a photo.
    #[serde(default)]
    evidence: String,
    #[serde(default)]
    decision: Decision,
}

/// A refused step or response as a page: 403 for who, 413 for size, 409 for state.
fn refused(v: &Viewer, e: CaseError) -> Response {
    let status = match &e {
        CaseError::UnknownCase(_) => return error_page(v, StatusCode::NOT_FOUND, &v.t("case.not_found")),
        CaseError::Step(StepError::WrongRole { .. } | StepError::NotInGrid { .. } | StepError::ReviewerIsHandler)
        | CaseError::Response(ResponseError::WrongRole { .. } | ResponseError::NotInGrid { .. }) => {
            StatusCode::FORBIDDEN
        }
        CaseError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        CaseError::Step(_) | CaseError::Response(_) => StatusCode::CONFLICT,
    };
    metrics::counter!("gridwatch_case_steps_refused_total").increment(1);
    error_page(v, status, &format!("{}: {e}", v.t("case.refused")))
}

pub(super) async fn step(
    State(s): State<AppState>,
    v: Viewer,
    Path(id): Path<CaseId>,
    Form(form): Form<StepForm>,
) -> Response {
    let user = match check_csrf(&v, &form.csrf) {
        Ok(signed) => signed.user.clone(),
        Err(refusal) => return *refusal,
    };
    let mut domain = s.alerting.domain.lock().await;
    if !domain.book().case(id).is_some_and(|c| v.can_see(Some(c.placement()))) {
        return error_page(&v, StatusCode::NOT_FOUND, &v.t("case.not_found"));
    }
    let evidence = form.evidence.trim();
    let input = StepInput {
        step: form.step,
        decision: form.decision,
        at: s.clock.now_ms(),
        note: form.note,
        evidence: (!evidence.is_empty())
            .then(|| Evidence {
                kind: EvidenceKind::Photo,
                reference: evidence.to_string(),
            })
            .into_iter()
            .collect(),
    };
    match domain.perform(id, &user, input) {
        Ok((_, fx)) => {
            s.alerting.save(&mut domain, fx).await;
            Redirect::to(&format!("/cases/{id}?done=step")).into_response()
        }
        Err(e) => refused(&v, e),
    }
}

#[derive(Deserialize)]
pub(super) struct ResponseForm {
    #[serde(default)]
    csrf: String,
    response: FirmResponse,
    #[serde(default)]
    note: String,
}

pub(super) async fn respond(
    State(s): State<AppState>,
    v: Viewer,
    Path(id): Path<CaseId>,
    Form(form): Form<ResponseForm>,
) -> Response {
    let user = match check_csrf(&v, &form.csrf) {
        Ok(signed) => signed.user.clone(),
        Err(refusal) => return *refusal,
    };
    let mut domain = s.alerting.domain.lock().await;
    if !domain.book().case(id).is_some_and(|c| v.can_see(Some(c.placement()))) {
        return error_page(&v, StatusCode::NOT_FOUND, &v.t("case.not_found"));
    }
    match domain.respond(id, &user, form.response, form.note, s.clock.now_ms()) {
        Ok((_, fx)) => {
            s.alerting.save(&mut domain, fx).await;
            Redirect::to(&format!("/cases/{id}?done=response")).into_response()
        }
        Err(e) => refused(&v, e),
    }
}
