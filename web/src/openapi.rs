//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! attributes as the router registers them (`routes!` in [`crate::http::routes`]), and
//! served at `GET /api/openapi.json`.
//!
//! Besides what each handler declares, every operation gets the answers any request may
//! get: 401 where a token is needed, and the limits' 408, 413 and 429 (docs/api.md,
//! "Limits"), all in the one error shape ([`ErrorBody`]).
//!
//! Every JSON answer has a concrete schema, derived from the type that is serialised; a
//! field whose content the API does not fix (a reading's body, an error's details) says so
//! with `additionalProperties: true` ([`free_form_object`]). The times of answers come as
//! pairs (`X_ms` and `X`, [`crate::times`]), and so do their schemas.
use crate::error::ErrorBody;
use axum::Extension;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::openapi::schema::{AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, SchemaType, Type};
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
    paired_times(base)
}

/// `doc` with its schemas' times paired the way [`crate::times::api_times`] pairs the
/// answers' (the domain's types keep bare ms, the answers both halves).
fn paired_times(doc: Document) -> Document {
    let Ok(mut value) = serde_json::to_value(&doc) else {
        return doc;
    };
    crate::times::api_times_schemas(&mut value);
    match serde_json::from_value(value) {
        Ok(paired) => paired,
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document with paired times does not read back");
            doc
        }
    }
}

/// A JSON object whose fields the API does not fix, marked free-form on purpose
/// (`additionalProperties: true`); `null` too when `nullable`.
fn free_form_object(description: &str, nullable: bool) -> utoipa::openapi::schema::Object {
    let object = if nullable {
        SchemaType::from_iter([Type::Object, Type::Null])
    } else {
        SchemaType::new(Type::Object)
    };
    ObjectBuilder::new()
        .schema_type(object)
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .description(Some(description))
        .build()
}

/// A device's last reading body as it sent it (docs/protocol.md): free-form.
pub(crate) fn reading_body() -> utoipa::openapi::schema::Object {
    free_form_object(
        "The body of the device's last status reading as it sent it (docs/protocol.md); `null` for a device that never reported",
        true,
    )
}

/// An error's particulars: an object (a removal to confirm) or a list of objects (an
/// import's bad rows), each free-form.
pub(crate) fn error_details() -> utoipa::openapi::schema::Schema {
    AnyOfBuilder::new()
        .item(free_form_object(
            "Particulars, e.g. `{removals, in_scope, max_unconfirmed_share, first}`",
            false,
        ))
        .item(ArrayBuilder::new().items(free_form_object(
            "One particular, e.g. a bad row `{line, column, found, expected}`",
            false,
        )))
        .description(Some(
            "Machine-readable particulars where there are some (an import's bad rows, a removal to confirm)",
        ))
        .build()
        .into()
}

/// The answer of `GET /api/stats/{name}` as JSON: the rows of the statistics named.
pub(crate) struct StatsRows;

impl utoipa::PartialSchema for StatsRows {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        let rows = |name: &str| ArrayBuilder::new().items(Ref::from_schema_name(name));
        AnyOfBuilder::new()
            .item(rows("CaseCountRow"))
            .item(rows("OverdueRow"))
            .item(rows("TimingRow"))
            .item(rows("GridDueRow"))
            .item(rows("GridRankRow"))
            .description(Some(
                "`cases`: CaseCountRow, `overdue`: OverdueRow, `timings`: TimingRow, `devices-due`: GridDueRow, `ranking`: GridRankRow",
            ))
            .into()
    }
}

impl utoipa::ToSchema for StatsRows {
    fn schemas(schemas: &mut Vec<(String, RefOr<utoipa::openapi::schema::Schema>)>) {
        use gridwatch_cases::stats::{CaseCountRow, GridDueRow, GridRankRow, OverdueRow, TimingRow};
        use utoipa::PartialSchema;
        schemas.push((CaseCountRow::name().into(), CaseCountRow::schema()));
        CaseCountRow::schemas(schemas);
        schemas.push((OverdueRow::name().into(), OverdueRow::schema()));
        OverdueRow::schemas(schemas);
        schemas.push((TimingRow::name().into(), TimingRow::schema()));
        TimingRow::schemas(schemas);
        schemas.push((GridDueRow::name().into(), GridDueRow::schema()));
        GridDueRow::schemas(schemas);
        schemas.push((GridRankRow::name().into(), GridRankRow::schema()));
        GridRankRow::schemas(schemas);
    }
}

/// This document's own schema: an OpenAPI 3.1 document, free-form below its top.
pub(crate) struct OpenApiDocument;

impl utoipa::PartialSchema for OpenApiDocument {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .property("openapi", ObjectBuilder::new().schema_type(Type::String))
            .property("info", free_form_object("The title, version and description", false))
            .property("paths", free_form_object("Every route, by path and method", false))
            .property(
                "components",
                free_form_object("The schemas and the security scheme", false),
            )
            .required("openapi")
            .required("info")
            .required("paths")
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .description(Some("An OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0)"))
            .into()
    }
}

impl utoipa::ToSchema for OpenApiDocument {}

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
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = OpenApiDocument)))]
pub(crate) async fn serve(Extension(doc): Extension<Arc<Document>>) -> Response {
    axum::Json(doc.as_ref()).into_response()
}
