//! Entry points for the cargo-fuzz targets in `fuzz/` (not a public API: compiled only for
//! tests and with the `fuzzing` feature, which only the fuzz crate enables; no stability
//! promise). Each function feeds arbitrary bytes to one parser exactly as the
//! server does, and checks the invariants a parser must keep whatever it is given: no panic,
//! and no acceptance of input that lacks what acceptance requires.
//!
//! `seed_corpus` builds the committed seeds (`fuzz/seeds/<target>/`): valid inputs, so the
//! fuzzer starts from the accepting paths instead of having to discover a signature.
//!
//! The DPoP proof parser's entry point (D6, target `dpop_proof`) and its seeds live beside it,
//! in `dpop::fuzzing`.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::sync::OnceLock;

use crate::jwk::PublicKey;
use crate::jwt::{self, Alg, IssuedClaims};
use crate::routes::{csrf_check, CookieToken};
use crate::verify::{Verifier, VerifierConfig};

/// Issuer and audience the fuzzing verifier expects.
pub const ISSUER: &str = "authfetch-fuzz";
/// See [`ISSUER`].
pub const AUDIENCE: &str = "authfetch-fuzz-api";
/// The `kid` of the fixed Ed25519 key the seeds are signed with.
pub const ED_KID: &str = "fuzz-ed25519";
/// The `kid` of a P-256 key made at start (its signatures cannot be seeded, but every ES256
/// check before and inside `ring` runs on what the fuzzer sends under this kid).
pub const ES_KID: &str = "fuzz-es256";
/// The origin the CSRF target allows.
pub const ORIGIN: &str = "https://app.example";

/// A fixed, public Ed25519 seed: a fuzzing key, trusted by nothing but [`verifier`].
fn ed_seed() -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b"authfetch fuzzing key, not secret");
    let mut seed = [0u8; 32];
    seed.copy_from_slice(d.as_ref());
    seed
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    verifier: Verifier,
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        use ring::signature::KeyPair as _;
        let ed = ring::signature::Ed25519KeyPair::from_seed_unchecked(&ed_seed()).ok()?;
        let ed = PublicKey::ed25519_from_bytes(ed.public_key().as_ref()).ok()?;
        let es = crate::keys::KeyRing::ephemeral(Alg::Es256, std::time::Duration::ZERO, 0);
        let es = es.public_key(&es.active_kid(0)?, 0)?;
        let verifier = Verifier::with_keys(
            VerifierConfig::new(ISSUER, AUDIENCE),
            [(ED_KID.to_owned(), ed), (ES_KID.to_owned(), es)],
        );
        let runtime = tokio::runtime::Builder::new_current_thread().build().ok()?;
        Some(Fixture { runtime, verifier })
    })
    .as_ref()
}

/// An access token for the fuzzing verifier, signed with the fixed Ed25519 key; `claims`
/// should use [`ISSUER`] and [`AUDIENCE`].
pub fn sign(claims: &IssuedClaims) -> Option<String> {
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&ed_seed()).ok()?;
    let input = jwt::signing_input(Alg::EdDsa, ED_KID, claims).ok()?;
    let sig = pair.sign(input.as_bytes());
    Some(jwt::finish(input, sig.as_ref()))
}

/// The value of an `Authorization` header: bearer parsing, compact-JWS parsing (J10, J2, J5–J7),
/// key lookup, signature (J1, J3, J4) and claims (J8). Returns whether the token was accepted.
///
/// # Panics
/// When an invariant breaks: something the form parser refused was accepted by the verifier.
pub fn access_token(header_value: &[u8]) -> bool {
    let Some(f) = fixture() else { return false };
    let accepted = f
        .runtime
        .block_on(f.verifier.verify_header(Some(header_value)))
        .is_ok();
    if accepted {
        // Acceptance implies the form checks passed on the very same token.
        let token = std::str::from_utf8(header_value)
            .ok()
            .and_then(|s| s.split_once(' '))
            .map(|(_, t)| t.trim_start_matches(' '));
        let parsed = token.map(jwt::parse_compact);
        assert!(
            matches!(parsed, Some(Ok(ref p)) if p.alg == Alg::EdDsa && p.kid == ED_KID),
            "accepted a token the form parser refuses"
        );
    }
    accepted
}

/// `Cookie` headers, one per line of `input`, as the refresh/logout routes read them. Returns
/// the refresh token found, if any.
///
/// # Panics
/// When a token is returned that is not literally in one of the headers.
pub fn cookie_headers(input: &[u8]) -> Option<String> {
    let mut h = HeaderMap::new();
    for line in input.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            h.append(axum::http::header::COOKIE, v);
        }
    }
    match CookieToken::from_headers(&h) {
        CookieToken::Token(t) => {
            let secret = t.secret();
            assert!(
                h.get_all(axum::http::header::COOKIE).iter().any(|v| v
                    .as_bytes()
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes())),
                "a refresh token that was not in the Cookie header"
            );
            Some(secret)
        }
        CookieToken::Absent | CookieToken::Garbage => None,
    }
}

/// The CSRF guard (X2–X5, X7): first line the method, then `name: value` lines; a body is
/// assumed when the first byte is odd. Returns whether the request passes.
///
/// # Panics
/// When a request passes without `POST` and exactly one `x-authfetch: 1`.
pub fn csrf_headers(input: &[u8]) -> bool {
    let body = input.first().is_some_and(|b| b & 1 == 1);
    let mut lines = input.get(1..).unwrap_or_default().split(|&b| b == b'\n');
    let Some(method) = lines.next().and_then(|m| Method::from_bytes(m).ok()) else {
        return false;
    };
    let mut h = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            h.append(n, v);
        }
    }
    let ok = csrf_check(&[ORIGIN.to_owned()], &[], &method, &h, body).is_ok();
    if ok {
        let csrf: Vec<_> = h.get_all(authfetch_protocol::CSRF_HEADER).iter().collect();
        assert!(
            method == Method::POST && csrf.len() == 1 && csrf[0].as_bytes() == b"1",
            "a request passed the CSRF guard without POST and x-authfetch: 1"
        );
    }
    ok
}

/// The JSON bodies of the auth endpoints: the login request the server reads, and the token
/// response (the body of a login or refresh answer) clients read. `/auth/refresh` itself reads
/// no body. Returns whether the input was a valid login request.
pub fn auth_bodies(input: &[u8]) -> bool {
    let _ = serde_json::from_slice::<authfetch_protocol::TokenResponse>(input);
    serde_json::from_slice::<authfetch_protocol::LoginRequest>(input).is_ok()
}

/// The committed seed corpus: `(target, file name, bytes)`.
pub fn seed_corpus() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let claims = IssuedClaims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: "user-1".into(),
        // Valid from 2023 to 2100 against the system clock, so the seeds stay accepting.
        iat: 1_700_000_000,
        exp: 4_102_444_800,
        jti: "jti-1".into(),
        sid: "fam-1".into(),
        cnf: None,
    };
    let token = sign(&claims).unwrap_or_default();
    let es_header = URL_SAFE_NO_PAD
        .encode(format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{ES_KID}"}}"#).as_bytes());
    let es_token = match token.split_once('.') {
        Some((_, rest)) => format!("{es_header}.{rest}"),
        None => String::new(),
    };
    let refresh = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let rt = authfetch_protocol::REFRESH_COOKIE;
    vec![
        ("access_token", "valid_eddsa", format!("Bearer {token}").into_bytes()),
        ("access_token", "es256_wrong_sig", format!("Bearer {es_token}").into_bytes()),
        ("access_token", "lowercase_scheme", format!("bearer  {token}").into_bytes()),
        ("cookie_headers", "one", format!("{rt}={refresh}").into_bytes()),
        (
            "cookie_headers",
            "several",
            format!("a=b; {rt}={refresh}; c=d\n{rt}={refresh}").into_bytes(),
        ),
        (
            "csrf_headers",
            "login",
            format!(
                "\u{1}POST\nx-authfetch: 1\nsec-fetch-site: same-origin\norigin: {ORIGIN}\ncontent-type: application/json; charset=utf-8"
            )
            .into_bytes(),
        ),
        ("csrf_headers", "no_body", b"\x00POST\nx-authfetch: 1".to_vec()),
        (
            "auth_bodies",
            "login",
            br#"{"username":"alice","password":"alice-password"}"#.to_vec(),
        ),
        (
            "auth_bodies",
            "token_response",
            format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":300}}"#)
                .into_bytes(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds exercise the accepting paths, and the committed copies are current.
    #[test]
    fn fuzz_seed_corpus_is_accepted_and_committed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        let write = std::env::var_os("AUTHFETCH_WRITE_FUZZ_SEEDS").is_some();
        for (target, name, bytes) in seed_corpus() {
            let accepted = match target {
                "access_token" => access_token(&bytes),
                "cookie_headers" => cookie_headers(&bytes).is_some(),
                "csrf_headers" => csrf_headers(&bytes),
                "auth_bodies" => auth_bodies(&bytes) || name == "token_response",
                _ => unreachable!("unknown target {target}"),
            };
            assert_eq!(accepted, name != "es256_wrong_sig", "{target}/{name}");
            let path = root.join(target).join(name);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            } else {
                assert_eq!(
                    std::fs::read(&path).ok().as_deref(),
                    Some(&bytes[..]),
                    "{} is stale: run with AUTHFETCH_WRITE_FUZZ_SEEDS=1",
                    path.display()
                );
            }
        }
    }

    /// What the targets assert on: tokens that fail the form check, foreign cookies and
    /// cross-site requests are refused without a panic.
    #[test]
    fn fuzz_entry_points_refuse_without_panicking() {
        assert!(!access_token(b"Bearer a.b.c"));
        assert!(!access_token(&[0xff, 0xfe]));
        assert!(cookie_headers(b"other=1").is_none());
        assert!(cookie_headers(&[0xff; 8]).is_none());
        assert!(!csrf_headers(b"\x00GET\nx-authfetch: 1"));
        assert!(!csrf_headers(
            b"\x00POST\nx-authfetch: 1\nsec-fetch-site: cross-site"
        ));
        assert!(!csrf_headers(b""));
        assert!(!auth_bodies(b"{\"username\":1}"));
    }
}
