//! The session core: token state, single-flight refresh, retry once, expiry schedule and the
//! cross-tab protocol, written against the small [`Env`] trait so it runs under native
//! `cargo test` with a fake clock, a fake transport and a hand-driven executor.
//!
//! # Tabs never share a token
//! Each tab gets its own access token from the server, through the refresh endpoint. What
//! crosses between tabs is a payload-free [`Hint`] ("a session started", "the session ended"),
//! and a hint is never believed: it only makes the tab ask the server (a refresh). So a script
//! that listens on the tabs' channel learns nothing, and one that posts on it can cost a tab one
//! refresh but can neither install a token nor sign a tab out (docs/TABS.md).
//!
//! # Invariants
//! * At most one refresh per tab is in flight ([`Inner::flight`]); everyone who needs a token
//!   while it runs awaits the same [`Flight`] (panva/jose `reload`).
//! * [`Inner::epoch`] is the generation counter: sign-out and login bump it, and a refresh that
//!   started in an older epoch is discarded when it lands, so a late refresh cannot resurrect a
//!   session the user has just left.
//! * [`Inner::version`] bumps on every token change; a 401 for a token that has already been
//!   replaced is retried with the new one instead of refreshing again.
//! * At most one auth call that sets the refresh cookie (refresh or login) is on the wire per
//!   tab ([`Inner::wire`]): a login waits for a refresh already sent to answer before it posts,
//!   so the refresh's `Set-Cookie` (the old family, which the login revokes) cannot land after
//!   the login's and leave the browser with a dead cookie. A refresh that would start while a
//!   login is out waits for it, and is then abandoned by the generation guard if the login
//!   succeeded.
//! * No `RefCell` borrow is held across an `.await` or across a call into [`Env`]
//!   (events run arbitrary JS listeners, which may call back into the session).
//! * A session ends once: after the end ([`Inner::ended`]), a late 401 of a call sent with a
//!   token of the ended generation starts no refresh and emits nothing; it rejects with the
//!   end's error.

use crate::config::{find_bytes, Config};
use crate::error::Error;
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Ref, RefCell, RefMut};
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

/// `RefCell::borrow` without the formatted panic (whose `core::fmt` costs kilobytes of `.wasm`).
/// A failed borrow is a bug (the invariants above rule it out): it traps.
fn rd<T>(c: &RefCell<T>) -> Ref<'_, T> {
    match c.try_borrow() {
        Ok(b) => b,
        Err(_) => crate::bug(),
    }
}

/// `RefCell::borrow_mut` without the formatted panic; see [`rd`].
fn wr<T>(c: &RefCell<T>) -> RefMut<'_, T> {
    match c.try_borrow_mut() {
        Ok(b) => b,
        Err(_) => crate::bug(),
    }
}

/// A boxed local task, as handed to [`Env::spawn`].
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Longest back-off between refresh attempts after repeated failures.
pub const MAX_BACKOFF_MS: f64 = 30_000.0;

/// An access token. `Debug` prints `[redacted]`; the text is reached only through
/// [`Secret::expose`], and the bytes are overwritten when it is dropped (best effort: the
/// allocator may have copied them while the string grew).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token.
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The token text, for building the `Authorization` header at the last moment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = core::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        core::hint::black_box(&bytes);
    }
}

/// A successful token response, already validated by the transport.
#[derive(Debug)]
pub struct Grant {
    /// The access token.
    pub token: Secret,
    /// `expires_in` from the server, in milliseconds.
    pub expires_in_ms: f64,
}

/// A call to one of the auth endpoints.
#[derive(Debug)]
pub enum AuthCall<'a> {
    /// `POST /auth/refresh` with the cookie.
    Refresh,
    /// `POST /auth/login`.
    Login {
        /// Account name.
        username: &'a str,
        /// Password; never stored.
        password: &'a str,
    },
    /// `POST /auth/logout` (`everywhere = false`) or `/auth/logout-all`, with the cookie only:
    /// the bearer never goes to an auth endpoint (K3); revoking the session's family revokes its
    /// access tokens on the server (docs/PROTOCOL.md).
    Logout {
        /// Which endpoint.
        everywhere: bool,
    },
}

/// Auth-state events, delivered to `onAuthStateChange` listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A session started in this tab: login, start-up refresh, or a token from another tab.
    SignedIn,
    /// The access token was replaced.
    Refreshed,
    /// The user signed out (here or in another tab).
    SignedOut,
    /// The server no longer accepts the refresh cookie.
    SessionExpired,
    /// A refresh failed for a transient reason; the session is kept.
    RefreshFailed,
}

impl Event {
    /// The JS spelling (`event.type`).
    pub fn name(self) -> &'static str {
        match self {
            Event::SignedIn => "signed_in",
            Event::Refreshed => "refreshed",
            Event::SignedOut => "signed_out",
            Event::SessionExpired => "session_expired",
            Event::RefreshFailed => "refresh_failed",
        }
    }
}

/// What tabs tell each other: a hint without payload, never a token. Any script on the origin
/// can read and post these, so a receiving tab treats one only as a reason to ask the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// A login happened in another tab: the cookie now holds a new session (family).
    SignedIn,
    /// The user signed out in another tab.
    SignedOut,
    /// The server refused another tab's refresh cookie (expired, revoked, reuse detected). A
    /// hint of its own so that every tab tells its app the same story: `session_expired`,
    /// not `signed_out`, which would say the user left.
    Ended,
}

/// What the session needs from a response.
pub trait Reply {
    /// HTTP status.
    fn status(&self) -> u16;
    /// The `WWW-Authenticate` header, if present and readable.
    fn www_authenticate(&self) -> Option<String>;
}

/// The platform: clock, tasks, timers, the auth endpoints, events and the other tabs.
pub trait Env: 'static {
    /// Proof of holding the cross-tab refresh lock; released on drop.
    type Guard;
    /// Milliseconds on a monotonic clock (`performance.now()`).
    fn now(&self) -> f64;
    /// Runs a task to completion independently of whoever started it.
    fn spawn(&self, task: Task);
    /// Completes after `ms` milliseconds.
    fn sleep(&self, ms: f64) -> impl Future<Output = ()> + 'static;
    /// Acquires the cross-tab refresh lock, or gives up after `timeout_ms` (`None`; also
    /// `None` at once where the platform has no Web Locks).
    fn lock(&self, timeout_ms: f64) -> impl Future<Output = Option<Self::Guard>> + 'static;
    /// Performs an auth call. Login yields a [`Grant`]; refresh a [`Grant`], or `None` when the
    /// server answers "no session" (the request carried no refresh cookie); logout `None`.
    ///
    /// # Errors
    /// [`Error::SessionExpired`] when the server refuses the refresh cookie,
    /// [`Error::InvalidCredentials`] for a refused login, [`Error::Network`],
    /// [`Error::RateLimited`] or [`Error::InvalidResponse`] otherwise.
    fn auth(
        &self,
        config: &Config,
        call: AuthCall<'_>,
    ) -> impl Future<Output = Result<Option<Grant>, Error>>;
    /// Delivers an auth-state event.
    fn emit(&self, event: Event);
    /// Posts a hint to the other tabs.
    fn broadcast(&self, hint: Hint);
}

/// Whether the session believes a session exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Before the start-up refresh has answered.
    Unknown,
    /// A token is held (it may be about to expire).
    SignedIn,
    /// No session.
    SignedOut,
}

/// A step of one `authFetch` call, for `onRequest` traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A response arrived with this status.
    Status(u16),
    /// The request went out without our bearer (not allowed, or no session).
    NoBearer,
    /// The request waited for a refresh before it was sent.
    Waited,
    /// A refresh completed after a 401.
    Refreshed,
    /// The request was replayed once.
    Retried,
}

/// How `authFetch` can fail: a typed auth failure, or the caller's own request failing
/// (network error, abort), passed through unchanged.
#[derive(Debug)]
pub enum Failure<X> {
    /// A typed auth failure.
    Auth(Error),
    /// The request itself failed; the platform's value is passed through.
    Request(X),
}

/// Is this response a reason to refresh? Only a 401 (never a 403, K4), and not when the
/// server's challenge names an error other than `invalid_token`.
pub fn wants_refresh(status: u16, www_authenticate: Option<&str>) -> bool {
    status == 401
        && www_authenticate.is_none_or(|h| {
            let h = h.as_bytes();
            find_bytes(h, b"error=").is_none() || find_bytes(h, b"invalid_token").is_some()
        })
}

/// Is this response a DPoP server asking for its nonce (RFC 9449 §8)? The platform has kept the
/// `DPoP-Nonce` it sent; the same request goes again, once, with a proof that carries it.
pub fn wants_nonce(status: u16, www_authenticate: Option<&str>) -> bool {
    status == 401
        && www_authenticate.is_some_and(|h| find_bytes(h.as_bytes(), b"use_dpop_nonce").is_some())
}

/// Sends with `token`; a `use_dpop_nonce` answer is sent again at once with the same token
/// while `nonce_retry` allows (once per `authFetch`: a server that asks twice is answered by
/// the caller's status, not by a loop).
async fn send_with_nonce<R, X, F, Fut>(
    send: &mut F,
    token: &str,
    trace: &mut Vec<Step>,
    nonce_retry: &mut bool,
) -> Result<R, Failure<X>>
where
    R: Reply,
    F: FnMut(Option<&str>) -> Fut,
    Fut: Future<Output = Result<R, X>>,
{
    let r = send(Some(token)).await.map_err(Failure::Request)?;
    trace.push(Step::Status(r.status()));
    if *nonce_retry && wants_nonce(r.status(), r.www_authenticate().as_deref()) {
        *nonce_retry = false;
        trace.push(Step::Retried);
        let r = send(Some(token)).await.map_err(Failure::Request)?;
        trace.push(Step::Status(r.status()));
        return Ok(r);
    }
    Ok(r)
}

fn backoff_ms(failures: u32) -> f64 {
    let mut ms = 500.0;
    for _ in 1..failures.min(16) {
        ms *= 2.0;
    }
    if ms > MAX_BACKOFF_MS {
        MAX_BACKOFF_MS
    } else {
        ms
    }
}

struct Token {
    secret: Secret,
    expires_at: f64,
    refresh_at: f64,
}

struct Inner {
    state: State,
    token: Option<Token>,
    version: u64,
    epoch: u64,
    flight: Option<Rc<Flight>>,
    /// The refresh or login request on the wire (completed when it has answered).
    wire: Option<Rc<Flight>>,
    failures: u32,
    retry_at: f64,
    /// The error the last transient refresh failure gave: what calls get while backing off
    /// ([`Error::Network`] when offline, else [`Error::RefreshBackoff`]).
    backoff_error: Error,
    /// How the last session ended ([`Error::SessionExpired`] or [`Error::SignedOut`]): what a
    /// late 401 of a call sent in that session rejects with.
    ended: Error,
    /// Set when another tab hinted that the session ended, and how: if the check confirms it,
    /// this tab reports what the hint said happened (`signed_out` after a logout,
    /// `session_expired` after the server refused the cookie). A forged hint gains nothing
    /// here: the end itself is always the server's answer.
    hinted_out: Option<Hint>,
}

/// One in-flight refresh, awaited by every caller that needs its outcome.
#[derive(Default)]
struct Flight {
    outcome: RefCell<Option<Result<(), Error>>>,
    wakers: RefCell<Vec<Waker>>,
}

impl Flight {
    fn done(outcome: Result<(), Error>) -> Rc<Flight> {
        let f = Rc::new(Flight::default());
        f.complete(outcome);
        f
    }

    /// Sets the outcome once (later calls are ignored) and wakes every waiter.
    fn complete(&self, outcome: Result<(), Error>) {
        {
            let mut o = wr(&self.outcome);
            if o.is_some() {
                return;
            }
            *o = Some(outcome);
        }
        let wakers = core::mem::take(&mut *wr(&self.wakers));
        for w in wakers {
            w.wake();
        }
    }
}

struct Wait(Rc<Flight>);

impl Future for Wait {
    type Output = Result<(), Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(o) = rd(&self.0.outcome).as_ref() {
            return Poll::Ready(o.clone());
        }
        wr(&self.0.wakers).push(cx.waker().clone());
        Poll::Pending
    }
}

/// Waits until no refresh or login is on the wire ([`Inner::wire`]), then claims it; whoever
/// claims it calls [`Session::release_wire`] once its call has answered. (No guard object: the
/// refresh task and a login run to completion, and a guard's drop glue in their state machines
/// costs hundreds of bytes of `.wasm`; a plain future, so one `poll` serves both.)
struct ClaimWire<'a>(&'a RefCell<Inner>);

impl Future for ClaimWire<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut i = wr(self.0);
        match &i.wire {
            // Woken when it is released; then whoever is polled first claims it.
            Some(busy) => {
                wr(&busy.wakers).push(cx.waker().clone());
                Poll::Pending
            }
            None => {
                i.wire = Some(Rc::new(Flight::default()));
                Poll::Ready(())
            }
        }
    }
}

/// One client's session (one per `createAuthClient`, per tab).
pub struct Session<E: Env> {
    env: E,
    config: Config,
    inner: RefCell<Inner>,
}

impl<E: Env> Session<E> {
    /// A new session in [`State::Unknown`]; nothing happens until the first use.
    pub fn new(env: E, config: Config) -> Rc<Self> {
        Rc::new(Session {
            env,
            config,
            inner: RefCell::new(Inner {
                state: State::Unknown,
                token: None,
                version: 0,
                epoch: 0,
                flight: None,
                wire: None,
                failures: 0,
                retry_at: 0.0,
                backoff_error: Error::RefreshBackoff,
                ended: Error::SignedOut,
                hinted_out: None,
            }),
        })
    }

    /// The options this session was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The platform.
    pub fn env(&self) -> &E {
        &self.env
    }

    /// Current state.
    pub fn state(&self) -> State {
        rd(&self.inner).state
    }

    /// Milliseconds until the held token expires on the monotonic clock (negative once it
    /// has), or `None` without a token.
    pub fn expires_in(&self) -> Option<f64> {
        let now = self.env.now();
        let i = rd(&self.inner);
        i.token.as_ref().map(|t| t.expires_at - now)
    }

    /// Runs `f` on the held token (for decoding its public claims); `None` without one.
    pub fn with_token<R>(&self, f: impl FnOnce(&str) -> R) -> Option<R> {
        let i = rd(&self.inner);
        i.token.as_ref().map(|t| f(t.secret.expose()))
    }

    /// Resolves once the start-up refresh (or whatever refresh is running) has answered.
    /// `true` if a session is held.
    pub async fn ready(self: &Rc<Self>) -> bool {
        let _ = self.bearer(&mut Vec::new()).await;
        self.state() == State::SignedIn
    }

    /// Stores a grant. Returns the event to emit. Caller holds the borrow.
    fn install(&self, i: &mut Inner, token: Secret, lifetime_ms: f64) -> Event {
        let now = self.env.now();
        let ahead = self.config.refresh_ahead_ms.min(lifetime_ms / 2.0);
        i.token = Some(Token {
            secret: token,
            expires_at: now + lifetime_ms,
            refresh_at: now + lifetime_ms - ahead,
        });
        i.version += 1;
        i.failures = 0;
        i.retry_at = 0.0;
        let was = core::mem::replace(&mut i.state, State::SignedIn);
        if was == State::SignedIn {
            Event::Refreshed
        } else {
            Event::SignedIn
        }
    }

    /// Sets the refresh-ahead timer for the token now held (a no-op when the option is 0).
    fn schedule(self: &Rc<Self>) {
        if self.config.refresh_ahead_ms <= 0.0 {
            return;
        }
        let now = self.env.now();
        let Some((version, delay)) = ({
            let i = rd(&self.inner);
            i.token.as_ref().map(|t| (i.version, t.refresh_at - now))
        }) else {
            return;
        };
        let this = Rc::clone(self);
        let sleep = self.env.sleep(delay.max(0.0));
        self.env.spawn(Box::pin(async move {
            sleep.await;
            let due = {
                let i = rd(&this.inner);
                i.version == version && i.state == State::SignedIn && i.flight.is_none()
            };
            if due {
                let _ = this.refresh();
            }
        }));
    }

    /// Joins the in-flight refresh or starts one (single flight). The refresh runs as its own
    /// task, so a caller that gives up (abort) does not cancel it.
    fn refresh(self: &Rc<Self>) -> Rc<Flight> {
        let (flight, epoch, v0) = {
            let mut i = wr(&self.inner);
            if let Some(f) = &i.flight {
                return Rc::clone(f);
            }
            if i.failures > 0 && self.env.now() < i.retry_at {
                return Flight::done(Err(i.backoff_error.clone()));
            }
            let f = Rc::new(Flight::default());
            i.flight = Some(Rc::clone(&f));
            (f, i.epoch, i.version)
        };
        let this = Rc::clone(self);
        let task = Rc::clone(&flight);
        self.env.spawn(Box::pin(
            async move { this.run_refresh(epoch, v0, task).await },
        ));
        flight
    }

    /// Is the refresh of `epoch` no longer needed? Either the session ended or restarted
    /// (logout, login, another tab's sign-out: whoever bumped the epoch has settled `flight`),
    /// or a fresh token arrived from another tab since version `v0` (then `flight` succeeds).
    fn settled(&self, epoch: u64, v0: u64, flight: &Rc<Flight>) -> bool {
        let outcome = {
            let mut i = wr(&self.inner);
            let outcome = if i.epoch != epoch {
                Some(Err(Error::SignedOut))
            } else {
                let fresh = i.version != v0
                    && i.state == State::SignedIn
                    && i.token
                        .as_ref()
                        .is_some_and(|t| self.env.now() < t.expires_at);
                fresh.then_some(Ok(()))
            };
            if outcome.is_some() && i.flight.as_ref().is_some_and(|f| Rc::ptr_eq(f, flight)) {
                i.flight = None;
            }
            outcome
        };
        match outcome {
            Some(o) => {
                flight.complete(o);
                true
            }
            None => false,
        }
    }

    /// Frees the wire and wakes whoever waits for it.
    fn release_wire(&self) {
        let w = wr(&self.inner).wire.take();
        if let Some(w) = w {
            w.complete(Ok(()));
        }
    }

    async fn run_refresh(self: Rc<Self>, epoch: u64, v0: u64, flight: Rc<Flight>) {
        // Layer 2: refreshes (and logins and logouts) of all tabs take turns under the Web Lock,
        // so that no two tabs present the rotating cookie at once; each gets its own token.
        // Checks that another tab's hint asks for take their turn too: a forged hint must not
        // be able to make tabs present the cookie at once (a grandparent cookie is reuse, and
        // reuse ends the session).
        let guard = self.cross_tab_lock().await;
        ClaimWire(&self.inner).await;
        // Signed out (or signed in by a login) while waiting for the lock or the wire: nothing
        // left to refresh (and a refresh now would rotate a cookie the server has just revoked,
        // or start a session again).
        if self.settled(epoch, v0, &flight) {
            self.release_wire();
            return;
        }
        let result = self.env.auth(&self.config, AuthCall::Refresh).await;
        self.release_wire();
        self.finish_refresh(epoch, &flight, result);
        drop(guard);
    }

    /// The cross-tab lock, when coordination is on (`None`: not taken, or timed out).
    async fn cross_tab_lock(&self) -> Option<E::Guard> {
        if self.config.cross_tab {
            self.env.lock(self.config.lock_timeout_ms).await
        } else {
            None
        }
    }

    fn finish_refresh(
        self: &Rc<Self>,
        epoch: u64,
        flight: &Rc<Flight>,
        result: Result<Option<Grant>, Error>,
    ) {
        let mut event = None;
        let mut installed = false;
        let mut tell = false;
        let outcome = {
            let mut i = wr(&self.inner);
            if i.flight.as_ref().is_some_and(|f| Rc::ptr_eq(f, flight)) {
                i.flight = None;
            }
            if i.epoch != epoch {
                // Generation guard: signed out (or signed in afresh) while this refresh ran.
                Err(Error::SignedOut)
            } else {
                match result {
                    Ok(Some(g)) => {
                        i.hinted_out = None;
                        event = Some(self.install(&mut i, g.token, g.expires_in_ms));
                        installed = true;
                        Ok(())
                    }
                    // `Ok(None)`: the server says "no session" (no cookie was sent, docs/
                    // PROTOCOL.md). At start-up that is simply signed out; for a tab that held
                    // a session, the browser has dropped the cookie: the session is over.
                    Ok(None) | Err(Error::SessionExpired) => {
                        let was = i.state;
                        let hinted = i.hinted_out.take();
                        let left = hinted == Some(Hint::SignedOut);
                        let end = if left {
                            Error::SignedOut
                        } else {
                            Error::SessionExpired
                        };
                        i.token = None;
                        i.version += 1;
                        i.epoch += 1;
                        i.state = State::SignedOut;
                        i.ended = end.clone();
                        if was != State::SignedIn {
                            // Start-up (the cookie simply holds no session), or a check of a
                            // tab that was already signed out: nothing ended here.
                            Ok(())
                        } else {
                            event = Some(if left {
                                Event::SignedOut
                            } else {
                                Event::SessionExpired
                            });
                            // Found out by this tab itself: the others should check too. (Not
                            // after a check another tab's hint asked for: no echo.)
                            tell = hinted.is_none();
                            Err(end)
                        }
                    }
                    other => {
                        i.hinted_out = None;
                        i.failures += 1;
                        i.retry_at = self.env.now() + backoff_ms(i.failures);
                        event = Some(Event::RefreshFailed);
                        // Offline (K7, K11): the session is kept and callers learn the truth,
                        // `ERR_NETWORK`, now and for as long as the back-off lasts.
                        // A refused origin, too, is said as it is: no retry will fix it.
                        let err = match other {
                            Err(e @ (Error::Network(_) | Error::OriginRefused)) => e,
                            Err(e) => Error::RefreshFailed(e.cause().cloned()),
                            Ok(_) => Error::RefreshFailed(None),
                        };
                        i.backoff_error = match &err {
                            Error::Network(_) | Error::OriginRefused => err.clone(),
                            _ => Error::RefreshBackoff,
                        };
                        Err(err)
                    }
                }
            }
        };
        if let Some(e) = event {
            self.env.emit(e);
        }
        if installed {
            self.schedule();
        }
        if tell {
            self.tell(Hint::Ended);
        }
        flight.complete(outcome);
    }

    /// Posts a hint to the other tabs when cross-tab coordination is on.
    fn tell(&self, hint: Hint) {
        if self.config.cross_tab {
            self.env.broadcast(hint);
        }
    }

    /// Forgets the refresh back-off: the network may be back (`online`), or the user is looking
    /// again (`visibilitychange` to visible), so the next call may try at once (K11).
    pub fn reset_backoff(&self) {
        let mut i = wr(&self.inner);
        i.failures = 0;
        i.retry_at = 0.0;
        i.backoff_error = Error::RefreshBackoff;
    }

    /// The bearer to send now, waiting for a refresh if one is needed or running.
    /// `Ok(None)`: no session, send without a bearer.
    async fn bearer(
        self: &Rc<Self>,
        trace: &mut Vec<Step>,
    ) -> Result<Option<(Secret, u64, u64)>, Error> {
        for _ in 0..2 {
            let flight = {
                let now = self.env.now();
                let i = rd(&self.inner);
                match (&i.flight, i.state, &i.token) {
                    (Some(f), _, _) => Some(Rc::clone(f)),
                    (None, State::SignedOut, _) => return Ok(None),
                    (None, State::SignedIn, Some(t)) if now < t.expires_at => {
                        let ahead = now >= t.refresh_at && self.config.refresh_ahead_ms > 0.0;
                        let out = (t.secret.clone(), i.version, i.epoch);
                        drop(i);
                        if ahead {
                            let _ = self.refresh();
                        }
                        return Ok(Some(out));
                    }
                    _ => None,
                }
            };
            let flight = match flight {
                Some(f) => f,
                None => self.refresh(),
            };
            trace.push(Step::Waited);
            Wait(flight).await?;
        }
        let i = rd(&self.inner);
        Ok(match (&i.token, i.state) {
            (Some(t), State::SignedIn) => Some((t.secret.clone(), i.version, i.epoch)),
            _ => None,
        })
    }

    /// `authFetch`: sends with our bearer when `attach` (the URL is allowed), refreshes once on
    /// a 401 that answered our bearer, and replays once. `send` must build each attempt from a
    /// clone of the original request taken before the first send (K5).
    ///
    /// # Errors
    /// [`Failure::Request`] when `send` fails (network, abort): passed through unchanged.
    /// [`Failure::Auth`] with [`Error::SignedOut`] when the session ended while the call
    /// waited, [`Error::SessionExpired`] when the server refused the refresh,
    /// [`Error::RefreshFailed`] / [`Error::RefreshBackoff`] when the refresh could not be done.
    pub async fn fetch<R, X, F, Fut>(
        self: &Rc<Self>,
        attach: bool,
        trace: &mut Vec<Step>,
        mut send: F,
    ) -> Result<R, Failure<X>>
    where
        R: Reply,
        F: FnMut(Option<&str>) -> Fut,
        Fut: Future<Output = Result<R, X>>,
    {
        let held = if attach {
            self.bearer(trace).await.map_err(Failure::Auth)?
        } else {
            None
        };
        let Some((secret, version, epoch)) = held else {
            trace.push(Step::NoBearer);
            let r = send(None).await.map_err(Failure::Request)?;
            trace.push(Step::Status(r.status()));
            return Ok(r);
        };
        let mut nonce_retry = true;
        let r = send_with_nonce(&mut send, secret.expose(), trace, &mut nonce_retry).await?;
        if !wants_refresh(r.status(), r.www_authenticate().as_deref()) {
            return Ok(r);
        }
        // Already replaced by a refresh that ran while this request was out? Use that one.
        // Or has the session ended since it was sent? Then this 401 is old news (K10).
        let newer = {
            let i = rd(&self.inner);
            match (&i.token, i.state) {
                (Some(t), State::SignedIn) if i.version != version => Some(t.secret.clone()),
                (_, State::SignedOut) if i.epoch != epoch => {
                    return Err(Failure::Auth(i.ended.clone()));
                }
                _ => None,
            }
        };
        let next = match newer {
            Some(s) => s,
            None => {
                Wait(self.refresh()).await.map_err(Failure::Auth)?;
                trace.push(Step::Refreshed);
                let i = rd(&self.inner);
                match (&i.token, i.state) {
                    (Some(t), State::SignedIn) => t.secret.clone(),
                    _ => return Err(Failure::Auth(Error::SignedOut)),
                }
            }
        };
        trace.push(Step::Retried);
        send_with_nonce(&mut send, next.expose(), trace, &mut nonce_retry).await
    }

    /// Signs in with a username and password. Starts a new generation: a refresh still in
    /// flight from before is discarded, and callers waiting on it proceed with the new token.
    ///
    /// # Errors
    /// [`Error::InvalidCredentials`], [`Error::RateLimited`], [`Error::Network`],
    /// [`Error::InvalidResponse`].
    pub async fn login(self: &Rc<Self>, username: &str, password: &str) -> Result<(), Error> {
        // A refresh already sent (the start-up one, say) answers first: its Set-Cookie carries
        // the old family, which this login revokes on the server (S3), so it must not land after
        // the login's. Whatever it yields is superseded below (new generation).
        // The other tabs share the cookie jar: the same goes for their refreshes, so the login
        // is sent under the cross-tab lock their refreshes take (or after its timeout).
        let guard = self.cross_tab_lock().await;
        ClaimWire(&self.inner).await;
        let grant = self
            .env
            .auth(&self.config, AuthCall::Login { username, password })
            .await;
        self.release_wire();
        let grant = grant?.ok_or(Error::InvalidResponse)?;
        let (event, flight) = {
            let mut i = wr(&self.inner);
            i.epoch += 1;
            i.state = State::SignedOut;
            i.hinted_out = None;
            let e = self.install(&mut i, grant.token, grant.expires_in_ms);
            (e, i.flight.take())
        };
        if let Some(f) = flight {
            f.complete(Ok(()));
        }
        self.env.emit(event);
        self.schedule();
        // The other tabs' tokens belong to the family this login has just revoked (S3): they
        // check with the server (after this lock is released) and get tokens of the new one.
        self.tell(Hint::SignedIn);
        drop(guard);
        Ok(())
    }

    /// Ends the session locally at once (every queued call is rejected with
    /// [`Error::SignedOut`], the other tabs are told), then tells the server.
    ///
    /// # Errors
    /// The server call's error ([`Error::Network`] …); the local sign-out has happened anyway.
    pub async fn logout(self: &Rc<Self>, everywhere: bool) -> Result<(), Error> {
        self.sign_out();
        // Under the cross-tab lock and after this tab's own refresh on the wire has answered:
        // no refresh of any tab is answered after the logout (K10), so none can bring the
        // session back. Another tab that needs a token meanwhile waits for the lock, and then
        // finds the session gone.
        let guard = self.cross_tab_lock().await;
        ClaimWire(&self.inner).await;
        let r = self
            .env
            .auth(&self.config, AuthCall::Logout { everywhere })
            .await
            .map(|_| ());
        self.release_wire();
        // Only now, when the server has ended the session, do the other tabs check it. (If
        // telling the server failed, they find the session alive and keep it.)
        self.tell(Hint::SignedOut);
        drop(guard);
        r
    }

    /// Clears the token (its bytes are overwritten as it drops), bumps the generation, rejects
    /// waiters with [`Error::SignedOut`].
    fn sign_out(&self) {
        let (token, flight, was) = {
            let mut i = wr(&self.inner);
            i.epoch += 1;
            i.version += 1;
            i.failures = 0;
            i.retry_at = 0.0;
            i.ended = Error::SignedOut;
            i.hinted_out = None;
            let was = core::mem::replace(&mut i.state, State::SignedOut);
            (i.token.take(), i.flight.take(), was)
        };
        if let Some(f) = flight {
            f.complete(Err(Error::SignedOut));
        }
        if was != State::SignedOut {
            self.env.emit(Event::SignedOut);
        }
        drop(token);
    }

    /// Handles a hint from another tab (or from any script on the origin: the channel is open
    /// to all of them). Nothing is believed: the tab asks the server, through the same
    /// single-flight refresh as everything else, and the server's answer decides (K9).
    /// * [`Hint::SignedOut`] / [`Hint::Ended`] to a tab that holds a session: a refresh; if the
    ///   server refuses the cookie, the tab signs out and reports what the hint said happened
    ///   (`signed_out` / `session_expired`); otherwise it simply has a new token.
    /// * [`Hint::SignedIn`] to any tab that has started: a refresh, which picks up the new
    ///   session (a signed-out tab signs in; a signed-in one replaces a token of the family
    ///   that the login revoked).
    pub fn on_hint(self: &Rc<Self>, hint: Hint) {
        {
            let mut i = wr(&self.inner);
            match (hint, i.state) {
                // Nothing to check before the start-up refresh (which is coming) or in a
                // signed-out tab (a forged "signed out" is all it could be).
                (_, State::Unknown) | (Hint::SignedOut | Hint::Ended, State::SignedOut) => return,
                (Hint::SignedOut | Hint::Ended, State::SignedIn) => i.hinted_out = Some(hint),
                (Hint::SignedIn, _) => {}
            }
            // A check is a refresh even when the token is fresh; a back-off does not apply to
            // it (it is one request, and it answers a real event).
            i.failures = 0;
        }
        // Joins a refresh already running, whose answer is as fresh as this check needs.
        let _ = self.refresh();
    }
}

#[cfg(test)]
mod tests;
