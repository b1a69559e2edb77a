//! authfetch (docs below)
#![no_std]
extern crate alloc;
// With `std` (the default: native tests, wasm-bindgen-test), std provides the allocator and the
// panic handler; the shipped `tiny` build brings its own (below).
#[cfg(feature = "std")]
extern crate std;

pub mod config;
pub mod error;
pub mod jwt;
pub mod session;
#[cfg(target_arch = "wasm32")]
pub mod web;

#[cfg(all(feature = "tiny", target_arch = "wasm32", not(feature = "std")))]
mod tiny {
    #[global_allocator]
    static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        core::arch::wasm32::unreachable()
    }
}
