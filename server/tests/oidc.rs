//! OpenID Connect sign-in through `app()` (oneshot): every way a sign-in can go wrong ends on
//! the error page with its code and a 4xx (502 when the provider misbehaves), never a 500, and
//! the transaction cookie is cleared. A tiny fake provider on 127.0.0.1 (discovery, an empty key
//! set, a token endpoint that refuses every code) covers the steps after the cookie checks; the
//! successful flow runs against a real provider in tests/e2e/oidc.spec.mjs.

mod common;

use authfetch_server::clock::Clock as _;
use authfetch_server::oidc::txn::{Transaction, TxnKey, TXN_COOKIE, TXN_TTL};
use authfetch_server::oidc::{OidcConfig, ProviderConfig};
use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::*;

/// A provider that publishes discovery metadata and refuses every code at its token endpoint.
async fn fake_provider() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let meta = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "authorization_response_iss_parameter_supported": true,
    });
    let router = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let m = meta.clone();
                async move { Json(m) }
            }),
        )
        .route(
            "/jwks",
            get(|| async { Json(serde_json::json!({"keys": []})) }),
        )
        .route(
            "/token",
            post(|| async {
                (
                    StatusCode::BAD_REQUEST,
                    Json(serde_json::json!({"error": "invalid_grant"})),
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    issuer
}

fn provider(name: &str, issuer: &str) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        label: name.into(),
        issuer: issuer.into(),
        client_id: "client".into(),
        client_secret: None,
        scopes: vec!["email".into()],
    }
}

async fn app_with(providers: Vec<ProviderConfig>) -> TestApp {
    TestApp::with(move |c| {
        c.oidc = OidcConfig {
            public_url: "http://localhost:3000".into(),
            providers,
            allow_insecure_loopback: true,
        };
    })
    .await
}

fn get_req(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, format!("{TXN_COOKIE}={c}"));
    }
    b.body(Body::empty()).unwrap()
}

/// Asserts the error page: status, code, transaction cookie cleared, no-store.
async fn assert_page(r: Response<Body>, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status, "{code}");
    assert_ne!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let cleared = set_cookies(&r)
        .iter()
        .any(|c| c.starts_with(&format!("{TXN_COOKIE}=;")) && c.contains("Max-Age=0"));
    assert!(cleared, "{code}: the transaction cookie is cleared");
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let body = String::from_utf8(body_bytes(r).await).unwrap();
    assert!(
        body.contains(&format!("<code id=\"error-code\">{code}</code>")),
        "{code}: {body}"
    );
}

fn txn(t: &TestApp, provider: &str, state: &str, exp_ms: i64) -> String {
    let key = TxnKey::load_or_create(t.dir.path()).unwrap();
    key.seal(&Transaction {
        id: format!("id-{state}"),
        provider: provider.into(),
        state: state.into(),
        nonce: "n".into(),
        verifier: "v".repeat(43),
        return_to: "/".into(),
        exp_ms,
        dpop_jkt: None,
    })
}

/// Starts a sign-in; returns the transaction cookie and the `state` sent to the provider.
async fn start(t: &TestApp, name: &str) -> (String, String, url::Url) {
    let r = t
        .send(get_req(
            &format!("/auth/oidc/{name}/start?return_to=%2Fapp"),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with(TXN_COOKIE))
        .unwrap();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=600",
    ] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let location = url::Url::parse(r.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    (value, state, location)
}

#[tokio::test]
async fn start_sends_code_flow_with_pkce_s256_state_and_nonce() {
    let issuer = fake_provider().await;
    let t = app_with(vec![provider("idp", &issuer)]).await;
    let (_, state, loc) = start(&t, "idp").await;
    assert!(loc.as_str().starts_with(&format!("{issuer}/authorize?")));
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], "client");
    assert_eq!(
        q["redirect_uri"],
        "http://localhost:3000/auth/oidc/idp/callback"
    );
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    assert!(q["nonce"].len() >= 16 && state.len() >= 16);
    // Two starts: two different transactions.
    let (_, state2, _) = start(&t, "idp").await;
    assert_ne!(state, state2);
}

#[tokio::test]
async fn unknown_provider_and_bad_return_paths_are_pages_not_500s() {
    let issuer = fake_provider().await;
    let t = app_with(vec![provider("idp", &issuer)]).await;
    assert_page(
        t.send(get_req("/auth/oidc/nope/start", None)).await,
        StatusCode::NOT_FOUND,
        "unknown_provider",
    )
    .await;
    assert_page(
        t.send(get_req("/auth/oidc/nope/callback?code=x&state=y", None))
            .await,
        StatusCode::NOT_FOUND,
        "unknown_provider",
    )
    .await;
    for bad in [
        "%2F%2Fevil.example",
        "https%3A%2F%2Fevil.example",
        "%2F%5Cevil",
    ] {
        assert_page(
            t.send(get_req(
                &format!("/auth/oidc/idp/start?return_to={bad}"),
                None,
            ))
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_return_to",
        )
        .await;
    }
    // Duplicate parameters are not resolved by guessing.
    assert_page(
        t.send(get_req("/auth/oidc/idp/callback?state=a&state=b", None))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let list = json(t.send(get_req("/auth/oidc/providers", None)).await).await;
    assert_eq!(list, serde_json::json!([{"name": "idp", "label": "idp"}]));
}

#[tokio::test]
async fn transaction_missing_forged_expired_other_provider_or_replayed() {
    let issuer = fake_provider().await;
    let t = app_with(vec![provider("idp", &issuer), provider("other", &issuer)]).await;
    let now = t.clock.now_ms();
    let cb = "/auth/oidc/idp/callback?code=c&state=s1";
    assert_page(
        t.send(get_req(cb, None)).await,
        StatusCode::BAD_REQUEST,
        "transaction_missing",
    )
    .await;
    // Signed with another key (a cookie made up by an attacker).
    let forged = TxnKey::random().seal(&Transaction {
        id: "x".into(),
        provider: "idp".into(),
        state: "s1".into(),
        nonce: "n".into(),
        verifier: "v".into(),
        return_to: "/".into(),
        exp_ms: now + 60_000,
        dpop_jkt: None,
    });
    assert_page(
        t.send(get_req(cb, Some(&forged))).await,
        StatusCode::BAD_REQUEST,
        "transaction_invalid",
    )
    .await;
    // Expired: the server clock moves past the transaction's lifetime.
    let c = txn(&t, "idp", "s1", now + 1_000);
    t.advance(std::time::Duration::from_secs(2));
    assert_page(
        t.send(get_req(cb, Some(&c))).await,
        StatusCode::BAD_REQUEST,
        "transaction_expired",
    )
    .await;
    // Started for another provider.
    let now = t.clock.now_ms();
    let c = txn(&t, "other", "s1", now + 60_000);
    assert_page(
        t.send(get_req(cb, Some(&c))).await,
        StatusCode::BAD_REQUEST,
        "transaction_invalid",
    )
    .await;
    // State mismatch, then the provider's error with the right state, then a replay.
    let c = txn(&t, "idp", "s2", now + 60_000);
    assert_page(
        t.send(get_req("/auth/oidc/idp/callback?code=c&state=s1", Some(&c)))
            .await,
        StatusCode::BAD_REQUEST,
        "state_mismatch",
    )
    .await;
    let denied = "/auth/oidc/idp/callback?error=access_denied&state=s2";
    assert_page(
        t.send(get_req(denied, Some(&c))).await,
        StatusCode::BAD_REQUEST,
        "access_denied",
    )
    .await;
    assert_page(
        t.send(get_req(denied, Some(&c))).await,
        StatusCode::BAD_REQUEST,
        "transaction_replayed",
    )
    .await;
    // A made-up error code is not echoed.
    let c = txn(&t, "idp", "s3", now + 60_000);
    assert_page(
        t.send(get_req(
            "/auth/oidc/idp/callback?error=%3Cscript%3E&state=s3",
            Some(&c),
        ))
        .await,
        StatusCode::BAD_REQUEST,
        "provider_error",
    )
    .await;
    assert_eq!(t.stats().await["login"], 0);
}

#[tokio::test]
async fn iss_parameter_and_refused_code_after_a_real_start() {
    let issuer = fake_provider().await;
    let t = app_with(vec![provider("idp", &issuer)]).await;
    // The provider announces RFC 9207: a missing or different `iss` is refused.
    for (iss, code) in [
        (None, "issuer_mismatch"),
        (Some("http://127.0.0.1:1"), "issuer_mismatch"),
        (Some(issuer.as_str()), "token_exchange_failed"),
    ] {
        let (cookie, state, _) = start(&t, "idp").await;
        let mut uri = format!("/auth/oidc/idp/callback?code=abc&state={state}");
        if let Some(i) = iss {
            uri.push_str(&format!("&iss={}", urlencode(i)));
        }
        assert_page(
            t.send(get_req(&uri, Some(&cookie))).await,
            StatusCode::BAD_REQUEST,
            code,
        )
        .await;
    }
    assert_eq!(t.stats().await["login"], 0);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_502_page() {
    // Nothing listens on port 1.
    let t = app_with(vec![provider("down", "http://127.0.0.1:1")]).await;
    assert_page(
        t.send(get_req("/auth/oidc/down/start", None)).await,
        StatusCode::BAD_GATEWAY,
        "provider_unavailable",
    )
    .await;
    let c = txn(
        &t,
        "down",
        "s",
        t.clock.now_ms() + TXN_TTL.as_millis() as i64,
    );
    assert_page(
        t.send(get_req("/auth/oidc/down/callback?code=c&state=s", Some(&c)))
            .await,
        StatusCode::BAD_GATEWAY,
        "provider_unavailable",
    )
    .await;
}

#[tokio::test]
async fn http_issuers_need_the_flag_and_a_loopback_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.oidc = OidcConfig {
        public_url: "http://localhost:3000".into(),
        providers: vec![provider("idp", "http://127.0.0.1:9")],
        allow_insecure_loopback: false,
    };
    let e = authfetch_server::open(c).await.unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
