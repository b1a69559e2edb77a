//! `--access-tokens stateless|checked|opaque` over real HTTP on loopback, on both stores
//! (SQLite, and a real `redis-server` started by the test): the same login → API → logout
//! flow in every mode, and the revocation delay each mode documents (docs/ACCESS-TOKENS.md):
//! immediate for `checked` and `opaque`, at `exp` (not before) for `stateless`. Then the
//! RFC 7662 introspection endpoint (authenticated, never open, `active:false` without detail)
//! and the verification layer's introspection client, and the verified-token cache of the
//! JWT modes.

mod common;

use authfetch_protocol::{CSRF_HEADER, LOGIN_PATH, LOGOUT_ALL_PATH, LOGOUT_PATH};
use authfetch_server::config::{AccessTokens, IntrospectionSecret};
use authfetch_server::jwt::JwtError;
use authfetch_server::routes::INTROSPECT_PATH;
use authfetch_server::verify::{Verifier, VerifierConfig, VerifyError};
use common::*;
use std::future::IntoFuture as _;
use std::time::Duration;

const SECRET: &str = "resource-server-secret-0123456789abcdef";

/// A test app served on 127.0.0.1 (manual clock), and its Redis if any.
struct Live {
    app: Fixture,
    base: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<Result<(), std::io::Error>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn live(b: Backend, mode: AccessTokens, secret: bool, name: &str) -> Live {
    let app = fixture(b, name, |c| {
        c.access_tokens = mode;
        if secret {
            c.introspection_secret = Some(IntrospectionSecret::new(SECRET.into()).unwrap());
        }
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app.router.clone()).into_future());
    Live {
        app,
        base: format!("http://{addr}"),
        http: http_client(),
        server,
    }
}

struct Tokens {
    access: String,
    cookie: String,
}

impl Live {
    async fn login(&self, user: &str) -> Tokens {
        let r = self
            .http
            .post(format!("{}{LOGIN_PATH}", self.base))
            .header(CSRF_HEADER, "1")
            .header("content-type", "application/json")
            .body(
                serde_json::json!({"username": user, "password": format!("{user}-password")})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .find_map(|v| {
                let v = v.to_str().ok()?;
                let (pair, _) = v.split_once(';')?;
                let (_, value) = pair.split_once('=')?;
                (!value.is_empty()).then(|| value.to_owned())
            })
            .expect("refresh cookie");
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        Tokens {
            access: body["access_token"].as_str().unwrap().to_owned(),
            cookie,
        }
    }

    async fn me(&self, access: &str) -> u16 {
        self.http
            .get(format!("{}/api/me", self.base))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn post_auth(&self, path: &str, s: &Tokens) -> u16 {
        self.http
            .post(format!("{}{path}", self.base))
            .header(CSRF_HEADER, "1")
            .header("cookie", cookie_header(&s.cookie))
            .bearer_auth(&s.access)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn introspect(&self, auth: Option<&str>, body: &str) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .post(format!("{}{INTROSPECT_PATH}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    fn access_ttl(&self) -> Duration {
        self.app.config.access_ttl
    }
}

fn form_token(t: &str) -> String {
    format!("token={t}")
}

macro_rules! per_mode_and_store {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use authfetch_server::config::AccessTokens;
                use super::Backend;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_stateless() { super::$name(Backend::Sqlite, AccessTokens::Stateless).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_checked() { super::$name(Backend::Sqlite, AccessTokens::Checked).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_opaque() { super::$name(Backend::Sqlite, AccessTokens::Opaque).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis_stateless() { super::$name(Backend::Redis, AccessTokens::Stateless).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis_checked() { super::$name(Backend::Redis, AccessTokens::Checked).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis_opaque() { super::$name(Backend::Redis, AccessTokens::Opaque).await }
            }
        )*
    };
}

per_mode_and_store!(
    logout_reaches_an_outstanding_token_as_the_mode_documents,
    logout_everywhere_reaches_an_outstanding_token_as_the_mode_documents,
    introspection_is_exact_in_every_mode,
);

/// The token's form: a JWT (three dot-separated parts) in the JWT modes, 43 characters of
/// base64url (256 bits) in the opaque mode.
fn assert_form(mode: AccessTokens, token: &str) {
    match mode {
        AccessTokens::Opaque => {
            assert_eq!(token.len(), 43, "{token}");
            assert!(!token.contains('.'));
        }
        _ => assert_eq!(token.split('.').count(), 3, "{token}"),
    }
}

async fn logout_reaches_an_outstanding_token_as_the_mode_documents(b: Backend, mode: AccessTokens) {
    let l = live(b, mode, false, "logout_delay").await;
    let s = l.login("alice").await;
    assert_form(mode, &s.access);
    assert_eq!(l.me(&s.access).await, 200);
    assert_eq!(
        l.me(&s.access).await,
        200,
        "a second request (cached in the JWT modes)"
    );
    // Someone else's token is not touched by this logout.
    let other = l.login("bob").await;
    assert_eq!(l.post_auth(LOGOUT_PATH, &s).await, 204);
    match mode {
        AccessTokens::Stateless => {
            assert_eq!(
                l.me(&s.access).await,
                200,
                "stateless: still accepted after logout"
            );
            l.app.advance(l.access_ttl() - Duration::from_secs(2));
            assert_eq!(l.me(&s.access).await, 200, "stateless: accepted until exp");
            l.app.advance(Duration::from_secs(2));
            assert_eq!(l.me(&s.access).await, 401, "stateless: refused from exp on");
        }
        _ => assert_eq!(l.me(&s.access).await, 401, "{mode:?}: refused at once"),
    }
    if !matches!(mode, AccessTokens::Stateless) {
        assert_eq!(l.me(&other.access).await, 200, "bob's session is untouched");
    }
}

async fn logout_everywhere_reaches_an_outstanding_token_as_the_mode_documents(
    b: Backend,
    mode: AccessTokens,
) {
    let l = live(b, mode, false, "logout_all_delay").await;
    let phone = l.login("alice").await;
    let laptop = l.login("alice").await;
    let bob = l.login("bob").await;
    assert_eq!(l.me(&phone.access).await, 200);
    assert_eq!(l.post_auth(LOGOUT_ALL_PATH, &laptop).await, 204);
    // Whole seconds: a token issued in the same second as not_before stays valid by design
    // (`iat < not_before` is the test); one second on, both are refused.
    match mode {
        AccessTokens::Stateless => {
            assert_eq!(
                l.me(&phone.access).await,
                200,
                "stateless: accepted until exp"
            );
            assert_eq!(l.me(&laptop.access).await, 200);
            l.app.advance(l.access_ttl());
            assert_eq!(l.me(&phone.access).await, 401);
            assert_eq!(l.me(&laptop.access).await, 401);
        }
        _ => {
            assert_eq!(l.me(&phone.access).await, 401, "{mode:?}: refused at once");
            assert_eq!(l.me(&laptop.access).await, 401, "{mode:?}: refused at once");
            assert_eq!(l.me(&bob.access).await, 200, "bob is untouched");
        }
    }
}

async fn introspection_is_exact_in_every_mode(b: Backend, mode: AccessTokens) {
    let l = live(b, mode, true, "introspection").await;
    let s = l.login("alice").await;
    let bearer = format!("Bearer {SECRET}");
    // Never open: no credentials, a wrong secret, a prefix of the secret.
    for auth in [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {}", &SECRET[..SECRET.len() - 1])),
        Some(format!("Basic {}", b64(&format!("rs:{}x", SECRET)))),
    ] {
        let (status, body) = l.introspect(auth.as_deref(), &form_token(&s.access)).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(body["active"], serde_json::Value::Null, "{body}");
    }
    // Bearer and HTTP Basic (any client id, the secret as password).
    for auth in [
        bearer.clone(),
        format!("Basic {}", b64(&format!("api:{SECRET}"))),
    ] {
        let (status, body) = l.introspect(Some(&auth), &form_token(&s.access)).await;
        assert_eq!(status, 200);
        assert_eq!(body["active"], true, "{body}");
        assert_eq!(body["iss"], "authfetch");
        assert_eq!(body["aud"], serde_json::json!(["authfetch-api"]));
        assert!(body["sub"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(body["exp"].as_i64().unwrap() > l.app.now_s());
    }
    // Anything that is not a live token: exactly {"active": false}, no reason.
    let mut altered = s.access.clone().into_bytes();
    let i = altered.len() - 3;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for garbage in [
        altered.as_str(),
        "x",
        "a.b.c",
        &"A".repeat(43),
        &"z".repeat(5000),
    ] {
        let (status, body) = l.introspect(Some(&bearer), &form_token(garbage)).await;
        assert_eq!(status, 200);
        assert_eq!(body, serde_json::json!({"active": false}), "{garbage:.20}");
    }
    // No token parameter, or two: a typed 400, not a panic.
    let (status, _) = l.introspect(Some(&bearer), "nothing=1").await;
    assert_eq!(status, 400);
    let (status, _) = l.introspect(Some(&bearer), "token=a&token=b").await;
    assert_eq!(status, 400);
    // After logout the endpoint is exact in every mode, the stateless one included (it
    // reads the store's revocation state even where the API does not).
    assert_eq!(l.post_auth(LOGOUT_PATH, &s).await, 204);
    let (_, body) = l.introspect(Some(&bearer), &form_token(&s.access)).await;
    assert_eq!(body, serde_json::json!({"active": false}));
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_there_is_no_introspection_endpoint() {
    let l = live(Backend::Sqlite, AccessTokens::Opaque, false, "no_secret").await;
    let s = l.login("alice").await;
    let (status, _) = l
        .introspect(Some(&format!("Bearer {SECRET}")), &form_token(&s.access))
        .await;
    assert_eq!(status, 404);
}

#[test]
fn a_short_introspection_secret_is_refused() {
    assert!(IntrospectionSecret::new("short".into()).is_err());
    assert!(IntrospectionSecret::new("x".repeat(32)).is_ok());
    assert_eq!(
        format!("{:?}", IntrospectionSecret::new(SECRET.into()).unwrap()),
        "[redacted]"
    );
}

/// Another Rust service verifies opaque tokens through introspection: at once when it asks
/// every time, and with the documented staleness when it caches an active answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_layer_verifies_opaque_tokens_by_introspection() {
    let l = live(Backend::Sqlite, AccessTokens::Opaque, true, "rs").await;
    let url = format!("{}{INTROSPECT_PATH}", l.base);
    let cfg = VerifierConfig::new("authfetch", "authfetch-api");
    let fresh = Verifier::builder(cfg.clone())
        .introspection(&url, SECRET)
        .introspection_cache_ttl(Duration::ZERO)
        .build()
        .unwrap();
    let cached = Verifier::builder(cfg.clone())
        .introspection(&url, SECRET)
        .introspection_cache_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let wrong_secret = Verifier::builder(cfg.clone())
        .introspection(&url, "not-the-secret")
        .build()
        .unwrap();
    let other_audience = Verifier::builder(VerifierConfig::new("authfetch", "another-api"))
        .introspection(&url, SECRET)
        .build()
        .unwrap();
    let s = l.login("alice").await;
    let c = fresh.verify(&s.access).await.unwrap();
    assert_eq!(c.iss, "authfetch");
    assert!(c.sid.is_some());
    assert_eq!(cached.verify(&s.access).await.unwrap(), c);
    assert!(matches!(
        wrong_secret.verify(&s.access).await,
        Err(VerifyError::Unavailable(_))
    ));
    assert!(matches!(
        other_audience.verify(&s.access).await,
        Err(VerifyError::Invalid(JwtError::Claims("aud")))
    ));
    assert!(matches!(
        fresh.verify("not-a-token").await,
        Err(VerifyError::Invalid(JwtError::Inactive))
    ));
    assert_eq!(l.post_auth(LOGOUT_PATH, &s).await, 204);
    assert!(matches!(
        fresh.verify(&s.access).await,
        Err(VerifyError::Invalid(JwtError::Inactive))
    ));
    assert!(
        cached.verify(&s.access).await.is_ok(),
        "a cached active answer outlives a revocation by up to the cache TTL (documented)"
    );
    // Fail closed: the endpoint gone → refused, not accepted.
    drop(l);
    tokio::task::yield_now().await;
    let s2 = "B".repeat(43);
    assert!(fresh.verify(&s2).await.is_err());
}

#[test]
fn an_opaque_verifier_refuses_jwt_only_settings() {
    use authfetch_server::verify::BuildError;
    let b = || {
        Verifier::builder(VerifierConfig::new("a", "b"))
            .introspection("http://127.0.0.1:1/oauth/introspect", SECRET)
    };
    assert!(matches!(
        b().token_cache(10).build(),
        Err(BuildError::NotForOpaque)
    ));
    assert!(matches!(
        Verifier::builder(VerifierConfig::new("a", "b"))
            .introspection("ftp://x", SECRET)
            .build(),
        Err(BuildError::Introspection)
    ));
    assert!(matches!(
        Verifier::builder(VerifierConfig::new("a", "b"))
            .introspection("http://127.0.0.1:1/", "")
            .build(),
        Err(BuildError::Introspection)
    ));
    assert!(matches!(
        b().jwks_url("http://127.0.0.1:1/jwks").build(),
        Err(BuildError::TwoKeySources)
    ));
    assert!(matches!(
        Verifier::builder(VerifierConfig::new("a", "b"))
            .jwks_url("http://127.0.0.1:1/jwks")
            .token_cache(0)
            .build(),
        Err(BuildError::CacheCapacity)
    ));
}

// ---- The verified-token cache (JWT modes) ----

fn flip(token: &str, at: usize) -> String {
    let mut b = token.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_altered_by_one_byte_never_hits_the_cache() {
    let t = TestApp::new().await;
    let v = t.state.service.verifier();
    let s = t.login("alice", "alice-password").await;
    v.verify(&s.access).await.unwrap();
    v.verify(&s.access).await.unwrap();
    assert_eq!(
        v.token_cache_stats(),
        Some((1, 1)),
        "verified once, then a hit"
    );
    let (h, p) = (s.access.find('.').unwrap(), s.access.rfind('.').unwrap());
    // One byte in the header, the payload and the signature, and one byte appended.
    for altered in [
        flip(&s.access, 5),
        flip(&s.access, h + 5),
        flip(&s.access, p + 5),
        flip(&s.access, s.access.len() - 2),
        format!("{}A", s.access),
    ] {
        assert!(v.verify(&altered).await.is_err(), "{altered}");
    }
    assert_eq!(
        v.token_cache_stats(),
        Some((1, 1)),
        "no hit and nothing cached for an altered token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_the_next_request_although_cached() {
    let t = TestApp::new().await;
    let v = t.state.service.verifier();
    let s = t.login("alice", "alice-password").await;
    assert_eq!(t.me(&s.access).await.status(), 200);
    assert_eq!(t.me(&s.access).await.status(), 200);
    let (hits, len) = v.token_cache_stats().unwrap();
    assert!(hits >= 1 && len == 1);
    let r = t
        .send(
            auth_post(LOGOUT_PATH)
                .header("cookie", cookie_header(&s.cookie))
                .header("authorization", format!("Bearer {}", s.access))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(t.me(&s.access).await.status(), 401);
    assert!(matches!(
        v.verify(&s.access).await,
        Err(VerifyError::Invalid(JwtError::Revoked))
    ));
    let (hits_after, len_after) = v.token_cache_stats().unwrap();
    assert!(hits_after > hits, "the refusal came from a cache hit");
    assert_eq!(len_after, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_stays_bounded_under_a_flood_of_forged_tokens_and_of_real_ones() {
    let t = TestApp::with(|c| {
        c.access_tokens = AccessTokens::Stateless;
        c.token_cache = 4;
    })
    .await;
    let v = t.state.service.verifier();
    let s = t.login("alice", "alice-password").await;
    let (head, rest) = s.access.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    // Forged: our real header and payload, 5000 distinct made-up signatures.
    for i in 0..5000u32 {
        let sig = format!("{:0>86}", format!("{i:x}"));
        let forged = format!("{head}.{payload}.{sig}");
        assert!(v.verify(&forged).await.is_err());
    }
    assert_eq!(
        v.token_cache_stats().unwrap().1,
        0,
        "forged tokens are never cached"
    );
    // Real tokens beyond the capacity: the least recently used ones make room.
    let mut tokens = Vec::new();
    for _ in 0..10 {
        let s = t.login("alice", "alice-password").await;
        v.verify(&s.access).await.unwrap();
        tokens.push(s.access);
    }
    assert_eq!(v.token_cache_stats().unwrap().1, 4);
    // Evicted tokens still verify (by signature again), never refused for being evicted.
    v.verify(&tokens[0]).await.unwrap();
    // At exp an entry is dropped, and the token refused.
    t.advance(t.config.access_ttl);
    assert!(matches!(
        v.verify(&tokens[9]).await,
        Err(VerifyError::Invalid(JwtError::Expired))
    ));
    assert_eq!(v.token_cache_stats().unwrap().1, 3);
}

// ---- What the opaque mode stores ----

/// Opaque access tokens are kept only as their SHA-256: the SQLite file and the Redis keys and
/// values hold the hash and never the token (as text or as its raw 32 bytes); the Redis record
/// expires with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_stored_only_as_their_sha256() {
    use base64::Engine as _;
    use sha2::Digest as _;
    for b in [Backend::Sqlite, Backend::Redis] {
        let l = live(b, AccessTokens::Opaque, false, "opaque_hashed").await;
        let s = l.login("alice").await;
        assert_eq!(l.me(&s.access).await, 200);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&s.access)
            .unwrap();
        let hash = sha2::Sha256::digest(&raw);
        let blob: Vec<u8> = match b {
            Backend::Sqlite => {
                let db = l.app.dir.path().join("authfetch.sqlite3");
                let c = rusqlite::Connection::open_with_flags(
                    &db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .unwrap();
                let rows: Vec<Vec<u8>> = c
                    .prepare("SELECT hash FROM access_tokens")
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert_eq!(rows, vec![hash.to_vec()]);
                let mut all = std::fs::read(&db).unwrap();
                all.extend(std::fs::read(db.with_extension("sqlite3-wal")).unwrap_or_default());
                all
            }
            Backend::Redis => {
                let url = l.app.redis.as_ref().unwrap().url.clone();
                let client = ::redis::Client::open(url.as_str()).unwrap();
                let mut c = client.get_multiplexed_async_connection().await.unwrap();
                let key = format!(
                    "{}at:{}",
                    l.app.config.redis_prefix,
                    authfetch_server::secret::hex(&hash)
                );
                let ttl: i64 = ::redis::cmd("PTTL")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                assert!(ttl > 0, "the record expires with the token ({ttl})");
                let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS")
                    .arg("*")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                let mut all = Vec::new();
                for k in keys {
                    all.extend_from_slice(&k);
                    let kind: String = ::redis::cmd("TYPE")
                        .arg(&k)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    if kind == "hash" {
                        let vals: Vec<Vec<u8>> = ::redis::cmd("HGETALL")
                            .arg(&k)
                            .query_async(&mut c)
                            .await
                            .unwrap();
                        vals.iter().for_each(|v| all.extend_from_slice(v));
                    }
                }
                all
            }
        };
        let contains = |needle: &[u8]| blob.windows(needle.len()).any(|w| w == needle);
        assert!(
            !contains(s.access.as_bytes()),
            "{b:?}: token stored as text"
        );
        assert!(!contains(&raw), "{b:?}: raw token stored");
    }
}

// ---- The command line ----

#[test]
fn the_mode_and_the_introspection_secret_come_from_the_command_line_and_a_file() {
    use authfetch_server::cli::Cli;
    use clap::Parser as _;
    let parse = |args: &[&str]| {
        let mut v = vec!["authfetch-server"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map_err(|e| e.to_string())
    };
    let c = parse(&[]).unwrap().config().unwrap();
    assert_eq!(c.access_tokens, AccessTokens::Checked, "default");
    assert!(c.introspection_secret.is_none(), "no secret, no endpoint");
    for (arg, mode) in [
        ("stateless", AccessTokens::Stateless),
        ("checked", AccessTokens::Checked),
        ("opaque", AccessTokens::Opaque),
    ] {
        let c = parse(&["--access-tokens", arg]).unwrap().config().unwrap();
        assert_eq!(c.access_tokens, mode);
    }
    assert!(parse(&["--access-tokens", "jwt"]).is_err());
    // There is no flag that takes the secret itself.
    assert!(parse(&["--introspection-secret", SECRET]).is_err());
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, format!("{SECRET}\n")).unwrap();
    let c = parse(&["--introspection-secret-file", good.to_str().unwrap()])
        .unwrap()
        .config()
        .unwrap();
    assert_eq!(
        c.introspection_secret.unwrap().secret(),
        SECRET,
        "newline trimmed"
    );
    let short = dir.path().join("short");
    std::fs::write(&short, "too-short\n").unwrap();
    let e = parse(&["--introspection-secret-file", short.to_str().unwrap()])
        .unwrap()
        .config()
        .unwrap_err();
    assert!(e.contains("at least 32 bytes"), "{e}");
    let missing = dir.path().join("missing");
    let e = parse(&["--introspection-secret-file", missing.to_str().unwrap()])
        .unwrap()
        .config()
        .unwrap_err();
    assert!(
        e.contains("cannot read the introspection secret file"),
        "{e}"
    );
}

/// A cached token is accepted only while the key that verified it is still trusted: another
/// service's verifier (remote JWKS, token cache) stops accepting it once the key is withdrawn
/// from the JWKS and the set has been fetched again, cache hit or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_is_refused_once_its_key_is_withdrawn_from_the_jwks() {
    use authfetch_server::verify::JwksPolicy;
    use axum::routing::get;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let t = TestApp::with(|c| c.access_ttl = Duration::from_secs(600)).await;
    let jwks = serde_json::to_value(t.state.service.jwks()).unwrap();
    let withdrawn = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&withdrawn);
    let router = axum::Router::new().route(
        "/jwks",
        get(move || {
            let body = if flag.load(Ordering::SeqCst) {
                serde_json::json!({"keys": []})
            } else {
                jwks.clone()
            };
            async move { axum::Json(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, router).into_future());
    let v = Verifier::builder(VerifierConfig::new("authfetch", "authfetch-api"))
        .jwks_url(format!("http://{addr}/jwks"))
        .jwks_policy(JwksPolicy {
            cache_ttl: Duration::from_secs(60),
            min_refetch: Duration::ZERO,
            max_stale: Duration::ZERO,
        })
        .token_cache(16)
        .clock(t.clock.clone())
        .build()
        .unwrap();
    let s = t.login("alice", "alice-password").await;
    v.verify(&s.access).await.unwrap();
    v.verify(&s.access).await.unwrap();
    assert_eq!(v.token_cache_stats(), Some((1, 1)));
    withdrawn.store(true, Ordering::SeqCst);
    t.advance(Duration::from_secs(61));
    assert!(matches!(
        v.verify(&s.access).await,
        Err(VerifyError::Invalid(JwtError::UnknownKey))
    ));
    assert_eq!(v.token_cache_stats().unwrap().1, 0, "the entry is gone");
    server.abort();
}
