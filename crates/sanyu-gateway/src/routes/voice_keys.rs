//! Acknowledging from a voice call (issue 16, "press 1 to acknowledge"):
//! `POST /v1/voice/keypress/{provider}/{token}`.
//!
//! A critical case's call says school, level and reference, and (in the
//! approved TTS template) "press 1 to acknowledge". Where the provider
//! reports key presses — Tencent Cloud voice messages' key-press callback
//! (按键回调) — it pushes them here:
//!
//! * **Authentication.** The callback is not signed by the provider, so the
//!   address configured there carries a token (`voice.keypress_token`),
//!   compared in constant time; a wrong or unset token answers 401 and
//!   changes nothing. The token is never logged (the request span shows the
//!   prefix only).
//! * **Matching.** The report names the call by the id the provider
//!   answered the call request with, recorded on the call's accepted
//!   attempt: the call's delivery row gives the case and the person called.
//!   The number the report names must be that person's number on the
//!   roster. A call Sanyu did not place, or another number, changes nothing.
//! * **The same command.** "1" is sanyu-case's `Acknowledge { via: VoiceKey }`
//!   as the person called (their roster role and school: the same checks as
//!   the API), audited with `via voice_key`; it stops the ladder. Another key
//!   changes nothing.
//! * **Once.** The call id, key and number are recorded (`processed_messages`,
//!   consumer `voice-keys`) in the same transaction: the provider's retry of
//!   the callback has no second effect.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sanyu_case::{AckChannel, Command};
use sanyu_sms::PhoneNumber;
use sanyu_sms::reply::{self, KeyPress};
use sanyu_store::{ack_links, begin_write, processed, roster};

use super::receipts::same_secret;
use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;

/// The path prefix, for redaction in request spans.
pub const PREFIX: &str = "/v1/voice/keypress/";

/// The processed-message consumer name of key presses.
const CONSUMER: &str = "voice-keys";

/// A key pressed during a case's call, pushed by Tencent Cloud.
#[utoipa::path(
    post,
    path = "/v1/voice/keypress/{provider}/{token}",
    tag = "sms",
    params(
        ("provider" = String, Path, description = "tencent"),
        ("token" = String, Path, description = "voice.keypress_token"),
    ),
    request_body(content = String, description = r#"{"voicekey_callback":{"callid","keypress","mobile","nationcode"}}"#),
    responses(
        (status = 200, description = "Key press handled; the body is the provider's expected acknowledgement"),
        (status = 401, description = "Wrong or unset token", body = ErrorBody),
        (status = 404, description = "Unknown provider", body = ErrorBody),
        (status = 422, description = "Body is not a key press", body = ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    Path((provider, token)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if provider != "tencent" {
        return Err(ApiError::NotFound("route"));
    }
    if !same_secret(&state.receipts.keypress_token, &token) {
        return Err(ApiError::Unauthorized);
    }
    let key = reply::parse_tencent_keypress(&body).map_err(|e| ApiError::Validation {
        field: "body".into(),
        message: e.to_string(),
    })?;
    let outcome = handle(&state, &key).await?;
    tracing::info!(provider = key.provider, outcome, "voice key press handled");
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        reply::TENCENT_KEYPRESS_ACK,
    )
        .into_response())
}

/// Handle one key press in one transaction; what it came to.
async fn handle(state: &AppState, k: &KeyPress) -> Result<&'static str, ApiError> {
    let txn = begin_write(&state.db).await?;
    // The report as a whole: the provider's retry of it is the same; a
    // report naming another number is another report.
    let number = k.to.as_ref().map_or("", |n| n.e164());
    let id = format!("{}:{}:{}:{number}", k.provider, k.call_id, k.key);
    if !processed::record(&*txn, CONSUMER, &id).await? {
        return Ok("duplicate");
    }
    let Some(call) = ack_links::voice_call(&*txn, k.provider, &k.call_id).await? else {
        txn.commit().await?;
        return Ok("unknown_call");
    };
    let person = roster::staff_by_id(&*txn, call.recipient_staff_id)
        .await?
        .filter(|p| p.active);
    let called = |p: &sanyu_store::entities::staff::Model| {
        let on_roster = p.phone.as_deref().and_then(|n| PhoneNumber::parse(n).ok());
        matches!((&k.to, on_roster), (Some(to), Some(n)) if to.e164() == n.e164())
    };
    let Some(person) = person.filter(called) else {
        txn.commit().await?;
        return Ok("not_the_number_called");
    };
    if k.key != "1" {
        txn.commit().await?;
        return Ok("other_key");
    }
    let Some(principal) = super::sms_replies::principal_of(&person) else {
        txn.commit().await?;
        return Ok("not_allowed");
    };
    let source = format!("voice:{}:{}", k.provider, k.call_id);
    let cmd = Command::Acknowledge {
        via: AckChannel::VoiceKey,
    };
    let outcome = match super::casework::act_in(
        &*txn,
        state,
        &principal,
        &source,
        call.case_id,
        &cmd,
    )
    .await
    {
        Ok(_) => "acknowledged",
        Err(ApiError::Conflict { .. }) => "already_acknowledged",
        Err(ApiError::Forbidden(_) | ApiError::NotFound(_)) => "not_allowed",
        Err(other) => return Err(other),
    };
    txn.commit().await?;
    state.waker.wake();
    Ok(outcome)
}
