//! The `authfetch-server` binary on real sockets: `user add` (password on stdin), environment
//! variables, `keys rotate`, `--redis-url` with two processes sharing one Redis, graceful
//! shutdown on SIGTERM, and what the real process logs.

mod common;

use authfetch_protocol::{CSRF_HEADER, JWKS_PATH, LOGIN_PATH, REFRESH_COOKIE, REFRESH_PATH};
use common::process::{ServerProcess, BIN};
use common::RedisServer;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

type Proc = ServerProcess;

fn cli(data_dir: &Path, args: &[&str], stdin: &str, envs: &[(&str, &str)]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env("AUTHFETCH_DATA_DIR", data_dir)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn authfetch-server");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

struct Reply {
    status: u16,
    cookie: Option<String>,
    body: serde_json::Value,
}

async fn post(url: &str, cookie: Option<&str>, body: Option<serde_json::Value>) -> Reply {
    let client = common::http_client();
    let mut req = client.post(url).header(CSRF_HEADER, "1");
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{REFRESH_COOKIE}={c}"));
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let v = c
                .strip_prefix(&format!("{REFRESH_COOKIE}="))?
                .split(';')
                .next()?;
            (!v.is_empty()).then(|| v.to_owned())
        });
    let bytes = r.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        cookie,
        body,
    }
}

async fn get(url: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = common::http_client().get(url);
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn kid_of(token: &str) -> String {
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn login_body(u: &str, p: &str) -> serde_json::Value {
    serde_json::json!({"username": u, "password": p})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_user_add_reads_stdin_env_vars_configure_the_server_and_sigterm_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = cli(&data, &["user", "add", "carol"], "carol-pass-123\n", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("created user carol"));
    // Taken names and empty passwords are refused with a message and a failure status.
    let out = cli(&data, &["user", "add", "carol"], "other\n", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("user already exists"));
    let out = cli(&data, &["user", "add", "dave"], "\n", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty password"));

    let p = Proc::start(
        &data,
        &[],
        &[
            ("AUTHFETCH_ACCESS_TTL", "5s"),
            ("AUTHFETCH_DEBUG_STATS", "true"),
        ],
    );
    let r = post(
        &p.url(LOGIN_PATH),
        None,
        Some(login_body("carol", "carol-pass-123")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let expires_in = r.body["expires_in"].as_u64().unwrap();
    assert!(
        (4..=5).contains(&expires_in),
        "AUTHFETCH_ACCESS_TTL applied: {expires_in}"
    );
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let cookie = r.cookie.unwrap();
    let (status, me) = get(&p.url("/api/me"), Some(&access)).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "carol");
    let r = post(&p.url(REFRESH_PATH), Some(&cookie), None).await;
    assert_eq!(r.status, 200);
    let (status, stats) = get(&p.url("/debug/stats"), None).await;
    assert_eq!(status, 200, "AUTHFETCH_DEBUG_STATS applied");
    assert_eq!(stats["refresh"], 1);
    assert_eq!(stats["login"], 1);
    // Wrong password: rate limits see the real peer IP.
    let r = post(
        &p.url(LOGIN_PATH),
        None,
        Some(login_body("carol", "nope-nope")),
    )
    .await;
    assert_eq!(r.status, 401);

    let logs = p.logs();
    let status = p.terminate();
    assert!(status.success(), "graceful exit on SIGTERM: {status}");
    assert!(logs.contains("event=\"login\""), "{logs}");
    assert!(logs.contains("ip=127.0.0.1"), "{logs}");
    assert!(logs.contains("event=\"login_failed\""), "{logs}");
    for secret in ["carol-pass-123", "nope-nope", &access, &cookie] {
        assert!(!logs.contains(secret), "secret in the server log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keys_rotate_publishes_before_use_and_keeps_the_old_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let login = |p: &Proc| {
        let url = p.url(LOGIN_PATH);
        async move {
            let r = post(&url, None, Some(login_body("alice", "alice-password"))).await;
            assert_eq!(r.status, 200);
            r.body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let kids = |jwks: &serde_json::Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let p = Proc::start(&data, &["--demo"], &[]);
    let (_, jwks) = get(&p.url(JWKS_PATH), None).await;
    let old_kid = kids(&jwks).remove(0);
    assert_eq!(kids(&jwks).len(), 1);
    let old_token = login(&p).await;
    assert!(p.terminate().success());

    // Default: the next key is published at once and signs only after the lead (J12).
    let out = cli(&data, &["keys", "rotate"], "", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let next_kid = stdout
        .trim()
        .strip_prefix("new key ")
        .and_then(|r| r.split_once(' '))
        .unwrap_or_else(|| panic!("{stdout}"))
        .0
        .to_owned();
    let p = Proc::start(&data, &["--demo"], &[]);
    let (_, jwks) = get(&p.url(JWKS_PATH), None).await;
    assert_eq!(kids(&jwks), vec![old_kid.clone(), next_kid.clone()]);
    let t = login(&p).await;
    assert_eq!(kid_of(&t), old_kid, "still the old key during the lead");
    assert!(p.terminate().success());

    // --lead 0: active at once; every earlier key stays published.
    let out = cli(&data, &["keys", "rotate", "--lead", "0"], "", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let new_kid = stdout
        .trim()
        .strip_prefix("new active key ")
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    let p = Proc::start(&data, &["--demo"], &[]);
    let (_, jwks) = get(&p.url(JWKS_PATH), None).await;
    let published = kids(&jwks);
    for k in [&old_kid, &next_kid, &new_kid] {
        assert!(published.contains(k), "{k} missing from {published:?}");
    }
    let token = login(&p).await;
    assert_eq!(kid_of(&token), new_kid, "new tokens use the new key");
    assert_eq!(
        get(&p.url("/api/me"), Some(&old_token)).await.0,
        200,
        "old tokens still verify"
    );
    assert_eq!(get(&p.url("/api/me"), Some(&t)).await.0, 200);
    assert_eq!(get(&p.url("/api/me"), Some(&token)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_redis_url_env_two_processes_share_sessions() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [("AUTHFETCH_REDIS_URL", redis.url.as_str())];
    let out = cli(&data, &["user", "add", "erin"], "erin-pass-456\n", &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two processes: one data dir (the shared signing keys), one Redis (the shared sessions).
    let a = Proc::start(&data, &[], &env);
    let b = Proc::start(&data, &["--redis-url", &redis.url], &[]);
    let r = post(
        &a.url(LOGIN_PATH),
        None,
        Some(login_body("erin", "erin-pass-456")),
    )
    .await;
    assert_eq!(r.status, 200, "user added through Redis: {}", r.body);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let c0 = r.cookie.unwrap();
    assert_eq!(get(&b.url("/api/me"), Some(&access)).await.0, 200);
    let r = post(&b.url(REFRESH_PATH), Some(&c0), None).await;
    assert_eq!(r.status, 200, "refresh on B of a login on A");
    let c1 = r.cookie.unwrap();
    let r = post(&a.url(REFRESH_PATH), Some(&c0), None).await;
    assert_eq!(r.status, 200, "the parent within grace, on A");
    assert_eq!(
        r.cookie.as_deref(),
        Some(c1.as_str()),
        "same successor across processes"
    );
    // Logout on B; A sees it.
    let r = post(&b.url(authfetch_protocol::LOGOUT_PATH), Some(&c1), None).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        post(&a.url(REFRESH_PATH), Some(&c1), None).await.status,
        401
    );
    assert_eq!(get(&a.url("/api/me"), Some(&access)).await.0, 401);
    // The Redis URL never reaches the logs in a form with a password (none here), and
    // sessions never do.
    for secret in ["erin-pass-456", &c0, &c1, &access] {
        assert!(!a.logs().contains(secret) && !b.logs().contains(secret));
    }
}

#[test]
fn cli_rejects_bad_flags_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (&["--store", "mysql://x"][..], "--store must be"),
        (
            &["--store", "rediss+x://:hunter2@db:6380"][..],
            "--store must be",
        ),
        // rediss:// is a store URL now; an unreachable one is a start-up error without the
        // password.
        (
            &["--store", "rediss://:hunter2@127.0.0.1:1"][..],
            "store: redis",
        ),
        (
            &["--redis-ca-file", "/nonexistent/ca.pem"][..],
            "--redis-ca-file needs a rediss://",
        ),
        (&["--cors-origin", "*"][..], "--cors-origin \"*\""),
        (
            &["--access-tokens", "opaque", "--dpop", "required"][..],
            "--dpop required needs JWT access tokens",
        ),
        (
            &["--allowed-origin", "https://App.example.com:443"][..],
            "did you mean https://app.example.com?",
        ),
        (
            &["--trusted-proxy", "0.0.0.0/0"][..],
            "trusts every address",
        ),
        (
            &["--redis-url", "http://x"][..],
            "--redis-url must start with",
        ),
        (&["--access-ttl", "0"][..], "at least 1s"),
        (
            &["--dpop-replay-capacity", "0"][..],
            "--dpop-replay-capacity must be at least 1",
        ),
        (&["--dpop-replay-capacity", "lots"][..], "invalid value"),
        (&["--grace", "ten"][..], "invalid duration"),
        (&["--alg", "HS256"][..], "invalid value"),
    ] {
        let out = cli(tmp.path(), args, "", &[]);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("hunter2"), "a password echoed: {err}");
    }
}

/// A login POST with extra headers; the status.
async fn login_with(url: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = common::http_client()
        .post(url)
        .header(CSRF_HEADER, "1")
        .header("content-type", "application/json")
        .body(login_body("nobody", "wrong-password").to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_allowed_origin_adds_to_the_defaults_and_the_effective_lists_are_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Proc::start(
        &tmp.path().join("data"),
        &[
            "--allowed-origin",
            "http://localhost:5173",
            "--cors-origin",
            "http://app.localhost:5174",
        ],
        &[],
    );
    let port = p.base.rsplit(':').next().unwrap().to_owned();
    let login = p.url(LOGIN_PATH);
    // The dev server's origin and the server's own (default) origins are all accepted: the
    // wrong password gets 401, not 403.
    for origin in [
        "http://localhost:5173".to_owned(),
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let s = login_with(
            &login,
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        )
        .await;
        assert_eq!(s, 401, "{origin}");
    }
    assert_eq!(
        login_with(&login, &[("origin", "http://127.0.0.1:5173")]).await,
        403
    );
    let logs = p.logs();
    let start = logs
        .lines()
        .find(|l| l.contains("origins allowed on cookie POSTs"))
        .unwrap_or_else(|| panic!("no start-up line: {logs}"));
    for want in [
        "http://localhost:5173".to_owned(),
        format!("http://127.0.0.1:{port}"),
        "http://app.localhost:5174".to_owned(),
    ] {
        assert!(start.contains(&want), "{want} not in {start}");
    }
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("cross-origin cookie POST refused")
            && l.contains("\"http://127.0.0.1:5173\"")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_trusted_proxy_puts_the_forwarded_client_address_in_the_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let xff = [("x-forwarded-for", "198.51.100.1, 203.0.113.9")];
    // No trusted proxy: the header is ignored, the peer is the client.
    let plain = Proc::start(&tmp.path().join("a"), &[], &[]);
    assert_eq!(login_with(&plain.url(LOGIN_PATH), &xff).await, 401);
    let logs = plain.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("login_failed"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("ip=127.0.0.1"), "{line}");
    assert!(!logs.contains("203.0.113.9") && !logs.contains("198.51.100.1"));
    // Loopback trusted: the rightmost untrusted hop, never the client's own first entry.
    let proxied = Proc::start(
        &tmp.path().join("b"),
        &["--trusted-proxy", "127.0.0.0/8"],
        &[],
    );
    assert_eq!(login_with(&proxied.url(LOGIN_PATH), &xff).await, 401);
    let logs = proxied.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("login_failed"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("ip=203.0.113.9"), "{line}");
    assert!(!logs.contains("198.51.100.1"), "{logs}");
}
