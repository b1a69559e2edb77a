//! The browser side: [`WebEnv`] implements [`Env`] over `js/bridge.js`, and [`Client`] is the
//! `#[wasm_bindgen]` class that `js/index.js` wraps into the public API.
//!
//! Why a hand-written bridge instead of `web-sys`/`gloo-net` for fetch: web-sys bindings look
//! the global (`fetch`, `Headers.prototype.set`, …) up at call time, so a script that replaced
//! one after start-up would see the bearer. The bridge captures them once, at import (K2).
//!
//! The boundary is kept narrow on purpose: plain strings, numbers and booleans in both
//! directions (the JS side unpacks options, messages and traces), so the `.wasm` carries no
//! object-walking code and the generated glue stays small. Every byte here is paid by every
//! user of the package (see `BENCHMARKS.md`).

use crate::config::Config;
use crate::error::Error;
use crate::jwt;
use crate::session::{
    AuthCall, Env, Event, Failure, Grant, Message, Reply, Secret, Session, State, Step, Task,
};
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use authfetch_protocol as proto;
use core::future::Future;
use core::pin::Pin;
use js_sys::{Array, Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

/// Name of the Web Lock held around a refresh (tests and other tools may take it too), for a
/// client of the page's own auth server; `js/index.js` appends `" " + refresh URL` for a client
/// of another one (and passes the names in).
pub const LOCK_NAME: &str = "authfetch-refresh";
/// Name of the BroadcastChannel the tabs talk on (scoped the same way as [`LOCK_NAME`]).
pub const CHANNEL_NAME: &str = "authfetch";

#[wasm_bindgen(module = "/js/bridge.js")]
extern "C" {
    #[wasm_bindgen(catch)]
    fn make(input: &JsValue, init: &JsValue) -> Result<JsValue, JsValue>;
    fn url(req: &JsValue) -> String;
    fn abortable(p: &Promise, req: &JsValue) -> Promise;
    fn send(req: &JsValue, bearer: Option<&str>) -> Promise;
    fn status(res: &JsValue) -> u16;
    fn challenge(res: &JsValue) -> String;
    fn post(
        url: &str,
        csrf_name: &str,
        csrf_value: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Promise;
    fn now() -> f64;
    fn sleep(ms: f64) -> Promise;
    fn lock(name: &str, ms: f64) -> Promise;
    fn unlock(release: &JsValue);
    fn channel(name: &str, on_message: &Function) -> Option<JsValue>;
    fn post_message(c: &JsValue, kind: u32, token: &str, ms: f64, flag: bool);
    fn trace(cb: &Function, req: &JsValue, steps: f64, bearer: bool);
    fn emit(cb: &Function, event: u32);
}

/// Converts an [`Error`] into the rejection value `[index, cause]` ([`Error::index`]), which
/// `js/index.js` turns into an `AuthFetchError` (codes and messages live there, out of the
/// `.wasm`). A platform failure (a `TypeError`, an `AbortError`) is never an array, so the two
/// cannot be confused.
pub fn to_js(e: &Error) -> JsValue {
    Array::of2(
        &JsValue::from(e.index()),
        e.cause().unwrap_or(&JsValue::UNDEFINED),
    )
    .into()
}

/// One `Promise` adapter for every async method: boxing the futures keeps a single copy of
/// the executor glue in the `.wasm` instead of one per method.
fn promise(f: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
    let f: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>> = Box::pin(f);
    future_to_promise(f)
}

/// A `Response` as the session core sees it.
pub struct WebReply(JsValue);

impl Reply for WebReply {
    fn status(&self) -> u16 {
        status(&self.0)
    }
    fn www_authenticate(&self) -> Option<String> {
        // `""` when absent, which asks for a refresh exactly as an absent header does.
        Some(challenge(&self.0))
    }
}

/// Releases the cross-tab lock when dropped (`js/bridge.js`'s release function, which never
/// throws).
pub struct LockGuard(JsValue);

impl Drop for LockGuard {
    fn drop(&mut self) {
        unlock(&self.0);
    }
}

/// The browser platform for [`Session`].
pub struct WebEnv {
    on_event: Function,
    /// The tab channel, when cross-tab coordination is on and the platform has one.
    channel: Option<JsValue>,
    /// The Web Lock held around a refresh ([`LOCK_NAME`], scoped by `js/index.js`).
    lock_name: String,
}

/// Validates the `[status, access_token, token_type, expires_in]` answer of login/refresh.
fn grant(token: Option<String>, token_type: Option<String>, secs: f64) -> Option<Grant> {
    let token = token?;
    let ok_type = token_type.is_some_and(|t| t.eq_ignore_ascii_case(proto::TOKEN_TYPE));
    let ok_token = !token.is_empty()
        && token.len() <= jwt::MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_graphic());
    // Also rejects NaN.
    if !(ok_type && ok_token && secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return None;
    }
    Some(Grant {
        token: Secret::new(token),
        expires_in_ms: secs * 1000.0,
    })
}

impl Env for WebEnv {
    type Guard = LockGuard;

    fn now(&self) -> f64 {
        now()
    }

    fn spawn(&self, task: Task) {
        wasm_bindgen_futures::spawn_local(task);
    }

    fn sleep(&self, ms: f64) -> impl Future<Output = ()> + 'static {
        let p = JsFuture::from(sleep(ms));
        async move {
            let _ = p.await;
        }
    }

    fn lock(&self, timeout_ms: f64) -> impl Future<Output = Option<LockGuard>> + 'static {
        let p = JsFuture::from(lock(&self.lock_name, timeout_ms));
        async move {
            let f = p.await.ok()?;
            // The release function, or `undefined` when the lock was not taken.
            (!f.is_undefined()).then(|| LockGuard(f))
        }
    }

    fn auth(
        &self,
        c: &Config,
        call: AuthCall<'_>,
    ) -> impl Future<Output = Result<Option<Grant>, Error>> {
        let (url, user, pass, kind) = match call {
            AuthCall::Refresh => (&c.refresh_url, None, None, 0),
            AuthCall::Login { username, password } => {
                (&c.login_url, Some(username), Some(password), 1)
            }
            AuthCall::Logout { everywhere } => {
                let url = if everywhere {
                    &c.logout_all_url
                } else {
                    &c.logout_url
                };
                (url, None, None, 2)
            }
        };
        // Never a bearer here: auth endpoints get the cookie and the CSRF header only (K3).
        let p = post(url, &c.csrf.0, &c.csrf.1, user, pass);
        let p = JsFuture::from(p);
        async move {
            // [status, access_token, token_type, expires_in, error] (see js/bridge.js).
            let answer: Array = p.await.map_err(Error::Network)?.unchecked_into();
            let status = answer.get(0).as_f64().unwrap_or(0.0) as u16;
            let invalid_grant = answer.get(4).as_string().as_deref()
                == Some(proto::ErrorCode::InvalidGrant.as_str());
            match (kind, status) {
                (2, 200..=299 | 401) => Ok(None),
                (0 | 1, 200) => grant(
                    answer.get(1).as_string(),
                    answer.get(2).as_string(),
                    answer.get(3).as_f64().unwrap_or(0.0),
                )
                .map(Some)
                .ok_or(Error::InvalidResponse),
                (_, 429) => Err(Error::RateLimited),
                (0, 400 | 401) if invalid_grant || status == 401 => Err(Error::SessionExpired),
                (1, 400 | 401) if invalid_grant || status == 401 => Err(Error::InvalidCredentials),
                _ => Err(Error::InvalidResponse),
            }
        }
    }

    fn emit(&self, event: Event) {
        // `js/index.js` maps the number to its `{type}` event.
        emit(&self.on_event, event as u32);
    }

    fn broadcast(&self, msg: Message<'_>) {
        let Some(channel) = &self.channel else {
            return;
        };
        match msg {
            // `""`: no token (never adopted by the receiving tab).
            Message::Hello => post_message(channel, 0, "", 0.0, false),
            Message::Token {
                token,
                remaining_ms,
                login,
            } => post_message(channel, 1, token, remaining_ms, login),
            Message::SignedOut { expired } => post_message(channel, 2, "", 0.0, expired),
        }
    }
}

/// Trace codes of the non-status steps (statuses are sent as themselves, 100–599).
fn step_code(s: &Step) -> u16 {
    match s {
        Step::Status(n) => *n,
        Step::Waited => 1,
        Step::NoBearer => 2,
        Step::Refreshed => 3,
        Step::Retried => 4,
    }
}

/// The steps of one call as the digits of a base-600 number (first step most significant; no
/// code is 0), so a trace crosses to JS as one `f64` instead of an array. At most five steps
/// fit exactly in an `f64` (600⁵ < 2⁵³), which is the most a call takes (waited, 401,
/// refreshed, retried, 200) once repeated waits are counted once.
pub fn pack_steps(steps: &[Step]) -> f64 {
    let (mut acc, mut n, mut last) = (0.0, 0, 0);
    for s in steps {
        let c = step_code(s);
        if (c == 1 && last == 1) || n == 5 {
            continue;
        }
        acc = acc * 600.0 + f64::from(c);
        last = c;
        n += 1;
    }
    acc
}

/// One authfetch client: a session and its browser platform. `js/index.js` wraps it.
#[wasm_bindgen]
pub struct Client {
    session: Rc<Session<WebEnv>>,
    on_trace: Function,
}

#[wasm_bindgen]
impl Client {
    /// Creates a client from options already resolved by `js/index.js`: `config` is the
    /// absolute login, refresh, logout and logout-all URLs (from the platform's `URL` parser),
    /// the names of the tab channel and of the refresh lock, the CSRF header's name and value,
    /// then the allowlist entries, one per line (none of these can contain a line break). `on_event` receives auth-state events, `on_trace`
    /// per-call traces, and `on_message` is wired to the tab channel (see `js/bridge.js`).
    ///
    /// # Errors
    /// `[ERR_INVALID_CONFIG]` for a missing line.
    #[wasm_bindgen(constructor)]
    pub fn new(
        config: &str,
        refresh_ahead_ms: f64,
        cross_tab: bool,
        lock_timeout_ms: f64,
        on_event: Function,
        on_trace: Function,
        on_message: &Function,
    ) -> Result<Client, JsValue> {
        // Split by hand: `str::split` brings a searcher the `.wasm` otherwise does without.
        // Split by hand (like `str::split`, a trailing empty line included): `str::split`
        // brings a searcher the `.wasm` otherwise does without.
        let mut rest = Some(config);
        let mut lines = core::iter::from_fn(move || {
            let r = rest?;
            let end = r.bytes().position(|b| b == b'\n');
            rest = end.and_then(|e| r.get(e + 1..));
            r.get(..end.unwrap_or(r.len())).map(String::from)
        });
        // No URL check here: `js/index.js` has resolved them, and one the allowlist logic can't
        // split (`config::split_url` → `None`) simply never gets the bearer.
        let mut next = || lines.next().ok_or_else(|| to_js(&Error::InvalidConfig));
        let (login_url, refresh_url, logout_url, logout_all_url) =
            (next()?, next()?, next()?, next()?);
        // Clients of different auth servers must not share tokens or wait for each other: JS
        // names their channel and lock after the auth server ([`CHANNEL_NAME`], [`LOCK_NAME`]
        // for the page's own).
        let (channel_name, lock_name) = (next()?, next()?);
        let csrf = (next()?, next()?);
        let allowed = lines.collect();
        let config = Config {
            login_url,
            refresh_url,
            logout_url,
            logout_all_url,
            allowed,
            refresh_ahead_ms,
            csrf,
            cross_tab,
            lock_timeout_ms,
        };
        let channel = if cross_tab {
            channel(&channel_name, on_message)
        } else {
            None
        };
        let env = WebEnv {
            on_event,
            channel,
            lock_name,
        };
        Ok(Client {
            session: Session::new(env, config),
            on_trace,
        })
    }

    /// `authFetch(input, init)`: see `Session::fetch`.
    ///
    /// # Errors
    /// Rejects with the platform's error for a failed or aborted request, and with
    /// `[code, cause]` for auth failures; resolves with the `Response` for any status.
    pub fn fetch(&self, input: JsValue, init: JsValue) -> Promise {
        // Built now, as `fetch` would: a bad input rejects at once, and the caller's signal is
        // known before anything waits.
        let req = match make(&input, &init) {
            Ok(r) => r,
            Err(e) => return Promise::reject(&e),
        };
        let s = Rc::clone(&self.session);
        let on_trace = self.on_trace.clone();
        let signal_req = req.clone();
        let p = promise(async move {
            let attach = s.config().allows(&url(&req));
            let mut steps = Vec::new();
            let r = s
                .fetch(attach, &mut steps, |bearer| {
                    let p = JsFuture::from(send(&req, bearer));
                    async move { p.await.map(WebReply) }
                })
                .await;
            let codes = pack_steps(&steps);
            trace(
                &on_trace,
                &req,
                codes,
                attach && !steps.contains(&Step::NoBearer),
            );
            match r {
                Ok(resp) => Ok(resp.0),
                Err(Failure::Request(e)) => Err(e),
                Err(Failure::Auth(e)) => Err(to_js(&e)),
            }
        });
        // An abort rejects the caller's promise at once; a refresh it was waiting for goes on
        // for everyone else, and the request itself is never sent (its signal is aborted).
        abortable(&p, &signal_req)
    }

    /// Signs in.
    ///
    /// # Errors
    /// `ERR_INVALID_CREDENTIALS`, `ERR_RATE_LIMITED`, `ERR_NETWORK`, `ERR_INVALID_RESPONSE`.
    pub fn login(&self, username: String, password: String) -> Promise {
        let s = Rc::clone(&self.session);
        promise(async move {
            s.login(&username, &password)
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(|e| to_js(&e))
        })
    }

    /// Signs out here (and in every tab), then tells the server.
    ///
    /// # Errors
    /// `ERR_NETWORK` … when the server could not be told; the local sign-out has happened.
    pub fn logout(&self, everywhere: bool) -> Promise {
        let s = Rc::clone(&self.session);
        promise(async move {
            s.logout(everywhere)
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(|e| to_js(&e))
        })
    }

    /// Resolves `true`/`false` once the start-up refresh has answered. Never rejects.
    pub fn ready(&self) -> Promise {
        let s = Rc::clone(&self.session);
        promise(async move { Ok(JsValue::from_bool(s.ready().await)) })
    }

    /// Whether a session is held.
    #[wasm_bindgen(js_name = isAuthenticated)]
    pub fn is_authenticated(&self) -> bool {
        self.session.state() == State::SignedIn
    }

    /// The token's payload segment (base64url JSON of the public claims), decoded by
    /// `js/index.js`, or `""`; never the whole token (the signature stays here).
    pub fn claims(&self) -> String {
        // `""` without a token or for a malformed one (a plain string needs no option shim).
        self.session
            .with_token(|t| jwt::payload_segment(t).map(String::from))
            .flatten()
            .unwrap_or_default()
    }

    /// Milliseconds until the held token expires (monotonic clock), or NaN without a token
    /// (`js/index.js` makes that `undefined`; a plain `f64` crosses the boundary without the
    /// option shim).
    #[wasm_bindgen(js_name = expiresIn)]
    pub fn expires_in(&self) -> f64 {
        self.session.expires_in().unwrap_or(f64::NAN)
    }

    /// Handles a message from another tab, unpacked by `js/bridge.js`: `kind` 0 = hello,
    /// 1 = token (`token`, `ms` left, `flag` = from a login), 2 = signed out (`flag` = expired).
    /// `token` is `""` when the message has none (an empty token is never adopted).
    pub fn message(&self, kind: u32, token: String, ms: f64, flag: bool) {
        let msg = match kind {
            0 => Message::Hello,
            1 => Message::Token {
                token: &token,
                remaining_ms: ms,
                login: flag,
            },
            2 => Message::SignedOut { expired: flag },
            _ => return,
        };
        self.session.on_message(msg);
    }
}
