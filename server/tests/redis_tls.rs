//! `rediss://`: the session store over TLS against a real `redis-server --tls-port` on loopback,
//! whose certificate a CA generated here signed. Debian's redis-server is built with TLS; a
//! missing redis-server fails these tests (never skips): `scripts/bootstrap.sh` installs it.

mod common;

use authfetch_server::config::StoreKind;
use authfetch_server::tls::{redis_client, TlsError};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A TLS-only redis-server (`--port 0`) on a free loopback port; killed when dropped.
struct TlsRedis {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let write = |name: &str, body: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        let ca_file = write("ca.pem", ca.pem());
        let cert_file = write("redis.crt", cert.pem());
        let key_file = write("redis.key", key.serialize_pem());
        // A free port: bound and released; redis-server takes it right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port"])
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(&cert_file)
            .arg("--tls-key-file")
            .arg(&key_file)
            .arg("--tls-ca-cert-file")
            .arg(&ca_file)
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `redis-server` ({e}): run scripts/bootstrap.sh")
            });
        let mut r = TlsRedis { child, dir, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = r.child.try_wait().unwrap() {
                panic!("redis-server exited early ({status}): was it built without TLS?");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server not listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r.port = port;
        r
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

async fn open(url: String, ca_file: Option<PathBuf>) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.store = StoreKind::Redis(url);
    c.redis_ca_file = ca_file;
    tokio::time::timeout(Duration::from_secs(15), authfetch_server::open_store(&c))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn rediss_with_the_configured_ca_keeps_sessions_in_redis() {
    let redis = TlsRedis::start();
    let (url, ca_file) = (redis.url(), redis.ca_file());
    let t = TestApp::with(|c| {
        c.store = StoreKind::Redis(url);
        c.redis_ca_file = Some(ca_file);
    })
    .await;
    let s = t.login("alice", "alice-password").await;
    let r = t.refresh(&s.cookie).await;
    assert_eq!(r.status(), axum::http::StatusCode::OK);
    assert_eq!(t.me(&s.access).await.status(), axum::http::StatusCode::OK);
    // The sessions are in that Redis: a second instance over TLS sees the rotated cookie.
    let second = TestApp::attach(t.config.clone(), t.clock.clone()).await;
    let rotated = cookie_value(&r).unwrap();
    assert_eq!(
        second.refresh(&rotated).await.status(),
        axum::http::StatusCode::OK
    );
}

#[tokio::test]
async fn rediss_refuses_a_certificate_its_roots_do_not_hold_and_plain_redis_gets_nowhere() {
    let redis = TlsRedis::start();
    // The system's roots do not hold the test CA.
    let e = open(redis.url(), None).await.unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // Another CA does not vouch for it either.
    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other.path(), ca().pem()).unwrap();
    let e = open(redis.url(), Some(other.path().to_owned()))
        .await
        .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // The right CA works (so the failures above are about trust, not the server).
    open(redis.url(), Some(redis.ca_file())).await.unwrap();
    // Plain text to the TLS port: no store.
    let plain = redis.url().replace("rediss://", "redis://");
    assert!(open(plain, None).await.is_err());
}

#[test]
fn unusable_ca_files_and_urls_are_clear_start_up_errors() {
    let missing = Path::new("/nonexistent/ca.pem");
    let e = redis_client("rediss://127.0.0.1:1", Some(missing)).unwrap_err();
    assert!(matches!(e, TlsError::CaFile { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    let junk = tempfile::NamedTempFile::new().unwrap();
    for body in [
        "",
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    ] {
        std::fs::write(junk.path(), body).unwrap();
        let e = redis_client("rediss://127.0.0.1:1", Some(junk.path())).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate(_)), "{body:?}: {e}");
    }
    std::fs::write(junk.path(), ca().pem()).unwrap();
    let e = redis_client("redis://127.0.0.1:1", Some(junk.path())).unwrap_err();
    assert!(e.to_string().contains("rediss://"), "{e}");
    // The flag is refused without a rediss:// store.
    use clap::Parser as _;
    let cli = authfetch_server::cli::Cli::try_parse_from([
        "authfetch-server",
        "--redis-url",
        "redis://127.0.0.1:6379",
        "--redis-ca-file",
        "/tmp/ca.pem",
    ])
    .unwrap();
    assert!(cli.config().unwrap_err().contains("rediss://"));
    let cli = authfetch_server::cli::Cli::try_parse_from([
        "authfetch-server",
        "--store",
        "rediss://:secret@127.0.0.1:6379",
    ])
    .unwrap();
    assert!(cli.config().is_ok(), "rediss:// is a store URL");
}
