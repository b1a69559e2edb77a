//! The one error type of the HTTP layer. Clients get an RFC 6749/6750-shaped body with a
//! generic description; the log gets the cause (axum `examples/error-handling` style).

use authfetch_protocol::{ErrorCode, ErrorResponse, WWW_AUTHENTICATE_INVALID_TOKEN};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;

use crate::jwt::JwtError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Malformed request (bad JSON, missing CSRF header, …). 400 `invalid_request`.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// Body with a content type other than `application/json` (X3). 415 `invalid_request`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Body over the route's limit. 413 `invalid_request`.
    #[error("payload too large")]
    PayloadTooLarge,
    /// Only POST (X7). 405 `invalid_request`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Origin / `Sec-Fetch-Site` refused (X4/X5). 403 `access_denied`.
    #[error("cross-origin request refused: {0}")]
    CrossOrigin(&'static str),
    /// Wrong user name or password (P3: one message for both). 401 `invalid_grant`.
    #[error("bad credentials")]
    BadCredentials,
    /// Refresh cookie missing, unknown, expired, revoked or reused. 401 `invalid_grant`.
    #[error("refresh rejected: {0}")]
    RefreshRejected(&'static str),
    /// No bearer token. 401 `invalid_token`, `WWW-Authenticate: Bearer`.
    #[error("missing bearer token")]
    MissingToken,
    /// Several `Authorization` headers: which one counts is not guessed. 401 `invalid_request`,
    /// `WWW-Authenticate: Bearer error="invalid_request"` (RFC 6750 §3.1).
    #[error("several authorization headers")]
    AmbiguousAuthorization,
    /// Bad bearer token. 401 `invalid_token`, `WWW-Authenticate: Bearer error="invalid_token"`.
    #[error("invalid access token: {0}")]
    InvalidToken(JwtError),
    /// Authenticated but not allowed. 403 `insufficient_scope`.
    #[error("insufficient scope")]
    InsufficientScope,
    /// Too many requests. 429 `rate_limited` with `Retry-After`.
    #[error("rate limited for {0} s")]
    RateLimited(u64),
    /// Busy for a known while (the DPoP replay cache is full). 503 `server_error` with
    /// `Retry-After`; logged where it happens.
    #[error("unavailable for {0} s")]
    Unavailable(u64),
    /// Anything else. 500 `server_error`; the cause is logged, never sent.
    #[error("internal: {0}")]
    Internal(String),
}

impl AppError {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::InvalidRequest(_)
            | AppError::UnsupportedMediaType
            | AppError::PayloadTooLarge
            | AppError::MethodNotAllowed
            | AppError::AmbiguousAuthorization => ErrorCode::InvalidRequest,
            AppError::CrossOrigin(_) => ErrorCode::AccessDenied,
            AppError::BadCredentials | AppError::RefreshRejected(_) => ErrorCode::InvalidGrant,
            AppError::MissingToken | AppError::InvalidToken(_) => ErrorCode::InvalidToken,
            AppError::InsufficientScope => ErrorCode::InsufficientScope,
            AppError::RateLimited(_) => ErrorCode::RateLimited,
            AppError::Unavailable(_) | AppError::Internal(_) => ErrorCode::ServerError,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::CrossOrigin(_) | AppError::InsufficientScope => StatusCode::FORBIDDEN,
            AppError::BadCredentials
            | AppError::RefreshRejected(_)
            | AppError::MissingToken
            | AppError::AmbiguousAuthorization
            | AppError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            AppError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client reads: short, generic, never the cause.
    fn description(&self) -> &'static str {
        match self {
            AppError::InvalidRequest(m) => m,
            AppError::UnsupportedMediaType => "the body must be application/json",
            AppError::PayloadTooLarge => "the body is too large",
            AppError::MethodNotAllowed => "method not allowed",
            AppError::CrossOrigin(_) => "cross-origin request refused",
            AppError::BadCredentials => "invalid username or password",
            AppError::RefreshRejected(_) => "the refresh token is invalid, expired or revoked",
            AppError::MissingToken => "a bearer access token is required",
            AppError::AmbiguousAuthorization => "send one Authorization header",
            AppError::InvalidToken(_) => "the access token is invalid, expired or revoked",
            AppError::InsufficientScope => "the access token does not allow this request",
            AppError::RateLimited(_) => "too many requests; retry later",
            AppError::Unavailable(_) => "the server is busy; retry later",
            AppError::Internal(_) => "internal server error",
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            AppError::Internal(cause) => tracing::error!(%cause, "request failed"),
            other => tracing::debug!(error = %other, "request refused"),
        }
        let body = ErrorResponse {
            error: Cow::Borrowed(self.code().as_str()),
            error_description: Cow::Borrowed(self.description()),
        };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            AppError::MissingToken => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::AmbiguousAuthorization => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_request\""),
                );
            }
            AppError::InvalidToken(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(WWW_AUTHENTICATE_INVALID_TOKEN),
                );
            }
            AppError::InsufficientScope => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"insufficient_scope\""),
                );
            }
            AppError::RateLimited(secs) | AppError::Unavailable(secs) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            _ => {}
        }
        resp
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<crate::password::HashError> for AppError {
    fn from(e: crate::password::HashError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<crate::keys::KeyError> for AppError {
    fn from(e: crate::keys::KeyError) -> Self {
        AppError::Internal(e.to_string())
    }
}
