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
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use crate::clock::ms;
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

/// A P-256 key: the RustCrypto key (encoding, public key) and the same key loaded into `ring`
/// (signing in assembly).
#[derive(Clone)]
struct Es256Key {
    key: p256::ecdsa::SigningKey,
    ring: std::sync::Arc<ring::signature::EcdsaKeyPair>,
}

impl Es256Key {
    fn new(key: p256::ecdsa::SigningKey) -> Result<Self, KeyError> {
        let public = key.verifying_key().to_encoded_point(false);
        let ring = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.to_bytes(),
            public.as_bytes(),
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|_| KeyError::Invalid("bad P-256 private key"))?;
        Ok(Self {
            key,
            ring: std::sync::Arc::new(ring),
        })
    }
}

#[derive(Clone)]
enum PrivateKey {
    Es256(Es256Key),
    EdDsa(ed25519_dalek::SigningKey),
}

impl PrivateKey {
    fn generate(alg: Alg) -> Self {
        let mut rng = rand::rngs::OsRng;
        match alg {
            Alg::Es256 => loop {
                // `ring` accepts every key p256 generates; the loop only guards the type.
                if let Ok(k) = Es256Key::new(p256::ecdsa::SigningKey::random(&mut rng)) {
                    break PrivateKey::Es256(k);
                }
            },
            Alg::EdDsa => PrivateKey::EdDsa(ed25519_dalek::SigningKey::generate(&mut rng)),
        }
    }
    fn public(&self) -> PublicKey {
        match self {
            PrivateKey::Es256(k) => PublicKey::Es256(*k.key.verifying_key()),
            PrivateKey::EdDsa(k) => PublicKey::EdDsa(k.verifying_key()),
        }
    }
    fn alg(&self) -> Alg {
        self.public().alg()
    }
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            PrivateKey::Es256(k) => k.key.to_bytes().to_vec(),
            PrivateKey::EdDsa(k) => k.to_bytes().to_vec(),
        }
    }
    fn from_bytes(alg: Alg, b: &[u8]) -> Result<Self, KeyError> {
        match alg {
            Alg::Es256 => p256::ecdsa::SigningKey::from_slice(b)
                .map_err(|_| KeyError::Invalid("bad P-256 private key"))
                .and_then(Es256Key::new)
                .map(PrivateKey::Es256),
            Alg::EdDsa => {
                let arr: [u8; 32] = b
                    .try_into()
                    .map_err(|_| KeyError::Invalid("bad Ed25519 private key"))?;
                Ok(PrivateKey::EdDsa(ed25519_dalek::SigningKey::from_bytes(
                    &arr,
                )))
            }
        }
    }
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            PrivateKey::Es256(k) => {
                // Fixed-size r‖s (J4), randomized nonce from the OS CSPRNG.
                match k.ring.sign(&ring::rand::SystemRandom::new(), msg) {
                    Ok(s) => s.as_ref().to_vec(),
                    Err(_) => {
                        // ring fails only if the OS RNG does; fall back to RFC 6979.
                        use p256::ecdsa::signature::Signer as _;
                        let s: p256::ecdsa::Signature = k.key.sign(msg);
                        s.to_bytes().to_vec()
                    }
                }
            }
            PrivateKey::EdDsa(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(msg).to_bytes().to_vec()
            }
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
#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    keys: Vec<KeyFileEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyFileEntry {
    kid: String,
    alg: String,
    d: String,
    created_ms: i64,
    activate_ms: i64,
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
        ring.push(alg, now_ms, now_ms);
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
        match std::fs::read(&path) {
            Ok(bytes) => {
                restrict_permissions(&path)?;
                let file: KeyFile = serde_json::from_slice(&bytes)?;
                let mut entries = Vec::new();
                for e in file.keys {
                    let a =
                        Alg::parse(&e.alg).ok_or(KeyError::Invalid("unknown alg in key file"))?;
                    let d = URL_SAFE_NO_PAD
                        .decode(&e.d)
                        .map_err(|_| KeyError::Invalid("bad d"))?;
                    let private = PrivateKey::from_bytes(a, &d)?;
                    let public = private.public();
                    entries.push(KeyEntry {
                        kid: e.kid,
                        private,
                        public,
                        created_ms: e.created_ms,
                        activate_ms: e.activate_ms,
                    });
                }
                ring.keys = RwLock::new(entries);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let needs_key = ring.active(now_ms).is_none_or(|k| k.private.alg() != alg);
        if needs_key {
            ring.push(alg, now_ms, now_ms);
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
        let kid = self.push(alg, now_ms, now_ms.saturating_add(ms(lead)));
        self.prune(now_ms);
        self.persist()?;
        Ok(kid)
    }

    fn push(&self, alg: Alg, now_ms: i64, activate_ms: i64) -> String {
        let private = PrivateKey::generate(alg);
        let public = private.public();
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
        kid
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
        let sig = key.private.sign(input.as_bytes());
        Ok(jwt::finish(input, &sig))
    }

    fn persist(&self) -> Result<(), KeyError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            KeyFile {
                version: 1,
                keys: keys
                    .iter()
                    .map(|k| KeyFileEntry {
                        kid: k.kid.clone(),
                        alg: k.public.alg().as_str().into(),
                        d: URL_SAFE_NO_PAD.encode(k.private.to_bytes()),
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
        let PrivateKey::Es256(k) = PrivateKey::generate(Alg::Es256) else {
            unreachable!("asked for ES256")
        };
        let msg = b"header.payload";
        // ring signs; RustCrypto verifies.
        let sig = PrivateKey::Es256(k.clone()).sign(msg);
        assert_eq!(sig.len(), 64);
        let parsed = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        assert!(k.key.verifying_key().verify(msg, &parsed).is_ok());
        // RustCrypto signs; ring (through PublicKey::verify) verifies.
        let public = PublicKey::Es256(*k.key.verifying_key());
        let theirs: p256::ecdsa::Signature = k.key.sign(msg);
        assert!(public.verify(msg, &theirs.to_bytes()));
        assert!(public.verify(msg, &sig));
        assert!(!public.verify(b"header.payloaD", &sig));
        // Wrong lengths, DER, zero and out-of-range scalars are refused.
        assert!(!public.verify(msg, &sig[..63]));
        assert!(!public.verify(msg, theirs.to_der().as_bytes()));
        assert!(!public.verify(msg, &[0u8; 64]));
        assert!(!public.verify(msg, &[0xffu8; 64]));
    }

    #[test]
    fn persisted_es256_private_key_bytes_load_into_ring_and_sign() {
        let key = PrivateKey::generate(Alg::Es256);
        let bytes = key.to_bytes();
        let again = PrivateKey::from_bytes(Alg::Es256, &bytes).unwrap();
        assert_eq!(again.public(), key.public());
        assert!(key.public().verify(b"m", &again.sign(b"m")));
        assert!(PrivateKey::from_bytes(Alg::Es256, &[0u8; 32]).is_err());
    }
}
