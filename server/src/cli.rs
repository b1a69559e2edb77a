//! Command line and environment: `authfetch-server [serve flags]`, `authfetch-server user add
//! NAME` (password on stdin), `authfetch-server user passwd NAME`, `authfetch-server keys rotate`.
//!
//! Every flag has an `AUTHFETCH_*` environment variable; durations accept `N` (seconds) or
//! `Ns`, `Nm`, `Nh`, `Nd`.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::{
    is_redis_url, parse_duration, AccessTokens, Config, IntrospectionSecret, StoreKind,
    DEMO_ACCESS_TTL, MAX_SKEW,
};
use crate::jwt::Alg;
use crate::keys::KeyRing;
use crate::secret::Password;

/// Signing algorithm on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AlgArg {
    /// ECDSA P-256 (default).
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

/// `--forwarded-header`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ForwardedHeaderArg {
    /// `X-Forwarded-For: client, proxy1`.
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client`.
    #[value(name = "forwarded")]
    Forwarded,
}

/// `--access-tokens`: what an access token is (docs/ACCESS-TOKENS.md).
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum AccessTokensArg {
    /// JWT, signature and claims only: revocation reaches a token at its expiry.
    Stateless,
    /// JWT plus the store's revocation state on every request (default).
    #[default]
    Checked,
    /// Random token looked up in the store on every request; introspection for other services.
    Opaque,
}

/// Environment variable holding the introspection secret (never a flag: a flag's value is
/// visible to every user of the machine in the process list).
pub const INTROSPECTION_SECRET_ENV: &str = "AUTHFETCH_INTROSPECTION_SECRET";

/// `--dpop` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DpopArg {
    /// DPoP headers are ignored.
    Off,
    /// Bound sessions for clients that send proofs; bearer for the rest.
    Optional,
    /// Proofs on every login, refresh and resource request.
    Required,
}

/// The authfetch token server.
#[derive(Debug, Parser)]
#[command(name = "authfetch-server", version, about)]
pub struct Cli {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "AUTHFETCH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Directory for the database and the signing keys (created 0700).
    #[arg(
        long,
        env = "AUTHFETCH_DATA_DIR",
        default_value = "authfetch-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Session store: `sqlite` (in the data directory) or a Redis URL (same as --redis-url).
    #[arg(long, env = "AUTHFETCH_STORE", default_value = "sqlite", global = true)]
    pub store: String,
    /// Keep sessions in Redis instead of SQLite, so several instances share them:
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://…` (TLS; see --redis-ca-file) or
    /// `redis+unix:///path/to/socket`. Instances that
    /// share a Redis must also share `signing-keys.json` (same --data-dir contents).
    #[arg(long, env = "AUTHFETCH_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    #[arg(
        long,
        env = "AUTHFETCH_REDIS_PREFIX",
        default_value = "authfetch:",
        global = true
    )]
    pub redis_prefix: String,
    /// Start even if Redis runs without an append-only file (`appendonly no`), which loses
    /// sessions and users when Redis restarts. Without it the server refuses to start on
    /// such a Redis. For caches and tests.
    #[arg(long, env = "AUTHFETCH_REDIS_ALLOW_VOLATILE", global = true)]
    pub redis_allow_volatile: bool,
    /// PEM file with the CA certificate(s) that signed a `rediss://` Redis's certificate; then
    /// only these are trusted. Without it, `rediss://` uses the system's root certificates.
    #[arg(long, env = "AUTHFETCH_REDIS_CA_FILE", global = true)]
    pub redis_ca_file: Option<PathBuf>,
    /// Access-token lifetime (default 15m; 20s with --demo).
    #[arg(long, env = "AUTHFETCH_ACCESS_TTL", value_parser = parse_duration)]
    pub access_ttl: Option<Duration>,
    /// Grace window for the immediate parent refresh token.
    #[arg(long, env = "AUTHFETCH_GRACE", value_parser = parse_duration, default_value = "15s")]
    pub grace: Duration,
    /// Absolute session (refresh family) lifetime.
    #[arg(long, env = "AUTHFETCH_SESSION_TTL", value_parser = parse_duration, default_value = "7d")]
    pub session_ttl: Duration,
    /// Idle session lifetime.
    #[arg(long, env = "AUTHFETCH_IDLE_TTL", value_parser = parse_duration, default_value = "24h")]
    pub idle_ttl: Duration,
    /// Exact origin (`scheme://host[:port]`) allowed on cookie POSTs, in addition to the
    /// `http://127.0.0.1:PORT` and `http://localhost:PORT` of the bound port, which are always
    /// allowed (repeatable; env: comma-separated). The effective list is logged at start.
    #[arg(
        long = "allowed-origin",
        env = "AUTHFETCH_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Exact origin of a page on another origin of the same site (app.example.com using
    /// auth.example.com) that may call the auth endpoints and /api/* with credentials: CORS
    /// for that origin only, and its cookie POSTs are accepted with Sec-Fetch-Site: same-site.
    /// Implies --allowed-origin. Never `*`; cross-site origins cannot work (SameSite cookies).
    /// Repeatable; env: comma-separated. See docs/PROTOCOL.md, "Cross-origin deployments".
    #[arg(
        long = "cors-origin",
        env = "AUTHFETCH_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Reverse proxy (IP or CIDR) whose forwarding header is believed; the client address
    /// (rate limits, logs) is then the rightmost address in that header that is not a trusted
    /// proxy. Without it, forwarding headers are ignored. Repeatable; env: comma-separated.
    #[arg(
        long = "trusted-proxy",
        env = "AUTHFETCH_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// The header the trusted proxies write. Only this one is read: a client's own copy of
    /// the other would pass through a proxy untouched.
    #[arg(
        long,
        env = "AUTHFETCH_FORWARDED_HEADER",
        value_enum,
        default_value = "x-forwarded-for"
    )]
    pub forwarded_header: ForwardedHeaderArg,
    /// `iss` of issued access tokens.
    #[arg(long, env = "AUTHFETCH_ISSUER", default_value = "authfetch")]
    pub issuer: String,
    /// `aud` of issued access tokens.
    #[arg(long, env = "AUTHFETCH_AUDIENCE", default_value = "authfetch-api")]
    pub audience: String,
    /// Signing algorithm for new keys.
    #[arg(
        long,
        env = "AUTHFETCH_ALG",
        value_enum,
        default_value = "ES256",
        global = true
    )]
    pub alg: AlgArg,
    /// Demo mode: seeds alice/alice-password and bob/bob-password, 20s access tokens unless
    /// --access-ttl is given, and implies --debug-stats.
    #[arg(long, env = "AUTHFETCH_DEMO")]
    pub demo: bool,
    /// Serve `GET /debug/stats` (audit counters).
    #[arg(long, env = "AUTHFETCH_DEBUG_STATS")]
    pub debug_stats: bool,
    /// Static files served at `/`.
    #[arg(long, env = "AUTHFETCH_WWW", default_value = "www")]
    pub www: PathBuf,
    /// The npm package served at `/pkg/`.
    #[arg(long, env = "AUTHFETCH_PKG", default_value = "pkg")]
    pub pkg: PathBuf,
    /// A client that has started a request head must finish it within this time, or its
    /// connection is dropped (slowloris).
    #[arg(long, env = "AUTHFETCH_HEADER_READ_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request and no traffic for this long is closed.
    #[arg(long, env = "AUTHFETCH_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
    /// Concurrent client connections; more are answered 503 and closed at once. Lowered at
    /// start to fit the open-file limit (`ulimit -n`) with room for the store.
    #[arg(long, env = "AUTHFETCH_MAX_CONNECTIONS", default_value_t = crate::config::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// On SIGTERM / Ctrl-C: time for requests in flight to finish; then the remaining
    /// connections are dropped and the process exits.
    #[arg(long, env = "AUTHFETCH_SHUTDOWN_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub shutdown_timeout: Duration,
    /// OpenID Connect providers ("Sign in with …"): a JSON file with `public_url` and
    /// `providers` (name, label, issuer, client_id, client_secret_file or client_secret_env,
    /// scopes). Secrets are never given on the command line. See docs/PROTOCOL.md.
    #[arg(long, env = "AUTHFETCH_OIDC_CONFIG")]
    pub oidc_config: Option<PathBuf>,
    /// Allow `http://` provider URLs on loopback hosts (127.0.0.1, ::1, localhost) only: for
    /// tests and a provider running on this machine. Every other provider URL must be https.
    #[arg(long, env = "AUTHFETCH_OIDC_ALLOW_INSECURE_ISSUER")]
    pub oidc_allow_insecure_issuer: bool,
    /// Access tokens: `stateless` (JWT, signature only: a logout reaches an outstanding
    /// token only when it expires, after at most --access-ttl), `checked` (JWT plus the
    /// store's revocation state on every request; immediate) or `opaque` (random token looked
    /// up in the store on every request; immediate). See docs/ACCESS-TOKENS.md.
    #[arg(
        long,
        env = "AUTHFETCH_ACCESS_TOKENS",
        value_enum,
        default_value = "checked"
    )]
    pub access_tokens: AccessTokensArg,
    /// File holding the resource-server secret of `POST /oauth/introspect` (RFC 7662; at least
    /// 32 bytes, one line). Or set AUTHFETCH_INTROSPECTION_SECRET. Without either, the
    /// endpoint does not exist.
    #[arg(long, env = "AUTHFETCH_INTROSPECTION_SECRET_FILE")]
    pub introspection_secret_file: Option<PathBuf>,
    /// DPoP (RFC 9449) sender-constrained tokens: `off` (ignored), `optional` (default: a login
    /// with a proof gets a key-bound session, one without a bearer session as before; bound
    /// sessions always need their key), `required` (no bearer sessions or tokens at all).
    #[arg(long, env = "AUTHFETCH_DPOP", value_enum, default_value = "optional")]
    pub dpop: DpopArg,
    /// Demand a server nonce (`DPoP-Nonce`) in every DPoP proof.
    #[arg(long, env = "AUTHFETCH_DPOP_NONCE")]
    pub dpop_nonce: bool,
    /// How far a DPoP proof's `iat` may be from the server clock, either way.
    #[arg(long, env = "AUTHFETCH_DPOP_IAT_WINDOW", value_parser = parse_duration, default_value = "60s")]
    pub dpop_iat_window: Duration,
    /// How many DPoP proofs one instance remembers (each for the iat window either way, plus a
    /// second), when the store is SQLite; with Redis they are kept there. When full, new proofs
    /// are answered 503 with Retry-After until the oldest may be forgotten. The default
    /// sustains at least 4,100 proofs per second with the default window (some 8,200 from
    /// clients whose clocks are right), in at most 34 MB.
    #[arg(long, env = "AUTHFETCH_DPOP_REPLAY_CAPACITY", default_value_t = crate::dpop::DEFAULT_REPLAY_CAPACITY)]
    pub dpop_replay_capacity: usize,
    /// Subcommand (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage users.
    User {
        /// What to do.
        #[command(subcommand)]
        cmd: UserCommand,
    },
    /// Manage signing keys.
    Keys {
        /// What to do.
        #[command(subcommand)]
        cmd: KeysCommand,
    },
}

/// `user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from the first line of stdin.
    Add {
        /// User name.
        username: String,
    },
    /// Change a user's password (read from stdin) and revoke all their sessions.
    Passwd {
        /// User name.
        username: String,
    },
}

/// `keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key. It is published in the JWKS at once and signs tokens from
    /// `--lead` later, so verifiers that cache the JWKS see it before the first token signed
    /// with it (J12); the old public key stays published for the access-token lifetime plus
    /// skew after the switch. Run while the server is stopped (keys are read at start-up).
    Rotate {
        /// Delay between publishing the new key and signing with it. The default covers the
        /// verification layer's JWKS cache (5 min) plus the clock skew (1 min).
        #[arg(long, value_parser = parse_duration, default_value = "6m")]
        lead: Duration,
    },
}

impl Cli {
    /// The server configuration these flags describe.
    ///
    /// # Errors
    /// An unusable `--store` value.
    pub fn config(&self) -> Result<Config, String> {
        let mut c = Config::new(&self.data_dir);
        c.store = match (self.store.as_str(), self.redis_url.as_deref()) {
            ("sqlite" | "", None) => StoreKind::Sqlite,
            ("sqlite" | "", Some(u)) if is_redis_url(u) => StoreKind::Redis(u.to_owned()),
            (s, None) if is_redis_url(s) => StoreKind::Redis(s.to_owned()),
            (s, Some(u)) if s == u && is_redis_url(u) => StoreKind::Redis(u.to_owned()),
            (_, Some(_)) if self.store != "sqlite" => {
                return Err("give either --store or --redis-url, not both".into())
            }
            (_, Some(_)) => {
                return Err(
                    "--redis-url must start with redis://, rediss://, redis+unix:// or unix://"
                        .into(),
                )
            }
            (s, None) => {
                // Only the scheme is echoed: the value may be a URL with a password in it.
                let scheme = s.split_once("://").map_or(s, |(scheme, _)| scheme);
                return Err(format!(
                    "--store must be sqlite or a redis://, rediss:// or redis+unix:// URL, got \
                     {scheme:?}"
                ));
            }
        };
        if self.redis_prefix.is_empty() {
            return Err("--redis-prefix must not be empty".into());
        }
        c.redis_prefix = self.redis_prefix.clone();
        c.redis_allow_volatile = self.redis_allow_volatile;
        if let Some(ca) = &self.redis_ca_file {
            if !matches!(&c.store, StoreKind::Redis(u) if u.starts_with("rediss://")) {
                return Err("--redis-ca-file needs a rediss:// store URL".into());
            }
            c.redis_ca_file = Some(ca.clone());
        }
        c.issuer = self.issuer.clone();
        c.audience = self.audience.clone();
        c.alg = match self.alg {
            AlgArg::Es256 => Alg::Es256,
            AlgArg::EdDsa => Alg::EdDsa,
        };
        c.access_ttl = self.access_ttl.unwrap_or(if self.demo {
            DEMO_ACCESS_TTL
        } else {
            c.access_ttl
        });
        if c.access_ttl < Duration::from_secs(1) {
            return Err("--access-ttl must be at least 1s".into());
        }
        c.grace = self.grace;
        c.session_ttl = self.session_ttl;
        c.idle_ttl = self.idle_ttl;
        c.allowed_origins = crate::cors::parse_origins("--allowed-origin", &self.allowed_origins)?;
        c.cors_origins = crate::cors::parse_origins("--cors-origin", &self.cors_origins)?;
        c.trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| crate::client_addr::parse_trusted_proxy(p))
            .collect::<Result<_, _>>()?;
        c.forwarded_header = match self.forwarded_header {
            ForwardedHeaderArg::XForwardedFor => crate::client_addr::ForwardedHeader::XForwardedFor,
            ForwardedHeaderArg::Forwarded => crate::client_addr::ForwardedHeader::Forwarded,
        };
        c.debug_stats = self.debug_stats || self.demo;
        c.demo_users = self.demo;
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if self.header_read_timeout < Duration::from_secs(1)
            || self.idle_timeout < Duration::from_secs(1)
        {
            return Err("--header-read-timeout and --idle-timeout must be at least 1s".into());
        }
        c.connections = crate::config::ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            shutdown_timeout: self.shutdown_timeout,
        };
        c.www_dir = Some(self.www.clone());
        c.pkg_dir = Some(self.pkg.clone());
        c.dpop.mode = match self.dpop {
            DpopArg::Off => crate::dpop::http::DpopMode::Off,
            DpopArg::Optional => crate::dpop::http::DpopMode::Optional,
            DpopArg::Required => crate::dpop::http::DpopMode::Required,
        };
        c.dpop.require_nonce = self.dpop_nonce;
        c.dpop.iat_window = self.dpop_iat_window;
        if self.dpop_replay_capacity == 0 {
            return Err("--dpop-replay-capacity must be at least 1".into());
        }
        c.dpop.replay_capacity = self.dpop_replay_capacity;
        if let Some(path) = &self.oidc_config {
            c.oidc = crate::oidc::OidcConfig::load(path, self.oidc_allow_insecure_issuer)?;
        }
        c.access_tokens = match self.access_tokens {
            AccessTokensArg::Stateless => AccessTokens::Stateless,
            AccessTokensArg::Checked => AccessTokens::Checked,
            AccessTokensArg::Opaque => AccessTokens::Opaque,
        };
        let secret = match (
            &self.introspection_secret_file,
            std::env::var(INTROSPECTION_SECRET_ENV),
        ) {
            (Some(_), Ok(_)) => return Err(both_secrets()),
            (Some(path), Err(_)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "cannot read the introspection secret file {}: {e}",
                        path.display()
                    )
                })?;
                Some(text.trim_end_matches(['\n', '\r']).to_owned())
            }
            (None, Ok(v)) => Some(v),
            (None, Err(_)) => None,
        };
        c.introspection_secret = secret.map(IntrospectionSecret::new).transpose()?;
        // An opaque access token has no claims to bind it to a key (`cnf`), so "DPoP on every
        // token" cannot be kept in that mode: said at start rather than silently not done.
        if c.access_tokens == AccessTokens::Opaque
            && c.dpop.mode == crate::dpop::http::DpopMode::Required
        {
            return Err(
                "--dpop required needs JWT access tokens: opaque tokens (--access-tokens \
                        opaque) cannot carry a key binding; use --access-tokens checked or \
                        stateless, or --dpop optional"
                    .into(),
            );
        }
        Ok(c)
    }
}

fn both_secrets() -> String {
    format!("give either --introspection-secret-file or {INTROSPECTION_SECRET_ENV}, not both")
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout carries only the "listening on" line that harnesses parse.
    // Colours only on a terminal: escape codes in a log file or a collector are noise.
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn read_password() -> Result<Password, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading stdin: {e}"))?;
    let pw = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if pw.is_empty() {
        return Err("empty password on stdin".into());
    }
    Ok(Password::new(pw.to_owned()))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authfetch-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authfetch-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let mut config = cli.config()?;
    match &cli.command {
        None => {
            let listener = tokio::net::TcpListener::bind(&cli.listen)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
            crate::serve(config, listener)
                .await
                .map_err(|e| e.to_string())
        }
        Some(Command::User { cmd }) => {
            config.demo_users = false;
            let pw = read_password()?;
            let state = crate::open(config).await.map_err(|e| e.to_string())?;
            match cmd {
                UserCommand::Add { username } => {
                    let u = state
                        .service
                        .add_user(username, pw)
                        .await
                        .map_err(|e| e.to_string())?;
                    println!("created user {} (id {})", u.username, u.id);
                }
                UserCommand::Passwd { username } => {
                    state
                        .service
                        .set_password(username, pw)
                        .await
                        .map_err(|e| e.to_string())?;
                    println!("password changed; all sessions of {username} revoked");
                }
            }
            Ok(())
        }
        Some(Command::Keys {
            cmd: KeysCommand::Rotate { lead },
        }) => {
            let now = SystemClock.now_ms();
            crate::create_private_dir(&config.data_dir).map_err(|e| e.to_string())?;
            let ring = KeyRing::load_or_create(
                &config.data_dir,
                config.alg,
                config.access_ttl + MAX_SKEW,
                now,
            )
            .map_err(|e| e.to_string())?;
            let kid = ring
                .rotate(config.alg, now, *lead)
                .map_err(|e| e.to_string())?;
            let _ = Arc::new(ring);
            if lead.is_zero() {
                println!("new active key {kid}");
            } else {
                println!(
                    "new key {kid} published; it signs from {}s from now",
                    lead.as_secs()
                );
            }
            Ok(())
        }
    }
}
