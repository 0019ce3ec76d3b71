//! Cases: list, show, report from another channel, and take a step of the closed loop.
use crate::http::{ApiError, AppState, Caller};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridwatch_cases::{
    CaseError, CaseId, CaseType, Channel, Decision, Evidence, Priority, Report, Step, StepError, StepInput, Subject,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct CaseSummary {
    id: CaseId,
    case_type: CaseType,
    subject: Subject,
    grid: String,
    priority: Priority,
    status: gridwatch_cases::Status,
    opened_at: u64,
    reports: usize,
}

pub(super) async fn list(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let domain = s.alerting.domain.lock().await;
    let rows: Vec<CaseSummary> = domain
        .book()
        .cases()
        .filter(|c| caller.can_see(Some(c.placement())))
        .map(|c| CaseSummary {
            id: c.id,
            case_type: c.case_type,
            subject: c.subject.clone(),
            grid: c.grid.to_string(),
            priority: c.priority,
            status: c.status(),
            opened_at: c.opened_at,
            reports: c.reports().len(),
        })
        .collect();
    Ok(Json(rows).into_response())
}

pub(super) async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<CaseId>,
) -> Result<Response, ApiError> {
    let domain = s.alerting.domain.lock().await;
    let case = domain.book().case(id).filter(|c| caller.can_see(Some(c.placement())));
    let Some(case) = case else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no case {id}")));
    };
    let deadlines: Vec<_> = case.deadlines(&domain.config().cases.deadlines).collect();
    Ok(Json(serde_json::json!({
        "case": case,
        "status": case.status(),
        "reports": case.reports(),
        "records": case.records(),
        "escalations": case.escalations(),
        "deadlines": deadlines,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportBody {
    channel: Channel,
    device_id: String,
    case_type: CaseType,
    #[serde(default)]
    priority: Option<Priority>,
    description: String,
    /// Caller's number or the reporter's name.
    #[serde(default)]
    reporter: Option<String>,
}

/// A report from a hotline, a patrol or another system; merges into an open case
/// about the same device and problem.
pub(super) async fn report(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<ReportBody>,
) -> Result<Response, ApiError> {
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
        description: body.description,
        reporter: Some(body.reporter.unwrap_or_else(|| user.id.clone())),
        alert: None,
    };
    let (intake, fx) = domain.report(report);
    s.alerting.save(&mut domain, fx).await;
    Ok((StatusCode::CREATED, Json(intake)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StepBody {
    step: Step,
    #[serde(default)]
    note: String,
    #[serde(default)]
    evidence: Vec<Evidence>,
    #[serde(default)]
    decision: Decision,
}

/// Takes the next step of the closed loop as the calling user.
pub(super) async fn step(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<CaseId>,
    Json(body): Json<StepBody>,
) -> Result<Response, ApiError> {
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
            Ok((StatusCode::CREATED, Json(record)).into_response())
        }
        Err(CaseError::UnknownCase(_)) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no case {id}"))),
        Err(CaseError::Step(e)) => {
            metrics::counter!("gridwatch_case_steps_refused_total").increment(1);
            let status = match e {
                StepError::WrongRole { .. } | StepError::NotInGrid { .. } | StepError::ReviewerIsHandler => {
                    StatusCode::FORBIDDEN
                }
                _ => StatusCode::CONFLICT,
            };
            Err(ApiError::new(status, e.to_string()))
        }
    }
}
