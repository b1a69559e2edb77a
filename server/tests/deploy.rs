//! Real deployments (issue 15): CORS for same-site origins (`--cors-origin`) with the CSRF rules
//! still enforced, `--allowed-origin` adding to the defaults, refused origins logged, and the
//! client address behind trusted proxies (`--trusted-proxy`).

mod common;

use authfetch_protocol::{CSRF_HEADER, LOGIN_PATH, LOGOUT_PATH, REFRESH_PATH};
use authfetch_server::cli::Cli;
use authfetch_server::config::{Limit, RateLimits};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use clap::Parser as _;
use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const APP: &str = "http://localhost:5173";
const OTHER_SITE: &str = "http://evil.test:5173";

async fn cors_app() -> TestApp {
    TestApp::with(|c| c.cors_origins = vec![APP.to_owned()]).await
}

fn preflight(path: &str, origin: &str) -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri(path)
        .header(header::ORIGIN, origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-authfetch")
        .body(Body::empty())
        .unwrap()
}

fn browser_login(origin: &str, site: &str) -> Request<Body> {
    let mut r = login_req("alice", "alice-password");
    let h = r.headers_mut();
    h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
    h.insert("sec-fetch-site", HeaderValue::from_str(site).unwrap());
    r
}

fn get(h: &HeaderMap, name: &str) -> String {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase()
}

fn no_cors_headers(h: &HeaderMap) -> bool {
    !h.keys().any(|k| k.as_str().starts_with("access-control-"))
}

#[tokio::test]
async fn cors_preflight_from_a_listed_origin_allows_credentials_and_the_client_headers() {
    let t = cors_app().await;
    for path in [
        LOGIN_PATH,
        REFRESH_PATH,
        LOGOUT_PATH,
        "/api/me",
        "/api/echo",
    ] {
        let r = t.send(preflight(path, APP)).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let h = r.headers();
        assert_eq!(get(h, "access-control-allow-origin"), APP, "{path}");
        assert_eq!(get(h, "access-control-allow-credentials"), "true");
        let methods = get(h, "access-control-allow-methods");
        assert!(
            methods.contains("post") && methods.contains("get"),
            "{methods}"
        );
        let allowed = get(h, "access-control-allow-headers");
        for want in [CSRF_HEADER, "content-type", "authorization"] {
            assert!(allowed.contains(want), "{want} not in {allowed}");
        }
        assert!(get(h, "vary").contains("origin"), "{path}");
        assert_eq!(get(h, "access-control-max-age"), "600");
    }
}

#[tokio::test]
async fn cors_is_never_granted_to_unlisted_origins_or_other_paths() {
    let t = cors_app().await;
    // Unlisted, or spelled differently from the list (exact match only, never reflected).
    for origin in [
        OTHER_SITE,
        "http://localhost:5174",
        "http://localhost:5173/",
        "HTTP://localhost:5173",
        "null",
        ORIGIN,
    ] {
        let r = t.send(preflight(REFRESH_PATH, origin)).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{origin}");
        assert!(no_cors_headers(r.headers()), "{origin}: {:?}", r.headers());
        // Still `Vary: origin`: a shared cache must not serve this answer to a listed origin.
        assert!(get(r.headers(), "vary").contains("origin"), "{origin}");
        let r = t.send(browser_login(origin, "same-site")).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin}");
        assert!(no_cors_headers(r.headers()), "{origin}");
    }
    // Two Origin headers, one of them listed: no CORS.
    let mut req = preflight(REFRESH_PATH, APP);
    req.headers_mut()
        .append(header::ORIGIN, HeaderValue::from_static(OTHER_SITE));
    assert!(no_cors_headers(t.send(req).await.headers()));
    // The JWKS, the OIDC routes and static files are not CORS paths.
    for path in ["/.well-known/jwks.json", "/auth/oidc/start", "/index.html"] {
        let r = t
            .send(
                Request::get(path)
                    .header(header::ORIGIN, APP)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert!(no_cors_headers(r.headers()), "{path}");
    }
    // Without --cors-origin nothing ever gets CORS, listed origin or not (X6).
    let plain = TestApp::new().await;
    let r = plain.send(preflight(REFRESH_PATH, APP)).await;
    assert!(no_cors_headers(r.headers()));
}

#[tokio::test]
async fn a_listed_cors_origin_signs_in_same_site_and_every_csrf_rule_still_holds() {
    let t = cors_app().await;
    // Same-site page on the listed origin: accepted, and the answer is readable by it.
    let r = t.send(browser_login(APP, "same-site")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(get(r.headers(), "access-control-allow-origin"), APP);
    assert_eq!(get(r.headers(), "access-control-allow-credentials"), "true");
    assert!(get(r.headers(), "vary").contains("origin"));
    let cookie = cookie_value(&r).expect("cookie");
    // X4: cross-site and none are refused even for a listed origin.
    for site in ["cross-site", "none", "SAME-SITE"] {
        let r = t.send(browser_login(APP, site)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{site}");
        assert_eq!(error_code(r).await, "access_denied");
    }
    // X4: `same-site` is only for CORS origins; an --allowed-origin is same-origin only.
    let t2 = TestApp::with(|c| c.allowed_origins = vec![APP.to_owned()]).await;
    let r = t2.send(browser_login(APP, "same-site")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        t2.send(browser_login(APP, "same-origin")).await.status(),
        StatusCode::OK
    );
    // X2: the custom header is still required.
    let r = t
        .send(
            Request::post(REFRESH_PATH)
                .header(header::ORIGIN, APP)
                .header("sec-fetch-site", "same-site")
                .header(header::COOKIE, cookie_header(&cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // X3: bodies are still JSON only.
    let r = t
        .send(
            auth_post(LOGIN_PATH)
                .header(header::ORIGIN, APP)
                .header("sec-fetch-site", "same-site")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // X7: GET is still refused.
    let r = t
        .send(
            Request::get(REFRESH_PATH)
                .header(header::ORIGIN, APP)
                .header(CSRF_HEADER, "1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // A same-site refresh with the cookie works.
    let r = t
        .send(
            auth_post(REFRESH_PATH)
                .header(header::ORIGIN, APP)
                .header("sec-fetch-site", "same-site")
                .header(header::COOKIE, cookie_header(&cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(get(r.headers(), "access-control-allow-origin"), APP);
}

#[tokio::test]
async fn api_answers_to_a_cors_origin_expose_www_authenticate() {
    let t = cors_app().await;
    let r = t
        .send(
            Request::get("/api/me")
                .header(header::ORIGIN, APP)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(r.headers(), "access-control-allow-origin"), APP);
    assert!(get(r.headers(), "access-control-expose-headers").contains("www-authenticate"));
}

/// A `tracing` writer into a buffer (the subscriber is set for this thread only: the
/// `#[tokio::test]` runtime is single-threaded, so every event of the request lands here).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_refused_origin_is_logged_at_warn_with_the_origin_and_the_answer_is_unchanged() {
    let t = TestApp::new().await;
    let capture = Capture::default();
    let w = capture.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish(),
    );
    let r = t
        .send(browser_login("http://127.0.0.1:3000", "same-origin"))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = json(r).await;
    assert_eq!(body["error"], "access_denied");
    assert_eq!(body["error_description"], "cross-origin request refused");
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("cross-origin cookie POST refused"))
        .unwrap_or_else(|| panic!("no warn line in {log:?}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("http://127.0.0.1:3000"), "{line}");
    assert!(line.contains(ORIGIN), "the allowed list is named: {line}");
    // Attacker-controlled values are escaped and cut short.
    let forged = b"http://x\" level=INFO forged=\xff";
    let mut req = browser_login("http://x", "same-origin");
    req.headers_mut()
        .insert(header::ORIGIN, HeaderValue::from_bytes(forged).unwrap());
    assert_eq!(t.send(req).await.status(), StatusCode::FORBIDDEN);
    let long = format!("http://{}", "a".repeat(500));
    let mut req = browser_login("http://x", "same-origin");
    req.headers_mut()
        .insert(header::ORIGIN, HeaderValue::from_str(&long).unwrap());
    assert_eq!(t.send(req).await.status(), StatusCode::FORBIDDEN);
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("origin=\"http://x\\\" level=INFO forged=\u{fffd}\""),
        "a quote in the origin is escaped: {log}"
    );
    assert!(log.contains(&"a".repeat(190)), "{log}");
    assert!(!log.contains(&"a".repeat(300)), "not cut");
}

#[test]
fn origin_flags_refuse_anything_but_exact_origins_with_a_clear_message() {
    let config = |args: &[&str]| {
        let mut v = vec!["authfetch-server"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).expect("flags parse").config()
    };
    for (flag, value) in [
        ("--cors-origin", "*"),
        ("--cors-origin", "https://app.example.com/login"),
        ("--cors-origin", "app.example.com"),
        ("--allowed-origin", "https://app.example.com:443"),
        ("--allowed-origin", "null"),
    ] {
        let e = config(&[flag, value]).unwrap_err();
        assert!(e.starts_with(flag), "{flag} {value}: {e}");
    }
    let c = config(&[
        "--cors-origin",
        "https://app.example.com/",
        "--cors-origin",
        "https://admin.example.com",
        "--allowed-origin",
        "http://localhost:5173",
    ])
    .unwrap();
    assert_eq!(
        c.cors_origins,
        ["https://app.example.com", "https://admin.example.com"]
    );
    assert_eq!(c.allowed_origins, ["http://localhost:5173"]);
    for bad in ["0.0.0.0/0", "10.0.0.0/40", "proxy"] {
        let e = config(&["--trusted-proxy", bad]).unwrap_err();
        assert!(e.starts_with("--trusted-proxy"), "{e}");
    }
    let c = config(&["--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1"]).unwrap();
    assert_eq!(c.trusted_proxies.len(), 2);
}

/// A login from TCP peer `peer` with an `X-Forwarded-For` value.
fn login_from(peer: &str, xff: Option<&str>, user: &str) -> Request<Body> {
    let mut r = login_req(user, "wrong-password");
    r.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    if let Some(v) = xff {
        r.headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
    }
    r
}

async fn limited(f: impl FnOnce(&mut authfetch_server::Config)) -> TestApp {
    TestApp::with(|c| {
        let per_ip = Limit {
            max: 2,
            window: Duration::from_secs(60),
        };
        let lots = Limit {
            max: 1000,
            window: Duration::from_secs(60),
        };
        c.rate_limits = RateLimits {
            login_per_ip: per_ip,
            login_per_account: lots,
            refresh_per_ip: lots,
        };
        f(c);
    })
    .await
}

#[tokio::test]
async fn without_a_trusted_proxy_forwarding_headers_cannot_dodge_the_per_ip_limit() {
    let t = limited(|_| {}).await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let xff = format!("203.0.113.{i}");
        let r = t
            .send(login_from("127.0.0.1:4000", Some(&xff), &format!("u{i}")))
            .await;
        codes.push(r.status());
    }
    assert_eq!(
        codes,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_limit_and_cannot_spoof_one() {
    let t = limited(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let proxy = "127.0.0.1:4000";
    // Two clients behind the proxy: separate budgets.
    for client in ["203.0.113.1", "203.0.113.2"] {
        for _ in 0..2 {
            let r = t.send(login_from(proxy, Some(client), "x")).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{client}");
        }
    }
    assert_eq!(
        t.send(login_from(proxy, Some("203.0.113.1"), "x"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Client 1 forges entries to the left of what the proxy appended: still client 1.
    for forged in ["198.51.100.9, 203.0.113.1", "127.0.0.5, 203.0.113.1"] {
        let r = t.send(login_from(proxy, Some(forged), "x")).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{forged}");
    }
    // A peer outside the trusted networks is the client, whatever its header says.
    for i in 0..2 {
        let r = t
            .send(login_from(
                "192.0.2.50:1",
                Some(&format!("198.51.100.{i}")),
                "x",
            ))
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = t
        .send(login_from("192.0.2.50:1", Some("198.51.100.99"), "x"))
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Garbage in the header: the peer (the proxy) is used, no panic, a normal answer.
    for junk in ["garbage", "203.0.113.1, ", "[::1", "1.2.3.4:99999999"] {
        let r = t.send(login_from("127.0.0.9:1", Some(junk), "x")).await;
        assert!(
            matches!(
                r.status(),
                StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
            ),
            "{junk}: {}",
            r.status()
        );
    }
    // All four junk requests counted against the peer 127.0.0.9 (limit 2).
    let r = t.send(login_from("127.0.0.9:1", None, "x")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
