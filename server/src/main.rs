//! The `authfetch-server` binary.
fn main() {}
