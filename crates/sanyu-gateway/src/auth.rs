//! Bearer-token authentication: every route under `/v1` takes a [`Principal`]
//! (a school's token), and the few routes a deployment-level admin may use
//! take a [`Bearer`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sanyu_domain::{Holder, Principal};

use crate::AppState;
use crate::error::ApiError;

/// The authenticated caller of a request: a school's token. A deployment
/// token is refused (403) on every route that takes this.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Bearer::from_request_parts(parts, state).await?.0 {
            Holder::School(principal) => Ok(Caller(principal)),
            Holder::Deployment { .. } => Err(ApiError::Forbidden(
                "a deployment token serves only the dead letters and role grants",
            )),
        }
    }
}

/// The authenticated holder of a request's token, school or deployment.
pub struct Bearer(pub Holder);

impl FromRequestParts<AppState> for Bearer {
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
        let holder = sanyu_store::tokens::authenticate(&state.db, secret)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let token_id = match &holder {
            Holder::School(p) => p.token_id,
            Holder::Deployment { token_id } => *token_id,
        };
        tracing::Span::current().record("token_id", tracing::field::display(token_id));
        Ok(Bearer(holder))
    }
}
