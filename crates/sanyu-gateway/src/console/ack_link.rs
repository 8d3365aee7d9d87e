//! The acknowledgement link of a case notification: `/a/{token}`.
//!
//! A case SMS and email carry `{public_base_url}/a/<token>` (26 characters
//! derived from the notification key with a key of the data key; only a
//! keyed hash is stored, on the delivery row: see
//! `sanyu_store::ack_links`). The link names no case, student or school.
//!
//! * `GET` shows a page and changes nothing — a chat app's link preview
//!   acknowledges nothing. Signed out, the page says only that signing in
//!   comes first (and links to sign-in, which returns here); signed in, it
//!   shows the case reference and one button.
//! * `POST` (the button, with the session's CSRF token) acknowledges: the
//!   API's one acknowledge (`routes::casework::acknowledge_via`, i.e.
//!   sanyu-case's `Acknowledge { via: Link }`) as the signed-in staff member,
//!   with the same role and scope checks and audit, then opens the case page.
//!
//! A link holds for `console.ack_link_ttl_hours` (default 72) after its
//! notification was sent; an unknown or expired link answers 410 with one
//! page whatever the reason.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use chrono::Utc;
use minijinja::context;
use sanyu_domain::CaseStatus;
use sanyu_store::ack_links::{self, AckLink};
use sanyu_store::cases;
use serde::Deserialize;

use super::i18n::Lang;
use super::page::Post;
use super::session;
use super::sign_in::CsrfForm;
use super::view;
use crate::AppState;
use crate::audit::Peer;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct AckQuery {
    lang: Option<String>,
}

fn refused(lang: Lang) -> Response {
    view::message(lang, StatusCode::GONE, "ack_link_title", "ack_link_invalid")
}

async fn find(state: &AppState, token: &str) -> Result<Option<AckLink>, ApiError> {
    Ok(ack_links::find_link(
        &state.db,
        &state.console.ack_key,
        token,
        state.console.ack_link_ttl,
        Utc::now(),
    )
    .await?)
}

/// `GET /a/{token}`: the page; reads only.
pub async fn page(
    State(state): State<AppState>,
    peer: Peer,
    method: Method,
    headers: HeaderMap,
    axum::extract::Path(token): axum::extract::Path<String>,
    Query(q): Query<AckQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let link = match find(&state, &token).await {
        Ok(Some(link)) => link,
        Ok(None) => return refused(lang),
        Err(e) => return view::error_page(lang, e),
    };
    let here = format!("{}{token}", ack_links::LINK_PREFIX);
    let signed = match session::current(&state, &headers, &method, &peer).await {
        Ok(s) => s,
        Err(e) => return view::error_page(lang, e),
    };
    let Some(signed) = signed else {
        return view::page(
            "ack.html",
            lang,
            StatusCode::OK,
            context! { token => token, here => here },
        );
    };
    // Signed in: the reference, if the case is one this person may read
    // (another school's case looks absent, as everywhere).
    let found = cases::get(&state.db, link.case_id).await;
    let c = match found {
        Ok(Some(c)) if c.school_id == signed.principal.school_id => c,
        Ok(_) => return refused(lang),
        Err(e) => return view::error_page(lang, ApiError::from(e)),
    };
    view::page(
        "ack.html",
        lang,
        StatusCode::OK,
        context! {
            token => token,
            here => here,
            reference => c.reference,
            case_id => c.id.to_string(),
            acknowledged => c.status != CaseStatus::Open,
            ..view::chrome(&state, lang, &signed)
        },
    )
}

/// `POST /a/{token}`: acknowledge as the signed-in staff member, then the
/// case page.
pub async fn acknowledge(
    State(state): State<AppState>,
    post: Post,
    axum::extract::Path(token): axum::extract::Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let here = format!("{}{token}", ack_links::LINK_PREFIX);
    let page = match post.check(&here, &f.csrf) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let link = match find(&state, &token).await {
        Ok(Some(link)) => link,
        Ok(None) => return refused(page.lang),
        Err(e) => return page.error(e),
    };
    let case_page = format!("/cases/{}", link.case_id);
    match crate::routes::casework::acknowledge_via(
        &state,
        &page.signed.principal,
        &page.peer,
        &link.case_id.to_string(),
        sanyu_case::AckChannel::Link,
    )
    .await
    {
        Ok(_) => view::see_other(&format!("{case_page}?done=acknowledged")),
        // Acknowledged already (by this link's other message, say): the case.
        Err(ApiError::Conflict { .. }) => view::see_other(&case_page),
        Err(e) => page.error(e),
    }
}
