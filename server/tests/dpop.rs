//! DPoP proof verification (issue 12; D2, D5, D6 in docs/SECURITY.md): one test per rule, each
//! refused with its own reason, with proofs signed by a real key (ring's ECDSA P-256); the
//! replay cache in memory and on a real `redis-server` shared by two instances; proofs and
//! thumbprints from an independent implementation (`jose` in Node); the RFC 9449 example proof.
//!
//! The core is not wired to the endpoints yet: these tests call `authfetch_server::dpop`.

mod common;

use authfetch_server::dpop::{
    ath, proof_header, verify_proof, DpopError, Expect, Htu, MemoryReplayCache, Nonces,
    RedisReplayCache, ReplayCache, ReplayError, VerifiedProof, DEFAULT_NONCE_STEP, MAX_JTI_BYTES,
    MAX_PROOF_BYTES,
};
use authfetch_server::jwt::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

const NOW: i64 = 1_700_000_000;
const HTU: &str = "https://api.example/auth/refresh";
const HTM: &str = "POST";
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.an-access-token.sig";

/// A client's P-256 key pair, signing as the browser client will (raw r‖s).
struct Es256 {
    pair: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl Es256 {
    fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        Self { pair, rng }
    }

    fn jwk(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&p[33..]),
        })
    }

    fn header(&self) -> Map<String, Value> {
        json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk() })
            .as_object()
            .unwrap()
            .clone()
    }

    /// Signs `header.payload` given as raw JSON text (so tests can write duplicate members).
    fn sign_raw(&self, header: &str, payload: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig = self.pair.sign(&self.rng, input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn sign(&self, header: &Map<String, Value>, claims: &Map<String, Value>) -> String {
        self.sign_raw(
            &Value::Object(header.clone()).to_string(),
            &Value::Object(claims.clone()).to_string(),
        )
    }

    /// A valid proof for `POST HTU` at `NOW`, after `edit` changed its header and claims.
    fn proof_with(
        &self,
        edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>),
    ) -> String {
        let mut h = self.header();
        let mut c = claims();
        edit(&mut h, &mut c);
        self.sign(&h, &c)
    }

    fn proof(&self) -> String {
        self.proof_with(|_, _| {})
    }

    /// A proof for the request `htm htu` at `iat`, with `ath` of `token` and `nonce` if given.
    fn request_proof(
        &self,
        htm: &str,
        htu: &str,
        iat: i64,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        self.proof_with(|_, c| {
            c.insert("htm".into(), json!(htm));
            c.insert("htu".into(), json!(htu));
            c.insert("iat".into(), json!(iat));
            if let Some(t) = token {
                c.insert("ath".into(), json!(ath(t)));
            }
            if let Some(n) = nonce {
                c.insert("nonce".into(), json!(n));
            }
        })
    }

    fn thumbprint(&self) -> String {
        let j = self.jwk();
        authfetch_server::dpop::thumbprint_of_members(&[
            ("crv", "P-256"),
            ("kty", "EC"),
            ("x", j["x"].as_str().unwrap()),
            ("y", j["y"].as_str().unwrap()),
        ])
    }
}

fn claims() -> Map<String, Value> {
    json!({
        "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
        "htm": HTM,
        "htu": HTU,
        "iat": NOW,
    })
    .as_object()
    .unwrap()
    .clone()
}

fn htu() -> Htu {
    Htu::parse(HTU).unwrap()
}

/// Verifies as the refresh endpoint would: `POST HTU` at `NOW`, no token, no nonce.
fn check(proof: &str) -> Result<VerifiedProof, DpopError> {
    let htu = htu();
    verify_proof(proof, &Expect::new(HTM, &htu, NOW))
}

fn nonces(secret: u8) -> Nonces {
    Nonces::new(&[secret; 32], DEFAULT_NONCE_STEP).unwrap()
}

#[test]
fn d2_a_valid_es256_proof_is_accepted_with_its_thumbprint_jti_and_iat() {
    let key = Es256::new();
    let proof = key.proof_with(|_, c| {
        c.insert("jti".into(), json!("jti-1"));
    });
    let p = check(&proof).unwrap();
    assert_eq!(p.jkt, key.thumbprint());
    assert_eq!(p.jkt.len(), 43);
    assert_eq!(p.jti, "jti-1");
    assert_eq!(p.iat, NOW);
    assert_eq!(p.alg, Alg::Es256);
    assert_eq!(p.acceptable_until_s, NOW + 60);
    // Another key, another thumbprint.
    assert_ne!(check(&Es256::new().proof()).unwrap().jkt, p.jkt);
}

/// RFC 9449 §4.1 Figure 2 (the specification's own proof) and §6.1 Figure 9's thumbprint of
/// its key: an independent vector for parsing, signature and jkt.
#[test]
fn d2_the_rfc_9449_example_proof_verifies_with_the_published_jkt() {
    const PROOF: &str = concat!(
        "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0",
        "VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10",
        "NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj",
        "oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ",
        ".2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg",
    );
    let htu = Htu::parse("https://server.example.com/token").unwrap();
    let p = verify_proof(PROOF, &Expect::new("POST", &htu, 1_562_262_616)).unwrap();
    assert_eq!(p.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    assert_eq!(p.jti, "-BwC3ESc6acc2lTc");
    // The same proof a day later: refused for its iat only.
    assert_eq!(
        verify_proof(PROOF, &Expect::new("POST", &htu, 1_562_262_616 + 86_400)),
        Err(DpopError::Iat)
    );
}

#[test]
fn d6_empty_and_oversize_proofs_are_refused_at_the_cap_and_not_below() {
    let key = Es256::new();
    assert_eq!(check(""), Err(DpopError::Size));
    // Grow an extra claim until the proof is as large as allowed: accepted; one step more: not.
    let mut accepted_at_cap = false;
    for n in 2700..3100 {
        let proof = key.proof_with(|_, c| {
            c.insert("pad".into(), json!("p".repeat(n)));
        });
        if proof.len() <= MAX_PROOF_BYTES {
            if proof.len() + 3 > MAX_PROOF_BYTES {
                assert!(check(&proof).is_ok(), "{} bytes", proof.len());
                accepted_at_cap = true;
            }
        } else {
            assert_eq!(check(&proof), Err(DpopError::Size), "{} bytes", proof.len());
            break;
        }
    }
    assert!(accepted_at_cap);
    assert_eq!(check(&"a".repeat(1 << 20)), Err(DpopError::Size));
}

#[test]
fn d6_malformed_compact_forms_are_refused() {
    let proof = Es256::new().proof();
    let (h, rest) = proof.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let obj = |v: &str| URL_SAFE_NO_PAD.encode(v);
    let cases = [
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}..{s}"),
        format!(".{p}.{s}"),
        format!("{h}.{p}."),
        format!("{h}.{p}.{s}="),
        format!("{h}=.{p}.{s}"),
        // The standard alphabet's `+` (a random signature need not contain `-` or `_` to swap, so
        // the first character is replaced: the case is the same on every run).
        format!("{h}.{p}.+{}", &s[1..]),
        format!("{h} .{p}.{s}"),
        format!("{}.{p}.{s}", obj("not json")),
        format!("{}.{p}.{s}", obj("[1,2]")),
        format!("{h}.{}.{s}", obj("\"a string\"")),
        format!("{h}.{}.{s}", obj("{\"jti\":\"x\"} trailing")),
    ];
    for c in cases {
        assert!(
            matches!(check(&c), Err(DpopError::Malformed(_))),
            "{c}: {:?}",
            check(&c)
        );
    }
}

#[test]
fn d6_duplicate_members_are_refused_in_the_header_the_jwk_and_the_payload() {
    let key = Es256::new();
    let jwk = key.jwk();
    let (x, y) = (jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap());
    let good_header = Value::Object(key.header()).to_string();
    let good_claims = Value::Object(claims()).to_string();
    assert!(check(&key.sign_raw(&good_header, &good_claims)).is_ok());
    let dup_alg = format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}}}"#
    );
    // The same value twice still counts: the rule is about the shape, not about a conflict.
    let dup_x = format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{{"kty":"EC","crv":"P-256","x":"{x}","x":"{x}","y":"{y}"}}}}"#
    );
    let dup_jti = format!(r#"{{"jti":"a","jti":"b","htm":"{HTM}","htu":"{HTU}","iat":{NOW}}}"#);
    for (h, p) in [
        (dup_alg.as_str(), good_claims.as_str()),
        (dup_x.as_str(), good_claims.as_str()),
        (good_header.as_str(), dup_jti.as_str()),
    ] {
        assert_eq!(
            check(&key.sign_raw(h, p)),
            Err(DpopError::DuplicateMember),
            "{h} {p}"
        );
    }
}

#[test]
fn d6_typ_must_be_dpop_jwt() {
    let key = Es256::new();
    for typ in [
        json!("JWT"),
        json!("at+jwt"),
        json!("dpop"),
        json!(""),
        json!(1),
        Value::Null,
    ] {
        let proof = key.proof_with(|h, _| {
            h.insert("typ".into(), typ.clone());
        });
        assert_eq!(check(&proof), Err(DpopError::Type), "{typ}");
    }
    let no_typ = key.proof_with(|h, _| {
        h.remove("typ");
    });
    assert_eq!(check(&no_typ), Err(DpopError::Type));
    // Media types are case-insensitive and may carry the `application/` prefix.
    for typ in ["DPoP+JWT", "application/dpop+jwt"] {
        let proof = key.proof_with(|h, _| {
            h.insert("typ".into(), json!(typ));
        });
        assert!(check(&proof).is_ok(), "{typ}");
    }
}

#[test]
fn d6_alg_none_hs256_and_every_other_algorithm_are_refused() {
    let key = Es256::new();
    for alg in [
        json!("none"),
        json!("None"),
        json!("NONE"),
        json!("nOnE"),
        json!("HS256"),
        json!("HS512"),
        json!("RS256"),
        json!("PS256"),
        json!("ES384"),
        json!("es256"),
        json!("Ed25519"),
        json!(""),
        json!(256),
        Value::Null,
    ] {
        let proof = key.proof_with(|h, _| {
            h.insert("alg".into(), alg.clone());
        });
        assert_eq!(check(&proof), Err(DpopError::Algorithm), "{alg}");
    }
    let no_alg = key.proof_with(|h, _| {
        h.remove("alg");
    });
    assert_eq!(check(&no_alg), Err(DpopError::Algorithm));
    // An HS256 proof "signed" with the public key as the HMAC secret (key confusion): refused
    // for its alg, before any key is used.
    let h = json!({"typ":"dpop+jwt","alg":"HS256","jwk": key.jwk()}).to_string();
    let p = Value::Object(claims()).to_string();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&h),
        URL_SAFE_NO_PAD.encode(&p)
    );
    let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.jwk().to_string().as_bytes());
    let mac = ring::hmac::sign(&secret, input.as_bytes());
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    assert_eq!(check(&forged), Err(DpopError::Algorithm));
}

#[test]
fn d6_crit_is_refused() {
    let key = Es256::new();
    for crit in [json!(["exp"]), json!([]), json!("b64")] {
        let proof = key.proof_with(|h, _| {
            h.insert("crit".into(), crit.clone());
        });
        assert_eq!(check(&proof), Err(DpopError::Crit), "{crit}");
    }
}

#[test]
fn d6_header_members_naming_another_key_are_refused() {
    let key = Es256::new();
    for m in ["jku", "x5u", "x5c", "x5t", "x5t#S256"] {
        let proof = key.proof_with(|h, _| {
            h.insert(m.into(), json!("https://attacker.example/key"));
        });
        assert_eq!(check(&proof), Err(DpopError::ForbiddenHeader(m)), "{m}");
    }
    // A `kid` names nothing we look up: ignored.
    let with_kid = key.proof_with(|h, _| {
        h.insert("kid".into(), json!("k1"));
    });
    assert!(check(&with_kid).is_ok());
}

#[test]
fn d6_the_jwk_header_member_is_required_and_must_be_an_object() {
    let key = Es256::new();
    let jwk_string = key.jwk().to_string();
    for jwk in [
        None,
        Some(json!(jwk_string)),
        Some(json!([key.jwk()])),
        Some(Value::Null),
    ] {
        let proof = key.proof_with(|h, _| match &jwk {
            None => {
                h.remove("jwk");
            }
            Some(v) => {
                h.insert("jwk".into(), v.clone());
            }
        });
        assert_eq!(check(&proof), Err(DpopError::MissingJwk), "{jwk:?}");
    }
}

#[test]
fn d6_a_jwk_with_private_members_is_refused() {
    let key = Es256::new();
    for m in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        let proof = key.proof_with(|h, _| {
            h["jwk"]
                .as_object_mut()
                .unwrap()
                .insert(m.into(), json!(URL_SAFE_NO_PAD.encode([7u8; 32])));
        });
        assert_eq!(check(&proof), Err(DpopError::PrivateJwk(m)), "{m}");
    }
}

#[test]
fn d6_the_jwk_must_be_a_valid_public_key_for_alg() {
    let key = Es256::new();
    let y = key.jwk()["y"].as_str().unwrap().to_owned();
    let mut off_curve = URL_SAFE_NO_PAD.decode(&y).unwrap();
    off_curve[31] ^= 1;
    let off_curve = URL_SAFE_NO_PAD.encode(off_curve);
    let edits: Vec<(&str, Value)> = vec![
        ("kty", json!("RSA")),
        ("kty", json!("OKP")),
        ("crv", json!("P-384")),
        ("crv", json!("secp256k1")),
        ("x", json!(URL_SAFE_NO_PAD.encode([1u8; 31]))),
        ("x", json!(URL_SAFE_NO_PAD.encode([1u8; 33]))),
        ("x", json!(5)),
        ("y", Value::Null),
        ("y", json!(off_curve)),
        ("y", json!(format!("{y}="))),
        ("alg", json!("ES384")),
        ("alg", json!("EdDSA")),
        ("use", json!("enc")),
    ];
    for (member, value) in edits {
        let proof = key.proof_with(|h, _| {
            h["jwk"]
                .as_object_mut()
                .unwrap()
                .insert(member.into(), value.clone());
        });
        assert!(
            matches!(check(&proof), Err(DpopError::BadJwk(_))),
            "{member}={value}: {:?}",
            check(&proof)
        );
    }
    let no_y = key.proof_with(|h, _| {
        h["jwk"].as_object_mut().unwrap().remove("y");
    });
    assert!(matches!(check(&no_y), Err(DpopError::BadJwk(_))));
    // Members a verifier must ignore (WebCrypto exports `ext` and `key_ops`), and `alg`/`use`
    // when they agree: accepted.
    let extra = key.proof_with(|h, _| {
        let j = h["jwk"].as_object_mut().unwrap();
        j.insert("ext".into(), json!(true));
        j.insert("key_ops".into(), json!(["verify"]));
        j.insert("alg".into(), json!("ES256"));
        j.insert("use".into(), json!("sig"));
    });
    assert!(check(&extra).is_ok());
}

#[test]
fn d6_the_signature_must_verify_under_the_proofs_own_jwk() {
    let (key, other) = (Es256::new(), Es256::new());
    // Signed by another key than the one in the header.
    let mut h = key.header();
    h.insert("jwk".into(), other.jwk());
    let swapped = key.sign(&h, &claims());
    assert_eq!(check(&swapped), Err(DpopError::Signature));
    // One bit of the signed payload changed after signing.
    let proof = key.proof();
    let (input, sig) = proof.rsplit_once('.').unwrap();
    let (hh, p) = input.split_once('.').unwrap();
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    payload["jti"] = json!("changed");
    let tampered = format!("{hh}.{}.{sig}", URL_SAFE_NO_PAD.encode(payload.to_string()));
    assert_eq!(check(&tampered), Err(DpopError::Signature));
    // A flipped signature bit; a DER (ASN.1) signature of the same input; r = s = 0; short.
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[10] ^= 1;
    let flipped = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&raw));
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .unwrap();
    let der_pair = EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap();
    let p = der_pair.public_key().as_ref();
    let der_header = json!({"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":URL_SAFE_NO_PAD.encode(&p[1..33]),"y":URL_SAFE_NO_PAD.encode(&p[33..])}});
    let der_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(der_header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims()).to_string())
    );
    let der_sig = der_pair.sign(&rng, der_input.as_bytes()).unwrap();
    let der = format!("{der_input}.{}", URL_SAFE_NO_PAD.encode(der_sig));
    for bad in [
        flipped,
        der,
        format!("{input}.{}", URL_SAFE_NO_PAD.encode([0u8; 64])),
        format!("{input}.AAAA"),
    ] {
        assert_eq!(check(&bad), Err(DpopError::Signature), "{bad}");
    }
}

/// Every one-character change of a valid proof (each position, a few replacement characters,
/// and each character deleted) is refused with a typed error, never accepted, never a panic:
/// every character is in the signed input or in the signature.
#[test]
fn d6_every_one_character_change_of_a_valid_proof_is_refused() {
    let proof = Es256::new().proof();
    assert!(check(&proof).is_ok());
    let bytes = proof.as_bytes();
    let mut tried = 0;
    for i in 0..bytes.len() {
        for r in [b'A', b'z', b'0', b'-', b'_', b'.', b'='] {
            if bytes[i] == r {
                continue;
            }
            let mut m = bytes.to_vec();
            m[i] = r;
            let m = String::from_utf8(m).unwrap();
            assert!(check(&m).is_err(), "accepted with byte {i} = {}", r as char);
            tried += 1;
        }
        let mut d = bytes.to_vec();
        d.remove(i);
        assert!(
            check(&String::from_utf8(d).unwrap()).is_err(),
            "accepted without byte {i}"
        );
    }
    assert!(tried > 6 * bytes.len() - bytes.len() / 2);
}

#[test]
fn d2_jti_htm_htu_and_iat_are_required_with_their_types() {
    let key = Es256::new();
    for name in ["jti", "htm", "htu", "iat"] {
        let missing = key.proof_with(|_, c| {
            c.remove(name);
        });
        assert_eq!(
            check(&missing),
            Err(DpopError::MissingClaim(name)),
            "{name}"
        );
        let wrong_type = key.proof_with(|_, c| {
            let v = if name == "iat" {
                json!(NOW.to_string())
            } else {
                json!(1)
            };
            c.insert(name.into(), v);
        });
        assert_eq!(
            check(&wrong_type),
            Err(DpopError::MissingClaim(name)),
            "{name}"
        );
    }
    // A fractional or out-of-range NumericDate is not an integer second.
    for iat in [json!(1_700_000_000.5), json!(u64::MAX)] {
        let proof = key.proof_with(|_, c| {
            c.insert("iat".into(), iat.clone());
        });
        assert_eq!(check(&proof), Err(DpopError::MissingClaim("iat")), "{iat}");
    }
}

#[test]
fn d2_jti_is_bounded() {
    let key = Es256::new();
    let with_jti = |j: String| {
        key.proof_with(|_, c| {
            c.insert("jti".into(), json!(j));
        })
    };
    assert_eq!(check(&with_jti(String::new())), Err(DpopError::Jti));
    assert_eq!(
        check(&with_jti("j".repeat(MAX_JTI_BYTES + 1))),
        Err(DpopError::Jti)
    );
    assert!(check(&with_jti("j".repeat(MAX_JTI_BYTES))).is_ok());
}

#[test]
fn d2_htm_must_be_the_request_method_exactly() {
    let key = Es256::new();
    for htm in ["GET", "post", "POST ", "PUT", ""] {
        let proof = key.proof_with(|_, c| {
            c.insert("htm".into(), json!(htm));
        });
        assert_eq!(check(&proof), Err(DpopError::Htm), "{htm:?}");
    }
}

#[test]
fn d2_htu_is_normalized_and_must_be_the_request_url() {
    let key = Es256::new();
    let with_htu = |u: &str| {
        key.proof_with(|_, c| {
            c.insert("htu".into(), json!(u));
        })
    };
    for same in [
        "https://api.example/auth/refresh",
        "HTTPS://API.Example:443/auth/refresh",
        "https://api.example/auth/refresh?query=ignored",
        "https://api.example/auth/refresh#fragment-ignored",
        "https://api.example/auth/x/../refresh",
    ] {
        assert!(check(&with_htu(same)).is_ok(), "{same}");
    }
    for other in [
        "https://api.example/auth/logout",
        "https://api.example/auth/refresh/",
        "https://api.example/AUTH/refresh",
        "http://api.example/auth/refresh",
        "https://api.example:8443/auth/refresh",
        "https://other.example/auth/refresh",
        "https://user@api.example/auth/refresh",
        "/auth/refresh",
        "api.example/auth/refresh",
        "",
    ] {
        assert_eq!(check(&with_htu(other)), Err(DpopError::Htu), "{other}");
    }
    // The server's side is normalized the same way.
    let server = Htu::parse("https://API.example:443/auth/refresh?a=b").unwrap();
    let p = key.proof();
    assert!(verify_proof(&p, &Expect::new(HTM, &server, NOW)).is_ok());
}

#[test]
fn d2_iat_must_be_within_60_s_either_way_and_the_window_is_configurable() {
    let key = Es256::new();
    let at = |iat: i64| {
        key.proof_with(|_, c| {
            c.insert("iat".into(), json!(iat));
        })
    };
    for ok in [NOW - 60, NOW, NOW + 60] {
        assert!(check(&at(ok)).is_ok(), "{ok}");
    }
    for bad in [NOW - 61, NOW + 61, 0, i64::MIN, i64::MAX] {
        assert_eq!(check(&at(bad)), Err(DpopError::Iat), "{bad}");
    }
    let htu = htu();
    let narrow = Expect::new(HTM, &htu, NOW).iat_window(Duration::from_secs(10));
    assert!(verify_proof(&at(NOW - 10), &narrow).is_ok());
    assert_eq!(verify_proof(&at(NOW - 11), &narrow), Err(DpopError::Iat));
    let p = verify_proof(&at(NOW + 10), &narrow).unwrap();
    assert_eq!(
        p.acceptable_until_s,
        NOW + 20,
        "the cache remembers it for its window"
    );
}

#[test]
fn d2_ath_binds_the_proof_to_the_access_token() {
    let key = Es256::new();
    let htu = Htu::parse("https://api.example/api/me").unwrap();
    let with = |ath_value: Option<Value>| {
        key.proof_with(|_, c| {
            c.insert("htm".into(), json!("GET"));
            c.insert("htu".into(), json!("https://api.example/api/me"));
            if let Some(a) = ath_value {
                c.insert("ath".into(), a);
            }
        })
    };
    let resource = Expect::new("GET", &htu, NOW).access_token(TOKEN);
    assert!(verify_proof(&with(Some(json!(ath(TOKEN)))), &resource).is_ok());
    assert_eq!(
        verify_proof(&with(None), &resource),
        Err(DpopError::MissingClaim("ath"))
    );
    assert_eq!(
        verify_proof(&with(Some(json!(7))), &resource),
        Err(DpopError::MissingClaim("ath"))
    );
    for wrong in [
        ath("another token"),
        ath(TOKEN)[..42].to_owned(),
        String::new(),
    ] {
        assert_eq!(
            verify_proof(&with(Some(json!(wrong))), &resource),
            Err(DpopError::Ath),
            "{wrong}"
        );
    }
    // `ath` is base64url(SHA-256(token)), RFC 9449 §4.2.
    assert_eq!(
        ath(TOKEN),
        URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            TOKEN.as_bytes()
        ))
    );
    // A proof for a resource request presented where no token travels.
    let no_token = Expect::new("GET", &htu, NOW);
    assert_eq!(
        verify_proof(&with(Some(json!(ath(TOKEN)))), &no_token),
        Err(DpopError::UnexpectedAth)
    );
}

#[test]
fn d5_a_demanded_nonce_must_be_current_under_the_shared_secret() {
    let key = Es256::new();
    let (server, other_instance, foreign) = (nonces(1), nonces(1), nonces(2));
    let htu = htu();
    let expect = Expect::new(HTM, &htu, NOW).require_nonce(&server);
    let with_nonce = |n: Option<Value>| {
        key.proof_with(|_, c| {
            if let Some(n) = n {
                c.insert("nonce".into(), n);
            }
        })
    };
    // Missing: use_dpop_nonce, and the challenge says so.
    let e = verify_proof(&with_nonce(None), &expect).unwrap_err();
    assert_eq!(e, DpopError::UseNonce);
    assert_eq!(e.code(), "use_dpop_nonce");
    assert_eq!(
        e.www_authenticate(&[Alg::Es256]),
        r#"DPoP error="use_dpop_nonce", algs="ES256""#
    );
    // Issued by another instance with the same secret: accepted.
    let n = other_instance.current(NOW);
    assert!(verify_proof(&with_nonce(Some(json!(n))), &expect).is_ok());
    // From the previous step: accepted; two steps back, or another secret, or forged: refused.
    let step = i64::try_from(DEFAULT_NONCE_STEP.as_secs()).unwrap();
    let previous = server.current(NOW - step);
    assert!(verify_proof(&with_nonce(Some(json!(previous))), &expect).is_ok());
    for bad in [
        json!(server.current(NOW - 2 * step)),
        json!(foreign.current(NOW)),
        json!(format!("{}A", &n[..31])),
        json!(""),
        json!(1),
    ] {
        assert_eq!(
            verify_proof(&with_nonce(Some(bad.clone())), &expect),
            Err(DpopError::UseNonce),
            "{bad}"
        );
    }
    // Not demanded: a nonce the client still sends is ignored.
    assert!(check(&with_nonce(Some(json!("stale")))).is_ok());
}

#[test]
fn d5_the_nonce_is_checked_last_so_use_dpop_nonce_means_only_the_nonce_is_wrong() {
    let key = Es256::new();
    let server = nonces(1);
    let htu = htu();
    let expect = Expect::new(HTM, &htu, NOW).require_nonce(&server);
    let bad_htm_no_nonce = key.proof_with(|_, c| {
        c.insert("htm".into(), json!("GET"));
    });
    assert_eq!(
        verify_proof(&bad_htm_no_nonce, &expect),
        Err(DpopError::Htm)
    );
    let old_no_nonce = key.proof_with(|_, c| {
        c.insert("iat".into(), json!(NOW - 3600));
    });
    assert_eq!(verify_proof(&old_no_nonce, &expect), Err(DpopError::Iat));
    assert_eq!(
        DpopError::Htm.www_authenticate(&[Alg::Es256]),
        r#"DPoP error="invalid_dpop_proof", algs="ES256""#
    );
}

#[test]
fn d2_eddsa_proofs_are_accepted_only_where_enabled() {
    let seed: [u8; 32] = rand::random();
    let ed = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let header = json!({
        "typ": "dpop+jwt",
        "alg": "EdDSA",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(ed.public_key())},
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims()).to_string())
    );
    let proof = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(ed.sign(input.as_bytes()))
    );
    assert_eq!(
        check(&proof),
        Err(DpopError::Algorithm),
        "ES256 only by default"
    );
    let htu = htu();
    let both = [Alg::Es256, Alg::EdDsa];
    let p = verify_proof(&proof, &Expect::new(HTM, &htu, NOW).algs(&both)).unwrap();
    assert_eq!(p.alg, Alg::EdDsa);
    assert_eq!(
        p.jkt,
        authfetch_server::dpop::thumbprint_of_members(&[
            ("crv", "Ed25519"),
            ("kty", "OKP"),
            ("x", &URL_SAFE_NO_PAD.encode(ed.public_key())),
        ])
    );
    // The fully-specified name `Ed25519` (RFC 9864) is the same algorithm: accepted where EdDSA
    // is, refused by default like EdDSA.
    let h2 = json!({
        "typ": "dpop+jwt",
        "alg": "Ed25519",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(ed.public_key())},
    });
    let input2 = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h2.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims()).to_string())
    );
    let fully = format!(
        "{input2}.{}",
        URL_SAFE_NO_PAD.encode(ed.sign(input2.as_bytes()))
    );
    assert_eq!(check(&fully), Err(DpopError::Algorithm));
    let p2 = verify_proof(&fully, &Expect::new(HTM, &htu, NOW).algs(&both)).unwrap();
    assert_eq!((p2.alg, p2.jkt), (Alg::EdDsa, p.jkt));
    // An ES256 proof passes where both are enabled, and an empty list accepts nothing.
    let es = Es256::new().proof();
    assert!(verify_proof(&es, &Expect::new(HTM, &htu, NOW).algs(&both)).is_ok());
    assert_eq!(
        verify_proof(&es, &Expect::new(HTM, &htu, NOW).algs(&[])),
        Err(DpopError::Algorithm)
    );
}

#[test]
fn d2_exactly_one_dpop_header() {
    use axum::http::{HeaderMap, HeaderValue};
    let mut h = HeaderMap::new();
    assert_eq!(proof_header(&h), Ok(None));
    h.append("dpop", HeaderValue::from_static("a.b.c"));
    assert_eq!(proof_header(&h), Ok(Some("a.b.c")));
    h.append("DPoP", HeaderValue::from_static("d.e.f"));
    assert_eq!(proof_header(&h), Err(DpopError::MultipleProofs));
    let mut h = HeaderMap::new();
    h.append(
        "dpop",
        HeaderValue::from_bytes(&[0xe9, b'.', b'.']).unwrap(),
    );
    assert!(matches!(proof_header(&h), Err(DpopError::Malformed(_))));
}

#[tokio::test]
async fn d5_a_replayed_proof_is_refused_by_the_memory_cache() {
    let key = Es256::new();
    let cache = MemoryReplayCache::default();
    let proof = key.proof();
    let first = check(&proof).unwrap();
    assert!(cache.first_use(&first, NOW * 1000).await.unwrap());
    let again = check(&proof).unwrap();
    assert!(!cache.first_use(&again, NOW * 1000 + 5_000).await.unwrap());
    // A new proof by the same key (new jti) is fine.
    let next = check(&key.proof()).unwrap();
    assert!(cache.first_use(&next, NOW * 1000).await.unwrap());
}

#[tokio::test]
async fn d5_two_instances_on_one_redis_refuse_a_replay_across_them() {
    let redis = common::RedisServer::start();
    let prefix = common::unique_prefix("dpop-replay");
    let a = RedisReplayCache::connect(&redis.url, &prefix)
        .await
        .unwrap();
    let b = RedisReplayCache::connect(&redis.url, &prefix)
        .await
        .unwrap();
    let key = Es256::new();
    let p1 = check(&key.proof()).unwrap();
    assert!(a.first_use(&p1, NOW * 1000).await.unwrap());
    assert!(
        !b.first_use(&p1, NOW * 1000).await.unwrap(),
        "replay on the other instance"
    );
    assert!(!a.first_use(&p1, NOW * 1000).await.unwrap());
    let p2 = check(&key.proof()).unwrap();
    assert!(b.first_use(&p2, NOW * 1000).await.unwrap());
    assert!(!a.first_use(&p2, NOW * 1000).await.unwrap());

    // Redis forgets the proof by itself once it can no longer pass the iat check.
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}dpop:jti:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    for k in &keys {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(pttl > 60_000 && pttl <= 61_000, "{k}: {pttl} ms");
        // The key holds a hash, not the jti.
        assert!(!k.contains(&p1.jti) && !k.contains(&p2.jti));
    }

    // Twenty concurrent uses of one fresh proof across both instances: exactly one wins.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let p3 = check(&key.proof()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let cache = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let p = p3.clone();
        tasks.push(tokio::spawn(async move {
            cache.first_use(&p, NOW * 1000).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn d5_the_redis_cache_fails_closed_when_redis_is_down() {
    let mut redis = common::RedisServer::start();
    let cache = RedisReplayCache::connect(&redis.url, &common::unique_prefix("dpop-down"))
        .await
        .unwrap();
    let p = check(&Es256::new().proof()).unwrap();
    redis.kill();
    assert!(matches!(
        cache.first_use(&p, NOW * 1000).await,
        Err(ReplayError::Redis(_))
    ));
    redis.restart();
    // Reconnects after the failure.
    assert!(cache.first_use(&p, NOW * 1000).await.unwrap());
}

/// Proofs made by `jose` (and by WebCrypto with a non-extractable key, as the browser client
/// will) are accepted, and `jose.calculateJwkThumbprint` equals our jkt.
#[test]
fn interop_jose_proofs_are_accepted_and_thumbprints_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let server_nonces = nonces(3);
    let now = authfetch_server::clock::Clock::now_secs(&authfetch_server::clock::SystemClock);
    let nonce = server_nonces.current(now);
    let out = std::process::Command::new("node")
        .current_dir(&root)
        .arg("tests/interop/dpop-jose.mjs")
        .arg("https://api.example/api/me")
        .arg(TOKEN)
        .arg(&nonce)
        .output()
        .expect("node must be installed (scripts/bootstrap.sh)");
    assert!(
        out.status.success(),
        "dpop-jose.mjs failed (is `jose` installed? run npm ci): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cases.len(), 5);
    let both = [Alg::Es256, Alg::EdDsa];
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let htu = Htu::parse(c["htu"].as_str().unwrap()).unwrap();
        let mut expect = Expect::new(c["htm"].as_str().unwrap(), &htu, now).algs(&both);
        if let Some(t) = c["token"].as_str() {
            expect = expect.access_token(t);
        }
        if c["nonce"].is_string() {
            expect = expect.require_nonce(&server_nonces);
        }
        let proof = c["proof"].as_str().unwrap();
        let p = verify_proof(proof, &expect).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(p.jkt, c["jkt"].as_str().unwrap(), "{name}");
        let alg = match c["alg"].as_str().unwrap() {
            "Ed25519" => "EdDSA",
            other => other,
        };
        assert_eq!(p.alg.as_str(), alg, "{name}");
        // And the same proof is refused for another request.
        let elsewhere = Htu::parse("https://api.example/api/other").unwrap();
        let mut e2 = Expect::new(c["htm"].as_str().unwrap(), &elsewhere, now).algs(&both);
        if let Some(t) = c["token"].as_str() {
            e2 = e2.access_token(t);
        }
        assert_eq!(verify_proof(proof, &e2), Err(DpopError::Htu), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Wired: `--dpop` on the endpoints, the token service, the stores and the verification layer
// (D1, D3, D4, D5 over HTTP; `common::TestApp` serves at `common::ORIGIN`).

mod wired {
    use super::*;
    use authfetch_server::config::StoreKind;
    use authfetch_server::dpop::http::{DpopCheck, DpopMode};
    use axum::body::Body;
    use axum::http::{header, Request, Response, StatusCode};
    use common::{auth_post, cookie_header, cookie_value, error_code, json, TestApp, ORIGIN};

    /// A proof for `htm path` at the app's clock, with `ath` of `token` and `nonce` if given.
    pub(super) fn proof_for(
        key: &Es256,
        app: &TestApp,
        htm: &str,
        path: &str,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        key.request_proof(htm, &format!("{ORIGIN}{path}"), app.now_s(), token, nonce)
    }

    pub(super) async fn login(app: &TestApp, proof: Option<&str>) -> Response<Body> {
        let mut b = auth_post(authfetch_protocol::LOGIN_PATH)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(p) = proof {
            b = b.header("dpop", p);
        }
        app.send(
            b.body(Body::from(
                json!({"username": "alice", "password": "alice-password"}).to_string(),
            ))
            .unwrap(),
        )
        .await
    }

    struct Bound {
        access: String,
        cookie: String,
    }

    async fn login_bound(app: &TestApp, key: &Es256) -> Bound {
        let r = login(
            app,
            Some(&proof_for(key, app, "POST", "/auth/login", None, None)),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = cookie_value(&r).unwrap();
        let body = json(r).await;
        assert_eq!(body["token_type"], "DPoP");
        Bound {
            access: body["access_token"].as_str().unwrap().to_owned(),
            cookie,
        }
    }

    async fn post(app: &TestApp, path: &str, cookie: &str, proof: Option<&str>) -> Response<Body> {
        let mut b = auth_post(path).header(header::COOKIE, cookie_header(cookie));
        if let Some(p) = proof {
            b = b.header("dpop", p);
        }
        app.send(b.body(Body::empty()).unwrap()).await
    }

    /// `POST path` with the cookie and a fresh proof by `key` for exactly that request.
    async fn post_by(app: &TestApp, key: &Es256, path: &str, cookie: &str) -> Response<Body> {
        let p = proof_for(key, app, "POST", path, None, None);
        post(app, path, cookie, Some(&p)).await
    }

    async fn me(app: &TestApp, authorization: &str, proof: Option<&str>) -> Response<Body> {
        let mut b = Request::get("/api/me").header(header::AUTHORIZATION, authorization);
        if let Some(p) = proof {
            b = b.header("dpop", p);
        }
        app.send(b.body(Body::empty()).unwrap()).await
    }

    fn payload(token: &str) -> Value {
        let p = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    fn challenge(r: &Response<Body>) -> String {
        r.headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    async fn refused(r: Response<Body>, code: &str) {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenge(&r),
            format!("DPoP error=\"{code}\", algs=\"ES256\"")
        );
        // A refused proof never clears the cookie (the page's own client still needs it).
        assert!(common::set_cookies(&r).is_empty());
        assert_eq!(error_code(r).await, code);
    }

    async fn app(mode: DpopMode) -> TestApp {
        TestApp::with(|c| c.dpop.mode = mode).await
    }

    #[tokio::test]
    async fn d1_a_login_with_a_proof_binds_the_family_and_the_token_carries_cnf_jkt() {
        let app = app(DpopMode::Optional).await;
        let key = Es256::new();
        let s = login_bound(&app, &key).await;
        assert_eq!(payload(&s.access)["cnf"]["jkt"], key.thumbprint());
        let p = proof_for(&key, &app, "GET", "/api/me", Some(&s.access), None);
        let r = me(&app, &format!("DPoP {}", s.access), Some(&p)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(json(r).await["username"], "alice");
    }

    /// D5 under pressure: the replay cache is bounded, so what may take room in it matters. A
    /// proof that authorizes nothing (another key's, for a bound token or family) is refused
    /// before it is remembered; once the cache is full of live proofs, a new one is answered
    /// `503` with `Retry-After` (the cache never forgets early, A2), and room comes back as
    /// the remembered proofs expire.
    #[tokio::test]
    async fn d5_only_proofs_that_authorize_take_room_and_a_full_cache_answers_503() {
        let cache = Arc::new(MemoryReplayCache::new(4));
        let shared = Arc::clone(&cache);
        let app = TestApp::with(move |c| {
            c.dpop.mode = DpopMode::Optional;
            c.dpop.replay = Some(shared);
        })
        .await;
        let key = Es256::new();
        let s = login_bound(&app, &key).await;
        assert_eq!(cache.len(), 1, "the login's proof");
        let dpop = format!("DPoP {}", s.access);
        // A thief holding the token (or the cookie) but not the key: refused, and no room taken.
        for _ in 0..8 {
            let thief = Es256::new();
            let p = proof_for(&thief, &app, "GET", "/api/me", Some(&s.access), None);
            refused(me(&app, &dpop, Some(&p)).await, "invalid_dpop_proof").await;
            refused(
                post_by(&app, &thief, "/auth/refresh", &s.cookie).await,
                "invalid_dpop_proof",
            )
            .await;
        }
        assert_eq!(cache.len(), 1, "refused proofs were remembered");
        // The owner's proofs fill it.
        for _ in 0..3 {
            let p = proof_for(&key, &app, "GET", "/api/me", Some(&s.access), None);
            assert_eq!(me(&app, &dpop, Some(&p)).await.status(), StatusCode::OK);
        }
        assert_eq!(cache.len(), 4);
        // Full: a good new proof is neither accepted nor an error of the client's.
        let p = proof_for(&key, &app, "GET", "/api/me", Some(&s.access), None);
        let r = me(&app, &dpop, Some(&p)).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry: u64 = r.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // The oldest proof is remembered until 60 s (the iat window) + 1 s after its iat.
        assert!((1..=61).contains(&retry), "Retry-After {retry}");
        assert_eq!(error_code(r).await, "server_error");
        let refresh = post_by(&app, &key, "/auth/refresh", &s.cookie).await;
        assert_eq!(refresh.status(), StatusCode::SERVICE_UNAVAILABLE);
        // Nothing rotated and nothing revoked: once the proofs expire, the session goes on.
        app.advance(Duration::from_secs(retry));
        let refresh = post_by(&app, &key, "/auth/refresh", &s.cookie).await;
        assert_eq!(refresh.status(), StatusCode::OK);
        let access = json(refresh).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let p = proof_for(&key, &app, "GET", "/api/me", Some(&access), None);
        let r = me(&app, &format!("DPoP {access}"), Some(&p)).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// `--dpop-replay-capacity` reaches the cache the server makes for itself.
    #[tokio::test]
    async fn d5_the_replay_capacity_comes_from_the_command_line() {
        use authfetch_server::cli::Cli;
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            let mut v = vec!["authfetch-server"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).unwrap().config()
        };
        assert_eq!(
            parse(&[]).unwrap().dpop.replay_capacity,
            authfetch_server::dpop::DEFAULT_REPLAY_CAPACITY
        );
        let c = parse(&["--dpop-replay-capacity", "2"]).unwrap();
        assert_eq!(c.dpop.replay_capacity, 2);
        let e = parse(&["--dpop-replay-capacity", "0"]).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
        let app = TestApp::with(|c| {
            c.dpop.mode = DpopMode::Optional;
            c.dpop.replay_capacity = 2;
        })
        .await;
        let key = Es256::new();
        let s = login_bound(&app, &key).await;
        let dpop = format!("DPoP {}", s.access);
        let p = proof_for(&key, &app, "GET", "/api/me", Some(&s.access), None);
        assert_eq!(me(&app, &dpop, Some(&p)).await.status(), StatusCode::OK);
        let p = proof_for(&key, &app, "GET", "/api/me", Some(&s.access), None);
        let r = me(&app, &dpop, Some(&p)).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn d4_a_bound_token_needs_dpop_and_a_proof_by_its_key_for_this_request() {
        let app = app(DpopMode::Optional).await;
        let key = Es256::new();
        let s = login_bound(&app, &key).await;
        let dpop = format!("DPoP {}", s.access);
        // As Bearer: refused, with the DPoP challenge.
        refused(
            me(&app, &format!("Bearer {}", s.access), None).await,
            "invalid_token",
        )
        .await;
        // DPoP without a proof.
        refused(me(&app, &dpop, None).await, "invalid_dpop_proof").await;
        // Another key's proof (a thief's own key).
        let thief = Es256::new();
        let p = proof_for(&thief, &app, "GET", "/api/me", Some(&s.access), None);
        refused(me(&app, &dpop, Some(&p)).await, "invalid_dpop_proof").await;
        // The right key, but for another method, another URL, another token, or no ath.
        for p in [
            proof_for(&key, &app, "POST", "/api/me", Some(&s.access), None),
            proof_for(&key, &app, "GET", "/api/echo", Some(&s.access), None),
            proof_for(&key, &app, "GET", "/api/me", Some("another.token.x"), None),
            proof_for(&key, &app, "GET", "/api/me", None, None),
        ] {
            refused(me(&app, &dpop, Some(&p)).await, "invalid_dpop_proof").await;
        }
        // iat 61 s off either way (the token itself lives 60 s here, so the clock stays put).
        for off in [-61, 61] {
            let me_url = format!("{ORIGIN}/api/me");
            let p = key.request_proof("GET", &me_url, app.now_s() + off, Some(&s.access), None);
            refused(me(&app, &dpop, Some(&p)).await, "invalid_dpop_proof").await;
        }
        // A good proof works once; the same proof again is a replay.
        let p = proof_for(&key, &app, "GET", "/api/me", Some(&s.access), None);
        assert_eq!(me(&app, &dpop, Some(&p)).await.status(), StatusCode::OK);
        refused(me(&app, &dpop, Some(&p)).await, "invalid_dpop_proof").await;
        // Garbage in the headers: typed 401s, never a panic.
        for g in ["", "x", "a.b.c", &"A".repeat(5000)] {
            let r = me(&app, &dpop, Some(g)).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{g:?}");
        }
        let r = me(&app, "DPoP not!a!token", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn d3_a_bound_family_is_refreshed_only_with_its_key_and_nothing_rotates_before() {
        let app = app(DpopMode::Optional).await;
        let key = Es256::new();
        let s = login_bound(&app, &key).await;
        let thief = Es256::new();
        let refresh = authfetch_protocol::REFRESH_PATH;
        // Without a proof (an injected script calling /auth/refresh), with another key's proof,
        // with the right key's proof for another endpoint.
        refused(
            post(&app, refresh, &s.cookie, None).await,
            "invalid_dpop_proof",
        )
        .await;
        refused(
            post_by(&app, &thief, refresh, &s.cookie).await,
            "invalid_dpop_proof",
        )
        .await;
        let p = proof_for(&key, &app, "POST", "/auth/login", None, None);
        refused(
            post(&app, refresh, &s.cookie, Some(&p)).await,
            "invalid_dpop_proof",
        )
        .await;
        let st = app.stats().await;
        assert_eq!(
            (st["refresh"].as_u64(), st["reuse_detected"].as_u64()),
            (Some(0), Some(0))
        );
        // The right key: rotated, still bound.
        let r = post_by(&app, &key, refresh, &s.cookie).await;
        assert_eq!(r.status(), StatusCode::OK);
        let next = cookie_value(&r).unwrap();
        let body = json(r).await;
        assert_eq!(body["token_type"], "DPoP");
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(payload(access)["cnf"]["jkt"], key.thumbprint());
        // The first rotation: the original cookie was current until now.
        let st = app.stats().await;
        assert_eq!(
            (st["refresh"].as_u64(), st["refresh_grace"].as_u64()),
            (Some(1), Some(0))
        );
        // And the successor goes on with the key, not without it.
        refused(post(&app, refresh, &next, None).await, "invalid_dpop_proof").await;
        assert_eq!(
            post_by(&app, &key, refresh, &next).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn d3_a_bound_family_is_logged_out_only_with_its_key() {
        let app = app(DpopMode::Optional).await;
        let key = Es256::new();
        let s = login_bound(&app, &key).await;
        let logout = authfetch_protocol::LOGOUT_PATH;
        // Logout everywhere by the cookie alone is refused like logout.
        let all = authfetch_protocol::LOGOUT_ALL_PATH;
        refused(post(&app, all, &s.cookie, None).await, "invalid_dpop_proof").await;
        refused(
            post_by(&app, &Es256::new(), all, &s.cookie).await,
            "invalid_dpop_proof",
        )
        .await;
        assert_eq!(app.stats().await["logout_all"].as_u64(), Some(0));
        refused(
            post(&app, logout, &s.cookie, None).await,
            "invalid_dpop_proof",
        )
        .await;
        refused(
            post_by(&app, &Es256::new(), logout, &s.cookie).await,
            "invalid_dpop_proof",
        )
        .await;
        // Nothing was revoked: the family still refreshes, with its key.
        let refresh = authfetch_protocol::REFRESH_PATH;
        let r = post_by(&app, &key, refresh, &s.cookie).await;
        assert_eq!(r.status(), StatusCode::OK);
        let next = cookie_value(&r).unwrap();
        assert_eq!(
            post_by(&app, &key, logout, &next).await.status(),
            StatusCode::NO_CONTENT
        );
        let r = post_by(&app, &key, refresh, &next).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(r).await, "invalid_grant");
    }

    #[tokio::test]
    async fn d1_optional_mode_keeps_bearer_clients_as_they_were() {
        let app = app(DpopMode::Optional).await;
        let r = login(&app, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body = json(r).await;
        assert_eq!(body["token_type"], "Bearer");
        let access = body["access_token"].as_str().unwrap();
        assert!(payload(access).get("cnf").is_none());
        assert_eq!(app.me(access).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn d1_required_mode_refuses_login_refresh_and_resources_without_proofs() {
        let app = app(DpopMode::Required).await;
        refused(login(&app, None).await, "invalid_dpop_proof").await;
        let key = Es256::new();
        let s = login_bound(&app, &key).await;
        refused(
            post(&app, authfetch_protocol::REFRESH_PATH, &s.cookie, None).await,
            "invalid_dpop_proof",
        )
        .await;
        refused(
            me(&app, &format!("Bearer {}", s.access), None).await,
            "invalid_token",
        )
        .await;
        let p = proof_for(&key, &app, "GET", "/api/me", Some(&s.access), None);
        assert_eq!(
            me(&app, &format!("DPoP {}", s.access), Some(&p))
                .await
                .status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn d1_off_mode_ignores_proofs_and_issues_bearer_tokens() {
        let app = app(DpopMode::Off).await;
        let key = Es256::new();
        let r = login(
            &app,
            Some(&proof_for(&key, &app, "POST", "/auth/login", None, None)),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let body = json(r).await;
        assert_eq!(body["token_type"], "Bearer");
        assert!(payload(body["access_token"].as_str().unwrap())
            .get("cnf")
            .is_none());
    }

    #[tokio::test]
    async fn d5_nonce_flow_use_dpop_nonce_then_the_retry_with_the_nonce_succeeds() {
        let app = TestApp::with(|c| {
            c.dpop.mode = DpopMode::Required;
            c.dpop.require_nonce = true;
        })
        .await;
        let key = Es256::new();
        let r = login(
            &app,
            Some(&proof_for(&key, &app, "POST", "/auth/login", None, None)),
        )
        .await;
        let nonce = r
            .headers()
            .get("dpop-nonce")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        refused(r, "use_dpop_nonce").await;
        // A forged nonce is refused the same way.
        let bad = proof_for(
            &key,
            &app,
            "POST",
            "/auth/login",
            None,
            Some(&"A".repeat(32)),
        );
        refused(login(&app, Some(&bad)).await, "use_dpop_nonce").await;
        let p = proof_for(&key, &app, "POST", "/auth/login", None, Some(&nonce));
        let r = login(&app, Some(&p)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().contains_key("dpop-nonce"));
        let access = json(r).await["access_token"].as_str().unwrap().to_owned();
        let dpop = format!("DPoP {access}");
        // Resources demand it too, and hand out the current nonce on success.
        let p = proof_for(&key, &app, "GET", "/api/me", Some(&access), None);
        let r = me(&app, &dpop, Some(&p)).await;
        assert!(r.headers().contains_key("dpop-nonce"));
        refused(r, "use_dpop_nonce").await;
        let p = proof_for(&key, &app, "GET", "/api/me", Some(&access), Some(&nonce));
        let r = me(&app, &dpop, Some(&p)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().contains_key("dpop-nonce"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn d5_two_instances_on_one_redis_refuse_a_proof_replayed_across_them() {
        let redis = common::RedisServer::start();
        let url = redis.url.clone();
        let prefix = common::unique_prefix("dpop-wired");
        let a = TestApp::with(|c| {
            c.store = StoreKind::Redis(url);
            c.redis_prefix = prefix;
            c.dpop.mode = DpopMode::Required;
            c.dpop.require_nonce = true;
        })
        .await;
        // Same data directory contents (keys, the secret nonces derive from), same Redis.
        let b = TestApp::attach(a.config.clone(), a.clock.clone()).await;
        let key = Es256::new();
        let r = login(
            &a,
            Some(&proof_for(&key, &a, "POST", "/auth/login", None, None)),
        )
        .await;
        let nonce = r
            .headers()
            .get("dpop-nonce")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        // B accepts A's nonce.
        let login_proof = proof_for(&key, &b, "POST", "/auth/login", None, Some(&nonce));
        let r = login(&b, Some(&login_proof)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let access = json(r).await["access_token"].as_str().unwrap().to_owned();
        let dpop = format!("DPoP {access}");
        let p = proof_for(&key, &a, "GET", "/api/me", Some(&access), Some(&nonce));
        assert_eq!(me(&a, &dpop, Some(&p)).await.status(), StatusCode::OK);
        refused(me(&b, &dpop, Some(&p)).await, "invalid_dpop_proof").await;
        refused(me(&a, &dpop, Some(&p)).await, "invalid_dpop_proof").await;
        // The login proof B accepted cannot log in again on A either.
        refused(login(&a, Some(&login_proof)).await, "invalid_dpop_proof").await;
    }

    #[tokio::test]
    async fn d4_the_verification_layer_for_other_services_refuses_bound_tokens_as_bearer() {
        use authfetch_server::verify::{Verifier, VerifierConfig};
        let app = app(DpopMode::Optional).await;
        let key = Es256::new();
        let s = login_bound(&app, &key).await;
        let cfg = VerifierConfig::new("authfetch", "authfetch-api");
        // A verifier without DPoP: a bound token is refused as Bearer.
        let plain = Verifier::with_key_ring(cfg.clone(), Arc::clone(app.state.service.keys()));
        let bearer = format!("Bearer {}", s.access);
        assert!(plain.verify_header(Some(bearer.as_bytes())).await.is_err());
        // With DPoP: a service on another origin checks proofs made for its own URLs.
        let check = DpopCheck::new(
            DpopMode::Optional,
            &[7u8; 32],
            vec!["https://api.example".into()],
            Arc::new(MemoryReplayCache::default()),
            Arc::clone(app.state.service.clock()),
        )
        .unwrap();
        let v = Verifier::builder(cfg)
            .key_ring(Arc::clone(app.state.service.keys()))
            .clock(Arc::clone(app.state.service.clock()))
            .dpop(Arc::new(check))
            .build()
            .unwrap();
        let svc = axum::Router::new()
            .route(
                "/api/me",
                axum::routing::get(
                    |authfetch_server::verify::Authenticated(c): authfetch_server::verify::Authenticated| async move { c.sub },
                ),
            )
            .route_layer(v.layer());
        let call = |auth: String, proof: Option<String>| {
            let svc = svc.clone();
            async move {
                use tower::ServiceExt as _;
                let mut b = Request::get("/api/me").header(header::AUTHORIZATION, auth);
                if let Some(p) = proof {
                    b = b.header("dpop", p);
                }
                svc.oneshot(b.body(Body::empty()).unwrap())
                    .await
                    .unwrap()
                    .status()
            }
        };
        let p = key.request_proof(
            "GET",
            "https://api.example/api/me",
            app.now_s(),
            Some(&s.access),
            None,
        );
        assert_eq!(call(bearer.clone(), None).await, StatusCode::UNAUTHORIZED);
        let dpop = format!("DPoP {}", s.access);
        assert_eq!(call(dpop.clone(), None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(call(dpop.clone(), Some(p.clone())).await, StatusCode::OK);
        assert_eq!(
            call(dpop, Some(p)).await,
            StatusCode::UNAUTHORIZED,
            "replay"
        );
    }
}

/// A Node service verifying with `jose` alone (tests/interop/dpop-verify-jose.mjs, the README's
/// recipe) accepts a bound token with its proof, and refuses it without a proof, with another
/// key's proof, or as a proof for another request.
#[tokio::test]
async fn interop_a_node_jose_verifier_accepts_a_bound_token_with_its_proof_only() {
    use authfetch_server::dpop::http::DpopMode;
    let app = common::TestApp::with(|c| c.dpop.mode = DpopMode::Required).await;
    let key = Es256::new();
    let login_proof = wired::proof_for(&key, &app, "POST", "/auth/login", None, None);
    let r = wired::login(&app, Some(&login_proof)).await;
    let access = common::json(r).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwks = app.dir.path().join("jwks-for-node.json");
    std::fs::write(
        &jwks,
        serde_json::to_vec(&app.state.service.jwks()).unwrap(),
    )
    .unwrap();
    let url = "https://api.example/api/me?x=1";
    let proof_by = |k: &Es256, htm: &str| {
        // jose checks iat against the real clock.
        let now = authfetch_server::clock::Clock::now_secs(&authfetch_server::clock::SystemClock);
        k.request_proof(htm, "https://api.example/api/me", now, Some(&access), None)
    };
    let run = |authorization: String, proof: Option<String>| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut cmd = std::process::Command::new("node");
        cmd.current_dir(&root)
            .arg("tests/interop/dpop-verify-jose.mjs")
            .arg(&jwks)
            .arg("GET")
            .arg(url)
            .arg(authorization);
        if let Some(p) = proof {
            cmd.arg(p);
        }
        let out = cmd.output().expect("node (scripts/bootstrap.sh)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let dpop = format!("DPoP {access}");
    let ok = run(dpop.clone(), Some(proof_by(&key, "GET")));
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(ok["sub"].is_string());
    assert_eq!(run(dpop.clone(), None)["reason"], "proof missing");
    assert_eq!(
        run(dpop.clone(), Some(proof_by(&Es256::new(), "GET")))["reason"],
        "other key"
    );
    assert_eq!(
        run(dpop, Some(proof_by(&key, "POST")))["reason"],
        "other request"
    );
    assert_eq!(run(format!("Bearer {access}"), None)["reason"], "not DPoP");
}
