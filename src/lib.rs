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
//! * `web` (wasm32 only): the thin `#[wasm_bindgen]` facade over `js/bridge.js`;
//!   `js/index.js` turns it into the public API (lazy start, default client, events, errors).
//!
//! ## What it protects against
//! * **Token theft from storage (K1).** The access token is never written to `localStorage`,
//!   `sessionStorage`, IndexedDB, Cache Storage or `document.cookie`; the refresh token is
//!   never visible to JavaScript at all (HttpOnly cookie). Tests read every store after a full
//!   session (`tests/web.rs`, `tests/e2e/client.spec.mjs`).
//! * **Later hooks on the platform (K2).** `js/bridge.js` captures `fetch`, `Request`,
//!   `Headers.prototype.set/get`, the `headers`/`url`/`status` getters and
//!   `Response.prototype.json` when the package is imported; a script that replaces them
//!   afterwards never sees the bearer or a token response.
//! * **The bearer leaking (K3).** Only to allowlisted origins (the page's own by default),
//!   never to the auth endpoints (nor anything under `/auth/` on their origin), never to a URL
//!   with userinfo.
//! * **Refresh storms and loops (K4–K7).** One refresh per tab (and, with Web Locks, per
//!   browser) however many calls get a 401; never on 403; one replay per request, from a clone
//!   taken before the first send so every body type arrives intact; back-off after repeated
//!   failures; a network error during refresh keeps the session; logout rejects waiting calls
//!   and a late refresh cannot resurrect the session (generation guard).
//! * **Clock skew (K8).** Expiry comes from the server's `expires_in` and `performance.now()`,
//!   not from the device's wall clock against `exp`.
//!
//! ## What it does not protect against
//! * **XSS.** WebAssembly memory is not a security boundary against a script running on the
//!   same page. Such a script can call `authFetch` itself (it acts as the user for as long as
//!   the page is open), join the tabs' `BroadcastChannel` and be handed the token (unless
//!   `crossTab: false`), patch intrinsics such as `Promise.prototype.then` or `JSON.parse` that
//!   the glue relies on, or hook `fetch` if it runs *before* authfetch is imported. What it
//!   cannot get is the refresh cookie: once the page is closed and the short-lived access token
//!   expires, the session is out of its reach. CSP and output encoding prevent XSS; authfetch
//!   limits what a successful one keeps.
//! * A compromised browser, extension or machine (they can read memory and the cookie jar).
//! * Authorization decisions: those are the API's job.
//!
//! ## Crates: what earned its bytes
//! The shipped build is `no_std` with `lol_alloc` and a trapping panic handler (feature
//! `tiny`), and its size is budgeted (≤ 22 KB gzip for the `.wasm` plus the JS, checked by
//! `scripts/build-pkg.sh --check-size`). Of the crates on the design card:
//! * **wasm-bindgen, js-sys** (and wasm-bindgen-futures): used; they are the boundary and the
//!   `Promise` executor.
//! * **web-sys**: not used in the shipped code. Its bindings look globals up at call time (a
//!   later hook on `fetch` or `Headers` would see the bearer, against K2); the bridge's captured
//!   functions replace them at a fraction of the glue.
//! * **gloo-net**: not used, for the same K2 reason (it calls the global `fetch` when a request
//!   is sent) and because the auth calls are three fixed POSTs the bridge makes in a few lines.
//! * **serde-wasm-bindgen** (and serde): not used. Its deserialize path pulls in float
//!   formatting and error `Display` code, ~18 KB gzip, more than the rest of the module;
//!   options and messages cross the boundary as plain strings and numbers instead, and the token
//!   response is read field by field after the bridge's `JSON.parse`.
//! * **base64**: not used. `claims()` hands the JWT's payload *segment* to JS, which decodes it
//!   with `atob` and `JSON.parse` (the claims are public; the signature never leaves this
//!   module). [`jwt::base64url_decode`] remains for native use and tests.
//!
//! `BENCHMARKS.md` has the per-crate breakdown of the shipped `.wasm` (twiggy).
#![no_std]
extern crate alloc;
// With `std` (the default: native tests, wasm-bindgen-test), std provides the allocator and the
// panic handler; the shipped `tiny` build brings its own (below).
#[cfg(feature = "std")]
extern crate std;

pub mod config;
pub mod error;
pub mod jwt;
pub mod session;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// A broken internal invariant: traps in the browser (no panic machinery in the `.wasm`), panics
/// natively so tests report it.
#[cold]
pub(crate) fn bug() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    panic!("authfetch: internal invariant broken");
}

#[cfg(all(feature = "tiny", target_arch = "wasm32", not(feature = "std")))]
mod tiny {
    use core::alloc::{GlobalAlloc, Layout};
    use lol_alloc::{AssumeSingleThreaded, FreeListAllocator};

    /// lol_alloc's free list behind out-of-line methods: inlined, its `dealloc` would be copied
    /// into every `drop` of a `String` or `Vec` (kilobytes of `.wasm` in total).
    struct Alloc(AssumeSingleThreaded<FreeListAllocator>);

    // SAFETY: forwards to an allocator that upholds the `GlobalAlloc` contract.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Alloc {
        #[inline(never)]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as the caller's.
            unsafe { self.0.alloc(layout) }
        }
        #[inline(never)]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { self.0.dealloc(ptr, layout) }
        }
        #[inline(never)]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: same contract as the caller's.
            unsafe { self.0.realloc(ptr, layout, new_size) }
        }
    }

    // SAFETY: this build targets wasm32 without the atomics feature, where there is exactly one
    // thread; `AssumeSingleThreaded` is sound exactly then.
    #[allow(unsafe_code)]
    #[global_allocator]
    static ALLOC: Alloc = Alloc(unsafe { AssumeSingleThreaded::new(FreeListAllocator::new()) });

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        core::arch::wasm32::unreachable()
    }
}
