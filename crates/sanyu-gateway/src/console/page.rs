//! What every signed-in page starts and ends with, in one place: the
//! language of the request, who is signed in (or the answer that sends them
//! to sign in and back here), the caller the API's handlers take, and the
//! page rendered with its layout (`view::chrome`) and the language
//! remembered when `?lang=` chose it.
//!
//! A handler takes a [`Page`] as an extractor; when nobody is signed in it
//! never runs. A form that changes something takes a [`Post`], and turns it
//! into a [`Page`] with [`Post::check`] once its body (which holds the CSRF
//! token) is read.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use minijinja::{Value, context};

use super::i18n::Lang;
use super::session::{self, Signed};
use super::view;
use crate::AppState;
use crate::audit::Peer;
use crate::auth::Caller;
use crate::error::ApiError;

/// A request for a page by somebody signed in.
pub(super) struct Page {
    pub lang: Lang,
    /// The page's path: where sign-in returns to, and the nav's "you are here".
    pub here: String,
    pub signed: Signed,
    pub peer: Peer,
    /// `?lang=` as given, remembered in a cookie by [`Page::render`].
    lang_param: Option<String>,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Ok(peer) = Peer::from_request_parts(parts, state).await;
        let lang_param = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "lang")
                .map(|(_, v)| v.into_owned())
        });
        let lang = Lang::of(&parts.headers, lang_param.as_deref());
        let here = parts.uri.path().to_owned();
        let signed = signed_in(state, &parts.headers, &parts.method, &peer, lang, &here).await?;
        Ok(Page {
            lang,
            here,
            signed,
            peer,
            lang_param,
        })
    }
}

/// A form posted by somebody who may be signed in: who it is is known, the
/// CSRF token of the form not yet checked.
pub(super) struct Post {
    lang: Lang,
    peer: Peer,
    signed: Result<Option<Signed>, ApiError>,
}

impl FromRequestParts<AppState> for Post {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(peer) = Peer::from_request_parts(parts, state).await;
        let lang = Lang::of(&parts.headers, None);
        let signed = session::current(state, &parts.headers, &parts.method, &peer).await;
        Ok(Post { lang, peer, signed })
    }
}

impl Post {
    /// The signed-in person with the form's CSRF token checked; or the way
    /// to sign in (and back to `here`), or a 403 for a wrong token.
    #[allow(clippy::result_large_err)] // the error is the handler's answer, returned as it is
    pub fn check(self, here: &str, csrf: &str) -> Result<Page, Response> {
        let signed = or_sign_in(self.signed, self.lang, here)?;
        if !signed.csrf_ok(csrf) {
            return Err(view::csrf_refused(self.lang));
        }
        Ok(Page {
            lang: self.lang,
            here: here.to_owned(),
            signed,
            peer: self.peer,
            lang_param: None,
        })
    }
}

impl Page {
    /// The signed-in person as the API's handlers take them.
    pub fn caller(&self) -> Caller {
        Caller(self.signed.principal.clone())
    }

    /// Where the request came from, for the API's audit records.
    pub fn peer(&self) -> Peer {
        Peer(self.peer.0.clone())
    }

    /// After a form's action: on to `to` (POST-redirect-GET), or the page
    /// of the error.
    pub fn then_to<T>(&self, done: Result<T, ApiError>, to: &str) -> Response {
        match done {
            Ok(_) => view::see_other(to),
            Err(e) => self.error(e),
        }
    }

    /// The page of an error, in the request's language.
    pub fn error(&self, err: ApiError) -> Response {
        view::error_page(self.lang, err)
    }

    /// `template` with `ctx`, the layout's values and `here` (unless `ctx`
    /// names its own), answered 200.
    pub fn render(&self, state: &AppState, template: &str, ctx: Value) -> Response {
        self.render_as(state, template, StatusCode::OK, ctx)
    }

    /// [`Page::render`] answered with `status` (a form's refusal: 422).
    pub fn render_as(
        &self,
        state: &AppState,
        template: &str,
        status: StatusCode,
        ctx: Value,
    ) -> Response {
        let page = view::page(
            template,
            self.lang,
            status,
            context! {
                ..ctx,
                ..context! { here => self.here.clone() },
                ..view::chrome(state, self.lang, &self.signed),
            },
        );
        self.answer(state, page)
    }

    /// `response` as it is, the language remembered when `?lang=` chose it.
    pub fn answer(&self, state: &AppState, response: Response) -> Response {
        super::pages::with_lang(state, response, self.lang_param.as_deref())
    }
}

/// Who is signed in, or the answer that sends them to sign in first.
pub(super) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    peer: &Peer,
    lang: Lang,
    here: &str,
) -> Result<Signed, Response> {
    or_sign_in(
        session::current(state, headers, method, peer).await,
        lang,
        here,
    )
}

/// The signed-in person of a session lookup; nobody: the way to sign in
/// and back to `here`; a failed lookup: the error page.
#[allow(clippy::result_large_err)] // the error is the handler's answer, returned as it is
pub(super) fn or_sign_in(
    current: Result<Option<Signed>, ApiError>,
    lang: Lang,
    here: &str,
) -> Result<Signed, Response> {
    match current {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(view::see_other(&match super::safe_return(Some(here)) {
            Some(next) => format!("/sign-in?next={next}"),
            None => "/sign-in".to_owned(),
        })),
        Err(e) => Err(view::error_page(lang, e)),
    }
}

/// A state-changing multipart form (a file upload): who is signed in, and
/// the session's CSRF token checked before anything else of the body is
/// read. The token is the form's first field, `csrf` (a browser sends the
/// fields in the form's order); a body that does not start with it is
/// refused, and no file of it is spooled.
pub(super) async fn signed_multipart(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    peer: &Peer,
    lang: Lang,
    here: &str,
    multipart: &mut axum::extract::Multipart,
) -> Result<Signed, Response> {
    let signed = signed_in(state, headers, method, peer, lang, here).await?;
    let token = match multipart.next_field().await {
        Ok(Some(field)) if field.name() == Some("csrf") => short_field(field).await,
        _ => None,
    };
    if !token.is_some_and(|t| signed.csrf_ok(&t)) {
        return Err(view::csrf_refused(lang));
    }
    Ok(signed)
}

/// A multipart field of at most 256 bytes of UTF-8, or `None`.
async fn short_field(mut field: axum::extract::multipart::Field<'_>) -> Option<String> {
    let mut bytes = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() <= 256 => bytes.extend_from_slice(&chunk),
            Ok(None) => return String::from_utf8(bytes).ok(),
            Ok(Some(_)) | Err(_) => return None,
        }
    }
}
