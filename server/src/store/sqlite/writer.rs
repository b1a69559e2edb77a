//! The writer thread's batching: every call waiting in the channel runs, in order, inside one
//! `BEGIN IMMEDIATE … COMMIT`, each in its own savepoint (see the parent module's docs).

use rusqlite::{Connection, Savepoint};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use crate::store::StoreError;

/// One store call, run on the connection's thread. It answers its caller only through the
/// [`Finish`] it returns, once its batch has committed.
pub(super) type Job = Box<dyn FnOnce(&mut Connection) -> Finish + Send>;

/// Sends a call's result: as computed when the batch committed (`None`), or the commit's error.
pub(super) type Finish = Box<dyn FnOnce(Option<&rusqlite::Error>) + Send>;

/// Most calls in one transaction: bounds how long the first of them waits for its answer.
pub(super) const MAX_BATCH: usize = 64;

/// Runs `first` and every call already waiting behind it in one write transaction (see the
/// module docs), then answers them all.
/// Returns whether a batch was committed.
pub(super) fn run_batch(
    conn: &mut Connection,
    first: Job,
    queue: &mpsc::Receiver<Job>,
    commits: &AtomicU64,
) -> bool {
    if !conn.is_autocommit() {
        // Never expected (every batch ends in COMMIT or ROLLBACK); a transaction left open
        // would swallow the next calls' writes.
        let _ = conn.execute_batch("ROLLBACK");
    }
    if conn.execute_batch("BEGIN IMMEDIATE").is_err() {
        // No write lock (another process held it past busy_timeout, or I/O failed): run the
        // call on its own. Its savepoint is then its own transaction; a write it attempts
        // fails rather than racing, because SQLite refuses to upgrade a stale read snapshot.
        first(conn)(None);
        return false;
    }
    let mut done: Vec<Finish> = Vec::with_capacity(8);
    done.push(first(conn));
    while done.len() < MAX_BATCH && !conn.is_autocommit() {
        match queue.try_recv() {
            Ok(job) => done.push(job(conn)),
            Err(_) => break,
        }
    }
    let outcome = if conn.is_autocommit() {
        // An error (disk full, I/O) made SQLite roll the whole transaction back: the calls
        // that thought they had written have not.
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
            Some("transaction rolled back by SQLite".into()),
        ))
    } else {
        conn.execute_batch("COMMIT").inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })
    };
    let err = outcome.err();
    if err.is_none() {
        // Counted before anyone is answered, so an answer implies the count.
        commits.fetch_add(1, Ordering::Relaxed);
    }
    for finish in done {
        finish(err.as_ref());
    }
    err.is_none()
}

/// A caller's own copy of a batch's commit error (`rusqlite::Error` is not `Clone`).
pub(super) fn copy_error(e: &rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, msg.clone()))
        }
        other => StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        )),
    }
}

/// A call's writes, all or nothing, inside the batch's transaction (or on their own, see
/// [`run_batch`]). Dropped without `commit`, it rolls back.
pub(super) fn writes(c: &mut Connection) -> Result<Savepoint<'_>, StoreError> {
    Ok(c.savepoint()?)
}
