//! DPoP on the wire: the server's mode, the per-request proof check for `/auth/*`, the resource
//! check the verification layer runs for `Authorization: DPoP`, and the 401 answers (RFC 9449
//! §7.1, §8, §9).
//!
//! Kept apart from `routes.rs`, `service.rs` and `verify.rs`, which call in here with a few
//! lines each.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use super::{
    proof_header, verify_proof, DpopError, Expect, Htu, MemoryReplayCache, NonceError, Nonces,
    ReplayCache, ReplayError, VerifiedProof, DEFAULT_IAT_WINDOW, DEFAULT_NONCE_STEP,
    DPOP_NONCE_HEADER, DPOP_SCHEME,
};
use crate::clock::Clock;
use crate::error::AppError;
use crate::jwt::{Alg, JwtError};
use crate::verify::{scheme_token, AccessClaims, Verifier, VerifyError};

/// The algorithms proofs may use: ES256, what WebCrypto gives every browser.
pub const PROOF_ALGS: [Alg; 1] = [Alg::Es256];

/// `--dpop`: how the server treats DPoP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DpopMode {
    /// DPoP headers are ignored; every token is a bearer token.
    Off,
    /// The default: a login with a proof starts a bound family, one without starts a bearer
    /// family as before. A bound family and its tokens always require proofs; nothing can be
    /// downgraded to bearer.
    #[default]
    Optional,
    /// Login and refresh without a valid proof are refused; resources refuse `Bearer`.
    Required,
}

/// DPoP settings (part of [`crate::Config`]).
#[derive(Clone)]
pub struct DpopConfig {
    /// Off, optional or required.
    pub mode: DpopMode,
    /// Demand a server nonce in every proof (`use_dpop_nonce` until the client sends one).
    pub require_nonce: bool,
    /// How far a proof's `iat` may be from the server clock, either way.
    pub iat_window: Duration,
    /// Secret the nonces are derived from. `None`: `open` derives it from the data directory's
    /// secret, so instances sharing the directory agree; a random one otherwise.
    pub nonce_secret: Option<[u8; 32]>,
    /// Where proof `jti`s are remembered. `None`: in memory, or in Redis when the store is Redis
    /// (set by `open`).
    pub replay: Option<Arc<dyn ReplayCache>>,
    /// The bound of the in-memory cache made when `replay` is `None`.
    pub replay_capacity: usize,
}

impl std::fmt::Debug for DpopConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopConfig")
            .field("mode", &self.mode)
            .field("require_nonce", &self.require_nonce)
            .field("iat_window", &self.iat_window)
            .field("nonce_secret", &self.nonce_secret.map(|_| "[redacted]"))
            .field("replay", &self.replay)
            .field("replay_capacity", &self.replay_capacity)
            .finish()
    }
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            mode: DpopMode::default(),
            require_nonce: false,
            iat_window: DEFAULT_IAT_WINDOW,
            nonce_secret: None,
            replay: None,
            replay_capacity: super::DEFAULT_REPLAY_CAPACITY,
        }
    }
}

/// Everything a request's proof is checked with. Built once per server (or per verifier).
pub struct DpopCheck {
    mode: DpopMode,
    nonces: Nonces,
    require_nonce: bool,
    iat_window: Duration,
    replay: Arc<dyn ReplayCache>,
    origins: Vec<String>,
    clock: Arc<dyn Clock>,
}

impl DpopCheck {
    /// `--dpop required`: every new family must be bound to a key.
    pub fn required(&self) -> bool {
        self.mode == DpopMode::Required
    }
}

impl std::fmt::Debug for DpopCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopCheck")
            .field("mode", &self.mode)
            .field("require_nonce", &self.require_nonce)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

impl DpopCheck {
    /// A check for a server reached at `origins` (exact `scheme://host[:port]`, as
    /// `--allowed-origin`): a proof's `htu` must be one of them plus the request path.
    /// `nonce_secret` is shared by every instance that must accept each other's nonces.
    ///
    /// # Errors
    /// A nonce secret shorter than 32 bytes.
    pub fn new(
        mode: DpopMode,
        nonce_secret: &[u8],
        origins: Vec<String>,
        replay: Arc<dyn ReplayCache>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, NonceError> {
        Ok(Self {
            mode,
            nonces: Nonces::new(nonce_secret, DEFAULT_NONCE_STEP)?,
            require_nonce: false,
            iat_window: DEFAULT_IAT_WINDOW,
            replay,
            origins,
            clock,
        })
    }

    /// From a [`DpopConfig`]; a missing secret or cache becomes a random secret and a memory
    /// cache (one instance).
    pub(crate) fn from_config(c: &DpopConfig, origins: Vec<String>, clock: Arc<dyn Clock>) -> Self {
        let secret = c.nonce_secret.unwrap_or_else(rand::random);
        let replay = c
            .replay
            .clone()
            .unwrap_or_else(|| Arc::new(MemoryReplayCache::new(c.replay_capacity)));
        Self {
            mode: c.mode,
            nonces: Nonces::with_secret(&secret),
            require_nonce: c.require_nonce,
            iat_window: c.iat_window,
            replay,
            origins,
            clock,
        }
    }

    /// Demand the server nonce in every proof.
    #[must_use]
    pub fn require_nonce(mut self, on: bool) -> Self {
        self.require_nonce = on;
        self
    }

    /// How far `iat` may be from the clock.
    #[must_use]
    pub fn iat_window(mut self, w: Duration) -> Self {
        self.iat_window = w;
        self
    }

    /// The mode.
    pub fn mode(&self) -> DpopMode {
        self.mode
    }

    /// The nonce to send now in `DPoP-Nonce`, when nonces are demanded.
    pub fn nonce_header(&self) -> Option<HeaderValue> {
        self.require_nonce
            .then(|| HeaderValue::from_str(&self.nonces.current(self.clock.now_secs())).ok())
            .flatten()
    }

    /// The `htu` this request must carry: the allowed origin its `Host` names (the first one
    /// when none matches or there is no `Host`), plus its path.
    fn htu(&self, headers: &HeaderMap, uri: &Uri) -> Option<Htu> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = host
            .and_then(|h| {
                self.origins.iter().find(|o| {
                    o.split_once("://")
                        .is_some_and(|(_, a)| a.eq_ignore_ascii_case(h))
                })
            })
            .or_else(|| self.origins.first())?;
        Htu::parse(&format!("{origin}{}", uri.path())).ok()
    }

    /// Verifies the request's proof, if any, without remembering it: `Ok(None)` without a
    /// `DPoP` header (or when DPoP is off). `access_token` is the token the request carries as
    /// `Authorization: DPoP`, whose hash the proof must hold in `ath`. The caller decides
    /// whether the proof authorizes anything, then calls [`Self::remember`]: a proof that is
    /// refused anyway (another key's) must not take room in a bounded replay cache.
    ///
    /// # Errors
    /// The 401 to send.
    fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<Option<VerifiedProof>, DpopReject> {
        if self.mode == DpopMode::Off {
            return Ok(None);
        }
        let Some(proof) = proof_header(headers).map_err(DpopReject::Proof)? else {
            return Ok(None);
        };
        let htu = self
            .htu(headers, uri)
            .ok_or(DpopReject::Proof(DpopError::Htu))?;
        let mut expect = Expect::new(method.as_str(), &htu, self.clock.now_secs())
            .iat_window(self.iat_window)
            .algs(&PROOF_ALGS);
        if let Some(t) = access_token {
            expect = expect.access_token(t);
        }
        if self.require_nonce {
            expect = expect.require_nonce(&self.nonces);
        }
        verify_proof(proof, &expect)
            .map(Some)
            .map_err(DpopReject::Proof)
    }

    /// Records a verified proof's first use (D5): a replay is refused.
    ///
    /// # Errors
    /// A replay (401), a full cache (503) or an unreachable one (500): never accepted.
    async fn remember(&self, verified: &VerifiedProof) -> Result<(), DpopReject> {
        match self.replay.first_use(verified, self.clock.now_ms()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DpopReject::Proof(DpopError::Replayed)),
            Err(ReplayError::Full(secs)) => Err(DpopReject::Full(secs)),
            Err(e) => Err(DpopReject::Unavailable(e.to_string())),
        }
    }

    /// The answer to a refused request, with the nonce header when nonces are demanded.
    pub fn reject(&self, r: DpopReject) -> Response {
        let mut resp = r.into_response();
        if let Some(n) = self.nonce_header() {
            resp.headers_mut().insert(DPOP_NONCE_HEADER, n);
        }
        resp
    }

    /// Verifies a resource request: `Authorization: DPoP <token>` with a proof by the key of the
    /// token's `cnf.jkt`, or (unless the mode is `required`) `Bearer <token>` of an unbound
    /// token. A bound token as `Bearer` is refused.
    ///
    /// # Errors
    /// The answer to send.
    pub async fn authorize(
        &self,
        verifier: &Verifier,
        headers: &HeaderMap,
        method: &Method,
        uri: &Uri,
    ) -> Result<AccessClaims, Response> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let value = match (values.next(), values.next()) {
            (v, None) => v,
            (_, Some(_)) => return Err(VerifyError::Ambiguous.into_response()),
        };
        let Some(token) = value.and_then(|v| scheme_token(v.as_bytes(), DPOP_SCHEME)) else {
            if self.mode == DpopMode::Required {
                // The challenge tells a client that only DPoP is accepted here.
                return Err(self.reject(DpopReject::Token(value.is_some())));
            }
            // `verify_header` refuses a bound token as Bearer (its `cnf`).
            return verifier
                .verify_header(value.map(HeaderValue::as_bytes))
                .await
                .map_err(|e| match e {
                    VerifyError::Invalid(JwtError::Claims("cnf")) => {
                        self.reject(DpopReject::Token(true))
                    }
                    e => e.into_response(),
                });
        };
        let claims = verifier.verify(token).await.map_err(|e| match e {
            VerifyError::Invalid(_) => self.reject(DpopReject::Token(true)),
            e => e.into_response(),
        })?;
        let proof = self
            .verify(headers, method, uri, Some(token))
            .map_err(|r| self.reject(r))?
            .ok_or_else(|| self.reject(DpopReject::Proof(DpopError::Missing)))?;
        match &claims.cnf_jkt {
            Some(jkt) if *jkt == proof.jkt => {}
            // Another key's proof, or an unbound token presented as DPoP.
            _ => return Err(self.reject(DpopReject::Proof(DpopError::KeyMismatch))),
        }
        self.remember(&proof).await.map_err(|r| self.reject(r))?;
        Ok(claims)
    }
}

/// What an `/auth/*` request's proof is checked against.
#[derive(Clone, Copy, Debug)]
pub enum Binding<'a> {
    /// A login: a proof binds the new family to its key.
    NewFamily,
    /// A refresh or logout of the family bound to this key (`None`: unbound or unknown).
    Family(Option<&'a str>),
}

/// The DPoP part of `POST /auth/login|refresh|logout`: verifies the proof (if any), then decides
/// the binding. `Ok(Some(jkt))`: bind / keep bound to `jkt`; `Ok(None)`: bearer.
///
/// A bound family needs a proof by its key, whatever the mode (with `--dpop off` it cannot be
/// refreshed at all rather than fall back to bearer); `--dpop required` refuses anything unbound.
///
/// # Errors
/// The 401 to send; nothing has been touched.
pub async fn auth_endpoint(
    check: Option<&DpopCheck>,
    headers: &HeaderMap,
    uri: &Uri,
    binding: Binding<'_>,
) -> Result<Option<String>, Response> {
    let Some(check) = check else {
        return match binding {
            Binding::Family(Some(_)) => Err(DpopReject::Proof(DpopError::Missing).into_response()),
            _ => Ok(None),
        };
    };
    let token = dpop_authorization(headers);
    let proof = check
        .verify(headers, &Method::POST, uri, token)
        .map_err(|r| check.reject(r))?;
    let required = check.mode == DpopMode::Required;
    let jkt = proof.as_ref().map(|p| p.jkt.as_str());
    let decided = match (binding, jkt) {
        (Binding::NewFamily, Some(_)) => Ok(true),
        (Binding::Family(Some(bound)), Some(jkt)) if bound == jkt => Ok(true),
        (Binding::Family(Some(_)), Some(_)) => Err(DpopError::KeyMismatch),
        (Binding::Family(Some(_)), None) => Err(DpopError::Missing),
        (_, _) if required => Err(DpopError::Missing),
        (_, _) => Ok(false),
    };
    match (decided, proof) {
        // Only a proof the request goes on with is remembered (and takes room in the cache).
        (Ok(true), Some(p)) => {
            check.remember(&p).await.map_err(|r| check.reject(r))?;
            Ok(Some(p.jkt))
        }
        (Ok(_), _) => Ok(None),
        (Err(e), _) => Err(check.reject(DpopReject::Proof(e))),
    }
}

/// Adds the current `DPoP-Nonce` to a response, when nonces are demanded.
pub fn add_nonce(check: Option<&DpopCheck>, resp: &mut Response) {
    if let Some(n) = check.and_then(DpopCheck::nonce_header) {
        resp.headers_mut().insert(DPOP_NONCE_HEADER, n);
    }
}

/// The token of a single `Authorization: DPoP` header, if that is what the request carries.
pub fn dpop_authorization(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => scheme_token(v.as_bytes(), DPOP_SCHEME),
        _ => None,
    }
}

/// Why a request was refused for DPoP reasons.
#[derive(Debug)]
pub enum DpopReject {
    /// The proof broke a rule (or is missing: [`DpopError::Missing`]).
    Proof(DpopError),
    /// The access token is not usable this way (a bound token as `Bearer`, `Bearer` where DPoP
    /// is required, an invalid token under `DPoP`); `true` when a token was presented.
    Token(bool),
    /// The replay cache is full of live proofs for this many seconds: refused, never accepted
    /// (A2). `503` with `Retry-After`.
    Full(u64),
    /// The replay cache could not answer: refused, never accepted (fail closed).
    Unavailable(String),
}

impl IntoResponse for DpopReject {
    fn into_response(self) -> Response {
        let (code, reason): (&'static str, Cow<'static, str>) = match &self {
            DpopReject::Proof(e) => (e.code(), Cow::Borrowed(e.reason())),
            DpopReject::Token(_) => ("invalid_token", Cow::Borrowed("token")),
            DpopReject::Full(secs) => return AppError::Unavailable(*secs).into_response(),
            DpopReject::Unavailable(e) => {
                return AppError::Internal(format!("DPoP replay cache: {e}")).into_response()
            }
        };
        tracing::debug!(%reason, "DPoP refused");
        let body = authfetch_protocol::ErrorResponse {
            error: Cow::Borrowed(code),
            error_description: Cow::Borrowed(match self {
                DpopReject::Token(_) => "a DPoP-bound access token with a valid proof is required",
                _ => "the DPoP proof is missing, invalid or not for this key",
            }),
        };
        let mut resp = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&super::challenge(code, &PROOF_ALGS)) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}
