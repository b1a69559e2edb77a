//! The browser side: [`WebEnv`] implements the session core's [`Env`] on the platform, and
//! [`Client`] is the `#[wasm_bindgen]` class that `js/index.js` wraps into the public API.
//!
//! Every platform type and call goes through the design card's crates, and every value that
//! crosses the boundary has a type the compiler sees:
//! * **web-sys** for the page's own request (`Request`, `Headers`, `Response`, `AbortSignal`),
//!   the global scope (`fetch`, `setTimeout`, `performance`), the Web Lock around a refresh
//!   (`LockManager`), the tabs' `BroadcastChannel` and the `online` / `visibilitychange` events.
//! * **gloo-net** for the four auth endpoint calls (login, refresh, logout, logout-everywhere).
//! * **serde-wasm-bindgen** for what goes out to JS as objects: auth-state events, request
//!   traces and the login body. What comes in (the options, the token response) is read through
//!   `extern` types with typed getters ([`Options`], [`TokenBody`]): serde's deserialize path
//!   would cost more bytes than the rest of the module.
//! * **base64** (in [`crate::jwt`]) for the claims' payload; `JSON.parse` (js-sys) makes it an
//!   object.
//!
//! web-sys bindings look up `fetch`, `Headers.prototype.set` and the rest when they are called,
//! so a script that patches them sees the bearer: the page's script realm can observe the access
//! token, and nothing here pretends otherwise (see the crate docs).

use crate::config::Config;
use crate::error::Error;
use crate::jwt;
/// DPoP (RFC 9449) in the browser: with the `dpop` feature, the key and proofs; without it, a
/// stub that does nothing (the default build: see `docs/PROTOCOL.md` on why it is off).
#[cfg(feature = "dpop")]
pub mod dpop;
#[cfg(not(feature = "dpop"))]
#[path = "web/dpop_off.rs"]
pub mod dpop;
use dpop::KeyOp;

use crate::session::{
    AuthCall, Env, Event, Failure, Grant, Hint, Reply, Secret, Session, Step, Task,
};
use authfetch_protocol as proto;
use gloo_net::http::Request as AuthRequest;
use js_sys::{Array, Function, Promise, JSON};
use serde::ser::{SerializeMap, Serializer};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use web_sys::{
    AbortSignal, AddEventListenerOptions, BroadcastChannel, EventTarget, LockOptions, MessageEvent,
    Request, RequestCache, RequestCredentials, RequestInit, RequestRedirect, Response,
    VisibilityState, Window,
};

#[wasm_bindgen(typescript_custom_section)]
const OPTIONS_TS: &str = r#"
/** The options after js/index.js has resolved them (every URL absolute, every default set). */
interface ResolvedOptions {
  loginUrl: string; refreshUrl: string; logoutUrl: string; logoutAllUrl: string;
  allowedOrigins: string[]; csrfName: string; csrfValue: string;
  refreshAheadMs: number; crossTab: boolean; lockTimeoutMs: number;
  channelName: string; lockName: string;
  onEvent(event: { type: string }): void;
  onTrace(trace: object): void;
  error(code: string, cause: unknown): Error;
}"#;

#[wasm_bindgen]
extern "C" {
    /// The options object `js/index.js` builds (URLs resolved by the platform's `URL` parser,
    /// defaults filled in, types checked), with the callbacks the client reports through.
    #[wasm_bindgen(typescript_type = "ResolvedOptions")]
    #[derive(Clone)]
    pub type Options;
    #[wasm_bindgen(method, getter, js_name = loginUrl)]
    fn login_url(this: &Options) -> String;
    #[wasm_bindgen(method, getter, js_name = refreshUrl)]
    fn refresh_url(this: &Options) -> String;
    #[wasm_bindgen(method, getter, js_name = logoutUrl)]
    fn logout_url(this: &Options) -> String;
    #[wasm_bindgen(method, getter, js_name = logoutAllUrl)]
    fn logout_all_url(this: &Options) -> String;
    #[wasm_bindgen(method, getter, js_name = allowedOrigins)]
    fn allowed_origins(this: &Options) -> Array;
    #[wasm_bindgen(method, getter, js_name = csrfName)]
    fn csrf_name(this: &Options) -> String;
    #[wasm_bindgen(method, getter, js_name = csrfValue)]
    fn csrf_value(this: &Options) -> String;
    #[wasm_bindgen(method, getter, js_name = refreshAheadMs)]
    fn refresh_ahead_ms(this: &Options) -> f64;
    #[wasm_bindgen(method, getter, js_name = crossTab)]
    fn cross_tab(this: &Options) -> bool;
    #[wasm_bindgen(method, getter, js_name = lockTimeoutMs)]
    fn lock_timeout_ms(this: &Options) -> f64;
    /// The tabs' channel: tabs of clients for different auth servers don't hear each other.
    #[wasm_bindgen(method, getter, js_name = channelName)]
    fn channel_name(this: &Options) -> String;
    /// The refresh lock, scoped like the channel.
    #[wasm_bindgen(method, getter, js_name = lockName)]
    fn lock_name(this: &Options) -> String;
    #[wasm_bindgen(method, js_name = onEvent)]
    fn on_event(this: &Options, event: &JsValue);
    #[wasm_bindgen(method, js_name = onTrace)]
    fn on_trace(this: &Options, trace: &JsValue);
    /// Builds the package's `AuthFetchError` for a code of [`Error::code`].
    #[wasm_bindgen(method)]
    fn error(this: &Options, code: &str, cause: &JsValue) -> JsValue;

    /// The JSON body of a login or refresh answer, as `Response.json()` parsed it. Untrusted:
    /// each field is checked for its type here.
    type TokenBody;
    #[wasm_bindgen(method, getter)]
    fn access_token(this: &TokenBody) -> JsValue;
    #[wasm_bindgen(method, getter)]
    fn token_type(this: &TokenBody) -> JsValue;
    #[wasm_bindgen(method, getter)]
    fn expires_in(this: &TokenBody) -> JsValue;
    #[wasm_bindgen(method, getter)]
    fn error(this: &TokenBody) -> JsValue;

    /// `String(value)`: what `fetch` does with an input that is not a `Request`.
    #[wasm_bindgen(js_name = String)]
    fn js_string(value: &JsValue) -> String;
}

/// The global scope. Typed as `Window`: a worker's `WorkerGlobalScope` has the same `fetch`,
/// `setTimeout`, `performance` and `navigator` members, and web-sys calls them by name.
fn global() -> Window {
    js_sys::global().unchecked_into()
}

/// Converts an [`Error`] into the package's `AuthFetchError` (built by `js/index.js`, which
/// holds the class and the messages; the code is spelled in [`Error::code`] only).
fn to_js(options: &Options, e: &Error) -> JsValue {
    options.error(e.code(), e.cause().unwrap_or(&JsValue::UNDEFINED))
}

/// One `Promise` adapter for every async method (one copy of the executor glue).
fn promise(f: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
    let f: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>> = Box::pin(f);
    future_to_promise(f)
}

/// Polls `main`, and `other` when `main` is pending: whichever is ready first.
struct Race<A, B>(Pin<Box<A>>, B);

impl<T, A: Future<Output = T>, B: Future<Output = T> + Unpin> Future for Race<A, B> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Poll::Ready(v) = self.0.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        Pin::new(&mut self.1).poll(cx)
    }
}

/// A `Response` as the session core sees it.
pub struct WebReply(Response);

impl Reply for WebReply {
    fn status(&self) -> u16 {
        self.0.status()
    }
    fn www_authenticate(&self) -> Option<String> {
        self.0.headers().get("www-authenticate").ok().flatten()
    }
}

/// Holds the cross-tab Web Lock until dropped: the lock's callback returned a promise that this
/// function resolves.
pub struct LockGuard(Function);

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.0.call0(&JsValue::NULL);
    }
}

/// An event listener, removed when dropped (a dropped closure must not be called again).
struct Listener {
    target: EventTarget,
    kind: &'static str,
    callback: Closure<dyn FnMut(JsValue)>,
}

impl Listener {
    fn new(target: EventTarget, kind: &'static str, f: impl FnMut(JsValue) + 'static) -> Self {
        let callback = Closure::<dyn FnMut(JsValue)>::new(f);
        let _ = target.add_event_listener_with_callback(kind, callback.as_ref().unchecked_ref());
        Listener {
            target,
            kind,
            callback,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.kind, self.callback.as_ref().unchecked_ref());
    }
}

/// The browser platform for [`Session`].
pub struct WebEnv {
    options: Options,
    /// The DPoP key and nonces (shared with the page's requests in [`Client::fetch`]).
    dpop: Rc<dpop::Dpop>,
    /// The tabs' channel, when cross-tab coordination is on and the platform has one.
    channel: Option<BroadcastChannel>,
    lock_name: String,
}

/// A plain JS object from `(key, value)` pairs, through serde-wasm-bindgen: a map serialized as
/// an object. (Derived `Serialize` structs would be the same objects, but serde-wasm-bindgen
/// interns struct field names in a hash map, which costs more `.wasm` than the objects built
/// here in all.)
fn object<'a, V: serde::Serialize + 'a>(pairs: impl IntoIterator<Item = (&'a str, V)>) -> JsValue {
    let ser = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    let built = (|| {
        let mut map = ser.serialize_map(None)?;
        for (k, v) in pairs {
            map.serialize_entry(k, &v)?;
        }
        map.end()
    })();
    built.unwrap_or(JsValue::NULL)
}

/// The values of one object: strings, a step list, a status, a flag.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Val<'a> {
    Str(&'a str),
    Steps(&'a [Step]),
    Status(Option<u16>),
    Flag(bool),
}

impl serde::Serialize for Step {
    /// `"waited"`, `"no-bearer"`, `"refreshed"`, `"retried"`, or the status as text (`"401"`).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = match *self {
            Step::Status(n) => n,
            Step::Waited => return s.serialize_str("waited"),
            Step::NoBearer => return s.serialize_str("no-bearer"),
            Step::Refreshed => return s.serialize_str("refreshed"),
            Step::Retried => return s.serialize_str("retried"),
        };
        // Three digits by hand: `to_string` would bring `core::fmt` into the `.wasm`.
        let mut text = String::with_capacity(3);
        for d in [n / 100 % 10, n / 10 % 10, n % 10] {
            text.push(char::from(b'0' + d as u8));
        }
        s.serialize_str(&text)
    }
}

/// Checks the `{access_token, token_type, expires_in}` answer of login/refresh. A `DPoP` token
/// is accepted only when a proof went with the request (there is a key to bind it to).
fn grant(body: &TokenBody, dpop: &dpop::Dpop) -> Option<Grant> {
    let token = body.access_token().as_string()?;
    let kind = body.token_type().as_string().unwrap_or_default();
    let bound = kind.eq_ignore_ascii_case(DPOP_SCHEME) && dpop.has_key();
    let ok_type = bound || kind.eq_ignore_ascii_case(proto::TOKEN_TYPE);
    dpop.set_bound(bound);
    let ok_token = !token.is_empty()
        && token.len() <= jwt::MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_graphic());
    let secs = body.expires_in().as_f64().unwrap_or(f64::NAN);
    // Also rejects NaN.
    if !(ok_type && ok_token && secs > 0.0 && secs <= 86_400.0) {
        return None;
    }
    Some(Grant {
        token: Secret::new(token),
        expires_in_ms: secs * 1000.0,
    })
}

/// A gloo-net failure as a JS value for `err.cause` (gloo keeps the name and message only).
fn gloo_cause(e: gloo_net::Error) -> JsValue {
    let (name, message) = match e {
        gloo_net::Error::JsError(j) => (j.name, j.message),
        gloo_net::Error::GlooError(m) => (String::from("Error"), m),
    };
    let err = js_sys::Error::new(&message);
    err.set_name(&name);
    err.into()
}

impl Env for WebEnv {
    type Guard = LockGuard;

    fn now(&self) -> f64 {
        global()
            .performance()
            .map_or_else(js_sys::Date::now, |p| p.now())
    }

    fn spawn(&self, task: Task) {
        wasm_bindgen_futures::spawn_local(task);
    }

    fn sleep(&self, ms: f64) -> impl Future<Output = ()> + 'static {
        let ms = ms.clamp(0.0, f64::from(i32::MAX)) as i32;
        let p = Promise::new(&mut |resolve, _| {
            let _ = global().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        });
        let p = JsFuture::from(p);
        async move {
            let _ = p.await;
        }
    }

    /// `navigator.locks.request(name, {signal: AbortSignal.timeout(ms)}, callback)`: the
    /// callback reports the grant and returns a promise that [`LockGuard`] resolves. A timeout
    /// rejects the request before the grant (then `None`). A tab that closes releases its lock.
    fn lock(&self, timeout_ms: f64) -> impl Future<Output = Option<LockGuard>> + 'static {
        let locks = global().navigator().locks();
        let mut granted = None;
        let mut release = None;
        if !locks.is_undefined() {
            let mut grant_fn = None;
            let grant = Promise::new(&mut |resolve, _| grant_fn = Some(resolve));
            let held = Promise::new(&mut |resolve, _| release = Some(resolve));
            let on_grant = Closure::once_into_js(move |_lock: JsValue| {
                if let Some(f) = grant_fn {
                    let _ = f.call0(&JsValue::NULL);
                }
                held
            });
            let options = LockOptions::new();
            options.set_signal(&AbortSignal::timeout_with_f64(timeout_ms));
            let asked =
                locks.request_with_options(&self.lock_name, &options, on_grant.unchecked_ref());
            granted = Some(Race(
                Box::pin(async move { JsFuture::from(grant).await.is_ok() }),
                // Settles first only when the request failed (timed out): no lock.
                Box::pin(async move {
                    let _ = JsFuture::from(asked).await;
                    false
                }),
            ));
        }
        async move {
            let (race, release) = (granted?, release?);
            race.await.then_some(LockGuard(release))
        }
    }

    fn auth(
        &self,
        c: &Config,
        call: AuthCall<'_>,
    ) -> impl Future<Output = Result<Option<Grant>, Error>> {
        let (url, kind) = match call {
            AuthCall::Refresh => (c.refresh_url.clone(), 0),
            AuthCall::Login { .. } => (c.login_url.clone(), 1),
            AuthCall::Logout { everywhere: true } => (c.logout_all_url.clone(), 2),
            AuthCall::Logout { everywhere: false } => (c.logout_url.clone(), 2),
        };
        let body = match call {
            AuthCall::Login { username, password } => {
                JSON::stringify(&object([("username", username), ("password", password)]))
                    .ok()
                    .and_then(|b| b.as_string())
                    .ok_or(Error::InvalidConfig)
                    .map(Some)
            }
            _ => Ok(None),
        };
        let csrf = c.csrf.clone();
        let dpop = Rc::clone(&self.dpop);
        async move {
            let body = body?;
            let dpop_failed = |e: JsValue| Error::Network(e);
            // D1: a login makes a new key; a refresh or logout uses the key the tabs share
            // (another tab's login may have replaced it).
            let op = if kind == 1 { KeyOp::New } else { KeyOp::Load };
            dpop.key(op).await.map_err(dpop_failed)?;
            // At most one retry, for a nonce: two sends at most.
            let mut nonce_retried = false;
            let (status, body) = loop {
                // The cookie and the CSRF header only, never a bearer (K3). No redirects: an
                // auth answer comes from the auth endpoint itself.
                let mut builder = AuthRequest::post(&url)
                    .header(&csrf.0, &csrf.1)
                    .credentials(RequestCredentials::Include)
                    .cache(RequestCache::NoStore)
                    .redirect(RequestRedirect::Error);
                let proof = dpop.proof("POST", &url, None);
                if let Some(p) = proof.await.map_err(dpop_failed)? {
                    builder = builder.header(DPOP_HEADER, &p);
                }
                let request = match &body {
                    Some(b) => builder
                        .header("content-type", "application/json")
                        .body(b.clone()),
                    None => builder.build(),
                }
                .map_err(|e| Error::Network(gloo_cause(e)))?;
                let answer = request
                    .send()
                    .await
                    .map_err(|e| Error::Network(gloo_cause(e)))?;
                let status = answer.status();
                let raw = Response::from(answer);
                // Without the `dpop` feature none of this is compiled in (no header is read).
                if cfg!(feature = "dpop") {
                    dpop.remember_nonce(&url, raw.headers().get(DPOP_NONCE_HEADER).ok().flatten());
                    let challenge = raw.headers().get("www-authenticate").ok().flatten();
                    if !nonce_retried && crate::session::wants_nonce(status, challenge.as_deref()) {
                        // D5: once more with the nonce just remembered.
                        nonce_retried = true;
                        continue;
                    }
                }
                // Any body that is not a JSON object reads as `{}`: its fields are then missing.
                let body = match raw.json() {
                    Ok(p) => JsFuture::from(p).await.ok(),
                    Err(_) => None,
                }
                .filter(JsValue::is_object)
                .unwrap_or_else(|| js_sys::Object::new().into())
                .unchecked_into::<TokenBody>();
                break (status, body);
            };
            let error = body.error().as_string();
            let invalid_grant = error.as_deref() == Some(proto::ErrorCode::InvalidGrant.as_str());
            // The CSRF guard's answer to an origin it does not allow (X4/X5): a deployment
            // mistake that the developer must be able to tell from a broken server.
            let refused = error.as_deref() == Some(proto::ErrorCode::AccessDenied.as_str());
            // A server in `--dpop required` refusing a login without a proof: without the
            // `dpop` feature this build can never send one, which is the app's mistake (it
            // imports `authfetch`, not `authfetch/dpop`), not a wrong password.
            let needs_dpop =
                !cfg!(feature = "dpop") && error.as_deref() == Some(proto::INVALID_DPOP_PROOF);
            if kind == 2 && matches!(status, 200..=299) {
                // D1: the session is over; its key goes with it.
                let _ = dpop.key(KeyOp::Forget).await;
            }
            match (kind, status) {
                // "No session": the refresh carried no cookie (docs/PROTOCOL.md).
                (0, 204) => Ok(None),
                (2, 200..=299 | 401) => Ok(None),
                (_, 403) if refused => Err(Error::OriginRefused),
                (1, 401) if needs_dpop => Err(Error::DpopRequired),
                (0 | 1, 200) => grant(&body, &dpop).map(Some).ok_or(Error::InvalidResponse),
                (_, 429) => Err(Error::RateLimited),
                (0, 400 | 401) if invalid_grant || status == 401 => Err(Error::SessionExpired),
                (1, 400 | 401) if invalid_grant || status == 401 => Err(Error::InvalidCredentials),
                _ => Err(Error::InvalidResponse),
            }
        }
    }

    fn emit(&self, event: Event) {
        // `{ type: "signed_in" }`.
        self.options.on_event(&object([("type", event.name())]));
    }

    fn broadcast(&self, hint: Hint) {
        if let Some(channel) = &self.channel {
            let _ = channel.post_message(&JsValue::from_str(hint_name(hint)));
        }
    }
}

/// A hint's spelling on the channel: a bare string, nothing else.
fn hint_name(hint: Hint) -> &'static str {
    match hint {
        Hint::SignedIn => "signed_in",
        Hint::SignedOut => "signed_out",
        Hint::Ended => "session_ended",
    }
}

/// `new Request(input, init)`, as `fetch` builds it (a bad input throws the platform's error).
fn make_request(input: &JsValue, init: &JsValue) -> Result<Request, JsValue> {
    // `undefined` is a valid (absent) `RequestInit`.
    let init: &RequestInit = init.unchecked_ref();
    match input.dyn_ref::<Request>() {
        Some(r) => Request::new_with_request_and_init(r, init),
        None => Request::new_with_str_and_init(&js_string(input), init),
    }
}

/// Sends a fresh copy of `req` with `bearer`; the original is never sent, so it can be
/// replayed (K5). A DPoP-bound token goes as `Authorization: DPoP` with a new proof for this
/// method, URL and token (D4), each attempt its own (a proof is good once).
async fn send(req: &Request, bearer: Option<&str>, dpop: &dpop::Dpop) -> Result<WebReply, JsValue> {
    let copy = Request::clone(req)?;
    if let Some(b) = bearer {
        let url = copy.url();
        let proof = if dpop.bound() {
            dpop.proof(&copy.method(), &url, Some(b)).await?
        } else {
            None
        };
        let scheme = if proof.is_some() { "DPoP " } else { "Bearer " };
        let mut value = String::with_capacity(scheme.len() + b.len());
        value.push_str(scheme);
        value.push_str(b);
        copy.headers().set("authorization", &value)?;
        if let Some(p) = proof {
            copy.headers().set(DPOP_HEADER, &p)?;
        }
    }
    let res: Response = JsFuture::from(global().fetch_with_request(&copy))
        .await?
        .unchecked_into();
    if cfg!(feature = "dpop") {
        dpop.remember_nonce(
            &res.url(),
            res.headers().get(DPOP_NONCE_HEADER).ok().flatten(),
        );
    }
    Ok(WebReply(res))
}

/// The proof header (RFC 9449 §4.1).
const DPOP_HEADER: &str = "dpop";
/// A server's nonce (RFC 9449 §8).
const DPOP_NONCE_HEADER: &str = "dpop-nonce";
/// `token_type` and authorization scheme of a bound token.
const DPOP_SCHEME: &str = "DPoP";

/// Resolves when `signal` aborts; removes its listener when dropped.
struct AbortWait {
    signal: AbortSignal,
    listener: Option<Function>,
    fired: JsFuture,
}

impl AbortWait {
    fn new(signal: AbortSignal) -> Self {
        let mut listener = None;
        let fired = Promise::new(&mut |resolve, _| {
            let once = AddEventListenerOptions::new();
            once.set_once(true);
            let _ = signal.add_event_listener_with_callback_and_add_event_listener_options(
                "abort", &resolve, &once,
            );
            listener = Some(resolve);
        });
        AbortWait {
            signal,
            listener,
            fired: JsFuture::from(fired),
        }
    }
}

impl Future for AbortWait {
    type Output = Result<JsValue, JsValue>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.fired).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(self.signal.reason())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for AbortWait {
    fn drop(&mut self) {
        if let Some(f) = &self.listener {
            let _ = self.signal.remove_event_listener_with_callback("abort", f);
        }
    }
}

/// One authfetch client: a session on the browser platform. `js/index.js` wraps it.
#[wasm_bindgen]
pub struct Client {
    session: Rc<Session<WebEnv>>,
    options: Options,
    /// The tabs' channel, `online` and `visibilitychange`; removed when the client is freed.
    _listeners: Vec<Listener>,
}

#[wasm_bindgen]
impl Client {
    /// Creates a client from options already resolved by `js/index.js`.
    #[wasm_bindgen(constructor)]
    pub fn new(options: Options) -> Client {
        let allowed = options
            .allowed_origins()
            .iter()
            .filter_map(|v| v.as_string())
            .collect();
        let config = Config {
            login_url: options.login_url(),
            refresh_url: options.refresh_url(),
            logout_url: options.logout_url(),
            logout_all_url: options.logout_all_url(),
            allowed,
            refresh_ahead_ms: options.refresh_ahead_ms(),
            csrf: (options.csrf_name(), options.csrf_value()),
            cross_tab: options.cross_tab(),
            lock_timeout_ms: options.lock_timeout_ms(),
        };
        let channel = if config.cross_tab {
            BroadcastChannel::new(&options.channel_name()).ok()
        } else {
            None
        };
        let env = WebEnv {
            dpop: Rc::default(),
            options: options.clone(),
            channel: channel.clone(),
            lock_name: options.lock_name(),
        };
        let session = Session::new(env, config);
        let mut listeners = Vec::new();
        // Hints from other tabs (or any script on the origin): bare strings; anything else is
        // ignored, and what is recognised only makes the session ask the server.
        if let Some(channel) = channel {
            let s = Rc::downgrade(&session);
            listeners.push(Listener::new(
                channel.into(),
                "message",
                move |e: JsValue| {
                    let hint = match e
                        .unchecked_into::<MessageEvent>()
                        .data()
                        .as_string()
                        .as_deref()
                    {
                        Some("signed_in") => Hint::SignedIn,
                        Some("signed_out") => Hint::SignedOut,
                        Some("session_ended") => Hint::Ended,
                        _ => return,
                    };
                    if let Some(s) = Weak::upgrade(&s) {
                        s.on_hint(hint);
                    }
                },
            ));
        }
        // Back online, or the page is looked at again: the refresh back-off starts over (K11).
        let g = global();
        let reset = |s: Weak<Session<WebEnv>>, visible_only: bool| {
            move |_: JsValue| {
                let visible = global()
                    .document()
                    .is_none_or(|d| d.visibility_state() == VisibilityState::Visible);
                if let Some(s) = Weak::upgrade(&s).filter(|_| visible || !visible_only) {
                    s.reset_backoff();
                }
            }
        };
        listeners.push(Listener::new(
            g.clone().into(),
            "online",
            reset(Rc::downgrade(&session), false),
        ));
        if let Some(doc) = g.document() {
            listeners.push(Listener::new(
                doc.into(),
                "visibilitychange",
                reset(Rc::downgrade(&session), true),
            ));
        }
        Client {
            session,
            options,
            _listeners: listeners,
        }
    }

    /// `authFetch(input, init)`: see `Session::fetch`.
    ///
    /// # Errors
    /// Rejects with the platform's error for a failed or aborted request (the signal's reason
    /// for an abort, at once when the signal is already aborted), and with an `AuthFetchError`
    /// for auth failures; resolves with the `Response` for any status.
    pub fn fetch(&self, input: JsValue, init: JsValue) -> Promise {
        // Built now, as `fetch` would: a bad input rejects at once, and the caller's signal is
        // known before anything waits.
        let req = match make_request(&input, &init) {
            Ok(r) => r,
            Err(e) => return Promise::reject(&e),
        };
        let signal = req.signal();
        if signal.aborted() {
            // Nothing started, so nothing else can reject later (no unhandled rejection).
            return Promise::reject(&signal.reason());
        }
        let s = Rc::clone(&self.session);
        let options = self.options.clone();
        let work = async move {
            // A caller's own Authorization header goes out as given, and its 401 is theirs.
            let own = req.headers().get("authorization").ok().flatten().is_some();
            let attach = !own && s.config().allows(&req.url());
            let mut steps = Vec::new();
            let r = s
                .fetch(attach, &mut steps, |bearer| {
                    // The handle (not a JS `clone()`: `send` makes the copy it sends).
                    let req = <Request as Clone>::clone(&req);
                    let bearer = bearer.map(String::from);
                    let dpop = Rc::clone(&s.env().dpop);
                    // Boxed: the session awaits a send in three places, and one copy of its
                    // state machine serves all three.
                    let f: Pin<Box<dyn Future<Output = Result<WebReply, JsValue>>>> =
                        Box::pin(async move { send(&req, bearer.as_deref(), &dpop).await });
                    f
                })
                .await;
            let status = steps.iter().rev().find_map(|s| match s {
                Step::Status(n) => Some(*n),
                _ => None,
            });
            // `{method, url, steps, status, bearer}`: never the token.
            let (method, url) = (req.method(), req.url());
            let bearer = attach && status.is_some() && !steps.contains(&Step::NoBearer);
            options.on_trace(&object([
                ("method", Val::Str(&method)),
                ("url", Val::Str(&url)),
                ("steps", Val::Steps(&steps)),
                ("status", Val::Status(status)),
                ("bearer", Val::Flag(bearer)),
            ]));
            match r {
                Ok(resp) => Ok(resp.0.into()),
                Err(Failure::Request(e)) => Err(e),
                Err(Failure::Auth(e)) => Err(to_js(&options, &e)),
            }
        };
        // An abort rejects the caller's promise at once; a refresh it was waiting for goes on
        // for everyone else, and the request itself is not sent (its copy carries the signal).
        promise(Race(Box::pin(work), AbortWait::new(signal)))
    }

    /// Signs in.
    ///
    /// # Errors
    /// `ERR_INVALID_CREDENTIALS`, `ERR_RATE_LIMITED`, `ERR_NETWORK`, `ERR_INVALID_RESPONSE`.
    pub fn login(&self, username: String, password: String) -> Promise {
        self.auth(Some((username, password)), false)
    }

    /// Signs out here (and, through the server, in every tab), then tells the server.
    ///
    /// # Errors
    /// `ERR_NETWORK` … when the server could not be told; the local sign-out has happened.
    pub fn logout(&self, everywhere: bool) -> Promise {
        self.auth(None, everywhere)
    }

    /// Login (with credentials) or logout, as one future type: one state machine in the `.wasm`
    /// for both.
    fn auth(&self, credentials: Option<(String, String)>, everywhere: bool) -> Promise {
        let s = Rc::clone(&self.session);
        let options = self.options.clone();
        promise(async move {
            match &credentials {
                Some((user, pass)) => s.login(user, pass).await,
                None => s.logout(everywhere).await,
            }
            .map(|()| JsValue::UNDEFINED)
            .map_err(|e| to_js(&options, &e))
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

    /// The token's public claims as an object (decoded, never verified: display only), or
    /// `null` without a token or for a payload that is not a JSON object.
    pub fn claims(&self) -> JsValue {
        self.session
            .with_token(jwt::payload_json)
            .flatten()
            .and_then(|json| JSON::parse(&json).ok())
            .filter(|v| v.is_object() && !Array::is_array(v))
            .unwrap_or(JsValue::NULL)
    }

    /// Milliseconds until the held token expires (monotonic clock), or `undefined`.
    #[wasm_bindgen(js_name = expiresIn)]
    pub fn expires_in(&self) -> Option<f64> {
        self.session.expires_in()
    }
}
