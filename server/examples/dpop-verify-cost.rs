//! What DPoP adds to one verified resource request, for `callgrind` (BENCHMARKS.md §0c): signs
//! `N` proofs up front, then verifies each as the resource check does (`verify_proof` with `ath`,
//! then the in-memory replay cache). Run it under callgrind twice with different `N`, and the
//! difference of the two totals over the difference of `N` is the cost of one check (set-up and
//! signing cancel out only if signing is excluded: use `--toggle-collect=*verify_all*`).
//!
//!   cargo build --release -p authfetch-server --example dpop-verify-cost
//!   valgrind --tool=callgrind --toggle-collect='*verify_all*' target/release/examples/dpop-verify-cost 1000

use authfetch_server::dpop::{ath, verify_proof, Expect, Htu, MemoryReplayCache, ReplayCache};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{EcdsaKeyPair, KeyPair as _};

const TOKEN: &str =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";
const HTU: &str = "http://127.0.0.1:8080/api/me";
const NOW: i64 = 1_700_000_000;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("key");
    let p = pair.public_key().as_ref();
    let header = format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}}}"#,
        URL_SAFE_NO_PAD.encode(&p[1..33]),
        URL_SAFE_NO_PAD.encode(&p[33..])
    );
    let proofs: Vec<String> = (0..n)
        .map(|i| {
            let payload = format!(
                r#"{{"jti":"jti-{i}","htm":"GET","htu":"{HTU}","iat":{NOW},"ath":"{}"}}"#,
                ath(TOKEN)
            );
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(&header),
                URL_SAFE_NO_PAD.encode(payload)
            );
            let sig = pair.sign(&rng, input.as_bytes()).expect("sign");
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
        })
        .collect();
    let ok = verify_all(&proofs);
    assert_eq!(ok, n);
    println!("verified {ok} proofs");
}

#[inline(never)]
fn verify_all(proofs: &[String]) -> usize {
    let htu = Htu::parse(HTU).expect("htu");
    let cache = MemoryReplayCache::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut ok = 0;
    for proof in proofs {
        let expect = Expect::new("GET", &htu, NOW).access_token(TOKEN);
        let v = verify_proof(proof, &expect).expect("valid proof");
        if rt.block_on(cache.first_use(&v, NOW * 1000)).expect("cache") {
            ok += 1;
        }
    }
    ok
}
