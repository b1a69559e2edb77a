//! HTTP behaviour through `oneshot` on `app()`: cookies (C*), CSRF (X*), login (P*, S3),
//! rotation (R*), logout, the demo resources, robustness against garbage.

mod common;

use authfetch_protocol::{
    CSRF_HEADER, LOGIN_PATH, LOGOUT_ALL_PATH, LOGOUT_PATH, REFRESH_COOKIE, REFRESH_PATH,
    WWW_AUTHENTICATE_INVALID_TOKEN,
};
use authfetch_server::config::{Limit, PasswordParams, RateLimits};
use authfetch_server::secret::{Password, RefreshToken};
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use common::*;
use sha2::Digest as _;
use std::time::Duration;

const AUTH_PATHS: [&str; 4] = [LOGIN_PATH, REFRESH_PATH, LOGOUT_PATH, LOGOUT_ALL_PATH];

fn attrs(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn c1_login_sets_host_prefixed_secure_httponly_strict_cookie() {
    let t = TestApp::new().await;
    let r = t.send(login_req("alice", "alice-password")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1);
    let c = &cookies[0];
    assert!(c.starts_with(&format!("{REFRESH_COOKIE}=")), "{c}");
    let a = attrs(c);
    for want in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(a.iter().any(|x| x == want), "missing {want} in {c}");
    }
    assert!(
        !a.iter()
            .any(|x| x.to_ascii_lowercase().starts_with("domain")),
        "{c}"
    );
    let max_age: u64 = a
        .iter()
        .find_map(|x| x.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .unwrap();
    assert!(
        max_age > 0 && max_age <= t.config.session_ttl.as_secs(),
        "{max_age}"
    );
    // The value is 256 bits of base64url.
    let v = cookie_value(&r).unwrap();
    assert!(RefreshToken::parse(&v).is_some());
}

#[tokio::test]
async fn c5_cookie_deletion_repeats_every_attribute_with_max_age_zero() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    let expected =
        format!("{REFRESH_COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    for path in [LOGOUT_PATH, LOGOUT_ALL_PATH] {
        let r = t
            .send(
                auth_post(path)
                    .header(header::COOKIE, cookie_header(&s.cookie))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(set_cookies(&r), vec![expected.clone()], "{path}");
    }
    // A refused refresh clears it too.
    let r = t.refresh(&s.cookie).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(set_cookies(&r), vec![expected]);
}

#[tokio::test]
async fn x2_cookie_posts_require_the_custom_header() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    for path in AUTH_PATHS {
        for value in [None, Some("0"), Some("true"), Some(" 1"), Some("11")] {
            let mut b = Request::post(path).header(header::COOKIE, cookie_header(&s.cookie));
            if let Some(v) = value {
                b = b.header(CSRF_HEADER, v);
            }
            let r = t.send(b.body(Body::empty()).unwrap()).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} {value:?}");
            assert_eq!(error_code(r).await, "invalid_request");
        }
    }
    // Nothing happened: the session is intact.
    assert_eq!(t.stats().await["logout"], 0);
    assert_eq!(t.refresh(&s.cookie).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn x3_bodies_must_be_application_json() {
    let t = TestApp::new().await;
    let body = r#"{"username":"alice","password":"alice-password"}"#;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        Some("text/json"),
        None,
    ] {
        let mut b = auth_post(LOGIN_PATH);
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let r = t.send(b.body(Body::from(body)).unwrap()).await;
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(error_code(r).await, "invalid_request");
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        let r = t
            .send(
                auth_post(LOGIN_PATH)
                    .header(header::CONTENT_TYPE, ct)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{ct}");
    }
    // A body on refresh must be JSON too; no body needs no content type.
    let s = t.login("alice", "alice-password").await;
    let r = t
        .send(
            auth_post(REFRESH_PATH)
                .header(header::COOKIE, cookie_header(&s.cookie))
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(t.refresh(&s.cookie).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn x7_auth_endpoints_are_post_only() {
    let t = TestApp::new().await;
    for path in AUTH_PATHS {
        for m in ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            let r = t
                .send(
                    Request::builder()
                        .method(m)
                        .uri(path)
                        .header(CSRF_HEADER, "1")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
        }
    }
}

#[tokio::test]
async fn x4_sec_fetch_site_must_be_same_origin_when_present() {
    let t = TestApp::new().await;
    for sfs in ["cross-site", "same-site", "none", "SAME-ORIGIN", ""] {
        let mut req = login_req("alice", "alice-password");
        req.headers_mut()
            .insert("sec-fetch-site", HeaderValue::from_str(sfs).unwrap());
        let r = t.send(req).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{sfs}");
        assert_eq!(error_code(r).await, "access_denied");
    }
    let mut req = login_req("alice", "alice-password");
    req.headers_mut()
        .insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
    req.headers_mut()
        .insert(header::ORIGIN, HeaderValue::from_static(ORIGIN));
    assert_eq!(t.send(req).await.status(), StatusCode::OK);
    assert_eq!(t.stats().await["login"], 1);
}

#[tokio::test]
async fn x5_origin_must_match_an_allowed_origin_exactly() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    for origin in [
        "https://evil.example",
        "null",
        "http://localhost:3000/",
        "http://localhost:3001",
        "https://localhost:3000",
        "http://LOCALHOST:3000",
        "http://localhost:3000.evil.example",
    ] {
        let r = t
            .send(
                auth_post(REFRESH_PATH)
                    .header(header::ORIGIN, origin)
                    .header(header::COOKIE, cookie_header(&s.cookie))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(error_code(r).await, "access_denied");
    }
    // Two Origin headers are refused too.
    let r = t
        .send(
            auth_post(REFRESH_PATH)
                .header(header::ORIGIN, ORIGIN)
                .header(header::ORIGIN, "https://evil.example")
                .header(header::COOKIE, cookie_header(&s.cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = t
        .send(
            auth_post(REFRESH_PATH)
                .header(header::ORIGIN, ORIGIN)
                .header(header::COOKIE, cookie_header(&s.cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn x6_no_cors_headers_are_ever_sent() {
    let t = TestApp::new().await;
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri(REFRESH_PATH)
        .header(header::ORIGIN, "https://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-authfetch")
        .body(Body::empty())
        .unwrap();
    let r = t.send(preflight).await;
    assert!(r.status().is_client_error());
    let mut req = login_req("alice", "alice-password");
    req.headers_mut()
        .insert(header::ORIGIN, HeaderValue::from_static(ORIGIN));
    let ok = t.send(req).await;
    for resp in [r, ok] {
        for h in resp.headers().keys() {
            assert!(!h.as_str().starts_with("access-control-"), "{h}");
        }
    }
}

#[tokio::test]
async fn p1_password_hashes_are_argon2id_m19456_t2_p1() {
    assert_eq!(
        authfetch_server::Config::new("x").password_params,
        PasswordParams::P1
    );
    let t = TestApp::with(|c| c.password_params = PasswordParams::P1).await;
    let u = t
        .state
        .service
        .store()
        .user_by_name("alice")
        .await
        .unwrap()
        .unwrap();
    assert!(
        u.password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        u.password_hash
    );
    assert_eq!(
        t.login("alice", "alice-password")
            .await
            .access
            .split('.')
            .count(),
        3
    );
}

#[tokio::test]
async fn p2_password_length_is_capped_before_hashing() {
    let t = TestApp::new().await;
    let before = t.state.service.passwords().verifications();
    let r = t.send(login_req("alice", &"a".repeat(1025))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = t.send(login_req("alice", "")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        t.state.service.passwords().verifications(),
        before,
        "no Argon2 work for rejected lengths"
    );
    // Bodies over the auth limit are refused before parsing.
    let huge = format!(
        r#"{{"username":"alice","password":"{}"}}"#,
        "a".repeat(64 * 1024)
    );
    let r = t
        .send(
            auth_post(LOGIN_PATH)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(huge))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "invalid_request");
}

#[tokio::test]
async fn p2_concurrent_hashes_are_bounded_by_a_semaphore() {
    // With one permit, eight concurrent logins still all complete (queued, not refused).
    let t = TestApp::with(|c| c.max_concurrent_hashes = 1).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let router = t.router.clone();
        set.spawn(async move {
            use tower::ServiceExt as _;
            router
                .oneshot(login_req("bob", "bob-password"))
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(s) = set.join_next().await {
        assert_eq!(s.unwrap(), StatusCode::OK);
    }
}

#[tokio::test]
async fn p3_unknown_user_and_wrong_password_answer_the_same_at_the_same_cost() {
    let t = TestApp::with(|c| {
        c.password_params = PasswordParams {
            m_cost: 4096,
            t_cost: 1,
            p_cost: 1,
        };
    })
    .await;
    let attempt = |user: &'static str| {
        let t = &t;
        async move {
            let v0 = t.state.service.passwords().verifications();
            let r = t.send(login_req(user, "wrong-password")).await;
            let hashed = t.state.service.passwords().verifications() - v0;
            (r.status(), body_bytes(r).await, hashed)
        }
    };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..3 {
        known.push(attempt("alice").await);
        unknown.push(attempt("mallory").await);
    }
    for (k, u) in known.iter().zip(&unknown) {
        assert_eq!(k.0, StatusCode::UNAUTHORIZED);
        assert_eq!(k.0, u.0);
        assert_eq!(k.1, u.1, "identical bodies");
        assert_eq!((k.2, u.2), (1, 1), "one Argon2 verification each");
    }
    // The cost is proven by counting, not by timing (timed assertions flake on a shared
    // machine and belong in bench/): both paths run exactly one Argon2id verification with the
    // same parameters, the dummy hash having been made with them (`password.rs`).
    let params = |h: &str| h.split('$').nth(3).map(str::to_owned);
    let real = t
        .state
        .service
        .store()
        .user_by_name("alice")
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert_eq!(
        params(&real),
        params(t.state.service.passwords().dummy_hash()),
        "the dummy hash costs what a real one does"
    );
}

#[tokio::test]
async fn s3_login_starts_a_new_family_and_revokes_the_presented_one() {
    let t = TestApp::new().await;
    let first = t.login("alice", "alice-password").await;
    let mut req = login_req("alice", "alice-password");
    req.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&cookie_header(&first.cookie)).unwrap(),
    );
    let r = t.send(req).await;
    assert_eq!(r.status(), StatusCode::OK);
    let second = cookie_value(&r).unwrap();
    assert_ne!(second, first.cookie);
    assert_eq!(
        t.refresh(&first.cookie).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(t.me(&first.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.refresh(&second).await.status(), StatusCode::OK);
    // Two logins without a cookie are two independent families.
    let a = t.login("bob", "bob-password").await;
    let b = t.login("bob", "bob-password").await;
    assert_eq!(t.refresh(&a.cookie).await.status(), StatusCode::OK);
    assert_eq!(t.refresh(&b.cookie).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn r9_login_is_rate_limited_per_account_and_per_ip_with_retry_after() {
    let t = TestApp::with(|c| {
        c.rate_limits = RateLimits {
            login_per_ip: Limit {
                max: 5,
                window: Duration::from_secs(60),
            },
            login_per_account: Limit {
                max: 3,
                window: Duration::from_secs(60),
            },
            refresh_per_ip: Limit {
                max: 2,
                window: Duration::from_secs(60),
            },
        };
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            t.send(login_req("alice", "nope")).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = t.send(login_req("alice", "alice-password")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(error_code(r).await, "rate_limited");
    // Per IP (5): the four attempts above counted; one more for another account, then the IP is out.
    assert_eq!(
        t.send(login_req("bob", "bob-password")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        t.send(login_req("carol", "x")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Refresh has its own per-IP limit.
    let fake = RefreshToken::generate().secret();
    assert_eq!(t.refresh(&fake).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.refresh(&fake).await.status(), StatusCode::UNAUTHORIZED);
    let r = t.refresh(&fake).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    // The window passes.
    t.advance(Duration::from_secs(61));
    assert_eq!(
        t.send(login_req("alice", "alice-password")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn r1_refresh_rotates_the_cookie_and_issues_a_new_access_token() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    t.advance(Duration::from_secs(1));
    let r = t.refresh(&s.cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    let next = cookie_value(&r).unwrap();
    assert_ne!(next, s.cookie);
    let body = json(r).await;
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() <= 60);
    let access = body["access_token"].as_str().unwrap();
    assert_ne!(access, s.access);
    assert_eq!(t.me(access).await.status(), StatusCode::OK);
    let st = t.stats().await;
    assert_eq!(
        (st["refresh"].as_u64(), st["refresh_grace"].as_u64()),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn r1_fifty_concurrent_refreshes_with_one_cookie_get_the_same_successor() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let router = t.router.clone();
        let cookie = s.cookie.clone();
        set.spawn(async move {
            use tower::ServiceExt as _;
            let req = auth_post(REFRESH_PATH)
                .header(header::COOKIE, cookie_header(&cookie))
                .body(Body::empty())
                .unwrap();
            let r = router.oneshot(req).await.unwrap();
            let status = r.status();
            let c = cookie_value(&r);
            let body = json(r).await;
            (status, c, body["access_token"].as_str().map(str::to_owned))
        });
    }
    let mut successors = std::collections::HashSet::new();
    let mut accesses = Vec::new();
    while let Some(res) = set.join_next().await {
        let (status, c, a) = res.unwrap();
        assert_eq!(status, StatusCode::OK);
        successors.insert(c.expect("cookie"));
        accesses.push(a.expect("access token"));
    }
    assert_eq!(successors.len(), 1, "one successor for everyone");
    let st = t.stats().await;
    assert_eq!(st["refresh"], 1);
    assert_eq!(st["refresh_grace"], 49);
    assert_eq!(st["reuse_detected"], 0);
    // The family is alive: the successor rotates, and every access token handed out works.
    for a in accesses.iter().take(5) {
        assert_eq!(t.me(a).await.status(), StatusCode::OK);
    }
    let succ = successors.into_iter().next().unwrap();
    assert_eq!(t.refresh(&succ).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn r1_parent_replayed_after_grace_revokes_the_family_and_its_access_tokens() {
    let t = TestApp::new().await;
    let s0 = t.login("alice", "alice-password").await;
    let r = t.refresh(&s0.cookie).await;
    let c1 = cookie_value(&r).unwrap();
    let a1 = json(r).await["access_token"].as_str().unwrap().to_owned();
    // Within grace: same successor.
    t.advance(Duration::from_secs(9));
    let r = t.refresh(&s0.cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(cookie_value(&r).unwrap(), c1);
    // After grace (measured from the first use), once the successor has been used: reuse.
    // (Before its first use the parent still gets it: see
    // a3_a_lost_refresh_answer_past_the_grace_window_still_gets_the_same_successor.)
    let r = t.refresh(&c1).await;
    assert_eq!(r.status(), StatusCode::OK);
    let c2 = cookie_value(&r).unwrap();
    t.advance(Duration::from_secs(2));
    let r = t.refresh(&s0.cookie).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(cookie_value(&r), None, "cookie cleared");
    assert_eq!(error_code(r).await, "invalid_grant");
    assert_eq!(t.stats().await["reuse_detected"], 1);
    for a in [&s0.access, &a1] {
        let r = t.me(a).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            WWW_AUTHENTICATE_INVALID_TOKEN
        );
    }
    assert_eq!(
        t.refresh(&c2).await.status(),
        StatusCode::UNAUTHORIZED,
        "the whole family is dead"
    );
    // Other users are unaffected.
    let b = t.login("bob", "bob-password").await;
    assert_eq!(t.me(&b.access).await.status(), StatusCode::OK);
}

/// A3 over HTTP: a rotation committed but never answered (the server crashed, the connection
/// dropped); the client presents its old cookie after the grace window, even after a restart.
#[tokio::test]
async fn a3_a_lost_refresh_answer_past_the_grace_window_still_gets_the_same_successor() {
    let t = TestApp::new().await;
    let s0 = t.login("alice", "alice-password").await;
    let lost = cookie_value(&t.refresh(&s0.cookie).await).unwrap();
    let t = t.reopen().await;
    t.advance(t.config.grace + Duration::from_secs(60));
    let r = t.refresh(&s0.cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(cookie_value(&r).unwrap(), lost, "the same successor");
    let access = json(r).await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(t.me(&access).await.status(), StatusCode::OK);
    assert_eq!(t.stats().await["reuse_detected"], 0);
    // The client carries on with the successor; the old cookie is now spent.
    let r = t.refresh(&lost).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = t.refresh(&s0.cookie).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.stats().await["reuse_detected"], 1);
}

/// Two `Authorization` headers are ambiguous: 401 with `error="invalid_request"` (RFC 6750
/// §3.1), not a bare challenge that looks like "no token" and not `invalid_token` (which would
/// make a client refresh).
#[tokio::test]
async fn two_authorization_headers_get_401_invalid_request() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    for second in [format!("Bearer {}", s.access), "Bearer other".to_owned()] {
        let r = t
            .send(
                Request::get("/api/me")
                    .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
                    .header(header::AUTHORIZATION, second)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_request\""
        );
        assert_eq!(error_code(r).await, "invalid_request");
    }
}

#[tokio::test]
async fn r1_grandparent_within_grace_is_reuse() {
    let t = TestApp::new().await;
    let s0 = t.login("alice", "alice-password").await;
    let c1 = cookie_value(&t.refresh(&s0.cookie).await).unwrap();
    let c2 = cookie_value(&t.refresh(&c1).await).unwrap();
    assert_ne!(c1, c2);
    let r = t.refresh(&s0.cookie).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.stats().await["reuse_detected"], 1);
    assert_eq!(t.refresh(&c2).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn r1_unknown_or_garbage_cookie_is_401_and_revokes_nothing() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    for bad in [
        RefreshToken::generate().secret(),
        "x".into(),
        "".into(),
        format!("{}=", s.cookie),
        s.cookie.to_uppercase(),
    ] {
        let r = t.refresh(&bad).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(error_code(r).await, "invalid_grant");
    }
    assert_eq!(t.stats().await["reuse_detected"], 0);
    assert_eq!(t.me(&s.access).await.status(), StatusCode::OK);
    assert_eq!(t.refresh(&s.cookie).await.status(), StatusCode::OK);
}

/// A quiet start: a signed-out page's start-up refresh carries no cookie at all, and gets
/// `204` ("no session"), which browsers do not print as an error; it clears nothing, counts as
/// no refused refresh, and a present but stale, empty or garbage cookie is still `401`.
#[tokio::test]
async fn r1_refresh_without_any_cookie_is_204_no_session() {
    let t = TestApp::new().await;
    // Headers that hold no refresh cookie: none, others' cookies, and pairs that parse as no
    // cookie of ours (RFC 6265bis reads a pair without `=` as a nameless cookie's value).
    for cookie in [
        None,
        Some("other=1; theme=dark"),
        Some("__Host-authfetch_rt"),
        Some("=;=;;;"),
    ] {
        let mut req = auth_post(REFRESH_PATH);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let r = t.send(req.body(Body::empty()).unwrap()).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{cookie:?}");
        assert!(set_cookies(&r).is_empty(), "nothing to clear");
        assert_eq!(
            r.headers().get(header::CACHE_CONTROL).unwrap(),
            "no-store",
            "{cookie:?}"
        );
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert!(body.is_empty());
    }
    assert_eq!(t.stats().await["refresh_failed"], 0);
    // The CSRF rules still come first (X2): no custom header, no answer about the session.
    let r = t
        .send(Request::post(REFRESH_PATH).body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    for present in ["", "garbage"] {
        let r = t.refresh(present).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{present:?}");
        assert_eq!(error_code(r).await, "invalid_grant");
    }
    let s = t.login("alice", "alice-password").await;
    t.send(
        auth_post(LOGOUT_PATH)
            .header(header::COOKIE, cookie_header(&s.cookie))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let r = t.refresh(&s.cookie).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a revoked cookie");
    assert_eq!(t.stats().await["refresh_failed"], 3);
}

#[tokio::test]
async fn r2_absolute_expiry_is_never_extended_by_rotation() {
    let t = TestApp::with(|c| {
        c.session_ttl = Duration::from_secs(100);
        c.idle_ttl = Duration::from_secs(60);
    })
    .await;
    let mut cookie = t.login("alice", "alice-password").await.cookie;
    let mut last_max_age = u64::MAX;
    for _ in 0..3 {
        t.advance(Duration::from_secs(30));
        let r = t.refresh(&cookie).await;
        assert_eq!(r.status(), StatusCode::OK);
        let sc = set_cookies(&r)[0].clone();
        let max_age: u64 = attrs(&sc)
            .iter()
            .find_map(|a| a.strip_prefix("Max-Age=").map(str::to_owned))
            .unwrap()
            .parse()
            .unwrap();
        assert!(max_age < last_max_age, "Max-Age shrinks: {max_age}");
        last_max_age = max_age;
        cookie = cookie_value(&r).unwrap();
    }
    t.advance(Duration::from_secs(11)); // 101 s after login, 11 s after the last use
    assert_eq!(t.refresh(&cookie).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.stats().await["reuse_detected"], 0, "expiry is not reuse");
}

#[tokio::test]
async fn r2_idle_expiry_ends_an_unused_family() {
    let t = TestApp::with(|c| c.idle_ttl = Duration::from_secs(30)).await;
    let s = t.login("alice", "alice-password").await;
    t.advance(Duration::from_secs(20));
    let c1 = cookie_value(&t.refresh(&s.cookie).await).unwrap();
    t.advance(Duration::from_secs(29));
    let c2 = cookie_value(&t.refresh(&c1).await).unwrap();
    t.advance(Duration::from_secs(31));
    assert_eq!(t.refresh(&c2).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn r4_logout_all_revokes_every_family_and_every_access_token_of_the_user() {
    let t = TestApp::new().await;
    let a = t.login("alice", "alice-password").await;
    let b = t.login("alice", "alice-password").await;
    let other = t.login("bob", "bob-password").await;
    let r = t
        .send(
            auth_post(LOGOUT_ALL_PATH)
                .header(header::AUTHORIZATION, format!("Bearer {}", a.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for s in [&a, &b] {
        assert_eq!(t.me(&s.access).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            t.refresh(&s.cookie).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(t.me(&other.access).await.status(), StatusCode::OK);
    // A login right after (same second) works.
    let c = t.login("alice", "alice-password").await;
    assert_eq!(t.me(&c.access).await.status(), StatusCode::OK);
    assert_eq!(t.stats().await["logout_all"], 1);
}

#[tokio::test]
async fn r4_logout_all_by_cookie_alone() {
    let t = TestApp::new().await;
    let a = t.login("alice", "alice-password").await;
    let b = t.login("alice", "alice-password").await;
    let r = t
        .send(
            auth_post(LOGOUT_ALL_PATH)
                .header(header::COOKIE, cookie_header(&a.cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.me(&b.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.refresh(&b.cookie).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Idempotent, even with nothing at all.
    let r = t
        .send(auth_post(LOGOUT_ALL_PATH).body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn r4_password_change_revokes_every_session() {
    let t = TestApp::new().await;
    let a = t.login("alice", "alice-password").await;
    t.state
        .service
        .set_password("alice", Password::new("new-password".into()))
        .await
        .unwrap();
    assert_eq!(
        t.refresh(&a.cookie).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(t.me(&a.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.send(login_req("alice", "alice-password")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    t.login("alice", "new-password").await;
}

#[tokio::test]
async fn r6_store_holds_only_hashes_of_refresh_tokens() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    let c1 = cookie_value(&t.refresh(&s.cookie).await).unwrap();
    let db = rusqlite::Connection::open(t.dir.path().join("authfetch.sqlite3")).unwrap();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for sql in [
        "SELECT hash FROM refresh_tokens",
        "SELECT successor_hash FROM refresh_tokens WHERE successor_hash IS NOT NULL",
        "SELECT successor_sealed FROM refresh_tokens WHERE successor_sealed IS NOT NULL",
        "SELECT current_hash FROM families",
    ] {
        let mut st = db.prepare(sql).unwrap();
        blobs.extend(
            st.query_map([], |r| r.get::<_, Vec<u8>>(0))
                .unwrap()
                .map(Result::unwrap),
        );
    }
    assert!(blobs.len() >= 4);
    for tok in [&s.cookie, &c1] {
        let raw =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, tok).unwrap();
        let hash = sha2::Sha256::digest(&raw).to_vec();
        assert!(blobs.contains(&hash), "hash stored");
        assert!(!blobs.contains(&raw), "raw token never stored");
    }
    let dump: Vec<u8> =
        std::fs::read(t.dir.path().join("authfetch.sqlite3-wal")).unwrap_or_default();
    assert!(!dump
        .windows(s.cookie.len())
        .any(|w| w == s.cookie.as_bytes()));
}

#[tokio::test]
async fn r8_token_responses_are_no_store() {
    let t = TestApp::new().await;
    let r = t.send(login_req("alice", "alice-password")).await;
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let c = cookie_value(&r).unwrap();
    let r = t.refresh(&c).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let r = t.refresh("nope").await;
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn j13_logout_denylists_the_bearer_jti_and_revokes_the_family_idempotently() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    let other = t.login("alice", "alice-password").await;
    let logout = || {
        auth_post(LOGOUT_PATH)
            .header(header::COOKIE, cookie_header(&s.cookie))
            .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
            .body(Body::empty())
            .unwrap()
    };
    let r = t.send(logout()).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.me(&s.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.refresh(&s.cookie).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.me(&other.access).await.status(),
        StatusCode::OK,
        "other sessions live on"
    );
    assert_eq!(t.send(logout()).await.status(), StatusCode::NO_CONTENT);
    // Cookie-only logout works as well.
    let r = t
        .send(
            auth_post(LOGOUT_PATH)
                .header(header::COOKIE, cookie_header(&other.cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.me(&other.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.stats().await["logout"], 3);
}

#[tokio::test]
async fn j13_a_denylisted_jti_stays_rejected_until_expiry_then_the_token_is_expired_anyway() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    // Bearer-only logout: the family survives, the jti does not.
    let r = t
        .send(
            auth_post(LOGOUT_PATH)
                .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.me(&s.access).await.status(), StatusCode::UNAUTHORIZED);
    let r = t.refresh(&s.cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    let a = json(r).await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(t.me(&a).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn invalid_or_expired_bearer_gets_401_with_www_authenticate_invalid_token() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    for bad in [
        "garbage",
        "a.b.c",
        &s.access[..s.access.len() - 2],
        &s.cookie,
    ] {
        let r = t.me(bad).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            WWW_AUTHENTICATE_INVALID_TOKEN
        );
        assert_eq!(error_code(r).await, "invalid_token");
    }
    let r = t
        .send(
            Request::get("/api/me")
                .header(header::AUTHORIZATION, format!("Basic {}", s.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        WWW_AUTHENTICATE_INVALID_TOKEN
    );
    let r = t
        .send(Request::get("/api/me").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(t.me(&s.access).await.status(), StatusCode::OK);
    t.advance(Duration::from_secs(61));
    let r = t.me(&s.access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        WWW_AUTHENTICATE_INVALID_TOKEN
    );
}

#[tokio::test]
async fn api_me_forbidden_and_echo() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    let me = json(t.me(&s.access).await).await;
    assert_eq!(me["username"], "alice");
    assert!(me["sub"].is_string() && me["exp"].is_i64() && me["iat"].is_i64());

    let r = t
        .send(
            Request::get("/api/forbidden")
                .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "insufficient_scope");
    assert_eq!(
        t.send(Request::get("/api/forbidden").body(Body::empty()).unwrap())
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    let body: Vec<u8> = b"--x\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n\r\n\x00\xff\xfe\r\n--x--\r\n".to_vec();
    let r = t
        .send(
            Request::post("/api/echo")
                .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
                .header(header::CONTENT_TYPE, "multipart/form-data; boundary=x")
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let e = json(r).await;
    assert_eq!(e["method"], "POST");
    assert_eq!(e["content_type"], "multipart/form-data; boundary=x");
    assert_eq!(e["length"], body.len());
    assert_eq!(
        e["sha256"],
        authfetch_server::secret::hex(&sha2::Sha256::digest(&body))
    );
    assert_eq!(e["body"], String::from_utf8_lossy(&body).as_ref());

    let r = t
        .send(
            Request::post("/api/echo")
                .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let e = json(r).await;
    assert_eq!(e["content_type"], serde_json::Value::Null);
    assert_eq!(e["length"], 0);

    let big = vec![b'a'; 1024 * 1024 + 1];
    let r = t
        .send(
            Request::post("/api/echo")
                .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "invalid_request");
    let exact = vec![b'a'; 1024 * 1024];
    let r = t
        .send(
            Request::post("/api/echo")
                .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
                .body(Body::from(exact))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn garbage_inputs_get_clean_4xx_never_5xx() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    let json_post = |body: Vec<u8>| {
        auth_post(LOGIN_PATH)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let mut reqs: Vec<Request<Body>> = vec![
        json_post(b"{".to_vec()),
        json_post(b"".to_vec()),
        json_post(b"null".to_vec()),
        json_post(b"[]".to_vec()),
        json_post(b"\"x\"".to_vec()),
        json_post(b"{\"username\":\"alice\"}".to_vec()),
        json_post(b"{\"username\":1,\"password\":2}".to_vec()),
        json_post(b"{\"username\":\"alice\",\"password\":\"alice-password\",\"extra\":1}".to_vec()),
        json_post(b"{\"username\":\"\xff\xfe\",\"password\":\"x\"}".to_vec()),
        json_post(b"\xef\xbb\xbf{\"username\":\"alice\",\"password\":\"alice-password\"}".to_vec()),
        json_post(format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes()),
        json_post(format!(r#"{{"username":"{}","password":"x"}}"#, "u".repeat(200)).into_bytes()),
        json_post(vec![0u8; 20_000]),
    ];
    let cookie_values: Vec<Vec<u8>> = vec![
        b"__Host-authfetch_rt=\xff\xfe".to_vec(),
        format!("__Host-authfetch_rt={}", "A".repeat(4000)).into_bytes(),
        format!(
            "__Host-authfetch_rt={}; __Host-authfetch_rt={}",
            s.cookie,
            RefreshToken::generate().secret()
        )
        .into_bytes(),
        b"__Host-authfetch_rt=\"quoted\"".to_vec(),
    ];
    for v in cookie_values {
        reqs.push(
            auth_post(REFRESH_PATH)
                .header(header::COOKIE, HeaderValue::from_bytes(&v).unwrap())
                .body(Body::empty())
                .unwrap(),
        );
    }
    for v in [
        &b"Bearer \xff\xfe"[..],
        b"Bearer",
        b"Bearer ",
        b"bearer  x.y.z",
        b"Bearer a.b.c.d.e",
        b"Bearer ....",
        b"Bearer e30.e30.e30",
    ] {
        reqs.push(
            Request::get("/api/me")
                .header(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap())
                .body(Body::empty())
                .unwrap(),
        );
    }
    reqs.push(
        Request::get("/api/me")
            .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
            .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
            .body(Body::empty())
            .unwrap(),
    );
    reqs.push(
        Request::get(format!("/api/me?{}", "a".repeat(5000)))
            .body(Body::empty())
            .unwrap(),
    );
    reqs.push(
        Request::get("/.well-known/jwks.json/../../etc/passwd")
            .body(Body::empty())
            .unwrap(),
    );
    reqs.push(
        auth_post(LOGIN_PATH)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, "5")
            .body(Body::from("{}"))
            .unwrap(),
    );
    for (i, req) in reqs.into_iter().enumerate() {
        let desc = format!("#{i} {} {}", req.method(), req.uri().path());
        let r = t.send(req).await;
        assert!(r.status().is_client_error(), "{desc}: {}", r.status());
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_owned());
        if r.status() != StatusCode::NOT_FOUND {
            assert_eq!(ct.as_deref(), Some("application/json"), "{desc}");
            let code = error_code(r).await;
            assert!(
                authfetch_protocol::ErrorCode::parse(&code).is_some(),
                "{desc}: {code}"
            );
        }
    }
    // The real session was never disturbed by the duplicate-cookie request.
    assert_eq!(t.me(&s.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn static_files_and_security_headers_on_every_response() {
    let www = tempfile::tempdir().unwrap();
    let pkg = tempfile::tempdir().unwrap();
    std::fs::write(
        www.path().join("index.html"),
        "<!doctype html><title>demo</title>",
    )
    .unwrap();
    std::fs::write(pkg.path().join("authfetch_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let (w, p) = (www.path().to_owned(), pkg.path().to_owned());
    let t = TestApp::with(move |c| {
        c.www_dir = Some(w);
        c.pkg_dir = Some(p);
    })
    .await;
    let r = t.send(Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let responses = vec![
        r,
        t.send(
            Request::get("/pkg/authfetch_bg.wasm")
                .body(Body::empty())
                .unwrap(),
        )
        .await,
        t.send(Request::get("/missing.js").body(Body::empty()).unwrap())
            .await,
        t.send(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await,
        t.send(login_req("alice", "nope")).await,
        t.send(Request::get("/api/me").body(Body::empty()).unwrap())
            .await,
    ];
    assert_eq!(
        responses[1].headers()[header::CONTENT_TYPE],
        "application/wasm"
    );
    assert_eq!(responses[2].status(), StatusCode::NOT_FOUND);
    for r in &responses {
        assert_eq!(
            r.headers()[header::CONTENT_SECURITY_POLICY],
            authfetch_server::CONTENT_SECURITY_POLICY
        );
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
    }
    // Missing directories just 404.
    let t = TestApp::with(|c| {
        c.www_dir = Some("/nonexistent/www".into());
        c.pkg_dir = Some("/nonexistent/pkg".into());
    })
    .await;
    assert_eq!(
        t.send(Request::get("/").body(Body::empty()).unwrap())
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.send(Request::get("/pkg/x.wasm").body(Body::empty()).unwrap())
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn debug_stats_exists_only_when_enabled() {
    let t = TestApp::with(|c| c.debug_stats = false).await;
    assert_eq!(
        t.send(Request::get("/debug/stats").body(Body::empty()).unwrap())
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let t = TestApp::new().await;
    let st = t.stats().await;
    for k in [
        "login",
        "refresh",
        "refresh_grace",
        "reuse_detected",
        "refresh_failed",
        "logout",
        "logout_all",
    ] {
        assert_eq!(st[k], 0, "{k}");
    }
    t.refresh("bad").await;
    assert_eq!(t.stats().await["refresh_failed"], 1);
}

#[tokio::test]
async fn restart_on_the_same_data_dir_keeps_sessions_users_and_keys() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    let jwks_before = json(
        t.send(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await,
    )
    .await;
    let t = t.reopen().await;
    let jwks_after = json(
        t.send(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await,
    )
    .await;
    assert_eq!(jwks_before, jwks_after);
    assert_eq!(
        t.me(&s.access).await.status(),
        StatusCode::OK,
        "old access token verifies"
    );
    let r = t.refresh(&s.cookie).await;
    assert_eq!(r.status(), StatusCode::OK, "old cookie rotates");
    let c1 = cookie_value(&r).unwrap();
    // Rotation state survived too: within grace, the parent still gets the same successor.
    let t = t.reopen().await;
    assert_eq!(cookie_value(&t.refresh(&s.cookie).await).unwrap(), c1);
    t.login("bob", "bob-password").await;
}

/// A2 at the service: a per-account lockout survives a flood of 120,000 distinct source
/// addresses, and an IPv6 client is one key per /64 however many addresses it uses.
#[tokio::test]
async fn a2_a_flood_of_addresses_never_lifts_a_per_account_lockout_and_ipv6_counts_per_64() {
    let minute = Duration::from_secs(60);
    let t = TestApp::with(|c| {
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
                max: 5,
                window: minute,
            },
        };
    })
    .await;
    let service = &t.state.service;
    let pw = || Password::new("wrong".into());
    for i in 0..3 {
        let r = service
            .login("alice", pw(), &format!("10.0.0.{i}"), None)
            .await;
        assert!(matches!(
            r,
            Err(authfetch_server::error::AppError::BadCredentials)
        ));
    }
    for i in 0u32..120_000 {
        let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i).to_string();
        let r = service.login("alice", pw(), &ip, None).await;
        assert!(matches!(
            r,
            Err(authfetch_server::error::AppError::RateLimited(_))
        ));
    }
    let r = service
        .login(
            "alice",
            Password::new("alice-password".into()),
            "192.0.2.1",
            None,
        )
        .await;
    assert!(
        matches!(r, Err(authfetch_server::error::AppError::RateLimited(_))),
        "the lockout is still in force"
    );
    // Five addresses of one /64 use up its login budget; another /64 still has its own.
    for i in 1..=5 {
        let _ = service
            .login("bob", pw(), &format!("2001:db8:7:7::{i:x}"), None)
            .await;
    }
    let r = service
        .login("carol", pw(), "2001:db8:7:7:ffff::1", None)
        .await;
    assert!(matches!(
        r,
        Err(authfetch_server::error::AppError::RateLimited(_))
    ));
    let r = service.login("carol", pw(), "2001:db8:7:8::1", None).await;
    assert!(matches!(
        r,
        Err(authfetch_server::error::AppError::BadCredentials)
    ));
}
