//! Redis implementation of the store, for several server instances sharing sessions.
//!
//! Every operation that reads and then writes is **one Lua script**, and Redis runs scripts one
//! at a time, so a refresh is serialized against every other refresh, logout and revocation:
//! the compare-and-set on the write-once `used_ms`, the grace-window lookup and the
//! reuse → revoke-family decision (`ROTATE`) cannot be split across round trips and raced,
//! even by two server processes. The decision logic is the same as the SQLite store's, rule
//! for rule (`sqlite.rs`, `rotate`), and both stores pass the same contract tests
//! (`tests/store_contract.rs`).
//!
//! # Keys (all under a configurable prefix, default `authfetch:`)
//!
//! ```text
//! user:{id}            hash   id username password_hash not_before_s created_ms
//! uname:{username}     string user id (uniqueness of names: SET NX inside the script)
//! ufams:{user id}      set    family ids of the user (for logout-everywhere, R4); ids of
//!                             collected families are pruned at each login and at logout-all
//! fam:{family id}      hash   user_id created_ms absolute_exp_ms idle_exp_ms current [revoked_ms] [dpop_jkt]
//! rt:{hex sha256}      hash   family_id created_ms [used_ms successor parent_rts]  (R6: a hash index)
//! rts:{hex sha256}     string the successor sealed under this token; deleted at the successor's
//!                             first use (`parent_rts` in the successor's rt hash names it)
//! deny:{len(iss)}:{iss}:{jti}  string exp_ms (J13); expires at exp
//! rl:{bucket}:{window start}:{key}  counter of a shared rate-limit window (R9); expires with it
//! ext:{len(iss)}:{iss}:{sub}   string user id linked to an OpenID Connect identity
//! at:{hex sha256}      hash   sub sid jti iat exp of an opaque access token; expires at exp
//! ```
//!
//! Only SHA-256 hashes of refresh tokens are stored. Times in values are the server clock's
//! Unix milliseconds and every decision compares against the `now` the server passes in; Redis
//! key expiry (`PEXPIREAT`, a day after a family's absolute expiry; the denylist at `exp`) only
//! collects garbage, so [`Store::purge`] has
//! nothing left to do.
//!
//! Scripts build some key names from stored ids, so this store targets a single Redis (or a
//! primary with replicas), not Redis Cluster.

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Script};
use std::time::Duration;
use tokio::sync::RwLock;

use super::{
    AccessCheck, FamilyRef, NewFamily, OpaqueRecord, RotateOutcome, RotateRequest, SharedLimit,
    Store, StoreError, User,
};
use crate::config::Limit;
use crate::secret::{hex, random_id, TokenHash};

/// Key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "authfetch:";

/// Dead families (and their tokens) are kept this long after their absolute expiry, so an
/// access token issued just before expiry still finds its family (same as the SQLite store).
const KEEP_DEAD_MS: i64 = 24 * 3600 * 1000;

/// Connect and per-command timeouts: a stuck Redis must fail requests, not hang them.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `KEYS[1]` uname, `KEYS[2]` user. `ARGV`: id, username, hash, now. → 1 created, 0 taken.
const CREATE_USER: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX') == false then return 0 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'username', ARGV[2], 'password_hash', ARGV[3],
  'not_before_s', '0', 'created_ms', ARGV[4])
return 1
";

/// `KEYS[1]` uname. `ARGV[1]` prefix. → {id, username, hash, not_before_s} or {}.
const USER_BY_NAME: &str = r"
local id = redis.call('GET', KEYS[1])
if not id then return {} end
local u = redis.call('HMGET', ARGV[1] .. 'user:' .. id, 'id', 'username', 'password_hash', 'not_before_s')
if not u[1] then return {} end
return u
";

/// `KEYS[1]` user. → {id, username, hash, not_before_s} or {}.
const USER_BY_ID: &str = r"
local u = redis.call('HMGET', KEYS[1], 'id', 'username', 'password_hash', 'not_before_s')
if not u[1] then return {} end
return u
";

/// Shared by REVOKE_USER and SET_PASSWORD: revokes every family of the user and raises the
/// user's `not_before_s`. `KEYS[1]` user, `KEYS[2]` ufams; `ARGV[1]` prefix, `ARGV[2]` now ms.
/// Returns the number of families that were live.
const REVOKE_USER_BODY: &str = r"
local now = tonumber(ARGV[2])
local n = 0
for _, fid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local fk = ARGV[1] .. 'fam:' .. fid
  local f = redis.call('HMGET', fk, 'absolute_exp_ms', 'idle_exp_ms', 'revoked_ms')
  if not f[1] then
    redis.call('SREM', KEYS[2], fid)
  elseif not f[3] then
    if now < tonumber(f[1]) and now < tonumber(f[2]) then n = n + 1 end
    redis.call('HSET', fk, 'revoked_ms', ARGV[2])
  end
end
local nb = math.floor(now / 1000)
local old = tonumber(redis.call('HGET', KEYS[1], 'not_before_s') or '0')
if redis.call('EXISTS', KEYS[1]) == 1 and nb > old then
  redis.call('HSET', KEYS[1], 'not_before_s', string.format('%.0f', nb))
end
return n
";

/// `KEYS[1]` user, `KEYS[2]` ufams, `KEYS[3]` fam, `KEYS[4]` rt.
/// `ARGV`: family id, user id, token hash, now, absolute, idle, expire-at, prefix, DPoP jkt
/// (empty: unbound).
///
/// Also drops up to four ids of expired (collected) families from the user's index, so the
/// index tracks the live families instead of growing with every login.
const CREATE_FAMILY: &str = r"
for _, old in ipairs(redis.call('SRANDMEMBER', KEYS[2], 4)) do
  if redis.call('EXISTS', ARGV[8] .. 'fam:' .. old) == 0 then redis.call('SREM', KEYS[2], old) end
end
redis.call('HSET', KEYS[3], 'user_id', ARGV[2], 'created_ms', ARGV[4], 'absolute_exp_ms', ARGV[5],
  'idle_exp_ms', ARGV[6], 'current', ARGV[3])
if ARGV[9] ~= '' then redis.call('HSET', KEYS[3], 'dpop_jkt', ARGV[9]) end
redis.call('PEXPIREAT', KEYS[3], ARGV[7])
redis.call('HSET', KEYS[4], 'family_id', ARGV[1], 'created_ms', ARGV[4])
redis.call('PEXPIREAT', KEYS[4], ARGV[7])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
";

/// `KEYS[1]` rt. `ARGV`: prefix. → the DPoP jkt of the token's family, or nil.
const FAMILY_JKT: &str = r"
local fid = redis.call('HGET', KEYS[1], 'family_id')
if not fid then return nil end
return redis.call('HGET', ARGV[1] .. 'fam:' .. fid, 'dpop_jkt')
";

/// The rotation rules of docs/SECURITY.md in one atomic step.
///
/// `KEYS[1]` rt:{presented}, `KEYS[2]` rts:{presented}, `KEYS[3]` rt:{successor}.
/// `ARGV`: prefix, presented hash, successor hash, sealed successor, now, idle ttl ms, keep ms.
///
/// Returns `{outcome, family id, user id, absolute_exp_ms [, successor, sealed]}` with outcome
/// one of `rotated`, `grace`, `reuse`, `dead`; or `{'unknown'}`.
const ROTATE: &str = r"
local t = redis.call('HMGET', KEYS[1], 'family_id', 'used_ms', 'successor', 'parent_rts')
local fid = t[1]
if not fid then return {'unknown'} end
local fk = ARGV[1] .. 'fam:' .. fid
local f = redis.call('HMGET', fk, 'user_id', 'absolute_exp_ms', 'idle_exp_ms', 'current', 'revoked_ms')
if not f[1] then return {'unknown'} end
local now = tonumber(ARGV[5])
local abs = tonumber(f[2])
if f[5] or now >= abs or now >= tonumber(f[3]) then
  return {'dead', fid, f[1], f[2]}
end
if not t[2] then
  if f[4] == ARGV[2] then
    -- The current token, first use: compare-and-set on the write-once used_ms (rule 3).
    local expire_at = string.format('%.0f', abs + tonumber(ARGV[7]))
    redis.call('HSET', KEYS[1], 'used_ms', ARGV[5], 'successor', ARGV[3])
    -- Kept until the successor's first use (A3), which deletes it below.
    redis.call('SET', KEYS[2], ARGV[4])
    redis.call('PEXPIREAT', KEYS[2], expire_at)
    redis.call('HSET', KEYS[3], 'family_id', fid, 'created_ms', ARGV[5], 'parent_rts', KEYS[2])
    redis.call('PEXPIREAT', KEYS[3], expire_at)
    -- This token's own first use: its parent can no longer get it (A3).
    if t[4] then redis.call('DEL', t[4]) end
    local idle = math.min(now + tonumber(ARGV[6]), abs)
    redis.call('HSET', fk, 'current', ARGV[3], 'idle_exp_ms', string.format('%.0f', idle))
    return {'rotated', fid, f[1], f[2]}
  end
else
  -- The immediate parent gets the same successor (rule 4) as long as that successor is still
  -- the current token, i.e. has never been used: within the grace window (tabs racing a
  -- rotation) and after it (an answer lost to a crash or a dropped connection; A3).
  if t[3] == f[4] then
    local sealed = redis.call('GET', KEYS[2])
    if sealed then return {'grace', fid, f[1], f[2], t[3], sealed} end
  end
end
-- Anything else from a live family is reuse: revoke it for good (rule 5).
redis.call('HSET', fk, 'revoked_ms', ARGV[5])
return {'reuse', fid, f[1], f[2]}
";

/// `KEYS[1]` rt. `ARGV`: prefix, now, grace ms, token hash. → {family id, user id, absolute}
/// of a live family whose current token this is (or its immediate parent within grace), or {}.
const LIVE_FAMILY_OF: &str = r"
local t = redis.call('HMGET', KEYS[1], 'family_id', 'used_ms', 'successor')
local fid = t[1]
if not fid then return {} end
local f = redis.call('HMGET', ARGV[1] .. 'fam:' .. fid, 'user_id', 'absolute_exp_ms', 'idle_exp_ms', 'revoked_ms', 'current')
if not f[1] or f[4] then return {} end
local now = tonumber(ARGV[2])
if now >= tonumber(f[2]) or now >= tonumber(f[3]) then return {} end
if f[5] == ARGV[4] then return {fid, f[1], f[2]} end
if t[2] and t[3] == f[5] and now - tonumber(t[2]) <= tonumber(ARGV[3]) then
  return {fid, f[1], f[2]}
end
return {}
";

/// `KEYS[1]` rt. `ARGV`: prefix, now. → {family id, user id, absolute} (now revoked), or {}.
const REVOKE_FAMILY_OF: &str = r"
local fid = redis.call('HGET', KEYS[1], 'family_id')
if not fid then return {} end
local fk = ARGV[1] .. 'fam:' .. fid
local f = redis.call('HMGET', fk, 'user_id', 'absolute_exp_ms')
if not f[1] then return {} end
redis.call('HSETNX', fk, 'revoked_ms', ARGV[2])
return {fid, f[1], f[2]}
";

/// `KEYS[1]` deny key. `ARGV[1]` exp ms. Keeps the later expiry of two writes.
const DENY_JTI: &str = r"
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
local exp = tonumber(ARGV[1])
if exp > old then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], ARGV[1])
end
return 1
";

/// `KEYS[1]` deny key, `KEYS[2]` user, `KEYS[3]` fam (or an unused key when there is no sid).
/// `ARGV`: now ms, sub, iat, has sid (0/1). → 1 revoked, 0 fine.
const IS_ACCESS_REVOKED: &str = r"
local d = redis.call('GET', KEYS[1])
if d and tonumber(d) > tonumber(ARGV[1]) then return 1 end
local nb = redis.call('HGET', KEYS[2], 'not_before_s')
if not nb then return 1 end
if tonumber(ARGV[3]) < tonumber(nb) then return 1 end
if ARGV[4] == '1' then
  local f = redis.call('HMGET', KEYS[3], 'user_id', 'revoked_ms')
  if not f[1] or f[2] or f[1] ~= ARGV[2] then return 1 end
end
return 0
";

/// `KEYS[1]` counter of one window. `ARGV`: max, window end (ms). → 1 over the limit, 0 fine.
/// `KEYS[1]` ext, `KEYS[2]` uname, `KEYS[3]` user (of the new id).
/// `ARGV`: new id, username, hash, now, prefix.
/// → {id, username, hash, not_before_s} of the linked (or new) user; {} if the name is taken.
/// A link to a user that no longer exists is replaced.
const USER_FOR_IDENTITY: &str = r"
local id = redis.call('GET', KEYS[1])
if id then
  local u = redis.call('HMGET', ARGV[5] .. 'user:' .. id, 'id', 'username', 'password_hash', 'not_before_s')
  if u[1] then return u end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX') == false then return {} end
redis.call('HSET', KEYS[3], 'id', ARGV[1], 'username', ARGV[2], 'password_hash', ARGV[3],
  'not_before_s', '0', 'created_ms', ARGV[4])
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], ARGV[2], ARGV[3], '0'}
";

const RATE_LIMIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return 1 end
return 0
";

/// `KEYS[1]` at. `ARGV`: prefix, now ms, iss. → {sub, sid, jti, iat, exp} of a live opaque
/// access token, or {}: the same checks as `IS_ACCESS_REVOKED`, in the same script, so the
/// record and its revocation state are read in one step.
const LIVE_OPAQUE: &str = r"
local r = redis.call('HMGET', KEYS[1], 'sub', 'sid', 'jti', 'iat', 'exp')
if not r[1] then return {} end
local now = tonumber(ARGV[2])
if now >= tonumber(r[5]) * 1000 then return {} end
local p = ARGV[1]
local d = redis.call('GET', p .. 'deny:' .. string.len(ARGV[3]) .. ':' .. ARGV[3] .. ':' .. r[3])
if d and tonumber(d) > now then return {} end
local nb = redis.call('HGET', p .. 'user:' .. r[1], 'not_before_s')
if not nb or tonumber(r[4]) < tonumber(nb) then return {} end
local f = redis.call('HMGET', p .. 'fam:' .. r[2], 'user_id', 'revoked_ms')
if not f[1] or f[2] or f[1] ~= r[1] then return {} end
return r
";

struct Scripts {
    live_opaque: Script,
    create_user: Script,
    user_by_name: Script,
    user_by_id: Script,
    set_password: Script,
    create_family: Script,
    family_jkt: Script,
    rotate: Script,
    live_family_of: Script,
    revoke_family_of: Script,
    revoke_user: Script,
    deny_jti: Script,
    is_access_revoked: Script,
    rate_limit: Script,
    user_for_identity: Script,
}

impl Scripts {
    fn new() -> Self {
        let set_password =
            format!("redis.call('HSET', KEYS[1], 'password_hash', ARGV[3])\n{REVOKE_USER_BODY}");
        Self {
            live_opaque: Script::new(LIVE_OPAQUE),
            create_user: Script::new(CREATE_USER),
            user_by_name: Script::new(USER_BY_NAME),
            user_by_id: Script::new(USER_BY_ID),
            set_password: Script::new(&set_password),
            create_family: Script::new(CREATE_FAMILY),
            family_jkt: Script::new(FAMILY_JKT),
            rotate: Script::new(ROTATE),
            live_family_of: Script::new(LIVE_FAMILY_OF),
            revoke_family_of: Script::new(REVOKE_FAMILY_OF),
            revoke_user: Script::new(REVOKE_USER_BODY),
            deny_jti: Script::new(DENY_JTI),
            is_access_revoked: Script::new(IS_ACCESS_REVOKED),
            rate_limit: Script::new(RATE_LIMIT),
            user_for_identity: Script::new(USER_FOR_IDENTITY),
        }
    }
}

/// One multiplexed connection to a Redis, opened on first use and shared by every call, and
/// dropped after a connection-level failure so that the next call reconnects instead of
/// failing forever. [`RedisStore`] and the DPoP replay cache
/// ([`RedisReplayCache`](crate::dpop::RedisReplayCache)) each hold one, on the client they
/// were given (for `rediss://`, the one `crate::tls::redis_client` built with the configured
/// CA).
pub(crate) struct LazyConnection {
    client: redis::Client,
    conn: RwLock<Option<MultiplexedConnection>>,
}

impl LazyConnection {
    /// Nothing is connected until the first [`LazyConnection::get`].
    pub(crate) fn new(client: redis::Client) -> Self {
        Self {
            client,
            conn: RwLock::new(None),
        }
    }

    /// The shared connection, opened now (with [`TIMEOUT`] to connect and per command) if
    /// there is none.
    pub(crate) async fn get(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(c) = self.conn.read().await.as_ref() {
            return Ok(c.clone());
        }
        let mut slot = self.conn.write().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// `r`, the answer to a command on [`LazyConnection::get`]'s connection; after a
    /// connection-level failure the connection is dropped first, so the next call reconnects.
    pub(crate) async fn reset_on_error<T>(
        &self,
        r: Result<T, RedisError>,
    ) -> Result<T, RedisError> {
        if let Err(e) = &r {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                *self.conn.write().await = None;
            }
        }
        r
    }

    /// Redis's answer to `PING` (`PONG`), to check the connection at start-up.
    pub(crate) async fn ping(&self) -> Result<String, RedisError> {
        let mut c = self.get().await?;
        let r = redis::cmd("PING").query_async(&mut c).await;
        self.reset_on_error(r).await
    }
}

/// What a Redis keeps of acknowledged writes when Redis itself restarts
/// ([`RedisStore::durability`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `appendonly yes` with `appendfsync everysec` or `always`: a crash of the Redis process
    /// loses nothing acknowledged (with `everysec`, a crash of the whole machine can lose the
    /// last second).
    Aof,
    /// `appendonly yes` but `appendfsync no`: the OS decides when the file reaches the disk.
    AofNoFsync,
    /// No append-only file: no persistence, or snapshots only (`save`), which lose every write
    /// since the last snapshot — sessions come back revoked or not at all, rotations undone.
    Volatile,
}

/// Redis implementation of [`Store`].
pub struct RedisStore {
    /// One multiplexed connection shared by all requests; replaced after a connection error.
    conn: LazyConnection,
    prefix: String,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: not printed.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn utf8(v: Vec<u8>, what: &'static str) -> Result<String, StoreError> {
    String::from_utf8(v).map_err(|_| StoreError::Corrupt(what))
}

fn int(v: Vec<u8>, what: &'static str) -> Result<i64, StoreError> {
    utf8(v, what)?
        .parse()
        .map_err(|_| StoreError::Corrupt(what))
}

fn family(fields: &mut std::vec::IntoIter<Vec<u8>>) -> Result<FamilyRef, StoreError> {
    let mut next = || {
        fields
            .next()
            .ok_or(StoreError::Corrupt("short script reply"))
    };
    Ok(FamilyRef {
        family_id: utf8(next()?, "family id")?,
        user_id: utf8(next()?, "user id")?,
        absolute_exp_ms: int(next()?, "absolute_exp_ms")?,
    })
}

fn user(fields: Vec<Vec<u8>>) -> Result<Option<User>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut it = fields.into_iter();
    let mut next = || it.next().ok_or(StoreError::Corrupt("short user record"));
    Ok(Some(User {
        id: utf8(next()?, "user id")?,
        username: utf8(next()?, "username")?,
        password_hash: utf8(next()?, "password hash")?,
        not_before_s: int(next()?, "not_before_s")?,
    }))
}

impl RedisStore {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`, `redis://:PASSWORD@HOST`, or
    /// `redis+unix:///path/to/socket`) with the default key prefix, and checks the connection.
    ///
    /// # Errors
    /// A bad URL, or Redis is unreachable.
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        Self::connect_with_prefix(url, DEFAULT_PREFIX).await
    }

    /// As [`RedisStore::connect`], with every key under `prefix` (several deployments, or
    /// tests, can share one Redis).
    ///
    /// # Errors
    /// A bad URL, or Redis is unreachable.
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        Self::connect_client(redis::Client::open(url)?, prefix).await
    }

    /// As [`RedisStore::connect_with_prefix`] with a client built by the caller (`rediss://`
    /// with a configured CA: `crate::tls::redis_client`).
    ///
    /// # Errors
    /// Redis is unreachable (or its TLS certificate is not trusted).
    pub async fn connect_client(
        client: redis::Client,
        prefix: &str,
    ) -> Result<RedisStore, StoreError> {
        let store = RedisStore {
            conn: LazyConnection::new(client),
            prefix: prefix.to_owned(),
            scripts: Scripts::new(),
        };
        if store.conn.ping().await? != "PONG" {
            return Err(StoreError::Corrupt("unexpected PING reply"));
        }
        Ok(store)
    }

    /// How this Redis keeps acknowledged writes across a restart of Redis (A4): from
    /// `CONFIG GET appendonly` / `appendfsync`, or `INFO persistence` where `CONFIG` is
    /// disabled (managed services often rename it).
    ///
    /// # Errors
    /// Redis is unreachable, or answers neither command.
    pub async fn durability(&self) -> Result<Durability, StoreError> {
        let mut c = self.conn.get().await?;
        let config: Result<Vec<String>, RedisError> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("append*")
            .query_async(&mut c)
            .await;
        if let Ok(pairs) = config {
            let get = |k: &str| {
                pairs
                    .chunks(2)
                    .find(|p| p.first().is_some_and(|n| n == k))
                    .and_then(|p| p.get(1))
                    .map(String::as_str)
            };
            if let Some(aof) = get("appendonly") {
                return Ok(if aof != "yes" {
                    Durability::Volatile
                } else if get("appendfsync") == Some("no") {
                    Durability::AofNoFsync
                } else {
                    Durability::Aof
                });
            }
        }
        let info: String = self
            .conn
            .reset_on_error(
                redis::cmd("INFO")
                    .arg("persistence")
                    .query_async(&mut c)
                    .await,
            )
            .await?;
        let aof = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("aof_enabled:"))
            .ok_or(StoreError::Corrupt("INFO persistence without aof_enabled"))?;
        Ok(if aof.trim() == "1" {
            Durability::Aof
        } else {
            Durability::Volatile
        })
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut c = self.conn.get().await?;
        let r = inv.invoke_async(&mut c).await;
        Ok(self.conn.reset_on_error(r).await?)
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn rt_key(&self, h: &TokenHash) -> String {
        self.key("rt", &hex(&h.0))
    }

    fn deny_key(&self, iss: &str, jti: &str) -> String {
        // Length-prefixed: no (iss, jti) pair can collide with another.
        self.key("deny", &format!("{}:{iss}:{jti}", iss.len()))
    }
}

#[async_trait]
impl Store for RedisStore {
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
        let mut inv = self.scripts.create_user.prepare_invoke();
        inv.key(self.key("uname", username))
            .key(self.key("user", &user.id))
            .arg(&user.id)
            .arg(username)
            .arg(password_hash)
            .arg(now_ms);
        let created: i64 = self.invoke(inv).await?;
        if created == 1 {
            Ok(user)
        } else {
            Err(StoreError::UserExists)
        }
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let mut inv = self.scripts.user_by_name.prepare_invoke();
        inv.key(self.key("uname", username)).arg(&self.prefix);
        user(self.invoke(inv).await?)
    }

    async fn user_by_id(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        let mut inv = self.scripts.user_by_id.prepare_invoke();
        inv.key(self.key("user", user_id));
        user(self.invoke(inv).await?)
    }

    async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut inv = self.scripts.set_password.prepare_invoke();
        inv.key(self.key("user", user_id))
            .key(self.key("ufams", user_id))
            .arg(&self.prefix)
            .arg(now_ms)
            .arg(password_hash);
        let _: i64 = self.invoke(inv).await?;
        Ok(())
    }

    async fn create_family(&self, f: NewFamily) -> Result<(), StoreError> {
        let mut inv = self.scripts.create_family.prepare_invoke();
        inv.key(self.key("user", &f.user_id))
            .key(self.key("ufams", &f.user_id))
            .key(self.key("fam", &f.family_id))
            .key(self.rt_key(&f.token_hash))
            .arg(&f.family_id)
            .arg(&f.user_id)
            .arg(&f.token_hash.0[..])
            .arg(f.now_ms)
            .arg(f.absolute_exp_ms)
            .arg(f.idle_exp_ms)
            .arg(f.absolute_exp_ms.saturating_add(KEEP_DEAD_MS))
            .arg(&self.prefix)
            .arg(f.dpop_jkt.as_deref().unwrap_or(""));
        let _: i64 = self.invoke(inv).await?;
        Ok(())
    }

    async fn rotate(&self, req: RotateRequest) -> Result<RotateOutcome, StoreError> {
        let mut inv = self.scripts.rotate.prepare_invoke();
        inv.key(self.rt_key(&req.presented))
            .key(self.key("rts", &hex(&req.presented.0)))
            .key(self.rt_key(&req.successor))
            .arg(&self.prefix)
            .arg(&req.presented.0[..])
            .arg(&req.successor.0[..])
            .arg(&req.successor_sealed[..])
            .arg(req.now_ms)
            .arg(req.idle_ttl_ms)
            .arg(KEEP_DEAD_MS);
        let reply: Vec<Vec<u8>> = self.invoke(inv).await?;
        let mut it = reply.into_iter();
        let outcome = it.next().ok_or(StoreError::Corrupt("empty rotate reply"))?;
        Ok(match outcome.as_slice() {
            b"unknown" => RotateOutcome::Unknown,
            b"rotated" => RotateOutcome::Rotated(family(&mut it)?),
            b"reuse" => RotateOutcome::Reuse(family(&mut it)?),
            b"dead" => RotateOutcome::Dead(family(&mut it)?),
            b"grace" => {
                let family = family(&mut it)?;
                let successor: [u8; 32] = it
                    .next()
                    .and_then(|v| v.try_into().ok())
                    .ok_or(StoreError::Corrupt("successor hash"))?;
                let sealed: [u8; 32] = it
                    .next()
                    .and_then(|v| v.try_into().ok())
                    .ok_or(StoreError::Corrupt("sealed successor"))?;
                RotateOutcome::Grace {
                    family,
                    successor: TokenHash(successor),
                    sealed,
                }
            }
            _ => return Err(StoreError::Corrupt("unknown rotate outcome")),
        })
    }

    async fn live_family_of(
        &self,
        token: &TokenHash,
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<Option<FamilyRef>, StoreError> {
        let mut inv = self.scripts.live_family_of.prepare_invoke();
        inv.key(self.rt_key(token))
            .arg(&self.prefix)
            .arg(now_ms)
            .arg(grace_ms)
            .arg(&token.0[..]);
        let reply: Vec<Vec<u8>> = self.invoke(inv).await?;
        if reply.is_empty() {
            return Ok(None);
        }
        family(&mut reply.into_iter()).map(Some)
    }

    async fn family_jkt(&self, token: &TokenHash) -> Result<Option<String>, StoreError> {
        let mut inv = self.scripts.family_jkt.prepare_invoke();
        inv.key(self.rt_key(token)).arg(&self.prefix);
        let jkt: Option<String> = self.invoke(inv).await?;
        Ok(jkt.filter(|j| !j.is_empty()))
    }

    async fn revoke_family_of(
        &self,
        token: &TokenHash,
        now_ms: i64,
    ) -> Result<Option<FamilyRef>, StoreError> {
        let mut inv = self.scripts.revoke_family_of.prepare_invoke();
        inv.key(self.rt_key(token)).arg(&self.prefix).arg(now_ms);
        let reply: Vec<Vec<u8>> = self.invoke(inv).await?;
        if reply.is_empty() {
            return Ok(None);
        }
        family(&mut reply.into_iter()).map(Some)
    }

    async fn revoke_user(&self, user_id: &str, now_ms: i64) -> Result<u64, StoreError> {
        let mut inv = self.scripts.revoke_user.prepare_invoke();
        inv.key(self.key("user", user_id))
            .key(self.key("ufams", user_id))
            .arg(&self.prefix)
            .arg(now_ms);
        let n: i64 = self.invoke(inv).await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative count"))
    }

    async fn deny_jti(&self, iss: &str, jti: &str, exp_ms: i64) -> Result<(), StoreError> {
        let mut inv = self.scripts.deny_jti.prepare_invoke();
        inv.key(self.deny_key(iss, jti)).arg(exp_ms);
        let _: i64 = self.invoke(inv).await?;
        Ok(())
    }

    async fn is_access_revoked(&self, q: AccessCheck<'_>, now_ms: i64) -> Result<bool, StoreError> {
        let mut inv = self.scripts.is_access_revoked.prepare_invoke();
        inv.key(self.deny_key(q.iss, q.jti))
            .key(self.key("user", q.sub))
            .key(self.key("fam", q.sid.unwrap_or("")))
            .arg(now_ms)
            .arg(q.sub)
            .arg(q.iat)
            .arg(if q.sid.is_some() { "1" } else { "0" });
        let r: i64 = self.invoke(inv).await?;
        Ok(r != 0)
    }

    async fn put_opaque(&self, hash: &TokenHash, rec: &OpaqueRecord) -> Result<(), StoreError> {
        let key = self.key("at", &hex(&hash.0));
        let mut c = self.conn.get().await?;
        let r: Result<(), RedisError> = redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("sub", rec.sub.clone()),
                    ("sid", rec.sid.clone()),
                    ("jti", rec.jti.clone()),
                    ("iat", rec.iat.to_string()),
                    ("exp", rec.exp.to_string()),
                ],
            )
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&key)
            .arg(rec.exp.saturating_mul(1000))
            .ignore()
            .query_async(&mut c)
            .await;
        Ok(self.conn.reset_on_error(r).await?)
    }

    async fn live_opaque(
        &self,
        hash: &TokenHash,
        iss: &str,
        now_ms: i64,
    ) -> Result<Option<OpaqueRecord>, StoreError> {
        let mut inv = self.scripts.live_opaque.prepare_invoke();
        inv.key(self.key("at", &hex(&hash.0)))
            .arg(&self.prefix)
            .arg(now_ms)
            .arg(iss);
        let fields: Vec<Vec<u8>> = self.invoke(inv).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let mut it = fields.into_iter();
        let mut next = || {
            it.next()
                .ok_or(StoreError::Corrupt("short access-token record"))
        };
        Ok(Some(OpaqueRecord {
            sub: utf8(next()?, "sub")?,
            sid: utf8(next()?, "sid")?,
            jti: utf8(next()?, "jti")?,
            iat: int(next()?, "iat")?,
            exp: int(next()?, "exp")?,
        }))
    }

    async fn user_for_identity(
        &self,
        issuer: &str,
        subject: &str,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        let id = random_id();
        let mut inv = self.scripts.user_for_identity.prepare_invoke();
        // Length-prefixed like the denylist key: no (iss, sub) pair collides with another.
        inv.key(self.key("ext", &format!("{}:{issuer}:{subject}", issuer.len())))
            .key(self.key("uname", username))
            .key(self.key("user", &id))
            .arg(&id)
            .arg(username)
            .arg(password_hash)
            .arg(now_ms)
            .arg(&self.prefix);
        user(self.invoke(inv).await?).and_then(|u| u.ok_or(StoreError::UserExists))
    }

    async fn purge(&self, _now_ms: i64, _grace_ms: i64) -> Result<(), StoreError> {
        // Redis expires every key on its own (see the module docs).
        Ok(())
    }

    async fn rate_limit(
        &self,
        bucket: &str,
        key: &str,
        limit: Limit,
        now_ms: i64,
    ) -> Result<SharedLimit, StoreError> {
        let window = i64::try_from(limit.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let start = now_ms.div_euclid(window).saturating_mul(window);
        let end = start.saturating_add(window);
        let mut inv = self.scripts.rate_limit.prepare_invoke();
        inv.key(self.key("rl", &format!("{bucket}:{start}:{key}")))
            .arg(limit.max)
            .arg(end);
        let over: i64 = self.invoke(inv).await?;
        if over == 0 {
            return Ok(SharedLimit::Allowed);
        }
        let left_ms = u64::try_from(end.saturating_sub(now_ms)).unwrap_or(0);
        Ok(SharedLimit::Limited(left_ms.div_ceil(1000).max(1)))
    }
}
