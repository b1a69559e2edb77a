//! Prints one JSON object: microseconds per ES256 / EdDSA sign and verify of a JWT-sized
//! message, with RustCrypto `p256` (authfetch-server's ES256 before ring), `ed25519-dalek` (its
//! Ed25519), and `ring` (its ES256).
//! Each figure is the median of 5 rounds of `--iters` operations, on whatever CPU the process
//! is pinned to (bench/server/server.mjs pins it to the server's core).
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<F: FnMut()>(iters: u32, mut f: F) -> f64 {
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        rounds.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(iters));
    }
    median(rounds)
}

fn main() {
    let iters: u32 = std::env::args()
        .skip_while(|a| a != "--iters")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    // A signing input the size of an authfetch access token's header.payload.
    let msg = vec![b'a'; 260];

    // RustCrypto p256 (the ES256 authfetch-server used before it moved to ring).
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let vk = p256::ecdsa::VerifyingKey::from(&sk);
    let sig: p256::ecdsa::Signature = sk.sign(&msg);
    let p256_sign = time(iters, || {
        let s: p256::ecdsa::Signature = sk.sign(std::hint::black_box(&msg));
        std::hint::black_box(s);
    });
    let p256_verify = time(iters, || {
        assert!(vk.verify(std::hint::black_box(&msg), &sig).is_ok());
    });

    // ed25519-dalek (authfetch-server's EdDSA).
    let ek = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let evk = ek.verifying_key();
    let esig = ek.sign(&msg);
    let ed_sign = time(iters, || {
        std::hint::black_box(ek.sign(std::hint::black_box(&msg)));
    });
    let ed_verify = time(iters, || {
        assert!(evk.verify(std::hint::black_box(&msg), &esig).is_ok());
    });

    // ring (BoringSSL's assembly P-256 and Ed25519).
    use ring::signature::{self, KeyPair as _};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
    let rk = signature::EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap();
    let rsig = rk.sign(&rng, &msg).unwrap();
    let rpub = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_FIXED,
        rk.public_key().as_ref().to_vec(),
    );
    let ring_sign = time(iters, || {
        std::hint::black_box(rk.sign(&rng, std::hint::black_box(&msg)).unwrap());
    });
    let ring_verify = time(iters, || {
        assert!(rpub
            .verify(std::hint::black_box(&msg), rsig.as_ref())
            .is_ok());
    });
    let epk8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let rek = signature::Ed25519KeyPair::from_pkcs8(epk8.as_ref()).unwrap();
    let resig = rek.sign(&msg);
    let repub =
        signature::UnparsedPublicKey::new(&signature::ED25519, rek.public_key().as_ref().to_vec());
    let ring_ed_sign = time(iters, || {
        std::hint::black_box(rek.sign(std::hint::black_box(&msg)));
    });
    let ring_ed_verify = time(iters, || {
        assert!(repub
            .verify(std::hint::black_box(&msg), resig.as_ref())
            .is_ok());
    });

    println!(
        "{{\"iters\":{iters},\"us\":{{\"p256_es256_sign\":{p256_sign:.1},\"p256_es256_verify\":{p256_verify:.1},\
         \"ed25519_dalek_sign\":{ed_sign:.1},\"ed25519_dalek_verify\":{ed_verify:.1},\
         \"ring_es256_sign\":{ring_sign:.1},\"ring_es256_verify\":{ring_verify:.1},\
         \"ring_ed25519_sign\":{ring_ed_sign:.1},\"ring_ed25519_verify\":{ring_ed_verify:.1}}}}}"
    );
}
