//! The real `authfetch-server` binary as a child process, for the tests that need what only the
//! binary does: flags and environment, signals, `kill -9`, descriptor limits, its logs.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_authfetch-server");

/// What every test process gets: a free loopback port and no static files to serve.
pub const BASE_ARGS: [&str; 6] = [
    "--listen",
    "127.0.0.1:0",
    "--www",
    "/nonexistent",
    "--pkg",
    "/nonexistent",
];

/// A running server process; killed on drop if still running.
pub struct ServerProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Where its stderr (the logs) goes.
    pub log: PathBuf,
}

impl ServerProcess {
    /// `BIN` with [`BASE_ARGS`], `args` and `envs`, its data in `data_dir`, `RUST_LOG` unset.
    pub fn start(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        let mut c = Self::command();
        c.args(args)
            .env("AUTHFETCH_DATA_DIR", data_dir)
            .envs(envs.iter().copied());
        Self::spawn(c, &data_dir.with_extension(format!("{}.log", suffix())))
    }

    /// `BIN` with [`BASE_ARGS`] and `RUST_LOG` unset, to add to before [`Self::spawn`].
    pub fn command() -> Command {
        let mut c = Command::new(BIN);
        c.args(BASE_ARGS).env_remove("RUST_LOG");
        c
    }

    /// Spawns `command` (stdout piped, stderr into `log`) and waits up to 30 s for the
    /// "listening on" line. Panics with the logs if it does not come.
    pub fn spawn(mut command: Command, log: &Path) -> ServerProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("spawn authfetch-server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads on past the first line, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let logs = || std::fs::read_to_string(log).unwrap_or_default();
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no listening line; stderr: {}", logs()));
        let base = line
            .strip_prefix("authfetch-server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}; stderr: {}", logs()))
            .to_owned();
        ServerProcess {
            child,
            base,
            log: log.to_owned(),
        }
    }

    /// `127.0.0.1:PORT`, for raw sockets.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`-TERM`, `-KILL`, …) with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill(1)")
            .success();
        assert!(ok, "kill {signal}");
    }

    /// Waits up to `limit` for the process to exit: its status, or `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and the exit status (panics if it has not exited within 20 s).
    pub fn terminate(mut self) -> ExitStatus {
        self.signal("-TERM");
        self.wait_exit(Duration::from_secs(20))
            .expect("no exit after SIGTERM")
    }

    /// `kill -9`: no shutdown, nothing flushed that was not already committed.
    pub fn kill_9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A short random string, so that log files of several processes in one directory differ.
fn suffix() -> String {
    authfetch_server::secret::RefreshToken::generate().secret()[..8].replace(['-', '_'], "x")
}
