//! `GET /docs/`: an interactive reference of the API (Swagger UI) over
//! `/openapi.json`. Its files are compiled into the binary
//! (`utoipa-swagger-ui`'s `vendored` feature: nothing is downloaded at build
//! time) and the page loads nothing from elsewhere: the validator badge is
//! off and a Content-Security-Policy allows this origin only.

use std::sync::{Arc, LazyLock};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use utoipa_swagger_ui::Config;

use crate::error::ApiError;
use crate::extract::Path;

/// Where the page is served.
pub const PATH: &str = "/docs/";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new(["/openapi.json"])
            // The default badge is an image from the validator's own site.
            .validator_url("none")
            .try_it_out_enabled(true),
    )
});

/// `/docs` → `/docs/` (the page's assets are relative to it).
pub async fn redirect() -> Redirect {
    Redirect::permanent(PATH)
}

/// The page itself.
pub async fn index() -> Result<Response, ApiError> {
    serve("")
}

/// One of its files.
pub async fn file(Path(file): Path<String>) -> Result<Response, ApiError> {
    serve(&file)
}

fn serve(file: &str) -> Result<Response, ApiError> {
    let found = utoipa_swagger_ui::serve(file, CONFIG.clone())
        .map_err(|e| ApiError::Internal(format!("api reference: {e}")))?
        .ok_or(ApiError::NotFound("file"))?;
    let mut response = (StatusCode::OK, found.bytes.into_owned()).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&found.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if found.gzpipped {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
