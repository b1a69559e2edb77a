//! The error type: one enum, one exhaustive [`Error::code`] (the only place codes are spelled).
//!
//! Modelled on panva/jose's `ERR_…` codes: callers branch on `err.code`, never on the message
//! and never on `instanceof` alone (two copies of the package would break `instanceof`). The
//! web layer hands [`Error::code`] and the cause to `js/index.js`, which builds a real JS
//! `Error` (`AuthFetchError`, `name = "AuthFetchError"`, `code`, `cause`) with the text of
//! [`Error::message`], which a test keeps identical on both sides. Keeping the messages in JS
//! keeps them out of the `.wasm`.
//!
//! No `thiserror` here: its `Display` goes through `core::fmt`, which the shipped `.wasm` must
//! not contain (see `BENCHMARKS.md`). The `Display` impl below only exists for native debugging
//! and is stripped from the wasm by LTO.

use core::fmt;

/// What a JS failure carries as `cause`: the thrown value in the browser, text natively.
#[cfg(target_arch = "wasm32")]
pub type Cause = wasm_bindgen::JsValue;
/// What a JS failure carries as `cause`: the thrown value in the browser, text natively.
#[cfg(not(target_arch = "wasm32"))]
pub type Cause = alloc::string::String;

/// Every way an auth operation can fail. `authFetch` rejects with one of these only for auth
/// failures; network failures and aborts of the caller's own request pass through unchanged.
#[derive(Clone, Debug)]
pub enum Error {
    /// `login` was refused: unknown user or wrong password (`invalid_grant`).
    InvalidCredentials,
    /// The refresh cookie no longer holds a session (expired, revoked, reused or logged out
    /// elsewhere). The client is now signed out.
    SessionExpired,
    /// The caller was waiting for a token when the session was signed out (logout, logout
    /// everywhere, or another tab). Queued calls are rejected rather than sent without a bearer.
    SignedOut,
    /// The refresh endpoint could not be reached or answered with an unexpected status.
    /// The session is kept (K7): a later call tries again after the back-off.
    RefreshFailed(Option<Cause>),
    /// Refresh failed repeatedly; the client waits before it asks the server again.
    RefreshBackoff,
    /// An auth endpoint could not be reached (network error, CORS, offline).
    Network(Cause),
    /// The server rate-limited an auth request (HTTP 429).
    RateLimited,
    /// An auth endpoint answered with a status or body the protocol does not allow.
    InvalidResponse,
    /// The auth server refused the page's origin (`403 access_denied`, CSRF rules X4/X5): a
    /// deployment mistake, not a user's. The server's `--allowed-origin` must list the origin.
    OriginRefused,
    /// A login from the default entry was refused for want of a DPoP proof (`401
    /// invalid_dpop_proof`: the server runs `--dpop required`): a deployment mistake, not a
    /// wrong password. The app must import `authfetch/dpop`.
    DpopRequired,
    /// The options passed to `configure`/`createAuthClient` are not valid.
    InvalidConfig,
    /// `configure` was called after the default client had started.
    AlreadyStarted,
    /// Not a browser (server-side rendering in Node), or the page's CSP forbids WebAssembly.
    /// Raised by `js/index.js`; listed here so the code table stays in one place.
    Unsupported,
}

impl Error {
    /// Every variant once (payloads empty), for the uniqueness test and the `.d.ts` check.
    #[cfg(test)]
    pub(crate) fn all() -> alloc::vec::Vec<Error> {
        alloc::vec![
            Error::InvalidCredentials,
            Error::SessionExpired,
            Error::SignedOut,
            Error::RefreshFailed(None),
            Error::RefreshBackoff,
            Error::Network(Cause::default()),
            Error::RateLimited,
            Error::InvalidResponse,
            Error::OriginRefused,
            Error::DpopRequired,
            Error::InvalidConfig,
            Error::AlreadyStarted,
            Error::Unsupported,
        ]
    }

    /// The stable machine-readable code (`err.code` in JS). This match is the only place the
    /// codes are written; `js/index.d.ts` declares the same union and a test compares them.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidCredentials => "ERR_INVALID_CREDENTIALS",
            Error::SessionExpired => "ERR_SESSION_EXPIRED",
            Error::SignedOut => "ERR_SIGNED_OUT",
            Error::RefreshFailed(_) => "ERR_REFRESH_FAILED",
            Error::RefreshBackoff => "ERR_REFRESH_BACKOFF",
            Error::Network(_) => "ERR_NETWORK",
            Error::RateLimited => "ERR_RATE_LIMITED",
            Error::InvalidResponse => "ERR_INVALID_RESPONSE",
            Error::OriginRefused => "ERR_ORIGIN_REFUSED",
            Error::DpopRequired => "ERR_DPOP_REQUIRED",
            Error::InvalidConfig => "ERR_INVALID_CONFIG",
            Error::AlreadyStarted => "ERR_ALREADY_STARTED",
            Error::Unsupported => "ERR_UNSUPPORTED",
        }
    }

    /// A short human-readable message. Never contains a token or a server-provided string.
    pub fn message(&self) -> &'static str {
        match self {
            Error::InvalidCredentials => "wrong username or password",
            Error::SessionExpired => "the session has expired; sign in again",
            Error::SignedOut => "signed out while waiting for a token",
            Error::RefreshFailed(_) => "the token could not be refreshed",
            Error::RefreshBackoff => "refresh failed repeatedly; backing off",
            Error::Network(_) => "the auth server could not be reached",
            Error::RateLimited => "rate-limited by the auth server",
            Error::InvalidResponse => "invalid response from the auth server",
            Error::OriginRefused => {
                "the auth server does not allow this origin: add it with --allowed-origin"
            }
            Error::DpopRequired => "the auth server requires DPoP: import from \"authfetch/dpop\"",
            Error::InvalidConfig => "invalid authfetch options",
            Error::AlreadyStarted => "configure() must come before the first use",
            Error::Unsupported => "needs a browser, with WebAssembly allowed by the CSP",
        }
    }

    /// The underlying JS failure, if any (becomes `err.cause`).
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Error::RefreshFailed(c) => c.as_ref(),
            Error::Network(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())?;
        f.write_str(": ")?;
        f.write_str(self.message())
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn error_codes_are_unique_and_well_formed() {
        let all = Error::all();
        let codes: Vec<&str> = all.iter().map(Error::code).collect();
        for (i, a) in codes.iter().enumerate() {
            assert!(a.starts_with("ERR_"), "{a}");
            assert!(
                a.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{a}"
            );
            for b in &codes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        for e in &all {
            assert!(!e.message().is_empty());
        }
    }

    /// The `.d.ts` union must list exactly the codes of [`Error::code`].
    #[test]
    fn dts_declares_exactly_the_error_codes() {
        let dts = include_str!("../js/index.d.ts");
        let start = dts
            .find("export type AuthFetchErrorCode")
            .expect("union declared");
        let end = start + dts[start..].find(';').expect("union terminated");
        let union = &dts[start..end];
        let mut declared: Vec<&str> = union.split('\'').skip(1).step_by(2).collect();
        let mut codes: Vec<&str> = Error::all().iter().map(Error::code).collect();
        declared.sort_unstable();
        codes.sort_unstable();
        assert_eq!(declared, codes);
    }

    /// `js/index.js` holds the messages shown in the browser: the same codes, the same text.
    #[test]
    fn index_js_message_table_matches_the_error_table() {
        let js = include_str!("../js/index.js");
        let start = js.find("const MESSAGES = {").expect("table declared");
        let end = start + js[start..].find("};").expect("table terminated");
        let table = &js[start..end];
        let mut rows = 0;
        for e in Error::all() {
            let row = alloc::format!("{}: '{}',", e.code(), e.message());
            assert!(table.contains(&row), "index.js lacks {row}");
            rows += 1;
        }
        assert_eq!(
            table.matches("ERR_").count(),
            rows,
            "index.js has codes Rust lacks"
        );
    }

    #[test]
    fn only_transport_failures_carry_a_cause() {
        assert!(Error::Network("x".into()).cause().is_some());
        assert!(Error::RefreshFailed(Some("x".into())).cause().is_some());
        assert!(Error::SessionExpired.cause().is_none());
    }
}
