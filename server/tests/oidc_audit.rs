//! OIDC sign-in in the logs: the audit events are there (`oidc_login`, `oidc_failed` with its
//! code) and no log line at any level (TRACE included) holds the client secret, the
//! authorization code, `state`, `nonce`, the transaction cookie, the provider's tokens or our
//! refresh cookie.
//!
//! One test in this file: it installs the process-wide tracing subscriber.

mod common;
mod oidc_fake;

use axum::http::{header, StatusCode};
use common::*;
use oidc_fake::*;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_is_audited_without_secrets() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber in this test binary");

    let p = provider().await;
    p.add_key("k1");
    let t = app(&p).await;
    use base64::Engine as _;
    // The secret as the token request carries it too (HTTP Basic).
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{SECRET}"));
    let mut secrets: Vec<String> = vec![SECRET.into(), basic, ACCESS.into(), "c0de".into()];

    // A successful sign-in.
    let s = start(&t).await;
    let id_token = es256(&p.key("k1"), "k1", &claims(&p, &t, "ada", &s.nonce));
    p.answer(id_token.clone());
    let r = callback(&t, &s).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let refresh = cookie_value(&r).unwrap();
    secrets.extend([
        id_token,
        s.nonce.clone(),
        s.state.clone(),
        s.cookie.split_once('=').unwrap().1.to_owned(),
        refresh,
    ]);
    // A refused one (state mismatch) and a replay.
    let s2 = start(&t).await;
    secrets.extend([
        s2.state.clone(),
        s2.nonce.clone(),
        s2.cookie.split_once('=').unwrap().1.to_owned(),
    ]);
    let r = t
        .send(
            axum::http::Request::get("/auth/oidc/idp/callback?code=c0de&state=wrong")
                .header(header::COOKIE, &s2.cookie)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(callback(&t, &s).await.status(), StatusCode::BAD_REQUEST);

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    for needle in [
        "event=\"oidc_login\"",
        "code=\"state_mismatch\"",
        "code=\"transaction_replayed\"",
    ] {
        assert!(
            logs.contains(needle),
            "{needle} missing from the logs:\n{logs}"
        );
    }
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret ({secret}) is in the logs:\n{logs}"
        );
    }
}
