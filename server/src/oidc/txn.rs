//! The login transaction between `/start` and `/callback`, and the return-path rule.
//!
//! The transaction (provider, `state`, `nonce`, PKCE verifier, return path, expiry) travels in
//! one cookie, `__Host-authfetch_oidc`, whose value is the JSON of [`Transaction`] and an
//! HMAC-SHA256 over it under a server key (`oidc-transaction.key` in the data directory, shared
//! by instances that share the data directory's keys). Signed, not encrypted: the cookie is
//! HttpOnly and only ever travels between this server and the browser that started the login;
//! what the signature adds is that nobody can make one up, extend its expiry or change where it
//! returns to.
//!
//! `SameSite=Lax` (not Strict): the browser comes back from the provider with a cross-site
//! top-level GET, on which Strict cookies are not sent. `__Host-` (Secure, `Path=/`, no
//! `Domain`): a sibling subdomain cannot toss its own transaction into this browser (login
//! CSRF). Single use is enforced by the server (a consumed id is remembered until it expires)
//! and the callback always clears the cookie.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Name of the transaction cookie.
pub const TXN_COOKIE: &str = "__Host-authfetch_oidc";
/// How long a login at the provider may take.
pub const TXN_TTL: Duration = Duration::from_secs(600);
/// File of the transaction key inside the data directory.
pub const TXN_KEY_FILE: &str = "oidc-transaction.key";
/// Longest accepted cookie value (a transaction is a few hundred bytes).
const MAX_COOKIE_LEN: usize = 4096;
/// Longest accepted return path.
pub const MAX_RETURN_TO: usize = 1024;
/// Most consumed ids remembered at once (each lives at most [`TXN_TTL`]).
const MAX_CONSUMED: usize = 100_000;

/// One login in flight. Its `Debug` hides the nonce and the PKCE verifier.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transaction {
    /// Random id: the unit of single use.
    pub id: String,
    /// Provider name (the `{provider}` path segment).
    pub provider: String,
    /// The `state` sent to the provider.
    pub state: String,
    /// The `nonce` sent to the provider (checked in the ID token).
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Where to send the browser after sign-in: a checked same-origin relative path.
    pub return_to: String,
    /// Expiry, Unix milliseconds.
    pub exp_ms: i64,
    /// The DPoP key thumbprint (RFC 7638) the browser asked the session to be bound to, as
    /// RFC 9449 §10's `dpop_jkt`: a provider's redirect is a top-level navigation and can carry
    /// no proof, so the key is named at the start and proven at the first refresh.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("return_to", &self.return_to)
            .field("exp_ms", &self.exp_ms)
            .field("dpop_jkt", &self.dpop_jkt)
            .finish_non_exhaustive()
    }
}

/// Why a transaction cookie was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// No cookie (started in another browser, cookies blocked, or already used and cleared).
    #[error("no transaction cookie")]
    Missing,
    /// Not of our format, or the signature does not match.
    #[error("transaction cookie malformed or not signed by this server")]
    Invalid,
    /// Past its expiry.
    #[error("transaction expired")]
    Expired,
    /// Already used once.
    #[error("transaction already used")]
    Replayed,
}

/// The HMAC key of transaction cookies.
#[derive(Clone)]
pub struct TxnKey([u8; 32]);

impl std::fmt::Debug for TxnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TxnKey([redacted])")
    }
}

impl TxnKey {
    /// A fresh random key (tests, and servers built without a data directory).
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// A 32-byte key for another use of this secret: HMAC-SHA256 under it over `label`, so
    /// the derived key says nothing about this one or about keys for other labels. (DPoP
    /// nonces use it: every instance sharing the data directory derives the same key.)
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0),
            label,
        );
        let mut k = [0u8; 32];
        k.copy_from_slice(tag.as_ref());
        k
    }

    /// Reads `dir/oidc-transaction.key`, or creates it (mode 0600) with a random key.
    ///
    /// # Errors
    /// I/O errors, or a file that is not 32 bytes.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(TXN_KEY_FILE);
        match std::fs::read(&path) {
            Ok(b) => b.try_into().map(Self).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} must hold exactly 32 bytes", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random();
                let mut o = std::fs::OpenOptions::new();
                o.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    o.mode(0o600);
                }
                match o.open(&path) {
                    Ok(mut f) => {
                        std::io::Write::write_all(&mut f, &key.0)?;
                        f.sync_all()?;
                        Ok(key)
                    }
                    // Another instance created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(dir)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn hmac_key(&self) -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0)
    }

    /// The cookie value of `t`: `base64url(json).base64url(hmac)`.
    pub fn seal(&self, t: &Transaction) -> String {
        // Serializing a struct of strings and an integer cannot fail.
        let json = serde_json::to_vec(t).unwrap_or_default();
        let body = URL_SAFE_NO_PAD.encode(json);
        let tag = ring::hmac::sign(&self.hmac_key(), &signed_bytes(&body));
        let tag = URL_SAFE_NO_PAD.encode(tag.as_ref());
        format!("{body}.{tag}")
    }

    /// Checks the signature and the expiry of a cookie value.
    ///
    /// # Errors
    /// [`TxnError::Invalid`] or [`TxnError::Expired`].
    pub fn open(&self, value: &str, now_ms: i64) -> Result<Transaction, TxnError> {
        if value.len() > MAX_COOKIE_LEN {
            return Err(TxnError::Invalid);
        }
        let (body, tag) = value.split_once('.').ok_or(TxnError::Invalid)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TxnError::Invalid)?;
        // Constant-time comparison.
        ring::hmac::verify(&self.hmac_key(), &signed_bytes(body), &tag)
            .map_err(|_| TxnError::Invalid)?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TxnError::Invalid)?;
        let t: Transaction = serde_json::from_slice(&json).map_err(|_| TxnError::Invalid)?;
        if now_ms >= t.exp_ms {
            return Err(TxnError::Expired);
        }
        Ok(t)
    }
}

/// What the HMAC covers: a label (so the key signs nothing else by accident) and the body.
fn signed_bytes(body: &str) -> Vec<u8> {
    let mut v = b"authfetch oidc transaction v1\0".to_vec();
    v.extend_from_slice(body.as_bytes());
    v
}

/// Ids of transactions already used, until they expire (single use). Per process: with
/// several instances, a replay sent to another instance is still refused by the provider,
/// which accepts an authorization code once (RFC 6749 §4.1.2).
#[derive(Debug, Default)]
pub struct Consumed(Mutex<HashMap<String, i64>>);

impl Consumed {
    /// Marks `t` used. `Err(Replayed)` if it already was.
    ///
    /// # Errors
    /// [`TxnError::Replayed`]; also when the table is full of live entries (fail closed).
    pub fn consume(&self, t: &Transaction, now_ms: i64) -> Result<(), TxnError> {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.len() >= MAX_CONSUMED {
            m.retain(|_, exp| *exp > now_ms);
            if m.len() >= MAX_CONSUMED {
                return Err(TxnError::Replayed);
            }
        }
        match m.entry(t.id.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => Err(TxnError::Replayed),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(t.exp_ms);
                Ok(())
            }
        }
    }
}

/// Checks a requested return path: same-origin and relative, or `None`.
///
/// Accepted: a path that starts with exactly one `/`, then no `/` or `\` right after it, no
/// backslash anywhere, no control characters or spaces, at most [`MAX_RETURN_TO`] bytes, and
/// that resolves against a placeholder origin to that same origin. Everything else (`//evil`,
/// `/\evil`, `https://evil`, `javascript:`, an encoded or tab-split variant) is refused rather
/// than repaired: browsers normalise these in ways that have produced open redirects.
pub fn check_return_to(raw: &str) -> Option<String> {
    if raw.is_empty()
        || raw.len() > MAX_RETURN_TO
        || !raw.starts_with('/')
        || raw.starts_with("//")
        || raw.contains('\\')
        || raw.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return None;
    }
    // `/%2f%2fevil` and `/%5cevil` decode to the forms refused above in some routers.
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with("/%2f") || lower.starts_with("/%5c") {
        return None;
    }
    let base = url::Url::parse("https://return-to.invalid/").ok()?;
    let resolved = base.join(raw).ok()?;
    if resolved.origin() != base.origin() {
        return None;
    }
    Some(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(exp_ms: i64) -> Transaction {
        Transaction {
            id: "id1".into(),
            provider: "test".into(),
            state: "st".into(),
            nonce: "no".into(),
            verifier: "ve".into(),
            return_to: "/app".into(),
            exp_ms,
            dpop_jkt: None,
        }
    }

    #[test]
    fn return_to_accepts_same_origin_relative_paths() {
        for ok in [
            "/",
            "/app",
            "/app/x?y=1#z",
            "/a/b/../c",
            "/%E2%9C%93",
            "/?next=//x",
        ] {
            assert_eq!(check_return_to(ok).as_deref(), Some(ok), "{ok}");
        }
    }

    #[test]
    fn return_to_refuses_other_origins_and_tricks() {
        for bad in [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\\/evil.example",
            "https://evil.example/",
            "http:evil.example",
            "javascript:alert(1)",
            "evil.example",
            "app",
            "/\tevil",
            "/ /evil",
            "/\n/evil",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            " /app",
        ] {
            assert_eq!(check_return_to(bad), None, "{bad:?}");
        }
        assert_eq!(
            check_return_to(&format!("/{}", "a".repeat(MAX_RETURN_TO))),
            None
        );
    }

    #[test]
    fn cookie_round_trips_and_refuses_tampering() {
        let k = TxnKey::random();
        let t = txn(10_000);
        let v = k.seal(&t);
        assert_eq!(k.open(&v, 9_999), Ok(t.clone()));
        // Another key.
        assert_eq!(TxnKey::random().open(&v, 0), Err(TxnError::Invalid));
        // A changed body (a longer expiry, another return path) with the old tag.
        let (_, tag) = v.split_once('.').unwrap();
        for changed in [
            Transaction {
                exp_ms: i64::MAX,
                ..t.clone()
            },
            Transaction {
                return_to: "//evil".into(),
                ..t.clone()
            },
            // An attacker's own DPoP key swapped in for the browser's.
            Transaction {
                dpop_jkt: Some("A".repeat(43)),
                ..t.clone()
            },
        ] {
            let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed).unwrap());
            assert_eq!(k.open(&format!("{body}.{tag}"), 0), Err(TxnError::Invalid));
        }
        // One flipped character anywhere.
        for i in 0..v.len() {
            let mut b = v.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let s = String::from_utf8(b).unwrap();
            if s != v {
                assert!(k.open(&s, 0).is_err(), "flip at {i}");
            }
        }
        for garbage in ["", ".", "a.b", "not-a-cookie", &"A".repeat(5000)] {
            assert_eq!(k.open(garbage, 0), Err(TxnError::Invalid), "{garbage}");
        }
    }

    #[test]
    fn cookie_expires() {
        let k = TxnKey::random();
        let v = k.seal(&txn(10_000));
        assert!(k.open(&v, 9_999).is_ok());
        assert_eq!(k.open(&v, 10_000), Err(TxnError::Expired));
    }

    #[test]
    fn transactions_are_single_use() {
        let c = Consumed::default();
        let t = txn(10_000);
        assert_eq!(c.consume(&t, 0), Ok(()));
        assert_eq!(c.consume(&t, 1), Err(TxnError::Replayed));
        let other = Transaction {
            id: "id2".into(),
            ..t
        };
        assert_eq!(c.consume(&other, 1), Ok(()));
    }

    #[test]
    fn debug_hides_nonce_and_verifier() {
        let d = format!("{:?}", txn(1));
        assert!(!d.contains("\"no\"") && !d.contains("\"ve\""), "{d}");
        assert_eq!(format!("{:?}", TxnKey::random()), "TxnKey([redacted])");
    }
}
