//! The read-only connections behind the per-request access check, and the check's reads.

use rusqlite::{params, Connection, OpenFlags, OptionalExtension as _};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::store::{AccessCheck, StoreError};

/// The reads behind [`Store::is_access_revoked`](crate::store::Store::is_access_revoked).
pub(super) fn access_revoked(
    c: &Connection,
    q: &AccessCheck<'_>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let denied: Option<i64> = c
        .prepare_cached("SELECT exp_ms FROM denylist WHERE iss = ?1 AND jti = ?2")?
        .query_row(params![q.iss, q.jti], |r| r.get(0))
        .optional()?;
    if denied.is_some_and(|exp| exp > now_ms) {
        return Ok(true);
    }
    let nb: Option<i64> = c
        .prepare_cached("SELECT not_before_s FROM users WHERE id = ?1")?
        .query_row([q.sub], |r| r.get(0))
        .optional()?;
    match nb {
        None => return Ok(true), // unknown user: fail closed
        Some(nb) if q.iat < nb => return Ok(true),
        Some(_) => {}
    }
    if let Some(sid) = q.sid {
        let fam: Option<(String, Option<i64>)> = c
            .prepare_cached("SELECT user_id, revoked_ms FROM families WHERE id = ?1")?
            .query_row([sid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match fam {
            Some((owner, None)) if owner == q.sub => {}
            _ => return Ok(true), // unknown, revoked, or someone else's family
        }
    }
    Ok(false)
}

/// Read-only connections to the store's file, for the per-request access check.
///
/// A call borrows one (opening another when all are busy) and runs on the calling thread: a
/// few indexed point reads, microseconds, like the signature check that precedes them. The
/// writer's answers go out only after COMMIT, so a revocation a caller has been told about is
/// visible to every read that starts afterwards.
pub(super) struct Readers {
    pub(super) path: PathBuf,
    pub(super) idle: Mutex<Vec<Connection>>,
}

/// Idle read connections kept for reuse.
pub(super) const MAX_IDLE_READERS: usize = 8;

/// How long a reader on the blocking pool waits for a lock (another process holding the
/// file, a WAL recovery). Readers on an async worker never wait: see [`Readers::with`].
pub(super) const PATIENT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Readers {
    /// Runs `f` on an idle read-only connection (or a new one). `patient`: wait up to
    /// [`PATIENT_BUSY_TIMEOUT`] for a lock; otherwise a lock answers `SQLITE_BUSY` at once, so
    /// a caller on an async worker thread is never parked inside SQLite (it retries on the
    /// blocking pool, see [`is_busy`]).
    pub(super) fn with<T>(
        &self,
        patient: bool,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
        };
        conn.busy_timeout(if patient {
            PATIENT_BUSY_TIMEOUT
        } else {
            Duration::ZERO
        })?;
        let r = f(&conn);
        if r.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        r
    }
}

/// Whether `e` is a lock that a patient reader would have waited for.
pub(super) fn is_busy(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
