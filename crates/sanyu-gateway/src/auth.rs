//! Bearer-token authentication: every route under `/v1` takes a [`Principal`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sanyu_domain::Principal;

use crate::AppState;
use crate::error::ApiError;

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let secret = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        let principal = sanyu_store::tokens::authenticate(&state.db, secret)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        tracing::Span::current().record("token_id", tracing::field::display(principal.token_id));
        Ok(Caller(principal))
    }
}
