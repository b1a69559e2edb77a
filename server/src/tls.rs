//! The server as a TLS client of Redis (`rediss://`).
//!
//! The `redis` crate does the TLS through rustls built without default features (so no aws-lc;
//! one crypto stack on ring, docs/SECURITY.md). It builds its `ClientConfig` with the process's
//! default crypto provider, so ring is installed as that default here before any `rediss://`
//! connection (a no-op when it already is).
//!
//! Roots: without `--redis-ca-file`, the operating system's certificate store
//! (`rustls-native-certs`, what a managed Redis with a public certificate needs). With it, only
//! the CA(s) in that PEM file: a private Redis is signed by a private CA, and trusting the
//! public roots as well would let any public CA vouch for it.
//!
//! The https JWKS client of the verification layer is configured in `verify.rs`
//! (`VerifierBuilder::jwks_ca_pem`, Mozilla roots plus a private CA).

use std::path::{Path, PathBuf};

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read.
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file holds no PEM certificate (or a malformed one).
    #[error("the CA file {0} holds no valid PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    /// The Redis URL or TLS set-up was refused by the Redis client.
    #[error("Redis URL or TLS set-up refused: {0}")]
    Redis(String),
}

/// Installs ring as the process's default rustls provider if none is installed yet.
pub fn install_ring_provider() {
    // `Err` means a provider is already installed (ring, by an earlier call): nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a PEM file and checks that it holds at least one parseable certificate, so that a
/// wrong file is a start-up error naming it rather than a handshake failure later.
///
/// # Errors
/// Unreadable file, or no certificate in it.
pub fn read_ca_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(path).map_err(|source| TlsError::CaFile {
        path: path.to_owned(),
        source,
    })?;
    let mut certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem);
    match certs.next() {
        Some(Ok(_)) if certs.all(|c| c.is_ok()) => Ok(pem),
        _ => Err(TlsError::NoCertificate(path.to_owned())),
    }
}

/// The Redis client for `url`: plain for `redis://` and unix sockets; for `rediss://`, TLS with
/// the system's roots, or only the CA(s) of `ca_file`.
///
/// # Errors
/// An unusable CA file, or a URL the Redis client refuses.
pub fn redis_client(url: &str, ca_file: Option<&Path>) -> Result<redis::Client, TlsError> {
    // The URL may carry a password: errors name neither it nor the URL.
    let refused = |e: redis::RedisError| TlsError::Redis(e.to_string());
    if !url.starts_with("rediss://") {
        if ca_file.is_some() {
            return Err(TlsError::Redis(
                "a CA file was given for a Redis URL without TLS (use rediss://)".into(),
            ));
        }
        return redis::Client::open(url).map_err(refused);
    }
    install_ring_provider();
    match ca_file {
        None => redis::Client::open(url).map_err(refused),
        Some(path) => {
            let root_cert = read_ca_pem(path)?;
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
            .map_err(refused)
        }
    }
}
