//! HTTP side of OpenID Connect sign-in: three GET routes (top-level navigations, so no CSRF
//! header and no JSON), and the error page.
//!
//! - `GET /auth/oidc/providers` → `[{"name","label"}]` for the sign-in buttons.
//! - `GET /auth/oidc/{provider}/start?return_to=/path` → 303 to the provider, with the
//!   transaction cookie.
//! - `GET /auth/oidc/{provider}/callback?code&state&iss` (or `error`) → 303 to the return path
//!   with the refresh cookie (a new family, as a password login), the transaction cookie cleared.
//!
//! Every failure ends on a small HTML page that names a stable error code (`<code
//! id="error-code">`), with a 4xx status (502 when the provider is unreachable or misbehaves;
//! 500 only when our own store fails), and clears the transaction cookie.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::txn::{TXN_COOKIE, TXN_TTL};
use super::{CallbackParams, OidcError};
use crate::routes::ClientIp;
use crate::secret::RefreshToken;
use crate::AppState;

/// Path of the provider list.
pub const PROVIDERS_PATH: &str = "/auth/oidc/providers";
/// Start route (`{provider}` is the configured name).
pub const START_PATH: &str = "/auth/oidc/{provider}/start";
/// Callback route: register `{public_url}/auth/oidc/{name}/callback` at the provider.
pub const CALLBACK_PATH: &str = "/auth/oidc/{provider}/callback";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(PROVIDERS_PATH, get(providers))
        .route(START_PATH, get(start))
        .route(CALLBACK_PATH, get(callback))
}

/// One entry of `GET /auth/oidc/providers`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ProviderInfo {
    /// Name in the URLs.
    pub name: String,
    /// Button label.
    pub label: String,
}

async fn providers(State(st): State<AppState>) -> Response {
    let list: Vec<ProviderInfo> = st
        .oidc
        .providers()
        .into_iter()
        .map(|(name, label)| ProviderInfo { name, label })
        .collect();
    Json(list).into_response()
}

/// Query of the start route.
#[derive(Debug, serde::Deserialize)]
pub struct StartParams {
    /// Same-origin relative path to land on after sign-in (default `/`).
    pub return_to: Option<String>,
    /// RFC 9449 §10: the thumbprint of the DPoP key the new session is to be bound to (the
    /// `authfetch/dpop` client sends it). Required with `--dpop required`.
    pub dpop_jkt: Option<String>,
}

/// A JWK SHA-256 thumbprint as RFC 7638 writes it: 32 bytes in canonical unpadded base64url,
/// parsed as refresh tokens are, so one thumbprint has exactly one spelling, the one the proof's
/// key hashes to.
fn is_jkt(s: &str) -> bool {
    crate::secret::decode_b64url_32(s).is_some()
}

async fn start(
    State(st): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<StartParams>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The sign-in link is malformed.",
        );
    };
    if q.dpop_jkt.as_deref().is_some_and(|j| !is_jkt(j)) {
        return page(
            StatusCode::BAD_REQUEST,
            "invalid_dpop_key",
            "The sign-in link names a malformed DPoP key.",
        );
    }
    if q.dpop_jkt.is_none() && st.service.dpop().is_some_and(|d| d.required()) {
        // An unbound family would be refused at its first refresh: say so now.
        return page(
            StatusCode::BAD_REQUEST,
            "dpop_required",
            "This server binds every session to a DPoP key: sign in from an app on the \
             authfetch/dpop client.",
        );
    }
    let now = st.service.clock().now_ms();
    match st
        .oidc
        .start(&name, q.return_to.as_deref(), q.dpop_jkt, now)
        .await
    {
        Ok(s) => {
            let cookie = format!(
                "{TXN_COOKIE}={}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={}",
                s.cookie,
                TXN_TTL.as_secs()
            );
            let (Ok(location), Ok(cookie)) = (
                HeaderValue::from_str(s.authorize_url.as_str()),
                HeaderValue::from_str(&cookie),
            ) else {
                return oidc_error(&OidcError::Unavailable("unrepresentable URL".into()));
            };
            let mut r = StatusCode::SEE_OTHER.into_response();
            let h = r.headers_mut();
            h.insert(header::LOCATION, location);
            h.append(header::SET_COOKIE, cookie);
            crate::routes::no_store(&mut r);
            r
        }
        Err(e) => oidc_error(&e),
    }
}

async fn callback(
    State(st): State<AppState>,
    Path(name): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    query: Result<Query<CallbackParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = query else {
        return page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The answer from the sign-in provider is malformed.",
        );
    };
    let now = st.service.clock().now_ms();
    let txn = cookie(&headers, TXN_COOKIE);
    let t = match st
        .oidc
        .open_transaction(&name, &params, txn.as_deref(), now)
    {
        Ok(t) => t,
        Err(e) => return oidc_error(&e),
    };
    let identity = match st.oidc.finish(&t, &params).await {
        Ok(i) => i,
        Err(e) => return oidc_error(&e),
    };
    // The refresh cookie is SameSite=Strict, so a browser coming back from the provider
    // (a cross-site navigation) does not send it; when it does (same-site provider), its
    // family is replaced as at a password login (S3).
    let previous =
        cookie(&headers, authfetch_protocol::REFRESH_COOKIE).and_then(|v| RefreshToken::parse(&v));
    match st
        .service
        .login_identity(&identity, &ip, previous, t.dpop_jkt.clone())
        .await
    {
        Ok(issued) => {
            let Ok(location) = HeaderValue::from_str(&t.return_to) else {
                return page(StatusCode::BAD_REQUEST, "invalid_return_to", "");
            };
            let mut r = StatusCode::SEE_OTHER.into_response();
            let h = r.headers_mut();
            h.insert(header::LOCATION, location);
            h.append(
                header::SET_COOKIE,
                crate::routes::set_cookie(&issued.refresh, issued.cookie_max_age),
            );
            h.append(header::SET_COOKIE, clear_txn_cookie());
            crate::routes::no_store(&mut r);
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "OIDC sign-in verified but no session started");
            page(
                e.status(),
                e.code().as_str(),
                "The sign-in could not be completed.",
            )
        }
    }
}

fn clear_txn_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-authfetch_oidc=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0",
    )
}

/// The value of cookie `name`, when the request carries exactly one value for it.
fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    let mut found: Option<&str> = None;
    for v in h.get_all(header::COOKIE) {
        let v = v.to_str().ok()?;
        for pair in v.split(';') {
            if let Some((n, value)) = pair.trim().split_once('=') {
                if n.trim() == name {
                    match found {
                        Some(prev) if prev != value.trim() => return None,
                        _ => found = Some(value.trim()),
                    }
                }
            }
        }
    }
    found.map(str::to_owned)
}

fn oidc_error(e: &OidcError) -> Response {
    let (status, text) = match e {
        OidcError::UnknownProvider => (StatusCode::NOT_FOUND, "There is no such sign-in provider."),
        OidcError::BadReturnTo => (
            StatusCode::BAD_REQUEST,
            "The page to return to must be a path on this site.",
        ),
        OidcError::Transaction(_) => (
            StatusCode::BAD_REQUEST,
            "This sign-in link has expired or was already used. Start the sign-in again.",
        ),
        OidcError::StateMismatch | OidcError::IssuerMismatch | OidcError::MissingCode => (
            StatusCode::BAD_REQUEST,
            "The answer from the sign-in provider does not match this sign-in.",
        ),
        OidcError::Provider(_) => (
            StatusCode::BAD_REQUEST,
            "The sign-in provider did not sign you in.",
        ),
        OidcError::TokenExchange(_) => (
            StatusCode::BAD_REQUEST,
            "The sign-in provider refused to complete this sign-in.",
        ),
        OidcError::Unavailable(_) | OidcError::IdToken(_) => (
            StatusCode::BAD_GATEWAY,
            "The sign-in provider could not be reached or answered wrongly.",
        ),
    };
    // The cause goes to the log, never to the page.
    tracing::info!(target: crate::service::AUDIT, event = "oidc_failed", code = e.code(), error = %e);
    page(status, e.code(), text)
}

/// The error page. `code` and `text` are static strings (never request input).
fn page(status: StatusCode, code: &'static str, text: &'static str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Sign-in failed</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\
         <body><main><h1>Sign-in failed</h1><p>{text}</p>\
         <p>Error code: <code id=\"error-code\">{code}</code></p>\
         <p><a href=\"/\">Back to the app</a></p></main></body></html>\n"
    );
    let mut r = (status, Html(body)).into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, clear_txn_cookie());
    crate::routes::no_store(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_cookie_matches_the_transaction_cookie() {
        let v = clear_txn_cookie();
        let v = v.to_str().unwrap();
        assert!(v.starts_with(&format!("{TXN_COOKIE}=;")));
        assert!(v.contains("SameSite=Lax") && v.contains("Max-Age=0"));
    }

    #[test]
    fn cookie_reader_refuses_ambiguity() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        h.append(header::COOKIE, HeaderValue::from_static("b=3"));
        assert_eq!(cookie(&h, "b"), None, "two different values");
    }
}
