//! The accept loop: HTTP/1.1 connections with a header-read timeout, an idle keep-alive
//! timeout, a cap on concurrent connections and a graceful-shutdown deadline (A1).
//!
//! `axum::serve` has none of these: a client that sends half a request head, or a pile of idle
//! keep-alive connections, holds a socket (and a file descriptor) for as long as it likes, and
//! blocks a graceful shutdown just as long. hyper's own `header_read_timeout` starts its clock
//! whenever the connection waits for a head, idle or not, so it cannot tell a slow head from an
//! idle keep-alive connection; the watchdog here measures both from what the socket does.
//!
//! Per connection, three facts are kept in atomics that the socket wrapper ([`Tracked`]) and the
//! service wrapper update: the last time bytes moved either way, when the first byte of a
//! request head arrived (if a head is being read), and whether a request is being handled. The
//! connection's task sleeps until the earliest deadline those imply and drops the connection
//! (closing the socket) once it has passed:
//!
//! - a head has started and is not complete after `header_read_timeout` (slowloris);
//! - no request is in flight and nothing moved for `idle_timeout`.
//!
//! A connection beyond `max_connections` is answered `503` and closed at once, without a task,
//! so the ones already accepted keep being served and the process keeps file descriptors for
//! its store. On shutdown the listener closes first, every connection is asked to finish its
//! current request and close (`graceful_shutdown`), and whatever is still open after
//! `shutdown_timeout` is dropped.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::config::ConnectionLimits;

/// What a refused connection is told before it is closed.
const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n";

/// Pause after a failed `accept` (e.g. out of file descriptors): the error is not retried in a
/// tight loop, and connections that finish meanwhile give descriptors back.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A deadline that never comes in practice.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// "No such time" in the atomics below.
const NONE: u64 = u64::MAX;

/// What the watchdog of one connection knows, in milliseconds since the connection opened.
struct Activity {
    opened: Instant,
    /// Last time bytes were read or written.
    last_io: AtomicU64,
    /// When the first byte of the head being read arrived; [`NONE`] when no head is pending.
    head_started: AtomicU64,
    /// Requests being handled (0 or 1 on HTTP/1.1 without pipelining).
    in_flight: AtomicUsize,
    /// Wakes the watchdog when its deadline moves earlier (a head starts, a request ends).
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_io: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            in_flight: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        // Bytes while no request is being handled belong to the next head.
        if self.in_flight.load(Ordering::Acquire) == 0
            && self
                .head_started
                .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    /// When the connection must be dropped if nothing changes, or `None` while a request runs
    /// (the handler's own timeouts and the shutdown deadline bound that).
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let at = match self.head_started.load(Ordering::Acquire) {
            NONE => self.last_io.load(Ordering::Relaxed) + ms(limits.idle_timeout),
            started => started + ms(limits.header_read_timeout),
        };
        // A timeout of centuries (a huge flag value) must not overflow the clock.
        Some(
            self.opened
                .checked_add(Duration::from_millis(at))
                .unwrap_or_else(|| Instant::now() + FAR),
        )
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(NONE / 2)
}

/// Marks a request as in flight for as long as it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        // The head is complete: hyper hands the request over only after parsing all of it.
        a.head_started.store(NONE, Ordering::Release);
        Self(Arc::clone(a))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.wrote();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// A socket that reports its reads and writes to the connection's [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The most connections this process can hold: `wanted`, lowered to leave file descriptors for
/// the store, the signing keys and static files when the open-file limit is smaller.
pub fn effective_max_connections(wanted: usize) -> usize {
    /// Descriptors kept for everything but client sockets.
    const RESERVED_FDS: usize = 64;
    match open_file_limit() {
        Some(limit) if limit < wanted.saturating_add(RESERVED_FDS) => {
            let capped = limit.saturating_sub(RESERVED_FDS).max(1);
            tracing::warn!(
                wanted,
                open_file_limit = limit,
                capped,
                "--max-connections lowered to fit the open-file limit (raise it with ulimit -n)"
            );
            capped
        }
        _ => wanted,
    }
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (Linux); `None` elsewhere or when
/// unlimited.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Serves `router` on `listener` until `shutdown` completes, then drains connections for at most
/// `limits.shutdown_timeout`. See the module docs.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let max = effective_max_connections(limits.max_connections.max(1));
    let permits = Arc::new(Semaphore::new(max));
    let (stop, stopping) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut accept_errors_logged_at: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        // Full: answered and closed without waiting for the client.
                        let _ = stream.try_write(REFUSED);
                        drop(stream);
                        tracing::debug!(%peer, "connection refused: at --max-connections");
                        continue;
                    };
                    let (router, stopping) = (router.clone(), stopping.clone());
                    conns.spawn(async move {
                        connection(stream, peer, router, limits, stopping).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted. Logged
                    // at most once a second: a flood of these must not become a flood of logs.
                    if accept_errors_logged_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accept failed");
                        accept_errors_logged_at = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let open = conns.len();
    if open > 0 {
        tracing::info!(
            open,
            deadline_s = limits.shutdown_timeout.as_secs_f64(),
            "draining connections"
        );
    }
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            dropped = conns.len(),
            "shutdown deadline passed: dropping the remaining connections"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// Serves one connection until it closes, times out, or shutdown asks it to finish.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = InFlight::enter(&requests);
        req.extensions_mut().insert(ConnectInfo(peer));
        let call = router.clone().oneshot(req);
        async move {
            let r = call.await;
            drop(guard);
            r
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut asked_to_stop = *stopping.borrow();
    if asked_to_stop {
        conn.as_mut().graceful_shutdown();
    }
    // One timer for the connection's life, moved only when it must fire sooner: re-arming a
    // timer on every request (twice: a head starts, the request ends) wakes tokio's timer driver
    // through an eventfd whenever the new deadline is the runtime's earliest, which cost the
    // refresh benchmark three syscalls per request and ~12 % of its throughput (BENCHMARKS.md
    // §0b). A timer that fires too early is harmless: the deadline is read again and the timer
    // re-armed. Deadlines are rounded up to `slack`, so the many requests of one keep-alive
    // connection within that time ask for the same deadline and leave the timer alone.
    let slack = (limits.header_read_timeout.min(limits.idle_timeout) / 8)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let round = |d: Instant| {
        let since = d.saturating_duration_since(activity.opened);
        let steps = since.as_nanos().div_ceil(slack.as_nanos().max(1));
        u32::try_from(steps)
            .ok()
            .and_then(|n| activity.opened.checked_add(slack * n))
            .unwrap_or(d)
    };
    let timer = tokio::time::sleep_until(Instant::now() + FAR);
    tokio::pin!(timer);
    // When the timer is set to fire; `None` while a request runs (nothing to time out then: the
    // end of the request wakes the loop through `changed`).
    let mut armed: Option<Instant> = None;
    loop {
        match activity.deadline(&limits).map(round) {
            Some(want) if armed.is_none_or(|at| want < at) => {
                timer.as_mut().reset(want);
                armed = Some(want);
            }
            _ => {}
        }
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = timer.as_mut(), if armed.is_some() => {
                armed = None;
                if activity.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    let reason = if activity.head_started.load(Ordering::Acquire) == NONE {
                        "idle timeout"
                    } else {
                        "header read timeout"
                    };
                    tracing::debug!(%peer, reason, "connection dropped");
                    return;
                }
            }
            changed = stopping.changed(), if !asked_to_stop => {
                asked_to_stop = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
