//! JSON bodies with precise errors: 413 past the size limit, 422 with the path
//! of the field that failed to parse or broke an input rule
//! ([`crate::validate::json`]: control characters, length bounds).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON body and its raw bytes (for idempotency hashes).
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let raw = raw_body(req, state, state.body_limit).await?;
        let invalid = |e: serde_json::Error| ApiError::validation("", format!("invalid JSON: {e}"));
        // The input rules first, on every string of the document.
        let document: serde_json::Value = serde_json::from_slice(&raw).map_err(invalid)?;
        crate::validate::json(&document)?;
        let de = &mut serde_json::Deserializer::from_slice(&raw);
        let value = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            ApiError::validation(field, format!("invalid JSON: {}", e.inner()))
        })?;
        Ok(JsonBody { value, raw })
    }
}

/// A raw body with the route's size limit (`limit`, as set by its
/// `DefaultBodyLimit` layer) applied and named in the 413.
pub async fn raw_body(req: Request, state: &AppState, limit: usize) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else if sanyu_platform::http::is_body_timeout(&rejection) {
            ApiError::RequestTimeout
        } else {
            ApiError::validation("", rejection.body_text())
        }
    })
}
