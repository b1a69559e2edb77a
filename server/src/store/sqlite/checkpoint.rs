//! The checkpointer: copies the WAL back into the database off the writer's thread, and the
//! writer's rewind of a WAL that passive checkpoints cannot keep up with.

use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use crate::store::StoreError;

/// Least time between two checkpoints while writes go on: bounds the checkpointer's wake-ups
/// to a few per second (none when idle).
pub(super) const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// WAL size (in pages) above which the writer rewinds it: about 16 MiB.
pub(super) const WAL_REWIND_PAGES: i64 = 4096;

thread_local! {
    /// Pages in the WAL after the last commit on this thread's connection (the writer's).
    static WAL_PAGES: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// The writer's WAL hook: SQLite calls it after every commit with the WAL's size.
pub(super) fn note_wal_pages(
    _: &rusqlite::hooks::Wal,
    pages: std::ffi::c_int,
) -> rusqlite::Result<()> {
    WAL_PAGES.set(i64::from(pages));
    Ok(())
}

/// The checkpointer thread, seen from the writer.
///
/// The thread copies the WAL back into the database from its own connection with passive
/// checkpoints, which take no write lock: commits go on while it waits for the disk. (With
/// SQLite's automatic checkpoint the writer did that work and its syncs itself, every 1000
/// pages, and every store call queued behind it: 13 % of the server's core sat idle under
/// refresh load; BENCHMARKS.md §4–5.)
///
/// Under continuous writes a passive checkpoint rarely finishes (frames arrive while it
/// copies), and SQLite rewinds the WAL to its start only after a checkpoint that copied
/// everything, so the file grew without bound (800 MB in 30 s of refresh load). A `RESTART`
/// checkpoint from the checkpointer cannot help: it waits for the write lock, which the writer
/// takes again the moment it lets go. So once the WAL is past [`WAL_REWIND_PAGES`], the writer
/// runs the `RESTART` checkpoint itself between two batches, at the first batch after a passive
/// checkpoint has finished (`backfilled`): little is then left to copy and sync, so the calls
/// queued behind the rewind wait less (refresh p99 about 15 ms instead of 26–28 ms, BENCHMARKS.md
/// §4–5). Past twice the limit it rewinds without waiting for that, which bounds the WAL (38 MB
/// at most under the refresh benchmark).
pub(super) struct Checkpointer {
    tick: mpsc::SyncSender<()>,
    /// Set after each passive checkpoint that succeeded.
    backfilled: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Called by the writer after each committed batch.
    pub(super) fn after_commit(&self, conn: &Connection) {
        // Full means a checkpoint is already due: nothing to add.
        let _ = self.tick.try_send(());
        let pages = WAL_PAGES.get();
        // Right after a passive checkpoint little is left to copy, so the rewind is short;
        // without one for long, rewind anyway.
        if pages > WAL_REWIND_PAGES
            && (self.backfilled.swap(false, Ordering::Relaxed) || pages > 2 * WAL_REWIND_PAGES)
        {
            // Between batches nobody else writes, so this completes unless the checkpointer
            // holds the checkpoint lock right now: then it fails at once, and the next batch
            // tries again. A failure loses nothing.
            let _ = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
        }
    }
}

/// Starts the checkpointer thread; it ends when the writer's thread (holding `tick`) ends.
pub(super) fn spawn_checkpointer(path: &Path) -> Result<Checkpointer, StoreError> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")?;
    let (tick, ticks) = mpsc::sync_channel::<()>(1);
    let backfilled = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&backfilled);
    std::thread::Builder::new()
        .name("authfetch-sqlite-checkpoint".into())
        .spawn(move || {
            while ticks.recv().is_ok() {
                // A failed checkpoint loses nothing (the pages stay in the WAL); the next
                // tick tries again.
                if conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    .is_ok()
                {
                    done.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(CHECKPOINT_EVERY);
            }
        })
        .map_err(|_| StoreError::Task)?;
    Ok(Checkpointer { tick, backfilled })
}
