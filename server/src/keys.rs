//! Signing keys: generation (OS CSPRNG, J11), persistence (`signing-keys.json`, mode 0600),
//! rotation with a publication lead and a retention tail (J12), and the public JWK Set of the
//! published keys. The JWK encoding of a public key is in `jwk.rs`.
//!
//! A key is *published* (in the JWKS and accepted by the verifier) from the moment it is
//! created, *used for signing* from its `activate_ms`, and stays published until
//! `retain` (access-token lifetime + skew) after the next key took over. So a verifier that
//! caches the JWKS always sees a key before the first token signed with it, and every
//! outstanding token stays verifiable until it expires.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::clock::ms;
use crate::jwk::P256_POINT_BYTES;
pub use crate::jwk::{Jwk, JwkSet, PublicKey};
use crate::jwt::{self, Alg, IssuedClaims};

/// File name of the persisted key ring inside the data directory.
pub const KEY_FILE: &str = "signing-keys.json";

/// Errors loading, storing or using keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The key file or a JWK is not what we wrote / accept.
    #[error("invalid key material: {0}")]
    Invalid(&'static str),
    /// JSON encoding failed.
    #[error("key JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A private signing key, loaded into `ring` once. `ring` never hands private material back,
/// so the bytes we persist (`d`: the P-256 scalar or the Ed25519 seed) are kept beside the key
/// pair; they are written only to the 0600 key file and never logged (`Debug` is not derived).
#[derive(Clone)]
enum PrivateKey {
    Es256 {
        pair: Arc<EcdsaKeyPair>,
        d: Arc<[u8; 32]>,
    },
    EdDsa {
        pair: Arc<Ed25519KeyPair>,
        seed: Arc<[u8; 32]>,
    },
}

/// The DER bytes that close `ring`'s P-256 PKCS#8 document around the public key (`[1]
/// BIT STRING` of 66 bytes), and the ones that open the private scalar (`OCTET STRING` of 32).
const PKCS8_P256_BEFORE_PUBLIC: [u8; 5] = [0xa1, 0x44, 0x03, 0x42, 0x00];
const PKCS8_P256_BEFORE_D: [u8; 2] = [0x04, 0x20];

impl PrivateKey {
    fn generate(alg: Alg) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        match alg {
            Alg::Es256 => {
                // `ring` generates P-256 keys only as PKCS#8; the scalar sits at a fixed place
                // in its template. `es256` re-derives the public key from it and compares, so a
                // layout change in `ring` fails here instead of persisting a wrong key.
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| KeyError::Invalid("no randomness for a P-256 key"))?;
                let doc = doc.as_ref();
                let pub_at = doc
                    .len()
                    .checked_sub(P256_POINT_BYTES + PKCS8_P256_BEFORE_PUBLIC.len())
                    .ok_or(KeyError::Invalid("unexpected PKCS#8 layout"))?;
                let d_at = pub_at
                    .checked_sub(32)
                    .ok_or(KeyError::Invalid("unexpected PKCS#8 layout"))?;
                let layout_ok = doc.get(pub_at..pub_at + 5) == Some(&PKCS8_P256_BEFORE_PUBLIC[..])
                    && d_at >= 2
                    && doc.get(d_at - 2..d_at) == Some(&PKCS8_P256_BEFORE_D[..]);
                if !layout_ok {
                    return Err(KeyError::Invalid("unexpected PKCS#8 layout"));
                }
                Self::es256(&doc[d_at..pub_at], &doc[pub_at + 5..])
            }
            Alg::EdDsa => {
                // RFC 8032: the private key is 32 random bytes.
                let mut seed = [0u8; 32];
                rng.fill(&mut seed)
                    .map_err(|_| KeyError::Invalid("no randomness for an Ed25519 key"))?;
                Self::eddsa(&seed)
            }
        }
    }

    fn es256(d: &[u8], public: &[u8]) -> Result<Self, KeyError> {
        let d: [u8; 32] = d
            .try_into()
            .map_err(|_| KeyError::Invalid("bad P-256 private key"))?;
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &d,
            public,
            &SystemRandom::new(),
        )
        .map_err(|_| KeyError::Invalid("bad P-256 private key"))?;
        Ok(PrivateKey::Es256 {
            pair: Arc::new(pair),
            d: Arc::new(d),
        })
    }

    fn eddsa(seed: &[u8]) -> Result<Self, KeyError> {
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| KeyError::Invalid("bad Ed25519 private key"))?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| KeyError::Invalid("bad Ed25519 private key"))?;
        Ok(PrivateKey::EdDsa {
            pair: Arc::new(pair),
            seed: Arc::new(seed),
        })
    }

    fn public(&self) -> Result<PublicKey, KeyError> {
        match self {
            PrivateKey::Es256 { pair, .. } => {
                PublicKey::es256_from_sec1(pair.public_key().as_ref())
            }
            PrivateKey::EdDsa { pair, .. } => {
                PublicKey::ed25519_from_bytes(pair.public_key().as_ref())
            }
        }
    }

    fn alg(&self) -> Alg {
        match self {
            PrivateKey::Es256 { .. } => Alg::Es256,
            PrivateKey::EdDsa { .. } => Alg::EdDsa,
        }
    }

    fn to_bytes(&self) -> &[u8] {
        match self {
            PrivateKey::Es256 { d, .. } => &d[..],
            PrivateKey::EdDsa { seed, .. } => &seed[..],
        }
    }

    /// Fixed-size signatures: 64 raw bytes `r‖s` for ES256 (J4), with a fresh nonce from the
    /// OS CSPRNG; Ed25519 is deterministic.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self {
            PrivateKey::Es256 { pair, .. } => pair
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Invalid("no randomness for an ECDSA nonce")),
            PrivateKey::EdDsa { pair, .. } => Ok(pair.sign(msg).as_ref().to_vec()),
        }
    }
}

#[derive(Clone)]
struct KeyEntry {
    kid: String,
    private: PrivateKey,
    public: PublicKey,
    created_ms: i64,
    activate_ms: i64,
}

/// On-disk form. `d` is the private scalar / seed: the file is created with mode 0600.
///
/// Version 2 adds `public` (the uncompressed SEC1 point) to ES256 entries, because `ring` only
/// loads a P-256 private key together with its public key and cannot derive one from the
/// other. Version 1 files load: Ed25519 entries as they are; ES256 entries (no `public`) are
/// dropped with a warning and a fresh key takes over. The cost is one refresh for clients that
/// hold an access token signed by a dropped key (their refresh cookies are untouched).
#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    keys: Vec<KeyFileEntry>,
}

/// The version [`KeyRing`] writes.
const KEY_FILE_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct KeyFileEntry {
    kid: String,
    alg: String,
    d: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public: Option<String>,
    created_ms: i64,
    activate_ms: i64,
}

impl KeyFileEntry {
    /// The entry as a key, `Ok(None)` for a version-1 ES256 entry that `ring` cannot load.
    fn load(self) -> Result<Option<KeyEntry>, KeyError> {
        let alg = Alg::parse(&self.alg).ok_or(KeyError::Invalid("unknown alg in key file"))?;
        let d = URL_SAFE_NO_PAD
            .decode(&self.d)
            .map_err(|_| KeyError::Invalid("bad d"))?;
        let private = match (alg, &self.public) {
            (Alg::EdDsa, _) => PrivateKey::eddsa(&d)?,
            (Alg::Es256, Some(public)) => {
                let public = URL_SAFE_NO_PAD
                    .decode(public)
                    .map_err(|_| KeyError::Invalid("bad public"))?;
                if public.len() != P256_POINT_BYTES {
                    return Err(KeyError::Invalid("bad public"));
                }
                PrivateKey::es256(&d, &public)?
            }
            (Alg::Es256, None) => return Ok(None),
        };
        let public = private.public()?;
        if public.thumbprint() != self.kid {
            return Err(KeyError::Invalid("kid does not match the key"));
        }
        Ok(Some(KeyEntry {
            kid: self.kid,
            private,
            public,
            created_ms: self.created_ms,
            activate_ms: self.activate_ms,
        }))
    }
}

/// The server's signing keys. Private keys never leave this type except into the key file.
pub struct KeyRing {
    keys: RwLock<Vec<KeyEntry>>,
    path: Option<PathBuf>,
    retain_ms: i64,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// An in-memory ring with one fresh active key (for tests and embedded use).
    /// `retain` is how long a superseded key stays published (access TTL + skew).
    pub fn ephemeral(alg: Alg, retain: Duration, now_ms: i64) -> Self {
        let ring = KeyRing {
            keys: RwLock::new(Vec::new()),
            path: None,
            retain_ms: ms(retain),
        };
        if let Err(e) = ring.push(alg, now_ms, now_ms) {
            // Only a failing OS RNG gets here; signing then fails with "no signing key".
            tracing::error!(error = %e, "could not generate a signing key");
        }
        ring
    }

    /// Loads `dir/signing-keys.json`, or creates it with one fresh key. If the active key's
    /// algorithm differs from `alg`, a new key of `alg` is added and activated at once.
    ///
    /// # Errors
    /// I/O errors, or a key file we cannot read.
    pub fn load_or_create(
        dir: &Path,
        alg: Alg,
        retain: Duration,
        now_ms: i64,
    ) -> Result<Self, KeyError> {
        let path = dir.join(KEY_FILE);
        let mut ring = KeyRing {
            keys: RwLock::new(Vec::new()),
            path: Some(path.clone()),
            retain_ms: ms(retain),
        };
        let mut dropped = false;
        match std::fs::read(&path) {
            Ok(bytes) => {
                restrict_permissions(&path)?;
                let file: KeyFile = serde_json::from_slice(&bytes)?;
                if file.version == 0 || file.version > KEY_FILE_VERSION {
                    return Err(KeyError::Invalid("unknown key file version"));
                }
                let mut entries = Vec::new();
                for e in file.keys {
                    let kid = e.kid.clone();
                    match e.load()? {
                        Some(entry) => entries.push(entry),
                        None => {
                            tracing::warn!(%kid, "version-1 ES256 key cannot be loaded without its public key; retired, a fresh key takes over");
                            dropped = true;
                        }
                    }
                }
                ring.keys = RwLock::new(entries);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let needs_key = ring.active(now_ms).is_none_or(|k| k.private.alg() != alg);
        if needs_key {
            ring.push(alg, now_ms, now_ms)?;
        }
        if needs_key || dropped {
            ring.persist()?;
        }
        ignore_in_git(dir);
        Ok(ring)
    }

    /// Adds a new key of `alg`, published now and used for signing from `now + lead`; the
    /// previous key stays published for `retain` after that. Persists the ring. Returns the new
    /// `kid`.
    ///
    /// # Errors
    /// Writing the key file failed.
    pub fn rotate(&self, alg: Alg, now_ms: i64, lead: Duration) -> Result<String, KeyError> {
        let kid = self.push(alg, now_ms, now_ms.saturating_add(ms(lead)))?;
        self.prune(now_ms);
        self.persist()?;
        Ok(kid)
    }

    fn push(&self, alg: Alg, now_ms: i64, activate_ms: i64) -> Result<String, KeyError> {
        let private = PrivateKey::generate(alg)?;
        let public = private.public()?;
        let kid = public.thumbprint();
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.push(KeyEntry {
            kid: kid.clone(),
            private,
            public,
            created_ms: now_ms,
            activate_ms,
        });
        keys.sort_by_key(|k| k.activate_ms);
        Ok(kid)
    }

    /// Drops keys whose successor took over more than `retain` ago.
    fn prune(&self, now_ms: i64) {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let activations: Vec<i64> = keys.iter().map(|k| k.activate_ms).collect();
        let retain = self.retain_ms;
        let mut i = 0;
        keys.retain(|_| {
            let next = activations.get(i + 1).copied();
            i += 1;
            next.is_none_or(|n| n > now_ms || now_ms < n.saturating_add(retain))
        });
    }

    fn active(&self, now_ms: i64) -> Option<KeyEntry> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .rev()
            .find(|k| k.activate_ms <= now_ms)
            .or_else(|| keys.first())
            .cloned()
    }

    /// Whether the key at `idx` is still published at `now_ms`.
    fn published(keys: &[KeyEntry], idx: usize, now_ms: i64, retain_ms: i64) -> bool {
        // Superseded = the next key has activated; then published for `retain` more.
        match keys.get(idx + 1) {
            Some(next) if next.activate_ms <= now_ms => {
                now_ms < next.activate_ms.saturating_add(retain_ms)
            }
            _ => true,
        }
    }

    /// The published public key with this `kid`, if any.
    pub fn public_key(&self, kid: &str, now_ms: i64) -> Option<PublicKey> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .enumerate()
            .find(|(i, k)| k.kid == kid && Self::published(&keys, *i, now_ms, self.retain_ms))
            .map(|(_, k)| k.public.clone())
    }

    /// The public JWK Set (never private material, J11).
    pub fn jwks(&self, now_ms: i64) -> JwkSet {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let keys = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| Self::published(&keys, *i, now_ms, self.retain_ms))
            .map(|(_, k)| k.public.to_jwk(&k.kid))
            .collect();
        JwkSet { keys }
    }

    /// The `kid` currently used for signing.
    pub fn active_kid(&self, now_ms: i64) -> Option<String> {
        self.active(now_ms).map(|k| k.kid)
    }

    /// Signs an access token with the active key.
    ///
    /// # Errors
    /// No key at all (cannot happen after construction), or JSON encoding failed.
    pub(crate) fn sign(&self, claims: &IssuedClaims, now_ms: i64) -> Result<String, KeyError> {
        let key = self
            .active(now_ms)
            .ok_or(KeyError::Invalid("no signing key"))?;
        let input = jwt::signing_input(key.public.alg(), &key.kid, claims)?;
        let sig = key.private.sign(input.as_bytes())?;
        Ok(jwt::finish(input, &sig))
    }

    fn persist(&self) -> Result<(), KeyError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            KeyFile {
                version: KEY_FILE_VERSION,
                keys: keys
                    .iter()
                    .map(|k| KeyFileEntry {
                        kid: k.kid.clone(),
                        alg: k.public.alg().as_str().into(),
                        d: URL_SAFE_NO_PAD.encode(k.private.to_bytes()),
                        public: (k.public.alg() == Alg::Es256)
                            .then(|| URL_SAFE_NO_PAD.encode(k.public.as_bytes())),
                        created_ms: k.created_ms,
                        activate_ms: k.activate_ms,
                    })
                    .collect(),
            }
        };
        let bytes = serde_json::to_vec_pretty(&file)?;
        if let Some(dir) = path.parent() {
            crate::create_private_dir(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = private_file_options().open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// File name of the marker that keeps the data directory out of version control.
pub const GITIGNORE: &str = ".gitignore";

/// J11 "never committed": a data directory created inside a Git checkout (the default
/// `authfetch-data` is relative to the working directory) ignores itself, like Cargo's
/// `target/`. Best effort: a read-only directory only gets a warning.
fn ignore_in_git(dir: &Path) {
    let path = dir.join(GITIGNORE);
    if path.exists() {
        return;
    }
    let body = "# Created by authfetch-server: this directory holds private signing keys.\n*\n";
    if let Err(e) = std::fs::write(&path, body) {
        tracing::warn!(path = %path.display(), error = %e, "could not write .gitignore into the data directory");
    }
}

#[cfg(unix)]
fn private_file_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true).mode(0o600);
    o
}

#[cfg(not(unix))]
fn private_file_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    o
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode != 0o600 {
        tracing::warn!(path = %path.display(), mode = format_args!("{mode:o}"), "key file permissions were too open; set to 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn j4_ring_es256_signatures_are_raw_64_bytes_and_interoperate_with_p256() {
        use p256::ecdsa::signature::{Signer as _, Verifier as _};
        let key = PrivateKey::generate(Alg::Es256).unwrap();
        let PrivateKey::Es256 { d, .. } = &key else {
            unreachable!("asked for ES256")
        };
        // An independent implementation (RustCrypto, test-only) derives the same public key
        // from the scalar we extracted out of ring's PKCS#8 document.
        let theirs = p256::ecdsa::SigningKey::from_slice(&d[..]).unwrap();
        let public = key.public().unwrap();
        assert_eq!(
            public.as_bytes(),
            theirs.verifying_key().to_encoded_point(false).as_bytes()
        );
        let msg = b"header.payload";
        // ring signs; RustCrypto verifies.
        let sig = key.sign(msg).unwrap();
        assert_eq!(sig.len(), 64);
        let parsed = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        assert!(theirs.verifying_key().verify(msg, &parsed).is_ok());
        // RustCrypto signs; ring (through PublicKey::verify) verifies.
        let their_sig: p256::ecdsa::Signature = theirs.sign(msg);
        assert!(public.verify(msg, &their_sig.to_bytes()));
        assert!(public.verify(msg, &sig));
        assert!(!public.verify(b"header.payloaD", &sig));
        // Wrong lengths, DER, zero and out-of-range scalars are refused.
        assert!(!public.verify(msg, &sig[..63]));
        assert!(!public.verify(msg, their_sig.to_der().as_bytes()));
        assert!(!public.verify(msg, &[0u8; 64]));
        assert!(!public.verify(msg, &[0xffu8; 64]));
    }

    #[test]
    fn ed25519_seeds_load_into_ring_like_ed25519_dalek_keys() {
        use ed25519_dalek::Signer as _;
        let key = PrivateKey::generate(Alg::EdDsa).unwrap();
        let theirs = ed25519_dalek::SigningKey::from_bytes(&key.to_bytes().try_into().unwrap());
        let public = key.public().unwrap();
        assert_eq!(public.as_bytes(), theirs.verifying_key().as_bytes());
        let msg = b"header.payload";
        let sig = key.sign(msg).unwrap();
        assert_eq!(
            sig,
            theirs.sign(msg).to_bytes().to_vec(),
            "Ed25519 is deterministic"
        );
        let sig: [u8; 64] = sig.try_into().unwrap();
        assert!(theirs
            .verifying_key()
            .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok());
        assert!(public.verify(msg, &sig));
    }

    #[test]
    fn persisted_private_key_bytes_load_into_ring_and_sign() {
        for alg in [Alg::Es256, Alg::EdDsa] {
            let key = PrivateKey::generate(alg).unwrap();
            let public = key.public().unwrap();
            let again = match alg {
                Alg::Es256 => PrivateKey::es256(key.to_bytes(), public.as_bytes()).unwrap(),
                Alg::EdDsa => PrivateKey::eddsa(key.to_bytes()).unwrap(),
            };
            assert_eq!(again.public().unwrap(), public);
            assert!(public.verify(b"m", &again.sign(b"m").unwrap()));
        }
        // A scalar that does not belong to the public key, or no scalar at all, is refused.
        let a = PrivateKey::generate(Alg::Es256).unwrap();
        let b = PrivateKey::generate(Alg::Es256).unwrap();
        let b_public = b.public().unwrap();
        assert!(PrivateKey::es256(a.to_bytes(), b_public.as_bytes()).is_err());
        assert!(PrivateKey::es256(&[0u8; 32], b_public.as_bytes()).is_err());
        assert!(PrivateKey::eddsa(&[0u8; 31]).is_err());
    }

    /// A version-1 file (written by the p256 build: raw scalars, no public keys) still loads:
    /// its Ed25519 keys as they are, its ES256 keys retired in favour of a fresh one, and the
    /// rewritten file is version 2.
    #[test]
    fn version_1_key_files_load_and_are_rewritten_as_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let ed = PrivateKey::generate(Alg::EdDsa).unwrap();
        let ed_kid = ed.public().unwrap().thumbprint();
        let es = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let es_kid =
            PublicKey::es256_from_sec1(es.verifying_key().to_encoded_point(false).as_bytes())
                .unwrap()
                .thumbprint();
        let v1 = serde_json::json!({"version": 1, "keys": [
            {"kid": ed_kid, "alg": "EdDSA", "d": URL_SAFE_NO_PAD.encode(ed.to_bytes()), "created_ms": 0, "activate_ms": 0},
            {"kid": es_kid, "alg": "ES256", "d": URL_SAFE_NO_PAD.encode(es.to_bytes()), "created_ms": 1, "activate_ms": 1},
        ]});
        std::fs::write(dir.path().join(KEY_FILE), v1.to_string()).unwrap();
        let ring =
            KeyRing::load_or_create(dir.path(), Alg::EdDsa, Duration::from_secs(60), 10).unwrap();
        assert!(
            ring.public_key(&ed_kid, 10).is_some(),
            "Ed25519 v1 key kept"
        );
        assert!(
            ring.public_key(&es_kid, 10).is_none(),
            "ES256 v1 key retired"
        );
        let active = ring.active_kid(10).unwrap();
        assert_ne!(active, es_kid);
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(KEY_FILE)).unwrap()).unwrap();
        assert_eq!(file["version"], 2);
        // And the rewritten file loads again, to the same keys.
        let again =
            KeyRing::load_or_create(dir.path(), Alg::EdDsa, Duration::from_secs(60), 10).unwrap();
        assert_eq!(again.jwks(10), ring.jwks(10));
        // A v2 ES256 ring survives a reload with every key.
        let dir2 = tempfile::tempdir().unwrap();
        let es_ring =
            KeyRing::load_or_create(dir2.path(), Alg::Es256, Duration::from_secs(60), 0).unwrap();
        es_ring
            .rotate(Alg::Es256, 0, Duration::from_secs(5))
            .unwrap();
        let reloaded =
            KeyRing::load_or_create(dir2.path(), Alg::Es256, Duration::from_secs(60), 0).unwrap();
        assert_eq!(reloaded.jwks(0), es_ring.jwks(0));
        assert_eq!(reloaded.jwks(0).keys.len(), 2);
        // A future version, or an entry whose kid is not its key's thumbprint, is refused.
        let mut v3 = file.clone();
        v3["version"] = 3.into();
        std::fs::write(dir.path().join(KEY_FILE), v3.to_string()).unwrap();
        assert!(
            KeyRing::load_or_create(dir.path(), Alg::EdDsa, Duration::from_secs(60), 10).is_err()
        );
        let mut wrong_kid = file;
        wrong_kid["keys"][0]["kid"] = "someone-else".into();
        std::fs::write(dir.path().join(KEY_FILE), wrong_kid.to_string()).unwrap();
        assert!(
            KeyRing::load_or_create(dir.path(), Alg::EdDsa, Duration::from_secs(60), 10).is_err()
        );
    }
}
