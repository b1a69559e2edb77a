//! The embedded store: one SQLite file in WAL mode.
//!
//! One connection, owned by one dedicated thread that runs the store's calls in order, fed by a
//! channel (no blocking-pool task and no mutex hand-off per call). Every write that reads
//! first runs in `BEGIN IMMEDIATE`, which takes SQLite's write lock up front, so two refreshes
//! of one family (or two processes on one file) are serialized and the compare-and-set on
//! `used_ms` cannot be raced. Triggers make `used_ms` and the successor write-once at the
//! schema level too.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension as _, TransactionBehavior};
use std::path::Path;
use std::sync::mpsc;

use super::{
    AccessCheck, FamilyRef, NewFamily, RotateOutcome, RotateRequest, Store, StoreError, User,
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
    revoked_ms      INTEGER
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
CREATE TABLE IF NOT EXISTS denylist (
    iss    TEXT NOT NULL,
    jti    TEXT NOT NULL,
    exp_ms INTEGER NOT NULL,
    PRIMARY KEY (iss, jti)
);
"#;

/// One store call, run on the connection's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
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
        Self::from_connection(Connection::open(dir.join(DB_FILE))?)
    }

    /// A private in-memory database (tests).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(conn: Connection) -> Result<Self, StoreError> {
        // journal_mode answers with a row, so it is read rather than executed.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )?;
        conn.execute_batch(SCHEMA)?;
        // Every statement below goes through `prepare_cached`: SQL is compiled once per
        // connection, not on every call. Room for all of them (the default cache holds 16).
        conn.set_prepared_statement_cache_capacity(64);
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("authfetch-sqlite".into())
            .spawn(move || {
                let mut conn = conn;
                // Ends (closing the connection) when the last clone of the store is dropped.
                while let Ok(job) = queue.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|_| StoreError::Task)?;
        Ok(Self { jobs })
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |c: &mut Connection| {
            // A panicking call must not take the connection's thread with it: its open
            // transaction (if any) is rolled back by the unwind, the caller gets `Task`.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c)));
            if let Ok(r) = r {
                let _ = reply.send(r);
            }
        });
        self.jobs.send(job).map_err(|_| StoreError::Task)?;
        answer.await.map_err(|_| StoreError::Task)?
    }
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
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
        self.run(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, username, password_hash, not_before_s FROM users WHERE id = ?1",
            )?
            .query_row([id], user_from_row)
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
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached("INSERT INTO families (id, user_id, created_ms, absolute_exp_ms, idle_exp_ms, current_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(
                params![f.family_id, f.user_id, f.now_ms, f.absolute_exp_ms, f.idle_exp_ms, &f.token_hash.0[..]],
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
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
                Some(used) if now.saturating_sub(used) <= req.grace_ms => {
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

    async fn revoke_family_of(
        &self,
        token: &TokenHash,
        now_ms: i64,
    ) -> Result<Option<FamilyRef>, StoreError> {
        let h = *token;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let fam = tx
                .prepare_cached("SELECT f.id, f.user_id, f.absolute_exp_ms FROM refresh_tokens t JOIN families f ON f.id = t.family_id WHERE t.hash = ?1")?.query_row(
                    [&h.0[..]],
                    |r| Ok(FamilyRef { family_id: r.get(0)?, user_id: r.get(1)?, absolute_exp_ms: r.get(2)? }),
                )
                .optional()?;
            if let Some(f) = &fam {
                tx.prepare_cached("UPDATE families SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL")?.execute( params![f.family_id, now_ms])?;
            }
            tx.commit()?;
            Ok(fam)
        })
        .await
    }

    async fn revoke_user(&self, user_id: &str, now_ms: i64) -> Result<u64, StoreError> {
        let id = user_id.to_owned();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
        let (iss, jti, sub, sid, iat) = (
            q.iss.to_owned(),
            q.jti.to_owned(),
            q.sub.to_owned(),
            q.sid.map(str::to_owned),
            q.iat,
        );
        self.run(move |c| {
            let denied: Option<i64> = c
                .prepare_cached("SELECT exp_ms FROM denylist WHERE iss = ?1 AND jti = ?2")?
                .query_row(params![iss, jti], |r| r.get(0))
                .optional()?;
            if denied.is_some_and(|exp| exp > now_ms) {
                return Ok(true);
            }
            let nb: Option<i64> = c
                .prepare_cached("SELECT not_before_s FROM users WHERE id = ?1")?
                .query_row([&sub], |r| r.get(0))
                .optional()?;
            match nb {
                None => return Ok(true), // unknown user: fail closed
                Some(nb) if iat < nb => return Ok(true),
                Some(_) => {}
            }
            if let Some(sid) = sid {
                let fam: Option<(String, Option<i64>)> = c
                    .prepare_cached("SELECT user_id, revoked_ms FROM families WHERE id = ?1")?
                    .query_row([&sid], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                match fam {
                    Some((owner, None)) if owner == sub => {}
                    _ => return Ok(true), // unknown, revoked, or someone else's family
                }
            }
            Ok(false)
        })
        .await
    }

    async fn purge(&self, now_ms: i64, grace_ms: i64) -> Result<(), StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM denylist WHERE exp_ms <= ?1")?.execute( [now_ms])?;
            let cutoff = now_ms.saturating_sub(KEEP_DEAD_MS);
            tx.prepare_cached("DELETE FROM refresh_tokens WHERE family_id IN (SELECT id FROM families WHERE absolute_exp_ms < ?1 OR idle_exp_ms < ?1 OR revoked_ms < ?1)")?.execute(
                [cutoff],
            )?;
            tx.prepare_cached("DELETE FROM families WHERE absolute_exp_ms < ?1 OR idle_exp_ms < ?1 OR revoked_ms < ?1")?.execute( [cutoff])?;
            tx.prepare_cached("UPDATE refresh_tokens SET successor_sealed = NULL WHERE successor_sealed IS NOT NULL AND used_ms < ?1")?.execute(
                [now_ms.saturating_sub(grace_ms)],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

fn revoke(
    tx: &rusqlite::Transaction<'_>,
    family: FamilyRef,
    now_ms: i64,
) -> Result<RotateOutcome, StoreError> {
    tx.prepare_cached("UPDATE families SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL")?
        .execute(params![family.family_id, now_ms])?;
    Ok(RotateOutcome::Reuse(family))
}

fn revoke_user_tx(
    tx: &rusqlite::Transaction<'_>,
    user_id: &str,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE families SET revoked_ms = ?2 WHERE user_id = ?1 AND revoked_ms IS NULL",
        )?
        .execute(params![user_id, now_ms])?;
    tx.prepare_cached("UPDATE users SET not_before_s = max(not_before_s, ?2) WHERE id = ?1")?
        .execute(params![user_id, now_ms.div_euclid(1000)])?;
    Ok(n as u64)
}
