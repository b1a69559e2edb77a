//! The verification layer: checks a bearer access token (J1–J14) and hands its claims to the
//! handler. Usable by any axum/tower service, not only this server.
//!
//! ```no_run
//! use authfetch_server::verify::{Authenticated, Verifier, VerifierConfig};
//! use axum::{routing::get, Router};
//!
//! async fn me(Authenticated(claims): Authenticated) -> String {
//!     claims.sub
//! }
//!
//! let verifier = Verifier::with_jwks_url(
//!     VerifierConfig::new("authfetch", "authfetch-api"),
//!     "http://127.0.0.1:8080/.well-known/jwks.json",
//! );
//! let app: Router = Router::new().route("/me", get(me)).route_layer(verifier.layer());
//! ```
//!
//! Keys come from the server's own [`KeyRing`], a fixed list, or a JWKS URL. A JWKS is cached
//! for [`JWKS_CACHE_TTL`]; a token with an unknown `kid` triggers a refetch at most once per
//! [`JWKS_MIN_REFETCH`], and concurrent misses share one fetch. Revocation (denylisted `jti`,
//! revoked family, user `not_before`) is checked through an optional [`RevocationCheck`];
//! without one, a revoked token stays valid until its (short) expiry.

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, Request};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};
use crate::config::MAX_SKEW;
use crate::error::AppError;
use crate::jwt::{parse_compact, JwtError};
use crate::keys::{JwkSet, KeyRing, PublicKey};

/// How long a fetched JWKS is used before it is fetched again.
pub const JWKS_CACHE_TTL: Duration = Duration::from_secs(300);
/// Minimum time between two JWKS fetches triggered by unknown `kid`s.
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
/// Largest JWKS body accepted.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Most keys taken from one JWKS.
const MAX_JWKS_KEYS: usize = 32;

/// What a verifier expects of every token.
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// Exact `iss`.
    pub issuer: String,
    /// A value `aud` must contain.
    pub audience: String,
    /// Allowed clock skew for `iat` and `nbf` in the future (J8). `exp` gets no leeway.
    pub max_skew: Duration,
}

impl VerifierConfig {
    /// Expect `issuer` and `audience`, with the default 60 s skew.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            max_skew: MAX_SKEW,
        }
    }
}

/// The claims of a verified access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Subject (user id).
    pub sub: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Not before (Unix seconds), if present.
    pub nbf: Option<i64>,
    /// Token id.
    pub jti: String,
    /// Session (refresh family) id, if present.
    pub sid: Option<String>,
}

/// Answers "has this otherwise valid token been revoked?" (J13, J14).
#[async_trait]
pub trait RevocationCheck: Send + Sync + 'static {
    /// `Ok(true)` to reject. An `Err` rejects too (fail closed) with a server error.
    async fn is_revoked(&self, claims: &AccessClaims) -> Result<bool, String>;
}

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No usable `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// The token was rejected.
    #[error(transparent)]
    Invalid(#[from] JwtError),
    /// The revocation source failed; the request is refused (fail closed).
    #[error("revocation check failed: {0}")]
    Unavailable(String),
}

impl IntoResponse for VerifyError {
    fn into_response(self) -> Response {
        match self {
            VerifyError::Missing => AppError::MissingToken.into_response(),
            VerifyError::Invalid(e) => AppError::InvalidToken(e).into_response(),
            VerifyError::Unavailable(e) => {
                AppError::Internal(format!("revocation check: {e}")).into_response()
            }
        }
    }
}

enum KeySource {
    Static(HashMap<String, PublicKey>),
    Ring(Arc<KeyRing>),
    Remote(RemoteJwks),
}

struct Inner {
    config: VerifierConfig,
    keys: KeySource,
    revocation: Option<Arc<dyn RevocationCheck>>,
    clock: Arc<dyn Clock>,
}

/// Verifies access tokens. Cheap to clone.
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    fn build(config: VerifierConfig, keys: KeySource) -> Self {
        Verifier(Arc::new(Inner {
            config,
            keys,
            revocation: None,
            clock: Arc::new(SystemClock),
        }))
    }

    /// Verifies against a fixed set of `(kid, key)` pairs.
    pub fn with_keys(
        config: VerifierConfig,
        keys: impl IntoIterator<Item = (String, PublicKey)>,
    ) -> Self {
        Self::build(config, KeySource::Static(keys.into_iter().collect()))
    }

    /// Verifies against the published keys of a [`KeyRing`] (the server's own).
    pub fn with_key_ring(config: VerifierConfig, ring: Arc<KeyRing>) -> Self {
        Self::build(config, KeySource::Ring(ring))
    }

    /// Verifies against the JWKS at `url` (cached; unknown `kid` refetches, rate-limited).
    /// Only `http://` URLs are supported by the lean HTTP client this crate is built with; put
    /// the JWKS behind a loopback or internal address, or terminate TLS in front.
    pub fn with_jwks_url(config: VerifierConfig, url: impl Into<String>) -> Self {
        Self::build(config, KeySource::Remote(RemoteJwks::new(url.into())))
    }

    /// Adds a revocation source. Must be called before the verifier is cloned.
    pub fn revocation(self, check: Arc<dyn RevocationCheck>) -> Self {
        self.map_inner(|i| i.revocation = Some(check))
    }

    /// Changes how long a fetched JWKS is trusted (default [`JWKS_CACHE_TTL`]) and the minimum
    /// time between two fetches triggered by unknown `kid`s (default [`JWKS_MIN_REFETCH`]).
    /// No effect on verifiers with local keys. Must be called before the verifier is cloned.
    pub fn jwks_refresh_policy(self, cache_ttl: Duration, min_refetch: Duration) -> Self {
        self.map_inner(|i| {
            if let KeySource::Remote(r) = &mut i.keys {
                r.cache_ttl = cache_ttl;
                r.min_refetch = min_refetch;
            }
        })
    }

    /// Replaces the clock (tests). Must be called before the verifier is cloned.
    pub fn clock(self, clock: Arc<dyn Clock>) -> Self {
        self.map_inner(|i| i.clock = clock)
    }

    fn map_inner(self, f: impl FnOnce(&mut Inner)) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(mut inner) => {
                f(&mut inner);
                Verifier(Arc::new(inner))
            }
            Err(shared) => {
                tracing::error!("Verifier configured after it was cloned; setting ignored");
                Verifier(shared)
            }
        }
    }

    /// A tower layer that requires a valid bearer token and puts [`Authenticated`] into the
    /// request extensions. Failures answer 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
    pub fn layer(&self) -> VerifyLayer {
        VerifyLayer {
            verifier: self.clone(),
        }
    }

    /// How many times the JWKS was fetched (0 for local keys). For tests and metrics.
    pub fn jwks_fetches(&self) -> u64 {
        match &self.0.keys {
            KeySource::Remote(r) => r.fetches.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Verifies the value of an `Authorization` header.
    ///
    /// # Errors
    /// [`VerifyError::Missing`] without a header, [`VerifyError::Invalid`] for anything but
    /// `Bearer <token>`; otherwise as [`Verifier::verify`].
    pub async fn verify_header(&self, value: Option<&[u8]>) -> Result<AccessClaims, VerifyError> {
        let value = value.ok_or(VerifyError::Missing)?;
        let token = bearer_token(value).ok_or(JwtError::Malformed("not a Bearer authorization"))?;
        self.verify(token).await
    }

    /// Verifies a compact access token: form, algorithm, key, signature, claims, revocation.
    ///
    /// # Errors
    /// [`VerifyError::Invalid`] with the reason (log it; clients only get `invalid_token`).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let inner = &self.0;
        let claims = self.verify_signed(token).await?;
        if let Some(rc) = &inner.revocation {
            match rc.is_revoked(&claims).await {
                Ok(false) => {}
                Ok(true) => return Err(JwtError::Revoked.into()),
                Err(e) => return Err(VerifyError::Unavailable(e)),
            }
        }
        Ok(claims)
    }

    /// Everything but revocation.
    async fn verify_signed(&self, token: &str) -> Result<AccessClaims, JwtError> {
        let inner = &self.0;
        let parsed = parse_compact(token)?;
        let now_ms = inner.clock.now_ms();
        let key = match &inner.keys {
            KeySource::Static(m) => m.get(&parsed.kid).cloned(),
            KeySource::Ring(r) => r.public_key(&parsed.kid, now_ms),
            KeySource::Remote(r) => r.key(&parsed.kid).await,
        }
        .ok_or(JwtError::UnknownKey)?;
        // J1: the key decides the algorithm; the header must agree with it.
        if key.alg() != parsed.alg {
            return Err(JwtError::Algorithm);
        }
        if !key.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
            return Err(JwtError::Signature);
        }
        check_claims(&inner.config, parsed.claims, inner.clock.now_secs())
    }
}

/// `Bearer <token>`: scheme case-insensitive, one or more spaces, token68 characters only.
/// Not `headers::Authorization<Bearer>`: it reads the first of several `Authorization` headers
/// and ignores the rest, and accepts any visible characters in the token, so both checks would
/// stay here beside it; what it would replace is the `split_once` below.
fn bearer_token(v: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(v).ok()?;
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let t = rest.trim_start_matches(' ');
    let ok = !t.is_empty()
        && t.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
        });
    ok.then_some(t)
}

fn int(m: &Map<String, Value>, k: &'static str) -> Result<Option<i64>, JwtError> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(JwtError::Claims(k)),
        Some(_) => Err(JwtError::Claims(k)),
    }
}

fn string(m: &Map<String, Value>, k: &'static str) -> Result<String, JwtError> {
    match m.get(k) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(s.clone()),
        _ => Err(JwtError::Claims(k)),
    }
}

/// J8: `iss` exact, `aud` contains ours, `exp` in the future, `iat`/`nbf` not beyond the skew,
/// and `exp iat iss aud sub jti` all present.
fn check_claims(
    cfg: &VerifierConfig,
    m: Map<String, Value>,
    now: i64,
) -> Result<AccessClaims, JwtError> {
    let skew = i64::try_from(cfg.max_skew.as_secs()).unwrap_or(i64::MAX);
    let iss = string(&m, "iss")?;
    if iss != cfg.issuer {
        return Err(JwtError::Claims("iss"));
    }
    let aud = match m.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= 16 => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(JwtError::Claims("aud")))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(JwtError::Claims("aud")),
    };
    if !aud.contains(&cfg.audience) {
        return Err(JwtError::Claims("aud"));
    }
    let sub = string(&m, "sub")?;
    let jti = string(&m, "jti")?;
    let exp = int(&m, "exp")?.ok_or(JwtError::Claims("exp"))?;
    let iat = int(&m, "iat")?.ok_or(JwtError::Claims("iat"))?;
    let nbf = int(&m, "nbf")?;
    if now >= exp {
        return Err(JwtError::Expired);
    }
    if iat > now.saturating_add(skew) {
        return Err(JwtError::Claims("iat"));
    }
    if nbf.is_some_and(|n| n > now.saturating_add(skew)) {
        return Err(JwtError::Claims("nbf"));
    }
    if exp <= iat {
        return Err(JwtError::Claims("exp"));
    }
    let sid = match m.get("sid") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Some(s.clone()),
        Some(_) => return Err(JwtError::Claims("sid")),
    };
    Ok(AccessClaims {
        iss,
        aud,
        sub,
        iat,
        exp,
        nbf,
        jti,
        sid,
    })
}

/// A cached remote JWKS.
struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    cache: std::sync::RwLock<(HashMap<String, PublicKey>, Option<Instant>)>,
    /// Held while fetching (single flight); holds the time of the last fetch attempt.
    fetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
    cache_ttl: Duration,
    min_refetch: Duration,
}

impl RemoteJwks {
    fn new(url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            url,
            client,
            cache: std::sync::RwLock::new((HashMap::new(), None)),
            fetch: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            cache_ttl: JWKS_CACHE_TTL,
            min_refetch: JWKS_MIN_REFETCH,
        }
    }

    fn cached(&self, kid: &str) -> (Option<PublicKey>, bool) {
        let c = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let fresh = c.1.is_some_and(|t| t.elapsed() < self.cache_ttl);
        (c.0.get(kid).cloned(), fresh)
    }

    async fn key(&self, kid: &str) -> Option<PublicKey> {
        if let (Some(k), true) = self.cached(kid) {
            return Some(k);
        }
        let mut last = self.fetch.lock().await;
        // Someone else may have fetched while we waited.
        let (hit, fresh) = self.cached(kid);
        if hit.is_some() && fresh {
            return hit;
        }
        // At most one fetch per `min_refetch`, whatever the reason (unknown kid, stale cache,
        // or a JWKS endpoint that is down): token spam must never turn into a fetch per request.
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return hit;
        }
        *last = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch_set().await {
            Ok(keys) => {
                let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
                *c = (keys, Some(Instant::now()));
                c.0.get(kid).cloned()
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping cached keys");
                hit
            }
        }
    }

    async fn fetch_set(&self) -> Result<HashMap<String, PublicKey>, String> {
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_JWKS_BYTES as u64)
        {
            return Err("JWKS too large".into());
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("JWKS too large".into());
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let mut out = HashMap::new();
        for jwk in set.keys.iter().take(MAX_JWKS_KEYS) {
            let Some(kid) = jwk
                .kid
                .clone()
                .filter(|k| !k.is_empty() && k.len() <= crate::jwt::MAX_KID_BYTES)
            else {
                continue;
            };
            match PublicKey::from_jwk(jwk) {
                Ok(k) => {
                    out.insert(kid, k);
                }
                Err(e) => tracing::debug!(error = %e, "skipping JWK"),
            }
        }
        Ok(out)
    }
}

/// The claims of the verified bearer token, put into request extensions by [`VerifyLayer`].
/// As an extractor it answers 401 when the layer did not run or did not accept the token.
#[derive(Clone, Debug)]
pub struct Authenticated(pub AccessClaims);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Authenticated>()
            .cloned()
            .ok_or_else(|| AppError::MissingToken.into_response())
    }
}

/// Tower layer produced by [`Verifier::layer`].
#[derive(Clone, Debug)]
pub struct VerifyLayer {
    verifier: Verifier,
}

impl<S> tower::Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        VerifyService {
            verifier: self.verifier.clone(),
            inner,
        }
    }
}

/// The service wrapped by [`VerifyLayer`].
#[derive(Clone, Debug)]
pub struct VerifyService<S> {
    verifier: Verifier,
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for VerifyService<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The standard tower dance: the ready service goes into the future, a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
            let verdict = match (values.next(), values.next()) {
                (value, None) => verifier.verify_header(value.map(|v| v.as_bytes())).await,
                // Two credentials are ambiguous: refused as a bad token (401 `invalid_token`,
                // the project's rule for every rejected bearer), not as a missing one.
                _ => Err(JwtError::Malformed("several Authorization headers").into()),
            };
            match verdict {
                Ok(claims) => {
                    req.extensions_mut().insert(Authenticated(claims));
                    inner.call(req).await
                }
                Err(e) => {
                    tracing::debug!(reason = %e, "bearer rejected");
                    Ok(e.into_response())
                }
            }
        })
    }
}
