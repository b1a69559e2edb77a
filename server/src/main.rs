//! The `authfetch-server` binary. Everything lives in the library; see `cli.rs`.

fn main() -> std::process::ExitCode {
    authfetch_server::cli::main()
}
