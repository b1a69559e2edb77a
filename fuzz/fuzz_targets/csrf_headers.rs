//! Fuzz target: `authfetch_server::fuzzing::csrf_headers` (see its docs for what it feeds and asserts).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = authfetch_server::fuzzing::csrf_headers(data);
});
