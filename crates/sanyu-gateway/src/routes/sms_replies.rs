//! Acknowledging by SMS reply: `POST /v1/sms/replies/webhook` and
//! `POST /v1/sms/replies/{aliyun|tencent}/{token}`.
//!
//! A staff member answers a case SMS with "1" or the case reference
//! (`C-7F3K2Q`, or its code `7F3K2Q`; case and Crockford look-alikes do not
//! matter). The provider pushes the reply here:
//!
//! * **Authentication.** The webhook's replies are HMAC-signed with the
//!   webhook's secret (`X-Sanyu-Timestamp`, `X-Sanyu-Signature`, ±5 min), like
//!   its receipts; a wrong signature answers 401. Alibaba Cloud's up-message
//!   push and Tencent Cloud's reply callback are not signed by the providers,
//!   so the address configured at the provider carries a token per provider
//!   (`sms.reply_tokens.aliyun`, `sms.reply_tokens.tencent`), compared in
//!   constant time; a wrong or unset token answers 401 and changes nothing.
//!   The token is never logged (the request span shows the prefix only).
//! * **Matching.** The sender's number must be the mobile number of an
//!   active staff member on the roster (the number alerts are sent to). The
//!   reply answers the cases an SMS was sent to that number about in the last
//!   `console.sms_reply_window_hours` (default 24). "1" acknowledges the one
//!   unacknowledged case among them; a reference acknowledges that case if it
//!   is among them (another case looks absent).
//! * **The same command.** The acknowledgement is sanyu-case's
//!   `Acknowledge { via: SmsReply }` as the staff member (their roster role
//!   and school: the same role and scope checks as the API), audited with
//!   `via sms_reply`; it stops the ladder.
//! * **The answer.** The sender is texted what happened (`ack_confirmed`, or
//!   `ack_refused` with why: `ambiguous` — two cases wait and the reply was
//!   "1", listing their references —, `no_case`, `already_acknowledged`,
//!   `not_allowed`, `unreadable`), as an outbox row of the same transaction.
//!   An unknown number changes nothing and is not texted (Sanyu texts only
//!   its roster). Ambiguous and refused replies change nothing.
//! * **Once.** The provider's message id is recorded (`processed_messages`,
//!   consumer `sms-replies`) in the same transaction: a provider's retry of
//!   the callback has no second effect and sends no second answer.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sanyu_case::{AckChannel, Command};
use sanyu_domain::{CaseStatus, Principal, Role};
use sanyu_events::v1;
use sanyu_sms::{AckReplyOutcome, InboundSms, reply, webhook};
use sanyu_store::entities::staff;
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::{Conn, ack_links, begin_write, cases, processed, roster};
use uuid::Uuid;

use super::receipts::same_secret;
use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;

/// The path prefix, for redaction in request spans.
pub const PREFIX: &str = "/v1/sms/replies/";

/// The processed-message consumer name of replies.
const CONSUMER: &str = "sms-replies";

/// A signed reply from the webhook provider.
#[utoipa::path(
    post,
    path = "/v1/sms/replies/webhook",
    tag = "sms",
    request_body(content = String, description = r#"{"id","from","text"}, signed like the webhook's receipts"#),
    responses(
        (status = 200, description = "Reply handled; `outcomes` says what each came to"),
        (status = 401, description = "Signature invalid", body = ErrorBody),
        (status = 422, description = "Body is not a reply", body = ErrorBody),
    )
)]
pub async fn receive_signed(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (ts, sig) = (
        header(webhook::TIMESTAMP_HEADER),
        header(webhook::SIGNATURE_HEADER),
    );
    let mut parsed = None;
    let mut last_error = None;
    for secret in &state.receipts.webhook_secrets {
        match reply::parse_webhook_reply(secret, &ts, &sig, &body, Utc::now()) {
            Ok(r) => {
                parsed = Some(r);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let sms = match (parsed, last_error) {
        (Some(r), _) => r,
        (None, Some(sanyu_sms::ReceiptError::Json(e))) => {
            return Err(invalid(sanyu_sms::ReceiptError::Json(e)));
        }
        (None, _) => return Err(ApiError::Unauthorized),
    };
    let outcome = handle(&state, &sms).await?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({ "outcomes": [outcome] })),
    )
        .into_response())
}

/// A reply pushed by Alibaba Cloud (up-messages) or Tencent Cloud (reply
/// callback), authenticated by the provider's token in the address.
#[utoipa::path(
    post,
    path = "/v1/sms/replies/{provider}/{token}",
    tag = "sms",
    params(
        ("provider" = String, Path, description = "aliyun or tencent"),
        ("token" = String, Path, description = "sms.reply_tokens.<provider>"),
    ),
    request_body(content = String, description = "The provider's up-message body (JSON)"),
    responses(
        (status = 200, description = "Replies handled; the body is the provider's expected acknowledgement"),
        (status = 401, description = "Wrong or unset token", body = ErrorBody),
        (status = 404, description = "Unknown provider", body = ErrorBody),
        (status = 422, description = "Body is not a reply", body = ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    Path((provider, token)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let settings = &state.receipts;
    let (messages, ack) = match provider.as_str() {
        "aliyun" => {
            if !same_secret(&settings.aliyun_reply_token, &token) {
                return Err(ApiError::Unauthorized);
            }
            (
                reply::parse_aliyun_up(&body).map_err(invalid)?,
                sanyu_sms::aliyun::SMS_REPORT_ACK,
            )
        }
        "tencent" => {
            if !same_secret(&settings.tencent_reply_token, &token) {
                return Err(ApiError::Unauthorized);
            }
            (
                vec![reply::parse_tencent_reply(&body).map_err(invalid)?],
                sanyu_sms::tencent::CALLBACK_ACK,
            )
        }
        _ => return Err(ApiError::NotFound("route")),
    };
    for sms in &messages {
        handle(&state, sms).await?;
    }
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        ack,
    )
        .into_response())
}

fn invalid(e: sanyu_sms::ReceiptError) -> ApiError {
    ApiError::Validation {
        field: "body".into(),
        message: e.to_string(),
    }
}

/// A case an SMS was sent to the sender about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub case_id: Uuid,
    pub reference: String,
    /// Not acknowledged yet (status `open`).
    pub waiting: bool,
}

/// What a reply means, given the cases it may answer (most recent first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    Acknowledge(Uuid),
    Refuse {
        why: AckReplyOutcome,
        /// The references the answer names.
        refs: Vec<String>,
        case_id: Option<Uuid>,
    },
}

/// The code of a reference or a reply, comparable: upper case, without
/// `C-` and spaces, Crockford look-alikes folded (`O`→`0`, `I`/`L`→`1`).
fn code_of(text: &str) -> String {
    let upper: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            // Full-width digits and letters as typed on some phones.
            '０'..='９' | 'Ａ'..='Ｚ' | 'ａ'..='ｚ' | '－' => {
                char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
            }
            c => c,
        })
        .collect::<String>()
        .to_ascii_uppercase();
    let code = upper.strip_prefix("C-").unwrap_or(&upper);
    code.chars()
        .map(|c| match c {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect()
}

/// What `text` means among `sent` (pure).
pub fn interpret(text: &str, sent: &[Sent]) -> Meaning {
    let refuse = |why, refs: Vec<String>, case_id| Meaning::Refuse { why, refs, case_id };
    let code = code_of(text);
    if code.is_empty() {
        return refuse(AckReplyOutcome::Unreadable, vec![], None);
    }
    if code == "1" {
        let waiting: Vec<&Sent> = sent.iter().filter(|s| s.waiting).collect();
        return match waiting.as_slice() {
            [] => refuse(AckReplyOutcome::NoCase, vec![], None),
            [one] => Meaning::Acknowledge(one.case_id),
            many => refuse(
                AckReplyOutcome::Ambiguous,
                many.iter().map(|s| s.reference.clone()).collect(),
                None,
            ),
        };
    }
    match sent.iter().find(|s| code_of(&s.reference) == code) {
        Some(s) if s.waiting => Meaning::Acknowledge(s.case_id),
        Some(s) => refuse(
            AckReplyOutcome::AlreadyAcknowledged,
            vec![s.reference.clone()],
            Some(s.case_id),
        ),
        // A code of the reference's shape that is none of theirs: no case.
        None if code.len() >= 4 && code.chars().all(|c| c.is_ascii_alphanumeric()) => {
            refuse(AckReplyOutcome::NoCase, vec![], None)
        }
        None => refuse(AckReplyOutcome::Unreadable, vec![], None),
    }
}

/// Handle one reply in one transaction; what it came to (`acknowledged`, a
/// refusal's reason, `unknown_number`, `duplicate`).
async fn handle(state: &AppState, sms: &InboundSms) -> Result<&'static str, ApiError> {
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let message_id = format!("{}:{}", sms.provider, sms.id);
    if !processed::record(&*txn, CONSUMER, &message_id).await? {
        drop(txn);
        tracing::info!(provider = sms.provider, "SMS reply already handled");
        return Ok("duplicate");
    }
    let people = match &sms.from {
        Some(phone) => {
            let national = phone.without_plus_or_86().to_owned();
            let spellings = vec![
                phone.e164().to_owned(),
                phone.e164().trim_start_matches('+').to_owned(),
                national,
            ];
            roster::active_staff_by_phone(&*txn, &spellings).await?
        }
        None => Vec::new(),
    };
    if people.is_empty() {
        // Recorded as handled (a retry changes nothing either); not texted.
        txn.commit().await?;
        tracing::info!(
            provider = sms.provider,
            "SMS reply from a number not on the roster"
        );
        return Ok("unknown_number");
    }
    // The cases sent to this number (to whichever roster entry holds it).
    let since = now - state.receipts.reply_window;
    let mut sent: Vec<(Sent, staff::Model, chrono::DateTime<Utc>)> = Vec::new();
    for person in &people {
        for (case_id, at) in ack_links::cases_sent_by_sms(&*txn, person.id, since).await? {
            if let Some(c) = cases::get(&*txn, case_id).await? {
                sent.push((
                    Sent {
                        case_id,
                        reference: c.reference.clone(),
                        waiting: c.status == CaseStatus::Open,
                    },
                    person.clone(),
                    at,
                ));
            }
        }
    }
    sent.sort_by_key(|s| std::cmp::Reverse(s.2));
    let candidates: Vec<Sent> = sent.iter().map(|(s, _, _)| s.clone()).collect();
    // The person answered: whoever was sent the case (else the first entry).
    let meaning = interpret(&sms.text, &candidates);
    let (person, answer) = match meaning {
        Meaning::Acknowledge(case_id) => {
            let person = sent
                .iter()
                .find(|(s, _, _)| s.case_id == case_id)
                .map(|(_, p, _)| p.clone())
                .unwrap_or_else(|| people[0].clone());
            let source = format!("sms:{}:{}", sms.provider, sms.id);
            let outcome = match principal_of(&person) {
                Some(principal) => {
                    let cmd = Command::Acknowledge {
                        via: AckChannel::SmsReply,
                    };
                    match super::casework::act_in(&*txn, state, &principal, &source, case_id, &cmd)
                        .await
                    {
                        Ok((written, _)) => Ok(written),
                        Err(ApiError::Conflict { .. }) => Err(AckReplyOutcome::AlreadyAcknowledged),
                        Err(ApiError::Forbidden(_) | ApiError::NotFound(_)) => {
                            Err(AckReplyOutcome::NotAllowed)
                        }
                        Err(other) => return Err(other),
                    }
                }
                None => Err(AckReplyOutcome::NotAllowed),
            };
            let reference = candidates
                .iter()
                .find(|s| s.case_id == case_id)
                .map(|s| s.reference.clone())
                .unwrap_or_default();
            match outcome {
                Ok(written) => (person, Answer::confirmed(written.id, written.reference)),
                Err(why) => (
                    person,
                    Answer {
                        reason: v1::NotificationReason::AckRefused,
                        outcome: why,
                        case_id: Some(case_id),
                        refs: vec![reference],
                    },
                ),
            }
        }
        Meaning::Refuse { why, refs, case_id } => {
            let person = case_id
                .and_then(|id| sent.iter().find(|(s, _, _)| s.case_id == id))
                .map(|(_, p, _)| p.clone())
                .or_else(|| sent.first().map(|(_, p, _)| p.clone()))
                .unwrap_or_else(|| people[0].clone());
            (
                person,
                Answer {
                    reason: v1::NotificationReason::AckRefused,
                    outcome: why,
                    case_id,
                    refs,
                },
            )
        }
    };
    enqueue_answer(&*txn, &person, &message_id, &answer, now).await?;
    txn.commit().await?;
    state.waker.wake();
    tracing::info!(
        provider = sms.provider,
        staff_id = %person.id,
        case_id = ?answer.case_id,
        outcome = answer.outcome.as_str(),
        "SMS reply handled"
    );
    Ok(if answer.reason == v1::NotificationReason::AckConfirmed {
        "acknowledged"
    } else {
        answer.outcome.as_str()
    })
}

/// The principal of a staff member answering by SMS: their roster role and
/// scope (no token: the id is nil; the audit record's source names the
/// provider's message).
pub(crate) fn principal_of(person: &staff::Model) -> Option<Principal> {
    let role: Role = person.role.parse().ok()?;
    Some(Principal {
        token_id: Uuid::nil(),
        role,
        school_id: person.school_id,
        class_id: person.class_id,
        staff_id: Some(person.id),
    })
}

/// The text a reply is answered with.
struct Answer {
    reason: v1::NotificationReason,
    outcome: AckReplyOutcome,
    case_id: Option<Uuid>,
    refs: Vec<String>,
}

impl Answer {
    fn confirmed(case_id: Uuid, reference: String) -> Self {
        Self {
            reason: v1::NotificationReason::AckConfirmed,
            outcome: AckReplyOutcome::Confirmed,
            case_id: Some(case_id),
            refs: vec![reference],
        }
    }
}

async fn enqueue_answer(
    txn: &impl Conn,
    person: &staff::Model,
    message_id: &str,
    answer: &Answer,
    now: chrono::DateTime<Utc>,
) -> Result<(), ApiError> {
    let school = roster::school_by_id(txn, person.school_id)
        .await?
        .ok_or(ApiError::Internal("staff member without a school".into()))?;
    let key = format!("sms_reply:{message_id}:{}", person.id);
    // An answer to the person's own message: sent at once (as critical).
    let level = sanyu_domain::RiskLevel::Critical;
    let request = v1::NotificationRequested {
        case_id: answer.case_id.map(|c| c.to_string()).unwrap_or_default(),
        case_reference: answer.refs.join(","),
        ack_outcome: if answer.reason == v1::NotificationReason::AckRefused {
            answer.outcome.as_str().to_owned()
        } else {
            String::new()
        },
        ..sanyu_events::notification_request(key, person.id, v1::Channel::Sms, level, answer.reason)
    };
    let traceparent = sanyu_platform::trace::current_traceparent();
    let event = OutboxEvent::notification(&school.code, 0, now, request, traceparent);
    outbox::enqueue(txn, event).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(reference: &str, waiting: bool) -> Sent {
        Sent {
            case_id: Uuid::now_v7(),
            reference: reference.to_owned(),
            waiting,
        }
    }

    #[test]
    fn a_one_acknowledges_the_only_waiting_case_and_is_ambiguous_with_two() {
        let a = sent("C-7F3K2Q", true);
        let b = sent("C-9ZZZ1A", false);
        assert_eq!(
            interpret(" 1 ", &[a.clone(), b.clone()]),
            Meaning::Acknowledge(a.case_id)
        );
        assert_eq!(
            interpret("１", std::slice::from_ref(&a)),
            Meaning::Acknowledge(a.case_id)
        );
        let c = sent("C-ABCD12", true);
        match interpret("1", &[a.clone(), c.clone()]) {
            Meaning::Refuse { why, refs, .. } => {
                assert_eq!(why, AckReplyOutcome::Ambiguous);
                assert_eq!(refs, ["C-7F3K2Q", "C-ABCD12"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            interpret("1", std::slice::from_ref(&b)),
            Meaning::Refuse {
                why: AckReplyOutcome::NoCase,
                ..
            }
        ));
    }

    #[test]
    fn a_reference_picks_its_case_among_those_sent_and_nothing_else() {
        let a = sent("C-7F3K2Q", true);
        let c = sent("C-AB0D12", true);
        let both = [a.clone(), c.clone()];
        assert_eq!(
            interpret("c-7f3k2q", &both),
            Meaning::Acknowledge(a.case_id)
        );
        assert_eq!(interpret("7F3K2Q", &both), Meaning::Acknowledge(a.case_id));
        assert_eq!(
            interpret("abod12", &both),
            Meaning::Acknowledge(c.case_id),
            "O is 0"
        );
        assert!(matches!(
            interpret("C-ZZZZZZ", &both),
            Meaning::Refuse {
                why: AckReplyOutcome::NoCase,
                ..
            }
        ));
        assert!(matches!(
            interpret("好的，收到", &both),
            Meaning::Refuse {
                why: AckReplyOutcome::Unreadable,
                ..
            }
        ));
        let done = sent("C-DONE12", false);
        assert!(matches!(
            interpret("C-DONE12", &[done]),
            Meaning::Refuse {
                why: AckReplyOutcome::AlreadyAcknowledged,
                ..
            }
        ));
    }
}
