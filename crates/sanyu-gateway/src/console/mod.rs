//! The staff console (issue 15): server-rendered pages served by the gateway
//! beside the API. Staff sign in with a one-time code sent through the
//! notifier (email, or SMS where configured) or a one-time link by email; the pages read and act through the API's own handlers (the
//! same access rules, the same audit), never a second copy of them.
//!
//! Every console response carries a strict Content-Security-Policy (no inline
//! script or style), refuses framing, sends no Referer, and is not cached.
//! Templates, the stylesheet and htmx (vendored, pinned) are compiled into
//! the binary.

mod ack_link;
mod actions;
mod calls;
mod duty;
pub mod i18n;
mod me;
mod page;
mod pages;
mod records;
mod screening;
pub mod session;
mod sign_in;
mod view;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;

/// htmx 2.0.11, `dist/htmx.min.js` of the npm package `htmx.org@2.0.11`
/// (`npm pack htmx.org@2.0.11`), sha256
/// `d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717`.
pub const HTMX_FILE: &str = "htmx-2.0.11.min.js";
const HTMX: &str = include_str!("static/htmx-2.0.11.min.js");
const CSS: &str = include_str!("static/console.css");

/// The console's Content-Security-Policy: everything from this origin only,
/// no inline script or style, no framing, forms post only here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
     object-src 'none'";

/// The path of the one-time sign-in links; what follows it is a credential
/// and is never logged.
pub const SIGN_IN_LINK_PREFIX: &str = "/sign-in/link/";

/// The console's routes (merged into the gateway's router); a screening
/// file may be as large as `upload_limit` bytes.
pub fn router(upload_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/", get(pages::queue))
        .route("/queue", get(pages::queue))
        .route("/cases/{id}", get(pages::case))
        .route("/cases/{id}/acknowledge", post(pages::acknowledge))
        .route("/cases/{id}/do/{action}", post(actions::act))
        .route("/students/{id}", get(records::archive))
        .route("/key-population", get(records::key_population))
        .route("/dead-letters", get(records::dead_letters))
        .route(
            "/dead-letters/{id}/resolve",
            post(records::resolve_dead_letter),
        )
        .route("/key-population/watch/{id}/done", post(records::watch_done))
        .route("/me", get(me::page))
        .route("/me/notifications", post(me::save))
        .route("/duty", get(duty::page))
        .route("/duty/overrides", post(duty::add_override))
        .route("/duty/overrides/{id}/remove", post(duty::remove_override))
        .route("/hotline-calls", get(calls::list))
        .route("/hotline-calls/{id}", get(calls::call))
        .route("/hotline-calls/{id}/link", post(calls::link))
        .route(
            "/screening",
            get(screening::list)
                .post(screening::upload)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/screening/{id}", get(screening::import))
        .route("/screening/{id}/progress", get(screening::progress))
        .route("/screening/{id}/errors.csv", get(screening::errors_csv))
        .route("/sign-in", get(sign_in::form).post(sign_in::request_code))
        .route(
            "/sign-in/code",
            get(sign_in::code_form).post(sign_in::verify),
        )
        .route(
            "/sign-in/link/{token}",
            get(sign_in::link_form).post(sign_in::link_use),
        )
        .route("/sign-out", post(sign_in::sign_out))
        .route(
            "/a/{token}",
            get(ack_link::page).post(ack_link::acknowledge),
        )
        .route("/console/static/{file}", get(static_file))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        HTMX_FILE => (HTMX, "text/javascript; charset=utf-8"),
        "console.css" => (CSS, "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// A return path after sign-in, kept only when it is one of the console's
/// own pages (a list, a case, a student, a call): never a redirect elsewhere.
pub fn safe_return(next: Option<&str>) -> Option<String> {
    let next = next?.trim();
    if let Some(token) = next.strip_prefix(sanyu_store::ack_links::LINK_PREFIX)
        && sanyu_store::ack_links::plausible_token(token)
    {
        return Some(next.to_owned());
    }
    if [
        "/",
        "/queue",
        "/key-population",
        "/dead-letters",
        "/hotline-calls",
        "/screening",
        "/duty",
        "/me",
    ]
    .contains(&next)
    {
        return Some(next.to_owned());
    }
    let (prefix, id) = ["/cases/", "/students/", "/hotline-calls/", "/screening/"]
        .into_iter()
        .find_map(|prefix| next.strip_prefix(prefix).map(|id| (prefix, id)))?;
    uuid::Uuid::parse_str(id)
        .ok()
        .filter(|u| u.to_string() == id)
        .map(|u| format!("{prefix}{u}"))
}

#[cfg(test)]
mod tests {
    use super::safe_return;

    #[test]
    fn only_the_consoles_own_pages_are_return_paths() {
        let id = "01934b8e-8f4e-7c3a-9d1b-2f3c4d5e6f70";
        assert_eq!(
            safe_return(Some(&format!("/cases/{id}"))),
            Some(format!("/cases/{id}"))
        );
        assert_eq!(safe_return(Some("/")), Some("/".into()));
        assert_eq!(
            safe_return(Some(&format!("/students/{id}"))),
            Some(format!("/students/{id}"))
        );
        assert_eq!(
            safe_return(Some("/key-population")),
            Some("/key-population".into())
        );
        assert_eq!(
            safe_return(Some(&format!("/hotline-calls/{id}"))),
            Some(format!("/hotline-calls/{id}"))
        );
        assert_eq!(
            safe_return(Some("/hotline-calls")),
            Some("/hotline-calls".into())
        );
        assert_eq!(safe_return(Some("/screening")), Some("/screening".into()));
        assert_eq!(safe_return(Some("/duty")), Some("/duty".into()));
        assert_eq!(
            safe_return(Some(&format!("/screening/{id}"))),
            Some(format!("/screening/{id}"))
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/cases/../../x",
            "/cases/not-a-uuid",
            "/\\evil.example",
            "/cases/01934B8E-8F4E-7C3A-9D1B-2F3C4D5E6F70",
            "/hotline-calls/x",
            "",
        ] {
            assert_eq!(safe_return(Some(bad)), None, "{bad}");
        }
        assert_eq!(safe_return(None), None);
        let token = "abcdefghijklmnopqrstuvwx27";
        assert_eq!(
            safe_return(Some(&format!("/a/{token}"))),
            Some(format!("/a/{token}"))
        );
        assert_eq!(safe_return(Some("/a/x?next=//evil")), None);
    }
}
