//! A2 for the verifier: settings are given before it exists (a builder that refuses what
//! cannot apply), a remote JWKS stops trusting cached keys after a bounded staleness, and a
//! JWKS is fetched over https (rustls) from a server whose certificate a private CA signed.

mod common;

use authfetch_protocol::JWKS_PATH;
use authfetch_server::jwt::JwtError;
use authfetch_server::verify::{BuildError, JwksPolicy, Verifier, VerifierConfig, VerifyError};
use common::*;
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

fn config() -> VerifierConfig {
    VerifierConfig::new("authfetch", "authfetch-api")
}

#[tokio::test]
async fn a2_verifier_settings_that_cannot_apply_are_refused_at_build() {
    let t = TestApp::new().await;
    let ring = Arc::clone(t.state.service.keys());
    // A JWKS policy on a verifier with local keys used to be silently ignored.
    let r = Verifier::builder(config())
        .key_ring(Arc::clone(&ring))
        .jwks_policy(JwksPolicy::default())
        .build();
    assert!(
        matches!(r, Err(BuildError::JwksSettingsWithoutUrl)),
        "{r:?}"
    );
    let r = Verifier::builder(config())
        .key_ring(Arc::clone(&ring))
        .jwks_ca_pem(b"-----BEGIN CERTIFICATE-----".to_vec())
        .build();
    assert!(
        matches!(r, Err(BuildError::JwksSettingsWithoutUrl)),
        "{r:?}"
    );
    let r = Verifier::builder(config()).build();
    assert!(matches!(r, Err(BuildError::NoKeys)), "{r:?}");
    let r = Verifier::builder(config())
        .key_ring(Arc::clone(&ring))
        .jwks_url("http://127.0.0.1:1/jwks")
        .build();
    assert!(matches!(r, Err(BuildError::TwoKeySources)), "{r:?}");
    let r = Verifier::with_jwks_url(config(), "ftp://example/jwks");
    assert!(matches!(r, Err(BuildError::JwksUrl)), "{r:?}");
    // What is set is applied, however the verifier is cloned afterwards: revocation and
    // clock are part of the one value `build` returns (there is no setter left to call late).
    let v = Verifier::builder(config())
        .key_ring(ring)
        .clock(t.clock.clone())
        .build()
        .unwrap();
    let copy = v.clone();
    let s = t.login("alice", "alice-password").await;
    assert!(copy.verify(&s.access).await.is_ok());
    t.advance(Duration::from_secs(3600));
    assert!(matches!(
        v.verify(&s.access).await,
        Err(VerifyError::Invalid(JwtError::Expired))
    ));
}

#[tokio::test]
async fn a2_a_remote_jwks_stops_trusting_cached_keys_after_the_bounded_staleness() {
    let t = TestApp::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, t.router.clone()).into_future());
    let v = Verifier::builder(config())
        .jwks_url(format!("http://{addr}{JWKS_PATH}"))
        .jwks_policy(JwksPolicy {
            cache_ttl: Duration::from_secs(300),
            min_refetch: Duration::from_secs(10),
            max_stale: Duration::from_secs(600),
        })
        .clock(t.clock.clone())
        .build()
        .unwrap();
    let s = t.login("alice", "alice-password").await;
    v.verify(&s.access).await.unwrap();
    assert_eq!(v.jwks_fetches(), 1);
    // The JWKS endpoint goes away.
    server.abort();
    let _ = server.await;
    // Past the cache lifetime but within the staleness bound: the refetch fails, the cached
    // key still verifies.
    t.advance(Duration::from_secs(400));
    let s = t.login("alice", "alice-password").await;
    v.verify(&s.access).await.unwrap();
    assert_eq!(v.jwks_fetches(), 2, "it did try to refetch");
    // Past cache lifetime + staleness bound: the key is no longer trusted.
    t.advance(Duration::from_secs(550));
    let s = t.login("alice", "alice-password").await;
    assert!(matches!(
        v.verify(&s.access).await,
        Err(VerifyError::Invalid(JwtError::UnknownKey))
    ));
}

/// An https JWKS endpoint on loopback whose certificate a CA generated here signed.
async fn https_jwks(body: String) -> (std::net::SocketAddr, String, tokio::task::JoinHandle<()>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(axum::body::Bytes::from(body)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, ca.pem(), task)
}

#[tokio::test]
async fn a2_a_remote_jwks_is_fetched_over_https_with_a_private_ca() {
    let t = TestApp::new().await;
    let jwks = t
        .state
        .service
        .keys()
        .jwks(authfetch_server::clock::Clock::now_ms(&*t.clock));
    let (addr, ca_pem, server) = https_jwks(serde_json::to_string(&jwks).unwrap()).await;
    let url = format!("https://localhost:{}/jwks", addr.port());
    let s = t.login("alice", "alice-password").await;
    let v = Verifier::builder(config())
        .jwks_url(&url)
        .jwks_ca_pem(ca_pem.into_bytes())
        .clock(t.clock.clone())
        .build()
        .unwrap();
    let c = v.verify(&s.access).await.unwrap();
    assert_eq!(c.iss, "authfetch");
    // Without the CA the certificate is not trusted: no key, no token.
    let untrusting = Verifier::builder(config())
        .jwks_url(&url)
        .clock(t.clock.clone())
        .build()
        .unwrap();
    assert!(matches!(
        untrusting.verify(&s.access).await,
        Err(VerifyError::Invalid(JwtError::UnknownKey))
    ));
    assert_eq!(untrusting.jwks_fetches(), 1);
    server.abort();
}
