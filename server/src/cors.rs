//! Cross-origin, same-site deployments: an exact CORS allowlist with credentials for the auth
//! endpoints and the `/api/*` routes (`--cors-origin`), and the origin syntax both origin flags
//! share.
//!
//! The CORS headers themselves come from `tower-http`'s `CorsLayer` (exact list, credentials,
//! `Vary`, max-age). It is wrapped so that it sees only requests whose `Origin` is on the list
//! and whose path is an auth or API path: `CorsLayer` on its own answers *every* `OPTIONS` with
//! `200` and sends `Access-Control-Allow-Credentials`/`-Methods`/`-Headers` whatever the
//! origin (only `Access-Control-Allow-Origin` is withheld). Browsers would still refuse, but
//! an unlisted origin then gets exactly what it got before CORS existed here: no
//! `access-control-*` header at all and `405` to an `OPTIONS` (X6).
//!
//! CORS only lets the page *read* answers; whether a cookie POST is acted on is still the CSRF
//! guard's decision (`routes::csrf_check`, X2–X7), which accepts `Sec-Fetch-Site: same-site`
//! only from an origin on this list. Cross-site origins stay refused: a `SameSite=Strict`
//! cookie is never sent on a cross-site request, and browsers block third-party cookies.

use authfetch_protocol::{CSRF_HEADER, LOGIN_PATH, LOGOUT_ALL_PATH, LOGOUT_PATH, REFRESH_PATH};
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer as _, ServiceExt as _};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer. Chromium caps it at 2 h, Firefox at 24 h;
/// 10 minutes keeps a removed origin from lingering while sparing one preflight per request.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Request headers a cross-origin page may send: the CSRF header on auth POSTs, the JSON body
/// type, and the bearer on API calls. Anything else the app sends to its API must be added here.
pub const ALLOWED_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static(CSRF_HEADER),
    header::CONTENT_TYPE,
    header::AUTHORIZATION,
];

/// Response headers a cross-origin page may read beyond the CORS-safelisted ones: the client
/// reads `WWW-Authenticate` of a `401` from the API.
pub const EXPOSED_HEADERS: [HeaderName; 1] = [header::WWW_AUTHENTICATE];

/// Paths that answer cross-origin requests from a listed origin: the four cookie endpoints and
/// the API under `/api/`. Not the OIDC routes (top-level navigations, no CORS needed), not the
/// JWKS (read by servers, not pages), not static files.
pub fn is_cors_path(path: &str) -> bool {
    matches!(
        path,
        LOGIN_PATH | REFRESH_PATH | LOGOUT_PATH | LOGOUT_ALL_PATH
    ) || path.starts_with("/api/")
}

/// Checks that `raw` is exactly an origin (`scheme://host[:port]`, http or https, no path, no
/// user info, no default port, lower-case host) and returns it without a trailing `/`.
/// Browsers send origins in exactly this serialization, so anything else would never match;
/// refusing it at start turns a silent 403 into a clear message.
///
/// # Errors
/// A message naming the flag and, when there is one, the exact origin that was probably meant.
pub fn parse_origin(flag: &str, raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let s = s.strip_suffix('/').unwrap_or(s);
    if s == "*" || s.eq_ignore_ascii_case("null") {
        return Err(format!(
            "{flag} {raw:?}: only exact origins such as https://app.example.com are accepted \
             (never * or null)"
        ));
    }
    let url = url::Url::parse(s).map_err(|e| {
        format!("{flag} {raw:?} is not an origin ({e}); expected scheme://host[:port]")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{flag} {raw:?}: the scheme must be http or https"));
    }
    let exact = url.origin().ascii_serialization();
    if exact != s {
        return Err(format!(
            "{flag} {raw:?} is not an exact origin (no path, query, user info or default port; \
             lower-case host): did you mean {exact}?"
        ));
    }
    Ok(exact)
}

/// Parses a list of origins with [`parse_origin`], dropping empty entries and duplicates.
///
/// # Errors
/// The first invalid entry.
pub fn parse_origins(flag: &str, raw: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for r in raw.iter().filter(|r| !r.trim().is_empty()) {
        let o = parse_origin(flag, r)?;
        if !out.contains(&o) {
            out.push(o);
        }
    }
    Ok(out)
}

/// The CORS policy for the configured origins; `None` when there are none (then no request
/// ever gets an `access-control-*` header).
#[derive(Clone, Debug)]
pub struct Cors {
    origins: Arc<[HeaderValue]>,
    layer: CorsLayer,
}

impl Cors {
    /// Builds the policy. Origins that are not valid header values are skipped (they cannot
    /// arrive in a request either; `parse_origin` already refuses them at start).
    pub fn new(origins: &[String]) -> Option<Self> {
        let origins: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        if origins.is_empty() {
            return None;
        }
        // Exact list (never `*`, never the request's Origin reflected unchecked), credentials,
        // the methods the routes have. tower-http adds `Vary: origin,
        // access-control-request-method, access-control-request-headers` to every answer.
        let layer = CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(ALLOWED_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(PREFLIGHT_MAX_AGE);
        Some(Self {
            origins: origins.into(),
            layer,
        })
    }

    /// Whether this request, on a CORS path, is one the CORS layer should see: a single
    /// `Origin` that is on the list.
    fn applies(&self, req: &Request) -> bool {
        let mut it = req.headers().get_all(header::ORIGIN).iter();
        match (it.next(), it.next()) {
            (Some(o), None) => self.origins.iter().any(|a| a == o),
            _ => false,
        }
    }
}

/// Middleware: requests from a listed origin on a CORS path go through `CorsLayer` (which
/// answers preflights itself); everything else passes untouched.
pub async fn middleware(cors: Arc<Cors>, req: Request, next: Next) -> Response {
    if !is_cors_path(req.uri().path()) {
        return next.run(req).await;
    }
    if !cors.applies(&req) {
        // The answer on a CORS path depends on `Origin` either way: a cache must not hand this
        // CORS-less answer to a listed origin (or the reverse).
        let mut r = next.run(req).await;
        r.headers_mut()
            .append(header::VARY, HeaderValue::from_static("origin"));
        return r;
    }
    let mut next = Some(next);
    let inner = tower::service_fn(move |req: Request| {
        let next = next.take();
        async move {
            Ok::<_, Infallible>(match next {
                Some(n) => n.run(req).await,
                // `oneshot` calls the service once; a second call cannot happen.
                None => crate::error::AppError::Internal("cors: service called twice".into())
                    .into_response(),
            })
        }
    });
    match cors.layer.layer(inner).oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_exact() {
        for ok in [
            "https://app.example.com",
            "http://localhost:5173",
            "http://localhost:5173/",
            "https://[::1]:8443",
        ] {
            assert!(parse_origin("--cors-origin", ok).is_ok(), "{ok}");
        }
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://app.example.com/path",
            "https://app.example.com:443",
            "https://App.Example.com",
            "https://user@app.example.com",
            "https://app.example.com?x",
            "ftp://app.example.com",
            "file:///etc",
            "https://",
        ] {
            let e = parse_origin("--cors-origin", bad).unwrap_err();
            assert!(e.starts_with("--cors-origin"), "{bad}: {e}");
        }
        assert!(parse_origin("--cors-origin", "https://App.example.com:443")
            .unwrap_err()
            .contains("did you mean https://app.example.com?"));
    }
}
