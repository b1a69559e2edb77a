//! `authfetch-bench-server [authfetch-server flags]`: the authfetch server, rate limits raised.
//! See Cargo.toml for why. Everything else — the flags, the config they make, `serve` — is the
//! server crate's own code.
use std::process::ExitCode;
use std::time::Duration;

use authfetch_server::cli::Cli;
use authfetch_server::config::{Limit, RateLimits};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.is_some() {
        eprintln!("authfetch-bench-server: serves only; use authfetch-server for subcommands");
        return ExitCode::FAILURE;
    }
    let mut config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authfetch-bench-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let unlimited = Limit {
        max: u32::MAX,
        window: Duration::from_secs(60),
    };
    config.rate_limits = RateLimits {
        login_per_ip: unlimited,
        login_per_account: unlimited,
        refresh_per_ip: unlimited,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listen = cli.listen.clone();
    let res = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        authfetch_server::serve(config, listener)
            .await
            .map_err(|e| e.to_string())
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authfetch-bench-server: {e}");
            ExitCode::FAILURE
        }
    }
}
