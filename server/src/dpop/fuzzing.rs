//! Entry point of the `dpop_proof` cargo-fuzz target (`fuzz/fuzz_targets/dpop_proof.rs`) and
//! its seeds (`fuzz/seeds/dpop_proof/`). Compiled only for tests and with the `fuzzing`
//! feature, like `crate::fuzzing`; no stability promise.
//!
//! The fuzzer's bytes are a proof, checked as a resource request would be: with an access
//! token (so `ath` is required), a required nonce, ES256 and EdDSA, at a fixed time. The seeds
//! are valid proofs for exactly that, so the fuzzer starts on the accepting paths.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use std::sync::OnceLock;

use super::{ath, verify_proof, Expect, Htu, Nonces, DEFAULT_NONCE_STEP, MAX_JTI_BYTES};
use super::{MAX_PROOF_BYTES, PROOF_TYP};
use crate::jwt::Alg;

/// The method the fuzzed proofs are checked against.
pub const HTM: &str = "GET";
/// The URL the fuzzed proofs are checked against.
pub const HTU: &str = "https://app.example/api/me";
/// The access token of the fuzzed request.
pub const ACCESS_TOKEN: &str = "fuzz-access-token";
/// The fixed clock (Unix seconds): seeds made for it stay valid.
pub const NOW_S: i64 = 1_700_000_000;
const ALGS: [Alg; 2] = [Alg::Es256, Alg::EdDsa];

fn fixed(label: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, label);
    let mut b = [0u8; 32];
    b.copy_from_slice(d.as_ref());
    b
}

fn fixture() -> Option<&'static (Htu, Nonces)> {
    static F: OnceLock<Option<(Htu, Nonces)>> = OnceLock::new();
    F.get_or_init(|| {
        let nonces = Nonces::new(
            &fixed(b"authfetch dpop fuzzing nonce secret, not secret"),
            DEFAULT_NONCE_STEP,
        )
        .ok()?;
        Some((Htu::parse(HTU).ok()?, nonces))
    })
    .as_ref()
}

/// Verifies `input` as a proof. Returns whether it was accepted.
///
/// # Panics
/// When an accepted proof breaks what acceptance requires (size, form, `jti` bound, `iat`
/// window, a thumbprint of 43 characters).
pub fn dpop_proof(input: &[u8]) -> bool {
    let Some((htu, nonces)) = fixture() else {
        return false;
    };
    let Ok(proof) = std::str::from_utf8(input) else {
        return false;
    };
    let expect = Expect::new(HTM, htu, NOW_S)
        .access_token(ACCESS_TOKEN)
        .require_nonce(nonces)
        .algs(&ALGS);
    match verify_proof(proof, &expect) {
        Ok(p) => {
            assert!(proof.len() <= MAX_PROOF_BYTES, "oversize proof accepted");
            assert_eq!(proof.split('.').count(), 3, "non-compact proof accepted");
            assert!(
                !p.jti.is_empty() && p.jti.len() <= MAX_JTI_BYTES,
                "jti out of bounds accepted"
            );
            assert!(
                p.iat.abs_diff(NOW_S) <= 60,
                "iat outside the window accepted"
            );
            assert_eq!(p.jkt.len(), 43, "thumbprint is not a base64url SHA-256");
            true
        }
        Err(e) => {
            // Every rejection maps to one of the two RFC 9449 codes.
            assert!(matches!(e.code(), "invalid_dpop_proof" | "use_dpop_nonce"));
            false
        }
    }
}

fn claims() -> serde_json::Value {
    let nonce = fixture().map(|(_, n)| n.current(NOW_S)).unwrap_or_default();
    json!({
        "jti": "fuzz-jti-1",
        "htm": HTM,
        "htu": HTU,
        "iat": NOW_S,
        "ath": ath(ACCESS_TOKEN),
        "nonce": nonce,
    })
}

fn compact(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// The seeds: `(file name, bytes)`. Names starting with `valid` are accepted.
pub fn seed_corpus() -> Vec<(&'static str, Vec<u8>)> {
    use ring::signature::KeyPair as _;
    let mut seeds = Vec::new();
    // Ed25519 from a fixed seed: deterministic, so this seed is byte-for-byte reproducible.
    if let Ok(ed) = ring::signature::Ed25519KeyPair::from_seed_unchecked(&fixed(
        b"authfetch dpop fuzzing Ed25519 key, not secret",
    )) {
        let header = json!({
            "typ": PROOF_TYP,
            "alg": "EdDSA",
            "jwk": { "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(ed.public_key()) },
        });
        let input = compact(&header, &claims());
        let sig = ed.sign(input.as_bytes());
        seeds.push((
            "valid_eddsa",
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)).into_bytes(),
        ));
    }
    // P-256: ring's ECDSA signatures are randomized, so this seed differs on every
    // regeneration; the seed test checks that the committed one is still accepted.
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    if let Some(es) = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng)
        .ok()
        .and_then(|p| ring::signature::EcdsaKeyPair::from_pkcs8(alg, p.as_ref(), &rng).ok())
    {
        let point = es.public_key().as_ref();
        let header = json!({
            "typ": PROOF_TYP,
            "alg": "ES256",
            "jwk": {
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            },
        });
        let input = compact(&header, &claims());
        if let Ok(sig) = es.sign(&rng, input.as_bytes()) {
            let proof = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
            // The same proof with its nonce removed: reaches the last check and fails there.
            let mut no_nonce = claims();
            if let Some(o) = no_nonce.as_object_mut() {
                o.remove("nonce");
            }
            let input2 = compact(&header, &no_nonce);
            if let Ok(sig2) = es.sign(&rng, input2.as_bytes()) {
                seeds.push((
                    "use_nonce",
                    format!("{input2}.{}", URL_SAFE_NO_PAD.encode(sig2)).into_bytes(),
                ));
            }
            seeds.push(("valid_es256", proof.into_bytes()));
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed seeds exist, one per `seed_corpus` entry, and are accepted (or refused) as
    /// their names say. `AUTHFETCH_WRITE_FUZZ_SEEDS=1` regenerates them.
    #[test]
    fn dpop_fuzz_seeds_are_committed_and_accepted() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/dpop_proof");
        let seeds = seed_corpus();
        assert_eq!(seeds.len(), 3, "a seed could not be made");
        if std::env::var_os("AUTHFETCH_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
        for (name, bytes) in &seeds {
            assert_eq!(dpop_proof(bytes), name.starts_with("valid"), "fresh {name}");
            let committed = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
                panic!("{name} not committed ({e}): run with AUTHFETCH_WRITE_FUZZ_SEEDS=1")
            });
            assert_eq!(
                dpop_proof(&committed),
                name.starts_with("valid"),
                "committed {name}"
            );
            if *name == "valid_eddsa" {
                assert_eq!(&committed, bytes, "{name} is stale");
            }
        }
    }

    #[test]
    fn dpop_fuzz_entry_point_refuses_without_panicking() {
        assert!(!dpop_proof(b""));
        assert!(!dpop_proof(b"a.b.c"));
        assert!(!dpop_proof(&[0xff, 0xfe, b'.', b'.']));
        assert!(!dpop_proof("x".repeat(MAX_PROOF_BYTES + 1).as_bytes()));
    }
}
