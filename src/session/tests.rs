//! Native tests of the session core: a fake clock, a fake auth server, a hand-driven executor.
extern crate std;

use super::*;
use crate::config::tests::config;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use core::cell::Cell;
use futures::channel::oneshot;
use futures::executor::{LocalPool, LocalSpawner};
use futures::task::LocalSpawnExt;
use std::collections::{HashSet, VecDeque};

/// A shared record a test reads after the fact (events emitted, messages posted).
type Log<T> = Rc<RefCell<Vec<T>>>;

#[derive(Default)]
struct World {
    now: Cell<f64>,
    issued: Cell<u32>,
    refreshes: Cell<u32>,
    logouts: RefCell<Vec<bool>>,
    /// Tokens the fake API accepts.
    valid: RefCell<HashSet<String>>,
    /// Scripted refresh outcomes; when empty a refresh issues a fresh token.
    script: RefCell<VecDeque<Result<Option<Grant>, Error>>>,
    /// While set, a refresh waits for this before answering.
    gate: RefCell<Option<oneshot::Receiver<()>>>,
    /// While set, taking the cross-tab lock waits for this.
    lock_gate: RefCell<Option<oneshot::Receiver<()>>>,
    timers: RefCell<Vec<(f64, oneshot::Sender<()>)>>,
    /// The order in which refresh and login requests were sent (`>`) and answered (`<`).
    wire: RefCell<Vec<&'static str>>,
    /// While set, a login waits for this before answering.
    login_gate: RefCell<Option<oneshot::Receiver<()>>>,
    /// Set by a logout: the cookie's session has ended, every refresh is refused.
    ended: Cell<bool>,
    /// While set, the fake API answers only once this fires (a request still in flight).
    api_gate: RefCell<Option<futures::future::Shared<oneshot::Receiver<()>>>>,
}

impl World {
    fn issue(&self) -> Grant {
        let n = self.issued.get() + 1;
        self.issued.set(n);
        let t = format!("tok-{n}");
        self.valid.borrow_mut().insert(t.clone());
        Grant {
            token: Secret::new(t),
            expires_in_ms: 3000.0,
        }
    }
}

struct Tab {
    world: Rc<World>,
    spawner: LocalSpawner,
    events: Rc<RefCell<Vec<&'static str>>>,
    outbox: Log<Hint>,
}

impl Env for Tab {
    type Guard = ();
    fn now(&self) -> f64 {
        self.world.now.get()
    }
    fn spawn(&self, task: Task) {
        self.spawner.spawn_local(task).expect("spawn");
    }
    fn sleep(&self, ms: f64) -> impl Future<Output = ()> + 'static {
        let (tx, rx) = oneshot::channel();
        self.world
            .timers
            .borrow_mut()
            .push((self.world.now.get() + ms, tx));
        async move {
            let _ = rx.await;
        }
    }
    fn lock(&self, _timeout_ms: f64) -> impl Future<Output = Option<()>> + 'static {
        let gate = self.world.lock_gate.borrow_mut().take();
        async move {
            if let Some(g) = gate {
                let _ = g.await;
            }
            Some(())
        }
    }
    fn auth(
        &self,
        _config: &Config,
        call: AuthCall<'_>,
    ) -> impl Future<Output = Result<Option<Grant>, Error>> {
        let w = Rc::clone(&self.world);
        let call = match call {
            AuthCall::Refresh => {
                w.wire.borrow_mut().push("refresh>");
                Ok(())
            }
            AuthCall::Login { username, password } => {
                w.wire.borrow_mut().push("login>");
                Err(Some(username == "alice" && password == "pw"))
            }
            AuthCall::Logout { everywhere } => {
                w.logouts.borrow_mut().push(everywhere);
                w.ended.set(true);
                Err(None)
            }
        };
        async move {
            match call {
                Ok(()) => {
                    w.refreshes.set(w.refreshes.get() + 1);
                    let gate = w.gate.borrow_mut().take();
                    if let Some(g) = gate {
                        let _ = g.await;
                    }
                    w.wire.borrow_mut().push("refresh<");
                    let scripted = w.script.borrow_mut().pop_front();
                    if w.ended.get() {
                        return Err(Error::SessionExpired);
                    }
                    scripted.unwrap_or_else(|| Ok(Some(w.issue())))
                }
                Err(Some(ok)) => {
                    let gate = w.login_gate.borrow_mut().take();
                    if let Some(g) = gate {
                        let _ = g.await;
                    }
                    w.wire.borrow_mut().push("login<");
                    if ok {
                        w.ended.set(false);
                        Ok(Some(w.issue()))
                    } else {
                        Err(Error::InvalidCredentials)
                    }
                }
                Err(None) => Ok(None),
            }
        }
    }
    fn emit(&self, event: Event) {
        self.events.borrow_mut().push(event.name());
    }
    fn broadcast(&self, hint: Hint) {
        self.outbox.borrow_mut().push(hint);
    }
}

struct YieldOnce(bool);
impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

struct Resp(u16);
impl Reply for Resp {
    fn status(&self) -> u16 {
        self.0
    }
    fn www_authenticate(&self) -> Option<String> {
        (self.0 == 401).then(|| authfetch_protocol::WWW_AUTHENTICATE_INVALID_TOKEN.to_string())
    }
}

struct Harness {
    pool: LocalPool,
    world: Rc<World>,
}

type S = Rc<Session<Tab>>;
type Out = Rc<RefCell<Option<Result<(u16, Vec<Step>), String>>>>;

impl Harness {
    fn new() -> Self {
        Harness {
            pool: LocalPool::new(),
            world: Rc::new(World::default()),
        }
    }

    fn tab(&self, cross_tab: bool, ahead_ms: f64) -> (S, Log<&'static str>, Log<Hint>) {
        let events = Rc::new(RefCell::new(Vec::new()));
        let outbox = Rc::new(RefCell::new(Vec::new()));
        let mut c = config(&["http://127.0.0.1:8080"]);
        c.cross_tab = cross_tab;
        c.refresh_ahead_ms = ahead_ms;
        let env = Tab {
            world: Rc::clone(&self.world),
            spawner: self.pool.spawner(),
            events: Rc::clone(&events),
            outbox: Rc::clone(&outbox),
        };
        (Session::new(env, c), events, outbox)
    }

    fn run(&mut self) {
        self.pool.run_until_stalled();
    }

    fn advance(&mut self, ms: f64) {
        let now = self.world.now.get() + ms;
        self.world.now.set(now);
        let due: Vec<_> = {
            let mut t = self.world.timers.borrow_mut();
            let (due, keep): (Vec<_>, Vec<_>) = t.drain(..).partition(|(at, _)| *at <= now);
            *t = keep;
            due
        };
        for (_, tx) in due {
            let _ = tx.send(());
        }
        self.run();
    }

    /// Spawns one authFetch against the fake API (200 for a valid bearer, else 401;
    /// `forbidden` answers 403 to everything).
    fn fetch(&self, s: &S, attach: bool, forbidden: bool) -> Out {
        let out: Out = Rc::new(RefCell::new(None));
        let (s, o, w) = (Rc::clone(s), Rc::clone(&out), Rc::clone(&self.world));
        self.pool
            .spawner()
            .spawn_local(async move {
                let mut trace = Vec::new();
                let r = s
                    .fetch(attach, &mut trace, |bearer| {
                        let ok = bearer.is_some_and(|b| w.valid.borrow().contains(b));
                        let status = if forbidden {
                            403
                        } else if ok {
                            200
                        } else {
                            401
                        };
                        let gate = w.api_gate.borrow().clone();
                        async move {
                            // One trip through the executor, like a real network round trip.
                            YieldOnce(false).await;
                            if let Some(g) = gate {
                                let _ = g.await;
                            }
                            Ok::<_, ()>(Resp(status))
                        }
                    })
                    .await;
                *o.borrow_mut() = Some(match r {
                    Ok(r) => Ok((r.0, trace)),
                    Err(Failure::Auth(e)) => Err(e.code().to_string()),
                    Err(Failure::Request(())) => Err("request".to_string()),
                });
            })
            .expect("spawn");
        out
    }

    fn login(&mut self, s: &S) {
        let s2 = Rc::clone(s);
        self.pool
            .spawner()
            .spawn_local(async move {
                s2.login("alice", "pw").await.expect("login");
            })
            .expect("spawn");
        self.run();
        assert_eq!(s.state(), State::SignedIn);
    }

    /// Makes the server reject every token issued so far (as if they had expired there).
    fn expire_server_side(&self) {
        self.world.valid.borrow_mut().clear();
    }
}

fn status(o: &Out) -> u16 {
    match o.borrow().as_ref() {
        Some(Ok((s, _))) => *s,
        other => panic!("not a response: {other:?}"),
    }
}

fn code(o: &Out) -> String {
    match o.borrow().as_ref() {
        Some(Err(c)) => c.clone(),
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn single_flight_hundred_concurrent_401s_cause_one_refresh() {
    let mut h = Harness::new();
    let (s, events, _) = h.tab(false, 0.0);
    h.login(&s);
    h.expire_server_side();
    let calls: Vec<Out> = (0..100).map(|_| h.fetch(&s, true, false)).collect();
    h.run();
    assert_eq!(h.world.refreshes.get(), 1);
    for c in &calls {
        assert_eq!(status(c), 200);
        let steps = c
            .borrow()
            .as_ref()
            .expect("done")
            .as_ref()
            .expect("ok")
            .1
            .clone();
        assert_eq!(steps.first(), Some(&Step::Status(401)));
        assert_eq!(steps.last(), Some(&Step::Status(200)));
        assert!(steps.contains(&Step::Retried));
    }
    assert_eq!(*events.borrow(), vec!["signed_in", "refreshed"]);
}

#[test]
fn calls_starting_during_a_refresh_wait_for_it() {
    let mut h = Harness::new();
    let (s, _, _) = h.tab(false, 0.0);
    h.login(&s);
    h.advance(3000.0); // expired by our monotonic clock
    let (tx, rx) = oneshot::channel();
    *h.world.gate.borrow_mut() = Some(rx);
    let first = h.fetch(&s, true, false);
    h.run();
    let later: Vec<Out> = (0..10).map(|_| h.fetch(&s, true, false)).collect();
    h.run();
    assert!(first.borrow().is_none() && later.iter().all(|c| c.borrow().is_none()));
    tx.send(()).expect("gate");
    h.run();
    assert_eq!(h.world.refreshes.get(), 1);
    for c in later.iter().chain([&first]) {
        assert_eq!(status(c), 200);
    }
}

#[test]
fn k8_expiry_scheduled_from_expires_in_on_the_monotonic_clock() {
    let mut h = Harness::new();
    let (s, _, _) = h.tab(false, 0.0);
    h.login(&s);
    assert_eq!(s.expires_in(), Some(3000.0));
    h.advance(2999.0);
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(h.world.refreshes.get(), 0, "still valid by expires_in");
    assert_eq!(status(&c), 200);
    h.advance(1.0);
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(h.world.refreshes.get(), 1, "refreshed before sending");
    assert_eq!(status(&c), 200);
    // The expired token was never sent: the first response is already a 200.
    let steps = c
        .borrow()
        .as_ref()
        .expect("done")
        .as_ref()
        .expect("ok")
        .1
        .clone();
    assert_eq!(steps, vec![Step::Waited, Step::Status(200)]);
}

#[test]
fn refresh_ahead_timer_refreshes_before_expiry() {
    let mut h = Harness::new();
    let (s, events, _) = h.tab(false, 1000.0);
    h.login(&s);
    h.advance(1999.0);
    assert_eq!(h.world.refreshes.get(), 0);
    h.advance(1.0);
    assert_eq!(h.world.refreshes.get(), 1);
    assert_eq!(s.expires_in(), Some(3000.0));
    assert_eq!(*events.borrow(), vec!["signed_in", "refreshed"]);
    // The margin is capped at half the lifetime, so a huge margin cannot cause a refresh loop.
    let (s2, _, _) = h.tab(false, 3_600_000.0);
    h.login(&s2);
    let before = h.world.refreshes.get();
    h.advance(1499.0);
    assert_eq!(h.world.refreshes.get(), before);
}

#[test]
fn k4_never_refresh_on_403() {
    let mut h = Harness::new();
    let (s, _, _) = h.tab(false, 0.0);
    h.login(&s);
    let c = h.fetch(&s, true, true);
    h.run();
    assert_eq!(status(&c), 403);
    assert_eq!(h.world.refreshes.get(), 0);
}

#[test]
fn k4_one_retry_and_no_loop() {
    let mut h = Harness::new();
    let (s, _, _) = h.tab(false, 0.0);
    h.login(&s);
    h.expire_server_side();
    // Every refreshed token is rejected too.
    h.world.script.borrow_mut().push_back(Ok(Some(Grant {
        token: Secret::new("bad".into()),
        expires_in_ms: 3000.0,
    })));
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(status(&c), 401);
    assert_eq!(h.world.refreshes.get(), 1);
    let steps = c
        .borrow()
        .as_ref()
        .expect("done")
        .as_ref()
        .expect("ok")
        .1
        .clone();
    assert_eq!(
        steps,
        vec![
            Step::Status(401),
            Step::Refreshed,
            Step::Retried,
            Step::Status(401)
        ]
    );
}

#[test]
fn k4_no_refresh_for_a_401_that_did_not_carry_our_bearer() {
    let mut h = Harness::new();
    let (s, _, _) = h.tab(false, 0.0);
    h.login(&s);
    h.expire_server_side();
    let c = h.fetch(&s, false, false);
    h.run();
    assert_eq!(status(&c), 401);
    assert_eq!(h.world.refreshes.get(), 0);
}

#[test]
fn k4_wants_refresh_only_for_invalid_token_401s() {
    let inv = Some(authfetch_protocol::WWW_AUTHENTICATE_INVALID_TOKEN);
    assert!(wants_refresh(401, inv));
    assert!(wants_refresh(401, None));
    assert!(wants_refresh(401, Some("Bearer realm=\"api\"")));
    assert!(!wants_refresh(
        401,
        Some("Bearer error=\"insufficient_scope\"")
    ));
    assert!(!wants_refresh(403, inv));
    assert!(!wants_refresh(200, None));
}

#[test]
fn k4_backs_off_after_repeated_refresh_failures() {
    let mut h = Harness::new();
    let (s, events, _) = h.tab(false, 0.0);
    h.login(&s);
    h.advance(3000.0);
    // The server answers something unexpected (a 500, say): not a network failure.
    h.world
        .script
        .borrow_mut()
        .extend([Err(Error::InvalidResponse), Err(Error::InvalidResponse)]);
    let a = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&a), "ERR_REFRESH_FAILED");
    let b = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&b), "ERR_REFRESH_BACKOFF");
    assert_eq!(
        h.world.refreshes.get(),
        1,
        "no second attempt inside the back-off"
    );
    h.advance(500.0);
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&c), "ERR_REFRESH_FAILED");
    assert_eq!(h.world.refreshes.get(), 2);
    h.advance(500.0);
    let d = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&d), "ERR_REFRESH_BACKOFF", "back-off doubled to 1 s");
    h.advance(500.0);
    let e = h.fetch(&s, true, false);
    h.run();
    assert_eq!(status(&e), 200, "recovers once the endpoint is back");
    assert_eq!(backoff_ms(40), MAX_BACKOFF_MS);
    assert!(events.borrow().contains(&"refresh_failed"));
}

#[test]
fn k7_network_error_during_refresh_is_not_a_logout() {
    let mut h = Harness::new();
    let (s, events, _) = h.tab(false, 0.0);
    h.login(&s);
    h.expire_server_side();
    h.world
        .script
        .borrow_mut()
        .push_back(Err(Error::Network("offline".into())));
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&c), "ERR_NETWORK", "offline is said as it is (K11)");
    assert_eq!(s.state(), State::SignedIn);
    assert!(s.expires_in().is_some(), "token kept");
    assert!(!events.borrow().contains(&"signed_out"));
    assert!(!events.borrow().contains(&"session_expired"));
}

#[test]
fn k6_logout_during_refresh_wins_and_rejects_queued_callers() {
    let mut h = Harness::new();
    let (s, events, _) = h.tab(false, 0.0);
    h.login(&s);
    h.advance(3000.0);
    let (tx, rx) = oneshot::channel();
    *h.world.gate.borrow_mut() = Some(rx);
    let queued: Vec<Out> = (0..5).map(|_| h.fetch(&s, true, false)).collect();
    h.run();
    let s2 = Rc::clone(&s);
    h.pool
        .spawner()
        .spawn_local(async move {
            s2.logout(false).await.expect("logout");
        })
        .expect("spawn");
    h.run();
    for q in &queued {
        assert_eq!(code(q), "ERR_SIGNED_OUT");
    }
    // The late refresh lands: the generation guard discards it.
    tx.send(()).expect("gate");
    h.run();
    assert_eq!(s.state(), State::SignedOut);
    assert_eq!(s.expires_in(), None);
    assert_eq!(*events.borrow(), vec!["signed_in", "signed_out"]);
    // The server was told (cookie only: the call has no place for a bearer, K3).
    assert_eq!(*h.world.logouts.borrow(), vec![false]);
    // Signed out: the next call goes without a bearer and never refreshes.
    let n = h.world.refreshes.get();
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(status(&c), 401);
    assert_eq!(h.world.refreshes.get(), n);
}

#[test]
fn session_expired_rejects_waiters_with_a_typed_error() {
    let mut h = Harness::new();
    let (s, events, out) = h.tab(false, 0.0);
    h.login(&s);
    h.expire_server_side();
    h.world
        .script
        .borrow_mut()
        .push_back(Err(Error::SessionExpired));
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&c), "ERR_SESSION_EXPIRED");
    assert_eq!(s.state(), State::SignedOut);
    assert_eq!(*events.borrow(), vec!["signed_in", "session_expired"]);
    assert!(out.borrow().is_empty(), "no broadcast without crossTab");
}

#[test]
fn startup_refresh_learns_whether_the_cookie_holds_a_session() {
    let mut h = Harness::new();
    let (s, events, _) = h.tab(false, 0.0);
    h.world
        .script
        .borrow_mut()
        .push_back(Err(Error::SessionExpired));
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(status(&c), 401, "no session: sent without a bearer");
    assert_eq!(s.state(), State::SignedOut);
    assert!(events.borrow().is_empty());

    let (s2, events2, _) = h.tab(false, 0.0);
    let c = h.fetch(&s2, true, false);
    h.run();
    assert_eq!(status(&c), 200);
    assert_eq!(s2.state(), State::SignedIn);
    assert_eq!(*events2.borrow(), vec!["signed_in"]);
}

/// A quiet start: the refresh endpoint answers a request without any cookie "no session"
/// (`204`, `Ok(None)` from the transport). That is signed out, not a failure: no event, no
/// back-off, no second refresh, and a login right after works.
#[test]
fn startup_without_a_cookie_is_signed_out_quietly() {
    let mut h = Harness::new();
    let (s, events, out) = h.tab(true, 0.0);
    h.world.script.borrow_mut().push_back(Ok(None));
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(status(&c), 401, "no session: sent without a bearer");
    assert_eq!(s.state(), State::SignedOut);
    assert!(events.borrow().is_empty(), "{:?}", events.borrow());
    assert!(out.borrow().is_empty(), "nothing ended: no hint");
    let again = h.fetch(&s, true, false);
    h.run();
    assert_eq!(status(&again), 401);
    assert_eq!(h.world.refreshes.get(), 1, "signed out: no second refresh");
    h.login(&s);
    assert_eq!(*events.borrow(), vec!["signed_in"]);
}

/// "No session" for a tab that holds one: the browser dropped the cookie (its `Max-Age` is the
/// session's absolute expiry), so the session is over, as with a `401`.
#[test]
fn no_session_answer_to_a_signed_in_tab_is_session_expired() {
    let mut h = Harness::new();
    let (s, events, out) = h.tab(true, 0.0);
    h.login(&s);
    h.expire_server_side();
    h.world.script.borrow_mut().push_back(Ok(None));
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&c), "ERR_SESSION_EXPIRED");
    assert_eq!(s.state(), State::SignedOut);
    assert_eq!(*events.borrow(), vec!["signed_in", "session_expired"]);
    assert_eq!(*out.borrow(), vec![Hint::SignedIn, Hint::Ended]);
}

/// A refresh from an origin the server does not allow is reported as that, not as a failed
/// refresh, now and for as long as the back-off lasts; the session is kept.
#[test]
fn a_refused_origin_is_err_origin_refused_not_a_failed_refresh() {
    let mut h = Harness::new();
    let (s, _, _) = h.tab(false, 0.0);
    h.login(&s);
    h.expire_server_side();
    h.world
        .script
        .borrow_mut()
        .push_back(Err(Error::OriginRefused));
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&c), "ERR_ORIGIN_REFUSED");
    let d = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&d), "ERR_ORIGIN_REFUSED", "inside the back-off");
    assert_eq!(
        h.world.refreshes.get(),
        1,
        "no second refresh in the back-off"
    );
    assert_eq!(s.state(), State::SignedIn);
}

#[test]
fn login_refused_is_typed_and_keeps_state() {
    let mut h = Harness::new();
    let (s, _, _) = h.tab(false, 0.0);
    let r = Rc::new(RefCell::new(None));
    let (s2, r2) = (Rc::clone(&s), Rc::clone(&r));
    h.pool
        .spawner()
        .spawn_local(async move {
            *r2.borrow_mut() = Some(s2.login("alice", "nope").await.map_err(|e| e.code()));
        })
        .expect("spawn");
    h.run();
    assert_eq!(*r.borrow(), Some(Err("ERR_INVALID_CREDENTIALS")));
    assert_eq!(s.state(), State::Unknown);
}

#[test]
fn secret_debug_is_redacted() {
    let s = Secret::new("eyJhbGciOi.secret.sig".into());
    assert_eq!(format!("{s:?}"), "[redacted]");
    let g = Grant {
        token: s,
        expires_in_ms: 1.0,
    };
    assert!(!format!("{g:?}").contains("secret"));
}

/// Delivers every queued hint of `from` to the other tabs.
fn deliver(from: &Log<Hint>, to: &[&S]) {
    let hints: Vec<Hint> = from.borrow_mut().drain(..).collect();
    for h in hints {
        for t in to {
            t.on_hint(h);
        }
    }
}

/// The token a tab holds now.
fn token_of(s: &S) -> Option<String> {
    s.with_token(|t| t.to_string())
}

#[test]
fn k11_offline_is_err_network_keeps_the_session_and_online_resets_the_backoff() {
    let mut h = Harness::new();
    let (s, events, _) = h.tab(false, 0.0);
    h.login(&s);
    h.advance(3000.0);
    h.world.script.borrow_mut().extend([
        Err(Error::Network("offline".into())),
        Err(Error::Network("offline".into())),
    ]);
    let a = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&a), "ERR_NETWORK");
    // Inside the back-off: still the truth (offline), not ERR_REFRESH_BACKOFF.
    let b = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&b), "ERR_NETWORK");
    assert_eq!(
        h.world.refreshes.get(),
        1,
        "no second attempt inside the back-off"
    );
    // The second scripted failure is used up by an attempt after the back-off.
    h.advance(500.0);
    let c = h.fetch(&s, true, false);
    h.run();
    assert_eq!(code(&c), "ERR_NETWORK");
    assert_eq!(h.world.refreshes.get(), 2);
    // Back online (the `online` event): the very next call refreshes and succeeds, although
    // the doubled back-off (1 s) has not passed.
    h.advance(10.0);
    s.reset_backoff();
    let d = h.fetch(&s, true, false);
    h.run();
    assert_eq!(status(&d), 200);
    assert_eq!(s.state(), State::SignedIn);
    assert!(!events.borrow().contains(&"signed_out"));
    assert!(!events.borrow().contains(&"session_expired"));
}

#[test]
fn k10_late_401s_after_the_session_ended_start_no_refresh_and_no_event() {
    let mut h = Harness::new();
    let (s, events, out) = h.tab(true, 0.0);
    h.login(&s);
    out.borrow_mut().clear();
    h.expire_server_side();
    h.world.ended.set(true);
    // 50 calls are sent with the token and answer only after the session has ended; 50 more
    // are sent next and answer at once.
    let (tx, rx) = oneshot::channel::<()>();
    *h.world.api_gate.borrow_mut() = Some(futures::FutureExt::shared(rx));
    let late: Vec<Out> = (0..50).map(|_| h.fetch(&s, true, false)).collect();
    h.run();
    *h.world.api_gate.borrow_mut() = None;
    let early: Vec<Out> = (0..50).map(|_| h.fetch(&s, true, false)).collect();
    h.run();
    for c in &early {
        assert_eq!(code(c), "ERR_SESSION_EXPIRED");
    }
    assert_eq!(s.state(), State::SignedOut);
    tx.send(()).expect("gate");
    h.run();
    for c in &late {
        assert_eq!(
            code(c),
            "ERR_SESSION_EXPIRED",
            "the end's error, without a refresh"
        );
    }
    assert_eq!(h.world.refreshes.get(), 1);
    assert_eq!(*events.borrow(), ["signed_in", "session_expired"]);
    assert_eq!(*out.borrow(), [Hint::Ended], "the other tabs are told once");
}

#[test]
fn cross_tab_each_tab_gets_its_own_token_and_tells_nobody() {
    let mut h = Harness::new();
    let (a, events_a, out_a) = h.tab(true, 0.0);
    h.login(&a);
    out_a.borrow_mut().clear();
    // A new tab: its own start-up refresh, its own token; the live tab hears nothing.
    let (b, events_b, out_b) = h.tab(true, 0.0);
    let c = h.fetch(&b, true, false);
    h.run();
    assert_eq!(status(&c), 200);
    assert_eq!(h.world.refreshes.get(), 1);
    assert_ne!(token_of(&a), token_of(&b));
    assert_eq!(*events_b.borrow(), ["signed_in"]);
    assert_eq!(
        *events_a.borrow(),
        ["signed_in"],
        "no spurious event in the live tab"
    );
    assert!(out_b.borrow().is_empty() && out_a.borrow().is_empty());
}

#[test]
fn cross_tab_refreshes_take_turns_under_the_lock_each_for_its_own_tab() {
    let mut h = Harness::new();
    let (a, _, _) = h.tab(true, 0.0);
    let (b, _, _) = h.tab(true, 0.0);
    h.login(&a);
    let _ = h.fetch(&b, true, false);
    h.run();
    h.advance(3000.0);
    // Another tab holds the lock: neither A nor B sends its refresh until it is released.
    let (tx, rx) = oneshot::channel();
    *h.world.lock_gate.borrow_mut() = Some(rx);
    let n = h.world.refreshes.get();
    let ca = h.fetch(&a, true, false);
    h.run();
    assert_eq!(
        h.world.refreshes.get(),
        n,
        "refresh sent under another tab's lock"
    );
    let cb = h.fetch(&b, true, false);
    h.run();
    tx.send(()).expect("lock");
    h.run();
    assert_eq!((status(&ca), status(&cb)), (200, 200));
    assert_eq!(h.world.refreshes.get(), n + 2, "one refresh per tab");
    assert_ne!(token_of(&a), token_of(&b));
}

#[test]
fn k9_a_hint_is_never_believed_only_checked_with_the_server() {
    let mut h = Harness::new();
    let (a, events_a, out_a) = h.tab(true, 0.0);
    h.login(&a);
    out_a.borrow_mut().clear();
    let n = h.world.refreshes.get();
    // A forged "signed out" while the session is alive: one refresh, still signed in.
    a.on_hint(Hint::SignedOut);
    h.run();
    assert_eq!(a.state(), State::SignedIn);
    assert_eq!(h.world.refreshes.get(), n + 1);
    assert_eq!(*events_a.borrow(), ["signed_in", "refreshed"]);
    // A forged "signed in": one refresh, nothing else.
    a.on_hint(Hint::SignedIn);
    h.run();
    assert_eq!(a.state(), State::SignedIn);
    assert_eq!(h.world.refreshes.get(), n + 2);
    // A storm of hints joins the refresh already running.
    for _ in 0..100 {
        a.on_hint(Hint::SignedOut);
    }
    h.run();
    assert_eq!(h.world.refreshes.get(), n + 3);
    assert!(out_a.borrow().is_empty(), "hints are never echoed");
    // Before its start-up refresh, or once signed out, a "signed out" costs nothing.
    let (b, events_b, _) = h.tab(true, 0.0);
    b.on_hint(Hint::SignedOut);
    h.run();
    assert_eq!(h.world.refreshes.get(), n + 3);
    assert_eq!(b.state(), State::Unknown);
    assert!(events_b.borrow().is_empty());
}

#[test]
fn k6_logout_reaches_every_tab_through_the_server() {
    let mut h = Harness::new();
    let (a, _, out_a) = h.tab(true, 0.0);
    let (b, events_b, out_b) = h.tab(true, 0.0);
    h.login(&a);
    out_a.borrow_mut().clear();
    let _ = h.fetch(&b, true, false);
    h.run();
    let a2 = Rc::clone(&a);
    h.pool
        .spawner()
        .spawn_local(async move {
            let _ = a2.logout(false).await;
        })
        .expect("spawn");
    h.run();
    // The hint goes out after the server has answered the logout.
    assert_eq!(*h.world.logouts.borrow(), [false]);
    assert_eq!(*out_a.borrow(), [Hint::SignedOut]);
    deliver(&out_a, &[&b]);
    h.run();
    assert_eq!(b.state(), State::SignedOut);
    assert_eq!(*events_b.borrow(), ["signed_in", "signed_out"]);
    assert!(out_b.borrow().is_empty(), "no echo");
    // A forged "signed in" afterwards: B asks, the server says no, nothing happens.
    b.on_hint(Hint::SignedIn);
    h.run();
    assert_eq!(b.state(), State::SignedOut);
    assert_eq!(*events_b.borrow(), ["signed_in", "signed_out"]);
}

/// A forged hint must not make tabs present the cookie at once: with three tabs rotating
/// concurrently, one would present a grandparent cookie, which the server takes for reuse and
/// answers by ending the session (the injected-script e2e test saw exactly that when checks went
/// without the lock). So a check takes its turn under the cross-tab lock like any refresh.
#[test]
fn k9_the_check_a_hint_asks_for_takes_its_turn_under_the_lock() {
    let mut h = Harness::new();
    let (a, _, _) = h.tab(true, 0.0);
    h.login(&a);
    let n = h.world.refreshes.get();
    // Another tab holds the lock.
    let (tx, rx) = oneshot::channel();
    *h.world.lock_gate.borrow_mut() = Some(rx);
    a.on_hint(Hint::SignedOut);
    h.run();
    assert_eq!(
        h.world.refreshes.get(),
        n,
        "the check went without the lock"
    );
    tx.send(()).expect("lock");
    h.run();
    assert_eq!(h.world.refreshes.get(), n + 1);
    assert_eq!(a.state(), State::SignedIn);
}

#[test]
fn k10_a_logout_waits_for_the_refresh_on_the_wire_and_wins_over_it() {
    let mut h = Harness::new();
    let (s, events, _) = h.tab(true, 0.0);
    h.login(&s);
    h.advance(3000.0);
    let (tx, rx) = oneshot::channel();
    *h.world.gate.borrow_mut() = Some(rx);
    let call = h.fetch(&s, true, false);
    h.run();
    let s2 = Rc::clone(&s);
    h.pool
        .spawner()
        .spawn_local(async move {
            let _ = s2.logout(false).await;
        })
        .expect("spawn");
    h.run();
    assert_eq!(code(&call), "ERR_SIGNED_OUT");
    assert!(
        h.world.logouts.borrow().is_empty(),
        "logout sent before the refresh answered"
    );
    tx.send(()).expect("gate");
    h.run();
    assert_eq!(*h.world.logouts.borrow(), [false]);
    assert_eq!(s.state(), State::SignedOut);
    assert_eq!(*events.borrow(), ["signed_in", "signed_out"]);
}

#[test]
fn cross_tab_session_expired_is_hinted_and_checked_by_the_others() {
    let mut h = Harness::new();
    let (a, _, out_a) = h.tab(true, 0.0);
    let (b, events_b, out_b) = h.tab(true, 0.0);
    h.login(&a);
    out_a.borrow_mut().clear();
    let _ = h.fetch(&b, true, false);
    h.run();
    h.expire_server_side();
    h.world.ended.set(true);
    let c = h.fetch(&a, true, false);
    h.run();
    assert_eq!(code(&c), "ERR_SESSION_EXPIRED");
    assert_eq!(*out_a.borrow(), [Hint::Ended]);
    deliver(&out_a, &[&b]);
    h.run();
    assert_eq!(b.state(), State::SignedOut);
    // The server ended it, not the user: B tells its app the same story A told (the demo's
    // stolen-cookie walk-through runs in whichever tab found out second).
    assert_eq!(events_b.borrow().last(), Some(&"session_expired"));
    assert!(out_b.borrow().is_empty());
}

#[test]
fn cross_tab_a_login_makes_the_other_tabs_check_and_join_it() {
    let mut h = Harness::new();
    let (a, _, out_a) = h.tab(true, 0.0);
    let (b, events_b, _) = h.tab(true, 0.0);
    // B started signed out (no cookie yet).
    h.world.ended.set(true);
    let _ = h.fetch(&b, true, false);
    h.run();
    assert_eq!(b.state(), State::SignedOut);
    h.login(&a);
    assert_eq!(*out_a.borrow(), [Hint::SignedIn]);
    deliver(&out_a, &[&b]);
    h.run();
    assert_eq!(b.state(), State::SignedIn);
    assert_eq!(*events_b.borrow(), ["signed_in"]);
    assert_ne!(token_of(&a), token_of(&b), "its own token, from the server");
}

#[test]
fn cross_tab_a_refresh_queued_behind_the_lock_is_abandoned_after_a_sign_out() {
    let mut h = Harness::new();
    let (b, _, _) = h.tab(true, 0.0);
    h.login(&b);
    h.advance(3000.0);
    // Another tab holds the lock; B's refresh waits for it.
    let (tx, rx) = oneshot::channel();
    *h.world.lock_gate.borrow_mut() = Some(rx);
    let queued = h.fetch(&b, true, false);
    h.run();
    assert!(queued.borrow().is_none());
    // B signs out while still waiting for the lock.
    let b2 = Rc::clone(&b);
    h.pool
        .spawner()
        .spawn_local(async move {
            let _ = b2.logout(false).await;
        })
        .expect("spawn");
    h.run();
    assert_eq!(code(&queued), "ERR_SIGNED_OUT");
    // The lock comes free: B has nothing left to refresh, and does not ask the server.
    tx.send(()).expect("lock");
    h.run();
    assert_eq!(h.world.refreshes.get(), 0);
    assert_eq!(b.state(), State::SignedOut);
}

/// Events reach JS by name (serialized objects): `js/index.d.ts` must declare exactly them.
#[test]
fn dts_declares_exactly_the_event_types() {
    let dts = include_str!("../../js/index.d.ts");
    let start = dts.find("export type AuthStateType").expect("declared");
    let end = start + dts[start..].find(';').expect("terminated");
    let mut declared: Vec<&str> = dts[start..end].split('\'').skip(1).step_by(2).collect();
    let mut names: Vec<&str> = [
        Event::SignedIn,
        Event::Refreshed,
        Event::SignedOut,
        Event::SessionExpired,
        Event::RefreshFailed,
    ]
    .iter()
    .map(|e| e.name())
    .collect();
    declared.sort_unstable();
    names.sort_unstable();
    assert_eq!(declared, names);
}

/// Spawns a login as `alice` with `password`; the returned cell holds its outcome.
fn spawn_login(
    h: &Harness,
    s: &S,
    password: &'static str,
) -> Rc<RefCell<Option<Result<(), String>>>> {
    let out = Rc::new(RefCell::new(None));
    let (s, o) = (Rc::clone(s), Rc::clone(&out));
    h.pool
        .spawner()
        .spawn_local(async move {
            let r = s.login("alice", password).await;
            *o.borrow_mut() = Some(r.map_err(|e| e.code().to_string()));
        })
        .expect("spawn");
    out
}

#[test]
fn s3_login_waits_for_the_refresh_on_the_wire_and_supersedes_it() {
    for cross_tab in [false, true] {
        let mut h = Harness::new();
        let (s, events, _) = h.tab(cross_tab, 0.0);
        // The start-up refresh is sent (an old session cookie) and has not answered yet.
        let (tx, rx) = oneshot::channel();
        *h.world.gate.borrow_mut() = Some(rx);
        let ready = h.fetch(&s, true, false);
        h.run();
        assert_eq!(*h.world.wire.borrow(), ["refresh>"]);
        // login() now must not post until the refresh has answered: otherwise the refresh's
        // Set-Cookie (old family, revoked by this login) could land after the login's.
        let login = spawn_login(&h, &s, "pw");
        h.run();
        assert_eq!(
            *h.world.wire.borrow(),
            ["refresh>"],
            "login posted while a refresh was out"
        );
        assert!(login.borrow().is_none());
        tx.send(()).expect("gate");
        h.run();
        assert_eq!(
            *h.world.wire.borrow(),
            ["refresh>", "refresh<", "login>", "login<"]
        );
        assert_eq!(*login.borrow(), Some(Ok(())));
        // The login's token (tok-2) is the one held, whatever the refresh brought.
        assert_eq!(s.with_token(|t| t.to_string()).as_deref(), Some("tok-2"));
        assert_eq!(s.state(), State::SignedIn);
        assert_eq!(status(&ready), 200);
        // The refresh's session, then the login's (a login always starts a new session).
        assert_eq!(*events.borrow(), ["signed_in", "signed_in"]);
        assert_eq!(h.world.refreshes.get(), 1);
    }
}

#[test]
fn s3_a_refresh_due_while_a_login_is_out_waits_and_is_abandoned() {
    for cross_tab in [false, true] {
        let mut h = Harness::new();
        let (s, events, _) = h.tab(cross_tab, 0.0);
        let (tx, rx) = oneshot::channel();
        *h.world.login_gate.borrow_mut() = Some(rx);
        let login = spawn_login(&h, &s, "pw");
        h.run();
        assert_eq!(*h.world.wire.borrow(), ["login>"]);
        // A call needing a token starts the start-up refresh meanwhile: it must wait.
        let call = h.fetch(&s, true, false);
        h.run();
        assert_eq!(
            *h.world.wire.borrow(),
            ["login>"],
            "refresh posted while a login was out"
        );
        tx.send(()).expect("gate");
        h.run();
        // The login won; the queued refresh was abandoned (never sent), and the call used the
        // login's token.
        assert_eq!(*h.world.wire.borrow(), ["login>", "login<"]);
        assert_eq!(*login.borrow(), Some(Ok(())));
        assert_eq!(status(&call), 200);
        assert_eq!(h.world.refreshes.get(), 0);
        assert_eq!(*events.borrow(), ["signed_in"]);
    }
}

#[test]
fn s3_a_refused_login_lets_the_waiting_refresh_go_ahead() {
    let mut h = Harness::new();
    let (s, _, _) = h.tab(false, 0.0);
    let (tx, rx) = oneshot::channel();
    *h.world.login_gate.borrow_mut() = Some(rx);
    let login = spawn_login(&h, &s, "wrong");
    h.run();
    let call = h.fetch(&s, true, false);
    h.run();
    assert_eq!(*h.world.wire.borrow(), ["login>"]);
    tx.send(()).expect("gate");
    h.run();
    assert_eq!(
        *h.world.wire.borrow(),
        ["login>", "login<", "refresh>", "refresh<"]
    );
    assert_eq!(
        *login.borrow(),
        Some(Err("ERR_INVALID_CREDENTIALS".to_string()))
    );
    assert_eq!(status(&call), 200);
}

#[test]
fn s3_login_takes_the_cross_tab_lock_other_tabs_refresh_under() {
    let mut h = Harness::new();
    let (s, _, outbox) = h.tab(true, 0.0);
    // Another tab holds the lock (its refresh, sharing this tab's cookie jar, is out).
    let (tx, rx) = oneshot::channel();
    *h.world.lock_gate.borrow_mut() = Some(rx);
    let login = spawn_login(&h, &s, "pw");
    h.run();
    assert!(
        h.world.wire.borrow().is_empty(),
        "login posted under another tab's lock"
    );
    tx.send(()).expect("gate");
    h.run();
    assert_eq!(*h.world.wire.borrow(), ["login>", "login<"]);
    assert_eq!(*login.borrow(), Some(Ok(())));
    assert_eq!(
        *outbox.borrow(),
        [Hint::SignedIn],
        "a hint, never the token"
    );
}

/// A resource answer whose challenge the test chooses (DPoP, D5).
struct Challenge(u16, &'static str);
impl Reply for Challenge {
    fn status(&self) -> u16 {
        self.0
    }
    fn www_authenticate(&self) -> Option<String> {
        (!self.1.is_empty()).then(|| self.1.to_string())
    }
}

/// Runs one authFetch whose answers come from `answers` in order; returns the final status,
/// the trace, the tokens each attempt was sent with, and how many refreshes happened.
fn fetch_scripted(answers: Vec<Challenge>) -> (u16, Vec<Step>, Vec<Option<String>>, u32) {
    let mut h = Harness::new();
    let (s, _, _) = h.tab(false, 0.0);
    let answers = Rc::new(RefCell::new(VecDeque::from(answers)));
    let sent: Log<Option<String>> = Rc::new(RefCell::new(Vec::new()));
    let out = Rc::new(RefCell::new(None));
    let (s2, a, sent2, o) = (
        Rc::clone(&s),
        Rc::clone(&answers),
        Rc::clone(&sent),
        Rc::clone(&out),
    );
    h.pool
        .spawner()
        .spawn_local(async move {
            let mut trace = Vec::new();
            let r = s2
                .fetch(true, &mut trace, |bearer| {
                    sent2.borrow_mut().push(bearer.map(String::from));
                    let next = a.borrow_mut().pop_front().unwrap_or(Challenge(200, ""));
                    async move { Ok::<_, ()>(next) }
                })
                .await;
            *o.borrow_mut() = Some(r.map(|r| (r.0, trace)).map_err(|_| ()));
        })
        .expect("spawn");
    h.run();
    let (status, trace) = out.borrow_mut().take().expect("done").expect("ok");
    let sent = sent.borrow().clone();
    (status, trace, sent, h.world.refreshes.get())
}

const USE_NONCE: &str = r#"DPoP error="use_dpop_nonce", algs="ES256""#;

#[test]
fn d5_use_dpop_nonce_is_retried_once_with_the_same_token_and_no_refresh() {
    let (status, trace, sent, refreshes) =
        fetch_scripted(vec![Challenge(401, USE_NONCE), Challenge(200, "")]);
    assert_eq!(status, 200);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0], sent[1],
        "the same token: only the proof's nonce changes"
    );
    assert_eq!(refreshes, 1, "the start-up refresh only");
    assert_eq!(
        trace,
        [
            Step::Waited,
            Step::Status(401),
            Step::Retried,
            Step::Status(200)
        ]
    );
}

#[test]
fn d5_a_second_use_dpop_nonce_is_handed_to_the_caller_not_retried_again() {
    let (status, _, sent, refreshes) = fetch_scripted(vec![
        Challenge(401, USE_NONCE),
        Challenge(401, USE_NONCE),
        Challenge(200, ""),
    ]);
    assert_eq!(status, 401);
    assert_eq!(sent.len(), 2);
    assert_eq!(refreshes, 1);
}

#[test]
fn d5_invalid_dpop_proof_is_neither_a_nonce_retry_nor_a_refresh() {
    let (status, _, sent, refreshes) = fetch_scripted(vec![Challenge(
        401,
        r#"DPoP error="invalid_dpop_proof", algs="ES256""#,
    )]);
    assert_eq!((status, sent.len(), refreshes), (401, 1, 1));
}

#[test]
fn d5_after_a_refresh_the_retry_may_still_get_its_one_nonce_retry() {
    // invalid_token → refresh → retry answered use_dpop_nonce → one more send with the nonce.
    let (status, trace, sent, refreshes) = fetch_scripted(vec![
        Challenge(401, r#"DPoP error="invalid_token", algs="ES256""#),
        Challenge(401, USE_NONCE),
        Challenge(200, ""),
    ]);
    assert_eq!((status, sent.len(), refreshes), (200, 3, 2));
    assert_ne!(sent[0], sent[1], "the refreshed token");
    assert_eq!(sent[1], sent[2]);
    assert_eq!(trace.iter().filter(|s| **s == Step::Retried).count(), 2);
}
