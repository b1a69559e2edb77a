//! Adversarial tests of the verification layer, one per docs/SECURITY.md item J1–J14, plus the
//! JWKS-URL mode against a real server on loopback.
//!
//! Most tests forge tokens with keys the test owns (a `Verifier` over those keys and a frozen
//! clock), make exactly one thing wrong, and assert the *reason* the verifier gives, so a test
//! cannot pass because the token happened to be broken in some other way. Each forged family
//! also has a control token that differs only in the attacked detail and is accepted.

mod common;

use authfetch_protocol::{JWKS_PATH, LOGOUT_ALL_PATH, LOGOUT_PATH, WWW_AUTHENTICATE_INVALID_TOKEN};
use authfetch_server::clock::{Clock, ManualClock};
use authfetch_server::config::{DEFAULT_ACCESS_TTL, MAX_SKEW};
use authfetch_server::jwt::{Alg, JwtError, MAX_KID_BYTES, MAX_TOKEN_BYTES};
use authfetch_server::keys::{JwkSet, PublicKey, KEY_FILE};
use authfetch_server::store::AccessCheck;
use authfetch_server::verify::{
    AccessClaims, Authenticated, JwksPolicy, RevocationCheck, Verifier, VerifierConfig, VerifyError,
};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer as _;
use serde_json::{json, Value};
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

const ISS: &str = "https://issuer.test";
const AUD: &str = "api.test";
const KID: &str = "es-1";
const ED_KID: &str = "ed-1";
/// The P-256 group order n, big-endian.
const N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

fn b64(b: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// Our key type for a test-owned P-256 key (the independent implementation the tests sign with).
fn es_public(sk: &p256::ecdsa::SigningKey) -> PublicKey {
    PublicKey::es256_from_sec1(sk.verifying_key().to_encoded_point(false).as_bytes()).unwrap()
}

/// Our key type for a test-owned Ed25519 key.
fn ed_public(sk: &ed25519_dalek::SigningKey) -> PublicKey {
    PublicKey::ed25519_from_bytes(sk.verifying_key().as_bytes()).unwrap()
}

fn enc(v: &Value) -> String {
    b64(serde_json::to_vec(v).unwrap())
}

/// Keys the test owns, a verifier that trusts them, and a frozen clock.
struct Kit {
    es: p256::ecdsa::SigningKey,
    ed: ed25519_dalek::SigningKey,
    clock: Arc<ManualClock>,
    v: Verifier,
}

impl Kit {
    fn new() -> Self {
        let es = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let ed = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let v = Verifier::builder(VerifierConfig::new(ISS, AUD))
            .keys([
                (KID.to_owned(), es_public(&es)),
                (ED_KID.to_owned(), ed_public(&ed)),
            ])
            .clock(clock.clone())
            .build()
            .unwrap();
        Kit { es, ed, clock, v }
    }

    fn now(&self) -> i64 {
        self.clock.now_secs()
    }

    fn claims(&self) -> Value {
        let now = self.now();
        json!({"iss": ISS, "aud": AUD, "sub": "user-1", "iat": now, "exp": now + 300, "jti": "jti-1", "sid": "fam-1"})
    }

    fn header() -> Value {
        json!({"alg": "ES256", "typ": "at+jwt", "kid": KID})
    }

    /// ES256 over already-encoded parts (so tests can send non-canonical encodings).
    fn es_raw(&self, h: &str, p: &str) -> String {
        let input = format!("{h}.{p}");
        let sig: p256::ecdsa::Signature = self.es.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.to_bytes()))
    }

    fn es(&self, header: &Value, claims: &Value) -> String {
        self.es_raw(&enc(header), &enc(claims))
    }

    fn ed(&self, header: &Value, claims: &Value) -> String {
        use ed25519_dalek::Signer as _;
        let input = format!("{}.{}", enc(header), enc(claims));
        let sig = self.ed.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.to_bytes()))
    }

    fn valid(&self) -> String {
        self.es(&Self::header(), &self.claims())
    }

    /// The token with its signature part replaced by `sig`.
    fn with_sig(token: &str, sig: &[u8]) -> String {
        let (input, _) = token.rsplit_once('.').unwrap();
        format!("{input}.{}", b64(sig))
    }

    async fn check(&self, token: &str) -> Result<AccessClaims, JwtError> {
        match self.v.verify(token).await {
            Ok(c) => Ok(c),
            Err(VerifyError::Invalid(e)) => Err(e),
            Err(other) => panic!("unexpected error kind: {other:?}"),
        }
    }

    async fn accepts(&self, token: &str) {
        if let Err(e) = self.check(token).await {
            panic!("control token rejected: {e:?}");
        }
    }

    async fn rejects(&self, token: &str, want: JwtError) {
        assert_eq!(
            self.check(token).await.err(),
            Some(want),
            "token {token:.120}"
        );
    }

    /// The verifier behind a real `VerifyLayer` on a tiny router.
    fn router(&self) -> Router {
        Router::new()
            .route(
                "/me",
                get(|Authenticated(c): Authenticated| async move { c.sub }),
            )
            .route_layer(self.v.layer())
    }
}

async fn layer_get(router: &Router, auth: &str) -> axum::http::Response<Body> {
    router
        .clone()
        .oneshot(
            Request::get("/me")
                .header(header::AUTHORIZATION, auth)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
}

fn assert_invalid_token(r: &axum::http::Response<Body>) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        WWW_AUTHENTICATE_INVALID_TOKEN
    );
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

fn claims_of(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn j1_one_algorithm_per_key_and_the_alg_header_never_chooses_the_key() {
    let k = Kit::new();
    k.accepts(&k.valid()).await;
    let mut ed_header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ED_KID});
    k.accepts(&k.ed(&ed_header, &k.claims())).await;
    // An EdDSA token that names the ES256 key: the key's algorithm wins.
    ed_header["kid"] = json!(KID);
    k.rejects(&k.ed(&ed_header, &k.claims()), JwtError::Algorithm)
        .await;
    // An ES256 token that names the Ed25519 key.
    let mut h = Kit::header();
    h["kid"] = json!(ED_KID);
    k.rejects(&k.es(&h, &k.claims()), JwtError::Algorithm).await;
    // Only the exact allowlisted spellings exist.
    for alg in [
        "es256", "Es256", "ES384", "ES512", "RS256", "PS256", "EDDSA", "Ed25519",
    ] {
        let mut h = Kit::header();
        h["alg"] = json!(alg);
        k.rejects(&k.es(&h, &k.claims()), JwtError::Algorithm).await;
    }
    assert_eq!(Alg::parse("ES256"), Some(Alg::Es256));
    assert_eq!(Alg::parse("EdDSA"), Some(Alg::EdDsa));

    // The server signs with ES256 by default and with EdDSA when configured; the JWKS names the
    // algorithm of each key and the server's own layer accepts its tokens.
    for (alg, name, kty) in [(Alg::Es256, "ES256", "EC"), (Alg::EdDsa, "EdDSA", "OKP")] {
        let t = TestApp::with(|c| c.alg = alg).await;
        let s = t.login("alice", "alice-password").await;
        assert_eq!(header_of(&s.access)["alg"], name);
        assert_eq!(t.me(&s.access).await.status(), StatusCode::OK);
        let jwks: JwkSet = serde_json::from_value(
            json(
                t.send(Request::get(JWKS_PATH).body(Body::empty()).unwrap())
                    .await,
            )
            .await,
        )
        .unwrap();
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.keys[0].alg.as_deref(), Some(name));
        assert_eq!(jwks.keys[0].kty, kty);
    }
    // A JWK without `alg`, or whose alg contradicts its curve, is not accepted as a key.
    let mut jwk = es_public(&k.es).to_jwk("x");
    jwk.alg = None;
    assert!(PublicKey::from_jwk(&jwk).is_err());
    jwk.alg = Some("EdDSA".into());
    assert!(PublicKey::from_jwk(&jwk).is_err());
    jwk.alg = Some("HS256".into());
    assert!(PublicKey::from_jwk(&jwk).is_err());
}

#[tokio::test]
async fn j2_rejects_alg_none_in_every_casing() {
    let k = Kit::new();
    let router = k.router();
    let claims = enc(&k.claims());
    let mut seen = 0;
    for mask in 0u8..16 {
        let alg: String = "none"
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if mask & (1 << i) != 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        let h = enc(&json!({"alg": alg, "typ": "at+jwt", "kid": KID}));
        // Unsigned (empty signature part), and with a junk signature, and with a real ES256
        // signature over the same input: none of them passes.
        let unsigned = format!("{h}.{claims}.");
        k.rejects(&unsigned, JwtError::Malformed("empty part"))
            .await;
        let junk = format!("{h}.{claims}.{}", b64([7u8; 64]));
        k.rejects(&junk, JwtError::Algorithm).await;
        let signed = k.es_raw(&h, &claims);
        k.rejects(&signed, JwtError::Algorithm).await;
        assert_invalid_token(&layer_get(&router, &format!("Bearer {unsigned}")).await);
        assert_invalid_token(&layer_get(&router, &format!("Bearer {signed}")).await);
        seen += 1;
    }
    assert_eq!(seen, 16, "all 2^4 casings of none");
    // A missing, null, empty, or non-string alg is no better.
    for alg in [Value::Null, json!(""), json!(["ES256"]), json!(256)] {
        let mut h = Kit::header();
        h["alg"] = alg;
        k.rejects(&k.es(&h, &k.claims()), JwtError::Algorithm).await;
    }
    let mut h = Kit::header();
    h.as_object_mut().unwrap().remove("alg");
    k.rejects(&k.es(&h, &k.claims()), JwtError::Algorithm).await;
}

#[tokio::test]
async fn j3_rejects_hs256_signed_with_the_public_key_bytes() {
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};
    let k = Kit::new();
    let vk = k.es.verifying_key();
    let jwk = es_public(&k.es).to_jwk(KID);
    // Every form an attacker might guess the verifier feeds to HMAC as "the key".
    let secrets: Vec<Vec<u8>> = vec![
        vk.to_encoded_point(false).as_bytes().to_vec(),
        vk.to_encoded_point(true).as_bytes().to_vec(),
        vk.to_public_key_der().unwrap().as_bytes().to_vec(),
        vk.to_public_key_pem(LineEnding::LF).unwrap().into_bytes(),
        serde_json::to_vec(&jwk).unwrap(),
        URL_SAFE_NO_PAD.decode(&jwk.x).unwrap(),
        k.ed.verifying_key().to_bytes().to_vec(),
    ];
    let router = k.router();
    let claims = enc(&k.claims());
    for alg in ["HS256", "HS384", "HS512", "hs256"] {
        for kid in [KID, ED_KID] {
            for secret in &secrets {
                let h = enc(&json!({"alg": alg, "typ": "at+jwt", "kid": kid}));
                let input = format!("{h}.{claims}");
                let sig = match alg {
                    "HS384" => {
                        let mut m = Hmac::<sha2::Sha384>::new_from_slice(secret).unwrap();
                        m.update(input.as_bytes());
                        m.finalize().into_bytes().to_vec()
                    }
                    "HS512" => {
                        let mut m = Hmac::<sha2::Sha512>::new_from_slice(secret).unwrap();
                        m.update(input.as_bytes());
                        m.finalize().into_bytes().to_vec()
                    }
                    _ => {
                        let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
                        m.update(input.as_bytes());
                        m.finalize().into_bytes().to_vec()
                    }
                };
                let token = format!("{input}.{}", b64(&sig));
                k.rejects(&token, JwtError::Algorithm).await;
                assert_invalid_token(&layer_get(&router, &format!("Bearer {token}")).await);
            }
        }
    }
    // Even a 32-byte HMAC that happens to sit where an Ed25519/ES256 signature would, under the
    // right alg name, is just a wrong signature.
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(&secrets[0]).unwrap();
    let input = format!("{}.{claims}", enc(&Kit::header()));
    m.update(input.as_bytes());
    let mac = m.finalize().into_bytes();
    let mut sig64 = mac.to_vec();
    sig64.extend_from_slice(&mac);
    k.rejects(&format!("{input}.{}", b64(&sig64)), JwtError::Signature)
        .await;
}

#[tokio::test]
async fn j4_es256_signatures_must_be_64_raw_bytes_with_r_and_s_in_range() {
    let k = Kit::new();
    let good = k.valid();
    k.accepts(&good).await;
    let sig_bytes = URL_SAFE_NO_PAD
        .decode(good.rsplit_once('.').unwrap().1)
        .unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&sig_bytes).unwrap();
    let (r, s) = (sig_bytes[..32].to_vec(), sig_bytes[32..].to_vec());

    // DER encoding of the very same (valid) signature.
    let der = sig.to_der();
    k.rejects(&Kit::with_sig(&good, der.as_bytes()), JwtError::Signature)
        .await;
    // Wrong lengths: truncated, extended, doubled, one byte, huge.
    for len in [1usize, 32, 63, 65, 96, 128, 1024] {
        let mut v = sig_bytes.clone();
        v.resize(len, 0);
        k.rejects(&Kit::with_sig(&good, &v), JwtError::Signature)
            .await;
    }
    // CVE-2022-21449 ("psychic signatures"): r = s = 0 must never verify anything.
    k.rejects(&Kit::with_sig(&good, &[0u8; 64]), JwtError::Signature)
        .await;
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    let zero = [0u8; 32];
    let ones = [0xFFu8; 32];
    let mut n_plus_1 = N;
    n_plus_1[31] += 1;
    for bad in [
        cat(&zero, &s[..]),     // r = 0
        cat(&r[..], &zero),     // s = 0
        cat(&N, &s[..]),        // r = n
        cat(&r[..], &N),        // s = n
        cat(&n_plus_1, &s[..]), // r = n + 1
        cat(&r[..], &n_plus_1), // s = n + 1
        cat(&ones, &s[..]),     // r = 2^256 - 1
        cat(&r[..], &ones),     // s = 2^256 - 1
        cat(&N, &N),            // r = s = n (the "zero" of the CVE, written as n)
    ] {
        k.rejects(&Kit::with_sig(&good, &bad), JwtError::Signature)
            .await;
    }
    // Flipping one bit anywhere in a valid signature breaks it.
    for i in [0usize, 31, 32, 63] {
        let mut v = sig_bytes.clone();
        v[i] ^= 1;
        k.rejects(&Kit::with_sig(&good, &v), JwtError::Signature)
            .await;
    }
    // Ed25519: verify_strict refuses a non-canonical S (S + L) and the all-zero signature.
    let ed_good = k.ed(
        &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ED_KID}),
        &k.claims(),
    );
    k.accepts(&ed_good).await;
    let ed_sig = URL_SAFE_NO_PAD
        .decode(ed_good.rsplit_once('.').unwrap().1)
        .unwrap();
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut s_plus_l = ed_sig.clone();
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s_plus_l[32 + i]) + u16::from(L[i]) + carry;
        s_plus_l[32 + i] = v as u8;
        carry = v >> 8;
    }
    k.rejects(&Kit::with_sig(&ed_good, &s_plus_l), JwtError::Signature)
        .await;
    k.rejects(&Kit::with_sig(&ed_good, &[0u8; 64]), JwtError::Signature)
        .await;
    k.rejects(&Kit::with_sig(&ed_good, &ed_sig[..63]), JwtError::Signature)
        .await;
}

#[tokio::test]
async fn j5_jwk_jku_x5u_x5c_headers_are_rejected_and_kid_is_a_bounded_lookup() {
    let k = Kit::new();
    let attacker = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let attacker_jwk = es_public(&attacker).to_jwk("evil");
    let sign_attacker = |h: &Value| {
        let input = format!("{}.{}", enc(h), enc(&k.claims()));
        let sig: p256::ecdsa::Signature = attacker.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.to_bytes()))
    };
    for (member, value) in [
        ("jwk", serde_json::to_value(&attacker_jwk).unwrap()),
        ("jku", json!("http://127.0.0.1:9/jwks.json")),
        ("x5u", json!("http://127.0.0.1:9/cert.pem")),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIU"])),
        ("x5t", json!("dGh1bWI")),
        ("x5t#S256", json!("dGh1bWI")),
    ] {
        let forbidden = match member {
            "jwk" => "jwk",
            "jku" => "jku",
            "x5u" => "x5u",
            "x5c" => "x5c",
            "x5t" => "x5t",
            _ => "x5t#S256",
        };
        // Signed by the attacker's key, pointing at it...
        let mut h = json!({"alg": "ES256", "typ": "at+jwt", "kid": "evil"});
        h[member] = value.clone();
        k.rejects(&sign_attacker(&h), JwtError::ForbiddenHeader(forbidden))
            .await;
        // ...or even correctly signed by our own key: the member alone is refused.
        let mut h = Kit::header();
        h[member] = value;
        k.rejects(&k.es(&h, &k.claims()), JwtError::ForbiddenHeader(forbidden))
            .await;
    }
    // Without the embedded key, the attacker's kid is simply unknown.
    k.rejects(
        &sign_attacker(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "evil"})),
        JwtError::UnknownKey,
    )
    .await;
    // kid is never a path, URL or query: odd values are just unknown keys.
    for kid in [
        "../../../../dev/null",
        "' OR '1'='1",
        "http://127.0.0.1:9/k",
        "es-1\0",
    ] {
        let mut h = Kit::header();
        h["kid"] = json!(kid);
        k.rejects(&k.es(&h, &k.claims()), JwtError::UnknownKey)
            .await;
    }
    // Bounded: missing, empty, non-string or over MAX_KID_BYTES is malformed.
    let long = "k".repeat(MAX_KID_BYTES + 1);
    for kid in [Value::Null, json!(""), json!(1), json!([KID]), json!(long)] {
        let mut h = Kit::header();
        h["kid"] = kid;
        k.rejects(
            &k.es(&h, &k.claims()),
            JwtError::Malformed("kid missing or too long"),
        )
        .await;
    }
    // A static-key verifier never fetches anything.
    assert_eq!(k.v.jwks_fetches(), 0);
}

#[tokio::test]
async fn j6_rejects_unknown_crit() {
    let k = Kit::new();
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!(["http://example.com/ext"]),
        json!([]),
        json!("exp"),
    ] {
        let mut h = Kit::header();
        h["crit"] = crit.clone();
        if crit == json!(["b64"]) {
            h["b64"] = json!(false);
        }
        k.rejects(&k.es(&h, &k.claims()), JwtError::ForbiddenHeader("crit"))
            .await;
    }
    // Unknown *non-critical* header members are ignored, as RFC 7515 says.
    let mut h = Kit::header();
    h["x-note"] = json!("ignored");
    k.accepts(&k.es(&h, &k.claims())).await;
}

#[tokio::test]
async fn j7_issues_typ_at_jwt_and_requires_it() {
    // The server issues typ at+jwt.
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    let h = header_of(&s.access);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(
        h.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["alg", "kid", "typ"],
        "no other header members"
    );
    // The verifier requires it.
    let k = Kit::new();
    for typ in [
        Value::Null,
        json!("JWT"),
        json!("jwt"),
        json!("at+jwt2"),
        json!("at-jwt"),
        json!(""),
        json!(["at+jwt"]),
        json!(1),
    ] {
        let mut h = Kit::header();
        h["typ"] = typ;
        k.rejects(&k.es(&h, &k.claims()), JwtError::WrongType).await;
    }
    let mut h = Kit::header();
    h.as_object_mut().unwrap().remove("typ");
    k.rejects(&k.es(&h, &k.claims()), JwtError::WrongType).await;
    // RFC 9068 §4: the full media type, and media types compare case-insensitively.
    for typ in ["application/at+jwt", "AT+JWT"] {
        let mut h = Kit::header();
        h["typ"] = json!(typ);
        k.accepts(&k.es(&h, &k.claims())).await;
    }
}

#[tokio::test]
async fn j8_checks_iss_aud_exp_nbf_iat_and_requires_every_claim() {
    let k = Kit::new();
    let now = k.now();
    let skew = i64::try_from(MAX_SKEW.as_secs()).unwrap();
    assert_eq!(skew, 60);
    let tok = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = k.claims();
        f(c.as_object_mut().unwrap());
        k.es(&Kit::header(), &c)
    };
    k.accepts(&tok(&|_| {})).await;
    // iss: exact.
    for iss in [
        json!("https://issuer.test/"),
        json!("HTTPS://ISSUER.TEST"),
        json!("https://evil.test"),
        json!(""),
        json!(["https://issuer.test"]),
        Value::Null,
    ] {
        k.rejects(
            &tok(&|c| {
                c.insert("iss".into(), iss.clone());
            }),
            JwtError::Claims("iss"),
        )
        .await;
    }
    // aud: must contain ours; a string or a non-empty array of strings.
    k.accepts(&tok(&|c| {
        c.insert("aud".into(), json!(["other", AUD]));
    }))
    .await;
    for aud in [
        json!("other"),
        json!(["other"]),
        json!([]),
        json!([AUD, 1]),
        json!("API.TEST"),
        Value::Null,
    ] {
        k.rejects(
            &tok(&|c| {
                c.insert("aud".into(), aud.clone());
            }),
            JwtError::Claims("aud"),
        )
        .await;
    }
    // exp: required, integer, strictly in the future (no leeway).
    k.rejects(
        &tok(&|c| {
            c.insert("exp".into(), json!(now));
        }),
        JwtError::Expired,
    )
    .await;
    k.rejects(
        &tok(&|c| {
            c.insert("exp".into(), json!(now - 1));
        }),
        JwtError::Expired,
    )
    .await;
    k.accepts(&tok(&|c| {
        c.insert("exp".into(), json!(now + 1));
    }))
    .await;
    for exp in [
        json!(now as f64 + 300.5),
        json!((now + 300).to_string()),
        Value::Null,
    ] {
        k.rejects(
            &tok(&|c| {
                c.insert("exp".into(), exp.clone());
            }),
            JwtError::Claims("exp"),
        )
        .await;
    }
    // iat: required; at most MAX_SKEW in the future.
    k.accepts(&tok(&|c| {
        c.insert("iat".into(), json!(now + skew));
    }))
    .await;
    k.rejects(
        &tok(&|c| {
            c.insert("iat".into(), json!(now + skew + 1));
        }),
        JwtError::Claims("iat"),
    )
    .await;
    // nbf: optional; at most MAX_SKEW in the future.
    k.accepts(&tok(&|c| {
        c.insert("nbf".into(), json!(now + skew));
    }))
    .await;
    k.rejects(
        &tok(&|c| {
            c.insert("nbf".into(), json!(now + skew + 1));
        }),
        JwtError::Claims("nbf"),
    )
    .await;
    k.rejects(
        &tok(&|c| {
            c.insert("nbf".into(), json!("soon"));
        }),
        JwtError::Claims("nbf"),
    )
    .await;
    // exp must come after iat.
    k.rejects(
        &tok(&|c| {
            c.insert("iat".into(), json!(now + 30));
            c.insert("exp".into(), json!(now + 10));
        }),
        JwtError::Claims("exp"),
    )
    .await;
    // Every one of exp iat iss aud sub jti is required.
    for claim in ["exp", "iat", "iss", "aud", "sub", "jti"] {
        let r = k
            .check(&tok(&|c| {
                c.remove(claim);
            }))
            .await;
        assert!(matches!(r, Err(JwtError::Claims(_))), "{claim}: {r:?}");
    }
    // sub and jti must be non-empty strings.
    for (claim, v) in [
        ("sub", json!("")),
        ("sub", json!(1)),
        ("jti", json!("")),
        ("jti", json!(["a"])),
    ] {
        k.rejects(
            &tok(&|c| {
                c.insert(claim.into(), v.clone());
            }),
            JwtError::Claims(claim),
        )
        .await;
    }
    // Time moves: the accepted token expires.
    let t = tok(&|_| {});
    k.accepts(&t).await;
    k.clock.advance(Duration::from_secs(300));
    k.rejects(&t, JwtError::Expired).await;
}

#[tokio::test]
async fn j9_other_token_kinds_never_validate_as_access_tokens() {
    let k = Kit::new();
    // Same key, same claims, other JOSE types: ID tokens, DPoP proofs, logout tokens,
    // generic JWTs, refresh-token JWTs of other systems.
    for typ in [
        "JWT",
        "id_token+jwt",
        "dpop+jwt",
        "logout+jwt",
        "secevent+jwt",
        "refresh+jwt",
        "JOSE",
    ] {
        let mut h = Kit::header();
        h["typ"] = json!(typ);
        k.rejects(&k.es(&h, &k.claims()), JwtError::WrongType).await;
    }
    // An ID token for a client (aud = client id) with typ JWT is refused on two counts; the
    // typ check comes first.
    let mut idt = k.claims();
    idt["aud"] = json!("spa-client");
    idt["nonce"] = json!("n");
    let mut h = Kit::header();
    h["typ"] = json!("JWT");
    k.rejects(&k.es(&h, &idt), JwtError::WrongType).await;
    // Our own refresh token (opaque) or a JWE (5 parts) are not access tokens either.
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    let r = t.me(&s.cookie).await;
    assert_invalid_token(&r);
    k.rejects(&s.cookie, JwtError::Malformed("not three parts"))
        .await;
    let jwe = "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d";
    k.rejects(jwe, JwtError::Malformed("not three parts")).await;
    // The server's own access token is refused by a verifier that expects another audience.
    let other = Verifier::with_key_ring(
        VerifierConfig::new("authfetch", "another-api"),
        Arc::clone(t.state.service.keys()),
    );
    assert!(matches!(
        other.verify(&s.access).await,
        Err(VerifyError::Invalid(JwtError::Claims("aud")))
    ));
}

#[tokio::test]
async fn j10_strict_compact_form_three_unpadded_base64url_parts_and_a_size_cap() {
    let k = Kit::new();
    let good = k.valid();
    k.accepts(&good).await;
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let not_b64 = JwtError::Malformed("not unpadded base64url");
    // Padding on any part (re-signed where the signature covers it).
    let hp = format!("{h}{}", ["=", "=", "==", "="][h.len() % 4]);
    k.rejects(&k.es_raw(&hp, p), not_b64.clone()).await;
    let pp = format!("{p}=");
    k.rejects(&k.es_raw(h, &pp), not_b64.clone()).await;
    k.rejects(&format!("{h}.{p}.{s}=="), not_b64.clone()).await;
    // Standard base64 alphabet instead of base64url: find a token whose signature has a
    // character that differs between the two alphabets (ES256 here is deterministic, RFC 6979,
    // so vary the jti).
    let (mut i, mut t) = (0, good.clone());
    while !t.rsplit_once('.').unwrap().1.contains(['-', '_']) {
        i += 1;
        let mut c = k.claims();
        c["jti"] = json!(format!("jti-{i}"));
        t = k.es(&Kit::header(), &c);
    }
    k.accepts(&t).await;
    let (input, sig) = t.rsplit_once('.').unwrap();
    let std_sig = STANDARD.encode(URL_SAFE_NO_PAD.decode(sig).unwrap());
    assert!(std_sig.contains(['+', '/']));
    k.rejects(&format!("{input}.{std_sig}"), not_b64.clone())
        .await;
    let hs = STANDARD
        .encode(URL_SAFE_NO_PAD.decode(h).unwrap())
        .replace('=', "");
    k.rejects(&format!("{hs}+/.{p}.{s}"), not_b64.clone()).await;
    // Non-canonical trailing bits: same bytes, different string.
    let last = s.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    // 64 bytes → 86 chars, the last one carries 2 bits + 4 zero padding bits.
    let tweaked = alphabet.chars().nth(idx | 1).unwrap();
    assert_ne!(tweaked, last);
    k.rejects(
        &format!("{h}.{p}.{}{tweaked}", &s[..s.len() - 1]),
        not_b64.clone(),
    )
    .await;
    // Part counts.
    let three = JwtError::Malformed("not three parts");
    for t in [
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}."),
        format!("{h}.{p}.{s}.x.y"),
        h.to_owned(),
    ] {
        k.rejects(&t, three.clone()).await;
    }
    k.rejects(&format!(".{p}.{s}"), JwtError::Malformed("empty part"))
        .await;
    k.rejects(&format!("{h}..{s}"), JwtError::Malformed("empty part"))
        .await;
    k.rejects("", JwtError::Malformed("empty or oversized"))
        .await;
    // Whitespace anywhere.
    for t in [
        format!(" {good}"),
        format!("{good} "),
        format!("{good}\n"),
        format!("{h}. {p}.{s}"),
        format!("{h}.{p}\t.{s}"),
        format!("{h}.{}\n{}.{s}", &p[..4], &p[4..]),
    ] {
        assert!(k.check(&t).await.is_err(), "{t:?}");
    }
    // Header and payload must be JSON objects without duplicate members.
    let dup = b64(format!(
        r#"{{"alg":"ES256","typ":"at+jwt","kid":"{KID}","alg":"none"}}"#
    ));
    k.rejects(
        &k.es_raw(&dup, p),
        JwtError::Malformed("header is not a JSON object"),
    )
    .await;
    let dup_claims = b64(format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"user-1","sub":"admin","iat":{n},"exp":{e},"jti":"j"}}"#,
        n = k.now(),
        e = k.now() + 60
    ));
    k.rejects(
        &k.es_raw(h, &dup_claims),
        JwtError::Malformed("payload is not a JSON object"),
    )
    .await;
    k.rejects(
        &k.es_raw(&b64("[1,2]"), p),
        JwtError::Malformed("header is not a JSON object"),
    )
    .await;
    k.rejects(
        &k.es_raw(h, &b64("\"claims\"")),
        JwtError::Malformed("payload is not a JSON object"),
    )
    .await;
    k.rejects(
        &k.es_raw(h, &b64([0xff, 0xfe, b'{'])),
        JwtError::Malformed("payload is not a JSON object"),
    )
    .await;
    // Size cap: a validly signed token just under the cap passes, one over it is refused
    // before any JSON is parsed.
    let sized = |extra: usize| {
        let mut c = k.claims();
        c["pad"] = json!("x".repeat(extra));
        k.es(&Kit::header(), &c)
    };
    // Binary search for the largest padding that still fits.
    let (mut lo, mut hi) = (0usize, MAX_TOKEN_BYTES);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if sized(mid).len() <= MAX_TOKEN_BYTES {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let grow = lo;
    let under = sized(grow);
    assert!(under.len() <= MAX_TOKEN_BYTES && under.len() > MAX_TOKEN_BYTES - 8);
    k.accepts(&under).await;
    let over = sized(grow + 8);
    assert!(over.len() > MAX_TOKEN_BYTES);
    k.rejects(&over, JwtError::Malformed("empty or oversized"))
        .await;
    let huge = format!("{h}.{}.{s}", "A".repeat(1 << 20));
    k.rejects(&huge, JwtError::Malformed("empty or oversized"))
        .await;
    // Through the layer: every one of these is a 401 with WWW-Authenticate, never 400/500.
    let router = k.router();
    for bad in [&huge, &over, &format!("{h}.{p}"), &format!("{h}.{p}.{s}==")] {
        assert_invalid_token(&layer_get(&router, &format!("Bearer {bad}")).await);
    }
    for auth in [
        format!("Bearer {good} "),
        format!("Bearer {good},x"),
        format!("Bearer\t{good}"),
        format!("Basic {good}"),
        "Bearer".to_owned(),
        good.clone(),
    ] {
        assert_invalid_token(&layer_get(&router, &auth).await);
    }
    // The scheme is case-insensitive (RFC 6750 / RFC 9110); the control passes the layer.
    for auth in [
        format!("Bearer {good}"),
        format!("bearer {good}"),
        format!("BEARER  {good}"),
    ] {
        let r = layer_get(&router, &auth).await;
        assert_eq!(r.status(), StatusCode::OK, "{auth:.20}");
    }
    // Two Authorization headers are ambiguous: refused.
    let r = router
        .clone()
        .oneshot(
            Request::get("/me")
                .header(header::AUTHORIZATION, format!("Bearer {good}"))
                .header(header::AUTHORIZATION, format!("Bearer {good}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// J10, robustness: random junk built from JWT-ish pieces never panics and never verifies.
#[tokio::test]
async fn j10_random_token_shaped_junk_is_rejected_without_panicking() {
    use rand::{Rng as _, SeedableRng as _};
    let k = Kit::new();
    let good = k.valid();
    let parts: Vec<&str> = good.split('.').collect();
    let pieces: Vec<String> = vec![
        parts[0].into(),
        parts[1].into(),
        parts[2].into(),
        ".".into(),
        "..".into(),
        "=".into(),
        " ".into(),
        "\u{0}".into(),
        "é".into(),
        "eyJ".into(),
        b64("{}"),
        b64("{\"alg\":\"ES256\"}"),
        b64("null"),
        b64("[]"),
        b64([0u8; 64]),
        "A".repeat(300),
        "-_".into(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for _ in 0..3000 {
        let n = rng.gen_range(1..8);
        let t: String = (0..n)
            .map(|_| pieces[rng.gen_range(0..pieces.len())].as_str())
            .collect();
        if t == good {
            continue;
        }
        assert!(k.check(&t).await.is_err(), "{t:?} verified");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn j11_key_file_is_0600_in_a_0700_dir_and_private_keys_are_never_served() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = test_config(&data);
    config.demo_users = false;
    let state = authfetch_server::open(config.clone()).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let key_file = data.join(KEY_FILE);
    assert_eq!(mode(&key_file), 0o600, "key file");
    assert_eq!(mode(&data), 0o700, "data dir");
    // Never committed by accident: the data directory ignores itself in Git.
    let ignore = std::fs::read_to_string(data.join(authfetch_server::keys::GITIGNORE)).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
    // Rotation rewrites the file: still 0600.
    state
        .service
        .keys()
        .rotate(Alg::Es256, state.service.clock().now_ms(), Duration::ZERO)
        .unwrap();
    assert_eq!(mode(&key_file), 0o600, "key file after rotation");
    let file: Value = serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap();
    let ds: Vec<String> = file["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["d"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ds.len(), 2);
    assert_ne!(ds[0], ds[1], "fresh randomness per key");
    // The JWKS over HTTP: no `d`, no private material in any encoding.
    let router = authfetch_server::app(state.clone());
    let r = router
        .oneshot(Request::get(JWKS_PATH).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = String::from_utf8(body_bytes(r).await).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    for key in v["keys"].as_array().unwrap() {
        assert!(key.get("d").is_none(), "{key}");
        for private_member in ["p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private_member).is_none());
        }
    }
    for d in &ds {
        assert!(!body.contains(d.as_str()));
        let raw = URL_SAFE_NO_PAD.decode(d).unwrap();
        assert!(!body.contains(&STANDARD.encode(&raw)));
        assert!(!body.contains(&authfetch_server::secret::hex(&raw)));
    }
    // Debug output of the ring and the state never shows key material either.
    let dbg = format!("{:?} {:?}", state.service.keys(), state);
    for d in &ds {
        assert!(!dbg.contains(d.as_str()));
    }
    drop(state);
    // A loosened key file is tightened again on the next start.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _state = authfetch_server::open(config).await.unwrap();
    assert_eq!(mode(&key_file), 0o600, "re-tightened");
    // Two independent ephemeral rings never share a key.
    let now = 1_700_000_000_000;
    let a = authfetch_server::keys::KeyRing::ephemeral(Alg::Es256, Duration::from_secs(60), now);
    let b = authfetch_server::keys::KeyRing::ephemeral(Alg::Es256, Duration::from_secs(60), now);
    assert_ne!(a.active_kid(now), b.active_kid(now));
}

#[tokio::test]
async fn j12_jwks_members_32_byte_coordinates_and_rotation_keeps_the_old_key() {
    // Members and sizes: find P-256 keys whose x or y has a leading zero byte, the case a
    // naive big-integer encoding gets wrong (31-byte coordinates).
    let mut found_x = false;
    let mut found_y = false;
    for _ in 0..20_000 {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let p = sk.verifying_key().to_encoded_point(false);
        let (x0, y0) = (p.x().unwrap()[0], p.y().unwrap()[0]);
        if x0 != 0 && y0 != 0 {
            continue;
        }
        let jwk = es_public(&sk).to_jwk("k");
        let x = URL_SAFE_NO_PAD.decode(&jwk.x).unwrap();
        let y = URL_SAFE_NO_PAD.decode(jwk.y.as_ref().unwrap()).unwrap();
        assert_eq!((x.len(), y.len()), (32, 32));
        assert_eq!((jwk.x.len(), jwk.y.as_ref().unwrap().len()), (43, 43));
        found_x |= x0 == 0 && x[0] == 0;
        found_y |= y0 == 0 && y[0] == 0;
        // And it round-trips.
        assert_eq!(PublicKey::from_jwk(&jwk).unwrap(), es_public(&sk));
        if found_x && found_y {
            break;
        }
    }
    assert!(
        found_x && found_y,
        "no key with a leading zero coordinate in 20000 draws"
    );
    // A 31-byte coordinate from someone else's JWKS is refused rather than padded.
    let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let mut jwk = es_public(&sk).to_jwk("k");
    let x = URL_SAFE_NO_PAD.decode(&jwk.x).unwrap();
    jwk.x = b64(&x[1..]);
    assert!(PublicKey::from_jwk(&jwk).is_err());

    // The served JWKS: exactly kid kty crv x y alg use.
    let t = TestApp::new().await;
    let get_jwks = || async {
        json(
            t.send(Request::get(JWKS_PATH).body(Body::empty()).unwrap())
                .await,
        )
        .await
    };
    let set = get_jwks().await;
    let key = &set["keys"][0];
    let mut members: Vec<&str> = key
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "ES256");
    let kids = |set: &Value| -> Vec<String> {
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let old_kid = kids(&set)[0].clone();

    // Rotation with a publication lead: the next key is published before it signs anything.
    let before = t.login("alice", "alice-password").await;
    let lead = Duration::from_secs(30);
    let new_kid = t
        .state
        .service
        .keys()
        .rotate(Alg::Es256, t.clock.now_ms(), lead)
        .unwrap();
    let set = get_jwks().await;
    assert_eq!(kids(&set), vec![old_kid.clone(), new_kid.clone()]);
    let during_lead = t.login("alice", "alice-password").await;
    assert_eq!(header_of(&during_lead.access)["kid"], old_kid.as_str());
    t.advance(lead);
    let after = t.login("alice", "alice-password").await;
    assert_eq!(header_of(&after.access)["kid"], new_kid.as_str());
    // The old key stays published (and accepted) for at least access TTL + skew after the
    // switch, so every outstanding token keeps verifying until it expires.
    let retain = t.config.access_ttl + MAX_SKEW;
    assert_eq!(t.me(&during_lead.access).await.status(), StatusCode::OK);
    t.advance(retain - Duration::from_secs(1));
    assert!(kids(&get_jwks().await).contains(&old_kid));
    t.advance(Duration::from_secs(1));
    assert_eq!(kids(&get_jwks().await), vec![new_kid.clone()]);
    // By then every token the old key signed has expired anyway.
    let exp = claims_of(&during_lead.access)["exp"].as_i64().unwrap();
    assert!(exp <= t.now_s(), "old tokens outlived their key");
    assert_eq!(
        t.me(&before.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = t.login("alice", "alice-password").await;
    assert_eq!(header_of(&fresh.access)["kid"], new_kid.as_str());
    assert_eq!(t.me(&fresh.access).await.status(), StatusCode::OK);
    // Rotation survives a restart (keys persisted with their schedule).
    let t = t.reopen().await;
    assert_eq!(
        kids(
            &json(
                t.send(Request::get(JWKS_PATH).body(Body::empty()).unwrap())
                    .await
            )
            .await
        ),
        vec![new_kid]
    );
}

#[tokio::test]
async fn j13_denylist_is_keyed_by_iss_and_jti_not_by_the_token_string() {
    let t = TestApp::new().await;
    let s = t.login("alice", "alice-password").await;
    // ECDSA signatures are malleable: (r, n - s) verifies too. A denylist keyed by a hash of
    // the token string would miss this twin; ours is keyed by (iss, jti).
    let (input, sig) = s.access.rsplit_once('.').unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
    let neg_s = -*sig.s();
    let twin_sig =
        p256::ecdsa::Signature::from_scalars(sig.r().to_bytes(), neg_s.to_bytes()).unwrap();
    let twin = format!("{input}.{}", b64(twin_sig.to_bytes()));
    assert_ne!(twin, s.access);
    assert_eq!(
        t.me(&twin).await.status(),
        StatusCode::OK,
        "the twin verifies"
    );
    // Bearer-only logout (the family lives on) denylists the jti.
    let r = t
        .send(
            auth_post(LOGOUT_PATH)
                .header(header::AUTHORIZATION, format!("Bearer {}", s.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_invalid_token(&t.me(&s.access).await);
    assert_invalid_token(&t.me(&twin).await);
    // The key is (iss, jti): the same jti under another issuer is a different entry.
    let store = t.state.service.store();
    let jti = claims_of(&s.access)["jti"].as_str().unwrap().to_owned();
    let sub = claims_of(&s.access)["sub"].as_str().unwrap().to_owned();
    let sid = claims_of(&s.access)["sid"].as_str().unwrap().to_owned();
    let exp_ms = (t.now_s() + 60) * 1000;
    let now_ms = t.clock.now_ms();
    let iat = t.now_s();
    let check = |iss: &'static str, jti: String| {
        let store = Arc::clone(store);
        let (sub, sid) = (sub.clone(), sid.clone());
        async move {
            store
                .is_access_revoked(
                    AccessCheck {
                        iss,
                        jti: &jti,
                        sub: &sub,
                        sid: Some(&sid),
                        iat,
                    },
                    now_ms,
                )
                .await
                .unwrap()
        }
    };
    assert!(check("authfetch", jti.clone()).await);
    assert!(!check("someone-else", jti.clone()).await);
    store.deny_jti("someone-else", "j2", exp_ms).await.unwrap();
    assert!(!check("authfetch", "j2".into()).await);
    assert!(check("someone-else", "j2".into()).await);
    // Entries expire with the token: after exp the denylist no longer needs them.
    assert!(!store
        .is_access_revoked(
            AccessCheck {
                iss: "someone-else",
                jti: "j2",
                sub: &sub,
                sid: Some(&sid),
                iat,
            },
            exp_ms,
        )
        .await
        .unwrap());
    // The family was untouched by a bearer-only logout: the cookie still refreshes.
    assert_eq!(t.refresh(&s.cookie).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn j14_short_lifetimes_and_per_family_and_per_user_not_before() {
    // Default lifetime is within 5–15 minutes, and that is what a default server issues.
    assert!(DEFAULT_ACCESS_TTL >= Duration::from_secs(300));
    assert!(DEFAULT_ACCESS_TTL <= Duration::from_secs(900));
    let t = TestApp::with(|c| c.access_ttl = DEFAULT_ACCESS_TTL).await;
    let a1 = t.login("alice", "alice-password").await;
    let c = claims_of(&a1.access);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        i64::try_from(DEFAULT_ACCESS_TTL.as_secs()).unwrap()
    );
    // Per family: logging out one session rejects that family's access tokens (the `sid`)
    // without touching the user's other sessions.
    let a2 = t.login("alice", "alice-password").await;
    let r = t
        .send(
            auth_post(LOGOUT_PATH)
                .header(header::COOKIE, cookie_header(&a1.cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_invalid_token(&t.me(&a1.access).await);
    assert_eq!(t.me(&a2.access).await.status(), StatusCode::OK);
    // Reuse detection kills the family's access tokens the same way.
    let r = t.refresh(&a2.cookie).await;
    let c2 = cookie_value(&r).unwrap();
    let a2b = json(r).await["access_token"].as_str().unwrap().to_owned();
    // Once the successor has been used, the parent is reuse (A3).
    assert_eq!(t.refresh(&c2).await.status(), StatusCode::OK);
    t.advance(t.config.grace + Duration::from_secs(1));
    assert_eq!(
        t.refresh(&a2.cookie).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_invalid_token(&t.me(&a2.access).await);
    assert_invalid_token(&t.me(&a2b).await);
    // Per user: logout-all rejects every token issued before it, including ones whose family
    // is unknown to this store (a token with no `sid` or another instance's family)...
    let b1 = t.login("bob", "bob-password").await;
    let b2 = t.login("bob", "bob-password").await;
    let alice = t.login("alice", "alice-password").await;
    t.advance(Duration::from_secs(1));
    let r = t
        .send(
            auth_post(LOGOUT_ALL_PATH)
                .header(header::AUTHORIZATION, format!("Bearer {}", b1.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_invalid_token(&t.me(&b1.access).await);
    assert_invalid_token(&t.me(&b2.access).await);
    assert_eq!(
        t.refresh(&b2.cookie).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.me(&alice.access).await.status(),
        StatusCode::OK,
        "other users unaffected"
    );
    let sub = claims_of(&b1.access)["sub"].as_str().unwrap().to_owned();
    let store = t.state.service.store();
    let q = |iat: i64| AccessCheck {
        iss: "authfetch",
        jti: "fresh-jti",
        sub: &sub,
        sid: None,
        iat,
    };
    let now_ms = t.clock.now_ms();
    assert!(store
        .is_access_revoked(q(t.now_s() - 1), now_ms)
        .await
        .unwrap());
    // ...while a new login afterwards works.
    t.advance(Duration::from_secs(1));
    assert!(!store.is_access_revoked(q(t.now_s()), now_ms).await.unwrap());
    let b3 = t.login("bob", "bob-password").await;
    assert_eq!(t.me(&b3.access).await.status(), StatusCode::OK);
}

/// A revocation source for other services: the layer consults it and fails closed.
#[tokio::test]
async fn j14_the_layer_consults_a_custom_revocation_check_and_fails_closed() {
    struct Deny(&'static str);
    #[async_trait::async_trait]
    impl RevocationCheck for Deny {
        async fn is_revoked(&self, c: &AccessClaims) -> Result<bool, String> {
            match self.0 {
                "error" => Err("backend down".into()),
                sub => Ok(c.sub == sub),
            }
        }
    }
    let es = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let make = |mode: &'static str| {
        Verifier::builder(VerifierConfig::new(ISS, AUD))
            .keys([(KID.to_owned(), es_public(&es))])
            .revocation(Arc::new(Deny(mode)))
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let now = clock.now_secs();
    let token = {
        let c = json!({"iss": ISS, "aud": AUD, "sub": "user-1", "iat": now, "exp": now + 60, "jti": "j"});
        let input = format!("{}.{}", enc(&Kit::header()), enc(&c));
        let sig: p256::ecdsa::Signature = es.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.to_bytes()))
    };
    assert!(make("someone-else").verify(&token).await.is_ok());
    assert!(matches!(
        make("user-1").verify(&token).await,
        Err(VerifyError::Invalid(JwtError::Revoked))
    ));
    assert!(matches!(
        make("error").verify(&token).await,
        Err(VerifyError::Unavailable(_))
    ));
    let router = |v: Verifier| {
        Router::new()
            .route(
                "/me",
                get(|Authenticated(c): Authenticated| async move { c.sub }),
            )
            .route_layer(v.layer())
    };
    assert_invalid_token(&layer_get(&router(make("user-1")), &format!("Bearer {token}")).await);
    let r = layer_get(&router(make("error")), &format!("Bearer {token}")).await;
    assert!(r.status().is_server_error(), "fail closed: {}", r.status());
    assert_eq!(
        layer_get(&router(make("x")), &format!("Bearer {token}"))
            .await
            .status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------------------------
// The JWKS-URL mode, against the real server on a loopback socket.

#[tokio::test]
async fn jwks_url_mode_caches_and_refetches_on_unknown_kid_rate_limited() {
    let t = TestApp::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, t.router.clone()).into_future());
    let url = format!("http://{addr}{JWKS_PATH}");
    let min_refetch = Duration::from_millis(1000);
    let v = Verifier::builder(VerifierConfig::new("authfetch", "authfetch-api"))
        .jwks_url(&url)
        .jwks_policy(JwksPolicy {
            cache_ttl: Duration::from_secs(300),
            min_refetch,
            ..JwksPolicy::default()
        })
        .build()
        .unwrap();
    let s = t.login("alice", "alice-password").await;

    // First use fetches; later uses hit the cache.
    let c = v.verify(&s.access).await.unwrap();
    assert!(c.sid.is_some());
    assert_eq!(v.jwks_fetches(), 1);
    for _ in 0..5 {
        v.verify(&s.access).await.unwrap();
    }
    assert_eq!(v.jwks_fetches(), 1, "cached");

    // The server rotates; a token with the new kid makes the verifier refetch once the
    // rate-limit window has passed.
    tokio::time::sleep(min_refetch + Duration::from_millis(50)).await;
    let new_kid = t
        .state
        .service
        .keys()
        .rotate(Alg::Es256, t.clock.now_ms(), Duration::ZERO)
        .unwrap();
    let s2 = t.login("alice", "alice-password").await;
    assert_eq!(header_of(&s2.access)["kid"], new_kid.as_str());
    v.verify(&s2.access).await.unwrap();
    assert_eq!(v.jwks_fetches(), 2, "unknown kid refetched");
    // The old key is still published, still cached, still accepted.
    v.verify(&s.access).await.unwrap();
    assert_eq!(v.jwks_fetches(), 2);

    // A spray of unknown kids (an attacker's tokens) inside the window: no further fetches,
    // and concurrent misses share one fetch.
    let forged = |kid: String| {
        let h = enc(&json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}));
        let (_, rest) = s2.access.split_once('.').unwrap();
        format!("{h}.{rest}")
    };
    for i in 0..20 {
        assert!(matches!(
            v.verify(&forged(format!("nope-{i}"))).await,
            Err(VerifyError::Invalid(JwtError::UnknownKey))
        ));
    }
    assert_eq!(v.jwks_fetches(), 2, "rate-limited");
    tokio::time::sleep(min_refetch + Duration::from_millis(50)).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let v = v.clone();
            let tok = forged(format!("burst-{i}"));
            tokio::spawn(async move { v.verify(&tok).await.is_err() })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    assert_eq!(v.jwks_fetches(), 3, "one fetch for the whole burst");

    // The JWKS endpoint goes away: cached keys keep working, unknown kids stay unknown.
    server.abort();
    let _ = server.await;
    tokio::time::sleep(min_refetch + Duration::from_millis(50)).await;
    v.verify(&s2.access).await.unwrap();
    assert!(v.verify(&forged("gone".into())).await.is_err());

    // Through the layer, a remote-keyed service answers like the server itself.
    let router = Router::new()
        .route(
            "/me",
            get(|Authenticated(c): Authenticated| async move { c.sub }),
        )
        .route_layer(v.layer());
    assert_eq!(
        layer_get(&router, &format!("Bearer {}", s2.access))
            .await
            .status(),
        StatusCode::OK
    );
    assert_invalid_token(&layer_get(&router, &format!("Bearer {}", forged("x".into()))).await);
}

#[tokio::test]
async fn jwks_url_mode_never_hammers_a_jwks_endpoint_that_is_down() {
    // A port that was free a moment ago: connection refused.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let k = Kit::new();
    let v = Verifier::builder(VerifierConfig::new(ISS, AUD))
        .jwks_url(format!("http://{addr}/jwks"))
        .clock(k.clock.clone())
        .build()
        .unwrap();
    for _ in 0..25 {
        assert!(matches!(
            v.verify(&k.valid()).await,
            Err(VerifyError::Invalid(JwtError::UnknownKey))
        ));
    }
    assert_eq!(v.jwks_fetches(), 1, "one attempt per refetch interval");
}

#[tokio::test]
async fn jwks_url_mode_refuses_bad_key_sets() {
    // A JWKS server that serves hostile or broken sets: nothing in them becomes a key.
    use axum::response::IntoResponse as _;
    let k = Kit::new();
    let good_jwk = es_public(&k.es).to_jwk(KID);
    let mut short = good_jwk.clone();
    short.x = b64(&URL_SAFE_NO_PAD.decode(&good_jwk.x).unwrap()[1..]);
    let mut no_alg = good_jwk.clone();
    no_alg.alg = None;
    let mut enc_use = good_jwk.clone();
    enc_use.use_ = Some("enc".into());
    let sets: Vec<(StatusCode, String)> = vec![
        (
            StatusCode::OK,
            serde_json::to_string(&json!({"keys": [short]})).unwrap(),
        ),
        (
            StatusCode::OK,
            serde_json::to_string(&json!({"keys": [no_alg]})).unwrap(),
        ),
        (
            StatusCode::OK,
            serde_json::to_string(&json!({"keys": [enc_use]})).unwrap(),
        ),
        (
            StatusCode::OK,
            serde_json::to_string(
                &json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": KID, "alg": "HS256"}]}),
            )
            .unwrap(),
        ),
        (StatusCode::OK, "not json".into()),
        (
            StatusCode::OK,
            format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(100_000)),
        ),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::to_string(&json!({"keys": [good_jwk.clone()]})).unwrap(),
        ),
    ];
    let token = k.valid();
    for (status, body) in sets {
        let app = Router::new().route(
            "/jwks",
            get(move || {
                let body = body.clone();
                async move { (status, body).into_response() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, app).into_future());
        let v = Verifier::builder(VerifierConfig::new(ISS, AUD))
            .jwks_url(format!("http://{addr}/jwks"))
            .clock(k.clock.clone())
            .build()
            .unwrap();
        assert!(
            matches!(
                v.verify(&token).await,
                Err(VerifyError::Invalid(JwtError::UnknownKey))
            ),
            "status {status}"
        );
        assert_eq!(v.jwks_fetches(), 1);
        server.abort();
    }
    // Control: the same key served properly is accepted.
    let body = serde_json::to_string(&json!({"keys": [good_jwk]})).unwrap();
    let app = Router::new().route("/jwks", get(move || async move { body.clone() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app).into_future());
    let v = Verifier::builder(VerifierConfig::new(ISS, AUD))
        .jwks_url(format!("http://{addr}/jwks"))
        .clock(k.clock.clone())
        .build()
        .unwrap();
    assert_eq!(v.verify(&token).await.unwrap().sub, "user-1");
    server.abort();
}

/// Two `Authorization` headers are a malformed request: 401 with `error="invalid_request"`
/// (RFC 6750 §3.1), not the bare challenge meant for a request that sent none, and not
/// `invalid_token`, which would make a client refresh. The same answer as the token server's own
/// routes (`http.rs` `two_authorization_headers_get_401_invalid_request`).
#[tokio::test]
async fn two_authorization_headers_get_invalid_request_not_a_bare_challenge() {
    let k = Kit::new();
    let good = k.valid();
    for second in [good.clone(), "garbage".to_owned()] {
        let r = k
            .router()
            .oneshot(
                Request::get("/me")
                    .header(header::AUTHORIZATION, format!("Bearer {good}"))
                    .header(header::AUTHORIZATION, format!("Bearer {second}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_request\""
        );
    }
    // Control: no header at all is the bare challenge.
    let r = k
        .router()
        .oneshot(Request::get("/me").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
}
