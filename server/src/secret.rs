//! Secret newtypes: their `Debug` prints `[redacted]`, the value is reached through `.secret()`.
//!
//! Modelled on oauth2-rs `src/types.rs`. Anything that could end up in a log line (an error's
//! `Debug`, a `tracing` field) goes through one of these, so a token or a password can't leak
//! by accident.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use std::fmt;

/// Raw entropy in a refresh token: 256 bits from the OS CSPRNG.
pub const REFRESH_TOKEN_BYTES: usize = 32;
/// Length of a refresh token on the wire: 32 bytes as unpadded base64url.
pub const REFRESH_TOKEN_LEN: usize = 43;

/// 32 bytes in canonical unpadded base64url: exactly 43 characters, padding and non-zero
/// trailing bits refused (the decoder's default), so each value has one spelling. The form of
/// refresh tokens and of RFC 7638 SHA-256 thumbprints (`dpop_jkt`).
pub(crate) fn decode_b64url_32(s: &str) -> Option<[u8; REFRESH_TOKEN_BYTES]> {
    if s.len() != REFRESH_TOKEN_LEN {
        return None;
    }
    URL_SAFE_NO_PAD.decode(s).ok()?.try_into().ok()
}

/// An opaque refresh token (the value of the refresh cookie).
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken([u8; REFRESH_TOKEN_BYTES]);

impl RefreshToken {
    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut b = [0u8; REFRESH_TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self(b)
    }

    /// Parses the cookie form: exactly 43 characters of canonical unpadded base64url.
    /// Anything else is `None` (and is treated as an unknown token by the caller).
    pub fn parse(s: &str) -> Option<Self> {
        decode_b64url_32(s).map(Self)
    }

    /// The cookie value. Handle with care: this is the credential.
    pub fn secret(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// SHA-256 of the raw token: the only form the store ever sees.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0).into())
    }

    /// Seals `successor` under this (parent) token: XOR with HMAC-SHA256 keyed by the parent
    /// over a fixed label.
    ///
    /// The store keeps the sealed successor next to the parent's *hash*; only someone who holds
    /// the parent itself can unseal it, and only while the store still returns it (until the
    /// successor's first use). Sealing is its own inverse.
    pub fn seal(&self, successor: &RefreshToken) -> [u8; REFRESH_TOKEN_BYTES] {
        xor(successor.0, &self.pad())
    }

    /// Reverses [`RefreshToken::seal`].
    pub fn unseal(&self, sealed: &[u8; REFRESH_TOKEN_BYTES]) -> RefreshToken {
        RefreshToken(xor(*sealed, &self.pad()))
    }

    /// Unseals `sealed` and checks it against the successor's hash as the store has it.
    /// Also accepts a successor sealed by an earlier release (SHA-256 of label and parent
    /// instead of an HMAC): such values stay in the store until their successor is first used,
    /// so an upgrade must not turn them into errors. `None` if neither matches.
    pub fn unseal_matching(
        &self,
        sealed: &[u8; REFRESH_TOKEN_BYTES],
        expected: &TokenHash,
    ) -> Option<RefreshToken> {
        [self.pad(), self.pad_v1()]
            .into_iter()
            .map(|pad| RefreshToken(xor(*sealed, &pad)))
            .find(|t| t.hash() == *expected)
    }

    fn pad(&self) -> [u8; REFRESH_TOKEN_BYTES] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        let tag = ring::hmac::sign(&key, SEAL_LABEL);
        let mut pad = [0u8; REFRESH_TOKEN_BYTES];
        pad.copy_from_slice(tag.as_ref());
        pad
    }

    /// The pad of earlier releases, for [`RefreshToken::unseal_matching`] only.
    fn pad_v1(&self) -> [u8; REFRESH_TOKEN_BYTES] {
        let mut h = Sha256::new();
        h.update(b"authfetch/refresh-successor-seal/v1\0");
        h.update(self.0);
        h.finalize().into()
    }
}

/// The HMAC message of [`RefreshToken::seal`] (domain separation from any other use of the
/// token as a key).
const SEAL_LABEL: &[u8] = b"authfetch/refresh-successor-seal/v2";

fn xor(
    mut v: [u8; REFRESH_TOKEN_BYTES],
    pad: &[u8; REFRESH_TOKEN_BYTES],
) -> [u8; REFRESH_TOKEN_BYTES] {
    for (o, p) in v.iter_mut().zip(pad.iter()) {
        *o ^= p;
    }
    v
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

/// SHA-256 of a refresh token: the store's lookup key (a hash index, so lookups do not leak
/// the token through timing; R6).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to correlate log lines and is useless to an attacker.
        write!(f, "TokenHash({}…)", hex(&self.0[..4]))
    }
}

/// A compact JWT access token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a compact JWT.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The compact JWT.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// A plaintext password on its way to Argon2.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wraps a plaintext password.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The plaintext.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// A random identifier (families, users, `jti`): 128 bits, unpadded base64url.
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let t = RefreshToken::generate();
        assert!(!format!("{t:?}").contains(&t.secret()));
        let p = Password::new("hunter2".into());
        assert!(!format!("{p:?}").contains("hunter2"));
        let a = AccessToken::new("eyJ.abc.def".into());
        assert!(!format!("{a:?}").contains("eyJ"));
    }

    #[test]
    fn seal_round_trips_and_depends_on_parent() {
        let parent = RefreshToken::generate();
        let other = RefreshToken::generate();
        let succ = RefreshToken::generate();
        let sealed = parent.seal(&succ);
        assert_ne!(sealed, succ.0);
        assert_eq!(parent.unseal(&sealed), succ);
        assert_ne!(other.unseal(&sealed), succ);
    }

    #[test]
    fn seal_is_xor_with_hmac_sha256_keyed_by_the_parent() {
        use hmac::Mac as _;
        let parent = RefreshToken::generate();
        let succ = RefreshToken::generate();
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&parent.0).unwrap();
        mac.update(SEAL_LABEL);
        let pad: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(parent.seal(&succ), xor(succ.0, &pad));
    }

    #[test]
    fn unseal_matching_accepts_this_and_the_previous_release_and_nothing_else() {
        let parent = RefreshToken::generate();
        let succ = RefreshToken::generate();
        let h = succ.hash();
        assert_eq!(
            parent.unseal_matching(&parent.seal(&succ), &h),
            Some(succ.clone())
        );
        let legacy = xor(succ.0, &parent.pad_v1());
        assert_eq!(parent.unseal_matching(&legacy, &h), Some(succ.clone()));
        let other = RefreshToken::generate();
        assert_eq!(other.unseal_matching(&parent.seal(&succ), &h), None);
        assert_eq!(
            parent.unseal_matching(&parent.seal(&succ), &other.hash()),
            None
        );
    }

    #[test]
    fn parse_is_strict() {
        let t = RefreshToken::generate();
        assert_eq!(RefreshToken::parse(&t.secret()), Some(t.clone()));
        assert!(RefreshToken::parse("").is_none());
        assert!(RefreshToken::parse(&format!("{}=", t.secret())).is_none());
        assert!(RefreshToken::parse(&"A".repeat(44)).is_none());
        assert!(RefreshToken::parse(&"+".repeat(43)).is_none());
    }
}
