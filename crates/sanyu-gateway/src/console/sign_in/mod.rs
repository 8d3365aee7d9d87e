//! Sign-in with a one-time code or a one-time link, and sign-out.
//!
//! The code goes through Sanyu's own notifier, by email or (when an SMS
//! provider is configured and the person has a phone) by SMS: a notification
//! request (reason `sign_in_code`, no case) written to the outbox in the same
//! transaction as the challenge, with the code sealed by the data key so
//! that neither the outbox row nor the NOTIFY stream holds it in clear. An
//! emailed code comes with a one-time link, `/sign-in/link/{token}`, sealed
//! the same way: opening it (GET) shows one button and changes nothing (a
//! chat app's preview of the link signs nobody in); the button's POST
//! (CSRF-checked) signs in. The answer is the same whether or not anybody
//! matched, and says nothing of the channels a person has.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use minijinja::context;
use sanyu_domain::RiskLevel;
use sanyu_events::v1;
use sanyu_store::audit::AuditEntry;
use sanyu_store::console::{self as store, CodeAsk, CodeChannel, CodeCheck, CodeRequest};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::{Conn, begin_write, entities::staff, roster};
use serde::Deserialize;

use super::i18n::Lang;
use super::pages::with_lang;
use super::session::{self, CHALLENGE_COOKIE, PRE_COOKIE, SESSION_COOKIE};
use super::view;
use crate::AppState;
use crate::audit::Peer;
use crate::error::ApiError;

mod link;
pub use link::{link_form, link_use};

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    lang: Option<String>,
    signed_out: Option<String>,
}

/// The pre-session CSRF token: the cookie's, or a new one (set on the answer).
fn pre_token(headers: &HeaderMap) -> (String, bool) {
    match session::cookie(headers, PRE_COOKIE) {
        Some(t) if t.len() >= 32 => (t, false),
        _ => (session::random_token(), true),
    }
}

fn with_pre(state: &AppState, mut response: Response, token: &str, fresh: bool) -> Response {
    if fresh {
        response.headers_mut().append(
            header::SET_COOKIE,
            session::set_cookie(&state.console, PRE_COOKIE, token, "/sign-in", Some(3600)),
        );
    }
    response
}

/// `GET /sign-in`: the form (a signed-in person goes on to where they were going).
pub async fn form(
    State(state): State<AppState>,
    peer: Peer,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let next = super::safe_return(q.next.as_deref());
    match session::current(&state, &headers, &method, &peer).await {
        Ok(Some(_)) => return view::see_other(next.as_deref().unwrap_or("/")),
        Ok(None) => {}
        Err(e) => return view::error_page(lang, e),
    }
    let (pre, fresh) = pre_token(&headers);
    let notice = if q.signed_out.is_some() {
        Some("signed_out")
    } else {
        None
    };
    let page = view::page(
        "sign_in.html",
        lang,
        StatusCode::OK,
        context! {
            pre => pre.clone(),
            next => next,
            notice => notice,
            here => "/sign-in",
            sms => state.console.sms_enabled,
        },
    );
    with_lang(
        &state,
        with_pre(&state, page, &pre, fresh),
        q.lang.as_deref(),
    )
}

#[derive(Debug, Deserialize)]
pub struct CodeRequestForm {
    #[serde(default)]
    identifier: String,
    /// `email` (the default) or `sms`.
    #[serde(default)]
    channel: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    pre: String,
}

fn pre_ok(headers: &HeaderMap, form_token: &str) -> bool {
    session::cookie(headers, PRE_COOKIE).is_some_and(|c| session::same_token(&c, form_token))
}

fn anonymous(peer: &Peer, action: &str, target: String) -> AuditEntry {
    AuditEntry {
        actor_token_id: None,
        actor_role: "anonymous".into(),
        actor_staff_id: None,
        school_id: None,
        action: action.to_owned(),
        target,
        source: peer.0.clone(),
    }
}

/// `POST /sign-in`: ask for a code.
pub async fn request_code(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Form(f): Form<CodeRequestForm>,
) -> Response {
    let lang = Lang::of(&headers, None);
    if !pre_ok(&headers, &f.pre) {
        return view::csrf_refused(lang);
    }
    let identifier = f.identifier.trim();
    if identifier.is_empty() || identifier.len() > 200 || identifier.chars().any(char::is_control) {
        return view::see_other("/sign-in");
    }
    let ask = CodeAsk {
        identifier,
        client_addr: &peer.0,
        return_to: super::safe_return(Some(&f.next)),
        wanted: CodeChannel::parse(&f.channel),
        sms_enabled: state.console.sms_enabled,
    };
    match issue(&state, &peer, ask).await {
        Ok(Some(secret)) => {
            let mut r = view::see_other("/sign-in/code");
            r.headers_mut().append(
                header::SET_COOKIE,
                session::set_cookie(
                    &state.console,
                    CHALLENGE_COOKIE,
                    &secret,
                    "/sign-in",
                    Some(store::CODE_TTL_MINUTES * 60),
                ),
            );
            r
        }
        Ok(None) => view::message(
            lang,
            StatusCode::TOO_MANY_REQUESTS,
            "sign_in_title",
            "rate_limited",
        ),
        Err(e) => view::error_page(lang, e),
    }
}

/// Write the challenge, its audit record and (when somebody matched) the
/// notification request in one transaction. `None`: rate limited.
async fn issue(
    state: &AppState,
    peer: &Peer,
    ask: CodeAsk<'_>,
) -> Result<Option<String>, ApiError> {
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let asked =
        store::request_code(&*txn, &state.console.key, ask, state.console.limits, now).await?;
    let (challenge_id, secret, send) = match asked {
        CodeRequest::RateLimited => {
            sanyu_store::audit::append_in(
                &*txn,
                &state.audit_key,
                anonymous(peer, "console.code_rate_limited", "sign_in".into()),
            )
            .await
            .map_err(audit_failed)?;
            txn.commit().await?;
            return Ok(None);
        }
        CodeRequest::Issued {
            challenge_id,
            secret,
            send,
        } => (challenge_id, secret, send),
    };
    let mut entry = anonymous(
        peer,
        "console.code_requested",
        format!("sign_in:{challenge_id}"),
    );
    if let Some(send) = &send {
        entry.actor_staff_id = Some(send.staff.id);
        entry.school_id = Some(send.staff.school_id);
        entry.target = format!("sign_in:{challenge_id}:{}", send.channel.as_str());
        enqueue_code(state, &*txn, send, challenge_id, now).await?;
    }
    sanyu_store::audit::append_in(&*txn, &state.audit_key, entry)
        .await
        .map_err(audit_failed)?;
    txn.commit().await?;
    if send.is_some() {
        state.waker.wake();
    }
    Ok(Some(secret))
}

fn audit_failed(e: sanyu_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "audit log write failed");
    ApiError::Unavailable("the audit log cannot be written; try again".into())
}

/// The notification request that carries the code (sealed), and by email
/// the link's token (sealed), to the person.
async fn enqueue_code(
    state: &AppState,
    txn: &impl Conn,
    send: &store::CodeSend,
    challenge_id: uuid::Uuid,
    now: chrono::DateTime<Utc>,
) -> Result<(), ApiError> {
    let person = &send.staff;
    let sign_in_link = match &send.link_token {
        Some(token) => store::seal_code(&state.sealer, token)?,
        None => String::new(),
    };
    let channel = match send.channel {
        CodeChannel::Email => v1::Channel::Email,
        CodeChannel::Sms => v1::Channel::Sms,
    };
    let school = roster::school_by_id(txn, person.school_id)
        .await?
        .ok_or(ApiError::Internal("staff member without a school".into()))?;
    let key = format!("sign_in:{challenge_id}");
    // Sent at once: no quiet hours, no rate limit (the console limits codes).
    let (level, reason) = (RiskLevel::Critical, v1::NotificationReason::SignInCode);
    let request = v1::NotificationRequested {
        sign_in_code: store::seal_code(&state.sealer, &send.code)?,
        sign_in_link,
        ..sanyu_events::notification_request(key, person.id, channel, level, reason)
    };
    let traceparent = sanyu_platform::trace::current_traceparent();
    let event = OutboxEvent::notification(&school.code, 0, now, request, traceparent);
    outbox::enqueue(txn, event).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct CodeQuery {
    lang: Option<String>,
}

/// `GET /sign-in/code`: the form for the code.
pub async fn code_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CodeQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    if session::cookie(&headers, CHALLENGE_COOKIE).is_none() {
        return view::see_other("/sign-in");
    }
    let (pre, fresh) = pre_token(&headers);
    let page = code_page(lang, StatusCode::OK, &pre, None, None);
    with_lang(
        &state,
        with_pre(&state, page, &pre, fresh),
        q.lang.as_deref(),
    )
}

fn code_page(
    lang: Lang,
    status: StatusCode,
    pre: &str,
    error: Option<&str>,
    left: Option<i32>,
) -> Response {
    view::page(
        "code.html",
        lang,
        status,
        context! { pre => pre, error => error, left => left, here => "/sign-in/code" },
    )
}

#[derive(Debug, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    pre: String,
}

/// `POST /sign-in/code`: check the code; right → a session and on to the
/// page the person was going to.
pub async fn verify(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    let lang = Lang::of(&headers, None);
    if !pre_ok(&headers, &f.pre) {
        return view::csrf_refused(lang);
    }
    let Some(secret) = session::cookie(&headers, CHALLENGE_COOKIE) else {
        return view::see_other("/sign-in");
    };
    let code: String = f.code.chars().take(32).collect();
    match check(&state, &peer, &secret, &code).await {
        Ok(Checked::SignedIn { token, return_to }) => signed_in(&state, &token, return_to),
        Ok(Checked::Refused { message, left }) => {
            code_page(lang, StatusCode::UNAUTHORIZED, &f.pre, Some(message), left)
        }
        Ok(Checked::Restart) => view::see_other("/sign-in"),
        Err(e) => view::error_page(lang, e),
    }
}

/// The answer that signs in: the session cookie, the challenge's cleared,
/// and on to the page the person was going to.
fn signed_in(state: &AppState, token: &str, return_to: Option<String>) -> Response {
    let mut r = view::see_other(return_to.as_deref().unwrap_or("/"));
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(
            &state.console,
            SESSION_COOKIE,
            token,
            "/",
            Some(state.console.absolute.num_seconds()),
        ),
    );
    h.append(
        header::SET_COOKIE,
        session::clear_cookie(&state.console, CHALLENGE_COOKIE, "/sign-in"),
    );
    r
}

/// Open a session for `staff` in the caller's transaction; its audit record
/// (`console.sign_in`, the challenge and the method) and the cookie's token.
async fn open_session(
    state: &AppState,
    txn: &impl Conn,
    peer: &Peer,
    staff: &staff::Model,
    challenge_id: uuid::Uuid,
    method: &str,
) -> Result<(AuditEntry, String), ApiError> {
    let opened =
        store::open_session(txn, staff, &peer.0, state.console.absolute, Utc::now()).await?;
    let entry = AuditEntry {
        actor_token_id: Some(opened.session.id),
        actor_role: opened.session.role.clone(),
        actor_staff_id: Some(staff.id),
        school_id: Some(staff.school_id),
        action: "console.sign_in".into(),
        target: format!("sign_in:{challenge_id}:{method}"),
        source: peer.0.clone(),
    };
    Ok((entry, opened.token))
}

enum Checked {
    SignedIn {
        token: String,
        return_to: Option<String>,
    },
    Refused {
        message: &'static str,
        left: Option<i32>,
    },
    Restart,
}

async fn check(
    state: &AppState,
    peer: &Peer,
    secret: &str,
    code: &str,
) -> Result<Checked, ApiError> {
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let checked = store::check_code(&*txn, &state.console.key, secret, code, now).await?;
    let failed = |id: uuid::Uuid, why: &str| {
        anonymous(
            peer,
            "console.sign_in_failed",
            format!("sign_in:{id}:{why}"),
        )
    };
    let (entry, answer) = match checked {
        CodeCheck::Accepted {
            challenge_id,
            staff,
            return_to,
            channel,
        } => {
            let method = format!("{}_code", channel.as_str());
            let (entry, token) =
                open_session(state, &*txn, peer, &staff, challenge_id, &method).await?;
            (entry, Checked::SignedIn { token, return_to })
        }
        CodeCheck::Wrong { challenge_id, left } => (
            failed(challenge_id, "wrong"),
            Checked::Refused {
                message: "code_wrong",
                left: Some(left),
            },
        ),
        CodeCheck::Locked { challenge_id } => (
            failed(challenge_id, "locked"),
            Checked::Refused {
                message: "code_locked",
                left: None,
            },
        ),
        CodeCheck::Used { challenge_id } => (
            failed(challenge_id, "used"),
            Checked::Refused {
                message: "code_used",
                left: None,
            },
        ),
        CodeCheck::Expired { challenge_id } => (
            failed(challenge_id, "expired"),
            Checked::Refused {
                message: "code_expired",
                left: None,
            },
        ),
        CodeCheck::Unknown => {
            txn.commit().await?;
            return Ok(Checked::Restart);
        }
    };
    sanyu_store::audit::append_in(&*txn, &state.audit_key, entry)
        .await
        .map_err(audit_failed)?;
    txn.commit().await?;
    Ok(answer)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /sign-out`: end the session.
pub async fn sign_out(
    State(state): State<AppState>,
    peer: Peer,
    method: Method,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let lang = Lang::of(&headers, None);
    let signed = match session::current(&state, &headers, &method, &peer).await {
        Ok(Some(s)) => s,
        Ok(None) => return view::see_other("/sign-in"),
        Err(e) => return view::error_page(lang, e),
    };
    if !signed.csrf_ok(&f.csrf) {
        return view::csrf_refused(lang);
    }
    let ended = async {
        let txn = begin_write(&state.db).await?;
        store::end_session(
            &*txn,
            signed.session.id,
            store::end_reason::SIGN_OUT,
            Utc::now(),
        )
        .await?;
        let mut entry = crate::audit::entry(
            &signed.principal,
            &peer,
            "console.sign_out",
            format!("session:{}", signed.session.id),
        );
        entry.actor_token_id = Some(signed.session.id);
        sanyu_store::audit::append_in(&*txn, &state.audit_key, entry)
            .await
            .map_err(audit_failed)?;
        txn.commit().await?;
        Ok::<(), ApiError>(())
    }
    .await;
    if let Err(e) = ended {
        return view::error_page(lang, e);
    }
    let mut r = view::see_other("/sign-in?signed_out=1");
    r.headers_mut().append(
        header::SET_COOKIE,
        session::clear_cookie(&state.console, SESSION_COOKIE, "/"),
    );
    r.into_response()
}
