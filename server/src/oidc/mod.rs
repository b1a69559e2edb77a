//! Sign-in through OpenID Connect providers ("Log in with Google", a company IdP, …).
//!
//! The backend runs the authorization-code flow itself (the token-mediating backend of the
//! IETF browser-apps guidance): the browser is sent to the provider and back, the server
//! exchanges the code, checks the ID token and then starts a session exactly as a password
//! login does. The browser never sees a provider token, only our own refresh cookie.
//!
//! # Layout
//!
//! ```text
//! mod.rs     configuration (file format), the provider registry (discovery cache, JWKS
//!            refetch), `start` and `finish` of a login; knows nothing about HTTP responses
//! txn.rs     the signed transaction cookie, single use, the return-path rule
//! http.rs    the HTTP client to providers (no redirects, https or allowed loopback, bounds)
//! routes.rs  GET /auth/oidc/providers, /auth/oidc/{provider}/start, …/callback; error page
//! ```
//!
//! # What is checked (by `openidconnect` unless noted)
//!
//! Discovery: the document's `issuer` equals the configured one. Authorization: code flow,
//! PKCE S256, random `state` and `nonce`. Callback: the transaction cookie's signature and
//! expiry, single use, `state` (here), the `iss` response parameter when sent or announced
//! (here, RFC 9207); the code is exchanged with the PKCE verifier; the ID token's signature
//! against the provider's JWKS (refetched once when its `kid` is unknown, so a provider key
//! rotation between two logins works), asymmetric algorithms only (here), `iss`, `aud`, `exp`,
//! `nonce`, and `at_hash` when present (here, as the crate documents).
//!
//! Users are found by the pair (issuer, subject) only ([`crate::store::Store::user_for_identity`]):
//! never by e-mail, which providers let users change and which two providers may both claim.

pub mod http;
pub mod routes;
pub mod txn;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AccessTokenHash, AdditionalProviderMetadata, AuthorizationCode, ClaimsVerificationError,
    ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse as _,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq as _;

use self::http::ProviderHttp;
use self::txn::{check_return_to, Consumed, Transaction, TxnError, TxnKey, TXN_TTL};

/// Longest provider name (it is a path segment and part of generated user names).
pub const MAX_PROVIDER_NAME: usize = 32;
/// How long discovery metadata (and the JWKS fetched with it) is used before refetching.
pub const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Least time between two refetches forced by an unknown `kid`: a burst of ID tokens signed
/// with a key we do not know costs the provider one request, not one per token.
pub const MIN_REFETCH: Duration = Duration::from_secs(1);

/// A client secret: `Debug` prints `[redacted]`; read from a file or the environment, never
/// from a command-line flag (which `ps` shows).
#[derive(Clone)]
pub struct ClientSecretValue(String);

impl ClientSecretValue {
    /// Wraps a secret value.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The value. Handle with care.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// One configured provider.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// Name in URLs (`/auth/oidc/{name}/start`): 1–32 of `a-z 0-9 _ -`.
    pub name: String,
    /// What the sign-in button says ("Google").
    pub label: String,
    /// Issuer URL; discovery is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Client id registered at the provider.
    pub client_id: String,
    /// Client secret, if the client is confidential (Google's web clients are).
    pub client_secret: Option<ClientSecretValue>,
    /// Scopes besides `openid` (always sent).
    pub scopes: Vec<String>,
}

/// OpenID Connect settings of the server (empty: the feature is off).
#[derive(Clone, Debug, Default)]
pub struct OidcConfig {
    /// Origin the browser uses to reach this server (`https://app.example`): redirect URIs are
    /// `{public_url}/auth/oidc/{name}/callback`. Required when there are providers.
    pub public_url: String,
    /// The providers.
    pub providers: Vec<ProviderConfig>,
    /// Allow plain-http provider URLs on loopback hosts (tests, a local provider).
    pub allow_insecure_loopback: bool,
}

/// The configuration file (JSON). See docs/PROTOCOL.md for an example.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    public_url: String,
    providers: Vec<FileProvider>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    name: String,
    label: Option<String>,
    issuer: String,
    client_id: String,
    /// Path of a file holding the secret (trailing newline ignored).
    client_secret_file: Option<std::path::PathBuf>,
    /// Name of an environment variable holding the secret.
    client_secret_env: Option<String>,
    scopes: Option<Vec<String>>,
}

impl OidcConfig {
    /// Reads the JSON configuration file at `path`, resolving client secrets from their files
    /// or environment variables (relative secret files are relative to the configuration file).
    ///
    /// # Errors
    /// A human-readable message (never containing a secret).
    pub fn load(path: &Path, allow_insecure_loopback: bool) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("OIDC config {}: {e}", path.display()))?;
        let file: File = serde_json::from_str(&text)
            .map_err(|e| format!("OIDC config {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut providers = Vec::new();
        for p in file.providers {
            let secret = match (&p.client_secret_file, &p.client_secret_env) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "OIDC provider {}: give client_secret_file or client_secret_env, not both",
                        p.name
                    ))
                }
                (Some(f), None) => {
                    let f = dir.join(f);
                    let s = std::fs::read_to_string(&f).map_err(|e| {
                        format!("OIDC provider {}: secret file {}: {e}", p.name, f.display())
                    })?;
                    Some(ClientSecretValue::new(
                        s.trim_end_matches(['\r', '\n']).to_owned(),
                    ))
                }
                (None, Some(var)) => Some(ClientSecretValue::new(std::env::var(var).map_err(
                    |_| {
                        format!(
                            "OIDC provider {}: environment variable {var} is not set",
                            p.name
                        )
                    },
                )?)),
                (None, None) => None,
            };
            providers.push(ProviderConfig {
                label: p.label.unwrap_or_else(|| p.name.clone()),
                name: p.name,
                issuer: p.issuer,
                client_id: p.client_id,
                client_secret: secret,
                scopes: p
                    .scopes
                    .unwrap_or_else(|| vec!["email".into(), "profile".into()]),
            });
        }
        let c = OidcConfig {
            public_url: file.public_url,
            providers,
            allow_insecure_loopback,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks names, URLs and schemes.
    ///
    /// # Errors
    /// A human-readable message.
    pub fn validate(&self) -> Result<(), String> {
        if self.providers.is_empty() {
            return Ok(());
        }
        let public = url::Url::parse(&self.public_url)
            .map_err(|e| format!("OIDC public_url {:?}: {e}", self.public_url))?;
        if !matches!(public.scheme(), "http" | "https")
            || public.path() != "/"
            || public.query().is_some()
            || public.fragment().is_some()
        {
            return Err(format!(
                "OIDC public_url must be an origin like https://app.example, got {:?}",
                self.public_url
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.providers {
            if p.name.is_empty()
                || p.name.len() > MAX_PROVIDER_NAME
                || !p
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "OIDC provider name {:?}: 1-32 of a-z 0-9 _ -",
                    p.name
                ));
            }
            if !seen.insert(p.name.as_str()) {
                return Err(format!("OIDC provider {:?} is configured twice", p.name));
            }
            let issuer = url::Url::parse(&p.issuer)
                .map_err(|e| format!("OIDC provider {}: issuer: {e}", p.name))?;
            http::check_url(&issuer, self.allow_insecure_loopback).map_err(|_| {
                format!(
                    "OIDC provider {}: the issuer must be https (http only for a loopback host \
                     with --oidc-allow-insecure-issuer)",
                    p.name
                )
            })?;
            if p.client_id.is_empty() {
                return Err(format!("OIDC provider {}: client_id is empty", p.name));
            }
        }
        Ok(())
    }
}

/// The `authorization_response_iss_parameter_supported` flag of RFC 9207, which
/// openidconnect's core metadata does not carry.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct IssParameter {
    /// The provider sends `iss` with every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for IssParameter {}

/// Discovery metadata (with the JWKS fetched alongside it).
pub type Metadata = ProviderMetadata<
    IssParameter,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// ID-token signature algorithms accepted: asymmetric only. An HMAC-signed ID token is keyed
/// with the client secret, which is not something a provider's key rotation should decide.
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Why a sign-in failed. Every variant has a stable code shown on the error page.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// No provider of that name.
    #[error("unknown provider")]
    UnknownProvider,
    /// The requested return path is not a same-origin relative path.
    #[error("return path refused")]
    BadReturnTo,
    /// The transaction cookie is missing, forged, expired or used.
    #[error("transaction: {0}")]
    Transaction(#[from] TxnError),
    /// `state` differs from the transaction's.
    #[error("state mismatch")]
    StateMismatch,
    /// The `iss` response parameter is not the provider's issuer (or missing when announced).
    #[error("iss response parameter mismatch")]
    IssuerMismatch,
    /// The provider answered with an error (`error=` on the callback).
    #[error("provider error: {0}")]
    Provider(&'static str),
    /// Neither `code` nor `error` on the callback.
    #[error("no authorization code")]
    MissingCode,
    /// Discovery or the JWKS could not be fetched.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint refused the code (replayed, expired, wrong verifier) or failed.
    #[error("token exchange failed: {0}")]
    TokenExchange(String),
    /// The ID token is missing or invalid.
    #[error("invalid ID token: {0}")]
    IdToken(String),
}

impl OidcError {
    /// The stable error code (shown to the user, checked by tests).
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::UnknownProvider => "unknown_provider",
            OidcError::BadReturnTo => "invalid_return_to",
            OidcError::Transaction(TxnError::Missing) => "transaction_missing",
            OidcError::Transaction(TxnError::Invalid) => "transaction_invalid",
            OidcError::Transaction(TxnError::Expired) => "transaction_expired",
            OidcError::Transaction(TxnError::Replayed) => "transaction_replayed",
            OidcError::StateMismatch => "state_mismatch",
            OidcError::IssuerMismatch => "issuer_mismatch",
            OidcError::Provider(code) => code,
            OidcError::MissingCode => "missing_code",
            OidcError::Unavailable(_) => "provider_unavailable",
            OidcError::TokenExchange(_) => "token_exchange_failed",
            OidcError::IdToken(_) => "invalid_id_token",
        }
    }
}

/// The provider's `error` value if it is one of the registered OAuth/OIDC codes, else
/// `provider_error`: the page never echoes attacker-chosen text.
pub fn provider_error_code(error: &str) -> &'static str {
    const KNOWN: [&str; 13] = [
        "access_denied",
        "invalid_request",
        "unauthorized_client",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "interaction_required",
        "login_required",
        "account_selection_required",
        "consent_required",
        "invalid_request_uri",
        "invalid_request_object",
    ];
    KNOWN
        .iter()
        .find(|k| **k == error)
        .copied()
        .unwrap_or("provider_error")
}

/// Who signed in, as the provider vouched in a verified ID token.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Provider name (for generated user names).
    pub provider: String,
    /// `iss` of the ID token.
    pub issuer: String,
    /// `sub` of the ID token.
    pub subject: String,
    /// A human-readable hint for a new user's name (`preferred_username`, `email` or `sub`):
    /// used only to name a new account, never to find one.
    pub name_hint: String,
}

/// Query parameters of the callback.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CallbackParams {
    /// Authorization code.
    pub code: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `iss` (RFC 9207).
    pub iss: Option<String>,
    /// Error code from the provider.
    pub error: Option<String>,
}

struct Cached {
    metadata: Arc<Metadata>,
    fetched: Instant,
}

struct Provider {
    config: ProviderConfig,
    redirect: RedirectUrl,
    cache: tokio::sync::RwLock<Option<Cached>>,
    /// Single flight for (re)discovery; holds the time of the last attempt.
    refetch: tokio::sync::Mutex<Option<Instant>>,
}

/// The provider registry and the login logic. Built once per server.
pub struct Oidc {
    providers: HashMap<String, Provider>,
    http: ProviderHttp,
    key: TxnKey,
    consumed: Consumed,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.providers.keys().collect();
        names.sort();
        f.debug_struct("Oidc")
            .field("providers", &names)
            .finish_non_exhaustive()
    }
}

/// What `/start` answers: where to send the browser, and the transaction cookie's value.
#[derive(Debug)]
pub struct Started {
    /// The provider's authorization URL.
    pub authorize_url: url::Url,
    /// Value of the transaction cookie.
    pub cookie: String,
}

impl Oidc {
    /// Builds the registry (no network: discovery happens at the first sign-in).
    ///
    /// # Errors
    /// An invalid configuration, or the HTTP client could not be built.
    pub fn new(config: &OidcConfig, key: TxnKey) -> Result<Self, String> {
        config.validate()?;
        let http = ProviderHttp::new(config.allow_insecure_loopback).map_err(|e| e.to_string())?;
        let base = config.public_url.trim_end_matches('/');
        let mut providers = HashMap::new();
        for p in &config.providers {
            let redirect = RedirectUrl::new(format!("{base}/auth/oidc/{}/callback", p.name))
                .map_err(|e| format!("OIDC provider {}: redirect URL: {e}", p.name))?;
            providers.insert(
                p.name.clone(),
                Provider {
                    config: p.clone(),
                    redirect,
                    cache: tokio::sync::RwLock::new(None),
                    refetch: tokio::sync::Mutex::new(None),
                },
            );
        }
        Ok(Self {
            providers,
            http,
            key,
            consumed: Consumed::default(),
        })
    }

    /// `(name, label)` of every provider, sorted by name.
    pub fn providers(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .providers
            .values()
            .map(|p| (p.config.name.clone(), p.config.label.clone()))
            .collect();
        v.sort();
        v
    }

    fn provider(&self, name: &str) -> Result<&Provider, OidcError> {
        self.providers.get(name).ok_or(OidcError::UnknownProvider)
    }

    /// The provider's metadata: cached, or discovered now. `stale` (the metadata the caller
    /// found wanting, e.g. no key for a `kid`) forces a refetch unless one just happened.
    async fn metadata(
        &self,
        p: &Provider,
        stale: Option<&Arc<Metadata>>,
    ) -> Result<Arc<Metadata>, OidcError> {
        if let Some(c) = p.cache.read().await.as_ref() {
            let usable = c.fetched.elapsed() < METADATA_TTL
                && stale.is_none_or(|s| !Arc::ptr_eq(s, &c.metadata));
            if usable {
                return Ok(Arc::clone(&c.metadata));
            }
        }
        let mut last = p.refetch.lock().await;
        // Someone else refreshed while we waited: use theirs.
        if let Some(c) = p.cache.read().await.as_ref() {
            let fresh = c.fetched.elapsed() < METADATA_TTL
                && stale.is_none_or(|s| !Arc::ptr_eq(s, &c.metadata));
            let too_soon = last.is_some_and(|t| t.elapsed() < MIN_REFETCH);
            if fresh || (too_soon && c.fetched.elapsed() < METADATA_TTL) {
                return Ok(Arc::clone(&c.metadata));
            }
        }
        *last = Some(Instant::now());
        let issuer = IssuerUrl::new(p.config.issuer.clone())
            .map_err(|e| OidcError::Unavailable(format!("issuer URL: {e}")))?;
        let m = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(error_chain(&e)))?;
        let m = Arc::new(m);
        *p.cache.write().await = Some(Cached {
            metadata: Arc::clone(&m),
            fetched: Instant::now(),
        });
        tracing::info!(provider = %p.config.name, keys = m.jwks().keys().len(), "OIDC discovery fetched");
        Ok(m)
    }

    fn client(
        p: &Provider,
        m: &Metadata,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            m.clone(),
            ClientId::new(p.config.client_id.clone()),
            p.config
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.secret().to_owned())),
        )
        .set_redirect_uri(p.redirect.clone())
    }

    /// Starts a sign-in: a fresh transaction and the provider URL to send the browser to.
    ///
    /// # Errors
    /// Unknown provider, a refused return path, or discovery failed.
    pub async fn start(
        &self,
        name: &str,
        return_to: Option<&str>,
        dpop_jkt: Option<String>,
        now_ms: i64,
    ) -> Result<Started, OidcError> {
        let p = self.provider(name)?;
        let return_to = match return_to {
            None => "/".to_owned(),
            Some(r) => check_return_to(r).ok_or(OidcError::BadReturnTo)?,
        };
        let m = self.metadata(p, None).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = Self::client(p, &m);
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in p.config.scopes.iter().filter(|s| s.as_str() != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (authorize_url, state, nonce) = req.url();
        let t = Transaction {
            id: CsrfToken::new_random().secret().clone(),
            provider: name.to_owned(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            return_to,
            exp_ms: now_ms.saturating_add(crate::clock::ms(TXN_TTL)),
            dpop_jkt,
        };
        Ok(Started {
            authorize_url,
            cookie: self.key.seal(&t),
        })
    }

    /// Opens the transaction cookie of a callback (signature, expiry, provider, `state`) and
    /// marks it used. Separate from [`Oidc::finish`] so the route can tell where to return
    /// even when the provider then fails.
    ///
    /// # Errors
    /// See [`OidcError`].
    pub fn open_transaction(
        &self,
        name: &str,
        params: &CallbackParams,
        cookie: Option<&str>,
        now_ms: i64,
    ) -> Result<Transaction, OidcError> {
        self.provider(name)?;
        let t = self.key.open(cookie.ok_or(TxnError::Missing)?, now_ms)?;
        if t.provider != name {
            return Err(TxnError::Invalid.into());
        }
        let state = params.state.as_deref().unwrap_or("");
        if !bool::from(state.as_bytes().ct_eq(t.state.as_bytes())) {
            return Err(OidcError::StateMismatch);
        }
        self.consumed.consume(&t, now_ms)?;
        Ok(t)
    }

    /// Completes a sign-in whose transaction [`Oidc::open_transaction`] accepted: provider
    /// error, `iss`, code exchange with the PKCE verifier, ID-token validation.
    ///
    /// # Errors
    /// See [`OidcError`].
    pub async fn finish(
        &self,
        t: &Transaction,
        params: &CallbackParams,
    ) -> Result<Identity, OidcError> {
        let p = self.provider(&t.provider)?;
        if let Some(e) = &params.error {
            return Err(OidcError::Provider(provider_error_code(e)));
        }
        let mut m = self.metadata(p, None).await?;
        match &params.iss {
            Some(iss) if iss.as_str() == m.issuer().as_str() => {}
            Some(_) => return Err(OidcError::IssuerMismatch),
            None if m
                .additional_metadata()
                .authorization_response_iss_parameter_supported
                == Some(true) =>
            {
                return Err(OidcError::IssuerMismatch)
            }
            None => {}
        }
        let code = params.code.clone().ok_or(OidcError::MissingCode)?;
        let tokens = Self::client(p, &m)
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::TokenExchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(t.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::TokenExchange(error_chain(&e)))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| OidcError::IdToken("no id_token in the token response".into()))?;
        let nonce = Nonce::new(t.nonce.clone());
        // Once with the cached keys; on an unknown key, once more with a fresh key set.
        for attempt in 0..2 {
            let client = Self::client(p, &m);
            let verifier = client.id_token_verifier().set_allowed_algs(ALLOWED_ALGS);
            let claims = match id_token.claims(&verifier, &nonce) {
                Ok(c) => c,
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if attempt == 0 => {
                    tracing::info!(provider = %p.config.name, "ID token signed by an unknown key: refetching the provider's keys");
                    m = self.metadata(p, Some(&m)).await?;
                    continue;
                }
                Err(e) => return Err(OidcError::IdToken(e.to_string())),
            };
            if let Some(expected) = claims.access_token_hash() {
                let alg = id_token
                    .signing_alg()
                    .map_err(|e| OidcError::IdToken(e.to_string()))?;
                let key = id_token
                    .signing_key(&verifier)
                    .map_err(|e| OidcError::IdToken(e.to_string()))?;
                let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
                    .map_err(|e| OidcError::IdToken(e.to_string()))?;
                if actual != *expected {
                    return Err(OidcError::IdToken("at_hash mismatch".into()));
                }
            }
            let subject = claims.subject().as_str().to_owned();
            let name_hint = claims
                .preferred_username()
                .map(|u| u.as_str().to_owned())
                .or_else(|| claims.email().map(|e| e.as_str().to_owned()))
                .unwrap_or_else(|| subject.clone());
            return Ok(Identity {
                provider: p.config.name.clone(),
                issuer: claims.issuer().as_str().to_owned(),
                subject,
                name_hint,
            });
        }
        Err(OidcError::IdToken(
            "no provider key matches the ID token".into(),
        ))
    }
}

/// An error and its sources on one line, for logs (provider errors nest several deep).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, issuer: &str) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            label: name.into(),
            issuer: issuer.into(),
            client_id: "c".into(),
            client_secret: Some(ClientSecretValue::new("hunter2".into())),
            scopes: vec![],
        }
    }

    #[test]
    fn config_rules() {
        let ok = OidcConfig {
            public_url: "https://app.example".into(),
            providers: vec![provider("google", "https://accounts.google.com")],
            allow_insecure_loopback: false,
        };
        assert_eq!(ok.validate(), Ok(()));
        let mut c = ok.clone();
        c.providers[0].issuer = "http://127.0.0.1:9000".into();
        assert!(c.validate().is_err(), "http issuer needs the flag");
        c.allow_insecure_loopback = true;
        assert_eq!(c.validate(), Ok(()));
        c.providers[0].issuer = "http://idp.example".into();
        assert!(
            c.validate().is_err(),
            "http only on loopback, even with the flag"
        );
        for bad in ["", "Google", "a/b", "x".repeat(33).as_str(), "a b"] {
            let mut c = ok.clone();
            c.providers[0].name = bad.into();
            assert!(c.validate().is_err(), "{bad:?}");
        }
        let mut c = ok.clone();
        c.providers
            .push(provider("google", "https://other.example"));
        assert!(c.validate().is_err(), "duplicate names");
        for bad in [
            "app.example",
            "https://app.example/base",
            "ftp://app.example",
        ] {
            let mut c = ok.clone();
            c.public_url = bad.into();
            assert!(c.validate().is_err(), "{bad:?}");
        }
        assert!(!format!("{ok:?}").contains("hunter2"));
    }

    #[test]
    fn provider_error_codes_are_an_allowlist() {
        assert_eq!(provider_error_code("access_denied"), "access_denied");
        assert_eq!(provider_error_code("<script>"), "provider_error");
        assert_eq!(provider_error_code("Access_Denied"), "provider_error");
    }

    #[test]
    fn config_file_reads_secrets_from_file_or_env_never_inline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        let path = dir.path().join("oidc.json");
        std::fs::write(
            &path,
            r#"{"public_url":"http://localhost:8080","providers":[
              {"name":"a","issuer":"https://a.example","client_id":"ca","client_secret_file":"secret"},
              {"name":"b","label":"B Corp","issuer":"https://b.example","client_id":"cb","scopes":["email"]}]}"#,
        )
        .unwrap();
        let c = OidcConfig::load(&path, false).unwrap();
        assert_eq!(
            c.providers[0].client_secret.as_ref().map(|s| s.secret()),
            Some("s3cret")
        );
        assert!(c.providers[1].client_secret.is_none());
        assert_eq!(c.providers[1].label, "B Corp");
        // An inline secret is not a field of the format.
        std::fs::write(
            &path,
            r#"{"public_url":"http://localhost:8080","providers":[
              {"name":"a","issuer":"https://a.example","client_id":"ca","client_secret":"inline"}]}"#,
        )
        .unwrap();
        let e = OidcConfig::load(&path, false).unwrap_err();
        assert!(e.contains("client_secret") && !e.contains("inline"), "{e}");
        std::fs::write(
            &path,
            r#"{"public_url":"http://localhost:8080","providers":[
              {"name":"a","issuer":"https://a.example","client_id":"ca","client_secret_env":"AUTHFETCH_TEST_UNSET_VAR_X"}]}"#,
        )
        .unwrap();
        assert!(OidcConfig::load(&path, false).is_err());
    }
}
