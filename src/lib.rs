//! # authfetch: the client
//!
//! A token manager for single-page apps, compiled to WebAssembly and shipped as the npm package
//! `authfetch` (`scripts/build-pkg.sh` → `pkg/`). Apps call `authFetch(input, init)` instead of
//! `fetch`; underneath, the short-lived access token lives only in this module's memory, the
//! refresh token only in the server's HttpOnly `__Host-authfetch_rt` cookie, and a 401 on a
//! request that carried the bearer leads to one shared refresh and one replay of that request.
//!
//! ## Layout
//! * [`session`]: the whole behaviour (state machine, single-flight refresh, retry once,
//!   generation guard, expiry schedule on a monotonic clock, back-off, cross-tab messages),
//!   written against the small [`session::Env`] trait and tested natively (`cargo test`).
//! * [`config`]: the bearer allowlist (K3), exact scheme+host+port with optional path prefix.
//! * [`error`]: the one error enum and its stable `ERR_…` codes (the `.d.ts` union and the
//!   JS message table are checked against it).
//! * [`jwt`]: reading the payload segment for `claims()` (display only, never trusted).
//! * `web` (wasm32 only): the thin, typed layer on the platform: web-sys for the page's
//!   request, timers, the Web Lock and the tabs' channel; gloo-net for the auth endpoints;
//!   serde-wasm-bindgen for the objects handed to JS; `extern` types with typed getters for the
//!   options and the token response. `js/index.js` is the lazy loader and the public wrapper.
//!
//! ## A call, end to end
//! `authFetch(input, init)` → `js/index.js` (loads the module on first use) → [`web`]'s
//! `Client::fetch` builds the `Request` as `fetch` would → [`session::Session::fetch`] gets a
//! token (waiting for the one shared refresh if needed) → the web layer sends a copy of the
//! request with `Authorization: Bearer …` → on a 401 that answered our bearer, one refresh
//! (under the cross-tab Web Lock, through gloo-net) and one replay from a fresh copy → the
//! `Response`, exactly as `fetch` would resolve.
//!
//! ## What it protects against
//! * **Token theft from storage (K1).** The access token is never written to `localStorage`,
//!   `sessionStorage`, IndexedDB, Cache Storage or `document.cookie`, nor posted to other tabs;
//!   the refresh token is never visible to JavaScript at all (HttpOnly cookie).
//! * **Other scripts on the origin listening to, or talking to, the tabs (K9).** Tabs share no
//!   token: each gets its own from the server, and the channel between them carries
//!   payload-free hints that only make a tab ask the server. Another app on the same origin
//!   cannot read a token there, install one, or sign a tab out.
//! * **The bearer leaking (K3).** Only to allowlisted origins (the page's own by default),
//!   never to the auth endpoints (nor anything under `/auth/` on their origin), never to a URL
//!   with userinfo.
//! * **Refresh storms and loops (K4–K7, K10, K11).** One refresh per tab however many calls
//!   get a 401; refreshes of all tabs take turns under a Web Lock; never on 403; one replay per
//!   request, from a copy taken before the first send; a session ends once (late 401s start
//!   nothing); offline is `ERR_NETWORK` and keeps the session, and the back-off starts over
//!   when the browser is back online or the page visible again.
//! * **Clock skew (K8).** Expiry comes from the server's `expires_in` and `performance.now()`,
//!   not from the device's wall clock against `exp`.
//!
//! ## What it does not protect against
//! * **A script running in the page (XSS).** WebAssembly memory is not a boundary against the
//!   page's own script realm: such a script can observe the access token (by hooking `fetch`,
//!   `Headers.prototype.set` or other built-ins the module calls, or simply by calling
//!   `/auth/refresh` itself, which the cookie authorizes) and can call `authFetch` as the user
//!   while the page is open. What it can never read is the refresh token (HttpOnly), so once
//!   the page is closed and the short-lived access token expires, the session is out of its
//!   reach. Making a stolen access token useless elsewhere needs sender-constrained tokens
//!   (DPoP), which are planned. CSP and output encoding prevent XSS; authfetch limits what a
//!   successful one keeps.
//! * A compromised browser, extension or machine (they can read memory and the cookie jar).
//! * Authorization decisions: those are the API's job.
//!
//! `BENCHMARKS.md` has the size of the shipped `.wasm` and what each crate costs (twiggy).

extern crate alloc;

/// The browser build's allocator: lol_alloc's free list (see Cargo.toml for why). Sound on
/// wasm32 without the atomics feature, where there is exactly one thread, which is the only
/// build that has it (`AssumeSingleThreaded`'s contract).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
#[allow(unsafe_code)]
// SAFETY: single-threaded target (see the cfg above).
static ALLOC: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

pub mod config;
pub mod error;
pub mod jwt;
pub mod session;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// A broken internal invariant (a `RefCell` borrowed twice, which the session's invariants rule
/// out): traps in the browser, panics natively so tests report it.
#[cold]
pub(crate) fn bug() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    panic!("authfetch: internal invariant broken");
}
