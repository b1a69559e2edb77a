//! A3 with the real binary: `kill -9` right after a committed rotation whose answer the client
//! never used, a restart after the grace window, and the client's old cookie still works once.
//! The window is shortened with `--grace 1s` so the test waits 3 s, not a minute.

mod common;

use authfetch_protocol::{CSRF_HEADER, LOGIN_PATH, REFRESH_COOKIE, REFRESH_PATH};
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_authfetch-server");

struct Proc {
    child: Child,
    base: String,
}

impl Proc {
    fn start(data_dir: &Path) -> Proc {
        let mut child = Command::new(BIN)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--www",
                "/nonexistent",
                "--pkg",
                "/nonexistent",
                "--demo",
                "--grace",
                "1s",
            ])
            .env_remove("RUST_LOG")
            .env("AUTHFETCH_DATA_DIR", data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn authfetch-server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("authfetch-server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Proc { child, base }
    }

    fn kill_9(mut self) {
        let ok = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -9");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs to `path` with the CSRF header: (status, refresh cookie set, if any).
async fn post(
    base: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> (u16, Option<String>) {
    let mut req = common::http_client()
        .post(format!("{base}{path}"))
        .header(CSRF_HEADER, "1");
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{REFRESH_COOKIE}={c}"));
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let r = req.send().await.expect("request");
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
    (r.status().as_u16(), cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a3_kill_9_after_a_committed_rotation_and_a_restart_past_the_grace_window_keep_the_session()
{
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Proc::start(&data);
    let (status, s0) = post(
        &server.base,
        LOGIN_PATH,
        None,
        Some(r#"{"username":"alice","password":"alice-password"}"#),
    )
    .await;
    assert_eq!(status, 200);
    let s0 = s0.expect("login cookie");
    // The rotation commits; the client never stores its answer (say, the tab was closed or
    // the connection broke), and the server dies right after.
    let (status, lost) = post(&server.base, REFRESH_PATH, Some(&s0), None).await;
    assert_eq!(status, 200);
    let lost = lost.expect("rotated cookie");
    server.kill_9();
    // Down for longer than the grace window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = Proc::start(&data);
    let (status, again) = post(&server.base, REFRESH_PATH, Some(&s0), None).await;
    assert_eq!(status, 200, "the old cookie still works");
    assert_eq!(
        again.as_deref(),
        Some(lost.as_str()),
        "with the same successor"
    );
    // The client goes on with it; from then on the old cookie is spent (reuse).
    let (status, next) = post(&server.base, REFRESH_PATH, Some(&lost), None).await;
    assert_eq!(status, 200);
    assert!(next.is_some());
    let (status, cleared) = post(&server.base, REFRESH_PATH, Some(&s0), None).await;
    assert_eq!(status, 401, "once only");
    assert_eq!(cleared, None);
}
