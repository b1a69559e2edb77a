//! Password hashing: Argon2id with P1 parameters, PHC strings, a bounded number of concurrent
//! hashes (P2) on the blocking pool, and a dummy hash so an unknown user costs the same as a
//! wrong password (P3).
//!
//! Memory: Argon2 needs `m_cost` KiB of working blocks per hash (19 MiB with P1). Allocating
//! them per call left glibc arenas holding gigabytes after a burst of logins, so every hash runs
//! in a [`BlockPool`] buffer: at most one per concurrency permit is ever allocated, each is
//! reused, and each is zeroed before it goes back (its first blocks are a cheap function of the
//! password, which must not outlive the call).

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

use crate::config::{PasswordParams, MAX_PASSWORD_BYTES};
use crate::secret::Password;

/// Errors from hashing.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The parameters or a stored hash are invalid.
    #[error("argon2: {0}")]
    Argon(String),
    /// The blocking task died.
    #[error("hash task failed")]
    Task,
}

/// Argon2id hasher with a concurrency bound.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    pool: Arc<BlockPool>,
    dummy: Arc<str>,
    verifications: Arc<AtomicU64>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

impl PasswordHasher {
    /// A hasher with `params` and at most `concurrency` hashes running at once.
    ///
    /// # Errors
    /// Parameters Argon2 refuses.
    pub fn new(params: PasswordParams, concurrency: usize) -> Result<Self, HashError> {
        let params = Params::new(params.m_cost, params.t_cost, params.p_cost, None)
            .map_err(|e| HashError::Argon(e.to_string()))?;
        let concurrency = concurrency.max(1);
        let pool = Arc::new(BlockPool::new(params.block_count(), concurrency));
        // The dummy is hashed with the same parameters, so verifying against it costs the same.
        let dummy = pool.with(|blocks| hash_phc(&params, b"authfetch dummy password", blocks))?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            pool,
            dummy: dummy.into(),
            verifications: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Whether a password is within the accepted length (P2). Checked before any hashing.
    pub fn acceptable_length(pw: &Password) -> bool {
        !pw.secret().is_empty() && pw.secret().len() <= MAX_PASSWORD_BYTES
    }

    /// Hashes a new password into a PHC string.
    ///
    /// # Errors
    /// Argon2 failure or a dead blocking task.
    pub async fn hash(&self, pw: Password) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Task)?;
        let params = self.params.clone();
        let pool = Arc::clone(&self.pool);
        tokio::task::spawn_blocking(move || {
            pool.with(|blocks| hash_phc(&params, pw.secret().as_bytes(), blocks))
        })
        .await
        .map_err(|_| HashError::Task)?
    }

    /// Verifies `pw` against `phc`, or against the dummy hash when there is no user (so the
    /// time is the same; P3). Returns `false` for the dummy whatever the password.
    ///
    /// # Errors
    /// A dead blocking task. A malformed stored hash is a `false`, logged.
    pub async fn verify(&self, pw: Password, phc: Option<String>) -> Result<bool, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Task)?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let real = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.to_string());
        let pool = Arc::clone(&self.pool);
        let ok = tokio::task::spawn_blocking(move || {
            match pool.with(|blocks| verify_phc(&phc, pw.secret().as_bytes(), blocks)) {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::error!(error = %e, "stored password hash is malformed");
                    false
                }
            }
        })
        .await
        .map_err(|_| HashError::Task)?;
        Ok(ok && real)
    }

    /// The PHC string verified for unknown users (not secret: it hashes a fixed string). Its
    /// parameters are the configured ones, so it costs what a real verification costs (P3).
    pub fn dummy_hash(&self) -> &str {
        &self.dummy
    }

    /// The pool of Argon2 working buffers (tests use it to prove allocations are bounded).
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// How many verifications ran (tests use it to prove unknown users are hashed too).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

/// Argon2 working memory, one buffer per concurrency permit, allocated on first use and reused.
///
/// Callers hold a [`PasswordHasher`] permit while they hold a buffer, so with `capacity`
/// permits no more than `capacity` buffers ever exist.
pub struct BlockPool {
    blocks: usize,
    capacity: usize,
    free: Mutex<Vec<Box<[Block]>>>,
    allocated: AtomicUsize,
}

impl std::fmt::Debug for BlockPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockPool")
            .field("blocks", &self.blocks)
            .field("capacity", &self.capacity)
            .field("allocated", &self.allocated())
            .finish_non_exhaustive()
    }
}

impl BlockPool {
    fn new(blocks: usize, capacity: usize) -> Self {
        Self {
            blocks,
            capacity,
            free: Mutex::new(Vec::with_capacity(capacity)),
            allocated: AtomicUsize::new(0),
        }
    }

    /// Runs `f` in a zeroed buffer of the configured size (a free one, or a new one), then
    /// zeroes it and keeps it for the next caller.
    fn with<T>(&self, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let mut blocks = self.take();
        let r = f(&mut blocks);
        self.give_back(blocks);
        r
    }

    /// A zeroed buffer of the configured size: a free one, or a new one.
    fn take(&self) -> Box<[Block]> {
        let free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        free.unwrap_or_else(|| {
            self.allocated.fetch_add(1, Ordering::Relaxed);
            vec![Block::new(); self.blocks].into_boxed_slice()
        })
    }

    /// Zeroes `blocks` and keeps it for the next caller (at most `capacity` are kept).
    fn give_back(&self, mut blocks: Box<[Block]>) {
        zero(&mut blocks);
        if blocks.len() != self.blocks {
            return;
        }
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if free.len() < self.capacity {
            free.push(blocks);
        }
    }

    /// How many buffers were ever allocated.
    pub fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }

    /// The most buffers this pool allocates (the hash concurrency).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Buffers now idle in the pool.
    pub fn idle(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether every idle buffer is all zeroes (no password-derived state is kept).
    pub fn idle_buffers_zeroed(&self) -> bool {
        let free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        free.iter()
            .all(|buf| buf.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)))
    }
}

/// Overwrites Argon2 working memory (its blocks derive from the password).
fn zero(blocks: &mut [Block]) {
    for b in blocks {
        *b = Block::new();
    }
}

/// Hashes `pw` with a fresh salt into a PHC string, in `blocks`.
fn hash_phc(params: &Params, pw: &[u8], blocks: &mut [Block]) -> Result<String, HashError> {
    let err = |e: &dyn std::fmt::Display| HashError::Argon(e.to_string());
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| err(&e))?;
    let a = argon(params);
    let out_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(out_len, |out| {
        a.hash_password_into_with_memory(pw, salt_bytes, out, &mut *blocks)
            .map_err(Into::into)
    })
    .map_err(|e| err(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: params.try_into().map_err(|e| err(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Verifies `pw` against the PHC string `phc` with the parameters it names (so hashes made with
/// older parameters keep working), in `blocks` when they are large enough.
///
/// # Errors
/// A malformed PHC string or parameters Argon2 refuses.
fn verify_phc(phc: &str, pw: &[u8], blocks: &mut [Block]) -> Result<bool, HashError> {
    let err = |e: &dyn std::fmt::Display| HashError::Argon(e.to_string());
    let parsed = PasswordHash::new(phc).map_err(|e| err(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(HashError::Argon("PHC string without salt or hash".into()));
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| err(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| err(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| err(&e))?;
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| err(&e))?;
    let a = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    let needed = params.block_count();
    if needed <= blocks.len() {
        a.hash_password_into_with_memory(pw, salt_bytes, &mut out, &mut blocks[..needed])
    } else {
        // A stored hash made with more memory than configured now: a one-off buffer (still
        // under a permit), zeroed before it is freed.
        let mut own = vec![Block::new(); needed];
        let r = a.hash_password_into_with_memory(pw, salt_bytes, &mut out, &mut own[..]);
        zero(&mut own);
        r
    }
    .map_err(|e| err(&e))?;
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier as _;

    fn small() -> PasswordParams {
        PasswordParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn pw(s: &str) -> Password {
        Password::new(s.to_owned())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn p2_pool_allocates_at_most_one_buffer_per_permit_and_reuses_them() {
        let h = PasswordHasher::new(small(), 2).unwrap();
        let phc = h.hash(pw("correct horse")).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let h = h.clone();
            let phc = phc.clone();
            tasks.push(tokio::spawn(async move {
                let (guess, stored) = match i % 3 {
                    0 => ("correct horse", Some(phc)),
                    1 => ("wrong", Some(phc)),
                    _ => ("anything", None),
                };
                (i, h.verify(pw(guess), stored).await.unwrap())
            }));
        }
        for t in tasks {
            let (i, ok) = t.await.unwrap();
            assert_eq!(ok, i % 3 == 0, "verification {i}");
        }
        assert_eq!(h.pool().capacity(), 2);
        assert!(
            (1..=2).contains(&h.pool().allocated()),
            "allocated {} buffers for 2 permits",
            h.pool().allocated()
        );
        assert_eq!(
            h.pool().idle(),
            h.pool().allocated(),
            "every buffer came back"
        );
        assert!(
            h.pool().idle_buffers_zeroed(),
            "no password-derived blocks kept"
        );
    }

    #[tokio::test]
    async fn p1_pooled_hashes_are_standard_phc_strings_with_the_configured_parameters() {
        let h = PasswordHasher::new(small(), 1).unwrap();
        let phc = h.hash(pw("hunter2")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        let parsed = PasswordHash::new(&phc).unwrap();
        // The reference (allocating) implementation accepts what the pool produced.
        assert!(Argon2::default()
            .verify_password(b"hunter2", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"hunter3", &parsed)
            .is_err());
        // And the pooled verifier accepts what the reference one produced, also with other
        // (here larger) parameters than configured: the buffer is not big enough, a one-off is used.
        let other = Params::new(128, 2, 1, None).unwrap();
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let reference = argon2::password_hash::PasswordHasher::hash_password(
            &Argon2::new(Algorithm::Argon2id, Version::V0x13, other),
            b"old password",
            &salt,
        )
        .unwrap()
        .to_string();
        assert!(h
            .verify(pw("old password"), Some(reference.clone()))
            .await
            .unwrap());
        assert!(!h.verify(pw("old passworD"), Some(reference)).await.unwrap());
        assert_eq!(h.pool().allocated(), 1);
        assert!(h.pool().idle_buffers_zeroed());
    }

    #[tokio::test]
    async fn p3_dummy_uses_the_configured_parameters_and_never_matches() {
        let h = PasswordHasher::new(small(), 1).unwrap();
        assert!(h.dummy_hash().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(!h
            .verify(pw("authfetch dummy password"), None)
            .await
            .unwrap());
        assert_eq!(h.verifications(), 1);
    }

    #[tokio::test]
    async fn malformed_stored_hash_is_false_not_a_panic() {
        let h = PasswordHasher::new(small(), 1).unwrap();
        for bad in [
            "",
            "$argon2id$",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$",
            "plain",
        ] {
            assert!(!h.verify(pw("x"), Some(bad.into())).await.unwrap(), "{bad}");
        }
        assert!(h.pool().idle_buffers_zeroed());
    }
}
