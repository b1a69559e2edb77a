//! Public keys and their JSON Web Key form (RFC 7517, RFC 7638 thumbprints): what the JWKS
//! serves, what a verifier reads from someone else's JWKS, and signature verification with a
//! public key. Private keys and rotation live in `keys.rs`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::jwt::Alg;
use crate::keys::KeyError;

/// A public verification key. Each key has exactly one algorithm (J1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// P-256 ECDSA (ES256).
    Es256(p256::ecdsa::VerifyingKey),
    /// Ed25519 (EdDSA).
    EdDsa(ed25519_dalek::VerifyingKey),
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
    /// The key's one algorithm.
    pub fn alg(&self) -> Alg {
        match self {
            PublicKey::Es256(_) => Alg::Es256,
            PublicKey::EdDsa(_) => Alg::EdDsa,
        }
    }

    /// The JWK (J12: `kid kty crv x y alg use`, coordinates left-padded to 32 bytes).
    pub fn to_jwk(&self, kid: &str) -> Jwk {
        match self {
            PublicKey::Es256(vk) => {
                let p = vk.to_encoded_point(false);
                // An uncompressed point always has both coordinates, each a 32-byte field element
                // (already left-padded with zeros).
                let x = p.x().map(|x| URL_SAFE_NO_PAD.encode(x)).unwrap_or_default();
                let y = p.y().map(|y| URL_SAFE_NO_PAD.encode(y));
                Jwk {
                    kty: "EC".into(),
                    crv: "P-256".into(),
                    x,
                    y,
                    alg: Some("ES256".into()),
                    use_: Some("sig".into()),
                    kid: Some(kid.into()),
                }
            }
            PublicKey::EdDsa(vk) => Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: URL_SAFE_NO_PAD.encode(vk.to_bytes()),
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
                let point =
                    p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                    .map(PublicKey::Es256)
                    .map_err(|_| KeyError::Invalid("point not on curve"))
            }
            ("OKP", "Ed25519", Some("EdDSA")) => {
                if jwk.y.is_some() {
                    return Err(KeyError::Invalid("OKP key with y"));
                }
                let x = decode32(&jwk.x)?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map(PublicKey::EdDsa)
                    .map_err(|_| KeyError::Invalid("bad Ed25519 key"))
            }
            _ => Err(KeyError::Invalid("unsupported kty/crv/alg")),
        }
    }

    /// RFC 7638 JWK thumbprint, base64url: the `kid` of keys we generate.
    pub fn thumbprint(&self) -> String {
        let j = self.to_jwk("");
        let canonical = match self {
            PublicKey::Es256(_) => format!(
                r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
                j.crv,
                j.kty,
                j.x,
                j.y.unwrap_or_default()
            ),
            PublicKey::EdDsa(_) => {
                format!(r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#, j.crv, j.kty, j.x)
            }
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// Verifies `sig` over `msg`. ES256 signatures must be exactly 64 raw bytes `r‖s` with
    /// 0 < r, s < n (`Signature::from_slice` enforces the range; J4, CVE-2022-21449); DER is
    /// rejected by the length check. The arithmetic is `ring`'s (assembly P-256,
    /// `ECDSA_P256_SHA256_FIXED`, which checks length and range again). Ed25519 uses
    /// `verify_strict` (no small-order keys, canonical S).
    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::Es256(vk) => {
                if sig.len() != 64 || p256::ecdsa::Signature::from_slice(sig).is_err() {
                    return false;
                }
                // SEC1 uncompressed point: a valid curve point, as the key was validated on
                // construction (from a JWK or our own private key).
                let point = vk.to_encoded_point(false);
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_FIXED,
                    point.as_bytes(),
                )
                .verify(msg, sig)
                .is_ok()
            }
            PublicKey::EdDsa(vk) => {
                let Ok(arr) = <[u8; 64]>::try_from(sig) else {
                    return false;
                };
                vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&arr))
                    .is_ok()
            }
        }
    }
}
