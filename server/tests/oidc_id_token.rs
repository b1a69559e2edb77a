//! The ID-token checks of OpenID Connect sign-in, through `app()` against a fake provider on
//! 127.0.0.1 that signs whatever ID token the test asks for (ES256, keys it publishes in its
//! JWKS): a good token signs in and maps to the same user next time; a wrong `nonce`, `aud`,
//! `iss`, an expired token, an HMAC token keyed by the client secret, a wrong `at_hash` or an
//! unknown key are refused (502 `invalid_id_token`, never a session); a key rotation at the
//! provider between two logins is followed by one JWKS refetch.

mod common;
mod oidc_fake;

use axum::http::StatusCode;
use common::*;
use oidc_fake::*;
use p256::ecdsa::SigningKey;
use std::sync::atomic::Ordering;

#[tokio::test]
async fn a_valid_id_token_signs_in_and_the_same_subject_is_the_same_user() {
    let p = provider().await;
    p.add_key("k1");
    let t = app(&p).await;
    let ada = sign_in(&p, &t, "k1", "ada").await;
    assert_eq!(sign_in(&p, &t, "k1", "ada").await, ada);
    assert_ne!(sign_in(&p, &t, "k1", "bob").await, ada);
    // Its password is an ordinary Argon2id hash (of a secret nobody holds)…
    let user = t
        .state
        .service
        .store()
        .user_by_id(&ada)
        .await
        .unwrap()
        .unwrap();
    assert!(user.password_hash.starts_with("$argon2id$"), "{user:?}");
    assert_eq!(user.username, "idp:ada@example.test");
    // …so a password login for the generated account fails like a wrong password.
    let r = t.send(login_req("idp:ada@example.test", "anything")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn id_tokens_that_must_be_refused() {
    let p = provider().await;
    p.add_key("k1");
    let t = app(&p).await;
    let k1 = p.key("k1");
    type Case = Box<dyn Fn(&Provider, &TestApp, &str) -> String>;
    let with = |f: fn(&mut serde_json::Value)| -> Case {
        let k1 = k1.clone();
        Box::new(move |p: &Provider, t: &TestApp, nonce: &str| {
            let mut c = claims(p, t, "ada", nonce);
            f(&mut c);
            es256(&k1, "k1", &c)
        })
    };
    let cases: Vec<(&str, Case)> = vec![
        ("wrong nonce", with(|c| c["nonce"] = "not-the-nonce".into())),
        (
            "no nonce",
            with(|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
        ),
        (
            "another audience",
            with(|c| c["aud"] = "someone-else".into()),
        ),
        (
            "another issuer",
            with(|c| c["iss"] = "https://evil.example".into()),
        ),
        (
            "expired",
            with(|c| c["exp"] = (c["iat"].as_i64().unwrap() - 3600).into()),
        ),
        (
            "at_hash of another access token",
            with(|c| c["at_hash"] = at_hash("other").into()),
        ),
        (
            "HS256 keyed by the client secret",
            // Without at_hash, so that only the algorithm rule can refuse it.
            Box::new(|p: &Provider, t: &TestApp, nonce: &str| {
                let mut c = claims(p, t, "ada", nonce);
                c.as_object_mut().unwrap().remove("at_hash");
                hs256(SECRET, &c)
            }),
        ),
        (
            "signed by a key the provider does not publish",
            Box::new(|p: &Provider, t: &TestApp, nonce: &str| {
                let stranger = SigningKey::random(&mut rand::rngs::OsRng);
                es256(&stranger, "k1", &claims(p, t, "ada", nonce))
            }),
        ),
    ];
    for (what, make) in cases {
        let s = start(&t).await;
        p.answer(make(&p, &t, &s.nonce));
        let r = callback(&t, &s).await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "{what}");
        assert!(cookie_value(&r).is_none(), "{what}: no session");
        let body = String::from_utf8(body_bytes(r).await).unwrap();
        assert!(body.contains(">invalid_id_token<"), "{what}: {body}");
    }
    assert_eq!(t.stats().await["login"], 0);
}

#[tokio::test]
async fn a_provider_key_rotation_is_followed_with_one_refetch() {
    let p = provider().await;
    p.add_key("k1");
    let t = app(&p).await;
    let ada = sign_in(&p, &t, "k1", "ada").await;
    let fetches = p.fake.jwks_fetches.load(Ordering::SeqCst);
    // The provider rotates: k2 appears (k1 stays), and the next ID token is signed with k2.
    p.add_key("k2");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(sign_in(&p, &t, "k2", "ada").await, ada);
    assert_eq!(p.fake.jwks_fetches.load(Ordering::SeqCst), fetches + 1);
    // The new keys are cached: no further fetch.
    assert_eq!(sign_in(&p, &t, "k2", "ada").await, ada);
    assert_eq!(p.fake.jwks_fetches.load(Ordering::SeqCst), fetches + 1);
}

/// RFC 9449 §10 `dpop_jkt`: a sign-in started with the thumbprint of the browser's DPoP key
/// starts a family bound to that key (sealed in the transaction cookie, so the provider's
/// redirect needs no proof): its refresh without a proof is refused with nothing rotated. A
/// malformed thumbprint is refused at the start; with `--dpop required` a start without one is
/// refused (its family could never be refreshed).
#[tokio::test]
async fn a_sign_in_started_with_a_dpop_key_is_bound_to_that_key() {
    use authfetch_server::dpop::http::DpopMode;
    use authfetch_server::secret::RefreshToken;
    let p = provider().await;
    p.add_key("k1");
    let jkt = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
    for required in [false, true] {
        let t = app_with(&p, move |c| {
            if required {
                c.dpop.mode = DpopMode::Required;
            }
        })
        .await;
        let s = start_with(&t, &format!("&dpop_jkt={jkt}")).await;
        p.answer(es256(&p.key("k1"), "k1", &claims(&p, &t, "ada", &s.nonce)));
        let r = callback(&t, &s).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let refresh = cookie_value(&r).expect("a refresh cookie");
        let family = t
            .state
            .service
            .family_jkt(&RefreshToken::parse(&refresh).unwrap())
            .await
            .unwrap();
        assert_eq!(family.as_deref(), Some(jkt), "required: {required}");
        let r = t.refresh(&refresh).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json(r).await["error"], "invalid_dpop_proof");
        // Nothing rotated: the cookie is still the family's live token.
        assert!(t
            .state
            .service
            .family_jkt(&RefreshToken::parse(&refresh).unwrap())
            .await
            .unwrap()
            .is_some());

        for (query, code) in [
            ("&dpop_jkt=short", "invalid_dpop_key"),
            (
                &*format!("&dpop_jkt={}", "=".repeat(43)),
                "invalid_dpop_key",
            ),
            (&*format!("&dpop_jkt={jkt}x"), "invalid_dpop_key"),
            // 43 base64url characters, but not a canonical 32-byte value: the last character
            // carries two bits past the 256 (`B` = 000001), which no SHA-256 thumbprint has.
            (
                &*format!("&dpop_jkt={}B", "A".repeat(42)),
                "invalid_dpop_key",
            ),
        ] {
            let r = t
                .send(
                    axum::http::Request::get(format!("/auth/oidc/idp/start?return_to=%2F{query}"))
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
            assert!(
                String::from_utf8_lossy(&body_bytes(r).await).contains(code),
                "{query}"
            );
        }
        let r = t
            .send(
                axum::http::Request::get("/auth/oidc/idp/start?return_to=%2F")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        if required {
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
            assert!(String::from_utf8_lossy(&body_bytes(r).await).contains("dpop_required"));
        } else {
            assert_eq!(
                r.status(),
                StatusCode::SEE_OTHER,
                "optional: unbound sign-ins still start"
            );
        }
    }
}
