//! A1 on real sockets: header-read timeout (slowloris), idle keep-alive timeout, the connection
//! cap, the graceful-shutdown deadline (in process and for the binary on SIGTERM), and `413`
//! before `100 Continue`.

mod common;

use authfetch_protocol::{CSRF_HEADER, JWKS_PATH, LOGIN_PATH};
use authfetch_server::config::ConnectionLimits;
use authfetch_server::Config;
use common::process::{ServerProcess, BASE_ARGS, BIN};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A server on 127.0.0.1:0 in this process; `stop` starts its graceful shutdown.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(limits: ConnectionLimits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config: Config = common::test_config(dir.path());
        config.connections = limits;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            authfetch_server::serve_until(config, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        // The store opens before the listener accepts; wait until it answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(addr).await {
                if let Ok(r) = request(&mut s, &get(JWKS_PATH)).await {
                    if r.starts_with("HTTP/1.1 200") {
                        break;
                    }
                }
            }
            assert!(Instant::now() < deadline, "server did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Server {
            addr,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }
}

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: 100,
        shutdown_timeout: Duration::from_secs(30),
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n")
}

/// Sends `req` and reads one response (head and a `content-length` body).
async fn request(s: &mut TcpStream, req: &str) -> std::io::Result<String> {
    s.write_all(req.as_bytes()).await?;
    read_response(s).await
}

async fn read_response(s: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("response timed out"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(text);
            }
        }
    }
}

/// How long until the server closes `s` (reads until EOF or a reset), up to `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(start + limit),
            s.read(&mut chunk),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a1_half_a_request_head_is_dropped_after_the_header_read_timeout() {
    let server = Server::start(ConnectionLimits {
        header_read_timeout: Duration::from_millis(600),
        ..limits()
    })
    .await;
    let mut slow = server.connect().await;
    slow.write_all(b"GET /api/me HTTP/1.1\r\nhost: localhost\r\nx-a: ")
        .await
        .unwrap();
    // A connection that has sent nothing is idle, not slow: the idle timeout (30 s) applies.
    let mut quiet = server.connect().await;
    let t = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("the slowloris connection is still open after 5 s");
    assert!(t >= Duration::from_millis(500), "closed too early: {t:?}");
    assert_eq!(
        closed_within(&mut quiet, Duration::from_millis(300)).await,
        None,
        "an idle connection is not held to the header timeout"
    );
    let r = request(&mut quiet, &get(JWKS_PATH)).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[tokio::test]
async fn a1_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start(ConnectionLimits {
        idle_timeout: Duration::from_millis(600),
        ..limits()
    })
    .await;
    let mut c = server.connect().await;
    // Keep-alive works while the client keeps talking...
    for _ in 0..3 {
        let r = request(&mut c, &get(JWKS_PATH)).await.unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and an idle connection is closed.
    let t = closed_within(&mut c, Duration::from_secs(5))
        .await
        .expect("the idle connection is still open after 5 s");
    assert!(t >= Duration::from_millis(300), "closed too early: {t:?}");
}

#[tokio::test]
async fn a1_connections_over_the_cap_are_refused_fast_and_the_others_still_served() {
    let server = Server::start(ConnectionLimits {
        max_connections: 3,
        ..limits()
    })
    .await;
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.len() < 3 {
        // Server::start's probe connection may still hold a slot for a moment.
        let mut c = server.connect().await;
        match request(&mut c, &get(JWKS_PATH)).await {
            Ok(r) if r.starts_with("HTTP/1.1 200") => held.push(c),
            other => {
                assert!(Instant::now() < deadline, "{other:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    for _ in 0..5 {
        let started = Instant::now();
        let mut extra = server.connect().await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), extra.read_to_end(&mut answer))
            .await
            .expect("an excess connection is closed at once, not left waiting");
        assert!(started.elapsed() < Duration::from_secs(1));
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
    }
    // The accepted ones keep being served.
    for c in &mut held {
        let r = request(c, &get(JWKS_PATH)).await.unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    // A closed one frees its slot.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = server.connect().await;
        if let Ok(r) = request(&mut c, &get(JWKS_PATH)).await {
            assert!(r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.1 503"));
            if r.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a1_graceful_shutdown_drops_a_half_request_client_at_the_deadline() {
    let mut server = Server::start(ConnectionLimits {
        shutdown_timeout: Duration::from_millis(700),
        ..limits()
    })
    .await;
    let mut half = server.connect().await;
    half.write_all(b"POST /auth/login HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let _ = server.stop.take().unwrap().send(());
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("serve returned within the shutdown deadline")
        .unwrap();
    let t = started.elapsed();
    assert!(t >= Duration::from_millis(600), "{t:?}");
    assert!(closed_within(&mut half, Duration::from_secs(1))
        .await
        .is_some());
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn a1_an_oversize_content_length_with_expect_continue_gets_413_not_100() {
    let server = Server::start(limits()).await;
    let mut c = server.connect().await;
    let head = format!(
        "POST {LOGIN_PATH} HTTP/1.1\r\nhost: localhost\r\n{CSRF_HEADER}: 1\r\n\
         content-type: application/json\r\ncontent-length: 10000000\r\nexpect: 100-continue\r\n\r\n"
    );
    let r = request(&mut c, &head).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    // Same on the echo resource (its own, larger limit), before the bearer is even looked at.
    let mut c = server.connect().await;
    let head = "POST /api/echo HTTP/1.1\r\nhost: localhost\r\ncontent-type: text/plain\r\n\
                content-length: 10000000\r\nexpect: 100-continue\r\n\r\n";
    let r = request(&mut c, head).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    // A body within the limit still gets 100 Continue and is read.
    let mut c = server.connect().await;
    let head = format!(
        "POST {LOGIN_PATH} HTTP/1.1\r\nhost: localhost\r\n{CSRF_HEADER}: 1\r\n\
         content-type: application/json\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let r = read_response(&mut c).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 100"), "{r}");
}

/// The binary: SIGTERM while a client holds half a request head still exits within
/// `--shutdown-timeout` (plus start-up slack), and exits successfully.
#[test]
fn a1_sigterm_with_a_half_request_client_exits_within_the_shutdown_deadline() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        ServerProcess::start(&dir.path().join("data"), &["--shutdown-timeout", "1s"], &[]);
    let addr = server.addr().to_owned();
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    half.write_all(b"POST /auth/login HTTP/1.1\r\nhost: localhost\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal("-TERM");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("still running 5 s after SIGTERM with --shutdown-timeout 1s");
    assert!(status.success(), "{status}");
    drop(half);
}

/// The binary under a small open-file limit (`ulimit -n 128`): the connection cap is lowered to
/// fit, so a pile of idle connections gets `503`s instead of exhausting descriptors (on main:
/// `accept` failed with EMFILE and new clients hung), and clients are served again as soon as
/// the pile goes away.
#[test]
fn a1_under_a_small_open_file_limit_idle_connections_cannot_starve_new_clients() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(r#"ulimit -n 128 && exec "$0" "$@""#)
        .arg(BIN)
        .args(BASE_ARGS)
        .env_remove("RUST_LOG")
        .env("AUTHFETCH_DATA_DIR", dir.path().join("data"));
    let server = ServerProcess::spawn(command, &dir.path().join("server.log"));
    let addr = server.addr().to_owned();
    let get = |addr: &str| -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(get(JWKS_PATH).as_bytes());
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => format!("no answer: {e}"),
        }
    };
    assert!(get(&addr).starts_with("HTTP/1.1 200"));
    // More idle connections than the process has descriptors.
    let idle: Vec<_> = (0..200)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let answer = get(&addr);
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "a new client is answered at once, not left hanging: {answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(&addr).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log.clone();
    drop(server);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logs.contains("lowered to fit the open-file limit"),
        "{logs}"
    );
    assert!(!logs.contains("accept failed"), "{logs}");
}
