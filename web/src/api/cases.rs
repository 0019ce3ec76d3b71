//! Cases: list, show, report from another channel, take a step of the closed loop, and
//! record the maintenance firm's responses (acknowledged, arrived on site, resolved).
use super::{PageQuery, page_response};
use crate::error::{Json, Path, Query};
use crate::http::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use gridwatch_cases::deadline::DeadlineStatus;
use gridwatch_cases::{
    Case, CaseError, CaseId, CaseType, Channel, Decision, Escalation, Evidence, Intake, Priority, Report, Response,
    ResponseError, ResponseRecord, Step, StepError, StepInput, StepRecord, Subject,
};
use serde::{Deserialize, Serialize};

/// One case of the list; its times come as pairs (`opened_at_ms`, `opened_at`).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CaseSummary {
    #[schema(value_type = u64)]
    id: CaseId,
    case_type: CaseType,
    subject: Subject,
    grid: String,
    priority: Priority,
    status: gridwatch_cases::Status,
    opened_at: u64,
    known_at: u64,
    late: bool,
    /// Reports merged into the case.
    reports: usize,
}

/// One case with its whole record and where its deadlines stand.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CaseDetail {
    case: Case,
    status: gridwatch_cases::Status,
    reports: Vec<Report>,
    records: Vec<StepRecord>,
    responses: Vec<ResponseRecord>,
    escalations: Vec<Escalation>,
    /// Each step's deadline (configuration `[cases.deadlines]`) and when it was met.
    deadlines: Vec<DeadlineStatus>,
}

/// Cases the caller sees, in arrival order (case ids are given as cases open), one page
/// at a time (`?after=CURSOR&limit=N`); the walls apply before the limit.
#[utoipa::path(get, operation_id = "cases_list", path = "/api/cases", tag = "cases", params(super::PageQuery),
    responses(
        (status = 200, description = "Case summaries in arrival order", body = [CaseSummary],
            headers(("x-next-cursor" = String, description = "The cursor of the next page, when there is one"),
                    ("link" = String, description = "`<URL of the next page>; rel=\"next\"`, when there is one"))),
        (status = 400, description = "A cursor or limit that does not parse", body = crate::error::ErrorBody),
    ))]
pub(super) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (after, limit) = page.parse()?;
    let domain = s.alerting.domain.lock().await;
    let mut rows: Vec<CaseSummary> = domain
        .book()
        .cases()
        .filter(|c| i64::try_from(c.id).is_ok_and(|id| id > after))
        .filter(|c| caller.can_see(Some(c.placement())))
        .take(limit as usize + 1)
        .map(|c| CaseSummary {
            id: c.id,
            case_type: c.case_type,
            subject: c.subject.clone(),
            grid: c.grid.to_string(),
            priority: c.priority,
            status: c.status(),
            opened_at: c.opened_at,
            known_at: c.known_at,
            late: c.late,
            reports: c.reports().len(),
        })
        .collect();
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().and_then(|r| i64::try_from(r.id).ok())
    } else {
        None
    };
    Ok(page_response(&rows, next, "/api/cases", limit))
}

#[utoipa::path(get, operation_id = "cases_show", path = "/api/cases/{id}", tag = "cases", params(("id" = u64, Path, description = "The case id")),
    responses(
        (status = 200, description = "The case, its reports, steps, firm responses, escalations and deadlines", body = CaseDetail),
        (status = 400, description = "An id that is not a number (`invalid_path`)", body = crate::error::ErrorBody),
        (status = 404, description = "No such case the caller sees", body = crate::error::ErrorBody),
    ))]
pub(super) async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<CaseId>,
) -> Result<HttpResponse, ApiError> {
    let domain = s.alerting.domain.lock().await;
    let case = domain.book().case(id).filter(|c| caller.can_see(Some(c.placement())));
    let Some(case) = case else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no case {id}")));
    };
    let detail = CaseDetail {
        case: case.clone(),
        status: case.status(),
        reports: case.reports().to_vec(),
        records: case.records().to_vec(),
        responses: case.responses().to_vec(),
        escalations: case.escalations().to_vec(),
        deadlines: case.deadlines(&domain.config().cases.deadlines).collect(),
    };
    Ok(Json(crate::times::json(&detail)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportBody {
    /// `hotline12315`, `hotline96333`, `patrol` or `api`.
    #[schema(example = "hotline12315")]
    channel: Channel,
    device_id: String,
    /// The problem, e.g. `trapped_passenger`, `fault` (docs/cases.md).
    #[schema(example = "trapped_passenger")]
    case_type: CaseType,
    /// `urgent`, `high` or `normal`; default `urgent` for a trapped passenger, else `normal`.
    #[serde(default)]
    priority: Option<Priority>,
    description: String,
    /// Caller's number or the reporter's name.
    #[serde(default)]
    reporter: Option<String>,
}

/// A report from a hotline, a patrol or another system; merges into an open case
/// about the same device and problem.
#[utoipa::path(post, operation_id = "cases_report", path = "/api/cases", tag = "cases", request_body = ReportBody,
    responses(
        (status = 201, description = "What became of the report: a new case, merged into an open one, or a duplicate of an alert reported already", body = Intake),
        (status = 400, description = "A body that is not JSON (`invalid_body`)", body = crate::error::ErrorBody),
        (status = 403, description = "The device is outside the caller's grids", body = crate::error::ErrorBody),
        (status = 413, description = "A field over its limit, named", body = crate::error::ErrorBody),
        (status = 415, description = "No Content-Type: application/json", body = crate::error::ErrorBody),
        (status = 422, description = "A device not in the register (`unprocessable`), or a body of the wrong shape (`invalid_body`)", body = crate::error::ErrorBody),
    ))]
pub(super) async fn report(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<ReportBody>,
) -> Result<HttpResponse, ApiError> {
    let user = caller.writer()?;
    let mut domain = s.alerting.domain.lock().await;
    let Some(device) = domain.registry().device(&body.device_id) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("field device_id: {:?} is not in the register", body.device_id),
        ));
    };
    if !caller.can_see(Some(domain.registry().placement(device))) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the device is outside your grids"));
    }
    let report = Report {
        channel: body.channel,
        subject: Subject::Device { id: device.id.clone() },
        case_type: body.case_type,
        grid: domain.registry().grid_of(device),
        firm: device.firm.clone(),
        priority: body
            .priority
            .unwrap_or(if body.case_type == CaseType::TrappedPassenger {
                Priority::Urgent
            } else {
                Priority::Normal
            }),
        at: s.clock.now_ms(),
        known_at: None,
        description: body.description,
        reporter: Some(body.reporter.unwrap_or_else(|| user.id.clone())),
        alert: None,
    };
    // Refused whole rather than cut: the reporter learns what was not taken.
    if let Err(e) = report.check(&domain.config().cases.limits) {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()));
    }
    let (intake, fx) = domain.report(report);
    s.alerting.save(&mut domain, fx).await;
    Ok((StatusCode::CREATED, Json(intake)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StepBody {
    /// `accept`, `verify`, `handle`, `feedback` or `review`.
    #[schema(example = "accept")]
    step: Step,
    #[serde(default)]
    note: String,
    /// At most 20 pieces.
    #[serde(default)]
    evidence: Vec<Evidence>,
    /// `return_for_rework` on a review sends the case back.
    #[serde(default)]
    decision: Decision,
}

/// Takes the next step of the closed loop as the calling user.
#[utoipa::path(post, operation_id = "cases_step", path = "/api/cases/{id}/steps", tag = "cases", request_body = StepBody,
    params(("id" = u64, Path, description = "The case id")),
    responses(
        (status = 201, description = "The step's record", body = StepRecord),
        (status = 400, description = "A body that is not JSON, or an id that is not a number", body = crate::error::ErrorBody),
        (status = 403, description = "The caller's role may not take this step", body = crate::error::ErrorBody),
        (status = 404, description = "No such case the caller sees", body = crate::error::ErrorBody),
        (status = 409, description = "A step out of order, or a closed case", body = crate::error::ErrorBody),
        (status = 413, description = "A note or evidence over its limit", body = crate::error::ErrorBody),
        (status = 415, description = "No Content-Type: application/json", body = crate::error::ErrorBody),
        (status = 422, description = "A body of the wrong shape (`invalid_body`)", body = crate::error::ErrorBody),
    ))]
pub(super) async fn step(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<CaseId>,
    Json(body): Json<StepBody>,
) -> Result<HttpResponse, ApiError> {
    let user = caller.writer()?;
    let mut domain = s.alerting.domain.lock().await;
    if !domain
        .book()
        .case(id)
        .is_some_and(|c| caller.can_see(Some(c.placement())))
    {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no case {id}")));
    }
    let input = StepInput {
        step: body.step,
        decision: body.decision,
        at: s.clock.now_ms(),
        note: body.note,
        evidence: body.evidence,
    };
    match domain.perform(id, user, input) {
        Ok((record, fx)) => {
            s.alerting.save(&mut domain, fx).await;
            Ok((StatusCode::CREATED, Json(crate::times::json(&record))).into_response())
        }
        Err(e) => Err(refusal(id, e)),
    }
}

/// A refused step or response as an HTTP error: 403 for who, 413 for size, 409 for the
/// case's state.
fn refusal(id: CaseId, e: CaseError) -> ApiError {
    let status = match &e {
        CaseError::UnknownCase(_) => return ApiError::new(StatusCode::NOT_FOUND, format!("no case {id}")),
        CaseError::Step(StepError::WrongRole { .. } | StepError::NotInGrid { .. } | StepError::ReviewerIsHandler)
        | CaseError::Response(ResponseError::WrongRole { .. } | ResponseError::NotInGrid { .. }) => {
            StatusCode::FORBIDDEN
        }
        CaseError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        CaseError::Step(_) | CaseError::Response(_) => StatusCode::CONFLICT,
    };
    metrics::counter!("gridwatch_case_steps_refused_total").increment(1);
    ApiError::new(status, e.to_string())
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResponseBody {
    #[serde(default)]
    note: String,
}

/// `POST /api/cases/{id}/acknowledgement`: the firm took the alarm.
#[utoipa::path(post, operation_id = "cases_acknowledgement", path = "/api/cases/{id}/acknowledgement", tag = "cases", request_body(content = Option<ResponseBody>, description = "Optional: `{\"note\"}`"),
    params(("id" = u64, Path, description = "The case id")),
    responses(
        (status = 201, description = "The firm's `acknowledged` response", body = ResponseRecord),
        (status = 403, description = "Not the case's firm or a grid administrator over its grid", body = crate::error::ErrorBody),
        (status = 404, description = "No such case the caller sees", body = crate::error::ErrorBody),
        (status = 409, description = "Recorded already, or the case is closed", body = crate::error::ErrorBody),
        (status = 422, description = "A body of the wrong shape (`invalid_body`)", body = crate::error::ErrorBody),
    ))]
pub(super) async fn acknowledgement(
    state: State<AppState>,
    caller: Caller,
    id: Path<CaseId>,
    body: Option<Json<ResponseBody>>,
) -> Result<HttpResponse, ApiError> {
    respond(state, caller, id, Response::Acknowledged, body).await
}

/// `POST /api/cases/{id}/arrival`: the firm's staff are on site.
#[utoipa::path(post, operation_id = "cases_arrival", path = "/api/cases/{id}/arrival", tag = "cases", request_body(content = Option<ResponseBody>, description = "Optional: `{\"note\"}`"),
    params(("id" = u64, Path, description = "The case id")),
    responses(
        (status = 201, description = "The firm's `arrived_on_site` response", body = ResponseRecord),
        (status = 403, description = "Not the case's firm or a grid administrator over its grid", body = crate::error::ErrorBody),
        (status = 404, description = "No such case the caller sees", body = crate::error::ErrorBody),
        (status = 409, description = "Recorded already, or the case is closed", body = crate::error::ErrorBody),
        (status = 422, description = "A body of the wrong shape (`invalid_body`)", body = crate::error::ErrorBody),
    ))]
pub(super) async fn arrival(
    state: State<AppState>,
    caller: Caller,
    id: Path<CaseId>,
    body: Option<Json<ResponseBody>>,
) -> Result<HttpResponse, ApiError> {
    respond(state, caller, id, Response::ArrivedOnSite, body).await
}

/// `POST /api/cases/{id}/resolution`: the firm says the fault is fixed.
#[utoipa::path(post, operation_id = "cases_resolution", path = "/api/cases/{id}/resolution", tag = "cases", request_body(content = Option<ResponseBody>, description = "Optional: `{\"note\"}`"),
    params(("id" = u64, Path, description = "The case id")),
    responses(
        (status = 201, description = "The firm's `resolved` response", body = ResponseRecord),
        (status = 403, description = "Not the case's firm or a grid administrator over its grid", body = crate::error::ErrorBody),
        (status = 404, description = "No such case the caller sees", body = crate::error::ErrorBody),
        (status = 409, description = "Recorded already, or the case is closed", body = crate::error::ErrorBody),
        (status = 422, description = "A body of the wrong shape (`invalid_body`)", body = crate::error::ErrorBody),
    ))]
pub(super) async fn resolution(
    state: State<AppState>,
    caller: Caller,
    id: Path<CaseId>,
    body: Option<Json<ResponseBody>>,
) -> Result<HttpResponse, ApiError> {
    respond(state, caller, id, Response::Resolved, body).await
}

/// Records a firm response as the calling user: staff of the case's firm or a grid
/// administrator over its grid; others who see the case get 403.
async fn respond(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<CaseId>,
    response: Response,
    body: Option<Json<ResponseBody>>,
) -> Result<HttpResponse, ApiError> {
    let user = caller.writer()?;
    let note = body.map(|Json(b)| b.note).unwrap_or_default();
    let mut domain = s.alerting.domain.lock().await;
    if !domain
        .book()
        .case(id)
        .is_some_and(|c| caller.can_see(Some(c.placement())))
    {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no case {id}")));
    }
    match domain.respond(id, user, response, note, s.clock.now_ms()) {
        Ok((record, fx)) => {
            s.alerting.save(&mut domain, fx).await;
            Ok((StatusCode::CREATED, Json(crate::times::json(&record))).into_response())
        }
        Err(e) => Err(refusal(id, e)),
    }
}
