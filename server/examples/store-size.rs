//! Store size per 10,000 sessions (BENCHMARKS.md §6), for each access-token mode.
//!
//! A session is what a login leaves in the store: the user's refresh family with its current
//! refresh-token hash. The JWT modes (`stateless`, `checked`) store nothing per access token
//! until a logout denylists its `jti`; the `opaque` mode stores one hashed record per access
//! token it issues, so it is measured with one live access token per session.
//!
//!   cargo run --release -p authfetch-server --example store-size -- sqlite
//!   cargo run --release -p authfetch-server --example store-size -- redis redis://127.0.0.1:PORT
//!
//! SQLite: the database file and its WAL after the store is dropped, minus the empty
//! store's. Redis: `used_memory` from `INFO memory`, minus the empty store's (a fresh,
//! otherwise unused Redis, with `appendonly yes`).
use authfetch_server::secret::RefreshToken;
use authfetch_server::store::{NewFamily, OpaqueRecord, Store};
use std::sync::Arc;

const N: usize = 10_000;
const DAY_MS: i64 = 86_400_000;

fn id() -> String {
    RefreshToken::generate().secret()[..22].to_owned()
}

async fn fill(store: &Arc<dyn Store>, opaque: bool) {
    let now = 1_800_000_000_000_i64;
    let user = store
        .create_user(
            &format!("user-{}", id()),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            now,
        )
        .await
        .expect("user");
    for _ in 0..N {
        let family_id = id();
        store
            .create_family(NewFamily {
                family_id: family_id.clone(),
                user_id: user.id.clone(),
                token_hash: RefreshToken::generate().hash(),
                now_ms: now,
                absolute_exp_ms: now + 30 * DAY_MS,
                idle_exp_ms: now + 7 * DAY_MS,
                dpop_jkt: None,
            })
            .await
            .expect("family");
        if opaque {
            store
                .put_opaque(
                    &RefreshToken::generate().hash(),
                    &OpaqueRecord {
                        sub: user.id.clone(),
                        sid: family_id,
                        jti: id(),
                        iat: now / 1000,
                        exp: now / 1000 + 900,
                    },
                )
                .await
                .expect("opaque");
        }
    }
}

async fn redis_used_memory(url: &str) -> i64 {
    let client = redis::Client::open(url).expect("url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut c)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for opaque in [false, true] {
        let label = if opaque {
            "opaque (one live access token per session)"
        } else {
            "stateless / checked"
        };
        let bytes = match args.first().map(String::as_str) {
            Some("sqlite") => {
                let size = |dir: &std::path::Path| -> i64 {
                    std::fs::read_dir(dir)
                        .expect("dir")
                        .filter_map(Result::ok)
                        .filter(|e| {
                            e.file_name()
                                .to_string_lossy()
                                .starts_with(authfetch_server::store::sqlite::DB_FILE)
                        })
                        .map(|e| e.metadata().map_or(0, |m| m.len() as i64))
                        .sum()
                };
                let dir = tempfile::tempdir().expect("tempdir");
                let empty = {
                    let s: Arc<dyn Store> = Arc::new(
                        authfetch_server::store::sqlite::SqliteStore::open(dir.path())
                            .expect("open"),
                    );
                    drop(s);
                    size(dir.path())
                };
                {
                    let s: Arc<dyn Store> = Arc::new(
                        authfetch_server::store::sqlite::SqliteStore::open(dir.path())
                            .expect("open"),
                    );
                    fill(&s, opaque).await;
                }
                // The store's threads checkpoint and close on drop; give them a moment.
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                size(dir.path()) - empty
            }
            Some("redis") => {
                let url = args.get(1).expect("redis URL");
                let prefix = format!("size-{}", id());
                let before = redis_used_memory(url).await;
                let s: Arc<dyn Store> = Arc::new(
                    authfetch_server::store::redis::RedisStore::connect_with_prefix(url, &prefix)
                        .await
                        .expect("redis store"),
                );
                fill(&s, opaque).await;
                redis_used_memory(url).await - before
            }
            _ => {
                eprintln!("usage: store-size sqlite | store-size redis redis://127.0.0.1:PORT");
                std::process::exit(2);
            }
        };
        println!(
            "{label}: {bytes} bytes per {N} sessions ({} bytes per session)",
            bytes / N as i64
        );
    }
}
