//! In-memory fixed-window rate limiting (R9), keyed by client IP or account name.
//!
//! Used when the store is process-local (SQLite). A store shared by several instances (Redis)
//! counts in the store instead ([`crate::store::Store::rate_limit`]), so N instances do not
//! allow N times the limit.
//!
//! A std `Mutex` is right here (as in mini-redis `db.rs`): the critical section is a hash map
//! lookup, never held across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::ms;
use crate::config::Limit;

/// Keys kept before expired windows are swept (bounds memory under a spray of source IPs).
const MAX_KEYS: usize = 100_000;

/// A fixed-window counter per key.
#[derive(Debug)]
pub struct RateLimiter {
    limit: Limit,
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    /// A limiter allowing `limit.max` events per `limit.window` per key.
    pub fn new(limit: Limit) -> Self {
        Self {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Counts one event for `key`. `Err(seconds)` when over the limit: the `Retry-After` value.
    pub fn check(&self, key: &str, now_ms: i64) -> Result<(), u64> {
        let window = ms(self.limit.window).max(1);
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, (start, _)| now_ms - *start < window);
            if map.len() >= MAX_KEYS {
                // Still full: forget everything rather than grow without bound.
                map.clear();
            }
        }
        let entry = map.entry(key.to_owned()).or_insert((now_ms, 0));
        if now_ms - entry.0 >= window {
            *entry = (now_ms, 0);
        }
        if entry.1 >= self.limit.max {
            let left_ms = (entry.0 + window - now_ms).max(0);
            let secs = u64::try_from(left_ms).unwrap_or(0).div_ceil(1000).max(1);
            return Err(secs);
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_per_key_and_resets_after_the_window() {
        let l = RateLimiter::new(Limit {
            max: 2,
            window: Duration::from_secs(10),
        });
        assert!(l.check("a", 0).is_ok());
        assert!(l.check("a", 1).is_ok());
        assert_eq!(l.check("a", 2_000), Err(8));
        assert!(l.check("b", 2_000).is_ok());
        assert!(l.check("a", 10_000).is_ok());
    }
}
