//! Server configuration: one plain struct with safe defaults, filled by the CLI (`cli.rs`) or
//! directly by tests.

use std::path::PathBuf;
use std::time::Duration;

use crate::jwt::Alg;

/// Default access-token lifetime (J14: 5–15 min).
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// Access-token lifetime in `--demo` mode when `--access-ttl` is not given, so refreshes are visible.
pub const DEMO_ACCESS_TTL: Duration = Duration::from_secs(20);
/// Default refresh grace window (docs/SECURITY.md, R1: the parent presented again within it gets the same successor; 10–30 s).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15);
/// Default absolute family lifetime (never extended by rotation, R2).
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default idle family lifetime (R2).
pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Allowed clock skew for `iat`/`nbf` (J8) and kept on top of the access TTL for retired keys (J12).
pub const MAX_SKEW: Duration = Duration::from_secs(60);
/// Longest accepted password in bytes (P2): Argon2 cost must not be steerable by the client.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest accepted user name in bytes.
pub const MAX_USERNAME_BYTES: usize = 64;

/// Entries of the server's verified-token cache (JWT modes): about 0.5 KiB each.
pub const DEFAULT_TOKEN_CACHE: usize = 10_000;
/// Shortest introspection secret accepted (bytes).
pub const MIN_INTROSPECTION_SECRET_BYTES: usize = 32;

/// What an access token is and how each request checks it (docs/ACCESS-TOKENS.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessTokens {
    /// ES256/EdDSA JWT checked by signature and claims only: no store read per request, and
    /// a logout or logout-everywhere reaches an outstanding token only at its `exp` (at most
    /// the access-token lifetime later).
    Stateless,
    /// JWT plus the store's revocation state (denylisted `jti`, family, user `not_before`) on
    /// every request: revocation is immediate. Today's behaviour, the default.
    #[default]
    Checked,
    /// A random 256-bit token, stored as its SHA-256 with its claims, looked up on every
    /// request; revocation is immediate; other services ask the introspection endpoint.
    Opaque,
}

/// The resource-server secret of the introspection endpoint. `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct IntrospectionSecret(String);

impl IntrospectionSecret {
    /// Wraps a secret of at least [`MIN_INTROSPECTION_SECRET_BYTES`].
    ///
    /// # Errors
    /// A shorter secret.
    pub fn new(s: String) -> Result<Self, String> {
        if s.len() < MIN_INTROSPECTION_SECRET_BYTES {
            return Err(format!(
                "the introspection secret must be at least {MIN_INTROSPECTION_SECRET_BYTES} bytes"
            ));
        }
        Ok(Self(s))
    }
    /// The secret. Handle with care.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for IntrospectionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where sessions, users and the denylist live.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded SQLite file `authfetch.sqlite3` in the data directory (the default).
    Sqlite,
    /// A Redis server: `redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://…` (TLS) or
    /// `redis+unix:///path/to/socket`.
    Redis(String),
}

impl std::fmt::Debug for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Sqlite => f.write_str("Sqlite"),
            // A Redis URL may carry a password: print it without the user-info part.
            StoreKind::Redis(url) => match (url.split_once("://"), url.rsplit_once('@')) {
                (Some((scheme, _)), Some((_, host))) => {
                    write!(f, "Redis({scheme}://[redacted]@{host})")
                }
                _ => write!(f, "Redis({url})"),
            },
        }
    }
}

/// Whether `url` names a Redis server this build can talk to.
pub fn is_redis_url(url: &str) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|p| url.starts_with(p))
}

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl PasswordParams {
    /// OWASP / docs/SECURITY.md P1: Argon2id m=19456 KiB, t=2, p=1. The binary always uses these.
    pub const P1: PasswordParams = PasswordParams {
        m_cost: 19456,
        t_cost: 2,
        p_cost: 1,
    };

    /// Cheap parameters for unit tests only: never use them for real passwords.
    pub const INSECURE_FOR_TESTS: PasswordParams = PasswordParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self::P1
    }
}

/// A fixed-window rate limit: at most `max` events per `window` per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Events allowed per window.
    pub max: u32,
    /// Window length.
    pub window: Duration,
}

/// Rate limits (R9). Counted in memory per process with the SQLite store, and in Redis (shared
/// by every instance) with the Redis store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Login attempts per client IP.
    pub login_per_ip: Limit,
    /// Login attempts per account name (existing or not).
    pub login_per_account: Limit,
    /// Refresh attempts per client IP. Generous: every tab of every user behind one NAT refreshes.
    pub refresh_per_ip: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        Self {
            login_per_ip: Limit {
                max: 30,
                window: minute,
            },
            login_per_account: Limit {
                max: 10,
                window: minute,
            },
            refresh_per_ip: Limit {
                max: 600,
                window: minute,
            },
        }
    }
}

/// Limits on client connections (A1). The defaults leave room for a slow mobile client: a
/// request head of a few kilobytes needs well under a second even on a 2G link with a
/// second of latency, and the idle timeout is longer than the gap between an app's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time from the first byte of a request head to its end; slower heads are dropped.
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may sit with no request and no bytes either way.
    pub idle_timeout: Duration,
    /// Concurrent connections; more are answered `503` and closed at once. Lowered at start if
    /// the open-file limit cannot hold this many.
    pub max_connections: usize,
    /// After SIGTERM / Ctrl-C: time for requests in flight to finish before the remaining
    /// connections are dropped.
    pub shutdown_timeout: Duration,
}

/// Default [`ConnectionLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ConnectionLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ConnectionLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default [`ConnectionLimits::shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// Everything the server needs to run. [`Config::new`] gives the safe defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory for the SQLite database and the signing keys (created 0700 if missing).
    pub data_dir: PathBuf,
    /// Session store.
    pub store: StoreKind,
    /// Prefix of every Redis key (several deployments can share one Redis).
    pub redis_prefix: String,
    /// Start even if Redis has no append-only file (A4); for caches and tests.
    pub redis_allow_volatile: bool,
    /// PEM file of the CA that signed the certificate of a `rediss://` Redis; it replaces the
    /// system's roots (`None`: the system's roots).
    pub redis_ca_file: Option<PathBuf>,
    /// `iss` of issued tokens, checked exactly by the verification layer.
    pub issuer: String,
    /// `aud` of issued tokens.
    pub audience: String,
    /// Signing algorithm for new keys.
    pub alg: Alg,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Window after a token's first use in which it still identifies its family for
    /// logout-everywhere, and after which a sealed successor that has been used is purged.
    /// (The immediate parent of a never-used successor gets that successor at any time; see
    /// `docs/PROTOCOL.md`, "A lost answer".)
    pub grace: Duration,
    /// Absolute family lifetime.
    pub session_ttl: Duration,
    /// Idle family lifetime.
    pub idle_ttl: Duration,
    /// Exact origins (`scheme://host[:port]`) allowed on cookie-authenticated POSTs, in
    /// addition to [`Config::cors_origins`]. [`crate::serve`] adds the loopback origins of the
    /// bound port.
    pub allowed_origins: Vec<String>,
    /// Exact origins of same-site pages on *other* origins (`app.example.com` talking to
    /// `auth.example.com`): they get CORS with credentials on the auth and `/api/` routes,
    /// and their cookie POSTs pass the CSRF guard with `Sec-Fetch-Site: same-site` (see
    /// `crate::cors`). Empty: no CORS header is ever sent (X6).
    pub cors_origins: Vec<String>,
    /// Reverse proxies whose forwarding header is believed (see `crate::client_addr`). Empty:
    /// the client address is the TCP peer and forwarding headers are ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which forwarding header the trusted proxies write.
    pub forwarded_header: crate::client_addr::ForwardedHeader,
    /// Serve `GET /debug/stats`.
    pub debug_stats: bool,
    /// Seed the demo users `alice` and `bob` at start-up.
    pub demo_users: bool,
    /// Static demo files served at `/` (`None`: no static files).
    pub www_dir: Option<PathBuf>,
    /// The npm package served at `/pkg/` (`None`: not served).
    pub pkg_dir: Option<PathBuf>,
    /// Argon2id parameters for new hashes.
    pub password_params: PasswordParams,
    /// Concurrent Argon2 computations (P2); the rest wait.
    pub max_concurrent_hashes: usize,
    /// Rate limits.
    pub rate_limits: RateLimits,
    /// Connection limits (used by [`crate::serve`]).
    pub connections: ConnectionLimits,
    /// OpenID Connect providers (none by default).
    pub oidc: crate::oidc::OidcConfig,
    /// Access-token mode (default: checked JWT).
    pub access_tokens: AccessTokens,
    /// Entries of the verified-token cache (JWT modes).
    pub token_cache: usize,
    /// Secret of `POST /oauth/introspect`; without one the endpoint does not exist.
    pub introspection_secret: Option<IntrospectionSecret>,
    /// DPoP (RFC 9449): mode, nonces, proof window (`--dpop`, default optional).
    pub dpop: crate::dpop::http::DpopConfig,
}

impl Config {
    /// Safe defaults with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            store: StoreKind::Sqlite,
            redis_prefix: crate::store::redis::DEFAULT_PREFIX.to_owned(),
            redis_allow_volatile: false,
            redis_ca_file: None,
            issuer: "authfetch".to_owned(),
            audience: "authfetch-api".to_owned(),
            alg: Alg::Es256,
            access_ttl: DEFAULT_ACCESS_TTL,
            grace: DEFAULT_GRACE,
            session_ttl: DEFAULT_SESSION_TTL,
            idle_ttl: DEFAULT_IDLE_TTL,
            allowed_origins: Vec::new(),
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            forwarded_header: crate::client_addr::ForwardedHeader::XForwardedFor,
            debug_stats: false,
            demo_users: false,
            www_dir: None,
            pkg_dir: None,
            password_params: PasswordParams::P1,
            max_concurrent_hashes: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(1),
            rate_limits: RateLimits::default(),
            connections: ConnectionLimits::default(),
            oidc: crate::oidc::OidcConfig::default(),
            access_tokens: AccessTokens::Checked,
            token_cache: DEFAULT_TOKEN_CACHE,
            introspection_secret: None,
            dpop: crate::dpop::http::DpopConfig::default(),
        }
    }
}

/// Parses `N` (seconds) or `Ns`, `Nm`, `Nh`, `Nd`, and `Nms` for tests.
///
/// # Errors
/// A human-readable message for anything else (empty, negative, overflow, unknown unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid duration {s:?}: expected N, Ns, Nm, Nh or Nd"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
    let mul = match unit {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
    };
    n.checked_mul(mul)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration {s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_never_reach_debug_output() {
        let k = StoreKind::Redis("redis://:hunter2@db.internal:6379/0".into());
        let d = format!("{k:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("db.internal:6379/0"), "{d}");
        assert!(is_redis_url("redis+unix:///tmp/r.sock"));
        assert!(!is_redis_url("http://x"));
    }

    #[test]
    fn durations_accept_the_documented_forms() {
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "s", "-1", "1.5s", "1 s", "1x", "99999999999999999999"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
