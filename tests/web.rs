//! Browser tests of the wasm layer (`src/web.rs` on web-sys and gloo-net), run by
//! wasm-bindgen-test in headless Chromium:
//!
//! ```sh
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! CHROMEDRIVER=/usr/bin/chromedriver cargo test -p authfetch --target wasm32-unknown-unknown
//! ```
//!
//! The network is faked: `js/_test_fake.js` replaces the global `fetch` with an in-page auth
//! server + API (the first test proves requests land there, so the others cannot pass against
//! the real network by accident). Covered here: body
//! replay for every body type (K5), an `AbortSignal` that rejects the caller's wait without
//! cancelling the shared refresh, the bearer kept from other origins (K3), no refresh on 403
//! (K4), typed failures, and nothing written to any browser storage (K1).
#![cfg(target_arch = "wasm32")]

use authfetch::web::{Client, Options};
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/js/_test_fake.js")]
extern "C" {
    /// Resets the fake server; `opts`: `{refreshStatus, refreshGate, refuseOrigin, requireDpop,
    /// keep}`.
    fn fake_reset(opts: &JsValue);
    /// Whether any request reached the fake since the last reset.
    fn fake_installed() -> bool;
    /// Every request the fake saw: `{url, method, auth, contentType, body}` (body as hex).
    fn fake_log() -> Array;
    /// Makes the API reject every token issued so far (401 invalid_token).
    fn fake_expire();
    /// How many refreshes the fake granted (200).
    fn fake_refreshes() -> u32;
    /// How many refresh requests reached the fake.
    fn fake_refresh_requests() -> u32;
    /// Lets a gated refresh answer.
    fn fake_release();
    /// The page's origin.
    fn origin() -> String;
    /// The options `js/index.js` would resolve for this page (see the file).
    fn options(on_event: &Function, on_trace: &Function) -> Options;
    /// A function that records its arguments; read them with `calls(f)`.
    fn recorder() -> Function;
    fn calls(f: &Function) -> Array;
    /// Builds `[input, init]` for body kind `kind` ("string", "json", "params", "form", "blob",
    /// "buffer", "request") sent to `url`; `expected(kind)` is the hex the server must see.
    fn body_case(kind: &str, url: &str) -> Array;
    fn expected(kind: &str) -> String;
    /// A pending `AbortController`.
    fn controller() -> JsValue;
    /// Resolves after `ms`.
    fn delay(ms: f64) -> Promise;
    /// Everything the page's storage holds, as one string (localStorage, sessionStorage,
    /// document.cookie, indexedDB.databases(), caches.keys()).
    fn storage_dump() -> Promise;
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(key)).unwrap()
}

fn text(v: &JsValue, key: &str) -> String {
    get(v, key).as_string().unwrap_or_default()
}

/// A client for the page's origin, without cross-tab coordination (one tab here) and without
/// the refresh-ahead timer (refreshes happen only on demand, so tests control them).
fn client(events: &Function, traces: &Function) -> Client {
    Client::new(options(events, traces))
}

async fn wait(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

async fn signed_in(c: &Client) {
    let ok = wait(c.ready()).await.unwrap();
    assert_eq!(ok.as_bool(), Some(false), "no session before login");
    wait(c.login("alice".into(), "alice-password".into()))
        .await
        .unwrap();
    assert!(c.is_authenticated());
}

fn api_requests(path: &str) -> Vec<JsValue> {
    fake_log()
        .iter()
        .filter(|r| text(r, "url").ends_with(path))
        .collect()
}

#[wasm_bindgen_test]
async fn the_fake_server_is_what_the_client_talks_to() {
    // Otherwise every other test here would be talking to the real network (or nothing).
    fake_reset(&JsValue::UNDEFINED);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    let _ = wait(c.ready()).await;
    assert!(
        fake_installed(),
        "the start-up refresh did not reach the fake"
    );
}

#[wasm_bindgen_test]
async fn k5_every_body_type_is_replayed_intact_after_a_refresh() {
    for kind in [
        "string", "json", "params", "form", "blob", "buffer", "request",
    ] {
        fake_reset(&JsValue::UNDEFINED);
        let (events, traces) = (recorder(), recorder());
        let c = client(&events, &traces);
        signed_in(&c).await;
        fake_expire(); // the token we hold now gets 401 invalid_token
        let path = ["/api/echo/", kind].concat();
        let case = body_case(kind, &[origin(), path.clone()].concat());
        let res = wait(c.fetch(case.get(0), case.get(1))).await.unwrap();
        assert_eq!(get(&res, "status").as_f64(), Some(200.0), "{kind}");

        let sent = api_requests(&path);
        assert_eq!(sent.len(), 2, "{kind}: first attempt + one retry");
        let want = expected(kind);
        assert!(!want.is_empty());
        let (first, second) = (text(&sent[0], "body"), text(&sent[1], "body"));
        assert_eq!(first, second, "{kind}: the retry's body differs");
        if kind == "form" {
            // A random boundary: the field's part must be there, byte for byte, and the file's.
            assert!(first.contains(&want), "form: field part missing");
            assert!(
                first.contains("66696c652d6279746573"),
                "form: file part missing"
            );
        } else {
            assert_eq!(first, want, "{kind}: not the bytes the caller gave");
        }
        // The two attempts are identical but for the token; multipart boundaries included.
        assert_eq!(text(&sent[0], "contentType"), text(&sent[1], "contentType"));
        assert_eq!(text(&sent[0], "method"), text(&sent[1], "method"));
        assert_ne!(text(&sent[0], "auth"), text(&sent[1], "auth"), "{kind}");
        assert_eq!(fake_refreshes(), 1, "{kind}");

        let t = Array::from(&calls(&traces).get(0)).get(0);
        let steps: Vec<String> = Array::from(&get(&t, "steps"))
            .iter()
            .filter_map(|s| s.as_string())
            .collect();
        assert_eq!(steps, ["401", "refreshed", "retried", "200"], "{kind}");
        assert_eq!(get(&t, "bearer").as_bool(), Some(true));
    }
}

#[wasm_bindgen_test]
async fn abort_rejects_the_callers_wait_but_not_the_shared_refresh() {
    // The start-up refresh is held open; two calls wait for it; one is aborted.
    fake_reset(&JsValue::UNDEFINED);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    signed_in(&c).await;
    fake_expire();
    let gate = Object::new();
    Reflect::set(&gate, &"refreshGate".into(), &JsValue::TRUE).unwrap();
    // Keep the issued tokens (reset only the gate): the next refresh waits for `fake_release`.
    Reflect::set(&gate, &"keep".into(), &JsValue::TRUE).unwrap();
    fake_reset(&gate);

    let url = [origin(), "/api/me".into()].concat();
    let ac = controller();
    let init = Object::new();
    Reflect::set(&init, &"signal".into(), &get(&ac, "signal")).unwrap();
    let aborted = c.fetch(url.clone().into(), init.into());
    let other = c.fetch(url.clone().into(), JsValue::UNDEFINED);
    wait(delay(50.0)).await.unwrap();
    let abort: Function = get(&ac, "abort").unchecked_into();
    abort.call0(&ac).unwrap();

    let err = wait(aborted).await.expect_err("aborted call rejects");
    assert_eq!(text(&err, "name"), "AbortError");
    assert_eq!(
        fake_refreshes(),
        0,
        "the refresh is still waiting at the server"
    );

    fake_release();
    let res = wait(other).await.unwrap();
    assert_eq!(get(&res, "status").as_f64(), Some(200.0));
    assert_eq!(
        fake_refreshes(),
        1,
        "one refresh, not cancelled by the abort"
    );
    // The aborted call's retry was never sent: two 401s (one per call) + the other's retry.
    let me = api_requests("/api/me");
    let ok = me.iter().filter(|r| text(r, "status") == "200").count();
    assert_eq!(ok, 1, "only the non-aborted call was replayed");
}

#[wasm_bindgen_test]
async fn an_already_aborted_signal_rejects_at_once_with_its_reason() {
    fake_reset(&JsValue::UNDEFINED);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    let ac = controller();
    let abort: Function = get(&ac, "abort").unchecked_into();
    let reason = Object::new();
    abort.call1(&ac, &reason).unwrap();
    let init = Object::new();
    Reflect::set(&init, &"signal".into(), &get(&ac, "signal")).unwrap();
    let err = wait(c.fetch([origin(), "/api/me".into()].concat().into(), init.into()))
        .await
        .expect_err("rejects");
    assert_eq!(err, JsValue::from(reason), "the signal's own reason");
    assert!(
        !fake_installed(),
        "nothing was sent, not even a start-up refresh"
    );
}

#[wasm_bindgen_test]
async fn k3_the_bearer_never_goes_to_another_origin_or_the_auth_endpoints() {
    fake_reset(&JsValue::UNDEFINED);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    signed_in(&c).await;
    let other = "http://127.0.0.2:9/api/me";
    let res = wait(c.fetch(other.into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(get(&res, "status").as_f64(), Some(200.0));
    wait(c.logout(false)).await.unwrap();
    let log = fake_log();
    assert!(log
        .iter()
        .any(|r| text(&r, "url").ends_with("/auth/logout")));
    assert!(log.iter().any(|r| text(&r, "url").ends_with("/auth/login")));
    for r in log.iter() {
        let url = text(&r, "url");
        let auth = text(&r, "auth");
        if url.starts_with(other) || url.contains("/auth/") {
            assert_eq!(auth, "", "bearer sent to {url}");
        }
    }
    let t = Array::from(&calls(&traces).get(0)).get(0);
    assert_eq!(get(&t, "bearer").as_bool(), Some(false));
}

#[wasm_bindgen_test]
async fn a_callers_own_authorization_header_is_sent_as_given() {
    fake_reset(&JsValue::UNDEFINED);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    signed_in(&c).await;
    let init = Object::new();
    let headers = Object::new();
    Reflect::set(
        &headers,
        &"Authorization".into(),
        &"Basic dXNlcjpwdw==".into(),
    )
    .unwrap();
    Reflect::set(&init, &"headers".into(), &headers).unwrap();
    let res = wait(c.fetch([origin(), "/api/me".into()].concat().into(), init.into()))
        .await
        .unwrap();
    // Not our bearer, so not our 401: no refresh, no retry.
    assert_eq!(get(&res, "status").as_f64(), Some(401.0));
    let sent = api_requests("/api/me");
    assert_eq!(sent.len(), 1);
    assert_eq!(text(&sent[0], "auth"), "Basic dXNlcjpwdw==");
    assert_eq!(fake_refreshes(), 0);
}

#[wasm_bindgen_test]
async fn k4_a_403_is_returned_as_is_without_a_refresh() {
    fake_reset(&JsValue::UNDEFINED);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    signed_in(&c).await;
    let res = wait(c.fetch(
        [origin(), "/api/forbidden".into()].concat().into(),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    assert_eq!(get(&res, "status").as_f64(), Some(403.0));
    assert_eq!(fake_refreshes(), 0);
    assert_eq!(api_requests("/api/forbidden").len(), 1);
}

#[wasm_bindgen_test]
async fn failures_reject_with_typed_codes() {
    fake_reset(&JsValue::UNDEFINED);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    let _ = wait(c.ready()).await;
    let err = wait(c.login("alice".into(), "wrong".into()))
        .await
        .expect_err("refused");
    assert_eq!(text(&err, "code"), "ERR_INVALID_CREDENTIALS");
    assert!(!c.is_authenticated());

    // Signed in, then the refresh endpoint fails with 500: ERR_REFRESH_FAILED, session kept.
    signed_in_again(&c).await;
    fake_expire();
    let opts = Object::new();
    Reflect::set(&opts, &"refreshStatus".into(), &500.into()).unwrap();
    Reflect::set(&opts, &"keep".into(), &JsValue::TRUE).unwrap();
    fake_reset(&opts);
    let err = wait(c.fetch(
        [origin(), "/api/me".into()].concat().into(),
        JsValue::UNDEFINED,
    ))
    .await
    .expect_err("refresh failed");
    assert_eq!(text(&err, "code"), "ERR_REFRESH_FAILED");
    assert!(c.is_authenticated(), "K7: a failed refresh is not a logout");
    // An immediate second call is inside the back-off: ERR_REFRESH_BACKOFF, no new refresh.
    let before = fake_refresh_requests();
    let err = wait(c.fetch(
        [origin(), "/api/me".into()].concat().into(),
        JsValue::UNDEFINED,
    ))
    .await
    .expect_err("backing off");
    assert_eq!(text(&err, "code"), "ERR_REFRESH_BACKOFF");
    assert_eq!(fake_refresh_requests(), before);

    // A bad input rejects like fetch (a TypeError), not with an auth error.
    let err = wait(c.fetch("http://[::1".into(), JsValue::UNDEFINED))
        .await
        .expect_err("bad URL");
    assert!(get(&err, "code").is_undefined());
    assert_eq!(text(&err, "name"), "TypeError");
}

async fn signed_in_again(c: &Client) {
    wait(c.login("alice".into(), "alice-password".into()))
        .await
        .unwrap();
    assert!(c.is_authenticated());
}

/// A signed-out start: the refresh endpoint's `204` ("no session", no body) is signed out, with
/// no event and no second request. A `403 access_denied` (an origin the server does not allow)
/// is `ERR_ORIGIN_REFUSED`, for login and refresh alike.
#[wasm_bindgen_test]
async fn no_session_204_is_a_quiet_start_and_a_refused_origin_has_its_own_code() {
    fake_reset(&JsValue::UNDEFINED);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    let ok = wait(c.ready()).await.unwrap();
    assert_eq!(ok.as_bool(), Some(false));
    let again = wait(c.ready()).await.unwrap();
    assert_eq!(again.as_bool(), Some(false));
    let refreshes = api_requests("/auth/refresh");
    assert_eq!(refreshes.len(), 1, "signed out is settled: one request");
    assert_eq!(text(&refreshes[0], "status"), "204");
    assert_eq!(calls(&events).length(), 0, "no event at a signed-out start");

    let opts = Object::new();
    Reflect::set(&opts, &"refuseOrigin".into(), &JsValue::TRUE).unwrap();
    fake_reset(&opts);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    let err = wait(c.login("alice".into(), "alice-password".into()))
        .await
        .expect_err("origin refused");
    assert_eq!(text(&err, "code"), "ERR_ORIGIN_REFUSED");
    assert!(!c.is_authenticated());
}

/// A server in `--dpop required` refuses a login without a proof (`401 invalid_dpop_proof`):
/// the default build says `ERR_DPOP_REQUIRED` (import `authfetch/dpop`), not "wrong password";
/// the DPoP build sends a proof, so the same server signs it in.
#[wasm_bindgen_test]
async fn a_login_refused_for_want_of_dpop_says_so() {
    let opts = Object::new();
    Reflect::set(&opts, &"requireDpop".into(), &JsValue::TRUE).unwrap();
    fake_reset(&opts);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    let login = wait(c.login("alice".into(), "alice-password".into())).await;
    if cfg!(feature = "dpop") {
        login.expect("the DPoP build sends a proof");
        assert!(c.is_authenticated());
        let _ = wait(c.logout(false)).await;
    } else {
        let err = login.expect_err("refused for want of a proof");
        assert_eq!(text(&err, "code"), "ERR_DPOP_REQUIRED");
        assert!(!c.is_authenticated());
    }
}

#[wasm_bindgen_test]
async fn events_claims_and_expiry_follow_the_session() {
    fake_reset(&JsValue::UNDEFINED);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    assert!(c.claims().is_null());
    assert_eq!(c.expires_in(), None, "no token");
    signed_in(&c).await;
    // The decoded payload {"sub":"u-alice","n":1}: an object, never the token.
    let claims = c.claims();
    assert_eq!(text(&claims, "sub"), "u-alice");
    assert_eq!(get(&claims, "n").as_f64(), Some(1.0));
    let ms = c.expires_in().expect("a token");
    assert!(ms > 0.0 && ms <= 3000.0, "{ms}");
    wait(c.logout(false)).await.unwrap();
    assert!(!c.is_authenticated());
    assert!(c.claims().is_null());
    let seen: Vec<String> = calls(&events)
        .iter()
        .map(|a| text(&Array::from(&a).get(0), "type"))
        .collect();
    assert_eq!(seen, ["signed_in", "signed_out"]);
}

#[wasm_bindgen_test]
async fn k1_nothing_is_written_to_any_storage() {
    let before = wait(storage_dump()).await.unwrap().as_string().unwrap();
    fake_reset(&JsValue::UNDEFINED);
    let (events, traces) = (recorder(), recorder());
    let c = client(&events, &traces);
    signed_in(&c).await;
    fake_expire();
    let res = wait(c.fetch(
        [origin(), "/api/me".into()].concat().into(),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    assert_eq!(get(&res, "status").as_f64(), Some(200.0));
    let during = wait(storage_dump()).await.unwrap().as_string().unwrap();
    wait(c.logout(false)).await.unwrap();
    let after = wait(storage_dump()).await.unwrap().as_string().unwrap();
    assert_eq!(before, during);
    assert_eq!(before, after);
    for token in fake_log()
        .iter()
        .map(|r| text(&r, "auth"))
        .filter(|a| !a.is_empty())
    {
        let t = token.trim_start_matches("Bearer ");
        assert!(!during.contains(t) && !after.contains(t));
    }
}

/// D1, D2: a proof from the client's key verifies under WebCrypto with the stored pair's public
/// key, carries the public JWK of that key and the request's `htm`, `htu` (no query, no
/// fragment) and `ath`; the private key cannot be exported.
#[cfg(feature = "dpop")]
#[wasm_bindgen_test]
async fn d1_d2_a_proof_verifies_with_the_stored_key_and_the_private_key_is_not_extractable() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let out = authfetch::web::dpop::test_proof(
        "GET",
        "https://api.example/api/me?q=1#f",
        Some("tok".into()),
    )
    .await
    .expect("proof");
    let proof = out.get(0).as_string().unwrap();
    let pair = out.get(1);
    assert_eq!(
        out.get(2),
        JsValue::TRUE,
        "a page that loads the stored key signs under the same header (a reload keeps the key)"
    );
    let private: web_sys::CryptoKey = get(&pair, "privateKey").unchecked_into();
    let public: web_sys::CryptoKey = get(&pair, "publicKey").unchecked_into();
    assert!(
        !private.extractable(),
        "the private key must be non-extractable"
    );
    let subtle = web_sys::window().unwrap().crypto().unwrap().subtle();
    let export = JsFuture::from(subtle.export_key("jwk", &private).unwrap()).await;
    assert!(export.is_err(), "exporting the private key must fail");

    let parts: Vec<&str> = proof.split('.').collect();
    assert_eq!(parts.len(), 3);
    let json = |p: &str| {
        js_sys::JSON::parse(&String::from_utf8(URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap())
            .unwrap()
    };
    let (header, payload) = (json(parts[0]), json(parts[1]));
    assert_eq!(text(&header, "typ"), "dpop+jwt");
    assert_eq!(text(&header, "alg"), "ES256");
    let jwk = get(&header, "jwk");
    assert!(get(&jwk, "d").is_undefined(), "no private member");
    let public_jwk = JsFuture::from(subtle.export_key("jwk", &public).unwrap())
        .await
        .unwrap();
    assert_eq!(text(&jwk, "x"), text(&public_jwk, "x"));
    assert_eq!(text(&jwk, "y"), text(&public_jwk, "y"));
    assert_eq!(text(&payload, "htm"), "GET");
    assert_eq!(text(&payload, "htu"), "https://api.example/api/me");
    let digest = JsFuture::from(
        subtle
            .digest_with_str_and_u8_array("SHA-256", b"tok")
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        text(&payload, "ath"),
        URL_SAFE_NO_PAD.encode(js_sys::Uint8Array::new(&digest).to_vec())
    );
    assert!(text(&payload, "jti").len() >= 22);
    assert!(get(&payload, "iat").as_f64().unwrap() > 1.7e9);

    let params = web_sys::EcdsaParams::new("ECDSA", &JsValue::from_str("SHA-256"));
    let input = format!("{}.{}", parts[0], parts[1]);
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert_eq!(sig.len(), 64);
    let verify = |sig: &mut [u8]| {
        JsFuture::from(
            subtle
                .verify_with_object_and_u8_array_and_u8_array(
                    &params,
                    &public,
                    sig,
                    input.as_bytes(),
                )
                .unwrap(),
        )
    };
    assert_eq!(verify(&mut sig).await.unwrap(), JsValue::TRUE);
    sig[10] ^= 1;
    assert_eq!(
        verify(&mut sig).await.unwrap(),
        JsValue::FALSE,
        "a changed signature fails"
    );
}
