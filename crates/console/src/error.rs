//! The API's error answer: `{"error": "...", "problems": ["..."]}` with a
//! fitting status (and `Retry-After` when asked to wait).

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use starling_agent::state;

/// An error answer.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
    /// Seconds to wait, for `Retry-After`.
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status.
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError { status, error: error.into(), problems: Vec::new(), retry_after: None }
    }

    /// 429: try again in `seconds`.
    pub fn too_many(error: impl Into<String>, seconds: u64) -> ApiError {
        ApiError { retry_after: Some(seconds), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, error) }
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its message.
    pub fn message(&self) -> &str {
        &self.error
    }

    pub(crate) fn invalid(error: impl Into<String>, problems: Vec<String>) -> ApiError {
        ApiError { problems, ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(&self)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<state::StateError> for ApiError {
    fn from(e: state::StateError) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// An error response.
pub fn error(status: StatusCode, message: &str) -> Response {
    ApiError::new(status, message).into_response()
}
