//! A fake OpenID provider on 127.0.0.1 for the OIDC integration tests: discovery, a JWKS of
//! the keys the test adds, and a token endpoint that answers whatever ID token the test queued
//! (or `invalid_grant`). Plus the helpers that drive a sign-in through `app()`.
#![allow(dead_code, missing_docs)]

use crate::common::*;
use authfetch_server::oidc::txn::TXN_COOKIE;
use authfetch_server::oidc::{ClientSecretValue, OidcConfig, ProviderConfig};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use p256::ecdsa::{signature::Signer as _, Signature, SigningKey};
use sha2::{Digest as _, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const CLIENT: &str = "client-1";
pub const SECRET: &str = "client-secret-1";

#[derive(Default)]
pub struct Fake {
    /// (kid, key) published in the JWKS.
    pub keys: Mutex<Vec<(String, SigningKey)>>,
    /// The token endpoint's next answer.
    pub next: Mutex<Option<serde_json::Value>>,
    pub jwks_fetches: AtomicUsize,
}

pub struct Provider {
    pub issuer: String,
    pub fake: Arc<Fake>,
}

pub async fn provider() -> Provider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let fake = Arc::new(Fake::default());
    let meta = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "HS256"],
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
            get(|State(f): State<Arc<Fake>>| async move {
                f.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                let keys: Vec<_> = f
                    .keys
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(kid, k)| {
                        let p = k.verifying_key().to_encoded_point(false);
                        serde_json::json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                            "kid": kid, "x": B64.encode(p.x().unwrap()), "y": B64.encode(p.y().unwrap())})
                    })
                    .collect();
                Json(serde_json::json!({ "keys": keys }))
            }),
        )
        .route(
            "/token",
            post(|State(f): State<Arc<Fake>>| async move {
                match f.next.lock().unwrap().take() {
                    Some(body) => (StatusCode::OK, Json(body)),
                    None => (
                        StatusCode::BAD_REQUEST,
                        Json(serde_json::json!({"error": "invalid_grant"})),
                    ),
                }
            }),
        )
        .with_state(Arc::clone(&fake));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Provider { issuer, fake }
}

impl Provider {
    pub fn add_key(&self, kid: &str) {
        let k = SigningKey::random(&mut rand::rngs::OsRng);
        self.fake.keys.lock().unwrap().push((kid.into(), k));
    }

    pub fn key(&self, kid: &str) -> SigningKey {
        let keys = self.fake.keys.lock().unwrap();
        keys.iter().find(|(k, _)| k == kid).unwrap().1.clone()
    }

    /// Queues the token endpoint's next answer: an access token and `id_token`.
    pub fn answer(&self, id_token: String) {
        *self.fake.next.lock().unwrap() = Some(serde_json::json!({
            "access_token": ACCESS, "token_type": "Bearer", "expires_in": 300, "id_token": id_token,
        }));
    }
}

pub const ACCESS: &str = "provider-access-token";

pub fn at_hash(access: &str) -> String {
    B64.encode(&Sha256::digest(access.as_bytes())[..16])
}

pub fn es256(key: &SigningKey, kid: &str, claims: &serde_json::Value) -> String {
    let h = B64.encode(
        serde_json::to_vec(&serde_json::json!({"alg": "ES256", "kid": kid, "typ": "JWT"})).unwrap(),
    );
    let p = B64.encode(serde_json::to_vec(claims).unwrap());
    let sig: Signature = key.sign(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", B64.encode(sig.to_bytes()))
}

pub fn hs256(secret: &str, claims: &serde_json::Value) -> String {
    let h = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = B64.encode(serde_json::to_vec(claims).unwrap());
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&k, format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", B64.encode(tag.as_ref()))
}

pub async fn app(p: &Provider) -> TestApp {
    app_with(p, |_| {}).await
}

/// [`app`] with more configuration.
pub async fn app_with(p: &Provider, more: impl FnOnce(&mut authfetch_server::Config)) -> TestApp {
    let issuer = p.issuer.clone();
    TestApp::with(move |c| {
        more(c);
        c.oidc = OidcConfig {
            public_url: "http://localhost:3000".into(),
            providers: vec![ProviderConfig {
                name: "idp".into(),
                label: "IdP".into(),
                issuer,
                client_id: CLIENT.into(),
                client_secret: Some(ClientSecretValue::new(SECRET.into())),
                scopes: vec![],
            }],
            allow_insecure_loopback: true,
        };
    })
    .await
}

pub struct Started {
    pub cookie: String,
    pub state: String,
    pub nonce: String,
}

pub async fn start(t: &TestApp) -> Started {
    start_with(t, "").await
}

/// [`start`] with more of the start route's query (`&dpop_jkt=…`).
pub async fn start_with(t: &TestApp, more_query: &str) -> Started {
    let r = t
        .send(
            Request::get(format!("/auth/oidc/idp/start?return_to=%2Fapp{more_query}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with(TXN_COOKIE))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let loc = url::Url::parse(r.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    Started {
        cookie,
        state: q["state"].clone(),
        nonce: q["nonce"].clone(),
    }
}

pub async fn callback(t: &TestApp, s: &Started) -> axum::http::Response<Body> {
    t.send(
        Request::get(format!(
            "/auth/oidc/idp/callback?code=c0de&state={}",
            s.state
        ))
        .header(header::COOKIE, &s.cookie)
        .body(Body::empty())
        .unwrap(),
    )
    .await
}

pub fn claims(p: &Provider, t: &TestApp, sub: &str, nonce: &str) -> serde_json::Value {
    let now = t.now_s();
    serde_json::json!({
        "iss": p.issuer, "sub": sub, "aud": CLIENT, "iat": now, "exp": now + 300,
        "nonce": nonce, "at_hash": at_hash(ACCESS), "email": format!("{sub}@example.test"),
    })
}

/// Signs in `sub` with a valid ES256 ID token from key `kid`; returns the user id from /api/me.
pub async fn sign_in(p: &Provider, t: &TestApp, kid: &str, sub: &str) -> String {
    let s = start(t).await;
    p.answer(es256(&p.key(kid), kid, &claims(p, t, sub, &s.nonce)));
    let r = callback(t, &s).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        String::from_utf8_lossy(&body_bytes(r).await)
    );
    assert_eq!(r.headers()[header::LOCATION], "/app");
    let refresh = cookie_value(&r).expect("a refresh cookie");
    let session = json(t.refresh(&refresh).await).await;
    let me = json(t.me(session["access_token"].as_str().unwrap()).await).await;
    me["sub"].as_str().unwrap().to_owned()
}
