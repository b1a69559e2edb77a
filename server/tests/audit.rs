//! Structured audit logs: every security event is logged under `authfetch::audit`, and no log
//! line at any level (TRACE included) ever contains a token, a cookie value, a password, a
//! password hash or private key material.
//!
//! This file holds a single test because it installs the process-wide tracing subscriber (so
//! events from every thread, including the blocking pool, are captured).

mod common;

use authfetch_protocol::{LOGOUT_ALL_PATH, LOGOUT_PATH};
use authfetch_server::secret::Password;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_are_logged_without_tokens_or_passwords() {
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

    let t = TestApp::new().await;
    let mut secrets: Vec<String> = vec![
        "alice-password".into(),
        "bob-password".into(),
        "new-password-7f3a".into(),
        "wrong-password-xyz".into(),
        "oops-my-password-42".into(),
    ];

    // login, login_failed (twice: wrong password, and a password typed into the name field)
    let s0 = t.login("alice", "alice-password").await;
    for (user, pw) in [
        ("alice", "wrong-password-xyz"),
        ("oops-my-password-42", "x"),
    ] {
        assert_eq!(
            t.send(login_req(user, pw)).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // refresh, refresh_grace, reuse_detected
    let r = t.refresh(&s0.cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    let c1 = cookie_value(&r).unwrap();
    let a1 = json(r).await["access_token"].as_str().unwrap().to_owned();
    let r = t.refresh(&s0.cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    let a1b = json(r).await["access_token"].as_str().unwrap().to_owned();
    // Once the successor has been used, the parent is reuse (before that it would still get
    // the successor: a lost answer is not a theft signal).
    let r = t.refresh(&c1).await;
    assert_eq!(r.status(), StatusCode::OK);
    let c2 = cookie_value(&r).unwrap();
    t.advance(t.config.grace + Duration::from_secs(1));
    assert_eq!(
        t.refresh(&s0.cookie).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A rejected bearer (debug-level reason), garbage bodies.
    assert_eq!(t.me(&a1).await.status(), StatusCode::UNAUTHORIZED);
    let r = t
        .send(
            auth_post(authfetch_protocol::LOGIN_PATH)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    r#"{"username":"alice","password":"alice-password","extra":1}"#,
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // logout (cookie + bearer), logout_all, password_changed
    let s2 = t.login("alice", "alice-password").await;
    let r = t
        .send(
            auth_post(LOGOUT_PATH)
                .header(header::COOKIE, cookie_header(&s2.cookie))
                .header(header::AUTHORIZATION, format!("Bearer {}", s2.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let b = t.login("bob", "bob-password").await;
    let r = t
        .send(
            auth_post(LOGOUT_ALL_PATH)
                .header(header::AUTHORIZATION, format!("Bearer {}", b.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    t.state
        .service
        .set_password("alice", Password::new("new-password-7f3a".into()))
        .await
        .unwrap();
    let s3 = t.login("alice", "new-password-7f3a").await;
    assert_eq!(t.me(&s3.access).await.status(), StatusCode::OK);
    let r = t
        .send(
            Request::get("/api/me")
                .header(header::AUTHORIZATION, format!("Bearer {}x", s3.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let logs = capture.text();

    // Every audit event is there, under the audit target, with who and which session.
    let audit: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("authfetch::audit"))
        .collect();
    let line = |event: &str| -> Vec<&str> {
        audit
            .iter()
            .copied()
            .filter(|l| l.contains(&format!("event=\"{event}\"")))
            .collect()
    };
    for (event, n) in [
        ("login", 4),
        ("login_failed", 2),
        ("refresh", 2),
        ("refresh_grace", 1),
        ("reuse_detected", 1),
        ("logout", 1),
        ("logout_all", 1),
        ("password_changed", 1),
        ("access_token_denylisted", 1),
    ] {
        let lines = line(event);
        assert_eq!(
            lines.len(),
            n,
            "{event}: {lines:#?}\n--- all audit lines:\n{audit:#?}"
        );
    }
    for event in [
        "login",
        "refresh",
        "refresh_grace",
        "reuse_detected",
        "logout",
    ] {
        for l in line(event) {
            assert!(l.contains("user=") && l.contains("family="), "{l}");
        }
    }
    assert!(line("reuse_detected").iter().all(|l| l.contains("WARN")));
    assert!(line("login_failed").iter().all(|l| l.contains("WARN")));

    // Nothing secret anywhere in the whole log, at any level.
    for tok in [&s0.access, &a1, &a1b, &s2.access, &b.access, &s3.access] {
        secrets.push(tok.clone());
        // Each part on its own too: the signature, and the payload (which holds the jti).
        for part in tok.split('.').skip(1) {
            secrets.push(part.to_owned());
        }
    }
    for c in [&s0.cookie, &c1, &c2, &s2.cookie, &b.cookie, &s3.cookie] {
        secrets.push(c.clone());
    }
    for u in ["alice", "bob"] {
        let h = t
            .state
            .service
            .store()
            .user_by_name(u)
            .await
            .unwrap()
            .unwrap()
            .password_hash;
        secrets.push(h);
    }
    secrets.push("$argon2id$".into());
    let keys: serde_json::Value = serde_json::from_slice(
        &std::fs::read(t.dir.path().join(authfetch_server::keys::KEY_FILE)).unwrap(),
    )
    .unwrap();
    for k in keys["keys"].as_array().unwrap() {
        secrets.push(k["d"].as_str().unwrap().to_owned());
    }
    assert!(logs.lines().count() > 20, "the capture works: {logs}");
    if std::env::var_os("AUDIT_DUMP").is_some() {
        eprintln!("{logs}");
    }
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "secret {:.12}… found in the logs",
            s
        );
    }
}
