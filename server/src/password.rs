//! Password hashing: Argon2id with P1 parameters, PHC strings, a bounded number of concurrent
//! hashes (P2) on the blocking pool, and a dummy hash so an unknown user costs the same as a
//! wrong password (P3).

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
        // The dummy is hashed with the same parameters, so verifying against it costs the same.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy = argon(&params)
            .hash_password(b"authfetch dummy password", &salt)
            .map_err(|e| HashError::Argon(e.to_string()))?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
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
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon(&params)
                .hash_password(pw.secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashError::Argon(e.to_string()))
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
        let ok = tokio::task::spawn_blocking(move || {
            let parsed = match PasswordHash::new(&phc) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "stored password hash is malformed");
                    return false;
                }
            };
            // Verification uses the parameters in the PHC string, so old hashes keep working.
            Argon2::default()
                .verify_password(pw.secret().as_bytes(), &parsed)
                .is_ok()
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

    /// How many verifications ran (tests use it to prove unknown users are hashed too).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}
