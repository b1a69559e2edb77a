//! In-memory fixed-window rate limiting (R9), keyed by client address or account name.
//!
//! Used when the store is process-local (SQLite). A store shared by several instances (Redis)
//! counts in the store instead ([`crate::store::Store::rate_limit`]), so N instances do not
//! allow N times the limit.
//!
//! Each bucket (login per address, login per account, refresh per address) is its own
//! [`RateLimiter`] with its own table, so no flood of one kind of key can touch another
//! bucket's counters. Memory is bounded ([`MAX_KEYS`] per bucket) without ever forgetting
//! everything: when a table is full, expired windows go first, then the least recently used
//! keys that are *not* over their limit, and only if every key is over its limit the least
//! recently used of those. A flood of fresh keys (many source addresses, many invented
//! account names) therefore evicts other fresh keys, never a lockout that is in force.
//!
//! Addresses are keyed by [`address_key`]: an IPv6 client by its /64, since one host
//! usually holds a whole /64 and could otherwise rotate through 2^64 addresses.
//!
//! A std `Mutex` is right here (as in mini-redis `db.rs`): the critical section is a hash map
//! lookup, never held across an `.await`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::clock::ms;
use crate::config::Limit;

/// Keys kept per bucket; see the module docs for what is evicted past it.
pub const MAX_KEYS: usize = 100_000;

/// One key's window.
#[derive(Debug)]
struct Window {
    start_ms: i64,
    count: u32,
    /// Order of last use (a counter, so ties cannot happen).
    used: u64,
}

#[derive(Debug, Default)]
struct Table {
    windows: HashMap<String, Window>,
    tick: u64,
}

/// A fixed-window counter per key.
#[derive(Debug)]
pub struct RateLimiter {
    limit: Limit,
    max_keys: usize,
    table: Mutex<Table>,
}

impl RateLimiter {
    /// A limiter allowing `limit.max` events per `limit.window` per key.
    pub fn new(limit: Limit) -> Self {
        Self::with_capacity(limit, MAX_KEYS)
    }

    /// As [`RateLimiter::new`], holding at most `max_keys` keys (tests use small tables).
    pub fn with_capacity(limit: Limit, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(1),
            table: Mutex::new(Table::default()),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .windows
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts one event for `key`. `Err(seconds)` when over the limit: the `Retry-After` value.
    pub fn check(&self, key: &str, now_ms: i64) -> Result<(), u64> {
        let window = ms(self.limit.window).max(1);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.tick += 1;
        let tick = t.tick;
        if !t.windows.contains_key(key) && t.windows.len() >= self.max_keys {
            self.make_room(&mut t, now_ms, window);
        }
        let entry = t.windows.entry(key.to_owned()).or_insert(Window {
            start_ms: now_ms,
            count: 0,
            used: tick,
        });
        entry.used = tick;
        if now_ms - entry.start_ms >= window {
            entry.start_ms = now_ms;
            entry.count = 0;
        }
        if entry.count >= self.limit.max {
            let left_ms = (entry.start_ms + window - now_ms).max(0);
            let secs = u64::try_from(left_ms).unwrap_or(0).div_ceil(1000).max(1);
            return Err(secs);
        }
        entry.count += 1;
        Ok(())
    }

    /// Frees about a tenth of the table (so the sort below runs once per many inserts):
    /// expired windows, then unblocked keys by age of last use, then blocked ones.
    fn make_room(&self, t: &mut Table, now_ms: i64, window: i64) {
        t.windows.retain(|_, w| now_ms - w.start_ms < window);
        let target = self.max_keys - self.max_keys.div_ceil(10);
        if t.windows.len() <= target {
            return;
        }
        let max = self.limit.max;
        let mut victims: Vec<(bool, u64, String)> = t
            .windows
            .iter()
            .map(|(k, w)| (w.count >= max, w.used, k.clone()))
            .collect();
        // Unblocked before blocked, each least recently used first.
        victims.sort_unstable_by_key(|(blocked, used, _)| (*blocked, *used));
        let excess = t.windows.len() - target;
        for (_, _, k) in victims.into_iter().take(excess) {
            t.windows.remove(&k);
        }
    }
}

/// The rate-limit key of a client address: an IPv4 address as is (also when it arrives as an
/// IPv4-mapped IPv6 address), an IPv6 address by its /64 prefix. Anything that is not an
/// address (e.g. `unknown` without connection info) is used as it is.
pub fn address_key(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => ip.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn per_minute(max: u32) -> Limit {
        Limit {
            max,
            window: Duration::from_secs(60),
        }
    }

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

    /// A2: a flood of distinct keys (100k+ addresses or invented account names) never resets a
    /// lockout in force; memory stays bounded.
    #[test]
    fn a2_a_flood_of_other_keys_never_resets_a_lockout() {
        let l = RateLimiter::new(per_minute(3));
        for _ in 0..3 {
            l.check("alice", 0).unwrap();
        }
        assert!(l.check("alice", 0).is_err());
        for i in 0..(MAX_KEYS as u32 + 50_000) {
            let _ = l.check(&format!("flood-{i}"), 1_000);
        }
        assert!(l.len() <= MAX_KEYS);
        assert!(
            l.check("alice", 2_000).is_err(),
            "the lockout survived the flood"
        );
        // And it still ends when its window does.
        assert!(l.check("alice", 61_000).is_ok());
    }

    #[test]
    fn a2_when_full_the_least_recently_used_unblocked_keys_go_first() {
        let l = RateLimiter::with_capacity(per_minute(3), 10);
        for k in ["blocked-1", "blocked-2"] {
            for _ in 0..3 {
                l.check(k, 0).unwrap();
            }
        }
        for i in 0..8 {
            l.check(&format!("k{i}"), 0).unwrap();
        }
        l.check("k0", 1).unwrap(); // recently used again
        l.check("new", 2).unwrap(); // full: room is made
        assert!(l.len() <= 10);
        assert!(l.check("blocked-1", 3).is_err());
        assert!(l.check("blocked-2", 3).is_err());
        // k0 was used again, so k1 (the oldest unblocked) went before it: k0 still has its
        // count (2 of 3).
        assert!(l.check("k0", 4).is_ok());
        assert!(l.check("k0", 4).is_err());
    }

    #[test]
    fn a2_ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(address_key("192.0.2.7"), "192.0.2.7");
        assert_eq!(address_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(
            address_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(address_key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(
            address_key("2001:db8:1:3::1"),
            address_key("2001:db8:1:2::1")
        );
        assert_eq!(address_key("unknown"), "unknown");
        // One host rotating through its /64 is one key.
        let l = RateLimiter::new(per_minute(3));
        for i in 1..=3 {
            l.check(&address_key(&format!("2001:db8::{i:x}")), 0)
                .unwrap();
        }
        assert!(l
            .check(&address_key("2001:db8::ffff:1234:5678:9abc"), 0)
            .is_err());
        assert!(l.check(&address_key("2001:db8:0:1::1"), 0).is_ok());
    }
}
