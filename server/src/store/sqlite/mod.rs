//! The embedded store: one SQLite file in WAL mode.
//!
//! One connection, owned by one dedicated thread that runs the store's calls in order, fed by a
//! channel (no blocking-pool task and no mutex hand-off per call).
//!
//! Group commit: the thread takes every call waiting in the channel (up to `writer::MAX_BATCH`) and
//! runs them, in order, inside one `BEGIN IMMEDIATE … COMMIT`; each call's writes sit in its own
//! savepoint, so a call that fails or panics rolls back only itself. No caller hears an answer
//! before the `COMMIT` that makes its writes durable has succeeded; if it fails, every call of
//! the batch gets the error. One commit per batch instead of one per call is what saves the
//! WAL writes and syscalls (BENCHMARKS.md §4). `BEGIN IMMEDIATE` takes SQLite's write lock up
//! front, so two refreshes of one family (or two processes on one file) are serialized and the
//! compare-and-set on `used_ms` cannot be raced. Triggers make `used_ms` and the successor
//! write-once at the schema level too.
//!
//! ```text
//! mod.rs         the schema, SqliteStore (the writer thread's channel), the Store impl
//! writer.rs      group commit: one transaction per batch, a savepoint per call
//! checkpoint.rs  the checkpointer thread and the writer's WAL rewind
//! readers.rs     read-only connections for the per-request access check
//! ```

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension as _};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

mod checkpoint;
mod readers;
mod writer;

use checkpoint::{note_wal_pages, spawn_checkpointer};
use readers::{access_revoked, is_busy, Readers};
use writer::{copy_error, run_batch, writes, Finish, Job};

use super::{
    AccessCheck, FamilyRef, NewFamily, OpaqueRecord, RotateOutcome, RotateRequest, Store,
    StoreError, User,
};
use crate::secret::{random_id, TokenHash};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "authfetch.sqlite3";

/// Dead families are kept this long after their absolute expiry before being deleted, so an
/// access token issued just before expiry still finds its (revoked/expired) family.
const KEEP_DEAD_MS: i64 = 24 * 3600 * 1000;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    not_before_s  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS families (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id),
    created_ms      INTEGER NOT NULL,
    absolute_exp_ms INTEGER NOT NULL,
    idle_exp_ms     INTEGER NOT NULL,
    current_hash    BLOB NOT NULL,
    revoked_ms      INTEGER,
    dpop_jkt        TEXT
);
CREATE INDEX IF NOT EXISTS families_by_user ON families(user_id);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash             BLOB PRIMARY KEY,
    family_id        TEXT NOT NULL REFERENCES families(id) ON DELETE CASCADE,
    created_ms       INTEGER NOT NULL,
    used_ms          INTEGER,
    successor_hash   BLOB,
    successor_sealed BLOB
);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_family ON refresh_tokens(family_id);
CREATE TRIGGER IF NOT EXISTS refresh_tokens_used_once
BEFORE UPDATE OF used_ms, successor_hash ON refresh_tokens
WHEN OLD.used_ms IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'used_ms and successor are write-once'); END;
CREATE TABLE IF NOT EXISTS external_identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id),
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE TABLE IF NOT EXISTS access_tokens (
    hash   BLOB PRIMARY KEY,
    sub    TEXT NOT NULL,
    sid    TEXT NOT NULL,
    jti    TEXT NOT NULL,
    iat_s  INTEGER NOT NULL,
    exp_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS denylist (
    iss    TEXT NOT NULL,
    jti    TEXT NOT NULL,
    exp_ms INTEGER NOT NULL,
    PRIMARY KEY (iss, jti)
);
"#;

/// SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    /// Batches committed (tests check that calls are grouped).
    commits: Arc<AtomicU64>,
    /// Read-only connections for the access check (file stores only: an in-memory database
    /// is private to its one connection).
    readers: Option<Arc<Readers>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (or creates) `dir/authfetch.sqlite3` in WAL mode and applies the schema.
    ///
    /// # Errors
    /// SQLite could not open or migrate the file.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        Self::from_connection(Connection::open(&path)?, Some(&path))
    }

    /// A private in-memory database (tests).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::from_connection(Connection::open_in_memory()?, None)
    }

    /// `path`: the file behind `conn`, for the checkpointer and the read-only connections
    /// (none for an in-memory database).
    fn from_connection(conn: Connection, path: Option<&Path>) -> Result<Self, StoreError> {
        enable_incremental_vacuum(&conn)?;
        // journal_mode answers with a row, so it is read rather than executed.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )?;
        conn.execute_batch(SCHEMA)?;
        add_dpop_jkt_column(&conn)?;
        // Every statement below goes through `prepare_cached`: SQL is compiled once per
        // connection, not on every call. Room for all of them (the default cache holds 16).
        conn.set_prepared_statement_cache_capacity(64);
        let checkpoints = match path {
            Some(p) => spawn_checkpointer(p).ok(),
            None => None,
        };
        if checkpoints.is_some() {
            // The checkpointer's thread copies the WAL back into the database; the writer
            // never stops for it (see `Checkpointer`). Without one, SQLite's own
            // automatic checkpoint (every 1000 pages, on the writer) stays on.
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
            // After it: setting wal_autocheckpoint replaces the WAL hook.
            conn.wal_hook(Some(note_wal_pages));
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&commits);
        std::thread::Builder::new()
            .name("authfetch-sqlite".into())
            .spawn(move || {
                let mut conn = conn;
                // Ends (closing the connection) when the last clone of the store is dropped.
                while let Ok(job) = queue.recv() {
                    if run_batch(&mut conn, job, &queue, &counter) {
                        if let Some(cp) = &checkpoints {
                            cp.after_commit(&conn);
                        }
                    }
                }
            })
            .map_err(|_| StoreError::Task)?;
        Ok(Self {
            jobs,
            commits,
            readers: path.map(|p| {
                Arc::new(Readers {
                    path: p.to_owned(),
                    idle: Mutex::new(Vec::new()),
                })
            }),
        })
    }

    /// Transactions committed since the store was opened. Each holds one or more store calls
    /// (group commit), so store calls ÷ commits is the batching achieved under load.
    #[must_use]
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Queues `f` at once (not when the future is first polled); the future answers after the
    /// batch holding `f` has committed.
    fn run<T, F>(&self, f: F) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |c: &mut Connection| -> Finish {
            // A panicking call must not take the connection's thread with it: its savepoint
            // (if any) is rolled back by the unwind, the caller gets `Task`.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c))) {
                Ok(r) => Box::new(move |commit_error: Option<&rusqlite::Error>| {
                    let _ = reply.send(match commit_error {
                        None => r,
                        Some(e) => Err(copy_error(e)),
                    });
                }),
                Err(_) => Box::new(|_| {}),
            }
        });
        let sent = self.jobs.send(job).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Task);
            }
            answer.await.map_err(|_| StoreError::Task)?
        }
    }

    /// Runs the read `f` where reads are cheapest: on a read-only connection on the caller's
    /// thread (never waiting for a lock there: a busy file moves it to the blocking pool, see
    /// [`is_busy`]), or, for an in-memory store (no readers), on the writer's connection.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        match self.read_here(&f) {
            Some(answer) => answer,
            None => self.read_elsewhere(f).await,
        }
    }

    /// The first half of [`SqliteStore::read`], for a read whose closure borrows (and so can
    /// run without copying anything): `f` on a read-only connection on the caller's thread,
    /// never waiting for a lock there. `None` when it has to go to
    /// [`SqliteStore::read_elsewhere`]: the file is locked, or the store is in memory.
    fn read_here<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        match self.readers.as_ref()?.with(false, f) {
            Err(e) if is_busy(&e) => None,
            answer => Some(answer),
        }
    }

    /// The second half of [`SqliteStore::read`]: `f` on a read-only connection in the blocking
    /// pool, where it may wait for a lock, or, for an in-memory store, on the writer's.
    async fn read_elsewhere<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(readers) = &self.readers else {
            return self.run(move |c| f(c)).await;
        };
        let readers = Arc::clone(readers);
        tokio::task::spawn_blocking(move || readers.with(true, f))
            .await
            .map_err(|_| StoreError::Task)?
    }
}

/// Makes the reads that follow on `c` see one state: a read transaction of their own on a
/// read-only connection; none on the writer's, whose calls already run inside their batch's
/// transaction (where `BEGIN` would fail).
fn snapshot(c: &Connection) -> Result<Option<rusqlite::Transaction<'_>>, StoreError> {
    Ok(if c.is_autocommit() {
        Some(c.unchecked_transaction()?)
    } else {
        None
    })
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        not_before_s: r.get(3)?,
    })
}

fn hash_from(v: Vec<u8>) -> Result<TokenHash, StoreError> {
    v.try_into()
        .map(TokenHash)
        .map_err(|_| StoreError::Corrupt("token hash length"))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        let user = User {
            id: random_id(),
            username: username.to_owned(),
            password_hash: password_hash.to_owned(),
            not_before_s: 0,
        };
        let u = user.clone();
        self.run(move |c| {
            let tx = writes(c)?;
            let exists: Option<String> =
                tx.prepare_cached("SELECT id FROM users WHERE username = ?1")?.query_row( [&u.username], |r| r.get(0)).optional()?;
            if exists.is_some() {
                return Err(StoreError::UserExists);
            }
            tx.prepare_cached("INSERT INTO users (id, username, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)")?.execute(
                params![u.id, u.username, u.password_hash, now_ms],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        Ok(user)
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let name = username.to_owned();
        self.run(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, username, password_hash, not_before_s FROM users WHERE username = ?1",
            )?
            .query_row([name], user_from_row)
            .optional()?)
        })
        .await
    }

    async fn user_by_id(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        let id = user_id.to_owned();
        // An API route's lookup on every authenticated request (`/api/me`): a read, so it takes
        // the readers' path, not a trip through the writer's channel (two thread switches and
        // a queue behind every write; it was most of the per-request cost in every access-token
        // mode, BENCHMARKS.md §6).
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, username, password_hash, not_before_s FROM users WHERE id = ?1",
            )?
            .query_row([&id], user_from_row)
            .optional()?)
        })
        .await
    }

    async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (id, h) = (user_id.to_owned(), password_hash.to_owned());
        self.run(move |c| {
            let tx = writes(c)?;
            tx.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
                .execute(params![id, h])?;
            revoke_user_tx(&tx, &id, now_ms)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn create_family(&self, f: NewFamily) -> Result<(), StoreError> {
        self.run(move |c| {
            let tx = writes(c)?;
            tx.prepare_cached("INSERT INTO families (id, user_id, created_ms, absolute_exp_ms, idle_exp_ms, current_hash, dpop_jkt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?.execute(
                params![f.family_id, f.user_id, f.now_ms, f.absolute_exp_ms, f.idle_exp_ms, &f.token_hash.0[..], f.dpop_jkt],
            )?;
            tx.prepare_cached("INSERT INTO refresh_tokens (hash, family_id, created_ms) VALUES (?1, ?2, ?3)")?.execute(
                params![&f.token_hash.0[..], f.family_id, f.now_ms],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn rotate(&self, req: RotateRequest) -> Result<RotateOutcome, StoreError> {
        self.run(move |c| {
            let tx = writes(c)?;
            let row = tx
                .prepare_cached("SELECT t.family_id, t.used_ms, t.successor_hash, t.successor_sealed, \
                            f.user_id, f.absolute_exp_ms, f.idle_exp_ms, f.current_hash, f.revoked_ms \
                     FROM refresh_tokens t JOIN families f ON f.id = t.family_id WHERE t.hash = ?1")?.query_row(
                    [&req.presented.0[..]],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<i64>>(1)?,
                            r.get::<_, Option<Vec<u8>>>(2)?,
                            r.get::<_, Option<Vec<u8>>>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, i64>(6)?,
                            r.get::<_, Vec<u8>>(7)?,
                            r.get::<_, Option<i64>>(8)?,
                        ))
                    },
                )
                .optional()?;
            let Some((family_id, used_ms, succ, sealed, user_id, abs_exp, idle_exp, current, revoked)) = row else {
                return Ok(RotateOutcome::Unknown);
            };
            let family = FamilyRef { family_id: family_id.clone(), user_id, absolute_exp_ms: abs_exp };
            let now = req.now_ms;
            if revoked.is_some() || now >= abs_exp || now >= idle_exp {
                return Ok(RotateOutcome::Dead(family));
            }
            let current = hash_from(current)?;
            let outcome = match used_ms {
                None if current == req.presented => {
                    // Compare-and-set on the write-once `used_ms`.
                    let n = tx.prepare_cached("UPDATE refresh_tokens SET used_ms = ?2, successor_hash = ?3, successor_sealed = ?4 \
                         WHERE hash = ?1 AND used_ms IS NULL")?.execute(
                        params![&req.presented.0[..], now, &req.successor.0[..], &req.successor_sealed[..]],
                    )?;
                    if n != 1 {
                        return Err(StoreError::Corrupt("compare-and-set lost inside an immediate transaction"));
                    }
                    tx.prepare_cached("INSERT INTO refresh_tokens (hash, family_id, created_ms) VALUES (?1, ?2, ?3)")?.execute(
                        params![&req.successor.0[..], family_id, now],
                    )?;
                    let idle = now.saturating_add(req.idle_ttl_ms).min(abs_exp);
                    tx.prepare_cached("UPDATE families SET current_hash = ?2, idle_exp_ms = ?3 WHERE id = ?1")?.execute(
                        params![family_id, &req.successor.0[..], idle],
                    )?;
                    RotateOutcome::Rotated(family)
                }
                // The parent of a successor that has never been used gets that successor,
                // within the grace window (tabs racing a rotation) and after it (an answer
                // lost to a crash or a dropped connection): the successor's first use makes
                // it not current any more, which closes this door (A3).
                Some(_) => {
                    match (succ.map(hash_from).transpose()?, sealed) {
                        (Some(s), Some(sealed)) if s == current => {
                            let sealed: [u8; 32] =
                                sealed.try_into().map_err(|_| StoreError::Corrupt("sealed successor length"))?;
                            RotateOutcome::Grace { family, successor: s, sealed }
                        }
                        _ => revoke(&tx, family, now)?,
                    }
                }
                _ => revoke(&tx, family, now)?,
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn live_family_of(
        &self,
        token: &TokenHash,
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Option<FamilyRef>, StoreError> {
        let h = *token;
        self.run(move |c| {
            Ok(c.prepare_cached("SELECT f.id, f.user_id, f.absolute_exp_ms FROM refresh_tokens t JOIN families f ON f.id = t.family_id \
                 WHERE t.hash = ?1 AND f.revoked_ms IS NULL AND f.absolute_exp_ms > ?2 AND f.idle_exp_ms > ?2 \
                   AND (f.current_hash = t.hash \
                        OR (t.successor_hash = f.current_hash AND t.used_ms >= ?2 - ?3))")?.query_row(
                params![&h.0[..], now_ms, grace_ms],
                |r| Ok(FamilyRef { family_id: r.get(0)?, user_id: r.get(1)?, absolute_exp_ms: r.get(2)? }),
            )
            .optional()?)
        })
        .await
    }

    async fn family_jkt(&self, token: &TokenHash) -> Result<Option<String>, StoreError> {
        let h = *token;
        // Every refresh and logout asks (bound or not): a read, on the readers' path like
        // `user_by_id`. A family's key is written once, when the family is created and before
        // its cookie is sent, so a reader's snapshot cannot miss it.
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT f.dpop_jkt FROM refresh_tokens t JOIN families f ON f.id = t.family_id WHERE t.hash = ?1")?
                .query_row([&h.0[..]], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .flatten())
        })
        .await
    }

    async fn revoke_family_of(
        &self,
        token: &TokenHash,
        now_ms: i64,
    ) -> Result<Option<FamilyRef>, StoreError> {
        let h = *token;
        self.run(move |c| {
            let tx = writes(c)?;
            let fam = tx
                .prepare_cached("SELECT f.id, f.user_id, f.absolute_exp_ms FROM refresh_tokens t JOIN families f ON f.id = t.family_id WHERE t.hash = ?1")?.query_row(
                    [&h.0[..]],
                    |r| Ok(FamilyRef { family_id: r.get(0)?, user_id: r.get(1)?, absolute_exp_ms: r.get(2)? }),
                )
                .optional()?;
            if let Some(f) = &fam {
                revoke_family(&tx, &f.family_id, now_ms)?;
            }
            tx.commit()?;
            Ok(fam)
        })
        .await
    }

    async fn revoke_user(&self, user_id: &str, now_ms: i64) -> Result<u64, StoreError> {
        let id = user_id.to_owned();
        self.run(move |c| {
            let tx = writes(c)?;
            let n = revoke_user_tx(&tx, &id, now_ms)?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn deny_jti(&self, iss: &str, jti: &str, exp_ms: i64) -> Result<(), StoreError> {
        let (iss, jti) = (iss.to_owned(), jti.to_owned());
        self.run(move |c| {
            c.prepare_cached(
                "INSERT INTO denylist (iss, jti, exp_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (iss, jti) DO UPDATE SET exp_ms = max(exp_ms, excluded.exp_ms)",
            )?
            .execute(params![iss, jti, exp_ms])?;
            Ok(())
        })
        .await
    }

    async fn is_access_revoked(&self, q: AccessCheck<'_>, now_ms: i64) -> Result<bool, StoreError> {
        // Every authenticated request asks this: answered on the caller's thread from a
        // read-only connection (WAL readers never wait for the writer), without the two thread
        // switches of a trip through the writer's channel, and with the claims borrowed. That
        // thread is an async worker, so the read must never wait for a lock there: if the file
        // is locked (another process, a WAL recovery) the check moves to the blocking pool and
        // waits there; only then, or for an in-memory store, are the claims copied.
        let read = move |c: &Connection, q: &AccessCheck<'_>| {
            let _snapshot = snapshot(c)?; // the three reads see one state
            access_revoked(c, q, now_ms)
        };
        if let Some(answer) = self.read_here(|c| read(c, &q)) {
            return answer;
        }
        let (iss, jti, sub, sid, iat) = (
            q.iss.to_owned(),
            q.jti.to_owned(),
            q.sub.to_owned(),
            q.sid.map(str::to_owned),
            q.iat,
        );
        self.read_elsewhere(move |c| {
            let q = AccessCheck {
                iss: &iss,
                jti: &jti,
                sub: &sub,
                sid: sid.as_deref(),
                iat,
            };
            read(c, &q)
        })
        .await
    }

    async fn put_opaque(&self, hash: &TokenHash, rec: &OpaqueRecord) -> Result<(), StoreError> {
        let (h, r) = (hash.0, rec.clone());
        self.run(move |c| {
            c.prepare_cached(
                "INSERT INTO access_tokens (hash, sub, sid, jti, iat_s, exp_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![&h[..], r.sub, r.sid, r.jti, r.iat, r.exp.saturating_mul(1000)])?;
            Ok(())
        })
        .await
    }

    async fn live_opaque(
        &self,
        hash: &TokenHash,
        iss: &str,
        now_ms: i64,
    ) -> Result<Option<OpaqueRecord>, StoreError> {
        let h = hash.0;
        let read = move |c: &Connection, iss: &str| -> Result<Option<OpaqueRecord>, StoreError> {
            let _snapshot = snapshot(c)?; // the record and its revocation state
            let rec = c
                .prepare_cached(
                    "SELECT sub, sid, jti, iat_s, exp_ms FROM access_tokens WHERE hash = ?1",
                )?
                .query_row([&h[..]], |r| {
                    Ok((
                        OpaqueRecord {
                            sub: r.get(0)?,
                            sid: r.get(1)?,
                            jti: r.get(2)?,
                            iat: r.get(3)?,
                            exp: 0,
                        },
                        r.get::<_, i64>(4)?,
                    ))
                })
                .optional()?;
            let Some((mut rec, exp_ms)) = rec else {
                return Ok(None);
            };
            if now_ms >= exp_ms {
                return Ok(None);
            }
            rec.exp = exp_ms.div_euclid(1000);
            let q = AccessCheck {
                iss,
                jti: &rec.jti,
                sub: &rec.sub,
                sid: Some(&rec.sid),
                iat: rec.iat,
            };
            Ok((!access_revoked(c, &q, now_ms)?).then_some(rec))
        };
        // As is_access_revoked: on the caller's thread, never waiting for a lock there.
        if let Some(answer) = self.read_here(|c| read(c, iss)) {
            return answer;
        }
        let iss = iss.to_owned();
        self.read_elsewhere(move |c| read(c, &iss)).await
    }

    async fn user_for_identity(
        &self,
        issuer: &str,
        subject: &str,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        let (iss, sub) = (issuer.to_owned(), subject.to_owned());
        let new = User {
            id: random_id(),
            username: username.to_owned(),
            password_hash: password_hash.to_owned(),
            not_before_s: 0,
        };
        // One job on the writer thread: the lookup and the insert cannot interleave with
        // another sign-in of the same identity.
        self.run(move |c| {
            let tx = writes(c)?;
            let linked = tx
                .prepare_cached(
                    "SELECT u.id, u.username, u.password_hash, u.not_before_s FROM external_identities e \
                     JOIN users u ON u.id = e.user_id WHERE e.issuer = ?1 AND e.subject = ?2",
                )?
                .query_row([&iss, &sub], user_from_row)
                .optional()?;
            if let Some(u) = linked {
                return Ok(u);
            }
            let taken: Option<String> = tx
                .prepare_cached("SELECT id FROM users WHERE username = ?1")?
                .query_row([&new.username], |r| r.get(0))
                .optional()?;
            if taken.is_some() {
                return Err(StoreError::UserExists);
            }
            tx.prepare_cached("INSERT INTO users (id, username, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![new.id, new.username, new.password_hash, now_ms])?;
            tx.prepare_cached("INSERT INTO external_identities (issuer, subject, user_id, created_ms) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![iss, sub, new.id, now_ms])?;
            tx.commit()?;
            Ok(new)
        })
        .await
    }

    async fn purge(&self, now_ms: i64, grace_ms: i64) -> Result<(), StoreError> {
        self.run(move |c| {
            let tx = writes(c)?;
            tx.prepare_cached("DELETE FROM denylist WHERE exp_ms <= ?1")?.execute( [now_ms])?;
            tx.prepare_cached("DELETE FROM access_tokens WHERE exp_ms <= ?1")?.execute([now_ms])?;
            let cutoff = now_ms.saturating_sub(KEEP_DEAD_MS);
            tx.prepare_cached("DELETE FROM refresh_tokens WHERE family_id IN (SELECT id FROM families WHERE absolute_exp_ms < ?1 OR idle_exp_ms < ?1 OR revoked_ms < ?1)")?.execute(
                [cutoff],
            )?;
            tx.prepare_cached("DELETE FROM families WHERE absolute_exp_ms < ?1 OR idle_exp_ms < ?1 OR revoked_ms < ?1")?.execute( [cutoff])?;
            // A sealed successor is needed until that successor is first used (A3); after
            // that (and past the grace window) only the rotation rules could read it, and
            // they no longer do.
            tx.prepare_cached("UPDATE refresh_tokens SET successor_sealed = NULL WHERE successor_sealed IS NOT NULL AND used_ms < ?1 \
                 AND successor_hash IS NOT (SELECT current_hash FROM families f WHERE f.id = refresh_tokens.family_id)")?.execute(
                [now_ms.saturating_sub(grace_ms)],
            )?;
            tx.commit()?;
            // Give the pages the deletes freed back to the file system (auto_vacuum is
            // INCREMENTAL): without this the file only ever grows.
            // Each step frees one page, so the statement is stepped to the end.
            let mut vacuum = c.prepare_cached("PRAGMA incremental_vacuum")?;
            let mut steps = vacuum.query([])?;
            while steps.next()?.is_some() {}
            Ok(())
        })
        .await
    }
}

/// Turns on incremental auto-vacuum, so [`Store::purge`] can shrink the file. A new database
/// gets it before its first table; one created by an earlier release is rebuilt once with
/// `VACUUM` (the only way to change the setting once tables exist).
fn enable_incremental_vacuum(conn: &Connection) -> Result<(), StoreError> {
    /// `PRAGMA auto_vacuum` value of INCREMENTAL.
    const INCREMENTAL: i64 = 2;
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == INCREMENTAL {
        return Ok(());
    }
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if tables > 0 {
        tracing::info!("rebuilding the database once (VACUUM) to turn on incremental auto-vacuum");
        conn.execute_batch("VACUUM;")?;
    }
    Ok(())
}

fn revoke(tx: &Connection, family: FamilyRef, now_ms: i64) -> Result<RotateOutcome, StoreError> {
    revoke_family(tx, &family.family_id, now_ms)?;
    Ok(RotateOutcome::Reuse(family))
}

/// Databases created before DPoP lack `families.dpop_jkt`: added (NULL, unbound) on open.
fn add_dpop_jkt_column(conn: &Connection) -> Result<(), StoreError> {
    let has: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('families') WHERE name = 'dpop_jkt'",
        [],
        |r| r.get(0),
    )?;
    if has == 0 {
        conn.execute_batch("ALTER TABLE families ADD COLUMN dpop_jkt TEXT")?;
    }
    Ok(())
}

/// Marks the family revoked (the first revocation's time is kept).
fn revoke_family(tx: &Connection, family_id: &str, now_ms: i64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE families SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL")?
        .execute(params![family_id, now_ms])?;
    Ok(())
}

fn revoke_user_tx(tx: &Connection, user_id: &str, now_ms: i64) -> Result<u64, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE families SET revoked_ms = ?2 WHERE user_id = ?1 AND revoked_ms IS NULL",
        )?
        .execute(params![user_id, now_ms])?;
    tx.prepare_cached("UPDATE users SET not_before_s = max(not_before_s, ?2) WHERE id = ?1")?
        .execute(params![user_id, now_ms.div_euclid(1000)])?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Holds the connection's thread until the returned sender is dropped, so that the calls
    /// queued meanwhile all land in the next batch.
    fn block(store: &SqliteStore) -> mpsc::Sender<()> {
        let (release, wait) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        drop(store.run(move |_| {
            let _ = started.send(());
            let _ = wait.recv();
            Ok(())
        }));
        running
            .recv_timeout(Duration::from_secs(10))
            .expect("store thread runs the blocker");
        release
    }

    fn insert_user(id: &'static str) -> impl FnOnce(&mut Connection) -> Result<(), StoreError> {
        move |c| {
            let tx = writes(c)?;
            tx.prepare_cached("INSERT INTO users (id, username, password_hash, created_ms) VALUES (?1, ?1, 'x', 0)")?
                .execute([id])?;
            tx.commit()?;
            Ok(())
        }
    }

    async fn user_ids(store: &SqliteStore) -> Vec<String> {
        store
            .run(|c| {
                let mut st = c.prepare_cached("SELECT id FROM users ORDER BY id")?;
                let ids = st
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
                Ok(ids)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn queued_calls_share_one_commit_and_a_failing_or_panicking_one_loses_only_its_own_writes(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let before = store.commits();
        let release = block(&store);
        let a = store.run(insert_user("a"));
        let dup = store.run(insert_user("a")); // primary key violation: fails alone
        let panics = store.run(|c| -> Result<(), StoreError> {
            insert_user("p")(c)?;
            let tx = writes(c)?;
            tx.execute("INSERT INTO users (id, username, password_hash, created_ms) VALUES ('q', 'q', 'x', 0)", [])?;
            panic!("a store call panics with its savepoint open");
        });
        let b = store.run(insert_user("b"));
        drop(release);
        assert!(a.await.is_ok());
        assert!(matches!(dup.await, Err(StoreError::Sqlite(_))));
        assert!(matches!(panics.await, Err(StoreError::Task)));
        assert!(b.await.is_ok());
        // The blocker and the four calls behind it: one transaction.
        assert_eq!(store.commits() - before, 1);
        // "p" was released into the batch before the panic; only the open savepoint ("q") is
        // rolled back. Everything answered Ok is on disk.
        drop(store);
        let again = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(user_ids(&again).await, ["a", "b", "p"]);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_call_of_its_batch_and_keeps_none_of_their_writes() {
        let store = SqliteStore::in_memory().unwrap();
        // A deferred foreign key is checked at COMMIT: the one way to make COMMIT itself fail.
        store
            .run(|c| {
                c.execute_batch("CREATE TABLE dangling (u TEXT REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED)")?;
                Ok(())
            })
            .await
            .unwrap();
        let release = block(&store);
        let a = store.run(insert_user("a"));
        let bad = store.run(|c| {
            let tx = writes(c)?;
            tx.execute("INSERT INTO dangling (u) VALUES ('nobody')", [])?;
            tx.commit()?; // released into the batch: the check waits for COMMIT
            Ok(())
        });
        drop(release);
        let a = a.await;
        assert!(
            matches!(&a, Err(StoreError::Sqlite(e)) if e.to_string().contains("FOREIGN KEY")),
            "{a:?}"
        );
        assert!(bad.await.is_err());
        assert!(
            user_ids(&store).await.is_empty(),
            "nothing of the failed batch was kept"
        );
        // And the connection goes on working.
        store.run(insert_user("c")).await.unwrap();
        assert_eq!(user_ids(&store).await, ["c"]);
    }

    #[tokio::test]
    async fn the_access_check_reads_on_the_callers_thread_and_sees_a_revocation_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteStore::open(dir.path()).unwrap();
        let memory = SqliteStore::in_memory().unwrap();
        let check = AccessCheck {
            iss: "i",
            jti: "j",
            sub: "a",
            sid: None,
            iat: 100,
        };
        for store in [&file, &memory] {
            // Unknown user: revoked (fail closed).
            assert!(store.is_access_revoked(check, 0).await.unwrap());
            store.run(insert_user("a")).await.unwrap();
            assert!(!store.is_access_revoked(check, 0).await.unwrap());
            store.revoke_user("a", 200_000).await.unwrap(); // not_before = 200 s > iat
            assert!(
                store.is_access_revoked(check, 0).await.unwrap(),
                "seen as soon as revoke_user returned"
            );
        }
        // The file store answered from its read-only connections, not through the writer.
        let readers = file.readers.as_ref().expect("a file store has readers");
        assert_eq!(readers.idle.lock().unwrap().len(), 1);
        assert!(memory.readers.is_none());
        // A reader cannot write, whatever it is handed.
        let err = readers.with(false, |c| Ok(c.execute("DELETE FROM users", [])?));
        assert!(matches!(err, Err(StoreError::Sqlite(_))), "{err:?}");
    }

    /// An opaque token's record and its revocation state, on both kinds of store: the file
    /// store reads them on a read-only connection in a read transaction of its own, the
    /// in-memory one on the writer's connection inside its batch's transaction.
    #[tokio::test]
    async fn live_opaque_answers_on_a_file_and_on_an_in_memory_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteStore::open(dir.path()).unwrap();
        let memory = SqliteStore::in_memory().unwrap();
        for store in [&file, &memory] {
            let user = store.create_user("a", "h", 0).await.unwrap();
            let family = NewFamily {
                family_id: "f".into(),
                user_id: user.id.clone(),
                token_hash: TokenHash([1; 32]),
                now_ms: 0,
                absolute_exp_ms: 10_000_000,
                idle_exp_ms: 10_000_000,
                dpop_jkt: None,
            };
            store.create_family(family).await.unwrap();
            let rec = OpaqueRecord {
                sub: user.id,
                sid: "f".into(),
                jti: "j".into(),
                iat: 100,
                exp: 1_000,
            };
            let h = TokenHash([2; 32]);
            store.put_opaque(&h, &rec).await.unwrap();
            assert_eq!(store.live_opaque(&h, "i", 0).await.unwrap(), Some(rec));
            assert_eq!(
                store
                    .live_opaque(&TokenHash([3; 32]), "i", 0)
                    .await
                    .unwrap(),
                None
            );
            store.deny_jti("i", "j", 2_000_000).await.unwrap();
            assert_eq!(store.live_opaque(&h, "i", 0).await.unwrap(), None);
        }
    }

    /// The access check runs on the caller's thread (an async worker) with a busy timeout of
    /// zero, so a locked file answers `SQLITE_BUSY` at once instead of parking the worker for
    /// up to 5 s; only the retry on the blocking pool waits. (A held lock cannot be staged
    /// here: the store's own connections keep the file shared in WAL mode, so the timeouts
    /// themselves are checked.)
    #[tokio::test]
    async fn the_access_check_never_waits_for_a_lock_on_an_async_worker() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let readers = store.readers.as_ref().expect("a file store has readers");
        let timeout = |patient| {
            readers
                .with(patient, |c| {
                    Ok(c.query_row("PRAGMA busy_timeout", [], |r| r.get::<_, i64>(0))?)
                })
                .unwrap()
        };
        assert_eq!(timeout(false), 0, "on the caller's thread: never wait");
        assert_eq!(timeout(true), 5000, "on the blocking pool: wait");
        assert_eq!(timeout(false), 0, "a pooled connection is reset");
        let busy = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert!(
            is_busy(&busy),
            "a busy fast path is retried on the blocking pool"
        );
        assert!(!is_busy(&StoreError::Task));
    }

    /// The file gives space back after a purge (incremental auto-vacuum), also for a database
    /// created before auto-vacuum was turned on.
    #[tokio::test]
    async fn purge_shrinks_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB_FILE);
        // A file as earlier releases created it: no auto-vacuum.
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch("PRAGMA auto_vacuum = NONE;").unwrap();
            c.execute_batch(SCHEMA).unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let jti = "j".repeat(200);
        for i in 0..20_000 {
            store
                .deny_jti("iss", &format!("{jti}{i}"), 1_000)
                .await
                .unwrap();
        }
        // The database's size in pages (what the file shrinks to at the next checkpoint; the
        // WAL holds the latest pages until then).
        let pages = |db: &Path| -> i64 {
            let c = Connection::open(db).unwrap();
            c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap()
        };
        let full = pages(&db);
        assert!(full > 1_000, "{full}");
        store.purge(2_000, 0).await.unwrap();
        let after = pages(&db);
        assert!(
            after < full / 4,
            "{full} pages before the purge, {after} after"
        );
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_off_the_writers_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let db = dir.path().join(DB_FILE);
        let writer_autocheckpoint: i64 = store
            .run(|c| Ok(c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(
            writer_autocheckpoint, 0,
            "the writer leaves checkpoints to the checkpointer"
        );
        // ~1 MB of rows, one commit each: only a checkpoint brings them into the database file.
        let name = "n".repeat(2000);
        for i in 0..500 {
            let name = format!("{name}{i}");
            store
                .run(move |c| {
                    c.execute(
                        "INSERT INTO users (id, username, password_hash, created_ms) VALUES (?1, ?1, 'x', 0)",
                        [name],
                    )?;
                    Ok(())
                })
                .await
                .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let len = std::fs::metadata(&db).unwrap().len();
            if len > 1_000_000 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "database file still {len} bytes: no checkpoint ran"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_continuous_writes_the_wal_is_rewound_not_grown() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let wal = dir.path().join(format!("{DB_FILE}-wal"));
        // ~48 MB of rows from 8 writers that never pause, so the passive checkpoint never
        // catches up on its own; without the rewind the WAL would hold all of it.
        let row = "r".repeat(3000);
        let mut writers = Vec::new();
        for w in 0..8 {
            let (store, row) = (store.clone(), row.clone());
            writers.push(tokio::spawn(async move {
                for i in 0..2000 {
                    let name = format!("{row}{w}-{i}");
                    store
                        .run(move |c| {
                            c.execute("INSERT INTO users (id, username, password_hash, created_ms) VALUES (?1, ?1, 'x', 0)", [name])?;
                            Ok(())
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let db_len = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
        assert!(
            db_len > 40_000_000,
            "the rows reached the database file ({db_len} bytes)"
        );
        // Without the rewind the WAL holds everything ever written (more than the database
        // file: 600+ MB here); with it, what arrives between two rewinds at this artificial
        // rate, which depends on how busy the machine is (the checkpointer competes for the
        // same cores): the bound only has to tell the two apart.
        assert!(
            wal_len < db_len / 2,
            "WAL {wal_len} bytes for a {db_len}-byte database: not rewound"
        );
    }
}
