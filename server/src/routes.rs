//! HTTP: routes, the CSRF guard, cookies, and the demo resources. Handlers only translate
//! between HTTP and [`TokenService`](crate::service::TokenService).

use authfetch_protocol::{
    LoginRequest, TokenResponse, CSRF_HEADER, CSRF_HEADER_VALUE, JWKS_PATH, LOGIN_PATH,
    LOGOUT_ALL_PATH, LOGOUT_PATH, REFRESH_COOKIE, REFRESH_PATH, TOKEN_TYPE,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;

use crate::client_addr::ClientAddr;
use crate::dpop::http::{add_nonce, auth_endpoint, Binding};
use crate::error::AppError;
use crate::secret::{hex, Password, RefreshToken};
use crate::verify::{AccessClaims, Authenticated};
use crate::AppState;

/// Body limit on `/auth/*` (a login body is tiny).
pub const AUTH_BODY_LIMIT: usize = 16 * 1024;
/// Body limit on `POST /api/echo`.
pub const ECHO_BODY_LIMIT: usize = 1024 * 1024;
/// Path of the demo "who am I" resource.
pub const ME_PATH: &str = "/api/me";
/// Path of the demo echo resource.
pub const ECHO_PATH: &str = "/api/echo";
/// Path of the demo resource that always answers 403.
pub const FORBIDDEN_PATH: &str = "/api/forbidden";
/// Path of the RFC 7662 token introspection endpoint (only with an introspection secret).
pub const INTROSPECT_PATH: &str = "/oauth/introspect";
/// Path of the debug counters (only with `--debug-stats`).
pub const STATS_PATH: &str = "/debug/stats";

/// The API routes (auth, JWKS, demo resources, optional stats); static files are added in `app`.
pub(crate) fn api(state: &AppState) -> Router<AppState> {
    let auth = Router::new()
        .route(LOGIN_PATH, post(login))
        .route(REFRESH_PATH, post(refresh))
        .route(LOGOUT_PATH, post(logout))
        .route(LOGOUT_ALL_PATH, post(logout_all))
        .route_layer(middleware::from_fn_with_state(state.clone(), csrf_guard))
        .layer(DefaultBodyLimit::max(AUTH_BODY_LIMIT))
        .layer(middleware::from_fn(|req, next| {
            declared_length_limit(AUTH_BODY_LIMIT, req, next)
        }));
    let demo = Router::new()
        .route(ME_PATH, get(me))
        .route(ECHO_PATH, post(echo))
        .route(FORBIDDEN_PATH, get(forbidden))
        .route_layer(state.service.verifier().layer())
        .layer(DefaultBodyLimit::max(ECHO_BODY_LIMIT))
        .layer(middleware::from_fn(|req, next| {
            declared_length_limit(ECHO_BODY_LIMIT, req, next)
        }));
    let mut r = Router::new()
        .merge(auth)
        .merge(demo)
        .merge(crate::oidc::routes::router())
        .route(JWKS_PATH, get(jwks));
    if state.service.config().debug_stats {
        r = r.route(STATS_PATH, get(stats));
    }
    // Never open: without a configured secret the endpoint does not exist.
    if state.service.config().introspection_secret.is_some() {
        r = r.merge(
            Router::new()
                .route(INTROSPECT_PATH, post(introspect))
                .layer(DefaultBodyLimit::max(AUTH_BODY_LIMIT))
                .layer(middleware::from_fn(|req, next| {
                    declared_length_limit(AUTH_BODY_LIMIT, req, next)
                })),
        );
    }
    r
}

/// Whether `h` carries the introspection secret: `Authorization: Bearer <secret>`, or HTTP
/// Basic with any client id and the secret as password (RFC 7662 §2.1 leaves the method to
/// the server). Both sides are hashed first, so the comparison takes the same time whatever
/// the length or content of the guess.
fn introspection_authorized(secret: &str, h: &HeaderMap) -> bool {
    use base64::Engine as _;
    use subtle::ConstantTimeEq as _;
    let Ok(Some(v)) = single(h, header::AUTHORIZATION.as_str()) else {
        return false;
    };
    let Ok(v) = v.to_str() else { return false };
    let Some((scheme, rest)) = v.split_once(' ') else {
        return false;
    };
    let rest = rest.trim();
    let presented = if scheme.eq_ignore_ascii_case("bearer") {
        rest.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return false;
        };
        let Ok(pair) = String::from_utf8(raw) else {
            return false;
        };
        match pair.split_once(':') {
            Some((_, pw)) => pw.to_owned(),
            None => return false,
        }
    } else {
        return false;
    };
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(secret.as_bytes());
    bool::from(a.ct_eq(&b))
}

/// RFC 7662 answer: `{"active": false}` for anything that is not a live token (no reason),
/// the claims otherwise.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct IntrospectionResponse {
    /// Whether the token is live.
    pub active: bool,
    /// `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audiences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    /// Subject (user id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Issued at (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Expiry (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Session (refresh family) id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The key a DPoP-bound token is bound to, `{"jkt": …}` (RFC 9449 §6.2): a resource server
    /// that introspects must then demand a proof by that key, as for a JWT's `cnf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<serde_json::Value>,
}

async fn introspect(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(secret) = &st.service.config().introspection_secret else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !introspection_authorized(secret.secret(), &headers) {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "invalid_client"})),
        )
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"introspection\""),
        );
        no_store(&mut r);
        return r;
    }
    let body = match body_or_error(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let form_type = single(&headers, header::CONTENT_TYPE.as_str())
        .ok()
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if form_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return AppError::InvalidRequest("the body must be application/x-www-form-urlencoded")
            .into_response();
    }
    let mut tokens = url::form_urlencoded::parse(&body).filter(|(k, _)| k == "token");
    let token = match (tokens.next(), tokens.next()) {
        (Some((_, t)), None) => t.into_owned(),
        _ => return AppError::InvalidRequest("give one token parameter").into_response(),
    };
    let answer = match st.service.introspect(&token).await {
        Ok(Some(c)) => IntrospectionResponse {
            active: true,
            token_type: Some(
                if c.cnf_jkt.is_some() {
                    "DPoP"
                } else {
                    "Bearer"
                }
                .to_owned(),
            ),
            cnf: c.cnf_jkt.map(|jkt| serde_json::json!({ "jkt": jkt })),
            iss: Some(c.iss),
            aud: Some(c.aud),
            sub: Some(c.sub),
            iat: Some(c.iat),
            exp: Some(c.exp),
            jti: Some(c.jti),
            sid: c.sid,
        },
        Ok(None) => IntrospectionResponse::default(),
        Err(e) => return e.into_response(),
    };
    let mut r = Json(answer).into_response();
    no_store(&mut r);
    r
}

/// Refuses a body whose declared `Content-Length` is over `limit` before anything reads it.
/// hyper sends `100 Continue` when a handler first reads the body, so a client that sent
/// `Expect: 100-continue` with an oversize length now gets `413` at once and never uploads it
/// (A1). Bodies without a length (chunked) are still cut at `limit` by `DefaultBodyLimit`.
async fn declared_length_limit(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return AppError::PayloadTooLarge.into_response();
    }
    next.run(req).await
}

/// The client's IP address: the one `client_addr::middleware` worked out (the TCP peer, or
/// with `--trusted-proxy` the rightmost untrusted hop of the forwarding header), else the peer,
/// else `"unknown"` (under `oneshot` tests without a `ConnectInfo`).
#[derive(Clone, Debug)]
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientIp(client_ip(&parts.extensions)))
    }
}

fn client_ip(ext: &axum::http::Extensions) -> String {
    if let Some(ClientAddr(ip)) = ext.get::<ClientAddr>() {
        return ip.to_string();
    }
    ext.get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// What the request carried in the refresh cookie.
#[derive(Debug)]
pub(crate) enum CookieToken {
    Absent,
    Garbage,
    Token(RefreshToken),
}

impl CookieToken {
    pub(crate) fn from_headers(h: &HeaderMap) -> Self {
        let mut found: Vec<String> = Vec::new();
        for v in h.get_all(header::COOKIE) {
            let Ok(v) = v.to_str() else {
                return CookieToken::Garbage;
            };
            // Pairs without `=` or with an empty name are someone else's problem: skipped.
            for c in cookie::Cookie::split_parse(v).flatten() {
                if c.name() == REFRESH_COOKIE {
                    found.push(c.value().to_owned());
                }
            }
        }
        match found.as_slice() {
            [] => CookieToken::Absent,
            // Two different values (a tossed cookie?) are not resolved by guessing.
            [v, rest @ ..] if rest.iter().all(|r| r == v) => {
                RefreshToken::parse(v).map_or(CookieToken::Garbage, CookieToken::Token)
            }
            _ => CookieToken::Garbage,
        }
    }

    fn token(self) -> Option<RefreshToken> {
        match self {
            CookieToken::Token(t) => Some(t),
            _ => None,
        }
    }
}

/// C1: the refresh cookie.
pub(crate) fn set_cookie(token: &RefreshToken, max_age: u64) -> HeaderValue {
    let v = format!(
        "{REFRESH_COOKIE}={}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}",
        token.secret()
    );
    // Base64url and digits only: always a valid header value.
    HeaderValue::from_str(&v).unwrap_or_else(|_| clear_cookie())
}

/// C5: deletion repeats every attribute, with `Max-Age=0`.
fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(const_format_clear())
}

const fn const_format_clear() -> &'static str {
    // Spelled out because `REFRESH_COOKIE` cannot be concatenated in a const without a macro;
    // a unit test checks it starts with the protocol's cookie name.
    "__Host-authfetch_rt=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
}

pub(crate) fn no_store(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn with_cookie(mut resp: Response, cookie: HeaderValue) -> Response {
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    no_store(&mut resp);
    resp
}

fn token_response(issued: crate::service::Issued) -> Response {
    let token_type = match issued.dpop_jkt {
        Some(_) => crate::dpop::DPOP_SCHEME,
        None => TOKEN_TYPE,
    };
    let body = TokenResponse {
        access_token: issued.access_token.secret().to_owned(),
        token_type: token_type.to_owned(),
        expires_in: issued.expires_in,
    };
    with_cookie(
        Json(body).into_response(),
        set_cookie(&issued.refresh, issued.cookie_max_age),
    )
}

fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, AppError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::InvalidRequest("could not read the body")
        }
    })
}

fn has_body(h: &HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

fn is_json(h: &HeaderMap) -> bool {
    let mut it = h.get_all(header::CONTENT_TYPE).iter();
    let (Some(v), None) = (it.next(), it.next()) else {
        return false;
    };
    let Ok(v) = v.to_str() else { return false };
    let essence = v.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn single<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a HeaderValue>, ()> {
    let mut it = h.get_all(name).iter();
    match (it.next(), it.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
        _ => Err(()),
    }
}

/// CSRF defences for every cookie-authenticated POST (X2–X7). Runs before the handler.
///
/// Order: POST only (X7) → `x-authfetch: 1` (X2) → `Sec-Fetch-Site` is `same-origin` when
/// present (X4) → `Origin` is an exact allowed origin when present (X5) → a body must be
/// `application/json` (X3). A request with neither `Origin` nor `Sec-Fetch-Site` comes from a
/// non-browser client (curl, tests, a native app): it is allowed, because it still had to send
/// the custom header, which no cross-site browser request can do without a CORS preflight that
/// this server grants only to the exact `--cors-origin` list (X6).
async fn csrf_guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    // A body is present unless its size is known to be zero (hyper reports an exact 0 for a
    // request without Content-Length/Transfer-Encoding, and for Content-Length: 0).
    let body =
        has_body(req.headers()) || axum::body::HttpBody::size_hint(req.body()).exact() != Some(0);
    let config = st.service.config();
    let origins = &config.allowed_origins;
    match csrf_check(
        origins,
        &config.cors_origins,
        req.method(),
        req.headers(),
        body,
    ) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            if let AppError::CrossOrigin(why) = &e {
                // A refused origin is nearly always a deployment mistake (a missing
                // --allowed-origin / --cors-origin, or 127.0.0.1 vs localhost): say which origin
                // so the operator can fix it. The values are the request's, so they are
                // quoted and cut short.
                let h = req.headers();
                tracing::warn!(
                    origin = %header_for_log(h, header::ORIGIN.as_str()),
                    sec_fetch_site = %header_for_log(h, "sec-fetch-site"),
                    ip = %client_ip(req.extensions()),
                    reason = why,
                    path = %req.uri().path(),
                    "cross-origin cookie POST refused (403 access_denied); allowed origins: {:?}, \
                     CORS origins: {:?}",
                    origins,
                    config.cors_origins,
                );
            }
            let allow = matches!(e, AppError::MethodNotAllowed);
            let mut r = e.into_response();
            if allow {
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            r
        }
    }
}

/// A request header as it may appear in a log line: every value, lossily decoded, escaped by
/// `{:?}` and cut at 200 bytes (it is attacker-controlled).
fn header_for_log(h: &HeaderMap, name: &str) -> String {
    let values: Vec<String> = h
        .get_all(name)
        .iter()
        .map(|v| {
            let v = String::from_utf8_lossy(v.as_bytes());
            let mut end = v.len().min(200);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v[..end].to_owned()
        })
        .collect();
    match values.as_slice() {
        [] => "(none)".to_owned(),
        [v] => format!("{v:?}"),
        vs => format!("{vs:?}"),
    }
}

/// The checks of [`csrf_guard`]. `cors_origins` are allowed like `allowed_origins`, and are the
/// only origins whose requests may carry `Sec-Fetch-Site: same-site` (a page on a sibling
/// origin of the same site, allowed through `--cors-origin`).
pub(crate) fn csrf_check(
    allowed_origins: &[String],
    cors_origins: &[String],
    method: &Method,
    h: &HeaderMap,
    body: bool,
) -> Result<(), AppError> {
    if method != Method::POST {
        return Err(AppError::MethodNotAllowed);
    }
    match single(h, CSRF_HEADER) {
        Ok(Some(v)) if v.as_bytes() == CSRF_HEADER_VALUE.as_bytes() => {}
        _ => {
            return Err(AppError::InvalidRequest(
                "the x-authfetch: 1 header is required",
            ))
        }
    }
    let origin = match single(h, header::ORIGIN.as_str()) {
        Ok(o) => o.map(|v| v.to_str().unwrap_or("\u{fffd}")),
        Err(()) => return Err(AppError::CrossOrigin("several origins")),
    };
    let is_cors = origin.is_some_and(|o| cors_origins.iter().any(|a| a == o));
    match single(h, "sec-fetch-site") {
        Ok(None) => {}
        Ok(Some(v)) if v.as_bytes() == b"same-origin" => {}
        // X4 for same-site deployments: only a listed CORS origin (exact `Origin`, checked
        // above) may be same-site. `cross-site` and `none` are never accepted.
        Ok(Some(v)) if v.as_bytes() == b"same-site" && is_cors => {}
        _ => return Err(AppError::CrossOrigin("sec-fetch-site")),
    }
    if let Some(o) = origin {
        if !is_cors && !allowed_origins.iter().any(|a| a == o) {
            return Err(AppError::CrossOrigin("origin"));
        }
    }
    if body && !is_json(h) {
        return Err(AppError::UnsupportedMediaType);
    }
    Ok(())
}

/// Verifies an optional bearer (for logout and logout-all). An invalid one is ignored.
async fn optional_bearer(st: &AppState, h: &HeaderMap) -> Option<AccessClaims> {
    let v = single(h, header::AUTHORIZATION.as_str()).ok().flatten()?;
    st.service
        .verifier()
        .verify_header(Some(v.as_bytes()))
        .await
        .ok()
}

async fn login(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body_or_error(body)?;
    if body.is_empty() {
        return Err(AppError::InvalidRequest(
            "a JSON body {username, password} is required",
        ));
    }
    let req: LoginRequest = serde_json::from_slice(&body)
        .map_err(|_| AppError::InvalidRequest("the body must be {username, password}"))?;
    let previous = CookieToken::from_headers(&headers).token();
    let dpop = st.service.dpop().map(AsRef::as_ref);
    let jkt = match auth_endpoint(dpop, &headers, &uri, Binding::NewFamily).await {
        Ok(j) => j,
        Err(r) => return Ok(r),
    };
    let issued = st
        .service
        .login_with_key(
            &req.username,
            Password::new(req.password),
            &ip,
            previous,
            jkt,
        )
        .await?;
    let mut r = token_response(issued);
    add_nonce(dpop, &mut r);
    Ok(r)
}

/// Whether [`family_proof`] checks the proof of a request whose cookie names no bound family
/// (an unbound or unknown family, or no cookie).
#[derive(Clone, Copy, Debug)]
enum Unbound {
    /// Check it anyway: a refresh, where the proof decides the binding of the new access token
    /// and `--dpop required` refuses a bearer refresh.
    Check,
    /// Let it through unchecked (no proof is used up): a logout, which only a bound family
    /// guards with its key.
    Skip,
}

/// The DPoP check of an `/auth/*` request that presents the refresh cookie `cookie`: its
/// family's key, if any, then the request's proof against it ([`auth_endpoint`]). `Ok(jkt)`:
/// go on, bound to `jkt` (`None`: bearer); `Err`: the answer to send, nothing touched yet and
/// the cookie kept.
///
/// The key is a store read of its own, one more round trip per refresh, rather than something
/// [`Store::rotate`](crate::store::Store::rotate) returns or checks while it holds the family
/// row. Inside `rotate` the check would run after the refresh has been counted against the
/// per-address rate limit (which must come before any rotation), so a refresh refused for its
/// proof would start to use up that limit; and it would need the mode, the proof's key and
/// the order of the rules (a stale cookie of a bound family without a proof is refused, not
/// revoked as reuse) passed into both stores, the SQLite transaction and the Lua script.
/// Logout and logout-everywhere would still read the key first. A family's key is set at
/// creation and never changes, so reading it first cannot race with the rotation.
async fn family_proof(
    st: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    cookie: Option<&RefreshToken>,
    unbound: Unbound,
) -> Result<Option<String>, Response> {
    let bound = match cookie {
        Some(t) => st
            .service
            .family_jkt(t)
            .await
            .map_err(IntoResponse::into_response)?,
        None => None,
    };
    if bound.is_none() && matches!(unbound, Unbound::Skip) {
        return Ok(None);
    }
    let dpop = st.service.dpop().map(AsRef::as_ref);
    auth_endpoint(dpop, headers, uri, Binding::Family(bound.as_deref())).await
}

async fn refresh(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(e) = body_or_error(body) {
        return e.into_response();
    }
    let presented = match CookieToken::from_headers(&headers) {
        // No refresh cookie at all: a signed-out page's start-up refresh. `204` says "no
        // session" without an error status, so browsers print nothing in red; there is no
        // cookie to clear, no token to look up, and nothing is counted as a refused refresh.
        // A cookie that is present but unparsable, unknown or revoked still gets `401` below.
        CookieToken::Absent => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            no_store(&mut r);
            return r;
        }
        c => c.token(),
    };
    // A refused proof answers before anything is rotated, and keeps the cookie: the page's
    // own client still needs it (an injected script must not be able to log the user out).
    let jkt = match family_proof(&st, &headers, &uri, presented.as_ref(), Unbound::Check).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    let dpop = st.service.dpop().map(AsRef::as_ref);
    match st.service.refresh_with_key(presented, &ip, jkt).await {
        Ok(issued) => {
            let mut r = token_response(issued);
            add_nonce(dpop, &mut r);
            r
        }
        // A refused cookie is cleared so the browser stops sending it; a rate limit or a
        // server error says nothing about the cookie, so it is kept.
        Err(e @ AppError::RefreshRejected(_)) => with_cookie(e.into_response(), clear_cookie()),
        Err(e) => e.into_response(),
    }
}

async fn logout(
    State(st): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    end_session(&st, &uri, &headers, body, false).await
}

async fn logout_all(
    State(st): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    end_session(&st, &uri, &headers, body, true).await
}

/// `POST /auth/logout` and, with `everywhere`, `/auth/logout-all`: the same checks, then the
/// service ends this session (or every session of the user), and the cookie is cleared.
async fn end_session(
    st: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    everywhere: bool,
) -> Response {
    if let Err(e) = body_or_error(body) {
        return e.into_response();
    }
    let cookie = CookieToken::from_headers(headers).token();
    // A bound family is logged out only by its key: nothing is revoked or cleared otherwise.
    if let Err(r) = family_proof(st, headers, uri, cookie.as_ref(), Unbound::Skip).await {
        return r;
    }
    let bearer = optional_bearer(st, headers).await;
    let done = if everywhere {
        st.service.logout_all(cookie, bearer).await
    } else {
        st.service.logout(cookie, bearer).await
    };
    let r = match done {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    };
    with_cookie(r, clear_cookie())
}

async fn jwks(State(st): State<AppState>) -> Response {
    let set = st.service.jwks();
    let mut r = Json(set).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

async fn stats(State(st): State<AppState>) -> Response {
    let mut r = Json(st.service.stats().snapshot()).into_response();
    no_store(&mut r);
    r
}

/// Body of `GET /api/me`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct MeResponse {
    /// User id.
    pub sub: String,
    /// User name.
    pub username: String,
    /// Access-token expiry (Unix seconds).
    pub exp: i64,
    /// Access-token issue time (Unix seconds).
    pub iat: i64,
}

async fn me(
    State(st): State<AppState>,
    Authenticated(c): Authenticated,
) -> Result<Response, AppError> {
    let user = st
        .service
        .user_by_id(&c.sub)
        .await?
        .ok_or(AppError::MissingToken)?;
    let mut r = Json(MeResponse {
        sub: c.sub,
        username: user.username,
        exp: c.exp,
        iat: c.iat,
    })
    .into_response();
    no_store(&mut r);
    Ok(r)
}

/// Body of `POST /api/echo`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct EchoResponse {
    /// Request method.
    pub method: String,
    /// Request `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Body length in bytes.
    pub length: usize,
    /// Body as UTF-8 (invalid sequences replaced).
    pub body: String,
    /// Lower-case hex SHA-256 of the body bytes.
    pub sha256: String,
}

async fn echo(
    method: Method,
    _auth: Authenticated,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body_or_error(body)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut r = Json(EchoResponse {
        method: method.to_string(),
        content_type,
        length: body.len(),
        body: String::from_utf8_lossy(&body).into_owned(),
        sha256: hex(&Sha256::digest(&body)),
    })
    .into_response();
    no_store(&mut r);
    Ok(r)
}

async fn forbidden(_auth: Authenticated) -> AppError {
    AppError::InsufficientScope
}

/// JSON 405 for routes that exist with another method.
pub(crate) async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_cookie_uses_the_protocol_name() {
        assert!(const_format_clear().starts_with(&format!("{REFRESH_COOKIE}=;")));
    }
}
