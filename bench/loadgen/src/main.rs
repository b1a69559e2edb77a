//! authfetch-loadgen: a small, bounded HTTP/1.1 load generator for the authfetch benchmarks.
//!
//! Modes (all over keep-alive connections, one connection per virtual client):
//!
//! * `refresh` — every virtual client logs in once (its own refresh-token family), then loops
//!   `POST /auth/refresh` with its cookie and adopts every rotated `Set-Cookie`, as a browser
//!   would. oha/wrk cannot do this: they replay one fixed request.
//! * `bearer`  — one login, then every client loops `GET <path>` with the same static bearer
//!   (ES256 verification on the server).
//! * `login`   — every client loops `POST /auth/login` (Argon2id-bound on the server).
//!
//! `--dpop` makes `refresh` and `bearer` a DPoP client (RFC 9449, the rules of docs/PROTOCOL.md
//! "DPoP"): one P-256 key per run (ring, ES256), a proof on the login (so the family is bound),
//! on every refresh and on every resource request (`Authorization: DPoP <token>`, `ath`), each
//! with a fresh `jti` and `iat`; a `use_dpop_nonce` answer is retried once with the server's
//! `DPoP-Nonce`, and every `DPoP-Nonce` the server sends is used from then on.
//!
//! Every run is bounded by a request count *and* a wall-clock cap, and only talks to the
//! address given (the benchmarks pass 127.0.0.1). The result is one JSON object on stdout:
//! requests, ok, errors by status, req/s, p50/p90/p99/max latency in microseconds.
//!
//! ```text
//! authfetch-loadgen refresh --addr 127.0.0.1:8080 --clients 64 --requests 200000 --duration 10
//! authfetch-loadgen bearer  --addr 127.0.0.1:8080 --clients 64 --path /api/me
//! authfetch-loadgen login   --addr 127.0.0.1:8080 --clients 4 --requests 200 --duration 10
//! authfetch-loadgen bearer  --addr 127.0.0.1:8080 --clients 64 --dpop
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

mod dpop;
use dpop::Dpop;

const COOKIE: &str = "__Host-authfetch_rt";

#[derive(Clone, Debug)]
struct Args {
    mode: String,
    addr: SocketAddr,
    clients: usize,
    requests: u64,
    duration: Duration,
    warmup: Duration,
    users: Vec<(String, String)>,
    path: String,
    threads: usize,
    login_concurrency: usize,
    setup_timeout: Duration,
    dpop: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: authfetch-loadgen refresh|bearer|login --addr 127.0.0.1:PORT [--clients N] \
         [--requests N] [--duration SECS] [--warmup SECS] [--users u:p,u:p] [--path /api/me] \
         [--threads N] [--login-concurrency N] [--setup-timeout SECS] [--dpop]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| usage());
    if !matches!(mode.as_str(), "refresh" | "bearer" | "login") {
        usage()
    }
    let mut a = Args {
        mode,
        addr: "127.0.0.1:8080".parse().unwrap(),
        clients: 64,
        requests: 100_000,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(0),
        users: vec![("alice".into(), "alice-password".into())],
        path: "/api/me".into(),
        threads: 1,
        login_concurrency: 2,
        setup_timeout: Duration::from_secs(180),
        dpop: false,
    };
    while let Some(k) = it.next() {
        if k == "--dpop" {
            a.dpop = true;
            continue;
        }
        let v = it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--addr" => a.addr = v.parse().unwrap_or_else(|_| usage()),
            "--clients" => a.clients = v.parse().unwrap_or_else(|_| usage()),
            "--requests" => a.requests = v.parse().unwrap_or_else(|_| usage()),
            "--duration" => {
                a.duration = Duration::from_secs_f64(v.parse().unwrap_or_else(|_| usage()))
            }
            "--warmup" => a.warmup = Duration::from_secs_f64(v.parse().unwrap_or_else(|_| usage())),
            "--path" => a.path = v,
            "--threads" => a.threads = v.parse().unwrap_or_else(|_| usage()),
            "--login-concurrency" => a.login_concurrency = v.parse().unwrap_or_else(|_| usage()),
            "--setup-timeout" => {
                a.setup_timeout = Duration::from_secs_f64(v.parse().unwrap_or_else(|_| usage()))
            }
            "--users" => {
                a.users = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        let (u, p) = s.split_once(':').unwrap_or_else(|| usage());
                        (u.to_string(), p.to_string())
                    })
                    .collect()
            }
            _ => usage(),
        }
    }
    if !a.addr.ip().is_loopback() {
        eprintln!(
            "authfetch-loadgen: refusing a non-loopback address {}",
            a.addr
        );
        std::process::exit(2)
    }
    if a.dpop && a.mode == "login" {
        eprintln!("authfetch-loadgen: --dpop is for the refresh and bearer modes");
        std::process::exit(2)
    }
    a.clients = a.clients.max(1);
    a.threads = a.threads.max(1);
    a.login_concurrency = a.login_concurrency.max(1);
    a
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

struct Reply {
    status: u16,
    cookie: Option<String>,
    body: Bytes,
    /// The server's `DPoP-Nonce`, if it sent one (base64url, as the server makes them).
    dpop_nonce: Option<String>,
    /// A `401` whose challenge is `use_dpop_nonce`: send again with `dpop_nonce`.
    use_dpop_nonce: bool,
}

async fn send(sender: &mut Sender, req: Request<Full<Bytes>>) -> Result<Reply, String> {
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = res.status().as_u16();
    let mut cookie = None;
    for v in res.headers().get_all(hyper::header::SET_COOKIE) {
        if let Ok(s) = v.to_str() {
            if let Some(rest) = s.strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')) {
                let val = rest.split(';').next().unwrap_or("").to_string();
                cookie = Some(val);
            }
        }
    }
    let dpop_nonce = res
        .headers()
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_string);
    let use_dpop_nonce = status == 401
        && res
            .headers()
            .get_all(hyper::header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.contains("use_dpop_nonce")));
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Reply {
        status,
        cookie,
        body,
        dpop_nonce,
        use_dpop_nonce,
    })
}

/// Sends `make(nonce)`; adopts any `DPoP-Nonce` the answer carries, and on `use_dpop_nonce`
/// sends once more with it (one request as far as the counts go). Without DPoP, `make` ignores
/// the nonce and no answer asks for one.
async fn send_dpop(
    sender: &mut Sender,
    nonce: &mut Option<String>,
    make: impl Fn(Option<&str>) -> Request<Full<Bytes>>,
) -> Result<Reply, String> {
    let mut retried = false;
    loop {
        let r = send(sender, make(nonce.as_deref())).await?;
        if r.dpop_nonce.is_some() {
            nonce.clone_from(&r.dpop_nonce);
        }
        if r.use_dpop_nonce && r.dpop_nonce.is_some() && !retried {
            retried = true;
            continue;
        }
        return Ok(r);
    }
}

fn host(a: &Args) -> String {
    a.addr.to_string()
}

/// What a browser sends on a same-origin POST from a page served by the server itself (the
/// server's CSRF check accepts its own `http://127.0.0.1:PORT` by default).
fn origin(a: &Args) -> String {
    format!("http://{}", a.addr)
}

/// The proof for a `POST` to an auth endpoint, when running as a DPoP client.
fn auth_proof(dpop: Option<&Dpop>, path: &str, nonce: Option<&str>) -> Option<String> {
    dpop.map(|d| d.proof("POST", path, None, nonce))
}

/// A same-origin `POST` to an auth endpoint, with its proof if any.
fn auth_post(a: &Args, path: &str, proof: Option<String>) -> hyper::http::request::Builder {
    let b = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("host", host(a))
        .header("origin", origin(a))
        .header("sec-fetch-site", "same-origin")
        .header("x-authfetch", "1");
    match proof {
        Some(p) => b.header("dpop", p),
        None => b,
    }
}

fn login_req(a: &Args, user: &(String, String), proof: Option<String>) -> Request<Full<Bytes>> {
    let body = format!(
        "{{\"username\":{},\"password\":{}}}",
        json_str(&user.0),
        json_str(&user.1)
    );
    auth_post(a, "/auth/login", proof)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn refresh_req(a: &Args, cookie: &str, proof: Option<String>) -> Request<Full<Bytes>> {
    auth_post(a, "/auth/refresh", proof)
        .header("cookie", format!("{COOKIE}={cookie}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// `GET <path>` with the token: `Bearer`, or `DPoP` with a proof (`ath` = `ath`) when running as
/// a DPoP client.
fn bearer_req(
    a: &Args,
    token: &str,
    dpop: Option<(&Dpop, &str)>,
    nonce: Option<&str>,
) -> Request<Full<Bytes>> {
    let b = Request::builder()
        .method(Method::GET)
        .uri(a.path.as_str())
        .header("host", host(a));
    match dpop {
        Some((d, ath)) => b
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", d.proof("GET", &a.path, Some(ath), nonce)),
        None => b.header("authorization", format!("Bearer {token}")),
    }
    .body(Full::new(Bytes::new()))
    .unwrap()
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn access_token(body: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let i = s.find("\"access_token\"")? + "\"access_token\"".len();
    let rest = s[i..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// Logs in (retrying on 429 / transport errors until `deadline`), returning (cookie, token);
/// with a proof when running as a DPoP client, so the family is bound to its key.
async fn login(
    a: &Args,
    user: &(String, String),
    dpop: Option<&Dpop>,
    deadline: Instant,
) -> Result<(String, String), String> {
    let mut nonce = None;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut s = match connect(a.addr).await {
            Ok(s) => s,
            Err(e) => {
                last = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let make = |n: Option<&str>| login_req(a, user, auth_proof(dpop, "/auth/login", n));
        match send_dpop(&mut s, &mut nonce, make).await {
            Ok(r) if r.status == 200 => {
                let tok = access_token(&r.body).ok_or("login: no access_token in body")?;
                let ck = r.cookie.ok_or("login: no refresh cookie")?;
                return Ok((ck, tok));
            }
            Ok(r) if r.status == 429 => {
                last = "429 rate limited".into();
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            Ok(r) => {
                return Err(format!(
                    "login as {} → HTTP {}: {}",
                    user.0,
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ))
            }
            Err(e) => {
                last = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Err(format!(
        "login as {}: gave up at the set-up deadline ({last})",
        user.0
    ))
}

#[derive(Default)]
struct ClientResult {
    lat_us: Vec<u32>,
    ok: u64,
    statuses: BTreeMap<String, u64>,
    dead: bool,
}

struct Shared {
    issued: AtomicU64,
    /// Every request sent after the set-up, warm-up included (for CPU time per request).
    sent: AtomicU64,
    stop: AtomicBool,
    requests: u64,
    measure_from: Instant,
    deadline: Instant,
}

impl Shared {
    fn take(&self) -> Option<bool> {
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return None;
        }
        let warm = Instant::now() < self.measure_from;
        if warm {
            self.sent.fetch_add(1, Ordering::Relaxed);
            return Some(false);
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        if n >= self.requests {
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        Some(true)
    }
}

async fn run_client(
    a: Arc<Args>,
    sh: Arc<Shared>,
    idx: usize,
    mut cookie: String,
    token: Arc<String>,
    dpop: Option<Arc<Dpop>>,
) -> ClientResult {
    let mut r = ClientResult::default();
    let mut sender = None;
    let dpop = dpop.as_deref();
    let ath = dpop.map(|_| dpop::ath(&token));
    let bound = dpop.zip(ath.as_deref());
    let mut nonce = None;
    while let Some(measured) = sh.take() {
        if sender.is_none() {
            match connect(a.addr).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    if measured {
                        *r.statuses.entry(short(&e)).or_default() += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = sender.as_mut().unwrap();
        let make = |n: Option<&str>| match a.mode.as_str() {
            "refresh" => refresh_req(&a, &cookie, auth_proof(dpop, "/auth/refresh", n)),
            "bearer" => bearer_req(&a, &token, bound, n),
            _ => login_req(&a, &a.users[idx % a.users.len()], None),
        };
        let t0 = Instant::now();
        let res = send_dpop(s, &mut nonce, make).await;
        let dt = t0.elapsed();
        match res {
            Ok(rep) => {
                if let Some(c) = rep.cookie {
                    cookie = c;
                }
                if (200..300).contains(&rep.status) {
                    if measured {
                        r.ok += 1;
                        r.lat_us.push(dt.as_micros().min(u32::MAX as u128) as u32);
                        *r.statuses.entry(rep.status.to_string()).or_default() += 1;
                    }
                } else {
                    if measured {
                        *r.statuses.entry(rep.status.to_string()).or_default() += 1;
                    }
                    if a.mode == "refresh" && (rep.status == 401 || rep.status == 400) {
                        // The family is gone (revoked / reuse detected): this client stops.
                        r.dead = true;
                        break;
                    }
                }
            }
            Err(e) => {
                if measured {
                    *r.statuses.entry(short(&e)).or_default() += 1;
                }
                sender = None;
            }
        }
    }
    r
}

fn short(e: &str) -> String {
    let k = e.split(':').next().unwrap_or("error");
    format!("err_{k}")
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[i.saturating_sub(1).min(sorted.len() - 1)]
}

async fn amain(a: Args) -> Result<String, String> {
    let a = Arc::new(a);
    let setup_start = Instant::now();
    let setup_deadline = setup_start + a.setup_timeout;
    let mut cookies = vec![String::new(); a.clients];
    let mut token = String::new();
    let dpop = match a.dpop {
        true => Some(Arc::new(Dpop::new(origin(&a))?)),
        false => None,
    };
    match a.mode.as_str() {
        "refresh" => {
            // Each virtual client logs in once: its own family. A few logins at a time, since
            // each costs an Argon2id hash on the server.
            let sem = Arc::new(tokio::sync::Semaphore::new(a.login_concurrency));
            let mut js = Vec::new();
            for i in 0..a.clients {
                let a = a.clone();
                let sem = sem.clone();
                let dpop = dpop.clone();
                js.push(tokio::spawn(async move {
                    let _p = sem.acquire().await.unwrap();
                    let user = &a.users[i % a.users.len()];
                    login(&a, user, dpop.as_deref(), setup_deadline).await
                }));
            }
            for (i, j) in js.into_iter().enumerate() {
                let (c, _) = j.await.map_err(|e| e.to_string())??;
                cookies[i] = c;
            }
        }
        "bearer" => {
            let (_, t) = login(&a, &a.users[0], dpop.as_deref(), setup_deadline).await?;
            token = t;
        }
        _ => {}
    }
    let setup_s = setup_start.elapsed().as_secs_f64();
    // A marker for bench/server/server.mjs (e.g. to attach a profiler to the measured load only).
    eprintln!("loadgen: load started after {setup_s:.2} s of set-up");
    let start = Instant::now();
    let sh = Arc::new(Shared {
        issued: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        requests: a.requests,
        measure_from: start + a.warmup,
        deadline: start + a.warmup + a.duration,
    });
    let token = Arc::new(token);
    let mut js = Vec::new();
    for (i, c) in cookies.into_iter().enumerate() {
        js.push(tokio::spawn(run_client(
            a.clone(),
            sh.clone(),
            i,
            c,
            token.clone(),
            dpop.clone(),
        )));
    }
    let mut lat = Vec::new();
    let mut ok = 0u64;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut dead = 0;
    for j in js {
        let r = j.await.map_err(|e| e.to_string())?;
        lat.extend(r.lat_us);
        ok += r.ok;
        dead += r.dead as u64;
        for (k, v) in r.statuses {
            *statuses.entry(k).or_default() += v;
        }
    }
    let end = Instant::now();
    let measure_from = sh.measure_from.min(end);
    let elapsed = (end - measure_from).as_secs_f64().max(1e-9);
    lat.sort_unstable();
    let total: u64 = statuses.values().sum();
    let errors = total - ok;
    let st = statuses
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(format!(
        "{{\"mode\":\"{}\",\"dpop\":{},\"clients\":{},\"threads\":{},\"setup_s\":{:.3},\"elapsed_s\":{:.3},\
         \"sent_total\":{},\"load_s\":{:.3},\"requests\":{},\"ok\":{},\"errors\":{},\"dead_clients\":{},\"rps\":{:.1},\
         \"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{},\"statuses\":{{{}}}}}",
        a.mode,
        a.dpop,
        a.clients,
        a.threads,
        setup_s,
        elapsed,
        sh.sent.load(Ordering::Relaxed),
        (end - start).as_secs_f64(),
        total,
        ok,
        errors,
        dead,
        ok as f64 / elapsed,
        pct(&lat, 0.50),
        pct(&lat, 0.90),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        st
    ))
}

fn main() {
    let a = parse_args();
    let rt = if a.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    match rt.block_on(amain(a)) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("authfetch-loadgen: {e}");
            std::process::exit(1)
        }
    }
}
