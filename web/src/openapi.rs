//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! attributes as the router registers them (`routes!` in [`crate::http::routes`]), and
//! served at `GET /api/openapi.json`.
//!
//! Besides what each handler declares, every operation gets the answers any request may
//! get: 401 where a token is needed, and the limits' 408, 413 and 429 (docs/api.md,
//! "Limits"), all in the one error shape ([`ErrorBody`]).
use crate::error::ErrorBody;
use axum::Extension;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gridwatch HTTP API",
        description = "Lifts and kitchen sterilizers for market-supervision grids: alerts, cases, the equipment register, statistics, the live feed. Reference: docs/api.md.",
    ),
    components(schemas(ErrorBody)),
    modifiers(&Bearer),
)]
struct ApiDoc;

/// The document of the routes `doc` was collected from, with the title, the security
/// scheme and the common answers (which must see every path, so they come last).
pub(crate) fn complete(doc: Document) -> Document {
    let mut base = ApiDoc::openapi();
    base.paths = doc.paths;
    if let Some(components) = doc.components {
        let mine = base.components.get_or_insert_with(Default::default);
        mine.schemas.extend(components.schemas);
    }
    CommonAnswers.modify(&mut base);
    base
}

/// The bearer token scheme; every operation needs it unless it says `security(())`.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token made by `gridwatch users add` (docs/api.md, \"Authentication and walls\"); not needed when ingest runs with --open-api",
                    ))
                    .build(),
            ),
        );
        doc.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// The answers every operation may give besides its own, in the error shape.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, doc: &mut Document) {
        let error = |description: &str| -> RefOr<utoipa::openapi::Response> {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
                .into()
        };
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                let open = op.security.as_ref().is_some_and(|s| s.iter().all(is_empty_requirement));
                let answers = &mut op.responses.responses;
                if !open {
                    answers
                        .entry("401".into())
                        .or_insert_with(|| error("No or an unknown bearer token (`unauthorized`)"));
                }
                answers.entry("408".into()).or_insert_with(|| {
                    error(
                        "The request, its body read included, took longer than the request timeout (`request_timeout`)",
                    )
                });
                answers.entry("413".into()).or_insert_with(|| {
                    error("The body is over the body limit, or a field over its limit (`payload_too_large`)")
                });
                answers.entry("429".into()).or_insert_with(|| {
                    error(
                        "Too many requests from this user or address; the answer carries Retry-After (`rate_limited`)",
                    )
                });
                answers
                    .entry("500".into())
                    .or_insert_with(|| error("A failure on the server, logged there (`internal`)"));
            }
        }
    }
}

fn is_empty_requirement(requirement: &SecurityRequirement) -> bool {
    serde_json::to_value(requirement).is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// `GET /api/openapi.json`: this document.
#[utoipa::path(get, operation_id = "openapi", path = "/api/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
pub(crate) async fn serve(Extension(doc): Extension<Arc<Document>>) -> Response {
    axum::Json(doc.as_ref()).into_response()
}
