//! `--oidc-config` on the real binary: the client secret comes from the environment (or a file),
//! the providers are served, and the secret never reaches the logs; a missing secret or an http
//! issuer without `--oidc-allow-insecure-issuer` stops the server at start with a clear message.

mod common;

use common::process::ServerProcess;
use std::path::Path;
use std::process::{Command, Stdio};
const SECRET: &str = "s3cret-from-the-environment-9d1f";

fn write_config(dir: &Path, issuer: &str) -> std::path::PathBuf {
    let path = dir.join("oidc.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"public_url": "http://localhost:8080", "providers": [
              {{"name": "google", "label": "Google", "issuer": "{issuer}",
                "client_id": "id.apps.googleusercontent.com", "client_secret_env": "AUTHFETCH_TEST_OIDC_SECRET"}},
              {{"name": "corp", "issuer": "http://127.0.0.1:9", "client_id": "authfetch"}}]}}"#
        ),
    )
    .unwrap();
    path
}

fn command(dir: &Path, config: &Path) -> Command {
    let mut c = ServerProcess::command();
    c.arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--oidc-config")
        .arg(config)
        .env("RUST_LOG", "trace")
        .env_remove("AUTHFETCH_TEST_OIDC_SECRET")
        .stdin(Stdio::null());
    c
}

#[tokio::test]
async fn providers_from_the_config_file_with_the_secret_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "https://accounts.google.com");
    let mut command = command(dir.path(), &config);
    command
        .arg("--oidc-allow-insecure-issuer")
        .env("AUTHFETCH_TEST_OIDC_SECRET", SECRET);
    let server = ServerProcess::spawn(command, &dir.path().join("stderr.log"));
    let base = server.base.clone();
    // reqwest is built with `rustls-no-provider` (the server picks ring itself): a test's plain
    // client needs the process-wide provider installed first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = reqwest::get(format!("{base}/auth/oidc/providers"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        list,
        serde_json::json!([{"name": "corp", "label": "corp"}, {"name": "google", "label": "Google"}])
    );
    // Stopped first, so that everything it logged is in the file.
    let log = server.log.clone();
    drop(server);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("listening"), "{logs}");
    assert!(
        !logs.contains(SECRET),
        "the client secret is in the logs:\n{logs}"
    );
}

#[test]
fn a_missing_secret_or_an_http_issuer_without_the_flag_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // The secret's variable is not set.
    let config = write_config(dir.path(), "https://accounts.google.com");
    let out = command(dir.path(), &config)
        .arg("--oidc-allow-insecure-issuer")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AUTHFETCH_TEST_OIDC_SECRET is not set"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // The secret is there, but "corp" is an http issuer and the flag is missing.
    let out = command(dir.path(), &config)
        .env("AUTHFETCH_TEST_OIDC_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corp") && err.contains("https"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
}
