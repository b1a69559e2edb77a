//! Public keys and their JSON Web Key form (RFC 7517, RFC 7638 thumbprints): what the JWKS
//! serves, what a verifier reads from someone else's JWKS, and signature verification with a
//! public key. Private keys and rotation live in `keys.rs`.
//!
//! All arithmetic is `ring`'s (the server's one crypto stack). What `ring` does not check by
//! itself and J4/J12 require is checked here, thinly: ES256 signatures are exactly 64 raw bytes
//! with 0 < r, s < n before `ring` sees them; P-256 points are validated when a key is made, not
//! at first use; Ed25519 keys and signature `R`s of small order are refused, as
//! `ed25519-dalek`'s `verify_strict` did.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};
use serde::{Deserialize, Serialize};

use crate::jwt::Alg;
use crate::keys::KeyError;

/// Length of an uncompressed SEC1 P-256 point: `04 ‖ x ‖ y`.
pub const P256_POINT_BYTES: usize = 65;

/// The order n of the P-256 group, big-endian: ECDSA scalars must lie in 1..n (J4).
const P256_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

/// Encodings of the Edwards25519 points of small order (the eight-torsion subgroup), with the
/// sign bit cleared, including the non-canonical `y = p` and `y = p + 1`. Signatures that verify
/// under a small-order key can be made without any private key, and an honest signer never
/// produces a small-order `R`; `verify_strict` refused both, `ring` does not, so we do (the list
/// is libsodium's `has_small_order` one, and a test derives it again from `curve25519-dalek`).
const ED25519_SMALL_ORDER: [[u8; 32]; 7] = [
    [0; 32],
    {
        let mut one = [0u8; 32];
        one[0] = 1;
        one
    },
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    p_plus(0xec),
    p_plus(0xed),
    p_plus(0xee),
];

/// `p - 1`, `p`, `p + 1` for p = 2^255 - 19, little-endian, by their lowest byte.
const fn p_plus(low: u8) -> [u8; 32] {
    let mut b = [0xffu8; 32];
    b[0] = low;
    b[31] = 0x7f;
    b
}

fn ed25519_small_order(encoded: &[u8; 32]) -> bool {
    let mut masked = *encoded;
    masked[31] &= 0x7f;
    ED25519_SMALL_ORDER.contains(&masked)
}

/// A nonzero scalar below the P-256 order (big-endian, 32 bytes).
fn p256_scalar_in_range(s: &[u8]) -> bool {
    s.len() == 32 && s.iter().any(|&b| b != 0) && s < &P256_N[..]
}

/// A public verification key. Each key has exactly one algorithm (J1). Made only through
/// constructors that validate it, so verification never meets an unchecked point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(Key);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    /// P-256 ECDSA (ES256): an uncompressed SEC1 point on the curve.
    Es256([u8; P256_POINT_BYTES]),
    /// Ed25519 (EdDSA): the 32-byte encoded point, not of small order.
    EdDsa([u8; 32]),
}

/// One JSON Web Key (RFC 7517), public members only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `EC` or `OKP`.
    pub kty: String,
    /// `P-256` or `Ed25519`.
    pub crv: String,
    /// x coordinate (EC, exactly 32 bytes) or the public key (OKP), base64url.
    pub x: String,
    /// y coordinate (EC only, exactly 32 bytes), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// `ES256` or `EdDSA`: the only algorithm this key verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Always `sig`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Key id (the RFC 7638 thumbprint for keys we make).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// A JWK Set: the body of `GET /.well-known/jwks.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The published keys.
    pub keys: Vec<Jwk>,
}

fn decode32(s: &str) -> Result<[u8; 32], KeyError> {
    let v = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| KeyError::Invalid("coordinate is not base64url"))?;
    v.try_into()
        .map_err(|_| KeyError::Invalid("coordinate is not exactly 32 bytes"))
}

impl PublicKey {
    /// A P-256 (ES256) key from its uncompressed SEC1 encoding `04 ‖ x ‖ y`.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] unless it is 65 bytes and a point on the curve.
    pub fn es256_from_sec1(point: &[u8]) -> Result<Self, KeyError> {
        let point: [u8; P256_POINT_BYTES] = point
            .try_into()
            .map_err(|_| KeyError::Invalid("not an uncompressed P-256 point"))?;
        if point[0] != 0x04 {
            return Err(KeyError::Invalid("not an uncompressed P-256 point"));
        }
        // `ring` validates a peer's point (coordinates below p, on the curve) before any key
        // agreement, and exposes no other way to do just that; one ephemeral ECDH per imported
        // key is cheap next to the JWKS fetch that brought it.
        let rng = ring::rand::SystemRandom::new();
        let ephemeral =
            ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::ECDH_P256, &rng)
                .map_err(|_| KeyError::Invalid("no randomness to validate the point"))?;
        let peer = ring::agreement::UnparsedPublicKey::new(&ring::agreement::ECDH_P256, point);
        ring::agreement::agree_ephemeral(ephemeral, &peer, |_| ())
            .map_err(|_| KeyError::Invalid("point not on curve"))?;
        Ok(PublicKey(Key::Es256(point)))
    }

    /// An Ed25519 (EdDSA) key from its 32-byte encoding.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] unless it is 32 bytes and not a point of small order.
    pub fn ed25519_from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Invalid("bad Ed25519 key"))?;
        if ed25519_small_order(&key) {
            return Err(KeyError::Invalid("Ed25519 key of small order"));
        }
        Ok(PublicKey(Key::EdDsa(key)))
    }

    /// The key's one algorithm.
    pub fn alg(&self) -> Alg {
        match self.0 {
            Key::Es256(_) => Alg::Es256,
            Key::EdDsa(_) => Alg::EdDsa,
        }
    }

    /// The public key bytes: the uncompressed SEC1 point (ES256) or the 32-byte key (EdDSA).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Key::Es256(p) => p,
            Key::EdDsa(k) => k,
        }
    }

    /// The JWK (J12: `kid kty crv x y alg use`, coordinates left-padded to 32 bytes).
    pub fn to_jwk(&self, kid: &str) -> Jwk {
        match &self.0 {
            // SEC1 coordinates are fixed-size field elements: already left-padded with zeros.
            Key::Es256(p) => Jwk {
                kty: "EC".into(),
                crv: "P-256".into(),
                x: URL_SAFE_NO_PAD.encode(&p[1..33]),
                y: Some(URL_SAFE_NO_PAD.encode(&p[33..])),
                alg: Some("ES256".into()),
                use_: Some("sig".into()),
                kid: Some(kid.into()),
            },
            Key::EdDsa(k) => Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: URL_SAFE_NO_PAD.encode(k),
                y: None,
                alg: Some("EdDSA".into()),
                use_: Some("sig".into()),
                kid: Some(kid.into()),
            },
        }
    }

    /// Reads a public JWK. The JWK must name its algorithm and it must match `kty`/`crv` (J1).
    ///
    /// # Errors
    /// [`KeyError::Invalid`] for anything but a P-256 ES256 or Ed25519 EdDSA signing key.
    pub fn from_jwk(jwk: &Jwk) -> Result<PublicKey, KeyError> {
        if let Some(u) = &jwk.use_ {
            if u != "sig" {
                return Err(KeyError::Invalid("use is not sig"));
            }
        }
        match (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_deref()) {
            ("EC", "P-256", Some("ES256")) => {
                let x = decode32(&jwk.x)?;
                let y = decode32(jwk.y.as_deref().ok_or(KeyError::Invalid("missing y"))?)?;
                let mut point = [0u8; P256_POINT_BYTES];
                point[0] = 0x04;
                point[1..33].copy_from_slice(&x);
                point[33..].copy_from_slice(&y);
                PublicKey::es256_from_sec1(&point)
            }
            ("OKP", "Ed25519", Some("EdDSA")) => {
                if jwk.y.is_some() {
                    return Err(KeyError::Invalid("OKP key with y"));
                }
                PublicKey::ed25519_from_bytes(&decode32(&jwk.x)?)
            }
            _ => Err(KeyError::Invalid("unsupported kty/crv/alg")),
        }
    }

    /// RFC 7638 JWK thumbprint, base64url: the `kid` of keys we generate.
    pub fn thumbprint(&self) -> String {
        let j = self.to_jwk("");
        let canonical = match self.0 {
            Key::Es256(_) => format!(
                r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
                j.crv,
                j.kty,
                j.x,
                j.y.unwrap_or_default()
            ),
            Key::EdDsa(_) => {
                format!(r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#, j.crv, j.kty, j.x)
            }
        };
        URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ))
    }

    /// Verifies `sig` over `msg`. ES256 signatures must be exactly 64 raw bytes `r‖s` with
    /// 0 < r, s < n (J4, CVE-2022-21449); DER is rejected by the length check. `ring`'s
    /// `ECDSA_P256_SHA256_FIXED` checks both again. Ed25519: `ring` refuses a non-canonical
    /// S (S ≥ L); an `R` of small order is refused here.
    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 64 {
            return false;
        }
        match &self.0 {
            Key::Es256(point) => {
                p256_scalar_in_range(&sig[..32])
                    && p256_scalar_in_range(&sig[32..])
                    && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                        .verify(msg, sig)
                        .is_ok()
            }
            Key::EdDsa(key) => {
                let mut r = [0u8; 32];
                r.copy_from_slice(&sig[..32]);
                !ed25519_small_order(&r)
                    && UnparsedPublicKey::new(&ED25519, key)
                        .verify(msg, sig)
                        .is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocklist is exactly the eight-torsion points (sign bit cleared), derived again from
    /// an independent implementation, plus the two non-canonical encodings of 0 and 1.
    #[test]
    fn ed25519_small_order_list_is_the_eight_torsion_subgroup() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let mut derived: Vec<[u8; 32]> = EIGHT_TORSION
            .iter()
            .map(|p| {
                let mut b = p.compress().to_bytes();
                b[31] &= 0x7f;
                b
            })
            .collect();
        derived.push(p_plus(0xed));
        derived.push(p_plus(0xee));
        derived.sort_unstable();
        derived.dedup();
        let mut ours = ED25519_SMALL_ORDER.to_vec();
        ours.sort_unstable();
        assert_eq!(ours, derived);
        for p in EIGHT_TORSION {
            let b = p.compress().to_bytes();
            assert!(ed25519_small_order(&b));
            assert!(PublicKey::ed25519_from_bytes(&b).is_err());
            let weak = ed25519_dalek::VerifyingKey::from_bytes(&b).unwrap();
            assert!(weak.is_weak(), "dalek agrees it is weak");
        }
    }

    /// `verify_strict` refused a small-order R even under a valid key; so do we.
    #[test]
    fn ed25519_signature_with_small_order_r_is_refused() {
        use ed25519_dalek::Signer as _;
        let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let public = PublicKey::ed25519_from_bytes(sk.verifying_key().as_bytes()).unwrap();
        let good = sk.sign(b"m").to_bytes();
        assert!(public.verify(b"m", &good));
        let mut bad = good;
        bad[..32].copy_from_slice(&ED25519_SMALL_ORDER[1]);
        assert!(!public.verify(b"m", &bad));
    }

    #[test]
    fn p256_points_are_checked_when_the_key_is_made() {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let point = sk.verifying_key().to_encoded_point(false);
        let key = PublicKey::es256_from_sec1(point.as_bytes()).unwrap();
        assert_eq!(key.as_bytes(), point.as_bytes());
        let mut off_curve = key.as_bytes().to_vec();
        off_curve[64] ^= 1;
        assert!(PublicKey::es256_from_sec1(&off_curve).is_err());
        let compressed = sk.verifying_key().to_encoded_point(true);
        assert!(PublicKey::es256_from_sec1(compressed.as_bytes()).is_err());
        assert!(PublicKey::es256_from_sec1(&[0u8; 65]).is_err());
        // x or y ≥ p is not a coordinate.
        let mut big = [0xffu8; 65];
        big[0] = 4;
        assert!(PublicKey::es256_from_sec1(&big).is_err());
    }

    #[test]
    fn p256_scalar_range_is_1_to_n_minus_1() {
        let mut n_minus_1 = P256_N;
        n_minus_1[31] -= 1;
        assert!(p256_scalar_in_range(&n_minus_1));
        assert!(!p256_scalar_in_range(&P256_N));
        assert!(!p256_scalar_in_range(&[0; 32]));
        assert!(!p256_scalar_in_range(&[0xff; 32]));
        let mut one = [0u8; 32];
        one[31] = 1;
        assert!(p256_scalar_in_range(&one));
        assert!(!p256_scalar_in_range(&one[1..]));
    }
}
