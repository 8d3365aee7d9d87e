//! The webhook stand-in: the signature over timestamp and body checked, JSON replies.

use super::*;
use crate::webhook;

pub(super) async fn handle_webhook(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let error = |status: StatusCode, code: &str, reason: &str| {
        (status, Json(json!({"code": code, "reason": reason}))).into_response()
    };
    let verified = webhook::verify(
        shared.secret.as_bytes(),
        header(headers, webhook::TIMESTAMP_HEADER).unwrap_or_default(),
        header(headers, webhook::SIGNATURE_HEADER).unwrap_or_default(),
        body,
        Utc::now(),
    );
    if verified.is_err() {
        shared.reject("bad_signature");
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "X-Sanyu-Signature does not match",
        );
    }
    let Ok(request) = serde_json::from_slice::<webhook::WebhookRequest>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "body is not a webhook request",
        );
    };
    let idempotency_key = header(headers, webhook::IDEMPOTENCY_HEADER)
        .map(str::to_owned)
        .or(Some(request.idempotency_key.clone()));
    let (reply, id) = shared.record(Received {
        channel: "sms",
        phone: request.to,
        template: request.template,
        params: request.params.into_iter().collect(),
        text: Some(request.text),
        sign_name: None,
        idempotency_key: idempotency_key.clone(),
    });
    let reply = settle(reply).await;
    // A key accepted before answers the first message's id (nothing is sent
    // again; see `StandIn::handset_messages`).
    let id = match (&reply, &idempotency_key) {
        (Reply::Accept | Reply::Delay(_), Some(key)) if !key.is_empty() => {
            *shared.lock().first_ids.entry(key.clone()).or_insert(id)
        }
        _ => id,
    };
    match reply {
        Reply::Accept | Reply::Delay(_) => Json(json!({"id": format!("wh-{id}")})).into_response(),
        Reply::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "scripted server error",
        ),
        Reply::HttpStatus(status) => plain_status(status),
        Reply::Throttled => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "throttled", "slow down");
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            response
        }
        Reply::InvalidNumber => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_number",
            "number is not a mobile number",
        ),
        Reply::TemplateRejected => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "template_rejected",
            "template is not approved",
        ),
    }
}
