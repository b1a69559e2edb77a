//! The store contract: one test body, run against BOTH stores (embedded SQLite, and a real
//! `redis-server` started by the test on a unix socket). Plus Redis-only tests: two server
//! instances sharing sessions through one Redis, what Redis holds (hashes only), and a Redis
//! outage.
//!
//! `contract!` expands every body into `sqlite::<name>` and `redis::<name>`.

mod common;

use authfetch_protocol::{LOGOUT_ALL_PATH, LOGOUT_PATH};
use authfetch_server::clock::Clock as _;
use authfetch_server::config::{Config, Limit, RateLimits, StoreKind};
use authfetch_server::secret::{Password, RefreshToken};
use authfetch_server::store::{AccessCheck, StoreError};
use axum::body::Body;
use axum::http::{header, StatusCode};
use common::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Redis).await
                }
            )*
        }
    };
}

contract!(
    r1_rotation_grace_and_grandparent_reuse,
    r1_fifty_concurrent_refreshes_get_the_same_successor,
    r1_parent_after_grace_is_reuse_and_kills_the_family,
    r1_unknown_token_revokes_nothing,
    r2_idle_expiry_and_rotation_pushes_it_forward,
    r2_absolute_expiry_is_never_extended,
    r4_logout_all_revokes_every_family_and_access_token,
    r4_password_change_revokes_every_family,
    j13_logout_revokes_the_family_and_denylists_the_jti,
    s3_login_replaces_the_presented_family,
    restart_keeps_users_sessions_and_keys,
    store_level_users_denylist_and_access_checks,
    r9_login_and_refresh_rate_limits_with_retry_after,
    r4_logout_all_by_cookie_needs_the_current_cookie_not_a_stale_one,
    a3_a_lost_refresh_answer_never_costs_the_session,
    oidc_identity_links_by_issuer_and_subject_only,
    d3_a_family_keeps_its_dpop_key_through_rotation_and_restart,
);

/// D3: the DPoP key a family is bound to at login is found from any of its refresh tokens,
/// after rotations and after a restart; an unbound family and an unknown token have none.
async fn d3_a_family_keeps_its_dpop_key_through_rotation_and_restart(b: Backend) {
    use authfetch_server::store::{NewFamily, RotateOutcome, RotateRequest};
    let f = fixture(b, "dpop-jkt", |_| {}).await;
    let Fixture { t, redis } = f;
    let store = Arc::clone(t.state.service.store());
    let now = t.clock.now_ms();
    let user = store.user_by_name("alice").await.unwrap().unwrap();
    let jkt = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".to_owned();
    let family = |id: &str, token: &RefreshToken, dpop_jkt: Option<String>| NewFamily {
        family_id: id.into(),
        user_id: user.id.clone(),
        token_hash: token.hash(),
        now_ms: now,
        absolute_exp_ms: now + 3_600_000,
        idle_exp_ms: now + 3_600_000,
        dpop_jkt,
    };
    let (bound, plain) = (RefreshToken::generate(), RefreshToken::generate());
    store
        .create_family(family("fam-bound", &bound, Some(jkt.clone())))
        .await
        .unwrap();
    store
        .create_family(family("fam-plain", &plain, None))
        .await
        .unwrap();
    assert_eq!(
        store.family_jkt(&bound.hash()).await.unwrap(),
        Some(jkt.clone())
    );
    assert_eq!(store.family_jkt(&plain.hash()).await.unwrap(), None);
    assert_eq!(
        store
            .family_jkt(&RefreshToken::generate().hash())
            .await
            .unwrap(),
        None
    );
    // A rotation: the successor belongs to the same bound family.
    let next = RefreshToken::generate();
    let out = store
        .rotate(RotateRequest {
            presented: bound.hash(),
            successor: next.hash(),
            successor_sealed: bound.seal(&next),
            now_ms: now,
            idle_ttl_ms: 3_600_000,
        })
        .await
        .unwrap();
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    assert_eq!(
        store.family_jkt(&next.hash()).await.unwrap(),
        Some(jkt.clone())
    );
    assert_eq!(
        store.family_jkt(&bound.hash()).await.unwrap(),
        Some(jkt.clone())
    );
    // Revocation keeps the record (the check before refresh/logout still finds the key).
    store.revoke_family_of(&next.hash(), now).await.unwrap();
    assert_eq!(
        store.family_jkt(&next.hash()).await.unwrap(),
        Some(jkt.clone())
    );
    drop(store);
    let t = t.reopen().await;
    let store = t.state.service.store();
    assert_eq!(store.family_jkt(&next.hash()).await.unwrap(), Some(jkt));
    assert_eq!(store.family_jkt(&plain.hash()).await.unwrap(), None);
    drop(redis);
}

/// D3: a database from before DPoP (no `families.dpop_jkt`) gains the column on open; its
/// families are unbound.
#[tokio::test]
async fn d3_sqlite_databases_from_before_dpop_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(authfetch_server::store::sqlite::DB_FILE);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, \
               password_hash TEXT NOT NULL, created_ms INTEGER NOT NULL, not_before_s INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE families (id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), \
               created_ms INTEGER NOT NULL, absolute_exp_ms INTEGER NOT NULL, idle_exp_ms INTEGER NOT NULL, \
               current_hash BLOB NOT NULL, revoked_ms INTEGER);
             CREATE TABLE refresh_tokens (hash BLOB PRIMARY KEY, family_id TEXT NOT NULL REFERENCES families(id) ON DELETE CASCADE, \
               created_ms INTEGER NOT NULL, used_ms INTEGER, successor_hash BLOB, successor_sealed BLOB);
             INSERT INTO users VALUES ('u1', 'old', 'x', 0, 0);
             INSERT INTO families VALUES ('f1', 'u1', 0, 9999999999999, 9999999999999, x'00', NULL);
             INSERT INTO refresh_tokens (hash, family_id, created_ms) VALUES (x'0101010101010101010101010101010101010101010101010101010101010101', 'f1', 0);",
        )
        .unwrap();
    }
    let store = authfetch_server::store::sqlite::SqliteStore::open(dir.path()).unwrap();
    use authfetch_server::store::Store as _;
    let h = authfetch_server::secret::TokenHash([1u8; 32]);
    assert_eq!(store.family_jkt(&h).await.unwrap(), None);
}

/// A3: the client never got the answer of a committed rotation (crash, dropped connection)
/// and presents the parent again long after the grace window. As long as the successor has
/// never been used, the parent gets that same successor; the successor's first use closes the
/// door, and the parent is reuse from then on.
async fn a3_a_lost_refresh_answer_never_costs_the_session(b: Backend) {
    let t = fixture(b, "a3", |_| {}).await;
    let s0 = t.login("alice", "alice-password").await;
    let lost = refresh_ok(&t, &s0.cookie).await; // committed; the answer never arrives
    t.advance(t.config.grace * 6 + Duration::from_secs(3600));
    // Housekeeping in between must not throw the sealed successor away.
    let now = t.clock.now_ms();
    t.state
        .service
        .store()
        .purge(now, i64::try_from(t.config.grace.as_millis()).unwrap())
        .await
        .unwrap();
    let again = refresh_ok(&t, &s0.cookie).await;
    assert_eq!(
        again.cookie, lost.cookie,
        "the same successor, not a sibling"
    );
    assert_eq!(t.me(&again.access).await.status(), StatusCode::OK);
    // Still the same while the successor stays unused (the retry's answer may be lost too).
    t.advance(Duration::from_secs(60));
    assert_eq!(refresh_ok(&t, &s0.cookie).await.cookie, lost.cookie);
    let st = t.stats().await;
    assert_eq!(st["reuse_detected"], 0);
    // The successor's first use closes the door: the parent is now reuse.
    let s2 = refresh_ok(&t, &lost.cookie).await;
    t.advance(t.config.grace + Duration::from_secs(1));
    refresh_refused(&t, &s0.cookie).await;
    assert_eq!(t.stats().await["reuse_detected"], 1);
    refresh_refused(&t, &s2.cookie).await;
    assert_eq!(t.me(&s2.access).await.status(), StatusCode::UNAUTHORIZED);
}

async fn r4_logout_all_by_cookie_needs_the_current_cookie_not_a_stale_one(b: Backend) {
    let t = fixture(b, "logout_all_stale", |_| {}).await;
    let logout_all = |cookie: &str| {
        auth_post(LOGOUT_ALL_PATH)
            .header(header::COOKIE, cookie_header(cookie))
            .body(Body::empty())
            .unwrap()
    };
    let s0 = t.login("alice", "alice-password").await;
    let s1 = refresh_ok(&t, &s0.cookie).await;
    let other = t.login("alice", "alice-password").await;
    t.advance(t.config.grace + Duration::from_secs(1));
    let s2 = refresh_ok(&t, &s1.cookie).await;
    t.advance(t.config.grace + Duration::from_secs(1));
    // s0 and s1 are stale: they identify nobody, nothing is revoked.
    for stale in [&s0.cookie, &s1.cookie] {
        let r = t.send(logout_all(stale)).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(t.stats().await["logout_all"], 0);
    assert_eq!(t.me(&other.access).await.status(), StatusCode::OK);
    let s3 = refresh_ok(&t, &s2.cookie).await;
    // The immediate parent within the grace window still counts (a tab racing a rotation).
    let r = t.send(logout_all(&s2.cookie)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.stats().await["logout_all"], 1);
    assert_eq!(t.me(&other.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.me(&s3.access).await.status(), StatusCode::UNAUTHORIZED);
    refresh_refused(&t, &other.cookie).await;
    // And the current cookie, on a fresh session.
    t.advance(Duration::from_secs(1));
    let n = t.login("alice", "alice-password").await;
    let n1 = refresh_ok(&t, &n.cookie).await;
    t.advance(t.config.grace + Duration::from_secs(1));
    let r = t.send(logout_all(&n1.cookie)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.stats().await["logout_all"], 2);
    assert_eq!(t.me(&n1.access).await.status(), StatusCode::UNAUTHORIZED);
}

fn tight_limits(c: &mut Config) {
    let minute = Duration::from_secs(60);
    c.rate_limits = RateLimits {
        login_per_ip: Limit {
            max: 5,
            window: minute,
        },
        login_per_account: Limit {
            max: 3,
            window: minute,
        },
        refresh_per_ip: Limit {
            max: 2,
            window: minute,
        },
    };
}

async fn r9_login_and_refresh_rate_limits_with_retry_after(b: Backend) {
    let t = fixture(b, "r9", tight_limits).await;
    for _ in 0..3 {
        let r = t.send(login_req("alice", "nope")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Per account (3), case-insensitively.
    let r = t.send(login_req("ALICE", "alice-password")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(error_code(r).await, "rate_limited");
    // Per IP (5): one more login for another account, then the IP is out.
    assert_eq!(
        t.send(login_req("bob", "bob-password")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        t.send(login_req("carol", "x")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Refresh has its own per-IP limit (2); a 429 keeps the cookie.
    let fake = RefreshToken::generate().secret();
    refresh_refused(&t, &fake).await;
    refresh_refused(&t, &fake).await;
    let r = t.refresh(&fake).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    assert!(
        set_cookies(&r).is_empty(),
        "a rate limit says nothing about the cookie"
    );
    // The window passes.
    t.advance(Duration::from_secs(61));
    t.login("alice", "alice-password").await;
}

async fn refresh_ok(t: &TestApp, cookie: &str) -> Session {
    let r = t.refresh(cookie).await;
    assert_eq!(r.status(), StatusCode::OK, "refresh");
    let cookie = cookie_value(&r).expect("rotated cookie");
    let access = json(r).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    Session { access, cookie }
}

async fn refresh_refused(t: &TestApp, cookie: &str) {
    let r = t.refresh(cookie).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "refresh must be refused"
    );
    assert_eq!(
        cookie_value(&r),
        None,
        "a refused refresh clears the cookie"
    );
    assert_eq!(error_code(r).await, "invalid_grant");
}

async fn r1_rotation_grace_and_grandparent_reuse(b: Backend) {
    let t = fixture(b, "rotation", |_| {}).await;
    let s0 = t.login("alice", "alice-password").await;
    let s1 = refresh_ok(&t, &s0.cookie).await;
    assert_ne!(s1.cookie, s0.cookie, "rotated");
    assert_ne!(s1.access, s0.access);
    assert_eq!(t.me(&s1.access).await.status(), StatusCode::OK);
    // The immediate parent within the grace window: the same successor, a fresh access token.
    t.advance(Duration::from_secs(5));
    let again = refresh_ok(&t, &s0.cookie).await;
    assert_eq!(again.cookie, s1.cookie, "same successor, not a sibling");
    assert_ne!(again.access, s1.access);
    assert_eq!(t.me(&again.access).await.status(), StatusCode::OK);
    // The successor rotates normally.
    let s2 = refresh_ok(&t, &s1.cookie).await;
    // Now s0 is a grandparent: reuse, even inside the window.
    refresh_refused(&t, &s0.cookie).await;
    refresh_refused(&t, &s2.cookie).await;
    assert_eq!(t.me(&s2.access).await.status(), StatusCode::UNAUTHORIZED);
    let st = t.stats().await;
    assert_eq!(st["refresh"], 2);
    assert_eq!(st["refresh_grace"], 1);
    assert_eq!(st["reuse_detected"], 1);
}

async fn r1_fifty_concurrent_refreshes_get_the_same_successor(b: Backend) {
    let t = fixture(b, "fifty", |_| {}).await;
    let s = t.login("alice", "alice-password").await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let router = t.router.clone();
            let cookie = s.cookie.clone();
            tokio::spawn(async move {
                use tower::ServiceExt as _;
                let req = auth_post(authfetch_protocol::REFRESH_PATH)
                    .header(header::COOKIE, cookie_header(&cookie))
                    .body(Body::empty())
                    .unwrap();
                let r = router.oneshot(req).await.unwrap();
                (r.status(), cookie_value(&r))
            })
        })
        .collect();
    let mut successors = HashSet::new();
    for task in tasks {
        let (status, cookie) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        successors.insert(cookie.expect("cookie"));
    }
    assert_eq!(successors.len(), 1, "all 50 got the same successor");
    let st = t.stats().await;
    assert_eq!(st["refresh"], 1);
    assert_eq!(st["refresh_grace"], 49);
    assert_eq!(st["reuse_detected"], 0);
    // The family stays alive: the successor rotates.
    let succ = successors.into_iter().next().unwrap();
    let next = refresh_ok(&t, &succ).await;
    assert_eq!(t.me(&next.access).await.status(), StatusCode::OK);
}

async fn r1_parent_after_grace_is_reuse_and_kills_the_family(b: Backend) {
    let t = fixture(b, "reuse", |_| {}).await;
    let s0 = t.login("alice", "alice-password").await;
    let s1 = refresh_ok(&t, &s0.cookie).await;
    let other = t.login("alice", "alice-password").await;
    // The legitimate client uses its successor (a parent whose successor was never used
    // gets it again at any time: a3_a_lost_refresh_answer_never_costs_the_session).
    let s2 = refresh_ok(&t, &s1.cookie).await;
    t.advance(t.config.grace + Duration::from_secs(1));
    // The thief (or a stale tab) replays the spent parent after the window.
    refresh_refused(&t, &s0.cookie).await;
    // The whole family is dead: the legitimate successor and every access token of it.
    refresh_refused(&t, &s2.cookie).await;
    assert_eq!(t.me(&s0.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.me(&s1.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.me(&s2.access).await.status(), StatusCode::UNAUTHORIZED);
    // Other sessions of the same user are not affected.
    assert_eq!(t.me(&other.access).await.status(), StatusCode::OK);
    refresh_ok(&t, &other.cookie).await;
    assert_eq!(t.stats().await["reuse_detected"], 1);
}

async fn r1_unknown_token_revokes_nothing(b: Backend) {
    let t = fixture(b, "unknown", |_| {}).await;
    let s = t.login("alice", "alice-password").await;
    refresh_refused(&t, &RefreshToken::generate().secret()).await;
    refresh_refused(&t, "garbage").await;
    assert_eq!(t.stats().await["reuse_detected"], 0);
    assert_eq!(t.me(&s.access).await.status(), StatusCode::OK);
    refresh_ok(&t, &s.cookie).await;
}

async fn r2_idle_expiry_and_rotation_pushes_it_forward(b: Backend) {
    let hour = Duration::from_secs(3600);
    let t = fixture(b, "idle", |c| {
        c.idle_ttl = hour;
        c.session_ttl = 10 * hour;
    })
    .await;
    let s = t.login("alice", "alice-password").await;
    t.advance(hour - Duration::from_secs(60));
    let s = refresh_ok(&t, &s.cookie).await;
    t.advance(hour - Duration::from_secs(60));
    let s = refresh_ok(&t, &s.cookie).await;
    t.advance(hour);
    refresh_refused(&t, &s.cookie).await;
    assert_eq!(t.stats().await["reuse_detected"], 0, "expiry is not reuse");
}

async fn r2_absolute_expiry_is_never_extended(b: Backend) {
    let hour = Duration::from_secs(3600);
    let t = fixture(b, "absolute", |c| {
        c.idle_ttl = hour;
        c.session_ttl = 2 * hour;
    })
    .await;
    let r = t.send(login_req("alice", "alice-password")).await;
    let max_age = |r: &axum::http::Response<Body>| -> u64 {
        set_cookies(r)[0]
            .split("; ")
            .find_map(|a| a.strip_prefix("Max-Age="))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(max_age(&r), 7200);
    let mut cookie = cookie_value(&r).unwrap();
    let mut last = 7200;
    for _ in 0..2 {
        t.advance(Duration::from_secs(50 * 60));
        let r = t.refresh(&cookie).await;
        assert_eq!(r.status(), StatusCode::OK);
        let m = max_age(&r);
        assert!(
            m < last,
            "Max-Age shrinks with the absolute expiry: {m} < {last}"
        );
        last = m;
        cookie = cookie_value(&r).unwrap();
    }
    // 100 min in, 20 min idle budget left would allow it, but the absolute expiry is at 120.
    t.advance(Duration::from_secs(20 * 60));
    refresh_refused(&t, &cookie).await;
}

async fn r4_logout_all_revokes_every_family_and_access_token(b: Backend) {
    let t = fixture(b, "logout_all", |_| {}).await;
    let a1 = t.login("alice", "alice-password").await;
    let a2 = t.login("alice", "alice-password").await;
    let a2 = refresh_ok(&t, &a2.cookie).await;
    let bob = t.login("bob", "bob-password").await;
    t.advance(Duration::from_secs(1));
    let r = t
        .send(
            auth_post(LOGOUT_ALL_PATH)
                .header(header::COOKIE, cookie_header(&a1.cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for s in [&a1, &a2] {
        assert_eq!(t.me(&s.access).await.status(), StatusCode::UNAUTHORIZED);
        refresh_refused(&t, &s.cookie).await;
    }
    assert_eq!(t.me(&bob.access).await.status(), StatusCode::OK);
    refresh_ok(&t, &bob.cookie).await;
    assert_eq!(t.stats().await["logout_all"], 1);
    // A new login afterwards is a fresh start.
    t.advance(Duration::from_secs(1));
    let a3 = t.login("alice", "alice-password").await;
    assert_eq!(t.me(&a3.access).await.status(), StatusCode::OK);
    refresh_ok(&t, &a3.cookie).await;
}

async fn r4_password_change_revokes_every_family(b: Backend) {
    let t = fixture(b, "passwd", |_| {}).await;
    let a1 = t.login("alice", "alice-password").await;
    let a2 = t.login("alice", "alice-password").await;
    t.advance(Duration::from_secs(1));
    t.state
        .service
        .set_password("alice", Password::new("new-password".into()))
        .await
        .unwrap();
    for s in [&a1, &a2] {
        assert_eq!(t.me(&s.access).await.status(), StatusCode::UNAUTHORIZED);
        refresh_refused(&t, &s.cookie).await;
    }
    assert_eq!(
        t.send(login_req("alice", "alice-password")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    t.login("alice", "new-password").await;
}

async fn j13_logout_revokes_the_family_and_denylists_the_jti(b: Backend) {
    let t = fixture(b, "logout", |_| {}).await;
    let s = t.login("alice", "alice-password").await;
    let keep = t.login("alice", "alice-password").await;
    let r = t
        .send(
            auth_post(LOGOUT_PATH)
                .header(header::COOKIE, cookie_header(&s.cookie))
                .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.me(&s.access).await.status(), StatusCode::UNAUTHORIZED);
    refresh_refused(&t, &s.cookie).await;
    assert_eq!(t.me(&keep.access).await.status(), StatusCode::OK);
    // Bearer-only logout: the jti is denylisted, the family lives on.
    let r = t
        .send(
            auth_post(LOGOUT_PATH)
                .header(header::AUTHORIZATION, format!("Bearer {}", keep.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.me(&keep.access).await.status(), StatusCode::UNAUTHORIZED);
    let next = refresh_ok(&t, &keep.cookie).await;
    assert_eq!(t.me(&next.access).await.status(), StatusCode::OK);
}

async fn s3_login_replaces_the_presented_family(b: Backend) {
    let t = fixture(b, "s3", |_| {}).await;
    let old = t.login("alice", "alice-password").await;
    let mut req = login_req("alice", "alice-password");
    req.headers_mut()
        .insert(header::COOKIE, cookie_header(&old.cookie).parse().unwrap());
    let r = t.send(req).await;
    assert_eq!(r.status(), StatusCode::OK);
    let new_cookie = cookie_value(&r).unwrap();
    assert_ne!(new_cookie, old.cookie);
    refresh_refused(&t, &old.cookie).await;
    assert_eq!(t.me(&old.access).await.status(), StatusCode::UNAUTHORIZED);
    refresh_ok(&t, &new_cookie).await;
}

async fn restart_keeps_users_sessions_and_keys(b: Backend) {
    let f = fixture(b, "restart", |_| {}).await;
    let Fixture { t, redis } = f;
    let s = t.login("alice", "alice-password").await;
    let s1 = refresh_ok(&t, &s.cookie).await;
    let t = t.reopen().await;
    assert_eq!(t.me(&s1.access).await.status(), StatusCode::OK, "keys kept");
    // Grace state survives too: the parent still maps to the same successor.
    let again = refresh_ok(&t, &s.cookie).await;
    assert_eq!(again.cookie, s1.cookie);
    refresh_ok(&t, &s1.cookie).await;
    t.login("bob", "bob-password").await;
    drop(redis);
}

/// (iss, sub) → user: the same pair finds the same user; another issuer with the same `sub`,
/// or the same issuer with another `sub`, is another user; a taken name creates nothing.
async fn oidc_identity_links_by_issuer_and_subject_only(b: Backend) {
    let t = fixture(b, "oidc_identity", |_| {}).await;
    let store = t.state.service.store();
    let now = t.clock.now_ms();
    let a = store
        .user_for_identity("https://idp.one", "123", "one:123", "$argon2id$a", now)
        .await
        .unwrap();
    assert_eq!(a.username, "one:123");
    assert_eq!(store.user_by_id(&a.id).await.unwrap(), Some(a.clone()));
    // Same identity, another proposed name: the linked user, unchanged.
    let again = store
        .user_for_identity("https://idp.one", "123", "other-name", "$argon2id$x", now)
        .await
        .unwrap();
    assert_eq!(again, a);
    assert_eq!(store.user_by_name("other-name").await.unwrap(), None);
    // Same subject at another issuer, and another subject at the same issuer: new users.
    let b2 = store
        .user_for_identity("https://idp.two", "123", "two:123", "$argon2id$b", now)
        .await
        .unwrap();
    let c = store
        .user_for_identity("https://idp.one", "1234", "one:1234", "$argon2id$c", now)
        .await
        .unwrap();
    assert_ne!(b2.id, a.id);
    assert_ne!(c.id, a.id);
    // An issuer/subject split that concatenates to the same string is another identity.
    let d = store
        .user_for_identity("https://idp.one1", "23", "one1:23", "$argon2id$d", now)
        .await
        .unwrap();
    assert_ne!(d.id, a.id);
    // A new identity whose proposed name is taken (here by the password user alice): refused,
    // and not linked, so a later attempt with a free name creates the user.
    assert!(matches!(
        store
            .user_for_identity("https://idp.one", "999", "alice", "$argon2id$e", now)
            .await,
        Err(StoreError::UserExists)
    ));
    let e = store
        .user_for_identity("https://idp.one", "999", "one:999", "$argon2id$e", now)
        .await
        .unwrap();
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    assert_ne!(e.id, alice.id);
}

async fn store_level_users_denylist_and_access_checks(b: Backend) {
    let t = fixture(b, "store", |_| {}).await;
    let store = t.state.service.store();
    let now = t.clock.now_ms();
    // Users: unique names, lookups by name and id.
    assert!(matches!(
        store.create_user("alice", "$argon2id$x", now).await,
        Err(StoreError::UserExists)
    ));
    let carol = store
        .create_user("carol", "$argon2id$c", now)
        .await
        .unwrap();
    assert_eq!(
        store.user_by_name("carol").await.unwrap(),
        Some(carol.clone())
    );
    assert_eq!(
        store.user_by_id(&carol.id).await.unwrap(),
        Some(carol.clone())
    );
    assert_eq!(
        store.user_by_name("Carol").await.unwrap(),
        None,
        "exact names"
    );
    assert_eq!(store.user_by_id("nope").await.unwrap(), None);
    // Access checks: unknown users fail closed; unknown families fail closed.
    let q = |sub: &'static str, sid: Option<&'static str>, jti: &'static str| AccessCheck {
        iss: "authfetch",
        jti,
        sub,
        sid,
        iat: now / 1000,
    };
    assert!(store
        .is_access_revoked(q("ghost", None, "j"), now)
        .await
        .unwrap());
    let carol_id: &'static str = Box::leak(carol.id.clone().into_boxed_str());
    assert!(!store
        .is_access_revoked(q(carol_id, None, "j"), now)
        .await
        .unwrap());
    assert!(store
        .is_access_revoked(q(carol_id, Some("no-such-family"), "j"), now)
        .await
        .unwrap());
    // Another user's family does not vouch for carol.
    let s = t.login("alice", "alice-password").await;
    let sid = {
        use base64::Engine as _;
        let p = s.access.split('.').nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap();
        v["sid"].as_str().unwrap().to_owned()
    };
    let sid: &'static str = Box::leak(sid.into_boxed_str());
    assert!(store
        .is_access_revoked(q(carol_id, Some(sid), "j"), now)
        .await
        .unwrap());
    // Denylist: keyed by (iss, jti), keeps the later expiry, expires.
    store
        .deny_jti("authfetch", "j", now + 10_000)
        .await
        .unwrap();
    store.deny_jti("authfetch", "j", now + 5_000).await.unwrap();
    assert!(store
        .is_access_revoked(q(carol_id, None, "j"), now + 9_000)
        .await
        .unwrap());
    assert!(!store
        .is_access_revoked(q(carol_id, None, "j"), now + 10_000)
        .await
        .unwrap());
    assert!(!store
        .is_access_revoked(q(carol_id, None, "k"), now)
        .await
        .unwrap());
    // revoke_user counts live families and is idempotent.
    let user = store.user_by_name("alice").await.unwrap().unwrap();
    t.login("alice", "alice-password").await;
    assert_eq!(store.revoke_user(&user.id, now).await.unwrap(), 2);
    assert_eq!(store.revoke_user(&user.id, now).await.unwrap(), 0);
    // Purge leaves live sessions alone.
    let b = t.login("bob", "bob-password").await;
    store.purge(t.clock.now_ms(), 10_000).await.unwrap();
    refresh_ok(&t, &b.cookie).await;
}

// ---------------------------------------------------------------------------------------------
// Redis only.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_instances_share_sessions_login_on_a_refresh_on_b() {
    let f = fixture(Backend::Redis, "two", |_| {}).await;
    let a = &f.t;
    // Instances sharing a Redis also share the signing keys (the key file of the data dir).
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        a.dir.path().join(authfetch_server::keys::KEY_FILE),
        b_dir.path().join(authfetch_server::keys::KEY_FILE),
    )
    .unwrap();
    let mut b_config = a.config.clone();
    b_config.data_dir = b_dir.path().to_owned();
    let b = TestApp::attach(b_config, a.clock.clone()).await;

    let s0 = a.login("alice", "alice-password").await;
    assert_eq!(
        b.me(&s0.access).await.status(),
        StatusCode::OK,
        "B accepts A's token"
    );
    let s1 = refresh_ok(&b, &s0.cookie).await;
    // A tab that still has the parent asks A inside the grace window: the same successor.
    let again = refresh_ok(a, &s0.cookie).await;
    assert_eq!(again.cookie, s1.cookie);
    // 50 concurrent refreshes of the new cookie, split across both instances.
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let router = if i % 2 == 0 {
                a.router.clone()
            } else {
                b.router.clone()
            };
            let cookie = s1.cookie.clone();
            tokio::spawn(async move {
                use tower::ServiceExt as _;
                let req = auth_post(authfetch_protocol::REFRESH_PATH)
                    .header(header::COOKIE, cookie_header(&cookie))
                    .body(Body::empty())
                    .unwrap();
                let r = router.oneshot(req).await.unwrap();
                (r.status(), cookie_value(&r))
            })
        })
        .collect();
    let mut successors = HashSet::new();
    for task in tasks {
        let (status, cookie) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        successors.insert(cookie.unwrap());
    }
    assert_eq!(successors.len(), 1, "one successor across two instances");
    let s2 = successors.into_iter().next().unwrap();
    // Reuse detected on B kills the family for A too.
    a.advance(a.config.grace + Duration::from_secs(1));
    refresh_refused(&b, &s0.cookie).await;
    refresh_refused(a, &s2).await;
    assert_eq!(a.me(&s1.access).await.status(), StatusCode::UNAUTHORIZED);
    // Logout on A is seen by B.
    let s = b.login("bob", "bob-password").await;
    let r = a
        .send(
            auth_post(LOGOUT_PATH)
                .header(header::COOKIE, cookie_header(&s.cookie))
                .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(b.me(&s.access).await.status(), StatusCode::UNAUTHORIZED);
    refresh_refused(&b, &s.cookie).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_redis_rate_limits_are_shared_by_every_instance() {
    let f = fixture(Backend::Redis, "r9shared", tight_limits).await;
    let a = &f.t;
    let mut b_config = a.config.clone();
    let b_dir = tempfile::tempdir().unwrap();
    b_config.data_dir = b_dir.path().to_owned();
    let b = TestApp::attach(b_config, a.clock.clone()).await;
    // Three failures for one account, spread over two instances...
    for t in [a, &b, a] {
        let r = t.send(login_req("alice", "nope")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // ...exhaust the account on both: N instances do not allow N times the limit.
    for t in [&b, a] {
        let r = t.send(login_req("alice", "alice-password")).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
    }
    a.advance(Duration::from_secs(61));
    b.login("alice", "alice-password").await;
}

/// Another Rust service: verifies with the server's JWKS URL and checks revocation in the same
/// Redis through `StoreRevocation`, so a logout on the server is effective there at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j14_another_service_on_the_same_redis_sees_logouts_at_once() {
    use authfetch_server::service::StoreRevocation;
    use authfetch_server::store::redis::RedisStore;
    use authfetch_server::verify::{Verifier, VerifierConfig, VerifyError};
    use std::future::IntoFuture as _;
    use std::sync::Arc;
    let f = fixture(Backend::Redis, "other_service", |_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, f.t.router.clone()).into_future());
    let store =
        RedisStore::connect_with_prefix(&f.redis.as_ref().unwrap().url, &f.t.config.redis_prefix)
            .await
            .unwrap();
    let other = Verifier::builder(VerifierConfig::new("authfetch", "authfetch-api"))
        .jwks_url(format!("http://{addr}/.well-known/jwks.json"))
        .revocation(Arc::new(StoreRevocation::with_clock(
            Arc::new(store),
            f.t.clock.clone(),
        )))
        .build()
        .unwrap();
    // A verifier without the store: signature and claims only.
    let plain = Verifier::with_jwks_url(
        VerifierConfig::new("authfetch", "authfetch-api"),
        format!("http://{addr}/.well-known/jwks.json"),
    )
    .unwrap();
    let s = f.login("alice", "alice-password").await;
    assert_eq!(other.verify(&s.access).await.unwrap().iss, "authfetch");
    let r = f
        .send(
            auth_post(LOGOUT_PATH)
                .header(header::COOKIE, cookie_header(&s.cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(matches!(
        other.verify(&s.access).await,
        Err(VerifyError::Invalid(
            authfetch_server::jwt::JwtError::Revoked
        ))
    ));
    assert!(
        plain.verify(&s.access).await.is_ok(),
        "without a revocation check a revoked token lives until exp (documented)"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_per_user_family_index_drops_collected_families() {
    let f = fixture(Backend::Redis, "ufams", |_| {}).await;
    let prefix = f.t.config.redis_prefix.clone();
    let user = f
        .state
        .service
        .store()
        .user_by_name("alice")
        .await
        .unwrap()
        .unwrap();
    let client = ::redis::Client::open(f.redis.as_ref().unwrap().url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let ufams = format!("{prefix}ufams:{}", user.id);
    f.login("alice", "alice-password").await;
    f.login("alice", "alice-password").await;
    let ids: Vec<String> = ::redis::cmd("SMEMBERS")
        .arg(&ufams)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    // Redis collects both families (as it does a day after their absolute expiry).
    for id in &ids {
        let _: i64 = ::redis::cmd("DEL")
            .arg(format!("{prefix}fam:{id}"))
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let s = f.login("alice", "alice-password").await;
    let left: Vec<String> = ::redis::cmd("SMEMBERS")
        .arg(&ufams)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "only the live family remains: {left:?}");
    assert!(!ids.contains(&left[0]));
    refresh_ok(&f, &s.cookie).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_redis_holds_only_hashes_of_refresh_tokens() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let f = fixture(Backend::Redis, "r6", |_| {}).await;
    let s0 = f.login("alice", "alice-password").await;
    let s1 = refresh_ok(&f, &s0.cookie).await;
    let client = ::redis::Client::open(f.redis.as_ref().unwrap().url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut blob: Vec<u8> = Vec::new();
    for k in &keys {
        blob.extend_from_slice(k);
        let kind: String = ::redis::cmd("TYPE")
            .arg(k)
            .query_async(&mut c)
            .await
            .unwrap();
        let vals: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => ::redis::cmd("HGETALL")
                .arg(k)
                .query_async(&mut c)
                .await
                .unwrap(),
            "set" => ::redis::cmd("SMEMBERS")
                .arg(k)
                .query_async(&mut c)
                .await
                .unwrap(),
            "string" => vec![::redis::cmd("GET")
                .arg(k)
                .query_async(&mut c)
                .await
                .unwrap()],
            other => panic!("unexpected type {other}"),
        };
        for v in vals {
            blob.extend_from_slice(&v);
        }
    }
    let contains = |needle: &[u8]| blob.windows(needle.len()).any(|w| w == needle);
    for tok in [&s0.cookie, &s1.cookie] {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tok)
            .unwrap();
        assert!(!contains(tok.as_bytes()), "cookie value stored");
        assert!(!contains(&raw), "raw token stored");
        let h = sha2::Sha256::digest(&raw);
        assert!(
            contains(authfetch_server::secret::hex(&h).as_bytes()),
            "hash index present"
        );
    }
    assert!(!contains(b"alice-password"));
}

/// A4: a Redis without an append-only file loses acknowledged writes when it restarts; the
/// server refuses it at start unless `redis_allow_volatile` (`--redis-allow-volatile`) says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_a_redis_without_aof_is_refused_at_start_unless_allowed() {
    let volatile = RedisServer::start_volatile();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.store = StoreKind::Redis(volatile.url.clone());
    config.redis_prefix = unique_prefix("a4");
    let clock = std::sync::Arc::new(authfetch_server::clock::ManualClock::starting_now());
    let refused = authfetch_server::open_with_clock(config.clone(), clock.clone()).await;
    assert!(
        matches!(refused, Err(authfetch_server::StartupError::VolatileRedis)),
        "{refused:?}"
    );
    config.redis_allow_volatile = true;
    assert!(
        authfetch_server::open_with_clock(config.clone(), clock.clone())
            .await
            .is_ok()
    );
    // With the append-only file (what RedisServer::start runs), no flag is needed.
    let durable = RedisServer::start();
    config.store = StoreKind::Redis(durable.url.clone());
    config.redis_allow_volatile = false;
    assert!(authfetch_server::open_with_clock(config, clock)
        .await
        .is_ok());
}

/// A4: with the append-only file, `kill -9` of Redis and a restart lose no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_with_aof_a_kill_9_of_redis_loses_no_session() {
    let mut f = fixture(Backend::Redis, "a4_kill", |_| {}).await;
    let s0 = f.t.login("alice", "alice-password").await;
    let s1 = refresh_ok(&f.t, &s0.cookie).await;
    f.redis.as_mut().unwrap().restart(); // SIGKILL, then start on the same files
    let mut next = None;
    for _ in 0..3 {
        // The first call after the restart may hit the dropped connection.
        let r = f.t.refresh(&s1.cookie).await;
        if r.status() == StatusCode::OK {
            next = cookie_value(&r);
            break;
        }
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert!(next.is_some(), "the session survived the Redis restart");
    assert_eq!(f.t.me(&s1.access).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_a_clean_500_and_the_store_reconnects() {
    let mut f = fixture(Backend::Redis, "outage", |_| {}).await;
    let s = f.t.login("alice", "alice-password").await;
    f.redis.as_mut().unwrap().kill();
    let r = f.t.refresh(&s.cookie).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(cookie_value(&r).is_none());
    assert!(
        !set_cookies(&r).iter().any(|c| c.contains("Max-Age=0")),
        "an outage does not clear the cookie"
    );
    assert_eq!(error_code(r).await, "server_error");
    let r = f.t.me(&s.access).await;
    assert!(
        r.status().is_server_error(),
        "revocation check fails closed"
    );
    // Redis comes back: the store reconnects.
    f.redis.as_mut().unwrap().restart();
    let store = f.t.state.service.store();
    let mut ok = false;
    for _ in 0..3 {
        if store.create_user("dave", "$argon2id$d", 0).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "reconnected");
    assert!(store.user_by_name("dave").await.unwrap().is_some());
}
