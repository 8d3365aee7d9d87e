//! The one-time sign-in link of an emailed code, `/sign-in/link/{token}`:
//! opening it (GET) shows one button and changes nothing, so a chat app's
//! preview of the link signs nobody in; the button's POST (checked against
//! the pre-session token) uses the link once and signs in.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use minijinja::context;
use sanyu_store::begin_write;
use sanyu_store::console::{self as store, LinkCheck};
use serde::Deserialize;

use super::super::i18n::Lang;
use super::super::pages::with_lang;
use super::super::view;
use super::{anonymous, audit_failed, open_session, pre_ok, pre_token, signed_in, with_pre};
use crate::AppState;
use crate::audit::Peer;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    lang: Option<String>,
}

/// Every refused link gets this one page, whatever the reason.
fn link_refused(lang: Lang) -> Response {
    view::message(lang, StatusCode::GONE, "link_title", "link_invalid")
}

/// `GET /sign-in/link/{token}`: the page of an emailed sign-in link, with
/// one button. Reads only: a link preview uses nothing up.
pub async fn link_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    match store::peek_link(&state.db, &state.console.key, &token, Utc::now()).await {
        Ok(true) => {}
        Ok(false) => return link_refused(lang),
        Err(e) => return view::error_page(lang, e.into()),
    }
    let (pre, fresh) = pre_token(&headers);
    let page = view::page(
        "link.html",
        lang,
        StatusCode::OK,
        context! { pre => pre.clone(), token => token.clone(), here => format!("/sign-in/link/{token}") },
    );
    with_lang(
        &state,
        with_pre(&state, page, &pre, fresh),
        q.lang.as_deref(),
    )
}

#[derive(Debug, Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    pre: String,
}

/// `POST /sign-in/link/{token}`: the button of the link's page: use the
/// link (once) and sign in, on to the page the person was going to.
pub async fn link_use(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<LinkForm>,
) -> Response {
    let lang = Lang::of(&headers, None);
    if !pre_ok(&headers, &f.pre) {
        return view::csrf_refused(lang);
    }
    let used = async {
        let txn = begin_write(&state.db).await?;
        let checked = store::use_link(&*txn, &state.console.key, &token, Utc::now()).await?;
        let (entry, answer) = match checked {
            LinkCheck::Accepted {
                challenge_id,
                staff,
                return_to,
            } => {
                let (entry, token) =
                    open_session(&state, &*txn, &peer, &staff, challenge_id, "email_link").await?;
                (entry, Some((token, return_to)))
            }
            LinkCheck::Refused { challenge_id, why } => {
                let target = match challenge_id {
                    Some(id) => format!("sign_in:{id}:link_{why}"),
                    None => format!("sign_in:link_{why}"),
                };
                (anonymous(&peer, "console.sign_in_failed", target), None)
            }
        };
        sanyu_store::audit::append_in(&*txn, &state.audit_key, entry)
            .await
            .map_err(audit_failed)?;
        txn.commit().await?;
        Ok::<_, ApiError>(answer)
    }
    .await;
    match used {
        Ok(Some((token, return_to))) => signed_in(&state, &token, return_to),
        Ok(None) => link_refused(lang),
        Err(e) => view::error_page(lang, e),
    }
}
