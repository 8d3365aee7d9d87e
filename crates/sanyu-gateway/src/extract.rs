//! Path, query and multipart extractors whose rejections are the API's error
//! body (axum's own answer plain-text 400s), and the answers for unknown
//! routes and methods.
//!
//! - A path id that does not parse names nothing: 404 `not_found`, the same
//!   as an id that does not exist (or is another school's).
//! - A query value that does not parse, breaks an input rule or is given
//!   twice: 422 `validation_failed` with the parameter's name.
//! - A body that is not `multipart/form-data` where one is expected: 415.

use std::collections::HashSet;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::validate;

/// Path parameters; one that does not parse answers 404.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::NotFound("record"))
            }
            Err(other) => Err(ApiError::Internal(other.body_text())),
        }
    }
}

/// Query parameters with the input rules applied to every value.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let mut seen = HashSet::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        validate::line("", &key, validate::MAX_CODE)?;
        validate::line(&key, &value, validate::MAX_LINE)?;
        if !seen.insert(key.clone()) {
            return Err(ApiError::validation(
                key.as_ref(),
                format!("`{key}` is given more than once"),
            ));
        }
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ApiError::validation(field, format!("invalid query: {}", e.inner()))
    })
}

/// A `multipart/form-data` body; anything else answers 415.
pub struct Multipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Multipart {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Multipart::from_request(req, state)
            .await
            .map(Multipart)
            .map_err(|_| ApiError::UnsupportedMediaType("multipart/form-data"))
    }
}

/// The answer for a path no route has.
pub async fn no_route() -> ApiError {
    ApiError::NotFound("route")
}

/// The answer for a method a route does not have (axum adds `Allow`).
pub async fn no_method(method: Method, _uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Q {
        limit: Option<u64>,
        overdue: Option<bool>,
        #[allow(dead_code)]
        level: Option<String>,
    }

    fn field_of(r: Result<Q, ApiError>) -> String {
        match r {
            Err(ApiError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn bad_query_values_name_their_parameter() {
        assert_eq!(field_of(parse_query("limit=-1")), "limit");
        assert_eq!(field_of(parse_query("limit=1e9")), "limit");
        assert_eq!(field_of(parse_query("overdue=maybe")), "overdue");
        assert_eq!(field_of(parse_query("level=high&level=critical")), "level");
        assert_eq!(field_of(parse_query("level=hi%00gh")), "level");
        let q: Q = parse_query("limit=5&overdue=true").expect("parses");
        assert_eq!((q.limit, q.overdue), (Some(5), Some(true)));
        let q: Q = parse_query("").expect("parses");
        assert_eq!(q.limit, None);
        assert_eq!(field_of(parse_query("limit=")), "limit");
    }
}
