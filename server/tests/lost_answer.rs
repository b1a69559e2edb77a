//! A3 with the real binary: `kill -9` right after a committed rotation whose answer the client
//! never used, a restart after the grace window, and the client's old cookie still works once.
//! The window is shortened with `--grace 1s` so the test waits 3 s, not a minute.

mod common;

use authfetch_protocol::{CSRF_HEADER, LOGIN_PATH, REFRESH_COOKIE, REFRESH_PATH};
use common::process::ServerProcess;
use std::path::Path;
use std::time::Duration;

/// The server as the test runs it: demo user, a 1-second grace window.
fn start(data_dir: &Path) -> ServerProcess {
    ServerProcess::start(data_dir, &["--demo", "--grace", "1s"], &[])
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
    let server = start(&data);
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
    let server = start(&data);
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
