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
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::with_jwks_url(
//!     VerifierConfig::new("authfetch", "authfetch-api"),
//!     "http://127.0.0.1:8080/.well-known/jwks.json",
//! )?;
//! let app: Router = Router::new().route("/me", get(me)).route_layer(verifier.layer());
//! # let _ = app; Ok(()) }
//! ```
//!
//! Keys come from the server's own [`KeyRing`], a fixed list, or a JWKS URL. A JWKS is cached
//! for [`JWKS_CACHE_TTL`]; a token with an unknown `kid` triggers a refetch at most once per
//! [`JWKS_MIN_REFETCH`], and concurrent misses share one fetch. When the JWKS endpoint cannot
//! be reached, cached keys are trusted for [`JWKS_MAX_STALE`] past their cache lifetime and
//! then not at all: a key withdrawn from the set stops verifying within
//! `cache_ttl + max_stale` whatever happens to the endpoint. Revocation (denylisted `jti`,
//! revoked family, user `not_before`) is checked through an optional [`RevocationCheck`];
//! without one, a revoked token stays valid until its (short) expiry.
//!
//! Opaque access tokens (`--access-tokens opaque`) carry nothing to verify offline: a
//! verifier built with [`VerifierBuilder::introspection`] asks the server's RFC 7662
//! endpoint and caches an *active* answer for [`INTROSPECTION_CACHE_TTL`] (never past the
//! token's `exp`). That cache is the staleness: a token revoked on the server is still
//! accepted here for at most that long. Inactive answers and failures are not cached; a
//! failure refuses the request (fail closed).
//!
//! For the JWT modes a verified-token cache ([`VerifierBuilder::token_cache`]) keeps the
//! claims of tokens whose signature has verified, keyed by the SHA-256 of the whole token,
//! until their `exp` or until the least recently used entry makes room. Only tokens that
//! verified are inserted, so forged tokens never occupy it, and a token that differs by one
//! byte has another key. A hit still needs the key that verified the token to be trusted now
//! (a key withdrawn from the JWKS ends its entries). Revocation still runs on every request,
//! cached or not.
//!
//! Everything is set on a [`VerifierBuilder`] before the verifier exists, so a verifier in
//! use always does what it was configured to do (there is no setter to call too late):
//!
//! ```no_run
//! # fn f(check: std::sync::Arc<dyn authfetch_server::verify::RevocationCheck>) -> Result<(), Box<dyn std::error::Error>> {
//! use authfetch_server::verify::{JwksPolicy, Verifier, VerifierConfig};
//!
//! let verifier = Verifier::builder(VerifierConfig::new("authfetch", "authfetch-api"))
//!     .jwks_url("https://auth.example/.well-known/jwks.json")
//!     .jwks_policy(JwksPolicy::default())
//!     .revocation(check)
//!     .build()?;
//! # let _ = verifier; Ok(()) }
//! ```

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, Request};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::MAX_SKEW;
use crate::error::AppError;
use crate::jwt::{parse_compact, JwtError};
use crate::keys::{JwkSet, KeyRing, PublicKey};

/// How long a fetched JWKS is used before it is fetched again.
pub const JWKS_CACHE_TTL: Duration = Duration::from_secs(300);
/// How long past [`JWKS_CACHE_TTL`] cached keys are still trusted while the JWKS endpoint
/// cannot be reached. Longer than an access token lives, so a short outage of the endpoint
/// does not log anyone out; short enough that a withdrawn key does not outlive it by much.
pub const JWKS_MAX_STALE: Duration = Duration::from_secs(15 * 60);
/// Minimum time between two JWKS fetches triggered by unknown `kid`s.
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
/// How long an active introspection answer is reused (the staleness of revocation seen by a
/// verifier of opaque tokens).
pub const INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(10);
/// Largest introspection answer accepted.
const MAX_INTROSPECTION_BYTES: usize = 16 * 1024;
/// Largest accepted opaque token: ours are 43 characters; anything much longer is not ours.
const MAX_OPAQUE_TOKEN_BYTES: usize = 512;
/// The `Authorization` scheme of a bearer token (RFC 6750 §2.1).
const BEARER_SCHEME: &str = "Bearer";
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
    /// `cnf.jkt`: the thumbprint of the DPoP key the token is bound to (RFC 9449 §6.1), if any.
    /// A bound token is accepted only as `Authorization: DPoP` with a proof by that key.
    pub cnf_jkt: Option<String>,
}

/// Answers "has this otherwise valid token been revoked?" (J13, J14).
#[async_trait]
pub trait RevocationCheck: Send + Sync + 'static {
    /// `Ok(true)` to reject. An `Err` rejects too (fail closed) with a server error.
    async fn is_revoked(&self, claims: &AccessClaims) -> Result<bool, String>;
}

/// Answers for an opaque access token: its claims while it is live, `Ok(None)` when it is
/// unknown, expired or revoked. An `Err` refuses the request with a server error (fail closed).
#[async_trait]
pub trait OpaqueTokens: Send + Sync + 'static {
    /// The claims of `token`, if it is live.
    async fn lookup(&self, token: &str) -> Result<Option<AccessClaims>, String>;
}

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No usable `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Several `Authorization` headers.
    #[error("several authorization headers")]
    Ambiguous,
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
            VerifyError::Ambiguous => AppError::AmbiguousAuthorization.into_response(),
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
    /// Opaque tokens: no keys; each token is looked up (the server's store, or introspection).
    Opaque(Arc<dyn OpaqueTokens>),
}

struct Inner {
    config: VerifierConfig,
    keys: KeySource,
    revocation: Option<Arc<dyn RevocationCheck>>,
    clock: Arc<dyn Clock>,
    cache: Option<TokenCache>,
    /// DPoP proofs for `Authorization: DPoP` (RFC 9449 §7); `None`: bound tokens are refused.
    dpop: Option<Arc<crate::dpop::http::DpopCheck>>,
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

/// When a remote JWKS is fetched and how long its keys are trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JwksPolicy {
    /// How long a fetched set is used before it is fetched again ([`JWKS_CACHE_TTL`]).
    pub cache_ttl: Duration,
    /// Least time between two fetches, whatever triggers them ([`JWKS_MIN_REFETCH`]).
    pub min_refetch: Duration,
    /// How long past `cache_ttl` a set is still trusted while refetching fails
    /// ([`JWKS_MAX_STALE`]); after that its keys verify nothing until a fetch succeeds.
    pub max_stale: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            cache_ttl: JWKS_CACHE_TTL,
            min_refetch: JWKS_MIN_REFETCH,
            max_stale: JWKS_MAX_STALE,
        }
    }
}

/// A verifier setting that cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No key source: call `keys`, `key_ring` or `jwks_url`.
    #[error("no key source: call keys(), key_ring() or jwks_url()")]
    NoKeys,
    /// Two key sources.
    #[error("more than one key source")]
    TwoKeySources,
    /// A JWKS policy or CA certificate for a verifier that does not fetch a JWKS.
    #[error("JWKS settings given for a verifier without a JWKS URL")]
    JwksSettingsWithoutUrl,
    /// The JWKS URL is not `http://` or `https://`.
    #[error("the JWKS URL must be http:// or https://")]
    JwksUrl,
    /// The HTTP client could not be built (bad CA certificate, TLS set-up).
    #[error("JWKS client: {0}")]
    Client(String),
    /// A revocation source or a token cache for opaque tokens: their lookup already answers
    /// revocation, and introspection has its own cache.
    #[error("revocation() and token_cache() apply to JWTs, not to opaque tokens")]
    NotForOpaque,
    /// A verified-token cache of no entries.
    #[error("the token cache needs room for at least one token")]
    CacheCapacity,
    /// The introspection URL is not `http://` or `https://`, or its secret is empty.
    #[error("the introspection URL must be http:// or https:// and the secret non-empty")]
    Introspection,
}

/// Collects everything a [`Verifier`] needs; [`VerifierBuilder::build`] checks that it all
/// applies and freezes it.
#[must_use]
pub struct VerifierBuilder {
    config: VerifierConfig,
    keys: Vec<KeySource>,
    jwks_url: Option<String>,
    jwks_policy: Option<JwksPolicy>,
    jwks_ca_pem: Vec<Vec<u8>>,
    revocation: Option<Arc<dyn RevocationCheck>>,
    clock: Arc<dyn Clock>,
    cache_capacity: Option<usize>,
    introspection: Option<(String, String)>,
    introspection_ttl: Duration,
    dpop: Option<Arc<crate::dpop::http::DpopCheck>>,
}

impl std::fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Verifies against a fixed set of `(kid, key)` pairs.
    pub fn keys(mut self, keys: impl IntoIterator<Item = (String, PublicKey)>) -> Self {
        self.keys
            .push(KeySource::Static(keys.into_iter().collect()));
        self
    }

    /// Verifies against the published keys of a [`KeyRing`] (the server's own).
    pub fn key_ring(mut self, ring: Arc<KeyRing>) -> Self {
        self.keys.push(KeySource::Ring(ring));
        self
    }

    /// Verifies against the JWKS at `url` (`https://`, or `http://` on a trusted network),
    /// cached and refetched as [`VerifierBuilder::jwks_policy`] says.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// How the JWKS is cached and refetched (default [`JwksPolicy::default`]). Only for a
    /// verifier with a JWKS URL; `build` refuses it otherwise.
    pub fn jwks_policy(mut self, policy: JwksPolicy) -> Self {
        self.jwks_policy = Some(policy);
        self
    }

    /// Trusts this PEM CA certificate (in addition to the built-in web roots) for an
    /// `https://` JWKS URL: a private CA. Only for a verifier with a JWKS URL.
    pub fn jwks_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.jwks_ca_pem.push(pem.into());
        self
    }

    /// Adds a revocation source.
    pub fn revocation(mut self, check: Arc<dyn RevocationCheck>) -> Self {
        self.revocation = Some(check);
        self
    }

    /// Accepts DPoP-bound tokens (`Authorization: DPoP` with a proof by the `cnf.jkt` key,
    /// RFC 9449 §7) checked by `check`. Without it, a bound token is refused in every form.
    pub fn dpop(mut self, check: Arc<crate::dpop::http::DpopCheck>) -> Self {
        self.dpop = Some(check);
        self
    }

    /// Replaces the clock (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps the claims of up to `capacity` verified JWTs (see the module docs), so each
    /// token's signature is checked once. JWT key sources only.
    pub fn token_cache(mut self, capacity: usize) -> Self {
        self.cache_capacity = Some(capacity);
        self
    }

    /// Opaque tokens, answered by `tokens` (the server's own store lookup, or a custom one).
    pub fn opaque(mut self, tokens: Arc<dyn OpaqueTokens>) -> Self {
        self.keys.push(KeySource::Opaque(tokens));
        self
    }

    /// Opaque tokens, answered by the RFC 7662 endpoint at `url`
    /// (`https://…/oauth/introspect`), authenticated with `Authorization: Bearer <secret>`
    /// (the server's introspection secret). Active answers are cached for
    /// [`INTROSPECTION_CACHE_TTL`] unless [`VerifierBuilder::introspection_cache_ttl`] says
    /// otherwise. A private CA given with [`VerifierBuilder::jwks_ca_pem`] applies here too.
    pub fn introspection(mut self, url: impl Into<String>, secret: impl Into<String>) -> Self {
        self.introspection = Some((url.into(), secret.into()));
        self
    }

    /// How long an active introspection answer is reused: the longest a token revoked on
    /// the server is still accepted here. `Duration::ZERO` asks on every request.
    pub fn introspection_cache_ttl(mut self, ttl: Duration) -> Self {
        self.introspection_ttl = ttl;
        self
    }

    /// The verifier.
    ///
    /// # Errors
    /// Settings that cannot apply: see [`BuildError`].
    pub fn build(mut self) -> Result<Verifier, BuildError> {
        if let Some((url, secret)) = self.introspection.take() {
            if self.jwks_policy.is_some() {
                return Err(BuildError::JwksSettingsWithoutUrl);
            }
            let remote =
                RemoteIntrospection::new(url, secret, self.introspection_ttl, &self.jwks_ca_pem)?;
            self.keys.push(KeySource::Opaque(Arc::new(remote)));
            self.jwks_ca_pem.clear();
        }
        let keys = match (self.keys.pop(), self.keys.is_empty(), self.jwks_url) {
            (Some(_), false, _) | (Some(_), true, Some(_)) => {
                return Err(BuildError::TwoKeySources)
            }
            (Some(k), true, None) => {
                if self.jwks_policy.is_some() || !self.jwks_ca_pem.is_empty() {
                    return Err(BuildError::JwksSettingsWithoutUrl);
                }
                k
            }
            (None, _, Some(url)) => KeySource::Remote(RemoteJwks::new(
                url,
                self.jwks_policy.unwrap_or_default(),
                &self.jwks_ca_pem,
            )?),
            (None, _, None) => return Err(BuildError::NoKeys),
        };
        if matches!(keys, KeySource::Opaque(_))
            && (self.revocation.is_some() || self.cache_capacity.is_some())
        {
            return Err(BuildError::NotForOpaque);
        }
        let cache = match self.cache_capacity {
            Some(0) => return Err(BuildError::CacheCapacity),
            Some(n) => Some(TokenCache::new(n)),
            None => None,
        };
        Ok(Verifier(Arc::new(Inner {
            config: self.config,
            keys,
            revocation: self.revocation,
            clock: self.clock,
            cache,
            dpop: self.dpop,
        })))
    }
}

impl Verifier {
    /// Starts a [`VerifierBuilder`]: key source, revocation, clock and JWKS policy are all set
    /// there, before the verifier exists.
    pub fn builder(config: VerifierConfig) -> VerifierBuilder {
        VerifierBuilder {
            config,
            keys: Vec::new(),
            jwks_url: None,
            jwks_policy: None,
            jwks_ca_pem: Vec::new(),
            revocation: None,
            clock: Arc::new(SystemClock),
            cache_capacity: None,
            introspection: None,
            introspection_ttl: INTROSPECTION_CACHE_TTL,
            dpop: None,
        }
    }

    /// Verifies against a fixed set of `(kid, key)` pairs; no revocation, system clock.
    pub fn with_keys(
        config: VerifierConfig,
        keys: impl IntoIterator<Item = (String, PublicKey)>,
    ) -> Self {
        Verifier::plain(config, KeySource::Static(keys.into_iter().collect()))
    }

    /// Verifies against the published keys of a [`KeyRing`]; no revocation, system clock.
    pub fn with_key_ring(config: VerifierConfig, ring: Arc<KeyRing>) -> Self {
        Verifier::plain(config, KeySource::Ring(ring))
    }

    /// Verifies against the JWKS at `url` with the default [`JwksPolicy`]; no revocation.
    ///
    /// # Errors
    /// A URL that is not `http://` or `https://`, or a TLS set-up failure.
    pub fn with_jwks_url(
        config: VerifierConfig,
        url: impl Into<String>,
    ) -> Result<Self, BuildError> {
        Verifier::builder(config).jwks_url(url).build()
    }

    /// The server's own verifier: its key ring, its store's revocation check (none in the
    /// stateless mode), its clock and its token cache, all given at construction (a key ring
    /// needs nothing `build` could refuse).
    pub(crate) fn for_key_ring(
        config: VerifierConfig,
        ring: Arc<KeyRing>,
        revocation: Option<Arc<dyn RevocationCheck>>,
        clock: Arc<dyn Clock>,
        cache_capacity: usize,
        dpop: Option<Arc<crate::dpop::http::DpopCheck>>,
    ) -> Self {
        Verifier(Arc::new(Inner {
            config,
            keys: KeySource::Ring(ring),
            revocation,
            clock,
            cache: Some(TokenCache::new(cache_capacity.max(1))),
            dpop,
        }))
    }

    /// The server's own verifier in the opaque mode: each token is looked up in its store.
    pub(crate) fn for_opaque(
        config: VerifierConfig,
        tokens: Arc<dyn OpaqueTokens>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Verifier(Arc::new(Inner {
            config,
            keys: KeySource::Opaque(tokens),
            revocation: None,
            clock,
            cache: None,
            dpop: None,
        }))
    }

    fn plain(config: VerifierConfig, keys: KeySource) -> Self {
        Verifier(Arc::new(Inner {
            config,
            keys,
            revocation: None,
            clock: Arc::new(SystemClock),
            cache: None,
            dpop: None,
        }))
    }

    /// Whether this verifier takes opaque tokens (looked up) rather than JWTs.
    pub fn is_opaque(&self) -> bool {
        matches!(self.0.keys, KeySource::Opaque(_))
    }

    /// The verified-token cache: (hits so far, tokens held now), or `None` without a cache.
    /// For tests and metrics.
    pub fn token_cache_stats(&self) -> Option<(u64, usize)> {
        self.0.cache.as_ref().map(TokenCache::stats)
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
        let token = scheme_token(value, BEARER_SCHEME)
            .ok_or(JwtError::Malformed("not a Bearer authorization"))?;
        let claims = self.verify(token).await?;
        if claims.cnf_jkt.is_some() {
            // A DPoP-bound token as Bearer: whoever sends it this way has no proof of the key.
            return Err(JwtError::Claims("cnf").into());
        }
        Ok(claims)
    }

    /// Verifies a compact access token: form, algorithm, key, signature, claims, revocation.
    ///
    /// # Errors
    /// [`VerifyError::Invalid`] with the reason (log it; clients only get `invalid_token`).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let inner = &self.0;
        if let KeySource::Opaque(tokens) = &inner.keys {
            if token.is_empty() || token.len() > MAX_OPAQUE_TOKEN_BYTES {
                return Err(JwtError::Malformed("not an opaque access token").into());
            }
            let c = match tokens.lookup(token).await {
                Ok(Some(c)) => c,
                Ok(None) => return Err(JwtError::Inactive.into()),
                Err(e) => return Err(VerifyError::Unavailable(e)),
            };
            // The same expectations as for a JWT: an introspection endpoint of another issuer
            // or for another audience does not vouch for tokens meant for us.
            if c.iss != inner.config.issuer {
                return Err(JwtError::Claims("iss").into());
            }
            if !c.aud.contains(&inner.config.audience) {
                return Err(JwtError::Claims("aud").into());
            }
            if inner.clock.now_secs() >= c.exp {
                return Err(JwtError::Expired.into());
            }
            return Ok(c);
        }
        let claims = match &inner.cache {
            Some(cache) => {
                let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                let hit = match cache.get(&key, inner.clock.now_secs()) {
                    // The key that verified it must still be trusted: a key withdrawn from the
                    // set (or a remote set too stale to trust) ends its tokens' cache entries.
                    Some((c, kid)) if self.key(&kid).await.is_some() => Some(c),
                    Some(_) => {
                        cache.remove(&key);
                        None
                    }
                    None => None,
                };
                match hit {
                    Some(c) => c,
                    None => {
                        let (c, kid) = self.verify_signed(token).await?;
                        // Only a token whose signature and claims verified gets here.
                        cache.insert(key, c.clone(), kid);
                        c
                    }
                }
            }
            None => self.verify_signed(token).await?.0,
        };
        if let Some(rc) = &inner.revocation {
            match rc.is_revoked(&claims).await {
                Ok(false) => {}
                Ok(true) => return Err(JwtError::Revoked.into()),
                Err(e) => return Err(VerifyError::Unavailable(e)),
            }
        }
        Ok(claims)
    }

    /// The trusted key named `kid`, if any.
    async fn key(&self, kid: &str) -> Option<PublicKey> {
        let now_ms = self.0.clock.now_ms();
        match &self.0.keys {
            KeySource::Static(m) => m.get(kid).cloned(),
            KeySource::Ring(r) => r.public_key(kid, now_ms),
            KeySource::Remote(r) => r.key(kid, now_ms).await,
            KeySource::Opaque(_) => None,
        }
    }

    /// Everything but revocation; the claims and the `kid` of the key that verified them.
    async fn verify_signed(&self, token: &str) -> Result<(AccessClaims, String), JwtError> {
        let inner = &self.0;
        let parsed = parse_compact(token)?;
        let key = self.key(&parsed.kid).await.ok_or(JwtError::UnknownKey)?;
        // J1: the key decides the algorithm; the header must agree with it.
        if key.alg() != parsed.alg {
            return Err(JwtError::Algorithm);
        }
        if !key.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
            return Err(JwtError::Signature);
        }
        let claims = check_claims(&inner.config, parsed.claims, inner.clock.now_secs())?;
        Ok((claims, parsed.kid))
    }
}

/// The token of an `Authorization` value `<scheme> <token>`: the scheme compared
/// case-insensitively, one or more spaces, then a non-empty token68 (RFC 9110 §11.2: letters,
/// digits, `-._~+/`, and `=`). Serves `Bearer` here and `DPoP` in [`crate::dpop::http`].
/// Not `headers::Authorization<Bearer>`: it reads the first of several `Authorization` headers
/// and ignores the rest, and accepts any visible characters in the token, so both checks would
/// stay here beside it; what it would replace is the `split_once` below.
pub fn scheme_token<'a>(v: &'a [u8], scheme: &str) -> Option<&'a str> {
    let s = std::str::from_utf8(v).ok()?;
    let (name, rest) = s.split_once(' ')?;
    if !name.eq_ignore_ascii_case(scheme) {
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
    // `cnf` present means bound: it must hold a well-formed `jkt` (a SHA-256 in base64url), or
    // the token is refused rather than read as unbound.
    let cnf_jkt = match m.get("cnf") {
        None => None,
        Some(Value::Object(c)) => match c.get("jkt") {
            Some(Value::String(j)) if j.len() == 43 => Some(j.clone()),
            _ => return Err(JwtError::Claims("cnf")),
        },
        Some(_) => return Err(JwtError::Claims("cnf")),
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
        cnf_jkt,
    })
}

/// The verified-token cache: SHA-256 of a whole token → its verified claims and the `kid` of
/// the key that verified them. Bounded by `capacity` (least recently used out first); an entry
/// past its `exp` is dropped when found.
struct TokenCache {
    map: std::sync::Mutex<hashlink::LruCache<[u8; 32], (AccessClaims, String)>>,
    hits: AtomicU64,
}

impl TokenCache {
    fn new(capacity: usize) -> Self {
        Self {
            map: std::sync::Mutex::new(hashlink::LruCache::new(capacity)),
            hits: AtomicU64::new(0),
        }
    }

    fn get(&self, key: &[u8; 32], now_s: i64) -> Option<(AccessClaims, String)> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let entry = m.get(key)?;
        if now_s >= entry.0.exp {
            m.remove(key);
            return None;
        }
        let entry = entry.clone();
        drop(m);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry)
    }

    fn insert(&self, key: [u8; 32], claims: AccessClaims, kid: String) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(key, (claims, kid));
    }

    fn remove(&self, key: &[u8; 32]) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn stats(&self) -> (u64, usize) {
        let len = self.map.lock().unwrap_or_else(|e| e.into_inner()).len();
        (self.hits.load(Ordering::Relaxed), len)
    }
}

/// Body of an RFC 7662 introspection answer, as far as a verifier reads it.
#[derive(serde::Deserialize)]
struct IntrospectionAnswer {
    active: bool,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    /// `{"jkt": …}` for a DPoP-bound token (RFC 9449 §6.2).
    #[serde(default)]
    cnf: Option<Value>,
}

/// Asks an RFC 7662 endpoint about opaque tokens, caching active answers briefly.
struct RemoteIntrospection {
    url: String,
    /// `Bearer <secret>`, ready to send.
    authorization: String,
    client: reqwest::Client,
    ttl_ms: i64,
    /// SHA-256 of the token → (claims, reusable until ms). Bounded like the token cache.
    cache: std::sync::Mutex<hashlink::LruCache<[u8; 32], (AccessClaims, i64)>>,
}

/// Most introspection answers kept.
const INTROSPECTION_CACHE_ENTRIES: usize = 10_000;

impl RemoteIntrospection {
    fn new(
        url: String,
        secret: String,
        ttl: Duration,
        ca_pem: &[Vec<u8>],
    ) -> Result<Self, BuildError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) || secret.is_empty() {
            return Err(BuildError::Introspection);
        }
        Ok(Self {
            url,
            authorization: format!("Bearer {secret}"),
            client: jwks_client(ca_pem)?,
            ttl_ms: dur_ms(ttl),
            cache: std::sync::Mutex::new(hashlink::LruCache::new(INTROSPECTION_CACHE_ENTRIES)),
        })
    }

    async fn ask(&self, token: &str) -> Result<IntrospectionAnswer, String> {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let resp = self
            .client
            .post(&self.url)
            .header(header::AUTHORIZATION, &self.authorization)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("introspection status {}", resp.status()));
        }
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > MAX_INTROSPECTION_BYTES {
            return Err("introspection answer too large".into());
        }
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

#[async_trait]
impl OpaqueTokens for RemoteIntrospection {
    async fn lookup(&self, token: &str) -> Result<Option<AccessClaims>, String> {
        // The clock of this process: the cache is about this process's time, not a test clock.
        let now_ms = SystemClock.now_ms();
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        {
            let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match c.get(&key) {
                Some((claims, until)) if now_ms < *until => return Ok(Some(claims.clone())),
                Some(_) => {
                    c.remove(&key);
                }
                None => {}
            }
        }
        let a = self.ask(token).await?;
        if !a.active {
            return Ok(None);
        }
        let aud = match a.aud {
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(v)) => v
                .into_iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        // An active answer without the claims a handler relies on is not accepted.
        let (Some(iss), Some(sub), Some(iat), Some(exp), Some(jti)) =
            (a.iss, a.sub, a.iat, a.exp, a.jti)
        else {
            return Err("active introspection answer lacks iss, sub, iat, exp or jti".into());
        };
        // A bound token's key comes along, so that the DPoP check applies as for a JWT (and a
        // verifier without DPoP refuses it); a `cnf` we cannot read is not ignored.
        let cnf_jkt = match a.cnf {
            None => None,
            Some(c) => Some(
                c.get("jkt")
                    .and_then(Value::as_str)
                    .filter(|j| !j.is_empty())
                    .ok_or("introspection answer has a cnf without a jkt")?
                    .to_owned(),
            ),
        };
        let claims = AccessClaims {
            iss,
            aud,
            sub,
            iat,
            exp,
            nbf: a.nbf,
            jti,
            sid: a.sid,
            cnf_jkt,
        };
        let until = now_ms
            .saturating_add(self.ttl_ms)
            .min(exp.saturating_mul(1000));
        if until > now_ms {
            let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            c.insert(key, (claims.clone(), until));
        }
        Ok(Some(claims))
    }
}

/// A cached remote JWKS. Times are the verifier clock's milliseconds, so tests can move them.
struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    /// The keys and when they were fetched.
    cache: std::sync::RwLock<(HashMap<String, PublicKey>, Option<i64>)>,
    /// Held while fetching (single flight); holds the time of the last fetch attempt.
    fetch: tokio::sync::Mutex<Option<i64>>,
    fetches: AtomicU64,
    policy: JwksPolicy,
}

fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl RemoteJwks {
    fn new(url: String, policy: JwksPolicy, ca_pem: &[Vec<u8>]) -> Result<Self, BuildError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(BuildError::JwksUrl);
        }
        let client = jwks_client(ca_pem)?;
        Ok(Self {
            url,
            client,
            cache: std::sync::RwLock::new((HashMap::new(), None)),
            fetch: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            policy,
        })
    }

    /// The cached key for `kid` if the set is still trusted, and whether it is fresh.
    fn cached(&self, kid: &str, now_ms: i64) -> (Option<PublicKey>, bool) {
        let c = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let Some(fetched) = c.1 else {
            return (None, false);
        };
        let age = now_ms.saturating_sub(fetched);
        let ttl = dur_ms(self.policy.cache_ttl);
        if age >= ttl.saturating_add(dur_ms(self.policy.max_stale)) {
            // Too stale to trust: a key withdrawn from the set must not outlive an outage.
            return (None, false);
        }
        (c.0.get(kid).cloned(), age < ttl)
    }

    async fn key(&self, kid: &str, now_ms: i64) -> Option<PublicKey> {
        if let (Some(k), true) = self.cached(kid, now_ms) {
            return Some(k);
        }
        let mut last = self.fetch.lock().await;
        // Someone else may have fetched while we waited.
        let (hit, fresh) = self.cached(kid, now_ms);
        if hit.is_some() && fresh {
            return hit;
        }
        // At most one fetch per `min_refetch`, whatever the reason (unknown kid, stale cache,
        // or a JWKS endpoint that is down): token spam must never turn into a fetch per request.
        if last.is_some_and(|t| now_ms.saturating_sub(t) < dur_ms(self.policy.min_refetch)) {
            return hit;
        }
        *last = Some(now_ms);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch_set().await {
            Ok(keys) => {
                let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
                *c = (keys, Some(now_ms));
                c.0.get(kid).cloned()
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; cached keys are trusted until they are too stale");
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

/// The JWKS HTTP client: 5 s timeout, no redirects, TLS through rustls (ring provider) with
/// the Mozilla root set plus any private CA given.
fn jwks_client(ca_pem: &[Vec<u8>]) -> Result<reqwest::Client, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in ca_pem {
        use rustls::pki_types::pem::PemObject as _;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| BuildError::Client(format!("CA certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| BuildError::Client(format!("CA certificate: {e}")))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| BuildError::Client(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| BuildError::Client(e.to_string()))
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
            if let Some(check) = verifier.0.dpop.clone() {
                let (method, uri) = (req.method().clone(), req.uri().clone());
                return match check
                    .authorize(&verifier, req.headers(), &method, &uri)
                    .await
                {
                    Ok(claims) => {
                        req.extensions_mut().insert(Authenticated(claims));
                        let mut resp = inner.call(req).await?;
                        // A fresh nonce on success too, so a client rotates before it is refused.
                        if let Some(n) = check.nonce_header() {
                            resp.headers_mut().insert(crate::dpop::DPOP_NONCE_HEADER, n);
                        }
                        Ok(resp)
                    }
                    Err(resp) => Ok(resp),
                };
            }
            let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
            let verified = match (values.next(), values.next()) {
                (value, None) => verifier.verify_header(value.map(|v| v.as_bytes())).await,
                (_, Some(_)) => Err(VerifyError::Ambiguous),
            };
            match verified {
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

#[cfg(test)]
mod tests {
    use super::scheme_token;
    use crate::dpop::DPOP_SCHEME;

    const BEARER: &str = super::BEARER_SCHEME;

    #[test]
    fn scheme_token_takes_the_token_after_its_scheme() {
        assert_eq!(
            scheme_token(b"Bearer abc.def-_~+/", BEARER),
            Some("abc.def-_~+/")
        );
        assert_eq!(scheme_token(b"DPoP abc.def", DPOP_SCHEME), Some("abc.def"));
    }

    #[test]
    fn scheme_token_compares_the_scheme_case_insensitively() {
        for v in ["bearer t", "BEARER t", "bEaReR t"] {
            assert_eq!(scheme_token(v.as_bytes(), BEARER), Some("t"), "{v}");
        }
        for v in ["dpop t", "DPOP t", "dPoP t"] {
            assert_eq!(scheme_token(v.as_bytes(), DPOP_SCHEME), Some("t"), "{v}");
        }
    }

    #[test]
    fn scheme_token_takes_one_or_more_spaces_and_nothing_else_as_the_separator() {
        assert_eq!(scheme_token(b"Bearer t", BEARER), Some("t"));
        assert_eq!(scheme_token(b"Bearer   t", BEARER), Some("t"));
        for v in [
            "Bearer\tt",
            "Bearert",
            " Bearer t",
            "Bearer t ",
            "Bearer t u",
        ] {
            assert_eq!(scheme_token(v.as_bytes(), BEARER), None, "{v:?}");
        }
    }

    #[test]
    fn scheme_token_accepts_the_token68_charset_with_trailing_equals_signs() {
        let all = "AZaz09-._~+/";
        assert_eq!(
            scheme_token(format!("DPoP {all}").as_bytes(), DPOP_SCHEME),
            Some(all)
        );
        assert_eq!(scheme_token(b"Bearer dG9rZW4=", BEARER), Some("dG9rZW4="));
        assert_eq!(scheme_token(b"Bearer dG9rZQ==", BEARER), Some("dG9rZQ=="));
        // Outside token68: refused, not cut short.
        for bad in ["a,b", "a;b", "a\"b", "a:b", "a@b", "a%b", "a(b)", "é"] {
            let v = format!("Bearer {bad}");
            assert_eq!(scheme_token(v.as_bytes(), BEARER), None, "{bad}");
        }
    }

    #[test]
    fn scheme_token_refuses_an_empty_token() {
        for v in ["Bearer", "Bearer ", "Bearer    ", ""] {
            assert_eq!(scheme_token(v.as_bytes(), BEARER), None, "{v:?}");
        }
        assert_eq!(scheme_token(b"DPoP ", DPOP_SCHEME), None);
    }

    #[test]
    fn scheme_token_refuses_another_scheme() {
        assert_eq!(scheme_token(b"DPoP t", BEARER), None);
        assert_eq!(scheme_token(b"Bearer t", DPOP_SCHEME), None);
        assert_eq!(scheme_token(b"Basic dTpw", BEARER), None);
        assert_eq!(scheme_token(b"Bearerx t", BEARER), None);
        assert_eq!(scheme_token(b"Bear t", BEARER), None);
    }

    #[test]
    fn scheme_token_refuses_bytes_that_are_not_utf8() {
        assert_eq!(scheme_token(b"Bearer \xff\xfe", BEARER), None);
        assert_eq!(scheme_token(b"\xffBearer t", BEARER), None);
    }
}
