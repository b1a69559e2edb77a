//! Fuzz target: `authfetch_server::dpop::fuzzing::dpop_proof` (see its docs for what it feeds and asserts).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = authfetch_server::dpop::fuzzing::dpop_proof(data);
});
