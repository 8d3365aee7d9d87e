//! One error type for every route: a stable snake_case `code`, the HTTP status
//! and a fixed JSON body `{"error": {"code", "message", "field"?}}`. A 500
//! never shows internals; the detail goes to the log with the request's span.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing, unknown, expired or revoked API token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this route does not allow the method {0}")]
    MethodNotAllowed(String),
    #[error("expected a {0} body")]
    UnsupportedMediaType(&'static str),
    #[error("{message}")]
    Validation { field: String, message: String },
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    /// The request conflicts with the resource's state; `allowed` names what
    /// is possible instead (e.g. the actions a case's status allows).
    #[error("{message}")]
    Conflict {
        message: String,
        allowed: Vec<String>,
    },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("the request body stopped arriving")]
    RequestTimeout,
    #[error("internal error")]
    Internal(String),
}

/// Seconds a client waits before trying again after a `503`.
pub const RETRY_AFTER_SECS: &str = "2";

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub code: &'static str,
    pub message: String,
    /// Path of the offending field, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For conflicts: what the resource's state allows instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<sanyu_store::StoreError> for ApiError {
    fn from(e: sanyu_store::StoreError) -> Self {
        if e.is_unavailable() {
            // Logged by kind only: the error text may quote a statement.
            tracing::debug!("database unavailable: answering 503");
            ApiError::Unavailable("database unavailable, try again".into())
        } else if e.is_retryable() {
            ApiError::Unavailable("database busy, try again".into())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<sanyu_store::DbErr> for ApiError {
    fn from(e: sanyu_store::DbErr) -> Self {
        sanyu_store::StoreError::Db(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(detail, "internal error");
        }
        let field = match &self {
            ApiError::Validation { field, .. } if !field.is_empty() => Some(field.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
                field,
                allowed: match &self {
                    ApiError::Conflict { allowed, .. } => Some(allowed.clone()),
                    _ => None,
                },
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}
