//! The authfetch token server: password login, rotating refresh cookies with reuse
//! detection, logout (one session or everywhere), a JWKS, and a verification layer that other
//! Rust services can use.
//!
//! The wire contract (paths, the CSRF header, the cookie name, error codes, JSON bodies) lives
//! in the `authfetch-protocol` crate; `docs/PROTOCOL.md` explains it for client authors.
//!
//! # Layout
//!
//! ```text
//! main.rs      thin: `cli::main()`
//! cli.rs       clap flags/env vars → Config; `serve`, `user add`, `keys rotate`
//! lib.rs       this map; AppState; `open` (store + keys + service); `app` (the Router); `serve`
//! connections.rs  the accept loop: header-read and idle timeouts, connection cap, shutdown deadline
//! routes.rs    HTTP handlers, the CSRF guard (X2–X7), cookies (C1, C5), demo resources
//! cors.rs      --cors-origin: exact-list CORS with credentials (same-site deployments), origin syntax
//! client_addr.rs  --trusted-proxy: the client address from X-Forwarded-For / Forwarded
//! tls.rs       the server as a TLS client: rediss:// with system roots or --redis-ca-file
//! service.rs   TokenService: login (P1–P3, S3), refresh (R1, R2), logout, logout-all (R4),
//!              rate limits (R9), audit events; knows nothing about HTTP
//! store/       the Store trait (mod.rs), SQLite (sqlite/: writer, checkpointer, readers),
//!              Redis (redis.rs, Lua scripts)
//! verify.rs    VerifierBuilder/Verifier + VerifyLayer + Authenticated extractor (J1–J14);
//!              local keys or a JWKS URL (http or https, bounded staleness)
//! dpop/        DPoP (RFC 9449): proofs, nonces, replay cache; http.rs wires them (--dpop)
//! jwt.rs       strict compact-JWS parsing and encoding
//! jwk.rs       public keys: JWK encoding and parsing, thumbprints, signature checks
//! keys.rs      signing keys: generation, 0600 persistence, rotation, the published JWK Set
//! oidc/        sign-in through OpenID Connect providers (start, callback, transaction cookie)
//! password.rs  Argon2id with a concurrency bound and a dummy hash
//! secret.rs    secret newtypes whose Debug prints [redacted]; refresh-token sealing
//! error.rs     AppError → RFC 6749/6750-shaped responses
//! ratelimit.rs stats.rs clock.rs config.rs
//! fuzzing.rs   (feature `fuzzing`) entry points and seeds for the cargo-fuzz targets in fuzz/
//! ```
//!
//! # How a request flows
//!
//! `POST /auth/refresh` with the cookie: the security-headers layer wraps everything →
//! `routes::csrf_guard` checks method, `x-authfetch`, `Sec-Fetch-Site`/`Origin`, content type →
//! `routes::refresh` reads the cookie → `TokenService::refresh` rate-limits, generates a
//! candidate successor, seals it under the presented token → `Store::rotate` decides atomically
//! (rotate / same successor within grace / reuse → revoke / unknown) → the service signs a new
//! access token with the `KeyRing` → the route answers JSON + `Set-Cookie`, `Cache-Control:
//! no-store`.
//!
//! `GET /api/me` with a bearer: `VerifyLayer` parses and verifies the JWT, asks the store
//! whether its `jti`, family or user was revoked, and inserts [`verify::Authenticated`] →
//! the handler reads the claims. (That is `--access-tokens checked`, the default; `stateless`
//! skips the store, `opaque` looks the token's hash up instead: docs/ACCESS-TOKENS.md.)
//!
//! Data flows one way: route → service → store. The store only ever sees hashes of refresh
//! tokens.
//!
//! # Tests
//!
//! ```text
//! tests/http.rs            HTTP through `app()` (oneshot): C*, X*, P*, S3, R*, garbage inputs
//! tests/verify.rs          forged tokens against the layer, one test per J1–J14; JWKS-URL mode
//! tests/store_contract.rs  one body per rule, run on SQLite and on a real redis-server;
//!                          two instances on one Redis; Redis outage
//! tests/audit.rs           captured logs: audit events present, secrets absent
//! tests/cli.rs             the binary on loopback: user add, env vars, keys rotate, SIGTERM
//! tests/connections.rs     A1 on real sockets: timeouts, connection cap, shutdown deadline, 413
//! tests/lost_answer.rs     A3: kill -9 after a rotation, restart past the window, old cookie once
//! tests/verifier_config.rs A2: VerifierBuilder, bounded JWKS staleness, https JWKS
//! tests/oidc.rs            OIDC sign-in error paths: each a page with its code, never a 500
//! tests/oidc_id_token.rs   ID-token checks and key rotation against a fake ES256 provider
//! tests/oidc_audit.rs      OIDC audit events present, codes/state/secrets absent from logs
//! tests/oidc_cli.rs        --oidc-config on the binary: secret from the environment, start-up errors
//! tests/deploy.rs          --cors-origin (preflight, exact list, CSRF with CORS), refused-origin log,
//!                          --trusted-proxy (spoofing, malformed headers)
//! tests/redis_tls.rs       rediss:// against redis-server --tls-port with a CA made by the test
//! tests/modes.rs           --access-tokens stateless|checked|opaque on both stores over loopback:
//!                          revocation delay per mode, introspection, the verified-token cache
//! ```
//!
//! `docs/SECURITY.md` maps every security item (J*, R*, C*, X*, …) to the test that proves it.

pub mod cli;
pub mod client_addr;
pub mod clock;
pub mod config;
pub mod connections;
pub mod cors;
pub mod dpop;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod jwk;
pub mod jwt;
pub mod keys;
pub mod oidc;
pub mod password;
pub mod ratelimit;
pub mod routes;
pub mod secret;
pub mod service;
pub mod stats;
pub mod store;
pub mod tls;
pub mod verify;

pub use authfetch_protocol as protocol;
pub use config::Config;

use axum::http::{header, HeaderName, HeaderValue};
use axum::Router;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::clock::{Clock, SystemClock};
use crate::config::{StoreKind, MAX_SKEW};
use crate::keys::KeyRing;
use crate::service::TokenService;
use crate::store::Store;

/// The Content-Security-Policy sent with every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The data directory or a file in it.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// The signing keys could not be loaded or created.
    #[error("keys: {0}")]
    Keys(#[from] keys::KeyError),
    /// Bad password-hash parameters.
    #[error("password hashing: {0}")]
    Hash(#[from] password::HashError),
    /// The Redis store would lose acknowledged writes on a restart of Redis (A4).
    #[error(
        "Redis runs without an append-only file (appendonly no): a restart of Redis loses \
         acknowledged logins, rotations and revocations. Set `appendonly yes` (with \
         `appendfsync everysec` or `always`) or, for a cache or a test, pass \
         --redis-allow-volatile"
    )]
    VolatileRedis,
    /// Seeding the demo users failed.
    #[error("demo users: {0}")]
    Seed(#[from] error::AppError),
    /// The OpenID Connect configuration is unusable.
    #[error("OIDC: {0}")]
    Oidc(String),
    /// A TLS setting (`--redis-ca-file`) is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The DPoP replay cache (Redis) could not be reached.
    #[error("DPoP: {0}")]
    Dpop(String),
}

/// Shared state of all handlers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The token service (and through it: config, store, keys, verifier, stats).
    pub service: Arc<TokenService>,
    /// OpenID Connect sign-in (no providers unless configured).
    pub oidc: Arc<oidc::Oidc>,
}

impl AppState {
    /// Wires a state from explicit parts (tests inject an in-memory store or a manual clock).
    ///
    /// # Errors
    /// Bad Argon2 parameters.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        keys: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        // A random transaction key: `open` replaces it with the data directory's, which
        // survives restarts and is shared by instances that share the directory.
        let oidc = oidc::Oidc::new(&config.oidc, oidc::txn::TxnKey::random())
            .map_err(StartupError::Oidc)?;
        Ok(Self {
            service: Arc::new(TokenService::new(config, store, keys, clock)?),
            oidc: Arc::new(oidc),
        })
    }
}

/// Creates `dir` (and parents) with mode 0700 if missing.
///
/// # Errors
/// I/O errors.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Opens the configured store (SQLite in the data directory, or Redis).
///
/// # Errors
/// The store could not be opened.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartupError> {
    Ok(match &config.store {
        StoreKind::Sqlite => {
            create_private_dir(&config.data_dir)?;
            Arc::new(store::sqlite::SqliteStore::open(&config.data_dir)?)
        }
        StoreKind::Redis(url) => {
            let client = tls::redis_client(url, config.redis_ca_file.as_deref())?;
            let redis =
                store::redis::RedisStore::connect_client(client, &config.redis_prefix).await?;
            check_redis_durability(&redis, config.redis_allow_volatile).await?;
            Arc::new(redis)
        }
    })
}

/// A4: refuses a Redis that can lose acknowledged writes, unless explicitly allowed.
async fn check_redis_durability(
    redis: &store::redis::RedisStore,
    allow_volatile: bool,
) -> Result<(), StartupError> {
    use store::redis::Durability;
    match redis.durability().await {
        Ok(Durability::Aof) => Ok(()),
        Ok(Durability::AofNoFsync) => {
            tracing::warn!(
                "Redis has appendfsync no: a crash of the machine can lose recent sessions; \
                 prefer appendfsync everysec"
            );
            Ok(())
        }
        Ok(Durability::Volatile) if allow_volatile => {
            tracing::warn!(
                "Redis runs without an append-only file; --redis-allow-volatile given: a \
                 restart of Redis loses sessions and users"
            );
            Ok(())
        }
        Ok(Durability::Volatile) => Err(StartupError::VolatileRedis),
        Err(e) if allow_volatile => {
            tracing::warn!(error = %e, "cannot read the Redis persistence settings; --redis-allow-volatile given");
            Ok(())
        }
        Err(e) => Err(StartupError::Store(e)),
    }
}

/// Opens the store and the signing keys in `config.data_dir` (creating both on first start),
/// and seeds the demo users if asked to.
///
/// # Errors
/// See [`StartupError`].
pub async fn open(config: Config) -> Result<AppState, StartupError> {
    open_with_clock(config, Arc::new(SystemClock)).await
}

/// [`open`] with an injected clock.
///
/// # Errors
/// See [`StartupError`].
pub async fn open_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
) -> Result<AppState, StartupError> {
    let store = open_store(&config).await?;
    create_private_dir(&config.data_dir)?;
    let keys = KeyRing::load_or_create(
        &config.data_dir,
        config.alg,
        config.access_ttl + MAX_SKEW,
        clock.now_ms(),
    )?;
    let demo = config.demo_users;
    let txn_key = oidc::txn::TxnKey::load_or_create(&config.data_dir)?;
    let mut config = config;
    dpop_from_data_dir(&mut config, &txn_key).await?;
    let oidc = oidc::Oidc::new(&config.oidc, txn_key).map_err(StartupError::Oidc)?;
    let mut state = AppState::new(config, store, Arc::new(keys), clock)?;
    state.oidc = Arc::new(oidc);
    if demo {
        state.service.seed_demo_users().await?;
    }
    Ok(state)
}

/// DPoP state shared by instances: nonces keyed by the data directory's secret (the instances
/// that share signing keys share it), and proofs remembered in Redis when the store is Redis.
async fn dpop_from_data_dir(
    config: &mut Config,
    txn_key: &oidc::txn::TxnKey,
) -> Result<(), StartupError> {
    if config.dpop.nonce_secret.is_none() {
        config.dpop.nonce_secret = Some(txn_key.derive(b"authfetch/dpop-nonce-secret/v1"));
    }
    if config.dpop.replay.is_none() && config.dpop.mode != dpop::http::DpopMode::Off {
        if let StoreKind::Redis(url) = &config.store {
            let client = tls::redis_client(url, config.redis_ca_file.as_deref())?;
            let cache = dpop::RedisReplayCache::connect_client(client, &config.redis_prefix)
                .await
                .map_err(|e| StartupError::Dpop(e.to_string()))?;
            config.dpop.replay = Some(Arc::new(cache));
        }
    }
    Ok(())
}

/// The whole HTTP application: API routes, static demo files, security headers.
pub fn app(state: AppState) -> Router {
    let config = state.service.config();
    let mut router = routes::api(&state);
    if let Some(pkg) = &config.pkg_dir {
        router = router.nest_service("/pkg", ServeDir::new(pkg));
    }
    if let Some(www) = &config.www_dir {
        router = router.fallback_service(ServeDir::new(www));
    }
    let h = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    let cors = cors::Cors::new(&config.cors_origins).map(Arc::new);
    let trust = Arc::new(client_addr::Trust {
        proxies: config.trusted_proxies.clone(),
        header: config.forwarded_header,
    });
    let mut router = router
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state);
    // Outside the router, so a preflight is answered before routing (the auth routes are
    // POST only and would answer OPTIONS with 405).
    if let Some(cors) = cors {
        router = router.layer(axum::middleware::from_fn(move |req, next| {
            cors::middleware(Arc::clone(&cors), req, next)
        }));
    }
    router
        .layer(axum::middleware::from_fn(move |req, next| {
            client_addr::middleware(Arc::clone(&trust), req, next)
        }))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(error::AppError::Internal(
                "handler panicked".into(),
            ))
        }))
        .layer(h(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .layer(h(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(h(header::REFERRER_POLICY, "no-referrer"))
        .layer(h(header::X_FRAME_OPTIONS, "DENY"))
        // The request span names the path, not the query: the OIDC callback's query holds the
        // authorization code and `state`, which are not for logs. No line per 5xx from the
        // layer: a 500 is logged with its cause where it is made (`AppError::Internal`, the
        // panic catcher above), and a 503 of a full DPoP replay cache once per episode; a line
        // per refused request would flood the log exactly when the server is busiest.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_failure(()),
        )
}

/// The origins allowed by default: the loopback names of the bound port.
pub fn default_origins(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ]
}

/// Runs the server on `listener` until Ctrl-C / SIGTERM. Prints the line
/// `authfetch-server listening on http://ADDR` on stdout once it accepts connections.
///
/// # Errors
/// Start-up failures and fatal I/O errors.
pub async fn serve(config: Config, listener: tokio::net::TcpListener) -> Result<(), StartupError> {
    serve_until(config, listener, shutdown_signal()).await
}

/// [`serve`] until `shutdown` completes instead of a signal; then requests in flight get
/// `config.connections.shutdown_timeout` to finish before the remaining connections are dropped.
///
/// # Errors
/// Start-up failures and fatal I/O errors.
pub async fn serve_until(
    mut config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), StartupError> {
    let addr = listener.local_addr()?;
    // `--allowed-origin` adds to the loopback origins of the bound port (it used to replace
    // them, which broke the app served by this server as soon as a dev-server origin was
    // added). They cannot be abused from elsewhere: a page on another machine's loopback is
    // cross-site to any real host name, and its Sec-Fetch-Site is refused.
    let mut origins = default_origins(addr);
    for o in std::mem::take(&mut config.allowed_origins) {
        if !origins.contains(&o) {
            origins.push(o);
        }
    }
    config.allowed_origins = origins;
    tracing::info!(
        allowed_origins = ?config.allowed_origins,
        cors_origins = ?config.cors_origins,
        trusted_proxies = ?config.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "origins allowed on cookie POSTs (CORS origins are allowed too)"
    );
    let limits = config.connections;
    let state = open(config).await?;
    let service = Arc::clone(&state.service);
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(e) = service.purge().await {
                tracing::warn!(error = %e, "purge failed");
            }
        }
    });
    let router = app(state);
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "authfetch-server listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, "listening");
    connections::serve(listener, router, limits, shutdown).await;
    purge.abort();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
