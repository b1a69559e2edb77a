//! The proof replay cache (RFC 9449 §11.1; D5): a proof's key and `jti` are remembered for as
//! long as its `iat` would still be accepted, so a proof captured from a real request is
//! refused when sent again. One instance: [`MemoryReplayCache`]; several: [`RedisReplayCache`]
//! on the Redis they share (an atomic `SET NX PX`, so two instances racing with one proof
//! cannot both accept it).
//!
//! Both fail closed: a full memory cache or an unreachable Redis is an error, never "first
//! use" (A2: nothing makes room by forgetting what it must remember).

use async_trait::async_trait;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::proof::VerifiedProof;
use crate::secret::hex;
use crate::store::redis::LazyConnection;

/// Default bound of [`MemoryReplayCache`]: 500,000 proofs. A proof is remembered until its
/// `iat` + the window + 1 s: 61 s for a client whose clock is right, at most 121 s with the
/// default ±60 s window. So this sustains some 8,200 proofs per second from clients with right
/// clocks and at least 4,100 in the worst case, above what one core verifies (about 3,500 DPoP
/// requests/s, BENCHMARKS.md §0e), in 34 MB of heap when full (measured there: 67 bytes per
/// proof). `--dpop-replay-capacity` changes it.
pub const DEFAULT_REPLAY_CAPACITY: usize = 500_000;

/// The cache could not decide; the caller answers 503/500, never accepts the proof.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The in-memory cache holds its capacity of proofs that are all still acceptable; the
    /// oldest is forgotten in this many seconds (at least 1).
    #[error("replay cache full for {0} s")]
    Full(u64),
    /// Redis failed or is unreachable.
    #[error("replay cache: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Remembers proofs until they expire.
#[async_trait]
pub trait ReplayCache: Send + Sync + std::fmt::Debug {
    /// Records `proof` at `now_ms` (Unix milliseconds): `Ok(true)` the first time its key and
    /// `jti` are seen within its `iat` window, `Ok(false)` for a replay. Atomic: of concurrent
    /// calls with one proof, exactly one gets `true`.
    ///
    /// # Errors
    /// The cache could not record the proof.
    async fn first_use(&self, proof: &VerifiedProof, now_ms: i64) -> Result<bool, ReplayError>;
}

/// How long to remember `proof` from `now_ms`, in milliseconds: until the end of the last
/// second it would be accepted in, and at least one second (a proof verified against an
/// earlier clock reading is still remembered).
fn ttl_ms(proof: &VerifiedProof, now_ms: i64) -> i64 {
    proof.remember_until_ms().saturating_sub(now_ms).max(1000)
}

/// A bounded in-memory cache for a single instance.
#[derive(Debug)]
pub struct MemoryReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
    /// Set while the cache refuses for want of room, so that the log says so once per episode
    /// and not once per request.
    full: AtomicBool,
}

/// An entry is 16 bytes, twice: the first half of the proof's replay key (SHA-256 of its key
/// thumbprint and `jti`; 128 bits make a chance collision among a million live proofs about
/// 2^-88), in the set and in the list of the second it expires in.
#[derive(Debug, Default)]
struct Inner {
    seen: HashSet<u128>,
    /// The same keys grouped by the second (Unix) at whose start they may be forgotten, so
    /// that purging pops whole seconds, oldest first: a proof is remembered up to a second
    /// longer than it must be, never shorter.
    by_expiry: BTreeMap<i64, Vec<u128>>,
}

impl MemoryReplayCache {
    /// A cache that holds at most `capacity` unexpired proofs.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
            full: AtomicBool::new(false),
        }
    }

    /// How many proofs are remembered (expired ones included until the next call purges them).
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves both maps consistent before it can panic (no user code
        // runs inside), so a poisoned lock still guards valid state.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAPACITY)
    }
}

#[async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn first_use(&self, proof: &VerifiedProof, now_ms: i64) -> Result<bool, ReplayError> {
        let digest = proof.replay_key();
        let mut half = [0u8; 16];
        half.copy_from_slice(&digest[..16]);
        let key = u128::from_be_bytes(half);
        let expiry_ms = now_ms.saturating_add(ttl_ms(proof, now_ms));
        // The second at whose start the proof may be forgotten (rounded up).
        let expiry_s = expiry_ms.div_euclid(1000) + i64::from(expiry_ms.rem_euclid(1000) != 0);
        let retry = {
            // A std Mutex: the section is short and never awaits (as mini-redis's `db.rs`
            // argues).
            let mut inner = self.lock();
            while let Some(entry) = inner.by_expiry.first_entry() {
                if entry.key().saturating_mul(1000) > now_ms {
                    break;
                }
                for k in entry.remove() {
                    inner.seen.remove(&k);
                }
            }
            if inner.seen.contains(&key) {
                return Ok(false);
            }
            if inner.seen.len() < self.capacity {
                inner.seen.insert(key);
                inner.by_expiry.entry(expiry_s).or_default().push(key);
                None
            } else {
                // Full of proofs that must all be remembered (A2): nothing is forgotten early.
                let oldest_s = inner.by_expiry.first_key_value().map_or(expiry_s, |e| *e.0);
                let wait_ms = oldest_s.saturating_mul(1000).saturating_sub(now_ms);
                Some(u64::try_from((wait_ms + 999).div_euclid(1000)).map_or(1, |s| s.max(1)))
            }
        };
        match retry {
            None => {
                if self.full.load(Ordering::Relaxed) && self.full.swap(false, Ordering::Relaxed) {
                    tracing::warn!("DPoP replay cache has room again");
                }
                Ok(true)
            }
            Some(secs) => {
                if !self.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        capacity = self.capacity,
                        "DPoP replay cache full: new proofs get 503 until the oldest expire \
                         (raise --dpop-replay-capacity, or share a Redis cache)"
                    );
                }
                Err(ReplayError::Full(secs))
            }
        }
    }
}

/// A cache on Redis, shared by every instance that uses the same Redis and prefix.
pub struct RedisReplayCache {
    /// One multiplexed connection (as the Redis store's); replaced after a connection-level
    /// error.
    conn: LazyConnection,
    prefix: String,
}

impl std::fmt::Debug for RedisReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: not printed.
        f.debug_struct("RedisReplayCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisReplayCache {
    /// Connects to `url` (the Redis store's URL forms) and checks the connection. Keys are
    /// `<prefix>dpop:jti:<hex of the replay key>`.
    ///
    /// # Errors
    /// A bad URL, or Redis is unreachable.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, ReplayError> {
        Self::connect_client(redis::Client::open(url)?, prefix).await
    }

    /// As [`Self::connect`], with a client built elsewhere: the server passes the one it
    /// builds for its store, so `rediss://` with `--redis-ca-file` trusts the same CA.
    ///
    /// # Errors
    /// Redis is unreachable or refuses `PING`.
    pub async fn connect_client(client: redis::Client, prefix: &str) -> Result<Self, ReplayError> {
        let cache = Self {
            conn: LazyConnection::new(client),
            prefix: prefix.to_owned(),
        };
        cache.conn.ping().await?;
        Ok(cache)
    }

    fn key(&self, proof: &VerifiedProof) -> String {
        format!("{}dpop:jti:{}", self.prefix, hex(&proof.replay_key()))
    }
}

#[async_trait]
impl ReplayCache for RedisReplayCache {
    async fn first_use(&self, proof: &VerifiedProof, now_ms: i64) -> Result<bool, ReplayError> {
        let mut c = self.conn.get().await?;
        // SET NX: set only if absent, atomically in Redis; PX: Redis forgets it by itself.
        let r: Result<Option<String>, _> = redis::cmd("SET")
            .arg(self.key(proof))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(proof, now_ms))
            .query_async(&mut c)
            .await;
        Ok(self.conn.reset_on_error(r).await?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Alg;

    fn proof(jkt: &str, jti: &str, iat: i64) -> VerifiedProof {
        VerifiedProof {
            jkt: jkt.into(),
            jti: jti.into(),
            iat,
            alg: Alg::Es256,
            acceptable_until_s: iat + 60,
        }
    }

    const NOW_MS: i64 = 1_700_000_000_000;

    #[tokio::test]
    async fn a_proof_is_remembered_for_its_window_and_not_longer() {
        let c = MemoryReplayCache::new(10);
        let p = proof("k", "j", 1_700_000_000);
        assert!(c.first_use(&p, NOW_MS).await.unwrap());
        assert!(!c.first_use(&p, NOW_MS).await.unwrap());
        // Still acceptable at iat + 60 s (the whole second): still remembered.
        assert!(!c.first_use(&p, NOW_MS + 60_999).await.unwrap());
        // From iat + 61 s the proof fails the iat check anyway: forgotten.
        assert!(c.first_use(&p, NOW_MS + 61_000).await.unwrap());
    }

    #[tokio::test]
    async fn the_key_is_per_client_key_and_jti() {
        let c = MemoryReplayCache::new(10);
        assert!(c.first_use(&proof("k1", "j", 0), 0).await.unwrap());
        assert!(c.first_use(&proof("k2", "j", 0), 0).await.unwrap());
        assert!(c.first_use(&proof("k1", "j2", 0), 0).await.unwrap());
        // Length-prefixed: ("k1", "j") and ("k", "1j") do not collide.
        assert!(c.first_use(&proof("k", "1j", 0), 0).await.unwrap());
        assert!(!c.first_use(&proof("k1", "j", 0), 0).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_cache_refuses_instead_of_forgetting_and_purges_expired_entries() {
        let c = MemoryReplayCache::new(2);
        let iat = 1_700_000_000;
        assert!(c.first_use(&proof("k", "a", iat), NOW_MS).await.unwrap());
        assert!(c.first_use(&proof("k", "b", iat), NOW_MS).await.unwrap());
        // Full until a and b may be forgotten, at iat + 61 s.
        assert!(matches!(
            c.first_use(&proof("k", "c", iat), NOW_MS).await,
            Err(ReplayError::Full(61))
        ));
        assert!(matches!(
            c.first_use(&proof("k", "c", iat), NOW_MS + 60_500).await,
            Err(ReplayError::Full(1))
        ));
        // A replay is still recognised when full.
        assert!(!c.first_use(&proof("k", "a", iat), NOW_MS).await.unwrap());
        assert_eq!(c.len(), 2);
        // Once a and b expire, there is room again.
        let later = NOW_MS + 61_000;
        assert!(c
            .first_use(&proof("k", "c", iat + 61), later)
            .await
            .unwrap());
        assert_eq!(c.len(), 1);
    }
}
