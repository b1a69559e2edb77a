//! Stateless server nonces (RFC 9449 §8, §9; D5): no store, so every instance that shares the
//! secret issues and accepts the same nonces.
//!
//! A nonce is `base64url(step ‖ tag)`: `step` the current time step (Unix seconds divided by the
//! step length, 8 bytes big-endian) and `tag` the first 16 bytes of HMAC-SHA256 over `step`
//! under a key derived from the server secret. The nonce of the current step and of the one
//! before are accepted, so a nonce stays good for at least one full step and at most two, and a
//! client that just received one never meets a rotation on its next request. Keys are made the
//! way `secret.rs` seals refresh tokens (HMAC-SHA256 keyed by the secret over a fixed label,
//! `ring::hmac`): the label separates this use of the secret from any other.
//!
//! Instances must agree on the clock to within a step: a nonce from an instance a step ahead is
//! refused by one behind, which answers `use_dpop_nonce` with its own; the client's one retry
//! then carries a nonce every instance accepts (the current step of the one behind is the
//! previous step of the one ahead).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::fmt;
use std::time::Duration;
use subtle::ConstantTimeEq as _;

/// Shortest server secret accepted: 256 bits.
pub const MIN_NONCE_SECRET_BYTES: usize = 32;
/// The default step: a nonce is good for 5 to 10 minutes. Long enough that a busy client
/// rarely spends a round trip on `use_dpop_nonce`, short enough that a proof made for a later
/// moment (a pre-computed proof, RFC 9449 §11.2) goes stale quickly.
pub const DEFAULT_NONCE_STEP: Duration = Duration::from_secs(300);

/// Label of the key derivation (domain separation from other uses of the server secret).
const LABEL: &[u8] = b"authfetch/dpop-nonce/v1";
/// HMAC bytes kept in a nonce: 128 bits, beyond guessing within a step.
const TAG_BYTES: usize = 16;
/// Step and tag.
const NONCE_BYTES: usize = 8 + TAG_BYTES;
/// Length of a nonce on the wire (24 bytes in unpadded base64url).
const NONCE_LEN: usize = 32;

/// Why a nonce key could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// The secret is shorter than [`MIN_NONCE_SECRET_BYTES`].
    #[error("nonce secret shorter than {MIN_NONCE_SECRET_BYTES} bytes")]
    ShortSecret,
    /// The step is shorter than one second.
    #[error("nonce step shorter than one second")]
    Step,
}

/// Issues and checks nonces. `Debug` prints no key material.
pub struct Nonces {
    key: ring::hmac::Key,
    step_s: i64,
}

impl fmt::Debug for Nonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces")
            .field("key", &"[redacted]")
            .field("step_s", &self.step_s)
            .finish()
    }
}

impl Nonces {
    /// Nonces under `secret` (shared by every instance; from the data directory or the
    /// environment once wired) with time steps of `step`.
    ///
    /// # Errors
    /// A secret shorter than 32 bytes, a step under one second.
    pub fn new(secret: &[u8], step: Duration) -> Result<Self, NonceError> {
        if secret.len() < MIN_NONCE_SECRET_BYTES {
            return Err(NonceError::ShortSecret);
        }
        let step_s = i64::try_from(step.as_secs()).map_err(|_| NonceError::Step)?;
        if step_s < 1 {
            return Err(NonceError::Step);
        }
        Ok(Self::keyed(secret, step_s))
    }

    /// Nonces under a 32-byte secret with [`DEFAULT_NONCE_STEP`]: what the server uses, and
    /// infallible because both arguments are known to be acceptable.
    pub fn with_secret(secret: &[u8; MIN_NONCE_SECRET_BYTES]) -> Self {
        Self::keyed(
            secret,
            i64::try_from(DEFAULT_NONCE_STEP.as_secs()).unwrap_or(300),
        )
    }

    fn keyed(secret: &[u8], step_s: i64) -> Self {
        let derived = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            LABEL,
        );
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()),
            step_s,
        }
    }

    /// The nonce to hand out at `now_s` (Unix seconds), for the `DPoP-Nonce` header.
    pub fn current(&self, now_s: i64) -> String {
        let step = now_s.div_euclid(self.step_s);
        let mut b = [0u8; NONCE_BYTES];
        b[..8].copy_from_slice(&step.to_be_bytes());
        b[8..].copy_from_slice(&self.tag(step));
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Whether `nonce` was issued under this secret in the current or the previous step.
    pub fn is_valid(&self, nonce: &str, now_s: i64) -> bool {
        if nonce.len() != NONCE_LEN {
            return false;
        }
        let Some(b) = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .and_then(|v| <[u8; NONCE_BYTES]>::try_from(v).ok())
        else {
            return false;
        };
        let mut step_bytes = [0u8; 8];
        step_bytes.copy_from_slice(&b[..8]);
        let step = i64::from_be_bytes(step_bytes);
        let current = now_s.div_euclid(self.step_s);
        if step != current && Some(step) != current.checked_sub(1) {
            return false;
        }
        // The step is public; the tag is compared in constant time.
        bool::from(b[8..].ct_eq(&self.tag(step)))
    }

    fn tag(&self, step: i64) -> [u8; TAG_BYTES] {
        let t = ring::hmac::sign(&self.key, &step.to_be_bytes());
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&t.as_ref()[..TAG_BYTES]);
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first second of a 300 s step (1_700_000_100 = 5_666_667 × 300).
    const T0: i64 = 1_700_000_100;

    fn nonces(secret: u8) -> Nonces {
        Nonces::new(&[secret; 32], DEFAULT_NONCE_STEP).unwrap()
    }

    #[test]
    fn two_instances_with_one_secret_agree_and_another_secret_does_not() {
        let (a, b, other) = (nonces(1), nonces(1), nonces(2));
        let n = a.current(T0);
        assert_eq!(n.len(), NONCE_LEN);
        assert_eq!(n, b.current(T0));
        assert!(b.is_valid(&n, T0));
        assert!(!other.is_valid(&n, T0));
        assert_ne!(n, other.current(T0));
    }

    #[test]
    fn current_and_previous_step_are_accepted_and_nothing_else() {
        let a = nonces(1);
        let n = a.current(T0);
        let step_start = T0.div_euclid(300) * 300;
        assert_eq!(a.current(step_start), n);
        assert_eq!(a.current(step_start + 299), n);
        assert_ne!(
            a.current(step_start + 300),
            n,
            "rotates at the step boundary"
        );
        assert!(a.is_valid(&n, step_start + 300), "previous step");
        assert!(
            a.is_valid(&n, step_start + 599),
            "previous step, last second"
        );
        assert!(!a.is_valid(&n, step_start + 600), "two steps later");
        assert!(!a.is_valid(&n, step_start - 1), "a nonce from the future");
    }

    #[test]
    fn forged_and_malformed_nonces_are_refused() {
        let a = nonces(1);
        let n = a.current(T0);
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[23] ^= 1;
        assert!(
            !a.is_valid(&URL_SAFE_NO_PAD.encode(&raw), T0),
            "tag bit flipped"
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[7] ^= 1;
        assert!(
            !a.is_valid(&URL_SAFE_NO_PAD.encode(&raw), T0),
            "step changed"
        );
        assert!(!a.is_valid("", T0));
        assert!(!a.is_valid(&format!("{n}="), T0));
        assert!(!a.is_valid(&n[..31], T0));
        assert!(!a.is_valid(&"*".repeat(32), T0));
        assert!(!a.is_valid(&"A".repeat(32), T0));
    }

    #[test]
    fn the_tag_is_hmac_sha256_under_a_key_derived_from_the_secret() {
        use hmac::Mac as _;
        type H = hmac::Hmac<sha2::Sha256>;
        let mut m = H::new_from_slice(&[1u8; 32]).unwrap();
        m.update(LABEL);
        let derived = m.finalize().into_bytes();
        let step = T0.div_euclid(300);
        let mut m = H::new_from_slice(&derived).unwrap();
        m.update(&step.to_be_bytes());
        let tag = m.finalize().into_bytes();
        let mut want = step.to_be_bytes().to_vec();
        want.extend_from_slice(&tag[..TAG_BYTES]);
        assert_eq!(nonces(1).current(T0), URL_SAFE_NO_PAD.encode(want));
    }

    #[test]
    fn short_secrets_and_zero_steps_are_refused_and_debug_hides_the_key() {
        assert_eq!(
            Nonces::new(&[1; 31], DEFAULT_NONCE_STEP).unwrap_err(),
            NonceError::ShortSecret
        );
        assert_eq!(
            Nonces::new(&[1; 32], Duration::from_millis(999)).unwrap_err(),
            NonceError::Step
        );
        assert!(format!("{:?}", nonces(1)).contains("[redacted]"));
    }
}
