//! The wire contract between the authfetch client (WASM) and the authfetch server.
//!
//! Everything both sides must spell the same way lives here and only here: endpoint paths,
//! the CSRF header, the refresh cookie's name, the OAuth-style error codes and the JSON bodies.
//! `docs/PROTOCOL.md` describes the same contract for client authors in other languages.
//!
//! The crate has no dependencies by default. The server enables the `serde` feature to derive
//! (de)serialization for the bodies; the wasm client only needs the constants and codes, and
//! parses the (tiny) token response with the browser's own `JSON.parse` to keep serde's
//! deserializer out of the shipped `.wasm`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "serde")]
extern crate alloc;

/// `POST`: `{username, password}` → [`TokenResponse`] and a fresh refresh cookie (a new family).
pub const LOGIN_PATH: &str = "/auth/login";
/// `POST`, cookie only: rotates the refresh cookie and returns a new [`TokenResponse`].
pub const REFRESH_PATH: &str = "/auth/refresh";
/// `POST`: revokes this session's family, clears the cookie, denylists the presented access token.
pub const LOGOUT_PATH: &str = "/auth/logout";
/// `POST`: revokes every family of the user and every access token issued to them so far.
pub const LOGOUT_ALL_PATH: &str = "/auth/logout-all";
/// `GET`: the public signing keys (RFC 7517 JWK Set).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Every auth endpoint lives under this prefix; the client never sends a bearer below it.
pub const AUTH_PREFIX: &str = "/auth/";

/// Static custom header required on every cookie-authenticated POST (CSRF defence X2).
///
/// A cross-site form or `<img>` cannot set a custom header, and a cross-origin `fetch` that sets
/// one must pass a CORS preflight that the server never grants to foreign origins.
pub const CSRF_HEADER: &str = "x-authfetch";
/// The value of [`CSRF_HEADER`].
pub const CSRF_HEADER_VALUE: &str = "1";

/// Name of the HttpOnly refresh cookie. The `__Host-` prefix makes the browser refuse it unless
/// it is `Secure`, has `Path=/` and no `Domain`, so a sibling subdomain cannot plant or shadow it.
pub const REFRESH_COOKIE: &str = "__Host-authfetch_rt";

/// `token_type` of every [`TokenResponse`].
pub const TOKEN_TYPE: &str = "Bearer";

/// RFC 9449's error code for a missing or invalid DPoP proof (a `401`, with a `DPoP` challenge):
/// the server's answer, and what the default (proof-less) client entry reads as "this server
/// requires DPoP".
pub const INVALID_DPOP_PROOF: &str = "invalid_dpop_proof";
/// JWT `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// `WWW-Authenticate` value on a 401 for a missing, malformed, expired or revoked access token
/// (RFC 6750 §3). The client refreshes only on a 401 that carried its bearer.
pub const WWW_AUTHENTICATE_INVALID_TOKEN: &str = "Bearer error=\"invalid_token\"";

/// Error codes in the `error` member of an error body, shaped like RFC 6749 §5.2 / RFC 6750 §3.
///
/// The set is closed: clients may match on [`ErrorCode::as_str`] values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed: bad JSON, wrong content type, missing CSRF header, oversized body.
    InvalidRequest,
    /// Wrong credentials, or a refresh cookie that is unknown, expired, revoked or reused.
    InvalidGrant,
    /// The access token is missing, malformed, expired or revoked.
    InvalidToken,
    /// The token is valid but does not allow this request (a 403; never a reason to refresh).
    InsufficientScope,
    /// Too many requests; the response carries `Retry-After`.
    RateLimited,
    /// The request was refused on origin grounds (CSRF checks: `Origin`, `Sec-Fetch-Site`).
    AccessDenied,
    /// Something failed on the server; the details are in its log, never in the response.
    ServerError,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidGrant,
        ErrorCode::InvalidToken,
        ErrorCode::InsufficientScope,
        ErrorCode::RateLimited,
        ErrorCode::AccessDenied,
        ErrorCode::ServerError,
    ];

    /// The wire spelling. This match is the only place the strings are written.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
        }
    }

    /// Parses a wire spelling; `None` for anything not in [`ErrorCode::ALL`].
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Body of `POST /auth/login`.
#[cfg(feature = "serde")]
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account name.
    pub username: alloc::string::String,
    /// The password; never logged (see the manual `Debug`).
    pub password: alloc::string::String,
}

#[cfg(feature = "serde")]
impl core::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Successful body of login and refresh (RFC 6749 §5.1). Sent with `Cache-Control: no-store`.
#[cfg(feature = "serde")]
#[derive(Clone, serde::Deserialize, serde::Serialize)]
pub struct TokenResponse {
    /// The access token: a compact ES256 (or EdDSA) JWT with `typ: at+jwt`.
    pub access_token: alloc::string::String,
    /// Always [`TOKEN_TYPE`].
    pub token_type: alloc::string::String,
    /// Seconds until the access token expires, counted from when the server answered.
    /// Clients schedule their refresh from this and a monotonic clock, not from `exp`.
    pub expires_in: u64,
}

#[cfg(feature = "serde")]
impl core::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Error body (RFC 6749 §5.2): `{"error": "invalid_grant", "error_description": "…"}`.
#[cfg(feature = "serde")]
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct ErrorResponse {
    /// One of [`ErrorCode::as_str`].
    pub error: alloc::borrow::Cow<'static, str>,
    /// A short human-readable description that never contains secrets or internal causes.
    pub error_description: alloc::borrow::Cow<'static, str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_and_are_unique() {
        for (i, a) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(ErrorCode::parse(a.as_str()), Some(*a));
            for b in &ErrorCode::ALL[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
            }
        }
        assert_eq!(ErrorCode::parse("Invalid_Grant"), None);
        assert_eq!(ErrorCode::parse(""), None);
    }

    #[test]
    fn auth_paths_live_under_the_auth_prefix() {
        for p in [LOGIN_PATH, REFRESH_PATH, LOGOUT_PATH, LOGOUT_ALL_PATH] {
            assert!(p.starts_with(AUTH_PREFIX), "{p}");
        }
        assert!(!JWKS_PATH.starts_with(AUTH_PREFIX));
    }

    #[test]
    fn refresh_cookie_uses_host_prefix() {
        assert!(REFRESH_COOKIE.starts_with("__Host-"));
    }
}
