//! The token service: every auth decision, independent of HTTP. Routes call it; it calls the
//! store, the key ring and the password hasher.

use async_trait::async_trait;
use std::sync::Arc;

use crate::clock::{ms, Clock};
use crate::config::{AccessTokens, Config, MAX_USERNAME_BYTES};
use crate::error::AppError;
use crate::jwt::IssuedClaims;
use crate::keys::KeyRing;
use crate::password::PasswordHasher;
use crate::ratelimit::{address_key, RateLimiter};
use crate::secret::{random_id, AccessToken, Password, RefreshToken};
use crate::stats::Stats;
use crate::store::{
    AccessCheck, NewFamily, OpaqueRecord, RotateOutcome, RotateRequest, SharedLimit, Store,
    StoreError, User,
};
use crate::verify::{AccessClaims, OpaqueTokens, RevocationCheck, Verifier, VerifierConfig};

/// Target of audit events in the log (`RUST_LOG=authfetch::audit=info`).
pub const AUDIT: &str = "authfetch::audit";

/// The demo accounts seeded by `--demo` (user name, password). Documented in `docs/PROTOCOL.md`.
pub const DEMO_USERS: [(&str, &str); 2] = [("alice", "alice-password"), ("bob", "bob-password")];

/// A successful login or refresh.
#[derive(Debug)]
pub struct Issued {
    /// The new access token.
    pub access_token: AccessToken,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// The refresh token to set in the cookie.
    pub refresh: RefreshToken,
    /// Cookie `Max-Age`: what is left of the family's absolute lifetime.
    pub cookie_max_age: u64,
    /// The DPoP key thumbprint the access token is bound to (`cnf.jkt`, `token_type: DPoP`).
    pub dpop_jkt: Option<String>,
}

/// Checks access tokens against a store (denylist, family, user `not_before`; J13, J14).
///
/// The server's own layer uses it; another service that shares the server's Redis can use it
/// too, so its [`Verifier`] rejects logged-out and revoked tokens at once:
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use authfetch_server::service::StoreRevocation;
/// use authfetch_server::store::redis::RedisStore;
/// use authfetch_server::verify::{Verifier, VerifierConfig};
/// use std::sync::Arc;
///
/// let store = Arc::new(RedisStore::connect("redis://127.0.0.1:6379").await?);
/// let verifier = Verifier::builder(VerifierConfig::new("authfetch", "authfetch-api"))
///     .jwks_url("http://127.0.0.1:8080/.well-known/jwks.json")
///     .revocation(Arc::new(StoreRevocation::new(store)))
///     .build()?;
/// # let _ = verifier; Ok(()) }
/// ```
pub struct StoreRevocation {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl StoreRevocation {
    /// Checks against `store` with the system clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            clock: Arc::new(crate::clock::SystemClock),
        }
    }

    /// Checks against `store` with an injected clock (tests).
    pub fn with_clock(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

impl std::fmt::Debug for StoreRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreRevocation")
    }
}

#[async_trait]
impl RevocationCheck for StoreRevocation {
    async fn is_revoked(&self, c: &AccessClaims) -> Result<bool, String> {
        let q = AccessCheck {
            iss: &c.iss,
            jti: &c.jti,
            sub: &c.sub,
            sid: c.sid.as_deref(),
            iat: c.iat,
        };
        self.store
            .is_access_revoked(q, self.clock.now_ms())
            .await
            .map_err(|e| e.to_string())
    }
}

/// Looks opaque access tokens up in the store (`--access-tokens opaque`): the token's hash,
/// its record and its revocation state, in one read.
pub struct StoreOpaque {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for StoreOpaque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreOpaque")
    }
}

impl StoreOpaque {
    /// Looks tokens of `issuer` for `audience` up in `store`, with the system clock.
    pub fn new(store: Arc<dyn Store>, issuer: &str, audience: &str) -> Self {
        Self {
            store,
            clock: Arc::new(crate::clock::SystemClock),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }
}

/// The store key of an opaque access token. It has the refresh token's form (256 bits from
/// the OS CSPRNG as 43 characters of base64url) and, like it, is stored only as its SHA-256.
fn opaque_hash(token: &str) -> Option<crate::secret::TokenHash> {
    RefreshToken::parse(token).map(|t| t.hash())
}

#[async_trait]
impl OpaqueTokens for StoreOpaque {
    async fn lookup(&self, token: &str) -> Result<Option<AccessClaims>, String> {
        let Some(hash) = opaque_hash(token) else {
            return Ok(None);
        };
        let rec = self
            .store
            .live_opaque(&hash, &self.issuer, self.clock.now_ms())
            .await
            .map_err(|e| e.to_string())?;
        Ok(rec.map(|r| AccessClaims {
            iss: self.issuer.clone(),
            aud: vec![self.audience.clone()],
            sub: r.sub,
            iat: r.iat,
            exp: r.exp,
            nbf: None,
            jti: r.jti,
            sid: Some(r.sid),
            // Opaque access tokens are not sender-constrained (service.rs `new`).
            cnf_jkt: None,
        }))
    }
}

/// Login, refresh, logout, logout-everywhere, user management.
pub struct TokenService {
    config: Config,
    store: Arc<dyn Store>,
    keys: Arc<KeyRing>,
    verifier: Verifier,
    /// Store revocation for introspection in the stateless mode (the verifier has none there,
    /// but the introspection endpoint is authoritative and answers with the store's state).
    revocation: StoreRevocation,
    clock: Arc<dyn Clock>,
    passwords: PasswordHasher,
    stats: Stats,
    login_ip: RateLimiter,
    login_account: RateLimiter,
    refresh_ip: RateLimiter,
    /// The password of users created by a provider sign-in: the Argon2id PHC string of a random
    /// secret that nobody holds (made once per process, on first use, and then forgotten).
    unusable_hash: tokio::sync::OnceCell<String>,
    /// DPoP proof checks (`None` with `--dpop off`).
    dpop: Option<Arc<crate::dpop::http::DpopCheck>>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// Wires a service from its parts.
    ///
    /// # Errors
    /// Argon2 refused the configured parameters.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        keys: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::password::HashError> {
        let passwords = PasswordHasher::new(config.password_params, config.max_concurrent_hashes)?;
        // DPoP-bound access tokens are JWTs with `cnf.jkt`: the opaque mode has no claims to
        // carry the binding, so its access tokens stay bearer tokens (refresh families are
        // still bound; `--dpop required` with opaque tokens is refused at start, config.rs).
        let dpop = (config.dpop.mode != crate::dpop::http::DpopMode::Off
            && config.access_tokens != AccessTokens::Opaque)
            .then(|| {
                Arc::new(crate::dpop::http::DpopCheck::from_config(
                    &config.dpop,
                    config.allowed_origins.clone(),
                    Arc::clone(&clock),
                ))
            });
        let vc = VerifierConfig::new(&config.issuer, &config.audience);
        let revocation = || {
            Arc::new(StoreRevocation {
                store: Arc::clone(&store),
                clock: Arc::clone(&clock),
            }) as Arc<dyn RevocationCheck>
        };
        let verifier = match config.access_tokens {
            AccessTokens::Checked => Verifier::for_key_ring(
                vc,
                Arc::clone(&keys),
                Some(revocation()),
                Arc::clone(&clock),
                config.token_cache,
                dpop.clone(),
            ),
            AccessTokens::Stateless => Verifier::for_key_ring(
                vc,
                Arc::clone(&keys),
                None,
                Arc::clone(&clock),
                config.token_cache,
                dpop.clone(),
            ),
            AccessTokens::Opaque => Verifier::for_opaque(
                vc,
                Arc::new(StoreOpaque {
                    store: Arc::clone(&store),
                    clock: Arc::clone(&clock),
                    issuer: config.issuer.clone(),
                    audience: config.audience.clone(),
                }),
                Arc::clone(&clock),
            ),
        };
        let revocation = StoreRevocation {
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
        };
        let rl = config.rate_limits;
        Ok(Self {
            login_ip: RateLimiter::new(rl.login_per_ip),
            login_account: RateLimiter::new(rl.login_per_account),
            refresh_ip: RateLimiter::new(rl.refresh_per_ip),
            config,
            store,
            keys,
            verifier,
            revocation,
            clock,
            passwords,
            stats: Stats::default(),
            unusable_hash: tokio::sync::OnceCell::new(),
            dpop,
        })
    }

    /// The DPoP checks (`None` with `--dpop off`).
    pub fn dpop(&self) -> Option<&Arc<crate::dpop::http::DpopCheck>> {
        self.dpop.as_ref()
    }

    /// The DPoP key the family of `token` is bound to, if any (checked before a refresh or a
    /// logout touches the family).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn family_jkt(&self, token: &RefreshToken) -> Result<Option<String>, AppError> {
        Ok(self.store.family_jkt(&token.hash()).await?)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    /// The signing keys.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }
    /// The verifier for this server's own access tokens (with revocation).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    /// The password hasher.
    pub fn passwords(&self) -> &PasswordHasher {
        &self.passwords
    }
    /// The audit counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The user with this id (an access token's `sub`), for resources that show it.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn user_by_id(&self, user_id: &str) -> Result<Option<User>, AppError> {
        Ok(self.store.user_by_id(user_id).await?)
    }

    /// The public signing keys to publish now (J12).
    pub fn jwks(&self) -> crate::keys::JwkSet {
        self.keys.jwks(self.clock.now_ms())
    }

    /// Housekeeping: expired denylist entries, long-dead families, sealed successors that can
    /// no longer be handed out; then gives the freed space back (SQLite).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge(&self) -> Result<(), AppError> {
        let now = self.clock.now_ms();
        Ok(self.store.purge(now, ms(self.config.grace)).await?)
    }

    /// Creates a user with an Argon2id hash of `password`.
    ///
    /// # Errors
    /// Bad name or password length, name taken, or a storage failure.
    pub async fn add_user(&self, username: &str, password: Password) -> Result<User, AppError> {
        if username.is_empty()
            || username.len() > MAX_USERNAME_BYTES
            || username.chars().any(char::is_control)
        {
            return Err(AppError::InvalidRequest(
                "user name must be 1-64 bytes without control characters",
            ));
        }
        if !PasswordHasher::acceptable_length(&password) {
            return Err(AppError::InvalidRequest("password must be 1-1024 bytes"));
        }
        let hash = self.passwords.hash(password).await?;
        match self
            .store
            .create_user(username, &hash, self.clock.now_ms())
            .await
        {
            Ok(u) => Ok(u),
            Err(StoreError::UserExists) => Err(AppError::InvalidRequest("user already exists")),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the demo users if they do not exist yet.
    ///
    /// # Errors
    /// A storage or hashing failure.
    pub async fn seed_demo_users(&self) -> Result<(), AppError> {
        for (name, pw) in DEMO_USERS {
            if self.store.user_by_name(name).await?.is_none() {
                self.add_user(name, Password::new(pw.to_owned())).await?;
                tracing::info!(target: AUDIT, event = "demo_user_seeded", username = name);
            }
        }
        Ok(())
    }

    /// Password login: a new family (S3) and its first tokens. `previous` is a refresh cookie
    /// the browser still sent: its family is revoked.
    ///
    /// # Errors
    /// [`AppError::BadCredentials`] for an unknown user or a wrong password (same message, same
    /// cost: P3); [`AppError::RateLimited`]; storage failures.
    pub async fn login(
        &self,
        username: &str,
        password: Password,
        ip: &str,
        previous: Option<RefreshToken>,
    ) -> Result<Issued, AppError> {
        self.login_with_key(username, password, ip, previous, None)
            .await
    }

    /// [`TokenService::login`] whose new family is bound to the DPoP key `dpop_jkt` (its
    /// RFC 7638 thumbprint, from a verified proof) when given.
    ///
    /// # Errors
    /// As [`TokenService::login`].
    pub async fn login_with_key(
        &self,
        username: &str,
        password: Password,
        ip: &str,
        previous: Option<RefreshToken>,
        dpop_jkt: Option<String>,
    ) -> Result<Issued, AppError> {
        if username.is_empty() || username.len() > MAX_USERNAME_BYTES {
            return Err(AppError::InvalidRequest("user name must be 1-64 bytes"));
        }
        if !PasswordHasher::acceptable_length(&password) {
            return Err(AppError::InvalidRequest("password must be 1-1024 bytes"));
        }
        let now = self.clock.now_ms();
        self.limit(&self.login_ip, "login_ip", &address_key(ip), now)
            .await?;
        self.limit(
            &self.login_account,
            "login_account",
            &username.to_lowercase(),
            now,
        )
        .await?;

        let user = self.store.user_by_name(username).await?;
        let ok = self
            .passwords
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        let user = match user {
            Some(u) if ok => u,
            _ => {
                tracing::warn!(target: AUDIT, event = "login_failed", %ip);
                return Err(AppError::BadCredentials);
            }
        };
        self.start_family(&user, ip, previous, now, dpop_jkt).await
    }

    /// Sign-in through an OpenID provider, after [`crate::oidc::Oidc::finish`] verified the
    /// ID token: finds or creates the user linked to (issuer, subject) and starts a family
    /// exactly as a password login does (S3, same cookie, same rotation). A new user gets a
    /// name derived from the provider and a hint (`google:ada@example.com`; on a clash, a
    /// random suffix) and an unusable password (the Argon2id hash of a random secret nobody
    /// holds, see `unusable_hash`), so the password endpoint works for them only after
    /// `user passwd`. With `dpop_jkt` the family is bound to that DPoP key.
    ///
    /// # Errors
    /// [`AppError::RateLimited`] (counted with password logins per IP); storage failures.
    pub async fn login_identity(
        &self,
        identity: &crate::oidc::Identity,
        ip: &str,
        previous: Option<RefreshToken>,
        dpop_jkt: Option<String>,
    ) -> Result<Issued, AppError> {
        let now = self.clock.now_ms();
        self.limit(&self.login_ip, "login_ip", ip, now).await?;
        let hint: String = identity
            .name_hint
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let mut name = format!("{}:{hint}", identity.provider);
        truncate_at_char(&mut name, MAX_USERNAME_BYTES);
        // A random secret nobody holds: the PHC string verifies like any other (P3: same cost,
        // no "malformed hash" branch), and never succeeds. One hash per process, not per login.
        let unusable = self
            .unusable_hash
            .get_or_try_init(|| self.passwords.hash(Password::new(random_id())))
            .await?
            .clone();
        let mut user = None;
        for attempt in 0..3 {
            if attempt > 0 {
                let suffix = format!("#{}", &random_id()[..8]);
                truncate_at_char(&mut name, MAX_USERNAME_BYTES - suffix.len());
                name.push_str(&suffix);
            }
            match self
                .store
                .user_for_identity(&identity.issuer, &identity.subject, &name, &unusable, now)
                .await
            {
                Ok(u) => {
                    user = Some(u);
                    break;
                }
                Err(StoreError::UserExists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let user = user.ok_or_else(|| AppError::Internal("no free user name".into()))?;
        tracing::info!(target: AUDIT, event = "oidc_login", user = %user.id, provider = %identity.provider, %ip);
        // A provider's redirect is a top-level navigation: it carries no DPoP proof. The key
        // the browser named at the start (`dpop_jkt`, sealed in the transaction) binds the
        // family; the first refresh must prove it.
        self.start_family(&user, ip, previous, now, dpop_jkt).await
    }

    /// A new family (S3) for an authenticated user: revokes the family of a refresh cookie the
    /// browser still sent, then issues the first tokens.
    async fn start_family(
        &self,
        user: &User,
        ip: &str,
        previous: Option<RefreshToken>,
        now: i64,
        dpop_jkt: Option<String>,
    ) -> Result<Issued, AppError> {
        if let Some(prev) = previous {
            if let Some(f) = self.store.revoke_family_of(&prev.hash(), now).await? {
                tracing::info!(target: AUDIT, event = "family_replaced_at_login", family = %f.family_id, user = %f.user_id);
            }
        }
        let token = RefreshToken::generate();
        let family_id = random_id();
        let absolute = now.saturating_add(ms(self.config.session_ttl));
        self.store
            .create_family(NewFamily {
                family_id: family_id.clone(),
                user_id: user.id.clone(),
                token_hash: token.hash(),
                now_ms: now,
                absolute_exp_ms: absolute,
                idle_exp_ms: now.saturating_add(ms(self.config.idle_ttl)).min(absolute),
                dpop_jkt: dpop_jkt.clone(),
            })
            .await?;
        Stats::bump(&self.stats.login);
        tracing::info!(target: AUDIT, event = "login", user = %user.id, family = %family_id, dpop = dpop_jkt.is_some(), %ip);
        self.issue(&user.id, &family_id, token, absolute, now, dpop_jkt)
            .await
    }

    /// Counts one event (R9): in the store when it is shared by several instances (Redis),
    /// else in this process. If the shared counter is unreachable, the local one still applies.
    async fn limit(
        &self,
        local: &RateLimiter,
        bucket: &'static str,
        key: &str,
        now: i64,
    ) -> Result<(), AppError> {
        match self.store.rate_limit(bucket, key, local.limit(), now).await {
            Ok(SharedLimit::Allowed) => Ok(()),
            Ok(SharedLimit::Limited(secs)) => Err(AppError::RateLimited(secs)),
            Ok(SharedLimit::Unsupported) => local.check(key, now).map_err(AppError::RateLimited),
            Err(e) => {
                tracing::warn!(error = %e, bucket, "shared rate limit unavailable; counting locally");
                local.check(key, now).map_err(AppError::RateLimited)
            }
        }
    }

    /// Rotates the refresh token (R1 and the rotation rules in docs/SECURITY.md).
    ///
    /// # Errors
    /// [`AppError::RefreshRejected`] for a missing, unknown, expired, revoked or reused token
    /// (reuse also revokes the family); [`AppError::RateLimited`]; storage failures.
    pub async fn refresh(
        &self,
        presented: Option<RefreshToken>,
        ip: &str,
    ) -> Result<Issued, AppError> {
        self.refresh_with_key(presented, ip, None).await
    }

    /// [`TokenService::refresh`] of a family bound to `dpop_jkt`: the caller has checked the
    /// request's proof against [`TokenService::family_jkt`]; the new access token carries it.
    ///
    /// # Errors
    /// As [`TokenService::refresh`].
    pub async fn refresh_with_key(
        &self,
        presented: Option<RefreshToken>,
        ip: &str,
        dpop_jkt: Option<String>,
    ) -> Result<Issued, AppError> {
        let now = self.clock.now_ms();
        self.limit(&self.refresh_ip, "refresh_ip", &address_key(ip), now)
            .await?;
        let result = self.rotate(presented, now, dpop_jkt).await;
        if matches!(result, Err(AppError::RefreshRejected(_))) {
            Stats::bump(&self.stats.refresh_failed);
        }
        result
    }

    async fn rotate(
        &self,
        presented: Option<RefreshToken>,
        now: i64,
        dpop_jkt: Option<String>,
    ) -> Result<Issued, AppError> {
        let presented = presented.ok_or(AppError::RefreshRejected("no refresh cookie"))?;
        let candidate = RefreshToken::generate();
        let req = RotateRequest {
            presented: presented.hash(),
            successor: candidate.hash(),
            successor_sealed: presented.seal(&candidate),
            now_ms: now,
            idle_ttl_ms: ms(self.config.idle_ttl),
        };
        match self.store.rotate(req).await? {
            RotateOutcome::Rotated(f) => {
                Stats::bump(&self.stats.refresh);
                tracing::info!(target: AUDIT, event = "refresh", user = %f.user_id, family = %f.family_id);
                self.issue(
                    &f.user_id,
                    &f.family_id,
                    candidate,
                    f.absolute_exp_ms,
                    now,
                    dpop_jkt,
                )
                .await
            }
            RotateOutcome::Grace {
                family: f,
                successor,
                sealed,
            } => {
                let s = presented
                    .unseal_matching(&sealed, &successor)
                    .ok_or_else(|| {
                        AppError::Internal("sealed successor does not match its hash".into())
                    })?;
                Stats::bump(&self.stats.refresh_grace);
                tracing::info!(target: AUDIT, event = "refresh_grace", user = %f.user_id, family = %f.family_id);
                self.issue(
                    &f.user_id,
                    &f.family_id,
                    s,
                    f.absolute_exp_ms,
                    now,
                    dpop_jkt,
                )
                .await
            }
            RotateOutcome::Reuse(f) => {
                Stats::bump(&self.stats.reuse_detected);
                tracing::warn!(target: AUDIT, event = "reuse_detected", user = %f.user_id, family = %f.family_id, "refresh token reuse: family revoked");
                Err(AppError::RefreshRejected("reuse detected"))
            }
            RotateOutcome::Dead(f) => {
                tracing::info!(target: AUDIT, event = "refresh_dead_family", user = %f.user_id, family = %f.family_id);
                Err(AppError::RefreshRejected("family expired or revoked"))
            }
            RotateOutcome::Unknown => Err(AppError::RefreshRejected("unknown refresh token")),
        }
    }

    /// Logout: revokes the cookie's family and denylists the bearer's `jti` until it expires.
    /// Idempotent.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn logout(
        &self,
        cookie: Option<RefreshToken>,
        bearer: Option<AccessClaims>,
    ) -> Result<(), AppError> {
        let now = self.clock.now_ms();
        if let Some(t) = cookie {
            if let Some(f) = self.store.revoke_family_of(&t.hash(), now).await? {
                tracing::info!(target: AUDIT, event = "logout", user = %f.user_id, family = %f.family_id);
            }
        }
        if let Some(c) = bearer {
            self.store
                .deny_jti(&c.iss, &c.jti, c.exp.saturating_mul(1000))
                .await?;
            // The jti is an identifier, not a credential: logging it lets an operator match
            // the denylist entry to this logout.
            tracing::info!(target: AUDIT, event = "access_token_denylisted", user = %c.sub, family = c.sid.as_deref().unwrap_or("-"), jti = %c.jti);
        }
        Stats::bump(&self.stats.logout);
        Ok(())
    }

    /// Logout everywhere (R4): revokes every family of the user identified by the bearer or,
    /// failing that, the cookie — which must be the family's current refresh token or its
    /// immediate parent within the grace window, so that an old (possibly leaked) cookie cannot
    /// log a user out of every device. Idempotent; does nothing when neither identifies a user.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn logout_all(
        &self,
        cookie: Option<RefreshToken>,
        bearer: Option<AccessClaims>,
    ) -> Result<(), AppError> {
        let now = self.clock.now_ms();
        let user = match (bearer, cookie) {
            (Some(c), _) => Some(c.sub),
            (None, Some(t)) => self
                .store
                .live_family_of(&t.hash(), now, ms(self.config.grace))
                .await?
                .map(|f| f.user_id),
            (None, None) => None,
        };
        if let Some(user) = user {
            let n = self.store.revoke_user(&user, now).await?;
            Stats::bump(&self.stats.logout_all);
            tracing::info!(target: AUDIT, event = "logout_all", %user, families = n);
        } else {
            tracing::info!(target: AUDIT, event = "logout_all_ignored", "no valid bearer and no current refresh cookie");
        }
        Ok(())
    }

    /// RFC 7662 introspection of `token` for an authenticated resource server: its claims
    /// while it is live, `None` for anything else (unknown, malformed, expired, revoked; no
    /// reason is given). In the stateless mode the store's revocation state is checked here
    /// too, so introspection is exact in every mode.
    ///
    /// # Errors
    /// Storage failures (the endpoint answers 500, and the resource server refuses).
    pub async fn introspect(&self, token: &str) -> Result<Option<AccessClaims>, AppError> {
        let claims = match self.verifier.verify(token).await {
            Ok(c) => c,
            Err(crate::verify::VerifyError::Unavailable(e)) => {
                return Err(AppError::Internal(format!("introspection: {e}")))
            }
            Err(_) => return Ok(None),
        };
        if self.config.access_tokens == AccessTokens::Stateless {
            match self.revocation.is_revoked(&claims).await {
                Ok(false) => {}
                Ok(true) => return Ok(None),
                Err(e) => return Err(AppError::Internal(format!("introspection: {e}"))),
            }
        }
        Ok(Some(claims))
    }

    /// Changes a password and revokes every session of the user (R4).
    ///
    /// # Errors
    /// Bad length, unknown user, storage or hashing failures.
    pub async fn set_password(&self, username: &str, password: Password) -> Result<(), AppError> {
        if !PasswordHasher::acceptable_length(&password) {
            return Err(AppError::InvalidRequest("password must be 1-1024 bytes"));
        }
        let user = self
            .store
            .user_by_name(username)
            .await?
            .ok_or(AppError::InvalidRequest("no such user"))?;
        let hash = self.passwords.hash(password).await?;
        self.store
            .set_password(&user.id, &hash, self.clock.now_ms())
            .await?;
        tracing::info!(target: AUDIT, event = "password_changed", user = %user.id);
        Ok(())
    }

    async fn issue(
        &self,
        user_id: &str,
        family_id: &str,
        refresh: RefreshToken,
        absolute_exp_ms: i64,
        now_ms: i64,
        dpop_jkt: Option<String>,
    ) -> Result<Issued, AppError> {
        // An opaque token has no claims to carry `cnf`: it is issued as a bearer token even for a
        // key-bound family (whose refresh and logout still need the key). `new` explains.
        let dpop_jkt = dpop_jkt.filter(|_| self.config.access_tokens != AccessTokens::Opaque);
        let ttl = self.config.access_ttl.as_secs().max(1);
        let iat = now_ms.div_euclid(1000);
        let claims = IssuedClaims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: user_id.to_owned(),
            iat,
            exp: iat.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            jti: random_id(),
            sid: family_id.to_owned(),
            cnf: dpop_jkt.clone().map(|jkt| crate::jwt::Cnf { jkt }),
        };
        let token = if self.config.access_tokens == AccessTokens::Opaque {
            let t = RefreshToken::generate();
            self.store
                .put_opaque(
                    &t.hash(),
                    &OpaqueRecord {
                        sub: claims.sub.clone(),
                        sid: claims.sid.clone(),
                        jti: claims.jti.clone(),
                        iat: claims.iat,
                        exp: claims.exp,
                    },
                )
                .await?;
            t.secret()
        } else {
            self.keys.sign(&claims, now_ms)?
        };
        // Counted from now, rounded down: `exp` is in whole seconds, so the token may live up
        // to a second less than `ttl`, and the client must not believe otherwise.
        let expires_in = u64::try_from((claims.exp.saturating_mul(1000) - now_ms).div_euclid(1000))
            .unwrap_or(0)
            .max(1);
        let left =
            u64::try_from(absolute_exp_ms.saturating_sub(now_ms).div_euclid(1000)).unwrap_or(0);
        Ok(Issued {
            access_token: AccessToken::new(token),
            expires_in,
            refresh,
            cookie_max_age: left,
            dpop_jkt,
        })
    }
}

/// Shortens `s` to at most `max` bytes without splitting a character.
fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
