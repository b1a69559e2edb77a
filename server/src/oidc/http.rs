//! The HTTP client that talks to OpenID providers (discovery, JWKS, token endpoint).
//!
//! hyper (the server's own HTTP stack) with rustls on the `ring` provider and Mozilla's root
//! certificates, behind openidconnect's `AsyncHttpClient` trait, so that every request to a
//! provider goes through the same checks:
//!
//! - redirects are never followed (hyper's client does not follow any): a provider URL that
//!   redirects cannot steer the server to an internal address (SSRF);
//! - `https` only; plain `http` only to a loopback host and only when the operator allowed it
//!   (`--oidc-allow-insecure-issuer`, for tests and a local provider);
//! - bounded time and bounded response size (a provider cannot stall or exhaust the server).

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use openidconnect::{HttpRequest, HttpResponse};
use std::sync::Arc;
use std::time::Duration;

/// Largest provider response read (discovery documents and key sets are a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Whole-request timeout for one call to a provider (connect, TLS, answer, body).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to a provider failed. Shown in logs only.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not https, or http to a non-loopback host, or http while not allowed.
    #[error("refused provider URL scheme or host: {0}")]
    Refused(String),
    /// Transport failure (connect, TLS, protocol) or a body over [`MAX_RESPONSE_BYTES`].
    #[error("transport: {0}")]
    Transport(String),
    /// No complete answer within [`TIMEOUT`].
    #[error("no answer within {TIMEOUT:?}")]
    Timeout,
    /// The TLS set-up failed (no usable root certificates).
    #[error("TLS set-up: {0}")]
    Tls(String),
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The client to providers. Cheap to clone.
#[derive(Clone)]
pub struct ProviderHttp {
    client: Client<Https, Full<Bytes>>,
    allow_insecure_loopback: bool,
}

impl std::fmt::Debug for ProviderHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderHttp")
            .field("allow_insecure_loopback", &self.allow_insecure_loopback)
            .finish_non_exhaustive()
    }
}

/// True for `localhost` and loopback IP literals.
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Whether the server may call `url`: https anywhere, http only to loopback when allowed.
///
/// # Errors
/// [`HttpError::Refused`] otherwise.
pub fn check_url(url: &url::Url, allow_insecure_loopback: bool) -> Result<(), HttpError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_loopback && url.host().as_ref().is_some_and(is_loopback_host) => {
            Ok(())
        }
        _ => Err(HttpError::Refused(format!(
            "{}://{}",
            url.scheme(),
            url.host_str().unwrap_or("")
        ))),
    }
}

impl ProviderHttp {
    /// A client with the scheme rule of [`check_url`], [`TIMEOUT`] and no redirects.
    ///
    /// # Errors
    /// The TLS configuration could not be built.
    pub fn new(allow_insecure_loopback: bool) -> Result<Self, HttpError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        // The https connector wraps this one; `check_url` decides which schemes are allowed.
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| HttpError::Tls(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            allow_insecure_loopback,
        })
    }

    /// Sends one request (see the `AsyncHttpClient` impl below).
    ///
    /// # Errors
    /// See [`HttpError`]. A 3xx answer is returned as is (not followed): the crate then
    /// reports an unexpected status.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url = url::Url::parse(&request.uri().to_string())
            .map_err(|e| HttpError::Refused(e.to_string()))?;
        check_url(&url, self.allow_insecure_loopback)?;
        let (parts, body) = request.into_parts();
        let request = axum::http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Transport(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| HttpError::Transport(e.to_string()))?
                .to_bytes();
            Ok(axum::http::Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| HttpError::Timeout)?
    }
}

/// openidconnect's client interface. A boxed `Send` future: axum handlers must be `Send`, and
/// a closure (the crate's other option) cannot say so for every lifetime.
impl<'c> openidconnect::AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_allowed_loopback_http() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(check_url(&u("https://accounts.google.com/x"), false).is_ok());
        assert!(check_url(&u("https://10.0.0.1/x"), false).is_ok());
        for ok in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://[::1]:80/",
        ] {
            assert!(check_url(&u(ok), true).is_ok(), "{ok}");
            assert!(check_url(&u(ok), false).is_err(), "{ok} needs the flag");
        }
        for bad in [
            "http://10.0.0.1/x",
            "http://example.com/",
            "http://127.0.0.1.nip.io/",
            "file:///etc/passwd",
            "ftp://127.0.0.1/",
        ] {
            assert!(check_url(&u(bad), true).is_err(), "{bad}");
        }
    }
}
