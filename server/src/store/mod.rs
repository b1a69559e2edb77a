//! Persistence behind one trait: users, refresh-token families, the `jti` denylist.
//!
//! The store never sees a refresh token, only its SHA-256 ([`TokenHash`]). All the rotation
//! rules of docs/SECURITY.md live in one atomic operation, [`Store::rotate`], which each backend
//! runs serialized per family (SQLite: `BEGIN IMMEDIATE`; Redis: one Lua script), so the rules
//! cannot be split across round trips and raced.
//!
//! Timestamps are Unix milliseconds, except `not_before_s` and JWT times (seconds).

use async_trait::async_trait;

use crate::secret::TokenHash;

pub mod redis;
pub mod sqlite;

/// A storage failure. Never shown to clients (they get `server_error`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The user name is taken.
    #[error("user already exists")]
    UserExists,
    /// Stored data is not what we wrote.
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
    /// A blocking task died.
    #[error("store task failed")]
    Task,
}

/// A user account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Stable random id (the JWT `sub`).
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Access tokens with `iat` before this (Unix seconds) are rejected (logout everywhere).
    pub not_before_s: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("not_before_s", &self.not_before_s)
            .finish()
    }
}

/// A new family (one login) and its first refresh token.
#[derive(Clone, Debug)]
pub struct NewFamily {
    /// Random family id (the JWT `sid`).
    pub family_id: String,
    /// Owner.
    pub user_id: String,
    /// Hash of the first refresh token.
    pub token_hash: TokenHash,
    /// Creation time.
    pub now_ms: i64,
    /// Absolute expiry: never extended (R2).
    pub absolute_exp_ms: i64,
    /// Idle expiry: pushed forward by each rotation, capped at the absolute one.
    pub idle_exp_ms: i64,
    /// Thumbprint (RFC 7638) of the DPoP key the family is bound to, for life; `None`: bearer.
    pub dpop_jkt: Option<String>,
}

/// One refresh attempt, prepared by the token service.
///
/// The service generates the successor *before* it knows whether it will be used; the store
/// keeps it only when the presented token is current.
#[derive(Clone, Debug)]
pub struct RotateRequest {
    /// Hash of the presented refresh token.
    pub presented: TokenHash,
    /// Hash of a freshly generated candidate successor.
    pub successor: TokenHash,
    /// The candidate sealed under the presented token (see `RefreshToken::seal`).
    pub successor_sealed: [u8; 32],
    /// Now.
    pub now_ms: i64,
    /// Idle lifetime.
    pub idle_ttl_ms: i64,
}

/// The family a token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyRef {
    /// Family id.
    pub family_id: String,
    /// Owner.
    pub user_id: String,
    /// Absolute expiry (bounds the cookie's Max-Age).
    pub absolute_exp_ms: i64,
}

/// What [`Store::rotate`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented token was current: it is now used, the candidate is the new current token.
    Rotated(FamilyRef),
    /// The presented token is the immediate parent of the current one, i.e. of a successor
    /// that has never been used: the caller unseals and returns the same successor. No time
    /// limit: within the grace window this serves tabs racing a rotation, after it a client
    /// whose answer was lost (crash, dropped connection); the successor's first use ends it.
    Grace {
        /// The family.
        family: FamilyRef,
        /// Hash of the current token (to check the unsealed value).
        successor: TokenHash,
        /// The current token sealed under the presented one.
        sealed: [u8; 32],
    },
    /// Anything else from a live family: the family is now revoked.
    Reuse(FamilyRef),
    /// The family was already revoked or has expired; nothing changed.
    Dead(FamilyRef),
    /// No such token; nothing changed.
    Unknown,
}

/// What the verification layer asks about an otherwise valid access token.
#[derive(Clone, Copy, Debug)]
pub struct AccessCheck<'a> {
    /// `iss`.
    pub iss: &'a str,
    /// `jti`.
    pub jti: &'a str,
    /// `sub`.
    pub sub: &'a str,
    /// `sid`, when present.
    pub sid: Option<&'a str>,
    /// `iat` (seconds).
    pub iat: i64,
}

/// What the store keeps about an opaque access token, under the SHA-256 of the token (the
/// token itself is never stored). `iss` and `aud` are the server's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpaqueRecord {
    /// `sub`: the user id.
    pub sub: String,
    /// `sid`: the refresh family.
    pub sid: String,
    /// `jti`: what logout denylists.
    pub jti: String,
    /// `iat` (seconds).
    pub iat: i64,
    /// `exp` (seconds); the record is gone or ignored from then on.
    pub exp: i64,
}

/// The persistence interface. Implemented by [`sqlite::SqliteStore`] and
/// [`redis::RedisStore`]; both pass the same contract tests (`tests/store_contract.rs`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a user. [`StoreError::UserExists`] if the name is taken.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<User, StoreError>;
    /// Looks a user up by name.
    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// Looks a user up by id.
    async fn user_by_id(&self, user_id: &str) -> Result<Option<User>, StoreError>;
    /// Replaces the password hash and revokes every family of the user (R4).
    async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Starts a family with its first token.
    async fn create_family(&self, family: NewFamily) -> Result<(), StoreError>;
    /// The rotation rules, atomically (see [`RotateOutcome`]).
    async fn rotate(&self, req: RotateRequest) -> Result<RotateOutcome, StoreError>;
    /// The live (not revoked, not expired) family of `token`, if `token` is its current
    /// refresh token or the immediate parent within `grace_ms` of its first use: the tokens a
    /// legitimate browser can hold. A stale token identifies nothing (logout-everywhere must
    /// not be triggerable with an old, possibly leaked, cookie).
    async fn live_family_of(
        &self,
        token: &TokenHash,
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Option<FamilyRef>, StoreError>;
    /// The DPoP key thumbprint the family of `token` (any of its tokens) is bound to; `None`
    /// for an unbound family or an unknown token. A family's key is set at creation and never
    /// changes, so checking it before [`Store::rotate`] or [`Store::revoke_family_of`] cannot
    /// race with them.
    async fn family_jkt(&self, token: &TokenHash) -> Result<Option<String>, StoreError>;
    /// Revokes the family that `token` belongs to (any of its tokens). `None` if unknown.
    async fn revoke_family_of(
        &self,
        token: &TokenHash,
        now_ms: i64,
    ) -> Result<Option<FamilyRef>, StoreError>;
    /// Revokes every family of the user and sets the user's access-token `not_before`.
    /// Returns the number of families that were live.
    async fn revoke_user(&self, user_id: &str, now_ms: i64) -> Result<u64, StoreError>;
    /// Denylists `(iss, jti)` until `exp_ms` (J13).
    async fn deny_jti(&self, iss: &str, jti: &str, exp_ms: i64) -> Result<(), StoreError>;
    /// True if the access token must be rejected: denylisted `jti`, revoked or unknown family,
    /// or issued before the user's `not_before` (J13, J14).
    async fn is_access_revoked(&self, q: AccessCheck<'_>, now_ms: i64) -> Result<bool, StoreError>;
    /// Keeps an opaque access token's record under its hash until `rec.exp`.
    async fn put_opaque(&self, hash: &TokenHash, rec: &OpaqueRecord) -> Result<(), StoreError>;
    /// The record of a live opaque access token in one consistent read: `None` when the hash
    /// is unknown, the token has expired, or it is revoked as [`Store::is_access_revoked`]
    /// would say of a JWT with the same claims (denylisted `jti` of issuer `iss`, revoked or
    /// foreign family, issued before the user's `not_before`).
    async fn live_opaque(
        &self,
        hash: &TokenHash,
        iss: &str,
        now_ms: i64,
    ) -> Result<Option<OpaqueRecord>, StoreError>;
    /// Deletes expired denylist entries and long-dead families; drops sealed successors that
    /// can no longer be handed out (their successor has been used) once `grace_ms` has passed.
    async fn purge(&self, now_ms: i64, grace_ms: i64) -> Result<(), StoreError>;

    /// The user linked to the external identity `(issuer, subject)` (an OpenID Connect `iss`
    /// and `sub`), or, when none is, a new user named `username` with `password_hash`, linked
    /// to it, in one atomic step: two first sign-ins of one identity make one user. Users are
    /// never matched by e-mail or name, only by this pair.
    /// [`StoreError::UserExists`] (nothing created) if the identity is new and `username` is
    /// taken.
    async fn user_for_identity(
        &self,
        issuer: &str,
        subject: &str,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<User, StoreError>;

    /// Counts one event against a rate limit shared by every server instance on this store
    /// (R9): fixed windows of `limit.window` aligned on the server clock, keyed by `bucket`
    /// and `key`. A process-local store answers [`SharedLimit::Unsupported`] (the default) and
    /// the service counts in memory instead.
    async fn rate_limit(
        &self,
        _bucket: &str,
        _key: &str,
        _limit: crate::config::Limit,
        _now_ms: i64,
    ) -> Result<SharedLimit, StoreError> {
        Ok(SharedLimit::Unsupported)
    }
}

/// Answer of [`Store::rate_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedLimit {
    /// This store does not keep shared counters: count in memory.
    Unsupported,
    /// Under the limit; the event was counted.
    Allowed,
    /// Over the limit: retry after this many seconds.
    Limited(u64),
}
