//! The browser side: [`WebEnv`] implements [`Env`] over `js/bridge.js`, and [`Client`] is the
//! `#[wasm_bindgen]` class that `js/index.js` wraps into the public API.
//!
//! Why a hand-written bridge instead of `web-sys`/`gloo-net` for fetch: web-sys bindings look
//! the global (`fetch`, `Headers.prototype.set`, …) up at call time, so a script that replaced
//! one after start-up would see the bearer. The bridge captures them once, at import (K2).
//! web-sys is still used where nothing secret passes (`Request.url`, `Response.status`).

use crate::config::Config;
use crate::error::Error;
use crate::jwt;
use crate::session::{
    AuthCall, Env, Event, Failure, Grant, Message, Reply, Secret, Session, Step, Task,
};
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use authfetch_protocol as proto;
use core::future::Future;
use core::pin::Pin;
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use web_sys::{Request, Response};

/// Name of the Web Lock held around a refresh (tests and other tools may take it too).
pub const LOCK_NAME: &str = "authfetch-refresh";
/// Name of the BroadcastChannel the tabs talk on.
pub const CHANNEL_NAME: &str = "authfetch";

#[wasm_bindgen(module = "/js/bridge.js")]
extern "C" {
    #[wasm_bindgen(catch)]
    fn make(input: &JsValue, init: &JsValue) -> Result<Request, JsValue>;
    fn abortable(p: &Promise, req: &Request) -> Promise;
    fn send(req: &Request, bearer: Option<&str>) -> Promise;
    fn post(url: &str, name: &str, value: &str, body: &JsValue, bearer: Option<&str>) -> Promise;
    fn now() -> f64;
    fn sleep(ms: f64) -> Promise;
    fn lock(name: &str, ms: f64) -> Promise;
    fn channel(name: &str, on_message: &Function) -> JsValue;
    fn post_message(c: &JsValue, kind: u32, token: Option<&str>, ms: f64, login: bool);
}

fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn set(target: &JsValue, key: &str, value: &JsValue) {
    let _ = Reflect::set(target, &JsValue::from_str(key), value);
}

/// Converts an [`Error`] into the rejection value `[code, cause]`, which `js/index.js` turns
/// into an `AuthFetchError` (its message table lives there, out of the `.wasm`). A platform
/// failure (a `TypeError`, an `AbortError`) is never an array, so the two cannot be confused.
pub fn to_js(e: &Error) -> JsValue {
    Array::of2(
        &JsValue::from_str(e.code()),
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

impl Reply for Response {
    fn status(&self) -> u16 {
        Response::status(self)
    }
    fn www_authenticate(&self) -> Option<String> {
        self.headers().get("www-authenticate").ok().flatten()
    }
}

/// Releases the cross-tab lock when dropped.
pub struct LockGuard(Function);

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.0.call0(&JsValue::UNDEFINED);
    }
}

/// The browser platform for [`Session`].
pub struct WebEnv {
    config: Config,
    on_event: Function,
    channel: JsValue,
}

/// Validates a token response body into a [`Grant`].
fn grant(body: &JsValue) -> Option<Grant> {
    let token = get(body, "access_token").as_string()?;
    let ok_type = get(body, "token_type")
        .as_string()
        .is_some_and(|t| t.eq_ignore_ascii_case(proto::TOKEN_TYPE));
    let secs = get(body, "expires_in").as_f64()?;
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
        let p = JsFuture::from(lock(LOCK_NAME, timeout_ms));
        async move { p.await.ok()?.dyn_into::<Function>().ok().map(LockGuard) }
    }

    fn auth(&self, call: AuthCall<'_>) -> impl Future<Output = Result<Option<Grant>, Error>> {
        let c = &self.config;
        let (url, body, bearer, kind) = match call {
            AuthCall::Refresh => (&c.refresh_url, JsValue::UNDEFINED, None, 0),
            AuthCall::Login { username, password } => {
                let o: JsValue = Object::new().into();
                set(&o, "username", &JsValue::from_str(username));
                set(&o, "password", &JsValue::from_str(password));
                (&c.login_url, o, None, 1)
            }
            AuthCall::Logout { everywhere, bearer } => {
                let url = if everywhere {
                    &c.logout_all_url
                } else {
                    &c.logout_url
                };
                (url, JsValue::UNDEFINED, bearer, 2)
            }
        };
        let p = post(
            url,
            &c.csrf.0,
            &c.csrf.1,
            &body,
            bearer.as_ref().map(Secret::expose),
        );
        drop(bearer);
        let p = JsFuture::from(p);
        async move {
            let answer = p.await.map_err(Error::Network)?;
            let status = get(&answer, "0").as_f64().unwrap_or(0.0) as u16;
            let json = get(&answer, "1");
            let code = get(&json, "error").as_string();
            let invalid_grant = code.as_deref() == Some(proto::ErrorCode::InvalidGrant.as_str());
            match (kind, status) {
                (2, 200..=299 | 401) => Ok(None),
                (0 | 1, 200) => grant(&json).map(Some).ok_or(Error::InvalidResponse),
                (_, 429) => Err(Error::RateLimited),
                (0, 400 | 401) if invalid_grant || status == 401 => Err(Error::SessionExpired),
                (1, 400 | 401) if invalid_grant || status == 401 => Err(Error::InvalidCredentials),
                _ => Err(Error::InvalidResponse),
            }
        }
    }

    fn emit(&self, event: Event) {
        let _ = self
            .on_event
            .call1(&JsValue::NULL, &JsValue::from_str(event.name()));
    }

    fn broadcast(&self, msg: Message<'_>) {
        if !self.channel.is_object() {
            return;
        }
        match msg {
            Message::Hello => post_message(&self.channel, 0, None, 0.0, false),
            Message::Token {
                token,
                remaining_ms,
                login,
            } => post_message(&self.channel, 1, Some(token), remaining_ms, login),
            Message::SignedOut { expired } => post_message(&self.channel, 2, None, 0.0, expired),
        }
    }
}

/// Reads a string option; `''` means "use the default".
fn string_opt(options: &JsValue, key: &str) -> Result<String, Error> {
    let v = get(options, key);
    if v.is_undefined() {
        return Ok(String::new());
    }
    v.as_string().ok_or(Error::InvalidConfig)
}

/// Reads a non-negative finite number option.
fn number_opt(options: &JsValue, key: &str, default: f64) -> Result<f64, Error> {
    let v = get(options, key);
    if v.is_undefined() {
        return Ok(default);
    }
    match v.as_f64() {
        Some(n) if (0.0..=1e9).contains(&n) => Ok(n),
        _ => Err(Error::InvalidConfig),
    }
}

/// Builds a [`Config`] from the options object prepared by `js/index.js` (URLs already
/// resolved by the platform's `URL` parser; an unparsable one arrives as `''`).
fn config_from(options: &JsValue) -> Result<Config, Error> {
    let base = string_opt(options, "base")?;
    let base = base.trim_end_matches('/');
    let url = |key: &str, path: &str| -> Result<String, Error> {
        let v = string_opt(options, key)?;
        let v = if v.is_empty() && !base.is_empty() {
            [base, path].concat()
        } else {
            v
        };
        if crate::config::split_url(&v).is_none() {
            return Err(Error::InvalidConfig);
        }
        Ok(v)
    };
    let mut allowed = Vec::new();
    for entry in Array::from(&get(options, "allowed")).iter() {
        let e = entry.as_string().ok_or(Error::InvalidConfig)?;
        if crate::config::split_url(&e).is_none() {
            return Err(Error::InvalidConfig);
        }
        allowed.push(e);
    }
    let csrf_opt = get(options, "csrf");
    let csrf = if csrf_opt.is_undefined() {
        (
            String::from(proto::CSRF_HEADER),
            String::from(proto::CSRF_HEADER_VALUE),
        )
    } else {
        let name = get(&csrf_opt, "0")
            .as_string()
            .ok_or(Error::InvalidConfig)?;
        let value = get(&csrf_opt, "1")
            .as_string()
            .ok_or(Error::InvalidConfig)?;
        (name, value)
    };
    Ok(Config {
        login_url: url("loginUrl", proto::LOGIN_PATH)?,
        refresh_url: url("refreshUrl", proto::REFRESH_PATH)?,
        logout_url: url("logoutUrl", proto::LOGOUT_PATH)?,
        logout_all_url: url("logoutAllUrl", proto::LOGOUT_ALL_PATH)?,
        allowed,
        refresh_ahead_ms: number_opt(options, "refreshAheadSeconds", 30.0)? * 1000.0,
        csrf,
        cross_tab: get(options, "crossTab").as_bool().unwrap_or(true),
        lock_timeout_ms: number_opt(options, "lockTimeoutMs", 5000.0)?,
    })
}

fn step_js(s: &Step) -> JsValue {
    match s {
        Step::Status(n) => JsValue::from_f64(f64::from(*n)),
        Step::NoBearer => JsValue::from_str("no-bearer"),
        Step::Waited => JsValue::from_str("waited"),
        Step::Refreshed => JsValue::from_str("refreshed"),
        Step::Retried => JsValue::from_str("retried"),
    }
}

/// One authfetch client: a session and its browser platform. `js/index.js` wraps it.
#[wasm_bindgen]
pub struct Client {
    session: Rc<Session<WebEnv>>,
    on_trace: Function,
}

#[wasm_bindgen]
impl Client {
    /// Creates a client. `on_event(type)` receives auth-state events, `on_trace(method, url,
    /// steps, status, bearer)` per-call traces, and `on_message` is wired to the tab channel.
    ///
    /// # Errors
    /// An `AuthFetchError` with code `ERR_INVALID_CONFIG` for unusable options.
    #[wasm_bindgen(constructor)]
    pub fn new(
        options: &JsValue,
        on_event: Function,
        on_trace: Function,
        on_message: &Function,
    ) -> Result<Client, JsValue> {
        let config = config_from(options).map_err(|e| to_js(&e))?;
        let channel = if config.cross_tab {
            channel(CHANNEL_NAME, on_message)
        } else {
            JsValue::NULL
        };
        let env = WebEnv {
            config: config.clone(),
            on_event,
            channel,
        };
        Ok(Client {
            session: Session::new(env, config),
            on_trace,
        })
    }

    /// `authFetch(input, init)`: see `Session::fetch`.
    ///
    /// # Errors
    /// Rejects with the platform's error for a failed or aborted request, and with an
    /// `AuthFetchError` for auth failures; resolves with the `Response` for any status.
    pub fn fetch(&self, input: JsValue, init: JsValue) -> Promise {
        // Built now, as `fetch` would: a bad input rejects at once, and the caller's signal is
        // known before anything waits.
        let req = match make(&input, &init) {
            Ok(r) => r,
            Err(e) => return Promise::reject(&e),
        };
        let s = Rc::clone(&self.session);
        let on_trace = self.on_trace.clone();
        let signal_req = Clone::clone(&req);
        let p = promise(async move {
            let url = req.url();
            let attach = s.config().allows(&url);
            let mut steps = Vec::new();
            let r = s
                .fetch(attach, &mut steps, |bearer| {
                    let p = JsFuture::from(send(&req, bearer));
                    async move { p.await.map(JsCast::unchecked_into::<Response>) }
                })
                .await;
            let status = steps.iter().rev().find_map(|s| match s {
                Step::Status(n) => Some(f64::from(*n)),
                _ => None,
            });
            let bearer = attach && !steps.contains(&Step::NoBearer) && status.is_some();
            let list: Array = steps.iter().map(step_js).collect();
            let args = Array::of5(
                &JsValue::from_str(&req.method()),
                &JsValue::from_str(&url),
                &list,
                &JsValue::from_f64(status.unwrap_or(0.0)),
                &JsValue::from_bool(bearer),
            );
            let _ = on_trace.apply(&JsValue::NULL, &args);
            match r {
                Ok(resp) => Ok(resp.into()),
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
        self.session.state() == crate::session::State::SignedIn
    }

    /// The token's decoded public claims, or `null`. Never the token itself.
    pub fn claims(&self) -> JsValue {
        self.session
            .with_token(jwt::payload_json)
            .flatten()
            .and_then(|json| js_sys::JSON::parse(&json).ok())
            .filter(JsValue::is_object)
            .unwrap_or(JsValue::NULL)
    }

    /// Milliseconds until the held token expires (monotonic clock), or `undefined`.
    #[wasm_bindgen(js_name = expiresIn)]
    pub fn expires_in(&self) -> Option<f64> {
        self.session.expires_in()
    }

    /// Handles a message from another tab (`{k, t, m, l}`, see `js/bridge.js`).
    pub fn message(&self, data: &JsValue) {
        let kind = get(data, "k").as_f64();
        let token = get(data, "t").as_string();
        let flag = get(data, "l").as_bool().unwrap_or(false);
        let msg = match (kind, &token) {
            (Some(0.0), _) => Message::Hello,
            (Some(1.0), Some(t)) => Message::Token {
                token: t,
                remaining_ms: get(data, "m").as_f64().unwrap_or(0.0),
                login: flag,
            },
            (Some(2.0), _) => Message::SignedOut { expired: flag },
            _ => return,
        };
        self.session.on_message(msg);
    }
}
