//! Audit counters, served at `GET /debug/stats` when enabled.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Event counters. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) login: AtomicU64,
    pub(crate) refresh: AtomicU64,
    pub(crate) refresh_grace: AtomicU64,
    pub(crate) reuse_detected: AtomicU64,
    pub(crate) refresh_failed: AtomicU64,
    pub(crate) logout: AtomicU64,
    pub(crate) logout_all: AtomicU64,
}

/// A snapshot of [`Stats`]; the JSON body of `GET /debug/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Successful logins.
    pub login: u64,
    /// Successful rotations of the current refresh token.
    pub refresh: u64,
    /// Refreshes that presented the immediate parent within the grace window and got the same successor.
    pub refresh_grace: u64,
    /// Refresh-token reuse detections (each revoked a family).
    pub reuse_detected: u64,
    /// Refresh requests answered 401 (an unparsable, unknown, expired or revoked cookie, and
    /// reuse). A request without any refresh cookie gets `204` and is not counted.
    pub refresh_failed: u64,
    /// Logout requests.
    pub logout: u64,
    /// Logout-everywhere requests that identified a user.
    pub logout_all: u64,
}

impl Stats {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads all counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            login: g(&self.login),
            refresh: g(&self.refresh),
            refresh_grace: g(&self.refresh_grace),
            reuse_detected: g(&self.reuse_detected),
            refresh_failed: g(&self.refresh_failed),
            logout: g(&self.logout),
            logout_all: g(&self.logout_all),
        }
    }
}
