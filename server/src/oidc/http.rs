//! The HTTP client that talks to OpenID providers (discovery, JWKS, token endpoint).
//!
//! It is the server's own reqwest client behind openidconnect's `AsyncHttpClient` shape (a
//! function from `HttpRequest` to a future `HttpResponse`), so that every request to a provider
//! goes through the same checks:
//!
//! - redirects are never followed (a provider URL that redirects cannot steer the server to an
//!   internal address: SSRF);
//! - `https` only; plain `http` only to a loopback host and only when the operator allowed it
//!   (`--oidc-allow-insecure-issuer`, for tests and a local provider);
//! - bounded time and bounded response size (a provider cannot stall or exhaust the server).

use openidconnect::{HttpRequest, HttpResponse};
use std::time::Duration;

/// Largest provider response read (discovery documents and key sets are a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Whole-request timeout for one call to a provider.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to a provider failed. Shown in logs only.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not https, or http to a non-loopback host, or http while not allowed.
    #[error("refused provider URL scheme or host: {0}")]
    Refused(String),
    /// Transport failure (connect, TLS, timeout).
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The response exceeded [`MAX_RESPONSE_BYTES`].
    #[error("provider response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// The request or response could not be converted.
    #[error("request/response conversion: {0}")]
    Convert(String),
}

/// Installs rustls' `ring` provider as the process default, once. reqwest is built with
/// `rustls-no-provider` (no aws-lc: ring is already a dependency) and refuses to build a TLS
/// client until a provider is installed, so every `reqwest::Client` construction calls this
/// first.
pub fn ensure_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed: that one is used, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The client to providers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ProviderHttp {
    client: reqwest::Client,
    allow_insecure_loopback: bool,
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
    /// A client with redirects off, [`TIMEOUT`], and the scheme rule of [`check_url`].
    ///
    /// # Errors
    /// reqwest could not build the client (TLS set-up).
    pub fn new(allow_insecure_loopback: bool) -> Result<Self, HttpError> {
        ensure_tls_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            client,
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
            .map_err(|e| HttpError::Convert(e.to_string()))?;
        check_url(&url, self.allow_insecure_loopback)?;
        let (parts, body) = request.into_parts();
        let mut req = self.client.request(parts.method, url.as_str()).body(body);
        for (name, value) in &parts.headers {
            req = req.header(name, value);
        }
        let mut resp = req.send().await?;
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(HttpError::TooLarge);
        }
        let mut builder = axum::http::Response::builder().status(resp.status());
        for (name, value) in resp.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        builder
            .body(body)
            .map_err(|e| HttpError::Convert(e.to_string()))
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
