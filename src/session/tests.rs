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

/// Owned copy of a broadcast [`Message`].
#[derive(Clone, Debug, PartialEq)]
enum Sent {
    Hello,
    Token(String, f64, bool),
    SignedOut(bool),
}

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
    outbox: Rc<RefCell<Vec<Sent>>>,
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
                    scripted.unwrap_or_else(|| Ok(Some(w.issue())))
                }
                Err(Some(ok)) => {
                    let gate = w.login_gate.borrow_mut().take();
                    if let Some(g) = gate {
                        let _ = g.await;
                    }
                    w.wire.borrow_mut().push("login<");
                    if ok {
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
    fn broadcast(&self, msg: Message<'_>) {
        self.outbox.borrow_mut().push(match msg {
            Message::Hello => Sent::Hello,
            Message::Token {
                token,
                remaining_ms,
                login,
            } => Sent::Token(token.to_string(), remaining_ms, login),
            Message::SignedOut { expired } => Sent::SignedOut(expired),
        });
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

    fn tab(&self, cross_tab: bool, ahead_ms: f64) -> (S, Log<&'static str>, Log<Sent>) {
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
                        async move {
                            // One trip through the executor, like a real network round trip.
                            YieldOnce(false).await;
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
    h.world.script.borrow_mut().extend([
        Err(Error::Network("down".into())),
        Err(Error::Network("down".into())),
    ]);
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
    assert_eq!(code(&c), "ERR_REFRESH_FAILED");
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

/// Delivers every queued broadcast of `from` to the other tabs.
fn deliver(from: &Rc<RefCell<Vec<Sent>>>, to: &[&S]) {
    let msgs: Vec<Sent> = from.borrow_mut().drain(..).collect();
    for m in msgs {
        for t in to {
            t.on_message(match &m {
                Sent::Hello => Message::Hello,
                Sent::Token(tok, ms, login) => Message::Token {
                    token: tok,
                    remaining_ms: *ms,
                    login: *login,
                },
                Sent::SignedOut(e) => Message::SignedOut { expired: *e },
            });
        }
    }
}

#[test]
fn cross_tab_new_tab_takes_the_token_from_a_live_tab() {
    let mut h = Harness::new();
    let (a, _, out_a) = h.tab(true, 0.0);
    h.login(&a);
    out_a.borrow_mut().clear();
    let (b, events_b, out_b) = h.tab(true, 0.0);
    let c = h.fetch(&b, true, false);
    h.run();
    assert_eq!(*out_b.borrow(), vec![Sent::Hello]);
    deliver(&out_b, &[&a]);
    deliver(&out_a, &[&b]);
    h.advance(HELLO_WAIT_MS);
    assert_eq!(status(&c), 200);
    assert_eq!(h.world.refreshes.get(), 0, "bootstrapped from the live tab");
    assert_eq!(*events_b.borrow(), vec!["signed_in"]);
}

#[test]
fn cross_tab_lock_waiter_uses_the_winners_token() {
    let mut h = Harness::new();
    let (a, _, out_a) = h.tab(true, 0.0);
    let (b, _, _) = h.tab(true, 0.0);
    h.login(&a);
    deliver(&out_a, &[&b]);
    assert_eq!(b.state(), State::SignedIn);
    h.advance(3000.0);
    // Tab A takes the lock and refreshes; tab B waits for the lock meanwhile.
    let ca = h.fetch(&a, true, false);
    h.run();
    let (tx, rx) = oneshot::channel();
    *h.world.lock_gate.borrow_mut() = Some(rx);
    let cb = h.fetch(&b, true, false);
    h.run();
    assert_eq!(status(&ca), 200);
    assert!(cb.borrow().is_none());
    deliver(&out_a, &[&b]);
    h.run();
    assert_eq!(
        status(&cb),
        200,
        "took A's token without waiting for the lock"
    );
    tx.send(()).expect("lock");
    h.run();
    assert_eq!(h.world.refreshes.get(), 1);
}

#[test]
fn k6_logout_reaches_every_tab_and_rejects_their_queued_calls() {
    let mut h = Harness::new();
    let (a, _, out_a) = h.tab(true, 0.0);
    let (b, events_b, out_b) = h.tab(true, 0.0);
    h.login(&a);
    deliver(&out_a, &[&b]);
    h.advance(3000.0);
    let (tx, rx) = oneshot::channel();
    *h.world.gate.borrow_mut() = Some(rx);
    let queued = h.fetch(&b, true, false);
    h.run();
    let a2 = Rc::clone(&a);
    h.pool
        .spawner()
        .spawn_local(async move {
            let _ = a2.logout(false).await;
        })
        .expect("spawn");
    h.run();
    deliver(&out_a, &[&b]);
    h.run();
    assert_eq!(code(&queued), "ERR_SIGNED_OUT");
    assert_eq!(b.state(), State::SignedOut);
    assert_eq!(*events_b.borrow(), vec!["signed_in", "signed_out"]);
    // B's late refresh result is discarded and not shared.
    tx.send(()).expect("gate");
    h.run();
    assert_eq!(b.state(), State::SignedOut);
    assert!(!out_b.borrow().iter().any(|m| matches!(m, Sent::Token(..))));
    // A refreshed token that raced the logout is not adopted; a new login is.
    b.on_message(Message::Token {
        token: "late",
        remaining_ms: 1000.0,
        login: false,
    });
    assert_eq!(b.state(), State::SignedOut);
    b.on_message(Message::Token {
        token: "fresh",
        remaining_ms: 1000.0,
        login: true,
    });
    assert_eq!(b.state(), State::SignedIn);
}

#[test]
fn cross_tab_session_expired_is_broadcast() {
    let mut h = Harness::new();
    let (a, _, out_a) = h.tab(true, 0.0);
    let (b, events_b, _) = h.tab(true, 0.0);
    h.login(&a);
    deliver(&out_a, &[&b]);
    h.expire_server_side();
    h.world
        .script
        .borrow_mut()
        .push_back(Err(Error::SessionExpired));
    let c = h.fetch(&a, true, false);
    h.run();
    assert_eq!(code(&c), "ERR_SESSION_EXPIRED");
    deliver(&out_a, &[&b]);
    assert_eq!(b.state(), State::SignedOut);
    assert_eq!(events_b.borrow().last(), Some(&"session_expired"));
}

#[test]
fn cross_tab_a_refresh_queued_behind_the_lock_is_abandoned_after_a_sign_out() {
    let mut h = Harness::new();
    let (a, _, out_a) = h.tab(true, 0.0);
    let (b, _, _) = h.tab(true, 0.0);
    h.login(&a);
    deliver(&out_a, &[&b]);
    h.advance(3000.0);
    // Another tab holds the lock; B's refresh waits for it.
    let (tx, rx) = oneshot::channel();
    *h.world.lock_gate.borrow_mut() = Some(rx);
    let queued = h.fetch(&b, true, false);
    h.run();
    assert!(queued.borrow().is_none());
    // A signs out; B hears of it while still waiting for the lock.
    let a2 = Rc::clone(&a);
    h.pool
        .spawner()
        .spawn_local(async move {
            let _ = a2.logout(false).await;
        })
        .expect("spawn");
    h.run();
    deliver(&out_a, &[&b]);
    h.run();
    assert_eq!(code(&queued), "ERR_SIGNED_OUT");
    // The lock comes free: B has nothing left to refresh, and does not ask the server.
    tx.send(()).expect("lock");
    h.run();
    assert_eq!(h.world.refreshes.get(), 0);
    assert_eq!(b.state(), State::SignedOut);
}

#[test]
fn cross_tab_hello_answers_do_not_reinstall_the_same_token() {
    let mut h = Harness::new();
    let (a, _, out_a) = h.tab(true, 0.0);
    let (c, events_c, out_c) = h.tab(true, 0.0);
    h.login(&a);
    deliver(&out_a, &[&c]);
    assert_eq!(*events_c.borrow(), vec!["signed_in"]);
    // A new tab says Hello; both live tabs answer, and each hears the other's answer.
    let (b, events_b, out_b) = h.tab(true, 0.0);
    let call = h.fetch(&b, true, false);
    h.run();
    deliver(&out_b, &[&a, &c]);
    h.advance(1.0); // the answers are measured a moment later than the token was installed
    deliver(&out_a, &[&b, &c]);
    deliver(&out_c, &[&b, &a]);
    h.advance(HELLO_WAIT_MS);
    assert_eq!(status(&call), 200);
    assert_eq!(h.world.refreshes.get(), 0);
    assert_eq!(*events_c.borrow(), vec!["signed_in"], "no refreshed event");
    assert_eq!(*events_b.borrow(), vec!["signed_in"]);
}

/// The wasm facade sends `event as u32`; `js/index.js` maps it back through `EVENTS`.
#[test]
fn index_js_event_table_matches_the_event_enum() {
    let js = include_str!("../../js/index.js");
    let start = js.find("const EVENTS = [").expect("EVENTS declared");
    let end = start + js[start..].find("];").expect("EVENTS terminated");
    let names: Vec<&str> = js[start..end].split('\'').skip(1).step_by(2).collect();
    let all = [
        Event::SignedIn,
        Event::Refreshed,
        Event::SignedOut,
        Event::SessionExpired,
        Event::RefreshFailed,
    ];
    assert_eq!(names.len(), all.len());
    for e in all {
        assert_eq!(names[e as usize], e.name());
    }
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
        h.advance(HELLO_WAIT_MS);
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
        h.advance(HELLO_WAIT_MS);
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
        [Sent::Token("tok-1".to_string(), 3000.0, true)]
    );
}
