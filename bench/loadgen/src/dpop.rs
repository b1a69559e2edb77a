//! The DPoP client side of the load generator (RFC 9449, as docs/PROTOCOL.md "DPoP" states the
//! server's rules): one ES256 key per run, a fresh proof per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// A P-256 key and what every proof by it shares.
pub struct Dpop {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// base64url of the proof header (`typ`, `alg`, public `jwk`), the same for every proof.
    header: String,
    /// `http://127.0.0.1:PORT`: the server's default allowed origin, so the `htu` it expects.
    origin: String,
    /// Random per run, so that `jti`s differ from an earlier run's against the same server.
    jti_prefix: String,
    next_jti: AtomicU64,
}

impl Dpop {
    /// A new key, for a server reached at `origin` (`http://host:port`).
    pub fn new(origin: String) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| "dpop: key generation")?;
        let key =
            EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|_| "dpop: key import")?;
        // The public key is the uncompressed point 0x04 ‖ x ‖ y.
        let point = key.public_key().as_ref();
        let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
        let header = format!(
            "{{\"typ\":\"dpop+jwt\",\"alg\":\"ES256\",\
             \"jwk\":{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"{x}\",\"y\":\"{y}\"}}}}"
        );
        let mut prefix = [0u8; 12];
        rng.fill(&mut prefix).map_err(|_| "dpop: random")?;
        Ok(Self {
            key,
            rng,
            header: b64(header.as_bytes()),
            origin,
            jti_prefix: b64(&prefix),
            next_jti: AtomicU64::new(0),
        })
    }

    /// A proof for `htm` to `path` (its query is not part of the `htu`), with `ath` on resource
    /// requests and the server's last nonce, if any.
    pub fn proof(&self, htm: &str, path: &str, ath: Option<&str>, nonce: Option<&str>) -> String {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let jti = self.next_jti.fetch_add(1, Ordering::Relaxed);
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut payload = format!(
            "{{\"jti\":\"{}-{jti}\",\"htm\":\"{htm}\",\"htu\":\"{}{path}\",\"iat\":{iat}",
            self.jti_prefix, self.origin
        );
        // Both are base64url (`ath`) or the server's own header value (nonce: base64url too),
        // so they need no JSON escaping.
        if let Some(ath) = ath {
            payload.push_str(&format!(",\"ath\":\"{ath}\""));
        }
        if let Some(n) = nonce {
            payload.push_str(&format!(",\"nonce\":\"{n}\""));
        }
        payload.push('}');
        let signing_input = format!("{}.{}", self.header, b64(payload.as_bytes()));
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ES256 signing");
        format!("{signing_input}.{}", b64(sig.as_ref()))
    }
}

/// `ath`: base64url(SHA-256(access token)).
pub fn ath(token: &str) -> String {
    b64(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
