//! One JSON error shape for every error the HTTP side answers (docs/api.md, "Errors"):
//! `{"error": "what went wrong and what to fix", "code": "stable_snake_case", "details"?}`.
//!
//! - [`ApiError`]: what handlers return; its code follows its status unless set.
//! - [`Json`], [`Query`], [`Path`]: axum's extractors whose rejections become
//!   [`ApiError`]s naming what to fix.
//! - [`not_found`], [`method_not_allowed`]: the router's fallbacks.
//! - [`json_errors`]: the outermost layer, which turns the error answers of layers that
//!   know nothing of JSON (body limit, timeout) into the same shape.
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error with its HTTP status, a stable code and a message for the caller; 500s are logged.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

/// The error body, as the OpenAPI document describes it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong and what to fix, for a person.
    pub error: String,
    /// What went wrong, for a program: stable snake_case (docs/api.md, "Errors").
    #[schema(example = "not_found")]
    pub code: String,
    /// Machine-readable particulars where there are some (an import's bad rows, a
    /// removal to confirm).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::error_details)]
    pub details: Option<serde_json::Value>,
}

/// The code of an error of `status` unless a handler names a narrower one.
pub(crate) fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code_for(status),
            message: message.into(),
            details: None,
        }
    }

    /// A narrower code than the status's (e.g. `invalid_body` for a 400).
    pub(crate) fn code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub(crate) fn details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl From<gridwatch_storage::Error> for ApiError {
    fn from(e: gridwatch_storage::Error) -> Self {
        tracing::error!(error = %e, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage error, see the server log")
    }
}

pub(crate) fn describe() {
    metrics::describe_counter!(
        "gridwatch_http_errors_total",
        "HTTP error answers by code (docs/api.md, \"Errors\"): bad input, walls, limits, failures"
    );
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("gridwatch_http_errors_total", "code" => self.code).increment(1);
        let body = ErrorBody {
            error: self.message,
            code: self.code.to_string(),
            details: self.details,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// axum's `Json`, whose rejection says what to fix in the body: 415 without a JSON
/// content type, 400 for JSON that does not parse, 422 for JSON of the wrong shape.
pub(crate) struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(body_rejection(rejection)),
        }
    }
}

/// An optional body (`Option<Json<T>>`): none without a Content-Type, else as [`Json`].
impl<T, S> OptionalFromRequest<S> for Json<T>
where
    axum::Json<T>: OptionalFromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        match <axum::Json<T> as OptionalFromRequest<S>>::from_request(req, state).await {
            Ok(value) => Ok(value.map(|axum::Json(v)| Json(v))),
            Err(rejection) => Err(body_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn body_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON: send the header Content-Type: application/json".to_string()
        }
        JsonRejection::JsonSyntaxError(_) => format!("the body is not valid JSON: {}", rejection.body_text()),
        JsonRejection::JsonDataError(_) => format!("the body does not fit this request: {}", rejection.body_text()),
        _ => format!("the body could not be read: {}", rejection.body_text()),
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "invalid_body",
    };
    ApiError::new(status, message).code(code)
}

/// axum's `Query`, whose rejection (400 `invalid_query`) names the parameter.
pub(crate) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the query string does not fit this request: {}", rejection.body_text()),
            )
            .code("invalid_query")),
        }
    }
}

/// axum's `Path`, whose rejection (400 `invalid_path`) says which segment is wrong.
pub(crate) struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    axum::extract::Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                let status = rejection.status();
                let error = ApiError::new(
                    status,
                    format!("the path does not fit this request: {}", rejection.body_text()),
                );
                Err(if status.is_client_error() {
                    error.code("invalid_path")
                } else {
                    error
                })
            }
        }
    }
}

/// The router's fallback: a JSON 404 naming the path and where the routes are listed.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route {}; the routes are listed at /api/openapi.json", uri.path()),
    )
}

/// A route asked with a method it does not answer.
pub(crate) async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; the methods it takes are listed at /api/openapi.json",
            uri.path()
        ),
    )
}

/// What the layers below answer without a JSON body (tower-http's body limit and
/// timeout), in the same shape; `body_bytes` is the body limit, named in its 413.
pub(crate) async fn json_errors(
    body_bytes: usize,
    request_timeout: std::time::Duration,
    response: Response,
) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // JSON is in the shape already; the dashboard's pages answer a browser in HTML, and
    // its CSV export names what went wrong in plain text. What the layers say is rewritten:
    // a body limit or a timeout, or no body at all.
    let from_a_layer =
        matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) || content_type.is_empty();
    if content_type.starts_with("application/json") || !from_a_layer {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!("the request body is over the limit of {body_bytes} bytes"),
        StatusCode::REQUEST_TIMEOUT => format!(
            "the request was not answered within {} s (its body read included); send it again",
            request_timeout.as_secs_f64()
        ),
        other => other.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut answer = ApiError::new(status, message).into_response();
    // Keep what the layer said besides its body (Retry-After, Allow).
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}
