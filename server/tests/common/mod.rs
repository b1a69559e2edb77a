//! Shared helpers for the integration tests: an app on a temp data dir with a manual clock and
//! cheap Argon2 parameters, request builders, and response readers.
#![allow(dead_code, missing_docs)]

pub mod process;

use authfetch_protocol::{CSRF_HEADER, REFRESH_COOKIE};
use authfetch_server::clock::{Clock, ManualClock};
use authfetch_server::config::{Limit, PasswordParams, RateLimits, StoreKind};
use authfetch_server::secret::Password;
use authfetch_server::{app, open_with_clock, AppState, Config};
use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

pub const ORIGIN: &str = "http://localhost:3000";

pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.password_params = PasswordParams::INSECURE_FOR_TESTS;
    c.allowed_origins = vec![ORIGIN.to_owned()];
    c.access_ttl = Duration::from_secs(60);
    c.grace = Duration::from_secs(10);
    c.debug_stats = true;
    let lots = Limit {
        max: 10_000,
        window: Duration::from_secs(60),
    };
    c.rate_limits = RateLimits {
        login_per_ip: lots,
        login_per_account: lots,
        refresh_per_ip: lots,
    };
    c
}

pub struct TestApp {
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub router: Router,
    pub config: Config,
    pub dir: tempfile::TempDir,
}

pub struct Session {
    pub access: String,
    pub cookie: String,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(f: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        f(&mut config);
        let clock = Arc::new(ManualClock::starting_now());
        let state = open_with_clock(config.clone(), clock.clone())
            .await
            .expect("open");
        for (u, p) in [("alice", "alice-password"), ("bob", "bob-password")] {
            state
                .service
                .add_user(u, Password::new(p.into()))
                .await
                .expect("add user");
        }
        let router = app(state.clone());
        TestApp {
            state,
            clock,
            router,
            config,
            dir,
        }
    }

    /// A second server on the same data directory (the first one's state is dropped by the caller).
    pub async fn reopen(self) -> Self {
        let TestApp {
            state,
            clock,
            config,
            dir,
            router,
        } = self;
        drop(router);
        drop(state);
        let state = open_with_clock(config.clone(), clock.clone())
            .await
            .expect("reopen");
        let router = app(state.clone());
        TestApp {
            state,
            clock,
            router,
            config,
            dir,
        }
    }

    pub fn now_s(&self) -> i64 {
        self.clock.now_secs()
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    pub async fn send(&self, req: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(req).await.expect("infallible")
    }

    pub async fn login(&self, user: &str, pw: &str) -> Session {
        let r = self.send(login_req(user, pw)).await;
        assert_eq!(r.status(), StatusCode::OK, "login {user}");
        let cookie = cookie_value(&r).expect("login sets cookie");
        let body = json(r).await;
        Session {
            access: body["access_token"].as_str().expect("token").to_owned(),
            cookie,
        }
    }

    pub async fn refresh(&self, cookie: &str) -> Response<Body> {
        self.send(
            auth_post(authfetch_protocol::REFRESH_PATH)
                .header(header::COOKIE, cookie_header(cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn me(&self, access: &str) -> Response<Body> {
        self.send(
            Request::get("/api/me")
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn stats(&self) -> serde_json::Value {
        json(
            self.send(Request::get("/debug/stats").body(Body::empty()).unwrap())
                .await,
        )
        .await
    }
}

pub fn cookie_header(v: &str) -> String {
    format!("{REFRESH_COOKIE}={v}")
}

/// A POST with the CSRF header and no Origin (a non-browser client).
pub fn auth_post(path: &str) -> axum::http::request::Builder {
    Request::post(path).header(CSRF_HEADER, "1")
}

pub fn login_req(user: &str, pw: &str) -> Request<Body> {
    auth_post(authfetch_protocol::LOGIN_PATH)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({"username": user, "password": pw}).to_string(),
        ))
        .unwrap()
}

pub fn set_cookies(r: &Response<Body>) -> Vec<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The refresh token set by a response (`None` if absent or cleared).
pub fn cookie_value(r: &Response<Body>) -> Option<String> {
    set_cookies(r).iter().find_map(|c| {
        let v = c
            .strip_prefix(&format!("{REFRESH_COOKIE}="))?
            .split(';')
            .next()?
            .to_owned();
        (!v.is_empty()).then_some(v)
    })
}

pub async fn body_bytes(r: Response<Body>) -> Vec<u8> {
    r.into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

pub async fn json(r: Response<Body>) -> serde_json::Value {
    let b = body_bytes(r).await;
    serde_json::from_slice(&b)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&b)))
}

pub async fn error_code(r: Response<Body>) -> String {
    json(r).await["error"].as_str().unwrap_or("").to_owned()
}

impl TestApp {
    /// Another server instance over the same store configuration and clock, without seeding
    /// users (they already exist in the shared store). Used for two instances on one Redis.
    pub async fn attach(config: Config, clock: Arc<ManualClock>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = open_with_clock(config.clone(), clock.clone())
            .await
            .expect("open second instance");
        let router = app(state.clone());
        TestApp {
            state,
            clock,
            router,
            config,
            dir,
        }
    }
}

/// A private `redis-server` for one test: unix socket in a temp dir, no TCP (`--port 0`), an
/// append-only file in the temp dir (the persistence the server requires, A4) and no
/// snapshots. Killed when dropped. A missing `redis-server` fails the test (never skips):
/// `scripts/bootstrap.sh` installs it.
pub struct RedisServer {
    child: std::process::Child,
    pub dir: tempfile::TempDir,
    pub socket: std::path::PathBuf,
    pub url: String,
    appendonly: bool,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// Without the append-only file: what the server refuses unless told otherwise.
    pub fn start_volatile() -> Self {
        Self::start_with(false)
    }

    fn start_with(appendonly: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("redis.sock");
        let child = Self::spawn(dir.path(), &socket, appendonly);
        let url = format!("redis+unix://{}", socket.display());
        let mut s = RedisServer {
            child,
            dir,
            socket,
            url,
            appendonly,
        };
        s.wait_ready();
        s
    }

    fn spawn(dir: &Path, socket: &Path, appendonly: bool) -> std::process::Child {
        std::process::Command::new("redis-server")
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(if appendonly { "yes" } else { "no" })
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `redis-server` ({e}). The Redis store tests need a real Redis: \
                     run scripts/bootstrap.sh or `apt-get install redis-server`"
                )
            })
    }

    fn wait_ready(&mut self) {
        if let Err(e) = self.try_wait_ready() {
            panic!("{e}");
        }
    }

    fn try_wait_ready(&mut self) -> Result<(), String> {
        use std::io::{Read as _, Write as _};
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!("redis-server exited early: {status}"));
            }
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.socket) {
                let mut buf = [0u8; 7];
                // While it loads its append-only file Redis answers `-LOADING …`: not ready yet.
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return Ok(());
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not come up on {}",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server (SIGKILL, to test failures); [`RedisServer::restart`] brings it up
    /// again on the same socket and directory (with what its append-only file kept).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }

    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.dir.path(), &self.socket, self.appendonly);
        self.wait_ready();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The store a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Redis,
}

/// A test app on the chosen backend; the Redis server (if any) lives as long as the fixture.
pub struct Fixture {
    pub t: TestApp,
    pub redis: Option<RedisServer>,
}

impl std::ops::Deref for Fixture {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.t
    }
}

/// A [`TestApp`] on `b`: for Redis, on a private `redis-server` under a key prefix unique to
/// this test (`name`). `f` then adjusts the configuration.
pub async fn fixture(b: Backend, name: &str, f: impl FnOnce(&mut Config)) -> Fixture {
    let redis = match b {
        Backend::Sqlite => None,
        Backend::Redis => Some(RedisServer::start()),
    };
    let url = redis.as_ref().map(|r| r.url.clone());
    let prefix = unique_prefix(name);
    let t = TestApp::with(move |c| {
        if let Some(url) = url {
            c.store = StoreKind::Redis(url);
            c.redis_prefix = prefix;
        }
        f(c);
    })
    .await;
    Fixture { t, redis }
}

/// A unique Redis key prefix per test.
pub fn unique_prefix(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "test:{name}:{}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An HTTP client for tests that talk to a real socket. The server crate enables reqwest with
/// rustls but without a default crypto provider (its JWKS client brings its own, ring), so
/// `reqwest::Client::new()` needs ring installed as the process default first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
