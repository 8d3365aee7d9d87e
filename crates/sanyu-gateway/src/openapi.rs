//! `/openapi.json`: the document utoipa derives from the handlers, made to
//! say exactly what the server accepts and answers (schemathesis checks it:
//! `tests/e2e/openapi.rs`).
//!
//! The derive cannot say some of it, so it is added here, in one place:
//! - every operation documents the error answers of the shared extractors:
//!   401 (bearer token), 404 (an id in the path), 422 (a body or a query);
//! - every string a request carries has the input rules of
//!   [`sanyu_domain::input`]: no control characters (free text may hold tabs
//!   and line breaks) and a length bound;
//! - the fields a handler requires (the request types keep them optional so
//!   that a missing one is named in a 422) are required and non-empty, and
//!   the codes a field takes are listed;
//! - query parameters are never `null` (absent or empty means not given).
//!
//! What no schema can say (a date within the plausible window or not in the
//! future, an end after the start, a file's columns) is in the descriptions
//! and answers 422.

use std::sync::LazyLock;

use sanyu_domain::{CaseStatus, ReportCategory, RiskLevel};
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use crate::validate::{MAX_CODE, MAX_LINE, MAX_NAME, MAX_NARRATIVE, MAX_TEXT};

/// One line: no control characters (nor the line and paragraph separators).
const LINE: &str = "^[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]*$";
/// Free text: tabs and line breaks allowed.
const TEXT: &str = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\u2028\\u2029]*$";
/// One line with something besides white space in it.
const LINE_NONEMPTY: &str = "^[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]*[^\\s\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029][^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]*$";
/// Free text with something besides white space in it.
const TEXT_NONEMPTY: &str = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\u2028\\u2029]*[^\\s\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029][^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\u2028\\u2029]*$";
const UUID: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// Add the answer `status` (the error body, described as `description`) to
/// the responses at `pointer`.
fn add_error_response(doc: &mut Value, pointer: &str, status: &str, description: &str) {
    if let Some(responses) = doc.pointer_mut(pointer).and_then(Value::as_object_mut) {
        responses.insert(status.into(), error_response(description));
    }
}

/// The document served at `/openapi.json`.
pub fn document() -> &'static Value {
    static DOC: LazyLock<Value> = LazyLock::new(|| {
        let mut doc = serde_json::to_value(crate::ApiDoc::openapi()).unwrap_or(Value::Null);
        complete(&mut doc);
        doc
    });
    &DOC
}

/// Everything the derive leaves out (see the module docs).
fn complete(doc: &mut Value) {
    required_fields(doc);
    request_strings(doc);
    operations(doc);
    uploads(doc);
    role_views(doc);
    add_error_response(
        doc,
        "/paths/~1v1~1cases/get/responses",
        "404",
        "`school` names another school",
    );
}

/// The answers that depend on the caller's role (`CaseView`: `CaseDetail` or
/// `CaseOverview`, and the like) are untagged, and the full record also
/// satisfies the overview's schema (an overview forbids no extra field), so
/// `oneOf` ("exactly one") is false of every full record: they are `anyOf`.
fn role_views(doc: &mut Value) {
    for name in ["CaseView", "KeyPopulationView", "TimelineView"] {
        if let Some(schema) = schema_mut(doc, name)
            && let Some(variants) = schema.remove("oneOf")
        {
            schema.insert("anyOf".into(), variants);
        }
    }
}

/// The screening upload's parts, and the answer to a body that is not multipart.
fn uploads(doc: &mut Value) {
    let Some(body) = doc.pointer_mut("/paths/~1v1~1screening-imports/post/requestBody") else {
        return;
    };
    body["required"] = json!(true);
    let line =
        json!({"type": "string", "minLength": 1, "maxLength": MAX_LINE, "pattern": LINE_NONEMPTY});
    body["content"]["multipart/form-data"]["schema"] = json!({
        "type": "object",
        "required": ["file", "instrument", "coding", "administered"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "instrument": line,
            "coding": line,
            "administered": {"type": "string", "format": "date"},
            "school": line,
            "sheet": line,
            "profile": {"type": "string", "description": "column profile (JSON)"}
        }
    });
    add_error_response(
        doc,
        "/paths/~1v1~1screening-imports/post/responses",
        "415",
        "The body is not multipart/form-data",
    );
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

fn schema_mut<'a>(doc: &'a mut Value, name: &str) -> Option<&'a mut Map<String, Value>> {
    doc.pointer_mut(&format!("/components/schemas/{name}"))
        .and_then(Value::as_object_mut)
}

/// A required, non-null field of `schema` with these constraints.
fn require(doc: &mut Value, schema: &str, field: &str, constraints: Value) {
    let Some(s) = schema_mut(doc, schema) else {
        return;
    };
    let required = s
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = required.as_array_mut()
        && !list.iter().any(|v| v == field)
    {
        list.push(Value::String(field.to_owned()));
    }
    constrain(s, field, constraints);
}

/// Constraints on an optional field of `schema` (it stays nullable).
fn optional(doc: &mut Value, schema: &str, field: &str, constraints: Value) {
    if let Some(s) = schema_mut(doc, schema) {
        constrain(s, field, constraints);
    }
}

fn constrain(schema: &mut Map<String, Value>, field: &str, constraints: Value) {
    let Some(prop) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut(field))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let nullable = prop
        .get("type")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|v| v == "null"));
    if let Value::Object(c) = constraints {
        let keeps_null = c.get("type").is_none() && nullable;
        for (k, v) in c {
            prop.insert(k, v);
        }
        if keeps_null && prop.contains_key("enum") {
            // An enum with null allowed must list it.
            if let Some(e) = prop.get_mut("enum").and_then(Value::as_array_mut) {
                e.push(Value::Null);
            }
        }
    }
}

fn codes<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> Value {
    Value::Array(all.iter().map(|v| json!(name(*v))).collect())
}

fn line(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": LINE_NONEMPTY})
}

fn text(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": TEXT_NONEMPTY})
}

/// What the handlers require of the request bodies.
fn required_fields(doc: &mut Value) {
    let categories = codes(&ReportCategory::ALL, ReportCategory::as_str);
    let levels = codes(&RiskLevel::ALL, RiskLevel::as_str);
    let case_levels = json!(["elevated", "high", "critical"]);
    let date_time = json!({"type": "string", "format": "date-time"});

    for schema in ["ReportRequest", "IncidentRequest"] {
        require(doc, schema, "student_no", line(MAX_CODE));
        require(
            doc,
            schema,
            "category",
            json!({"type": "string", "enum": categories}),
        );
        require(
            doc,
            schema,
            "level",
            json!({"type": "string", "enum": case_levels}),
        );
        require(doc, schema, "narrative", text(MAX_NARRATIVE));
    }
    require(doc, "ReportRequest", "observed_at", date_time.clone());
    optional(
        doc,
        "IncidentRequest",
        "observed_at",
        json!({"format": "date-time"}),
    );
    require(doc, "ZeroReportRequest", "period_id", line(MAX_LINE));

    require(doc, "HotlineCallRequest", "call_id", line(128));
    require(doc, "HotlineCallRequest", "started_at", date_time.clone());
    require(
        doc,
        "HotlineCallRequest",
        "caller_type",
        json!({"type": "string", "enum": ["student", "guardian", "teacher", "anonymous"]}),
    );
    optional(
        doc,
        "HotlineCallRequest",
        "ended_at",
        json!({"format": "date-time"}),
    );
    optional(
        doc,
        "HotlineCallRequest",
        "rating",
        json!({"enum": levels.clone()}),
    );
    optional(
        doc,
        "HotlineCallRequest",
        "student_no",
        json!({"maxLength": MAX_CODE}),
    );
    optional(
        doc,
        "HotlineCallRequest",
        "counsellor",
        json!({"maxLength": MAX_NAME}),
    );
    optional(
        doc,
        "HotlineCallRequest",
        "summary",
        json!({"maxLength": MAX_NARRATIVE}),
    );
    optional(
        doc,
        "HotlineCallRequest",
        "referral_advice",
        json!({"maxLength": 1000}),
    );
    if let Some(s) = schema_mut(doc, "HotlineCallRequest") {
        s.insert(
            "anyOf".into(),
            json!([
                {"required": ["cssrs"], "properties": {"cssrs": {"$ref": "#/components/schemas/CssrsAnswers"}}},
                {"required": ["rating"], "properties": {"rating": {"type": "string", "enum": levels.clone()}}}
            ]),
        );
    }
    optional(
        doc,
        "CssrsAnswers",
        "answers",
        json!({"minItems": 6, "maxItems": 6}),
    );

    for schema in ["LinkRequest", "LinkStudentRequest"] {
        require(doc, schema, "student_no", line(MAX_CODE));
    }
    require(doc, "NoteRequest", "text", text(MAX_TEXT));
    require(doc, "ReopenRequest", "reason", text(MAX_TEXT));
    require(doc, "LevelRequest", "reason", text(MAX_TEXT));
    require(
        doc,
        "LevelRequest",
        "level",
        json!({"type": "string", "enum": levels}),
    );
    require(doc, "CloseRequest", "outcome", line(MAX_CODE));
    optional(
        doc,
        "CloseRequest",
        "summary",
        json!({"minLength": 1, "pattern": TEXT_NONEMPTY}),
    );
    require(doc, "ReferralRequest", "institution", line(200));
    require(doc, "ReturnAssessment", "result", line(MAX_CODE));
    optional(
        doc,
        "GuardianContactRequest",
        "reason",
        json!({"minLength": 1, "pattern": TEXT_NONEMPTY}),
    );
    optional(
        doc,
        "FollowUpRequest",
        "outcome",
        json!({"minLength": 1, "pattern": TEXT_NONEMPTY}),
    );
    duty_fields(doc);
}

/// Duty rosters: the codes and local times the handlers accept.
fn duty_fields(doc: &mut Value) {
    let roles = json!({"type": "string", "enum": ["counsellor", "crisis_team", "leader"]});
    let hhmm = json!({"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"});
    for schema in ["RotationRequest", "OverrideRequest"] {
        require(doc, schema, "role", roles.clone());
    }
    require(doc, "RotationRequest", "name", line(100));
    require(
        doc,
        "RotationRequest",
        "cadence",
        json!({"type": "string", "enum": ["daily", "weekly"]}),
    );
    require(doc, "RotationRequest", "handover", hhmm.clone());
    require(
        doc,
        "RotationRequest",
        "members",
        json!({"type": "array", "minItems": 1, "maxItems": 64, "uniqueItems": true,
               "items": {"type": "string", "format": "uuid"}}),
    );
    optional(
        doc,
        "RotationRequest",
        "days",
        json!({"enum": ["every", "school_days", "key_dates"]}),
    );
    require(doc, "ShiftBody", "start", hhmm.clone());
    require(doc, "ShiftBody", "end", hhmm);
}

/// The schemas (by name) that request bodies use, directly or nested.
fn request_schemas(doc: &Value) -> Vec<String> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref")
                    && let Some(name) = r.strip_prefix("#/components/schemas/")
                {
                    out.push(name.to_owned());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut todo = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for op in paths
            .values()
            .filter_map(Value::as_object)
            .flat_map(|p| p.values())
        {
            if let Some(body) = op.get("requestBody") {
                refs(body, &mut todo);
            }
        }
    }
    let mut seen: Vec<String> = Vec::new();
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        if let Some(s) = doc.pointer(&format!("/components/schemas/{name}")) {
            refs(s, &mut todo);
        }
        seen.push(name);
    }
    seen
}

fn is_plain_string(s: &Map<String, Value>) -> bool {
    let string = match s.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(t)) => t.iter().any(|v| v == "string"),
        _ => false,
    };
    string && !s.contains_key("format") && !s.contains_key("enum")
}

/// The input rules on every plain string of a request: body properties
/// (free text by name, as `validate::json` decides) and query parameters.
fn request_strings(doc: &mut Value) {
    for name in request_schemas(doc) {
        let Some(props) = doc
            .pointer_mut(&format!("/components/schemas/{name}/properties"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (field, prop) in props.iter_mut() {
            let Some(p) = prop.as_object_mut() else {
                continue;
            };
            if !is_plain_string(p) {
                continue;
            }
            let free = crate::validate::is_free_text(field);
            p.entry("pattern")
                .or_insert_with(|| json!(if free { TEXT } else { LINE }));
            p.entry("maxLength")
                .or_insert_with(|| json!(if free { MAX_TEXT } else { MAX_LINE }));
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|p| p.values_mut())
    {
        let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
            continue;
        };
        for param in params.iter_mut().filter(|p| p["in"] == "query") {
            let Some(schema) = param.get_mut("schema").and_then(Value::as_object_mut) else {
                continue;
            };
            // A query parameter is absent or has a value, never `null`.
            if let Some(Value::Array(types)) = schema.get("type").cloned() {
                let types: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
                if types.len() == 1 {
                    schema.insert("type".into(), types[0].clone());
                }
            }
            if is_plain_string(schema) {
                schema.entry("pattern").or_insert_with(|| json!(LINE));
                schema.entry("maxLength").or_insert_with(|| json!(MAX_LINE));
            }
        }
    }
    query_codes(doc);
}

/// The codes query parameters take.
fn query_codes(doc: &mut Value) {
    let statuses = codes(&CaseStatus::ALL, CaseStatus::as_str);
    let levels = codes(&RiskLevel::ALL, RiskLevel::as_str);
    let set = |doc: &mut Value, path: &str, param: &str, schema: Value| {
        let Some(params) = doc
            .pointer_mut(&format!(
                "/paths/{}/get/parameters",
                path.replace('/', "~1")
            ))
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        if let Some(p) = params.iter_mut().find(|p| p["name"] == param) {
            p["schema"] = schema;
        }
    };
    set(
        doc,
        "/v1/cases",
        "status",
        json!({"type": "string", "enum": statuses}),
    );
    set(
        doc,
        "/v1/cases",
        "level",
        json!({"type": "string", "enum": levels}),
    );
    set(
        doc,
        "/v1/cases",
        "assignee",
        json!({"type": "string", "pattern": format!("^(me|{})$", &UUID[1..UUID.len() - 1])}),
    );
    set(
        doc,
        "/v1/hotline-calls",
        "level",
        json!({"type": "string", "enum": levels}),
    );
    set(
        doc,
        "/v1/hotline-calls",
        "since",
        json!({"type": "string", "format": "date-time", "maxLength": MAX_CODE}),
    );
    set(
        doc,
        "/v1/hotline-calls",
        "before",
        json!({"type": "string", "format": "uuid", "pattern": UUID}),
    );
    set(
        doc,
        "/v1/zero-report-periods/{id}/compliance",
        "format",
        json!({"type": "string", "enum": ["json", "csv"]}),
    );
}

/// The answers of the shared extractors, on every operation that has them.
fn operations(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|p| p.values_mut())
        .filter_map(Value::as_object_mut)
    {
        let secured = op
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty());
        let params = op
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let in_path = params.iter().any(|p| p["in"] == "path");
        let in_query = params.iter().any(|p| p["in"] == "query");
        let body = op.get("requestBody").is_some();
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        let mut add = |status: &str, description: &str| {
            responses
                .entry(status)
                .or_insert_with(|| error_response(description));
        };
        if secured {
            add("401", "Missing, unknown, expired or revoked token");
        }
        if in_path {
            add("404", "No such record in your scope");
        }
        if in_query || body {
            add(
                "422",
                "A field or parameter breaks the input rules; `field` names it",
            );
        }
        if body {
            add("413", "The body is larger than the route's limit");
            add(
                "408",
                "The request body stopped arriving (`[http] body_read_timeout_ms`)",
            );
        }
        if secured || body {
            responses.entry("503").or_insert_with(|| {
                let mut answer = error_response(
                    "The database is unavailable (or the service is starting): nothing was done; try again after `Retry-After` seconds",
                );
                answer["headers"] = json!({
                    "Retry-After": {
                        "description": "Seconds to wait before trying again",
                        "schema": {"type": "integer", "minimum": 1}
                    }
                });
                answer
            });
        }
    }
}

#[cfg(test)]
mod tests;
